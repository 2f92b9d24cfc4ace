"""Dataset, ImageNet and Sample (bzna_boxes.dataset): fields read back exactly, splits, missing
samples, pickling, readers in two processes, the inner pictures against the encoder's output and
against the box engine's parse, and malformed inner samples."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzna_boxes import Box, Boxes, BoxError, Dataset, ImageNet, Sample, find, find_all, layout
from bzna_boxes.dataset import MissingSampleError, inner_image, split_range
from bzna_boxes.image import CleanAperture, EncodedImage

from bzna_factory import Entry, encoded_entries, plain_entries, read_everything, write_dataset, write_numbered


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    entries = plain_entries(60, seed=3, missing=(0, 7, 59), no_target=(7, 30))
    path = tmp_path_factory.mktemp("plain") / "plain.bzna"
    write_dataset(path, entries)
    return path, entries


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The fixture photographs encoded (x265 ultrafast), with a missing sample in the middle."""
    entries, encoded, video_hvcc = encoded_entries()
    entries.insert(3, Entry(None, 42, "lost.JPEG"))
    encoded.insert(3, None)
    path = tmp_path_factory.mktemp("photos") / "photos.bzna"
    write_dataset(path, entries, video_hvcc)
    return path, entries, encoded


def test_every_field_reads_back_exactly(plain):
    path, entries = plain
    ds = Dataset(path)
    assert len(ds) == len(entries)
    for sample, entry in zip(ds, entries):
        assert isinstance(sample, Sample)
        assert bytes(sample.data) == (entry.inner or b"")
        assert sample.size == len(entry.inner or b"")
        assert sample.missing == (entry.inner is None)
        assert sample.target == (-1 if entry.target is None else entry.target)
        assert sample.filename == entry.filename
    expected = np.array([-1 if e.target is None else e.target for e in entries], np.int64)
    assert ds.targets.dtype == np.int64 and np.array_equal(ds.targets, expected)
    assert ds.missing.tolist() == [0, 7, 59]
    assert ds[-1].index == len(entries) - 1 and ds[-len(entries)].index == 0
    with pytest.raises(IndexError):
        ds[len(entries)]
    with pytest.raises(IndexError):
        ds[-len(entries) - 1]


def test_data_is_a_zero_copy_view(plain):
    path, entries = plain
    ds = Dataset(path)
    data = ds[1].data
    assert isinstance(data, memoryview) and data.readonly and data.obj is not None
    assert bytes(data) == entries[1].inner


def test_targets_in_one_block_and_by_gather_agree(tmp_path):
    entries = plain_entries(25, seed=5)
    write_dataset(tmp_path / "block.bzna", entries)  # targets back to back: one frombuffer
    with_holes = [Entry(e.inner, None if i % 4 == 1 else e.target, e.filename) for i, e in enumerate(entries)]
    write_dataset(tmp_path / "holes.bzna", with_holes)  # some sizes 0: the gather path (odd offsets too)
    block, holes = Dataset(tmp_path / "block.bzna"), Dataset(tmp_path / "holes.bzna")
    assert block.targets.tolist() == [e.target for e in entries]
    assert holes.targets.tolist() == [-1 if i % 4 == 1 else e.target for i, e in enumerate(entries)]
    assert [s.target for s in holes] == holes.targets.tolist()


def test_a_dataset_without_target_track_has_targets_minus_one(tmp_path):
    entries = plain_entries(5)
    write_dataset(tmp_path / "t.bzna", entries)
    # drop the bzna_target trak from the moov: the reader reports -1, not an error
    data = (tmp_path / "t.bzna").read_bytes()
    boxes = Boxes.parse(data)
    moov = boxes[-1]
    moov.children = [c for c in moov.children if not (c.type == "trak" and find(c, "mdia/hdlr").name.startswith(layout.TARGET_TRACK))]
    (tmp_path / "u.bzna").write_bytes(Boxes.build(boxes))
    ds = Dataset(tmp_path / "u.bzna")
    assert ds.targets.tolist() == [-1] * 5 and ds[2].target == -1 and ds[2].filename == entries[2].filename


def test_a_target_of_the_wrong_size_names_track_and_sample(tmp_path):
    write_dataset(tmp_path / "t.bzna", plain_entries(4))
    boxes = Boxes.parse((tmp_path / "t.bzna").read_bytes())
    stsz = find(boxes, "moov/trak[1]/mdia/minf/stbl/stsz")
    sizes = stsz.entry_sizes.copy()
    sizes[2] = 4
    stsz.entry_sizes = sizes
    (tmp_path / "u.bzna").write_bytes(Boxes.build(boxes))
    with pytest.raises(BoxError, match="track 2 'bzna_target': sample 2 has 4 bytes"):
        Dataset(tmp_path / "u.bzna").targets


def test_missing_sample_has_no_image(plain):
    path, _ = plain
    sample = Dataset(path)[7]
    assert sample.missing and bytes(sample.data) == b"" and sample.target == -1
    with pytest.raises(MissingSampleError, match="sample 7 .* missing"):
        sample.image()
    assert isinstance(MissingSampleError("x"), LookupError)
    assert "missing" in repr(sample)


def test_not_a_dataset(tmp_path):
    with pytest.raises(BoxError, match="not a .bzna dataset"):
        Dataset(Path(__file__).resolve().parent.parent / "fixtures" / "media" / "h264.mp4")


# --- splits -------------------------------------------------------------------------------------


def test_split_boundaries_of_the_seed():
    n = layout.IMAGENET_LENGTH
    assert split_range(n, "train") == (0, 1_281_167)
    assert split_range(n, "val") == (1_281_167, 1_331_167)
    assert split_range(n, "test") == (1_331_167, 1_431_167)
    assert split_range(n, None) == (0, n)


def test_imagenet_splits_count_from_the_end(tmp_path):
    n = 150_000 + 1_234
    path = tmp_path / "numbered.bzna"
    write_numbered(path, n)
    whole = ImageNet(path)
    assert len(whole) == n
    train, val, test = (ImageNet(path, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1_234, 50_000, 100_000)
    assert (train[0].index, val[0].index, test[0].index) == (0, 1_234, 51_234)
    assert (train[-1].index, val[-1].index, test[-1].index) == (1_233, 51_233, n - 1)
    assert test[5].filename == str(51_239) and test[5].target == 51_239 % 1000 and bytes(test[5].data) == bytes([51_239 % 251])
    assert np.array_equal(val.targets, (np.arange(1_234, 51_234) % 1000))
    assert np.array_equal(np.concatenate([train.targets, val.targets, test.targets]), whole.targets)
    with pytest.raises(IndexError):
        train[1_234]


def test_imagenet_split_of_a_file_too_short(tmp_path):
    path = tmp_path / "short.bzna"
    write_numbered(path, 120_000)
    assert len(ImageNet(path, "test")) == 100_000
    with pytest.raises(ValueError, match=r"split 'val' needs at least 150,000 samples .* this file has 120,000"):
        ImageNet(path, "val")
    with pytest.raises(ValueError, match=r"split 'train' needs at least 150,001"):
        ImageNet(path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        ImageNet(path, "validation")


# --- pickling and processes --------------------------------------------------------------------


def test_pickles_by_path(plain):
    path, _ = plain
    ds = ImageNet(path)
    data = pickle.dumps(ds)
    assert len(data) < 500  # the path and the range, not the tables
    copy = pickle.loads(data)
    assert copy._cols is None and copy.split is None
    assert read_everything(copy) == read_everything(ds)


def _digest(dataset) -> str:
    return hashlib.sha256(repr(read_everything(dataset)).encode()).hexdigest()


def test_concurrent_readers_in_two_processes(plain):
    path, _ = plain
    ds = Dataset(path)
    expected = _digest(ds)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        digests = pool.map(_digest, [ds, ds])
    assert digests == [expected, expected]


# --- inner pictures ----------------------------------------------------------------------------


def _expected_image(frame) -> dict:
    return dict(
        payload=frame.payload,
        frame_width=frame.frame_width,
        frame_height=frame.frame_height,
        width=frame.width,
        height=frame.height,
        clean_aperture=CleanAperture.from_clap(layout.clean_aperture(frame), frame.frame_width, frame.frame_height),
    )


def _check(image: EncodedImage, frame) -> None:
    assert isinstance(image, EncodedImage) and isinstance(image.payload, memoryview)
    got = dict(payload=bytes(image.payload), frame_width=image.frame_width, frame_height=image.frame_height, width=image.width, height=image.height, clean_aperture=image.clean_aperture)
    assert got == _expected_image(frame)
    assert image.codec == "hvc1" and image.length_size == 4
    for key, value in frame.hvcc.items():
        if key != "arrays":
            assert image.hvcc[key] == value, key
    assert [(a.nal_unit_type, list(a.nalus)) for a in image.hvcc["arrays"]] == [(a["nal_unit_type"], a["nalus"]) for a in frame.hvcc["arrays"]]


def test_images_and_thumbnails_equal_what_was_encoded(photos):
    path, entries, encoded = photos
    ds = Dataset(path)
    for sample, entry, enc in zip(ds, entries, encoded):
        assert sample.filename == entry.filename and sample.target == entry.target
        if enc is None:
            assert sample.missing
            continue
        _check(sample.image(), enc.image)
        _check(sample.image(layout.INPUT_TRACK), enc.image)
        # a picture that fits 512x512 has no thumbnail of its own: bzna_thumb is the image
        _check(sample.image(layout.THUMB_TRACK), enc.thumbnail or enc.image)


def test_the_quick_inner_reader_agrees_with_the_box_engine(photos):
    path, _, _ = photos
    ds = Dataset(path)
    for sample in ds:
        if sample.missing:
            continue
        tree = Boxes.parse(sample.data)
        for trak in (c for c in find(tree, "moov").children if c.type == "trak"):
            name = find(trak, "mdia/hdlr").name.rstrip("\x00")
            if find(trak, "mdia/hdlr").handler_type != "vide":
                continue
            entry = find(trak, "mdia/minf/stbl/stsd").children[0]
            offset = int(find(trak, "mdia/minf/stbl/stco").chunk_offsets[0])
            size = int(find(trak, "mdia/minf/stbl/stsz").entry_sizes[0])
            image = sample.image(name)
            assert bytes(image.payload) == bytes(sample.data[offset : offset + size])
            assert (image.frame_width, image.frame_height) == (entry.width, entry.height)
            assert (image.width, image.height) == (find(trak, "tkhd").width, find(trak, "tkhd").height)
            assert image.hvcc == find(entry, "hvcC")
            assert image.clean_aperture == CleanAperture.from_clap(find(entry, "clap"), entry.width, entry.height)


def test_an_inner_picture_decodes_with_ffmpeg(photos):
    av = pytest.importorskip("av", reason="PyAV decodes the picture")
    from bzna_boxes.hevc import to_annexb

    path, _, encoded = photos
    image = Dataset(path)[5].image(layout.THUMB_TRACK)
    codec = av.CodecContext.create("hevc", "r")
    frames = list(codec.decode(av.Packet(bytes(to_annexb(image))))) + list(codec.decode(None))
    assert [(f.width, f.height) for f in frames] == [(image.frame_width, image.frame_height)]


def test_a_dataset_from_the_writer_reads_back(tmp_path, photos):
    writer = pytest.importorskip("bzna_boxes.writer", reason="DatasetWriter is another module")
    _, entries, encoded = photos
    path = tmp_path / "written.bzna"
    with writer.DatasetWriter(path, fsync=False) as out:
        for entry, enc in zip(entries, encoded):
            if enc is None:
                out.add_missing(entry.target, entry.filename)
            else:
                out.add(enc, entry.target, entry.filename)
    ds = Dataset(path)
    assert [(s.target, s.filename, s.missing) for s in ds] == [(e.target, e.filename, e.inner is None) for e in entries]
    for sample, enc in zip(ds, encoded):
        if enc is not None:
            _check(sample.image(layout.THUMB_TRACK), enc.thumbnail or enc.image)


# --- malformed inner samples -------------------------------------------------------------------


def test_an_inner_sample_that_is_not_an_mp4(plain):
    path, _ = plain
    with pytest.raises(BoxError) as info:
        Dataset(path)[1].image()
    assert info.value.path.startswith("bzna_input[1]")


def test_an_inner_sample_without_the_track(photos):
    path, _, _ = photos
    sample = Dataset(path)[0]
    with pytest.raises(BoxError, match=r"no track 'bzna_depth' \(it has 'bzna_input', 'bzna_thumb', 'bzna_target', 'bzna_fname'\)"):
        sample.image("bzna_depth")


def test_errors_name_the_exact_box_path(photos):
    path, entries, _ = photos
    inner = bytearray(entries[0].inner)
    tree = Boxes.parse(bytes(inner))
    clap = find(tree, "moov/trak[1]/mdia/minf/stbl/stsd/hvc1/clap")
    inner[clap._offset : clap._offset + 4] = (7).to_bytes(4, "big")  # clap box of 7 bytes: too small
    view = memoryview(bytes(inner))
    with pytest.raises(BoxError) as info:
        inner_image(view, 0, len(view), layout.THUMB_TRACK, "bzna_input[0]")
    assert info.value.path == "bzna_input[0]/moov/trak[1]/mdia/minf/stbl/stsd/hvc1/clap" and info.value.offset == clap._offset


@settings(max_examples=150)
@given(st.data())
def test_corrupted_inner_samples_raise_box_error_only(photos, data):
    path, entries, _ = photos
    inner = bytearray(entries[1].inner)
    moov_at = len(inner) - find(Boxes.parse(bytes(inner)), "moov")._size
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(moov_at, len(inner) - 1))
        inner[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(moov_at, len(inner)))
    view = memoryview(bytes(inner[:cut]))
    for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
        try:
            image = inner_image(view, 0, len(view), track, "bzna_input[1]")
        except BoxError as exc:
            assert exc.path and exc.path.startswith("bzna_input[1]") and exc.offset is not None
        else:
            assert len(image.payload) <= len(view)


@pytest.mark.parametrize("mdat_to_the_end", [False, True], ids=["moov-first", "moov-first-mdat-size-0"])
def test_a_remuxed_dataset_with_moov_first_reads_the_same(tmp_path, photos, mdat_to_the_end):
    """What another tool may write: moov before mdat (chunk offsets shifted), mdat sized 0 (to the end)."""
    path, _, _ = photos
    data = path.read_bytes()
    boxes = Boxes.parse(data)
    mdat, moov = find(boxes, "mdat"), find(boxes, "moov")
    payload = bytes(mdat.data)
    mdat_header = b"\x00\x00\x00\x00mdat" if mdat_to_the_end else (8 + len(payload)).to_bytes(4, "big") + b"mdat"
    ftyp = Box.build(find(boxes, "ftyp"))
    moov_size = len(Box.build(moov))
    shift = len(ftyp) + moov_size + len(mdat_header) - (mdat._offset + mdat._size - len(payload))
    for offsets in find_all(moov, "stco") + find_all(moov, "co64"):
        offsets.chunk_offsets = offsets.chunk_offsets + shift
    remuxed = tmp_path / "remuxed.bzna"
    remuxed.write_bytes(ftyp + Box.build(moov) + mdat_header + payload)
    assert len(Box.build(moov)) == moov_size
    with Dataset(path) as original, Dataset(remuxed) as other:
        assert read_everything(other) == read_everything(original)
        present = [i for i in range(len(original)) if i not in set(original.missing)]
        assert list(other.missing) == list(original.missing) and present
        assert [bytes(other[i].image().payload) for i in present] == [bytes(original[i].image().payload) for i in present]
