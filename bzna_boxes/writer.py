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
import mmap
import os
import struct
import sys
import weakref
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from . import layout
from .atomic import publish, remove_quietly, temporary_beside
from .boxes import Box, Boxes, find
from .checksum import CRC32C, file_checksums
from .errors import BoxError

__all__ = ["DatasetWriter", "InnerSample", "concat", "run_concat"]

HEADER_AT = layout.FILE_TYPE_SIZE
"""Where the reserved mdat header starts: right after ftyp."""
HEADER_SPACE = 16
"""Bytes reserved for the mdat header: ``free`` (8) + 32-bit ``mdat`` header (8), or a largesize header."""
PAYLOAD_AT = HEADER_AT + HEADER_SPACE
"""Offset of the first inner sample."""

_MAX32 = 0xFFFFFFFF
_FREE_THEN_MDAT = struct.Struct(">I4sI4s")
_LARGE_MDAT = struct.Struct(">I4sQ")
_COPY_CHUNK = 64 << 20
_IMAGE_AT = layout.FILE_TYPE_SIZE + 8
"""Offset of the image payload inside an inner sample: after ftyp and the mdat header."""
_PACK_TARGET = struct.Struct("<q").pack
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
# frames of the same geometry and parameter sets that moov differs only in 8 numbers (the stsz
# entry and stco offset of its 4 tracks), so it is built once per kind of frame and those
# numbers are packed into it per sample. The template checks itself against layout once.


class _InnerTemplate:
    """The bytes of the inner samples of one image/thumbnail geometry and hvcC, with slots for sizes."""

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
        slots = []
        for index, name in enumerate(layout.INNER_TRACKS):
            stbl = find(moov, f"trak[{index}]/mdia/minf/stbl")
            stsz, stco = find(stbl, "stsz"), find(stbl, "stco")
            if stsz.sample_size or len(stsz.entry_sizes) != 1 or len(stco.chunk_offsets) != 1:
                raise AssertionError(f"layout.inner_sample changed: {name} has not one stsz entry and one stco offset")
            slots += [stsz._offset + 20 - moov._offset, stco._offset + 16 - moov._offset]
        pieces, fmt, at = [], ">", 0
        for slot in slots:
            pieces.append(moov_bytes[at:slot])
            fmt += f"{slot - at}sI"
            at = slot + 4
        self._moov = struct.Struct(fmt + f"{len(moov_bytes) - at}s")
        self._pieces = pieces + [moov_bytes[at:]]
        if self.pack(image, thumbnail, 0, probe_name.encode())[0] != probe:
            raise AssertionError("layout.inner_sample changed: the inner-sample template no longer matches it")

    def pack(self, image: layout.Frame, thumbnail: layout.Frame | None, target: int, name: bytes) -> tuple[bytes, int, int]:
        """The inner sample of these frames, target and UTF-8 filename, and its thumbnail's (offset, size)."""
        image_payload = image.payload
        image_size = len(image_payload)
        if self.has_thumbnail:
            thumb_payload = thumbnail.payload
            thumb_size = len(thumb_payload)
            thumb_at, thumb_len = _IMAGE_AT + image_size, thumb_size
        else:
            thumb_payload, thumb_size = b"", 0
            thumb_at, thumb_len = _IMAGE_AT, image_size
        target_at = _IMAGE_AT + image_size + thumb_size
        name_at = target_at + 8
        name_size = len(name)
        p = self._pieces
        moov = self._moov.pack(
            p[0], image_size, p[1], _IMAGE_AT, p[2], thumb_len, p[3], thumb_at,
            p[4], 8, p[5], target_at, p[6], name_size, p[7], name_at, p[8],
        )  # fmt: skip
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
    return (frame.frame_width, frame.frame_height, frame.width, frame.height) if frame is not None else ()


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
        fast_key = (id(image.hvcc), image.frame_width, image.frame_height, image.width, image.height)
    else:
        thumb_hvcc = thumbnail.hvcc
        fast_key = (id(image.hvcc), image.frame_width, image.frame_height, image.width, image.height,
                    id(thumb_hvcc), thumbnail.frame_width, thumbnail.frame_height, thumbnail.width, thumbnail.height)  # fmt: skip
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
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True, **encode_options: Any):
        unknown = set(encode_options) - _ENCODE_OPTIONS
        if unknown:
            raise TypeError(f"unknown encoder options {sorted(unknown)}; expected some of {sorted(_ENCODE_OPTIONS)}")
        self.path = os.fspath(path)
        self.encode_options = encode_options
        self._fsync = fsync
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path} is a directory")
        fd, self._temp_path = temporary_beside(self.path)
        self._cleanup = weakref.finalize(self, remove_quietly, self._temp_path)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._write = self._file.write
        self._closed = False
        self._write(Box.build(layout.file_type()) + bytes(HEADER_SPACE))
        self._pos = PAYLOAD_AT
        self._rows = bytearray()  # _ROW records
        self._names = bytearray()  # the filenames block
        self._gaps: list[tuple[int, int]] = []  # (sample index, bytes skipped before it)
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
        self._write(data)
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

    def _sparse_gap(self, size: int) -> None:
        """Tests only: leave ``size`` unwritten (sparse, reading as zeros) bytes in the mdat."""
        self._file.seek(size, os.SEEK_CUR)
        self._gaps.append((len(self), size))
        self._pos += size

    # -- finishing

    def close(self) -> None:
        """Write the targets, filenames and moov, then move the file to ``path``."""
        if self._closed:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._cleanup.detach()

    def abort(self) -> None:
        """Give up: remove the temporary file; nothing appears at ``path``."""
        self._closed = True
        try:
            self._file.close()
        except OSError:
            pass
        self._cleanup()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _finish(self) -> None:
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
        if self._gaps:
            shift = np.zeros(count + 1, np.uint64)
            for index, gap in self._gaps:
                shift[index] += np.uint64(gap)
            offsets += np.cumsum(shift, dtype=np.uint64)[:count]
        targets = layout.SampleTable(
            targets_at + layout.TARGET_DTYPE.itemsize * np.arange(count, dtype=np.uint64),
            np.full(count, layout.TARGET_DTYPE.itemsize, np.uint32),
            rows["target_sum"],
        )
        names = layout.SampleTable(_starts(names_at, rows["name_size"]), rows["name_size"].astype(np.uint32), rows["name_sum"])
        video, configs, entries = self._video_table(rows, offsets)
        inputs = layout.SampleTable(offsets, sizes.astype(np.uint32), rows["input_sum"])
        moov = layout.outer_moov(inputs, targets, names, video, configs, entries)
        Box.build_stream(moov, f)

        if end - (HEADER_AT + 8) <= _MAX32:
            header = _FREE_THEN_MDAT.pack(8, b"free", end - (HEADER_AT + 8), b"mdat")
        else:
            header = _LARGE_MDAT.pack(1, b"mdat", end - HEADER_AT)
        f.seek(HEADER_AT)
        f.write(header)
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())
        f.close()
        publish(self._temp_path, self.path)
        if self._fsync:
            _fsync_directory(os.path.dirname(os.path.abspath(self.path)))

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
        self._file.flush()
        out_fd = self._file.fileno()
        offsets, sizes = shard.input_offsets, shard.input_sizes
        present = sizes > 0
        sums = shard.checksums
        if sums is None:
            sums = self._copy_computing_checksums(shard, present)
        else:
            for start, stop in shard.runs():
                first = int(offsets[start])
                length = int(offsets[stop - 1]) + int(sizes[stop - 1]) - first
                _copy_range(shard.fd, out_fd, first, self._pos, length)
                self._pos += length
        self._file.seek(self._pos)
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
        out_fd = self._file.fileno()
        input_sums, thumb_sums = np.zeros(count, np.uint64), np.zeros(count, np.uint64)
        for start, stop in shard.runs():
            first, destination = int(offsets[start]), self._pos
            thumbs = start + np.flatnonzero(present[start:stop])

            def write(at: int, data: memoryview) -> None:
                _write_all(out_fd, data, destination + at - first)

            both = file_checksums(
                shard._file,
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


def _copy_range(src_fd: int, dst_fd: int, src_at: int, dst_at: int, length: int) -> None:
    """Copy ``length`` bytes between files at explicit offsets: ``copy_file_range``, else pread/pwrite."""
    copy_file_range = getattr(os, "copy_file_range", None)
    while length > 0 and copy_file_range is not None:
        try:
            done = copy_file_range(src_fd, dst_fd, min(length, 1 << 30), src_at, dst_at)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM):
                break
            raise
        if done == 0:
            raise BoxError(f"input ends before {length} more bytes could be copied", offset=src_at)
        src_at, dst_at, length = src_at + done, dst_at + done, length - done
    while length > 0:
        chunk = os.pread(src_fd, min(length, _COPY_CHUNK), src_at)
        if not chunk:
            raise BoxError(f"input ends before {length} more bytes could be copied", offset=src_at)
        _write_all(dst_fd, chunk, dst_at)
        src_at, dst_at, length = src_at + len(chunk), dst_at + len(chunk), length - len(chunk)


def _write_all(fd: int, data: bytes | memoryview, at: int) -> None:
    """``pwrite`` all of ``data`` at offset ``at``."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], at + written)


# --- reading a shard's tables -----------------------------------------------------------------


class _Shard:
    """The tables of a ``.bzna`` file, as :func:`concat` needs them (one sample per chunk)."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "rb")
        self.fd = self._file.fileno()
        try:
            self._read()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._file.close()

    def _read(self) -> None:
        size = os.fstat(self.fd).st_size
        if size == 0:
            raise BoxError(f"{self.path} is empty", offset=0)
        mm = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
        try:
            self._read_tables(memoryview(mm))
        finally:
            try:
                mm.close()
            except BufferError:  # views still held by an exception's traceback; freed with it
                pass

    def _read_tables(self, view: memoryview) -> None:
        boxes = Boxes.parse(view)
        moovs = [box for box in boxes if box.type == "moov"]
        if len(moovs) != 1:
            raise BoxError(f"{self.path}: expected one moov, found {len(moovs)}", offset=0)
        tracks = {}
        for index, trak in enumerate(b for b in moovs[0].children if b.type == "trak"):
            hdlr = find(trak, "mdia/hdlr")
            tracks[str(hdlr.name).rstrip("\x00")] = (index, trak)
        for name in (layout.INPUT_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK):
            if name not in tracks:
                raise BoxError(f"{self.path} is not a .bzna dataset: no {name} track", offset=moovs[0]._offset, path="moov")

        def table(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
            index, trak = tracks[name]
            path = f"moov/trak[{index}]/mdia/minf/stbl" if index else "moov/trak/mdia/minf/stbl"
            stbl = find(trak, "mdia/minf/stbl")
            stsz = find(stbl, "stsz")
            chunks = find(stbl, "stco", None) or find(stbl, "co64")
            offsets = np.asarray(chunks.chunk_offsets, dtype=np.uint64)
            count = len(offsets)
            sizes = np.asarray(stsz.entry_sizes, dtype=np.uint32) if not stsz.sample_size else np.full(stsz.sample_count, stsz.sample_size, np.uint32)
            stsc = find(stbl, "stsc").entries
            if len(sizes) != count or (count and (stsc[0]["first_chunk"] != 1 or np.any(stsc["samples_per_chunk"] != 1))):
                raise BoxError(f"{self.path}: {name} does not have one sample per chunk (as this library writes)", path=path)
            if count and int((offsets + sizes).max()) > len(view):
                raise BoxError(f"{self.path}: a {name} sample runs past the end of the file ({len(view)} bytes)", path=path)
            entries = np.ones(count, np.uint32)
            if len(stsc) > 1:  # description index per run of chunks
                starts = np.asarray(stsc["first_chunk"], np.int64) - 1
                if np.any(np.diff(starts) <= 0) or starts[-1] >= max(count, 1):
                    raise BoxError(f"{self.path}: {name} has a malformed stsc", path=path)
                entries = np.repeat(np.asarray(stsc["sample_description_index"], np.uint32), np.diff(np.append(starts, count)))
            return offsets, sizes, entries, find(stbl, "stsd")

        self.input_offsets, self.input_sizes, _, _ = table(layout.INPUT_TRACK)
        count = len(self.input_sizes)
        target_offsets, target_sizes, _, _ = table(layout.TARGET_TRACK)
        name_offsets, self.filename_sizes, _, _ = table(layout.FILENAME_TRACK)
        if not len(target_sizes) == len(self.filename_sizes) == count:
            raise BoxError(
                f"{self.path}: track lengths differ ({count} inputs, {len(target_sizes)} targets, {len(self.filename_sizes)} filenames)",
                offset=moovs[0]._offset,
                path="moov",
            )
        if np.any(target_sizes != layout.TARGET_DTYPE.itemsize):
            raise BoxError(f"{self.path}: a target is not {layout.TARGET_DTYPE.itemsize} bytes", path="moov")
        self.targets = _gather(view, target_offsets, target_sizes).view(layout.TARGET_DTYPE).astype(np.int64)
        self.filenames = _gather(view, name_offsets, self.filename_sizes).tobytes()
        present = self.input_sizes > 0
        if layout.VIDEO_TRACK in tracks:
            self.video_offsets, self.video_sizes, self.video_entries, stsd = table(layout.VIDEO_TRACK)
            if len(self.video_sizes) != count:
                raise BoxError(f"{self.path}: {len(self.video_sizes)} video samples for {count} inputs", path="moov")
            self.video_configs = [bytes(view[hvcc._offset : hvcc._offset + hvcc._size]) for hvcc in (find(entry, "hvcC") for entry in stsd.children)]
            inside = (self.video_offsets >= self.input_offsets) & (
                self.video_offsets + self.video_sizes <= self.input_offsets + self.input_sizes
            )
            if np.any(present & ~inside):
                bad = int(np.flatnonzero(present & ~inside)[0])
                raise BoxError(f"{self.path}: video sample {bad} is not inside input sample {bad}", path="moov")
            if np.any(present & ((self.video_entries < 1) | (self.video_entries > len(self.video_configs)))):
                raise BoxError(f"{self.path}: a video sample has no sample description", path="moov")
        elif np.any(present):
            raise BoxError(f"{self.path}: has images but no {layout.VIDEO_TRACK} track", path="moov")
        else:
            self.video_offsets = np.zeros(count, np.uint64)
            self.video_sizes = np.zeros(count, np.uint32)
            self.video_entries = np.zeros(count, np.uint32)
            self.video_configs = []
        self.checksums = self._read_checksums(moovs[0], tracks, count)

    def _read_checksums(self, moov: Any, tracks: dict, count: int) -> tuple[np.ndarray, ...] | None:
        """The checksums of the input, video, target and filename samples (``udta/bzsc``), or None
        when the file has none, or none in the algorithm this library writes."""
        box = layout.find_checksums(moov)
        if box is None or box.algorithm != layout.CHECKSUM_ALGORITHM or box.checksum_size != layout.CHECKSUM_SIZE:
            return None
        by_id = {int(entry.track_id): entry.checksums for entry in box.entries}
        sums = []
        for name in (layout.INPUT_TRACK, layout.VIDEO_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK):
            if name not in tracks:  # no video track: no images, no thumbnails
                sums.append(np.zeros(count, np.uint32))
                continue
            track_id = find(tracks[name][1], "tkhd").track_id
            table = by_id.get(track_id)
            if table is None or len(table) != count:
                found = "none" if table is None else f"{len(table)}"
                raise BoxError(f"{self.path}: the checksum table has {found} checksums for the {count} samples of {name}", offset=box._offset, path="moov/udta/bzsc")
            sums.append(table.astype(np.uint32))
        return tuple(sums)

    def runs(self) -> Iterable[tuple[int, int]]:
        """``(start, stop)`` index ranges of input samples stored back to back."""
        count = len(self.input_sizes)
        if not count:
            return []
        ends = self.input_offsets[:-1] + self.input_sizes[:-1]
        breaks = np.flatnonzero(ends != self.input_offsets[1:]) + 1
        bounds = [0, *breaks.tolist(), count]
        return list(zip(bounds[:-1], bounds[1:]))


def _gather(view: memoryview, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The bytes of samples (``offsets``, ``sizes``) one after the other, as a uint8 array."""
    if not len(sizes):
        return np.zeros(0, np.uint8)
    first = int(offsets[0])
    total = int(sizes.sum(dtype=np.uint64))
    contiguous = np.array_equal(offsets[1:], offsets[:-1] + sizes[:-1])
    if contiguous:
        return np.frombuffer(view[first : first + total], np.uint8).copy()
    return np.frombuffer(b"".join(view[int(o) : int(o) + int(s)] for o, s in zip(offsets, sizes)), np.uint8)


# --- concat -----------------------------------------------------------------------------------


def concat(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, fsync: bool = True) -> int:
    """Merge ``.bzna`` shards, in order, into ``output``; returns the number of samples.

    Inner samples are copied as they are (large sequential copies); targets, filenames and
    tables are rewritten. The result is byte for byte what one :class:`DatasetWriter` given the
    same samples in the same order writes.
    """
    paths = [os.fspath(p) for p in inputs]
    out = os.path.abspath(os.fspath(output))
    if not paths:
        raise ValueError("concat needs at least one input")
    for path in paths:
        if os.path.exists(path) and os.path.exists(out) and os.path.samefile(path, out):
            raise ValueError(f"the output {output} is also an input")
    with DatasetWriter(output, fsync=fsync) as writer:
        for path in paths:
            shard = _Shard(path)
            try:
                writer._append_shard(shard)
            finally:
                shard.close()
        return len(writer)


def run_concat(args) -> int:
    """``bzna concat A.bzna B.bzna ... -o OUT.bzna``."""
    try:
        count = concat(args.inputs, args.output)
    except ValueError as exc:  # BoxError included
        print(f"bzna concat: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {count} samples from {len(args.inputs)} files")
    return 0
