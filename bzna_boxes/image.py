"""An encoded image as the reader hands it to the decoders: H.265 payload, hvcC, sizes, clap."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .hevc import VideoSignal

__all__ = ["CleanAperture", "EncodedImage"]


@dataclass(frozen=True)
class CleanAperture:
    """The clean aperture in pixels of the coded frame: top-left corner and size."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def from_clap(cls, clap: Mapping[str, Any] | None, frame_width: int, frame_height: int) -> "CleanAperture":
        """Convert a ``clap`` box (centre-relative fractions, ISO/IEC 14496-12 §12.1.4) to pixels.

        Without a clap box the whole frame is clean.
        """
        if clap is None:
            return cls(0, 0, frame_width, frame_height)
        try:
            width = Fraction(clap["clean_aperture_width_n"], clap["clean_aperture_width_d"])
            height = Fraction(clap["clean_aperture_height_n"], clap["clean_aperture_height_d"])
            horiz = Fraction(clap["horiz_off_n"], clap["horiz_off_d"])
            vert = Fraction(clap["vert_off_n"], clap["vert_off_d"])
        except ZeroDivisionError:
            from .errors import BoxError

            raise BoxError("clap has a zero denominator", path="clap") from None
        left = horiz + Fraction(frame_width - 1, 2) - (width - 1) / 2
        top = vert + Fraction(frame_height - 1, 2) - (height - 1) / 2
        return cls(round(left), round(top), round(width), round(height))


@dataclass(frozen=True)
class EncodedImage:
    """One H.265 picture of a .bzna sample, ready for a decoder.

    ``payload`` is the MP4 sample (length-prefixed NAL units, ``length_size`` bytes each), a
    zero-copy view of the file; ``hvcc`` the parsed ``hvcC`` box (parameter sets in ``arrays``);
    ``frame_width`` x ``frame_height`` the coded size (sample entry); ``width`` x ``height`` the
    display size (tkhd); ``clean_aperture`` the rectangle to crop (the image without padding).
    """

    payload: memoryview
    hvcc: Mapping[str, Any]
    frame_width: int
    frame_height: int
    width: int
    height: int
    clean_aperture: CleanAperture
    codec: str = "hvc1"

    @property
    def video_signal(self) -> "VideoSignal":
        """How to read the decoded samples: what the VUI of the first SPS states.

        The SPS is looked for in ``hvcc``, then in the payload (``hev1`` streams may carry their
        parameter sets in band only); without one, the defaults (unspecified, limited range).
        """
        from .decode.annexb import nal_spans
        from .errors import BoxError
        from .hevc import SPS, HevcError, VideoSignal, video_signal

        for array in self.hvcc.get("arrays", ()):
            if array["nal_unit_type"] == SPS and array["nalus"]:
                try:
                    return video_signal(bytes(array["nalus"][0]))
                except HevcError as exc:
                    raise BoxError(f"malformed SPS: {exc.reason}", path="hvcC") from None
        payload = memoryview(self.payload).cast("B")
        for start, end in nal_spans(payload, self.length_size):
            if (payload[start] >> 1) & 0x3F == SPS:
                try:
                    return video_signal(bytes(payload[start:end]))
                except HevcError as exc:
                    raise BoxError(f"malformed SPS: {exc.reason}", offset=start, path="sample") from None
        return VideoSignal()

    @property
    def length_size(self) -> int:
        """Bytes in each NAL unit length prefix (hvcC's lengthSizeMinusOne + 1)."""
        return int(self.hvcc["length_size_minus_one"]) + 1
