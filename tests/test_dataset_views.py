"""Dataset views: ``ds[a:b]``, ``ds[a:b:c]``, ``ds[indices]`` and ``ds[mask]`` select samples of the
same file, with their own length, targets, sizes and missing, and pickle as views."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from bzna_boxes import Dataset, ImageNet

from bzna_factory import plain_entries, write_dataset

MISSING = (0, 7, 59)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    entries = plain_entries(60, seed=5, missing=MISSING)
    path = tmp_path_factory.mktemp("views") / "plain.bzna"
    write_dataset(path, entries)
    return path, entries


def expected(entries, positions):
    return [(-1 if entries[i].target is None else entries[i].target) for i in positions]


@pytest.mark.parametrize("key", [slice(10, 20), slice(None, 5), slice(-7, None), slice(50, 10), slice(3, 40, 4), slice(None, None, -3)])
def test_a_slice_is_a_view_of_those_samples(plain, key):
    path, entries = plain
    ds = Dataset(path)
    view = ds[key]
    positions = list(range(60))[key]
    assert type(view) is Dataset and len(view) == len(positions)
    assert [s.index for s in view] == positions
    assert [view[k].index for k in range(len(view))] == positions
    assert view.targets.tolist() == expected(entries, positions)
    assert view.sizes.tolist() == [len(entries[i].inner or b"") for i in positions]
    assert [positions[k] for k in view.missing] == [i for i in positions if i in MISSING]
    assert all(bytes(view[k].data) == (entries[i].inner or b"") for k, i in enumerate(positions))
    if positions:
        assert view[-1].index == positions[-1]


def test_index_arrays_masks_and_views_of_views(plain):
    path, entries = plain
    ds = Dataset(path)
    picked = ds[np.array([5, 2, 59, -1])]
    assert [s.index for s in picked] == [5, 2, 59, 59] and picked.targets.tolist() == expected(entries, [5, 2, 59, 59])
    assert [s.index for s in ds[[1, 3]]] == [1, 3]
    mask = np.zeros(60, bool)
    mask[[4, 8, 15]] = True
    assert [s.index for s in ds[mask]] == [4, 8, 15]
    present = ds[np.setdiff1d(np.arange(60), ds.missing)]
    assert len(present) == 57 and len(present.missing) == 0
    inner = ds[10:30][5:8]
    assert [s.index for s in inner] == [15, 16, 17]
    assert [s.index for s in ds[10:30][[0, -1]]] == [10, 29]
    assert ds[np.int64(3)].index == 3 and picked[np.int64(1)].index == 2
    assert len(ds) == 60  # the original is untouched
    with pytest.raises(IndexError, match="out of range"):
        ds[[0, 60]]
    with pytest.raises(IndexError, match="out of range"):
        picked[4]
    with pytest.raises(IndexError, match="boolean mask"):
        ds[np.ones(3, bool)]
    with pytest.raises(TypeError, match="1-D array"):
        ds[np.array([[1, 2]])]


def test_views_pickle_and_splits_slice_within_the_split(plain, tmp_path):
    path, entries = plain
    ds = Dataset(path)
    for view in (ds[20:25], ds[[9, 1, 4]]):
        copy = pickle.loads(pickle.dumps(view))
        assert [s.index for s in copy] == [s.index for s in view]
        assert copy.targets.tolist() == view.targets.tolist()
    whole = ImageNet(path)
    part = whole[2:4]
    assert type(part) is ImageNet and [s.index for s in part] == [2, 3]
