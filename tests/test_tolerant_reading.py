"""Files that FFmpeg reads despite a deviation from ISO/IEC 14496-12: read them too, give them back
byte for byte, and say what was tolerated.

Each file is a fixture patched here: an ``stsd`` whose count leaves out a padding box after the
entry (Adobe F4V), an ``mdat`` whose size runs 8 bytes past the end of the file, bytes after the
last box (too few for a header, or a header that cannot be a box), a ``colr`` box one byte short
of its last field. For each: ``Boxes.build(Boxes.parse(data)) == data``, the index equals the
packets FFmpeg's demuxer reads, the deviation is a warning (tree, ``BznaFile``, ``bzna inspect``,
``bzna verify``), and ``strict=True`` makes it the error it was.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import bzna_boxes
from bzna_boxes import Box, BoxError, Boxes, find
from bzna_boxes.cli import main

from conftest import MEDIA

av = pytest.importorskip("av", reason="FFmpeg's demuxer gives the reference packets")

from test_index import assert_matches_packets, pyav_packets  # noqa: E402

H264 = MEDIA / "h264.mp4"  # ftyp, free, mdat, moov
H265 = MEDIA / "h265.mp4"
H264_FASTSTART = MEDIA / "h264_faststart.mp4"  # ftyp, moov, free, mdat: the mdat is last


def _grow_moov_at_end(data: bytes, edit) -> bytes:
    """Apply ``edit(tree)`` to a file whose moov follows its mdat (no chunk offset moves)."""
    tree = Boxes.parse(data)
    assert [box.type for box in tree][-1] == "moov"
    edit(tree)
    return Boxes.build(tree)


def stsd_with_padding(data: bytes) -> bytes:
    """The video sample entry, then an 8-byte ``skip`` box that entry_count (1) leaves out."""
    out = bytearray(_grow_moov_at_end(data, lambda tree: find(tree, "moov/trak/mdia/minf/stbl/stsd").children.append({"type": "skip", "data": b""})))
    stsd = find(Boxes.parse(bytes(out), strict=False), "moov/trak/mdia/minf/stbl/stsd")
    out[stsd._offset + 12 : stsd._offset + 16] = struct.pack(">I", 1)
    return bytes(out)


def mdat_past_the_end(data: bytes) -> bytes:
    """The last box, an mdat, says 8 bytes more than the file holds."""
    tree = Boxes.parse(data)
    mdat = tree[-1]
    assert mdat.type == "mdat" and not mdat.get("large_size")
    out = bytearray(data)
    out[mdat._offset : mdat._offset + 4] = struct.pack(">I", mdat._size + 8)
    return bytes(out)


NCLX_SHORT = struct.pack(">I4s4sHHH", 8 + 10, b"colr", b"nclx", 1, 1, 1)
"""colr nclx without its last byte (full_range_flag and 7 reserved bits)."""


def colr_cut_short(data: bytes) -> bytes:
    def edit(tree):
        entry = find(tree, "moov/trak/mdia/minf/stbl/stsd").children[0]
        entry.children.append(Box.parse(NCLX_SHORT))

    return _grow_moov_at_end(data, edit)


CASES = {
    # name: (fixture, patch, words of the warning)
    "stsd padding after the entry": (H264, stsd_with_padding, "entry_count is 1 but the box holds 2 boxes: the 1 after the entries (skip) are kept as trailing bytes"),
    "mdat past the end": (H264_FASTSTART, mdat_past_the_end, "runs past the end of its parent (3317 bytes left): kept as the bytes up to the end of the file"),
    "3 bytes after the last box": (H264, lambda d: d + b"\x01\x02\x03", "3 bytes after the last box are too few for a box header"),
    "a bogus header at the end": (H264, lambda d: d + struct.pack(">I4s", 1000, b"\xde\xad\xbe\xef") + b"junk", "a header of size 1000, past the end of the file (12 bytes left)"),
    "a header smaller than a header": (H265, lambda d: d + struct.pack(">I4s", 5, b"\x00\x01\x02\x03"), "a header of size 5, smaller than a header"),
    "colr one byte short": (H265, colr_cut_short, "field full_range_flag: stream read less than specified amount, expected 1, found 0"),
}


@pytest.fixture(params=sorted(CASES))
def patched(request, tmp_path) -> tuple[str, Path, str]:
    fixture, patch, words = CASES[request.param]
    path = tmp_path / f"patched{fixture.suffix}"
    path.write_bytes(patch(fixture.read_bytes()))
    return request.param, path, words


def test_the_tree_round_trips_and_lists_the_warning(patched):
    _, path, words = patched
    data = path.read_bytes()
    tree = Boxes.parse(data)
    assert Boxes.build(tree) == data
    assert len(tree.warnings) == 1 and words in str(tree.warnings[0]), tree.warnings
    with pytest.raises(BoxError):
        Boxes.parse(data, strict=True)


def test_the_index_is_ffmpegs_packets(patched):
    name, path, words = patched
    packets = pyav_packets(path)  # FFmpeg reads every one of these files
    with bzna_boxes.open(path) as file:
        assert sorted(t.track_id for t in file.tracks) == sorted(packets)
        for track in file.tracks:
            assert_matches_packets(track, packets[track.track_id])
            assert bytes(track[0]) == path.read_bytes()[int(track.offsets[0]) : int(track.offsets[0]) + int(track.sizes[0])]
        assert [words in str(w) for w in file.warnings] == [True], file.warnings


def test_inspect_shows_the_warning(patched, capsys):
    _, path, words = patched
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("warning: ")] and words in out
    assert main(["inspect", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    nodes = json.loads(captured.out)
    assert isinstance(nodes, list)
    assert words in captured.err


def test_verify_shows_the_warning(patched, capsys):
    _, path, words = patched
    main(["verify", "--no-inner", str(path)])  # not a .bzna dataset: layout problems, but read
    out = capsys.readouterr().out
    assert "[structure]" not in out and "[bounds]" not in out, out
    assert "warning: " in out and words in out


def test_a_warning_is_attached_to_its_box_in_json(tmp_path, capsys):
    path = tmp_path / "colr.mp4"
    path.write_bytes(colr_cut_short(H265.read_bytes()))
    assert main(["inspect", "--json", "--type", "colr", str(path)]) == 0
    (colr,) = json.loads(capsys.readouterr().out)
    assert colr["fields"] == {"data": {"length": 10}}
    assert "full_range_flag" in colr["warnings"][0]["reason"]


def test_a_box_cut_short_names_its_missing_field():
    with pytest.raises(BoxError, match=r"colr at offset 18: field full_range_flag: stream read less than specified amount, expected 1, found 0"):
        Box.parse(NCLX_SHORT, strict=True)
    two_short = struct.pack(">I4s4sHH", 8 + 8, b"colr", b"nclx", 1, 1)
    with pytest.raises(BoxError, match="field matrix_coefficients"):
        Box.parse(two_short, strict=True)
    kept = Box.parse(two_short)
    assert bytes(kept.data) == two_short[8:] and Box.build(kept) == two_short
    assert "matrix_coefficients" in str(kept._warnings[0])


def test_a_cut_short_sample_table_is_still_an_error(tmp_path):
    """Boxes that locate samples have no sound reading when cut short: the error stays."""
    stco = struct.pack(">I4sII", 8 + 7, b"stco", 0, 1)[:-1]  # entry_count's last byte missing
    with pytest.raises(BoxError, match="field entry_count"):
        Box.parse(struct.pack(">I4s", 15, b"stco") + stco[8:])


def test_garbage_alone_is_not_a_file():
    """Nothing before the bogus header: no reading makes sense."""
    with pytest.raises(BoxError):
        Boxes.parse(struct.pack(">I4s", 1000, b"\xde\xad\xbe\xef") + b"junk")
    with pytest.raises(BoxError):
        Boxes.parse(b"\x01\x02\x03")


def test_a_known_box_cut_short_by_the_end_of_the_file_is_an_error(tmp_path):
    data = H265.read_bytes()[:3000]  # moov cut: no reading of its sample tables makes sense
    with pytest.raises(BoxError, match="'moov' box size 3326 runs past the end"):
        Boxes.parse(data)
    (tmp_path / "cut.mp4").write_bytes(data)
    with pytest.raises(BoxError, match="'moov' box size 3326 runs past the end"):
        bzna_boxes.open(tmp_path / "cut.mp4")


def test_an_mdat_cut_short_keeps_its_declared_size(tmp_path):
    data = mdat_past_the_end(H264_FASTSTART.read_bytes())
    mdat = Boxes.parse(data)[-1]
    assert mdat.declared_size == mdat._size + 8 and len(mdat.data) == mdat._size - 8
    with _opened(tmp_path, data) as file:
        assert file.boxes[-1].end == len(data)
        assert file.mdat_spans()[-1].tolist() == [file.boxes[-1].offset + 8, len(data)]


def _opened(tmp_path: Path, data: bytes):
    path = tmp_path / "opened.mp4"
    path.write_bytes(data)
    return bzna_boxes.open(path)


def test_the_fixtures_read_without_warnings(media_file):
    """A warning is a deviation: the well-formed fixtures have none."""
    tree = Boxes.parse(media_file.read_bytes())
    assert tree.warnings == [] and not hasattr(tree, "trailing")
    if media_file.suffix != ".heic":
        with bzna_boxes.open(media_file) as file:
            assert file.warnings == []
