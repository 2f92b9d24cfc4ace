"""Build a ``.bzna`` dataset on a Dask cluster: one task per shard, then an exact merge.

The source list (``bzna build``'s rules and target numbering, :func:`bzna_boxes.build.list_sources`)
is cut into contiguous shards. Each shard is one Dask task that encodes its images and writes a
shard ``.bzna`` into a work folder beside the output (shared storage on a cluster), then a small
manifest that marks it done. The driver merges the shards in order with
:func:`bzna_boxes.writer.concat`, whose output is byte for byte what one writer fed the same
samples writes, so the result equals a local ``bzna build`` of the same inputs and options.

Fault tolerance comes from Dask (a failed task is retried, a task whose worker died is
rescheduled) and from the manifests: with ``resume=True`` a shard whose manifest matches its
source list and options, and whose file holds the expected number of samples, is not redone.

Needs the ``distributed`` extra: ``pip install bzna_boxes[distributed]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from .atomic import OutputLock, atomic_file
from .build import (
    BuildError,
    Source,
    SourceList,
    available_cores,
    build_sources,
    check_encode_options,
    check_outputs,
    list_sources,
    side_files,
    sidecar_paths,
    uploaded_result,
)
from .remote import is_url, streamed_upload

__all__ = ["ShardSpec", "DistributedBuildResult", "plan_shards", "build"]

MANIFEST_VERSION = 1
DEFAULT_SHARD_TARGET = 1000
"""Upper bound on the images of a shard chosen automatically (about a minute of one core's work)."""


@dataclass(frozen=True)
class ShardSpec:
    """One shard's work: which images (a contiguous slice of the source list) and where they go."""

    index: int
    start: int
    sources: tuple[Source, ...]
    path: str
    manifest: str
    digest: str
    encode_options: dict[str, Any]
    progress_queue: str | None = None

    @property
    def stop(self) -> int:
        return self.start + len(self.sources)


@dataclass
class DistributedBuildResult:
    """What a distributed build did: sample count, failed images, shards built and reused, time."""

    path: str
    count: int
    shards: int
    built: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    merge_seconds: float = 0.0
    bytes: int = 0
    classes_path: str | None = None
    report_path: str | None = None


def _digest(sources: Sequence[Source], start: int, encode_options: dict[str, Any]) -> str:
    """A hash of what a shard holds: its place in the list, its sources and the encoder options."""
    payload = json.dumps(
        {"start": start, "sources": [(s.path, s.target, s.filename) for s in sources], "options": encode_options},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def default_shard_size(count: int, workers: int) -> int:
    """About four shards per worker (so a slow shard does not hold the others back), at most 1,000 images."""
    return max(1, min(DEFAULT_SHARD_TARGET, math.ceil(count / max(1, 4 * workers))))


def plan_shards(
    sources: Sequence[Source],
    work_dir: str,
    shard_size: int,
    encode_options: dict[str, Any],
) -> list[ShardSpec]:
    """Cut ``sources`` into contiguous shards of ``shard_size`` images (the last one may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, not {shard_size}")
    absolute = tuple(Source(os.path.abspath(s.path), s.target, s.filename) for s in sources)
    specs = []
    for index, start in enumerate(range(0, len(absolute), shard_size)):
        chunk = absolute[start : start + shard_size]
        name = os.path.join(work_dir, f"shard-{index:06d}")
        specs.append(
            ShardSpec(
                index=index,
                start=start,
                sources=chunk,
                path=name + ".bzna",
                manifest=name + ".json",
                digest=_digest(chunk, start, encode_options),
                encode_options=dict(encode_options),
            )
        )
    return specs


def _sample_count(path: str) -> int:
    from .index import open as open_bzna

    with open_bzna(path) as f:
        return len(f.tracks[0]) if f.tracks else 0


def shard_is_done(spec: ShardSpec) -> bool:
    """True when the shard's manifest matches its spec and its file holds every sample."""
    try:
        with open(spec.manifest, encoding="utf-8") as f:
            manifest = json.load(f)
        return (
            manifest.get("version") == MANIFEST_VERSION
            and manifest.get("digest") == spec.digest
            and manifest.get("count") == len(spec.sources)
            and _sample_count(spec.path) == len(spec.sources)
        )
    except (OSError, ValueError):
        return False


def _write_json_atomically(path: str, value: Any) -> None:
    with atomic_file(path, "w", encoding="utf-8", fsync=True) as f:
        json.dump(value, f)


def build_shard(spec: ShardSpec) -> dict:
    """Encode and write one shard, check it, then write its manifest (runs on a Dask worker).

    The encoder runs on one thread (x265 ``pools=1``, as :func:`~bzna_boxes.build.build_sources`
    sets for one worker): a worker process is one core's worth of work, as in the local pool,
    and the bytes do not depend on it.
    """
    reporter = _ProgressReporter(spec) if spec.progress_queue else None
    result = build_sources(
        list(spec.sources),
        spec.path,
        workers=1,
        progress=False,
        on_image=reporter,
        **spec.encode_options,
    )
    if reporter is not None:
        reporter.flush()
    count = _sample_count(spec.path)
    if count != len(spec.sources):
        raise BuildError(f"shard {spec.index}: wrote {count} samples, expected {len(spec.sources)}")
    manifest = {
        "version": MANIFEST_VERSION,
        "index": spec.index,
        "start": spec.start,
        "count": count,
        "digest": spec.digest,
        "bytes": os.path.getsize(spec.path),
        "seconds": result.seconds,
        "failures": [(spec.start + i, name, reason) for i, name, reason in result.failures],
    }
    _write_json_atomically(spec.manifest, manifest)
    return manifest


class _ProgressReporter:
    """Sends ``(shard, attempt, images done)`` to the driver through a Dask queue, at most ~4 times a second."""

    def __init__(self, spec: ShardSpec):
        from distributed import Queue

        self.queue = Queue(spec.progress_queue)
        self.shard = spec.index
        self.attempt = uuid.uuid4().hex
        self.done = 0
        self.sent_at = 0.0

    def __call__(self, done: int = 1) -> None:
        self.done += done
        now = time.monotonic()
        if now - self.sent_at >= 0.25:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        self.sent_at = time.monotonic() if now is None else now
        try:
            self.queue.put((self.shard, self.attempt, self.done))
        except Exception:  # noqa: BLE001  (progress is best effort; the build goes on)
            pass


def _local_client(workers: int | None):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers or available_cores(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
    )
    return Client(cluster), cluster


def build(
    src: str | os.PathLike,
    out: str | os.PathLike,
    client=None,
    *,
    shard_size: int | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = False,
    retries: int = 2,
    fail_fast: bool = False,
    progress: bool | None = None,
    keep_shards: bool = False,
    workers: int | None = None,
    shard_task: Callable[[ShardSpec], dict] | None = None,
    **encode_options: Any,
) -> DistributedBuildResult:
    """Build ``out`` from ``src`` on a Dask cluster, equal to a local ``bzna build`` of the same inputs.

    ``client`` is a ``distributed.Client``; None starts a ``LocalCluster`` of ``workers``
    processes (default: all cores) for the duration of the build. ``work_dir`` (default
    ``OUT.shards`` beside the output; for an ``out`` URL, beside the local staging file) must be
    visible to every worker. ``resume`` keeps the
    shards already written completely; otherwise the work folder starts empty. Failed tasks are
    retried ``retries`` times. ``encode_options`` go to :func:`bzna_boxes.encode.encode_image`.
    The shards are removed after the merge unless ``keep_shards``. The output is locked
    (:class:`~bzna_boxes.atomic.OutputLock`) from the start: a second build of it fails at once.
    ``shard_task`` is what each shard's Dask task runs (default :func:`build_shard`; another
    function must return what it returns, and pickle by reference: a function at the top level
    of a module the workers import).
    """
    if is_url(out):  # merged in a local staging folder, then uploaded whole (see bzna_boxes.remote)
        from .remote import write_then_upload

        arguments = dict(shard_size=shard_size, work_dir=work_dir, resume=resume, retries=retries, fail_fast=fail_fast, progress=progress, keep_shards=keep_shards, workers=workers, shard_task=shard_task)
        result = write_then_upload(os.fspath(out), lambda local: build(src, local, client, **arguments, **encode_options))
        return uploaded_result(result, os.fspath(out))
    started = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"the shard size must be at least 1, not {shard_size}")
    listing = list_sources(src)
    check_outputs(src, out, listing.sources)
    with OutputLock(out) as lock:
        return _build_locked(
            listing, out, client, lock, started,
            shard_size=shard_size, work_dir=work_dir, resume=resume, retries=retries, fail_fast=fail_fast,
            progress=progress, keep_shards=keep_shards, workers=workers, shard_task=shard_task or build_shard, encode_options=encode_options,
        )  # fmt: skip


def _build_locked(
    listing: SourceList,
    out: str,
    client,
    lock: OutputLock,
    started: float,
    *,
    shard_size: int | None,
    work_dir: str | os.PathLike | None,
    resume: bool,
    retries: int,
    fail_fast: bool,
    progress: bool | None,
    keep_shards: bool,
    workers: int | None,
    shard_task: Callable[[ShardSpec], dict],
    encode_options: dict[str, Any],
) -> DistributedBuildResult:
    """The build of :func:`build`, once the sources are listed and the output locked."""
    from tqdm import tqdm

    work = os.path.abspath(os.fspath(work_dir) if work_dir else out + ".shards")
    check_encode_options(encode_options)
    own = None
    if client is None:
        client, own = _local_client(workers)
    try:
        nworkers = max(1, len(client.scheduler_info().get("workers", {})) or available_cores())
        size = shard_size or default_shard_size(len(listing.sources), nworkers)
        specs = plan_shards(listing.sources, work, size, encode_options)
        if os.path.isdir(work) and not resume:
            _clear_shards(work)
        os.makedirs(work, exist_ok=True)
        result = DistributedBuildResult(out, len(listing.sources), len(specs))
        todo = []
        for spec in specs:
            if resume and shard_is_done(spec):
                result.reused.append(spec.index)
            else:
                todo.append(spec)
        if progress is None:
            progress = sys.stderr.isatty()
        queue_name = f"bzna-progress-{uuid.uuid4().hex}"
        if progress:
            todo = [replace(spec, progress_queue=queue_name) for spec in todo]
        reused_images = sum(len(specs[i].sources) for i in result.reused)
        with tqdm(total=len(listing.sources), initial=reused_images, unit="img", disable=not progress, dynamic_ncols=True) as bar:
            _run_shards(client, shard_task, todo, retries, bar, queue_name if progress else None, fail_fast, reused_images)
        result.built = [spec.index for spec in todo]
    finally:
        if own is not None:
            client.close()
            own.close()
    merge_start = time.perf_counter()
    failures = []
    for spec in specs:
        with open(spec.manifest, encoding="utf-8") as f:
            failures.extend(tuple(row) for row in json.load(f)["failures"])
    if fail_fast and failures:
        index, name, reason = failures[0]
        raise BuildError(f"image {index} ({name}): {reason}")
    from .writer import concat

    concat([spec.path for spec in specs], out, lock=lock, side_files=side_files(out, listing.classes, failures), classes=listing.classes)
    result.merge_seconds = time.perf_counter() - merge_start
    classes_path, result.report_path = sidecar_paths(out)
    result.classes_path = classes_path if listing.classes is not None else None
    result.failures = failures
    upload = streamed_upload(out)  # merged straight into an object store (see bzna_boxes.remote)
    result.bytes = upload.size if upload is not None else os.path.getsize(out)
    if not keep_shards:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def _clear_shards(work: str) -> None:
    for entry in os.scandir(work):
        if entry.name.startswith("shard-") and entry.is_file():
            os.unlink(entry.path)


def _run_shards(
    client, shard_task: Callable[[ShardSpec], dict], specs: list[ShardSpec], retries: int, bar, queue_name: str | None, fail_fast: bool, base: int
) -> None:
    """Submit every shard, follow progress, and raise :class:`BuildError` if a shard fails for good."""
    from distributed import Queue, wait

    if not specs:
        return
    build_id = uuid.uuid4().hex[:12]
    queue = Queue(queue_name) if queue_name else None
    futures = {
        client.submit(shard_task, spec, key=f"bzna-shard-{build_id}-{spec.index}", retries=retries, pure=False): spec
        for spec in specs
    }
    latest: dict[int, tuple[str, int]] = {}
    finished: set[int] = set()
    failed: list[tuple[ShardSpec, BaseException]] = []
    pending = set(futures)
    try:
        while pending:
            try:
                done, _ = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            if queue is not None:
                for shard, attempt, count in queue.get(batch=True):
                    latest[shard] = (attempt, count)
            for future in done:
                pending.discard(future)
                spec = futures[future]
                if future.status != "finished":
                    # The other shards go on: whatever they finish, a resumed build keeps.
                    failed.append((spec, future.exception()))
                    if fail_fast:
                        break
                    continue
                finished.add(spec.index)
                if fail_fast and future.result()["failures"]:
                    index, name, reason = future.result()["failures"][0]
                    raise BuildError(f"image {index} ({name}): {reason}")
            if not bar.disable:
                images = sum(len(futures_spec.sources) for futures_spec in futures.values() if futures_spec.index in finished)
                images += sum(count for shard, (_, count) in latest.items() if shard not in finished)
                bar.n = base + images
                bar.refresh()
            if failed and fail_fast:
                break
        if failed:
            spec, error = failed[0]
            others = f" ({len(failed) - 1} other shard(s) failed too)" if len(failed) > 1 else ""
            raise BuildError(
                f"shard {spec.index} (images {spec.start}..{spec.stop - 1}) failed after {retries + 1} attempts: "
                f"{type(error).__name__}: {error}{others}; rerun with resume to redo only the missing shards"
            ) from error
    except BaseException:
        for future in pending:
            future.cancel()
        raise
