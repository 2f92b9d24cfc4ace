"""The sample index (bzna_boxes.index): offsets and sizes against FFmpeg's demuxer, the general
sample-table rules against a sample-by-sample reference, corrupted tables, closing, pickling."""

from __future__ import annotations

import gc
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bzna_boxes
from bzna_boxes import Box, BoxError, layout
from bzna_boxes.index import BznaFile, Track

from bzna_factory import plain_entries, write_dataset
from conftest import MEDIA, MEDIA_FILES

av = pytest.importorskip("av", reason="PyAV reads the reference packet positions")

MP4_FILES = [p for p in MEDIA_FILES if p.suffix != ".heic"]


def pyav_packets(path: Path) -> dict[int, list[tuple[int, int]]]:
    """track_id -> [(pos, size)] of every packet FFmpeg's demuxer reports (no decoding)."""
    packets: dict[int, list[tuple[int, int]]] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pos is None or packet.pos < 0:
                continue  # the flush packet at the end of each stream
            packets.setdefault(packet.stream.id, []).append((packet.pos, packet.size))
    return packets


def assert_matches_packets(track: Track, packets: list[tuple[int, int]]) -> None:
    """Our samples are FFmpeg's packets, or (PCM) packets are runs of our consecutive samples."""
    ours = list(zip(track.offsets.tolist(), track.sizes.tolist()))
    if len(packets) == len(ours):
        assert ours == packets
        return
    # FFmpeg groups constant-size PCM samples into one packet per run: check each packet is
    # a run of contiguous samples starting where it starts, and that the runs cover them all.
    assert len(packets) < len(ours)
    ends = track.offsets + track.sizes
    covered = 0
    for pos, size in packets:
        assert int(track.offsets[covered]) == pos
        run_end = covered
        while run_end < len(ours) and int(ends[run_end]) <= pos + size:
            run_end += 1
        assert int(ends[run_end - 1]) == pos + size
        assert np.array_equal(track.offsets[covered + 1 : run_end], ends[covered : run_end - 1])  # contiguous
        covered = run_end
    assert covered == len(ours)


@pytest.mark.parametrize("path", MP4_FILES, ids=lambda p: p.name)
def test_offsets_and_sizes_equal_pyav_packets(path):
    packets = pyav_packets(path)
    with bzna_boxes.open(path) as file:
        assert sorted(packets) == sorted(t.track_id for t in file.tracks)
        for track in file.tracks:
            assert track.offsets.dtype == np.uint64 and track.sizes.dtype == np.uint32
            assert_matches_packets(track, packets[track.track_id])


def test_constant_size_audio_is_expanded_per_sample():
    with bzna_boxes.open(MEDIA / "pcm_audio.mov") as file:
        audio = file.track("SoundHandler")
        assert audio.handler == "soun" and audio.sample_entry.type == "sowt"
        assert len(audio) == 8000 and set(audio.sizes.tolist()) == {2}
        video = file.track("VideoHandler")  # QuickTime's Pascal-string hdlr name, length byte removed
        assert video.track_id == 1


def _write_av(path: Path, movflags: str | None) -> None:
    """A small interleaved H.264 + AAC file, muxed by FFmpeg with ``movflags``."""
    with av.open(str(path), "w", format="mp4", options={"movflags": movflags} if movflags else {}) as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt, video.gop_size = 64, 48, "yuv420p", 4
        video.options = {"preset": "ultrafast"}
        audio = out.add_stream("aac", rate=8000)
        audio.layout = "mono"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 8000, i * 800
            for packet in audio.encode(sound):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)


@pytest.mark.parametrize(
    "movflags",
    [
        "frag_keyframe+empty_moov+default_base_moof",  # base = moof
        "frag_keyframe+empty_moov",  # base_data_offset in tfhd
        "frag_keyframe+empty_moov+omit_tfhd_offset",  # base = moof, then the previous traf's data end
        "frag_keyframe",  # the first samples in moov, the rest in fragments
    ],
)
def test_fragmented_files_muxed_by_ffmpeg(tmp_path, movflags):
    path = tmp_path / "fragmented.mp4"
    _write_av(path, movflags)
    packets = pyav_packets(path)
    with bzna_boxes.open(path) as file:
        assert "moof" in [box.type for box in file.boxes]
        assert [t.handler for t in file.tracks] == ["vide", "soun"]
        for track in file.tracks:
            assert_matches_packets(track, packets[track.track_id])


# --- the general sample-table rules, against a sample-by-sample reference ----------------------


def reference_offsets(chunk_offsets, stsc, sizes) -> list[int]:
    """ISO/IEC 14496-12 §8.7.4, one sample at a time: the obvious loop."""
    offsets = []
    sample = 0
    for k, (first_chunk, per_chunk, _) in enumerate(stsc):
        last = stsc[k + 1][0] - 1 if k + 1 < len(stsc) else len(chunk_offsets)
        for chunk in range(first_chunk, last + 1):
            position = chunk_offsets[chunk - 1]
            for _ in range(per_chunk):
                offsets.append(position)
                position += sizes[sample]
                sample += 1
    return offsets


def _trak(track_id: int, name: str, size_box: dict, chunk_box: dict, stsc) -> dict:
    stbl = [
        {"type": "stsd", "children": [layout.metadata_sample_entry("application/octet-stream")]},
        {"type": "stts", "entries": []},
        size_box,
        {"type": "stsc", "entries": stsc},
        chunk_box,
    ]
    minf = [{"type": "nmhd"}, {"type": "stbl", "children": stbl}]
    mdia = [{"type": "hdlr", "handler_type": "meta", "name": name + "\x00"}, {"type": "minf", "children": minf}]
    return {"type": "trak", "children": [{"type": "tkhd", "track_id": track_id}, {"type": "mdia", "children": mdia}]}


def write_mp4(path: Path, payload: bytes, traks: list[dict]) -> None:
    """ftyp, mdat(payload), moov(traks)."""
    moov = {"type": "moov", "children": [{"type": "mvhd"}, *traks]}
    path.write_bytes(Box.build(layout.file_type()) + struct.pack(">I4s", 8 + len(payload), b"mdat") + payload + Box.build(moov))


def chunked_file(path: Path, runs: list[tuple[int, int]], sizes: list[int], *, size_form: str = "stsz", wide: bool = False, gap: int = 3):
    """A one-track file whose chunks follow ``runs`` ((chunk count, samples per chunk)), ``gap`` bytes between chunks."""
    stsc, chunk_sizes, first = [], [], 1
    sample = 0
    for count, per_chunk in runs:
        stsc.append((first, per_chunk, 1))
        first += count
        for _ in range(count):
            chunk_sizes.append(sum(sizes[sample : sample + per_chunk]))
            sample += per_chunk
    assert sample == len(sizes)
    start = len(Box.build(layout.file_type())) + 8
    chunk_offsets, position = [], start
    for size in chunk_sizes:
        chunk_offsets.append(position)
        position += size + gap
    payload = bytearray(position - start)
    if size_form == "stsz":
        size_box = {"type": "stsz", "entry_sizes": np.array(sizes, ">u4")}
    elif size_form == "constant":
        assert len(set(sizes)) <= 1
        size_box = {"type": "stsz", "sample_size": sizes[0] if sizes else 1, "sample_count": len(sizes)}
    else:
        bits = 4 if max(sizes, default=0) < 16 else 8 if max(sizes) < 256 else 16
        size_box = {"type": "stz2", "field_size": bits, "entry_sizes": sizes}
    chunk_box = {"type": "co64" if wide else "stco", "chunk_offsets": np.array(chunk_offsets, ">u8" if wide else ">u4")}
    write_mp4(path, bytes(payload), [_trak(1, "data", size_box, chunk_box, stsc)])
    return chunk_offsets, stsc


@st.composite
def chunk_layouts(draw):
    runs = draw(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5)), min_size=1, max_size=5))
    total = sum(count * per for count, per in runs)
    form = draw(st.sampled_from(["stsz", "stz2", "constant"]))
    if form == "constant":
        sizes = [draw(st.integers(1, 40))] * total
    else:
        bound = draw(st.sampled_from([15, 255, 300]))  # stz2: 4, 8 or 16-bit fields
        sizes = draw(st.lists(st.integers(0, bound), min_size=total, max_size=total))
    return runs, sizes, form, draw(st.booleans())


@given(chunk_layouts())
def test_chunk_expansion_equals_the_reference(tmp_path_factory, layout_):
    runs, sizes, form, wide = layout_
    path = tmp_path_factory.mktemp("chunks") / "chunks.mp4"
    chunk_offsets, stsc = chunked_file(path, runs, sizes, size_form=form, wide=wide)
    with bzna_boxes.open(path) as file:
        (track,) = file.tracks
        assert track.offsets.tolist() == reference_offsets(chunk_offsets, stsc, sizes)
        assert track.sizes.tolist() == sizes


def test_several_samples_per_chunk_read_back(tmp_path):
    sizes = [5, 7, 0, 11, 13, 2, 3, 17, 19]
    path = tmp_path / "runs.mp4"
    chunk_offsets, stsc = chunked_file(path, [(2, 3), (1, 1), (1, 2)], sizes)
    with bzna_boxes.open(path) as file:
        track = file.track("data")
        assert track.offsets.tolist() == reference_offsets(chunk_offsets, stsc, sizes)
        assert [len(view) for view in track] == sizes
        assert track.track_id == 1 and file.track(1) is track


# --- .bzna files from plain values ----------------------------------------------------------


def test_dataset_tracks_read_back_exactly(tmp_path):
    entries = plain_entries(40, missing=(3, 17), no_target=(5,))
    tables = write_dataset(tmp_path / "plain.bzna", entries, large_mdat=True)
    with bzna_boxes.open(tmp_path / "plain.bzna") as file:
        assert [t.name for t in file.tracks] == [layout.INPUT_TRACK, layout.TARGET_TRACK, layout.FILENAME_TRACK]
        assert [t.handler for t in file.tracks] == ["meta"] * 3
        assert [t.track_id for t in file.tracks] == [1, 2, 3]
        assert file.track(layout.TARGET_TRACK).sample_entry.mime_format == layout.TARGET_MIME
        assert file.track(layout.FILENAME_TRACK).sample_entry.mime_format == layout.FILENAME_MIME
        for name, table in tables.items():
            track = file.track(name)
            assert np.array_equal(track.offsets, table.offsets) and np.array_equal(track.sizes, table.sizes)
        inputs = file.track(layout.INPUT_TRACK)
        assert [bytes(view) for view in inputs] == [e.inner or b"" for e in entries]
        assert bytes(inputs[-1]) == entries[-1].inner and bytes(inputs[3]) == b""
        assert [bytes(v).decode() for v in file.track(layout.FILENAME_TRACK)] == [e.filename for e in entries]
        with pytest.raises(IndexError):
            inputs[len(entries)]
        with pytest.raises(KeyError, match="no track 'nope'"):
            file.track("nope")


def test_seed_sized_container_indexes_in_one_pass(tmp_path):
    """The benchmark's sparse ImageNet-shaped container (co64, largesize mdat), at a small size."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from make_imagenet_container import sample_sizes, write_container
    finally:
        sys.path.pop(0)
    info = write_container(tmp_path / "imagenet.bzna", samples=5000, seed=1)
    sizes = sample_sizes(5000, seed=1)
    with bzna_boxes.open(tmp_path / "imagenet.bzna") as file:
        assert [t.name for t in file.tracks] == list(layout.OUTER_TRACKS)
        assert file.size == info["file_size"] and file.moov.offset == info["moov_offset"]
        inputs, targets = file.track(layout.INPUT_TRACK), file.track(layout.TARGET_TRACK)
        assert np.array_equal(inputs.sizes, sizes["input"]) and np.array_equal(file.track(layout.FILENAME_TRACK).sizes, sizes["fname"])
        assert inputs.offsets[0] == 24 + 16 and np.all(np.diff(inputs.offsets.astype(np.int64)) == inputs.sizes[:-1])
        assert targets.offsets[0] == inputs.offsets[-1] + inputs.sizes[-1]
        assert file.track(layout.VIDEO_TRACK).sample_entry.type == "hvc1"


# --- corrupted tables: BoxError naming the track and the sample -------------------------------


def _corrupt(tmp_path: Path, **change) -> Path:
    sizes = [10, 20, 30, 40]
    path = tmp_path / "bad.mp4"
    chunk_offsets, _ = chunked_file(path, [(4, 1)], sizes, gap=0)
    stsc = change.get("stsc", [(1, 1, 1)])
    chunk_offsets = change.get("chunk_offsets", chunk_offsets)
    sizes = change.get("sizes", sizes)
    payload = bytes(sum([10, 20, 30, 40]))
    size_box = {"type": "stsz", "entry_sizes": np.array(sizes, ">u4")}
    write_mp4(path, payload, [_trak(7, "bzna_input", size_box, {"type": "stco", "chunk_offsets": np.array(chunk_offsets, ">u4")}, stsc)])
    return path


@pytest.mark.parametrize(
    "change, sample, words",
    [
        ({"chunk_offsets": [32, 42, 62, 10_000]}, 3, "outside the file"),
        ({"chunk_offsets": [32, 42, 62, 110]}, 3, "overlaps the metadata box"),
        ({"sizes": [10, 20, 30]}, 3, "size table is shorter than the chunk table"),
        ({"sizes": [10, 20, 30, 40, 50]}, 4, "chunk table is shorter than the size table"),
        ({"stsc": [(1, 1, 1), (6, 1, 1)]}, 4, "past the last chunk"),
        ({"stsc": [(1, 2, 1)]}, 4, "size table is shorter"),
        ({"stsc": [(2, 1, 1)]}, 0, "not 1"),
        ({"stsc": [(1, 1, 1), (3, 1, 1), (2, 1, 1)]}, 2, "not after entry"),
    ],
)
def test_corrupted_tables_name_the_track_and_sample(tmp_path, change, sample, words):
    path = _corrupt(tmp_path, **change)
    with pytest.raises(BoxError) as info:
        bzna_boxes.open(path)
    message = str(info.value)
    assert "track 7 'bzna_input'" in message and f"sample {sample}" in message and words in message
    assert info.value.path.startswith("moov/trak/mdia/minf/stbl")


def test_sample_overlapping_moov_when_moov_comes_first(tmp_path):
    path = tmp_path / "moov_first.mp4"
    ftyp = Box.build(layout.file_type())
    track = lambda offsets: _trak(1, "v", {"type": "stsz", "entry_sizes": np.array([4, 4], ">u4")}, {"type": "stco", "chunk_offsets": np.array(offsets, ">u4")}, [(1, 1, 1)])  # noqa: E731
    moov_size = len(Box.build({"type": "moov", "children": [{"type": "mvhd"}, track([0, 0])]}))
    start = len(ftyp) + moov_size + 8
    good = Box.build({"type": "moov", "children": [{"type": "mvhd"}, track([start, start + 4])]})
    bad = Box.build({"type": "moov", "children": [{"type": "mvhd"}, track([start, len(ftyp) + 10])]})
    path.write_bytes(ftyp + good + struct.pack(">I4s", 16, b"mdat") + bytes(8))
    with bzna_boxes.open(path) as file:
        assert file.tracks[0].offsets.tolist() == [start, start + 4]
    path.write_bytes(ftyp + bad + struct.pack(">I4s", 16, b"mdat") + bytes(8))
    with pytest.raises(BoxError, match=r"track 1 'v': sample 1 .*overlaps the metadata box"):
        bzna_boxes.open(path)


def test_constant_sample_count_larger_than_the_file_allocates_nothing(tmp_path):
    path = tmp_path / "huge.mp4"
    size_box = {"type": "stsz", "sample_size": 1, "sample_count": 0xFFFFFFFF}
    write_mp4(path, b"", [_trak(1, "x", size_box, {"type": "stco", "chunk_offsets": np.array([0], ">u4")}, [(1, 0xFFFFFFFF, 1)])])
    with pytest.raises(BoxError, match="more than the file holds"):
        bzna_boxes.open(path)


@pytest.mark.parametrize("cut", [1, 9, 100])
def test_truncated_files_raise_box_error(tmp_path, cut):
    data = (MEDIA / "h264.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[:-cut])
    with pytest.raises(BoxError):
        bzna_boxes.open(path)


def test_files_without_moov_or_empty(tmp_path):
    with pytest.raises(BoxError, match="no moov"):
        bzna_boxes.open(MEDIA / "image.heic")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(BoxError, match="empty"):
        bzna_boxes.open(tmp_path / "empty.mp4")


# --- closing, pickling ------------------------------------------------------------------------


def test_arrays_outlive_the_file_and_do_not_pin_the_map(tmp_path):
    file = bzna_boxes.open(MEDIA / "av_interleaved.mp4")
    tracks = file.tracks
    offsets = [t.offsets for t in tracks]
    entry = tracks[0].sample_entry
    mm = file._state.storage._map
    file.close()
    assert mm.closed and file.closed  # nothing we handed out (arrays, entries) holds the map
    assert offsets[0][0] == 48 and entry.type == "avc1"
    with pytest.raises(ValueError, match="closed"):
        tracks[0][0]


def test_close_with_a_sample_view_alive(tmp_path):
    file = bzna_boxes.open(MEDIA / "h264.mp4")
    view = file.tracks[0][0]
    mm = file._state.storage._map
    file.close()  # does not raise: the view is the caller's
    assert not mm.closed and bytes(view[:4]) == (MEDIA / "h264.mp4").read_bytes()[48:52]
    del view
    gc.collect()
    with BznaFile(MEDIA / "h264.mp4") as again:
        assert len(again.tracks[0]) == 10


def test_pickles_by_path_and_reopens_lazily():
    file = bzna_boxes.open(MEDIA / "av_interleaved.mp4")
    data = pickle.dumps(file)
    assert len(data) < 300
    copy = pickle.loads(data)
    assert copy._state is None  # nothing opened yet
    assert [len(t) for t in copy.tracks] == [len(t) for t in file.tracks]
    assert bytes(copy.tracks[1][5]) == bytes(file.tracks[1][5])
    copy.close()
    file.close()


def test_import_stays_light():
    code = (
        "import sys, bzna_boxes; bzna_boxes.Dataset, bzna_boxes.ImageNet; "
        "f = bzna_boxes.open('fixtures/media/h264.mp4'); f.tracks[0].offsets; "
        "print(sorted(m for m in ('av', 'PIL', 'torch', 'construct.debug', 'pdb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    # opening a file needs no decoder; the box schemas it reads through import construct without its debugger
    assert out.stdout.strip() == "[]"
