"""A storage without a map, for tests: what an object store gives the readers above the index.

:class:`UnmappedStorage` wraps a :class:`~bzna_boxes.storage.LocalStorage`: its ``buffer`` is
None, ``view`` and ``read_many`` hand out copies (a view of them cannot be a view of the file),
it has neither ``readinto`` nor ``copy_to``, and it counts its requests, so that the paths of the
readers for a remote file run here and their reads can be checked. :func:`open_unmapped` opens a
file by path and puts the wrapper under its ``BznaFile`` (the index itself is read as usual).
"""

from __future__ import annotations

import threading
from typing import Sequence

from bzna_boxes.index import BznaFile
from bzna_boxes.storage import LocalStorage, Span, check_span


class UnmappedStorage:
    """A :class:`LocalStorage` seen as a storage that cannot map: every read is a copy.

    ``requests`` counts the calls (a ``read_many`` is one), ``batches`` lists the spans of each
    ``read_many`` with the name of the thread that made it, ``gate`` (when set) is waited on by
    every ``read_many`` before it reads, so that a test can hold reads back.
    """

    def __init__(self, inner: LocalStorage):
        self.inner = inner
        self.name = inner.name
        self.size = inner.size
        self.requests = 0
        self.batches: list[tuple[str, list[Span]]] = []
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def buffer(self) -> None:
        return None

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def read(self, offset: int, size: int) -> bytes:
        self._count()
        return self.inner.read(offset, size)

    def view(self, offset: int, size: int) -> memoryview:
        self._count()
        return memoryview(self.inner.read(offset, size))

    def read_many(self, spans: Sequence[Span]) -> list[memoryview]:
        if self.gate is not None:
            self.gate.wait()
        spans = [(int(offset), int(size)) for offset, size in spans]
        with self._lock:
            self.requests += 1
            self.batches.append((threading.current_thread().name, spans))
        for offset, size in spans:
            check_span(self, offset, size)
        return [memoryview(self.inner.read(offset, size)) for offset, size in spans]

    def changed(self) -> str | None:
        return self.inner.changed()

    def close(self) -> None:
        self.inner.close()


OPENED: list[UnmappedStorage] = []
"""Every storage :func:`open_unmapped` made, in order (a test clears it before it looks)."""


def open_unmapped(path, **options) -> BznaFile:
    """``BznaFile`` of ``path`` opened through an :class:`UnmappedStorage` of the file: the index
    and every reader above it read without the map."""
    storage = UnmappedStorage(LocalStorage(path))
    OPENED.append(storage)
    file = BznaFile(storage, **options)
    storage.requests = 0  # what the readers above the index ask for, counted from here
    storage.batches.clear()
    return file
