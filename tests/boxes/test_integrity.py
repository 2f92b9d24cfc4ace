"""Integrity boxes (integrity.py): bzsc, the sample checksum table of a .bzna file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("integrity"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


BZSC = """
    00000034 627a7363  # size 52, 'bzsc'
    00000000           # version 0, flags 0
    63333263           # algorithm 'c32c'
    00000004           # checksum_size 4
    00000002           # entry_count: 2 tracks
    00000001 00000002  # track_id 1, sample_count 2
    e3069283 00000000  #   CRC-32C of b"123456789", of b""
    00000003 00000001  # track_id 3, sample_count 1
    0000002a           #   42
"""


def test_bzsc_fields():
    values = {
        "type": "bzsc",
        "algorithm": "c32c",
        "checksum_size": 4,
        "entries": [{"track_id": 1, "checksums": [0xE3069283, 0]}, {"track_id": 3, "checksums": [42]}],
    }
    assert Box.build(values) == hexbytes(BZSC)
    box = round_trip(values)
    assert (box.entry_count, box.entries[0].sample_count, box.entries[0].checksums.dtype) == (2, 2, np.dtype(">u4"))


def test_bzsc_of_other_checksum_sizes_round_trips():
    values = {"type": "bzsc", "algorithm": "xh3b", "checksum_size": 16, "entries": [{"track_id": 7, "checksums": np.frombuffer(bytes(range(32)), "V16")}]}
    data = Box.build(values)
    assert len(data) == 12 + 12 + 8 + 32 and Box.build(Box.parse(data)) == data


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d[:16] + bytes(4) + d[20:], "checksum_size 0 is not in [1, 64]"),
        (lambda d: d[:28] + (2**32 - 1).to_bytes(4, "big") + d[32:], "4294967295 entries of 4 bytes need 17179869180 bytes, 20 left"),
    ],
    ids=["zero-size checksums", "count past the box"],
)
def test_bzsc_malformed_is_a_box_error_before_any_allocation(edit, message):
    with pytest.raises(BoxError, match=re.escape(message)) as info:
        Box.parse(edit(hexbytes(BZSC)))
    assert info.value.path == "bzsc"
