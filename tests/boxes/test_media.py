"""Media boxes (media.py): mdia, minf, dinf, dref, mdhd, hdlr, vmhd, smhd, nmhd, url."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("media"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


MDHD = """
    00000020 6d646864  # size 32, 'mdhd'
    00 000000          # version 0, flags 0
    00000000 00000000  # creation_time, modification_time
    00000014           # timescale 20
    00000028           # duration 40
    55c4               # language 'und' (pad bit 0, 5 bits per letter minus 0x60)
    0000               # pre_defined
"""


def test_mdhd_language_is_packed_in_15_bits():
    box = Box.parse(hexbytes(MDHD))
    assert (box.timescale, box.duration, box.language) == (20, 40, "und")
    assert Box.build({"type": "mdhd", "timescale": 20, "duration": 40}) == hexbytes(MDHD)


def test_mdhd_keeps_the_pad_bit():
    data = hexbytes(MDHD.replace("55c4", "d5c4"))
    box = Box.parse(data)
    assert box.language == "!und" and Box.build(box) == data


def test_mdhd_rejects_a_language_that_is_not_three_letters():
    with pytest.raises(BoxError, match="language"):
        Box.build({"type": "mdhd", "language": "en"})


HDLR = """
    0000002b 68646c72  # size 43, 'hdlr'
    00 000000          # version 0, flags 0
    00000000           # pre_defined
    6d657461           # handler_type 'meta'
    000000000000000000000000  # reserved
    627a6e615f696e70757400    # name 'bzna_input' and its NUL
"""


@pytest.mark.parametrize("name", ["bzna_input\x00", "bzna_input", "", "\x00", "a\x00b", "été\x00\x00"])
def test_hdlr_name_is_kept_exactly(name):
    box = round_trip({"type": "hdlr", "handler_type": "meta", "name": name})
    assert box.name == name


def test_hdlr_fields():
    box = Box.parse(hexbytes(HDLR))
    assert (box.handler_type, box.name) == ("meta", "bzna_input\x00")
    assert Box.build({"type": "hdlr", "handler_type": "meta", "name": "bzna_input\x00"}) == hexbytes(HDLR)


def test_hdlr_name_that_is_not_utf8_round_trips():
    data = hexbytes(HDLR.replace("627a6e615f696e70757400", "ff fe 41 00"))
    data = (len(data)).to_bytes(4, "big") + data[4:]
    box = Box.parse(data)
    assert Box.build(box) == data


def test_dref_counts_its_entries():
    dref = round_trip({"type": "dref", "children": [{"type": "url ", "flags": 1}, {"type": "url ", "location": "http://x/"}]})
    assert dref.entry_count == 2 and dref.children[1].location == "http://x/"


def test_dref_entry_count_mismatch_is_an_error():
    data = hexbytes("00000010 64726566 00000000 00000003")  # 3 entries announced, none present
    with pytest.raises(BoxError, match="entry_count is 3 but the box holds 0 boxes") as caught:
        Box.parse(data)
    assert caught.value.path == "dref" and caught.value.offset == 8


def test_vmhd_smhd_nmhd_defaults():
    assert Box.build({"type": "vmhd", "flags": 1}) == hexbytes("00000014 766d6864 00000001 0000 000000000000")
    assert Box.build({"type": "smhd"}) == hexbytes("00000010 736d6864 00000000 0000 0000")
    assert Box.build({"type": "nmhd"}) == hexbytes("0000000c 6e6d6864 00000000")
