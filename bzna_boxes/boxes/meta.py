"""Metadata boxes: meta (ISO FullBox or QuickTime plain container), ispe (§8.11, 23008-12)."""

from __future__ import annotations

from construct import Int32ub

from .core import BoxType, register
from .fields import full_box


class MetaBox(BoxType):
    """``meta``: a FullBox holding boxes, except in QuickTime files where it has no version/flags.

    The QuickTime form is recognised by its first child header right at the body start; it
    parses with ``quicktime=True`` and builds back the same way.
    """

    def __init__(self):
        super().__init__("meta", "MetaBox", full_box(), children=True)

    def parse_body(self, view, value, offset, path, depth):
        if len(view) >= 8 and bytes(view[4:8]) == b"hdlr":
            value.quicktime = True
            self.parse_rest(view, 0, value, offset, path, depth)
        else:
            super().parse_body(view, value, offset, path, depth)

    def build_body(self, value, out, path):
        if not value.get("quicktime"):
            self.build_fields(value, out, path)
        self.build_rest(value, out, path)


register(MetaBox())
register(BoxType("ispe", "ImageSpatialExtentsProperty", full_box("image_width" / Int32ub, "image_height" / Int32ub)))
