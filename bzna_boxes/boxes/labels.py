"""Label boxes: bzcl, the class names of a dataset's targets (a ``.bzna`` extension, not ISO).

The byte layout (``docs/format.md``)::

    bzcl FullBox (version 0, flags 0)
      entry_count      uint32   classes
      entry_count times:
        class_name     UTF-8 bytes then one NUL; class_name k names target k

It lives in ``moov/udta`` beside ``bzsc``, where readers skip the boxes they do not know.
Names parse to ``str`` (bytes that are not UTF-8 as surrogate escapes), so that parse then
build gives the body back byte for byte.
"""

from __future__ import annotations

from construct import Array, Int32ub, Rebuild, len_, this

from .core import BoxType, register
from .fields import NulString, full_box

register(
    BoxType(
        "bzcl",
        "ClassNamesBox",
        full_box(
            "entry_count" / Rebuild(Int32ub, len_(this.class_names)),
            "class_names" / Array(this.entry_count, NulString),
        ),
    )
)
