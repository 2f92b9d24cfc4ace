"""Speed and memory of the sample index and the dataset view, against their anchors, in one run.

    python benchmarks/bench_index.py [--path /tmp/imagenet.bzna] [--samples 1431167]
                                     [--runs 7] [--anchors-samples 100000] [--no-anchors]

What it measures (medians of ``--runs`` runs, every figure from this run, on this machine):

1. **Open**: ``bzna_boxes.open(path)`` plus the ``offsets`` and ``sizes`` of the four tracks of
   the ImageNet-scale container (``make_imagenet_container.py``: 1,431,167 samples per track, a
   69 MB moov), each a whole process (``python -c``: interpreter start and imports included),
   against the **floor**: a minimal hand-written numpy reader of the same tables (walk the
   headers, ``np.frombuffer`` the ``stsz`` and ``co64`` tables of an mmap, ``astype``), run
   alternately with it, after one warm-up run of each (page cache, bytecode caches; the children
   run without PYTHONDONTWRITEBYTECODE, as an installed package would). Target: at most 1.5 x
   the floor.
2. **Anchors**: pymp4 1.4.0 (construct 2.8; handed the moov bytes, as it cannot read a
   largesize mdat) and pybenzinaparse 0.2.2 (bitstring < 5) doing the same, each in its own
   virtual environment under ``--venv-dir`` (created with ``python3 -m venv`` and pip on first
   use). At full scale they take minutes and gigabytes, so ``--anchors-samples M`` runs them on
   an M-sample container and extrapolates linearly to the full size (their time above their own
   start-up, and their peak memory above it, scale with the samples); the output says when it
   did. Target: bzna_boxes at least 300 x faster.
3. **Memory**: the RSS growth of ``open`` (after the imports) against the bytes of the tables it
   returns. Target: no more than the tables plus 50 MB.
4. **Samples**: ``ds[i].target`` and ``ds[i].filename`` over a random permutation of every
   index of the container (first touch included): at least 500,000 samples/s.
5. **Pictures**: ``ds[i].image(track)`` over random indices of a real dataset built with
   ``DatasetWriter``: 4,096 samples, 64 distinct crops of the fixture photographs (libx265,
   preset ultrafast) each written 64 times (cached in ``--image-dataset``): at least 20,000
   per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANCHORS = {
    "pymp4": ["pymp4==1.4.0", "numpy"],
    "pybenzinaparse": ["pybenzinaparse==0.2.2", "bitstring<5", "numpy"],
}

FLOOR = r"""
import mmap, struct, sys
import numpy as np

def boxes(buf, start, end):
    while start < end:
        size, kind = struct.unpack_from(">I4s", buf, start)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", buf, start + 8)[0], 16
        yield kind, start + header, start + size
        start += size

def child(buf, start, end, kind):
    return next((a, b) for k, a, b in boxes(buf, start, end) if k == kind)

with open(sys.argv[1], "rb") as f:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
moov = child(mm, 0, len(mm), b"moov")
tables = []
for kind, a, b in boxes(mm, *moov):
    if kind != b"trak":
        continue
    minf = child(mm, *child(mm, a, b, b"mdia"), b"minf")
    stbl = child(mm, *minf, b"stbl")
    for kind2, c, d in boxes(mm, *stbl):
        count = struct.unpack_from(">I", mm, c + 4)[0]
        if kind2 == b"stsz":
            sizes = np.frombuffer(mm, ">u4", struct.unpack_from(">I", mm, c + 8)[0], c + 12).astype(np.uint32)
        elif kind2 == b"co64":
            offsets = np.frombuffer(mm, ">u8", count, c + 8).astype(np.uint64)
        elif kind2 == b"stco":
            offsets = np.frombuffer(mm, ">u4", count, c + 8).astype(np.uint64)
    tables.append((offsets, sizes))
print(sum(int(s.sum()) + int(o[-1]) for o, s in tables))
"""

BZNA = r"""
import sys
import bzna_boxes
f = bzna_boxes.open(sys.argv[1])
tables = [(t.offsets, t.sizes) for t in f.tracks]
print(sum(int(s.sum()) + int(o[-1]) for o, s in tables))
"""

MEMORY = r"""
import json, os, resource, sys
import bzna_boxes, bzna_boxes.index
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
f = bzna_boxes.open(sys.argv[1])
tables = [(t.offsets, t.sizes) for t in f.tracks]
after = rss()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after, "peak": peak, "tables": sum(o.nbytes + s.nbytes for o, s in tables)}))
"""

SAMPLES = r"""
import json, sys, time
import numpy as np
import bzna_boxes
ds = bzna_boxes.Dataset(sys.argv[1])
order = np.random.default_rng(0).permutation(len(ds)).tolist()
rates = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    for i in order:
        s = ds[i]
        s.target
        s.filename
    rates.append(len(order) / (time.perf_counter() - start))
    ds = bzna_boxes.Dataset(sys.argv[1])  # the next run touches the targets and filenames afresh
print(json.dumps(rates))
"""

PICTURES = r"""
import json, sys, time
import numpy as np
import bzna_boxes
ds = bzna_boxes.Dataset(sys.argv[1])
calls = int(sys.argv[3])
order = np.random.default_rng(1).integers(0, len(ds), calls).tolist()
rates = {}
for track in ("bzna_input", "bzna_thumb"):
    runs = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        for i in order:
            ds[i].image(track)
        runs.append(calls / (time.perf_counter() - start))
    rates[track] = runs
print(json.dumps(rates))
"""

PYMP4 = r"""
import resource, struct, sys
import numpy as np
from pymp4.parser import Box
with open(sys.argv[1], "rb") as f:
    pos = 0
    while True:
        f.seek(pos)
        head = f.read(16)
        size, kind = struct.unpack(">I4s", head[:8])
        if size == 1:
            size = struct.unpack(">Q", head[8:16])[0]
        if kind == b"moov":
            f.seek(pos)
            moov = f.read(size)
            break
        pos += size
box = Box.parse(moov)  # pymp4 cannot parse a largesize mdat: the moov alone
tables = []
for trak in (c for c in box.children if c.type == b"trak"):
    mdia = next(c for c in trak.children if c.type == b"mdia")
    stbl = next(c for c in next(c for c in mdia.children if c.type == b"minf").children if c.type == b"stbl")
    sizes = np.array(next(c for c in stbl.children if c.type == b"stsz").entry_sizes, np.uint32)
    chunks = next(c for c in stbl.children if c.type in (b"stco", b"co64"))
    tables.append((np.array([e.chunk_offset for e in chunks.entries], np.uint64), sizes))
print(sum(int(s.sum()) + int(o[-1]) for o, s in tables))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

PYBENZINAPARSE = r"""
import resource, sys
import bitstring
import numpy as np
from pybenzinaparse import Parser
bstr = bitstring.ConstBitStream(filename=sys.argv[1])
tables = []
for box in Parser.parse(bstr=bstr):
    if box.header.type != b"moov":
        continue
    for trak in (c for c in box.boxes if c.header.type == b"trak"):
        mdia = next(c for c in trak.boxes if c.header.type == b"mdia")
        stbl = next(c for c in next(c for c in mdia.boxes if c.header.type == b"minf").boxes if c.header.type == b"stbl")
        stsz = next(c for c in stbl.boxes if c.header.type == b"stsz")
        chunks = next(c for c in stbl.boxes if c.header.type in (b"stco", b"co64"))
        stsz.load(bstr)  # table entries load on request
        chunks.load(bstr)
        tables.append((np.array([e.chunk_offset for e in chunks.entries], np.uint64), np.array([s.entry_size for s in stsz.samples], np.uint32)))
print(sum(int(s.sum()) + int(o[-1]) for o, s in tables))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

IMPORTS = {
    "pymp4": "import resource, numpy, pymp4.parser; print(0); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)",
    "pybenzinaparse": "import resource, numpy, bitstring, pybenzinaparse; print(0); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)",
}


def run(python: str, code: str, *args, env: dict | None = None) -> tuple[float, str]:
    """Run ``python -c code args`` as a whole process; return its wall time and stdout."""
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{python} -c ... failed:\n{done.stderr}")
    return elapsed, done.stdout


def library_env() -> dict:
    """The environment of every child: the working tree's bzna_boxes importable, and bytecode
    cached as in any installation (PYTHONDONTWRITEBYTECODE would recompile it in every process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def make_container(path: Path, samples: int) -> None:
    """The sparse ImageNet-shaped container (its generator's seed 0), unless it is there."""
    marker = path.with_name(path.name + ".samples")
    if path.exists() and marker.exists() and marker.read_text() == str(samples):
        return
    subprocess.run([sys.executable, str(HERE / "make_imagenet_container.py"), str(path), "--samples", str(samples)], check=True, env=library_env())
    marker.write_text(str(samples))


def anchor_python(venv_dir: Path, name: str) -> str:
    """The interpreter of the anchor's own virtual environment, made on first use."""
    root = venv_dir / name
    python = root / "bin" / "python"
    if not python.exists():
        print(f"creating {root} ({' '.join(ANCHORS[name])}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ANCHORS[name]], check=True)
    return str(python)


def median(values) -> float:
    return statistics.median(values)


def measure_open(path: Path, runs: int) -> dict:
    env = library_env()
    floor, ours = [], []
    floor_out = ours_out = None
    run(sys.executable, FLOOR, path, env=env)  # warm-up: the page cache, the bytecode caches
    run(sys.executable, BZNA, path, env=env)
    for _ in range(runs):
        t, floor_out = run(sys.executable, FLOOR, path, env=env)
        floor.append(t)
        t, ours_out = run(sys.executable, BZNA, path, env=env)
        ours.append(t)
    if floor_out != ours_out:
        raise RuntimeError(f"the floor and bzna_boxes disagree: {floor_out!r} vs {ours_out!r}")
    startup = median([run(sys.executable, "import numpy", env=env)[0] for _ in range(runs)])
    return {"floor": median(floor), "bzna": median(ours), "floor_runs": floor, "bzna_runs": ours, "python_numpy_start": startup}


def measure_anchors(path: Path, samples: int, anchor_samples: int, venv_dir: Path, expected: str | None) -> dict:
    results = {}
    target = path
    if anchor_samples < samples:
        target = path.with_name(f"{path.stem}-{anchor_samples}{path.suffix}")
        make_container(target, anchor_samples)
        expected = None
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    for name, code in (("pymp4", PYMP4), ("pybenzinaparse", PYBENZINAPARSE)):
        python = anchor_python(venv_dir, name)
        run(python, IMPORTS[name], env=env)  # warm-up: bytecode caches
        import_time, import_out = run(python, IMPORTS[name], env=env)
        import_rss = int(import_out.split()[1])
        elapsed, out = run(python, code, target, env=env)
        checksum, peak = out.split()
        if expected is not None and checksum != expected.strip():
            raise RuntimeError(f"{name} read other tables: {checksum} vs {expected.strip()}")
        scale = samples / anchor_samples
        results[name] = {
            "measured_s": elapsed,
            "measured_samples": anchor_samples,
            "start_s": import_time,
            "time_s": import_time + (elapsed - import_time) * scale,
            "peak_bytes": import_rss + (int(peak) - import_rss) * scale,
            "extrapolated": anchor_samples < samples,
        }
    return results


def build_picture_dataset(path: Path, count: int, encodes: int) -> None:
    """A real dataset of ``count`` samples: ``encodes`` crops of the fixture photographs encoded by
    libx265 (preset ultrafast), each written ``count / encodes`` times, in a shuffled order."""
    marker = path.with_name(path.name + ".samples")
    if path.exists() and marker.exists() and marker.read_text() == f"{count} {encodes}":
        return
    sys.path.insert(0, str(REPO))
    import numpy as np

    from bzna_boxes import DatasetWriter
    from bzna_boxes.encode import encode_image, load_rgb

    photos = [load_rgb(p) for p in sorted((REPO / "fixtures" / "images").glob("*/*.jpg"))]
    rng = np.random.default_rng(0)
    print(f"building {path} ({count:,} samples from {encodes} crops of the fixture photographs, x265 ultrafast) ...", flush=True)
    encoded = []
    for i in range(encodes):
        rgb = photos[i % len(photos)]
        h, w = rgb.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        encoded.append(encode_image(np.ascontiguousarray(rgb[y : y + ch, x : x + cw]), preset="ultrafast"))
    with DatasetWriter(path, fsync=False) as writer:
        for i in rng.permutation(count).tolist():
            writer.add(encoded[i % encodes], i % 3, f"crop{i:06d}.jpg")
    marker.write_text(f"{count} {encodes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=Path("/tmp/bzna-bench/imagenet.bzna"), help="the container (made when absent)")
    parser.add_argument("--samples", type=int, default=1_431_167, help="samples per track (default: ImageNet's 1,431,167)")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (medians)")
    parser.add_argument("--anchors-samples", type=int, default=None, help="run the anchors on this many samples and extrapolate linearly")
    parser.add_argument("--no-anchors", action="store_true", help="skip pymp4 and pybenzinaparse")
    parser.add_argument("--venv-dir", type=Path, default=Path.home() / ".cache" / "bzna_boxes" / "bench-venvs")
    parser.add_argument("--image-dataset", type=Path, default=None, help="the real dataset for image() (default: beside --path)")
    parser.add_argument("--image-samples", type=int, default=4096, help="samples in the real dataset")
    parser.add_argument("--image-encodes", type=int, default=64, help="distinct encoded crops among them")
    parser.add_argument("--image-calls", type=int, default=100_000, help="image() calls per run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    args.path.parent.mkdir(parents=True, exist_ok=True)
    make_container(args.path, args.samples)
    env = library_env()
    python = sys.executable
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; container {args.path} ({args.samples:,} samples per track, "
          f"{args.path.stat().st_size / 1e9:.1f} GB apparent)")

    figures: dict = {"samples": args.samples}
    opening = measure_open(args.path, args.runs)
    figures["open"] = opening
    ratio = opening["bzna"] / opening["floor"]
    print("\n1. open + offsets/sizes of the 4 tracks, whole process, median of", args.runs)
    print(f"   python + import numpy           {opening['python_numpy_start'] * 1e3:8.0f} ms")
    print(f"   floor (hand-written numpy)      {opening['floor'] * 1e3:8.0f} ms")
    print(f"   bzna_boxes.open                 {opening['bzna'] * 1e3:8.0f} ms   {ratio:.2f} x the floor (target <= 1.5 x) {'ok' if ratio <= 1.5 else 'MISSED'}")

    _, out = run(python, MEMORY, args.path, env=env)
    memory = json.loads(out)
    figures["memory"] = memory
    growth = memory["after"] - memory["before"]
    print("\n3. memory of open")
    print(f"   tables returned {memory['tables'] / 1e6:.1f} MB; RSS growth {growth / 1e6:.1f} MB (peak {(memory['peak'] - memory['before']) / 1e6:.1f} MB); "
          f"target <= tables + 50 MB {'ok' if growth <= memory['tables'] + 50e6 else 'MISSED'}")

    if not args.no_anchors:
        anchor_samples = min(args.anchors_samples or args.samples, args.samples)
        _, expected = run(python, FLOOR, args.path)
        anchors = measure_anchors(args.path, args.samples, anchor_samples, args.venv_dir, expected)
        figures["anchors"] = anchors
        print("\n2. anchors, same job, whole process" + (f" (run on {anchor_samples:,} samples, extrapolated linearly to {args.samples:,})" if anchor_samples < args.samples else ""))
        for name, result in anchors.items():
            speedup = result["time_s"] / opening["bzna"]
            print(f"   {name:16s} {result['time_s']:8.1f} s  (measured {result['measured_s']:.1f} s), peak {result['peak_bytes'] / 1e9:.2f} GB; "
                  f"bzna_boxes is {speedup:,.0f} x faster (target >= 300 x) {'ok' if speedup >= 300 else 'MISSED'}")

    _, out = run(python, SAMPLES, args.path, 3, env=env)
    rates = json.loads(out)
    figures["samples_per_s"] = rates
    print(f"\n4. ds[i].target + ds[i].filename, random permutation of {args.samples:,}: {median(rates):,.0f} samples/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}) (target >= 500,000) {'ok' if median(rates) >= 500_000 else 'MISSED'}")

    image_path = args.image_dataset or args.path.with_name("pictures.bzna")
    build_picture_dataset(image_path, args.image_samples, args.image_encodes)
    _, out = run(python, PICTURES, image_path, 3, args.image_calls, env=env)
    pictures = json.loads(out)
    figures["images_per_s"] = pictures
    for track, runs in pictures.items():
        print(f"5. ds[i].image({track!r}), {args.image_samples:,} real samples: {median(runs):,.0f} /s (target >= 20,000) {'ok' if median(runs) >= 20_000 else 'MISSED'}")

    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
