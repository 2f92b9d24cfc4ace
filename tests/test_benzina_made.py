"""A dataset as the original Benzina tools wrote it (see benzina_made.py) reads, verifies and decodes.

What differs from our own files: full-range Y'CbCr (FFmpeg's yuvj420p), filenames ending in a
NUL, a target track that stops before the test split (and test samples without an inner target
track), inner tracks in another order, FFmpeg's one-sample ``stsz`` form, version-1 headers, a
64-bit mdat header, and an hvcC holding x265's 2 KB "info" SEI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

av = pytest.importorskip("av", reason="FFmpeg (PyAV) makes the files as the original tools did")

import bzna_boxes  # noqa: E402
from bzna_boxes import Boxes, BoxError, find  # noqa: E402
from bzna_boxes.cli import main  # noqa: E402
from bzna_boxes.decode import CpuDecoder  # noqa: E402
from bzna_boxes.dataset import inner_image  # noqa: E402
from bzna_boxes.decode.cpu import frame_to_rgb  # noqa: E402
from bzna_boxes.encode import load_rgb  # noqa: E402
from bzna_boxes.torch import Loader  # noqa: E402

from benzina_made import container, inner_sample, thumbnail_size  # noqa: E402
from writer_support import luma, psnr  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
# (image, target or None for the test split, filename)
ITEMS = [
    ("cat/chelsea.jpg", 281, "n02123045_1234.JPEG"),
    ("space/hubble_deep_field.jpg", 7, "n09999999_7.JPEG"),
    ("coffee/coffee_cup.jpg", 504, "n03063599_2.JPEG"),
    ("coffee/coffee.jpg", None, "ILSVRC2012_test_00000001.JPEG"),
    ("space/rocket.jpg", None, "ILSVRC2012_test_00000002.JPEG"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    sources = [load_rgb(FIXTURES / name) for name, _, _ in ITEMS]
    samples = [inner_sample(rgb, target, filename) for rgb, (_, target, filename) in zip(sources, ITEMS)]
    path = tmp_path_factory.mktemp("benzina") / "ilsvrc2012-like.bzna"
    path.write_bytes(container(samples))
    return path, sources, samples


def test_files_round_trip_byte_for_byte(made):
    path, _, samples = made
    data = path.read_bytes()
    assert Boxes.build(Boxes.parse(data)) == data
    for sample in samples:
        assert Boxes.build(Boxes.parse(sample)) == sample


def test_targets_and_filenames(made):
    path, _, _ = made
    with bzna_boxes.Dataset(path) as ds:
        assert len(ds) == len(ITEMS)
        assert [s.target for s in ds] == [-1 if t is None else t for _, t, _ in ITEMS]
        assert [s.filename for s in ds] == [name for _, _, name in ITEMS]  # the NUL terminators dropped


def test_pictures_decode_in_full_range(made):
    path, sources, _ = made
    decoder = CpuDecoder()
    with bzna_boxes.Dataset(path) as ds:
        for sample, source in zip(ds, sources):
            height, width = source.shape[:2]
            image = sample.image("bzna_input")
            assert (image.width, image.height) == (width, height)
            assert image.video_signal.full_range  # FFmpeg's yuvj420p
            rgb = decoder.decode(image)
            assert rgb.shape == source.shape
            ours = psnr(luma(rgb), luma(source))
            assert ours >= 45, (sample.filename, ours)  # CRF 10, as image2mp4 encodes
            read_as_limited = psnr(luma(frame_to_rgb(decoder.decode_frame(image), image.clean_aperture)), luma(source))
            assert read_as_limited < ours - 15  # what ignoring the VUI gave: about 30 dB, stretched contrast
            thumb = decoder.decode(sample.image("bzna_thumb"))
            assert thumb.shape == (*thumbnail_size(width, height)[::-1], 3)


def test_verify_finds_no_problem_and_the_cli_reads_it(made, capsys, tmp_path):
    path, _, _ = made
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found" in out and "ends after 3 of 5 samples" in out
    assert main(["inspect", "--depth", "2", str(path)]) == 0
    assert "[mdat]" in capsys.readouterr().out
    assert main(["decode", str(path), "3", "-o", str(tmp_path / "test.png"), "--device", "cpu"]) == 0
    assert "600x400" in capsys.readouterr().out


def test_loader_batches_with_targets(made):
    path, sources, _ = made
    with bzna_boxes.Dataset(path) as ds:
        batches = list(Loader(ds, batch_size=2, device="cpu", size=(64, 64)))
    assert [tuple(images.shape) for images, _ in batches] == [(2, 3, 64, 64), (2, 3, 64, 64), (1, 3, 64, 64)]
    assert torch.cat([t for _, t in batches]).tolist() == [-1 if t is None else t for _, t, _ in ITEMS]
    means = torch.cat([images.float().mean(dim=(2, 3)) for images, _ in batches])
    expected = torch.tensor(np.array([s.reshape(-1, 3).mean(axis=0) for s in sources]), dtype=torch.float32)
    assert torch.allclose(means, expected, atol=4.0)  # the right picture, in the right colours


@settings(max_examples=100)
@given(st.data())
def test_corrupted_benzina_made_samples_raise_box_error_only(made, data):
    """Their layout takes other paths through the quick inner reader: those fail cleanly too."""
    _, _, samples = made
    inner = bytearray(samples[data.draw(st.integers(0, len(samples) - 1))])
    moov_at = find(Boxes.parse(bytes(inner)), "moov")._offset
    for _ in range(data.draw(st.integers(1, 4))):
        inner[data.draw(st.integers(moov_at, len(inner) - 1))] = data.draw(st.integers(0, 255))
    view = memoryview(bytes(inner[: data.draw(st.integers(moov_at, len(inner)))]))
    for track in ("bzna_input", "bzna_thumb"):
        try:
            image = inner_image(view, 0, len(view), track, "bzna_input[0]")
            image.video_signal
        except BoxError as exc:
            assert exc.path and (exc.path.startswith("bzna_input[0]") or exc.path == "hvcC"), exc
        else:
            assert len(image.payload) <= len(view)
