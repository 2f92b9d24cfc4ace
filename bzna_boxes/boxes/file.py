"""File-level boxes: ftyp, styp, free, skip, mdat, wide (ISO/IEC 14496-12 §4.3, §8.1)."""

from __future__ import annotations

from construct import GreedyRange, Int32ub

from .core import BoxType, RawBox, register
from .fields import Fields, FourCC

_brands = Fields(
    "major_brand" / FourCC,
    "minor_version" / Int32ub,
    "compatible_brands" / GreedyRange(FourCC),
)

register(BoxType("ftyp", "FileTypeBox", _brands))
register(BoxType("styp", "SegmentTypeBox", _brands))
register(RawBox("mdat", "MediaDataBox"))
register(RawBox("free", "FreeSpaceBox"))
register(RawBox("skip", "FreeSpaceBox"))
register(RawBox("wide", "WideBox"))
