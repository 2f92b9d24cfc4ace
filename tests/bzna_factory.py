"""Small .bzna files for the reader's tests, built from plain values with the layout's builders.

Not a writer (that is ``bzna_boxes.writer``): it puts the outer ``mdat`` (inner samples, then
targets, then filenames) and the ``moov`` from :func:`bzna_boxes.layout.outer_moov` in a file,
so that every offset, size, target and filename is known to the test that reads it back.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bzna_boxes import Box, layout

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class Entry:
    """One sample: the inner MP4 (None: missing), its target (None: no target), its filename."""

    inner: bytes | None
    target: int | None
    filename: str
    thumb_span: tuple[int, int] | None = None  # (offset, size) of the thumbnail inside ``inner``


def _offsets(start: int, sizes: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(sizes, np.uint64)
    return (start + np.concatenate(([0], np.cumsum(sizes)[:-1]))).astype(np.uint64) if len(sizes) else np.zeros(0, np.uint64)


def write_dataset(path: str | os.PathLike, entries: Sequence[Entry], video_hvcc=None, *, large_mdat: bool = False) -> dict:
    """Write ``entries`` as a .bzna file; return the tables written (offsets and sizes per track)."""
    head = Box.build(layout.file_type())
    header = 16 if large_mdat else 8
    start = len(head) + header
    inner = [e.inner or b"" for e in entries]
    targets = [b"" if e.target is None else struct.pack("<q", e.target) for e in entries]
    names = [e.filename.encode("utf-8") for e in entries]
    input_sizes = np.array([len(b) for b in inner], np.uint32)
    input_offsets = _offsets(start, input_sizes)
    target_start = start + int(input_sizes.sum())
    target_sizes = np.array([len(b) for b in targets], np.uint32)
    target_offsets = _offsets(target_start, target_sizes)
    name_start = target_start + int(target_sizes.sum())
    name_sizes = np.array([len(b) for b in names], np.uint32)
    name_offsets = _offsets(name_start, name_sizes)
    payload = b"".join(inner) + b"".join(targets) + b"".join(names)
    tables = {
        layout.INPUT_TRACK: layout.SampleTable(input_offsets, input_sizes),
        layout.TARGET_TRACK: layout.SampleTable(target_offsets, target_sizes),
        layout.FILENAME_TRACK: layout.SampleTable(name_offsets, name_sizes),
    }
    video = None
    if video_hvcc is not None:
        spans = [(e.thumb_span if e.inner else (0, 0)) for e in entries]
        video = layout.SampleTable(
            np.array([int(o) + (int(s) and int(input_offsets[i])) for i, (o, s) in enumerate(spans)], np.uint64),
            np.array([s for _, s in spans], np.uint32),
        )
        tables[layout.VIDEO_TRACK] = video
    moov = layout.outer_moov(tables[layout.INPUT_TRACK], tables[layout.TARGET_TRACK], tables[layout.FILENAME_TRACK], video, video_hvcc)
    mdat = (struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) if large_mdat else struct.pack(">I4s", 8 + len(payload), b"mdat"))
    Path(path).write_bytes(head + mdat + payload + Box.build(moov))
    return tables


def write_numbered(path: str | os.PathLike, count: int) -> None:
    """A file of ``count`` samples built with numpy: inner sample i is the byte i % 251,
    target i % 1000, filename ``str(i)`` (ImageNet-sized splits in a second)."""
    head = Box.build(layout.file_type())
    start = len(head) + 16
    index = np.arange(count, dtype=np.int64)
    inner = (index % 251).astype(np.uint8).tobytes()
    targets = (index % 1000).astype("<i8").tobytes()
    names = [str(i).encode() for i in range(count)]
    name_sizes = np.array([len(n) for n in names], np.uint32)
    ones = np.ones(count, np.uint32)
    inputs = layout.SampleTable(start + index.astype(np.uint64), ones)
    target_table = layout.SampleTable(_offsets(start + count, np.full(count, 8)), np.full(count, 8, np.uint32))
    name_table = layout.SampleTable(_offsets(start + 9 * count, name_sizes), name_sizes)
    payload = inner + targets + b"".join(names)
    moov = layout.outer_moov(inputs, target_table, name_table)
    Path(path).write_bytes(head + struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload + Box.build(moov))


def read_everything(dataset) -> list[tuple[int, int, str, bytes]]:
    """(index, target, filename, data) of every sample: what two processes must agree on."""
    return [(s.index, s.target, s.filename, bytes(s.data)) for s in dataset]


def plain_entries(count: int, seed: int = 0, missing: Sequence[int] = (), no_target: Sequence[int] = ()) -> list[Entry]:
    """Entries with arbitrary inner bytes (for indexing tests: nothing parses them)."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        inner = None if i in missing else rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        target = None if i in no_target else int(rng.integers(0, 1000))
        entries.append(Entry(inner, target, f"n{i:08d}_{'é' if i % 3 == 0 else 'x'}{i}.JPEG"))
    return entries


def encoded_entries(images: Sequence[str] | None = None, preset: str = "ultrafast") -> tuple[list[Entry], list, object]:
    """Entries with real H.265 inner samples of the fixture photographs (and their encodes)."""
    from bzna_boxes.encode import encode_image, load_rgb

    paths = images or sorted(str(p) for p in (FIXTURES / "images").glob("*/*.jpg"))
    entries, encoded = [], []
    for target, path in enumerate(paths):
        sample = encode_image(load_rgb(path), preset=preset)
        inner = layout.inner_sample(sample.image, sample.thumbnail, target, Path(path).name)
        span = layout.inner_thumbnail_span(sample.image, sample.thumbnail)
        entries.append(Entry(inner, target, Path(path).name, span))
        encoded.append(sample)
    thumbs = [s.thumbnail or s.image for s in encoded]
    video_hvcc = next((t.hvcc for t in thumbs if t.frame_width == layout.THUMBNAIL_SIZE and t.frame_height == layout.THUMBNAIL_SIZE), None)
    return entries, encoded, video_hvcc
