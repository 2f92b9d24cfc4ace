"""Container overhead of DatasetWriter against plain sequential writes of the same bytes.

    python benchmarks/bench_writer.py                    # 1,431,167 samples, 3 repeats
    python benchmarks/bench_writer.py --n 200000 --repeats 5 --dir /tmp
    python benchmarks/bench_writer.py --n 20000 --sample-kb 100   # ImageNet-sized samples

The payloads are pre-encoded tiny H.265 frames (16 distinct 8x8 random images, each a
512x512 frame of about 390 bytes, encoded once), so that the measure is the writer's
own work and not the encoder's or the disk's: each inner sample is about 2.3 kB, most
of it its moov (``--sample-kb K`` pads each image with a filler NAL unit to about K kB, as
ImageNet's samples average about 105 kB). Filenames look like ImageNet's (``n01440764/n01440764_10026.JPEG``),
targets run over 1000 classes. By default the files go to ``/dev/shm`` (memory) when it
exists, so that disk writeback does not blur the figures.

Timed, each as a whole (open to close, the moov and the rename included, no fsync),
interleaved in a different order at each repeat, each file removed right after:

* ``add(EncodedSample)``: the writer builds each inner MP4 (ftyp, mdat, moov of four
  tracks) and streams it, then appends targets, filenames and the outer moov; the same 16
  sample objects come again and again, so the writer finds their layout by identity;
* the same with samples that each carry their own ``hvcC`` record, as samples unpickled from
  other processes do (8,192 distinct copies, more than the writer's identity cache holds):
  the writer finds their layout by the record's content;
* ``add_sample(InnerSample)``: the same with the inner MP4s already built (what
  ``bzna build`` does: its workers build them);
* ``add`` and ``add_sample`` again without checksums: the writer's checksum function (CRC-32C
  of each inner sample, its thumbnail, target and filename) replaced by one returning 0, the
  rest (the table in the moov included) unchanged: the difference is the cost of checksumming;
* the anchor, plain writes: one ``write`` per sample of as many bytes as the writer's
  inner sample, to a file opened with the same 1 MiB buffer, then the tail (targets,
  filenames, moov) in one write: the same number of bytes as the writer's file.

Prints the median wall time of each and its ratio to the anchor (the issue's target: at
most 2x), and the same for the CPU time (user + system) of the process, steadier when other
programs share the machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bzna_boxes import writer as writer_module  # noqa: E402
from bzna_boxes.encode import EncodedSample, encode_image  # noqa: E402
from bzna_boxes.writer import DatasetWriter, InnerSample  # noqa: E402

VARIANTS = 16
COPIES = 8192


def tiny_samples(seed: int = 0):
    """VARIANTS pre-encoded tiny images (ultrafast: the speed of the encoder is not measured)."""
    rng = np.random.default_rng(seed)
    return [encode_image(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), preset="ultrafast") for _ in range(VARIANTS)]


_FILLER = bytes([38 << 1, 1])  # NAL header of an HEVC filler-data unit (type 38)


def padded(sample: EncodedSample, size: int) -> EncodedSample:
    """``sample`` with its image payload grown to about ``size`` bytes by one filler NAL unit."""
    extra = max(size - len(sample.image.payload) - 6, 0)
    filler = (len(_FILLER) + extra).to_bytes(4, "big") + _FILLER + b"\xff" * extra
    image = type(sample.image)(**{**sample.image.__dict__, "payload": bytes(sample.image.payload) + filler})
    return EncodedSample(image, sample.thumbnail)


def names(n: int) -> list[str]:
    return [f"n{i % 1000 + 1440764:08d}/n{i % 1000 + 1440764:08d}_{i}.JPEG" for i in range(n)]


def write_add(path: str, encoded, filenames: list[str]) -> None:
    with DatasetWriter(path, fsync=False) as writer:
        add = writer.add
        for i, name in enumerate(filenames):
            add(encoded[i % VARIANTS], i % 1000, name)


def write_add_copies(path: str, copies, filenames: list[str]) -> None:
    with DatasetWriter(path, fsync=False) as writer:
        add = writer.add
        count = len(copies)
        for i, name in enumerate(filenames):
            add(copies[i % count], i % 1000, name)


def write_add_sample(path: str, samples: list[InnerSample]) -> None:
    with DatasetWriter(path, fsync=False) as writer:
        add = writer.add_sample
        for sample in samples:
            add(sample)


def without_checksums(function):
    """``function`` run with the writer's checksum function replaced by one returning 0."""

    def run(*args) -> None:
        saved = writer_module._checksum
        writer_module._checksum = lambda data, value=0: 0
        try:
            function(*args)
        finally:
            writer_module._checksum = saved

    return run


def write_plain(path: str, blobs: list[bytes], count: int, tail: int) -> None:
    with open(path, "wb", buffering=1 << 20) as f:
        write = f.write
        for i in range(count):
            write(blobs[i % VARIANTS])
        f.write(bytes(tail))


def timed(function, path: str, *args) -> tuple[float, float, int]:
    """Wall and CPU (user + system) seconds of ``function(path, *args)``, and the file's size."""
    start, cpu = time.perf_counter(), time.process_time()
    function(path, *args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = os.path.getsize(path)
    os.unlink(path)
    return seconds, cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_431_167, help="samples per dataset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where the files go")
    parser.add_argument("--sample-kb", type=float, default=0, help="pad each image to about this many kB (0: tiny samples)")
    args = parser.parse_args()
    folder = args.dir or os.environ.get("TMPDIR", "/tmp")

    encoded = tiny_samples()
    if args.sample_kb:
        encoded = [padded(e, int(args.sample_kb * 1000)) for e in encoded]
    copies = [pickle.loads(pickle.dumps(encoded[i % VARIANTS])) for i in range(COPIES)]
    filenames = names(args.n)
    inner = [InnerSample.from_encoded(e, 0, filenames[0]) for e in encoded]
    blobs = [s.data for s in inner]  # names of equal length: the same sizes as the writer's samples
    samples = [inner[i % VARIANTS]._replace(filename=name, target=i % 1000) for i, name in enumerate(filenames)]
    payload = sum(len(blobs[i % VARIANTS]) for i in range(args.n))

    gc.collect()
    gc.freeze()  # the inputs above are long-lived: keep the collector from re-scanning them
    modes = ["add", "add_copies", "add_sample", "add_nosum", "add_sample_nosum", "plain"]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu_times: dict[str, list[float]] = {mode: [] for mode in modes}
    size = 0
    for repeat in range(args.repeats):
        order = modes[repeat % len(modes) :] + modes[: repeat % len(modes)]
        for mode in order:
            path = os.path.join(folder, f"bench_writer_{os.getpid()}_{mode}.bzna")
            if mode == "add":
                seconds, cpu, size = timed(write_add, path, encoded, filenames)
            elif mode == "add_copies":
                seconds, cpu, size = timed(write_add_copies, path, copies, filenames)
            elif mode == "add_sample":
                seconds, cpu, size = timed(write_add_sample, path, samples)
            elif mode == "add_nosum":
                seconds, cpu, _ = timed(without_checksums(write_add), path, encoded, filenames)
            elif mode == "add_sample_nosum":
                seconds, cpu, _ = timed(without_checksums(write_add_sample), path, samples)
            else:
                seconds, cpu, _ = timed(write_plain, path, blobs, args.n, size - payload - 40 if size else 0)
            times[mode].append(seconds)
            cpu_times[mode].append(cpu)
    plain = statistics.median(times["plain"])
    plain_cpu = statistics.median(cpu_times["plain"])
    print(f"{args.n} samples, {size / 1e9:.2f} GB ({size / args.n:.0f} bytes per sample), in {folder}, "
          f"median of {args.repeats} repeats")
    for mode, label in (("add", "DatasetWriter.add(EncodedSample)"), ("add_copies", "add(EncodedSample), own hvcC records"),
                        ("add_sample", "DatasetWriter.add_sample(InnerSample)"),
                        ("add_nosum", "add(EncodedSample), no checksums"),
                        ("add_sample_nosum", "add_sample(InnerSample), no checksums"),
                        ("plain", "plain sequential writes (anchor)")):
        seconds, cpu = statistics.median(times[mode]), statistics.median(cpu_times[mode])
        print(f"  {label:40s} {seconds:7.2f} s  {args.n / seconds / 1e3:5.0f} k samples/s  {seconds / plain:5.2f}x   "
              f"CPU {cpu:6.2f} s {cpu / plain_cpu:5.2f}x")
    for mode in ("add", "add_sample"):
        ratio = statistics.median(times[mode]) / statistics.median(times[f"{mode}_nosum"])
        cpu_ratio = statistics.median(cpu_times[mode]) / statistics.median(cpu_times[f"{mode}_nosum"])
        print(f"  checksums cost in {mode}: {ratio:5.3f}x wall, {cpu_ratio:5.3f}x CPU (with / without)")


if __name__ == "__main__":
    main()
