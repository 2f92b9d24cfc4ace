"""The box engine: headers, registry, raw boxes, whole trees, errors with path and offset."""

from __future__ import annotations

import io
import mmap
import pickle
import struct

import numpy as np
import pytest
from construct import Int32ub
from hypothesis import given, settings

from bzna_boxes import Box, Boxes, BoxError, find, find_all, walk
from bzna_boxes.boxes import MAX_DEPTH, BoxType, lookup, registered_types
from bzna_boxes.boxes import core
from bzna_boxes.boxes.fields import full_box
from strategies import BOX_STRATEGIES, FAMILIES, assert_same_values, box_trees, examples, hexbytes, round_trip


def _box(fourcc: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(body), fourcc) + body


# --- registry -----------------------------------------------------------------------------------


def test_every_registered_type_has_a_strategy():
    missing = sorted(set(registered_types()) - set(BOX_STRATEGIES))
    assert not missing, f"box types without a hypothesis strategy in tests/strategies.py: {missing}"
    stale = sorted(set(BOX_STRATEGIES) - set(registered_types()))
    assert not stale, f"strategies for types no longer registered: {stale}"


def test_every_registered_type_is_tested_by_its_family():
    covered = [f for family in FAMILIES.values() for f in family]
    assert len(covered) == len(set(covered)), "a type is listed in two families"
    assert set(covered) == set(registered_types()), f"add {sorted(set(registered_types()) - set(covered))} to FAMILIES"


def test_unknown_type_falls_back_to_a_raw_box():
    schema = lookup("zzzz")
    assert schema.raw and lookup("moov").children and not lookup("moov").raw


def test_a_registered_type_is_parsed_by_its_schema(monkeypatch):
    schema = BoxType("tst1", "TestBox", full_box("count" / Int32ub))
    monkeypatch.setitem(core._REGISTRY, "tst1", schema)
    box = round_trip({"type": "tst1", "version": 1, "flags": 2, "count": 7})
    assert box.count == 7 and Box.build(box) == hexbytes("00000010 74737431 01000002 00000007")


# --- headers ------------------------------------------------------------------------------------

HEADERS = {
    "32-bit size": (
        """00000010 66726565  # size 16, 'free'
           0102030405060708   # payload""",
        {"type": "free", "data": bytes(range(1, 9))},
    ),
    "64-bit size that fits 32 bits": (
        """00000001 66726565   # size 1: a 64-bit size follows, 'free'
           0000000000000014   # largesize 20
           01020304           # payload""",
        {"type": "free", "large_size": True, "data": b"\x01\x02\x03\x04"},
    ),
    "size 0: to the end": (
        """00000000 6d646174  # size 0, 'mdat'
           aabbcc             # payload up to the end of the input""",
        {"type": "mdat", "size_to_end": True, "data": b"\xaa\xbb\xcc"},
    ),
    "uuid": (
        """0000001a 75756964                 # size 26, 'uuid'
           00112233445566778899aabbccddeeff  # extended_type
           beef                              # payload""",
        {"type": "uuid", "extended_type": bytes.fromhex("00112233445566778899aabbccddeeff"), "data": b"\xbe\xef"},
    ),
    "uuid with a 64-bit size": (
        """00000001 75756964                 # size 1, 'uuid'
           0000000000000021                  # largesize 33
           ffeeddccbbaa99887766554433221100  # extended_type
           2a                                # payload""",
        {"type": "uuid", "large_size": True, "extended_type": bytes.fromhex("ffeeddccbbaa99887766554433221100"), "data": b"*"},
    ),
}


@pytest.mark.parametrize("name", HEADERS)
def test_header_encodings_round_trip(name):
    text, expected = HEADERS[name]
    data = hexbytes(text)
    box = Box.parse(data)
    assert_same_values(expected, box)
    assert set(k for k in box if not k.startswith("_")) == set(expected)
    assert box._offset == 0 and box._size == len(data)
    assert Box.build(expected) == data


def test_size_zero_inside_a_container_runs_to_the_end_of_the_parent():
    data = hexbytes(
        """0000001c 75647461  # 'udta', 28 bytes
           0000000c 61626364 01020304  # 'abcd', 12 bytes
           00000000 78797a77           # 'xyzw' with size 0: the 0 bytes left of udta"""
    ) + _box(b"free")
    tree = Boxes.parse(data)
    last = find(tree, "udta/xyzw")
    assert last.size_to_end and len(last.data) == 0 and tree[1].type == "free"
    assert Boxes.build(tree) == data


def test_header_fields_are_rewritten_from_the_content_not_copied():
    box = Box.parse(_box(b"free", b"abc"))
    box.data = b"abcdef"
    assert Box.build(box) == _box(b"free", b"abcdef")


def test_raw_payloads_are_views_of_the_input_not_copies():
    data = bytearray(_box(b"ftyp", b"isom\x00\x00\x00\x00") + _box(b"mdat", b"payload") + _box(b"abcd", b"xyz"))
    mdat, unknown = Boxes.parse(data)[1:]
    assert isinstance(mdat.data, memoryview) and mdat.data.obj is data and bytes(mdat.data) == b"payload"
    assert unknown.data.obj is data
    data[24] = ord("P")  # the view sees writes to the buffer: nothing was copied
    assert bytes(mdat.data) == b"Payload"


def test_offsets_and_sizes_take_no_part_in_equality():
    free = _box(b"free", b"12")
    first, second = Boxes.parse(free + free)
    assert (first._offset, second._offset) == (0, 10)
    assert first == second


def test_a_container_keeps_a_tail_shorter_than_a_header():
    data = _box(b"moov", _box(b"free") + b"\x01\x02\x03")
    moov = round_trip({"type": "moov", "children": [{"type": "free", "data": b""}], "trailing": b"\x01\x02\x03"})
    assert Box.build(moov) == data


def test_a_typed_box_keeps_the_bytes_its_schema_does_not_read():
    data = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2\xff\xfe")  # 2 bytes after the last whole brand
    box = Box.parse(data)
    assert box.compatible_brands == ["isom", "iso2"] and box.trailing == b"\xff\xfe"
    assert Box.build(box) == data


@settings(max_examples=examples(150))
@given(tree=box_trees())
def test_random_trees_round_trip(tree):
    round_trip(tree, Boxes)


# --- entry points -------------------------------------------------------------------------------


def test_box_parses_one_box_and_boxes_parse_all():
    data = _box(b"free", b"a") + _box(b"skip", b"bc")
    assert Box.parse(data).type == "free"
    assert [b.type for b in Boxes.parse(data)] == ["free", "skip"]


def test_parse_stream_from_a_file_object_leaves_it_after_the_box(tmp_path):
    data = _box(b"free", b"a") + _box(b"skip", b"bc")
    path = tmp_path / "two.mp4"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert Box.parse_stream(f).type == "free"
        assert f.tell() == 9
        assert Box.parse_stream(f).type == "skip"
    stream = io.BytesIO(data)
    assert [b.type for b in Boxes.parse_stream(stream)] == ["free", "skip"]


def test_parse_of_an_mmap_gives_views_of_the_map(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(_box(b"mdat", bytes(100)))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        (mdat,) = Boxes.parse(mm)
        assert mdat.data.obj is mm and len(mdat.data) == 100
        mdat.data.release()


def test_find_and_walk_use_the_paths_of_errors():
    tree = Boxes.parse(_box(b"moov", _box(b"trak") + _box(b"trak", _box(b"abcd"))))
    assert [p for p, _ in walk(tree)] == ["moov", "moov/trak", "moov/trak[1]", "moov/trak[1]/abcd"]
    assert find(tree, "moov/trak[1]/abcd").type == "abcd"
    assert len(find_all(tree, "trak")) == 2
    assert find(tree, "moov/trak[2]", default=None) is None
    with pytest.raises(BoxError, match="no box moov/trak\\[2\\]"):
        find(tree, "moov/trak[2]")


# --- errors -------------------------------------------------------------------------------------


def _stsz_with_count(count: int) -> bytes:
    return _box(b"stsz", struct.pack(">IIII", 0, 0, count, 5))


def _deep(levels: int) -> bytes:
    data = _box(b"abcd")
    for _ in range(levels):
        data = _box(b"udta", data)
    return data


def _two_tracks(second_stbl_child: bytes) -> bytes:
    stbl = _box(b"stbl", _box(b"stco", bytes(8)) + second_stbl_child)
    second = _box(b"trak", _box(b"mdia", _box(b"minf", stbl)))
    return _box(b"ftyp", b"isom\x00\x00\x00\x00") + _box(b"moov", _box(b"trak") + second)


_STBL_AT = 16 + 8 + 8 + 8 + 8 + 8  # ftyp, moov, trak, trak[1], mdia, minf headers
_STSZ_AT = _STBL_AT + 8 + 16

ERRORS = {
    "size smaller than the header": (
        _box(b"free") + struct.pack(">I4s", 4, b"skip"),
        "skip", 8, "size 4 is smaller than its 8-byte header",
    ),
    "size larger than the parent": (
        _box(b"moov", struct.pack(">I4s", 100, b"trak")),
        "moov/trak", 8, "runs past the end of its parent (8 bytes left)",
    ),
    "truncated 64-bit size": (
        _box(b"free") + struct.pack(">I4s", 1, b"mdat") + b"\x00\x00\x00",
        "mdat", 8, "64-bit size needs 16 header bytes, 11 left",
    ),
    "64-bit size smaller than its header": (
        struct.pack(">I4sQ", 1, b"mdat", 12),
        "mdat", 0, "size 12 is smaller than its 16-byte header",
    ),
    "64-bit size larger than the file": (
        struct.pack(">I4sQ", 1, b"mdat", 2**64 - 1),
        "mdat", 0, f"size {2**64 - 1} runs past the end",
    ),
    "truncated uuid header": (
        struct.pack(">I4s", 20, b"uuid") + bytes(12),
        "uuid", 0, "'uuid' box needs 24 header bytes, 20 left",
    ),
    "tail too short for a header": (
        _box(b"free") + b"\x00\x00\x00",
        None, 8, "3 bytes after the last box are too few",
    ),
    "nesting deeper than MAX_DEPTH": (
        _deep(MAX_DEPTH + 1),
        "udta/" * (MAX_DEPTH + 1) + "abcd", 8 * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels",
    ),
    "table larger than its box": (
        _two_tracks(_stsz_with_count(9)),
        "moov/trak[1]/mdia/minf/stbl/stsz", _STSZ_AT + 20, "9 entries of 4 bytes need 36 bytes, 4 left",
    ),
    "stsd entry_count mismatch": (
        _two_tracks(_box(b"stsd", struct.pack(">II", 0, 2) + _box(b"abcd"))),
        "moov/trak[1]/mdia/minf/stbl/stsd", _STSZ_AT + 8, "entry_count is 2 but the box holds 1 boxes",
    ),
    "bad hvcC": (
        # one NAL array holding one NAL unit of 9 bytes, of which only 3 are there (at offset 44)
        _box(b"ipco", _box(b"hvcC", bytes([1, 1]) + bytes(20) + b"\x01" + b"\x20\x00\x01\x00\x09abc")),
        "ipco/hvcC", 8 + 8 + 28, "field arrays.nalus: stream read less than specified amount, expected 9, found 3",
    ),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_path_and_offset(name):
    """Strict parsing: each deviation is an error (see tests/test_tolerant_reading.py for the default)."""
    data, path, offset, reason = ERRORS[name]
    with pytest.raises(BoxError) as caught:
        Boxes.parse(data, strict=True)
    err = caught.value
    assert (err.path, err.offset) == (path, offset), str(err)
    assert reason in err.reason
    assert str(err).startswith(f"{path or 'input'} at offset {offset}: ")


def test_a_much_deeper_nesting_is_an_error_not_a_recursion_error():
    with pytest.raises(BoxError, match="nested deeper"):
        Boxes.parse(_deep(5000))


def _nested_values(levels: int) -> dict:
    box = {"type": "abcd", "data": b""}
    for _ in range(levels):
        box = {"type": "udta", "children": [box]}
    return box


def test_build_accepts_the_nesting_that_parse_accepts_and_no_deeper():
    round_trip(_nested_values(MAX_DEPTH))
    for levels in (MAX_DEPTH + 1, 2_000):  # an error, not a RecursionError
        with pytest.raises(BoxError, match=f"nested deeper than {MAX_DEPTH} levels"):
            Box.build(_nested_values(levels))


def test_box_error_is_a_value_error_that_pickles():
    err = BoxError("bad", offset=12, path="moov/trak")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.offset, copy.path, str(copy)) == ("bad", 12, "moov/trak", "moov/trak at offset 12: bad")


BUILD_ERRORS = {
    "no type": ({"data": b""}, None, "needs a 'type'"),
    "type of 5 bytes": ({"type": "abcde"}, None, "is not 4 bytes"),
    "uuid without extended_type": ({"type": "uuid", "data": b""}, "uuid", "16-byte extended_type"),
    "missing required field": (
        {"type": "moov", "children": [{"type": "trak", "children": [{"type": "tkhd"}]}]},
        "moov/trak/tkhd",
        "track_id",
    ),
    "value too large for its field": ({"type": "trak", "children": [{"type": "tkhd", "track_id": 2**32}]}, "trak/tkhd", "track_id"),
    "table value too large": ({"type": "stco", "chunk_offsets": np.array([2**32], np.uint64)}, "stco", "do not fit"),
}


@pytest.mark.parametrize("name", BUILD_ERRORS)
def test_build_errors_name_the_path(name):
    values, path, reason = BUILD_ERRORS[name]
    with pytest.raises(BoxError) as caught:
        Box.build(values)
    assert caught.value.path == path and reason in caught.value.reason, str(caught.value)


# --- a bug in a schema is not malformed input ---------------------------------------------------


class _Raises(Int32ub.__class__):
    """An Int32ub that raises ``error`` while parsing: a schema with a bug (or input it rejects)."""

    def __init__(self, error: BaseException):
        super().__init__(">", "L")
        self.error = error

    def _parse(self, stream, context, path):
        super()._parse(stream, context, path)
        raise self.error


@pytest.mark.parametrize(
    "error, as_box_error",
    [
        (TypeError("unsupported operand"), False),
        (AttributeError("'NoneType' object has no attribute 'x'"), False),
        (KeyError("field_size"), False),
        (IndexError("list index out of range"), False),
        (ValueError("a value the input cannot have"), True),
        (OverflowError("too large"), True),
        (struct.error("unpack requires 4 bytes"), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_only_input_errors_become_box_errors(monkeypatch, error, as_box_error):
    monkeypatch.setitem(core._REGISTRY, "xbug", BoxType("xbug", "BuggyBox", full_box("value" / _Raises(error))))
    data = _box(b"xbug", bytes(8))
    if as_box_error:
        with pytest.raises(BoxError) as info:
            Box.parse(data)
        assert info.value.path == "xbug" and info.value.offset == 16
    else:
        with pytest.raises(type(error)) as info:
            Box.parse(data)
        assert not isinstance(info.value, BoxError)
