"""Movie fragments and segment index: mvhd's companions for fragmented files (§8.8, §8.16).

mfhd, tfhd, tfdt, trun (samples as a numpy table whose columns follow its flags), trex, mehd,
sidx; moof, traf, mvex and mfra are plain containers (see containers.py).
"""

from __future__ import annotations

import numpy as np
from construct import Bytes, Default, If, IfThenElse, Int16ub, Int32sb, Int32ub, Int64ub, Rebuild, len_, this

from .core import BoxType, register
from .fields import Table, full_box
from .movie import _by_version

# tfhd flags
BASE_DATA_OFFSET_PRESENT = 0x000001
SAMPLE_DESCRIPTION_INDEX_PRESENT = 0x000002
DEFAULT_SAMPLE_DURATION_PRESENT = 0x000008
DEFAULT_SAMPLE_SIZE_PRESENT = 0x000010
DEFAULT_SAMPLE_FLAGS_PRESENT = 0x000020
DURATION_IS_EMPTY = 0x010000
DEFAULT_BASE_IS_MOOF = 0x020000

# trun flags
DATA_OFFSET_PRESENT = 0x000001
FIRST_SAMPLE_FLAGS_PRESENT = 0x000004
SAMPLE_DURATION_PRESENT = 0x000100
SAMPLE_SIZE_PRESENT = 0x000200
SAMPLE_FLAGS_PRESENT = 0x000400
SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT = 0x000800


def _flag(bit: int):
    return lambda ctx: bool(ctx.flags & bit)


register(BoxType("mfhd", "MovieFragmentHeaderBox", full_box("sequence_number" / Default(Int32ub, 1))))
register(BoxType("mehd", "MovieExtendsHeaderBox", full_box(_by_version("fragment_duration"))))

register(
    BoxType(
        "tfhd",
        "TrackFragmentHeaderBox",
        full_box(
            "track_id" / Int32ub,
            "base_data_offset" / If(_flag(BASE_DATA_OFFSET_PRESENT), Int64ub),
            "sample_description_index" / If(_flag(SAMPLE_DESCRIPTION_INDEX_PRESENT), Int32ub),
            "default_sample_duration" / If(_flag(DEFAULT_SAMPLE_DURATION_PRESENT), Int32ub),
            "default_sample_size" / If(_flag(DEFAULT_SAMPLE_SIZE_PRESENT), Int32ub),
            "default_sample_flags" / If(_flag(DEFAULT_SAMPLE_FLAGS_PRESENT), Int32ub),
        ),
    )
)

register(BoxType("tfdt", "TrackFragmentBaseMediaDecodeTimeBox", full_box(_by_version("base_media_decode_time"))))


def trun_dtype(flags: int, version: int = 0) -> np.dtype:
    """The columns of trun's sample table for these flags (all big-endian)."""
    columns = []
    if flags & SAMPLE_DURATION_PRESENT:
        columns.append(("sample_duration", ">u4"))
    if flags & SAMPLE_SIZE_PRESENT:
        columns.append(("sample_size", ">u4"))
    if flags & SAMPLE_FLAGS_PRESENT:
        columns.append(("sample_flags", ">u4"))
    if flags & SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT:
        columns.append(("sample_composition_time_offset", ">i4" if version else ">u4"))
    return np.dtype(columns)


register(
    BoxType(
        "trun",
        "TrackRunBox",
        full_box(
            "sample_count" / Rebuild(Int32ub, len_(this.samples)),
            "data_offset" / If(_flag(DATA_OFFSET_PRESENT), Int32sb),
            "first_sample_flags" / If(_flag(FIRST_SAMPLE_FLAGS_PRESENT), Int32ub),
            "samples" / Table(lambda ctx: trun_dtype(ctx.flags, ctx.version), this.sample_count),
        ),
    )
)

register(
    BoxType(
        "trex",
        "TrackExtendsBox",
        full_box(
            "track_id" / Int32ub,
            "default_sample_description_index" / Default(Int32ub, 1),
            "default_sample_duration" / Default(Int32ub, 0),
            "default_sample_size" / Default(Int32ub, 0),
            "default_sample_flags" / Default(Int32ub, 0),
        ),
    )
)

SIDX_REFERENCE = np.dtype([("reference", ">u4"), ("subsegment_duration", ">u4"), ("sap", ">u4")])
"""reference = reference_type (1 bit) | referenced_size (31); sap = starts_with_SAP (1) | SAP_type (3) | SAP_delta_time (28)."""

register(
    BoxType(
        "sidx",
        "SegmentIndexBox",
        full_box(
            "reference_id" / Int32ub,
            "timescale" / Int32ub,
            "earliest_presentation_time" / Default(IfThenElse(this.version == 0, Int32ub, Int64ub), 0),
            "first_offset" / Default(IfThenElse(this.version == 0, Int32ub, Int64ub), 0),
            "reserved" / Default(Bytes(2), bytes(2)),
            "reference_count" / Rebuild(Int16ub, len_(this.references)),
            "references" / Table(SIDX_REFERENCE, this.reference_count),
        ),
    )
)
