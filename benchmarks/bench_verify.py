"""``bzna verify`` against the speed of reading the file, and ``verify --decode`` in pictures/s.

    python benchmarks/bench_verify.py                         # 2 GB file, 3 repeats
    python benchmarks/bench_verify.py --gb 4 --repeats 5 --dir /var/tmp

Makes a ``.bzna`` file of ImageNet-like samples with :class:`DatasetWriter` (so it carries the
checksum table): each inner sample holds a real 512x512 H.265 picture whose payload is padded
with a filler NAL unit to a size drawn log-uniformly in 5-200 KB (ImageNet's samples average
about 105 KB), then times on the same file, round-robin at each repeat:

* the anchors: ``cat FILE > /dev/null`` (a separate process), and a pure-read loop in Python
  (``readinto`` of 16 MiB chunks, what the checksum check reads with);
* ``verify(inner=False)``: bounds, layout, targets, filenames and every checksum;
* ``verify()``: the same plus every inner sample's boxes (what ``bzna verify`` does);

each with the page cache warm (the file read once before) and, where
``os.posix_fadvise(POSIX_FADV_DONTNEED)`` can drop the file's pages, cold (dropped before each
run: then the disk is read). Prints median MB/s and each one's ratio to ``cat`` in the same state.

Then ``verify(decode=True)`` on a small file of the fixture photographs (each with a
thumbnail, so two pictures per sample): pictures/s against a bare loop of
``CpuDecoder.decode_frame`` over the same pictures (the floor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bzna_boxes import layout  # noqa: E402
from bzna_boxes.encode import encode_image, load_rgb  # noqa: E402
from bzna_boxes.verify import verify  # noqa: E402
from bzna_boxes.writer import DatasetWriter  # noqa: E402
from bench_writer import padded  # noqa: E402

_CHUNK = 16 << 20
def make_dataset(path: str, gigabytes: float) -> int:
    """Write about ``gigabytes`` of samples to ``path``; returns the sample count."""
    rng = np.random.default_rng(0)
    base = encode_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), preset="ultrafast")
    total, count = 0, 0
    with DatasetWriter(path, fsync=False) as writer:
        while total < gigabytes * 1e9:
            size = int(np.exp(rng.uniform(np.log(5_000), np.log(200_000))))
            writer.add(padded(base, size), count % 1000, f"n{count % 1000 + 1440764:08d}/n{count % 1000 + 1440764:08d}_{count}.JPEG")
            total += size
            count += 1
    return count


def drop_cache(path: str) -> bool:
    """Drop the file's pages from the page cache; False where the system cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def run_cat(path: str) -> None:
    subprocess.run(f"cat {path!r} > /dev/null", shell=True, check=True)


def read_loop(path: str) -> None:
    buffer = memoryview(bytearray(_CHUNK))
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass


def verify_checksums(path: str) -> None:
    report = verify(path, inner=False)
    assert report.ok, report.format()


def verify_full(path: str) -> None:
    report = verify(path)
    assert report.ok, report.format()


RUNS = {
    "cat FILE > /dev/null (anchor)": run_cat,
    "pure-read loop, 16 MiB readinto": read_loop,
    "verify(inner=False): checksums": verify_checksums,
    "verify(): checksums + inner boxes": verify_full,
}


def bench_read_speed(path: str, repeats: int) -> None:
    size = os.path.getsize(path)
    states = ["warm"] + (["cold"] if drop_cache(path) else [])
    times = {(state, name): [] for state in states for name in RUNS}
    read_loop(path)  # warm-up
    for repeat in range(repeats):
        names = list(RUNS)[repeat % len(RUNS) :] + list(RUNS)[: repeat % len(RUNS)]
        for state in states:
            for name in names:
                if state == "cold":
                    drop_cache(path)
                else:
                    read_loop(path)
                start = time.perf_counter()
                RUNS[name](path)
                times[(state, name)].append(time.perf_counter() - start)
    for state in states:
        anchor = statistics.median(times[(state, "cat FILE > /dev/null (anchor)")])
        print(f"  page cache {state}:")
        for name in RUNS:
            seconds = statistics.median(times[(state, name)])
            print(f"    {name:36s} {seconds:7.3f} s  {size / seconds / 1e6:7.0f} MB/s  {seconds / anchor:5.2f}x cat")


def bench_decode(folder: str, copies: int, repeats: int) -> None:
    from bzna_boxes.dataset import inner_image
    from bzna_boxes.decode.cpu import CpuDecoder
    from bzna_boxes.index import open as open_bzna

    photos = sorted((ROOT / "fixtures" / "images").glob("*/*.jpg"))
    encoded = [encode_image(load_rgb(p), preset="ultrafast") for p in photos]
    encoded = [e for e in encoded if e.thumbnail is not None]
    path = os.path.join(folder, f"bench_verify_decode_{os.getpid()}.bzna")
    try:
        with DatasetWriter(path, fsync=False) as writer:
            for i in range(copies):
                writer.add(encoded[i % len(encoded)], 0, f"photo_{i}.jpg")
        with open_bzna(path) as file:
            inputs = file.track(layout.INPUT_TRACK)
            view = file.storage.buffer
            pictures = [
                inner_image(view, int(o), int(o) + int(s), track)
                for o, s in zip(inputs.offsets, inputs.sizes)
                for track in (layout.INPUT_TRACK, layout.THUMB_TRACK)
            ]
            decoder = CpuDecoder()
            floor, checked = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                for picture in pictures:
                    decoder.decode_frame(picture)
                floor.append(time.perf_counter() - start)
                start = time.perf_counter()
                report = verify(path, decode=True)
                checked.append(time.perf_counter() - start)
                assert report.ok, report.format()
            del pictures, view
        count = 2 * copies
        bare, full = statistics.median(floor), statistics.median(checked)
        print(f"  verify --decode on {copies} photographs ({count} pictures: images of 512 px short side and 512x512 thumbnails), one core:")
        print(f"    bare CpuDecoder.decode_frame loop (floor) {count / bare:7.1f} pictures/s")
        print(f"    verify(decode=True), whole run            {count / full:7.1f} pictures/s  {full / bare:5.2f}x the floor's time")
    finally:
        os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0, help="size of the file read")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-copies", type=int, default=64, help="samples of the --decode file")
    parser.add_argument("--dir", default=None, help="folder for the files (default: the temporary folder; a disk, not /dev/shm, for cold reads)")
    args = parser.parse_args()
    folder = args.dir or tempfile.gettempdir()
    path = os.path.join(folder, f"bench_verify_{os.getpid()}.bzna")
    try:
        start = time.perf_counter()
        count = make_dataset(path, args.gb)
        size = os.path.getsize(path)
        print(f"{count:,} samples, {size / 1e9:.2f} GB ({size / count / 1e3:.0f} kB per sample) in {folder}, written in "
              f"{time.perf_counter() - start:.1f} s; median of {args.repeats} repeats")
        bench_read_speed(path, args.repeats)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    bench_decode(folder, args.decode_copies, args.repeats)


if __name__ == "__main__":
    main()
