"""Threads on the CPU path: swscale on the decoding thread, and the Loader's batch thread on one torch thread.

With every core decoding its own images, a second level of threads (swscale's team per
context, an OpenMP team in the thread that stacks the batches) adds CPU time and no speed.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from bzna_boxes import layout
from bzna_boxes.decode import CpuDecoder
from bzna_boxes.decode.cpu import RgbConverter
from bzna_boxes.encode import encode_image
from bzna_boxes.image import CleanAperture
from bzna_boxes.torch import Loader

from bzna_samples import FAST, build_dataset, frame_image, open_dataset


def picture(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], -1).astype(np.uint8)


class RecordingReformatter:
    """A real PyAV reformatter that remembers the keyword arguments of each call."""

    def __init__(self, reformatter):
        self.reformatter = reformatter
        self.calls: list[dict] = []

    def reformat(self, frame, **options):
        self.calls.append(options)
        return self.reformatter.reformat(frame, **options)


def test_swscale_converts_on_the_calling_thread():
    image = frame_image(encode_image(picture(120, 80), **FAST).image)
    frame = CpuDecoder().decode_frame(image)
    converter = RgbConverter(frame.width, frame.height)
    expected = converter.convert(frame, image.clean_aperture)
    converter.reformatter = RecordingReformatter(converter.reformatter)
    assert np.array_equal(converter.convert(frame, image.clean_aperture), expected)
    assert [call.get("threads") for call in converter.reformatter.calls] == [1]


class RecordingLoader(Loader):
    """A Loader that notes, in the thread that makes each batch, torch's intra-op thread count."""

    def _batch(self, loaded):
        self.batch_threads.append((threading.current_thread().name, torch.get_num_threads()))
        return super()._batch(loaded)


def test_the_batch_thread_runs_torch_on_one_thread_and_leaves_the_default(tmp_path):
    items = [(encode_image(picture(64 + 8 * k, 64), **FAST), k, f"{k}.png") for k in range(4)]
    dataset = open_dataset(build_dataset(tmp_path / "t.bzna", items))
    default = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = RecordingLoader(dataset, batch_size=2, device="cpu", size=32, track=layout.INPUT_TRACK, num_threads=2)
        loader.batch_threads = []
        batches = list(loader)
        loader.close()
        assert [len(images) for images, _ in batches] == [2, 2]
        assert loader.batch_threads == [("bzna-loader", 1)] * 2
        assert torch.get_num_threads() == 2  # the caller's, and the default of threads started later
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(default)
