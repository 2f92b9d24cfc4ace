"""Real files from FFmpeg/PyAV and pillow-heif: byte-exact round trips from bytes, mmap and file
objects, key fields against what PyAV and pillow-heif report, and payloads never copied."""

from __future__ import annotations

import io
import mmap
import os
import struct
import tracemalloc
from fractions import Fraction
from pathlib import Path

import pytest

from bzna_boxes import Box, Boxes, find, find_all, walk

from conftest import MEDIA, MEDIA_FILES

VIDEO_ENTRIES = ("avc1", "avc3", "hvc1", "hev1")
MOVIES = [p for p in MEDIA_FILES if p.suffix in (".mp4", ".mov", ".m4a")]
HEIFS = [p for p in MEDIA_FILES if p.suffix == ".heic"]


def _raw_views(tree) -> list[memoryview]:
    return [box.data for _, box in walk(tree) if "data" in box]


# --- round trips --------------------------------------------------------------------------------


def test_round_trip_from_bytes(media_file: Path):
    data = media_file.read_bytes()
    tree = Boxes.parse(data)
    assert Boxes.build(tree) == data
    assert sum(box._size for box in tree) == len(data)


def test_round_trip_from_mmap_shares_the_map(media_file: Path):
    data = media_file.read_bytes()
    with open(media_file, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    tree = Boxes.parse(mm)
    assert Boxes.build(tree) == data
    views = _raw_views(tree)
    assert views and all(view.obj is mm for view in views)
    del tree, views
    mm.close()  # no view left: the parse made no reference cycle that keeps the map exported


def test_round_trip_from_an_open_binary_file(media_file: Path):
    data = media_file.read_bytes()
    with open(media_file, "rb") as f:
        tree = Boxes.parse(f)
    assert Boxes.build(tree) == data
    assert Boxes.build(Boxes.parse_stream(io.BytesIO(data))) == data  # a file object without a descriptor
    assert Boxes.build(Boxes.parse_file(str(media_file))) == data


def test_box_parse_of_a_large_mdat_gives_a_view_of_the_mmap():
    path = MEDIA / "av_interleaved.mp4"
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mdat_at = find(Boxes.parse(path.read_bytes()), "mdat")._offset
    tracemalloc.start()
    try:
        mdat = Box.parse(memoryview(mm)[mdat_at:])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert mdat.type == "mdat" and len(mdat.data) > 10_000
    assert mdat.data.obj is mm and peak < len(mdat.data) // 2
    assert bytes(mdat.data[:16]) == mm[mdat_at + 8 : mdat_at + 24]
    del mdat
    mm.close()


# --- key fields against PyAV ----------------------------------------------------------------------


def _track(tree, track_id: int):
    for trak in find_all(tree, "trak"):
        if find(trak, "tkhd").track_id == track_id:
            return trak
    raise AssertionError(f"no trak with track_id {track_id}")


def _fragment_sample_sizes(tree, track_id: int) -> list[int] | None:
    """Sample sizes of ``track_id`` from its track runs (trun, or tfhd's/trex's defaults); None if unfragmented."""
    trafs = [traf for traf in find_all(tree, "traf") if find(traf, "tfhd").track_id == track_id]
    if not trafs:
        return None
    trex = next(box for box in find_all(tree, "trex") if box.track_id == track_id)
    sizes: list[int] = []
    for traf in trafs:
        default = find(traf, "tfhd").default_sample_size
        for trun in find_all(traf, "trun"):
            if "sample_size" in (trun.samples.dtype.names or ()):
                sizes += trun.samples["sample_size"].tolist()
            else:
                sizes += [default if default is not None else trex.default_sample_size] * trun.sample_count
    return sizes


@pytest.mark.parametrize("path", MOVIES, ids=lambda p: p.name)
def test_fields_agree_with_pyav(path: Path):
    av = pytest.importorskip("av", reason="PyAV is needed to compare with FFmpeg's demuxer")
    tree = Boxes.parse(path.read_bytes())
    with av.open(str(path)) as container:
        assert len(find_all(tree, "trak")) == len(container.streams)
        for stream in container.streams:
            trak = _track(tree, stream.id)
            mdhd = find(trak, "mdia/mdhd")
            assert stream.time_base == Fraction(1, mdhd.timescale)
            entry = find(trak, "mdia/minf/stbl/stsd").children[0]
            assert entry.type == stream.codec_context.codec_tag
            if stream.type == "video":
                assert entry.type in VIDEO_ENTRIES
                assert (entry.width, entry.height) == (stream.codec_context.width, stream.codec_context.height)
                tkhd = find(trak, "tkhd")
                assert (tkhd.width, tkhd.height) == (stream.codec_context.width, stream.codec_context.height)
            sizes = [packet.size for packet in container.demux(stream) if packet.size]
            container.seek(0)
            stsz = find(trak, "mdia/minf/stbl/stsz")
            fragment_sizes = _fragment_sample_sizes(tree, stream.id)
            if fragment_sizes is not None:  # fragmented: the samples are in the track runs, the sample table is empty
                assert stsz.sample_count == 0
                assert fragment_sizes == sizes
            elif stsz.sample_size == 0:
                assert stsz.sample_count == len(sizes) == stream.frames
                assert stsz.entry_sizes.tolist() == sizes
            else:  # constant-size samples (PCM): FFmpeg groups them into packets
                assert stsz.sample_count == stream.frames
                assert sum(sizes) == stsz.sample_size * stsz.sample_count


@pytest.mark.parametrize("path", HEIFS, ids=lambda p: p.name)
def test_heif_fields_agree_with_pillow_heif(path: Path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is needed to compare with libheif")
    tree = Boxes.parse(path.read_bytes())
    ipco = find(tree, "meta/iprp/ipco")
    ispe, clap, colr = find(ipco, "ispe"), find(ipco, "clap", default=None), find(ipco, "colr")
    heif = pillow_heif.open_heif(str(path))
    if clap is None:
        assert (ispe.image_width, ispe.image_height) == heif.size
    else:  # libheif crops to the clean aperture: the coded size is in ispe
        assert (clap.clean_aperture_width_n, clap.clean_aperture_height_n) == heif.size
        assert (ispe.image_width - heif.size[0], ispe.image_height - heif.size[1]) == (1, 1)
    nclx = heif.info["nclx_profile"]
    assert colr.colour_type == "nclx"
    assert (colr.colour_primaries, colr.transfer_characteristics, colr.matrix_coefficients, colr.full_range_flag) == (
        nclx["color_primaries"],
        nclx["transfer_characteristics"],
        nclx["matrix_coefficients"],
        nclx["full_range_flag"],
    )


# --- a 20 GB sparse file ------------------------------------------------------------------------

PAYLOAD = 20 * 2**30


def test_sparse_20_gb_file_parses_without_reading_the_payload(tmp_path: Path):
    path = tmp_path / "big.mp4"
    ftyp = Box.build({"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["bzna", "isom"]})
    moov = Box.build({"type": "moov", "children": [{"type": "mvhd", "timescale": 20, "duration": 20, "next_track_id": 2}]})
    try:
        with open(path, "wb") as f:
            f.write(ftyp + struct.pack(">I4sQ", 1, b"mdat", 16 + PAYLOAD))
            f.truncate(len(ftyp) + 16 + PAYLOAD)
            f.seek(len(ftyp) + 16 + PAYLOAD)
            f.write(moov)
    except OSError as exc:
        pytest.skip(f"the filesystem of {tmp_path} cannot hold a 20 GB sparse file: {exc}")
    if os.stat(path).st_blocks * 512 > 64 * 2**20:
        path.unlink()
        pytest.skip(f"the filesystem of {tmp_path} does not keep files sparse")
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    tracemalloc.start()
    try:
        tree = Boxes.parse(mm)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [box.type for box in tree] == ["ftyp", "mdat", "moov"]
    mdat = tree[1]
    assert mdat.large_size and len(mdat.data) == PAYLOAD and mdat.data.obj is mm
    assert (mdat._offset, mdat._size) == (len(ftyp), 16 + PAYLOAD)
    assert find(tree, "moov/mvhd").timescale == 20 and tree[2]._offset == len(ftyp) + 16 + PAYLOAD
    assert peak < 2**20, f"parsing allocated {peak} bytes"
    assert Box.build(tree[2]) == moov
    del tree, mdat
    mm.close()
    with open(path, "rb") as f:  # a file object is memory-mapped the same way
        assert len(Boxes.parse(f)[1].data) == PAYLOAD
    path.unlink()
