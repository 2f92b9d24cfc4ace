"""Import ``construct`` without its debugging tools, which load on first use instead.

``construct/__init__`` imports ``construct.debug`` (``Probe``, ``Debugger``), which imports
``pdb`` and ``inspect``: about half of the time ``import construct`` takes, and the box
schemas use neither. :func:`import_construct` imports the package with that module held back;
``construct.Probe``, ``construct.Debugger`` and ``import construct.debug`` still work (the real
module loads then).
"""

from __future__ import annotations

import importlib
import sys
import types

_DEBUG_NAMES = ("Probe", "Debugger", "debug")


def import_construct() -> None:
    """Import ``construct`` (once per process) leaving ``construct.debug`` for first use."""
    if "construct" in sys.modules:
        return
    stub = types.ModuleType("construct.debug")
    stub.__all__ = []  # what construct/__init__'s ``from construct.debug import *`` takes: nothing
    sys.modules["construct.debug"] = stub
    try:
        import construct
    finally:
        if sys.modules.get("construct.debug") is stub:
            del sys.modules["construct.debug"]  # the next ``import construct.debug`` loads the real one
    if getattr(construct, "debug", None) is stub:
        del construct.debug

    loading = []

    def __getattr__(name: str):
        if name in _DEBUG_NAMES:
            loaded = sys.modules.get("construct.debug")
            if loading or (loaded is not None and not isinstance(getattr(loaded, "Debugger", None), type)):
                return None  # construct.debug's own ``from construct import *``: it defines them next
            loading.append(name)
            try:
                debug = importlib.import_module("construct.debug")
            finally:
                loading.clear()
            construct.Probe, construct.Debugger, construct.debug = debug.Probe, debug.Debugger, debug
            return getattr(construct, name)
        raise AttributeError(f"module 'construct' has no attribute {name!r}")

    construct.__getattr__ = __getattr__
