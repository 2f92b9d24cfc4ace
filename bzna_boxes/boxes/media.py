"""Media boxes: mdhd, hdlr, vmhd, smhd, nmhd, url (ISO/IEC 14496-12 §8.4, §8.7, §12)."""

from __future__ import annotations

from construct import Array, Bytes, Default, Int16ub, Int32ub

from .core import BoxType, register
from .fields import FourCC, Language, SignedFixed8_8, Utf8Rest, full_box
from .movie import _by_version

register(
    BoxType(
        "mdhd",
        "MediaHeaderBox",
        full_box(
            _by_version("creation_time"),
            _by_version("modification_time"),
            "timescale" / Default(Int32ub, 1000),
            _by_version("duration"),
            "language" / Default(Language, "und"),
            "pre_defined" / Default(Int16ub, 0),
        ),
    )
)

register(
    BoxType(
        "hdlr",
        "HandlerBox",
        full_box(
            "pre_defined" / Default(Int32ub, 0),
            "handler_type" / FourCC,
            "reserved" / Default(Bytes(12), bytes(12)),
            # Kept exactly: a trailing NUL, when the writer put one, is part of the str.
            "name" / Default(Utf8Rest, ""),
        ),
    )
)

register(
    BoxType(
        "vmhd",
        "VideoMediaHeaderBox",
        full_box(
            "graphicsmode" / Default(Int16ub, 0),
            "opcolor" / Default(Array(3, Int16ub), [0, 0, 0]),
        ),
    )
)

register(
    BoxType(
        "smhd",
        "SoundMediaHeaderBox",
        full_box(
            "balance" / Default(SignedFixed8_8, 0.0),
            "reserved" / Default(Bytes(2), bytes(2)),
        ),
    )
)

register(BoxType("nmhd", "NullMediaHeaderBox", full_box()))
register(BoxType("url ", "DataEntryUrlBox", full_box("location" / Default(Utf8Rest, ""))))
