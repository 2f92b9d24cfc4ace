"""bzna_boxes: ISO-BMFF (MP4) boxes and ``.bzna`` image datasets, in pure Python.

Parse and build any box byte for byte (:data:`Box`, :data:`Boxes`), index samples over a
memory map (:func:`open`, :class:`Dataset`), encode and write datasets (:func:`encode_image`,
:class:`DatasetWriter`, :func:`concat`), and decode them on the GPU or the CPU
(:func:`open_decoder`, :class:`Loader` for training). Every name below except the exceptions is
loaded on first use: ``import bzna_boxes`` imports none of construct, numpy, PyAV,
PyNvVideoCodec or torch; each is imported only by the modules that use it.
"""

from __future__ import annotations

from .errors import BoxError, BuildError, DecoderUnavailable

__version__ = "0.1.0"

_LAZY = {
    # the box engine (construct and every schema): not needed to open and read a dataset
    "Box": "boxes",
    "Boxes": "boxes",
    "BoxType": "boxes",
    "find": "boxes",
    "find_all": "boxes",
    "register": "boxes",
    "walk": "boxes",
    "DatasetWriter": "writer",
    "concat": "writer",
    "encode_image": "encode",
    "open_decoder": "decode",
    "Loader": "torch",
    "MissingSampleError": "dataset",
    "open": "index",
    "BznaFile": "index",
    "Track": "index",
    "Dataset": "dataset",
    "ImageNet": "dataset",
    "Sample": "dataset",
}
"""Public names whose modules load on first use (``import bzna_boxes`` stays light)."""


def __getattr__(name: str) -> object:
    """Load a name of :data:`_LAZY` from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bzna_boxes' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Box",
    "Boxes",
    "BoxType",
    "BoxError",
    "BuildError",
    "DecoderUnavailable",
    "MissingSampleError",
    "find",
    "find_all",
    "register",
    "walk",
    "DatasetWriter",
    "concat",
    "open",
    "BznaFile",
    "Track",
    "Dataset",
    "ImageNet",
    "Sample",
    "encode_image",
    "open_decoder",
    "Loader",
    "__version__",
]
