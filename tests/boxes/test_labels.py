"""Label boxes (labels.py): bzcl, the class names of a .bzna file's targets."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("labels"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


BZCL = """
    0000001f 627a636c  # size 31, 'bzcl'
    00000000           # version 0, flags 0
    00000004           # entry_count: 4 classes
    63617400           # 'cat' NUL: target 0's name
    00                 # '' NUL: target 1's
    636166c3a900       # 'café' (UTF-8) NUL: target 2's
    6e6fe900           # b'no\\xe9' (not UTF-8: a file system name's bytes) NUL: target 3's
"""


def test_bzcl_fields():
    values = {"type": "bzcl", "class_names": ["cat", "", "café", "no\udce9"]}
    assert Box.build(values) == hexbytes(BZCL)
    box = round_trip(values)
    assert (box.entry_count, list(box.class_names)) == (4, ["cat", "", "café", "no\udce9"])


def test_bzcl_parses_then_builds_byte_for_byte():
    data = hexbytes(BZCL)
    box = Box.parse(data)
    assert list(box.class_names) == ["cat", "", "café", "no\udce9"]
    assert Box.build(box) == data


def _sized(body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + b"bzcl" + body


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b[:-1], "string has no terminating NUL"),
        (lambda b: b[:4] + (2**32 - 1).to_bytes(4, "big") + b[8:], "string has no terminating NUL"),
    ],
    ids=["name without its NUL", "count past the box"],
)
def test_bzcl_malformed_is_a_box_error(edit, message):
    with pytest.raises(BoxError, match=re.escape(message)) as info:
        Box.parse(_sized(edit(hexbytes(BZCL)[8:])))
    assert info.value.path == "bzcl"


def test_bzcl_refuses_a_name_with_a_nul():
    with pytest.raises(BoxError, match="contains a NUL"):
        Box.build({"type": "bzcl", "class_names": ["a\x00b"]})
