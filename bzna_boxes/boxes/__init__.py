"""Box schemas, one module per family, all registered by fourcc in :mod:`.core`'s registry.

Importing this package registers every family. See ``docs/boxes.md`` for the box model and how
to add a box type.
"""

from __future__ import annotations

from ._construct import import_construct

import_construct()  # before any schema imports construct: without construct.debug and pdb

from . import containers, file, fragment, integrity, labels, media, meta, movie, sample_entry, sample_table  # noqa: E402, F401  (registration)
from .core import MAX_DEPTH, Box, Boxes, BoxType, RawBox, build_box, lookup, parse_box, parse_boxes, register, registered_types  # noqa: E402
from .fields import Fields, Packed, Table, full_box  # noqa: E402
from .path import find, find_all, walk  # noqa: E402

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
