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
