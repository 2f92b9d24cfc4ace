"""bzna_boxes.torch.ImageDataset: (image, target) like ImageFolder, in DataLoader worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SubsetRandomSampler

from bzna_boxes import layout
from bzna_boxes.dataset import Dataset, MissingSampleError
from bzna_boxes.decode import CpuDecoder
from bzna_boxes.torch import ImageDataset

from bzna_samples import build_dataset, fixture_photographs


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    """The fixture photographs twice over (targets 0..), with sample 3 missing."""
    items = [(encoded, k, f"{k}_{name}") for k, (name, _, encoded) in enumerate(fixture_photographs() * 2)]
    items[3] = (None, 3, "lost.jpg")
    return build_dataset(tmp_path_factory.mktemp("imagedataset") / "photos.bzna", items)


class Corner:
    """The top-left ``side x side`` of an image (a picklable transform, so the batches stack)."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, : self.side, : self.side].contiguous()


def expected_image(dataset: Dataset, index: int, track: str = layout.INPUT_TRACK) -> torch.Tensor:
    return torch.from_numpy(CpuDecoder().decode(dataset[index].image(track))).permute(2, 0, 1)


def test_items_are_uint8_chw_images_and_targets(path):
    images = ImageDataset(path)
    dataset = Dataset(path)
    assert len(images) == len(dataset) and 3 not in images.indices.tolist() and len(images.indices) == len(dataset) - 1
    image, target = images[0]
    assert image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3
    assert image.permute(1, 2, 0).is_contiguous()  # channels last: the decoder's array, no copy
    assert torch.equal(image, expected_image(dataset, 0)) and target == 0
    thumb, _ = ImageDataset(dataset, track=layout.THUMB_TRACK)[1]
    assert torch.equal(thumb, expected_image(dataset, 1, layout.THUMB_TRACK))
    flipped, name = ImageDataset(path, transform=lambda im: im.flip(-1), target_transform=str)[0]
    assert torch.equal(flipped, image.flip(-1)) and name == "0"
    assert ImageDataset(dataset[4:6])[1][1] == 5  # a view of a dataset
    with pytest.raises(MissingSampleError, match="sample 3 .* missing"):
        images[3]


def test_a_dataloader_with_worker_processes_and_shuffle(path):
    images = ImageDataset(path, transform=Corner(32))
    copy = pickle.loads(pickle.dumps(images))
    assert torch.equal(copy[5][0], images[5][0])
    loader = DataLoader(images, batch_size=4, sampler=SubsetRandomSampler(images.indices.tolist()), num_workers=2, timeout=120)
    seen = []
    dataset = Dataset(path)
    for batch, targets in loader:
        assert batch.shape[1:] == (3, 32, 32) and batch.dtype == torch.uint8
        for image, target in zip(batch, targets.tolist()):
            assert torch.equal(image, expected_image(dataset, target)[:, :32, :32])
            seen.append(target)
    assert sorted(seen) == images.indices.tolist()
    shuffled = DataLoader(ImageDataset(dataset[4:12], transform=Corner(8)), batch_size=3, shuffle=True, num_workers=2, timeout=120)
    assert sorted(t for _, targets in shuffled for t in targets.tolist()) == list(range(4, 12))


def test_a_missing_sample_is_an_error_in_the_training_loop_not_a_crashed_worker(path):
    loader = DataLoader(ImageDataset(path, transform=Corner(8)), batch_size=2, num_workers=2, timeout=120)
    with pytest.raises(MissingSampleError, match="sample 3 of .* is missing"):
        list(loader)


def test_torchvision_v2_transforms_work_unchanged(path):
    v2 = pytest.importorskip("torchvision.transforms.v2", reason="torchvision is not installed (it is not in the test extra)")
    transform = v2.Compose([v2.RandomResizedCrop(64, antialias=True), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3)])
    loader = DataLoader(ImageDataset(path, transform=transform), batch_size=4, sampler=SubsetRandomSampler(ImageDataset(path).indices.tolist()), num_workers=2, timeout=120)
    batches = list(loader)
    assert sum(len(t) for _, t in batches) == len(Dataset(path)) - 1
    assert all(images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32 for images, _ in batches)
