"""Boxes whose body is only child boxes, and boxes that hold an entry count then children."""

from __future__ import annotations

from construct import Int32ub, Rebuild, len_, this

from ..errors import BoxError
from .core import BoxType, register, tolerate
from .fields import full_box

__all__ = ["ContainerBox", "CountedContainerBox", "CONTAINERS"]


class ContainerBox(BoxType):
    """A box whose body is a sequence of boxes (``children``)."""

    def __init__(self, fourcc: str, name: str, fields=None):
        super().__init__(fourcc, name, fields, children=True)


class CountedContainerBox(BoxType):
    """A FullBox with ``entry_count`` then that many child boxes (stsd, dref)."""

    def __init__(self, fourcc: str, name: str):
        fields = full_box("entry_count" / Rebuild(Int32ub, len_(this.children)))
        super().__init__(fourcc, name, fields, children=True)

    def parse_body(self, view, value, offset, path, depth):
        super().parse_body(view, value, offset, path, depth)
        count, children = value.entry_count, value.children
        if count == len(children):
            return
        reason = f"entry_count is {count} but the box holds {len(children)} boxes"
        if count > len(children) or count == 0:
            raise BoxError(reason, offset=offset, path=path)
        # Adobe's F4V files: the entry, then a padding box. Keep the boxes past the count as bytes.
        extra = children[count:]
        start = extra[0]._offset - offset
        kinds = " ".join(box.type for box in extra)
        tolerate(reason, f"the {len(extra)} after the entries ({kinds}) are kept as trailing bytes", extra[0]._offset, path)
        value.trailing = bytes(view[start:])
        del children[count:]

    def build_body(self, value, out, path):
        super().build_body({"children": (), **value}, out, path)


CONTAINERS = {
    "moov": "MovieBox",
    "trak": "TrackBox",
    "edts": "EditBox",
    "mdia": "MediaBox",
    "minf": "MediaInformationBox",
    "dinf": "DataInformationBox",
    "stbl": "SampleTableBox",
    "udta": "UserDataBox",
    "mvex": "MovieExtendsBox",
    "moof": "MovieFragmentBox",
    "traf": "TrackFragmentBox",
    "mfra": "MovieFragmentRandomAccessBox",
    "tref": "TrackReferenceBox",
    "sinf": "ProtectionSchemeInfoBox",
    "schi": "SchemeInformationBox",
    "iprp": "ItemPropertiesBox",
    "ipco": "ItemPropertyContainerBox",
    "ilst": "MetadataItemListBox",
}

for _fourcc, _name in CONTAINERS.items():
    register(ContainerBox(_fourcc, _name))

register(CountedContainerBox("stsd", "SampleDescriptionBox"))
register(CountedContainerBox("dref", "DataReferenceBox"))
