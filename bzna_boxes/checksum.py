"""Per-sample checksums, as the ``bzsc`` box stores them (``docs/format.md``).

:data:`ALGORITHMS` maps the box's ``algorithm`` fourcc to a function of one bytes-like object;
``c32c`` is CRC-32C (Castagnoli, the iSCSI/ext4 polynomial) through the ``crc32c`` wheel, which
uses the CPU's CRC instructions (SSE 4.2, ARMv8) and takes any buffer without copying it.
:func:`file_checksums` computes the checksums of samples of a file reading it in large
sequential chunks, in file order, rather than sample by sample.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np
from crc32c import crc32c

from .errors import BoxError
from .storage import Storage, read_into

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
    storage: Storage,
    offsets: np.ndarray,
    sizes: np.ndarray,
    algorithm: Algorithm = CRC32C,
    *,
    on_chunk: Callable[[int, memoryview], None] | None = None,
    chunk: int = _CHUNK,
    gap: int = _GAP,
) -> np.ndarray:
    """The checksum of each sample (``offsets``, ``sizes``) of the file behind ``storage``, as uint64.

    Samples may come in any order and overlap (a thumbnail inside its image). They are read in
    file order, in chunks of up to ``chunk`` bytes that each hold whole samples (a larger sample
    is read in pieces), reading through gaps of up to ``gap`` bytes between samples; a thread
    reads the next chunk while this one is checksummed (both release the GIL). ``on_chunk(offset,
    data)`` sees every chunk read, in order (e.g. to copy it): with ``gap=0`` and samples that
    tile a range, the chunks tile it too. A sample past the end of the file is a :class:`BoxError`.
    Chunks are read with :func:`~bzna_boxes.storage.read_into` (``pread`` for a local file: its
    pages are not mapped into this process).
    """
    count = len(offsets)
    out = np.zeros(count, np.uint64)
    if not count:
        return out
    function = algorithm.function
    order = np.argsort(offsets, kind="stable")
    starts = offsets[order].tolist()
    ends = (offsets[order] + sizes[order].astype(np.uint64)).tolist()
    reads = _reads(starts, ends, chunk, gap)
    largest = max(high - low for _, _, low, high in reads)
    buffers = [memoryview(bytearray(largest)) for _ in range(2)]
    sums = [0] * count
    with ThreadPoolExecutor(1, thread_name_prefix="bzna-checksum-read") as reader:
        pending = reader.submit(_read, storage, buffers[0], *reads[0][2:])
        for number, (first, stop, low, high) in enumerate(reads):
            data = pending.result()
            if number + 1 < len(reads):
                pending = reader.submit(_read, storage, buffers[(number + 1) % 2], *reads[number + 1][2:])
            if stop < 0:  # a piece of sample ``first``, larger than a chunk
                sums[first] = function(data, sums[first])
            else:
                for k in range(first, stop):
                    sums[k] = function(data[starts[k] - low : ends[k] - low])
            if on_chunk is not None:
                on_chunk(low, data)
    out[order] = sums
    return out


def _reads(starts: list[int], ends: list[int], chunk: int, gap: int) -> list[tuple[int, int, int, int]]:
    """The reads of :func:`file_checksums`, for samples sorted by offset: ``(first, stop, low, high)``
    reads ``[low, high)``, which holds samples ``first`` to ``stop - 1``, or, with ``stop`` -1, a
    piece of sample ``first`` when it is larger than ``chunk``."""
    reads = []
    count = len(starts)
    i = 0
    while i < count:
        low, high = starts[i], ends[i]
        if high - low > chunk:
            reads.extend((i, -1, at, min(at + chunk, high)) for at in range(low, high, chunk))
            i += 1
            continue
        j = i + 1
        while j < count and starts[j] <= high + gap and ends[j] - low <= chunk:
            if ends[j] > high:
                high = ends[j]
            j += 1
        reads.append((i, j, low, high))
        i = j
    return reads


def _read(storage: Storage, buffer: memoryview, offset: int, end: int) -> memoryview:
    """The bytes ``[offset, end)`` of ``storage``, read into ``buffer``; past the end of the file is a :class:`BoxError`."""
    if end > storage.size:
        at = max(offset, storage.size)
        raise BoxError(f"the file ends before the {end - at} bytes of samples that follow", offset=at)
    into = buffer[: end - offset]
    read_into(storage, offset, into)
    return into
