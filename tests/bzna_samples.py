"""Small real ``.bzna`` datasets for the decoding tests, encoded once per test process.

Images are encoded with ``bzna_boxes.encode`` (libx265, preset ultrafast, no resizing), written
with ``bzna_boxes.writer.DatasetWriter`` and read back with ``bzna_boxes.dataset.Dataset``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bzna_boxes import layout
from bzna_boxes.dataset import Dataset
from bzna_boxes.encode import EncodedSample, encode_image, load_rgb
from bzna_boxes.image import CleanAperture, EncodedImage
from bzna_boxes.writer import DatasetWriter

REPO = Path(__file__).resolve().parent.parent
FIXTURE_IMAGES = sorted((REPO / "fixtures" / "images").glob("*/*.jpg"))
FAST = dict(max_short_side=None, preset="ultrafast")


@functools.lru_cache(maxsize=None)
def fixture_photographs() -> tuple[tuple[str, np.ndarray, EncodedSample], ...]:
    """``(name, rgb, encoded)`` for every photograph in fixtures/images, at its own size."""
    images = [(path.name, load_rgb(path)) for path in FIXTURE_IMAGES]
    return tuple((name, rgb, encode_image(rgb, **FAST)) for name, rgb in images)


def frame_image(frame: EncodedImage) -> EncodedImage:
    """The EncodedImage a reader gives for an encoded one: a view of its payload, the aperture parsed from the layout's clap box."""
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


def build_dataset(path: Path, items: list[tuple[EncodedSample | None, int, str]]) -> Path:
    """Write ``(encoded, target, filename)`` items (``encoded`` None: a missing sample); return ``path``."""
    with DatasetWriter(path, fsync=False) as writer:
        for encoded, target, name in items:
            if encoded is None:
                writer.add_missing(target, name)
            else:
                writer.add(encoded, target, name)
    return path


def open_dataset(path: Path) -> Dataset:
    """The dataset at ``path``."""
    return Dataset(path)
