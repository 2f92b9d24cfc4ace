"""The ``Loader`` on the CPU reading through a storage without a map, with latency, against local disk.

    python benchmarks/bench_loader_storage.py [--latency-ms 20] [--samples 1024] [--repeats 3]

Stands for an object store: the file is read through a wrapper of its ``LocalStorage`` that has
no map (``buffer`` None, ``view`` and ``read_many`` copy) and sleeps ``--latency-ms`` before
each request (a ``read_many`` of a batch being one request, as a remote storage issues its
ranges concurrently). Rows, taking turns, one epoch each, median of ``--repeats`` after a
warm-up epoch, on the real picture dataset of ``bench_index.py`` (crops of the fixture
photographs, libx265 ultrafast; made when absent), the first ``--samples`` of it, batches of 64,
``random_resized_crop`` to 224 of ``bzna_input``, one decoding thread per core:

* anchor: the Loader over the local file (the map);
* the same file through the wrapper without latency (the copies cost);
* through the wrapper with the latency (the batches fetched ahead hide it, or not).

Target: with 20 ms per request the Loader keeps at least 90 % of its local rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


class SlowStorage:
    """A ``LocalStorage`` seen as a remote storage: no map, copies, ``latency`` seconds per request."""

    def __init__(self, inner, latency: float):
        self.inner, self.name, self.size, self.latency = inner, inner.name, inner.size, latency
        self.requests = 0
        self._lock = threading.Lock()

    buffer = None

    def _wait(self) -> None:
        with self._lock:
            self.requests += 1
        time.sleep(self.latency)

    def read(self, offset: int, size: int) -> bytes:
        self._wait()
        return self.inner.read(offset, size)

    def view(self, offset: int, size: int) -> memoryview:
        return memoryview(self.read(offset, size))

    def read_many(self, spans) -> list[memoryview]:
        self._wait()
        return [memoryview(self.inner.read(offset, size)) for offset, size in spans]

    def changed(self):
        return self.inner.changed()

    def close(self) -> None:
        self.inner.close()


def dataset(path: Path, samples: int, latency: float | None):
    from bzna_boxes import Dataset
    from bzna_boxes.index import BznaFile

    file = BznaFile(path)
    if latency is not None:
        state = file._load()  # a storage for BznaFile to open through: put under the open file
        state.storage = SlowStorage(state.storage, latency)
    return Dataset(file)[:samples]


def epoch_rate(loader) -> float:
    count = 0
    start = time.perf_counter()
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=Path("/tmp/bzna-bench/pictures.bzna"), help="the picture dataset (made when absent)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from bench_index import build_picture_dataset

    from bzna_boxes.torch import Loader

    args.path.parent.mkdir(parents=True, exist_ok=True)
    build_picture_dataset(args.path, 4096, 64)
    cores = len(os.sched_getaffinity(0))
    latency = args.latency_ms / 1000
    rows = {
        "local file (anchor)": dataset(args.path, args.samples, None),
        "no map, 0 ms per request": dataset(args.path, args.samples, 0.0),
        f"no map, {args.latency_ms:g} ms per request": dataset(args.path, args.samples, latency),
    }
    loaders = {
        name: Loader(ds, batch_size=64, shuffle=True, device="cpu", size=224, track="bzna_input", transform="random_resized_crop", num_threads=cores)
        for name, ds in rows.items()
    }
    print(f"{cores} cores, load average {os.getloadavg()}; {args.samples} samples of {args.path}, batches of 64, median of {args.repeats} epochs")
    for loader in loaders.values():
        epoch_rate(loader)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            rates[name].append(epoch_rate(loader))
    anchor = statistics.median(rates["local file (anchor)"])
    for name, runs in rates.items():
        rate = statistics.median(runs)
        print(f"  {name:32s} {rate:8.1f} images/s  {rate / anchor:5.2f}x the local file  (runs: {', '.join(f'{r:.0f}' for r in runs)})")
    slow = rows[f"no map, {args.latency_ms:g} ms per request"].file.storage
    print(f"  requests through the slow storage: {slow.requests:,} ({args.repeats + 1} epochs of {-(-args.samples // 64)} batches, and the targets)")
    for loader in loaders.values():
        loader.close()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
