"""PyTorch: batches decoded, augmented and normalised on the device, and a torch Dataset.

:class:`Loader` iterates ``(images, targets)`` (``(images, targets, indices)`` with
``with_indices``): ``images`` an ``N x 3 x H x W`` tensor and ``targets`` an int64 tensor of N,
both on the device. Each image is decoded (NVDEC on the GPU when it works, else FFmpeg on the
CPU), cropped to its clean aperture, then resized (``transform="resize"``), randomly cropped,
resized and flipped (``"random_resized_crop"``) or resized and centre-cropped (``"eval"``), each
sample on its own, on the device; the batch is then converted, normalised and laid out once.
Decoding runs in a pool of threads, and batches are prepared in a background thread
``prefetch`` batches ahead, so the next batch is decoded while the current one trains. Each
batch's bytes are read together (one ``read_many`` of the file's storage); from a storage without
a map (an object store) the bytes of ``prefetch`` further batches are fetched ahead in a thread.

:class:`ImageDataset` is a map-style ``torch.utils.data.Dataset`` of ``(image, target)`` for
``torch.utils.data.DataLoader``, as torchvision's ``ImageFolder``. This is the one module of
the package that imports torch at import time.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import layout
from .build import available_cores
from .decode import CpuDecoder, Decoder, NvdecDecoder, log_once, resolve_device
from .decode.nvdec import NVDEC_THREADS
from .dataset import maps_its_file
from .errors import DecoderUnavailable

__all__ = ["Loader", "ImageDataset", "random_resized_crop_box", "sample_generator"]

log = logging.getLogger(__name__)

TRANSFORMS = ("resize", "random_resized_crop", "eval")


def default_threads(decoder: Any) -> int:
    """Decoding threads by default: :data:`~bzna_boxes.decode.nvdec.NVDEC_THREADS` for NVDEC
    (a GPU has a few engines, and each thread holds a session), else every core."""
    return NVDEC_THREADS if isinstance(decoder, NvdecDecoder) else available_cores()


def _open(device: Any) -> tuple[Decoder, torch.device]:
    """The decoder for ``device`` and the device batches live on (see :class:`Loader`)."""
    name = str(device)
    target = torch.device(resolve_device(device))
    if target.type == "cpu":
        return CpuDecoder(), target
    try:
        decoder = NvdecDecoder(target, layout="CHW")
        log_once(f"Loader: decoding with NVDEC on {decoder.device}")
        return decoder, decoder.device
    except DecoderUnavailable as exc:
        if not torch.cuda.is_available():
            if name != "auto":
                raise DecoderUnavailable(f"{name} requested but torch sees no CUDA GPU; {exc}") from None
            log_once(f"Loader: decoding on the CPU, batches on the CPU; {exc}")
            return CpuDecoder(), torch.device("cpu")
        log_once(f"Loader: decoding on the CPU, batches made on {target}; {exc}")
        return CpuDecoder(), target


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random generator of sample ``index`` in ``epoch``: the same numbers whatever thread draws them."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a crop, drawn as torchvision's ``RandomResizedCrop.get_params``.

    An area fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, up to 10
    tries for a box that fits; then the centre crop of the picture clamped to ``ratio``. The
    draws are the same torch calls in the same order, so a generator seeded like torch's global
    one gives torchvision's boxes.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize(picture: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """3 x h x w -> 3 x H x W, bilinear (antialiased when shrinking and ``antialias``).

    uint8 in, uint8 out on the CPU (torch's uint8 path: several times faster than float);
    elsewhere (and for float input) the result is float, not rounded.
    """
    if tuple(picture.shape[1:]) == size:
        return picture
    shrinking = size[0] < picture.shape[1] or size[1] < picture.shape[2]
    if picture.dtype == torch.uint8 and picture.device.type != "cpu":
        picture = picture.float()
    return F.interpolate(
        picture.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=antialias and shrinking
    )[0]


def resized_shorter_side(height: int, width: int, side: int) -> tuple[int, int]:
    """The size torchvision's ``Resize(side)`` gives: the shorter side ``side``, the aspect kept."""
    if height <= width:
        return side, max(1, int(side * width / height))
    return max(1, int(side * height / width)), side


def _is_missing(sample: Any) -> bool:
    """A sample whose image is missing from the dataset (an empty input sample)."""
    if getattr(sample, "missing", False):
        return True
    data = getattr(sample, "data", None)
    return data is not None and memoryview(data).nbytes == 0


class Loader:
    """Batches of decoded images and their targets, for a training loop.

    ``dataset`` is a :class:`bzna_boxes.Dataset` or :class:`bzna_boxes.ImageNet` split (anything
    with ``len()``, ``[i].image(track)`` and ``[i].target``; ``.targets`` is used when present).

    Order: ``sampler`` (any ``torch.utils.data.Sampler``, e.g. ``DistributedSampler``; call its
    ``set_epoch`` or :meth:`set_epoch`), else a permutation of the indices drawn from
    ``torch.Generator().manual_seed(seed + epoch)`` when ``shuffle``, else ``0..len-1``. With
    ``world_size`` > 1 (and no sampler) that order is padded by repeating its first indices to a
    multiple of ``world_size`` (or cut to one with ``drop_last``), and rank ``rank`` takes every
    ``world_size``-th index from position ``rank``, as ``DistributedSampler`` does: every rank
    yields the same number of batches. The epoch starts at 0 and goes up by one at each
    ``iter(loader)``, unless :meth:`set_epoch` or :meth:`load_state_dict` sets it.

    ``device``: ``"auto"`` (NVDEC on the current CUDA device when it works; else CPU decoding,
    batches on that device when torch sees a GPU, else on the CPU), ``"cpu"``, ``"cuda"`` (the
    current CUDA device) or ``"cuda:N"`` (that GPU: NVDEC, or CPU decoding with the transform
    on that GPU when NVDEC is unavailable).

    ``transform``: ``"resize"`` (every picture resized to ``size``, aspect not kept),
    ``"random_resized_crop"`` (torchvision's ``RandomResizedCrop(size, scale, ratio)`` then a
    horizontal flip with probability 0.5, on the picture at its full resolution, parameters
    drawn from :func:`sample_generator` ``(seed, epoch, index)``), or ``"eval"`` (``Resize``
    of the shorter side to ``size * 256 / 224``, aspect kept, then ``CenterCrop(size)``).
    ``size``: an int (square) or ``(height, width)``; None keeps the clean-aperture size
    (``"resize"`` only; then all images of a batch must have the same size).

    Output: ``dtype`` ``torch.uint8`` (0..255) or a float dtype (0..1, or ``(x - mean) / std``
    when ``mean`` and ``std`` are given, per channel, in 0..1 units);
    ``channels_last`` gives the batch in ``torch.channels_last`` memory format.

    The last batch is partial unless ``drop_last``. A sample whose image is missing from the
    dataset (an empty input sample, as the 81 of the seed's ImageNet) is skipped with a warning
    (logger ``bzna_boxes.torch``): its batch is one image shorter and targets stay aligned.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        device: Any = "auto",
        size: int | Sequence[int] | None = (224, 224),
        drop_last: bool = False,
        sampler: Any = None,
        track: str = layout.THUMB_TRACK,
        dtype: torch.dtype = torch.uint8,
        num_threads: int | None = None,
        prefetch: int = 2,
        antialias: bool = True,
        transform: str = "resize",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels_last: bool = False,
        with_indices: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("shuffle and sampler are exclusive: shuffle with the sampler (e.g. DistributedSampler(shuffle=True))")
        if sampler is not None and world_size != 1:
            raise ValueError("sampler and world_size are exclusive: shard with one or the other")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, not {rank} of {world_size}")
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ValueError(f"dtype must be torch.uint8 or a float dtype, not {dtype}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}")
        if isinstance(size, int):
            size = (size, size)
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ValueError(f"size must be positive, not {size}")
        elif transform != "resize":
            raise ValueError(f"transform {transform!r} needs a size")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is not None and not dtype.is_floating_point:
            raise ValueError("mean and std normalise to a float dtype: give dtype=torch.float32 (or another float)")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, not {seed}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.size = size
        self.drop_last = drop_last
        self.sampler = sampler
        self.track = track
        self.dtype = dtype
        self.prefetch = prefetch
        self.antialias = antialias
        self.transform = transform
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.channels_last = channels_last
        self.with_indices = with_indices
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.decoder, self.device = _open(device)
        self.num_threads = num_threads or default_threads(self.decoder)
        self._normalise = None
        if mean is not None:
            mean_ = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
            std_ = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
            self._normalise = (mean_.to(self.device, dtype), std_.to(self.device, dtype))
        self._targets: np.ndarray | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._handoff_: _StreamHandoff | None = None
        self._skip = 0  # batches of the next epoch already yielded before a restart
        self._position = (0, 0)  # (epoch, batches yielded in it) of the iteration under way

    # -- order ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (and pass it to the sampler's ``set_epoch``)."""
        self.epoch = epoch
        self._position = (epoch, 0)
        self._skip = 0
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        _check_unchanged(self.dataset)

    def _order(self, epoch: int) -> list[int]:
        if self.sampler is not None:
            return [int(i) for i in self.sampler]
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            return torch.randperm(len(self.dataset), generator=generator).tolist()
        return list(range(len(self.dataset)))

    def _indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order."""
        order = self._order(epoch)
        if self.world_size == 1 or not order:
            return order
        if self.drop_last:
            order = order[: len(order) - len(order) % self.world_size]
        else:
            missing = -len(order) % self.world_size
            order = order + (order * math.ceil(missing / len(order)))[:missing]
        return order[self.rank :: self.world_size]

    def _samples_per_epoch(self) -> int:
        if self.sampler is not None:
            return len(self.sampler)
        count = len(self.dataset)
        if self.world_size == 1:
            return count
        if self.drop_last:
            return count // self.world_size
        return math.ceil(count / self.world_size)

    def __len__(self) -> int:
        count = self._samples_per_epoch()
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    # -- resuming -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: ``{"epoch", "batch", "seed"}``, for :meth:`load_state_dict` after a restart.

        During an epoch, ``batch`` counts the batches already yielded (the one in hand included);
        between epochs it is 0 and ``epoch`` the next one.
        """
        epoch, batch = self._position
        return {"epoch": epoch, "batch": batch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration yields the rest of epoch ``state["epoch"]``, from batch ``state["batch"]``.

        With the same dataset, sampler and options, those are exactly the batches (images,
        augmentation and order) that the uninterrupted run yielded there.
        """
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))
        self._skip = int(state["batch"])
        self._position = (self.epoch, self._skip)

    # -- one image ------------------------------------------------------------------------

    def _load_targets(self) -> None:
        """Read all targets in one vectorized read when the dataset offers ``targets``."""
        if self._targets is None and hasattr(self.dataset, "targets"):
            self._targets = np.asarray(self.dataset.targets, dtype=np.int64)

    def _target(self, index: int, sample: Any) -> int:
        if self._targets is not None:
            return int(self._targets[index])
        return int(sample.target)

    def _load(self, index: int, epoch: int, sample: Any = None) -> tuple[torch.Tensor, int, int] | None:
        """Decode and transform sample ``index`` (``sample``, when already read); None when it is missing."""
        if sample is None:
            sample = self.dataset[index]
        if _is_missing(sample):
            log.warning("sample %d has no image (missing from the dataset): skipped", index)
            return None
        with self._handoff.making():
            try:
                picture = self.decoder.decode(sample.image(self.track))
            except Exception:
                _check_unchanged(self.dataset)  # a file changed underneath: say so rather than the decoder's error
                raise
            if isinstance(picture, np.ndarray):  # CPU decoder: H x W x 3, seen as 3 x H x W (channels last)
                picture = torch.from_numpy(picture).permute(2, 0, 1)
                if self.device.type != "cpu":
                    picture = picture.to(self.device, non_blocking=True)
            picture = self._transform(picture, index, epoch)
        return picture, self._target(index, sample), index

    def _transform(self, picture: torch.Tensor, index: int, epoch: int) -> torch.Tensor:
        """3 x h x w uint8 -> 3 x H x W, uint8 or float 0..255 (not rounded)."""
        if self.transform == "resize":
            if self.size is None:
                return picture
            return resize(picture, self.size, self.antialias)
        if self.transform == "eval":
            side = round(max(self.size) * 256 / 224)
            resized = resize(picture, resized_shorter_side(picture.shape[1], picture.shape[2], side), self.antialias)
            top = int(round((resized.shape[1] - self.size[0]) / 2.0))
            left = int(round((resized.shape[2] - self.size[1]) / 2.0))
            if top < 0 or left < 0:  # a size larger than the resized picture: resize to it
                return resize(picture, self.size, self.antialias)
            return resized[:, top : top + self.size[0], left : left + self.size[1]]
        generator = sample_generator(self.seed, epoch, index)
        top, left, height, width = random_resized_crop_box(picture.shape[1], picture.shape[2], self.scale, self.ratio, generator)
        cropped = resize(picture[:, top : top + height, left : left + width], self.size, self.antialias)
        if torch.rand(1, generator=generator).item() < 0.5:
            cropped = cropped.flip(-1)
        return cropped

    # -- batches --------------------------------------------------------------------------

    def _batch(self, loaded: list[tuple[torch.Tensor, int, int] | None]) -> tuple[torch.Tensor, ...]:
        """Stack the present samples, then convert, normalise and lay out the batch once."""
        present = [item for item in loaded if item is not None]
        with self._handoff.making():
            if present:
                shapes = {tuple(image.shape) for image, _, _ in present}
                if len(shapes) > 1:
                    raise ValueError(f"images of different sizes in one batch ({sorted(shapes)[:3]}...): give the Loader a size")
                pictures = [image for image, _, _ in present]
                if len({image.dtype for image in pictures}) > 1:
                    pictures = [image.float() for image in pictures]
                images = torch.stack(pictures)
            else:
                height, width = self.size or (0, 0)
                images = torch.empty((0, 3, height, width), dtype=torch.uint8, device=self.device)
            images = self._convert(images)
            targets = torch.tensor([target for _, target, _ in present], dtype=torch.int64).to(self.device, non_blocking=True)
            batch: tuple[torch.Tensor, ...] = (images, targets)
            if self.with_indices:
                batch += (torch.tensor([index for _, _, index in present], dtype=torch.int64),)
        return batch

    def _convert(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of uint8 or float 0..255 pictures to the loader's dtype, scale and memory format."""
        if self.dtype == torch.uint8:
            if images.dtype != torch.uint8:
                images = images.round_().clamp_(0.0, 255.0).to(torch.uint8)
        else:
            resized_in_float = images.is_floating_point()
            images = images.to(self.dtype)
            if resized_in_float:
                images = images.clamp_(0.0, 255.0)
            if self._normalise is None:
                images = images.div_(255.0)
            else:
                mean, std = self._normalise
                images = images.sub_(mean).div_(std)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    @property
    def _handoff(self) -> "_StreamHandoff":
        if self._handoff_ is None:  # made at the first batch: constructing a Loader starts nothing on the GPU
            self._handoff_ = _StreamHandoff(self.device)
        return self._handoff_

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = _single_threaded_pool(self.num_threads)
        return self._pool

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        _check_unchanged(self.dataset)
        self._load_targets()
        epoch = self.epoch
        self.epoch += 1
        skip, self._skip = self._skip, 0
        indices = self._indices(epoch)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        self._position = (epoch, skip)
        return _prefetch(self, epoch, batches, skip)

    def close(self) -> None:
        """Stop the decoding threads (a later iteration starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _check_unchanged(dataset: Any) -> None:
    """``dataset.check_unchanged()`` where the dataset has one: a FileChangedError when its file
    was replaced (e.g. rebuilt by ``bzna build``) since it was opened."""
    check = getattr(dataset, "check_unchanged", None)
    if check is not None:
        check()


class _StreamHandoff:
    """Batches made on a side CUDA stream and handed to the consumer's stream (nothing on the CPU).

    The decoding threads and the batch thread work on ``stream``; after each batch an event is
    recorded there, and before the batch is yielded the consumer's current stream waits on the
    event and the batch's tensors are marked as used on it (``record_stream``), so that a
    training loop on any stream (``torch.cuda.stream``, CUDA graphs) reads finished batches and
    the caching allocator does not reuse their memory too early.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def making(self) -> contextlib.AbstractContextManager:
        """Run the block's CUDA work on the side stream (a no-op on the CPU)."""
        if self.stream is None:
            return contextlib.nullcontext()
        return torch.cuda.stream(self.stream)

    def done(self) -> Any:
        """An event recorded on the side stream after the batch (None on the CPU)."""
        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event

    def receive(self, batch: tuple[torch.Tensor, ...], event: Any) -> tuple[torch.Tensor, ...]:
        """Make ``batch`` safe to use on the caller's current stream."""
        if event is None:
            return batch
        current = torch.cuda.current_stream(self.device)
        current.wait_event(event)
        for tensor in batch:
            if tensor.is_cuda:
                tensor.record_stream(current)
        return batch


def _single_threaded_pool(threads: int) -> ThreadPoolExecutor:
    """A pool whose threads run torch's CPU operations on one thread each.

    Each decoding thread resizes its own images: with torch's default intra-op parallelism,
    N threads would each start a team of (cores) OpenMP threads, and the oversubscription
    makes CPU resizing up to 10 times slower. ``torch.set_num_threads`` is per thread for
    OpenMP but also sets the default of threads started later, so the workers set 1 while
    the caller waits, then the caller puts the default back.
    """
    started = threading.Barrier(threads + 1)

    def one_thread() -> None:
        torch.get_num_threads()  # torch's lazy per-thread setup first, or it would undo the next line
        torch.set_num_threads(1)
        started.wait()

    default = torch.get_num_threads()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="bzna-decode", initializer=one_thread)
    for _ in range(threads):  # each submit starts one more thread while none is idle
        pool.submit(int)
    try:
        started.wait(timeout=60)
    finally:
        torch.set_num_threads(default)
    return pool


_END = object()


def _prefetch(loader: Loader, epoch: int, batches: list[list[int]], skip: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield the batches from number ``skip`` on, prepared by a background thread up to ``loader.prefetch`` ahead."""
    ready: queue.Queue = queue.Queue(maxsize=loader.prefetch)
    stop = threading.Event()
    settled = threading.Event()
    pool = loader._executor()
    handoff = loader._handoff

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        if loader.device.type == "cpu":
            # batches made on the CPU while the decoding threads keep every core busy: a team of
            # OpenMP threads here (torch's default) only spins, up to a third more CPU time
            torch.get_num_threads()
            torch.set_num_threads(1)
        settled.set()
        pending: collections.deque[list[Future] | Exception] = collections.deque()
        fetched = _fetched(loader.dataset, batches[skip:], loader.prefetch)

        def submit() -> None:
            try:
                batch, samples = next(fetched, (None, None))
            except Exception as exc:  # a batch that cannot be read: raised in its turn
                pending.append(exc)
                return
            if batch is not None:
                pending.append([pool.submit(loader._load, index, epoch, sample) for index, sample in zip(batch, samples)])

        try:
            for _ in range(loader.prefetch):
                submit()
            while pending and not stop.is_set():
                futures = pending.popleft()
                if isinstance(futures, Exception):
                    raise futures
                submit()
                batch = loader._batch([future.result() for future in futures])
                if not put((batch, handoff.done())):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            for futures in pending:
                for future in futures if isinstance(futures, list) else ():
                    future.cancel()
            fetched.close()
            put(_END)

    producer = threading.Thread(target=produce, name="bzna-loader", daemon=True)
    default = torch.get_num_threads()
    producer.start()
    try:
        settled.wait(timeout=60)
    finally:
        torch.set_num_threads(default)  # the default of threads started later (see _single_threaded_pool)
    done = skip
    try:
        while True:
            item = ready.get()
            if item is _END:
                loader._position = (epoch + 1, 0)
                return
            if isinstance(item, BaseException):
                raise item
            batch, event = item
            done += 1
            loader._position = (epoch, done)
            yield handoff.receive(batch, event)
    finally:
        stop.set()
        producer.join()


def _fetched(dataset: Any, batches: list[list[int]], ahead: int) -> Iterator[tuple[list[int], list]]:
    """``(indices, samples)`` of each batch in order, each batch's bytes read together
    (:meth:`~bzna_boxes.dataset.Dataset.fetch`). From a storage without a map (an object store),
    a thread fetches the next ``ahead`` batches while the first are decoded: at most ``ahead``
    batches in flight, so latency per request is hidden and memory stays bounded. A dataset
    without ``fetch`` gives None for each sample: the decoding threads read ``dataset[i]``."""
    if not hasattr(dataset, "fetch"):
        for batch in batches:
            yield batch, [None] * len(batch)
        return
    if maps_its_file(dataset):
        for batch in batches:
            yield batch, dataset.fetch(batch)
        return
    fetcher = ThreadPoolExecutor(ahead, thread_name_prefix="bzna-fetch")
    in_flight: collections.deque[tuple[list[int], Future]] = collections.deque()
    upcoming = iter(batches)
    try:
        for batch in itertools.islice(upcoming, ahead):
            in_flight.append((batch, fetcher.submit(dataset.fetch, batch)))
        while in_flight:
            batch, future = in_flight.popleft()
            samples = future.result()
            following = next(upcoming, None)
            if following is not None:
                in_flight.append((following, fetcher.submit(dataset.fetch, following)))
            yield batch, samples
    finally:
        fetcher.shutdown(wait=True, cancel_futures=True)


class ImageDataset(torch.utils.data.Dataset):
    """A ``.bzna`` dataset as a map-style torch ``Dataset`` of ``(image, target)``, like ``ImageFolder``.

    ``image`` is the picture of ``track`` decoded (FFmpeg on the CPU; ``device="cuda[:N]"``:
    NVDEC, in the main process only) and cropped to its clean aperture, a uint8 ``3 x H x W``
    tensor, or what ``transform`` makes of it (torchvision v2 transforms take it as an image);
    ``target`` the class target, or ``target_transform`` of it. On the CPU the tensor is stored
    channels last (``image.permute(1, 2, 0)`` is the decoder's contiguous ``H x W x 3`` array,
    no copy): torch's uint8 resize, which v2's ``Resize`` and ``RandomResizedCrop`` use, runs
    about twice as fast on that layout; ``image.contiguous()`` gives the ``PILToTensor`` layout.

    ``path_or_dataset``: a path, or a :class:`bzna_boxes.Dataset` (a split or a view). It pickles
    without its decoder (each ``DataLoader`` worker opens its own), so
    ``DataLoader(ImageDataset(...), num_workers=N, shuffle=True)`` works as with ``ImageFolder``.
    Asking for a missing sample raises :class:`bzna_boxes.dataset.MissingSampleError` naming it;
    ``indices`` lists the present ones, for a sampler (``SubsetRandomSampler(ds.indices)``).
    """

    def __init__(
        self,
        path_or_dataset: Any,
        track: str = layout.INPUT_TRACK,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        device: Any = "cpu",
    ):
        from .dataset import Dataset

        if isinstance(path_or_dataset, (str, os.PathLike)):
            path_or_dataset = Dataset(path_or_dataset)
        self.dataset = path_or_dataset
        self.track = track
        self.transform = transform
        self.target_transform = target_transform
        self.device = torch.device(resolve_device(device))
        self._decoder: Decoder | None = None
        self._targets = np.asarray(self.dataset.targets, dtype=np.int64) if hasattr(self.dataset, "targets") else None

    @property
    def indices(self) -> np.ndarray:
        """Indices of the samples that have an image (all but the dataset's ``missing``)."""
        present = np.ones(len(self.dataset), dtype=bool)
        present[np.asarray(self.dataset.missing, dtype=np.int64)] = False
        return np.flatnonzero(present)

    @property
    def targets(self) -> np.ndarray:
        """Every sample's target (int64), as ``ImageFolder.targets``."""
        return self._targets.copy() if self._targets is not None else np.array([self.dataset[i].target for i in range(len(self))])

    @property
    def classes(self) -> list[str]:
        """The class names, name k for target k, as ``ImageFolder.classes`` (see ``Dataset.classes``)."""
        return list(getattr(self.dataset, "classes", []))

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Each class name's target, as ``ImageFolder.class_to_idx``."""
        return {name: target for target, name in enumerate(self.classes)}

    def _decode(self, image) -> torch.Tensor:
        if self._decoder is None:
            if self.device.type == "cpu":
                self._decoder = CpuDecoder()
            else:
                self._decoder = NvdecDecoder(self.device, layout="CHW")
        picture = self._decoder.decode(image)
        if isinstance(picture, np.ndarray):  # H x W x 3, seen as 3 x H x W (channels last)
            return torch.from_numpy(picture).permute(2, 0, 1)
        return picture

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample = self.dataset[int(index)]
        image = self._decode(sample.image(self.track))  # MissingSampleError for a missing sample
        target = int(self._targets[index]) if self._targets is not None else int(sample.target)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoder"] = None
        return state

    def __repr__(self) -> str:
        return f"<ImageDataset {self.dataset!r} track={self.track!r} device={str(self.device)!r}>"
