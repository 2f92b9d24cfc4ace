"""Field offsets and struct formats derived from the box schemas (what the fast paths read with):
each checked against the bytes the box engine builds."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bzna_boxes.boxes import Box, lookup
from bzna_boxes.boxes.core import field_position
from bzna_boxes.boxes.fields import entry_struct, field_code, field_offset, field_struct
from bzna_boxes.boxes.sample_entry import VISUAL_SAMPLE_ENTRY


@pytest.mark.parametrize("version", [0, 1])
def test_tkhd_width_and_height_where_the_engine_writes_them(version):
    data = Box.build({"type": "tkhd", "version": version, "track_id": 7, "width": 640.0, "height": 480.5})
    tkhd = Box.parse(data)
    at = field_position(tkhd, "width")
    assert at == 8 + field_offset(lookup("tkhd").fields, "width", version=version) == 8 + (88 if version else 76)
    assert field_struct(lookup("tkhd").fields, ("width", "height"), version=version).unpack_from(data, at) == (640 << 16, (480 << 16) + (1 << 15))
    assert struct.unpack_from(">" + field_code(lookup("tkhd").fields, "track_id"), data, field_position(tkhd, "track_id"))[0] == 7


@pytest.mark.parametrize("fourcc, field, values", [("stco", "chunk_offsets", [123456, 7]), ("co64", "chunk_offsets", [2**40 + 5, 9]), ("stsz", "entry_sizes", [4321, 1])])
def test_the_first_table_entry_where_the_engine_writes_it(fourcc, field, values):
    data = Box.build({"type": fourcc, field: np.array(values)})
    box = Box.parse(data)
    assert entry_struct(lookup(fourcc).fields, field).unpack_from(data, field_position(box, field))[0] == values[0]


def test_a_large_size_header_moves_every_field():
    box = Box.parse(Box.build({"type": "stco", "large_size": True, "chunk_offsets": np.array([5], ">u4")}))
    assert field_position(box, "chunk_offsets") == 16 + 8


def test_clap_and_visual_sample_entry_layouts():
    clap = lookup("clap").fields
    values = (64, 1, 48, 1, -3, 2, 5, 2)
    data = Box.build({"type": "clap", **dict(zip((sc.name for sc in clap.subcons), values))})
    assert field_struct(clap).unpack_from(data, 8) == values
    assert VISUAL_SAMPLE_ENTRY.sizeof() == 78 and field_offset(VISUAL_SAMPLE_ENTRY, "width") == 24


def test_what_cannot_be_derived_is_refused():
    with pytest.raises(KeyError, match="no field 'nope'"):
        field_offset(lookup("stsz").fields, "nope")
    with pytest.raises(TypeError, match="not a fixed-size integer"):
        field_code(lookup("hdlr").fields, "name")
    with pytest.raises(ValueError, match="not consecutive"):
        field_struct(lookup("stsz").fields, ("version", "sample_size"))
    with pytest.raises(TypeError, match="not a table of plain integers"):
        entry_struct(lookup("stsc").fields, "entries")
