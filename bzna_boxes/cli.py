"""The ``bzna`` command: inspect, verify, extract, build, concat, decode.

Every subcommand is declared and run here: its options, the call into the module that owns the
feature (imported only when that subcommand runs, so ``bzna inspect`` never imports PyAV), and
what it prints. ``bzna build`` chooses the local process pool (:mod:`bzna_boxes.build`) or the
Dask build (:mod:`bzna_boxes.distributed`); neither module knows about the other's options.

With ``--json``, a command that reports prints one JSON object on stdout instead of text.
Errors are reported in one place: a :class:`BoxError`, a :class:`BuildError`, any other
``ValueError`` (a bad option value, an output that is one of the inputs) and any ``OSError``
(naming its file: no space left, read-only, a locked output) print one line on stderr and exit
with status 1; the writers have then left nothing at their output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from . import __version__
from .errors import BuildError, DecoderUnavailable

__all__ = ["main", "make_parser", "describe_error", "encode_options"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help says it already or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _report(args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    """Print ``text``, or with ``--json`` the ``record`` as one JSON object (keys in the order given)."""
    if getattr(args, "json", False):
        text = json.dumps({"command": args.command, **record}, default=_json_value)
    _write(text + "\n")


def _write(text: str) -> None:
    """Write ``text`` to stdout; a closed pipe (``bzna ... | head``) ends it quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _json_value(value: Any) -> Any:
    """Numpy scalars and paths as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _printable(text: str) -> str:
    """``text`` with the undecodable bytes of a filename (surrogate escapes) shown as ``\\udcXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")


# --- inspect ----------------------------------------------------------------------------------


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print the box tree of an MP4/.bzna file", formatter_class=_HelpFormatter)
    p.add_argument("file")
    p.add_argument("--depth", type=int, default=None, help="show boxes down to this depth (1 = top level; default: all)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--type", dest="types", action="append", default=None, metavar="FOURCC", help="show only boxes of this type (repeatable)")
    p.add_argument("--entries", type=int, default=3, help="table entries shown at each end")
    p.set_defaults(run=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    """``bzna inspect FILE [--depth N] [--json] [--type FOURCC] [--entries K]``."""
    from .inspect import format_text, inspect_file

    for option, value, least in (("--depth", args.depth, 1), ("--entries", args.entries, 0)):
        if value is not None and value < least:
            print(f"bzna inspect: {option} must be at least {least}", file=sys.stderr)
            return 2
    nodes, warnings = inspect_file(args.file, depth=args.depth, types=args.types, entries=args.entries)
    if args.json:
        text = json.dumps(nodes, indent=1) + "\n"
        for warning in warnings:  # the JSON lists them under their boxes; stderr shows them all
            print(f"bzna inspect: warning: {warning}", file=sys.stderr)
    else:
        lines = list(format_text(nodes, flat=bool(args.types)))
        lines += [f"warning: {warning}" for warning in warnings]
        text = "".join(line + "\n" for line in lines)
    _write(text)
    return 0


# --- verify -----------------------------------------------------------------------------------


def _add_verify(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check a .bzna dataset: sample bounds, track lengths, sample checksums, inner samples, targets",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("file")
    p.add_argument("--max-problems", type=int, default=20, help="problems listed before only counts are shown")
    p.add_argument("--num-classes", type=int, default=None, help="targets must lie in [0, N) (or be -1)")
    p.add_argument("--no-inner", action="store_true", help="skip parsing every inner sample")
    p.add_argument("--decode", action="store_true", help="also decode every picture on the CPU (needs PyAV)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    _json_option(p)
    p.set_defaults(run=_verify)


def _progress_bar(quiet: bool, asked: bool) -> Callable:
    """A tqdm wrapper on stderr when it is a terminal (or when asked), for 1,000 samples or more."""
    if quiet or not (asked or sys.stderr.isatty()):
        return lambda iterable, total: iterable

    def wrap(iterable, total):
        if total < 1000 and not asked:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, unit="sample", desc="inner samples", file=sys.stderr, mininterval=0.5)

    return wrap


def _verify(args: argparse.Namespace) -> int:
    """``bzna verify FILE``: the summary and the problems; status 1 when there are any."""
    from .remote import is_url
    from .verify import verify

    if not is_url(args.file) and not os.path.exists(args.file):
        raise FileNotFoundError(f"{args.file}: no such file")
    started = time.perf_counter()
    report = verify(
        args.file,
        num_classes=args.num_classes,
        inner=not args.no_inner,
        decode=args.decode,
        progress=_progress_bar(args.quiet, args.progress),
    )
    record = {
        "path": report.path,
        "ok": report.ok,
        "summary": report.summary,
        "problem_count": sum(report.counts.values()),
        "counts": dict(sorted(report.counts.items())),
        "problems": [
            {"kind": p.kind, "message": p.message, "offset": p.offset, "path": p.path} for p in report.problems[: args.max_problems]
        ],
        "damaged": report.damaged,
        "warnings": [str(warning) for warning in report.warnings],
        "seconds": time.perf_counter() - started,
    }
    _report(args, record, report.format(args.max_problems))
    return 0 if report.ok else 1


# --- extract ----------------------------------------------------------------------------------


def _add_extract(sub) -> None:
    p = sub.add_parser(
        "extract", help="write one sample, or one inner image as an Annex B .hevc stream", formatter_class=_HelpFormatter
    )
    p.add_argument("file")
    p.add_argument("index", type=int)
    p.add_argument(
        "--track",
        default=None,
        help="bzna_input or bzna_thumb: that inner picture as Annex B H.265; another outer track name or id: its sample "
        "(default: the bzna_input sample, the inner MP4)",
    )
    p.add_argument("-o", "--output", required=True)
    _json_option(p)
    p.set_defaults(run=_extract)


def _local_output(output: str) -> None:
    """Refuse an output URL (``s3://...``) where a command writes a local file."""
    from .remote import is_url

    if is_url(output) and not output.startswith("file://"):
        raise ValueError(f"{output}: this command writes a local file; give a path (only build and concat upload to a URL)")


def _extract(args: argparse.Namespace) -> int:
    """``bzna extract FILE INDEX [--track NAME] -o OUT``."""
    from . import layout
    from .atomic import atomic_file, check_not_an_input
    from .dataset import MissingSampleError
    from .verify import extract

    _local_output(args.output)
    check_not_an_input(args.output, [args.file])
    started = time.perf_counter()
    try:
        data = extract(args.file, args.index, args.track)
    except (KeyError, IndexError, MissingSampleError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"bzna extract: {message}", file=sys.stderr)
        return 1
    with atomic_file(args.output) as f:
        f.write(data)
    annexb = args.track in (layout.INPUT_TRACK, layout.THUMB_TRACK)
    record = {
        "path": args.output,
        "source": args.file,
        "index": args.index,
        "track": args.track or layout.INPUT_TRACK,
        "content": "annexb" if annexb else "sample",
        "bytes": len(data),
        "seconds": time.perf_counter() - started,
    }
    _report(args, record, f"wrote {len(data):,} bytes ({'Annex B stream' if annexb else 'sample'}) to {args.output}")
    return 0


# --- build ------------------------------------------------------------------------------------

_DISTRIBUTED_OPTIONS = ("scheduler", "cluster", "shard_size", "work_dir", "resume")
"""``bzna build`` options that send the build to Dask."""


def _add_build(sub) -> None:
    p = sub.add_parser(
        "build", help="build a .bzna dataset from an ImageFolder tree or a list file", formatter_class=_HelpFormatter
    )
    p.add_argument("src", help="a folder with one subfolder per class, or a file of 'path,target' lines")
    p.add_argument("out", help="the .bzna file to write")
    p.add_argument("--max-short-side", type=int, default=512, help="resize so the smaller side is at most N (0 keeps originals)")
    p.add_argument("--crf", type=float, default=None, help="x265 constant rate factor (default: the library's, see docs/building.md)")
    p.add_argument("--preset", default=None, help="x265 preset (default: the library's, see docs/building.md)")
    p.add_argument("--x265-params", default=None, help="extra x265 parameters, 'key=value:key=value'")
    p.add_argument("--workers", type=int, default=None, help="encoding processes (default: all cores)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first image that cannot be read or encoded")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _json_option(p)
    cluster = p.add_argument_group("distributed builds (pip install bzna_boxes[distributed])")
    cluster.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    cluster.add_argument("--cluster", choices=("local", "slurm"), default=None, help="start a Dask cluster")
    cluster.add_argument("--shard-size", type=int, default=None, help="images per shard (default: about four shards per worker, at most 1000 images)")
    cluster.add_argument("--work-dir", default=None, help="folder for shards (default: OUT.shards beside OUT)")
    cluster.add_argument("--resume", action="store_true", help="keep shards already written completely")
    cluster.add_argument("--jobs", type=int, default=1, help="SLURM jobs to start")
    cluster.add_argument("--cores-per-job", type=int, default=8, help="cores (and worker processes) of each SLURM job")
    cluster.add_argument("--memory", default="16GB", help="memory per SLURM job")
    cluster.add_argument("--walltime", default="04:00:00", help="wall time of each SLURM job")
    cluster.add_argument("--queue", default=None, help="SLURM partition (default: the cluster's)")
    p.set_defaults(run=_build)


def encode_options(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder options (:func:`bzna_boxes.encode.encode_image`'s) of ``bzna build``'s arguments."""
    options: dict[str, Any] = {"max_short_side": args.max_short_side or None, "preset": args.preset}
    if args.crf is not None:
        options["crf"] = args.crf
    if args.x265_params:
        options["x265_params"] = args.x265_params
    return options


def _build(args: argparse.Namespace) -> int:
    """``bzna build SRC OUT``: on local worker processes, or on Dask with a distributed option."""
    for option, value, least in (("--shard-size", args.shard_size, 1), ("--workers", args.workers, 1), ("--max-short-side", args.max_short_side, 0)):
        if value is not None and value < least:
            more = " (0 keeps the size)" if option == "--max-short-side" else ""
            print(f"bzna build: {option} must be at least {least}{more}, not {value}", file=sys.stderr)
            return 2
    if any(getattr(args, name, None) for name in _DISTRIBUTED_OPTIONS):
        return _build_distributed(args)
    from .build import available_cores, build

    result = build(args.src, args.out, workers=args.workers, fail_fast=args.fail_fast, progress=False if args.quiet else None, **encode_options(args))
    workers = args.workers or available_cores()
    record = {**_build_record(result), "workers": workers}
    stored = result.count - len(result.failures)
    per_image = result.bytes / stored if stored else 0
    summary = (
        f"wrote {result.path}: {result.count} samples ({len(result.failures)} missing), "
        f"{result.bytes / 1e6:.1f} MB ({per_image / 1e3:.1f} kB per image), "
        f"{result.seconds:.1f} s ({record['images_per_second']:.1f} images/s, {workers} worker{'s' if workers != 1 else ''})"
    )
    _report_build(args, result, record, summary)
    return 0


def _build_record(result: Any) -> dict[str, Any]:
    """What a local or distributed build wrote, as JSON-ready values."""
    rate = result.count / result.seconds if result.seconds else 0.0
    return {
        "path": result.path,
        "samples": result.count,
        "missing": len(result.failures),
        "bytes": result.bytes,
        "seconds": result.seconds,
        "images_per_second": rate,
        "classes_path": result.classes_path,
        "report_path": result.report_path,
        "failures": [{"index": index, "filename": name, "reason": reason} for index, name, reason in result.failures],
    }


def _report_build(args: argparse.Namespace, result: Any, record: dict[str, Any], summary: str) -> None:
    """Report a local or distributed build: ``summary``, then its class list and first failures as text."""
    lines = [summary]
    if result.classes_path:
        lines.append(f"classes: {result.classes_path}")
    failures = result.failures
    if failures:
        count = len(failures)
        lines.append(f"{count} image{'s' if count != 1 else ''} could not be stored, see {result.report_path}:")
        lines += [f"  {index}  {_printable(filename)}  {_printable(reason)}" for index, filename, reason in failures[:5]]
        if count > 5:
            lines.append(f"  ... and {count - 5} more")
    _report(args, record, "\n".join(lines))


def _cluster_client(args: argparse.Namespace):
    """A client for ``--scheduler`` / ``--cluster``, and the cluster to close (or None).

    ``--cluster local`` gives ``(None, None)``: :func:`bzna_boxes.distributed.build` starts it
    once the sources are listed.
    """
    from distributed import Client

    if args.scheduler:
        return Client(args.scheduler), None
    if args.cluster == "slurm":
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(
            cores=args.cores_per_job,
            processes=args.cores_per_job,
            memory=args.memory,
            walltime=args.walltime,
            queue=args.queue,
        )
        cluster.scale(jobs=args.jobs)
        return Client(cluster), cluster
    return None, None


def _build_distributed(args: argparse.Namespace) -> int:
    """``bzna build SRC OUT --scheduler ADDRESS | --cluster local|slurm [--shard-size N] [--resume]``."""
    from .distributed import build

    client, cluster = _cluster_client(args)
    try:
        result = build(
            args.src,
            args.out,
            client,
            shard_size=args.shard_size,
            work_dir=args.work_dir,
            resume=args.resume,
            fail_fast=args.fail_fast,
            progress=False if args.quiet else None,
            workers=args.workers,
            **encode_options(args),
        )
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    record = {
        **_build_record(result),
        "shards": result.shards,
        "built": result.built,
        "reused": result.reused,
        "merge_seconds": result.merge_seconds,
    }
    summary = (
        f"wrote {result.path}: {result.count} samples ({len(result.failures)} missing) from {result.shards} shards "
        f"({len(result.built)} built, {len(result.reused)} reused), {result.bytes / 1e6:.1f} MB, "
        f"{result.seconds:.1f} s ({record['images_per_second']:.1f} images/s; merge {result.merge_seconds:.1f} s)"
    )
    _report_build(args, result, record, summary)
    stored = result.count - len(result.failures)
    return 0 if stored or not result.count else 1


# --- concat -----------------------------------------------------------------------------------


def _add_concat(sub) -> None:
    p = sub.add_parser("concat", help="merge .bzna shards into one dataset", formatter_class=_HelpFormatter)
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--output", required=True)
    _json_option(p)
    p.set_defaults(run=_concat)


def _concat(args: argparse.Namespace) -> int:
    """``bzna concat A.bzna B.bzna ... -o OUT.bzna``."""
    from .writer import concat

    started = time.perf_counter()
    count = concat(args.inputs, args.output)
    record = {
        "path": args.output,
        "inputs": args.inputs,
        "samples": count,
        "bytes": _size(args.output),
        "seconds": time.perf_counter() - started,
    }
    _report(args, record, f"wrote {args.output}: {count} samples from {len(args.inputs)} files")
    return 0


def _size(location: str) -> int:
    """The size of a local file or of the object at a URL."""
    from .remote import is_url

    if not is_url(location):
        return os.path.getsize(location)
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(location)
    return int(fs.size(path))


# --- decode -----------------------------------------------------------------------------------


def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="decode one sample's image to a PNG", formatter_class=_HelpFormatter)
    p.add_argument("file")
    p.add_argument("index", type=int)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--track", default="bzna_input", choices=("bzna_input", "bzna_thumb"), help="the picture to decode")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _json_option(p)
    p.set_defaults(run=_decode)


def _decode(args: argparse.Namespace) -> int:
    """``bzna decode FILE INDEX -o OUT.png [--track] [--device]``: one sample's image to a PNG."""
    import numpy as np
    from PIL import Image

    from .atomic import atomic_file, check_not_an_input
    from .dataset import Dataset
    from .decode import open_decoder

    _local_output(args.output)
    check_not_an_input(args.output, [args.file])
    started = time.perf_counter()
    dataset = Dataset(args.file)
    if not -len(dataset) <= args.index < len(dataset):
        print(f"bzna decode: index {args.index} out of range: the dataset has {len(dataset)} samples", file=sys.stderr)
        return 1
    sample = dataset[args.index]
    if getattr(sample, "missing", False):
        print(f"bzna decode: sample {args.index} is missing from {args.file} (it has no image)", file=sys.stderr)
        return 1
    image = sample.image(args.track)
    decoder = open_decoder(args.device, layout="HWC")
    rgb = decoder.decode(image)
    if not isinstance(rgb, np.ndarray):
        rgb = rgb.cpu().numpy()
    with atomic_file(args.output) as out:
        Image.fromarray(rgb).save(out, format="PNG")
    device = str(decoder.device)
    record = {
        "path": args.output,
        "source": args.file,
        "index": args.index,
        "track": args.track,
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "device": device,
        "seconds": time.perf_counter() - started,
    }
    text = f"{args.output}: {rgb.shape[1]}x{rgb.shape[0]} RGB, sample {args.index} ({args.track}), decoded on {device}"
    _report(args, record, text)
    return 0


# --- the command ------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    """The ``bzna`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(prog="bzna", description="ISO-BMFF boxes and .bzna image datasets", formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_inspect, _add_verify, _add_extract, _add_build, _add_concat, _add_decode):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``bzna`` with ``argv`` (default: the process's arguments); returns the exit status."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError, BuildError, DecoderUnavailable) as exc:  # BoxError is a ValueError
        print(f"bzna {args.command}: {describe_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bzna {args.command}: interrupted", file=sys.stderr)
        return 130


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line: an ``OSError`` with the file it is about, anything else as its message."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        name = exc.filename
        if name is not None and os.fsdecode(name) not in text:
            text = f"{os.fsdecode(name)}: {text}"
    text = " ".join(text.split()) or type(exc).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
