"""Per-sample checksums, as the ``bzsc`` box stores them (``docs/format.md``).

:data:`ALGORITHMS` maps the box's ``algorithm`` fourcc to a function of one bytes-like object;
``c32c`` is CRC-32C (Castagnoli, the iSCSI/ext4 polynomial) through the ``crc32c`` wheel, which
uses the CPU's CRC instructions (SSE 4.2, ARMv8) and takes any buffer without copying it.
:func:`file_checksums` computes the checksums of samples of a file reading it in large
sequential chunks, in file order, rather than sample by sample.
"""

from __future__ import annotations

from typing import BinaryIO, Callable, NamedTuple

import numpy as np
from crc32c import crc32c

from .errors import BoxError

__all__ = ["Algorithm", "ALGORITHMS", "CRC32C", "file_checksums"]

_CHUNK = 16 << 20
"""Bytes read at once by :func:`file_checksums`."""
_GAP = 1 << 16
"""Bytes between two samples that :func:`file_checksums` reads rather than seeks over."""


class Algorithm(NamedTuple):
    """A checksum: its fourcc in the ``bzsc`` box, the bytes of one value, the function."""

    fourcc: str
    size: int
    function: Callable[..., int]


CRC32C = Algorithm("c32c", 4, crc32c)
ALGORITHMS: dict[str, Algorithm] = {CRC32C.fourcc: CRC32C}


def file_checksums(
    file: BinaryIO,
    offsets: np.ndarray,
    sizes: np.ndarray,
    algorithm: Algorithm = CRC32C,
    *,
    on_chunk: Callable[[int, memoryview], None] | None = None,
    chunk: int = _CHUNK,
    gap: int = _GAP,
) -> np.ndarray:
    """The checksum of each sample (``offsets``, ``sizes``) of ``file`` (opened ``rb``), as uint64.

    Samples may come in any order and overlap (a thumbnail inside its image). They are read in
    file order, in chunks of up to ``chunk`` bytes that each hold whole samples (a larger sample
    is read in pieces), reading through gaps of up to ``gap`` bytes between samples.
    ``on_chunk(offset, data)`` sees every chunk read (e.g. to copy it): with ``gap=0`` and
    samples that tile a range, the chunks tile it too. A sample past the end of the file is a
    :class:`BoxError`.
    """
    count = len(offsets)
    out = np.zeros(count, np.uint64)
    if not count:
        return out
    function = algorithm.function
    order = np.argsort(offsets, kind="stable")
    starts = offsets[order].tolist()
    ends = (offsets[order] + sizes[order].astype(np.uint64)).tolist()
    buffer = memoryview(bytearray(chunk))
    sums = [0] * count
    i = 0
    while i < count:
        low, high = starts[i], ends[i]
        if high - low > chunk:  # one sample larger than a chunk: in pieces
            value, at = 0, low
            while at < high:
                data = _read(file, buffer[: min(chunk, high - at)], at)
                value = function(data, value)
                if on_chunk is not None:
                    on_chunk(at, data)
                at += len(data)
            sums[i] = value
            i += 1
            continue
        j = i + 1
        while j < count and starts[j] <= high + gap and ends[j] - low <= chunk:
            if ends[j] > high:
                high = ends[j]
            j += 1
        data = _read(file, buffer[: high - low], low)
        for k in range(i, j):
            sums[k] = function(data[starts[k] - low : ends[k] - low])
        if on_chunk is not None:
            on_chunk(low, data)
        i = j
    out[order] = sums
    return out


def _read(file: BinaryIO, into: memoryview, offset: int) -> memoryview:
    """Fill ``into`` from ``file`` at ``offset``; a file that ends first is a :class:`BoxError`."""
    file.seek(offset)
    done = 0
    while done < len(into):
        got = file.readinto(into[done:])
        if not got:
            raise BoxError(f"the file ends before the {len(into) - done} bytes of samples that follow", offset=offset + done)
        done += got
    return into
