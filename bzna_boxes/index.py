"""The sample index of an MP4 / .bzna file read through its storage: :func:`open`.

``open(path_or_storage)`` walks the top-level box headers (an ``mdat`` payload is never read;
through the whole-file map where the storage has one, else a ``storage.read`` per header),
views ``moov`` and each ``moof`` whole (one ``storage.view`` each), parses the few boxes in
them that locate samples, and turns the sample
tables into two numpy arrays per track: absolute file ``offsets`` (uint64) and ``sizes``
(uint32). The rules are the general ones of ISO/IEC 14496-12: chunk offsets (``stco`` /
``co64``, §8.7.5) expanded through the ``stsc`` runs (§8.7.4) and the sample sizes (``stsz``
per sample or constant, ``stz2``, §8.7.3), then the samples of the movie fragments (``traf`` /
``tfhd`` / ``trun``, §8.8) after those of ``moov``. All of it is vectorised: no Python loop
runs over samples.

The few boxes it needs (``tkhd``, ``hdlr``, the sample tables, ``trex``, ``tfhd``, ``trun``)
are parsed by their schemas (:mod:`bzna_boxes.boxes`, the one description of each layout),
each from the window ``moov`` or its ``moof`` was read into; every other box is passed over by
its header. ``Track.sample_entry`` is parsed by the box engine when first asked for.

The arrays are copies, so they never pin the map; the memoryviews that ``track[i]`` hands out
are slices of it (or, for a storage that does not map, views of the bytes it fetched). :meth:`BznaFile.close` releases the map at once when no such view is
alive, else when the last one is released.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from .errors import BoxError
from .headers import LARGE_SIZE, SIZE_TYPE, child_path, read_header
from .remote import is_url, open_storage
from .storage import LocalStorage, Storage

__all__ = ["BznaFile", "Track", "TopBox", "FileChangedError", "open"]

_UNPARSED = object()


class FileChangedError(RuntimeError):
    """The file at a reader's path is no longer the one it opened (replaced, resized or rewritten)."""


class TopBox(NamedTuple):
    """A top-level box: its type, file offset, total size and header size."""

    type: str
    offset: int
    size: int
    header: int

    @property
    def end(self) -> int:
        return self.offset + self.size


_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image's"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image's"),
    (b"GIF8", "a GIF image's"),
    (b"RIFF", "a RIFF file's (WebP, WAV, AVI)"),
    (b"BM", "a BMP image's"),
    (b"II*\x00", "a TIFF image's"),
    (b"MM\x00*", "a TIFF image's"),
    (b"%PDF", "a PDF document's"),
    (b"PK\x03\x04", "a ZIP archive's"),
    (b"\x1f\x8b", "a gzip file's"),
)


def _check_signature(head: bytes) -> None:
    """A ``BoxError`` when the first box's type is not four characters, naming the format the
    first bytes belong to when they are a well-known one (a JPEG given for a dataset, say)."""
    fourcc = head[4:8]
    if len(fourcc) == 4 and all(0x20 <= byte <= 0x7E or byte == 0xA9 for byte in fourcc):
        return
    known = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
    if known:
        what = f"its first bytes are {known}"
    elif len(head) < 8:
        what = f"its {len(head)} bytes are too few for a box header (8)"
    else:
        what = f"its first box type is {bytes(fourcc)!r}, not four characters"
    raise BoxError(f"not an ISO-BMFF (MP4) file: {what}", offset=0)


class _Window:
    """Bytes of a file starting at file offset ``base``: a whole file (``base`` 0), or one box
    viewed through the storage (``moov``, a ``moof``). Positions stay absolute file offsets."""

    __slots__ = ("view", "base")

    def __init__(self, view: memoryview, base: int = 0):
        self.view = view
        self.base = base

    def head(self, pos: int, nbytes: int) -> tuple[memoryview, int]:
        """A buffer and the index in it of the bytes at file offset ``pos``."""
        return self.view, pos - self.base

    def slice(self, start: int, end: int) -> memoryview:
        return self.view[start - self.base : end - self.base]


class _Heads:
    """A file read a box header at a time through its storage (no whole-file view)."""

    __slots__ = ("storage",)

    def __init__(self, storage: Storage):
        self.storage = storage

    def head(self, pos: int, nbytes: int) -> tuple[bytes, int]:
        return self.storage.read(pos, min(nbytes, self.storage.size - pos)), 0


def _headers(storage: Storage) -> _Window | _Heads:
    """What box headers are read from: the whole-file view where the storage maps, else reads."""
    buffer = storage.buffer
    return _Window(buffer) if buffer is not None else _Heads(storage)


def _walk(src: _Window | _Heads, start: int, end: int, parent: str, warnings: list | None = None) -> Iterator[tuple[str, int, int, int, str]]:
    """Yield ``(type, offset, size, header, path)`` for the boxes filling file bytes ``start .. end``.

    Only headers are read, from ``src``. Paths follow :mod:`bzna_boxes.boxes.path` (``trak[1]``
    is the second ``trak``). ``warnings`` (a list, for the top level of a file): what the box
    engine tolerates there is tolerated the same way and recorded in it (a padding box or
    ``mdat`` cut short by the end of the file; garbage after the last box).
    """
    seen: dict[str, int] = {}
    pos = start
    while pos < end:
        left = end - pos
        if left < 8:
            if warnings is not None and pos > start:
                _tolerated_tail(None, pos, end, "", warnings, True)
                return
            raise BoxError(f"{left} bytes after the last box are too few for a box header", offset=pos, path=parent or None)
        buf, at = src.head(pos, 16)
        fourcc = bytes(buf[at + 4 : at + 8]).decode("latin-1")
        path = child_path(parent, fourcc, seen)
        if warnings is not None:
            tail = _tolerated_tail((buf, at), pos, end, path, warnings, pos > start)
            if tail == "trailing":
                return
            if tail is not None:
                yield (fourcc, pos, *tail, path)
                return
        size, header = read_header(buf, at, left, pos, path)[1:3]
        if size > left:
            raise BoxError(f"'{fourcc}' box size {size} runs past the end of its parent ({left} bytes left)", offset=pos, path=path)
        yield fourcc, pos, size, header, path
        pos += size


def _tolerated_tail(head: tuple[Any, int] | None, pos: int, end: int, path: str, warnings: list, after_a_box: bool):
    """At the top level: "trailing" for garbage from ``pos`` to the end (``after_a_box`` only),
    ``(size, header)`` for a padding box or ``mdat`` cut short by the end of the file, None for
    a sound header (or a known box cut short, or garbage first: the caller's error). ``head`` is
    the ``(buffer, index)`` that :meth:`_Window.head` gave for ``pos`` (None when fewer than 8
    bytes are left)."""
    left = end - pos
    if left >= 8:
        buf, at = head
        size, raw = SIZE_TYPE.unpack_from(buf, at)
        fourcc = raw.decode("latin-1")
        header = 8
        if size == 1 and left >= 16:
            size, header = LARGE_SIZE.unpack_from(buf, at + 8)[0], 16
        if fourcc == "uuid":
            header += 16
        if size == 0 or (size != 1 and header <= size <= left) or (header == 16 and header <= size <= left):
            return None
    from .boxes.core import CLIPPED, PADDED_TYPES, TRAILING, BoxWarning, unreadable_header

    if left >= 8:
        if fourcc in PADDED_TYPES and header <= left and size > left and (size != 1 or header == 16):
            reason = f"'{fourcc}' box size {size} runs past the end of its parent ({left} bytes left)"
            warnings.append(BoxWarning(f"{reason}: {CLIPPED}", offset=pos, path=path))
            return left, header
        reason = unreadable_header(memoryview(buf)[at : at + min(16, left)], 0, left)
        if reason is None or not after_a_box:
            return None
    else:
        reason = f"{left} bytes after the last box are too few for a box header"
        path = None
    warnings.append(BoxWarning(f"{reason}: {TRAILING}", offset=pos, path=path))
    return "trailing"


def _parse(window: _Window, box: tuple):
    """One sample-locating box parsed by its schema (:mod:`bzna_boxes.boxes`): tables are numpy
    views of the window (copy them before keeping them); errors name the file offset and path."""
    from .boxes.core import parse_box

    fourcc, offset, size, header, path = box
    start = offset - window.base
    return parse_box(window.view, start, start + size, window.base, path, path.count("/"))[0]


def _tkhd_track_id(window: _Window, box: tuple) -> int:
    return _parse(window, box).track_id


def _hdlr(window: _Window, box: tuple) -> tuple[str, str]:
    """(handler_type, name) of an hdlr box."""
    hdlr = _parse(window, box)
    return hdlr.handler_type, _hdlr_name(hdlr.name)


def _sample_sizes(window: _Window, box: tuple) -> tuple[int, int, np.ndarray | None]:
    """(constant sample_size or 0, sample_count, per-sample sizes as uint32 or None) of stsz / stz2."""
    table = _parse(window, box)
    sizes = table.entry_sizes
    if box[0] == "stsz" and table.sample_size:
        return table.sample_size, table.sample_count, None
    return 0, table.sample_count, sizes.astype(np.uint32)


def _chunk_offsets(window: _Window, box: tuple) -> np.ndarray:
    return _parse(window, box).chunk_offsets.astype(np.uint64)


def _sample_to_chunk(window: _Window, box: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(first_chunk, samples_per_chunk) of stsc, as int64."""
    runs = _parse(window, box).entries
    return runs["first_chunk"].astype(np.int64), runs["samples_per_chunk"].astype(np.int64)


def _trex(window: _Window, box: tuple) -> tuple[int, int]:
    """(track_id, default_sample_size) of trex."""
    trex = _parse(window, box)
    return trex.track_id, trex.default_sample_size


def _tfhd(window: _Window, box: tuple) -> tuple[int, int, int | None, int | None]:
    """(track_id, flags, base_data_offset, default_sample_size) of tfhd (None: absent)."""
    tfhd = _parse(window, box)
    return tfhd.track_id, tfhd.flags, tfhd.base_data_offset, tfhd.default_sample_size


def _trun(window: _Window, box: tuple) -> tuple[int, int, int | None, np.ndarray | None]:
    """(flags, sample_count, data_offset or None, per-sample sizes as uint32 or None) of trun."""
    trun = _parse(window, box)
    samples = trun.samples
    sizes = samples["sample_size"].astype(np.uint32) if "sample_size" in (samples.dtype.names or ()) else None
    return trun.flags, trun.sample_count, trun.data_offset, sizes


def _parse_entry(stsd: bytes, offset: int, path: str) -> tuple[object, list]:
    """The first sample entry of an stsd box (bytes copied out of the file), by the box engine,
    and the deviations its parse tolerated."""
    from .boxes.core import collect_warnings, parse_box

    with collect_warnings() as warnings:
        box = parse_box(memoryview(stsd), 0, len(stsd), offset, path, path.count("/"))[0]
    return (box.children[0] if box.children else None), warnings


def _hdlr_name(name: str) -> str:
    """The hdlr name without its trailing NUL (or QuickTime's leading length byte)."""
    name = name.split("\x00", 1)[0]
    if len(name) > 1 and ord(name[0]) == len(name) - 1 and ord(name[0]) < 0x20:
        name = name[1:]
    return name


class _Where:
    """Where a track's samples come from, to name them in errors: (first sample, box path) runs."""

    __slots__ = ("starts", "paths")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.paths: list[str] = []

    def add(self, first_sample: int, path: str) -> None:
        self.starts.append(first_sample)
        self.paths.append(path)

    def path_of(self, sample: int) -> str:
        k = int(np.searchsorted(np.asarray(self.starts), sample, side="right")) - 1
        return self.paths[max(k, 0)] if self.paths else ""


class _Budget:
    """The samples a file's tables may declare beyond the entries they hold, checked before any array is made.

    A constant ``stsz`` size, ``stsc``'s samples per chunk and a ``trun`` without a size column
    declare sample counts that no table entry backs: each such sample is counted as at least
    one byte (its declared size when larger), and all of them together must fit in the bytes
    the file stores: its size, or less for a sparse file (``st_blocks``), so that a 10 GB hole
    cannot make a 4-byte count of 2**32 - 1 samples allocate 48 GiB of index.
    """

    __slots__ = ("file_size", "stored", "left")

    def __init__(self, file_size: int, stored: int | None = None):
        self.file_size = file_size
        self.stored = file_size if stored is None else min(file_size, stored)
        self.left = self.stored

    def spend(self, count: int, sample_size: int, what: str, offset: int, path: str) -> None:
        need = count * max(sample_size, 1)
        if need > self.left:
            stored = f"{self.file_size:,} bytes" if self.stored == self.file_size else f"{self.stored:,} bytes stored of {self.file_size:,}"
            raise BoxError(
                f"{what}: {count:,} samples of {sample_size} bytes are more than the file holds ({stored}"
                + (f", {self.stored - self.left:,} already claimed by other tables)" if self.left < self.stored else ")"),
                offset=offset, path=path,
            )
        self.left -= need


class Track:
    """One track's samples: ``offsets`` (uint64, absolute), ``sizes`` (uint32), ``track[i]`` -> memoryview.

    ``track_id`` (tkhd), ``name`` (hdlr name, without its trailing NUL), ``handler`` (``vide``,
    ``soun``, ``meta``...), ``sample_entry`` (the first ``stsd`` entry, parsed: ``hvc1``, ``mett``...,
    or None), ``path`` (the ``trak`` box path). ``track[i]`` is a zero-copy view of the file.
    """

    __slots__ = ("_file", "track_id", "name", "handler", "offsets", "sizes", "path", "_stsd", "_entry", "_entry_warnings")

    def __init__(self, file: "BznaFile", track_id: int, name: str, handler: str, stsd: tuple | None, offsets: np.ndarray, sizes: np.ndarray, path: str):
        self._file = file
        self.track_id = track_id
        self.name = name
        self.handler = handler
        self.offsets = offsets
        self.sizes = sizes
        self.path = path
        self._stsd = stsd  # (the stsd box's bytes, its offset, its path)
        self._entry = _UNPARSED
        self._entry_warnings: list = []

    @property
    def sample_entry(self):
        """The first ``stsd`` entry parsed by the box engine (on first use), or None."""
        if self._entry is _UNPARSED:
            if self._stsd is None:
                self._entry = None
            else:
                self._entry, self._entry_warnings = _parse_entry(*self._stsd)
        return self._entry

    @property
    def sample_entries(self) -> list:
        """Every ``stsd`` entry, parsed by the box engine (at each call), in order."""
        if self._stsd is None:
            return []
        from .boxes.core import parse_box

        stsd, offset, path = self._stsd
        return list(parse_box(memoryview(stsd), 0, len(stsd), offset, path, path.count("/"))[0].children)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> memoryview:
        """Sample ``index`` as a memoryview of the file (negative indices count from the end): a
        slice of the map where the storage maps, else the bytes :meth:`Storage.view` fetched."""
        view = self._file._view
        start = int(self.offsets[index])
        if view is None:
            return self._file._load().storage.view(start, int(self.sizes[index]))
        return view[start : start + int(self.sizes[index])]

    def __iter__(self) -> Iterator[memoryview]:
        state = self._file._load()
        view = state.view
        spans = zip(self.offsets.tolist(), self.sizes.tolist())
        if view is None:
            yield from (state.storage.view(start, size) for start, size in spans)
            return
        for start, size in spans:
            yield view[start : start + size]

    def __repr__(self) -> str:
        return f"<Track {self.track_id} {self.name!r} {self.handler} samples={len(self)} bytes={int(self.sizes.sum(dtype=np.uint64))}>"


class _State:
    """What an open file holds: its storage, the whole-file view where it maps, and the index."""

    __slots__ = ("storage", "view", "size", "boxes", "tracks", "moov", "spans", "warnings", "children")

    def __init__(self, storage, view, size, boxes, tracks, moov, spans, warnings, children):
        self.children = children  # path -> its child boxes, for the boxes indexing walked (find_box)
        self.storage = storage
        self.spans = spans
        self.warnings = warnings
        self.view = view
        self.size = size
        self.boxes = boxes
        self.tracks = tracks
        self.moov = moov


class BznaFile:
    """An MP4 / .bzna file indexed through a :class:`~bzna_boxes.storage.Storage` (see :func:`open`).

    ``source`` is a path (opened as a :class:`~bzna_boxes.storage.LocalStorage`, one read-only
    mmap), a URL (a :class:`~bzna_boxes.remote.RemoteStorage` with ``storage_options`` and
    ``index_cache``) or a storage object, used as given; the file owns it and :meth:`close`
    closes it.
    Opening reads the top-level box headers, then ``moov`` and each ``moof`` with one
    ``storage.view`` each; nothing else of the file is read until asked for.

    ``tracks`` lists :class:`Track` in file order; ``track(name_or_id)`` finds one. A context
    manager; :meth:`close` releases the map (at once, or when the last view that
    ``track[i]`` handed out is released: those views are the caller's). It pickles (by path
    for a local file, by pickling its storage otherwise: a storage that does not pickle makes
    a file that does not) and a copy reopens the file on first use, so it can go to
    ``DataLoader`` worker processes.

    A sample outside the file or overlapping ``moov`` or a ``moof`` raises :class:`BoxError`
    naming the track and the sample; ``check_bounds=False`` leaves that to the caller
    (``bzna verify`` reports them all rather than the first).
    """

    def __init__(self, source: str | os.PathLike | Storage, *, check_bounds: bool = True, storage_options: Mapping[str, Any] | None = None, index_cache: bool | str | os.PathLike | None = None):
        if isinstance(source, (str, os.PathLike)) and is_url(source):
            source = open_storage(source, storage_options, index_cache=index_cache)
        if isinstance(source, (str, bytes, os.PathLike)):
            self._path = os.fspath(source)
            self._given: Storage | None = None
        else:
            self._path = source.name
            self._given = source
        self._check_bounds = check_bounds
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._view: memoryview | None = None
        self._closed = False
        self._load()

    def __reduce__(self):
        given = self._given
        if given is None or isinstance(given, LocalStorage):
            return _reopen, (self._path,)
        return _reopen, (given,)

    # --- opening and closing -------------------------------------------------------------

    def _load(self) -> _State:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is not None:
                return self._state
            if self._closed:
                raise ValueError(f"{self._path}: the file is closed")
            storage = self._given if self._given is not None else LocalStorage(self._path)
            try:
                _check_signature(storage.read(0, min(16, storage.size)))
                budget = _Budget(storage.size, getattr(storage, "stored_bytes", None))
                boxes, tracks, moov, spans, warnings, children = _index(self, storage, budget, self._check_bounds)
                indexed = getattr(storage, "indexed", None)
                if indexed is not None:
                    indexed()  # a remote storage keeps what indexing read in its index cache
                view = storage.buffer
            except BaseException:
                view = None
                storage.close()
                raise
            drop_pages = getattr(storage, "drop_pages", None)
            if moov is not None and drop_pages is not None:
                drop_pages(moov.offset, moov.size)
            self._state = _State(storage, view, storage.size, boxes, tracks, moov, spans, warnings, children)
            self._view = view
            return self._state

    def _require_view(self) -> memoryview:
        state = self._load()
        if state.view is None:
            raise ValueError(f"{state.storage.name}: {type(state.storage).__name__} does not map the whole file; read byte ranges through BznaFile.storage")
        return state.view

    def close(self) -> None:
        """Release the map; views handed out earlier keep it alive until they are released."""
        with self._lock:
            state, self._state = self._state, None
            self._view = None
            self._closed = True
        if state is None:
            return
        state.storage.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "BznaFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- contents -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def storage(self) -> Storage:
        """What the file's bytes are read through (:mod:`bzna_boxes.storage`)."""
        return self._load().storage

    @property
    def size(self) -> int:
        """File size in bytes."""
        return self._load().size

    @property
    def tracks(self) -> list[Track]:
        """The tracks, in file order."""
        return self._load().tracks

    @property
    def boxes(self) -> list[TopBox]:
        """The top-level boxes (type, offset, size, header size), in file order."""
        return self._load().boxes

    @property
    def moov(self) -> TopBox | None:
        """The ``moov`` box, or None."""
        return self._load().moov

    @property
    def buffer(self) -> memoryview:
        """The whole file as a read-only memoryview (zero copy; slices pin the map like ``track[i]``).

        Only a storage that maps the whole file has one (a local file does); for any other a
        ``ValueError`` naming the storage says to read ranges through :attr:`storage`.
        """
        return self._require_view()

    @property
    def warnings(self) -> list:
        """What the reading tolerated (:class:`~bzna_boxes.boxes.BoxWarning`: reason, offset, box path).

        An ``mdat`` cut short by the end of the file, bytes after the last box, an ``stsd`` holding
        more boxes than its count, a sample entry's box cut short: the file is read as FFmpeg reads
        it, and each deviation is listed here (sample entries are parsed to find theirs).
        """
        state = self._load()
        found = list(state.warnings)
        for track in state.tracks:
            try:
                track.sample_entry
            except BoxError:
                continue  # an error, not a warning: verify reports it
            found.extend(track._entry_warnings)
        return found

    def changed(self) -> str | None:
        """How the file at :attr:`path` differs from the one opened (replaced, removed, resized,
        modified), or None when it is the same (or nothing is open yet). One ``stat`` call.

        A reader keeps reading the file it opened: one replaced by rename (as ``bzna`` writes)
        stays readable through the map, but it is not what the path names any more.
        """
        state = self._state
        if state is None:
            return None
        return state.storage.changed()

    def check_unchanged(self) -> None:
        """Raise :class:`FileChangedError` when :meth:`changed` finds a difference."""
        reason = self.changed()
        if reason is not None:
            raise FileChangedError(f"{self._path} changed since it was opened: {reason}; open it again to read the new file")

    def metadata_spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` of the boxes no sample may overlap: moov and every moof."""
        return list(self._load().spans)

    def mdat_spans(self) -> np.ndarray:
        """``(start, end)`` of every ``mdat`` payload, in file order, as an (N, 2) uint64 array."""
        spans = [(b.offset + b.header, b.end) for b in self.boxes if b.type == "mdat"]
        return np.array(spans, dtype=np.uint64).reshape(-1, 2)

    def find_box(self, path: str) -> TopBox | None:
        """The box at ``path`` (such as ``moov/udta/bzsc``; first boxes of each type), found by
        reading box headers only, or None."""
        state = self._load()
        src = _headers(state.storage)
        steps = path.strip("/").split("/")
        found = next((box for box in state.boxes if box.type == steps[0]), None)
        walked = steps[0]
        for step in steps[1:]:
            if found is None:
                return None
            known = state.children.get(walked)  # walked when indexing: no header read again
            if known is not None:
                found = next((box for box in known if box.type == step), None)
            else:
                inner = next((box for box in _walk(src, found.offset + found.header, found.end, walked) if box[0] == step), None)
                found = TopBox(*inner[:4]) if inner is not None else None
            walked = f"{walked}/{step}"
        return found

    def parsed_box(self, path: str) -> Any | None:
        """The box at ``path`` (see :meth:`find_box`) parsed with its schema, or None when the
        file has none; a ``BoxError`` when it is malformed."""
        from .boxes.core import parse_box

        where = self.find_box(path)
        if where is None:
            return None
        view = self.storage.view(where.offset, where.size)
        return parse_box(view, 0, where.size, where.offset, path, path.count("/"))[0]

    def checksum_table(self) -> Any | None:
        """The parsed sample checksum table (``moov/udta/bzsc``, see :mod:`bzna_boxes.layout`), or
        None when the file has none; a ``BoxError`` when it is malformed."""
        from . import layout

        return self.parsed_box(f"moov/{layout.CHECKSUMS_PATH}")

    def class_names(self) -> list[str] | None:
        """The class names stored in the file (``moov/udta/bzcl``; name k is target k's), or None
        when the file has none; a ``BoxError`` when it is malformed."""
        from . import layout

        path = f"moov/{layout.CLASSES_PATH}"
        box = self.parsed_box(path)
        if box is None:
            return None
        trailing = box.get("trailing")
        if trailing:  # an entry_count smaller than the names stored: which is right cannot be told
            where = self.find_box(path)
            raise BoxError(f"{len(trailing):,} bytes after the {box.entry_count:,} class names of its entry_count", offset=where.offset + where.size - len(trailing), path=path)
        return list(box.class_names)

    def track(self, name_or_id: str | int) -> Track:
        """The first track whose hdlr name (str) or track_id (int) matches; ``KeyError`` if none."""
        for t in self.tracks:
            if (t.name == name_or_id) if isinstance(name_or_id, str) else (t.track_id == name_or_id):
                return t
        names = ", ".join(f"{t.track_id} {t.name!r}" for t in self.tracks) or "none"
        raise KeyError(f"{self._path}: no track {name_or_id!r} (tracks: {names})")

    def __repr__(self) -> str:
        if self._state is None:
            return f"<BznaFile {self._path!r} {'closed' if self._closed else 'not loaded'}>"
        return f"<BznaFile {self._path!r} size={self._state.size} tracks={[t.name for t in self._state.tracks]}>"


def _reopen(source: str | Storage) -> BznaFile:
    """A BznaFile that opens ``source`` (a path or a storage) on first use (what unpickling gives)."""
    file = BznaFile.__new__(BznaFile)
    file._path = source if isinstance(source, str) else source.name
    file._given = None if isinstance(source, str) else source
    file._check_bounds = True
    file._lock = threading.Lock()
    file._state = None
    file._view = None
    file._closed = False
    return file


def open(source: str | os.PathLike | Storage, storage_options: Mapping[str, Any] | None = None, *, index_cache: bool | str | os.PathLike | None = None) -> BznaFile:  # noqa: A001  (bzna_boxes.open, as the design names it)
    """Open an MP4 / .bzna file and index its samples (see :class:`BznaFile`): a path, a
    :class:`~bzna_boxes.storage.Storage`, or a URL (``s3://``, ``gs://``, ``https://``...: see
    :mod:`bzna_boxes.remote`; ``storage_options`` go to fsspec, ``index_cache`` is the index
    cache's folder, or False for none)."""
    return BznaFile(source, storage_options=storage_options, index_cache=index_cache)


# --- the index ------------------------------------------------------------------------------


def _index(file: BznaFile, storage: Storage, budget: _Budget, check_bounds: bool = True) -> tuple[list[TopBox], list[Track], TopBox, list, list, dict[str, list[TopBox]]]:
    """Walk the top-level headers, view moov and each moof whole through ``storage`` (one
    ``view`` each) and read them, build every track's arrays."""
    size = budget.file_size
    warnings: list = []
    boxes = [TopBox(t, off, sz, hdr) for t, off, sz, hdr, _ in _walk(_headers(storage), 0, size, "", warnings)]
    moovs = [b for b in boxes if b.type == "moov"]
    if not moovs:
        raise BoxError("no moov box: the file has no sample index", offset=0)
    if len(moovs) > 1:
        raise BoxError("more than one moov box", offset=moovs[1].offset, path="moov[1]")
    moov = moovs[0]
    view = _Window(storage.view(moov.offset, moov.size), moov.offset)
    built: list[tuple[dict, list, list, _Where]] = []  # per track: info, offsets parts, sizes parts, where
    trex: dict[int, int] = {}  # track_id -> default_sample_size
    children: dict[str, list[TopBox]] = {"moov": []}
    for fourcc, off, sz, hdr, path in _walk(view, moov.offset + moov.header, moov.end, "moov"):
        children["moov"].append(TopBox(fourcc, off, sz, hdr))
        if fourcc == "udta" and "moov/udta" not in children:
            try:  # its boxes, for find_box; a udta that is not boxes (QuickTime's end marker) is read when asked
                children["moov/udta"] = [TopBox(*box[:4]) for box in _walk(view, off + hdr, off + sz, path)]
            except BoxError:
                pass
        if fourcc == "trak":
            info, offsets, sizes = _trak(view, off + hdr, off + sz, path, budget, check_bounds)
            where = _Where()
            where.add(0, info["stbl_path"])
            built.append((info, [offsets], [sizes], where))
        elif fourcc == "mvex":
            for f2, o2, s2, h2, p2 in _walk(view, off + hdr, off + sz, path):
                if f2 == "trex":
                    track_id, default_size = _trex(view, (f2, o2, s2, h2, p2))
                    trex[track_id] = default_size
    by_id = {entry[0]["track_id"]: entry for entry in built}
    moof_spans = []
    moof_index = 0
    for box in boxes:
        if box.type != "moof":
            continue
        path = f"moof[{moof_index}]" if moof_index else "moof"
        moof_index += 1
        moof_spans.append((box.offset, box.end))
        moof = _Window(storage.view(box.offset, box.size), box.offset)
        for track_id, offsets, sizes, traf_path in _moof(moof, box, path, trex, budget):
            entry = by_id.get(track_id)
            if entry is None:
                raise BoxError(f"track fragment for track_id {track_id}, which moov does not declare", offset=box.offset, path=traf_path)
            entry[3].add(sum(len(s) for s in entry[2]), traf_path)
            entry[1].append(offsets)
            entry[2].append(sizes)
    tracks = []
    for info, offset_parts, size_parts, where in built:
        offsets = offset_parts[0] if len(offset_parts) == 1 else np.concatenate(offset_parts)
        sizes = size_parts[0] if len(size_parts) == 1 else np.concatenate(size_parts)
        if check_bounds:
            _check_bounds(info, where, offsets, sizes, size, moov, moof_spans)
        tracks.append(Track(file, info["track_id"], info["name"], info["handler"], info["stsd"], offsets, sizes, info["path"]))
    return boxes, tracks, moov, [(moov.offset, moov.end), *moof_spans], warnings, children


def _label(info: dict) -> str:
    return f"track {info['track_id']} {info['name']!r}"


def _trak(view: _Window, start: int, end: int, path: str, budget: _Budget, check_bounds: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read one trak: ids, names, sample entry, and its moov samples' offsets and sizes."""
    info = {"path": path, "track_id": None, "name": "", "handler": "", "stsd": None, "stbl_path": path}
    stbl = None
    for fourcc, off, sz, hdr, p in _walk(view, start, end, path):
        if fourcc == "tkhd":
            info["track_id"] = _tkhd_track_id(view, (fourcc, off, sz, hdr, p))
        elif fourcc == "mdia":
            for f2, o2, s2, h2, p2 in _walk(view, off + hdr, off + sz, p):
                if f2 == "hdlr":
                    info["handler"], info["name"] = _hdlr(view, (f2, o2, s2, h2, p2))
                elif f2 == "minf":
                    for f3, o3, s3, h3, p3 in _walk(view, o2 + h2, o2 + s2, p2):
                        if f3 == "stbl":
                            stbl = (o3, s3, h3, p3)
    if info["track_id"] is None:
        raise BoxError("trak has no tkhd", offset=start, path=path)
    if stbl is None:
        raise BoxError(f"{_label(info)} has no mdia/minf/stbl", offset=start, path=path)
    o3, s3, h3, p3 = stbl
    info["stbl_path"] = p3
    tables: dict[str, tuple] = {}
    for fourcc, off, sz, hdr, p in _walk(view, o3 + h3, o3 + s3, p3):
        if fourcc in ("stsd", "stsz", "stz2", "stco", "co64", "stsc") and fourcc not in tables:
            tables[fourcc] = (fourcc, off, sz, hdr, p)
    if "stsd" in tables:
        _, off, sz, _, p = tables["stsd"]
        # a copy, parsed when asked for: the entry lives as long as the track, not the map
        info["stsd"] = (bytes(view.slice(off, off + sz)), off, p)
    offsets, sizes = _sample_table(view, info, tables, budget, check_bounds)
    return info, offsets, sizes


def _sample_table(view: _Window, info: dict, tables: dict, budget: _Budget, check_bounds: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The moov samples of one track: chunk offsets through the stsc runs, plus the sizes.

    Every count is checked against the entries the tables hold (and a constant size's against
    the :class:`_Budget`) before an array of that many samples is made.
    """
    label = _label(info)
    file_size = budget.file_size
    stbl = info["stbl_path"]
    size_key = "stsz" if "stsz" in tables else "stz2" if "stz2" in tables else None
    chunk_key = "stco" if "stco" in tables else "co64" if "co64" in tables else None
    if size_key is None:
        raise BoxError(f"{label} has neither stsz nor stz2", path=stbl)
    if chunk_key is None:
        raise BoxError(f"{label} has neither stco nor co64", path=stbl)
    if "stsc" not in tables:
        raise BoxError(f"{label} has no stsc", path=stbl)
    size_at, chunk_at, stsc_at = tables[size_key][1], tables[chunk_key][1], tables["stsc"][1]
    size_path, chunk_path, stsc_path = tables[size_key][4], tables[chunk_key][4], tables["stsc"][4]
    sample_size, n_samples, sizes = _sample_sizes(view, tables[size_key])
    chunks = _chunk_offsets(view, tables[chunk_key])
    first, per_chunk = _sample_to_chunk(view, tables["stsc"])
    n_chunks = len(chunks)

    if len(first) == 0:
        if n_chunks or n_samples:
            raise BoxError(f"{label}: stsc is empty but there are {n_chunks} chunks and {n_samples} samples (sample 0 has no chunk)", offset=stsc_at, path=stsc_path)
        return np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    # chunks in each run (the last run goes to the last chunk); the samples before each run
    ends = np.append(first, n_chunks + 1)
    chunks_in_run = np.diff(ends)
    counted = np.maximum(np.diff(np.minimum(ends, n_chunks + 1)), 0)  # chunks that exist, for messages
    samples_before = np.concatenate(([0], np.cumsum(counted * per_chunk)))
    if first[0] != 1:
        raise BoxError(f"{label}: stsc entry 0 starts at chunk {first[0]}, not 1 (sample 0 has no chunk)", offset=stsc_at, path=stsc_path)
    past = np.flatnonzero(first > n_chunks)
    if len(past):
        k = int(past[0])
        raise BoxError(
            f"{label}: stsc entry {k} (from sample {int(samples_before[k])}) points to chunk {first[k]}, past the last chunk ({n_chunks} chunks in {chunk_key})",
            offset=stsc_at, path=stsc_path,
        )
    unordered = np.flatnonzero(chunks_in_run[:-1] <= 0)
    if len(unordered):
        k = int(unordered[0]) + 1
        raise BoxError(
            f"{label}: stsc entry {k} (from sample {int(samples_before[k])}) starts at chunk {first[k]}, not after entry {k - 1}'s chunk {first[k - 1]}",
            offset=stsc_at, path=stsc_path,
        )
    in_chunks = int(samples_before[-1])
    if sizes is None and in_chunks == n_samples:
        # a constant size: neither stsz nor stsc holds an entry per sample
        budget.spend(n_samples, sample_size, f"{label}: {size_key}", size_at, size_path)
        sizes = np.full(n_samples, sample_size, dtype=np.uint32)
    if in_chunks > n_samples:
        raise BoxError(
            f"{label}: the size table is shorter than the chunk table: {size_key} has {n_samples} sizes, the chunks hold {in_chunks} samples (sample {n_samples} has no size)",
            offset=size_at, path=size_path,
        )
    if in_chunks < n_samples:
        raise BoxError(
            f"{label}: the chunk table is shorter than the size table: the chunks hold {in_chunks} samples, {size_key} has {n_samples} (sample {in_chunks} has no chunk)",
            offset=chunk_at, path=chunk_path,
        )
    if check_bounds and n_chunks and int(chunks.max()) > file_size:
        c = int(np.flatnonzero(chunks > np.uint64(file_size))[0])
        sample = int(np.repeat(per_chunk, chunks_in_run)[:c].sum())
        raise BoxError(
            f"{label}: sample {sample} (chunk {c}) at offset {int(chunks[c])} lies outside the file ({file_size} bytes)",
            offset=int(chunks[c]), path=chunk_path,
        )
    if n_chunks == n_samples and len(first) == 1 and per_chunk[0] == 1:
        return chunks, sizes  # one sample per chunk: the seed's layout
    spc = np.repeat(per_chunk, chunks_in_run)
    before = np.zeros(n_samples + 1, np.int64)
    np.cumsum(sizes, out=before[1:])
    first_of_chunk = np.cumsum(spc) - spc
    delta = chunks.astype(np.int64) - before[first_of_chunk]
    return (before[:-1] + np.repeat(delta, spc)).astype(np.uint64), sizes


def _moof(view: _Window, moof: TopBox, path: str, trex: dict, budget: _Budget):
    """Yield ``(track_id, offsets, sizes, traf_path)`` for each track fragment of a moof."""
    from .boxes.fragment import DEFAULT_BASE_IS_MOOF

    previous_end = moof.offset  # the base of a traf without one: end of the previous traf's data
    for fourcc, off, sz, hdr, p in _walk(view, moof.offset + moof.header, moof.end, path):
        if fourcc != "traf":
            continue
        tfhd = None
        truns = []
        for box in _walk(view, off + hdr, off + sz, p):
            if box[0] == "tfhd" and tfhd is None:
                tfhd = _tfhd(view, box)
            elif box[0] == "trun":
                truns.append((box, _trun(view, box)))
        if tfhd is None:
            raise BoxError("traf has no tfhd", offset=off, path=p)
        track_id, flags, base, default_size = tfhd
        if base is None:
            base = moof.offset if flags & DEFAULT_BASE_IS_MOOF else previous_end
        if default_size is None:
            default_size = trex.get(track_id, 0)
        offsets_parts, sizes_parts = [], []
        position = base
        for box, (run_flags, count, data_offset, sizes) in truns:
            if sizes is None:  # every sample takes the default size: the trun holds no size per sample
                budget.spend(count, default_size, f"trun of track_id {track_id}", box[1], box[4])
                sizes = np.full(count, default_size, np.uint32)
            if data_offset is not None:
                position = base + data_offset
            if position < 0:
                raise BoxError(f"trun of track_id {track_id}: data offset {position} is before the start of the file", offset=box[1], path=box[4])
            starts = np.zeros(count + 1, np.int64)
            np.cumsum(sizes, out=starts[1:])
            offsets_parts.append((starts[:-1] + position).astype(np.uint64))
            sizes_parts.append(sizes)
            position += int(starts[-1])
        previous_end = position
        if offsets_parts:
            yield track_id, np.concatenate(offsets_parts), np.concatenate(sizes_parts), p


def _check_bounds(info: dict, where: _Where, offsets: np.ndarray, sizes: np.ndarray, file_size: int, moov: TopBox, moof_spans: list) -> None:
    """Every sample inside the file and off the metadata boxes, else BoxError naming it."""
    if not len(offsets):
        return
    problem = sample_problems(offsets, sizes, file_size, [(moov.offset, moov.end), *moof_spans], limit=1)
    if problem:
        index, reason = problem[0]
        raise BoxError(f"{_label(info)}: sample {index} {reason}", offset=int(offsets[index]), path=where.path_of(index))


def _max_end(offsets: np.ndarray, sizes: np.ndarray, block: int = 1 << 16) -> int:
    """max(offsets + sizes), a block at a time (faster than one big temporary)."""
    buf = np.empty(min(block, len(offsets)), np.uint64)
    highest = 0
    for start in range(0, len(offsets), block):
        part = buf[: min(block, len(offsets) - start)]
        np.add(offsets[start : start + block], sizes[start : start + block], out=part)
        highest = max(highest, int(part.max()))
    return highest


def sample_problems(offsets: np.ndarray, sizes: np.ndarray, file_size: int, forbidden: list[tuple[int, int]], limit: int | None = None) -> list[tuple[int, str]]:
    """``(sample index, reason)`` for samples outside the file or overlapping a ``forbidden`` span.

    ``forbidden`` holds ``(start, end)`` byte spans that no sample may touch (moov, moofs).
    Vectorised; returns at most ``limit`` problems (all when None), lowest index first.
    """
    if not len(offsets):
        return []
    lowest, last_start, highest = int(offsets.min()), int(offsets.max()), _max_end(offsets, sizes)
    spans = sorted((int(a), int(b)) for a, b in forbidden)
    if last_start <= file_size and highest <= file_size and all(b <= lowest or a >= highest for a, b in spans):
        return []  # the usual case: every sample inside the file, none near a metadata box
    ends = offsets + sizes
    size = np.uint64(file_size)
    outside = (offsets > size) | (ends > size)
    bad = outside.copy()
    if spans:
        starts = np.array([a for a, _ in spans], np.uint64)
        stops = np.array([b for _, b in spans], np.uint64)
        k = np.searchsorted(starts, ends, side="left") - 1  # the last span starting before each sample's end
        bad |= (k >= 0) & (sizes > 0) & (stops[np.maximum(k, 0)] > offsets) & ~outside
    found = np.flatnonzero(bad)
    if limit is not None:
        found = found[:limit]
    out = []
    for i in found.tolist():
        start, length = int(offsets[i]), int(sizes[i])
        if outside[i]:
            out.append((i, f"at offset {start} (size {length}) lies outside the file ({file_size} bytes)"))
        else:
            a, b = next((a, b) for a, b in reversed(spans) if a < start + length)
            out.append((i, f"at offset {start} (size {length}) overlaps the metadata box at bytes {a}..{b}"))
    return out
