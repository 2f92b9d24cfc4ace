"""The readers above the index through a storage that cannot map the file (as an object store):
Dataset, Dataset.fetch, the Loader, verify, extract and concat read the same bytes, report the
same problems at the same file offsets, and read in bulk (few requests), as through the map."""

from __future__ import annotations

import os
import re
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

import bzna_boxes as bz
from bzna_boxes import BoxError, Dataset, ImageNet, layout
from bzna_boxes.dataset import MissingSampleError
from bzna_boxes.storage import LocalStorage, gather
from bzna_boxes.verify import extract, verify
from bzna_boxes.writer import concat

from bzna_factory import Entry, plain_entries, write_dataset
from bzna_samples import build_dataset, fixture_photographs
from storage_support import OPENED, UnmappedStorage, open_unmapped

PACKAGE = Path(__file__).resolve().parent.parent / "bzna_boxes"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The fixture photographs (real H.265, thumbnails, checksums), a missing sample at index 2."""
    items = [(encoded, index, name) for index, (name, _, encoded) in enumerate(fixture_photographs())]
    items.insert(2, (None, 7, "lost.JPEG"))
    return build_dataset(tmp_path_factory.mktemp("unmapped") / "photos.bzna", items)


def damaged(src: Path, dst: Path, index: int, at: int, length: int = 8) -> Path:
    """``src`` with ``length`` bytes of input sample ``index`` flipped from ``at`` into it."""
    data = bytearray(src.read_bytes())
    with bz.open(src) as file:
        start = int(file.track(layout.INPUT_TRACK).offsets[index]) + at
    data[start : start + length] = bytes(b ^ 0xFF for b in data[start : start + length])
    dst.write_bytes(bytes(data))
    return dst


def test_dataset_reads_the_same_through_a_storage_without_map(tmp_path):
    entries = plain_entries(40, seed=4, missing=(0, 9), no_target=(9, 20))
    holes = [Entry(e.inner, None if i % 5 == 1 else e.target, e.filename) for i, e in enumerate(entries)]
    for name, items in (("block.bzna", entries), ("holes.bzna", holes)):  # targets in one block; by gather
        path = tmp_path / name
        write_dataset(path, items)
        local, remote = Dataset(path), Dataset(open_unmapped(path))
        storage = remote.file.storage
        assert np.array_equal(remote.targets, local.targets)
        assert storage.requests == 1  # every target in one request
        assert [s.filename for s in remote] == [s.filename for s in local] == [e.filename for e in items]
        assert storage.requests == 2  # every filename in one more
        for mine, theirs in zip(remote, local):
            assert isinstance(mine.data, memoryview) and bytes(mine.data) == bytes(theirs.data)
            assert (mine.missing, mine.target) == (theirs.missing, theirs.target)


def test_images_read_the_same_and_errors_name_file_offsets(photos, tmp_path):
    local, remote = Dataset(photos), Dataset(open_unmapped(photos))
    for mine, theirs in zip(remote, local):
        if theirs.missing:
            with pytest.raises(MissingSampleError):
                mine.image()
            continue
        for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
            a, b = mine.image(track), theirs.image(track)
            assert bytes(a.payload) == bytes(b.payload) and a.hvcc == b.hvcc
            assert (a.width, a.height, a.clean_aperture) == (b.width, b.height, b.clean_aperture)
    broken = damaged(photos, tmp_path / "broken.bzna", 1, layout.FILE_TYPE_SIZE, 8)  # the inner mdat's header
    with pytest.raises(BoxError) as through_map:
        Dataset(broken)[1].image()
    with pytest.raises(BoxError) as through_storage:
        Dataset(open_unmapped(broken))[1].image()
    with pytest.raises(BoxError) as fetched:
        Dataset(open_unmapped(broken)).fetch([1])[0].image()
    assert through_map.value.offset > int(Dataset(broken).file.track(layout.INPUT_TRACK).offsets[1])
    for error in (through_storage.value, fetched.value):
        assert (str(error), error.offset, error.path) == (str(through_map.value), through_map.value.offset, through_map.value.path)


def test_fetch_reads_a_batch_in_one_request(photos):
    local, remote = Dataset(photos), ImageNet(open_unmapped(photos))
    storage = remote.file.storage
    picked = [5, 0, 2, -1, 5]
    fetched = remote.fetch(picked)
    assert storage.requests == 1 and len(storage.batches[0][1]) == len(picked)
    assert [s.index for s in fetched] == [5, 0, 2, len(local) - 1, 5]
    assert [bytes(s.data) for s in fetched] == [bytes(local[i].data) for i in picked]
    assert fetched[2].missing and fetched[0].image().payload == local[5].image().payload
    view = remote[3:7]
    assert [s.index for s in view.fetch([0, 3])] == [3, 6]
    assert [s.index for s in local.fetch(np.array([1, 4]))] == [1, 4]  # through the map: slices of it
    with pytest.raises(IndexError):
        view.fetch([4])
    assert remote.fetch([]) == []


def test_gather_merges_neighbours_and_finds_every_span(tmp_path):
    data = bytes(range(256)) * 40
    path = tmp_path / "bytes"
    path.write_bytes(data)
    offsets = np.array([100, 0, 10, 14, 5000, 20, 5004, 9000], np.uint64)  # unordered, touching, inside another
    sizes = np.array([8, 10, 4, 6, 8, 0, 2, 240], np.uint32)
    with closing(UnmappedStorage(LocalStorage(path))) as storage:
        found, positions = gather(storage, offsets, sizes)
        assert storage.requests == 1
        assert storage.batches[0][1] == [(0, 20), (100, 8), (5000, 8), (9000, 240)]  # the runs, in file order
    assert isinstance(found, bytes) and len(found) == 20 + 8 + 8 + 240
    for offset, size, at in zip(offsets.tolist(), sizes.tolist(), positions.tolist()):
        assert found[at : at + size] == data[offset : offset + size]
    with closing(LocalStorage(path)) as storage:
        whole, same = gather(storage, offsets, sizes)  # a map: nothing read, the offsets themselves
        assert isinstance(whole, memoryview) and len(whole) == len(data) and same.tolist() == offsets.tolist()
        sliced, same = gather(storage, offsets, sizes, as_bytes=True)  # the map: its slices are bytes
        assert same.tolist() == offsets.tolist()
        assert all(sliced[o : o + n] == data[o : o + n] and type(sliced[o : o + n]) is bytes for o, n in zip(offsets.tolist(), sizes.tolist()))
        whole.release()


def test_verify_finds_the_same_through_a_storage_without_map(photos, tmp_path, monkeypatch):
    broken = damaged(photos, tmp_path / "broken.bzna", 4, layout.FILE_TYPE_SIZE, 8)
    expected = [verify(path, decode=True) for path in (photos, broken)]
    monkeypatch.setattr("bzna_boxes.verify.BznaFile", open_unmapped)
    found = [verify(path, decode=True) for path in (photos, broken)]
    assert expected[0].ok and not expected[1].ok and expected[1].counts["checksum"] == 1 and expected[1].counts["inner"] == 1
    for mine, theirs in zip(found, expected):
        timed = [line for line in theirs.summary if line.startswith("pictures:")]  # its rate varies
        assert [line for line in mine.summary if line.startswith("pictures:")][0].split(" on the CPU")[0] == timed[0].split(" on the CPU")[0]
        assert [line for line in mine.summary if line not in timed and not line.startswith("pictures:")] == [line for line in theirs.summary if line not in timed]
        assert mine.problems == theirs.problems and mine.counts == theirs.counts and mine.damaged == theirs.damaged


def test_verify_fetches_inner_samples_in_bulk(photos, monkeypatch):
    opened = []

    def opening(path, **options):
        file = open_unmapped(path, **options)
        opened.append(file.storage)
        return file

    monkeypatch.setattr("bzna_boxes.verify.BznaFile", opening)
    assert verify(photos, checksums=False).ok
    storage = opened[0]
    spans = [spans for _, spans in storage.batches]
    with bz.open(photos) as file:
        present = int(np.count_nonzero(file.track(layout.INPUT_TRACK).sizes))
    assert [len(s) for s in spans if len(s) == present] == [present]  # the inner samples: one request
    assert storage.requests <= 4  # targets, filenames, inner samples (and nothing per sample)


def test_extract_and_concat_through_a_storage_without_map(photos, tmp_path, monkeypatch):
    tracks = (None, layout.INPUT_TRACK, layout.THUMB_TRACK, layout.FILENAME_TRACK, "2")
    expected = [extract(photos, 4, track) for track in tracks]
    bare = tmp_path / "bare.bzna"  # no checksum table: concat computes the checksums as it copies
    boxes = bz.Boxes.parse(photos.read_bytes())
    bz.find(boxes, "moov").children = [child for child in bz.find(boxes, "moov").children if child.type != "udta"]
    bare.write_bytes(bz.Boxes.build(boxes))
    references = [tmp_path / "reference.bzna", tmp_path / "bare-reference.bzna"]
    for inputs, output in zip(([photos, photos], [bare, photos]), references):
        concat(inputs, output, fsync=False)

    monkeypatch.setattr("bzna_boxes.verify.BznaFile", open_unmapped)
    monkeypatch.setattr("bzna_boxes.index.BznaFile", open_unmapped)  # what concat opens its inputs with
    OPENED.clear()
    assert [extract(photos, 4, track) for track in tracks] == expected
    assert len(OPENED) == len(tracks) and all(storage.requests == 1 for storage in OPENED)  # each sample: one read
    OPENED.clear()
    merged = [tmp_path / "merged.bzna", tmp_path / "bare-merged.bzna"]
    for inputs, output in zip(([photos, photos], [bare, photos]), merged):
        concat(inputs, output, fsync=False)
    for mine, theirs in zip(merged, references):
        assert mine.read_bytes() == theirs.read_bytes()
    assert len(OPENED) == 4 and all(storage.requests >= 3 for storage in OPENED)  # targets, filenames, samples


def test_local_reads_without_the_map_stay_on_the_file_opened(tmp_path):
    path = tmp_path / "bytes"
    path.write_bytes(bytes(range(200)))
    used, unused = LocalStorage(path), LocalStorage(path)
    buffer = memoryview(bytearray(20))
    used.readinto(100, buffer)
    assert bytes(buffer) == bytes(range(100, 120))
    (tmp_path / "new").write_bytes(bytes(200))
    os.replace(tmp_path / "new", path)  # as bzna writes a file: renamed over the old one
    used.readinto(10, buffer)  # the file it opened, as its map reads it
    assert bytes(buffer) == bytes(range(10, 30))
    with pytest.raises(OSError, match="was replaced by another file since it was opened"):
        unused.readinto(0, buffer)
    with pytest.raises(BoxError, match="lie outside the file"):
        used.readinto(190, buffer)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        used.copy_to(50, 100, f.fileno(), 7)
    assert out.read_bytes() == bytes(7) + bytes(range(50, 150))
    used.close()
    unused.close()


def test_loader_reads_each_batch_in_one_request_fetched_ahead(photos):
    from bzna_boxes.torch import Loader

    options = dict(batch_size=1, shuffle=True, seed=5, device="cpu", size=(16, 16), with_indices=True, prefetch=1)
    expected = list(Loader(Dataset(photos), **options))
    remote = Dataset(open_unmapped(photos))
    storage = remote.file.storage
    events: list[str] = []
    original = storage.read_many

    def read_many(spans):
        events.append("read")
        return original(spans)

    storage.read_many = read_many
    found = []
    for batch in Loader(remote, **options):
        events.append("yield")
        found.append(batch)
    assert len(found) == len(expected) == len(remote)  # a batch of one each (the missing sample: an empty one)
    for mine, theirs in zip(found, expected):
        assert all(bool((a == b).all()) for a, b in zip(mine, theirs))
    assert len(storage.batches) == len(found) and all(len(spans) == 1 for _, spans in storage.batches)  # one request per batch
    assert {thread.split("_")[0] for thread, _ in storage.batches} == {"bzna-fetch"}  # made by the fetching thread
    # Bounded: before a batch is yielded, at most 1 (being put) + prefetch (ready) + prefetch
    # (decoding) + prefetch (fetching) batches beyond those yielded have been requested.
    requested = yielded = 0
    for event in events:
        requested += event == "read"
        yielded += event == "yield"
        assert requested - yielded <= 1 + 3 * options["prefetch"]


def test_no_reader_outside_the_storage_touches_the_map():
    """The readers above the index reach the file's bytes through ``file.storage`` only."""
    forbidden = re.compile(r"\._load\(\)\.mm|\bmm\[|\._map\b|\bfile\.buffer\b|\.fileno\(\)\s*,\s*0\s*,\s*access")
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.name in ("storage.py", "remote.py", "index.py"):  # the storages, and the index that opens them
            continue
        text = module.read_text()
        assert not forbidden.search(text), f"{module.relative_to(PACKAGE)}: {forbidden.search(text).group(0)}"
