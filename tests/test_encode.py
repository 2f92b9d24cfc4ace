"""bzna_boxes.encode: geometry, real libx265 encodes decoded back by FFmpeg, and load_rgb."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bzna_boxes import hevc
from bzna_boxes.image import EncodedImage
from bzna_boxes.encode import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    DEFAULT_X265_PARAMS,
    encode_frame,
    encode_image,
    keep_freed_memory,
    load_rgb,
    pad_to_multiple,
    resized_size,
    rgb_to_yuv420p,
    thumbnail_size,
    x265_options,
)

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def decode(frame: EncodedImage):
    """The picture decoded by FFmpeg's hevc decoder (PyAV)."""
    ctx = av.CodecContext.create("hevc", "r")
    (decoded,) = [*ctx.decode(av.Packet(hevc.to_annexb(frame))), *ctx.decode(None)]
    return decoded


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------
# geometry, without encoding


@pytest.mark.parametrize(
    "size, max_short_side, expected",
    [
        ((1, 1), 512, (1, 1)),
        ((600, 400), 512, (600, 400)),  # short side already <= 512
        ((512, 700), 512, (512, 700)),
        ((3000, 2000), 512, (768, 512)),
        ((2000, 3000), 512, (512, 768)),
        ((1025, 513), 512, (1023, 512)),  # 1025 * 512 / 513 = 1023.004
        ((5000, 600), 512, (4267, 512)),  # 4266.67, rounded half up
        ((3000, 2000), None, (3000, 2000)),
        ((3000, 2000), 1, (2, 1)),  # 1.5 rounds up
    ],
)
def test_resized_size(size, max_short_side, expected):
    assert resized_size(*size, max_short_side) == expected


@pytest.mark.parametrize(
    "size, expected",
    [
        ((1, 1), (1, 1)),  # fits: never upscaled
        ((512, 512), (512, 512)),
        ((511, 513), (510, 512)),
        ((513, 511), (512, 510)),
        ((1023, 100), (512, 50)),
        ((600, 400), (512, 341)),
        ((100, 5000), (10, 512)),
        ((1, 1000), (1, 512)),  # at least one pixel
        ((2000, 1), (512, 1)),
    ],
)
def test_thumbnail_size(size, expected):
    assert thumbnail_size(*size) == expected


def test_geometry_errors():
    with pytest.raises(ValueError):
        resized_size(10, 10, 0)
    with pytest.raises(ValueError):
        thumbnail_size(0, 10)


@pytest.mark.parametrize("shape", [(1, 1), (251, 333), (513, 511), (100, 1023), (512, 512), (512, 1024)])
def test_pad_to_multiple_replicates_edges(shape):
    rgb = np.random.default_rng(1).integers(0, 256, shape + (3,), dtype=np.uint8)
    padded = pad_to_multiple(rgb)
    h, w = shape
    assert padded.shape == (-(-h // 512) * 512, -(-w // 512) * 512, 3)
    assert np.array_equal(padded[:h, :w], rgb)
    assert (padded[:h, w:] == rgb[:, -1:]).all()  # right: the last column repeated
    assert (padded[h:, :w] == rgb[-1:, :]).all()  # bottom: the last row repeated
    assert (padded[h:, w:] == rgb[-1, -1]).all()  # corner: the last pixel
    if padded.shape == rgb.shape:
        assert padded is rgb


def test_pad_to_multiple_thumbnail():
    assert pad_to_multiple(np.zeros((50, 512, 3), np.uint8), 512).shape == (512, 512, 3)
    assert pad_to_multiple(np.zeros((5, 7), np.uint8), 4).shape == (8, 8)


# ---------------------------------------------------------------------------
# encoding (preset ultrafast where only the geometry matters)


@pytest.mark.parametrize(
    "size, frame, thumb, thumb_frame",
    [
        ((1, 1), (512, 512), None, None),
        ((511, 513), (512, 1024), (510, 512), (512, 512)),
        ((333, 251), (512, 512), None, None),
        ((1023, 100), (1024, 512), (512, 50), (512, 512)),
        ((600, 400), (1024, 512), (512, 341), (512, 512)),
        ((512, 512), (512, 512), None, None),
        ((513, 512), (1024, 512), (512, 511), (512, 512)),
    ],
)
def test_encode_image_geometry(size, frame, thumb, thumb_frame):
    width, height = size
    sample = encode_image(gradient(height, width), preset="ultrafast")
    image = sample.image
    assert (image.width, image.height) == size
    assert (image.frame_width, image.frame_height) == frame
    assert (image.padding_width, image.padding_height) == (frame[0] - width, frame[1] - height)
    assert image.clap() == {
        "clean_aperture_width_n": width,
        "clean_aperture_width_d": 1,
        "clean_aperture_height_n": height,
        "clean_aperture_height_d": 1,
        "horiz_off_n": -(frame[0] - width),
        "horiz_off_d": 2,
        "vert_off_n": -(frame[1] - height),
        "vert_off_d": 2,
    }
    if thumb is None:
        assert sample.thumbnail is None
    else:
        t = sample.thumbnail
        assert ((t.width, t.height), (t.frame_width, t.frame_height)) == (thumb, thumb_frame)
    for f in filter(None, (sample.image, sample.thumbnail)):
        assert [hevc.nal_unit_type(n) for n in hevc.from_length_prefixed(f.payload)] == [20]  # one IDR slice
        assert [a["nal_unit_type"] for a in f.hvcc["arrays"]] == [hevc.VPS, hevc.SPS, hevc.PPS]
        decoded = decode(f)
        assert (decoded.width, decoded.height, decoded.format.name) == (f.frame_width, f.frame_height, "yuv420p")


def test_encode_image_resizes_first():
    sample = encode_image(gradient(1000, 1500), max_short_side=400, preset="ultrafast")
    assert (sample.image.width, sample.image.height, sample.image.frame_width) == (600, 400, 1024)
    assert (sample.thumbnail.width, sample.thumbnail.height) == (512, 341)
    sample = encode_image(gradient(300, 200), max_short_side=100, preset="ultrafast")
    assert (sample.image.width, sample.image.height, sample.thumbnail) == (100, 150, None)


def test_colour_is_bt601_limited_and_signalled():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (255, 255, 255), (0, 0, 0), (200, 120, 40)]
    rgb = np.repeat(np.array(colours, np.uint8)[:, None, :], 16, axis=1).repeat(16, axis=0)  # 112x16
    decoded = decode(encode_image(rgb, preset="ultrafast").image)
    assert (decoded.colorspace, decoded.color_range) == (6, 1)  # SMPTE 170M (BT.601), limited
    y = decoded.to_ndarray()[:112:16, 8]  # the Y plane, one sample per colour
    expected = [16 + 219 * (0.299 * r + 0.587 * g + 0.114 * b) / 255 for r, g, b in colours]
    assert np.abs(y - np.array(expected)).max() <= 1.5
    back = decoded.to_ndarray(format="rgb24")[:112, :16]
    assert np.abs(back[4::16, 4].astype(int) - np.array(colours)).max() <= 3


def test_rgb_to_yuv420p_is_bt601_limited_with_2x2_mean_chroma():
    rgb = np.random.default_rng(2).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    planes = rgb_to_yuv420p(rgb).to_ndarray()
    x = rgb.astype(np.float64) / 255
    y = 16 + 219 * (x @ [0.299, 0.587, 0.114])
    cb = 128 + 224 * (x @ [-0.168736, -0.331264, 0.5])
    cr = 128 + 224 * (x @ [0.5, -0.418688, -0.081312])
    assert np.abs(planes[:16] - y).max() <= 0.51
    for plane, exact in ((planes[16:20].reshape(8, 16), cb), (planes[20:24].reshape(8, 16), cr)):
        assert np.abs(plane - exact.reshape(8, 2, 16, 2).mean(axis=(1, 3))).max() <= 0.75


def test_x265_params_and_sei():
    options = x265_options(20, "fast", {"hash": 1, "aq-mode": 0})
    assert options["crf"] == "20" and options["preset"] == "fast"
    assert options["x265-params"].startswith("log-level=error:info=0:repeat-headers=0:")
    assert options["x265-params"].endswith(":hash=1:aq-mode=0")
    # in-band SEI stays in the payload (here a decoded picture hash after the slice)
    frame = encode_image(gradient(8, 8), preset="ultrafast", x265_params={"hash": 1}).image
    assert [hevc.nal_unit_type(n) for n in hevc.from_length_prefixed(frame.payload)] == [20, hevc.SUFFIX_SEI]
    # an SEI of the extradata goes to the hvcC arrays
    frame = encode_image(gradient(8, 8), preset="ultrafast", x265_params="info=1").image
    assert [a["nal_unit_type"] for a in frame.hvcc["arrays"]] == [32, 33, 34, hevc.PREFIX_SEI]
    assert [hevc.nal_unit_type(n) for n in hevc.from_length_prefixed(frame.payload)] == [20]
    decode(frame)
    # parameter sets repeated in-band never reach the payload
    frame = encode_image(gradient(8, 8), preset="ultrafast", x265_params="repeat-headers=1").image
    assert [hevc.nal_unit_type(n) for n in hevc.from_length_prefixed(frame.payload)] == [20]


def test_default_settings():
    """The default (docs/building.md): preset ultrafast, CRF 16 and the tuning, which a named preset drops."""
    options = x265_options()
    assert (options["preset"], options["crf"]) == (DEFAULT_PRESET, "16") == ("ultrafast", "16")
    assert DEFAULT_X265_PARAMS == "psy-rd=0:signhide=1:ctu=64:rd=1"
    assert options["x265-params"].endswith(":chromaloc=1:psy-rd=0:signhide=1:ctu=64:rd=1")
    assert "psy-rd" not in x265_options(preset="ultrafast")["x265-params"]
    assert "psy-rd" not in x265_options(20, "medium")["x265-params"]
    # the caller's parameters come last, so they win over the tuning
    assert x265_options(x265_params="signhide=0")["x265-params"].endswith(":rd=1:signhide=0")


def test_default_encode_is_deterministic_and_tuned():
    src = load_rgb(PHOTOS / "space" / "rocket.jpg")  # 640x427: an image frame and a thumbnail
    first, second = encode_image(src), encode_image(src)
    assert first.thumbnail is not None
    assert first == second  # payloads and hvcC fields
    assert encode_image(src, preset="ultrafast", crf=16, x265_params="psy-rd=0:signhide=1:ctu=64:rd=1") == first
    assert encode_image(src, preset="ultrafast", crf=16).image.payload != first.image.payload


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (500, 375), (511, 333), (512, 512), (513, 200), (700, 301)])
def test_encode_image_frames_equal_encoding_the_padded_frames(size):
    """encode_image pads the converted planes, not the RGB picture: the same samples, so the same bytes."""
    width, height = size
    rgb = gradient(height, width)
    sample = encode_image(rgb, preset="ultrafast")
    assert sample.image == encode_frame(pad_to_multiple(rgb), width, height, preset="ultrafast")
    if sample.thumbnail is not None:
        small = np.asarray(Image.fromarray(rgb).resize(thumbnail_size(width, height), Image.Resampling.LANCZOS))
        assert sample.thumbnail == encode_frame(pad_to_multiple(small), *small.shape[1::-1], preset="ultrafast")


def test_keep_freed_memory_keeps_the_bytes():
    src = load_rgb(PHOTOS / "cat" / "chelsea_face.jpg")
    before = encode_image(src)
    keep_freed_memory()
    keep_freed_memory()  # idempotent
    assert encode_image(src) == before


def test_build_and_writer_default_to_the_library_default(tmp_path, capsys):
    """``bzna build`` without --preset/--crf and ``DatasetWriter()`` encode with the default settings."""
    from bzna_boxes.cli import main
    from bzna_boxes.writer import DatasetWriter, InnerSample

    folder = tmp_path / "src" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes((PHOTOS / "cat" / "chelsea_face.jpg").read_bytes())
    built = tmp_path / "built.bzna"
    assert main(["build", str(tmp_path / "src"), str(built), "--workers", "1", "-q"]) == 0
    src = load_rgb(folder / "a.jpg")
    with DatasetWriter(tmp_path / "written.bzna", classes=["cat"]) as writer:
        writer.add(src, 0, "cat/a.jpg")
    assert (tmp_path / "written.bzna").read_bytes() == built.read_bytes()
    tuned = encode_image(src, preset="ultrafast", crf=16, x265_params="psy-rd=0:signhide=1:ctu=64:rd=1")
    assert InnerSample.from_encoded(tuned, 0, "cat/a.jpg").data in built.read_bytes()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_encode_image_rejects_bad_arrays(bad):
    with pytest.raises(ValueError):
        encode_image(bad, preset="ultrafast")


@pytest.mark.parametrize("name", ["cat/chelsea_face.jpg", "coffee/coffee_cup.jpg", "space/rocket.jpg"])
def test_quality_on_photographs(name):
    """Default settings: luma PSNR >= 38 dB, RGB >= 32 dB inside the clean aperture."""
    src = load_rgb(PHOTOS / name)
    sample = encode_image(src)
    for frame in filter(None, (sample.image, sample.thumbnail)):
        ref = src
        if (frame.width, frame.height) != (src.shape[1], src.shape[0]):
            ref = np.asarray(Image.fromarray(src).resize((frame.width, frame.height), Image.Resampling.LANCZOS))
        rgb = decode(frame).to_ndarray(format="rgb24")[: frame.height, : frame.width]
        assert psnr(luma(ref), luma(rgb)) >= 38, (name, frame.width, DEFAULT_CRF)
        assert psnr(ref, rgb) >= 32, (name, frame.width, DEFAULT_CRF)


# ---------------------------------------------------------------------------
# load_rgb


def save(im, tmp_path, name, **kwargs):
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def test_load_rgb_gray_and_bilevel(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = load_rgb(save(Image.fromarray(gray), tmp_path, "l.png"))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out == gray[:, :, None]).all()
    out = load_rgb(save(Image.fromarray(gray > 100), tmp_path, "1.png"))
    assert set(np.unique(out)) == {0, 255}


def test_load_rgb_16_bit_gray_is_scaled(tmp_path):
    values = np.array([[0, 257, 32896, 65535], [25700, 128, 129, 65534]], np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    out = load_rgb(save(im, tmp_path, "16.png"))
    assert (out[:, :, 0] == [[0, 1, 128, 255], [100, 0, 1, 255]]).all()
    assert (out[:, :, 0] == out[:, :, 2]).all()


def test_load_rgb_32_bit_int_and_float(tmp_path):
    out = load_rgb(save(Image.fromarray(np.array([[-5, 65535, 70000, 257]], np.int32)), tmp_path, "i.tif"))
    assert (out[0, :, 1] == [0, 255, 255, 1]).all()
    floats = np.array([[-1.0, 0.4, 100.6, 300.0, np.nan]], np.float32)
    out = load_rgb(save(Image.fromarray(floats), tmp_path, "f.tif"))
    assert (out[0, :, 1] == [0, 0, 101, 255, 0]).all()


def test_load_rgb_alpha_composited_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128], [200, 100, 0, 51]]], np.uint8)
    out = load_rgb(save(Image.fromarray(rgba), tmp_path, "rgba.png"))
    assert out.tolist() == [[[255, 255, 255], [0, 0, 255], [127, 127, 127], [244, 224, 204]]]
    la = Image.fromarray(rgba[:, :, [0, 3]].copy(), "LA")
    assert load_rgb(save(la, tmp_path, "la.png"))[0, :, 0].tolist() == [255, 0, 127, 244]


def test_load_rgb_palette_with_transparency(tmp_path):
    im = Image.fromarray(np.array([[0, 1, 2, 1]], np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    path = save(im, tmp_path, "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    assert load_rgb(path).tolist() == [[[255, 255, 255], [255, 0, 0], [0, 255, 0], [255, 0, 0]]]
    gif = save(im, tmp_path, "p.gif", transparency=0)
    assert load_rgb(gif).tolist() == [[[255, 255, 255], [255, 0, 0], [0, 255, 0], [255, 0, 0]]]


def test_load_rgb_cmyk(tmp_path):
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    for name in ("cmyk.jpg", "cmyk.tif"):
        path = save(im, tmp_path, name)
        assert Image.open(path).mode == "CMYK"
        out = load_rgb(path)
        assert out.shape == (16, 16, 3)
        assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 3


def test_load_rgb_applies_exif_orientation(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high: left half red, right half blue
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = save(Image.fromarray(stored), tmp_path, "rotated.jpg", exif=exif, quality=95)
    out = load_rgb(path)
    assert out.shape == (32, 16, 3)
    assert out[:12, :, 0].mean() > 240 and out[:12, :, 2].mean() < 15  # top: red
    assert out[20:, :, 2].mean() > 240 and out[20:, :, 0].mean() < 15  # bottom: blue


def test_load_rgb_file_object_and_first_frame():
    buf = io.BytesIO()
    frames = [Image.new("RGB", (4, 4), c) for c in ((10, 20, 30), (200, 0, 0))]
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    buf.seek(0)
    assert load_rgb(buf)[0, 0].tolist() == [10, 20, 30]


def test_load_rgb_errors(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="garbage.jpg"):
        load_rgb(garbage)
    good = save(Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 99), tmp_path, "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.jpg"):
        load_rgb(truncated)
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "missing.png")
