"""DatasetWriter: the file it writes, field by field against the seed, read back and played by FFmpeg."""

from __future__ import annotations

import gc
import os
import shutil

import numpy as np
import pytest
from writer_support import FAST, IMAGES, crop_to_clap, decode, gradient, hvcc_of, inner_tracks, luma, psnr, sample_bytes, tables

from bzna_boxes import Box, BoxError, Boxes, find, layout
from bzna_boxes.encode import EncodedSample, encode_image, load_rgb, resized_size, thumbnail_size
from bzna_boxes.image import EncodedImage
from bzna_boxes import writer as writer_module
from bzna_boxes.writer import PAYLOAD_AT, DatasetWriter, InnerSample

av = pytest.importorskip("av", reason="PyAV (FFmpeg) is the reference client of what the writer writes")

# (width, height): smaller than, equal to and larger than 512 in each dimension, odd sizes included
SIZES = [(33, 17), (512, 512), (511, 513), (513, 200), (200, 700), (1025, 600), (640, 427)]


@pytest.fixture(scope="module")
def encoded() -> list[EncodedSample]:
    return [encode_image(gradient(w, h, seed=i), **FAST) for i, (w, h) in enumerate(SIZES)]


def targets_and_names(count: int) -> list[tuple[int, str]]:
    return [(i * 7 - 1, f"class_{i % 3}/image_{i}é.jpg") for i in range(count)]


def write(path, samples, names, missing=()) -> list[InnerSample | None]:
    """Write ``samples`` (None entries are missing) and return the inner samples written."""
    inner = []
    with DatasetWriter(path) as writer:
        for sample, (target, name) in zip(samples, names):
            if sample is None:
                writer.add_missing(target, name)
                inner.append(None)
            else:
                writer.add(sample, target, name)
                inner.append(InnerSample.from_encoded(sample, target, name))
    return inner


def leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# --- the inner sample -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a.jpg", "dossier/été/猫.png", "x" * 300])
def test_inner_sample_template_equals_layout(encoded, name):
    for i, sample in enumerate(encoded):
        inner = InnerSample.from_encoded(sample, i - 3, name)
        assert inner.data == layout.inner_sample(sample.image, sample.thumbnail, i - 3, name)
        assert (inner.thumbnail_offset, inner.thumbnail_size) == layout.inner_thumbnail_span(sample.image, sample.thumbnail)
        assert inner.target == i - 3 and inner.filename == name


def test_samples_with_their_own_hvcc_records_share_templates(encoded):
    """Samples from other processes (copies of the records, other field orders) lay out the same bytes."""
    import pickle

    for i, sample in enumerate(encoded):
        copy = pickle.loads(pickle.dumps(sample))
        reordered = EncodedImage(
            sample.image.payload, dict(reversed(sample.image.hvcc.items())), *[getattr(sample.image, f) for f in ("frame_width", "frame_height", "width", "height")]
        )
        expected = layout.inner_sample(sample.image, sample.thumbnail, i, "n.jpg")
        assert InnerSample.from_encoded(copy, i, "n.jpg").data == expected
        assert InnerSample.from_encoded(EncodedSample(reordered, sample.thumbnail), i, "n.jpg").data == expected
    other = dict(encoded[0].image.hvcc, general_level_idc=encoded[0].image.hvcc["general_level_idc"] + 3)
    changed = EncodedSample(EncodedImage(encoded[0].image.payload, other, *[getattr(encoded[0].image, f) for f in ("frame_width", "frame_height", "width", "height")]), encoded[0].thumbnail)
    assert InnerSample.from_encoded(changed, 0, "n.jpg").data == layout.inner_sample(changed.image, changed.thumbnail, 0, "n.jpg")


def test_one_template_serves_every_picture_size_of_a_frame_size():
    """Pictures of many sizes in the same frames (ImageNet's) share one template, each laid out as layout does."""
    import dataclasses

    from bzna_boxes import writer as writer_module

    sample = encode_image(gradient(300, 700, seed=2), preset="ultrafast")  # 1024x512 frame and a thumbnail
    writer_module._TEMPLATES.clear()
    writer_module._TEMPLATES_BY_ID.clear()
    for width, height in ((700, 300), (513, 257), (1024, 512), (600, 1)):
        image = dataclasses.replace(sample.image, width=width, height=height)
        thumbnail = dataclasses.replace(sample.thumbnail, width=512, height=max(1, round(512 * height / width)))
        inner = InnerSample.from_encoded(EncodedSample(image, thumbnail), 7, "a.jpg")
        assert inner.data == layout.inner_sample(image, thumbnail, 7, "a.jpg")
        small = dataclasses.replace(sample.thumbnail, width=min(width, 512), height=min(height, 512))
        assert InnerSample.from_encoded(EncodedSample(small, None), 7, "a.jpg").data == layout.inner_sample(small, None, 7, "a.jpg")
    assert len(writer_module._TEMPLATES) == 2  # with and without a thumbnail


def test_inner_sample_fields_against_seed(encoded):
    for (width, height), sample in zip(SIZES, encoded):
        data = InnerSample.from_encoded(sample, 42, "n01/x.jpg").data
        boxes = Boxes.parse(data)
        ftyp = boxes[0]
        assert (ftyp.major_brand, ftyp.minor_version, list(ftyp.compatible_brands)) == ("isom", 0, ["bzna", "isom"])
        mvhd = find(boxes, "moov/mvhd")
        assert (mvhd.timescale, mvhd.duration, mvhd.next_track_id) == (20, 20, 5)
        tracks = inner_tracks(data)
        assert list(tracks) == list(layout.INNER_TRACKS)
        image_w, image_h = resized_size(width, height, 512)
        thumb_w, thumb_h = thumbnail_size(image_w, image_h)
        expected = {
            "bzna_input": ("vide", 0, image_w, image_h),
            "bzna_thumb": ("vide", 3, thumb_w, thumb_h),
            "bzna_target": ("meta", 0, 0, 0),
            "bzna_fname": ("meta", 3, 0, 0),
        }
        for name, (handler, flags, w, h) in expected.items():
            track = tracks[name]
            assert track["hdlr"].handler_type == handler and track["hdlr"].name == name + "\x00"
            assert track["tkhd"].flags == flags and (track["tkhd"].width, track["tkhd"].height) == (w, h)
            mdhd = find(track["trak"], "mdia/mdhd")
            assert (mdhd.timescale, mdhd.duration) == (20, 20)
            stts = find(track["trak"], "mdia/minf/stbl/stts").entries
            assert stts.tolist() == [(1, 20)]
            stsc = find(track["trak"], "mdia/minf/stbl/stsc").entries
            assert stsc.tolist() == [(1, 1, 1)]
            assert find(track["trak"], "mdia/minf/" + ("vmhd" if handler == "vide" else "nmhd"))
        image = tracks["bzna_input"]["entry"]
        assert image.type == "hvc1" and image.width % 512 == 0 and image.height % 512 == 0
        assert image.width == -(-image_w // 512) * 512 and image.height == -(-image_h // 512) * 512
        clap = find(image, "clap")
        assert (clap.clean_aperture_width_n, clap.clean_aperture_height_n) == (image_w, image_h)
        assert (clap.horiz_off_n, clap.horiz_off_d) == (image_w - image.width, 2)
        assert (clap.vert_off_n, clap.vert_off_d) == (image_h - image.height, 2)
        thumb = tracks["bzna_thumb"]["entry"]
        assert (thumb.width, thumb.height) == (512, 512)
        assert tracks["bzna_input"]["payload"] == sample.image.payload
        if sample.thumbnail is None:
            assert max(image_w, image_h) <= 512
            assert tracks["bzna_thumb"]["payload"] == sample.image.payload
        else:
            assert tracks["bzna_thumb"]["payload"] == sample.thumbnail.payload
        assert tracks["bzna_target"]["entry"].mime_format == "application/octet-stream"
        assert tracks["bzna_fname"]["entry"].mime_format == "text/plain"
        assert int.from_bytes(tracks["bzna_target"]["payload"], "little", signed=True) == 42
        assert tracks["bzna_fname"]["payload"] == b"n01/x.jpg"


def test_inner_sample_opens_in_pyav(tmp_path, encoded):
    sample = encoded[SIZES.index((1025, 600))]
    path = tmp_path / "inner.mp4"
    path.write_bytes(InnerSample.from_encoded(sample, 1, "a.jpg").data)
    with av.open(str(path)) as container:
        videos = container.streams.video
        assert len(videos) == 2 and {s.codec_context.name for s in videos} == {"hevc"}
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(videos[0])]
    assert len(frames) == 1
    assert np.array_equal(frames[0], decode(sample.image.payload, sample.image.hvcc))
    assert frames[0].shape[:2] == (sample.image.frame_height, sample.image.frame_width)


# --- the outer file ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 7])
def test_round_trip_through_reader(tmp_path, encoded, count):
    path = tmp_path / "d.bzna"
    samples = [encoded[i % len(encoded)] for i in range(count)]
    names = targets_and_names(count)
    inner = write(path, samples, names)
    assert leftovers(tmp_path) == []

    boxes = Boxes.parse(path.read_bytes())
    assert [b.type for b in boxes] == ["ftyp", "free", "mdat", "moov"]
    assert boxes[2]._offset + 8 == PAYLOAD_AT
    mvhd = find(boxes, "moov/mvhd")
    assert (mvhd.timescale, mvhd.duration) == (20, 20 * count)
    assert mvhd.next_track_id == (5 if count else 4)

    found = tables(path)
    assert list(found) == ([*layout.OUTER_TRACKS] if count else [*layout.OUTER_TRACKS[:3]])
    assert sample_bytes(path) == [s.data for s in inner]
    target_bytes = sample_bytes(path, layout.TARGET_TRACK)
    assert [int.from_bytes(b, "little", signed=True) for b in target_bytes] == [t for t, _ in names]
    assert [b.decode() for b in sample_bytes(path, layout.FILENAME_TRACK)] == [n for _, n in names]
    # the three blocks of the seed's mdat: inner samples, then targets, then filenames
    offsets = {name: found[name][0] for name in found}
    if count:
        assert offsets["bzna_input"][0] == PAYLOAD_AT
        assert offsets["bzna_target"][0] == offsets["bzna_input"][-1] + found["bzna_input"][1][-1]
        assert offsets["bzna_fname"][0] == offsets["bzna_target"][-1] + 8
        assert offsets["bzna_fname"][-1] + found["bzna_fname"][1][-1] == boxes[2]._offset + boxes[2]._size
        video = sample_bytes(path, layout.VIDEO_TRACK)
        assert video == [bytes((s.thumbnail or s.image).payload) for s in samples]


def test_outer_fields_against_seed(tmp_path, encoded):
    path = tmp_path / "d.bzna"
    count = len(encoded)
    write(path, encoded, targets_and_names(count))
    boxes = Boxes.parse(path.read_bytes())
    ftyp = boxes[0]
    assert (ftyp.major_brand, ftyp.minor_version, list(ftyp.compatible_brands)) == ("isom", 0, ["bzna", "isom"])
    traks = [b for b in find(boxes, "moov").children if b.type == "trak"]
    expected = [
        ("bzna_input", "meta", 0, 0, "nmhd", 20, "mett"),
        ("bzna_target", "meta", 0, 0, "nmhd", 20, "mett"),
        ("bzna_fname", "meta", 3, 0, "nmhd", 20, "mett"),
        ("VideoHandler", "vide", 3, 512, "vmhd", 1, "hvc1"),
    ]
    for track_id, (trak, (name, handler, flags, size, header, delta, entry_type)) in enumerate(zip(traks, expected), 1):
        tkhd = find(trak, "tkhd")
        assert (tkhd.track_id, tkhd.flags, tkhd.width, tkhd.height) == (track_id, flags, size, size)
        hdlr = find(trak, "mdia/hdlr")
        assert (hdlr.handler_type, hdlr.name) == (handler, name + "\x00")
        mdhd = find(trak, "mdia/mdhd")
        assert (mdhd.timescale, mdhd.duration) == (20, delta * count)
        assert find(trak, f"mdia/minf/{header}")
        assert find(trak, "mdia/minf/dinf/dref/url ").flags == 1
        stbl = find(trak, "mdia/minf/stbl")
        assert find(stbl, "stts").entries.tolist() == [(count, delta)]
        assert find(stbl, "stsc").entries.tolist() == [(1, 1, 1)]
        assert find(stbl, "stsz").sample_size == 0 and len(find(stbl, "stsz").entry_sizes) == count
        assert len(find(stbl, "stco").chunk_offsets) == count
        entry = find(stbl, "stsd").children
        assert [e.type for e in entry] == [entry_type]
    mimes = [find(t, "mdia/minf/stbl/stsd/mett").mime_format for t in traks[:3]]
    assert mimes == ["application/octet-stream", "application/octet-stream", "text/plain"]
    video_entry = find(traks[3], "mdia/minf/stbl/stsd/hvc1")
    assert (video_entry.width, video_entry.height) == (512, 512)
    assert hvcc_of(video_entry)["arrays"] == hvcc_of_frame(encoded[0])["arrays"]


def hvcc_of_frame(sample: EncodedSample) -> dict:
    frame = sample.thumbnail or sample.image
    return dict(Box.parse(Box.build({"type": "hvcC", **frame.hvcc})))


def test_pyav_plays_the_video_track(tmp_path, encoded):
    path = tmp_path / "d.bzna"
    samples = [*encoded, None, encoded[0]]
    write(path, samples, targets_and_names(len(samples)))
    with av.open(str(path)) as container:
        (stream,) = container.streams.video
        assert stream.codec_context.name == "hevc" and (stream.width, stream.height) == (512, 512)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == len(samples)
    shown = [s if s is not None else encoded[-1] for s in samples]  # the missing one shows its nearest neighbour
    for frame, sample in zip(frames, shown):
        thumb = sample.thumbnail or sample.image
        assert np.array_equal(frame, decode(thumb.payload, thumb.hvcc))


def test_missing_samples_keep_their_index(tmp_path, encoded):
    path = tmp_path / "d.bzna"
    a, b = encoded[0], encoded[2]
    samples = [None, a, None, None, None, b, None]
    names = targets_and_names(len(samples))
    inner = write(path, samples, names)
    found = tables(path)
    sizes = found["bzna_input"][1]
    assert sizes.tolist() == [0 if s is None else len(i.data) for s, i in zip(samples, inner)]
    assert [int.from_bytes(x, "little", signed=True) for x in sample_bytes(path, layout.TARGET_TRACK)] == [t for t, _ in names]
    assert [x.decode() for x in sample_bytes(path, layout.FILENAME_TRACK)] == [n for _, n in names]
    # video: nearest present sample, the earlier one on a tie
    nearest = [1, 1, 1, 1, 5, 5, 5]
    video_offsets = found["VideoHandler"][0]
    assert video_offsets.tolist() == [video_offsets[k] for k in nearest]
    assert sample_bytes(path, layout.VIDEO_TRACK)[0] == bytes((a.thumbnail or a.image).payload)


def test_all_missing_has_no_video_track(tmp_path):
    path = tmp_path / "d.bzna"
    with DatasetWriter(path) as writer:
        writer.add_missing(3, "a.jpg")
        writer.add_missing(-1, "b.jpg")
    found = tables(path)
    assert list(found) == list(layout.OUTER_TRACKS[:3])
    assert found["bzna_input"][1].tolist() == [0, 0]
    assert [x.decode() for x in sample_bytes(path, layout.FILENAME_TRACK)] == ["a.jpg", "b.jpg"]


def test_thumbnails_of_other_presets_get_their_own_sample_entry(tmp_path):
    rgb = gradient(300, 200)
    fast = encode_image(rgb, preset="ultrafast")
    slow = encode_image(rgb, preset="fast")
    assert Box.build({"type": "hvcC", **fast.image.hvcc}) != Box.build({"type": "hvcC", **slow.image.hvcc})
    path = tmp_path / "d.bzna"
    samples = [fast, fast, slow, None, fast]
    write(path, samples, targets_and_names(len(samples)))
    stbl = find(Boxes.parse(path.read_bytes()), "moov/trak[3]/mdia/minf/stbl")
    assert [e.type for e in find(stbl, "stsd").children] == ["hvc1", "hvc1"]
    assert find(stbl, "stsc").entries.tolist() == [(1, 1, 1), (3, 1, 2), (5, 1, 1)]
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    shown = [fast, fast, slow, slow, fast]
    assert len(frames) == len(samples)
    for frame, sample in zip(frames, shown):
        assert np.array_equal(frame, decode(sample.image.payload, sample.image.hvcc))


def with_sparse_gap(monkeypatch, writer: DatasetWriter, gap: int) -> None:
    """Make ``writer`` leave ``gap`` unwritten bytes (sparse, reading as zeros) before its second
    sample, as if samples of that size lay there: the file goes past 4 GiB without 4 GiB of writing."""
    write = writer._write
    starts = writer_module._starts
    skipped = []

    def write_after_gap(data):
        if len(writer) == 1 and not skipped:  # before the second sample
            writer._file.seek(gap, os.SEEK_CUR)
            writer._pos += gap
            skipped.append(gap)
        return write(data)

    def starts_after_gap(first, sizes):
        found = starts(first, sizes)
        if first == PAYLOAD_AT:  # the input samples
            found[1:] += np.uint64(gap)
        return found

    monkeypatch.setattr(writer, "_write", write_after_gap)
    monkeypatch.setattr(writer_module, "_starts", starts_after_gap)


def test_past_4_gib_uses_co64_and_largesize(tmp_path, encoded, monkeypatch):
    if shutil.disk_usage(tmp_path).free < 6 << 30:
        pytest.skip("needs 6 GiB free in case the file system cannot hold a sparse file")
    path = tmp_path / "big.bzna"
    gap = (1 << 32) + 12345
    sample = encoded[0]
    with DatasetWriter(path, fsync=False) as writer:
        with_sparse_gap(monkeypatch, writer, gap)
        writer.add(sample, 1, "first.jpg")
        writer.add(sample, 2, "second.jpg")
        writer.add_missing(3, "missing.jpg")
        writer.add(encoded[3], 4, "fourth.jpg")
    size = os.path.getsize(path)
    assert size > 1 << 32
    inner = [InnerSample.from_encoded(s, t, n) for s, t, n in [(sample, 1, "first.jpg"), (sample, 2, "second.jpg"), (encoded[3], 4, "fourth.jpg")]]
    with open(path, "rb") as f:
        head = f.read(40)
        assert head[24:28] == (1).to_bytes(4, "big") and head[28:32] == b"mdat"
        mdat_size = int.from_bytes(head[32:40], "big")
        f.seek(24 + mdat_size)
        moov_bytes = f.read()
    assert 24 + mdat_size + len(moov_bytes) == size and mdat_size > 1 << 32
    moov = Box.parse(moov_bytes)
    for trak in (b for b in moov.children if b.type == "trak"):
        stbl = find(trak, "mdia/minf/stbl")
        assert find(stbl, "co64", None) is not None and find(stbl, "stco", None) is None
    found = tables(path)
    first = len(inner[0].data)
    expected = [PAYLOAD_AT, PAYLOAD_AT + first + gap, PAYLOAD_AT + first + gap + len(inner[1].data)]
    expected.append(expected[2])
    assert found["bzna_input"][0].tolist() == expected
    assert found["bzna_input"][1].tolist() == [first, len(inner[1].data), 0, len(inner[2].data)]
    assert sample_bytes(path) == [inner[0].data, inner[1].data, b"", inner[2].data]
    assert [x.decode() for x in sample_bytes(path, layout.FILENAME_TRACK)] == ["first.jpg", "second.jpg", "missing.jpg", "fourth.jpg"]
    assert int(found["bzna_target"][0][0]) > 1 << 32


# --- atomicity --------------------------------------------------------------------------------


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_exception_leaves_no_file(tmp_path, encoded, exception):
    path = tmp_path / "d.bzna"
    with pytest.raises(exception):
        with DatasetWriter(path) as writer:
            writer.add(encoded[0], 0, "a.jpg")
            assert len(leftovers(tmp_path)) == 1
            raise exception("stop")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path, encoded):
    path = tmp_path / "d.bzna"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with DatasetWriter(path) as writer:
            writer.add(encoded[0], 0, "a.jpg")
            raise RuntimeError("stop")
    assert path.read_bytes() == b"previous" and leftovers(tmp_path) == []
    with DatasetWriter(path) as writer:
        writer.add(encoded[0], 0, "a.jpg")
    assert len(tables(path)["bzna_input"][1]) == 1 and leftovers(tmp_path) == []


def test_forgotten_writer_removes_its_temporary_file(tmp_path, encoded):
    writer = DatasetWriter(tmp_path / "d.bzna")
    writer.add(encoded[0], 0, "a.jpg")
    del writer
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_misuse_raises(tmp_path, encoded):
    path = tmp_path / "d.bzna"
    with DatasetWriter(path) as writer:
        with pytest.raises(TypeError):
            writer.add("not an image", 0, "a.jpg")
        with pytest.raises(ValueError, match="int64"):
            writer.add(encoded[0], 1 << 63, "a.jpg")
        with pytest.raises(ValueError, match="int64"):
            writer.add_missing(-(1 << 64), "a.jpg")
        with pytest.raises(ValueError, match="thumbnail"):
            writer.add_sample(InnerSample(b"abc", 2, 5, b"", 0, "a.jpg"))
        big = encoded[SIZES.index((1025, 600))]
        no_thumb = EncodedSample(big.image, None)  # a 1024x512 frame cannot be a 512x512 thumbnail
        with pytest.raises(ValueError, match="512x512"):
            writer.add(no_thumb, 0, "a.jpg")
        assert len(writer) == 0
    with pytest.raises(ValueError, match="closed"):
        writer.add(encoded[0], 0, "a.jpg")
    assert len(tables(path)["bzna_input"][1]) == 0
    with pytest.raises(IsADirectoryError):
        DatasetWriter(tmp_path)


def test_add_encodes_arrays_with_the_writer_options(tmp_path):
    rgb = gradient(40, 30)
    path = tmp_path / "d.bzna"
    with DatasetWriter(path, preset="ultrafast", crf=30) as writer:
        writer.add(rgb, 5, "a.jpg")
    expected = InnerSample.from_encoded(encode_image(rgb, preset="ultrafast", crf=30), 5, "a.jpg")
    assert sample_bytes(path) == [expected.data]


def test_bad_hvcc_raises_box_error(tmp_path):
    """A hand-made EncodedImage with a bad hvcC fails while building, with a BoxError naming the box."""
    frame = EncodedImage(b"\x00\x00\x00\x01\x26", {"arrays": "bad"}, 512, 512, 10, 10)
    with DatasetWriter(tmp_path / "d.bzna") as writer:
        with pytest.raises(BoxError, match="hvcC"):
            writer.add(EncodedSample(frame, None), 0, "a.jpg")


# --- quality at the default settings, on the fixture photographs ------------------------------


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory):
    """The fixture photographs written at the default encoder settings (the one slow encode)."""
    paths = sorted(IMAGES.rglob("*.jpg"))
    sources = [load_rgb(p) for p in paths]
    path = tmp_path_factory.mktemp("default") / "photos.bzna"
    with DatasetWriter(path) as writer:
        for i, rgb in enumerate(sources):
            writer.add(rgb, i, paths[i].relative_to(IMAGES).as_posix())
    return path, paths, sources


def resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def test_default_quality_on_photographs(default_dataset):
    path, paths, sources = default_dataset
    inner = sample_bytes(path)
    assert len(inner) == len(paths)
    for data, source, name in zip(inner, sources, paths):
        tracks = inner_tracks(data)
        image_size = resized_size(source.shape[1], source.shape[0], 512)
        reference = resized(source, image_size)
        for track, size in (("bzna_input", image_size), ("bzna_thumb", thumbnail_size(*image_size))):
            entry = tracks[track]["entry"]
            decoded = decode(tracks[track]["payload"], hvcc_of(entry))
            assert decoded.shape[:2] == (entry.height, entry.width)
            picture = crop_to_clap(decoded, entry)
            assert (picture.shape[1], picture.shape[0]) == size, name
            expected = resized(reference, size)
            assert psnr(luma(picture), luma(expected)) >= 38, (name.name, track)
            assert psnr(picture, expected) >= 32, (name.name, track)


def test_bytes_per_image_against_the_source_jpegs(default_dataset):
    path, paths, _ = default_dataset
    stored = sum(len(x) for x in sample_bytes(path))
    jpeg = sum(p.stat().st_size for p in paths)
    print(f"\n{len(paths)} photographs: {stored / len(paths):.0f} bytes per inner sample (image + thumbnail + moov) "
          f"vs {jpeg / len(paths):.0f} per source JPEG q90 ({stored / jpeg:.2f}x)")
    assert stored < 2 * jpeg  # H.265 at CRF 18 plus a thumbnail stays in the JPEG's range


def test_writer_takes_array_likes_and_checks_its_options(tmp_path):
    from PIL import Image

    rgb = gradient(30, 20)
    with DatasetWriter(tmp_path / "d.bzna", preset="ultrafast") as writer:
        writer.add(Image.fromarray(rgb), 0, "pil.png")
        writer.add(rgb, 0, "arr.png")
    first, second = sample_bytes(tmp_path / "d.bzna")
    assert first.replace(b"pil.png", b"xxx.png") == second.replace(b"arr.png", b"xxx.png")
    with pytest.raises(TypeError, match="crf"):
        DatasetWriter(tmp_path / "e.bzna", cfr=20)
    assert sorted(os.listdir(tmp_path)) == ["d.bzna"]


def test_dataset_view_reads_what_the_writer_wrote(tmp_path, encoded):
    from bzna_boxes import Dataset

    path = tmp_path / "d.bzna"
    samples = [encoded[0], None, *encoded[1:]]
    names = targets_and_names(len(samples))
    write(path, samples, names)
    with Dataset(path) as ds:
        assert len(ds) == len(samples)
        assert ds.targets.tolist() == [t for t, _ in names]
        assert ds.missing.tolist() == [i for i, s in enumerate(samples) if s is None]
        for sample, (target, name), item in zip(samples, names, ds):
            assert (item.target, item.filename) == (target, name)
            if sample is None:
                continue
            for track, frame in (("bzna_input", sample.image), ("bzna_thumb", sample.thumbnail or sample.image)):
                image = item.image(track)
                assert bytes(image.payload) == bytes(frame.payload)
                assert (image.frame_width, image.frame_height) == (frame.frame_width, frame.frame_height)
                aperture = image.clean_aperture
                assert (aperture.x, aperture.y, aperture.width, aperture.height) == (0, 0, frame.width, frame.height)
