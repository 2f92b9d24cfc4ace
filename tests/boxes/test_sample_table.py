"""Sample table boxes (sample_table.py): stbl, stsd and the numpy tables stts, ctts, stss, stsz, stz2, stsc, stco, co64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError
from bzna_boxes.boxes.sample_table import STSC, STTS
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("sample_table"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


STSZ_TABLE = """
    00000020 7374737a  # size 32, 'stsz'
    00 000000          # version 0, flags 0
    00000000           # sample_size 0: one size per sample follows
    00000003           # sample_count 3
    00000010 00000020 ffffffff  # entry_sizes 16, 32, 2**32 - 1
"""

STSZ_CONSTANT = """
    00000014 7374737a  # size 20, 'stsz'
    00 000000          # version 0, flags 0
    00000002           # sample_size 2: every sample has 2 bytes, no table
    00001f40           # sample_count 8000
"""


def test_stsz_table_form():
    box = Box.parse(hexbytes(STSZ_TABLE))
    assert box.sample_count == 3 and box.entry_sizes.dtype == np.dtype(">u4")
    assert box.entry_sizes.tolist() == [16, 32, 2**32 - 1]
    assert Box.build({"type": "stsz", "entry_sizes": [16, 32, 2**32 - 1]}) == hexbytes(STSZ_TABLE)


def test_stsz_constant_form():
    box = Box.parse(hexbytes(STSZ_CONSTANT))
    assert (box.sample_size, box.sample_count, box.entry_sizes) == (2, 8000, None)
    assert Box.build({"type": "stsz", "sample_size": 2, "sample_count": 8000}) == hexbytes(STSZ_CONSTANT)


def test_tables_parse_without_a_copy():
    data = bytearray(hexbytes(STSZ_TABLE))
    box = Box.parse(data)
    data[-1] = 0xFE
    assert box.entry_sizes[-1] == 2**32 - 2


def test_a_million_entries_build_and_parse():
    sizes = np.arange(1_000_000, dtype=">u4")
    box = round_trip({"type": "stsz", "entry_sizes": sizes})
    assert box.sample_count == 1_000_000


STZ2_4BIT = """
    00000016 73747a32  # size 22, 'stz2'
    00 000000          # version 0, flags 0
    000000 04          # reserved, field_size 4
    00000003           # sample_count 3
    12 30              # entry sizes 1, 2, 3 and a zero padding nibble
"""


def test_stz2_4_bit_entries():
    box = Box.parse(hexbytes(STZ2_4BIT))
    assert box.entry_sizes.tolist() == [1, 2, 3]
    assert Box.build({"type": "stz2", "field_size": 4, "entry_sizes": [1, 2, 3]}) == hexbytes(STZ2_4BIT)


@pytest.mark.parametrize("body, reason", [
    ("00000005 00000001 ab", "field_size must be 4, 8 or 16, not 5"),
    ("00000004 00000001 1f", "padding nibble"),
    ("00000010 00000009 0001", "9 entries of 16 bits need 18 bytes, 2 left"),
])
def test_stz2_errors(body, reason):
    data = hexbytes("73747a32 00000000" + body)
    data = (len(data) + 4).to_bytes(4, "big") + data
    with pytest.raises(BoxError, match=reason):
        Box.parse(data)


def test_stts_stsc_rows():
    stts = round_trip({"type": "stts", "entries": [(5, 20), (1, 7)]})
    assert stts.entries.dtype == STTS and stts.entries["sample_delta"].tolist() == [20, 7]
    stsc = round_trip({"type": "stsc", "entries": np.array([(1, 1, 1)], STSC)})
    assert stsc.entry_count == 1 and stsc.entries[0].tolist() == (1, 1, 1)


def test_ctts_version_1_offsets_are_signed():
    box = round_trip({"type": "ctts", "version": 1, "entries": [(1, -2048), (2, 1024)]})
    assert box.entries["sample_offset"].tolist() == [-2048, 1024]


def test_co64_holds_offsets_past_4_gib():
    box = round_trip({"type": "co64", "chunk_offsets": [2**40, 2**64 - 1]})
    assert box.chunk_offsets.tolist() == [2**40, 2**64 - 1]


@pytest.mark.parametrize("fourcc, count_at", [
    ("stts", 4), ("ctts", 4), ("stss", 4), ("stsc", 4), ("stco", 4), ("co64", 4), ("stsz", 8),
])
def test_table_count_past_the_box_names_the_box_and_offset(fourcc, count_at):
    body = bytearray(32)
    body[count_at : count_at + 4] = b"\xff\xff\xff\xff"
    data = (40).to_bytes(4, "big") + fourcc.encode() + bytes(body)
    with pytest.raises(BoxError, match="4294967295 entries") as caught:
        Box.parse(data)
    assert caught.value.path == fourcc and caught.value.offset == 8 + count_at + 4


def test_stsd_counts_its_entries_and_checks_the_count():
    stsd = round_trip({"type": "stsd", "children": [{"type": "mett", "mime_format": "text/plain", "children": []}]})
    assert stsd.entry_count == 1
    data = hexbytes("00000010 73747364 00000000 00000001")
    with pytest.raises(BoxError, match="entry_count is 1 but the box holds 0 boxes"):
        Box.parse(data)


def test_unknown_box_inside_stbl_is_kept():
    stbl = round_trip({"type": "stbl", "children": [{"type": "sdtp", "data": b"\x00\x20\x10"}, {"type": "stco", "chunk_offsets": [44]}]})
    assert bytes(stbl.children[0].data) == b"\x00\x20\x10"
