"""Decoding speed: CpuDecoder per core, the Loader end to end, and NVDEC where it runs.

    python benchmarks/bench_decode.py                  # CPU rows; GPU rows when NVDEC works
    python benchmarks/bench_decode.py --n 64 --repeats 5 --preset medium

A dataset is built first (``DatasetWriter``, default CRF, ``--preset``) from ``--n`` distinct
crops of the fixture photographs: "typical" crops of 500x375 (ImageNet's most common size: one
512x512 frame that is also the thumbnail) and "large" crops of 800x600 (stored at 683x512 in a
1024x512 frame, with a 512x384 thumbnail in its own 512x512 frame).

CPU rows, one thread, images one after the other (median over ``--repeats`` of the mean time
per image), beside two anchors measured in the same run on the same Annex B streams:

* FFmpeg floor: a bare PyAV ``hevc`` context (reused), decode only;
* FFmpeg + swscale: the same plus PyAV's default ``to_ndarray(format="rgb24")`` of the whole frame.

Then the Loader on the CPU (``N x 3 x 224 x 224`` uint8 batches of 64), with 1 thread and with
every core. GPU rows (only where :class:`~bzna_boxes.decode.NvdecDecoder` works): NVDEC per
image from one thread and from several, the Loader on the GPU into ``N x 3 x 224 x 224``
batches (timed to ``torch.cuda.synchronize()``), the CPU Loader on all cores of the same
machine beside it, and NVDEC on the full-size ``bzna_input`` pictures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bzna_boxes import layout  # noqa: E402
from bzna_boxes.decode import CpuDecoder, NvdecDecoder, to_annexb  # noqa: E402
from bzna_boxes.errors import DecoderUnavailable  # noqa: E402
from photos import photo_crops  # noqa: E402

TYPICAL = (500, 375)
LARGE = (800, 600)


def crops(size: tuple[int, int], n: int) -> list[np.ndarray]:
    """n distinct crops of ``size`` from the fixture photographs (zoomed a little more each round)."""
    return photo_crops(size, n, zoom_step=0.1, mirror_odd=True)


def build(path: Path, images: list[np.ndarray], preset: str) -> Path:
    from bzna_boxes.writer import DatasetWriter

    with DatasetWriter(path, fsync=False, preset=preset) as writer:
        for index, rgb in enumerate(images):
            writer.add(rgb, target=index % 1000, filename=f"{index}.jpg")
    return path


def per_image(works: dict[str, Callable[[object], object]], items: list, repeats: int) -> dict[str, float]:
    """Median over repeats of the mean seconds per item of each work, interleaved item by item
    (so that the drifts of a shared machine hit every row alike); one warm-up pass first."""
    for work in works.values():
        for item in items[:4]:
            work(item)
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        totals = dict.fromkeys(works, 0.0)
        for item in items:
            for name, work in works.items():
                start = time.perf_counter()
                work(item)
                totals[name] += time.perf_counter() - start
        for name in works:
            times[name].append(totals[name] / len(items))
    return {name: statistics.median(values) for name, values in times.items()}


def threaded(work: Callable[[object], object], items: list, threads: int, repeats: int, finish: Callable[[], object] = lambda: None) -> float:
    """Median seconds per item with ``threads`` threads splitting the items (``finish`` ends a pass).

    One pool serves the warm-up and every repeat, so that each thread's first use of the work
    (an NVDEC session, an FFmpeg context) falls outside the timed passes.
    """
    from concurrent.futures import ThreadPoolExecutor

    times = []
    with ThreadPoolExecutor(threads) as pool:
        warm = threading.Barrier(threads)

        def warm_up(item) -> None:
            work(item)
            warm.wait()  # every thread takes one warm-up item

        list(pool.map(warm_up, (items * threads)[:threads]))
        chunks = [items[k::threads] for k in range(threads)]
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda chunk: [work(item) for item in chunk], chunks))
            finish()
            times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times)


def loader_rates(runs: dict[str, tuple], epochs: int, repeats: int) -> dict[str, float]:
    """Median images/s of each Loader over ``epochs`` passes, the loaders taking turns.

    ``runs`` maps a label to ``(dataset, device, threads, track)``; batches of 64 at 224x224.
    """
    import torch

    from bzna_boxes.torch import Loader

    loaders = {
        name: Loader(dataset, batch_size=64, device=device, size=(224, 224), num_threads=threads, track=track)
        for name, (dataset, device, threads, track) in runs.items()
    }
    for loader in loaders.values():
        list(loader)  # warm-up: threads, decoder contexts, sessions
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            count = 0
            start = time.perf_counter()
            for _ in range(epochs):
                for images, _ in loader:
                    count += len(images)
            if loader.device.type == "cuda":
                torch.cuda.synchronize(loader.device)
            rates[name].append(count / (time.perf_counter() - start))
    for loader in loaders.values():
        loader.close()
    return {name: statistics.median(values) for name, values in rates.items()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def row(label: str, seconds: float, anchor: float | None = None, anchor_name: str = "") -> None:
    ratio = f"   {seconds / anchor:5.2f}x the time of {anchor_name}" if anchor else ""
    print(f"  {label:44s} {1 / seconds:8.1f} images/s  {1000 * seconds:7.2f} ms{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images per dataset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="passes per Loader measurement")
    parser.add_argument("--preset", default="medium", help="x265 preset of the benchmark datasets")
    parser.add_argument("--threads", type=int, default=None, help="decoding threads for 'all cores' (default: every core)")
    args = parser.parse_args()

    import av
    import torch

    cores = args.threads or len(os.sched_getaffinity(0))
    print(f"CPU: {cpu_name()}, {cores} cores; Python {platform.python_version()}, PyAV {av.__version__}, torch {torch.__version__}")
    from bzna_boxes.dataset import Dataset

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        typical = Dataset(build(Path(folder) / "typical.bzna", crops(TYPICAL, args.n), args.preset))
        large = Dataset(build(Path(folder) / "large.bzna", crops(LARGE, max(8, args.n // 2)), args.preset))
        print(f"datasets: {len(typical)} x {TYPICAL[0]}x{TYPICAL[1]} and {len(large)} x {LARGE[0]}x{LARGE[1]} crops, "
              f"preset {args.preset}, built in {time.perf_counter() - start:.1f} s; median of {args.repeats} repeats\n")
        thumbs = [typical[i].image(layout.THUMB_TRACK) for i in range(len(typical))]
        large_thumbs = [large[i].image(layout.THUMB_TRACK) for i in range(len(large))]
        inputs = [large[i].image(layout.INPUT_TRACK) for i in range(len(large))]

        cpu_rows(thumbs, large_thumbs, inputs, typical, cores, args)
        gpu_rows(thumbs, inputs, typical, large, cores, args)


def cpu_rows(thumbs, large_thumbs, inputs, typical, cores, args) -> None:
    import av

    decoder = CpuDecoder()
    streams = {id(image): bytes(to_annexb(image)) for image in thumbs + large_thumbs + inputs}
    context = av.CodecContext.create("hevc", "r")
    context.thread_count = 1

    def ffmpeg(image, convert: bool = False):
        frames = context.decode(av.Packet(streams[id(image)])) + context.decode(None)
        context.flush_buffers()
        if convert:
            frames[0].to_ndarray(format="rgb24")

    works = {
        "FFmpeg floor (decode only)": ffmpeg,
        "FFmpeg + swscale rgb24 (fast path)": lambda image: ffmpeg(image, True),
        "CpuDecoder.decode (crop + accurate conversion)": decoder.decode,
    }
    for label, images in (("thumbnails of 500x375 images (512x512 frames)", thumbs),
                          ("thumbnails of 800x600 images (512x512 frames)", large_thumbs),
                          ("bzna_input of 800x600 images (1024x512 frames)", inputs)):
        print(f"CPU, one thread, {label}:")
        seconds = per_image(works, images, args.repeats)
        floor = seconds["FFmpeg floor (decode only)"]
        for name, value in seconds.items():
            row(name, value, None if name.startswith("FFmpeg floor") else floor, "the floor")
    print("\nLoader on the CPU, thumbnails -> 64 x 3 x 224 x 224 uint8:")
    runs = {"1 thread": (typical, "cpu", 1, layout.THUMB_TRACK)}
    if cores > 1:
        runs[f"{cores} threads"] = (typical, "cpu", cores, layout.THUMB_TRACK)
    rates = loader_rates(runs, args.epochs, args.repeats)
    for name, rate in rates.items():
        row(name, 1 / rate, None if name == "1 thread" else 1 / rates["1 thread"], "1 thread")


def gpu_rows(thumbs, inputs, typical, large, cores, args) -> None:
    try:
        nvdec = NvdecDecoder("cuda:0", layout="CHW")
    except DecoderUnavailable as exc:
        print(f"\nGPU rows skipped: {exc}")
        return
    import torch

    print(f"\nGPU: {torch.cuda.get_device_name(nvdec.device)} (NVDEC through PyNvVideoCodec)")

    def synced(image):
        nvdec.decode(image)
        torch.cuda.synchronize(nvdec.device)

    seconds = per_image({"cpu": CpuDecoder().decode, "gpu": synced}, thumbs, args.repeats)
    cpu_one = seconds["cpu"]
    row("CpuDecoder, 1 thread (thumbnails)", cpu_one)
    row("NvdecDecoder, 1 thread (thumbnails)", seconds["gpu"], cpu_one, "one CPU core")
    for threads in (2, 4, 8):
        seconds = threaded(nvdec.decode, thumbs * 4, threads, args.repeats, lambda: torch.cuda.synchronize(nvdec.device))
        row(f"NvdecDecoder, {threads} threads (thumbnails)", seconds, cpu_one, "one CPU core")
    print("Loader -> 64 x 3 x 224 x 224 uint8 batches:")
    runs = {f"CPU Loader, {cores} threads (thumbnails)": (typical, "cpu", cores, layout.THUMB_TRACK)}
    for threads in sorted({2, 4, 8, cores}):
        runs[f"GPU Loader, {threads} threads (thumbnails)"] = (typical, "cuda:0", threads, layout.THUMB_TRACK)
    runs["GPU Loader, 8 threads (bzna_input 1024x512)"] = (large, "cuda:0", 8, layout.INPUT_TRACK)
    rates = loader_rates(runs, args.epochs, args.repeats)
    cpu_all = 1 / rates.pop(f"CPU Loader, {cores} threads (thumbnails)")
    row(f"CPU Loader, {cores} threads (thumbnails)", cpu_all)
    for name, rate in rates.items():
        row(name, 1 / rate, cpu_all, f"the CPU Loader on {cores} cores")
        print(f"  {'':44s} {cpu_one * rate:8.1f}x one CPU core (CpuDecoder)")
    row("NvdecDecoder, 1 thread (bzna_input 1024x512)", per_image({"gpu": synced}, inputs, args.repeats)["gpu"])


if __name__ == "__main__":
    main()
