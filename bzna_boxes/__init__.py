"""bzna_boxes: ISO-BMFF (MP4) boxes and ``.bzna`` image datasets, in pure Python.

Parse and build any box byte for byte (:data:`Box`, :data:`Boxes`), index samples over a
memory map, build datasets and decode them on the GPU or the CPU. Heavy dependencies (PyAV,
PyNvVideoCodec, torch) are imported only by the modules that use them.
"""

from __future__ import annotations

from .errors import BoxError, DecoderUnavailable

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
    "open": "index",
    "BznaFile": "index",
    "Track": "index",
    "Dataset": "dataset",
    "ImageNet": "dataset",
    "Sample": "dataset",
}
"""Public names whose modules load on first use (``import bzna_boxes`` stays light)."""


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bzna_boxes' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Box",
    "Boxes",
    "BoxType",
    "BoxError",
    "DecoderUnavailable",
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
    "__version__",
]
