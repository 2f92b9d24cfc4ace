"""MP4 samples (length-prefixed NAL units plus hvcC) to Annex B bitstreams, as decoders read them.

An ``hvc1`` sample holds its NAL units each preceded by a big-endian length of 1, 2 or 4 bytes
(hvcC's ``length_size_minus_one`` + 1, ISO/IEC 14496-15 §8.3.3); its parameter sets live in the
``hvcC`` record. NVDEC and FFmpeg's raw ``hevc`` parser read Annex B instead (ISO/IEC 23008-2
Annex B): every NAL unit after a start code. :func:`to_annexb` writes, like FFmpeg's
``hevc_mp4toannexb`` bitstream filter on an IRAP picture, the NAL units of the hvcC arrays in
record order (VPS, SPS, PPS, SEI), then those of the sample, each after ``00 00 00 01``.

It walks the NAL lengths (one ``int.from_bytes`` per NAL unit, no loop over bytes) and copies
each unit once into one preallocated buffer.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import BoxError
from ..image import EncodedImage

__all__ = ["START_CODE", "to_annexb", "sample_to_annexb", "nal_spans"]

START_CODE = b"\x00\x00\x00\x01"
_NAL_HEADER_SIZE = 2  # an H.265 NAL unit header is 2 bytes: a shorter unit is malformed


def nal_spans(payload: memoryview, length_size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte ranges of the NAL units of a length-prefixed MP4 sample.

    Raises :class:`BoxError` (offset within the sample) for a truncated length, a NAL unit
    running past the end of the sample or one shorter than its 2-byte header.
    """
    if length_size not in (1, 2, 4):
        raise BoxError(f"NAL unit lengths of {length_size} bytes: hvcC allows 1, 2 or 4", path="hvcC")
    size = len(payload)
    spans = []
    pos = 0
    while pos < size:
        start = pos + length_size
        if start > size:
            raise BoxError(
                f"truncated NAL unit length: {size - pos} bytes left of a {size}-byte sample, "
                f"{length_size} needed",
                offset=pos,
                path="sample",
            )
        nal_size = int.from_bytes(payload[pos:start], "big")
        end = start + nal_size
        if end > size:
            raise BoxError(
                f"NAL unit of {nal_size} bytes runs past the end of the {size}-byte sample "
                f"({size - start} bytes left)",
                offset=pos,
                path="sample",
            )
        if nal_size < _NAL_HEADER_SIZE:
            raise BoxError(f"NAL unit of {nal_size} bytes is shorter than its 2-byte header", offset=pos, path="sample")
        spans.append((start, end))
        pos = end
    return spans


def _parameter_sets(hvcc: Mapping[str, Any]) -> list[bytes | memoryview]:
    """The NAL units of every hvcC array, in record order."""
    try:
        arrays = hvcc["arrays"]
        nals = [nal for array in arrays for nal in array["nalus"]]
    except (KeyError, TypeError) as exc:
        raise BoxError(f"hvcC record without NAL unit arrays ({exc!r})", path="hvcC") from exc
    for index, nal in enumerate(nals):
        if len(nal) < _NAL_HEADER_SIZE:
            raise BoxError(f"hvcC NAL unit {index} has {len(nal)} bytes, fewer than its 2-byte header", path="hvcC")
    return nals


def _length_size(hvcc: Mapping[str, Any]) -> int:
    try:
        return int(hvcc["length_size_minus_one"]) + 1
    except (KeyError, TypeError, ValueError) as exc:
        raise BoxError(f"hvcC record without a usable length_size_minus_one ({exc!r})", path="hvcC") from exc


def sample_to_annexb(payload: bytes | bytearray | memoryview, hvcc: Mapping[str, Any]) -> bytearray:
    """One MP4 sample and its hvcC record as an Annex B access unit (parameter sets first).

    Returns the one buffer it fills (a ``bytearray``, usable wherever ``bytes`` are).
    """
    view = memoryview(payload)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    parameter_sets = _parameter_sets(hvcc)
    spans = nal_spans(view, _length_size(hvcc))
    return _join(parameter_sets, view, spans)


def to_annexb(image: EncodedImage) -> bytearray:
    """The Annex B bitstream of an :class:`~bzna_boxes.image.EncodedImage`: hvcC NALs, then the sample's."""
    return sample_to_annexb(image.payload, image.hvcc)


def _join(parameter_sets: Iterable[bytes | memoryview], payload: memoryview, spans: list[tuple[int, int]]) -> bytearray:
    parameter_sets = list(parameter_sets)
    total = sum(len(START_CODE) + len(nal) for nal in parameter_sets)
    total += sum(len(START_CODE) + end - start for start, end in spans)
    out = bytearray(total)
    pos = 0
    for nal in parameter_sets:
        out[pos : pos + 4] = START_CODE
        out[pos + 4 : pos + 4 + len(nal)] = nal
        pos += 4 + len(nal)
    for start, end in spans:
        out[pos : pos + 4] = START_CODE
        out[pos + 4 : pos + 4 + end - start] = payload[start:end]
        pos += 4 + end - start
    return out
