"""Sample checksums (moov/udta/bzsc): written by DatasetWriter and concat, checked by ``bzna verify``."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from crc32c import crc32c

import bzna_boxes as bz
from bzna_boxes import Box, Boxes, find, layout
from bzna_boxes.cli import main
from bzna_boxes.verify import verify
from bzna_boxes.storage import LocalStorage
from bzna_boxes.writer import concat

from bzna_samples import build_dataset, fixture_photographs
from storage_support import UnmappedStorage

MISSING = 2
"""The sample index left missing in the photos dataset: its video sample is sample 1's."""


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, list[str]]:
    """The fixture photographs, a missing sample at index 2: 9 samples, 4 tracks, with checksums."""
    items = [(encoded, index, name) for index, (name, _, encoded) in enumerate(fixture_photographs())]
    items.insert(MISSING, (None, 7, "lost.JPEG"))
    path = build_dataset(tmp_path_factory.mktemp("checksums") / "photos.bzna", items)
    return path, [name for _, _, name in items]


def _stored(path: Path) -> dict[int, np.ndarray]:
    moov = find(Boxes.parse(path.read_bytes()), "moov")
    box = layout.find_checksums(moov)
    assert box is not None and (box.algorithm, box.checksum_size) == ("c32c", 4)
    return {entry.track_id: entry.checksums.astype(np.int64) for entry in box.entries}


def _recomputed(path: Path) -> dict[int, np.ndarray]:
    """Each track's checksums computed here, sample by sample, from the file's bytes."""
    data = path.read_bytes()
    with bz.open(path) as file:
        return {
            track.track_id: np.array([crc32c(data[int(o) : int(o) + int(s)]) for o, s in zip(track.offsets, track.sizes)], np.int64)
            for track in file.tracks
        }


def _assert_checksums_right(path: Path) -> None:
    stored, recomputed = _stored(path), _recomputed(path)
    assert sorted(stored) == sorted(recomputed) == [1, 2, 3, 4]
    for track_id in stored:
        np.testing.assert_array_equal(stored[track_id], recomputed[track_id])


def _without_table(src: Path, dst: Path) -> Path:
    """``src`` without its checksum table, as writers before it (and other tools) leave files."""
    boxes = Boxes.parse(src.read_bytes())
    moov = find(boxes, "moov")
    moov.children = [child for child in moov.children if child.type != "udta"]
    dst.write_bytes(Boxes.build(boxes))
    return dst


def _damaged_copy(src: Path, dst: Path, track: str, index: int, at: int = 0, length: int = 4, zero: bool = False) -> Path:
    """``src`` with ``length`` bytes of sample ``index`` of ``track`` flipped (or zeroed), from ``at`` into it."""
    data = bytearray(src.read_bytes())
    with bz.open(src) as file:
        start = int(file.track(track).offsets[index]) + at
    for i in range(start, start + length):
        data[i] = 0 if zero else data[i] ^ 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_the_writer_stores_the_checksum_of_every_sample_of_every_track(photos):
    path, _ = photos
    _assert_checksums_right(path)


def test_the_table_round_trips_byte_exact(photos):
    path, _ = photos
    data = path.read_bytes()
    moov = find(Boxes.parse(data), "moov")
    box = find(moov, layout.CHECKSUMS_PATH)
    assert [child.type for child in moov.children][-1] == "udta"
    assert Box.build(box) == data[box._offset : box._offset + box._size]
    assert Boxes.build(Boxes.parse(data)) == data


def test_an_undamaged_file_passes(photos):
    path, _ = photos
    report = verify(path)
    assert report.ok, report.format()
    assert report.damaged == []
    assert any(line == "checksums (c32c): 36 samples of 4 tracks checked, all match" for line in report.summary)


# (track, sample, byte offset into the sample, zero the whole sample) -> the damaged samples: index -> tracks
DAMAGES = {
    "image bytes flipped": (layout.INPUT_TRACK, 3, 300, False, {3: ["bzna_input"]}),
    "thumbnail bytes flipped": (layout.VIDEO_TRACK, 4, 100, False, {4: ["bzna_input", "VideoHandler"]}),
    "a thumbnail that a missing sample shows": (layout.VIDEO_TRACK, 1, 100, False, {1: ["bzna_input", "VideoHandler"], MISSING: ["VideoHandler"]}),
    "target flipped": (layout.TARGET_TRACK, 5, 0, False, {5: ["bzna_target"]}),
    "filename flipped": (layout.FILENAME_TRACK, 6, 1, False, {6: ["bzna_fname"]}),
    "sample zeroed": (layout.INPUT_TRACK, 7, 0, True, {7: ["bzna_input", "VideoHandler"]}),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_verify_reports_exactly_the_damaged_samples(photos, tmp_path, damage):
    path, names = photos
    track, index, at, zero, expected = DAMAGES[damage]
    with bz.open(path) as file:
        length = int(file.track(track).sizes[index]) if zero else 2
    bad = _damaged_copy(path, tmp_path / "bad.bzna", track, index, at, length, zero)
    report = verify(bad)
    assert report.damaged == sorted(expected)
    problems = [p for p in report.problems if p.kind == "checksum"]
    assert len(problems) == len(expected) == report.counts["checksum"]
    for problem, (sample, tracks) in zip(problems, sorted(expected.items())):
        filename = names[sample] if track != layout.FILENAME_TRACK else None
        assert problem.message.startswith(f"sample {sample} ")
        if filename is not None:
            assert f"sample {sample} {filename!r}:" in problem.message
        assert [t for t in ("bzna_input", "bzna_target", "bzna_fname", "VideoHandler") if repr(t) in problem.message] == tracks


def test_every_damaged_sample_is_listed_by_index_and_filename(photos, tmp_path, capsys):
    path, names = photos
    bad = tmp_path / "bad.bzna"
    _damaged_copy(path, bad, layout.INPUT_TRACK, 0, 200)
    _damaged_copy(bad, bad, layout.INPUT_TRACK, 5, 200)
    _damaged_copy(bad, bad, layout.TARGET_TRACK, 8)
    assert main(["verify", str(bad), "--max-problems", "2"]) == 1
    out = capsys.readouterr().out
    assert verify(bad).damaged == [0, 5, 8]
    assert f"[checksum] sample 0 {names[0]!r}: bytes differ from the checksum table in 'bzna_input' (stored " in out
    assert f"[checksum] sample 5 {names[5]!r}:" in out
    assert "... and " in out and "checksum 3" in out  # sample 8 is counted past --max-problems
    assert "3 damaged samples" in out


def test_a_file_without_the_table_verifies_as_before(photos, tmp_path):
    path, _ = photos
    bare = _without_table(path, tmp_path / "bare.bzna")
    report = verify(bare)
    assert report.ok and any("checksums: none (moov/udta/bzsc absent)" in line for line in report.summary)
    bad = _damaged_copy(bare, tmp_path / "bad.bzna", layout.INPUT_TRACK, 3, 300)
    report = verify(bad)
    assert report.ok and report.damaged == []  # flipped image bytes: nothing else can tell


def test_concat_carries_the_inputs_tables(photos, tmp_path):
    path, _ = photos
    out = tmp_path / "twice.bzna"
    concat([path, path], out, fsync=False)
    _assert_checksums_right(out)
    stored = _stored(path)
    merged = _stored(out)
    for track_id in stored:
        np.testing.assert_array_equal(merged[track_id][: len(stored[track_id])], stored[track_id])


def test_concat_keeps_damage_visible(photos, tmp_path):
    """A damaged input's stored checksums come along, so the copy of the damage is found."""
    path, names = photos
    bad = _damaged_copy(path, tmp_path / "bad.bzna", layout.INPUT_TRACK, 3, 300)
    out = tmp_path / "merged.bzna"
    concat([path, bad], out, fsync=False)
    assert verify(out).damaged == [len(names) + 3]


def test_concat_computes_checksums_of_inputs_without_them(photos, tmp_path):
    path, names = photos
    bare = _without_table(path, tmp_path / "bare.bzna")
    out = tmp_path / "mixed.bzna"
    concat([bare, path, bare], out, fsync=False)
    _assert_checksums_right(out)
    assert verify(out).ok
    reference = tmp_path / "reference.bzna"
    concat([path, path, path], reference, fsync=False)
    assert out.read_bytes() == reference.read_bytes()


def test_concat_copies_in_chunks_while_computing(photos, tmp_path, monkeypatch):
    """Chunks smaller than some samples: the copy and the checksums still come out right."""
    import bzna_boxes.checksum as checksum

    path, _ = photos
    bare = _without_table(path, tmp_path / "bare.bzna")
    monkeypatch.setattr(checksum.file_checksums, "__kwdefaults__", {**checksum.file_checksums.__kwdefaults__, "chunk": 30_000})
    out = tmp_path / "rechecked.bzna"
    concat([bare], out, fsync=False)
    concat([path], tmp_path / "reference.bzna", fsync=False)
    assert out.read_bytes() == (tmp_path / "reference.bzna").read_bytes()


def test_decode_finds_a_picture_that_cannot_decode(photos, tmp_path, capsys):
    path, names = photos
    with bz.open(path) as file:
        size = int(file.track(layout.INPUT_TRACK).sizes[0])
    bare = _without_table(path, tmp_path / "bare.bzna")  # no table: only decoding can tell
    image_at = layout.FILE_TYPE_SIZE + 8 + 20  # into the image's slice data, past its NAL headers
    damaged = _damaged_copy(bare, tmp_path / "undecodable.bzna", layout.INPUT_TRACK, 0, image_at, 4000, zero=True)
    assert size > image_at + 4000
    assert verify(damaged).ok  # structure, tables and inner boxes are intact
    report = verify(damaged, decode=True)
    assert report.counts == {"decode": 1}
    assert report.problems[0].message.startswith(f"sample 0 {names[0]!r}: its bzna_input picture does not decode")
    assert main(["verify", str(damaged), "--decode"]) == 1
    out = capsys.readouterr().out
    assert "[decode] sample 0" in out and "pictures: 11 decoded on the CPU" in out and ", 1 failed" in out
    assert main(["verify", str(path), "--decode"]) == 0
    assert "pictures: 12 decoded on the CPU" in capsys.readouterr().out


def test_inspect_shows_the_table(photos, capsys):
    path, _ = photos
    assert main(["inspect", str(path), "--type", "bzsc"]) == 0
    out = capsys.readouterr().out
    assert "[moov/udta/bzsc]" in out and "algorithm = c32c" in out and "checksum_size = 4" in out
    assert "{track_id=1, sample_count=9, checksums=9 entries [" in out


@pytest.mark.parametrize("chunk, gap", [(1 << 20, 1 << 16), (700, 0), (64, 10)])
def test_file_checksums_of_samples_in_any_order_overlapping_and_larger_than_a_chunk(tmp_path, chunk, gap):
    from bzna_boxes.checksum import file_checksums

    rng = np.random.default_rng(1)
    data = rng.bytes(20_000)
    path = tmp_path / "bytes"
    path.write_bytes(data)
    offsets = rng.integers(0, 19_000, 300).astype(np.uint64)
    sizes = rng.integers(0, 1000, 300).astype(np.uint32)
    seen = []
    with closing(LocalStorage(path)) as storage:
        sums = file_checksums(storage, offsets, sizes, on_chunk=lambda at, chunk_data: seen.append((at, bytes(chunk_data))), chunk=chunk, gap=gap)
    with closing(UnmappedStorage(LocalStorage(path))) as storage:  # no map, no readinto: copies of views
        assert file_checksums(storage, offsets, sizes, chunk=chunk, gap=gap).tolist() == sums.tolist()
    assert sums.tolist() == [crc32c(data[int(o) : int(o) + int(s)]) for o, s in zip(offsets, sizes)]
    assert all(data[at : at + len(piece)] == piece for at, piece in seen)


def test_file_checksums_of_a_sample_past_the_end_is_a_box_error(tmp_path):
    from bzna_boxes.checksum import file_checksums

    path = tmp_path / "bytes"
    path.write_bytes(bytes(100))
    with closing(LocalStorage(path)) as storage, pytest.raises(bz.BoxError, match="the file ends before the 20 bytes") as info:
        file_checksums(storage, np.array([0, 90], np.uint64), np.array([10, 30], np.uint32))
    assert info.value.offset == 100


def test_bzna_build_writes_the_table(tmp_path, capsys):
    images = Path(__file__).resolve().parents[1] / "fixtures" / "images"
    out = tmp_path / "built.bzna"
    assert main(["build", str(images), str(out), "--preset", "ultrafast", "--max-short-side", "128", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    _assert_checksums_right(out)
    assert main(["verify", str(out)]) == 0
    assert "checksums (c32c): 32 samples of 4 tracks checked, all match" in capsys.readouterr().out


def test_decode_without_pyav_is_one_line(photos, monkeypatch, capsys):
    path, _ = photos
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    assert main(["verify", str(path), "--decode"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bzna verify: --decode needs PyAV (pip install bzna_boxes[decode])") and err.count("\n") == 1


def _with_table(src: Path, dst: Path, edit) -> Path:
    """``src`` with its bzsc box changed by ``edit(box)``."""
    boxes = Boxes.parse(src.read_bytes())
    edit(find(boxes, "moov/" + layout.CHECKSUMS_PATH))
    dst.write_bytes(Boxes.build(boxes))
    return dst


def _drop_last(box) -> None:
    box.entries[0].checksums = box.entries[0].checksums[:-1]


def _unknown_track(box) -> None:
    box.entries[1].track_id = 9


def _unknown_algorithm(box) -> None:
    box.algorithm = "xxxx"


@pytest.mark.parametrize(
    "edit, problem, summary",
    [
        (_drop_last, "[checksum] track 1 'bzna_input': the checksum table has 8 checksums for 9 samples", "checksums (c32c): 27 samples of 3 tracks checked, all match"),
        (_unknown_track, "[checksum] the checksum table has checksums for track_ID 9, which the file lacks", "checksums (c32c): 27 samples of 3 tracks checked, all match"),
        (_unknown_algorithm, None, "checksums: algorithm 'xxxx' of 4 bytes unknown here: not checked"),
    ],
    ids=["a short entry", "an unknown track", "an unknown algorithm"],
)
def test_a_table_that_does_not_fit_the_file(photos, tmp_path, edit, problem, summary):
    path, _ = photos
    report = verify(_with_table(path, tmp_path / "edited.bzna", edit))
    assert [str(p).split(" (moov")[0] for p in report.problems] == ([problem] if problem else [])
    assert summary in report.summary


def test_concat_refuses_an_input_whose_table_does_not_fit(photos, tmp_path):
    path, _ = photos
    edited = _with_table(path, tmp_path / "edited.bzna", _drop_last)
    with pytest.raises(bz.BoxError, match="the checksum table has 8 checksums for the 9 samples of bzna_input"):
        concat([edited], tmp_path / "out.bzna", fsync=False)
    assert not (tmp_path / "out.bzna").exists()
