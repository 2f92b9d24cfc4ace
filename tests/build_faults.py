"""Faults injected into ``bzna build`` through the public ``encode`` parameter of
:func:`bzna_boxes.build.build` and the ``shard_task`` parameter of :func:`bzna_boxes.distributed.build`.

Each local fault is a per-image function for the worker processes (they import this module by
name): it records its worker's pid as an empty file in ``$BZNA_FAULT_PIDS``, encodes the image as
:func:`~bzna_boxes.build.encode_source` does, and strikes when it meets the image named
``TRIGGER``. :func:`main` runs the ``bzna build`` command with one of them::

    python -c 'import build_faults; build_faults.main()' FAULT SRC OUT [bzna build options]

Each distributed fault is a shard task for the Dask workers: it strikes once for each marker
file :func:`mark_shard` left, then runs :func:`~bzna_boxes.distributed.build_shard`.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from typing import Any

from bzna_boxes import build as building
from bzna_boxes.build import Source, encode_source
from bzna_boxes.cli import main as bzna
from bzna_boxes.distributed import ShardSpec, build_shard

TRIGGER = "trigger.png"


def _strikes(source: Source) -> bool:
    folder = os.environ.get("BZNA_FAULT_PIDS")
    if folder:
        open(os.path.join(folder, str(os.getpid())), "w").close()
    return os.path.basename(source.filename) == TRIGGER


def kill_own_worker(source: Source, encode_options: dict[str, Any]):
    """SIGKILL this worker (as the kernel's out-of-memory killer would) at the trigger image."""
    if _strikes(source):
        os.kill(os.getpid(), signal.SIGKILL)
    return encode_source(source, encode_options)


def interrupt_build(source: Source, encode_options: dict[str, Any]):
    """Send SIGINT (Ctrl-C) to the build, this worker's parent, at the trigger image."""
    if _strikes(source):
        os.kill(os.getppid(), signal.SIGINT)
    return encode_source(source, encode_options)


def kill_build(source: Source, encode_options: dict[str, Any]):
    """SIGKILL the build, this worker's parent, at the trigger image, then never finish that image
    (so that nothing but the parent's death can end this worker)."""
    if _strikes(source):
        os.kill(os.getppid(), signal.SIGKILL)
        threading.Event().wait()
    return encode_source(source, encode_options)


def mark_shard(folder: str | os.PathLike, fault: str, index: int) -> None:
    """Make the shard task ``fault`` strike once at shard ``index`` of a build whose work folder lies in ``folder``."""
    open(os.path.join(folder, f"{fault}-once-{index:06d}"), "w").close()


def _strikes_once(spec: ShardSpec, fault: str) -> bool:
    """True when :func:`mark_shard` marked this shard beside its work folder; the mark is used up."""
    folder = os.path.dirname(os.path.dirname(spec.path))
    try:
        os.unlink(os.path.join(folder, f"{fault}-once-{spec.index:06d}"))
    except FileNotFoundError:
        return False
    return True


def fail_shard_once(spec: ShardSpec) -> dict:
    """Raise in a marked shard's task (Dask then retries it), else build the shard."""
    if _strikes_once(spec, "fail_shard_once"):
        raise RuntimeError(f"injected failure of shard {spec.index}")
    return build_shard(spec)


def kill_worker_once(spec: ShardSpec) -> dict:
    """End the worker process running a marked shard's task (Dask then reschedules it), else build the shard."""
    if _strikes_once(spec, "kill_worker_once"):
        os._exit(17)
    return build_shard(spec)


def main(argv: list[str] | None = None) -> None:
    """``bzna build SRC OUT OPTIONS`` with the per-image work of the fault named first."""
    fault, *args = sys.argv[1:] if argv is None else argv
    building.build = functools.partial(building.build, encode=globals()[fault])
    sys.exit(bzna(["build", *args]))
