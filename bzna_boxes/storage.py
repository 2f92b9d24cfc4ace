"""Where a file's bytes come from: the one interface every reader of a file goes through.

:class:`Storage` is what :class:`~bzna_boxes.index.BznaFile` reads through: ``read`` copies a
byte range, ``view`` gives one without a copy where the storage can map it (a local file) and
as a view of fetched bytes elsewhere, ``read_many`` fetches many ranges at once (the storage
chooses how: one slice each from a map, merged concurrent ranged requests from a server).
:class:`LocalStorage` (a read-only ``mmap``) is the default; other storages implement the same
protocol. Nothing outside a storage touches its map.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import BoxError

__all__ = ["Storage", "LocalStorage", "Span", "gather", "read_into", "copy_span"]

_COPY_CHUNK = 64 << 20
"""Bytes copied at once by :func:`copy_span` where the kernel cannot copy."""

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

    __slots__ = ("name", "size", "_map", "_view", "_identity", "_fd")

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
        self._fd: int | None = None  # opened by the first readinto or copy_to

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

    def readinto(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the bytes at ``offset`` by ``pread`` (no map: the pages stay out
        of this process, and a thread can read while another works)."""
        check_span(self, offset, len(buffer))
        fd = self._descriptor()
        done = 0
        while done < len(buffer):
            got = os.preadv(fd, [buffer[done:]], offset + done)
            if not got:
                raise BoxError(f"{self.name}: the file ends before the {len(buffer) - done} bytes that follow", offset=offset + done)
            done += got

    def copy_to(self, offset: int, size: int, fd: int, at: int) -> None:
        """Copy ``size`` bytes at ``offset`` into the file ``fd`` at ``at``: ``copy_file_range``
        (in the kernel), else ``pread`` / ``pwrite``."""
        check_span(self, offset, size)
        source = self._descriptor()
        copy_file_range = getattr(os, "copy_file_range", None)
        while size > 0 and copy_file_range is not None:
            try:
                done = copy_file_range(source, fd, min(size, 1 << 30), offset, at)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM):
                    break
                raise
            if done == 0:
                raise BoxError(f"{self.name}: the file ends before {size} more bytes could be copied", offset=offset)
            offset, at, size = offset + done, at + done, size - done
        while size > 0:
            chunk = os.pread(source, min(size, _COPY_CHUNK), offset)
            if not chunk:
                raise BoxError(f"{self.name}: the file ends before {size} more bytes could be copied", offset=offset)
            write_all(fd, chunk, at)
            offset, at, size = offset + len(chunk), at + len(chunk), size - len(chunk)

    def _descriptor(self) -> int:
        """A descriptor of the mapped file (opened once; ``OSError`` when the path now names another)."""
        self._require()
        if self._fd is None:
            fd = os.open(self.name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            if _identity(os.fstat(fd))[:2] != self._identity[:2]:
                os.close(fd)
                raise OSError(errno.ESTALE, f"{self.name} was replaced by another file since it was opened", self.name)
            self._fd = fd
        return self._fd

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
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if view is not None:
            view.release()
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:
                pass  # a caller still holds a view; the map goes when the last one does

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<LocalStorage {self.name!r} size={self.size}>"


def read_into(storage: Storage, offset: int, buffer: memoryview) -> None:
    """Fill ``buffer`` with the bytes at ``offset``: the storage's own ``readinto`` where it has
    one (a local file reads without mapping them), else a copy of its ``view``."""
    readinto = getattr(storage, "readinto", None)
    if readinto is not None:
        readinto(offset, buffer)
    else:
        buffer[:] = storage.view(offset, len(buffer))


def copy_span(storage: Storage, offset: int, size: int, fd: int, at: int) -> None:
    """Copy ``size`` bytes at ``offset`` of ``storage`` into the file ``fd`` at ``at``: in the
    kernel for a local file (the storage's ``copy_to``), else in chunks of its ``view``."""
    copy_to = getattr(storage, "copy_to", None)
    if copy_to is not None:
        copy_to(offset, size, fd, at)
        return
    for start in range(offset, offset + size, _COPY_CHUNK):
        length = min(_COPY_CHUNK, offset + size - start)
        write_all(fd, storage.view(start, length), at + start - offset)


def write_all(fd: int, data: bytes | memoryview, at: int) -> None:
    """``pwrite`` all of ``data`` at offset ``at``."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], at + written)


def gather(storage: Storage, offsets: np.ndarray, sizes: np.ndarray, *, as_bytes: bool = False) -> tuple[bytes | memoryview | mmap.mmap, np.ndarray]:
    """Where the bytes of many spans are, fetched in bulk: ``(data, positions)``, span ``i``
    being ``data[positions[i] : positions[i] + sizes[i]]``.

    Where the storage maps the file: its whole-file buffer and the offsets themselves, nothing
    read (with ``as_bytes``, a local file's map itself, whose slices are ``bytes``: the fastest
    to decode). Else the spans' runs (neighbours merged: a track of small samples stored back to
    back is one run) fetched by one ``read_many`` and joined into ``bytes``.
    """
    offsets = np.asarray(offsets, np.uint64)
    sizes = np.asarray(sizes, np.uint64)
    if as_bytes and isinstance(storage, LocalStorage) and storage._map is not None:
        return storage._map, offsets
    buffer = None if as_bytes else storage.buffer
    if buffer is not None:
        return buffer, offsets
    if not len(offsets):
        return b"", np.zeros(0, np.uint64)
    first, ends = int(offsets[0]), offsets + sizes
    if len(offsets) == 1 or bool(np.all(offsets[1:] == ends[:-1])):  # back to back: one span
        return storage.read(first, int(ends[-1]) - first), offsets - np.uint64(first)
    order = np.argsort(offsets, kind="stable")
    starts, ends = offsets[order], offsets[order] + sizes[order]
    reach = np.maximum.accumulate(ends)
    new_run = np.ones(len(starts), bool)
    new_run[1:] = starts[1:] > reach[:-1]  # a gap before this span: a new run
    first = np.flatnonzero(new_run)
    run_starts = starts[first]
    run_ends = np.maximum.reduceat(ends, first)
    run_sizes = run_ends - run_starts
    pieces = storage.read_many(list(zip(run_starts.tolist(), run_sizes.tolist())))
    data = pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)
    base = np.zeros(len(run_sizes), np.uint64)
    np.cumsum(run_sizes[:-1], out=base[1:])
    run_of = np.cumsum(new_run) - 1  # each sorted span's run
    positions = np.empty(len(offsets), np.uint64)
    positions[order] = starts - run_starts[run_of] + base[run_of]
    return data, positions


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one file from another at the same path: device, inode, size, mtime (ns)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
