"""The .bzna container of shared/seed/imagenet-2012-bzna.rst, built from plain values with Box/Boxes
and by bzna_boxes.layout, then parsed and checked field by field against what the seed lists.

The one deliberate deviation: the seed's video entries say ``avc1`` but hold H.265, so the layout
writes ``hvc1`` (see design.md); the hand-built container keeps the seed's ``avc1``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bzna_boxes import Box, Boxes, find, find_all

from conftest import REPO

N = 5  # samples in the hand-built container
TARGETS = np.array([3, 0, 999, -1, 42], "<i8")
FILENAMES = ["n01440764_1.JPEG", "n01443537_2.JPEG", "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_test_00000001.JPEG", "été.jpg"]

# What the seed lists for each outer track: hdlr name and handler, tkhd flags and size, media
# header, sample entry, stts sample_delta.
OUTER_SEED = [
    dict(name="bzna_input", handler="meta", flags=0x000000, size=(0.0, 0.0), media_header="nmhd", mime="application/octet-stream", delta=20),
    dict(name="bzna_target", handler="meta", flags=0x000000, size=(0.0, 0.0), media_header="nmhd", mime="application/octet-stream", delta=20),
    dict(name="bzna_fname", handler="meta", flags=0x000003, size=(0.0, 0.0), media_header="nmhd", mime="text/plain", delta=20),
    dict(name="VideoHandler", handler="vide", flags=0x000003, size=(512.0, 512.0), media_header="vmhd", mime=None, delta=1),
]


def _inner_sample(index: int) -> bytes:
    """A stand-in inner sample: ftyp and an mdat (its own layout is tested below)."""
    return Boxes.build([_ftyp(), {"type": "mdat", "data": bytes([index]) * (100 + 37 * index)}])


def _ftyp() -> dict:
    return {"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["bzna", "isom"]}


def _plain_track(track_id: int, seed: dict, offsets: np.ndarray, sizes: np.ndarray) -> dict:
    """One outer trak written out field by field from the seed's description."""
    n = len(offsets)
    if seed["mime"] is not None:
        entry = {"type": "mett", "content_encoding": "", "mime_format": seed["mime"], "children": []}
    else:
        entry = {"type": "avc1", "width": 512, "height": 512, "horizresolution": 72.0, "vertresolution": 72.0, "children": []}
    return {"type": "trak", "children": [
        {"type": "tkhd", "flags": seed["flags"], "track_id": track_id, "duration": seed["delta"] * n, "width": seed["size"][0], "height": seed["size"][1]},
        {"type": "mdia", "children": [
            {"type": "mdhd", "timescale": 20, "duration": seed["delta"] * n},
            {"type": "hdlr", "handler_type": seed["handler"], "name": seed["name"] + "\x00"},
            {"type": "minf", "children": [
                {"type": seed["media_header"], **({"flags": 1} if seed["media_header"] == "vmhd" else {})},
                {"type": "dinf", "children": [{"type": "dref", "children": [{"type": "url ", "flags": 1}]}]},
                {"type": "stbl", "children": [
                    {"type": "stsd", "children": [entry]},
                    {"type": "stts", "entries": [(n, seed["delta"])]},
                    {"type": "stsz", "entry_sizes": sizes},
                    {"type": "stsc", "entries": [(1, 1, 1)]},
                    {"type": "stco", "chunk_offsets": offsets},
                ]},
            ]},
        ]},
    ]}


def _blocks():
    """The three blocks of the outer mdat and the (offset within mdat payload, size) of each sample."""
    inner = [_inner_sample(i) for i in range(N)]
    names = [name.encode("utf-8") for name in FILENAMES]
    payload = b"".join(inner) + TARGETS.tobytes() + b"".join(names)
    inner_sizes = np.array([len(s) for s in inner])
    name_sizes = np.array([len(n) for n in names])
    inner_at = np.concatenate([[0], np.cumsum(inner_sizes)[:-1]])
    target_at = inner_sizes.sum() + 8 * np.arange(N)
    name_at = inner_sizes.sum() + 8 * N + np.concatenate([[0], np.cumsum(name_sizes)[:-1]])
    return inner, payload, (inner_at, inner_sizes), (target_at, np.full(N, 8)), (name_at, name_sizes)


def check_outer_against_seed(data: bytes, inner: list[bytes], video_entry: str) -> None:
    """Parse ``data`` and check every field that the seed lists for the outer container."""
    tree = Boxes.parse(data)
    assert [box.type for box in tree] == ["ftyp", "mdat", "moov"]
    ftyp = tree[0]
    assert (ftyp.major_brand, ftyp.minor_version, list(ftyp.compatible_brands)) == ("isom", 0, ["bzna", "isom"])
    mvhd = find(tree, "moov/mvhd")
    assert (mvhd.timescale, mvhd.duration, mvhd.next_track_id) == (20, 20 * N, 5)
    traks = find_all(tree, "trak")
    assert len(traks) == 4
    for track_id, (trak, seed) in enumerate(zip(traks, OUTER_SEED), start=1):
        tkhd, mdhd, hdlr = find(trak, "tkhd"), find(trak, "mdia/mdhd"), find(trak, "mdia/hdlr")
        assert (tkhd.track_id, tkhd.flags, (tkhd.width, tkhd.height)) == (track_id, seed["flags"], seed["size"])
        assert (mdhd.timescale, mdhd.duration) == (20, seed["delta"] * N)
        assert (hdlr.handler_type, hdlr.name.rstrip("\x00")) == (seed["handler"], seed["name"])
        assert find(trak, "mdia/minf").children[0].type == seed["media_header"]
        stbl = find(trak, "mdia/minf/stbl")
        (entry,) = find(stbl, "stsd").children
        if seed["mime"] is not None:
            assert (entry.type, entry.mime_format) == ("mett", seed["mime"])
        else:
            assert (entry.type, entry.width, entry.height, entry.horizresolution, entry.vertresolution) == (video_entry, 512, 512, 72.0, 72.0)
        assert find(stbl, "stts").entries.tolist() == [(N, seed["delta"])]
        assert find(stbl, "stsc").entries.tolist() == [(1, 1, 1)]
        stsz, stco = find(stbl, "stsz"), find(stbl, "stco")
        assert stsz.sample_count == N and stco.entry_count == N  # one chunk per sample
    # The offsets point at the three blocks of mdat: inner samples, targets, filenames.
    view = memoryview(data)

    def samples(trak) -> list[bytes]:
        stbl = find(trak, "mdia/minf/stbl")
        return [bytes(view[o : o + s]) for o, s in zip(find(stbl, "stco").chunk_offsets.tolist(), find(stbl, "stsz").entry_sizes.tolist())]

    assert samples(traks[0]) == inner
    assert np.frombuffer(b"".join(samples(traks[1])), "<i8").tolist() == TARGETS.tolist()
    assert [s.decode("utf-8") for s in samples(traks[2])] == FILENAMES
    mdat = tree[1]
    first, last = mdat._offset + 8, mdat._offset + mdat._size
    assert all(first <= o < last for trak in traks for o in find(trak, "mdia/minf/stbl/stco").chunk_offsets.tolist())


def test_outer_container_built_from_plain_values_matches_the_seed():
    inner, payload, inputs, targets, names = _blocks()
    ftyp = Box.build(_ftyp())
    base = len(ftyp) + 8  # the mdat payload follows ftyp and the 8-byte mdat header
    video = (inputs[0] + 50, np.full(N, 16))  # thumbnails: somewhere inside each inner sample
    tables = [inputs, targets, names, video]
    moov = {"type": "moov", "children": [
        {"type": "mvhd", "timescale": 20, "duration": 20 * N, "next_track_id": 5},
        *[_plain_track(i + 1, seed, np.asarray(at) + base, np.asarray(size)) for i, (seed, (at, size)) in enumerate(zip(OUTER_SEED, tables))],
    ]}
    data = Boxes.build([_ftyp(), {"type": "mdat", "data": payload}, moov])
    assert data[: len(ftyp)] == ftyp
    check_outer_against_seed(data, inner, video_entry="avc1")


def test_layout_outer_moov_matches_the_seed():
    from bzna_boxes import layout

    inner, payload, inputs, targets, names = _blocks()
    base = layout.FILE_TYPE_SIZE + 8

    def table(at, size):
        return layout.SampleTable(np.asarray(at, np.uint64) + base, np.asarray(size, np.uint32))

    hvcc = {k: v for k, v in find(Boxes.parse((REPO / "fixtures/media/h265.mp4").read_bytes()), "moov/trak/mdia/minf/stbl/stsd/hvc1/hvcC").items() if not k.startswith("_") and k != "type"}
    moov = layout.outer_moov(table(*inputs), table(*targets), table(*names), table(inputs[0] + 50, np.full(N, 16)), hvcc)
    data = Boxes.build([layout.file_type(), {"type": "mdat", "data": payload}, moov])
    check_outer_against_seed(data, inner, video_entry="hvc1")
    assert layout.FILE_TYPE_SIZE == len(Box.build(layout.file_type()))


def test_layout_uses_co64_once_an_offset_passes_4_gib():
    from bzna_boxes import layout

    offsets = np.array([16, 2**32 + 5], np.uint64)
    box = Box.parse(Box.build(layout.chunk_offsets(offsets)))
    assert box.type == "co64" and box.chunk_offsets.tolist() == offsets.tolist()
    assert Box.parse(Box.build(layout.chunk_offsets(offsets[:1]))).type == "stco"


# --- the inner sample ---------------------------------------------------------------------------

INNER_SEED = [
    # name, handler, tkhd flags, media header
    ("bzna_input", "vide", 0x000000, "vmhd"),
    ("bzna_thumb", "vide", 0x000003, "vmhd"),
    ("bzna_target", "meta", 0x000000, "nmhd"),
    ("bzna_fname", "meta", 0x000003, "nmhd"),
]


@pytest.fixture(scope="module")
def encoded_coffee():
    """coffee.jpg (600x400) as the encoder makes it: a 1024x512 frame and a 512x512 thumbnail frame."""
    pytest.importorskip("av", reason="PyAV (libx265) is needed to encode the sample's frames")
    from bzna_boxes import encode

    rgb = encode.load_rgb(REPO / "fixtures/images/coffee/coffee.jpg")
    return encode.encode_image(rgb, preset="ultrafast", crf=30)


def test_layout_inner_sample_matches_the_seed(encoded_coffee):
    from bzna_boxes import layout

    image, thumb = encoded_coffee.image, encoded_coffee.thumbnail
    assert thumb is not None
    data = layout.inner_sample(image, thumb, 7, "coffee.jpg")
    tree = Boxes.parse(data)
    assert Boxes.build(tree) == data
    assert [box.type for box in tree] == ["ftyp", "mdat", "moov"]
    ftyp = tree[0]
    assert (ftyp.major_brand, ftyp.minor_version, list(ftyp.compatible_brands)) == ("isom", 0, ["bzna", "isom"])
    # mdat: the image, the thumbnail, the target (little-endian int64), the filename
    assert bytes(tree[1].data) == bytes(image.payload) + bytes(thumb.payload) + (7).to_bytes(8, "little") + b"coffee.jpg"
    mvhd = find(tree, "moov/mvhd")
    assert (mvhd.timescale, mvhd.duration, mvhd.next_track_id) == (20, 20, 5)
    traks = find_all(tree, "trak")
    payloads = {}
    for track_id, (trak, (name, handler, flags, media_header)) in enumerate(zip(traks, INNER_SEED), start=1):
        tkhd, mdhd, hdlr = find(trak, "tkhd"), find(trak, "mdia/mdhd"), find(trak, "mdia/hdlr")
        assert (tkhd.track_id, tkhd.flags) == (track_id, flags)
        assert (mdhd.timescale, mdhd.duration) == (20, 20)
        assert (hdlr.handler_type, hdlr.name.rstrip("\x00")) == (handler, name)
        assert find(trak, "mdia/minf").children[0].type == media_header
        stbl = find(trak, "mdia/minf/stbl")
        assert find(stbl, "stts").entries.tolist() == [(1, 20)]
        assert find(stbl, "stsc").entries.tolist() == [(1, 1, 1)]
        stsz, stco = find(stbl, "stsz"), find(stbl, "stco")
        assert stsz.sample_count == 1 and stco.entry_count == 1
        offset, size = int(stco.chunk_offsets[0]), int(stsz.entry_sizes[0])
        payloads[name] = data[offset : offset + size]
        entry = find(stbl, "stsd").children[0]
        if handler == "vide":
            frame = image if name == "bzna_input" else thumb
            assert (tkhd.width, tkhd.height) == (frame.width, frame.height)  # without padding
            assert entry.type == "hvc1" and (entry.horizresolution, entry.vertresolution) == (72.0, 72.0)
            assert (entry.width, entry.height) == (frame.frame_width, frame.frame_height)
            assert entry.width % 512 == 0 and entry.height % 512 == 0
            clap = find(entry, "clap")
            assert (clap.clean_aperture_width_n, clap.clean_aperture_width_d) == (frame.width, 1)
            assert (clap.clean_aperture_height_n, clap.clean_aperture_height_d) == (frame.height, 1)
            assert (clap.horiz_off_n, clap.horiz_off_d) == (-(frame.frame_width - frame.width), 2)
            assert (clap.vert_off_n, clap.vert_off_d) == (-(frame.frame_height - frame.height), 2)
        else:
            assert (tkhd.width, tkhd.height) == (0.0, 0.0)
            assert (entry.type, entry.mime_format) == ("mett", "application/octet-stream" if name == "bzna_target" else "text/plain")
    assert payloads == {
        "bzna_input": bytes(image.payload),
        "bzna_thumb": bytes(thumb.payload),
        "bzna_target": (7).to_bytes(8, "little"),
        "bzna_fname": b"coffee.jpg",
    }
    assert (image.frame_width, image.frame_height, image.width, image.height) == (1024, 512, 600, 400)
    assert (thumb.frame_width, thumb.frame_height, thumb.width, thumb.height) == (512, 512, 512, 341)


def test_layout_inner_sample_of_an_image_that_fits_the_thumbnail_frame():
    pytest.importorskip("av", reason="PyAV (libx265) is needed to encode the sample's frames")
    from bzna_boxes import encode, layout

    sample = encode.encode_image(encode.load_rgb(REPO / "fixtures/images/cat/chelsea_face.jpg"), preset="ultrafast", crf=30)
    assert sample.thumbnail is None  # 333x251 fits 512x512
    tree = Boxes.parse(layout.inner_sample(sample.image, None, -1, "chelsea_face.jpg"))
    image, thumb = (find(tree, f"moov/trak[{i}]/mdia/minf/stbl") for i in (0, 1))
    # "the thumbnail track will reference the same data as in the input track"
    assert find(thumb, "stco").chunk_offsets.tolist() == find(image, "stco").chunk_offsets.tolist()
    assert find(thumb, "stsz").entry_sizes.tolist() == find(image, "stsz").entry_sizes.tolist()
    assert find(tree, "moov/trak[1]/tkhd").flags == 0x000003
    assert bytes(tree[1].data).endswith((-1).to_bytes(8, "little", signed=True) + b"chelsea_face.jpg")
