"""Decode on the CPU with FFmpeg's HEVC decoder (PyAV): RGB arrays cropped to the clean aperture.

Each thread keeps one ``hevc`` decoder context and reuses it: an image is one access unit
(parameter sets + one intra picture, :func:`~bzna_boxes.hevc.to_annexb`), sent, drained, then the
context is reset with ``flush_buffers()`` for the next one (about twice as fast as opening a
context per image). The picture is converted to RGB with swscale's accurate path, with the
matrix and range the stream's VUI states (see :mod:`.colour` for the formula both decoders
share), then cropped to the clean aperture. Only the part of the frame around the aperture is
converted (:func:`conversion_box`: the aperture, the chroma margin the bilinear upsampling
reads, rounded out to multiples of 64), which gives the same pixels as converting the whole
frame: a 500x375 picture in its 512x512 frame converts 512x384. One swscale context is kept per
thread, converted size and conversion (setting one up costs more than a conversion).
"""

from __future__ import annotations

import collections
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BoxError
from ..hevc import to_annexb
from ..image import CleanAperture, EncodedImage
from .colour import BT601_LIMITED, YuvToRgb, check_aperture, conversion_window, yuv_to_rgb

if TYPE_CHECKING:  # pragma: no cover
    import av

__all__ = ["CpuDecoder", "conversion_box"]

CONVERSION_MULTIPLE = 64
"""The converted part of a frame starts and ends at multiples of this (or at the frame's edge), so
that the many picture sizes of a dataset share a few swscale contexts."""
CONVERTERS_PER_THREAD = 16
"""swscale contexts a thread keeps (the least recently used one goes first)."""

_INHERITED: list = []  # contexts a forked process inherited (see CpuDecoder._state)


class _ThreadState:
    """One thread's FFmpeg decoder context and swscale converters."""

    __slots__ = ("context", "converters")

    def __init__(self) -> None:
        self.context = None
        self.converters: collections.OrderedDict = collections.OrderedDict()  # least recently used first


class CpuDecoder:
    """H.265 pictures to H x W x 3 uint8 RGB numpy arrays, on the CPU (thread-safe).

    ``threads`` is FFmpeg's thread count per decoder context (1: parallelize across images
    instead, one thread each, as :class:`bzna_boxes.torch.Loader` does).

    A decoder used in a process and then in a child forked from it (``DataLoader`` workers)
    opens new FFmpeg and swscale contexts in the child: the inherited ones can hang there
    (swscale's worker threads do not survive a fork), so they are kept and never freed. They
    are held by the decoder, per thread id, not in thread-local storage: a fork discards the
    thread-local data of every thread but the forking one, which would free the contexts of
    threads alive in the parent (a ``Loader``'s decoding threads between epochs) and hang the
    child in ``fork()`` itself.
    """

    device = "cpu"

    def __init__(self, threads: int = 1):
        import av  # noqa: F401  (fail here, not at the first image, when PyAV is missing)

        self.threads = threads
        self._states: dict[int, _ThreadState] = {}  # by thread id; those of ended threads go when a new thread comes
        self._pid = os.getpid()

    def _state(self) -> _ThreadState:
        """This thread's contexts; new ones in a process forked since they were made."""
        if self._pid != os.getpid():
            _INHERITED.append(self._states)  # never freed: freeing a forked swscale context waits for its lost threads
            self._states = {}
            self._pid = os.getpid()
        ident = threading.get_ident()
        state = self._states.get(ident)
        if state is None:
            alive = {thread.ident for thread in threading.enumerate()}
            for gone in [other for other in list(self._states) if other not in alive]:  # threads that ended
                self._states.pop(gone, None)
            state = self._states.setdefault(ident, _ThreadState())
        return state

    def __repr__(self) -> str:
        return f"CpuDecoder(threads={self.threads})"

    def _context(self, local: _ThreadState) -> "av.CodecContext":
        """The FFmpeg decoder context of ``local`` (this thread's state), made on first use."""
        context = local.context
        if context is None:
            import av

            context = av.CodecContext.create("hevc", "r")
            context.thread_count = self.threads
            local.context = context
        return context

    def decode_frame(self, image: EncodedImage) -> "av.VideoFrame":
        """The whole decoded picture (coded size, padding included) as a PyAV ``VideoFrame``."""
        import av

        packet = av.Packet(to_annexb(image))
        local = self._state()
        context = self._context(local)
        try:
            frames = context.decode(packet)
            frames += context.decode(None)
        except av.FFmpegError as exc:
            local.context = None  # a context left mid-error is not reused
            raise BoxError(f"FFmpeg's HEVC decoder rejected the picture: {exc}", path="sample") from exc
        finally:
            if local.context is context:
                context.flush_buffers()
        if len(frames) != 1:
            raise BoxError(f"the sample decoded to {len(frames)} pictures, expected 1", path="sample")
        frame = frames[0]
        if (frame.width, frame.height) != (image.frame_width, image.frame_height):
            raise BoxError(
                f"the bitstream codes a {frame.width}x{frame.height} picture, the sample entry says "
                f"{image.frame_width}x{image.frame_height}",
                path="sample",
            )
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            raise BoxError(f"pictures in {frame.format.name} are not supported (8-bit 4:2:0 only)", path="sample")
        return frame

    def decode(self, image: EncodedImage) -> np.ndarray:
        """Decode one image to a ``height x width x 3`` uint8 RGB array (the clean aperture)."""
        conversion = yuv_to_rgb(image.video_signal)  # first: refuse what cannot be converted before decoding it
        frame = self.decode_frame(image)
        check_aperture(image.clean_aperture, frame.width, frame.height)
        x0, y0, x1, y1 = conversion_box(image.clean_aperture, frame.width, frame.height)
        converters = self._state().converters
        key = (x1 - x0, y1 - y0, conversion)
        converter = converters.get(key)
        if converter is None:
            if len(converters) >= CONVERTERS_PER_THREAD:
                converters.popitem(last=False)
            converter = converters[key] = RgbConverter(x1 - x0, y1 - y0, conversion)
        else:
            converters.move_to_end(key)
        return converter.convert(frame, image.clean_aperture, x0, y0)


def conversion_box(aperture: CleanAperture, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the part of the frame to convert for the pixels of ``aperture``.

    The aperture plus the chroma margin of :func:`.colour.conversion_window`, rounded out to
    multiples of :data:`CONVERSION_MULTIPLE` within the frame; converting it then cropping gives
    the same pixels as converting the whole frame.
    """
    m = CONVERSION_MULTIPLE
    x0, x1 = conversion_window(aperture.x, aperture.width, frame_width)
    y0, y1 = conversion_window(aperture.y, aperture.height, frame_height)
    return x0 // m * m, y0 // m * m, min(frame_width, -(-x1 // m) * m), min(frame_height, -(-y1 // m) * m)


class RgbConverter:
    """A ``width x height`` part of yuv420p frames to RGB by one conversion (:mod:`.colour`); one thread's.

    The planes of that part are first copied into a frame of our own: that drops the chroma
    location the decoder attaches (H.265's default, "left"), which would make swscale shift
    chroma by half a sample; the encoder's chroma is centred. The swscale context is kept from frame to frame
    (setting one up for the accurate path costs about as much as a conversion). swscale runs on
    the calling thread: PyAV's default, a team of threads per context, doubled the CPU time of a
    conversion for nothing where every core decodes its own images.
    """

    def __init__(self, width: int, height: int, conversion: YuvToRgb = BT601_LIMITED):
        import av
        from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

        self.colorspace = Colorspace(conversion.matrix)  # swscale's codes are H.273's
        self.color_range = ColorRange.JPEG if conversion.full_range else ColorRange.MPEG
        self.staging = av.VideoFrame(width, height, "yuv420p")
        self.staging.colorspace = self.colorspace
        self.staging.color_range = self.color_range
        self.planes = [
            np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : plane.width]
            for plane in self.staging.planes
        ]
        self.reformatter = VideoReformatter()
        self.one_thread = True  # swscale on the calling thread: the images are decoded in parallel already

    def convert(self, frame: "av.VideoFrame", aperture, x0: int = 0, y0: int = 0) -> np.ndarray:
        """The RGB pixels of ``frame`` inside ``aperture``, as an H x W x 3 uint8 array.

        This converter's part of the frame starts at ``(x0, y0)`` (even) and holds the aperture
        and the chroma margin of :func:`conversion_box`.
        """
        from av.video.reformatter import Interpolation

        check_aperture(aperture, frame.width, frame.height)
        for index, (plane, target) in enumerate(zip(frame.planes, self.planes)):
            left, top = (x0, y0) if index == 0 else (x0 // 2, y0 // 2)
            source = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            target[...] = source[top : top + target.shape[0], left : left + target.shape[1]]
        options = dict(
            format="rgb24",
            src_colorspace=self.colorspace,
            src_color_range=self.color_range,
            interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT,
        )
        if self.one_thread:
            try:
                rgb = self.reformatter.reformat(self.staging, threads=1, **options)
            except TypeError:  # an older PyAV without the option: its swscale runs on the calling thread
                self.one_thread = False
        if not self.one_thread:
            rgb = self.reformatter.reformat(self.staging, **options)
        rgb = rgb.to_ndarray()
        a = aperture
        return np.ascontiguousarray(rgb[a.y - y0 : a.y - y0 + a.height, a.x - x0 : a.x - x0 + a.width])


def frame_to_rgb(frame: "av.VideoFrame", aperture, conversion: YuvToRgb = BT601_LIMITED) -> np.ndarray:
    """Convert a yuv420p ``VideoFrame`` to RGB (by ``conversion``, :mod:`.colour`) inside ``aperture``."""
    check_aperture(aperture, frame.width, frame.height)
    x0, y0, x1, y1 = conversion_box(aperture, frame.width, frame.height)
    return RgbConverter(x1 - x0, y1 - y0, conversion).convert(frame, aperture, x0, y0)
