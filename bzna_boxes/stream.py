"""Zero-copy input and chunked output for the box engine.

``construct``'s own ``parse(data)`` wraps its input in ``io.BytesIO``, which copies the whole
buffer: parsing an mmap of a 140 GB dataset that way reads all of it. The box engine instead
walks a ``memoryview`` of the input and hands ``construct`` a :class:`ViewStream` over each box
body, whose ``take`` gives out slices of the original buffer.
"""

from __future__ import annotations

import io
import mmap
import os
from typing import Any, BinaryIO, Union

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]

__all__ = ["Buffer", "ViewStream", "ChunkWriter", "as_memoryview"]


class ViewStream:
    """A read-only, seekable stream over a memoryview; ``take(n)`` returns a zero-copy slice."""

    __slots__ = ("view", "pos")

    def __init__(self, view: memoryview):
        self.view = view
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        """The next ``n`` bytes (all when ``n`` < 0); a short read leaves the position at the field
        that did not fit, so that errors give its offset rather than the end of the box."""
        start = self.pos
        end = len(self.view) if n is None or n < 0 else min(start + n, len(self.view))
        if n is None or n < 0 or end - start == n:
            self.pos = end
        return bytes(self.view[start:end])

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes as a slice of the underlying buffer (no copy); short at the end."""
        start = self.pos
        end = min(start + n, len(self.view))
        self.pos = end
        return self.view[start:end]

    def remaining(self) -> int:
        return len(self.view) - self.pos

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self.pos
        elif whence == io.SEEK_END:
            offset += len(self.view)
        self.pos = max(0, offset)
        return self.pos

    def release(self) -> None:
        """Drop the reference to the buffer (values parsed earlier keep their own slices)."""
        self.view = memoryview(b"")
        self.pos = 0


class ChunkWriter:
    """A write-only stream that keeps the written chunks instead of copying them together."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes if not isinstance(data, bytes) else len(data)
        if n:
            self.chunks.append(data)
            self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def extend(self, other: "ChunkWriter") -> None:
        self.chunks.extend(other.chunks)
        self.size += other.size

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def as_memoryview(source: Buffer | BinaryIO | os.PathLike | str) -> tuple[memoryview, int]:
    """Return ``(view, base)``: a byte memoryview of ``source`` and the file offset of its first byte.

    bytes, bytearray, memoryview and mmap are viewed without a copy. A binary file object is
    memory-mapped from its current position when it has a file descriptor, else read.
    """
    if isinstance(source, (bytes, bytearray, mmap.mmap)):
        return memoryview(source), 0
    if isinstance(source, memoryview):
        return (source if source.format == "B" and source.ndim == 1 else source.cast("B")), 0
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return as_memoryview(f)
    base = source.tell() if hasattr(source, "tell") else 0
    try:
        fd = source.fileno()
        length = os.fstat(fd).st_size
        if length > 0:
            mapped = mmap.mmap(fd, length, access=mmap.ACCESS_READ)
            return memoryview(mapped)[base:], base
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return memoryview(source.read()), base
