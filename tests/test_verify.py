"""``bzna verify`` and ``bzna extract`` (bzna_boxes.verify), on good files and on corrupted ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bzna_boxes import Boxes, Dataset, find, layout
from bzna_boxes.cli import main
from bzna_boxes.verify import verify

from bzna_factory import Entry, encoded_entries, plain_entries, write_dataset


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    entries, encoded, video_hvcc = encoded_entries()
    entries.insert(2, Entry(None, 7, "lost.JPEG"))
    path = tmp_path_factory.mktemp("verify") / "photos.bzna"
    write_dataset(path, entries, video_hvcc)
    return path, entries


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Parse ``src``, let ``edit(boxes)`` change the tree, build it to ``dst``."""
    boxes = Boxes.parse(src.read_bytes())
    edit(boxes)
    dst.write_bytes(Boxes.build(boxes))
    return dst


def _set(boxes, path: str, field: str, index: int, value: int) -> None:
    box = find(boxes, path)
    table = box[field].copy()
    table[index] = value
    box[field] = table


def test_a_good_dataset_verifies(photos, capsys):
    path, entries = photos
    report = verify(path, num_classes=len(entries))
    assert report.ok, report.format()
    assert any("inner samples: 8 parsed, 1 missing" in line for line in report.summary)
    assert main(["verify", str(path), "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found" in out and "track 1 'bzna_input' meta: 9 samples" in out


def test_progress_bar_when_asked(photos, capsys):
    path, _ = photos
    assert main(["verify", str(path), "--progress"]) == 0
    assert "inner samples: 100%" in capsys.readouterr().err
    assert main(["verify", str(path)]) == 0  # stderr is not a terminal here: no bar
    assert capsys.readouterr().err == ""


def test_sample_offset_past_the_end(photos, tmp_path):
    path, _ = photos
    bad = _rewrite(path, tmp_path / "bad.bzna", lambda b: _set(b, "moov/trak[2]/mdia/minf/stbl/stco", "chunk_offsets", 4, 10**9))
    report = verify(bad)
    assert not report.ok and report.counts["bounds"] == 1
    (problem,) = report.problems
    assert "track 3 'bzna_fname': sample 4 at offset 1000000000" in problem.message and "outside the file" in problem.message
    assert problem.path == "moov/trak[2]" and problem.offset == 10**9


def test_sample_overlapping_the_moov_and_outside_every_mdat(photos, tmp_path):
    path, _ = photos
    size = path.stat().st_size

    def edit(boxes):
        _set(boxes, "moov/trak[1]/mdia/minf/stbl/stco", "chunk_offsets", 3, size - 100)  # inside moov
        _set(boxes, "moov/trak[1]/mdia/minf/stbl/stco", "chunk_offsets", 5, 2)  # inside ftyp

    report = verify(_rewrite(path, tmp_path / "bad.bzna", edit))
    messages = [p.message for p in report.problems]
    assert any("sample 3" in m and "overlaps the metadata box" in m for m in messages)
    assert any("sample 5 at offset 2 (size 8) is not inside an mdat" in m for m in messages)
    assert all(m.startswith("track 2 'bzna_target'") for m in messages) and report.counts == {"bounds": 2}  # one problem per sample


def test_size_table_shorter_than_the_chunk_table(photos, tmp_path, capsys):
    path, _ = photos

    def edit(boxes):
        stsz = find(boxes, "moov/trak/mdia/minf/stbl/stsz")
        stsz.entry_sizes = stsz.entry_sizes[:-1]

    bad = _rewrite(path, tmp_path / "bad.bzna", edit)
    report = verify(bad)
    assert report.counts == {"structure": 1}
    assert "track 1 'bzna_input': the size table is shorter than the chunk table" in report.problems[0].message
    assert "sample 8 has no size" in report.problems[0].message
    assert main(["verify", str(bad)]) == 1
    assert "[structure]" in capsys.readouterr().out


def test_track_lengths_targets_and_inner_samples(photos, tmp_path):
    path, entries = photos
    data = bytearray(path.read_bytes())
    ds = Dataset(path)
    # an inner sample's bytes garbled (its moov header), a target out of range
    inner_moov = find(Boxes.parse(ds[4].data), "moov")._offset
    at = int(ds.file.track(layout.INPUT_TRACK).offsets[4]) + inner_moov
    data[at + 4 : at + 8] = b"xxxx"
    target_at = int(ds.file.track(layout.TARGET_TRACK).offsets[6])
    data[target_at : target_at + 8] = struct.pack("<q", 500)
    ds.close()
    (tmp_path / "bad.bzna").write_bytes(bytes(data))
    report = verify(tmp_path / "bad.bzna", num_classes=len(entries))
    messages = [p.message for p in report.problems]
    assert report.counts == {"inner": 2, "target": 1}
    assert "track 1 'bzna_input': sample 4: the inner sample has no moov" in messages
    assert "track 2 'bzna_target': sample 6 has target 500, outside [0, 9) and not -1" in messages
    assert f"track 1 'bzna_input': sample 6: its inner target {entries[6].target} differs from the outer target 500" in messages


def test_a_malformed_sample_entry(photos, tmp_path):
    path, _ = photos
    data = bytearray(path.read_bytes())
    stsd = find(Boxes.parse(bytes(data)), "moov/trak[1]/mdia/minf/stbl/stsd")
    data[stsd._offset + 12 : stsd._offset + 16] = (5).to_bytes(4, "big")  # entry_count 5, one entry
    (tmp_path / "bad.bzna").write_bytes(bytes(data))
    report = verify(tmp_path / "bad.bzna")
    assert report.counts == {"structure": 1}
    assert report.problems[0].message.startswith("track 2 'bzna_target': entry_count is 5 but the box holds 1 boxes")
    assert report.problems[0].path == "moov/trak[1]/mdia/minf/stbl/stsd"


def test_a_video_sample_outside_its_input_sample(photos, tmp_path):
    path, _ = photos
    ds = Dataset(path)
    elsewhere = int(ds.file.track(layout.VIDEO_TRACK).offsets[0])  # sample 0's thumbnail
    ds.close()
    bad = _rewrite(path, tmp_path / "bad.bzna", lambda b: _set(b, "moov/trak[3]/mdia/minf/stbl/stco", "chunk_offsets", 6, elsewhere))
    report = verify(bad)
    assert report.counts == {"layout": 1}
    assert f"track 4 'VideoHandler': sample 6 at offset {elsewhere}" in report.problems[0].message
    assert "is not inside input sample 6" in report.problems[0].message


def test_track_length_mismatch(photos, tmp_path):
    path, _ = photos

    def edit(boxes):
        for field, table in (("stsz", "entry_sizes"), ("stco", "chunk_offsets")):
            box = find(boxes, f"moov/trak[2]/mdia/minf/stbl/{field}")
            box[table] = box[table][:-2]

    report = verify(_rewrite(path, tmp_path / "short.bzna", edit))
    assert any("track 3 'bzna_fname' has 7 samples, 'bzna_input' has 9" in p.message for p in report.problems)


def test_many_problems_are_listed_then_counted(tmp_path):
    entries = plain_entries(30)
    write_dataset(tmp_path / "plain.bzna", entries)  # inner samples are random bytes
    report = verify(tmp_path / "plain.bzna")
    assert report.counts == {"inner": 30}
    text = report.format(max_problems=5)
    assert text.count("[inner]") == 5 and "... and 25 more" in text and "by kind: inner 30" in text
    assert verify(tmp_path / "plain.bzna", inner=False).ok


def test_not_a_dataset(tmp_path):
    report = verify(Path(__file__).resolve().parent.parent / "fixtures" / "media" / "h264.mp4")
    assert report.counts == {"layout": 1} and "no 'bzna_input' track" in report.problems[0].message


# --- extract -------------------------------------------------------------------------------------


def test_extract_an_outer_sample(photos, tmp_path, capsys):
    path, entries = photos
    out = tmp_path / "sample.mp4"
    assert main(["extract", str(path), "4", "-o", str(out)]) == 0
    assert out.read_bytes() == entries[4].inner
    assert main(["extract", str(path), "4", "--track", layout.TARGET_TRACK, "-o", str(out)]) == 0
    assert out.read_bytes() == struct.pack("<q", entries[4].target)
    assert main(["extract", str(path), "-1", "--track", "3", "-o", str(out)]) == 0  # by track_id
    assert out.read_bytes() == entries[-1].filename.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.mp4"]  # no temporary left behind
    assert "wrote" in capsys.readouterr().out


def test_extract_an_inner_picture_as_annex_b(photos, tmp_path):
    av = pytest.importorskip("av", reason="PyAV decodes the extracted stream")
    path, _ = photos
    out = tmp_path / "thumb.hevc"
    for index, track in ((5, layout.THUMB_TRACK), (5, layout.INPUT_TRACK), (0, layout.THUMB_TRACK)):
        assert main(["extract", str(path), str(index), "--track", track, "-o", str(out)]) == 0
        data = out.read_bytes()
        assert data.startswith(b"\x00\x00\x00\x01\x40\x01")  # a start code, then the VPS
        image = Dataset(path)[index].image(track)
        with av.open(str(out), format="hevc") as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (image.frame_width, image.frame_height)


def test_extract_errors(photos, tmp_path, capsys):
    path, _ = photos
    out = tmp_path / "x"
    assert main(["extract", str(path), "99", "-o", str(out)]) == 1
    assert main(["extract", str(path), "2", "--track", layout.THUMB_TRACK, "-o", str(out)]) == 1  # missing
    assert main(["extract", str(path), "0", "--track", "nope", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "out of range" in err and "missing" in err and "no track 'nope'" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
