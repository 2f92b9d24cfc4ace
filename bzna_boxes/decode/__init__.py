"""Decode the H.265 pictures of a ``.bzna`` dataset: NVDEC on the GPU, FFmpeg on the CPU.

* :func:`to_annexb`: an :class:`~bzna_boxes.image.EncodedImage` as the Annex B bitstream decoders read.
* :class:`Decoder`: what every decoder offers. :class:`CpuDecoder`: PyAV (FFmpeg's HEVC
  decoder) -> H x W x 3 uint8 numpy arrays. :class:`NvdecDecoder`: PyNvVideoCodec (NVDEC) ->
  uint8 torch tensors on the GPU.
* :func:`resolve_device`: the device a name means (``"auto"``: the current CUDA device), used
  here and by :mod:`bzna_boxes.torch`; :func:`open_decoder`: the best decoder for a device.

Both decoders crop to the clean aperture (the image without its padding) and convert colour
with the same BT.601 limited-range arithmetic (:mod:`.colour`), so they agree within 1 per
channel. Importing this package imports neither PyAV, torch nor PyNvVideoCodec.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import DecoderUnavailable
from ..hevc import sample_to_annexb, to_annexb
from .cpu import CpuDecoder
from .nvdec import NvdecDecoder, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from ..image import EncodedImage

__all__ = ["Decoder", "CpuDecoder", "NvdecDecoder", "open_decoder", "resolve_device", "to_annexb", "sample_to_annexb"]


@runtime_checkable
class Decoder(Protocol):
    """What a decoder offers (:class:`CpuDecoder`, :class:`NvdecDecoder`; thread-safe).

    ``decode(image)`` returns the picture cropped to its clean aperture as uint8 RGB: an
    ``H x W x 3`` numpy array on the CPU, a torch tensor on ``device`` for a GPU decoder.
    """

    device: Any
    """Where the decoded pictures are: ``"cpu"`` or a CUDA ``torch.device``."""

    def decode(self, image: "EncodedImage") -> Any: ...

log = logging.getLogger(__name__)
_logged: set[str] = set()


def log_once(message: str) -> None:
    """Log ``message`` at INFO level the first time it comes, and never again in this process."""
    if message not in _logged:
        _logged.add(message)
        log.info(message)


def open_decoder(device: Any = "auto", **options: Any) -> Decoder:
    """The decoder for ``device``: ``"auto"`` (NVDEC on the current CUDA device when it works,
    else the CPU), ``"cpu"``, or ``"cuda"`` (the current CUDA device) / ``"cuda:N"`` (that GPU):
    NVDEC, or :class:`DecoderUnavailable` saying why not.

    ``options`` go to the decoder (``layout=`` for NVDEC, ``threads=`` for the CPU). The choice
    is logged once (logger ``bzna_boxes.decode``, level INFO).
    """
    # "auto" is resolved by NVDEC once it knows it can run: falling back to the CPU imports no torch
    target = "auto" if str(device) == "auto" else resolve_device(device)
    cpu_options = {k: v for k, v in options.items() if k == "threads"}
    if target == "cpu":
        decoder: Decoder = CpuDecoder(**cpu_options)
    else:
        try:
            decoder = NvdecDecoder(target, **{k: v for k, v in options.items() if k != "threads"})
        except DecoderUnavailable as exc:
            if target != "auto":
                raise
            log_once(f"decoding on the CPU (FFmpeg through PyAV): {exc}")
            return CpuDecoder(**cpu_options)
    log_once(f"decoding with {decoder!r}")
    return decoder
