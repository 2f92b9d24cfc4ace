"""CPU decoding (FFmpeg through PyAV): sizes, quality, the clean-aperture crop, the shared colour math."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bzna_boxes import BoxError, layout
from bzna_boxes.cli import main
import bzna_boxes.decode as decode_package
from bzna_boxes.decode import CpuDecoder, open_decoder
from bzna_boxes.decode.colour import conversion_window, nv12_to_rgb
from bzna_boxes.decode.cpu import RgbConverter, conversion_box, frame_to_rgb
from bzna_boxes.encode import thumbnail_size
from bzna_boxes.image import CleanAperture

from bzna_samples import build_dataset, fixture_photographs, frame_image, open_dataset

PHOTOS = fixture_photographs()


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y' of an RGB array."""
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255**2 / np.mean((luma(a) - luma(b)) ** 2))


def yuv_as_nv12(frame) -> np.ndarray:
    """A PyAV yuv420p frame's planes as one NV12 array (H*3/2 x W), as NVDEC returns them."""
    height, width = frame.height, frame.width
    planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes]
    y = planes[0][:height, :width]
    uv = np.stack([planes[1][: height // 2, : width // 2], planes[2][: height // 2, : width // 2]], axis=-1)
    return np.concatenate([y, uv.reshape(height // 2, width)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    items = [(encoded, index, name) for index, (name, _, encoded) in enumerate(PHOTOS)]
    items.append((None, 42, "lost.jpg"))
    path = build_dataset(tmp_path_factory.mktemp("cpu") / "photos.bzna", items)
    return open_dataset(path)


@pytest.fixture(scope="module")
def decoder() -> CpuDecoder:
    return CpuDecoder()


def test_every_image_decodes_to_its_size_at_38_db(dataset, decoder):
    for index, (name, rgb, _) in enumerate(PHOTOS):
        picture = decoder.decode(dataset[index].image(layout.INPUT_TRACK))
        assert picture.shape == rgb.shape and picture.dtype == np.uint8, name
        assert luma_psnr(picture, rgb) >= 38.0, name


def test_thumbnails_have_the_thumbnail_size(dataset, decoder):
    for index, (name, rgb, encoded) in enumerate(PHOTOS):
        height, width = rgb.shape[:2]
        thumb = decoder.decode(dataset[index].image(layout.THUMB_TRACK))
        expected_width, expected_height = thumbnail_size(width, height)
        assert thumb.shape == (expected_height, expected_width, 3), name
        if encoded.thumbnail is not None:
            assert max(thumb.shape[:2]) == 512
            source = np.asarray(Image.fromarray(rgb).resize((expected_width, expected_height), Image.Resampling.LANCZOS))
            assert luma_psnr(thumb, source) >= 36.0, name
        else:
            assert np.array_equal(thumb, decoder.decode(dataset[index].image(layout.INPUT_TRACK)))


def test_torch_conversion_matches_the_cpu_path(decoder):
    """nv12_to_rgb (the GPU path's conversion, run here on the CPU) agrees with swscale within 1."""
    for name, _, encoded in PHOTOS:
        # every frame up to 1024x512 (torch on 2 CPU cores takes ~0.4 s for a 1024x1024 one)
        for frame in (f for f in (encoded.image, encoded.thumbnail) if f and f.frame_width * f.frame_height <= 1024 * 512):
            image = frame_image(frame)
            decoded = decoder.decode_frame(image)
            expected = frame_to_rgb(decoded, image.clean_aperture)
            nv12 = torch.from_numpy(yuv_as_nv12(decoded))
            hwc = nv12_to_rgb(nv12, image.clean_aperture, "HWC").numpy()
            difference = np.abs(hwc.astype(int) - expected)
            assert difference.max() <= 1 and (difference > 0).mean() < 0.01, name
            chw = nv12_to_rgb(nv12, image.clean_aperture, "CHW")
            assert torch.equal(chw.permute(1, 2, 0), torch.from_numpy(hwc))


@pytest.mark.parametrize("aperture", [(0, 0, 512, 341), (3, 5, 101, 77), (1, 1, 511, 511), (510, 500, 2, 12), (0, 0, 512, 512)])
def test_crop_before_conversion_equals_crop_after(decoder, aperture):
    """The GPU path converts only the crop (plus a margin): the same pixels as the whole frame."""
    _, _, encoded = PHOTOS[2]
    decoded = decoder.decode_frame(frame_image(encoded.thumbnail))
    x, y, width, height = aperture
    nv12 = torch.from_numpy(yuv_as_nv12(decoded))
    whole = nv12_to_rgb(nv12, None, "HWC")
    assert torch.equal(nv12_to_rgb(nv12, CleanAperture(*aperture), "HWC"), whole[y : y + height, x : x + width])
    cpu_whole = frame_to_rgb(decoded, CleanAperture(0, 0, decoded.width, decoded.height))
    assert np.array_equal(frame_to_rgb(decoded, CleanAperture(*aperture)), cpu_whole[y : y + height, x : x + width])


def test_decode_converts_only_the_part_around_the_aperture_to_the_same_pixels(dataset):
    """Each picture converts its aperture plus the chroma margin, rounded to 64: the pixels of the whole frame."""
    decoder = CpuDecoder()
    converted = set()
    for index, (name, _, _) in enumerate(PHOTOS):
        for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
            image = dataset[index].image(track)
            frame = decoder.decode_frame(image)
            whole_frame = CleanAperture(0, 0, frame.width, frame.height)
            whole = RgbConverter(frame.width, frame.height).convert(frame, whole_frame)
            a = image.clean_aperture
            assert np.array_equal(decoder.decode(image), whole[a.y : a.y + a.height, a.x : a.x + a.width]), name
            x0, y0, x1, y1 = conversion_box(a, frame.width, frame.height)
            converted.add((x1 - x0, y1 - y0, frame.width * frame.height))
    assert any(width * height < area for width, height, area in converted)  # e.g. 451x300 in 512x512: 512x320
    assert {key[:2] for key in decoder._state().converters} == {(w, h) for w, h, _ in converted}
    assert conversion_box(CleanAperture(0, 0, 500, 375), 512, 512) == (0, 0, 512, 384)
    assert conversion_box(CleanAperture(0, 0, 512, 512), 512, 512) == (0, 0, 512, 512)
    assert conversion_box(CleanAperture(130, 200, 10, 63), 1024, 512) == (128, 192, 192, 320)


def test_conversion_window_is_even_and_covers_the_crop():
    for start in range(0, 9):
        for size in range(1, 9):
            begin, end = conversion_window(start, size, 16)
            assert begin % 2 == 0 and end % 2 == 0 and begin <= start and start + size <= end <= 16


def test_one_decoder_serves_several_threads_and_sizes(dataset, decoder):
    tracks = [(index, track) for index in range(len(PHOTOS)) for track in (layout.INPUT_TRACK, layout.THUMB_TRACK)]
    expected = [decoder.decode(dataset[i].image(t)) for i, t in tracks]
    results: dict[int, list[np.ndarray]] = {}

    def work(worker: int) -> None:
        results[worker] = [decoder.decode(dataset[i].image(t)) for i, t in tracks]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for pictures in results.values():
        assert all(np.array_equal(a, b) for a, b in zip(pictures, expected))


def test_broken_pictures_raise_box_error(decoder):
    _, _, encoded = PHOTOS[0]
    image = frame_image(encoded.image)
    header_only = b"\x00\x00\x00\x02" + bytes(image.payload[4:6])  # an IDR NAL unit without its slice
    with pytest.raises(BoxError, match="pictures, expected 1|rejected"):
        decoder.decode(dataclasses.replace(image, payload=memoryview(header_only)))
    with pytest.raises(BoxError, match="sample entry says 1024x512"):
        decoder.decode(dataclasses.replace(image, frame_width=1024))
    with pytest.raises(BoxError, match="not inside the 512x512 frame"):
        decoder.decode(dataclasses.replace(image, clean_aperture=CleanAperture(100, 0, 451, 300)))
    with pytest.raises(BoxError, match="runs past the end"):
        decoder.decode(dataclasses.replace(image, payload=image.payload[:-1]))
    assert decoder.decode(image).shape == (300, 451, 3)  # the decoder still works afterwards


def test_open_decoder_picks_the_cpu_here_and_says_so(caplog):
    assert isinstance(open_decoder("cpu"), CpuDecoder)
    with pytest.raises(ValueError, match="not 'tpu'"):
        open_decoder("tpu")
    if torch.cuda.is_available():
        pytest.skip("this machine may have NVDEC: 'auto' is checked by tests/test_nvdec.py")
    decode_package._logged.clear()
    with caplog.at_level(logging.INFO, logger="bzna_boxes.decode"):
        assert isinstance(open_decoder("auto"), CpuDecoder)
        open_decoder("auto")
    messages = [r.getMessage() for r in caplog.records if r.name == "bzna_boxes.decode"]
    assert len(messages) == 1 and messages[0].startswith("decoding on the CPU (FFmpeg through PyAV): NVDEC unavailable: ")


def test_bzna_decode_writes_the_png(dataset, decoder, tmp_path: Path, capsys):
    path = str(dataset.path)
    out = tmp_path / "two.png"
    assert main(["decode", path, "2", "-o", str(out), "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), decoder.decode(dataset[2].image(layout.INPUT_TRACK)))
    assert main(["decode", path, "2", "-o", str(out), "--track", "bzna_thumb", "--device", "cpu"]) == 0
    assert np.asarray(Image.open(out)).shape == (341, 512, 3)
    assert "341" in capsys.readouterr().out
    assert main(["decode", path, str(len(PHOTOS)), "-o", str(tmp_path / "lost.png"), "--device", "cpu"]) == 1
    assert "missing" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.png"]
    nowhere = tmp_path / "no-such-folder" / "x.png"
    assert main(["decode", path, "2", "-o", str(nowhere), "--device", "cpu"]) == 1
    assert f"cannot write {nowhere}: No such file or directory" in capsys.readouterr().err  # not a temporary name
