"""Movie and track boxes (movie.py): moov, trak, edts, tref, mvhd, tkhd, elst."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError
from bzna_boxes.boxes.movie import ELST_V0, UNITY_MATRIX
from strategies import box_values, examples, family_cases, hexbytes, round_trip


@pytest.mark.parametrize("fourcc, version", family_cases("movie"))
@settings(max_examples=examples(40))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


MVHD_V1 = """
    00000078 6d766864  # size 120, 'mvhd'
    01 000000          # version 1, flags 0
    0000000100000000   # creation_time 2**32 (64 bits in version 1)
    0000000100000001   # modification_time 2**32 + 1
    00000014           # timescale 20
    00000002aaaaaaa0   # duration 11453246112
    00018000           # rate 1.5
    0080               # volume 0.5
    00000000000000000000  # reserved
    00010000 00000000 00000000 00000000 00010000 00000000 00000000 00000000 40000000  # matrix: unity
    000000000000000000000000000000000000000000000000  # pre_defined
    00000005           # next_track_id 5
"""


def test_mvhd_version_1_has_64_bit_times():
    box = Box.parse(hexbytes(MVHD_V1))
    assert (box.version, box.creation_time, box.modification_time) == (1, 2**32, 2**32 + 1)
    assert (box.timescale, box.duration, box.rate, box.volume, box.next_track_id) == (20, 11453246112, 1.5, 0.5, 5)
    assert box.matrix == UNITY_MATRIX
    values = {"type": "mvhd", "version": 1, "creation_time": 2**32, "modification_time": 2**32 + 1, "timescale": 20,
              "duration": 11453246112, "rate": 1.5, "volume": 0.5, "next_track_id": 5}
    assert Box.build(values) == hexbytes(MVHD_V1)


def test_mvhd_version_0_rejects_a_64_bit_duration():
    with pytest.raises(BoxError, match="duration"):
        Box.build({"type": "mvhd", "version": 0, "duration": 2**32, "next_track_id": 2})


TKHD = """
    0000005c 746b6864  # size 92, 'tkhd'
    00 000003          # version 0, flags 3 (enabled, in movie)
    00000000 00000000  # creation_time, modification_time
    00000002           # track_id 2
    00000000           # reserved
    00000014           # duration 20
    0000000000000000   # reserved_2
    0000 0000          # layer, alternate_group
    0000 0000          # volume 0.0, reserved_3
    00010000 00000000 00000000 00000000 00010000 00000000 00000000 00000000 40000000  # matrix
    01c98000           # width 457.5
    01000000           # height 256.0
"""


def test_tkhd_fields():
    values = {"type": "tkhd", "flags": 3, "track_id": 2, "duration": 20, "width": 457.5, "height": 256.0}
    assert Box.build(values) == hexbytes(TKHD)
    round_trip(values)


ELST = """
    0000001c 656c7374  # size 28, 'elst'
    00 000000          # version 0, flags 0
    00000001           # entry_count 1
    000003e8 ffffffff 0001 0000  # segment_duration 1000, media_time -1 (empty edit), rate 1.0
"""


def test_elst_entries_are_a_table():
    box = Box.parse(hexbytes(ELST))
    assert box.entry_count == 1 and box.entries.dtype == ELST_V0
    assert box.entries[0].tolist() == (1000, -1, 1, 0)
    assert Box.build({"type": "elst", "entries": [(1000, -1, 1, 0)]}) == hexbytes(ELST)


def test_elst_count_past_the_box_is_an_error():
    data = hexbytes("00000014 656c7374 00000000 ffffffff 00000000")
    with pytest.raises(BoxError) as caught:
        Box.parse(data)
    assert caught.value.path == "elst" and caught.value.offset == 16


def test_moov_holds_its_children_in_order():
    moov = round_trip({"type": "moov", "children": [{"type": "mvhd", "next_track_id": 3}, {"type": "trak", "children": []}, {"type": "trak", "children": []}]})
    assert [child.type for child in moov.children] == ["mvhd", "trak", "trak"]
    assert np.array_equal(moov.children[0].matrix, UNITY_MATRIX)
