"""Sample table boxes as numpy arrays: stts, ctts, stss, stsz, stz2, stsc, stco, co64 (§8.6-8.7).

Each table parses with ``np.frombuffer`` (big-endian dtypes, no copy) and builds with one
``tobytes``: a 1,431,167-entry table takes milliseconds either way.
"""

from __future__ import annotations

import numpy as np
from construct import Bytes, Construct, Default, Int8ub, Int32ub, If, Rebuild, StreamError, len_, this, stream_write

from ..stream import ViewStream
from .core import BoxType, register
from .fields import Table, as_table, full_box

STTS = np.dtype([("sample_count", ">u4"), ("sample_delta", ">u4")])
CTTS_V0 = np.dtype([("sample_count", ">u4"), ("sample_offset", ">u4")])
CTTS_V1 = np.dtype([("sample_count", ">u4"), ("sample_offset", ">i4")])
STSC = np.dtype([("first_chunk", ">u4"), ("samples_per_chunk", ">u4"), ("sample_description_index", ">u4")])

register(
    BoxType(
        "stts",
        "TimeToSampleBox",
        full_box("entry_count" / Rebuild(Int32ub, len_(this.entries)), "entries" / Table(STTS, this.entry_count)),
    )
)
register(
    BoxType(
        "ctts",
        "CompositionOffsetBox",
        full_box(
            "entry_count" / Rebuild(Int32ub, len_(this.entries)),
            "entries" / Table(lambda ctx: CTTS_V1 if ctx.version == 1 else CTTS_V0, this.entry_count),
        ),
    )
)
register(
    BoxType(
        "stss",
        "SyncSampleBox",
        full_box("entry_count" / Rebuild(Int32ub, len_(this.sample_numbers)), "sample_numbers" / Table(">u4", this.entry_count)),
    )
)
register(
    BoxType(
        "stsc",
        "SampleToChunkBox",
        full_box("entry_count" / Rebuild(Int32ub, len_(this.entries)), "entries" / Table(STSC, this.entry_count)),
    )
)
register(
    BoxType(
        "stco",
        "ChunkOffsetBox",
        full_box("entry_count" / Rebuild(Int32ub, len_(this.chunk_offsets)), "chunk_offsets" / Table(">u4", this.entry_count)),
    )
)
register(
    BoxType(
        "co64",
        "ChunkLargeOffsetBox",
        full_box("entry_count" / Rebuild(Int32ub, len_(this.chunk_offsets)), "chunk_offsets" / Table(">u8", this.entry_count)),
    )
)


def _stsz_count(ctx) -> int:
    return len(ctx.entry_sizes) if ctx.sample_size == 0 else ctx.sample_count


register(
    BoxType(
        "stsz",
        "SampleSizeBox",
        full_box(
            # sample_size != 0: every sample has that size and there is no table.
            "sample_size" / Default(Int32ub, 0),
            "sample_count" / Rebuild(Int32ub, _stsz_count),
            "entry_sizes" / If(this.sample_size == 0, Table(">u4", this.sample_count)),
        ),
    )
)


class _CompactSizes(Construct):
    """stz2 entries: ``sample_count`` sizes of ``field_size`` bits (4, 8 or 16), as uint16."""

    def _parse(self, stream, context, path):
        bits, count = context.field_size, context.sample_count
        if bits not in (4, 8, 16):
            raise StreamError(f"field_size must be 4, 8 or 16, not {bits}", path=path)
        nbytes = (count * bits + 7) // 8
        left = stream.remaining() if isinstance(stream, ViewStream) else nbytes
        if nbytes > left:
            raise StreamError(f"{count} entries of {bits} bits need {nbytes} bytes, {left} left", path=path)
        raw = np.frombuffer(stream.read(nbytes), ">u2" if bits == 16 else "u1")
        if bits != 4:
            return raw.astype(np.uint16)
        nibbles = np.empty(2 * len(raw), np.uint16)
        nibbles[0::2] = raw >> 4
        nibbles[1::2] = raw & 0x0F
        if count % 2 and nibbles[-1]:
            raise StreamError("the padding nibble after the last 4-bit entry is not 0", path=path)
        return nibbles[:count]

    def _build(self, obj, stream, context, path):
        bits = context.field_size
        if bits not in (4, 8, 16):
            raise StreamError(f"field_size must be 4, 8 or 16, not {bits}", path=path)
        try:
            sizes = as_table(obj, {4: "u1", 8: "u1", 16: ">u2"}[bits], "entry_sizes")
        except ValueError as exc:
            raise StreamError(str(exc), path=path) from exc
        if bits == 4:
            if len(sizes) and sizes.max() > 15:
                raise StreamError("4-bit entry sizes must be below 16", path=path)
            padded = np.zeros(len(sizes) + len(sizes) % 2, np.uint8)
            padded[: len(sizes)] = sizes
            sizes = (padded[0::2] << 4) | padded[1::2]
        data = sizes.tobytes()
        stream_write(stream, data, len(data), path)
        return obj


register(
    BoxType(
        "stz2",
        "CompactSampleSizeBox",
        full_box(
            "reserved" / Default(Bytes(3), bytes(3)),
            "field_size" / Int8ub,
            "sample_count" / Rebuild(Int32ub, len_(this.entry_sizes)),
            "entry_sizes" / _CompactSizes(),
        ),
    )
)
