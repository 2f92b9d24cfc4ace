"""Decode on an NVIDIA GPU with NVDEC (PyNvVideoCodec 2.x): RGB torch tensors that stay on the GPU.

Per image: the Annex B access unit (:func:`~bzna_boxes.hevc.to_annexb`) goes to a PyNvVideoCodec decoder
session as one ``PacketData`` (``bsl_data``/``bsl``: its host address and size) flagged
``ENDOFPICTURE``; sessions run with ``DisplayDecodeLatencyType.ZERO``, so ``Decode`` returns the
picture of that very packet. The NV12 surface comes out in device memory
(``usedevicememory=True``) and reaches torch through DLPack (``torch.from_dlpack``), on a CUDA
stream the session shares with the conversion, so no copy ever goes through host memory.
:func:`~.colour.nv12_to_rgb` then crops to the clean aperture and converts to RGB on the GPU, with
the arithmetic of the CPU path and the matrix and range the stream's VUI states.

One session decodes one coded size (thumbnails are all 512x512). Sessions are shared by the
threads of a decoder: a thread takes an idle session of its picture's size (or opens one),
decodes, and gives it back, so sessions outlive threads and thread pools; at most
``max_sessions`` idle ones are kept. A GPU has a handful of NVDEC engines (an H100 or H200: 7),
so a few threads keep them busy: :data:`NVDEC_THREADS` is the default the Loader uses.

Opening a decoder decodes one tiny embedded picture (:data:`CHECK_PICTURE`): a GPU that has no
media engines (a MIG slice without them) or a driver that cannot decode HEVC is refused then,
with :class:`~bzna_boxes.DecoderUnavailable`, not at the first image of a training run.

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
from ..hevc import to_annexb
from ..image import EncodedImage
from .colour import nv12_to_rgb, yuv_to_rgb

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["NvdecDecoder", "check_nvdec", "current_cuda_device", "resolve_device", "NVDEC_THREADS"]

_NVCUVID = "libnvcuvid.so.1"

#: Decoding threads per GPU by default. A thread spends most of its time waiting for an engine,
#: and an H200 has 7 NVDEC engines: 2, 4 and 8 are to be measured on each GPU
#: (``benchmarks/bench_decode.py``'s GPU rows); 4 is the default until they are.
NVDEC_THREADS = 4

#: A 512x512 H.265 intra picture (Annex B) made by :func:`bzna_boxes.encode.encode_frame`: orange
#: (200, 120, 40) with a blue (30, 60, 220) square at rows and columns 128..255.
CHECK_PICTURE = bytes.fromhex(
    "0000000140010c01ffff01600000030090000003000003005a9594090000000142010101600000030090000003000003"
    "005aa0040200805965654a4c2e6a021a0d482000000300200000030281000000014401c073c189000000012801ac2508"
    "15e939e26314c5294a52c026ec9e7ef8180c02731967b3648a01bf39eda5eb158ea2e026a015e23fe2a2e001591a363a"
    "8b80003fc01df598e4ff2ca336879e1cceb437c000554020224980000ff01ba83b00009b8000421c00041c0084f40d90"
    "21a000000300014d0000030004b4000003000e48000003001f70000003004740000003007f8000000300ea80"
)
CHECK_SIZE = 512
#: Luma samples of :data:`CHECK_PICTURE` (FFmpeg's decoding): (row, column) -> Y.
CHECK_LUMA = {(0, 0): 131, (170, 170): 75}


def current_cuda_device() -> "torch.device":
    """The calling thread's current CUDA device, with its index (``cuda:0`` when torch sees no GPU).

    Under ``torchrun`` each process calls ``torch.cuda.set_device(LOCAL_RANK)`` first, so this is
    the rank's own GPU, where its model lives.
    """
    import torch

    index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return torch.device("cuda", index)


def resolve_device(device: Any = "auto") -> str:
    """The device ``device`` names, as ``"cpu"`` or ``"cuda:N"``: the one place a device is chosen.

    ``"cpu"`` is the CPU; ``"cuda:N"`` (or ``torch.device("cuda", N)``) is exactly GPU N;
    ``"auto"`` and ``"cuda"`` are the current CUDA device (:func:`current_cuda_device`: under
    ``torchrun``, the rank's own GPU), ``cuda:0`` when torch sees no GPU or is not installed
    (NVDEC then says why it cannot run there). Anything else is a ``ValueError``.
    """
    name = str(device)
    if name == "cpu":
        return name
    if name in ("auto", "cuda"):
        try:
            return str(current_cuda_device())
        except ImportError:  # no torch: nothing can run on a GPU, and opening NVDEC says so
            return "cuda:0"
    kind, colon, index = name.partition(":")
    if kind == "cuda" and colon and index.isdigit():
        return f"cuda:{int(index)}"
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")


def _cuda_index(device: Any) -> int:
    name = resolve_device(device)
    if name == "cpu":
        raise ValueError(f"NVDEC decodes on a CUDA device, not {device}")
    return int(name.partition(":")[2])


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
    """Return the PyNvVideoCodec module if NVDEC can be loaded for ``device``, else raise DecoderUnavailable.

    The message is one line naming what is missing: the package, torch with CUDA, a GPU, the
    driver's ``libnvcuvid``, or the package failing to load. (Whether the GPU really decodes
    is checked by :func:`check_decoding`, which :class:`NvdecDecoder` runs when it opens.)
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Session:
    """One PyNvVideoCodec decoder of one coded size, with the CUDA stream it works on.

    A failure to create it (no free engine or session, a size the GPU cannot decode) raises
    :class:`~bzna_boxes.DecoderUnavailable` naming the size and the GPU.
    """

    def __init__(self, nvc, gpu: int, width: int, height: int):
        import torch

        self.size = (width, height)
        try:
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
        except Exception as exc:
            raise DecoderUnavailable(
                f"NVDEC could not open a decoder for {width}x{height} pictures on cuda:{gpu}: {_first_line(exc)}"
            ) from exc
        self.usable = True

    def decode(self, nvc, bitstream: bytes | memoryview) -> list:
        """The frames ``Decode`` gives for one Annex B picture (flushing when the parser holds it back).

        Runs on the session's stream; the caller is inside ``torch.cuda.stream(self.stream)``.
        A session that was flushed or failed is marked unusable (never reused).
        """
        data = np.frombuffer(bitstream, np.uint8)
        packet = nvc.PacketData()
        packet.bsl_data = data.ctypes.data
        packet.bsl = data.size
        packet.decode_flag = nvc.VideoPacketFlag.ENDOFPICTURE
        try:
            frames = self.decoder.Decode(packet)
            if not frames:  # the parser held the picture back: flush (end of stream)
                self.usable = False
                frames = self.decoder.Decode(nvc.PacketData())
        except Exception:
            self.usable = False
            raise
        finally:
            del data  # kept alive until Decode returned
        if len(frames) != 1:
            self.usable = False
        return list(frames)


def check_decoding(nvc, gpu: int) -> _Session:
    """Decode :data:`CHECK_PICTURE` on ``cuda:gpu``; return the session (reusable), or raise DecoderUnavailable."""
    import torch

    try:
        session = _Session(nvc, gpu, CHECK_SIZE, CHECK_SIZE)
        with torch.cuda.device(gpu), torch.cuda.stream(session.stream):
            frames = session.decode(nvc, CHECK_PICTURE)
            if len(frames) != 1:
                raise RuntimeError(f"{len(frames)} pictures out of one")
            luma = torch.from_dlpack(frames[0])[:CHECK_SIZE, :CHECK_SIZE]
            got = {at: int(luma[at]) for at in CHECK_LUMA}  # synchronizes the stream
        wrong = {at: (got[at], want) for at, want in CHECK_LUMA.items() if abs(got[at] - want) > 2}
        if wrong:
            raise RuntimeError(f"wrong samples (got, expected): {wrong}")
    except DecoderUnavailable as exc:
        raise DecoderUnavailable(f"NVDEC unavailable: the test picture did not decode on cuda:{gpu}: {exc}") from exc
    except Exception as exc:
        raise DecoderUnavailable(
            f"NVDEC unavailable: the test picture did not decode on cuda:{gpu}: {_first_line(exc)}"
        ) from exc
    return session


class NvdecDecoder:
    """H.265 pictures to uint8 RGB torch tensors on a CUDA device, decoded by NVDEC (thread-safe).

    ``layout`` is ``"HWC"`` (height x width x 3) or ``"CHW"`` (3 x height x width). Raises
    :class:`~bzna_boxes.DecoderUnavailable` (one line: what is missing) when NVDEC cannot run.
    The returned tensor is ready on the caller's current CUDA stream.
    """

    def __init__(self, device: Any = "cuda", layout: str = "HWC", max_sessions: int = 2 * NVDEC_THREADS):
        if layout not in ("HWC", "CHW"):
            raise ValueError(f"layout must be 'HWC' or 'CHW', not {layout!r}")
        self._nvc = check_nvdec(device)
        import torch

        self.gpu = _cuda_index(device)
        self.device = torch.device("cuda", self.gpu)
        self.layout = layout
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._idle: collections.deque[_Session] = collections.deque()
        self.sessions_opened = 0
        self._give_back(check_decoding(self._nvc, self.gpu))
        self.sessions_opened = 1

    def __repr__(self) -> str:
        return f"NvdecDecoder(device={str(self.device)!r}, layout={self.layout!r})"

    def _take(self, width: int, height: int) -> _Session:
        """An idle session for ``width x height`` pictures, or a new one; the caller gives it back."""
        with self._lock:
            for session in reversed(self._idle):  # the most recently used first
                if session.size == (width, height):
                    self._idle.remove(session)
                    return session
        session = _Session(self._nvc, self.gpu, width, height)
        with self._lock:
            self.sessions_opened += 1
        return session

    def _give_back(self, session: _Session) -> None:
        if not session.usable:
            return
        with self._lock:
            self._idle.append(session)
            while len(self._idle) > self.max_sessions:
                self._idle.popleft()

    def decode_nv12(self, image: EncodedImage) -> "torch.Tensor":
        """The whole decoded picture as an NV12 tensor (``H*3/2 x W`` uint8) on the GPU, a copy."""
        import torch

        bitstream = to_annexb(image)
        session = self._take(image.frame_width, image.frame_height)
        try:
            with torch.cuda.device(self.gpu), torch.cuda.stream(session.stream):
                try:
                    frames = session.decode(self._nvc, bitstream)
                except Exception as exc:
                    raise BoxError(f"NVDEC rejected the picture: {_first_line(exc)}", path="sample") from exc
                if len(frames) != 1:
                    raise BoxError(f"the sample decoded to {len(frames)} pictures, expected 1", path="sample")
                nv12 = torch.from_dlpack(frames[0]).clone()  # the session reuses its surface
            current = torch.cuda.current_stream(self.gpu)
            current.wait_stream(session.stream)  # before another thread enqueues on the session
        finally:
            self._give_back(session)
        nv12.record_stream(current)
        if nv12.dim() != 2 or tuple(nv12.shape) != (image.frame_height * 3 // 2, image.frame_width):
            raise BoxError(
                f"NVDEC gave a {tuple(nv12.shape)} surface for a {image.frame_width}x{image.frame_height} "
                "NV12 picture",
                path="sample",
            )
        return nv12

    def decode(self, image: EncodedImage) -> "torch.Tensor":
        """Decode one image to a uint8 RGB tensor on the GPU, cropped to the clean aperture."""
        conversion = yuv_to_rgb(image.video_signal)  # before decoding: refuse what cannot be converted
        return nv12_to_rgb(self.decode_nv12(image), image.clean_aperture, self.layout, conversion)
