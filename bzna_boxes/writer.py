"""Write ``.bzna`` datasets: :class:`DatasetWriter` streams samples to disk, :func:`concat` merges shards.

The file a writer leaves (see ``docs/format.md``)::

    ftyp                      24 bytes (isom, 0, [bzna, isom])
    free + mdat header        16 bytes reserved up front: an 8-byte free box then a 32-bit mdat
                              header, or one 16-byte largesize mdat header when the mdat passes
                              4 GiB; sample offsets are the same either way
      inner samples           one small MP4 per image, written as it comes
      targets                 little-endian int64, one per sample
      filenames               UTF-8, one after the other
    moov                      mvhd, bzna_input, bzna_target, bzna_fname and the video track
                              (stco, or co64 once an offset passes 4 GiB), then udta/bzsc: a
                              CRC-32C of every sample of every track, computed as samples come

Only the tables (a few integers per sample) and the filenames stay in memory. The file is
written under a temporary name beside ``path`` and renamed into place on success; an
exception (Ctrl-C included) removes it. :func:`concat` writes exactly what a single writer
fed the same samples in the same order writes, copying the inner samples with large
sequential copies.
"""

from __future__ import annotations

import errno
import os
import struct
import weakref
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from . import layout
from .atomic import OutputLock, check_not_an_input, publish_together, remove_quietly, temporary_beside
from .boxes import Box, Boxes, find, lookup
from .boxes.core import field_position
from .boxes.fields import entry_struct, field_code
from .checksum import CRC32C, file_checksums
from .errors import BoxError
from .remote import is_url, streamed_upload
from .storage import Storage, copy_span, write_all

if TYPE_CHECKING:
    from .index import BznaFile, Track

__all__ = ["DatasetWriter", "InnerSample", "concat"]

HEADER_AT = layout.FILE_TYPE_SIZE
"""Where the reserved mdat header starts: right after ftyp."""
HEADER_SPACE = 16
"""Bytes reserved for the mdat header: ``free`` (8) + 32-bit ``mdat`` header (8), or a largesize header."""
PAYLOAD_AT = HEADER_AT + HEADER_SPACE
"""Offset of the first inner sample."""

_MAX32 = 0xFFFFFFFF
_FREE_THEN_MDAT = struct.Struct(">I4sI4s")
_LARGE_MDAT = struct.Struct(">I4sQ")
_IMAGE_AT = layout.FILE_TYPE_SIZE + 8
"""Offset of the image payload inside an inner sample: after ftyp and the mdat header."""
_PACK_TARGET = struct.Struct("<q").pack
_UPLOAD_CHUNK = 8 << 20
"""Bytes of a shard copied to an upload at a time."""
_filename_bytes = layout.filename_bytes
_checksum = CRC32C.function
assert layout.CHECKSUM_ALGORITHM == CRC32C.fourcc


class InnerSample(NamedTuple):
    """One sample ready to be written: its inner MP4 and what the outer tables need of it.

    ``thumbnail_offset``/``thumbnail_size`` locate the thumbnail payload inside ``data`` (the
    outer video track points there); ``thumbnail_config`` is the thumbnail's ``hvcC`` box.
    """

    data: bytes
    thumbnail_offset: int
    thumbnail_size: int
    thumbnail_config: bytes
    target: int
    filename: str

    @classmethod
    def from_encoded(cls, encoded: Any, target: int = layout.NO_TARGET, filename: str = "") -> "InnerSample":
        """The inner sample of an :class:`~bzna_boxes.encode.EncodedSample` (bytes equal to :func:`layout.inner_sample`)."""
        template = _template_for(encoded.image, encoded.thumbnail)
        data, thumb_at, thumb_size = template.pack(encoded.image, encoded.thumbnail, target, _filename_bytes(filename))
        return cls(data, thumb_at, thumb_size, template.thumbnail_config, int(target), filename)


# --- inner samples from templates -------------------------------------------------------------
#
# layout.inner_sample builds the moov of each inner sample through the box engine (~1 ms). For
# frames of the same frame sizes and parameter sets that moov differs only in 20 numbers (the
# stsz entry and stco offset of its 4 tracks; the picture size in the tkhd and clap of its 2
# video tracks), so it is built once per kind of frame and those numbers are packed into it per
# sample. The template checks itself against layout once, at two picture sizes.

_CLAP_FIELDS = ("clean_aperture_width_n", "clean_aperture_height_n", "horiz_off_n", "vert_off_n")
"""The clap fields that depend on the picture size (the 4 others are constant)."""


def _slot(box: Mapping, field: str, what: tuple) -> tuple[int, str, tuple]:
    """(offset, struct code, what goes there) of a 4-byte field (or a table's first entry) of a
    parsed box of the template, from the box's schema."""
    fields = lookup(box["type"]).fields
    code = entry_struct(fields, field).format[1:] if isinstance(box[field], np.ndarray) else field_code(fields, field)
    if struct.calcsize(">" + code) != 4:
        raise AssertionError(f"layout.inner_sample changed: {box['type']}.{field} is not a 4-byte field")
    return field_position(box, field), code, what


def _with_size(frame: layout.Frame, width: int, height: int) -> layout.Frame:
    from types import SimpleNamespace

    return SimpleNamespace(payload=frame.payload, hvcc=frame.hvcc, frame_width=frame.frame_width,
                           frame_height=frame.frame_height, width=width, height=height)  # fmt: skip


class _InnerTemplate:
    """The bytes of the inner samples of one image/thumbnail frame size and hvcC, with slots for sizes."""

    def __init__(self, image: layout.Frame, thumbnail: layout.Frame | None):
        video = thumbnail if thumbnail is not None else image
        if (video.frame_width, video.frame_height) != (layout.THUMBNAIL_SIZE, layout.THUMBNAIL_SIZE):
            raise ValueError(
                f"the thumbnail frame (or the image frame when there is no thumbnail) must be "
                f"{layout.THUMBNAIL_SIZE}x{layout.THUMBNAIL_SIZE}, not {video.frame_width}x{video.frame_height}"
            )
        self.has_thumbnail = thumbnail is not None
        self.thumbnail_config = Box.build({"type": "hvcC", **video.hvcc})
        probe_name = "probe"
        probe = layout.inner_sample(image, thumbnail, 0, probe_name)
        ftyp, mdat, moov = Boxes.parse(probe)
        if (ftyp.type, mdat.type, moov.type) != ("ftyp", "mdat", "moov") or mdat.get("large_size"):
            raise AssertionError("layout.inner_sample changed: expected ftyp, mdat, moov")
        self.head = bytes(probe[: mdat._offset])
        self._head = struct.Struct(f">{len(self.head)}sI4s")
        moov_bytes = probe[moov._offset :]
        slots = []  # (offset in the moov, struct code, what goes there)
        for index, name in enumerate(layout.INNER_TRACKS):
            stbl = find(moov, f"trak[{index}]/mdia/minf/stbl")
            stsz, stco = find(stbl, "stsz"), find(stbl, "stco")
            if stsz.sample_size or len(stsz.entry_sizes) != 1 or len(stco.chunk_offsets) != 1:
                raise AssertionError(f"layout.inner_sample changed: {name} has not one stsz entry and one stco offset")
            slots += [_slot(stsz, "entry_sizes", ("size", index)), _slot(stco, "chunk_offsets", ("offset", index))]
        for index in (0, 1):  # the video tracks: tkhd width and height (16.16), clap
            tkhd = find(moov, f"trak[{index}]/tkhd")
            clap = find(moov, f"trak[{index}]/mdia/minf/stbl/stsd/hvc1/clap")
            slots += [_slot(tkhd, "width", ("tkhd_width", index)), _slot(tkhd, "height", ("tkhd_height", index))]
            slots += [_slot(clap, field, (field, index)) for field in _CLAP_FIELDS]
        slots.sort()
        self._order = [what for _, _, what in slots]
        pieces, fmt, at = [], ">", 0
        for offset, code, _ in slots:
            offset -= moov._offset
            pieces.append(moov_bytes[at:offset])
            fmt += f"{offset - at}s{code}"
            at = offset + 4
        self._moov = struct.Struct(fmt + f"{len(moov_bytes) - at}s")
        self._pieces = pieces + [moov_bytes[at:]]
        self._check(image, thumbnail, probe, probe_name)
        # at another picture size in the same frames, so that the size slots are checked too
        other = [_with_size(f, f.width - 1 if f.width > 1 else 2, f.height - 1 if f.height > 1 else 2) if f else None
                 for f in (image, thumbnail)]  # fmt: skip
        self._check(*other, layout.inner_sample(*other, 0, probe_name), probe_name)

    def _check(self, image: layout.Frame, thumbnail: layout.Frame | None, expected: bytes, name: str) -> None:
        if self.pack(image, thumbnail, 0, name.encode())[0] != expected:
            raise AssertionError("layout.inner_sample changed: the inner-sample template no longer matches it")

    def pack(self, image: layout.Frame, thumbnail: layout.Frame | None, target: int, name: bytes) -> tuple[bytes, int, int]:
        """The inner sample of these frames, target and UTF-8 filename, and its thumbnail's (offset, size)."""
        image_payload = image.payload
        image_size = len(image_payload)
        if self.has_thumbnail:
            thumb_payload = thumbnail.payload
            thumb_size = len(thumb_payload)
            thumb_at, thumb_len = _IMAGE_AT + image_size, thumb_size
            video = thumbnail
        else:
            thumb_payload, thumb_size = b"", 0
            thumb_at, thumb_len = _IMAGE_AT, image_size
            video = image
        target_at = _IMAGE_AT + image_size + thumb_size
        name_at = target_at + 8
        name_size = len(name)
        values = {
            ("size", 0): image_size, ("offset", 0): _IMAGE_AT, ("size", 1): thumb_len, ("offset", 1): thumb_at,
            ("size", 2): 8, ("offset", 2): target_at, ("size", 3): name_size, ("offset", 3): name_at,
        }  # fmt: skip
        for index, frame in ((0, image), (1, video)):
            values[("tkhd_width", index)] = frame.width << 16
            values[("tkhd_height", index)] = frame.height << 16
            values[("clean_aperture_width_n", index)] = frame.width
            values[("clean_aperture_height_n", index)] = frame.height
            values[("horiz_off_n", index)] = frame.width - frame.frame_width
            values[("vert_off_n", index)] = frame.height - frame.frame_height
        p = self._pieces
        fields = []
        for piece, what in zip(p, self._order):
            fields += (piece, values[what])
        moov = self._moov.pack(*fields, p[-1])
        head = self._head.pack(self.head, name_at + name_size - _IMAGE_AT + 8, b"mdat")
        try:
            packed_target = _PACK_TARGET(target)
        except struct.error:
            raise ValueError(f"target {target!r} is not an int64") from None
        data = b"".join((head, image_payload, thumb_payload, packed_target, name, moov))
        return data, thumb_at, thumb_len


_TEMPLATES_BY_ID: dict[tuple, tuple[Any, Any, _InnerTemplate]] = {}
_TEMPLATES: dict[tuple, _InnerTemplate] = {}
_CACHE_LIMIT = 4096


def _geometry(frame: layout.Frame | None) -> tuple:
    return (frame.frame_width, frame.frame_height) if frame is not None else ()


def _hvcc_key(hvcc: Any) -> tuple | bytes:
    """A hashable key equal for hvcC records of equal fields: the fields themselves (a few µs),
    else the built box (about 150 µs) when a field is not hashable."""
    try:
        arrays = tuple([(array["array_completeness"], array["nal_unit_type"], *map(bytes, array["nalus"])) for array in hvcc["arrays"]])
        key = (tuple([item for item in hvcc.items() if item[0] != "arrays"]), arrays)
        hash(key)
        return key
    except (KeyError, TypeError):
        return Box.build({"type": "hvcC", **hvcc})


def _template_for(image: layout.Frame, thumbnail: layout.Frame | None) -> _InnerTemplate:
    """The template of these frames: by identity of their hvcC dicts first, then by content."""
    if thumbnail is None:
        thumb_hvcc = None
        fast_key = (id(image.hvcc), image.frame_width, image.frame_height)
    else:
        thumb_hvcc = thumbnail.hvcc
        fast_key = (id(image.hvcc), image.frame_width, image.frame_height, id(thumb_hvcc), thumbnail.frame_width, thumbnail.frame_height)
    hit = _TEMPLATES_BY_ID.get(fast_key)
    if hit is not None and hit[0] is image.hvcc and hit[1] is thumb_hvcc:
        return hit[2]
    key = (
        _hvcc_key(image.hvcc),
        _hvcc_key(thumb_hvcc) if thumbnail is not None else None,
        _geometry(image),
        _geometry(thumbnail),
    )
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) >= _CACHE_LIMIT:
            _TEMPLATES.clear()
        template = _TEMPLATES[key] = _InnerTemplate(image, thumbnail)
    if len(_TEMPLATES_BY_ID) >= _CACHE_LIMIT:
        _TEMPLATES_BY_ID.clear()
    _TEMPLATES_BY_ID[fast_key] = (image.hvcc, thumb_hvcc, template)
    return template


# --- the writer -------------------------------------------------------------------------------


_ROW = np.dtype(
    [("size", "<u4"), ("thumb_at", "<u4"), ("thumb_size", "<u4"), ("entry", "<u4"), ("name_size", "<u4"), ("target", "<i8")]
    + [(f"{track}_sum", "<u4") for track in ("input", "thumb", "target", "name")]
)
"""What the writer keeps per sample (44 bytes): inner sample size, thumbnail span, video entry, filename size,
target, and the checksums of its input, thumbnail, target and filename samples."""
_PACK_ROW = struct.Struct("<IIIIIqIIII").pack
_ENCODE_OPTIONS = frozenset(("max_short_side", "crf", "preset", "x265_params"))
assert struct.calcsize("<IIIIIqIIII") == _ROW.itemsize


class DatasetWriter:
    """Write a ``.bzna`` dataset sample by sample; a context manager.

    ::

        with DatasetWriter("train.bzna", crf=18) as writer:
            writer.add(rgb_array, target=3, filename="cat/0001.jpg")

    ``encode_options`` go to :func:`bzna_boxes.encode.encode_image` for images given as arrays.
    Each sample is written when added; on :meth:`close` (the ``with`` block's end) the targets,
    the filenames and the moov follow and the file appears at ``path``. An exception inside the
    block, or :meth:`abort`, leaves nothing behind. ``fsync`` flushes the data to the disk before
    the rename.

    The writer holds the output's :class:`~bzna_boxes.atomic.OutputLock` while it lives: a second
    writer of the same path fails at once (``BlockingIOError``), and the temporary files that
    dead writers of this path left are removed. ``lock`` is a lock on ``path`` that the caller
    already holds (and keeps).

    ``classes``: the class names, name k for target k (ImageFolder's ``classes``), stored in the
    file (``moov/udta/bzcl``) and read back by ``Dataset.classes``; None stores none. It may be
    set until :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fsync: bool = True,
        lock: OutputLock | None = None,
        classes: Sequence[str] | None = None,
        **encode_options: Any,
    ):
        unknown = set(encode_options) - _ENCODE_OPTIONS
        if unknown:
            raise TypeError(f"unknown encoder options {sorted(unknown)}; expected some of {sorted(_ENCODE_OPTIONS)}")
        self.path = os.fspath(path)
        if is_url(self.path):
            raise ValueError(f"{self.path}: a DatasetWriter writes a local file (bzna build and concat upload theirs to a URL)")
        self.encode_options = encode_options
        self.classes = None if classes is None else layout.class_names_box(classes)["class_names"]
        self._fsync = fsync
        if os.path.isdir(self.path):
            raise IsADirectoryError(errno.EISDIR, f"cannot write {self.path}: it is a directory", self.path)
        if lock is not None and not (lock.held and os.path.abspath(lock.path) == os.path.abspath(self.path)):
            raise ValueError(f"the lock given is not a held lock on {self.path}")
        own_lock = OutputLock(self.path) if lock is None else None
        self._upload = streamed_upload(self.path)  # a staging path that bzna_boxes.remote streams to an object store
        try:
            fd, self._temp_path = temporary_beside(self.path) if self._upload is None else (-1, None)
        except BaseException:
            if own_lock is not None:
                own_lock.release()
            raise
        self._cleanup = weakref.finalize(self, _discard, self._temp_path, own_lock)
        self._release = own_lock.release if own_lock is not None else (lambda: None)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20) if self._upload is None else self._upload
        self.file_size: int | None = None
        """The dataset's size in bytes, once closed."""
        self._write = self._file.write
        self._closed = False
        self._write(Box.build(layout.file_type()) + bytes(HEADER_SPACE))
        self._pos = PAYLOAD_AT
        self._rows = bytearray()  # _ROW records
        self._names = bytearray()  # the filenames block
        self._configs: dict[bytes, int] = {}  # thumbnail hvcC box -> video sample entry (1-based)
        self._last_config: bytes | None = None
        self._last_entry = 0

    # -- adding samples

    def __len__(self) -> int:
        return len(self._rows) // _ROW.itemsize

    def add(self, image: Any, target: int = layout.NO_TARGET, filename: str = "") -> None:
        """Add one image: an H x W x 3 uint8 RGB array (encoded here; any array-like) or an ``EncodedSample``."""
        if not (hasattr(image, "thumbnail") and hasattr(image, "image")):
            if not (isinstance(image, np.ndarray) or hasattr(image, "__array__") or hasattr(image, "__array_interface__")):
                raise TypeError(f"add() takes an RGB array or an EncodedSample, not {type(image).__name__}")
            from .encode import encode_image

            image = encode_image(np.asarray(image), **self.encode_options)
        template = _template_for(image.image, image.thumbnail)
        name = _filename_bytes(filename)
        data, thumb_at, thumb_size = template.pack(image.image, image.thumbnail, target, name)
        self._append(data, thumb_at, thumb_size, template.thumbnail_config, target, name)

    def add_sample(self, sample: InnerSample) -> None:
        """Add a sample whose inner MP4 is already built (e.g. by a worker process)."""
        data, thumb_at, thumb_size, config, target, filename = sample
        size = len(data)
        if not (0 < thumb_size and 0 <= thumb_at and thumb_at + thumb_size <= size):
            raise ValueError(f"inner sample of {size} bytes with its thumbnail at {thumb_at}+{thumb_size}")
        self._append(data, thumb_at, thumb_size, config, target, _filename_bytes(filename))

    def _append(self, data: bytes, thumb_at: int, thumb_size: int, config: bytes, target: int, name: bytes) -> None:
        """Write one inner sample and record its table row."""
        if self._closed:
            raise ValueError(f"DatasetWriter for {self.path} is closed")
        if config is self._last_config:
            entry = self._last_entry
        else:
            entry = self._configs.setdefault(config, len(self._configs) + 1)
            self._last_config, self._last_entry = config, entry
        size = len(data)
        try:
            packed_target = _PACK_TARGET(target)
            row = _PACK_ROW(
                size, thumb_at, thumb_size, entry, len(name), target,
                _checksum(data), _checksum(memoryview(data)[thumb_at : thumb_at + thumb_size]), _checksum(packed_target), _checksum(name),
            )  # fmt: skip
        except struct.error:
            raise ValueError(f"target {target} is not an int64, or an inner sample of {size} bytes is too large") from None
        try:
            self._write(data)
        except OSError as exc:  # no space left, a file size limit: name the dataset, not the temporary file
            raise _writing_error(exc, self.path) from exc
        self._rows += row
        self._names += name
        self._pos += size

    def add_missing(self, target: int = layout.NO_TARGET, filename: str = "") -> None:
        """Keep an index for an image that could not be stored: empty input sample, target and filename kept.

        Its video-track sample shows the nearest other image's thumbnail (decided on close).
        """
        if self._closed:
            raise ValueError(f"DatasetWriter for {self.path} is closed")
        name = _filename_bytes(filename)
        try:
            row = _PACK_ROW(0, 0, 0, 0, len(name), target, _checksum(b""), 0, _checksum(_PACK_TARGET(target)), _checksum(name))
        except struct.error:
            raise ValueError(f"target {target} is not an int64") from None
        self._rows += row
        self._names += name

    # -- finishing

    def close(self, side_files: Mapping[str, str | None] | None = None) -> None:
        """Write the targets, filenames and moov, then move the file to ``path``.

        ``side_files`` maps paths beside the dataset (its class list, its report) to their text
        (UTF-8), or to None for a file to remove: they are written to temporary files first,
        then renamed into place just before the dataset, so that all are replaced or none.
        """
        if self._closed:
            return
        try:
            self._finish(side_files or {})
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and exc.filename is None:
                raise _writing_error(exc, self.path) from exc
            raise
        self._closed = True
        self._cleanup.detach()
        self._release()

    def abort(self) -> None:
        """Give up: remove the temporary file; nothing appears at ``path``."""
        self._closed = True
        if self._upload is not None:  # not close(): that would send the last parts
            self._upload.abort()
        else:
            try:
                self._file.close()
            except OSError:
                pass
        self._cleanup()
        self._release()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _finish(self, side_files: Mapping[str, str | None]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        for path in side_files:
            if os.path.dirname(os.path.abspath(path)) != folder:
                raise ValueError(f"side file {path} is not beside {self.path}")
        staged = []
        try:
            for path, text in side_files.items():
                if text is not None:
                    staged.append((_stage_text(self.path, text, self._fsync), path))
            self._write_end()
        except BaseException:
            for temp, _ in staged:
                remove_quietly(temp)
            raise
        publish_together(staged if self._upload is not None else [*staged, (self._temp_path, self.path)])
        for path, text in side_files.items():
            if text is None:
                remove_quietly(path)
        if self._fsync:
            _fsync_directory(os.path.dirname(os.path.abspath(self.path)))

    def _write_end(self) -> None:
        """Write the targets, the filenames and the moov, then the mdat header (the file stays temporary)."""
        f = self._file
        rows = np.frombuffer(self._rows, _ROW)
        count = len(rows)
        targets_at = self._pos
        f.write(rows["target"].astype(layout.TARGET_DTYPE).tobytes())
        names_at = targets_at + layout.TARGET_DTYPE.itemsize * count
        f.write(self._names)
        end = names_at + len(self._names)

        sizes = rows["size"]
        offsets = _starts(PAYLOAD_AT, sizes)
        targets = layout.SampleTable(
            targets_at + layout.TARGET_DTYPE.itemsize * np.arange(count, dtype=np.uint64),
            np.full(count, layout.TARGET_DTYPE.itemsize, np.uint32),
            rows["target_sum"],
        )
        names = layout.SampleTable(_starts(names_at, rows["name_size"]), rows["name_size"].astype(np.uint32), rows["name_sum"])
        video, configs, entries = self._video_table(rows, offsets)
        inputs = layout.SampleTable(offsets, sizes.astype(np.uint32), rows["input_sum"])
        moov = layout.outer_moov(inputs, targets, names, video, configs, entries, self.classes)
        Box.build_stream(moov, f)
        self.file_size = f.tell()

        if end - (HEADER_AT + 8) <= _MAX32:
            header = _FREE_THEN_MDAT.pack(8, b"free", end - (HEADER_AT + 8), b"mdat")
        else:
            header = _LARGE_MDAT.pack(1, b"mdat", end - HEADER_AT)
        f.seek(HEADER_AT)
        f.write(header)
        f.flush()
        if self._fsync and self._upload is None:
            os.fsync(f.fileno())
        f.close()

    def _video_table(self, rows: np.ndarray, offsets: np.ndarray) -> tuple[layout.SampleTable | None, list[dict] | None, np.ndarray | None]:
        """The video track: each sample's thumbnail; a missing sample takes its nearest neighbour's."""
        entries = rows["entry"].astype(np.uint32)
        present = np.flatnonzero(entries)
        if not len(present):
            return None, None, None
        video_offsets = offsets + rows["thumb_at"]
        sizes = rows["thumb_size"].astype(np.uint32)
        sums = rows["thumb_sum"].copy()
        missing = np.flatnonzero(entries == 0)
        if len(missing):
            after = np.minimum(np.searchsorted(present, missing), len(present) - 1)
            before = np.maximum(after - 1, 0)
            use_before = np.abs(missing - present[before]) <= np.abs(present[after] - missing)
            nearest = np.where(use_before, present[before], present[after])
            video_offsets[missing], sizes[missing], entries[missing] = video_offsets[nearest], sizes[nearest], entries[nearest]
            sums[missing] = sums[nearest]
        configs = [_hvcc_fields(config) for config in self._configs]
        return layout.SampleTable(video_offsets, sizes, sums), configs, (entries if len(configs) > 1 else None)

    # -- merging shards (used by concat)

    def _append_shard(self, shard: "_Shard") -> None:
        """Copy a shard's inner samples (one sequential copy per contiguous run) and append its rows.

        The shard's checksums come along; a shard without them has them computed as it is copied.
        """
        if self._closed:
            raise ValueError(f"DatasetWriter for {self.path} is closed")
        offsets, sizes = shard.input_offsets, shard.input_sizes
        present = sizes > 0
        try:
            self._file.flush()
            sums = shard.checksums
            if sums is None:
                sums = self._copy_computing_checksums(shard, present)
            else:
                for start, stop in shard.runs():
                    first = int(offsets[start])
                    length = int(offsets[stop - 1]) + int(sizes[stop - 1]) - first
                    if self._upload is None:
                        copy_span(shard.storage, first, length, self._file.fileno(), self._pos)
                    else:
                        for at in range(first, first + length, _UPLOAD_CHUNK):
                            self._file.write(shard.storage.view(at, min(_UPLOAD_CHUNK, first + length - at)))
                    self._pos += length
            self._file.seek(self._pos)
        except OSError as exc:
            raise _writing_error(exc, self.path) from exc
        rows = np.zeros(len(sizes), _ROW)
        mapping = np.zeros(len(shard.video_configs) + 1, np.uint32)
        for index, config in enumerate(shard.video_configs, 1):
            mapping[index] = self._configs.setdefault(config, len(self._configs) + 1)
        rows["size"] = sizes
        rows["thumb_at"] = np.where(present, shard.video_offsets - offsets, 0)
        rows["thumb_size"] = np.where(present, shard.video_sizes, 0)
        rows["entry"] = np.where(present, mapping[shard.video_entries], 0)
        rows["name_size"] = shard.filename_sizes
        rows["target"] = shard.targets
        rows["input_sum"], rows["thumb_sum"], rows["target_sum"], rows["name_sum"] = sums
        rows["thumb_sum"][~present] = 0  # a missing sample's video sample is its neighbour's: set on close
        self._rows += rows.tobytes()
        self._names += shard.filenames
        self._last_config = None

    def _copy_computing_checksums(self, shard: "_Shard", present: np.ndarray) -> tuple[np.ndarray, ...]:
        """Copy the shard's inner samples run by run, checksumming each chunk as it passes; the
        checksums of its input, thumbnail, target and filename samples."""
        offsets, sizes = shard.input_offsets, shard.input_sizes
        count = len(sizes)
        out_fd = self._file.fileno() if self._upload is None else -1
        input_sums, thumb_sums = np.zeros(count, np.uint64), np.zeros(count, np.uint64)
        for start, stop in shard.runs():
            first, destination = int(offsets[start]), self._pos
            thumbs = start + np.flatnonzero(present[start:stop])

            def write(at: int, data: memoryview) -> None:
                if out_fd < 0:  # an upload: the chunks come in order and tile the run
                    self._file.write(data)
                else:
                    write_all(out_fd, data, destination + at - first)

            both = file_checksums(
                shard.storage,
                np.concatenate((offsets[start:stop], shard.video_offsets[thumbs])),
                np.concatenate((sizes[start:stop], shard.video_sizes[thumbs])),
                on_chunk=write,
                gap=0,
            )
            input_sums[start:stop], thumb_sums[thumbs] = both[: stop - start], both[stop - start :]
            self._pos += int(offsets[stop - 1]) + int(sizes[stop - 1]) - first
        name_starts = _starts(0, shard.filename_sizes).tolist()
        names = memoryview(shard.filenames)
        target_sums = [_checksum(_PACK_TARGET(target)) for target in shard.targets.tolist()]
        name_sums = [_checksum(names[at : at + size]) for at, size in zip(name_starts, shard.filename_sizes.tolist())]
        return input_sums, thumb_sums, target_sums, name_sums


def _writing_error(exc: OSError, path: str) -> OSError:
    """``exc`` (raised on the temporary file) as the same kind of error naming the dataset's path."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}", path)


def _discard(temp_path: str | None, lock: OutputLock | None) -> None:
    """What a writer left unclosed gives back: its temporary file, then its lock."""
    if temp_path is not None:
        remove_quietly(temp_path)
    if lock is not None:
        lock.release()


def _stage_text(path: str, text: str, fsync: bool) -> str:
    """``text`` written to a new temporary file named after ``path`` (and cleaned with it); its name."""
    fd, temp = temporary_beside(path)
    try:
        # a name that is not UTF-8 (a Linux filename's bytes, as surrogate escapes) is written as its bytes
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        remove_quietly(temp)
        raise
    return temp


def _starts(first: int, sizes: np.ndarray) -> np.ndarray:
    """Offsets of back-to-back items of ``sizes`` starting at ``first``."""
    offsets = np.full(len(sizes), first, np.uint64)
    if len(sizes) > 1:
        offsets[1:] += np.cumsum(sizes[:-1], dtype=np.uint64)
    return offsets


def _hvcc_fields(config: bytes) -> dict:
    box = Box.parse(config)
    return {key: value for key, value in box.items() if key != "type" and not key.startswith("_")}


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading an input of concat ---------------------------------------------------------------


class _Shard:
    """What :func:`concat` needs of one ``.bzna`` file, read through its sample index
    (:class:`bzna_boxes.index.BznaFile`: any chunk layout, movie fragments included)."""

    def __init__(self, path: str):
        from .index import BznaFile

        self.path = path
        self._file: BznaFile | None = None
        try:
            self._file = BznaFile(path)
            self.storage: Storage = self._file.storage
            self._read_tracks(self._file)
        except BoxError as exc:
            self.close()
            raise BoxError(f"{path}: {exc.reason}", offset=exc.offset, path=exc.path) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _read_tracks(self, file: "BznaFile") -> None:
        tracks = {}
        for track in file.tracks:
            tracks.setdefault(track.name, track)
        for name in (layout.INPUT_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK):
            if name not in tracks:
                raise BoxError(f"not a .bzna dataset: no {name} track", offset=file.moov.offset, path="moov")
        inputs, targets, names = (tracks[n] for n in (layout.INPUT_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK))
        count = len(inputs)
        if not len(targets) == len(names) == count:
            raise BoxError(
                f"track lengths differ ({count} inputs, {len(targets)} targets, {len(names)} filenames)", offset=file.moov.offset, path="moov"
            )
        if np.any(targets.sizes != layout.TARGET_DTYPE.itemsize):
            raise BoxError(f"a target is not {layout.TARGET_DTYPE.itemsize} bytes", path=targets.path)
        self.input_offsets, self.input_sizes = inputs.offsets, inputs.sizes
        self.targets = _gather(self.storage, targets.offsets, targets.sizes).view(layout.TARGET_DTYPE).astype(np.int64)
        self.filename_sizes = names.sizes
        self.filenames = _gather(self.storage, names.offsets, names.sizes).tobytes()
        present = self.input_sizes > 0
        video = tracks.get(layout.VIDEO_TRACK)
        if video is not None:
            self._read_video(file, video, present)
        elif np.any(present):
            raise BoxError(f"has images but no {layout.VIDEO_TRACK} track", path="moov")
        else:
            self.video_offsets = np.zeros(count, np.uint64)
            self.video_sizes = np.zeros(count, np.uint32)
            self.video_entries = np.zeros(count, np.uint32)
            self.video_configs = []
        self.checksums = self._read_checksums(file, tracks, count)
        self.classes = file.class_names()

    def _read_checksums(self, file: "BznaFile", tracks: dict, count: int) -> tuple[np.ndarray, ...] | None:
        """The checksums of the input, video, target and filename samples (``udta/bzsc``), or None
        when the file has none, or none in the algorithm this library writes."""
        box = file.checksum_table()
        if box is None or box.algorithm != layout.CHECKSUM_ALGORITHM or box.checksum_size != layout.CHECKSUM_SIZE:
            return None
        by_id = {int(entry.track_id): entry.checksums for entry in box.entries}
        sums = []
        for name in (layout.INPUT_TRACK, layout.VIDEO_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK):
            if name not in tracks:  # no video track: no images, no thumbnails
                sums.append(np.zeros(count, np.uint32))
                continue
            table = by_id.get(tracks[name].track_id)
            if table is None or len(table) != count:
                found = "none" if table is None else f"{len(table)}"
                raise BoxError(f"the checksum table has {found} checksums for the {count} samples of {name}", offset=box._offset, path=f"moov/{layout.CHECKSUMS_PATH}")
            sums.append(np.asarray(table).astype(np.uint32))
        return tuple(sums)

    def _read_video(self, file: "BznaFile", video: "Track", present: np.ndarray) -> None:
        """The thumbnails' offsets and sizes, their hvcC records and each one's (1-based) record."""
        count = len(self.input_sizes)
        if len(video) != count:
            raise BoxError(f"{len(video)} video samples for {count} inputs", path=video.path)
        self.video_offsets, self.video_sizes = video.offsets, video.sizes
        configs = []
        for entry in video.sample_entries:
            hvcc = find(entry, "hvcC", None)
            if hvcc is None:
                raise BoxError(f"the {entry.type} entry of {layout.VIDEO_TRACK} has no hvcC", offset=entry._offset, path=video.path)
            configs.append(self.storage.read(hvcc._offset, hvcc._size))
        self.video_configs = configs
        self.video_entries = np.ones(count, np.uint32) if len(configs) == 1 else _description_indices(file, video)
        inside = (self.video_offsets >= self.input_offsets) & (self.video_offsets + self.video_sizes <= self.input_offsets + self.input_sizes)
        if np.any(present & ~inside):
            bad = int(np.flatnonzero(present & ~inside)[0])
            raise BoxError(f"video sample {bad} is not inside input sample {bad}", path=video.path)
        if np.any(present & ((self.video_entries < 1) | (self.video_entries > len(configs)))):
            raise BoxError("a video sample has no sample description", path=video.path)

    def runs(self) -> Iterable[tuple[int, int]]:
        """``(start, stop)`` index ranges of input samples stored back to back."""
        count = len(self.input_sizes)
        if not count:
            return []
        ends = self.input_offsets[:-1] + self.input_sizes[:-1]
        breaks = np.flatnonzero(ends != self.input_offsets[1:]) + 1
        bounds = [0, *breaks.tolist(), count]
        return list(zip(bounds[:-1], bounds[1:]))


def _description_indices(file: "BznaFile", video: "Track") -> np.ndarray:
    """The sample entry (1-based) of each sample of a video track with several entries, from its stsc.

    Movie fragments name theirs in each ``tfhd``; a track with several entries and fragments is
    refused rather than guessed.
    """
    moov = file.moov
    stbl = find(Boxes.parse(file.storage.view(moov.offset, moov.size)), f"{video.path}/mdia/minf/stbl")
    stsz = find(stbl, "stsz")
    if stsz.sample_count != len(video):
        raise BoxError(
            f"{layout.VIDEO_TRACK} has several sample descriptions and samples in movie fragments: concat cannot merge it",
            path=video.path,
        )
    chunks = len((find(stbl, "stco", None) or find(stbl, "co64")).chunk_offsets)
    stsc = find(stbl, "stsc").entries
    first = np.asarray(stsc["first_chunk"], np.int64) - 1
    per_chunk = np.repeat(np.asarray(stsc["samples_per_chunk"], np.int64), np.diff(np.append(first, chunks)))
    entries = np.repeat(np.asarray(stsc["sample_description_index"], np.uint32), np.diff(np.append(first, chunks)))
    return np.repeat(entries, per_chunk)


def _gather(storage: Storage, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The bytes of samples (``offsets``, ``sizes``) one after the other, as a uint8 array."""
    if not len(sizes):
        return np.zeros(0, np.uint8)
    first = int(offsets[0])
    total = int(sizes.sum(dtype=np.uint64))
    contiguous = np.array_equal(offsets[1:], offsets[:-1] + sizes[:-1])
    if contiguous:
        return np.frombuffer(storage.read(first, total), np.uint8)
    return np.frombuffer(b"".join(storage.read_many(list(zip(offsets.tolist(), sizes.tolist())))), np.uint8)


# --- concat -----------------------------------------------------------------------------------


def concat(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    fsync: bool = True,
    lock: OutputLock | None = None,
    side_files: Mapping[str, str | None] | None = None,
    classes: Sequence[str] | None = None,
) -> int:
    """Merge ``.bzna`` shards, in order, into ``output``; returns the number of samples.

    Inner samples are copied as they are (large sequential copies); targets, filenames and
    tables are rewritten. The result is byte for byte what one :class:`DatasetWriter` given the
    same samples in the same order writes. The inputs are read through their sample index, so
    samples in movie fragments are merged too. ``lock`` and ``side_files`` are those of
    :class:`DatasetWriter` (a lock the caller holds; files replaced together with the output).

    The output keeps the inputs' class names (``moov/udta/bzcl``): the inputs that have a class
    list must have the same one (a ``BoxError`` names the first that differs), and those without
    one take it. ``classes`` given replaces them all.
    """
    paths = [os.fspath(p) for p in inputs]
    if not paths:
        raise ValueError("concat needs at least one input")
    check_not_an_input(output, paths)
    if is_url(output):  # merged in a local staging folder, then uploaded whole
        from .remote import staged_name, write_then_upload

        def merge(local: str) -> int:
            staged = {staged_name(local, path): text for path, text in (side_files or {}).items()}
            return concat(paths, local, fsync=fsync, side_files=staged, classes=classes)

        return write_then_upload(os.fspath(output), merge)
    with DatasetWriter(output, fsync=fsync, lock=lock, classes=classes) as writer:
        first_with_classes = None
        for path in paths:
            shard = _Shard(path)
            try:
                if classes is None and shard.classes is not None:
                    if first_with_classes is None:
                        first_with_classes, writer.classes = path, shard.classes
                    elif shard.classes != writer.classes:
                        raise BoxError(
                            f"{path}: its class names ({_names_text(shard.classes)}) differ from those of "
                            f"{first_with_classes} ({_names_text(writer.classes)}): concat keeps one class list",
                            path=f"moov/{layout.CLASSES_PATH}",
                        )
                writer._append_shard(shard)
            finally:
                shard.close()
        writer.close(side_files)
        return len(writer)


def _names_text(names: Sequence[str], shown: int = 4) -> str:
    """A short text of class names: the count and the first few."""
    head = ", ".join(repr(name) for name in names[:shown])
    return f"{len(names)}: {head}{', ...' if len(names) > shown else ''}"
