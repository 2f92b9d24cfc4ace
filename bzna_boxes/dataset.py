"""A .bzna file as a dataset: :class:`Dataset`, :class:`ImageNet` (splits) and :class:`Sample`.

``ds[i]`` is a :class:`Sample`: ``.data`` (the inner MP4, the ``bzna_input`` track's sample
i, a zero-copy view where the file's storage maps it), ``.target`` (``bzna_target``, -1 where
the dataset has none), ``.filename`` (``bzna_fname``) and ``.image(track)`` (one of the inner
pictures as an :class:`~bzna_boxes.image.EncodedImage`). Every byte comes through the file's
storage (:mod:`bzna_boxes.storage`); ``ds.fetch(indices)`` reads many samples in one request. A sample whose input has size 0 is *missing* (the
seed's ImageNet lacks 81 images): ``.missing`` is true and ``.image()`` raises
:class:`MissingSampleError`.

``ds[i]`` costs one small object; the arrays it reads (offsets, sizes, all the targets at
once) are built when first needed and shared by every sample. The inner MP4 is walked box
header by box header, reading only the boxes that locate the picture, because a general
parse of its four tracks costs a few milliseconds; the ``hvcC`` record is parsed by the box
engine, once per distinct record (a dataset has a handful: one per frame size).
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from functools import cached_property, lru_cache
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from . import layout
from .boxes import lookup
from .boxes.fields import Fixed16_16, entry_struct, field_offset, field_struct
from .boxes.sample_entry import VISUAL_SAMPLE_ENTRY
from .errors import BoxError
from .headers import LARGE_SIZE as _U64
from .headers import SIZE_TYPE as _HEADER
from .image import CleanAperture, EncodedImage
from .index import BznaFile, _walk, _Window
from .storage import gather

__all__ = ["Dataset", "ImageNet", "Sample", "MissingSampleError", "SPLITS"]

SPLITS = ("train", "val", "test")


class MissingSampleError(LookupError):
    """The sample has no image (its input sample has size 0: an image missing from the dataset)."""


class _Columns:
    """The arrays a dataset reads, shared by its samples; built when the file is (re)opened.

    Samples index memoryviews of the numpy arrays (``at``, ``size``, ``target_of``, ``names``):
    indexing one gives a Python int, several times faster than a numpy scalar, without a copy.
    ``names`` interleaves each filename's start and end in ``name_bytes`` (a local file's map,
    else the filename track's bytes fetched at once), so that one cache line holds both. ``view`` is the whole file
    where the storage maps it, else None: samples then read through ``storage``.
    """

    __slots__ = ("file", "storage", "view", "input_offsets", "input_sizes", "at", "size", "length", "lock", "targets", "target_of", "names", "name_bytes", "__weakref__")

    def __init__(self, file: BznaFile):
        self.file = file
        self.storage = file.storage
        self.view = self.storage.buffer
        inputs = file.track(layout.INPUT_TRACK)
        self.input_offsets = inputs.offsets
        self.input_sizes = inputs.sizes
        self.at = memoryview(inputs.offsets)
        self.size = memoryview(inputs.sizes)
        self.length = len(inputs)
        self.lock = threading.Lock()
        self.targets: np.ndarray | None = None
        self.target_of: memoryview | None = None
        self.names: memoryview | None = None
        self.name_bytes: bytes | mmap.mmap = b""  # sliced into bytes

    def load_targets(self) -> memoryview:
        with self.lock:
            if self.target_of is None:
                self.targets = _read_targets(self.file, self.length)
                self.target_of = memoryview(self.targets)
            return self.target_of

    def load_filenames(self) -> memoryview:
        with self.lock:
            if self.names is None:
                spans = np.zeros(2 * self.length, np.uint64)  # start, end, start, end, ...
                try:
                    track = self.file.track(layout.FILENAME_TRACK)
                except KeyError:
                    pass  # no filenames: every one is ""
                else:
                    n = min(self.length, len(track))
                    # sliced as bytes: a bytes slice decodes several times faster than a memoryview's
                    self.name_bytes, starts = gather(self.storage, track.offsets[:n], track.sizes[:n], as_bytes=True)
                    spans[0 : 2 * n : 2] = starts
                    spans[1 : 2 * n : 2] = starts + track.sizes[:n]
                    _drop_terminators(spans, np.frombuffer(self.name_bytes, np.uint8))
                self.names = memoryview(spans)
            return self.names


def _drop_terminators(spans: np.ndarray, data: np.ndarray) -> None:
    """End each (start, end) name span before its last byte where that byte is a NUL.

    The tools that made the seed's ImageNet wrote each filename followed by a NUL, as C strings;
    a filename never contains one, so the NUL is not part of the name.
    """
    starts, ends = spans[0::2], spans[1::2]
    nonempty = np.flatnonzero(ends > starts)
    terminated = nonempty[data[ends[nonempty] - np.uint64(1)] == 0]
    ends[terminated] -= np.uint64(1)


def _read_targets(file: BznaFile, length: int) -> np.ndarray:
    """Every target in one vectorised read: int64, -1 where a sample has none.

    The usual track (every target present, back to back) is one ``view``; else the targets are
    gathered from the whole map where the storage maps, from their runs fetched at once elsewhere.
    """
    out = np.full(length, layout.NO_TARGET, np.int64)
    try:
        track = file.track(layout.TARGET_TRACK)
    except KeyError:
        return out
    n = min(length, len(track))
    offsets, sizes = track.offsets[:n], track.sizes[:n]
    itemsize = layout.TARGET_DTYPE.itemsize
    wrong = np.flatnonzero((sizes != itemsize) & (sizes != 0))
    if len(wrong):
        i = int(wrong[0])
        raise BoxError(
            f"track {track.track_id} {track.name!r}: sample {i} has {int(sizes[i])} bytes, a target has {itemsize} (or 0: none)",
            offset=int(offsets[i]), path=track.path,
        )
    if not n:
        return out
    storage = file.storage
    if sizes.all() and (n == 1 or bool(np.all(np.diff(offsets) == itemsize))):
        out[:n] = np.frombuffer(storage.view(int(offsets[0]), n * itemsize), layout.TARGET_DTYPE)  # one block
        return out
    present = np.flatnonzero(sizes)
    if len(present):
        data, positions = gather(storage, offsets[present], sizes[present])
        # An int64 at every byte offset (stride 1): one fancy-index gather reads them all.
        every = np.ndarray((len(data) - itemsize + 1,), dtype=layout.TARGET_DTYPE, buffer=data, strides=(1,))
        out[present] = every[positions]
        del every
    return out


class Sample:
    """One dataset entry: ``data``, ``target``, ``filename``, ``missing``, ``image(track)``.

    ``index`` is its position in the file (in :class:`ImageNet` splits too). ``data`` and the
    payload of ``image()`` are views of the file where its storage maps it (they keep the map
    alive while they live), else of the bytes fetched for them.
    A sample pickles as its file's path and its index (so ``DataLoader`` workers can return
    samples): the copy reads the same file, opened once per process for all the copies.
    """

    __slots__ = ("_cols", "index")

    def __init__(self, cols: _Columns, index: int):
        self._cols = cols
        self.index = index

    @property
    def data(self) -> memoryview:
        """The inner MP4 (the ``bzna_input`` sample), zero-copy where the storage maps the file;
        empty when missing."""
        cols = self._cols
        start = cols.at[self.index]
        if cols.view is None:
            return cols.storage.view(start, cols.size[self.index])
        return cols.view[start : start + cols.size[self.index]]

    @property
    def size(self) -> int:
        """Bytes of the inner MP4 (0 when missing)."""
        return self._cols.size[self.index]

    @property
    def missing(self) -> bool:
        """True when the dataset has no image for this entry (an input sample of size 0)."""
        return not self._cols.size[self.index]

    @property
    def target(self) -> int:
        """The class target (``bzna_target``); -1 where the dataset has none."""
        target_of = self._cols.target_of
        if target_of is None:
            target_of = self._cols.load_targets()
        return target_of[self.index]

    @property
    def filename(self) -> str:
        """The original filename (``bzna_fname``, UTF-8, a terminating NUL dropped); "" where the dataset has none."""
        cols = self._cols
        names = cols.names
        if names is None:
            names = cols.load_filenames()
        j = 2 * self.index
        return cols.name_bytes[names[j] : names[j + 1]].decode("utf-8", "surrogateescape")

    def image(self, track: str = layout.INPUT_TRACK) -> EncodedImage:
        """The picture of inner track ``track`` (``bzna_input`` or ``bzna_thumb``), not decoded.

        The thumbnail is the image itself when the image fits 512x512.
        """
        cols = self._cols
        i = self.index
        size = cols.size[i]
        if not size:
            raise MissingSampleError(f"sample {i} of {cols.file.path} is missing (its {layout.INPUT_TRACK} sample is empty): it has no image")
        start = cols.at[i]
        view = cols.view
        if view is None:
            return _image(cols, i, cols.storage.view(start, size), start, track)
        try:
            return inner_image(view, start, start + size, track, f"{layout.INPUT_TRACK}[{i}]")
        except BoxError:
            cols.file.check_unchanged()  # a file replaced underneath: say that, not what its bytes look like
            raise

    def __reduce__(self):
        return _unpickle_sample, (self._cols.file, self.index)

    def __repr__(self) -> str:
        if self.missing:
            return f"<Sample {self.index} missing>"
        return f"<Sample {self.index} target={self.target} filename={self.filename!r} size={self.size}>"


class _FetchedSample(Sample):
    """A sample whose inner MP4 was fetched with others (:meth:`Dataset.fetch`): ``data`` and
    ``image()`` read those bytes."""

    __slots__ = ("_data",)

    def __init__(self, cols: _Columns, index: int, data: memoryview):
        self._cols = cols
        self.index = index
        self._data = data

    @property
    def data(self) -> memoryview:
        return self._data

    def image(self, track: str = layout.INPUT_TRACK) -> EncodedImage:
        if not self.size:
            return super().image(track)  # MissingSampleError
        return _image(self._cols, self.index, self._data, self._cols.at[self.index], track)


def _image(cols: _Columns, index: int, data: memoryview, start: int, track: str) -> EncodedImage:
    """The picture of inner track ``track`` of sample ``index``, whose inner MP4 is ``data``
    (fetched from file offset ``start``); errors name file offsets."""
    try:
        return inner_image(data, 0, len(data), track, f"{layout.INPUT_TRACK}[{index}]")
    except BoxError as exc:
        cols.file.check_unchanged()  # a file replaced underneath: say that, not what its bytes look like
        raise at_file_offset(exc, start) from None


def at_file_offset(error: BoxError, base: int) -> BoxError:
    """``error``, raised in a view whose first byte is the file's byte ``base``, naming file offsets."""
    return type(error)(error.reason, offset=None if error.offset is None else error.offset + base, path=error.path)


_UNPICKLED: "weakref.WeakValueDictionary[tuple, _Columns]" = weakref.WeakValueDictionary()
_UNPICKLED_LOCK = threading.Lock()


def _unpickle_sample(file: BznaFile, index: int) -> Sample:
    """Sample ``index`` of ``file`` (a BznaFile that pickled by path): what unpickling gives.

    The samples unpickled in a process share the columns of their file while any of them lives,
    as long as the path names the same file (device, inode, size and modification time).
    """
    info = os.stat(file.path)
    key = (file.path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    with _UNPICKLED_LOCK:
        cols = _UNPICKLED.get(key)
        if cols is None:
            cols = _UNPICKLED[key] = _Columns(file)
    return Sample(cols, index)


class Dataset:
    """A .bzna file as a sequence of :class:`Sample` (``len``, ``ds[i]``, iteration).

    ``path`` is a file name, a URL (``s3://``, ``https://``...: read through
    :class:`~bzna_boxes.remote.RemoteStorage`, with ``storage_options`` for fsspec) or an open
    :class:`~bzna_boxes.index.BznaFile`. ``targets`` holds
    every target (int64, -1 for none), read in one go. Pickles by path (the copy reopens the
    file on first use), so a dataset can go to ``DataLoader`` worker processes.

    ``ds[10:20]`` (any slice) and ``ds[array]`` (integer indices, or a boolean mask of
    ``len(ds)``) are views: datasets of the same class over those samples, sharing the open
    file, with their own ``len``, ``targets``, ``sizes`` and ``missing``; ``Sample.index``
    stays the position in the file.
    """

    def __init__(self, path: str | os.PathLike | BznaFile, *, storage_options: Mapping[str, Any] | None = None):
        owned = not isinstance(path, BznaFile)
        self._file = BznaFile(path, storage_options=storage_options) if owned else path
        self._cols: _Columns | None = None
        self._range: tuple[int, int] | None = None
        self._select: np.ndarray | None = None  # file indices of a view by index array
        self._lock = threading.Lock()
        try:
            self._columns()
        except BaseException:
            if owned:
                self._file.close()
            raise

    def _columns(self) -> _Columns:
        cols = self._cols
        if cols is None:
            with self._lock:
                if self._cols is None:
                    try:
                        cols = _Columns(self._file)
                    except KeyError as exc:
                        raise BoxError(f"not a .bzna dataset: {exc.args[0]}") from None
                    self._check_range(cols.length)
                    self._cols = cols
                cols = self._cols
        return cols

    def _check_range(self, length: int) -> None:
        """Set the samples this dataset covers, once the file's length is known."""
        if self._range is None:
            self._range = (0, length)

    @property
    def file(self) -> BznaFile:
        return self._file

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def start(self) -> int:
        """File index of this dataset's first sample."""
        self._columns()
        return self._range[0]

    def __len__(self) -> int:
        self._columns()
        if self._select is not None:
            return len(self._select)
        return self._range[1] - self._range[0]

    def __getitem__(self, index):
        """``ds[i]``: a :class:`Sample`; ``ds[a:b:c]`` or ``ds[indices]``: a view (see the class)."""
        cols = self._cols
        if cols is None:
            cols = self._columns()
        if self._select is None and isinstance(index, int):
            start, stop = self._range
            i = index + start if index >= 0 else index + stop
            if not start <= i < stop:
                raise IndexError(f"sample index {index} out of range for a dataset of {stop - start}")
            return Sample(cols, i)
        if isinstance(index, slice):
            return self._view(self._positions()[index])
        if isinstance(index, (int, np.integer)):
            length = len(self)
            if not -length <= index < length:
                raise IndexError(f"sample index {index} out of range for a dataset of {length}")
            return Sample(cols, int(self._positions()[index]))
        positions = self._positions()
        chosen = self._view_indices(index)
        return self._view(positions.start + chosen if isinstance(positions, range) else positions[chosen])

    def _view_indices(self, index) -> np.ndarray:
        """``index`` (integers or a boolean mask) as an int64 array of positions in this dataset."""
        length = len(self)
        array = np.asarray(index)
        if array.dtype == bool:
            if array.shape != (length,):
                raise IndexError(f"a boolean mask must have the dataset's length {length}, not shape {array.shape}")
            return np.flatnonzero(array)
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise TypeError(f"dataset indices must be an int, a slice, or a 1-D array of integers or booleans, not {index!r:.80}")
        array = array.astype(np.int64)
        bad = (array < -length) | (array >= length)
        if bad.any():
            raise IndexError(f"sample index {int(array[bad][0])} out of range for a dataset of {length}")
        return np.where(array < 0, array + length, array)

    def _positions(self) -> np.ndarray | range:
        """The file index of each sample of this dataset (a range, or the view's array)."""
        if self._select is not None:
            return self._select
        return range(*self._range)

    def _view(self, positions: np.ndarray | range) -> "Dataset":
        """A dataset of this class over the file indices ``positions``, sharing the open file."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._lock = threading.Lock()
        if isinstance(positions, range) and positions.step == 1:
            view._range, view._select = (positions.start, max(positions.start, positions.stop)), None
        else:
            view._select = np.asarray(positions, dtype=np.int64)
        return view

    def __iter__(self) -> Iterator[Sample]:
        cols = self._columns()
        for i in self._positions():
            yield Sample(cols, int(i))

    def fetch(self, indices: Sequence[int]) -> list[Sample]:
        """The samples at ``indices`` (positions in this dataset, as ``ds[i]``), their inner MP4s
        fetched together by one ``read_many`` of the file's storage: slices of the map for a
        local file, concurrent ranged requests where the file is remote. ``data`` and ``image()``
        of these samples read the fetched bytes."""
        cols = self._columns()
        chosen = self._view_indices(indices)
        positions = self._positions()
        chosen = (chosen + positions.start if isinstance(positions, range) else positions[chosen]).tolist()
        at, size = cols.at, cols.size
        datas = cols.storage.read_many([(at[i], size[i]) for i in chosen])
        return [_FetchedSample(cols, i, data) for i, data in zip(chosen, datas)]

    @property
    def targets(self) -> np.ndarray:
        """Every target, int64 (-1 where there is none): a copy, read in one vectorised pass."""
        cols = self._columns()
        if cols.targets is None:
            cols.load_targets()
        return self._column(cols.targets)

    @property
    def sizes(self) -> np.ndarray:
        """Bytes of each inner MP4 (0 for missing samples)."""
        cols = self._columns()
        return self._column(cols.input_sizes)

    def _column(self, values: np.ndarray) -> np.ndarray:
        """This dataset's entries of a per-file-sample array, as a copy."""
        if self._select is not None:
            return values[self._select]
        return values[slice(*self._range)].copy()

    @property
    def missing(self) -> np.ndarray:
        """Indices (in this dataset) of the missing samples."""
        return np.flatnonzero(self.sizes == 0)

    @cached_property
    def classes(self) -> list[str]:
        """The class names, name k for target k, as ``torchvision.datasets.ImageFolder.classes``.

        Read from the file (``moov/udta/bzcl``, stored by ``bzna build`` of an ImageFolder tree);
        for a file without them (built before they were stored, from a list file, the seed's
        ImageNet), from ``NAME.classes.txt`` beside it (one name per line) when there is one;
        else an empty list. A malformed box raises ``BoxError``.
        """
        names = self._file.class_names()
        if names is not None:
            return names
        from .build import sidecar_paths
        from .remote import is_url

        beside = sidecar_paths(self.path)[0]
        try:
            if is_url(beside) and not beside.startswith("file://"):  # beside the object, in its store
                from fsspec.core import url_to_fs

                fs, where = url_to_fs(beside, **getattr(self._file.storage, "storage_options", {}))
                text = fs.cat_file(where).decode("utf-8", errors="surrogateescape")
            else:
                with open(beside.removeprefix("file://"), encoding="utf-8", errors="surrogateescape", newline="") as f:
                    text = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return []
        lines = text.split("\n")
        return lines[:-1] if lines[-1] == "" else lines

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Each class name's target (``{name: k}``), as ``ImageFolder.class_to_idx``."""
        return {name: target for target, name in enumerate(self.classes)}

    @property
    def stale(self) -> bool:
        """True when the file at :attr:`path` is no longer the one this dataset reads (one ``stat``)."""
        return self._file.changed() is not None

    def check_unchanged(self) -> None:
        """Raise :class:`~bzna_boxes.index.FileChangedError` when the file at :attr:`path` was
        replaced, removed or changed since it was opened (the ``Loader`` calls this at each epoch)."""
        self._file.check_unchanged()

    def close(self) -> None:
        """Close the file (see :meth:`BznaFile.close`)."""
        self._cols = None
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"file": self._file, "range": self._range, "select": self._select}

    def __setstate__(self, state: dict) -> None:
        self._file = state["file"]
        self._range = state["range"]
        self._select = state.get("select")
        self._cols = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r} samples={len(self)}>"


class ImageNet(Dataset):
    """The seed's ImageNet 2012 container, whole or one split (``train``, ``val``, ``test``).

    Splits are counted from the end, so any length works: the last 100,000 samples are test,
    the 50,000 before them val, the rest train (1,281,167 in the seed's 1,431,167).
    """

    def __init__(self, path: str | os.PathLike | BznaFile, split: str | None = None, *, storage_options: Mapping[str, Any] | None = None):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, not {split!r}")
        self.split = split
        super().__init__(path, storage_options=storage_options)

    def _check_range(self, length: int) -> None:
        if self._range is None:
            self._range = split_range(length, self.split)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "split": self.split}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.split = state["split"]


def maps_its_file(dataset: object) -> bool:
    """False when ``dataset`` reads a file through a storage that does not map it (an object
    store: each read has latency, so loaders fetch ahead); True otherwise."""
    storage = getattr(getattr(dataset, "file", None), "storage", None)
    return storage is None or storage.buffer is not None


def split_range(length: int, split: str | None) -> tuple[int, int]:
    """``(start, stop)`` of an ImageNet split in a file of ``length`` samples (from the end)."""
    test = layout.IMAGENET_TEST
    val = layout.IMAGENET_VAL
    if split is None:
        return 0, length
    need = {"test": test, "val": test + val, "train": test + val + 1}[split]
    if length < need:
        raise ValueError(
            f"ImageNet split {split!r} needs at least {need:,} samples (the last {test:,} are test, "
            f"the {val:,} before them val, the rest train); this file has {length:,}"
        )
    bounds = {"train": (0, length - test - val), "val": (length - test - val, length - test), "test": (length - test, length)}
    return bounds[split]


# --- the inner MP4 ---------------------------------------------------------------------------

# Where the fast path finds its fields in a box body: derived from the box schemas, once.
_STSZ, _STCO, _CO64, _TKHD, _HDLR, _CLAP_FIELDS = (lookup(t).fields for t in ("stsz", "stco", "co64", "tkhd", "hdlr", "clap"))
_HDLR_NAME = field_offset(_HDLR, "name")
_STSZ_HEAD = field_struct(_STSZ, ("sample_size", "sample_count"))
_STSZ_SAMPLE_SIZE, _STSZ_FIRST_ENTRY = field_offset(_STSZ, "sample_size"), field_offset(_STSZ, "entry_sizes")
_STSZ_ENTRY = entry_struct(_STSZ, "entry_sizes")
_CHUNK_TABLES = {
    fourcc.encode(): (fourcc, field_offset(fields, "entry_count"), field_struct(fields, ("entry_count",)), field_offset(fields, "chunk_offsets"), entry_struct(fields, "chunk_offsets"))
    for fourcc, fields in (("stco", _STCO), ("co64", _CO64))
}
"""stco / co64: the name, entry_count's offset and struct, the first chunk offset's offset and struct."""
_STSD_ENTRIES = lookup("stsd").fields.sizeof()
"""Bytes of stsd's own fields (FullBox header, entry_count) before its entries."""
_TKHD_SIZE = {version: field_offset(_TKHD, "width", version=version) for version in (0, 1)}
_TKHD_WH = field_struct(_TKHD, ("width", "height"), version=0)
_TKHD_VERSION = field_offset(_TKHD, "version")
_FIXED_ONE = Fixed16_16.scale
_WH = field_struct(VISUAL_SAMPLE_ENTRY, ("width", "height"))
_ENTRY_WH = field_offset(VISUAL_SAMPLE_ENTRY, "width")
_VISUAL_ENTRY_FIELDS = VISUAL_SAMPLE_ENTRY.sizeof()
"""Bytes of a VisualSampleEntry's fields before its child boxes (§12.1.3)."""
_CLAP = field_struct(_CLAP_FIELDS)
_CLAP_KEYS = tuple(sc.name for sc in _CLAP_FIELDS.subcons)
_HEVC_ENTRIES = ("hvc1", "hev1")


def _need(have: int, need: int, what: str, offset: int, path: str) -> None:
    if have < need:
        raise BoxError(f"{what} needs {need} bytes, the box holds {have}", offset=offset, path=path)


_HVCC_CACHE: dict[bytes, Mapping] = {}
_HVCC_CACHE_SIZE = 256


def _parse_hvcc(view: memoryview, offset: int, size: int, path: str) -> Mapping:
    """The parsed hvcC box (the box engine's schema), parsed once per distinct record.

    The record is shared by every picture that has the same bytes: treat it as read-only.
    """
    record = bytes(view[offset : offset + size])
    parsed = _HVCC_CACHE.get(record)
    if parsed is None:
        from .boxes.core import parse_box

        parsed = parse_box(memoryview(record), 0, size, offset, path, path.count("/"))[0]
        parsed.pop("_offset", None)  # shared by pictures at other offsets
        parsed.pop("_size", None)
        if len(_HVCC_CACHE) >= _HVCC_CACHE_SIZE:
            _HVCC_CACHE.clear()
        _HVCC_CACHE[record] = parsed
    return parsed


@lru_cache(maxsize=4096)
def _clean_aperture(clap: tuple | None, frame_width: int, frame_height: int) -> CleanAperture:
    return CleanAperture.from_clap(dict(zip(_CLAP_KEYS, clap)) if clap is not None else None, frame_width, frame_height)


class _Retry(Exception):
    """The quick walk met something odd: walk again the careful way, for an exact error."""


def _quick_walk(view: memoryview, start: int, end: int, path: str) -> Iterator[tuple[bytes, int, int, int, str]]:
    """Like :func:`_exact_walk` without the per-box bookkeeping (``path`` is the parent's)."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise _Retry
        size, raw = _HEADER.unpack_from(view, pos)
        header = 8
        if size < 8:
            if size == 1 and end - pos >= 16:
                size = _U64.unpack_from(view, pos + 8)[0]
                header = 16
            elif size == 0:
                size = end - pos
            else:
                raise _Retry
        if raw == b"uuid":
            header += 16
        if size > end - pos or size < header:
            raise _Retry
        yield raw, pos, size, header, path
        pos += size


def _exact_walk(view: memoryview, start: int, end: int, path: str) -> Iterator[tuple[bytes, int, int, int, str]]:
    """The child boxes with their exact paths; BoxError on a malformed header."""
    for fourcc, off, size, header, box_path in _walk(_Window(view), start, end, path):
        yield fourcc.encode("latin-1"), off, size, header, box_path


def _quick_first(view: memoryview, box: tuple, fourcc: bytes) -> tuple | None:
    """(offset, size, header, path) of the first child of ``box`` of type ``fourcc``, or None (quick)."""
    off, size, header, path = box
    pos = off + header
    end = off + size
    while pos < end:
        if end - pos < 8:
            raise _Retry
        size, raw = _HEADER.unpack_from(view, pos)
        if size < 8 or size > end - pos:
            if size == 0:
                size = end - pos
            else:
                raise _Retry  # 64-bit sizes and errors: the careful walk
        if raw == fourcc:
            return pos, size, 8, path
        pos += size
    return None


def _exact_first(view: memoryview, box: tuple, fourcc: bytes) -> tuple | None:
    """(offset, size, header, path) of the first child of ``box`` of type ``fourcc``, or None."""
    off, size, header, path = box
    for f, o, s, h, p in _exact_walk(view, off + header, off + size, path):
        if f == fourcc:
            return o, s, h, p
    return None


_QUICK = (_quick_walk, _quick_first)
_EXACT = (_exact_walk, _exact_first)


def inner_image(view: memoryview, start: int, end: int, track: str = layout.INPUT_TRACK, name: str = "sample") -> EncodedImage:
    """The picture of track ``track`` in the inner MP4 at ``view[start:end]``.

    Offsets in errors are file offsets; paths start with ``name`` (e.g. ``bzna_input[12]``).
    A missing ``bzna_thumb`` track falls back to ``bzna_input``.
    """
    try:
        return _inner_image(view, start, end, track, name, _QUICK)
    except (_Retry, BoxError):
        pass
    return _inner_image(view, start, end, track, name, _EXACT)


def _inner_image(view: memoryview, start: int, end: int, track: str, name: str, walker) -> EncodedImage:
    moov = walker[1](view, (start, end - start, 0, name), b"moov")
    if moov is None:
        raise BoxError("the inner sample has no moov", offset=start, path=name)
    wanted = track.encode("utf-8")
    found = fallback = None
    for trak_name, trak, mdia in _inner_traks(view, moov, walker):
        if trak_name == wanted:
            found = trak, mdia
            break
        if trak_name == _INPUT and fallback is None:
            fallback = trak, mdia
    if found is None and track == layout.THUMB_TRACK:
        found = fallback
    if found is None:
        names = [n.decode("utf-8", "replace") for n, _, _ in _inner_traks(view, moov, walker)]
        raise BoxError(f"the inner sample has no track {track!r} (it has {', '.join(map(repr, names)) or 'none'})", offset=moov[0], path=moov[3])
    return _picture(view, start, end, *found, walker)


_INPUT = layout.INPUT_TRACK.encode()


def _inner_traks(view: memoryview, moov: tuple, walker) -> Iterator[tuple[bytes, tuple, tuple]]:
    """Yield (hdlr name, trak, mdia) for each trak of an inner moov (boxes as (offset, size, header, path))."""
    walk, first = walker
    off, size, header, path = moov
    for fourcc, t_off, t_size, t_header, t_path in walk(view, off + header, off + size, path):
        if fourcc != b"trak":
            continue
        trak = (t_off, t_size, t_header, t_path)
        mdia = first(view, trak, b"mdia")
        hdlr = first(view, mdia, b"hdlr") if mdia is not None else None
        if hdlr is not None:
            o3, s3, h3, p3 = hdlr
            _need(s3 - h3, _HDLR_NAME, "hdlr", o3, p3)
            yield bytes(view[o3 + h3 + _HDLR_NAME : o3 + s3]).split(b"\x00", 1)[0], trak, mdia


def _sample_zero(view: memoryview, stbl: tuple, walker) -> tuple[int | None, int | None, tuple | None]:
    """(size, inner offset) of sample 0 of a stbl, and its first sample entry box."""
    walk = walker[0]
    o3, s3, h3, p3 = stbl
    entry = sample_size = chunk_offset = None
    for fourcc, off, size, header, path in walk(view, o3 + h3, o3 + s3, p3):
        body = off + header
        if fourcc == b"stsd":
            _need(size - header, _STSD_ENTRIES, "stsd", off, path)
            for f2, o2, s2, h2, p2 in walk(view, body + _STSD_ENTRIES, off + size, path):
                entry = (f2, o2, s2, h2, p2)
                break
        elif fourcc == b"stsz":
            _need(size - header, _STSZ_FIRST_ENTRY, "stsz", off, path)
            sample_size, count = _STSZ_HEAD.unpack_from(view, body + _STSZ_SAMPLE_SIZE)
            if not count:
                raise BoxError("the inner track has no sample", offset=off, path=path)
            if not sample_size:
                _need(size - header, _STSZ_FIRST_ENTRY + _STSZ_ENTRY.size, "stsz", off, path)
                sample_size = _STSZ_ENTRY.unpack_from(view, body + _STSZ_FIRST_ENTRY)[0]
        elif fourcc == b"stco" or fourcc == b"co64":
            name, count_at, count_code, first_at, offset_code = _CHUNK_TABLES[fourcc]
            _need(size - header, first_at, name, off, path)
            if not count_code.unpack_from(view, body + count_at)[0]:
                raise BoxError("the inner track has no chunk", offset=off, path=path)
            _need(size - header, first_at + offset_code.size, name, off, path)
            chunk_offset = offset_code.unpack_from(view, body + first_at)[0]
    return sample_size, chunk_offset, entry


def _stbl(view: memoryview, trak: tuple, mdia: tuple, walker) -> tuple:
    first = walker[1]
    minf = first(view, mdia, b"minf")
    stbl = first(view, minf, b"stbl") if minf is not None else None
    if stbl is None:
        raise BoxError("the inner track has no mdia/minf/stbl", offset=trak[0], path=trak[3])
    return stbl


def _picture(view: memoryview, start: int, end: int, trak: tuple, mdia: tuple, walker) -> EncodedImage:
    """Read one inner video trak: tkhd size, sample entry (hvcC, clap), the one sample."""
    walk, first = walker
    tkhd = first(view, trak, b"tkhd")
    if tkhd is None:
        raise BoxError("the inner track has no tkhd", offset=trak[0], path=trak[3])
    off, size, header, path = tkhd
    body = off + header
    at = body + _TKHD_SIZE[1 if size > header and view[body + _TKHD_VERSION] == 1 else 0]
    _need(size - header, at + _TKHD_WH.size - body, "tkhd", off, path)
    width, height = _TKHD_WH.unpack_from(view, at)
    width, height = round(width / _FIXED_ONE), round(height / _FIXED_ONE)
    stbl = _stbl(view, trak, mdia, walker)
    sample_size, chunk_offset, entry = _sample_zero(view, stbl, walker)
    if entry is None or sample_size is None or chunk_offset is None:
        missing = [n for n, v in (("stsd entry", entry), ("stsz", sample_size), ("stco/co64", chunk_offset)) if v is None]
        raise BoxError(f"the inner track has no {', '.join(missing)}", offset=stbl[0], path=stbl[3])
    e_type, e_off, e_size, e_header, e_path = entry
    codec = e_type.decode("latin-1")
    if codec not in _HEVC_ENTRIES:
        raise BoxError(f"the inner track's sample entry is {codec!r}, not hvc1 or hev1", offset=e_off, path=e_path)
    body = e_off + e_header
    _need(e_size - e_header, _VISUAL_ENTRY_FIELDS, codec, e_off, e_path)
    frame_width, frame_height = _WH.unpack_from(view, body + _ENTRY_WH)
    hvcc = clap = None
    for fourcc, off, size, header, path in walk(view, body + _VISUAL_ENTRY_FIELDS, e_off + e_size, e_path):
        if fourcc == b"hvcC" and hvcc is None:
            hvcc = _parse_hvcc(view, off, size, path)
        elif fourcc == b"clap" and clap is None:
            _need(size - header, _CLAP.size, "clap", off, path)
            clap = _CLAP.unpack_from(view, off + header)
    if hvcc is None:
        raise BoxError(f"the {codec} entry has no hvcC", offset=e_off, path=e_path)
    payload_start = start + chunk_offset
    if chunk_offset > end - start or sample_size > end - payload_start:
        raise BoxError(
            f"the picture at inner offset {chunk_offset} (size {sample_size}) lies outside the inner sample ({end - start} bytes)",
            offset=payload_start, path=stbl[3],
        )
    try:
        aperture = _clean_aperture(clap, frame_width, frame_height)
    except BoxError as exc:
        raise BoxError(exc.reason, offset=e_off, path=e_path) from None
    return EncodedImage(
        payload=view[payload_start : payload_start + sample_size],
        hvcc=hvcc,
        frame_width=frame_width,
        frame_height=frame_height,
        width=width,
        height=height,
        clean_aperture=aperture,
        codec=codec,
    )


def inner_tracks(view: memoryview, start: int, end: int, name: str = "sample") -> dict[str, tuple[int, int]]:
    """hdlr name -> (file offset, size) of sample 0 of each track of the inner MP4 at ``view[start:end]``.

    ``bzna verify`` uses it; raises BoxError when a track's sample lies outside the inner sample.
    """
    try:
        return _inner_tracks(view, start, end, name, _QUICK)
    except (_Retry, BoxError):
        pass
    return _inner_tracks(view, start, end, name, _EXACT)


def _inner_tracks(view: memoryview, start: int, end: int, name: str, walker) -> dict[str, tuple[int, int]]:
    moov = walker[1](view, (start, end - start, 0, name), b"moov")
    if moov is None:
        raise BoxError("the inner sample has no moov", offset=start, path=name)
    out = {}
    for raw_name, trak, mdia in _inner_traks(view, moov, walker):
        track_name = raw_name.decode("utf-8", "surrogateescape")
        sample_size, chunk_offset, _ = _sample_zero(view, _stbl(view, trak, mdia, walker), walker)
        if sample_size is None or chunk_offset is None:
            raise BoxError(f"inner track {track_name!r} has no stsz or no stco/co64", offset=trak[0], path=trak[3])
        if chunk_offset > end - start or sample_size > end - start - chunk_offset:
            raise BoxError(
                f"inner track {track_name!r}: its sample at inner offset {chunk_offset} (size {sample_size}) lies outside the inner sample ({end - start} bytes)",
                offset=start + chunk_offset, path=trak[3],
            )
        out.setdefault(track_name, (start + chunk_offset, sample_size))
    return out
