"""Malformed input: mutated real files, mutated generated trees and random box bodies either
round-trip byte for byte or raise BoxError (nothing else, quickly, without large allocations).

Each example runs under the hypothesis deadline of the profile (1 s in CI). Run longer with
``BZNA_HYPOTHESIS_PROFILE=long python3 -m pytest tests/boxes/test_fuzz.py``.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError, Boxes
from bzna_boxes.boxes import MAX_DEPTH, registered_types
from strategies import box_offsets, box_trees, examples, mutated

from conftest import MEDIA_FILES


def assert_round_trip_or_box_error(data: bytes) -> None:
    """``Boxes.build(Boxes.parse(data)) == data``, or a BoxError: any other exception fails."""
    try:
        tree = Boxes.parse(data)
    except BoxError as err:
        assert err.offset is None or 0 <= err.offset <= len(data), str(err)
        return
    assert Boxes.build(tree) == data


_OFFSETS = {path.name: box_offsets(path.read_bytes()) for path in MEDIA_FILES}


@pytest.mark.parametrize("path", MEDIA_FILES, ids=lambda p: p.name)
@settings(max_examples=examples(100))
@given(data=st.data())
def test_mutated_real_files(path, data):
    original = path.read_bytes()
    assert_round_trip_or_box_error(data.draw(mutated(original, _OFFSETS[path.name]), label="mutated"))


@settings(max_examples=examples(120))
@given(data=st.data())
def test_mutated_generated_trees(data):
    original = Boxes.build(data.draw(box_trees(max_depth=3), label="tree"))
    assert_round_trip_or_box_error(data.draw(mutated(original), label="mutated"))


_TYPES = sorted(registered_types())


@settings(max_examples=examples(600))
@given(fourcc=st.sampled_from(_TYPES), body=st.binary(max_size=80), large=st.booleans())
def test_random_bodies_of_every_type(fourcc, body, large):
    header = struct.pack(">I4sQ", 1, fourcc.encode("latin-1"), 16 + len(body)) if large else struct.pack(">I4s", 8 + len(body), fourcc.encode("latin-1"))
    assert_round_trip_or_box_error(header + body)


def _box(fourcc: str, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), fourcc.encode("latin-1")) + body


HUGE = 0xFFFFFFFF
HUGE_COUNTS = {
    # A 40-byte box (32-byte body) whose count field says 2**32 - 1.
    "stts": struct.pack(">II", 0, HUGE),
    "ctts": struct.pack(">II", 0, HUGE),
    "stss": struct.pack(">II", 0, HUGE),
    "stsc": struct.pack(">II", 0, HUGE),
    "stco": struct.pack(">II", 0, HUGE),
    "co64": struct.pack(">II", 0, HUGE),
    "stsz": struct.pack(">III", 0, 0, HUGE),
    "stz2": struct.pack(">I3sBI", 0, bytes(3), 16, HUGE),
    "elst": struct.pack(">II", 0x01000000, HUGE),
    "trun": struct.pack(">II", 0x00000F00, HUGE),
    "sidx": struct.pack(">IIIIIHH", 0, 1, 1, 0, 0, 0, 0xFFFF),
    "stsd": struct.pack(">II", 0, HUGE),
    "dref": struct.pack(">II", 0, HUGE),
    "hvcC": bytes([1, 1]) + bytes(20) + b"\xff",
    "avcC": bytes([1, 66, 0, 30, 0xFF, 0xFF]) + b"\x00\x00",
}


@pytest.mark.parametrize("fourcc", HUGE_COUNTS)
def test_huge_count_in_a_small_box_is_an_error_without_allocating(fourcc):
    body = HUGE_COUNTS[fourcc]
    data = _box(fourcc, body + bytes(32 - len(body)))
    assert len(data) == 40
    tracemalloc.start()
    try:
        with pytest.raises(BoxError) as caught:
            Box.parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.path == fourcc and 8 <= caught.value.offset <= 40, str(caught.value)
    assert peak < 1 << 20, f"parsing a 40-byte box allocated {peak} bytes"


def test_huge_count_inside_a_file_names_the_full_path():
    stsz = _box("stsz", struct.pack(">III", 0, 0, HUGE) + bytes(20))
    data = _box("moov", _box("trak", b"") + _box("trak", _box("mdia", _box("minf", _box("stbl", stsz)))))
    with pytest.raises(BoxError) as caught:
        Boxes.parse(data)
    assert caught.value.path == "moov/trak[1]/mdia/minf/stbl/stsz"
    assert caught.value.offset == 8 + 8 + 8 + 8 + 8 + 8 + 8 + 12
    assert "4294967295 entries of 4 bytes need 17179869180 bytes, 20 left" in str(caught.value)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000])
def test_deep_nesting_is_a_box_error(levels):
    data = _box("abcd", b"")
    for _ in range(levels):
        data = _box("moov", data) if len(data) < 0xFFFFFFF0 else data
    with pytest.raises(BoxError, match=f"nested deeper than {MAX_DEPTH} levels"):
        Boxes.parse(data)
