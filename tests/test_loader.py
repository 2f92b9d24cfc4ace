"""bzna_boxes.torch.Loader on the CPU: shapes, dtypes, targets aligned with images, order, shards."""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler, SequentialSampler

from bzna_boxes import DecoderUnavailable, layout
from bzna_boxes.dataset import ImageNet
from bzna_boxes.encode import encode_image
from bzna_boxes.torch import Loader

from bzna_samples import FAST, build_dataset, open_dataset

# Flat images, one colour per target, in sizes below, at and above the 512x512 thumbnail frame.
SIZES = [(40, 30), (64, 64), (700, 200), (33, 97), (512, 512), (80, 48), (200, 620), (16, 16), (90, 60), (50, 50)]
TARGETS = [100 + 7 * index for index in range(len(SIZES))]


def colour(target: int) -> np.ndarray:
    """A colour per target, far enough from the others to be told apart after H.265."""
    return np.array([(target * 53) % 200 + 28, (target * 97) % 200 + 28, (target * 31) % 200 + 28], np.uint8)


@functools.lru_cache(maxsize=None)
def encoded_flat_images():
    return tuple(encode_image(np.broadcast_to(colour(t), (h, w, 3)).copy(), **FAST) for (w, h), t in zip(SIZES, TARGETS))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    items = [(encoded, target, f"{target}.png") for encoded, target in zip(encoded_flat_images(), TARGETS)]
    return open_dataset(build_dataset(tmp_path_factory.mktemp("loader") / "flat.bzna", items))


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def assert_aligned(images: torch.Tensor, targets: torch.Tensor, scale: float = 1.0) -> None:
    """Each image is flat in the colour of its target."""
    for image, target in zip(images, targets):
        expected = torch.from_numpy(colour(int(target)).astype(np.float32))
        mean = image.float().mean(dim=(1, 2)) * scale
        assert torch.allclose(mean, expected, atol=3.0), (int(target), mean, expected)


def test_batches_have_the_shape_dtype_and_aligned_targets(dataset):
    loader = Loader(dataset, batch_size=4, device="cpu", size=(32, 48))
    assert len(loader) == 3 and loader.device == torch.device("cpu")
    got = batches(loader)
    assert [len(t) for _, t in got] == [4, 4, 2]
    for images, targets in got:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 48) and images.device.type == "cpu"
        assert targets.dtype == torch.int64 and images.shape[0] == targets.shape[0]
        assert_aligned(images, targets)
    assert torch.cat([t for _, t in got]).tolist() == TARGETS


def test_float_batches_are_scaled_to_one(dataset):
    images, targets = next(iter(Loader(dataset, batch_size=10, device="cpu", size=(24, 24), dtype=torch.float32)))
    assert images.dtype == torch.float32 and images.shape == (10, 3, 24, 24)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert_aligned(images, targets, scale=255.0)


def test_thumbnails_and_full_images_give_the_same_colours(dataset):
    for track in (layout.THUMB_TRACK, layout.INPUT_TRACK):
        images, targets = next(iter(Loader(dataset, batch_size=10, device="cpu", size=(16, 16), track=track)))
        assert_aligned(images, targets)


def test_drop_last_and_partial_batches(dataset):
    assert [len(t) for _, t in Loader(dataset, batch_size=3, device="cpu", size=(8, 8))] == [3, 3, 3, 1]
    loader = Loader(dataset, batch_size=3, device="cpu", size=(8, 8), drop_last=True)
    assert len(loader) == 3 and [len(t) for _, t in loader] == [3, 3, 3]
    assert [len(t) for _, t in Loader(dataset, batch_size=20, device="cpu", size=(8, 8))] == [10]


def test_the_order_is_set_by_the_seed_and_the_epoch(dataset):
    def order(loader) -> list[int]:
        return torch.cat([t for _, t in loader]).tolist()

    first, second = Loader(dataset, 4, shuffle=True, seed=7, device="cpu", size=(8, 8)), Loader(dataset, 4, shuffle=True, seed=7, device="cpu", size=(8, 8))
    epoch0 = order(first)
    assert epoch0 == order(second) and sorted(epoch0) == TARGETS and epoch0 != TARGETS
    epoch1 = order(first)
    assert epoch1 != epoch0 and sorted(epoch1) == TARGETS
    first.set_epoch(0)
    assert order(first) == epoch0
    assert order(Loader(dataset, 4, shuffle=True, seed=8, device="cpu", size=(8, 8))) != epoch0
    expected = [TARGETS[i] for i in torch.randperm(10, generator=torch.Generator().manual_seed(7)).tolist()]
    assert epoch0 == expected


def test_a_distributed_sampler_shards_the_dataset(dataset):
    shards = []
    for rank in range(3):
        sampler = DistributedSampler(dataset, num_replicas=3, rank=rank, shuffle=True, seed=1)
        loader = Loader(dataset, batch_size=2, device="cpu", size=(8, 8), sampler=sampler)
        loader.set_epoch(4)
        assert sampler.epoch == 4 and len(loader) == 2
        got = batches(loader)
        for images, targets in got:
            assert_aligned(images, targets)
        shards.append(torch.cat([t for _, t in got]).tolist())
    assert all(len(shard) == 4 for shard in shards)  # 10 samples padded to 12 by the sampler
    assert set().union(*shards) == set(TARGETS)
    assert [len(t) for _, t in Loader(dataset, 4, device="cpu", size=(8, 8), sampler=SequentialSampler(range(6)))] == [4, 2]
    with pytest.raises(ValueError, match="exclusive"):
        Loader(dataset, 4, shuffle=True, sampler=SequentialSampler(range(6)), device="cpu")


def test_imagenet_splits_feed_the_loader(tmp_path):
    """ImageNet(split=...) counts its splits from the end: train, val and test batch their own samples."""
    encoded = encoded_flat_images()
    val_at = 10  # 10 train samples, then 50,000 val, then 100,000 test (the seed's split sizes)
    test_at = val_at + layout.IMAGENET_VAL
    real = {**{i: i for i in range(10)}, val_at: 2, val_at + 1: 7, test_at: 4, test_at + 1: 9}  # sample -> image
    items = [
        (encoded[real[i]], TARGETS[real[i]], f"{i}.png") if i in real else (None, 0, f"{i}.png")
        for i in range(test_at + layout.IMAGENET_TEST)
    ]
    path = build_dataset(tmp_path / "imagenet.bzna", items)
    train, val, test = (ImageNet(path, split=split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (10, layout.IMAGENET_VAL, layout.IMAGENET_TEST)

    got = batches(Loader(train, batch_size=4, device="cpu", size=(8, 8)))
    assert [len(t) for _, t in got] == [4, 4, 2]
    assert torch.cat([t for _, t in got]).tolist() == TARGETS
    for images, targets in got:
        assert_aligned(images, targets)
    shuffled = torch.cat([t for _, t in Loader(train, batch_size=4, shuffle=True, seed=3, device="cpu", size=(8, 8))])
    assert sorted(shuffled.tolist()) == sorted(TARGETS) and shuffled.tolist() != TARGETS

    for split, first in ((val, [2, 7]), (test, [4, 9])):
        (images, targets), = batches(Loader(split, batch_size=2, device="cpu", size=(8, 8), sampler=SequentialSampler(range(2))))
        assert targets.tolist() == [TARGETS[i] for i in first]
        assert_aligned(images, targets)


def test_missing_samples_are_skipped_with_a_warning(tmp_path, caplog):
    encoded = encoded_flat_images()
    items = [(encoded[0], TARGETS[0], "a.png"), (None, 5, "lost.png"), (encoded[1], TARGETS[1], "b.png")]
    dataset = open_dataset(build_dataset(tmp_path / "holes.bzna", items))
    with caplog.at_level(logging.WARNING, logger="bzna_boxes.torch"):
        (images, targets), = list(Loader(dataset, batch_size=3, device="cpu", size=(8, 8)))
    assert targets.tolist() == [TARGETS[0], TARGETS[1]] and images.shape == (2, 3, 8, 8)
    assert_aligned(images, targets)
    assert any("sample 1 has no image" in r.getMessage() for r in caplog.records)


def test_size_none_keeps_the_clean_aperture(dataset):
    images, targets = next(iter(Loader(dataset, batch_size=1, device="cpu", size=None)))
    assert images.shape == (1, 3, 30, 40) and targets.tolist() == [TARGETS[0]]
    with pytest.raises(ValueError, match="different sizes"):
        list(Loader(dataset, batch_size=2, device="cpu", size=None))


class Failing:
    """A dataset whose sample 5 cannot be read."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if index == 5:
            raise OSError("disk on fire")
        return self.dataset[index]


def loader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "bzna-loader"]


def test_errors_reach_the_training_loop_and_threads_end(dataset):
    loader = Loader(Failing(dataset), batch_size=2, device="cpu", size=(8, 8))
    seen = []
    with pytest.raises(OSError, match="disk on fire"):
        for _, targets in loader:
            seen += targets.tolist()
    assert seen == TARGETS[:4]
    assert loader_threads() == []
    iterator = iter(Loader(dataset, batch_size=2, device="cpu", size=(8, 8), prefetch=1))
    next(iterator)
    iterator.close()  # leaving a loop early stops the background thread
    assert loader_threads() == []
    loader.close()


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the GPU loader is checked by tests/test_nvdec.py")
    with pytest.raises(DecoderUnavailable, match="torch sees no CUDA GPU"):
        Loader([], batch_size=1, device="cuda")
    assert Loader([], batch_size=1, device="auto").device == torch.device("cpu")
