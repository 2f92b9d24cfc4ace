"""The ``bzna`` command: inspect, verify, extract, build, concat, decode.

Each subcommand's options are declared here; its work lives in the module that owns the
feature, imported only when that subcommand runs (so ``bzna inspect`` never imports PyAV).
Errors are reported here, in one place: a :class:`BoxError`, a :class:`BuildError`, any
other ``ValueError`` (a bad option value, an output that is one of the inputs) and any
``OSError`` (naming its file: no space left, read-only, a locked output) print one line
and exit with status 1; the writers have then left nothing at their output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import BuildError, DecoderUnavailable


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print the box tree of an MP4/.bzna file")
    p.add_argument("file")
    p.add_argument("--depth", type=int, default=None, help="show boxes down to this depth (1 = top level)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--type", dest="types", action="append", default=None, metavar="FOURCC", help="show only boxes of this type (repeatable)")
    p.add_argument("--entries", type=int, default=3, help="table entries shown at each end (default 3)")
    p.set_defaults(run="bzna_boxes.inspect:run")


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="check a .bzna dataset: sample bounds, track lengths, sample checksums, inner samples, targets")
    p.add_argument("file")
    p.add_argument("--max-problems", type=int, default=20, help="problems listed before only counts are shown")
    p.add_argument("--num-classes", type=int, default=None, help="targets must lie in [0, N) (or be -1)")
    p.add_argument("--no-inner", action="store_true", help="skip parsing every inner sample")
    p.add_argument("--decode", action="store_true", help="also decode every picture on the CPU (needs PyAV)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.set_defaults(run="bzna_boxes.verify:run")


def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="write one sample, or one inner image as an Annex B .hevc stream")
    p.add_argument("file")
    p.add_argument("index", type=int)
    p.add_argument(
        "--track",
        default=None,
        help="bzna_input or bzna_thumb: that inner picture as Annex B H.265; another outer track name or id: its sample "
        "(default: the bzna_input sample, the inner MP4)",
    )
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(run="bzna_boxes.verify:run_extract")


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="build a .bzna dataset from an ImageFolder tree or a list file")
    p.add_argument("src", help="a folder with one subfolder per class, or a file of 'path,target' lines")
    p.add_argument("out", help="the .bzna file to write")
    p.add_argument("--max-short-side", type=int, default=512, help="resize so the smaller side is at most N (0 keeps originals)")
    p.add_argument("--crf", type=float, default=None, help="x265 constant rate factor (default: the library's)")
    p.add_argument("--preset", default=None, help="x265 preset (default: the library's, see docs/building.md)")
    p.add_argument("--x265-params", default=None, help="extra x265 parameters, 'key=value:key=value'")
    p.add_argument("--workers", type=int, default=None, help="encoding processes (default: all cores)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first image that cannot be read or encoded")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    cluster = p.add_argument_group("distributed builds (pip install bzna_boxes[distributed])")
    cluster.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    cluster.add_argument("--cluster", choices=("local", "slurm"), default=None, help="start a Dask cluster")
    cluster.add_argument("--shard-size", type=int, default=None, help="images per shard")
    cluster.add_argument("--work-dir", default=None, help="folder for shards (default: OUT.shards beside OUT)")
    cluster.add_argument("--resume", action="store_true", help="keep shards already written completely")
    cluster.add_argument("--jobs", type=int, default=1, help="SLURM jobs to start")
    cluster.add_argument("--cores-per-job", type=int, default=8)
    cluster.add_argument("--memory", default="16GB", help="memory per SLURM job")
    cluster.add_argument("--walltime", default="04:00:00")
    cluster.add_argument("--queue", default=None, help="SLURM partition")
    p.set_defaults(run="bzna_boxes.build:run")


def _add_concat(sub) -> None:
    p = sub.add_parser("concat", help="merge .bzna shards into one dataset")
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(run="bzna_boxes.writer:run_concat")


def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="decode one sample's image to a PNG")
    p.add_argument("file")
    p.add_argument("index", type=int)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--track", default="bzna_input", choices=("bzna_input", "bzna_thumb"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.set_defaults(run="bzna_boxes.decode:run")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bzna", description="ISO-BMFF boxes and .bzna image datasets")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_inspect, _add_verify, _add_extract, _add_build, _add_concat, _add_decode):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    module_name, func_name = args.run.split(":")
    run = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(run(args) or 0)
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
