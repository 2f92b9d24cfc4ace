"""Batches for PyTorch: decode, crop, resize and stack ``.bzna`` images on the training device.

:class:`Loader` iterates ``(images, targets)``: ``images`` an ``N x 3 x H x W`` tensor (uint8, or
a float dtype scaled to [0, 1]) and ``targets`` an int64 tensor of N, both on the device. Each
image is decoded (NVDEC on the GPU when it works, else FFmpeg on the CPU), cropped to its clean
aperture, then resized to ``size`` with bilinear interpolation on the device. Decoding runs in a
pool of threads, and batches are prepared in a background thread ``prefetch`` batches ahead, so
the next batch is decoded while the current one trains. This is the one module of the package
that imports torch at import time.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import layout
from .decode import CpuDecoder, NvdecDecoder, log_once
from .errors import DecoderUnavailable

__all__ = ["Loader"]

log = logging.getLogger(__name__)


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _open(device: Any, threads: int) -> tuple[CpuDecoder | NvdecDecoder, torch.device]:
    """The decoder for ``device`` and the device batches live on (see :class:`Loader`)."""
    name = str(device)
    if name == "cpu":
        return CpuDecoder(), torch.device("cpu")
    if name != "auto" and not name.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")
    target = "cuda:0" if name == "auto" else name
    try:
        decoder = NvdecDecoder(target, layout="CHW")
        log_once(f"Loader: decoding with NVDEC on {decoder.device}")
        return decoder, decoder.device
    except DecoderUnavailable as exc:
        if not torch.cuda.is_available():
            if name != "auto":
                raise DecoderUnavailable(f"{name} requested but torch sees no CUDA GPU; {exc}") from None
            log_once(f"Loader: decoding on the CPU ({threads} threads), batches on the CPU; {exc}")
            return CpuDecoder(), torch.device("cpu")
        out = torch.device(target)
        log_once(f"Loader: decoding on the CPU ({threads} threads), batches resized on {out}; {exc}")
        return CpuDecoder(), out


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

    Order: ``sampler`` (any ``torch.utils.data.Sampler``, e.g. ``DistributedSampler`` to shard
    across ranks; call its ``set_epoch`` or :meth:`set_epoch`), else a permutation of the
    indices drawn from ``torch.Generator().manual_seed(seed + epoch)`` when ``shuffle``, else
    ``0..len-1``. The epoch starts at 0 and goes up by one at each ``iter(loader)``, unless
    :meth:`set_epoch` sets it: the same seed gives the same sequence of epochs.

    ``device``: ``"auto"`` (NVDEC on cuda:0 when it works; else CPU decoding, batches on cuda:0
    when torch sees a GPU, else on the CPU), ``"cpu"``, or ``"cuda[:N]"`` (NVDEC, or CPU
    decoding with the crop and resize on that GPU when NVDEC is unavailable).

    ``size``: ``(height, width)`` every image is resized to (bilinear, ``antialias`` when
    shrinking), or None to keep the clean-aperture size (then all images of a batch must have
    the same size). ``dtype``: ``torch.uint8`` (0..255) or a float dtype (0..1).

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
        size: Sequence[int] | None = (224, 224),
        drop_last: bool = False,
        sampler: Any = None,
        track: str = layout.THUMB_TRACK,
        dtype: torch.dtype = torch.uint8,
        num_threads: int | None = None,
        prefetch: int = 2,
        antialias: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("shuffle and sampler are exclusive: shuffle with the sampler (e.g. DistributedSampler(shuffle=True))")
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ValueError(f"dtype must be torch.uint8 or a float dtype, not {dtype}")
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ValueError(f"size must be positive, not {size}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.size = size
        self.drop_last = drop_last
        self.sampler = sampler
        self.track = track
        self.dtype = dtype
        self.num_threads = num_threads or _default_threads()
        self.prefetch = prefetch
        self.antialias = antialias
        self.epoch = 0
        self.decoder, self.device = _open(device, self.num_threads)
        self._targets: np.ndarray | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- order ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (and pass it to the sampler's ``set_epoch``)."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        _check_unchanged(self.dataset)

    def _indices(self, epoch: int) -> list[int]:
        if self.sampler is not None:
            return [int(i) for i in self.sampler]
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            return torch.randperm(len(self.dataset), generator=generator).tolist()
        return list(range(len(self.dataset)))

    def __len__(self) -> int:
        count = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    # -- one image ------------------------------------------------------------------------

    def _load_targets(self) -> None:
        """Read all targets in one vectorized read when the dataset offers ``targets``."""
        if self._targets is None and hasattr(self.dataset, "targets"):
            self._targets = np.asarray(self.dataset.targets, dtype=np.int64)

    def _target(self, index: int, sample: Any) -> int:
        if self._targets is not None:
            return int(self._targets[index])
        return int(sample.target)

    def _load(self, index: int) -> tuple[torch.Tensor, int] | None:
        """Decode, crop, resize and convert sample ``index``; None when it is missing."""
        sample = self.dataset[index]
        if _is_missing(sample):
            log.warning("sample %d has no image (missing from the dataset): skipped", index)
            return None
        try:
            picture = self.decoder.decode(sample.image(self.track))
        except Exception:
            _check_unchanged(self.dataset)  # a file changed underneath: say so rather than the decoder's error
            raise
        if isinstance(picture, np.ndarray):  # CPU decoder: H x W x 3
            picture = torch.from_numpy(picture).permute(2, 0, 1)
            if self.device.type != "cpu":
                picture = picture.to(self.device)
        return self._resize(picture), self._target(index, sample)

    def _resize(self, picture: torch.Tensor) -> torch.Tensor:
        """3 x h x w uint8 -> 3 x H x W of the loader's dtype, on the device."""
        resize = self.size is not None and tuple(picture.shape[1:]) != self.size
        if not resize:
            if self.dtype == torch.uint8:
                return picture.contiguous()
            return picture.to(self.dtype).div_(255.0)
        shrinking = self.size[0] < picture.shape[1] or self.size[1] < picture.shape[2]
        resized = F.interpolate(
            picture.unsqueeze(0).float(),
            size=self.size,
            mode="bilinear",
            align_corners=False,
            antialias=self.antialias and shrinking,
        )[0]
        if self.dtype == torch.uint8:
            return resized.round_().clamp_(0.0, 255.0).to(torch.uint8)
        return resized.clamp_(0.0, 255.0).div_(255.0).to(self.dtype)

    # -- batches --------------------------------------------------------------------------

    def _batch(self, indices: list[int], loaded: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        present = [item for item in loaded if item is not None]
        if not present:
            height, width = self.size or (0, 0)
            images = torch.empty((0, 3, height, width), dtype=self.dtype, device=self.device)
            return images, torch.empty(0, dtype=torch.int64, device=self.device)
        shapes = {tuple(image.shape) for image, _ in present}
        if len(shapes) > 1:
            raise ValueError(f"images of different sizes in one batch ({sorted(shapes)[:3]}...): give the Loader a size")
        images = torch.stack([image for image, _ in present])
        targets = torch.tensor([target for _, target in present], dtype=torch.int64).to(self.device)
        return images, targets

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = _single_threaded_pool(self.num_threads)
        return self._pool

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _check_unchanged(self.dataset)
        self._load_targets()
        epoch = self.epoch
        self.epoch += 1
        indices = self._indices(epoch)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return _prefetch(self, batches)

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


def _prefetch(loader: Loader, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the batches, prepared by a background thread up to ``loader.prefetch`` ahead."""
    ready: queue.Queue = queue.Queue(maxsize=loader.prefetch)
    stop = threading.Event()
    pool = loader._executor()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        pending: collections.deque[tuple[list[int], list[Future]]] = collections.deque()
        upcoming = iter(batches)

        def submit() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                pending.append((batch, [pool.submit(loader._load, index) for index in batch]))

        try:
            for _ in range(loader.prefetch):
                submit()
            while pending and not stop.is_set():
                batch, futures = pending.popleft()
                submit()
                loaded = [future.result() for future in futures]
                if not put(loader._batch(batch, loaded)):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            for _, futures in pending:
                for future in futures:
                    future.cancel()
            put(_END)

    producer = threading.Thread(target=produce, name="bzna-loader", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()
