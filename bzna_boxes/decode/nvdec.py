"""Decode on an NVIDIA GPU with NVDEC (PyNvVideoCodec 2.x): RGB torch tensors that stay on the GPU.

Per image: the Annex B access unit (:func:`~.annexb.to_annexb`) goes to a PyNvVideoCodec decoder
session as one ``PacketData`` (``bsl_data``/``bsl``: its host address and size) flagged
``ENDOFPICTURE``; sessions run with ``DisplayDecodeLatencyType.ZERO``, so ``Decode`` returns the
picture of that very packet. The NV12 surface comes out in device memory
(``usedevicememory=True``) and reaches torch through DLPack (``torch.from_dlpack``), on a CUDA
stream the session shares with the conversion, so no copy ever goes through host memory.
:func:`~.colour.nv12_to_rgb` then crops to the clean aperture and converts to RGB on the GPU, with
the arithmetic of the CPU path and the matrix and range the stream's VUI states.

One session decodes one coded size (thumbnails are all 512x512); each thread keeps its own
sessions, keyed by coded size, the least recently used dropped past ``max_sessions``.

The API used (PyNvVideoCodec 2.2): ``CreateDecoder(gpuid, codec, cudacontext, cudastream,
usedevicememory, maxwidth, maxheight, latency)``, ``PacketData()`` with ``bsl_data``, ``bsl``,
``decode_flag``, ``VideoPacketFlag.ENDOFPICTURE``, ``DisplayDecodeLatencyType.ZERO``,
``cudaVideoCodec.HEVC``, ``PyNvDecoder.Decode(packet) -> [DecodedFrame]``, ``DecodedFrame``
exporting ``__dlpack__`` (NV12: one ``H*3/2 x W`` uint8 plane pair). A packet of size 0 flushes
the session (end of stream); a session is never reused after a flush.
"""

from __future__ import annotations

import collections
import ctypes
import importlib.util
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BoxError, DecoderUnavailable
from ..image import EncodedImage
from .annexb import to_annexb
from .colour import nv12_to_rgb, yuv_to_rgb

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["NvdecDecoder", "check_nvdec"]

_NVCUVID = "libnvcuvid.so.1"


def _cuda_index(device: Any) -> int:
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"NVDEC decodes on a CUDA device, not {device}")
    return device.index if device.index is not None else torch.cuda.current_device()


def _import_nvc():
    """Import PyNvVideoCodec, which checks the driver at import (its logger silenced meanwhile)."""
    logger = logging.getLogger("PyNvVideoCodec")
    disabled = logger.disabled
    logger.disabled = True
    try:
        import PyNvVideoCodec as nvc
    finally:
        logger.disabled = disabled
    return nvc


def check_nvdec(device: Any = "cuda:0"):
    """Return the PyNvVideoCodec module if NVDEC can run on ``device``, else raise DecoderUnavailable.

    The message is one line naming what is missing: the package, torch with CUDA, a GPU, the
    driver's ``libnvcuvid``, or the package failing to load.
    """
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        raise DecoderUnavailable("NVDEC unavailable: PyNvVideoCodec is not installed (pip install pynvvideocodec)")
    try:
        import torch
    except ImportError:
        raise DecoderUnavailable("NVDEC unavailable: torch is not installed (pip install torch, a CUDA build)") from None
    if torch.version.cuda is None:
        raise DecoderUnavailable(f"NVDEC unavailable: torch {torch.__version__} is built without CUDA")
    if not torch.cuda.is_available():
        raise DecoderUnavailable("NVDEC unavailable: no CUDA GPU is visible (no NVIDIA driver or GPU, or CUDA_VISIBLE_DEVICES hides it)")
    index = _cuda_index(device)
    if not 0 <= index < torch.cuda.device_count():
        raise DecoderUnavailable(f"NVDEC unavailable: no GPU cuda:{index} ({torch.cuda.device_count()} visible)")
    try:
        ctypes.CDLL(_NVCUVID)
    except OSError:
        raise DecoderUnavailable(
            f"NVDEC unavailable: the driver's {_NVCUVID} is missing (install the NVIDIA driver; in a "
            "container, give it the 'video' capability)"
        ) from None
    try:
        return _import_nvc()
    except Exception as exc:  # the package raises RuntimeError/ImportError with long texts
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DecoderUnavailable(f"NVDEC unavailable: PyNvVideoCodec failed to load: {first_line}") from None


class _Session:
    """One PyNvVideoCodec decoder of one coded size, with the CUDA stream it works on."""

    def __init__(self, nvc, gpu: int, width: int, height: int):
        import torch

        self.stream = torch.cuda.Stream(device=gpu)
        self.decoder = nvc.CreateDecoder(
            gpuid=gpu,
            codec=nvc.cudaVideoCodec.HEVC,
            cudacontext=0,
            cudastream=self.stream.cuda_stream,
            usedevicememory=True,
            maxwidth=width,
            maxheight=height,
            latency=nvc.DisplayDecodeLatencyType.ZERO,
        )
        self.usable = True


class NvdecDecoder:
    """H.265 pictures to uint8 RGB torch tensors on a CUDA device, decoded by NVDEC (thread-safe).

    ``layout`` is ``"HWC"`` (height x width x 3) or ``"CHW"`` (3 x height x width). Raises
    :class:`~bzna_boxes.DecoderUnavailable` (one line: what is missing) when NVDEC cannot run.
    The returned tensor is ready on the caller's current CUDA stream.
    """

    def __init__(self, device: Any = "cuda:0", layout: str = "HWC", max_sessions: int = 4):
        if layout not in ("HWC", "CHW"):
            raise ValueError(f"layout must be 'HWC' or 'CHW', not {layout!r}")
        self._nvc = check_nvdec(device)
        import torch

        self.gpu = _cuda_index(device)
        self.device = torch.device("cuda", self.gpu)
        self.layout = layout
        self.max_sessions = max_sessions
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"NvdecDecoder(device={str(self.device)!r}, layout={self.layout!r})"

    def _session(self, width: int, height: int) -> _Session:
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = collections.OrderedDict()
        key = (width, height)
        session = sessions.get(key)
        if session is not None and session.usable:
            sessions.move_to_end(key)
            return session
        sessions.pop(key, None)
        while len(sessions) >= self.max_sessions:
            sessions.popitem(last=False)
        session = sessions[key] = _Session(self._nvc, self.gpu, width, height)
        return session

    def decode_nv12(self, image: EncodedImage) -> "torch.Tensor":
        """The whole decoded picture as an NV12 tensor (``H*3/2 x W`` uint8) on the GPU, a copy."""
        import torch

        nvc = self._nvc
        session = self._session(image.frame_width, image.frame_height)
        bitstream = np.frombuffer(to_annexb(image), np.uint8)
        packet = nvc.PacketData()
        packet.bsl_data = bitstream.ctypes.data
        packet.bsl = bitstream.size
        packet.decode_flag = nvc.VideoPacketFlag.ENDOFPICTURE
        with torch.cuda.device(self.gpu), torch.cuda.stream(session.stream):
            try:
                frames = session.decoder.Decode(packet)
                if not frames:  # the parser held the picture back: flush (end of stream)
                    session.usable = False
                    frames = session.decoder.Decode(nvc.PacketData())
            except Exception as exc:
                session.usable = False
                raise BoxError(f"NVDEC rejected the picture: {exc}", path="sample") from exc
            if len(frames) != 1:
                session.usable = False
                raise BoxError(f"the sample decoded to {len(frames)} pictures, expected 1", path="sample")
            nv12 = torch.from_dlpack(frames[0]).clone()  # the session reuses its surface
        del bitstream  # kept alive until Decode returned
        if nv12.dim() != 2 or tuple(nv12.shape) != (image.frame_height * 3 // 2, image.frame_width):
            raise BoxError(
                f"NVDEC gave a {tuple(nv12.shape)} surface for a {image.frame_width}x{image.frame_height} "
                "NV12 picture",
                path="sample",
            )
        current = torch.cuda.current_stream(self.gpu)
        current.wait_stream(session.stream)
        nv12.record_stream(current)
        return nv12

    def decode(self, image: EncodedImage) -> "torch.Tensor":
        """Decode one image to a uint8 RGB tensor on the GPU, cropped to the clean aperture."""
        conversion = yuv_to_rgb(image.video_signal)  # before decoding: refuse what cannot be converted
        return nv12_to_rgb(self.decode_nv12(image), image.clean_aperture, self.layout, conversion)
