"""Streams from other encoders: the VUI's matrix and range decide the conversion to RGB, on both paths.

Each case converts a smooth RGB picture to Y'CbCr with swscale in one matrix and range, encodes it
losslessly with libx265 saying so in the VUI, and decodes it with our decoders: the result must be
the source picture again (only 4:2:0 and rounding in between), which converting as BT.601
limited range, what our own writer uses, would not give.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV encodes the streams and decodes them on the CPU")
from av.codec.context import Flags  # noqa: E402
from av.video.reformatter import ColorRange, Colorspace  # noqa: E402

from bzna_boxes import BoxError, hevc  # noqa: E402
from bzna_boxes.decode import CpuDecoder  # noqa: E402
from bzna_boxes.decode.colour import BT601_LIMITED, YuvToRgb, nv12_to_rgb, yuv_to_rgb  # noqa: E402
from bzna_boxes.decode.cpu import frame_to_rgb  # noqa: E402
from bzna_boxes.encode import EncodedSample, encode_image  # noqa: E402
from bzna_boxes.image import EncodedImage  # noqa: E402
from bzna_boxes.writer import DatasetWriter  # noqa: E402

from bzna_samples import frame_image, open_dataset  # noqa: E402
from test_decode_cpu import yuv_as_nv12  # noqa: E402

# (x265 colormatrix, H.273 code it writes, swscale colourspace of the forward conversion, full range)
CASES = [
    ("smpte170m", 6, Colorspace.ITU601, False),
    ("bt470bg", 5, Colorspace.ITU601, True),
    ("bt709", 1, Colorspace.ITU709, False),
    ("bt709", 1, Colorspace.ITU709, True),
    ("fcc", 4, Colorspace.FCC, False),
    ("smpte240m", 7, Colorspace.SMPTE240M, True),
    ("bt2020nc", 9, Colorspace.BT2020, False),
    (None, 2, Colorspace.ITU601, False),  # no colour description: read as BT.601
]
IDS = [f"{matrix}-{'full' if full else 'limited'}" for matrix, _, _, full in CASES]


def smooth_picture(width: int = 64, height: int = 48) -> np.ndarray:
    """Saturated colours that change slowly (4:2:0 loses almost nothing of them)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([40 + 180 * x / width, 220 - 170 * y / height, 30 + 90 * (x + y) / (width + height)], axis=-1)
    return rgb.round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def encode_lossless(rgb: np.ndarray, colourspace, full_range: bool, x265_vui: str, pix_fmt: str = "yuv420p") -> EncodedImage:
    """One losslessly coded intra picture of ``rgb`` in this matrix and range, its VUI saying ``x265_vui``."""
    height, width = rgb.shape[:2]
    colour_range = ColorRange.JPEG if full_range else ColorRange.MPEG
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=pix_fmt, dst_colorspace=colourspace, dst_color_range=colour_range, interpolation="AREA"
    )
    yuv.pts = 0
    context = av.CodecContext.create("libx265", "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = Fraction(1, 25)
    context.flags |= Flags.global_header
    context.options = {"preset": "ultrafast", "x265-params": "log-level=error:info=0:lossless=1" + x265_vui}
    context.open()
    packets = [bytes(p) for p in context.encode(yuv)] + [bytes(p) for p in context.encode(None)]
    assert len(packets) == 1
    payload = hevc.to_length_prefixed(
        nal for nal in hevc.split_annexb(packets[0]) if hevc.nal_unit_type(nal) not in hevc.PARAMETER_SET_TYPES
    )
    return EncodedImage(payload, hevc.hvcc_fields_from_annexb(bytes(context.extradata)), width, height, width, height)


def vui(matrix: str | None, full_range: bool) -> str:
    return "" if matrix is None else f":colormatrix={matrix}:range={'full' if full_range else 'limited'}"


@pytest.fixture(scope="module")
def decoder() -> CpuDecoder:
    return CpuDecoder()


@pytest.mark.parametrize("matrix, code, colourspace, full_range", CASES, ids=IDS)
def test_the_vui_decides_the_conversion(decoder, matrix, code, colourspace, full_range):
    rgb = smooth_picture()
    image = frame_image(encode_lossless(rgb, colourspace, full_range, vui(matrix, full_range)))

    signal = image.video_signal
    assert (signal.matrix_coefficients, signal.full_range) == (code, full_range)
    decoded = decoder.decode_frame(image)  # FFmpeg's own reading of the VUI agrees
    assert (int(decoded.colorspace), decoded.color_range == ColorRange.JPEG) == (code, full_range)

    conversion = yuv_to_rgb(signal)
    assert conversion.matrix == int(colourspace) and conversion.full_range == full_range
    ours = decoder.decode(image)
    assert ours.shape == rgb.shape and psnr(ours, rgb) >= 40, psnr(ours, rgb)
    if conversion != BT601_LIMITED:  # what ignoring the VUI would give: worse, far worse unless FCC ~ BT.601
        gap = 0.5 if conversion.name == "FCC" and not full_range else 6
        assert psnr(frame_to_rgb(decoded, image.clean_aperture), rgb) < psnr(ours, rgb) - gap

    gpu_path = nv12_to_rgb(torch.from_numpy(yuv_as_nv12(decoded)), image.clean_aperture, "HWC", conversion).numpy()
    assert np.abs(gpu_path.astype(int) - ours).max() <= 1


def test_conversions_invert_what_swscale_writes():
    """Our coefficients, applied to swscale's own Y'CbCr of a colour, give that colour back."""
    colours = np.array([[[200, 30, 60], [20, 180, 90], [50, 60, 220], [128, 128, 128]]], np.uint8)
    for _, _, colourspace, full_range in CASES:
        frame = av.VideoFrame.from_ndarray(np.repeat(np.repeat(colours, 2, 0), 2, 1), format="rgb24").reformat(
            format="yuv444p",
            dst_colorspace=colourspace,
            dst_color_range=ColorRange.JPEG if full_range else ColorRange.MPEG,
        )
        y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[0, : 2 * colours.shape[1] : 2].astype(np.float64) for p in frame.planes)
        c = YuvToRgb.of(int(colourspace), full_range)
        luma, cb, cr = (y - c.luma_offset) * c.luma_scale, (u - 128) * c.chroma_scale, (v - 128) * c.chroma_scale
        rgb = np.stack([luma + c.r_v * cr, luma - c.g_u * cb - c.g_v * cr, luma + c.b_u * cb], axis=-1)
        assert np.abs(rgb - colours[0]).max() <= 2.5, (colourspace, full_range, rgb.round())


def test_a_dataset_of_full_range_bt709_pictures_decodes_to_its_colours(tmp_path):
    """Through the writer and the reader: the hvcC that the dataset stores carries the VUI."""
    rgb = np.pad(smooth_picture(500, 300), ((0, 212), (0, 12), (0, 0)), mode="edge")
    frame = encode_lossless(rgb, Colorspace.ITU709, True, vui("bt709", True))
    frame = EncodedImage(frame.payload, frame.hvcc, 512, 512, 500, 300)
    ours = encode_image(smooth_picture(), preset="ultrafast")
    with DatasetWriter(tmp_path / "other.bzna", fsync=False) as writer:
        writer.add(EncodedSample(frame, None), target=1, filename="bt709-full.png")
        writer.add(ours, target=2, filename="ours.png")
    dataset = open_dataset(tmp_path / "other.bzna")
    theirs, mine = dataset[0].image(), dataset[1].image()
    assert (theirs.video_signal.matrix_coefficients, theirs.video_signal.full_range) == (1, True)
    assert (mine.video_signal.matrix_coefficients, mine.video_signal.full_range) == (6, False)
    decoded = CpuDecoder().decode(theirs)
    assert decoded.shape == (300, 500, 3) and psnr(decoded, rgb[:300, :500]) >= 40


def test_parameter_sets_in_band_only_are_read_too(decoder):
    """An hev1-style sample: no parameter sets in hvcC, VPS/SPS/PPS in the payload."""
    rgb = smooth_picture()
    frame = encode_lossless(rgb, Colorspace.ITU709, True, vui("bt709", True))
    in_band = [nal for array in frame.hvcc["arrays"] for nal in array["nalus"]]
    slices = hevc.from_length_prefixed(frame.payload)
    image = frame_image(EncodedImage(hevc.to_length_prefixed(in_band + slices), {**frame.hvcc, "arrays": []}, 64, 48, 64, 48))
    assert (image.video_signal.matrix_coefficients, image.video_signal.full_range) == (1, True)
    assert psnr(decoder.decode(image), rgb) >= 40


@pytest.mark.parametrize(
    "matrix, pix_fmt, words",
    [("ycgco", "yuv420p", "YCgCo"), ("bt2020c", "yuv420p", "constant luminance"), ("bt709", "yuv420p10le", "10-bit 4:2:0")],
)
def test_what_cannot_be_converted_raises_box_error(decoder, matrix, pix_fmt, words):
    image = frame_image(encode_lossless(smooth_picture(), Colorspace.ITU709, False, vui(matrix, False), pix_fmt))
    with pytest.raises(BoxError, match=words):
        decoder.decode(image)
    with pytest.raises(BoxError, match=words):
        yuv_to_rgb(image.video_signal)


def test_video_signal_rejects_what_is_not_an_sps():
    pps = bytes([hevc.PPS << 1, 1, 0xC1])
    with pytest.raises(hevc.HevcError, match="not an SPS"):
        hevc.video_signal(pps)
    with pytest.raises(hevc.HevcError):
        hevc.video_signal(bytes([hevc.SPS << 1, 1, 0x01]))  # cut short
