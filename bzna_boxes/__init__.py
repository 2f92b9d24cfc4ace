"""bzna_boxes: ISO-BMFF (MP4) boxes and ``.bzna`` image datasets, in pure Python.

Parse and build any box byte for byte (:data:`Box`, :data:`Boxes`), index samples over a
memory map, build datasets and decode them on the GPU or the CPU. Heavy dependencies (PyAV,
PyNvVideoCodec, torch) are imported only by the modules that use them.
"""

from __future__ import annotations

from .boxes import Box, Boxes, BoxType, find, find_all, register, walk
from .errors import BoxError, DecoderUnavailable

__version__ = "0.1.0"

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
    "__version__",
]
