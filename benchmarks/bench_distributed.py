"""Distributed builds: local pool vs Dask LocalCluster, and merge throughput vs ``cp``.

    python benchmarks/bench_distributed.py [--images 200] [--merge-mb 1000] [--runs 3]

1. Images/s for the same source (``--images`` photographs cut to 500x375, the typical ImageNet
   size) with ``bzna build --workers 2`` (local process pool) and with a Dask ``LocalCluster``
   of 1 and 2 single-threaded workers, default encoder settings, median of ``--runs``, in one
   run. Target: the distributed build at 2 workers within 10 % of the local pool.
2. Merge throughput: :func:`bzna_boxes.writer.concat` of shards totalling ``--merge-mb`` MB
   against ``cp`` of the same bytes (target: at least 0.8x ``cp``'s MB/s).
3. A projection of ImageNet's wall time on N workers from the measured per-worker rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from photos import photo_folder  # noqa: E402

IMAGENET = 1_431_167


def make_sources(root: Path, count: int) -> Path:
    """``count`` 500x375 JPEGs cut from the fixture photographs, in 10 class folders."""
    photo_folder(root / "src", (500, 375), count, classes=10)
    return root / "src"


def time_local(src: Path, out: Path, workers: int) -> float:
    from bzna_boxes.build import build

    start = time.perf_counter()
    build(src, out, workers=workers, progress=False, fsync=False)
    return time.perf_counter() - start


def time_cluster(src: Path, out: Path, client, count: int, workers: int) -> float:
    from bzna_boxes.distributed import build

    start = time.perf_counter()
    build(src, out, client, shard_size=max(1, count // (4 * workers)), progress=False)
    return time.perf_counter() - start


def bench_builds(src: Path, work: Path, count: int, runs: int) -> dict[str, list[float]]:
    from distributed import Client, LocalCluster

    times: dict[str, list[float]] = {"local pool, 2 workers": [], "LocalCluster, 1 worker": [], "LocalCluster, 2 workers": []}
    clusters = {}
    for n in (1, 2):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        clusters[n] = (cluster, Client(cluster))
    try:
        for run in range(runs):  # round-robin, so that drifts in machine load hit every row alike
            times["local pool, 2 workers"].append(time_local(src, work / f"local{run}.bzna", 2))
            for n in (1, 2):
                label = f"LocalCluster, {n} worker{'s' if n > 1 else ''}"
                times[label].append(time_cluster(src, work / f"dask{n}-{run}.bzna", clusters[n][1], count, n))
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    return times


def make_shards(work: Path, total_mb: int, shards: int = 4) -> list[Path]:
    """Shards of pre-encoded real samples (one libx265 encode, repeated) totalling about ``total_mb`` MB."""
    from bzna_boxes.encode import encode_image
    from bzna_boxes.writer import DatasetWriter

    rng = np.random.default_rng(1)
    encoded = encode_image(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), preset="ultrafast", crf=10)
    per_sample = len(encoded.image.payload) + (len(encoded.thumbnail.payload) if encoded.thumbnail else 0) + 2000
    per_shard = max(1, total_mb * 1_000_000 // per_sample // shards)
    paths = []
    for s in range(shards):
        path = work / f"shard{s}.bzna"
        with DatasetWriter(path, fsync=False) as writer:
            for i in range(per_shard):
                writer.add(encoded, target=i % 1000, filename=f"n{s:04d}_{i:07d}.JPEG")
        paths.append(path)
    return paths


def bench_merge(paths: list[Path], work: Path, runs: int) -> tuple[float, list[float], list[float]]:
    from bzna_boxes.writer import concat

    total = sum(p.stat().st_size for p in paths)
    concat_times, cp_times = [], []
    for run in range(runs):
        target = work / "merged.bzna"
        start = time.perf_counter()
        concat(paths, target, fsync=False)
        concat_times.append(time.perf_counter() - start)
        target.unlink()
        copy = work / "copied.bin"
        start = time.perf_counter()
        with open(copy, "wb") as out:
            subprocess.run(["cat", *map(str, paths)], stdout=out, check=True)
        cp_times.append(time.perf_counter() - start)
        copy.unlink()
        start = time.perf_counter()
        for i, p in enumerate(paths):
            subprocess.run(["cp", str(p), str(work / f"copy{i}.bin")], check=True)
        cp_times[-1] = min(cp_times[-1], time.perf_counter() - start)
        for i in range(len(paths)):
            (work / f"copy{i}.bin").unlink()
    return total, concat_times, cp_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--merge-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-builds", action="store_true")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    print(f"command: python {' '.join(sys.argv)}\n")
    work = Path(tempfile.mkdtemp(prefix="bzna-bench-dist-"))
    try:
        if not args.skip_builds:
            src = make_sources(work, args.images)
            times = bench_builds(src, work, args.images, args.runs)
            local = statistics.median(times["local pool, 2 workers"])
            print(f"build of {args.images} images of 500x375, default settings, median of {args.runs}:")
            print(f"{'':28s}{'seconds':>10s}{'images/s':>10s}{'vs local':>10s}")
            for label, values in times.items():
                seconds = statistics.median(values)
                print(f"{label:28s}{seconds:10.2f}{args.images / seconds:10.1f}{seconds / local:10.2f}x")
            one = args.images / statistics.median(times["LocalCluster, 1 worker"])
            two = statistics.median(times["LocalCluster, 2 workers"])
            print(f"distributed overhead at 2 workers: {100 * (two / local - 1):+.1f} % (target <= +10 %)")
            print(f"speed-up from 1 to 2 Dask workers: {statistics.median(times['LocalCluster, 1 worker']) / two:.2f}x\n")
            print("projection for ImageNet (1,431,167 images of this kind; merge at the rate below):")
            for n in (16, 64, 256, 1024):
                hours = IMAGENET / (one * n) / 3600
                print(f"  {n:5d} workers: {hours:7.2f} h of encoding")
        paths = make_shards(work, args.merge_mb)
        total, concat_times, cp_times = bench_merge(paths, work, args.runs)
        merge = total / statistics.median(concat_times) / 1e6
        cp = total / statistics.median(cp_times) / 1e6
        print(f"\nmerge of {len(paths)} shards, {total / 1e6:.0f} MB (page cache warm), median of {args.runs}:")
        print(f"  concat: {merge:8.0f} MB/s\n  cp/cat: {cp:8.0f} MB/s\n  ratio:  {merge / cp:8.2f}x (target >= 0.8x)")
        print(f"  ImageNet's ~110 GB would merge in about {110e3 / merge / 60:.1f} min at this rate")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
