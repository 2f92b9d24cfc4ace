"""Samples across processes: a Sample pickles by file and index, and DataLoader workers return samples."""

from __future__ import annotations

import pickle

import pytest

from bzna_boxes import Dataset, ImageNet
from bzna_boxes.dataset import MissingSampleError

from bzna_factory import FIXTURES, Entry, encoded_entries, write_dataset, write_numbered

PHOTOS = [str(FIXTURES / "images" / "cat" / "chelsea.jpg"), str(FIXTURES / "images" / "space" / "rocket.jpg")]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two photographs (real H.265) with a missing sample between them."""
    entries, _, video_hvcc = encoded_entries(PHOTOS)
    entries.insert(1, Entry(None, 7, "lost.JPEG"))
    path = tmp_path_factory.mktemp("photos") / "photos.bzna"
    write_dataset(path, entries, video_hvcc)
    return path


def fields(sample) -> tuple:
    """What a sample gives back, the picture included (None where it is missing)."""
    image = None if sample.missing else sample.image()
    picture = None if image is None else (bytes(image.payload), image.width, image.height, image.clean_aperture)
    return sample.index, sample.target, sample.filename, bytes(sample.data), picture


def test_a_sample_pickles_by_file_and_index(photos):
    ds = Dataset(photos)
    data = pickle.dumps(ds[2])
    assert len(data) < 300  # the path and the index, not the picture
    assert fields(pickle.loads(data)) == fields(ds[2])
    copies = pickle.loads(pickle.dumps(list(ds)))
    assert [fields(s) for s in copies] == [fields(s) for s in ds]
    assert copies[0]._cols is copies[2]._cols  # one opening of the file for all the copies
    with pytest.raises(MissingSampleError):
        copies[1].image()


def test_a_split_sample_keeps_its_index_in_the_file(tmp_path):
    path = tmp_path / "numbered.bzna"
    write_numbered(path, 150_000)
    sample = ImageNet(path, "test")[0]
    copy = pickle.loads(pickle.dumps(sample))
    assert (copy.index, copy.target, copy.filename, bytes(copy.data)) == (50_000, 50_000 % 1000, "50000", bytes([50_000 % 251]))


def test_a_dataloader_with_workers_returns_samples(photos):
    torch = pytest.importorskip("torch", reason="the DataLoader is torch's")
    ds = Dataset(photos)
    # timeout: a worker that cannot send its batch fails the test instead of hanging it
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list, timeout=120)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 1]
    got = [sample for batch in batches for sample in batch]
    assert [fields(s) for s in got] == [fields(s) for s in ds]
    assert got[0].image().width == ds[0].image().width > 0
