"""Decode the H.265 pictures of a ``.bzna`` dataset: NVDEC on the GPU, FFmpeg on the CPU.

* :func:`to_annexb`: an :class:`~bzna_boxes.image.EncodedImage` as the Annex B bitstream decoders read.
* :class:`CpuDecoder`: PyAV (FFmpeg's HEVC decoder) -> H x W x 3 uint8 numpy arrays.
* :class:`NvdecDecoder`: PyNvVideoCodec (NVDEC) -> uint8 torch tensors on the GPU.
* :func:`open_decoder`: the best decoder available for a device.

Both decoders crop to the clean aperture (the image without its padding) and convert colour
with the same BT.601 limited-range arithmetic (:mod:`.colour`), so they agree within 1 per
channel. Importing this package imports neither PyAV, torch nor PyNvVideoCodec.
"""

from __future__ import annotations

import logging
from typing import Any, Union

from ..errors import DecoderUnavailable
from .annexb import sample_to_annexb, to_annexb
from .cpu import CpuDecoder
from .nvdec import NvdecDecoder

__all__ = ["CpuDecoder", "NvdecDecoder", "Decoder", "open_decoder", "to_annexb", "sample_to_annexb", "run"]

Decoder = Union[CpuDecoder, NvdecDecoder]

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
    name = str(device)
    if name == "cpu":
        decoder: Decoder = CpuDecoder(**{k: v for k, v in options.items() if k == "threads"})
    elif name == "auto":
        try:
            decoder = NvdecDecoder("cuda", **{k: v for k, v in options.items() if k != "threads"})
        except DecoderUnavailable as exc:
            log_once(f"decoding on the CPU (FFmpeg through PyAV): {exc}")
            return CpuDecoder(**{k: v for k, v in options.items() if k == "threads"})
    elif name.startswith("cuda"):
        decoder = NvdecDecoder(name, **{k: v for k, v in options.items() if k != "threads"})
    else:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")
    log_once(f"decoding with {decoder!r}")
    return decoder


def run(args) -> int:
    """``bzna decode FILE INDEX -o OUT.png [--track] [--device]``: one sample's image to a PNG."""
    import sys

    import numpy as np
    from PIL import Image

    from ..atomic import atomic_file, check_not_an_input
    from ..dataset import Dataset

    check_not_an_input(args.output, [args.file])
    dataset = Dataset(args.file)
    if not -len(dataset) <= args.index < len(dataset):
        print(f"bzna decode: index {args.index} out of range: the dataset has {len(dataset)} samples", file=sys.stderr)
        return 1
    sample = dataset[args.index]
    if getattr(sample, "missing", False):
        print(f"bzna decode: sample {args.index} is missing from {args.file} (it has no image)", file=sys.stderr)
        return 1
    image = sample.image(args.track)
    decoder = open_decoder(args.device, layout="HWC")
    rgb = decoder.decode(image)
    if not isinstance(rgb, np.ndarray):
        rgb = rgb.cpu().numpy()
    with atomic_file(args.output) as out:
        Image.fromarray(rgb).save(out, format="PNG")
    device = getattr(decoder, "device", "cpu")
    print(f"{args.output}: {rgb.shape[1]}x{rgb.shape[0]} RGB, sample {args.index} ({args.track}), decoded on {device}")
    return 0
