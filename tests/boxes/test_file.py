"""File-level boxes (file.py): ftyp, styp, mdat, free, skip, wide."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("file"))
@settings(max_examples=examples(40))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


FTYP = """
    00000020 66747970  # size 32, 'ftyp'
    69736f6d           # major_brand 'isom'
    00000200           # minor_version 512
    69736f6d 69736f32 6d703431  # compatible_brands isom, iso2, mp41
    00ff4142           # a brand of any four bytes: '\\x00\\xffAB'
"""


def test_ftyp_fields():
    box = Box.parse(hexbytes(FTYP))
    assert (box.major_brand, box.minor_version) == ("isom", 512)
    assert box.compatible_brands == ["isom", "iso2", "mp41", "\x00\xffAB"]
    assert Box.build({"type": "ftyp", "major_brand": "isom", "minor_version": 512, "compatible_brands": ["isom", "iso2", "mp41", "\x00\xffAB"]}) == hexbytes(FTYP)


def test_ftyp_without_compatible_brands():
    assert round_trip({"type": "ftyp", "major_brand": "qt  ", "minor_version": 0, "compatible_brands": []}).compatible_brands == []


@pytest.mark.parametrize("fourcc", ["mdat", "free", "skip", "wide"])
def test_raw_file_boxes_keep_their_payload(fourcc):
    data = hexbytes("0000000b") + fourcc.encode() + b"abc"
    box = Box.parse(data)
    assert bytes(box.data) == b"abc" and isinstance(box.data, memoryview)
    assert Box.build(box) == data


def test_empty_mdat():
    assert Box.build({"type": "mdat"}) == hexbytes("00000008 6d646174")
