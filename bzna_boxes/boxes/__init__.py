"""Box schemas, one module per family, all registered by fourcc in :mod:`.core`'s registry.

Importing this package registers every family. See ``docs/boxes.md`` for the box model and how
to add a box type.
"""

from __future__ import annotations

from . import containers, file, fragment, integrity, labels, media, meta, movie, sample_entry, sample_table  # noqa: F401  (registration)
from .core import MAX_DEPTH, Box, Boxes, BoxType, RawBox, build_box, lookup, parse_box, parse_boxes, register, registered_types
from .fields import Fields, Packed, Table, full_box
from .path import find, find_all, walk

__all__ = [
    "Box",
    "Boxes",
    "BoxType",
    "RawBox",
    "Fields",
    "Packed",
    "Table",
    "full_box",
    "register",
    "lookup",
    "registered_types",
    "parse_box",
    "parse_boxes",
    "build_box",
    "find",
    "find_all",
    "walk",
    "MAX_DEPTH",
]
