"""Training input on the CPU, side by side: ``.bzna`` against torchvision's JPEG pipeline.

    python benchmarks/bench_training.py                      # needs torchvision for the anchor
    python benchmarks/bench_training.py --n 256 --repeats 7

The same images (``--n`` distinct 500x375 crops of the fixture photographs, ImageNet's most
common size) as a JPEG ImageFolder (quality 90) and as a ``.bzna`` built from it (``bzna build``,
default encoder settings). Every row gives 64 x 3 x 224 x 224 uint8 batches of randomly
resized crops (scale 0.08..1, ratio 3/4..4/3) flipped with probability 0.5, from the full
pictures, at 1 and at every core of workers:

* Loader: ``bzna_boxes.torch.Loader(transform="random_resized_crop", track="bzna_input")``, its
  decoding threads;
* DataLoader(ImageDataset): ``ImageDataset`` + torchvision v2 ``RandomResizedCrop`` +
  ``RandomHorizontalFlip`` in ``DataLoader`` worker processes;
* anchor: torchvision ``ImageFolder`` (PIL decoding) + ``RandomResizedCrop`` +
  ``RandomHorizontalFlip`` + ``PILToTensor``, ``DataLoader`` worker processes.

DataLoaders keep their workers (``persistent_workers``). The rows take turns, one epoch each,
``--repeats`` times after a warm-up epoch; a row's figure is the median images/s, and its ratio
is against the anchor at the same number of workers. The load average is printed before and after.
Each row also gives its CPU time per image (user + system, median over the epochs: this process,
all its threads, plus a DataLoader's worker processes, read from ``/proc``), which other programs
on a shared machine disturb far less than the wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from photos import photo_folder  # noqa: E402


def cpu_seconds(batches) -> float:
    """CPU time (user + system) so far of this process and of a DataLoader's worker processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    iterator = getattr(batches, "_iterator", None)
    for worker in getattr(iterator, "_workers", ()):
        with open(f"/proc/{worker.pid}/stat") as stat:  # utime, stime: fields 14 and 15, in clock ticks
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def epoch_rate(batches) -> tuple[float, float]:
    """(images/s, CPU ms per image) of one epoch."""
    count = 0
    start, cpu = time.perf_counter(), cpu_seconds(batches)
    for images, _ in batches:
        assert images.shape[1:] == (3, 224, 224) and images.dtype.is_floating_point is False
        count += len(images)
    return count / (time.perf_counter() - start), 1000 * (cpu_seconds(batches) - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=192, help="images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="worker counts (default: 1 and every core)")
    args = parser.parse_args()

    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision.transforms import v2

    from bzna_boxes.build import build
    from bzna_boxes.dataset import Dataset
    from bzna_boxes.torch import ImageDataset, Loader

    cores = len(os.sched_getaffinity(0))
    counts = args.workers or sorted({1, cores})
    print(f"{platform.processor() or platform.machine()}, {cores} cores; Python {platform.python_version()}, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}; load average {os.getloadavg()}")
    crop = [v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True), v2.RandomHorizontalFlip()]
    with tempfile.TemporaryDirectory() as folder:
        jpegs, bzna = Path(folder) / "jpegs", Path(folder) / "photos.bzna"
        photo_folder(jpegs, (500, 375), args.n, classes=4)
        start = time.perf_counter()
        build(jpegs, bzna, workers=1, progress=False)
        print(f"{args.n} JPEGs of 500x375 ({sum(p.stat().st_size for p in jpegs.rglob('*.jpg')) / 1e6:.1f} MB), "
              f".bzna {bzna.stat().st_size / 1e6:.1f} MB built in {time.perf_counter() - start:.1f} s; "
              f"median of {args.repeats} epochs per row, batches of 64\n")
        rows = {}
        for workers in counts:
            rows[("Loader", workers)] = Loader(Dataset(bzna), batch_size=64, shuffle=True, device="cpu", size=224,
                                               track="bzna_input", transform="random_resized_crop", num_threads=workers)
            rows[("DataLoader(ImageDataset)", workers)] = DataLoader(
                ImageDataset(bzna, transform=v2.Compose(crop)), batch_size=64, shuffle=True,
                num_workers=workers, persistent_workers=True)
            rows[("ImageFolder + DataLoader (JPEG)", workers)] = DataLoader(
                datasets.ImageFolder(jpegs, transform=v2.Compose([*crop, v2.PILToTensor()])), batch_size=64,
                shuffle=True, num_workers=workers, persistent_workers=True)
        rates: dict = {key: [] for key in rows}
        # warm-up: DataLoader workers first (forked before any Loader thread runs), then the Loaders
        for batches in sorted(rows.values(), key=lambda batches: isinstance(batches, Loader)):
            epoch_rate(batches)
        for _ in range(args.repeats):
            for key, batches in rows.items():
                rates[key].append(epoch_rate(batches))
        for workers in counts:
            anchor = statistics.median(rate for rate, _ in rates[("ImageFolder + DataLoader (JPEG)", workers)])
            anchor_cpu = statistics.median(cpu for _, cpu in rates[("ImageFolder + DataLoader (JPEG)", workers)])
            print(f"{workers} worker{'s' if workers > 1 else ''}:")
            for name in ("Loader", "DataLoader(ImageDataset)", "ImageFolder + DataLoader (JPEG)"):
                rate = statistics.median(rate for rate, _ in rates[(name, workers)])
                cpu = statistics.median(cpu for _, cpu in rates[(name, workers)])
                print(f"  {name:34s} {rate:8.1f} images/s   {rate / anchor:5.2f}x the JPEG pipeline   "
                      f"CPU {cpu:5.2f} ms per image ({cpu / anchor_cpu:4.2f}x)")
        for key, batches in rows.items():
            if isinstance(batches, Loader):
                batches.close()
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
