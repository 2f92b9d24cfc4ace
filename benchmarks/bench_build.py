"""Speed of ``bzna build`` against a bare PyAV libx265 encode, and from 1 to 2 workers.

    python benchmarks/bench_build.py                  # 192 images, 3 repeats
    python benchmarks/bench_build.py --n 200 --repeats 5 --preset medium

Sources: the photographs of fixtures/images cropped and resized to 500x375 (ImageNet's most
common size; tighter crops in later rounds so that no two are equal), saved as JPEG
quality 90 in an ImageFolder tree of three classes in a temporary folder.

Timed in the same run, interleaved at each repeat, medians reported:

* the floor: a bare PyAV libx265 encode (the library's codec options: CRF, preset, x265
  parameters) of each image already decoded and padded to its 512x512 frame, one fresh
  encoder per picture as independent intra pictures need; nothing else (no JPEG decode, no
  container); x265 held to one thread (``pools=1:frame-threads=1``) as in each build worker,
  so that the floor is one core's; the same encode with x265's own thread pool is shown too
  (on a 2-core machine it spreads one 512x512 picture's rows over both cores);
* ``bzna build SRC OUT --workers 1 -q`` (through ``bzna_boxes.cli.main`` in this process:
  listing, JPEG decode, RGB conversion, encode, inner MP4, writing, fsync, class list and
  report; the interpreter's start is left out);
* the same with ``--workers 2`` (the pool's start, spawn of two processes, included).

Prints wall time per image and ratios (targets of the issue: build/floor at most 1.15x, 1 -> 2
workers at least 1.8x), the CPU time per image (user + system, the pool's workers included;
steadier than wall time when other programs share the cores) and bytes per image of the
dataset against the source JPEGs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bzna_boxes.cli import main as bzna  # noqa: E402
from bzna_boxes.encode import DEFAULT_CRF, DEFAULT_PRESET, load_rgb, pad_to_multiple, x265_options  # noqa: E402
from photos import photo_folder  # noqa: E402

SIZE = (500, 375)
ONE_THREAD = "pools=1:frame-threads=1"
"""What a build worker gives x265: one thread (same bitstream)."""


def make_sources(folder: Path, n: int) -> list[Path]:
    """n distinct 500x375 JPEG q90 crops of the fixture photographs, in class folders."""
    return photo_folder(folder, SIZE, n)


def bare_encode(frame_rgb: np.ndarray, options: dict) -> int:
    """The floor: libx265 through PyAV on one padded frame, nothing else. Returns the packet bytes."""
    import av
    from av.codec.context import Flags

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height = frame_rgb.shape[1], frame_rgb.shape[0]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 20)
    ctx.flags |= Flags.global_header
    ctx.options = options
    ctx.open()
    frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24").reformat(format="yuv420p")
    frame.pts = 0
    return sum(len(bytes(p)) for p in [*ctx.encode(frame), *ctx.encode(None)])


def cpu_seconds() -> float:
    """User + system time of this process and of its reaped children (the pool's workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_build(src: Path, out: Path, workers: int, args) -> tuple[float, float]:
    argv = ["build", str(src), str(out), "--workers", str(workers), "--preset", args.preset, "-q"]
    if args.crf is not None:
        argv += ["--crf", str(args.crf)]
    start, cpu = time.perf_counter(), cpu_seconds()
    code = bzna(argv)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if code:
        sys.exit(f"bzna build failed ({code})")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=192, help="images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crf", type=float, default=None, help=f"default: the library's ({DEFAULT_CRF:g})")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args()

    import contextlib
    import io

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        paths = make_sources(src, args.n)
        frames = [np.ascontiguousarray(pad_to_multiple(load_rgb(p))) for p in paths]
        crf = DEFAULT_CRF if args.crf is None else args.crf
        options = x265_options(crf, args.preset, ONE_THREAD)  # one core, as each build worker
        threaded = x265_options(crf, args.preset)
        out = Path(tmp) / "out.bzna"
        times: dict[str, list[float]] = {"floor": [], "threaded": [], "w1": [], "w2": []}
        cpu: dict[str, list[float]] = {"floor": [], "threaded": [], "w1": [], "w2": []}
        floor_bytes = 0
        for repeat in range(args.repeats):
            order = ["floor", "threaded", "w1", "w2"]
            for mode in order[repeat % 4 :] + order[: repeat % 4]:
                if mode in ("floor", "threaded"):
                    start, cpu_start = time.perf_counter(), cpu_seconds()
                    floor_bytes = sum(bare_encode(frame, options if mode == "floor" else threaded) for frame in frames)
                    times[mode].append(time.perf_counter() - start)
                    cpu[mode].append(cpu_seconds() - cpu_start)
                else:
                    with contextlib.redirect_stdout(io.StringIO()):
                        seconds, cpu_used = run_build(src, out, 1 if mode == "w1" else 2, args)
                    times[mode].append(seconds)
                    cpu[mode].append(cpu_used)
        dataset = out.stat().st_size
        jpeg = sum(p.stat().st_size for p in paths)

    floor, w1, w2 = (statistics.median(times[m]) for m in ("floor", "w1", "w2"))
    cpu_floor, cpu_w1, cpu_w2 = (statistics.median(cpu[m]) for m in ("floor", "w1", "w2"))
    threaded_wall, threaded_cpu = statistics.median(times["threaded"]), statistics.median(cpu["threaded"])
    n = args.n
    print(f"{n} images {SIZE[0]}x{SIZE[1]} JPEG q90, CRF {DEFAULT_CRF if args.crf is None else args.crf:g}, "
          f"preset {args.preset}, {os.cpu_count()} cores, median of {args.repeats} repeats")
    print("                              wall ms/image  images/s            CPU ms/image")
    print(f"  bare PyAV libx265 (floor)   {1000 * floor / n:9.1f}  {n / floor:9.2f}  {'':17s} {1000 * cpu_floor / n:7.1f}")
    print(f"  same, x265's own threads    {1000 * threaded_wall / n:9.1f}  {n / threaded_wall:9.2f}  {'(not a floor)':17s} "
          f"{1000 * threaded_cpu / n:7.1f}")
    print(f"  bzna build --workers 1      {1000 * w1 / n:9.1f}  {n / w1:9.2f}  {w1 / floor:5.3f}x the floor {1000 * cpu_w1 / n:7.1f}  "
          f"({cpu_w1 / cpu_floor:.3f}x)")
    print(f"  bzna build --workers 2      {1000 * w2 / n:9.1f}  {n / w2:9.2f}  {w1 / w2:5.2f}x 1 worker  {1000 * cpu_w2 / n:7.1f}  "
          f"({cpu_w2 / cpu_floor:.3f}x)")
    print(f"  bytes per image: {dataset / n:8.0f} in the dataset (inner MP4 + outer tables), "
          f"{floor_bytes / n:8.0f} bare H.265, {jpeg / n:8.0f} source JPEG ({dataset / jpeg:.2f}x)")


if __name__ == "__main__":
    main()
