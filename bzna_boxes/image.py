"""One encoded H.265 picture, as the encoder makes it and the reader hands it to the decoders."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """One H.265 picture of a .bzna sample: what :func:`~bzna_boxes.encode.encode_image` makes,
    what :meth:`~bzna_boxes.dataset.Sample.image` reads, what the decoders take.

    ``payload`` is the MP4 sample (length-prefixed NAL units, ``length_size`` bytes each, no
    parameter sets): ``bytes`` from the encoder, a zero-copy view of the file from a reader;
    ``hvcc`` the ``hvcC`` field values (parameter sets in ``arrays``); ``frame_width`` x
    ``frame_height`` the coded size (sample entry); ``width`` x ``height`` the picture without
    padding (tkhd); ``clean_aperture`` the rectangle to crop. Without one, it is the layout's
    (:func:`bzna_boxes.layout.clean_aperture`: the picture at the top left of the frame).
    It is a :class:`bzna_boxes.layout.Frame`.
    """

    payload: bytes | memoryview
    hvcc: Mapping[str, Any]
    frame_width: int
    frame_height: int
    width: int
    height: int
    clean_aperture: CleanAperture = field(default=None)  # type: ignore[assignment]  # set in __post_init__
    codec: str = "hvc1"

    def __post_init__(self) -> None:
        if self.clean_aperture is None:
            aperture = CleanAperture.from_clap(self.clap(), self.frame_width, self.frame_height)
            object.__setattr__(self, "clean_aperture", aperture)

    @property
    def padding_width(self) -> int:
        """Columns of padding right of the picture (the layout pads to :data:`~bzna_boxes.layout.FRAME_MULTIPLE`)."""
        return self.frame_width - self.width

    @property
    def padding_height(self) -> int:
        """Rows of padding below the picture."""
        return self.frame_height - self.height

    def clap(self) -> dict[str, int]:
        """The field values of the ``clap`` box the layout writes for this picture (:func:`bzna_boxes.layout.clean_aperture`)."""
        from .layout import clean_aperture

        return {name: value for name, value in clean_aperture(self).items() if name != "type"}

    @property
    def video_signal(self) -> "VideoSignal":
        """How to read the decoded samples: what the VUI of the first SPS states.

        The SPS is looked for in ``hvcc``, then in the payload (``hev1`` streams may carry their
        parameter sets in band only); without one, the defaults (unspecified, limited range).
        """
        from .errors import BoxError
        from .hevc import SPS, HevcError, VideoSignal, nal_spans, video_signal

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
