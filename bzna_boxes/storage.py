"""Where a file's bytes come from: the one interface every reader of a file goes through.

:class:`Storage` is what :class:`~bzna_boxes.index.BznaFile` reads through: ``read`` copies a
byte range, ``view`` gives one without a copy where the storage can map it (a local file) and
as a view of fetched bytes elsewhere, ``read_many`` fetches many ranges at once (the storage
chooses how: one slice each from a map, merged concurrent ranged requests from a server).
:class:`LocalStorage` (a read-only ``mmap``) is the default; other storages implement the same
protocol. Nothing outside a storage touches its map.
"""

from __future__ import annotations

import mmap
import os
from typing import Protocol, Sequence, runtime_checkable

from .errors import BoxError

__all__ = ["Storage", "LocalStorage", "Span"]

Span = tuple[int, int]
"""``(offset, size)``: a byte range of a file."""


@runtime_checkable
class Storage(Protocol):
    """Random access to the bytes of one immutable file.

    ``name`` is what messages call the file (a path or a URL); ``size`` its length in bytes.
    Every method raises ``BoxError`` for a range outside the file and ``OSError`` (naming the
    file and the range) when the bytes cannot be had.
    """

    name: str
    size: int

    def read(self, offset: int, size: int) -> bytes:
        """The ``size`` bytes at ``offset``, copied."""
        ...

    def view(self, offset: int, size: int) -> memoryview:
        """The ``size`` bytes at ``offset``: a slice of the map where the storage maps (it keeps
        the map alive while it lives), else a view of bytes fetched for it."""
        ...

    def read_many(self, spans: Sequence[Span]) -> list[memoryview]:
        """``view`` of every ``(offset, size)`` span, in order, fetched together."""
        ...

    @property
    def buffer(self) -> memoryview | None:
        """The whole file as one memoryview where the storage maps it, else None."""
        ...

    def changed(self) -> str | None:
        """How the file now differs from the one opened (replaced, removed, resized, modified),
        or None when it is the same."""
        ...

    def close(self) -> None:
        """Let go of the file; views handed out earlier keep what they view alive."""
        ...


def check_span(storage: Storage, offset: int, size: int) -> None:
    """``BoxError`` unless ``offset .. offset + size`` lies inside ``storage``'s file."""
    if offset < 0 or size < 0 or offset + size > storage.size:
        raise BoxError(f"{storage.name}: bytes {offset}..{offset + size} lie outside the file ({storage.size:,} bytes)", offset=offset)


class LocalStorage:
    """A local file through one read-only ``mmap``: ``view`` and ``read_many`` copy nothing."""

    __slots__ = ("name", "size", "_map", "_view", "_identity")

    def __init__(self, path: str | os.PathLike):
        self.name = os.fspath(path)
        with open(self.name, "rb") as f:
            stat = os.fstat(f.fileno())
            self.size = stat.st_size
            self._identity = _identity(stat)
            if self.size == 0:
                raise BoxError("the file is empty", offset=0)
            self._map: mmap.mmap | None = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_READ)
        self._view: memoryview | None = memoryview(self._map)

    @property
    def stored_bytes(self) -> int | None:
        """Bytes the file takes on disk (``st_blocks``), None where the system does not say."""
        try:
            blocks = os.stat(self.name).st_blocks
        except (OSError, AttributeError):
            return None
        return blocks * 512

    @property
    def buffer(self) -> memoryview | None:
        return self._require()

    def _require(self) -> memoryview:
        view = self._view
        if view is None:
            raise ValueError(f"{self.name}: the file is closed")
        return view

    def read(self, offset: int, size: int) -> bytes:
        check_span(self, offset, size)
        return bytes(self._require()[offset : offset + size])

    def view(self, offset: int, size: int) -> memoryview:
        check_span(self, offset, size)
        return self._require()[offset : offset + size]

    def read_many(self, spans: Sequence[Span]) -> list[memoryview]:
        view = self._require()
        out = []
        for offset, size in spans:
            check_span(self, offset, size)
            out.append(view[offset : offset + size])
        return out

    def drop_pages(self, offset: int, size: int) -> None:
        """Tell the kernel the pages of a span can leave this process (read once, copied out)."""
        if self._map is None or not hasattr(self._map, "madvise"):
            return
        page = mmap.PAGESIZE
        start = offset - offset % page
        try:
            self._map.madvise(mmap.MADV_DONTNEED, start, offset + size - start)
        except (OSError, ValueError, AttributeError):
            pass

    def changed(self) -> str | None:
        try:
            now = _identity(os.stat(self.name))
        except FileNotFoundError:
            return "it was removed"
        dev, ino, size, mtime = self._identity
        if now[:2] != (dev, ino):
            return "it was replaced by another file (renamed over it)"
        if now[2] != size:
            return f"its size changed from {size:,} to {now[2]:,} bytes (rewritten in place)"
        if now[3] != mtime:
            return "it was modified in place"
        return None

    def close(self) -> None:
        view, self._view = self._view, None
        mapped, self._map = self._map, None
        if view is not None:
            view.release()
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:
                pass  # a caller still holds a view; the map goes when the last one does

    def __repr__(self) -> str:
        return f"<LocalStorage {self.name!r} size={self.size}>"


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one file from another at the same path: device, inode, size, mtime (ns)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
