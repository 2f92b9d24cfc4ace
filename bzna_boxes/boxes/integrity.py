"""Integrity boxes: bzsc, a checksum of every sample of every track (a ``.bzna`` extension, not ISO).

The byte layout (``docs/format.md``)::

    bzsc FullBox (version 0, flags 0)
      algorithm        fourcc   'c32c': CRC-32C (Castagnoli), as iSCSI and ext4 use it
      checksum_size    uint32   bytes per checksum (4 for 'c32c')
      entry_count      uint32   tracks
      entry_count times:
        track_id       uint32   the track's tkhd track_ID
        sample_count   uint32
        checksums      sample_count x checksum_size bytes, big-endian, in sample order

It lives in ``moov/udta``, where readers skip the boxes they do not know.
"""

from __future__ import annotations

import numpy as np
from construct import Array, Int32ub, Rebuild, len_, this

from .core import BoxType, register
from .fields import Fields, FourCC, Table, full_box

__all__ = ["checksum_dtype"]

_DTYPES = {1: np.dtype("u1"), 2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">u8")}


def checksum_dtype(checksum_size: int) -> np.dtype:
    """The numpy dtype of checksums of ``checksum_size`` bytes: a big-endian integer, else raw bytes."""
    if not 0 < checksum_size <= 64:
        raise ValueError(f"checksum_size {checksum_size} is not in [1, 64]")
    return _DTYPES.get(checksum_size) or np.dtype(("V", checksum_size))


TRACK_CHECKSUMS = Fields(
    "track_id" / Int32ub,
    "sample_count" / Rebuild(Int32ub, len_(this.checksums)),
    "checksums" / Table(lambda ctx: checksum_dtype(ctx._.checksum_size), this.sample_count),
)

register(
    BoxType(
        "bzsc",
        "SampleChecksumBox",
        full_box(
            "algorithm" / FourCC,
            "checksum_size" / Int32ub,
            "entry_count" / Rebuild(Int32ub, len_(this.entries)),
            "entries" / Array(this.entry_count, TRACK_CHECKSUMS),
        ),
    )
)
