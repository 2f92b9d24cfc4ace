"""Movie and track headers: mvhd, tkhd, elst (ISO/IEC 14496-12 §8.2, §8.3, §8.6)."""

from __future__ import annotations

import numpy as np
from construct import Array, Bytes, Default, IfThenElse, Int16sb, Int32sb, Int32ub, Int64ub, Rebuild, len_, this

from .core import BoxType, register
from .fields import Fixed16_16, SignedFixed8_8, SignedFixed16_16, Table, full_box

UNITY_MATRIX = [0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000]
"""The identity transformation matrix of mvhd and tkhd."""


def _by_version(name: str, default=0):
    """A time or duration field: 32 bits in version 0, 64 bits in version 1."""
    return name / Default(IfThenElse(this.version == 1, Int64ub, Int32ub), default)


_matrix = "matrix" / Default(Array(9, Int32sb), UNITY_MATRIX)

register(
    BoxType(
        "mvhd",
        "MovieHeaderBox",
        full_box(
            _by_version("creation_time"),
            _by_version("modification_time"),
            "timescale" / Default(Int32ub, 1000),
            _by_version("duration"),
            "rate" / Default(SignedFixed16_16, 1.0),
            "volume" / Default(SignedFixed8_8, 1.0),
            "reserved" / Default(Bytes(10), bytes(10)),
            _matrix,
            "pre_defined" / Default(Bytes(24), bytes(24)),
            "next_track_id" / Default(Int32ub, 1),
        ),
    )
)

register(
    BoxType(
        "tkhd",
        "TrackHeaderBox",
        full_box(
            _by_version("creation_time"),
            _by_version("modification_time"),
            "track_id" / Int32ub,
            "reserved" / Default(Bytes(4), bytes(4)),
            _by_version("duration"),
            "reserved_2" / Default(Bytes(8), bytes(8)),
            "layer" / Default(Int16sb, 0),
            "alternate_group" / Default(Int16sb, 0),
            "volume" / Default(SignedFixed8_8, 0.0),
            "reserved_3" / Default(Bytes(2), bytes(2)),
            _matrix,
            "width" / Default(Fixed16_16, 0.0),
            "height" / Default(Fixed16_16, 0.0),
        ),
    )
)

ELST_V0 = np.dtype([("segment_duration", ">u4"), ("media_time", ">i4"), ("media_rate_integer", ">i2"), ("media_rate_fraction", ">i2")])
ELST_V1 = np.dtype([("segment_duration", ">u8"), ("media_time", ">i8"), ("media_rate_integer", ">i2"), ("media_rate_fraction", ">i2")])

register(
    BoxType(
        "elst",
        "EditListBox",
        full_box(
            "entry_count" / Rebuild(Int32ub, len_(this.entries)),
            "entries" / Table(lambda ctx: ELST_V1 if ctx.version == 1 else ELST_V0, this.entry_count),
        ),
    )
)
