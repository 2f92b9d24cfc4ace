"""Images to H.265 pictures, the way a ``.bzna`` input sample stores them.

For each image, :func:`encode_image` produces (see the seed document, "Dataset's Input
Samples Structure"):

* the *image*: the picture resized so that its short side is at most ``max_short_side``
  (Pillow LANCZOS, aspect kept, never upscaled), put in a frame whose width and height
  are multiples of 512, the padding on the right and bottom filled by repeating the
  last column and row (``np.pad(mode="edge")``, the seed's "smear of the borders");
* the *thumbnail*: that picture scaled so that its longer side is 512, padded the same
  way to 512x512; absent (``None``) when the picture already fits 512x512, the thumbnail
  track then refers to the image.

Each frame is one intra picture (an IDR), 8-bit 4:2:0, encoded by libx265 through PyAV.

Colour: RGB is converted to Y'CbCr with FFmpeg's swscale (:func:`rgb_to_yuv420p`:
``VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p",
interpolation="AREA")``), which uses the BT.601 matrix in limited ("TV", 16-235 /
16-240) range (Y within 0.5 of the exact value) and makes each chroma sample the mean
of its 2x2 block of pixels, i.e. sited at the block's centre (the ``AREA`` filter; the
default bilinear one spreads over 4x4 pixels and blurs chroma a little more). The SPS
says so in its VUI (``colormatrix=smpte170m``, ``range=limited``, ``chromaloc=1``, with
BT.709 primaries and the sRGB transfer, which is what sRGB photographs are), so that a
decoder that honours the VUI
(NVDEC, FFmpeg) and one that assumes the usual default for unspecified streams
(swscale: BT.601 limited) invert it the same way. PyAV's
``frame.to_ndarray(format="rgb24")`` does that inversion, through swscale's fast path,
which alone costs some precision (about 45 dB luma PSNR on a round trip without
encoding). The exact inverse (about 56 dB on that round trip, and about 1.4 dB more luma
PSNR than PyAV's after encoding at CRF 18) is, with Y, Cb, Cr the 8-bit sample values
and chroma repeated 2x2::

    y = (Y - 16) * 255 / 219;  u = (Cb - 128) * 255 / 224;  v = (Cr - 128) * 255 / 224
    R = y + 1.402 v;  G = y - 0.344136 u - 0.714136 v;  B = y + 1.772 u

Parameter sets and SEI: libx265 is opened with the global-header flag, so VPS, SPS and
PPS come in the codec's extradata (Annex B) and go into :attr:`EncodedImage.hvcc`
(the ``hvcC`` record of an ``hvc1`` sample entry), never into the payload. x265's
"info" SEI (a 2.3 KB user-data SEI holding the x265 version and its whole command line,
which FFmpeg would copy into every ``hvcC``) is turned off (``info=0``): the ``hvcC``
box is then about 120 bytes. The payload is the access unit minus its parameter sets, as
FFmpeg's mp4 muxer stores ``hvc1`` samples: with the default settings, exactly one IDR
slice NAL unit. SEI that x265 puts in the access unit on request (``hash=1``,
``hrd=1``) stays there; an SEI it puts in the extradata (``info=1``) goes to the
``hvcC`` arrays, as with FFmpeg.

Quality: the default (preset ultrafast, CRF 16, :data:`DEFAULT_X265_PARAMS`) was chosen on
the rate-distortion-speed front measured by ``benchmarks/bench_encode_front.py`` on 220
varied photographs (``docs/building.md``): luma PSNR 41.6 dB on average and at least 38.9 dB
on every one, 3.2x the images per core of the former default (preset medium, CRF 18: 41.5 dB
mean, 38.15 dB minimum), for 15 % more bytes. PSNR is measured on the image frame decoded
by FFmpeg's hevc decoder and converted back to RGB by PyAV, against the (resized) source
inside the clean aperture, luma being BT.601 Y' computed from RGB (x265 4.2, PyAV 18.1).

RGB PSNR is lower than luma
because the 4:2:0 conversion alone, without encoding, caps it at about 35 to 43 dB
depending on the image (35.0 dB for rocket.jpg).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Union

import numpy as np

from . import hevc
from .image import EncodedImage
from .layout import FRAME_MULTIPLE, THUMBNAIL_SIZE

if TYPE_CHECKING:  # pragma: no cover
    import os
    from typing import BinaryIO

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "DEFAULT_X265_PARAMS",
    "EncodedSample",
    "encode_image",
    "encode_frame",
    "one_thread_each",
    "load_rgb",
    "register_image_plugins",
    "pad_to_multiple",
    "keep_freed_memory",
    "resized_size",
    "rgb_to_yuv420p",
    "thumbnail_size",
    "x265_options",
]

DEFAULT_CRF = 16.0
DEFAULT_PRESET = "ultrafast"
DEFAULT_X265_PARAMS = "psy-rd=0:signhide=1:ctu=64:rd=1"
"""x265 parameters of the default, applied after :data:`DEFAULT_PRESET` when no preset is named.

Chosen on the measured rate-distortion-speed front of one intra picture (``docs/building.md``):
no psycho-visual rate-distortion (it spends bits on texture that PSNR does not reward, and
time), sign-bit hiding and 64x64 coding tree units (each saves bits for almost no time),
rate-distortion level 1 (about 6 % faster than ultrafast's 2 at the same bytes and PSNR).
"""

# x265 parameters always given, before the caller's (x265 applies them in order, so
# the caller's win): quiet, no "info" SEI, parameter sets only in the extradata, and
# the colour description of what swscale's rgb24 -> yuv420p conversion produces.
_BASE_X265_PARAMS = (
    "log-level=error:info=0:repeat-headers=0"
    ":colorprim=bt709:transfer=iec61966-2-1:colormatrix=smpte170m:range=limited:chromaloc=1"
)


@dataclass(frozen=True)
class EncodedSample:
    """The image frame and, when the image does not fit 512x512, its thumbnail frame."""

    image: EncodedImage
    thumbnail: EncodedImage | None


# ---------------------------------------------------------------------------
# Geometry


def _scaled(width: int, height: int, side: int, target: int) -> tuple[int, int]:
    """The size scaled by ``target / side``, where ``side`` is the width or the height.

    That side becomes ``target`` exactly; the other is rounded half up, at least 1.
    """
    if width == side:
        return target, max(1, int(Fraction(height * target, side) + Fraction(1, 2)))
    return max(1, int(Fraction(width * target, side) + Fraction(1, 2))), target


def resized_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """The size after resizing so that the short side is at most ``max_short_side``.

    Aspect ratio kept (the long side rounded half up), never upscaled; ``None`` keeps
    the size.
    """
    _check_size(width, height)
    if max_short_side is not None and max_short_side < 1:
        raise ValueError(f"max_short_side must be at least 1, not {max_short_side}")
    short = min(width, height)
    if max_short_side is None or short <= max_short_side:
        return width, height
    return _scaled(width, height, short, max_short_side)


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail's size: longer side 512, aspect kept (rounded half up, at least 1).

    Never upscaled: a picture that fits 512x512 keeps its size (and gets no thumbnail
    frame of its own, see :func:`encode_image`).
    """
    _check_size(width, height)
    longer = max(width, height)
    if longer <= THUMBNAIL_SIZE:
        return width, height
    return _scaled(width, height, longer, THUMBNAIL_SIZE)


def pad_to_multiple(rgb: np.ndarray, multiple: int = FRAME_MULTIPLE) -> np.ndarray:
    """Pad an H x W x C array on the right and bottom to multiples of ``multiple``.

    The padding repeats the last column and row (edge replication). Returns ``rgb``
    itself when no padding is needed.
    """
    height, width = rgb.shape[:2]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if not pad_h and not pad_w:
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (rgb.ndim - 2), mode="edge")


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1x1, not {width}x{height}")


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


# ---------------------------------------------------------------------------
# Encoding


X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
"""The presets libx265 knows, fastest first."""


def x265_options(
    crf: float | None = None, preset: str | None = None, x265_params: str | dict | None = None
) -> dict[str, str]:
    """The libx265 codec options :func:`encode_frame` opens the encoder with.

    ``crf`` ``None`` is :data:`DEFAULT_CRF`. ``preset`` ``None`` is the library's default:
    :data:`DEFAULT_PRESET` followed by :data:`DEFAULT_X265_PARAMS`; a named preset (even that
    one) is x265's preset alone. ``x265_params`` come last, so they win.
    """
    if isinstance(x265_params, dict):
        x265_params = ":".join(f"{key}={value}" for key, value in x265_params.items())
    params = _BASE_X265_PARAMS
    if preset is None and DEFAULT_X265_PARAMS:
        params += ":" + DEFAULT_X265_PARAMS
    if x265_params:
        params += ":" + x265_params
    crf = DEFAULT_CRF if crf is None else crf
    return {"crf": f"{crf:g}", "preset": DEFAULT_PRESET if preset is None else preset, "x265-params": params}


def one_thread_each(encode_options: dict[str, object]) -> dict[str, object]:
    """:func:`encode_image` options with x265 held to one thread (a pool of processes gives the parallelism).

    x265's thread pool only spreads work (wavefront rows); it does not change the bitstream,
    so the bytes equal those of a one-worker build. The caller's x265 parameters come after,
    so they win.
    """
    user = encode_options.get("x265_params")
    if isinstance(user, dict):
        user = ":".join(f"{key}={value}" for key, value in user.items())
    params = "pools=1:frame-threads=1" + (f":{user}" if user else "")
    return {**encode_options, "x265_params": params}


def rgb_to_yuv420p(rgb: np.ndarray):
    """An H x W x 3 uint8 RGB array (W, H even) as a PyAV ``yuv420p`` frame, as encoded here.

    BT.601 matrix, limited range, each chroma sample the mean of its 2x2 block of pixels
    (swscale's ``AREA`` filter; its default bilinear filter spreads over 4x4 pixels).
    """
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format="yuv420p", interpolation="AREA")


def _padded_yuv420p(picture: np.ndarray, multiple: int):
    """``rgb_to_yuv420p(pad_to_multiple(picture, multiple))``, the same samples for less work.

    Only the picture and the 2 or 3 edge-replicated columns and rows that its last chroma
    samples and the first all-padding ones need go through swscale; the rest of the padding
    repeats the planes' last column and row (every chroma sample of the padding beyond is
    the mean of four copies of an edge pixel pair, so equal to that first one).
    """
    import av

    height, width = picture.shape[:2]
    frame_height, frame_width = height + (-height % multiple), width + (-width % multiple)
    extra_h = min(height % 2 + 2, frame_height - height)
    extra_w = min(width % 2 + 2, frame_width - width)
    edged = np.pad(picture, ((0, extra_h), (0, extra_w), (0, 0)), mode="edge") if extra_h or extra_w else picture
    converted = rgb_to_yuv420p(edged)
    buffer = np.empty(frame_height * frame_width * 3 // 2, np.uint8)
    at = 0
    for index, (plane_h, plane_w) in enumerate(((frame_height, frame_width),) + ((frame_height // 2, frame_width // 2),) * 2):
        plane = converted.planes[index]
        rows, cols = (edged.shape[0], edged.shape[1]) if index == 0 else ((edged.shape[0] + 1) // 2, (edged.shape[1] + 1) // 2)
        source = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :cols]
        target = buffer[at : at + plane_h * plane_w].reshape(plane_h, plane_w)
        target[:rows, :cols] = source
        target[:rows, cols:] = source[:, -1:]
        target[rows:] = target[rows - 1 : rows]
        at += plane_h * plane_w
    return av.VideoFrame.from_ndarray(buffer.reshape(frame_height * 3 // 2, frame_width), format="yuv420p")


_HVCC_CACHE: dict[bytes, dict] = {}
_HVCC_CACHE_LIMIT = 256


def _hvcc_of(extradata: bytes) -> dict:
    """The hvcC fields of an encoder's extradata; frames of equal parameter sets share one dict (read-only)."""
    fields = _HVCC_CACHE.get(extradata)
    if fields is None:
        if len(_HVCC_CACHE) >= _HVCC_CACHE_LIMIT:
            _HVCC_CACHE.clear()
        fields = _HVCC_CACHE[extradata] = hevc.hvcc_fields_from_annexb(extradata)
    return fields


def encode_frame(frame_rgb: np.ndarray, width: int, height: int, **options) -> EncodedImage:
    """Encode one already padded H x W x 3 uint8 frame as an H.265 intra picture.

    ``width`` and ``height`` give the picture inside the frame (the clean aperture);
    ``options`` are those of :func:`x265_options`.
    """
    return _encode_yuv(rgb_to_yuv420p(frame_rgb), width, height, options)


def _encode_yuv(frame, width: int, height: int, options: dict) -> EncodedImage:
    """Encode a padded ``yuv420p`` PyAV frame (see :func:`encode_frame`)."""
    import av
    from av.codec.context import Flags

    frame_height, frame_width = frame.height, frame.width
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width = frame_width
    ctx.height = frame_height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 20)
    ctx.flags |= Flags.global_header
    ctx.options = x265_options(**options)
    ctx.open()
    frame.pts = 0
    packets = [bytes(p) for p in ctx.encode(frame)] + [bytes(p) for p in ctx.encode(None)]
    if len(packets) != 1:
        raise RuntimeError(f"libx265 gave {len(packets)} packets for one picture, expected 1")

    fields = _hvcc_of(bytes(ctx.extradata))
    payload = hevc.to_length_prefixed(
        nal
        for nal in hevc.split_annexb(packets[0])
        if hevc.nal_unit_type(nal) not in hevc.PARAMETER_SET_TYPES
    )
    return EncodedImage(payload, fields, frame_width, frame_height, width, height)


def encode_image(
    rgb: np.ndarray,
    *,
    max_short_side: int | None = 512,
    crf: float | None = None,
    preset: str | None = None,
    x265_params: str | dict | None = None,
) -> EncodedSample:
    """Encode an H x W x 3 uint8 RGB image as a ``.bzna`` image frame and thumbnail.

    See the module documentation for the geometry and the colour conversion.
    ``crf`` and ``preset`` ``None`` are the library's defaults (see :func:`x265_options`).
    ``x265_params`` (``"key=value:key=value"`` or a dict) go to libx265 after the
    library's own (``log-level=error``, ``info=0``, ``repeat-headers=0``, colour
    description, and the default's tuning when no preset is named), so they can
    override them.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"expected an H x W x 3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}"
        )
    height, width = rgb.shape[:2]
    width, height = resized_size(width, height, max_short_side)
    picture = _resize(rgb, (width, height))
    options = dict(crf=crf, preset=preset, x265_params=x265_params)

    image = _encode_yuv(_padded_yuv420p(picture, FRAME_MULTIPLE), width, height, options)
    thumbnail = None
    if width > THUMBNAIL_SIZE or height > THUMBNAIL_SIZE:
        size = thumbnail_size(width, height)
        small = _padded_yuv420p(_resize(picture, size), THUMBNAIL_SIZE)
        thumbnail = _encode_yuv(small, *size, options)
    return EncodedSample(image, thumbnail)


_memory_kept = False


def keep_freed_memory() -> None:
    """Let glibc keep freed memory in the heap, for a process that encodes picture after picture.

    Every picture opens a fresh x265 encoder, whose buffers (some MB for a 512x512 frame) glibc
    would map and unmap anew, the kernel faulting in and zeroing each page: about a tenth of
    a picture's CPU time at the default settings. Raising the mmap threshold to 64 MiB and the
    trim threshold to 256 MiB keeps them for the next encoder (the process then holds up to
    that much freed memory). Output bytes do not change. Idempotent; does nothing where
    ``mallopt`` is missing. ``bzna build``'s workers (:func:`bzna_boxes.build.encode_source`)
    call it; a program of one's own may.
    """
    global _memory_kept
    if _memory_kept:
        return
    _memory_kept = True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)


# ---------------------------------------------------------------------------
# Reading images


_plugins_registered = False


def register_image_plugins() -> None:
    """Let Pillow open HEIC/HEIF photographs (phones write them) when ``pillow-heif`` is installed.

    Idempotent; :func:`load_rgb` and ``bzna build``'s listing call it. Without the package,
    nothing changes and such files are not images.
    """
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def load_rgb(path_or_file: Union[str, "os.PathLike[str]", "BinaryIO"]) -> np.ndarray:
    """Read any image Pillow opens as an H x W x 3 uint8 RGB array.

    HEIC/HEIF files open too when ``pillow-heif`` is installed (:func:`register_image_plugins`).

    * EXIF orientation is applied (``ImageOps.exif_transpose``);
    * the first frame of multi-frame files (GIF, TIFF) is taken;
    * grayscale (1, L, I;16*, I, F) is replicated to three channels; 16-bit values are
      scaled to 8 bits with rounding (``v * 255 / 65535``), ``I`` is read as 16-bit
      (values outside 0..65535 clipped), ``F`` as 0..255 (rounded, clipped, NaN as 0);
    * palette images (P, PA), CMYK, YCbCr and the like go through Pillow's conversion;
    * transparency (LA, RGBA, PA, and P, 1, L, I;16 or RGB with a transparent colour) is
      composited over white; 16-bit RGB(A) PNGs come from Pillow already reduced to 8 bits
      (high byte);
    * ICC profiles are not applied (as ``Image.convert`` and torchvision do not).

    Raises :class:`ValueError` for data Pillow cannot decode and for a path that is not a
    regular file (a FIFO would block forever); a missing file raises
    :class:`FileNotFoundError`.
    """
    import os
    import stat
    import struct

    from PIL import Image, ImageOps

    register_image_plugins()
    name = getattr(path_or_file, "name", path_or_file)
    if isinstance(path_or_file, (str, os.PathLike)):
        kind = os.stat(path_or_file).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):  # a directory: Pillow says so
            raise ValueError(f"cannot read image {name!r}: not a regular file")
    try:
        with Image.open(path_or_file) as im:
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to turn
            return _to_rgb(im)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {name!r}: {e}") from e


_KEYED_MODES = ("1", "L", "I", "I;16", "RGB")
"""Modes whose ``transparency`` is one stored value (PNG tRNS): the pixels of that value are transparent."""


def _to_rgb(im) -> np.ndarray:
    rgb = _convert(im)
    if im.mode in _KEYED_MODES and im.info.get("transparency") is not None:
        # compared here: Pillow's own alpha for I;16 compares values clipped to 8 bits
        values = np.asarray(im.convert("L") if im.mode == "1" else im)
        clear = values == np.asarray(im.info["transparency"])
        rgb = rgb.copy()
        rgb[clear.all(-1) if clear.ndim == 3 else clear] = 255
    return rgb


def _convert(im) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.nan_to_num(np.asarray(im))), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("1", "L"):
        return np.repeat(np.asarray(im.convert("L"))[:, :, None], 3, axis=2)
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:]
        # round(c * a / 255 + 255 * (1 - a / 255)) in integers
        return ((rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"))
