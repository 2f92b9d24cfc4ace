"""Reading from object stores: opening, random access and the Loader, against servers on localhost.

    python benchmarks/bench_remote.py [--samples 1431167] [--images 512] [--runs 3] [--latency 0.02]

(1) Opening the ImageNet-scale container of ``make_imagenet_container.py`` (sparse: only its moov
takes disk space) served by a plain HTTP server honouring Range (an S3 server would have to hold
its 136 GB): requests, bytes fetched against the boxes read, and the median time, without and
with ``--latency`` seconds added to every request, with the index cache off and then warm;
anchor: ``open`` of the same file on local disk.

(2) Random access from moto's S3 server through a proxy that adds the same latency, and from
the plain HTTP Range server: samples/s reading random inner samples with 1, 8 and 64 requests in
flight (``read_many`` of that many samples at a time); anchor: the same reads from the local
file. (moto copies the whole object for each ranged GET, so its figures are the server's
limit; the HTTP server ``pread``s the range, so its figures are closer to the client's.)

(3) The ``Loader`` on the CPU (thumbnails at 224x224, batches of 64, shuffled): images/s from
both servers against the same file on local disk, in the same run, without and with the latency.

The dataset of (2) and (3) is the fixture photographs encoded once (x265 ultrafast, short side
at most 512) and repeated to ``--images`` samples. Needs the test extra (moto[server], s3fs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bzna_boxes  # noqa: E402
from bzna_boxes.remote import RemoteStorage  # noqa: E402

from remote_servers import RangeServer, S3Server  # noqa: E402


def median_time(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_open(folder: str, samples: int, runs: int, latencies: list[float]) -> None:
    from make_imagenet_container import write_container

    path = os.path.join(folder, "imagenet.bzna")
    write_container(path, samples)
    with bzna_boxes.open(path) as local:
        moov = local.moov
        read = moov.size + sum(b.header for b in local.boxes if b.type != "moov")
        size = local.size
    print(f"\n(1) open: {samples:,} samples, {size / 1e9:.1f} GB apparent, moov {moov.size / 1e6:.1f} MB at the {'end' if moov.end == size else 'start'}; boxes read: {read:,} bytes")
    local_s = median_time(lambda: bzna_boxes.open(path).close(), runs)
    print(f"  local open (anchor): {local_s * 1e3:.0f} ms")
    server = RangeServer({"/imagenet.bzna": Path(path)})
    cache = os.path.join(folder, "cache")
    try:
        url = f"{server.url}/imagenet.bzna"
        print("  | latency | cache | requests | bytes fetched | over the boxes | median ms | ratio to local |")
        for latency in latencies:
            server.delay = latency
            for label, index_cache in (("off", False), ("warm", cache)):
                if index_cache:
                    bzna_boxes.open(url, index_cache=index_cache).close()  # fill it
                server.requests.clear()
                bzna_boxes.open(url, index_cache=index_cache).close()
                requests = list(server.requests)
                fetched = sum(end - start for start, end in (r.span for r in requests if r.span))
                seconds = median_time(lambda: bzna_boxes.open(url, index_cache=index_cache).close(), runs)
                print(f"  | {latency * 1e3:.0f} ms | {label} | {len(requests)} | {fetched:,} | {fetched - read if fetched else 0:+,} | {seconds * 1e3:.0f} | {seconds / local_s:.2f}x |")
    finally:
        server.stop()


def make_images(path: str, count: int) -> None:
    from bzna_boxes.encode import encode_image, load_rgb
    from bzna_boxes.writer import DatasetWriter

    photos = sorted((ROOT / "fixtures" / "images").glob("*/*.jpg"))
    encoded = [encode_image(load_rgb(str(p)), preset="ultrafast") for p in photos]
    with DatasetWriter(path) as writer:
        for i in range(count):
            writer.add(encoded[i % len(encoded)], i % 1000, f"{i:08d}.JPEG")


class Served:
    """A server holding the dataset: what to call it, its URL, storage options, a latency setter."""

    def __init__(self, label: str, url: str, options: dict, set_delay) -> None:
        self.label, self.url, self.options, self.set_delay = label, url, options, set_delay


def bench_random_access(servers: list[Served], path: str, latencies: list[float]) -> None:
    with bzna_boxes.open(path) as local:
        track = local.track("bzna_input")
        spans = list(zip(track.offsets.tolist(), track.sizes.tolist()))
        order = np.random.default_rng(0).permutation(len(spans))
        mean = int(np.mean(track.sizes))

        def read(storage, k: int, total: int) -> float:
            start = time.perf_counter()
            for first in range(0, total, k):
                chosen = [spans[i] for i in order[first : first + k]]
                for view in storage.read_many(chosen):
                    bytes(view)
            return total / (time.perf_counter() - start)

        anchor = read(local.storage, 64, len(spans))
    print(f"\n(2) random access: {len(spans)} samples of {mean / 1e3:.0f} kB on average; local read_many (anchor): {anchor:,.0f} samples/s")
    print("  | server | latency | in flight | samples/s | ratio to local |")
    for served in servers:
        for latency in latencies:
            served.set_delay(latency)
            for k in (1, 8, 64):
                storage = RemoteStorage(served.url, served.options, index_cache=False, max_in_flight=k, max_gap=0)
                total = min(len(spans), 64 if k == 1 else 8 * k if k < 64 else len(spans))
                rate = read(storage, k, total)
                print(f"  | {served.label} | {latency * 1e3:.0f} ms | {k} | {rate:,.0f} | {rate / anchor:.4f}x |")
        served.set_delay(0.0)


def bench_loader(servers: list[Served], path: str, runs: int, latencies: list[float]) -> None:
    """One epoch per configuration, round-robin over ``runs`` rounds (so that the load of a shared
    machine spreads over every row); medians."""
    from bzna_boxes import Dataset
    from bzna_boxes.torch import Loader

    configurations = [("local disk", None, 0.0)] + [(served.label, served, latency) for served in servers for latency in latencies]
    datasets = {None: Dataset(path)}
    for served in servers:
        datasets[served] = Dataset(served.url, storage_options=served.options)
    rates: dict[tuple, list[float]] = {(label, latency): [] for label, _, latency in configurations}
    for _ in range(runs):
        for label, served, latency in configurations:
            if served is not None:
                served.set_delay(latency)
            loader = Loader(datasets[served], 64, shuffle=True, seed=0, device="cpu", size=(224, 224))
            start = time.perf_counter()
            count = sum(len(targets) for _, targets in loader)
            rates[(label, latency)].append(count / (time.perf_counter() - start))
            if served is not None:
                served.set_delay(0.0)
    local = statistics.median(rates[("local disk", 0.0)])
    print(f"\n(3) Loader on the CPU, {len(datasets[None])} images, batches of 64 (thumbnails, 224x224), {runs} rounds: local disk {local:,.0f} images/s (anchor)")
    print("  | server | latency | images/s | ratio to local |")
    for label, _, latency in configurations[1:]:
        rate = statistics.median(rates[(label, latency)])
        print(f"  | {label} | {latency * 1e3:.0f} ms | {rate:,.0f} | {rate / local:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_431_167, help="samples of the container opened in (1)")
    parser.add_argument("--images", type=int, default=512, help="images of the dataset of (2) and (3)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every request")
    parser.add_argument("--skip", action="append", default=[], choices=("open", "random", "loader"))
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"command: python benchmarks/bench_remote.py {' '.join(sys.argv[1:])}")
    latencies = [0.0, args.latency]
    with tempfile.TemporaryDirectory() as folder:
        os.environ["BZNA_CACHE_DIR"] = os.path.join(folder, "default-cache")  # not the user's
        if "open" not in args.skip:
            bench_open(folder, args.samples, args.runs, latencies)
        if {"random", "loader"} - set(args.skip):
            path = os.path.join(folder, "images.bzna")
            make_images(path, args.images)
            s3 = S3Server()
            http = RangeServer({"/images.bzna": Path(path)})
            try:
                s3.filesystem().call_s3("create_bucket", Bucket="bench")
                s3.filesystem().put(path, "bench/images.bzna")
                servers = [
                    Served("s3:// (moto)", "s3://bench/images.bzna", s3.options(), lambda d: setattr(s3.proxy, "delay", d)),
                    Served("https:// (Range server)", f"{http.url}/images.bzna", {}, lambda d: setattr(http, "delay", d)),
                ]
                if "random" not in args.skip:
                    bench_random_access(servers, path, latencies)
                if "loader" not in args.skip:
                    bench_loader(servers, path, args.runs, latencies)
            finally:
                http.stop()
                s3.stop()
    print(f"load at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
