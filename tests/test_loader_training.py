"""The Loader for training: per-sample augmentation (random resized crop + flip, eval crop),
normalisation and layout, sample indices, resuming mid-epoch, equal shards, and the device
chosen under a launcher (CUDA faked on this CPU-only machine where no GPU exists)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bzna_boxes import layout
from bzna_boxes.decode import CpuDecoder, NvdecDecoder, resolve_device
from bzna_boxes.decode import nvdec
from bzna_boxes.encode import encode_image
from bzna_boxes.torch import Loader, _StreamHandoff, default_threads, random_resized_crop_box, resize, sample_generator

from bzna_samples import FAST, build_dataset, open_dataset
from test_nvdec import needs_nvdec

SIZES = [(96, 64), (64, 96), (120, 80), (80, 80), (100, 70), (70, 100), (90, 60), (64, 64), (110, 75), (75, 75), (88, 66)]


def picture(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth picture whose every region differs: crops and flips change the batch."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y + 40 * seed) % 256], -1)
    return rgb.astype(np.uint8)


@functools.lru_cache(maxsize=None)
def encoded():
    return tuple(encode_image(picture(w, h, k), **FAST) for k, (w, h) in enumerate(SIZES))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    items = [(e, k, f"{k}.png") for k, e in enumerate(encoded())]
    return open_dataset(build_dataset(tmp_path_factory.mktemp("train") / "train.bzna", items))


def everything(loader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in loader]


def same(a, b) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(a, b))


def test_random_resized_crop_is_each_sample_own_and_independent_of_threads(dataset):
    options = dict(batch_size=4, shuffle=True, seed=3, device="cpu", size=32, transform="random_resized_crop", with_indices=True)
    one, two = Loader(dataset, num_threads=1, **options), Loader(dataset, num_threads=2, **options)
    epoch0 = everything(one)
    assert same(epoch0, everything(two))
    assert not same(epoch0, everything(one))  # epoch 1: other boxes
    decoder = CpuDecoder()
    for images, targets, indices in epoch0:
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
        assert targets.tolist() == indices.tolist()  # target k is sample k
        for image, index in zip(images, indices.tolist()):
            full = torch.from_numpy(decoder.decode(dataset[index].image(layout.THUMB_TRACK))).permute(2, 0, 1)
            generator = sample_generator(3, 0, index)
            top, left, h, w = random_resized_crop_box(full.shape[1], full.shape[2], (0.08, 1.0), (3 / 4, 4 / 3), generator)
            want = resize(full[:, top : top + h, left : left + w], (32, 32))
            if torch.rand(1, generator=generator).item() < 0.5:
                want = want.flip(-1)
            assert torch.equal(image, want), index
    unflipped = Loader(dataset, batch_size=11, device="cpu", size=32, transform="resize")
    assert not torch.equal(next(iter(unflipped))[0], next(iter(Loader(dataset, batch_size=11, device="cpu", size=32, transform="random_resized_crop")))[0])


def test_random_resized_crop_boxes():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_crop_box(375, 500, (0.08, 1.0), (3 / 4, 4 / 3), generator)
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        assert 0.08 * 0.95 <= h * w / (375 * 500) <= 1.0 and 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # no box can fit: after 10 tries, the centre crop clamped to the ratio
    assert random_resized_crop_box(100, 400, (2.0, 3.0), (3 / 4, 4 / 3), generator) == (0, 133, 100, 133)
    assert random_resized_crop_box(400, 100, (2.0, 3.0), (3 / 4, 4 / 3), generator) == (133, 0, 133, 100)
    assert random_resized_crop_box(100, 110, (2.0, 3.0), (3 / 4, 4 / 3), generator) == (0, 0, 100, 110)


def test_random_resized_crop_box_is_torchvisions():
    transforms = pytest.importorskip("torchvision.transforms", reason="torchvision is not installed (it is not in the test extra)")
    for seed in range(200):
        height, width = 100 + seed, 400 - seed
        torch.manual_seed(seed)
        want = transforms.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0], [3 / 4, 4 / 3])
        got = random_resized_crop_box(height, width, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed))
        assert got == tuple(want), seed


def test_eval_resizes_the_shorter_side_then_crops_the_centre(dataset):
    (images, targets), = everything(Loader(dataset, batch_size=11, device="cpu", size=56, transform="eval"))
    decoder = CpuDecoder()
    for image, index in zip(images, targets.tolist()):
        full = torch.from_numpy(decoder.decode(dataset[index].image(layout.THUMB_TRACK))).permute(2, 0, 1)
        h, w = full.shape[1:]
        short = 64  # 56 * 256 / 224
        size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        resized = F.interpolate(full[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = int(round((size[0] - 56) / 2)), int(round((size[1] - 56) / 2))
        assert torch.equal(image, resized[:, top : top + 56, left : left + 56]), index


def test_normalisation_dtype_and_channels_last_on_the_batch(dataset):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    options = dict(batch_size=5, shuffle=True, seed=1, device="cpu", size=(24, 40), transform="random_resized_crop")
    plain = everything(Loader(dataset, **options))
    normalised = everything(Loader(dataset, dtype=torch.float32, mean=mean, std=std, channels_last=True, **options))
    for (images, targets), (floats, same_targets) in zip(plain, normalised):
        assert torch.equal(targets, same_targets) and floats.dtype == torch.float32
        assert floats.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous(memory_format=torch.channels_last)
        want = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        assert torch.allclose(floats, want, atol=1e-5)
    halves = everything(Loader(dataset, dtype=torch.float16, **options))
    assert halves[0][0].dtype == torch.float16 and torch.allclose(halves[0][0].float(), plain[0][0].float() / 255, atol=1e-3)
    with pytest.raises(ValueError, match="float dtype"):
        Loader(dataset, batch_size=2, device="cpu", mean=mean, std=std)
    with pytest.raises(ValueError, match="both mean and std"):
        Loader(dataset, batch_size=2, device="cpu", dtype=torch.float32, mean=mean)
    with pytest.raises(ValueError, match="transform must be one of"):
        Loader(dataset, batch_size=2, device="cpu", transform="random_crop")


def test_resuming_mid_epoch_yields_the_rest_of_the_uninterrupted_run(dataset):
    options = dict(batch_size=3, shuffle=True, seed=5, device="cpu", size=24, transform="random_resized_crop", with_indices=True)
    uninterrupted = Loader(dataset, **options)
    epochs = [everything(uninterrupted) for _ in range(2)]
    assert uninterrupted.state_dict() == {"epoch": 2, "batch": 0, "seed": 5}

    first = Loader(dataset, **options)
    everything(first)  # epoch 0
    seen = []
    for batch in first:  # epoch 1, stopped after two batches
        seen.append(tuple(t.clone() for t in batch))
        if len(seen) == 2:
            state = first.state_dict()
            break
    assert state == {"epoch": 1, "batch": 2, "seed": 5}
    first.close()
    restarted = Loader(dataset, **{**options, "seed": 0})
    restarted.load_state_dict(state)
    rest = everything(restarted)
    assert same(seen + rest, epochs[1]) and len(rest) == len(epochs[1]) - 2
    assert restarted.state_dict() == {"epoch": 2, "batch": 0, "seed": 5}
    fresh = Loader(dataset, **options)
    fresh.set_epoch(2)
    assert same(everything(restarted), everything(fresh))


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_yields_the_same_number_of_batches(dataset, drop_last):
    per_rank = []
    for rank in range(3):
        loader = Loader(dataset, batch_size=2, shuffle=True, seed=2, device="cpu", size=8, rank=rank, world_size=3, drop_last=drop_last, with_indices=True)
        got = everything(loader)
        assert len(got) == len(loader)
        per_rank.append([i for _, _, indices in got for i in indices.tolist()])
    counts = {len(indices) for indices in per_rank}
    seen = [i for indices in per_rank for i in indices]
    if drop_last:  # 11 samples: 9 used, 3 per rank, one batch of 2 each
        assert counts == {2} and len(set(seen)) == len(seen)
    else:  # padded to 12 by repeating the first index of the epoch's order: 2 batches of 2 each
        assert counts == {4} and set(seen) == set(range(11)) and len(seen) == 12
    assert len({len(Loader(dataset, batch_size=2, device="cpu", rank=r, world_size=3, drop_last=drop_last)) for r in range(3)}) == 1
    with pytest.raises(ValueError, match="rank"):
        Loader(dataset, batch_size=2, device="cpu", rank=3, world_size=3)


class FakeCuda:
    """torch.cuda as a launcher leaves it on a machine with 4 GPUs (torchrun + set_device(LOCAL_RANK))."""

    def __init__(self, monkeypatch):
        self.current = 0
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)

    def set_device(self, device) -> None:
        self.current = torch.device(device).index if not isinstance(device, int) else device


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: tests/test_nvdec.py checks the real devices")
def test_auto_and_cuda_mean_the_current_device_and_cuda_n_means_n(monkeypatch, dataset):
    cuda = FakeCuda(monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "2")
    cuda.set_device(int(__import__("os").environ["LOCAL_RANK"]))  # what the training script does under torchrun
    for device in ("auto", "cuda"):
        assert resolve_device(device) == "cuda:2"
        loader = Loader(dataset, batch_size=2, device=device)  # NVDEC unavailable here: CPU decoding, batches on the rank's GPU
        assert isinstance(loader.decoder, CpuDecoder) and loader.device == torch.device("cuda", 2)
    assert Loader(dataset, batch_size=2, device="cuda:3").device == torch.device("cuda", 3)
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device(torch.device("cuda", 1)) == "cuda:1" and resolve_device("cpu") == "cpu"
    assert nvdec._cuda_index("cuda") == 2 and nvdec._cuda_index("cuda:1") == 1


def test_the_stream_handoff_is_a_no_op_on_the_cpu():
    handoff = _StreamHandoff(torch.device("cpu"))
    batch = (torch.zeros(2, 3), torch.ones(2))
    with handoff.making():
        event = handoff.done()
    assert event is None and handoff.receive(batch, event) is batch


def test_nvdec_gets_a_few_threads_and_the_cpu_every_core():
    assert nvdec.NVDEC_THREADS == 4
    assert default_threads(object.__new__(NvdecDecoder)) == nvdec.NVDEC_THREADS
    assert default_threads(CpuDecoder()) >= 1


@pytest.mark.gpu
@needs_nvdec
def test_batches_read_on_the_training_loops_own_stream(dataset):
    """A loop on its own stream reads finished batches while the default stream is held up."""
    loader = Loader(dataset, batch_size=4, device="cuda", size=32, transform="random_resized_crop", num_threads=4)
    expected = [images.float().sum((1, 2, 3)).cpu() for images, _ in loader]
    loader.set_epoch(0)
    side = torch.cuda.Stream()
    got = []
    with torch.cuda.stream(side):
        for images, _ in loader:
            with torch.cuda.stream(torch.cuda.default_stream()):
                torch.cuda._sleep(50_000_000)
            got.append(images.float().sum((1, 2, 3)))
    torch.cuda.synchronize()
    assert len(got) == len(expected) and all(torch.equal(a.cpu(), b) for a, b in zip(got, expected))
    assert loader._handoff.stream is not None
