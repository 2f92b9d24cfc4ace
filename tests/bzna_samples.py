"""Small real ``.bzna`` datasets for the decoding tests, encoded once per test process.

Images are encoded with ``bzna_boxes.encode`` (libx265, preset ultrafast, no resizing), written
with ``bzna_boxes.DatasetWriter`` and read back with ``bzna_boxes.dataset.Dataset``. Where those
modules are absent (a checkout without them), :func:`write_bzna` packs the file with
``layout.inner_sample``/``layout.outer_moov`` and :class:`MiniDataset` reads it, parsing the same
boxes (outer stco/stsz, inner hvc1/hvcC/clap/tkhd/stco/stsz) into the same ``EncodedImage``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bzna_boxes import layout
from bzna_boxes.boxes import Box, Boxes, find
from bzna_boxes.encode import EncodedFrame, EncodedSample, encode_image, load_rgb
from bzna_boxes.image import CleanAperture, EncodedImage

REPO = Path(__file__).resolve().parent.parent
FIXTURE_IMAGES = sorted((REPO / "fixtures" / "images").glob("*/*.jpg"))
FAST = dict(max_short_side=None, preset="ultrafast")


@functools.lru_cache(maxsize=None)
def fixture_photographs() -> tuple[tuple[str, np.ndarray, EncodedSample], ...]:
    """``(name, rgb, encoded)`` for every photograph in fixtures/images, at its own size."""
    return tuple((path.name, load_rgb(path), encode_image(load_rgb(path), **FAST)) for path in FIXTURE_IMAGES)


def frame_image(frame: EncodedFrame) -> EncodedImage:
    """The EncodedImage a reader gives for an encoded frame (clap from the layout's clap box)."""
    clap = layout.clean_aperture(frame)
    return EncodedImage(
        payload=memoryview(frame.payload),
        hvcc=frame.hvcc,
        frame_width=frame.frame_width,
        frame_height=frame.frame_height,
        width=frame.width,
        height=frame.height,
        clean_aperture=CleanAperture.from_clap(clap, frame.frame_width, frame.frame_height),
    )


def _track(tree, name: str):
    for trak in (box for box in find(tree, "moov")["children"] if box["type"] == "trak"):
        if find(trak, "mdia/hdlr")["name"].rstrip("\x00") == name:
            return trak
    raise KeyError(name)


def _samples(trak) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and sizes of a track written with one sample per chunk (the seed's layout)."""
    stbl = find(trak, "mdia/minf/stbl")
    offsets = find(stbl, "stco", default=None) or find(stbl, "co64")
    sizes = find(stbl, "stsz")
    return np.asarray(offsets["chunk_offsets"], np.uint64), np.asarray(sizes["entry_sizes"], np.uint64)


def inner_image(data: memoryview, track: str = layout.THUMB_TRACK) -> EncodedImage:
    """Parse one inner sample MP4 and return the image of ``track`` (minimal reader)."""
    tree = Boxes.parse(data)
    trak = _track(tree, track)
    entry = find(trak, "mdia/minf/stbl/stsd")["children"][0]
    hvcc = find(entry, "hvcC")
    clap = find(entry, "clap", default=None)
    tkhd = find(trak, "tkhd")
    offsets, sizes = _samples(trak)
    start, size = int(offsets[0]), int(sizes[0])
    return EncodedImage(
        payload=data[start : start + size],
        hvcc=hvcc,
        frame_width=entry["width"],
        frame_height=entry["height"],
        width=int(tkhd["width"]),
        height=int(tkhd["height"]),
        clean_aperture=CleanAperture.from_clap(clap, entry["width"], entry["height"]),
        codec=entry["type"],
    )


@dataclass
class MiniSample:
    """What the tests need of ``bzna_boxes.Sample``."""

    data: memoryview
    target: int
    filename: str

    def image(self, track: str = layout.THUMB_TRACK) -> EncodedImage:
        if not len(self.data):
            raise LookupError("missing sample")
        return inner_image(self.data, track)


class MiniDataset:
    """A read-only view of a .bzna file: ``len``, ``[i]`` -> MiniSample, ``targets``."""

    def __init__(self, path: str | Path):
        self.buffer = memoryview(Path(path).read_bytes())
        tree = Boxes.parse(self.buffer)
        self.offsets, self.sizes = _samples(_track(tree, layout.INPUT_TRACK))
        target_offsets, _ = _samples(_track(tree, layout.TARGET_TRACK))
        name_offsets, name_sizes = _samples(_track(tree, layout.FILENAME_TRACK))
        self.targets = np.array([int.from_bytes(self.buffer[int(o) : int(o) + 8], "little", signed=True) for o in target_offsets], np.int64)
        self.filenames = [bytes(self.buffer[int(o) : int(o) + int(s)]).decode() for o, s in zip(name_offsets, name_sizes)]

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> MiniSample:
        start, size = int(self.offsets[index]), int(self.sizes[index])
        return MiniSample(self.buffer[start : start + size], int(self.targets[index]), self.filenames[index])


def write_bzna(path: Path, items: list[tuple[EncodedSample | None, int, str]]) -> Path:
    """Write a .bzna of ``(encoded, target, filename)``; ``encoded`` None makes a missing sample."""
    inners = [layout.inner_sample(enc.image, enc.thumbnail, target, name) if enc is not None else b"" for enc, target, name in items]
    targets = [int(target).to_bytes(8, "little", signed=True) for _, target, _ in items]
    names = [name.encode() for _, _, name in items]
    blocks = inners + targets + names
    header = Box.build(layout.file_type())
    start = len(header) + 8
    offsets = np.cumsum([start] + [len(block) for block in blocks])[:-1].astype(np.uint64)
    sizes = np.array([len(block) for block in blocks], np.uint32)
    count = len(items)

    def table(first: int) -> layout.SampleTable:
        return layout.SampleTable(offsets[first : first + count], sizes[first : first + count])

    moov = layout.outer_moov(table(0), table(count), table(2 * count))
    mdat = (8 + int(sizes.sum())).to_bytes(4, "big") + b"mdat"
    path.write_bytes(header + mdat + b"".join(blocks) + Box.build(moov))
    return path


def build_dataset(path: Path, items: list[tuple[EncodedSample | None, int, str]]) -> Path:
    """Write ``items`` with ``DatasetWriter`` (or :func:`write_bzna` without it); return ``path``."""
    if importlib.util.find_spec("bzna_boxes.writer") is None:
        return write_bzna(path, items)
    from bzna_boxes.writer import DatasetWriter

    with DatasetWriter(path, fsync=False) as writer:
        for encoded, target, name in items:
            if encoded is None:
                writer.add_missing(target, name)
            else:
                writer.add(encoded, target, name)
    return path


def open_dataset(path: Path):
    """``bzna_boxes.Dataset(path)`` once the reader exists, else :class:`MiniDataset`."""
    if importlib.util.find_spec("bzna_boxes.dataset") is not None:
        from bzna_boxes.dataset import Dataset

        return Dataset(path)
    return MiniDataset(path)
