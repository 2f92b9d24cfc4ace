"""The index read through a storage that does not map the file (as an object store reads it):
the same tracks, boxes, errors and warnings as from a path, with a few small reads and one
``view`` per metadata box; pickling through the storage."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import bzna_boxes
from bzna_boxes import Box, BoxError
from bzna_boxes.index import BznaFile
from bzna_boxes.storage import LocalStorage
from bzna_boxes.writer import DatasetWriter

from conftest import MEDIA, MEDIA_FILES

MP4_FILES = [p for p in MEDIA_FILES if p.suffix != ".heic"]


class FetchedStorage:
    """A storage that copies every range it is asked for (no map, ``buffer`` None) and records
    what it was asked; it pickles by path, as a remote storage pickles by its address."""

    def __init__(self, path: str | Path):
        self.name = str(path)
        self.size = Path(path).stat().st_size
        self.reads: list[tuple[int, int]] = []
        self.views: list[tuple[int, int]] = []
        self.closed = False

    def __getstate__(self):
        return {"name": self.name}

    def __setstate__(self, state):
        self.__init__(state["name"])

    def _fetch(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BoxError(f"{self.name}: bytes {offset}..{offset + size} lie outside the file", offset=offset)
        with open(self.name, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def read(self, offset: int, size: int) -> bytes:
        self.reads.append((offset, size))
        return self._fetch(offset, size)

    def view(self, offset: int, size: int) -> memoryview:
        self.views.append((offset, size))
        return memoryview(self._fetch(offset, size))

    def read_many(self, spans):
        return [self.view(offset, size) for offset, size in spans]

    @property
    def buffer(self):
        return None

    def changed(self):
        return None

    def close(self):
        self.closed = True


def _same_index(a: BznaFile, b: BznaFile) -> None:
    assert a.boxes == b.boxes and a.moov == b.moov and a.metadata_spans() == b.metadata_spans()
    assert [(t.track_id, t.name, t.handler, t.path) for t in a.tracks] == [(t.track_id, t.name, t.handler, t.path) for t in b.tracks]
    for x, y in zip(a.tracks, b.tracks):
        assert np.array_equal(x.offsets, y.offsets) and np.array_equal(x.sizes, y.sizes)


@pytest.mark.parametrize("path", MP4_FILES + [MEDIA / "fragmented.mp4"], ids=lambda p: p.name)
def test_a_storage_without_a_map_indexes_as_a_path_does(path):
    storage = FetchedStorage(path)
    with bzna_boxes.open(path) as local, bzna_boxes.open(storage) as fetched:
        _same_index(local, fetched)
        metadata = [(b.offset, b.size) for b in local.boxes if b.type in ("moov", "moof")]
        assert storage.views == metadata  # one view per moov and moof, nothing else viewed
        assert all(size <= 16 for _, size in storage.reads)  # the rest: one header at a time
        for x, y in zip(local.tracks, fetched.tracks):
            assert bytes(y[len(y) - 1]) == bytes(x[len(x) - 1])
            assert [bytes(s) for s in y] == [bytes(s) for s in x]
            assert Box.build(y.sample_entry) == Box.build(x.sample_entry)
        assert [str(w) for w in fetched.warnings] == [str(w) for w in local.warnings]
        assert fetched.find_box("moov/trak/mdia/hdlr") == local.find_box("moov/trak/mdia/hdlr")
        assert fetched.changed() is None
        with pytest.raises(ValueError, match=f"{storage.name}: FetchedStorage does not map the whole file"):
            fetched.buffer
    assert storage.closed  # the file owns the storage it was given


@pytest.mark.parametrize("cut", [1, 9, 100])
def test_errors_name_the_same_absolute_offsets(tmp_path, cut):
    path = tmp_path / "cut.mp4"
    path.write_bytes((MEDIA / "h264.mp4").read_bytes()[:-cut])
    with pytest.raises(BoxError) as local:
        bzna_boxes.open(path)
    with pytest.raises(BoxError) as fetched:
        bzna_boxes.open(FetchedStorage(path))
    assert (str(fetched.value), fetched.value.offset, fetched.value.path) == (str(local.value), local.value.offset, local.value.path)


def test_a_corrupt_table_inside_moov_names_its_file_offset(tmp_path):
    data = bytearray((MEDIA / "h264.mp4").read_bytes())
    at = data.index(b"stsz")
    data[at + 12 : at + 16] = (10**6).to_bytes(4, "big")  # sample_count far past the entries held
    path = tmp_path / "bad.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(BoxError) as local:
        bzna_boxes.open(path)
    with pytest.raises(BoxError) as fetched:
        bzna_boxes.open(FetchedStorage(path))
    assert fetched.value.offset == local.value.offset > at
    assert str(fetched.value) == str(local.value)


def test_checksum_table_through_a_storage(tmp_path):
    path = tmp_path / "missing.bzna"
    with DatasetWriter(path, fsync=False) as writer:
        for i in range(3):
            writer.add_missing(i, f"n{i}.JPEG")
    with bzna_boxes.open(path) as local, bzna_boxes.open(FetchedStorage(path)) as fetched:
        table = local.checksum_table()
        assert table is not None
        assert fetched.checksum_table() == table


def test_pickles_through_its_storage():
    file = bzna_boxes.open(FetchedStorage(MEDIA / "av_interleaved.mp4"))
    copy = pickle.loads(pickle.dumps(file))
    assert copy._state is None and isinstance(copy._given, FetchedStorage)
    assert bytes(copy.tracks[1][5]) == bytes(file.tracks[1][5])
    local = bzna_boxes.open(LocalStorage(MEDIA / "h264.mp4"))
    data = pickle.dumps(local)
    assert len(data) < 300  # a local storage pickles by path
    assert len(pickle.loads(data).tracks[0]) == 10
    for f in (file, copy, local):
        f.close()
