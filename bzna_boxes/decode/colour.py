"""The one Y'CbCr -> RGB conversion both decoders apply: the stream's matrix and range, bilinear chroma.

:mod:`bzna_boxes.encode` turns RGB into yuv420p with FFmpeg's swscale (BT.601 matrix, limited
"TV" range, each chroma sample the mean of a 2x2 block of pixels, i.e. sited at its centre) and
says so in the SPS's VUI. Other tools may choose another matrix or full range ("JPEG" range);
the VUI tells (:attr:`bzna_boxes.image.EncodedImage.video_signal`), and :func:`yuv_to_rgb` turns
it into the inverse used here, on the CPU (swscale with ``ACCURATE_RND | FULL_CHR_H_INT``, see
:mod:`.cpu`) and on the GPU (:func:`nv12_to_rgb`, torch) alike:

* chroma upsampled 2x with bilinear weights for centre-sited samples, edges repeated (what
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` computes);
* limited range: ``y = (Y - 16) * 255/219``, ``u = (Cb - 128) * 255/224``, ``v = (Cr - 128) *
  255/224``; full range: ``y = Y``, ``u = Cb - 128``, ``v = Cr - 128``;
* ``R = y + 2 (1 - Kr) v``, ``G = y - (2 (1 - Kb) Kb u + 2 (1 - Kr) Kr v) / Kg``, ``B = y + 2 (1 -
  Kb) u`` with the matrix's luma weights (BT.601: ``Kr = 0.299``, ``Kb = 0.114``, so ``R = y +
  1.402 v``, ``G = y - 0.344136 u - 0.714136 v``, ``B = y + 1.772 u``), rounded to the nearest
  integer and clipped to 0..255.

Matrices: BT.709 (1), FCC (4), BT.601 (5, 6; also 2 "unspecified" and reserved codes, as FFmpeg
reads them), SMPTE 240M (7) and BT.2020 non-constant luminance (9): those swscale implements.
The others (RGB, YCgCo, constant luminance, ICtCp) and anything but 8-bit 4:2:0 raise
:class:`~bzna_boxes.BoxError`. Chroma is taken as centre-sited whatever the VUI says (our
writer's siting; H.265's default, left-sited, would move chroma by a quarter of a pixel).

The two implementations agree within 1 per channel (measured on the fixture photographs: fewer
than 1 % of the values differ). swscale's default fast path instead truncates (a bias of about
-1.2 per channel) and repeats chroma: 2 to 6 dB further from the source image.

The GPU path crops before converting, reading chroma one sample beyond the crop
(:func:`conversion_window`), so that the result equals converting the whole frame and cropping
afterwards, which is what the CPU path does.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

from ..errors import BoxError
from ..image import CleanAperture

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..hevc import VideoSignal

__all__ = ["KR", "KB", "YuvToRgb", "BT601_LIMITED", "yuv_to_rgb", "check_aperture", "conversion_window", "nv12_to_rgb"]

KR = 0.299
KB = 0.114
"""BT.601 luma weights of red and blue (green is 1 - KR - KB)."""

# matrix_coefficients code (ITU-T H.273) -> (name, Kr, Kb) of the matrices swscale implements
_MATRICES = {
    1: ("BT.709", 0.2126, 0.0722),
    4: ("FCC", 0.30, 0.11),
    5: ("BT.601", KR, KB),
    7: ("SMPTE 240M", 0.212, 0.087),
    9: ("BT.2020", 0.2627, 0.0593),
}
_SAME_AS = {6: 5, 2: 5}  # SMPTE 170M is BT.601; unspecified reads as BT.601 (FFmpeg's choice)
_UNSUPPORTED = {
    0: "RGB (identity)",
    8: "YCgCo",
    10: "BT.2020 constant luminance",
    11: "SMPTE 2085",
    12: "chromaticity-derived non-constant luminance",
    13: "chromaticity-derived constant luminance",
    14: "ICtCp",
}


class YuvToRgb(NamedTuple):
    """The map from 8-bit Y'CbCr to R'G'B' of one matrix and range (see the module's formula)."""

    matrix: int
    """Canonical H.273 code of the matrix: 1, 4, 5, 7 or 9 (also swscale's colourspace code)."""
    name: str
    full_range: bool
    luma_offset: float
    luma_scale: float
    chroma_scale: float
    r_v: float
    g_u: float
    g_v: float
    b_u: float

    @classmethod
    @functools.lru_cache(maxsize=None)
    def of(cls, matrix: int, full_range: bool) -> "YuvToRgb":
        """The conversion of a matrix code (1, 4, 5, 7, 9) and range."""
        name, kr, kb = _MATRICES[matrix]
        kg = 1.0 - kr - kb
        r_v, b_u = 2.0 * (1.0 - kr), 2.0 * (1.0 - kb)
        if full_range:
            offset, luma_scale, chroma_scale = 0.0, 1.0, 1.0
        else:
            offset, luma_scale, chroma_scale = 16.0, 255.0 / 219.0, 255.0 / 224.0
        return cls(matrix, name, full_range, offset, luma_scale, chroma_scale, r_v, b_u * kb / kg, r_v * kr / kg, b_u)


BT601_LIMITED = YuvToRgb.of(5, False)
"""What :mod:`bzna_boxes.encode` writes."""


def yuv_to_rgb(signal: "VideoSignal") -> YuvToRgb:
    """The conversion a stream's :class:`~bzna_boxes.hevc.VideoSignal` asks for.

    Raises :class:`~bzna_boxes.BoxError` for a matrix swscale does not implement, or for
    samples other than 8-bit 4:2:0.
    """
    if signal.chroma_format_idc != 1 or signal.bit_depth_luma != 8 or signal.bit_depth_chroma != 8:
        formats = {0: "4:0:0", 1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}
        raise BoxError(
            f"pictures in {signal.bit_depth_luma}-bit {formats.get(signal.chroma_format_idc, '?')} are not "
            "supported (8-bit 4:2:0 only)",
            path="sample",
        )
    code = signal.matrix_coefficients
    if code in _UNSUPPORTED:
        raise BoxError(f"matrix_coefficients {code} ({_UNSUPPORTED[code]}) is not supported", path="sample")
    code = _SAME_AS.get(code, code)
    if code not in _MATRICES:
        code = 5  # a reserved code: read as unspecified
    return YuvToRgb.of(code, signal.full_range)


def conversion_window(start: int, size: int, frame_size: int) -> tuple[int, int]:
    """The even-aligned span of a frame axis to convert so that ``[start, start + size)`` is exact.

    Bilinear chroma upsampling reads one chroma sample (two luma samples) on each side; the span
    adds that margin where the frame has it, so converting the span then cropping equals
    converting the whole axis. Returns ``(begin, end)`` in luma samples, both even.
    """
    begin = max(0, (start // 2 - 1) * 2)
    end = min(frame_size, ((start + size + 1) // 2 + 1) * 2)
    return begin, end


def check_aperture(aperture: CleanAperture, frame_width: int, frame_height: int) -> None:
    """Raise :class:`~bzna_boxes.BoxError` unless the clean aperture lies inside the frame."""
    a = aperture
    if a.width < 1 or a.height < 1 or a.x < 0 or a.y < 0 or a.x + a.width > frame_width or a.y + a.height > frame_height:
        raise BoxError(
            f"clean aperture {a.width}x{a.height} at ({a.x}, {a.y}) is not inside the "
            f"{frame_width}x{frame_height} frame",
            path="clap",
        )


def nv12_to_rgb(
    nv12: "torch.Tensor",
    aperture: CleanAperture | None = None,
    layout: str = "CHW",
    conversion: YuvToRgb = BT601_LIMITED,
) -> "torch.Tensor":
    """Convert an NV12 picture (``H*3/2 x W`` uint8 tensor) to RGB uint8, cropped to ``aperture``.

    Runs where the tensor is (GPU or CPU). ``layout`` is ``"CHW"`` (3 x h x w) or ``"HWC"``;
    ``conversion`` the stream's matrix and range (:func:`yuv_to_rgb`).
    """
    import torch
    import torch.nn.functional as F

    if layout not in ("CHW", "HWC"):
        raise ValueError(f"layout must be 'CHW' or 'HWC', not {layout!r}")
    if nv12.dtype != torch.uint8 or nv12.dim() != 2 or nv12.shape[0] % 3 or nv12.shape[1] % 2:
        raise ValueError(f"expected an NV12 uint8 tensor of shape (H*3/2, W), got {tuple(nv12.shape)} {nv12.dtype}")
    height = nv12.shape[0] * 2 // 3
    width = nv12.shape[1]
    if aperture is None:
        aperture = CleanAperture(0, 0, width, height)
    check_aperture(aperture, width, height)
    x0, x1 = conversion_window(aperture.x, aperture.width, width)
    y0, y1 = conversion_window(aperture.y, aperture.height, height)

    luma = nv12[y0:y1, x0:x1].float()
    chroma = nv12[height + y0 // 2 : height + y1 // 2].unflatten(1, (width // 2, 2))[:, x0 // 2 : x1 // 2]
    chroma = chroma.permute(2, 0, 1).unsqueeze(0).float()  # 1 x 2 x h/2 x w/2 (Cb, Cr)
    chroma = F.interpolate(chroma, scale_factor=2.0, mode="bilinear", align_corners=False)[0]

    top, left = aperture.y - y0, aperture.x - x0
    luma = luma[top : top + aperture.height, left : left + aperture.width]
    chroma = chroma[:, top : top + aperture.height, left : left + aperture.width]
    c = conversion
    y = (luma - c.luma_offset) * c.luma_scale
    u = (chroma[0] - 128.0) * c.chroma_scale
    v = (chroma[1] - 128.0) * c.chroma_scale
    dim = 0 if layout == "CHW" else -1
    rgb = torch.stack((y + c.r_v * v, y - c.g_u * u - c.g_v * v, y + c.b_u * u), dim=dim)
    return rgb.round_().clamp_(0.0, 255.0).to(torch.uint8)
