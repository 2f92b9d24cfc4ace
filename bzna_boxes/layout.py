"""The .bzna layout, in one place: track names, handlers, timescale, brands, splits.

Reader (index.py, dataset.py) and writer (writer.py) both take these names from here, so they
cannot drift apart. The layout is the one of ``shared/seed/imagenet-2012-bzna.rst``, with the
deviations listed in ``docs/format.md``.
"""

from __future__ import annotations

import numpy as np

MAJOR_BRAND = "isom"
MINOR_VERSION = 0
COMPATIBLE_BRANDS = ("bzna", "isom")

TIMESCALE = 20
"""mvhd/mdhd timescale of the outer container and of each inner sample."""
SAMPLE_DELTA = 20
"""Duration of one sample in the bzna_* tracks (the video track uses 1)."""

INPUT_TRACK = "bzna_input"
THUMB_TRACK = "bzna_thumb"
TARGET_TRACK = "bzna_target"
FILENAME_TRACK = "bzna_fname"
VIDEO_TRACK = "VideoHandler"
"""hdlr name of the outer video track that plays the thumbnails."""

INNER_TRACKS = (INPUT_TRACK, THUMB_TRACK, TARGET_TRACK, FILENAME_TRACK)
OUTER_TRACKS = (INPUT_TRACK, TARGET_TRACK, FILENAME_TRACK, VIDEO_TRACK)

TARGET_MIME = "application/octet-stream"
FILENAME_MIME = "text/plain"

TARGET_DTYPE = np.dtype("<i8")
"""Each target is a little-endian int64."""
NO_TARGET = -1
"""The target of a sample without one (e.g. the ImageNet test set)."""

FRAME_MULTIPLE = 512
"""Image frames are padded to multiples of this in both dimensions."""
THUMBNAIL_SIZE = 512
"""Thumbnails fit a THUMBNAIL_SIZE x THUMBNAIL_SIZE frame."""

IMAGENET_LENGTH = 1_431_167
IMAGENET_VAL = 50_000
IMAGENET_TEST = 100_000
"""ImageNet 2012: train, then 50,000 val, then 100,000 test (splits are counted from the end)."""


# --- builders: the boxes of an inner sample and of the outer moov, from plain values ---------

from dataclasses import dataclass  # noqa: E402
from typing import Any, Mapping, Protocol, Sequence  # noqa: E402


class Frame(Protocol):
    """What the layout needs of an encoded picture (:class:`bzna_boxes.image.EncodedImage` is one)."""

    payload: Any  # bytes-like: length-prefixed NAL units
    hvcc: Mapping[str, Any]  # hvcC field values
    frame_width: int
    frame_height: int
    width: int
    height: int


@dataclass(frozen=True)
class SampleTable:
    """Where a track's samples lie in the file: absolute offsets and sizes, one per sample, and
    optionally each sample's checksum (:data:`CHECKSUM_ALGORITHM`)."""

    offsets: np.ndarray
    sizes: np.ndarray
    checksums: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.sizes):
            raise ValueError(f"{len(self.offsets)} offsets but {len(self.sizes)} sizes")
        if self.checksums is not None and len(self.checksums) != len(self.sizes):
            raise ValueError(f"{len(self.checksums)} checksums for {len(self.sizes)} samples")

    def __len__(self) -> int:
        return len(self.offsets)


def file_type() -> dict:
    """The ftyp of both the outer file and each inner sample."""
    return {"type": "ftyp", "major_brand": MAJOR_BRAND, "minor_version": MINOR_VERSION, "compatible_brands": list(COMPATIBLE_BRANDS)}


FILE_TYPE_SIZE = 8 + 8 + 4 * len(COMPATIBLE_BRANDS)
"""Bytes of the ftyp box above."""


def clean_aperture(frame: Frame) -> dict:
    """The seed's clap: the picture without its right/bottom padding."""
    return {
        "type": "clap",
        "clean_aperture_width_n": frame.width,
        "clean_aperture_width_d": 1,
        "clean_aperture_height_n": frame.height,
        "clean_aperture_height_d": 1,
        "horiz_off_n": -(frame.frame_width - frame.width),
        "horiz_off_d": 2,
        "vert_off_n": -(frame.frame_height - frame.height),
        "vert_off_d": 2,
    }


def hevc_sample_entry(hvcc: Mapping[str, Any], width: int, height: int, extra: Sequence[dict] = ()) -> dict:
    """An ``hvc1`` sample entry (parameter sets in hvcC) of a ``width`` x ``height`` frame."""
    return {
        "type": "hvc1",
        "width": width,
        "height": height,
        "compressorname": "",
        "children": [{"type": "hvcC", **hvcc}, *extra],
    }


def metadata_sample_entry(mime_format: str) -> dict:
    """A ``mett`` sample entry for samples of type ``mime_format``."""
    return {"type": "mett", "content_encoding": "", "mime_format": mime_format, "children": []}


def chunk_offsets(offsets: np.ndarray) -> dict:
    """``stco`` while every offset fits 32 bits, else ``co64``; one chunk per sample."""
    offsets = np.asarray(offsets, dtype=np.uint64)
    if len(offsets) and int(offsets.max()) > 0xFFFFFFFF:
        return {"type": "co64", "chunk_offsets": offsets.astype(">u8")}
    return {"type": "stco", "chunk_offsets": offsets.astype(">u4")}


def _track(
    track_id: int,
    name: str,
    handler: str,
    sample_entry: dict | Sequence[dict],
    table: SampleTable,
    *,
    sample_delta: int,
    flags: int,
    width: float = 0.0,
    height: float = 0.0,
    entry_indices: np.ndarray | None = None,
) -> dict:
    count = len(table)
    duration = sample_delta * count
    media_header = {"type": "vmhd", "flags": 1} if handler == "vide" else {"type": "nmhd"}
    stts = np.array([(count, sample_delta)] if count else [], dtype=[("sample_count", ">u4"), ("sample_delta", ">u4")])
    stsc = np.array(
        [(1, 1, 1)] if count else [],
        dtype=[("first_chunk", ">u4"), ("samples_per_chunk", ">u4"), ("sample_description_index", ">u4")],
    )
    if entry_indices is not None and count:  # one stsc run per change of sample entry (1-based)
        entry_indices = np.asarray(entry_indices, dtype=np.int64)
        starts = np.flatnonzero(np.diff(entry_indices, prepend=-1))
        stsc = np.zeros(len(starts), dtype=stsc.dtype)
        stsc["first_chunk"], stsc["samples_per_chunk"], stsc["sample_description_index"] = starts + 1, 1, entry_indices[starts]
    entries = [sample_entry] if isinstance(sample_entry, Mapping) else list(sample_entry)
    return {
        "type": "trak",
        "children": [
            {"type": "tkhd", "flags": flags, "track_id": track_id, "duration": duration, "width": float(width), "height": float(height)},
            {
                "type": "mdia",
                "children": [
                    {"type": "mdhd", "timescale": TIMESCALE, "duration": duration, "language": "und"},
                    {"type": "hdlr", "handler_type": handler, "name": name + "\x00"},
                    {
                        "type": "minf",
                        "children": [
                            media_header,
                            {"type": "dinf", "children": [{"type": "dref", "children": [{"type": "url ", "flags": 1}]}]},
                            {
                                "type": "stbl",
                                "children": [
                                    {"type": "stsd", "children": entries},
                                    {"type": "stts", "entries": stts},
                                    {"type": "stsz", "sample_size": 0, "entry_sizes": np.asarray(table.sizes).astype(">u4")},
                                    {"type": "stsc", "entries": stsc},
                                    chunk_offsets(table.offsets),
                                ],
                            },
                        ],
                    },
                ],
            },
        ],
    }


CHECKSUM_ALGORITHM = "c32c"
"""The ``bzsc`` algorithm this library writes: CRC-32C, 4 bytes per sample (``bzna_boxes.checksum``)."""
CHECKSUM_SIZE = 4
CHECKSUMS_PATH = "udta/bzsc"
"""Where the sample checksums live, under the outer ``moov``: readers skip ``udta`` boxes they do not know."""


def checksum_box(tables: Mapping[int, np.ndarray]) -> dict:
    """The ``bzsc`` box of ``tables`` (track_ID -> one :data:`CHECKSUM_ALGORITHM` checksum per sample)."""
    return {
        "type": "bzsc",
        "algorithm": CHECKSUM_ALGORITHM,
        "checksum_size": CHECKSUM_SIZE,
        "entries": [{"track_id": track_id, "checksums": np.asarray(sums).astype(">u4")} for track_id, sums in tables.items()],
    }


def find_checksums(moov: Mapping) -> Mapping | None:
    """The ``bzsc`` box of a parsed outer ``moov`` (at :data:`CHECKSUMS_PATH`), or None."""
    from .boxes import find

    return find(moov, CHECKSUMS_PATH, None)


CLASSES_PATH = "udta/bzcl"
"""Where the class names live, under the outer ``moov``, after the checksums."""


def class_names_box(classes: Sequence[str]) -> dict:
    """The ``bzcl`` box of ``classes`` (name k is target k's); a ``ValueError`` for a name with a NUL."""
    names = list(classes)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a class name must be a str, not {type(name).__name__}")
        if "\x00" in name:
            raise ValueError(f"class name {name!r} contains a NUL")
    return {"type": "bzcl", "class_names": names}


TRACK_ENABLED = 0x000003
"""tkhd flags of a track "enabled and used in the presentation" (seed: 000003)."""
TRACK_HIDDEN = 0x000000
"""tkhd flags of a track "not for display purpose" (seed: 000000)."""


def inner_thumbnail_span(image: Frame, thumbnail: Frame | None) -> tuple[int, int]:
    """(offset, size) of the thumbnail payload inside :func:`inner_sample`'s bytes (the image's when no thumbnail)."""
    image_at = FILE_TYPE_SIZE + 8
    if thumbnail is None:
        return image_at, memoryview(image.payload).nbytes
    return image_at + memoryview(image.payload).nbytes, memoryview(thumbnail.payload).nbytes


def filename_bytes(filename: str) -> bytes:
    """A filename as stored: UTF-8, a file system name's undecodable bytes (surrogate escapes) as they were."""
    return filename.encode("utf-8", "surrogateescape")


def inner_sample(image: Frame, thumbnail: Frame | None, target: int, filename: str) -> bytes:
    """The MP4 of one dataset sample, as the seed's "Dataset's Input Samples Structure".

    ftyp; mdat with the image, the thumbnail (absent when the image fits 512x512: the thumbnail
    track then points at the image), the target (little-endian int64) and the filename (UTF-8);
    moov with the tracks bzna_input, bzna_thumb, bzna_target and bzna_fname.
    """
    from .boxes import Box

    thumb = thumbnail if thumbnail is not None else image
    name = filename_bytes(filename)
    image_size = memoryview(image.payload).nbytes
    thumb_size = memoryview(thumb.payload).nbytes if thumbnail is not None else 0
    start = FILE_TYPE_SIZE + 8  # payload of the mdat that follows ftyp
    image_at = start
    thumb_at = image_at + image_size if thumbnail is not None else image_at
    target_at = image_at + image_size + thumb_size
    name_at = target_at + TARGET_DTYPE.itemsize
    mdat_size = 8 + image_size + thumb_size + TARGET_DTYPE.itemsize + len(name)

    def table(offset: int, size: int) -> SampleTable:
        return SampleTable(np.array([offset], np.uint64), np.array([size], np.uint32))

    def video(frame: Frame, track_id: int, track_name: str, flags: int, offset: int) -> dict:
        entry = hevc_sample_entry(frame.hvcc, frame.frame_width, frame.frame_height, [clean_aperture(frame)])
        size = memoryview(frame.payload).nbytes
        return _track(
            track_id, track_name, "vide", entry, table(offset, size), sample_delta=SAMPLE_DELTA, flags=flags, width=frame.width, height=frame.height
        )

    moov = {
        "type": "moov",
        "children": [
            {"type": "mvhd", "timescale": TIMESCALE, "duration": SAMPLE_DELTA, "next_track_id": 5},
            video(image, 1, INPUT_TRACK, TRACK_HIDDEN, image_at),
            video(thumb, 2, THUMB_TRACK, TRACK_ENABLED, thumb_at),
            _track(3, TARGET_TRACK, "meta", metadata_sample_entry(TARGET_MIME), table(target_at, 8), sample_delta=SAMPLE_DELTA, flags=TRACK_HIDDEN),
            _track(4, FILENAME_TRACK, "meta", metadata_sample_entry(FILENAME_MIME), table(name_at, len(name)), sample_delta=SAMPLE_DELTA, flags=TRACK_ENABLED),
        ],
    }
    parts = [
        Box.build(file_type()),
        (mdat_size).to_bytes(4, "big") + b"mdat",
        bytes(image.payload),
        bytes(thumbnail.payload) if thumbnail is not None else b"",
        int(target).to_bytes(8, "little", signed=True),
        name,
        Box.build(moov),
    ]
    return b"".join(parts)


def outer_moov(
    inputs: SampleTable,
    targets: SampleTable,
    filenames: SampleTable,
    video: SampleTable | None = None,
    video_hvcc: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    video_entries: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
) -> dict:
    """The outer moov of the seed: bzna_input, bzna_target, bzna_fname and the video track.

    The video track plays the thumbnails: its samples point into the inner samples' thumbnail
    payloads and its entry is ``hvc1`` with ``video_hvcc`` (the seed's ``avc1`` would send
    players to the wrong decoder). It is left out when ``video`` is None (e.g. no frames).
    Thumbnails encoded with different parameter sets (e.g. other x265 presets) get one ``hvc1``
    entry each: ``video_hvcc`` is then a list and ``video_entries`` the 1-based entry per sample.
    When every table has its checksums, they follow the tracks in ``udta/bzsc``; ``classes``
    (the name of each target, from 0), when given, follows them in ``udta/bzcl``.
    """
    count = len(inputs)
    if not len(targets) == len(filenames) == count:
        raise ValueError(f"track lengths differ: {count} inputs, {len(targets)} targets, {len(filenames)} filenames")
    traks = [
        _track(1, INPUT_TRACK, "meta", metadata_sample_entry(TARGET_MIME), inputs, sample_delta=SAMPLE_DELTA, flags=TRACK_HIDDEN),
        _track(2, TARGET_TRACK, "meta", metadata_sample_entry(TARGET_MIME), targets, sample_delta=SAMPLE_DELTA, flags=TRACK_HIDDEN),
        _track(3, FILENAME_TRACK, "meta", metadata_sample_entry(FILENAME_MIME), filenames, sample_delta=SAMPLE_DELTA, flags=TRACK_ENABLED),
    ]
    if video is not None:
        if video_hvcc is None:
            raise ValueError("the video track needs the thumbnails' hvcC")
        if len(video) != count:
            raise ValueError(f"{len(video)} video samples for {count} inputs")
        hvccs = [video_hvcc] if isinstance(video_hvcc, Mapping) else list(video_hvcc)
        entries = [hevc_sample_entry(hvcc, THUMBNAIL_SIZE, THUMBNAIL_SIZE) for hvcc in hvccs]
        traks.append(
            _track(4, VIDEO_TRACK, "vide", entries, video, sample_delta=1, flags=TRACK_ENABLED, width=THUMBNAIL_SIZE, height=THUMBNAIL_SIZE, entry_indices=video_entries)
        )
    children = [{"type": "mvhd", "timescale": TIMESCALE, "duration": SAMPLE_DELTA * count, "next_track_id": len(traks) + 1}, *traks]
    tables = [inputs, targets, filenames] + ([video] if video is not None else [])
    user_data = []
    if all(table.checksums is not None for table in tables):
        sums = {trak["children"][0]["track_id"]: table.checksums for trak, table in zip(traks, tables)}
        user_data.append(checksum_box(sums))
    if classes is not None:
        user_data.append(class_names_box(classes))
    if user_data:
        children.append({"type": "udta", "children": user_data})
    return {"type": "moov", "children": children}
