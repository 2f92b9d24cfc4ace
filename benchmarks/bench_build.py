"""Speed of ``bzna build`` against a bare PyAV libx265 encode, from 1 to 2 workers, and where its time goes.

    python benchmarks/bench_build.py                          # 200 images, 3 repeats
    python benchmarks/bench_build.py --n 200 --repeats 5 --preset medium --crf 18
    python benchmarks/bench_build.py --profile                # per-stage CPU time of one image

Sources (``--size WxH``: centre crops of the fixtures all of that size instead):
:func:`photos.varied_photos` (``--n`` different crops, rescales and mirrors of the fixture
photographs, and of scikit-image's when it is installed or its ``skimage/data`` folder is given
with ``--images``; long side 500 six times in ten, else 400-800), saved as JPEG quality 90 in an
ImageFolder tree of three classes in a temporary folder.

Timed in the same run, interleaved at each repeat, medians reported:

* the floor: a bare PyAV libx265 encode (glibc told to keep freed memory, as in build workers) (the library's codec options and RGB -> yuv420p
  conversion) of the very frames a build encodes (each image already decoded, resized and padded,
  and its thumbnail), one fresh encoder per picture as independent intra pictures need; nothing
  else (no JPEG decode, no container); x265 held to one thread (``pools=1:frame-threads=1``) as in
  each build worker, so that the floor is one core's;
* ``bzna build SRC OUT --workers 1 -q`` (through ``bzna_boxes.cli.main`` in this process:
  listing, JPEG decode, RGB conversion, encode, inner MP4, writing, fsync, class list and report);
* the same with ``--workers 2``.

Each build also runs on the first ``--small`` images; ``(T(n) - T(small)) / (n - small)`` is its
cost per image with the start-up (the pool's spawn and imports, about 0.3 s) left out. Printed:
CPU time per image (user + system of this process and of the pool's reaped workers; far steadier
than wall time when other programs share the cores), wall time per image with the load average,
and their ratios: build/floor (target <= 1.1x at 1 and 2 workers), 1 -> 2 workers (target >= 1.9x
of wall time, which needs two otherwise idle cores).

``--profile``: one-worker build path (``encode_source``, the pickling a pool does, and
``DatasetWriter.add_sample``) under cProfile with a process-time clock, as CPU ms per image of
each stage and its share.
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
from bzna_boxes.layout import THUMBNAIL_SIZE  # noqa: E402
from bzna_boxes.encode import (  # noqa: E402
    _resize,
    keep_freed_memory,
    load_rgb,
    pad_to_multiple,
    resized_size,
    rgb_to_yuv420p,
    thumbnail_size,
    x265_options,
)
from photos import photo_crops, photo_sources, varied_photos  # noqa: E402

ONE_THREAD = "pools=1:frame-threads=1"
"""What a build worker gives x265: one thread (same bitstream)."""


def make_sources(folder: Path, n: int, extra: list[Path], size: tuple[int, int] | None = None) -> list[Path]:
    """n different photographs (all of ``size`` when given) as JPEG q90 files in three class folders."""
    from PIL import Image

    paths = []
    images = photo_crops(size, n, mirror_odd=True) if size else varied_photos(n, photo_sources(extra))
    for i, rgb in enumerate(images):
        path = folder / f"class{i % 3:02d}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def build_frames(path: Path) -> list[np.ndarray]:
    """The padded frames a build encodes for one source: the image, and its thumbnail when it has one."""
    rgb = load_rgb(path)
    width, height = resized_size(rgb.shape[1], rgb.shape[0], 512)
    picture = _resize(rgb, (width, height))
    frames = [pad_to_multiple(picture)]
    if width > THUMBNAIL_SIZE or height > THUMBNAIL_SIZE:
        frames.append(pad_to_multiple(_resize(picture, thumbnail_size(width, height)), THUMBNAIL_SIZE))
    return [np.ascontiguousarray(f) for f in frames]


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
    frame = rgb_to_yuv420p(frame_rgb)
    frame.pts = 0
    return sum(len(bytes(p)) for p in [*ctx.encode(frame), *ctx.encode(None)])


def cpu_seconds() -> float:
    """User + system time of this process and of its reaped children (the pool's workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def build_argv(src: Path, out: Path, workers: int, args) -> list[str]:
    argv = ["build", str(src), str(out), "--workers", str(workers), "-q"]
    for flag, value in (("--preset", args.preset), ("--crf", args.crf), ("--x265-params", args.x265_params)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def run_build(src: Path, out: Path, workers: int, args) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``bzna build`` in this process (its pool's workers included)."""
    import contextlib
    import io

    start, cpu = time.perf_counter(), cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()):
        code = bzna(build_argv(src, out, workers, args))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if code:
        sys.exit(f"bzna build failed ({code})")
    return seconds, cpu


# --- where a build's time goes, per image ----------------------------------------------------

# (stage, functions whose inclusive CPU time it is, functions whose time is taken out of it),
# each function named by (module file suffix, function name) as cProfile records it
STAGES = (
    ("JPEG decode (Pillow open + load)", [("PIL/Image.py", "open"), ("PIL/ImageFile.py", "load")], []),
    ("RGB conversion (load_rgb's rest)", [("bzna_boxes/encode.py", "load_rgb")],
     [("PIL/Image.py", "open"), ("PIL/ImageFile.py", "load")]),
    ("resize (short side > 512) and thumbnail", [("bzna_boxes/encode.py", "_resize")], []),
    ("padding (edge pixels, then the planes)", [("bzna_boxes/encode.py", "_padded_yuv420p")],
     [("bzna_boxes/encode.py", "rgb_to_yuv420p")]),
    ("RGB -> yuv420p (swscale)", [("bzna_boxes/encode.py", "rgb_to_yuv420p")], []),
    ("x265 (open, encode, flush)", [("bzna_boxes/encode.py", "_encode_yuv")],
     [("bzna_boxes/encode.py", "_hvcc_of"), ("bzna_boxes/hevc.py", "to_length_prefixed")]),
    ("NAL units and hvcC fields", [("bzna_boxes/encode.py", "_hvcc_of"),
                                   ("bzna_boxes/hevc.py", "to_length_prefixed")], []),
    ("inner MP4 (InnerSample.from_encoded)", [("bzna_boxes/writer.py", "from_encoded")], []),
    ("pickling (job and result, both ways)", [("benchmarks/bench_build.py", "pickle_round_trip")], []),
    ("outer container (DatasetWriter.add_sample)", [("bzna_boxes/writer.py", "add_sample")], []),
)


def pickle_round_trip(job, result) -> None:
    """What a process pool does with a job and its result: pickled, sent, unpickled."""
    import pickle

    pickle.loads(pickle.dumps(job, pickle.HIGHEST_PROTOCOL))
    pickle.loads(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def profile_stages(sources: list, options: dict, out: Path) -> tuple[list[tuple[str, float]], float]:
    """CPU ms per image of each stage of a one-worker build's path, from cProfile (process time)."""
    import cProfile
    import pstats

    from bzna_boxes.build import encode_source
    from bzna_boxes.encode import one_thread_each
    from bzna_boxes.writer import DatasetWriter

    options = one_thread_each(options)
    profiler = cProfile.Profile(time.process_time)
    with DatasetWriter(out, fsync=False) as writer:
        encode_source(sources[0], options)  # imports and first-call work, not profiled
        start = time.process_time()
        profiler.enable()
        for source in sources:
            sample = encode_source(source, options)
            pickle_round_trip((source, options), sample)
            writer.add_sample(sample)
        profiler.disable()
        total = time.process_time() - start
    stats = pstats.Stats(profiler).stats

    def inclusive(names) -> float:
        return sum(ct for (file, _, func), (_, _, _, ct, _) in stats.items()
                   if any(file.endswith(suffix) and func == name for suffix, name in names))

    n = len(sources)
    rows = [(stage, 1000 * (inclusive(take) - inclusive(leave)) / n) for stage, take, leave in STAGES]
    return rows, 1000 * total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="images")
    parser.add_argument("--small", type=int, default=10, help="images of the small builds (start-up cost)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crf", type=float, default=None, help="default: the library's")
    parser.add_argument("--preset", default=None, help="default: the library's")
    parser.add_argument("--x265-params", default=None, help="default: the library's")
    parser.add_argument("--images", type=Path, action="append", default=[], help="more photographs (file or folder)")
    parser.add_argument("--size", type=lambda t: tuple(map(int, t.split("x"))), default=None,
                        help="WxH: every image that size (centre crops of the fixtures), e.g. 500x375")
    parser.add_argument("--profile", action="store_true", help="print the per-stage breakdown instead")
    args = parser.parse_args()
    options = {k: v for k, v in (("crf", args.crf), ("preset", args.preset), ("x265_params", args.x265_params)) if v is not None}

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        paths = make_sources(src, args.n, args.images, args.size)
        keep_freed_memory()  # as a build worker does, so that the floor and the builds allocate alike
        jpeg = sum(p.stat().st_size for p in paths) / args.n
        if args.profile:
            from bzna_boxes.build import list_sources

            rows, total = profile_stages(list_sources(src).sources, options, Path(tmp) / "profiled.bzna")
            print(f"{args.n} images, JPEG q90 {jpeg:.0f} bytes each, options {options or 'the defaults'}; "
                  f"CPU ms per image under cProfile (process time), load average {os.getloadavg()[0]:.2f}")
            for stage, ms in rows:
                print(f"  {stage:45s} {ms:8.2f} ms  {100 * ms / total:5.1f} %")
            rest = total - sum(ms for _, ms in rows)
            print(f"  {'everything else (profiling, Python glue)':45s} {rest:8.2f} ms  {100 * rest / total:5.1f} %")
            print(f"  {'total':45s} {total:8.2f} ms")
            return
        small = Path(tmp) / "small"
        for path in paths[: args.small]:
            (small / path.parent.name).mkdir(parents=True, exist_ok=True)
            (small / path.parent.name / path.name).symlink_to(path)
        frames = [frame for path in paths for frame in build_frames(path)]
        extra = f":{args.x265_params}" if args.x265_params else ""
        codec_options = x265_options(args.crf, args.preset, ONE_THREAD + extra)
        out = Path(tmp) / "out.bzna"
        modes = ("floor", "w1", "w2", "w1 small", "w2 small")
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        loads = [os.getloadavg()[0]]
        for repeat in range(args.repeats):
            for mode in modes[repeat % 5 :] + modes[: repeat % 5]:
                if mode == "floor":
                    start, cpu_start = time.perf_counter(), cpu_seconds()
                    floor_bytes = sum(bare_encode(frame, codec_options) for frame in frames)
                    wall[mode].append(time.perf_counter() - start)
                    cpu[mode].append(cpu_seconds() - cpu_start)
                else:
                    folder = small if mode.endswith("small") else src
                    seconds, cpu_used = run_build(folder, out, 1 if mode.startswith("w1") else 2, args)
                    wall[mode].append(seconds)
                    cpu[mode].append(cpu_used)
                    if folder is src:
                        dataset = out.stat().st_size
            loads.append(os.getloadavg()[0])

    n, k = args.n, args.small
    med = {m: (statistics.median(wall[m]), statistics.median(cpu[m])) for m in modes}
    per_image = {"floor": (med["floor"][0] / n, med["floor"][1] / n)}
    for w in ("w1", "w2"):
        per_image[w] = tuple((med[w][i] - med[f"{w} small"][i]) / (n - k) for i in (0, 1))
    f_wall, f_cpu = per_image["floor"]
    print(f"{n} images (JPEG q90, {len(frames)} frames with the thumbnails), options {options or 'the defaults'}, "
          f"{os.cpu_count()} cores, median of {args.repeats} repeats, load average {min(loads):.2f}-{max(loads):.2f}")
    print("per image, start-up left out          CPU ms   x floor   wall ms   x floor   images/s")
    print(f"  bare PyAV libx265 (floor)         {1000 * f_cpu:9.1f}   {1:6.3f}  {1000 * f_wall:8.1f}   {1:6.3f}  {1 / f_wall:8.2f}")
    for w in ("w1", "w2"):
        t, c = per_image[w]  # (wall, CPU)
        print(f"  bzna build --workers {w[1]}          {1000 * c:9.1f}   {c / f_cpu:6.3f}  {1000 * t:8.1f}   {t / f_wall:6.3f}  {1 / t:8.2f}")
    print(f"  1 -> 2 workers: {per_image['w1'][0] / per_image['w2'][0]:.2f}x wall per image (start-up left out), "
          f"{med['w1'][0] / med['w2'][0]:.2f}x whole builds; start-up: "
          f"{1000 * (med['w1 small'][0] - k * per_image['w1'][0]):.0f} ms (1 worker), "
          f"{1000 * (med['w2 small'][0] - k * per_image['w2'][0]):.0f} ms (2 workers) of wall time")
    print(f"  bytes per image: {dataset / n:8.0f} in the dataset (inner MP4 + outer tables), "
          f"{floor_bytes / n:8.0f} bare H.265, {jpeg:8.0f} source JPEG")


if __name__ == "__main__":
    main()
