"""Speed of the box engine on an ImageNet-scale container, against hand-written floors.

    python benchmarks/bench_boxes.py                   # 1,431,167 samples per track (~69 MB moov)
    python benchmarks/bench_boxes.py --samples 100000 --runs 5

Every figure below (a)-(c) is a WHOLE PROCESS (``python -c ...``), timed from outside, median of
``--runs`` runs taken round-robin after one warm-up run of each; the page cache is warm.

* (a) ``Boxes.parse`` of the container (mmap) and reading every table array (``.sum()`` of each
  column), against (c) a minimal struct-only reader that walks box headers down to the tables,
  ``np.frombuffer``s them and sums them the same way: the floor of a Python reader. Target (a) <= 2x (c).
* (b) ``Box.build`` of the parsed moov then one ``write`` of the result, against (b0) writing the
  moov's bytes (a slice of the mmap) with one ``write``: both processes parse first, and each
  also reports its build and write steps, timed inside. Targets: (b) <= 2x (b0), and
  ``Box.build`` alone <= 2x the one write. ``Box.build_stream`` is timed the same way.
* References: the interpreter alone, ``import numpy`` alone and ``import bzna_boxes`` alone.
* ``bzna inspect`` of the container (text), against (a).
* Peak RSS of (a) (``resource.getrusage`` in the child) beside the size of the tables it touches.
* In process: parse + build of small real MP4 files (two fixtures and a ~90 KB one made with PyAV),
  median over ``--iterations``; the target is a few milliseconds.

The container is made by ``make_imagenet_container.py`` in a temporary folder (sparse: only the
moov takes disk space) unless ``--file`` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Code run by the child processes. Each prints one JSON line: its RSS and its step timings.
_REPORT = """
import json, resource
def vm_hwm():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0
usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rss": usage, "hwm": vm_hwm(), **report}))
"""
# ru_maxrss carries over the parent's high-water mark through fork and exec (Linux), so this
# script keeps its own process small until the children have run; VmHWM (the child's own
# address space only) is reported beside it as a check.

_TOUCH = """
def touch(arr):
    if arr.dtype.names:
        return sum(int(arr[name].sum()) for name in arr.dtype.names)
    return int(arr.sum())
"""

PARSE = _TOUCH + """
import sys, numpy as np
from bzna_boxes import Boxes, walk
tree = Boxes.parse(sys.argv[1])
total = nbytes = 0
for _, box in walk(tree):
    for value in box.values():
        if isinstance(value, np.ndarray):
            total += touch(value)
            nbytes += value.nbytes
report = {"checksum": total, "table_bytes": nbytes}
""" + _REPORT

FLOOR = _TOUCH + """
import mmap, struct, sys
import numpy as np

HEAD = struct.Struct(">I4s")
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
U4 = np.dtype(">u4")
TABLES = {
    b"stts": np.dtype([("sample_count", U4), ("sample_delta", U4)]),
    b"stsc": np.dtype([("first_chunk", U4), ("samples_per_chunk", U4), ("sample_description_index", U4)]),
    b"stco": U4,
    b"co64": np.dtype(">u8"),
}

def tables(buf, pos, end, out):
    while pos < end:
        size, kind = HEAD.unpack_from(buf, pos)
        head = 8
        if size == 1:
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        body = pos + head
        if kind in CONTAINERS:
            tables(buf, body, pos + size, out)
        elif kind == b"stsz":
            sample_size, count = struct.unpack_from(">II", buf, body + 4)
            if sample_size == 0:
                out.append(np.frombuffer(buf, U4, count, body + 12))
        elif kind in TABLES:
            count = struct.unpack_from(">I", buf, body + 4)[0]
            out.append(np.frombuffer(buf, TABLES[kind], count, body + 8))
        pos += size

with open(sys.argv[1], "rb") as f:
    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
found = []
tables(buf, 0, len(buf), found)
report = {"checksum": sum(touch(arr) for arr in found), "table_bytes": sum(arr.nbytes for arr in found)}
""" + _REPORT

BUILD = """
import sys, time
from bzna_boxes import Box, Boxes
from bzna_boxes.stream import as_memoryview
view, _ = as_memoryview(sys.argv[1])
moov = next(box for box in Boxes.parse(view) if box.type == "moov")
mode = sys.argv[3]
with open(sys.argv[2], "wb") as out:
    start = time.perf_counter()
    if mode == "build":
        data = Box.build(moov)
        built = time.perf_counter()
        out.write(data)
    elif mode == "stream":
        Box.build_stream(moov, out)
        built = time.perf_counter()
    else:
        built = start
        out.write(view[moov._offset : moov._offset + moov._size])
    out.flush()
    done = time.perf_counter()
report = {"build_s": built - start, "step_s": done - start}
""" + _REPORT

ROUND_TRIP = """
import json, sys
from bzna_boxes import Box, Boxes, find
from bzna_boxes.stream import as_memoryview
view, _ = as_memoryview(sys.argv[1])
tree = Boxes.parse(view)
moov = find(tree, "moov")
if Box.build(moov) != view[moov._offset : moov._offset + moov._size]:
    sys.exit("Box.build of the parsed moov differs from the file's moov")
print(json.dumps({"moov_size": moov._size, "samples": int(find(moov, "trak/mdia/minf/stbl/stsz").sample_count)}))
"""

INSPECT = """
import sys
from bzna_boxes.cli import main
if main(["inspect", sys.argv[1]]) != 0:
    sys.exit(1)
report = {}
""" + _REPORT

PROCESSES = {
    "start": ("interpreter start (python -c pass)", "pass"),
    "numpy": ("import numpy", "import numpy\nreport = {}\n" + _REPORT),
    "import": ("import bzna_boxes", "import bzna_boxes\nreport = {}\n" + _REPORT),
    "floor": ("(c) struct walk + np.frombuffer + sum", FLOOR),
    "parse": ("(a) Boxes.parse(mmap) + sum every table", PARSE),
    "inspect": ("bzna inspect FILE (text, to a pipe)", INSPECT),
    "write": ("(b0) parse, then one write of the moov bytes", BUILD),
    "build": ("(b) parse, then Box.build(moov) + one write", BUILD),
    "stream": ("(b') parse, then Box.build_stream(moov, f)", BUILD),
}


def machine() -> str:
    """CPU model, cores, OS, Python and library versions."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version  # not the packages themselves: this process stays small

    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {version('numpy')}, construct {version('construct')}"
    )


def run_child(name: str, container: Path, scratch: Path) -> tuple[float, dict]:
    """Run one child process; return its wall time and its JSON report."""
    code = PROCESSES[name][1]
    out = scratch / "moov.out"
    argv = [sys.executable, "-c", code]
    if name in ("floor", "parse", "inspect"):
        argv.append(str(container))
    elif name in ("write", "build", "stream"):
        argv += [str(container), str(out), name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr}")
    out.unlink(missing_ok=True)
    lines = proc.stdout.strip().splitlines()
    return wall, json.loads(lines[-1]) if lines else {}


def whole_processes(container: Path, runs: int) -> dict[str, dict]:
    """Median wall time, and median of each reported figure, of every child over ``runs`` runs."""
    results: dict[str, list] = {name: [] for name in PROCESSES}
    with tempfile.TemporaryDirectory(prefix="bench_boxes.") as tmp:
        scratch = Path(tmp)
        for name in PROCESSES:  # warm-up: page cache, .pyc files
            run_child(name, container, scratch)
        for _ in range(runs):
            for name in PROCESSES:
                results[name].append(run_child(name, container, scratch))
    summary = {}
    for name, samples in results.items():
        walls = [wall for wall, _ in samples]
        reports = [report for _, report in samples]
        summary[name] = {"wall_s": statistics.median(walls), "wall_min_s": min(walls)}
        for key in reports[0]:
            if isinstance(reports[0][key], (int, float)):
                summary[name][key] = statistics.median(r[key] for r in reports)
                summary[name][key.replace("_s", "_min_s")] = min(r[key] for r in reports)
        if "checksum" in reports[0]:
            summary[name]["checksum"] = reports[0]["checksum"]
    return summary


def check_round_trip(container: Path) -> dict:
    """In a child: Box.build of the parsed moov equals the moov's bytes; return its size and sample count."""
    proc = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(container)], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"round trip check failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def typical_mp4(folder: Path) -> Path | None:
    """A ~90 KB MP4 made by PyAV: 3 s of 320x240 H.264 (a moving gradient with grain) plus AAC, interleaved."""
    try:
        import av
        import numpy as np
    except ImportError:
        return None
    path = folder / "typical.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=25, options={"crf": "36", "g": "25"})
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.bit_rate = 64000
        yy, xx = np.mgrid[0:240, 0:320]
        grain = np.random.default_rng(0).integers(0, 24, (240, 320, 3))
        samples_done = 0
        for i in range(75):
            rgb = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], axis=-1)
            rgb = ((rgb + np.roll(grain, i, axis=1)) % 256).astype(np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            while samples_done < (i + 1) * 48000 // 25:
                t = (samples_done + np.arange(1024)) / 48000
                tone = (0.3 * np.sin(2 * np.pi * (220 + 200 * t) * t)).astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, samples_done
                out.mux(audio.encode(frame))
                samples_done += 1024
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def small_files(iterations: int) -> list[tuple[str, int, int, float, float]]:
    """In process: median parse and build times of small real files (name, bytes, boxes, parse, build)."""
    from bzna_boxes import Boxes, walk

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_boxes.") as tmp:
        paths = [ROOT / "fixtures/media/av_interleaved.mp4", ROOT / "fixtures/media/h265.mp4"]
        made = typical_mp4(Path(tmp))
        paths += [made] if made else []
        for path in paths:
            data = path.read_bytes()
            tree = Boxes.parse(data)
            if Boxes.build(tree) != data:
                sys.exit(f"{path.name}: parse then build does not give the input back")
            parse_times, build_times = [], []
            for _ in range(iterations):
                start = time.perf_counter()
                tree = Boxes.parse(data)
                mid = time.perf_counter()
                Boxes.build(tree)
                parse_times.append(mid - start)
                build_times.append(time.perf_counter() - mid)
            label = path.name if path != made else "PyAV 320x240 H.264 + AAC, 3 s"
            rows.append((label, len(data), sum(1 for _ in walk(tree)), statistics.median(parse_times), statistics.median(build_times)))
    if not made:
        print("note: PyAV is not installed, so the ~100 KB MP4 was not made (only the fixtures are timed)")
    return rows


def report(summary: dict, samples: int, moov_size: int, parent_rss: int, small: list) -> None:
    ms = {name: figures["wall_s"] * 1e3 for name, figures in summary.items()}
    anchor = {"parse": "floor", "inspect": "parse", "build": "write", "stream": "write"}
    print(f"\nWhole processes ({samples:,} samples per track, moov {moov_size / 1e6:.1f} MB):")
    print(f"  {'process':48} {'median ms':>10} {'min ms':>8} {'ratio':>12}")
    for name, (label, _) in PROCESSES.items():
        ratio = f"{ms[name] / ms[anchor[name]]:.2f}x {anchor[name]}" if name in anchor else ""
        print(f"  {label:48} {ms[name]:10.1f} {summary[name]['wall_min_s'] * 1e3:8.1f} {ratio:>12}")
    write_step = summary["write"]["step_s"] * 1e3
    steps = [
        ("one write of the moov bytes (anchor)", "write", "step"),
        ("Box.build(moov) alone (a new bytes object)", "build", "build"),
        ("Box.build(moov) + one write", "build", "step"),
        ("Box.build_stream(moov, f)", "stream", "step"),
    ]
    print("\nSteps timed inside the (b) processes, after the parse:")
    print(f"  {'step':48} {'median ms':>10} {'min ms':>8} {'ratio':>12}")
    for label, name, key in steps:
        median = summary[name][f"{key}_s"] * 1e3
        print(f"  {label:48} {median:10.1f} {summary[name][f'{key}_min_s'] * 1e3:8.1f} {median / write_step:11.2f}x")
    parse = summary["parse"]
    tables = parse["table_bytes"] / 2**20
    rss = parse["rss"] / 2**20
    hwm = parse["hwm"] / 2**20
    print("\nPeak RSS (ru_maxrss of the child, MiB; file pages of the mmap count once touched):")
    print(f"  (a) {rss:.0f}, of which tables {tables:.0f}: {rss - tables:.0f} beyond the tables (VmHWM {hwm:.0f})")
    print(f"  (c) {summary['floor']['rss'] / 2**20:.0f}; import numpy alone {summary['numpy']['rss'] / 2**20:.0f}; this script when it started them {parent_rss / 2**20:.0f}")
    if parse["checksum"] != summary["floor"]["checksum"]:
        print("  WARNING: (a) and (c) summed different values")
    print("\nTargets (whole processes unless said):")
    ratio_a, ratio_b = ms["parse"] / ms["floor"], ms["build"] / ms["write"]
    print(f"  (a) <= 2x (c):   {ratio_a:.2f}x  {'met' if ratio_a <= 2 else 'MISSED'}")
    print(f"  (b) <= 2x (b0):  {ratio_b:.2f}x  {'met' if ratio_b <= 2 else 'MISSED'}")
    step_b = summary["build"]["build_s"] / summary["write"]["step_s"]
    print(f"  and as steps, Box.build(moov) <= 2x one write of its bytes: {step_b:.2f}x  {'met' if step_b <= 2 else 'MISSED'}")
    print(f"  RSS of (a) beyond its tables < 200 MiB: {rss - tables:.0f} MiB  {'met' if rss - tables < 200 else 'MISSED'}")
    print("\nIn process, parse + build of small MP4s (median):")
    print(f"  {'file':32} {'bytes':>8} {'boxes':>6} {'parse ms':>9} {'build ms':>9} {'total ms':>9}")
    for label, size, boxes, parse_s, build_s in small:
        print(f"  {label:32} {size:8,} {boxes:6} {parse_s * 1e3:9.2f} {build_s * 1e3:9.2f} {(parse_s + build_s) * 1e3:9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_431_167, help="samples per track of the container made")
    parser.add_argument("--file", type=Path, default=None, help="an existing container to read instead")
    parser.add_argument("--runs", type=int, default=7, help="runs of each process (median; at least 5)")
    parser.add_argument("--iterations", type=int, default=300, help="in-process iterations for the small MP4s")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    print(f"machine: {machine()}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench_boxes.") as tmp:
        container = args.file
        if container is None:
            container = Path(tmp) / "imagenet.bzna"
            maker = Path(__file__).resolve().parent / "make_imagenet_container.py"
            subprocess.run([sys.executable, str(maker), str(container), "--samples", str(args.samples)], check=True)
        checked = check_round_trip(container)
        parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        summary = whole_processes(container, args.runs)
    print(f"load average after the processes: {os.getloadavg()[0]:.2f}")
    report(summary, checked["samples"], checked["moov_size"], parent_rss, small_files(args.iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
