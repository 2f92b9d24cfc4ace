"""``bzna build``: a ``.bzna`` dataset from an ImageFolder tree or a list file, encoded by worker processes.

The pieces a distributed build reuses: :func:`list_sources` (the ordered sources and class
names), :func:`encode_source` (one image to an :class:`~bzna_boxes.writer.InnerSample`),
:func:`check_outputs` (no output is an input), :func:`side_files` (the files beside the
output, replaced together with it), and :func:`build_sources` (a build of a given list, e.g.
one shard).

Sources (see ``docs/building.md``):

* an **ImageFolder** tree: one subfolder per class; the classes are the subfolder names in
  sorted order and a sample's target is its class's index; images are found recursively in
  each class folder, sorted by path (as ``torchvision.datasets.ImageFolder`` orders them),
  keeping the files whose extension Pillow can open; names starting with ``.`` are skipped.
  The stored filename is the path relative to the tree's root, with ``/`` separators.
* a **list file** of ``path,target`` lines (UTF-8; the last comma separates the target; blank
  lines and lines starting with ``#`` are skipped; relative paths are relative to the list
  file's folder; a line is at most :data:`MAX_LINE` bytes; a target is an int64, ``-1`` for
  none or from 0 up). The stored filename is the path as written in the list.

Every target is checked before anything is encoded, and a source without any image, or an
ImageFolder class folder without any image, is refused (as ``torchvision.datasets.ImageFolder``
refuses them) rather than built empty.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .atomic import check_not_an_input
from .remote import is_url
from .errors import BuildError

__all__ = [
    "Source",
    "SourceList",
    "BuildResult",
    "BuildError",
    "list_sources",
    "image_extensions",
    "encode_source",
    "EncodeFunction",
    "build",
    "build_sources",
    "available_cores",
    "check_encode_options",
    "sidecar_paths",
    "uploaded_result",
    "side_files",
    "check_outputs",
]

_R = TypeVar("_R")

MAX_LINE = 64 << 10
"""The longest line (in bytes) a list file may have: a longer one is an error, never read whole."""

_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class Source:
    """One image to store: where to read it, its target, and the filename the dataset keeps."""

    path: str
    target: int
    filename: str


@dataclass(frozen=True)
class SourceList:
    """The images of a build in dataset order, and the class names of an ImageFolder (else None)."""

    sources: list[Source]
    classes: list[str] | None = None


@dataclass
class BuildResult:
    """What a build wrote: sample count, the failed images (index, filename, reason), sizes and time."""

    path: str
    count: int
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    classes_path: str | None = None
    report_path: str | None = None


# --- sources ----------------------------------------------------------------------------------


def image_extensions() -> frozenset[str]:
    """The file extensions (lowercase, with the dot) of the formats Pillow can open (HEIC with pillow-heif)."""
    from PIL import Image

    from .encode import register_image_plugins

    register_image_plugins()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def list_sources(src: str | os.PathLike) -> SourceList:
    """The sources of ``src``: an ImageFolder tree (a folder) or a list file."""
    src = os.fspath(src)
    if os.path.isdir(src):
        return _image_folder(src)
    if not os.path.exists(src):
        raise FileNotFoundError(f"no such folder or list file: {src}")
    return _list_file(src)


def _image_folder(root: str) -> SourceList:
    extensions = image_extensions()
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise BuildError(f"{root}: no class subfolders (an ImageFolder tree has one folder per class)")
    for name in classes:
        if "\n" in name or "\r" in name:
            raise BuildError(f"{root}: class folder name {name!r} has a line break")
    sources, empty = [], []
    for target, name in enumerate(classes):
        folder = os.path.join(root, name)
        walked = []
        above = {folder: {_folder_id(root)}}
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            here = above.pop(dirpath) | {_folder_id(dirpath)}
            # not descended into: hidden folders, and links back to a folder above (a cycle)
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and _folder_id(os.path.join(dirpath, d)) not in here]
            above.update((os.path.join(dirpath, d), here) for d in dirnames)
            walked.append((dirpath, filenames))
        found = len(sources)
        for dirpath, filenames in sorted(walked):
            for filename in sorted(filenames):
                if filename.startswith(".") or os.path.splitext(filename)[1].lower() not in extensions:
                    continue
                path = os.path.join(dirpath, filename)
                sources.append(Source(path, target, os.path.relpath(path, root).replace(os.sep, "/")))
        if len(sources) == found:
            empty.append(folder)
    if empty:  # as ImageFolder, which refuses a class without images
        more = f" (and {len(empty) - 1} other class folders)" if len(empty) > 1 else ""
        raise BuildError(f"{empty[0]}{more}: a class folder without images ({_IMAGE_FILES}): add images or remove the folder")
    return SourceList(sources, classes)


_IMAGE_FILES = "files with an extension Pillow opens, such as .jpg or .png"


def _folder_id(path: str) -> tuple[int, int] | None:
    """The (device, inode) of a folder, following links; None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _list_file(path: str) -> SourceList:
    base = os.path.dirname(os.path.abspath(path))
    sources = []
    with open(path, "rb") as f:
        for number, line in enumerate(_lines(f, path), 1):
            try:
                line = line.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise BuildError(f"{path} line {number}: a list file must be UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if not line or line.startswith("#"):
                continue
            name, comma, target = line.rpartition(",")
            try:
                if not comma or not name.strip():
                    raise ValueError
                value = int(target)
            except ValueError:
                raise BuildError(f"{path} line {number}: expected 'path,target' (an integer target), got {line[:200]!r}") from None
            if not -1 <= value <= _INT64_MAX:
                raise BuildError(f"{path} line {number}: target {target.strip()} is not -1 (no target) or an int64 from 0 to {_INT64_MAX}")
            name = name.strip()
            sources.append(Source(os.path.join(base, name), value, name))
    if not sources:
        raise BuildError(f"{path}: the list file names no image (expected 'path,target' lines)")
    return SourceList(sources, None)


def _lines(f, path: str) -> Iterator[bytes]:
    """The lines of a binary file, none read past :data:`MAX_LINE` bytes (a file of NUL bytes is not read whole)."""
    number = 0
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE and not (len(line) == MAX_LINE + 1 and line.endswith(b"\n")):
            raise BuildError(f"{path} line {number}: longer than {MAX_LINE} bytes (is it a list file?)")
        yield line


# --- encoding (runs in the worker processes) --------------------------------------------------


def encode_source(source: Source, encode_options: dict[str, Any]) -> "InnerSample":  # noqa: F821
    """Read, convert to 8-bit RGB, encode and lay out one image as an inner sample.

    The process keeps freed memory for the next image's encoder (:func:`~bzna_boxes.encode.keep_freed_memory`).
    """
    from .encode import encode_image, keep_freed_memory, load_rgb
    from .writer import InnerSample

    keep_freed_memory()
    encoded = encode_image(load_rgb(source.path), **encode_options)
    return InnerSample.from_encoded(encoded, source.target, source.filename)


EncodeFunction = Callable[[Source, dict[str, Any]], "InnerSample"]  # noqa: F821
"""The per-image work of a build: :func:`encode_source`, or a function with its signature.

It runs in the worker processes, so it must pickle by reference: a function defined at the top
level of a module those processes can import.
"""

_CHUNKS_PER_WORKER = 2  # chunks sent ahead to each worker: the window of submitted work
_STOP_SECONDS = 5.0  # how long a worker may take to exit once stopped, before it is killed
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _encode_job(encode: EncodeFunction, source: Source, encode_options: dict[str, Any]) -> tuple:
    """``(InnerSample, None)``, or ``(None, reason)`` when the image cannot be read or encoded."""
    try:
        return encode(source, encode_options), None
    except Exception as exc:  # noqa: BLE001  (any failure of one image is reported, not fatal)
        reason = str(exc) or type(exc).__name__
        return None, " ".join(reason.split())


def _init_worker(parent_pid: int) -> None:
    """Leave Ctrl-C to the parent, and make this process exit when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started this process
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        import ctypes

        # The kernel kills this process when the thread that started it ends (the build runs
        # on that thread from the first worker's start to the last one's end).
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before the request took effect
                os._exit(1)
            return
    # Elsewhere only the thread that reads the parent's pipe ends this process when the pipe
    # closes (:func:`_receive_jobs`), once the parent is gone.


def _serve(tasks, results, encode: EncodeFunction, encode_options: dict[str, Any], parent_pid: int) -> None:
    """A worker process: encode each ``(number, sources)`` chunk from ``tasks``, send
    ``(number, results)`` back, until ``None``.

    A thread moves the chunks from the pipe to a queue as they come, so that the parent never
    waits to send one while this process waits to send its results.
    """
    import queue
    import threading

    _init_worker(parent_pid)
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_receive_jobs, args=(tasks, jobs), name="bzna-jobs", daemon=True).start()
    while (job := jobs.get()) is not None:
        number, chunk = job
        try:
            results.send((number, [_encode_job(encode, source, encode_options) for source in chunk]))
        except OSError:  # the parent is gone
            return


def _receive_jobs(tasks, jobs) -> None:
    """Put each chunk from the parent's pipe on ``jobs`` until ``None``; exit the process if the pipe closes first."""
    while True:
        try:
            job = tasks.recv()
        except (EOFError, OSError):  # the parent died (it says None to stop)
            os._exit(1)
        jobs.put(job)
        if job is None:
            return


@dataclass
class _Worker:
    """A worker process, the ends of its pipes that the build holds, and the chunks it has in hand."""

    process: Any
    tasks: Any
    results: Any
    pending: list[int] = field(default_factory=list)

    def died(self) -> BuildError:
        """The error that stops the build when this worker has exited without being told to."""
        self.process.join(_STOP_SECONDS)  # its sentinel or pipe may close a moment before it is reaped
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return BuildError(f"an encoding process died (killed, or out of memory?): process {self.process.pid} {how}")


def _start_workers(count: int, encode: EncodeFunction, encode_options: dict[str, Any], pool: list[_Worker]) -> None:
    """Start ``count`` spawned worker processes, adding each to ``pool`` (which the caller cleans up)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    # Ctrl-C stays blocked while a worker starts, so that the worker starts with it blocked too:
    # a Ctrl-C from the terminal reaches every process, and a worker leaves it to the parent.
    blocking = hasattr(signal, "pthread_sigmask")
    if blocking:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for number in range(count):
            tasks, to_worker = context.Pipe(duplex=False)
            from_worker, results = context.Pipe(duplex=False)
            process = context.Process(
                target=_serve,
                args=(tasks, results, encode, encode_options, os.getpid()),
                name=f"bzna-encode-{number}",
                daemon=True,
            )
            pool.append(_Worker(process, to_worker, from_worker))
            try:
                process.start()
            except OSError as exc:  # it died before it read what it runs
                raise BuildError(f"an encoding process died as it started (killed, or out of memory?): {exc}") from None
            finally:
                tasks.close()  # the worker's ends: its copies are its own
                results.close()
    finally:
        if blocking:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_workers(pool: list[_Worker], graceful: bool) -> None:
    """End every worker: told to stop (``graceful``) or terminated; killed if it is still there
    after a timeout, and joined. Never waits without a bound."""
    started = [w for w in pool if w.process.pid is not None]
    for worker in started:
        if graceful:
            try:
                worker.tasks.send(None)
            except OSError:
                pass
        elif worker.process.exitcode is None:
            worker.process.terminate()
    deadline = time.monotonic() + _STOP_SECONDS
    for worker in started:
        worker.process.join(max(0.0, deadline - time.monotonic()))
    for worker in started:
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join(_STOP_SECONDS)
    for worker in pool:
        worker.tasks.close()
        worker.results.close()
        if worker.process.exitcode is not None or worker.process.pid is None:
            worker.process.close()


def _pool_results(sources: Sequence[Source], workers: int, encode: EncodeFunction, encode_options: dict[str, Any]) -> Iterator[tuple]:
    """Encode results in source order from ``workers`` processes owned by this generator.

    Chunks of sources go to the worker with the fewest in hand, at most
    ``_CHUNKS_PER_WORKER * workers`` chunks ahead of the one being consumed. A worker that
    dies (killed, out of memory) is seen through its process sentinel: every worker is then
    terminated and the build fails with a :class:`BuildError`; an error, Ctrl-C or the
    consumer stopping also ends every worker.
    """
    from multiprocessing.connection import wait

    size = max(1, min(8, len(sources) // (8 * workers)))
    chunks = [sources[i : i + size] for i in range(0, len(sources), size)]
    window = _CHUNKS_PER_WORKER * workers
    pool: list[_Worker] = []
    done: dict[int, list[tuple]] = {}
    sent = 0
    finished = False
    try:
        _start_workers(min(workers, len(chunks)), encode, encode_options, pool)
        for number in range(len(chunks)):
            while sent < len(chunks) and sent - number < window:
                worker = min(pool, key=lambda w: len(w.pending))
                try:
                    worker.tasks.send((sent, chunks[sent]))
                except OSError:
                    raise worker.died() from None
                worker.pending.append(sent)
                sent += 1
            while number not in done:
                by_pipe = {w.results: w for w in pool if w.pending}
                by_sentinel = {w.process.sentinel: w for w in pool}
                ready = wait([*by_pipe, *by_sentinel])
                for ready_one in ready:
                    worker = by_pipe.get(ready_one)
                    if worker is None:  # a sentinel: workers only exit when told to
                        raise by_sentinel[ready_one].died()
                    try:
                        chunk_number, chunk_results = worker.results.recv()
                    except (EOFError, OSError):
                        raise worker.died() from None
                    worker.pending.remove(chunk_number)
                    done[chunk_number] = chunk_results
            yield from done.pop(number)
        finished = True
    finally:
        _stop_workers(pool, graceful=finished)


def _results(sources: Sequence[Source], workers: int, encode_options: dict[str, Any], encode: EncodeFunction) -> Iterator[tuple]:
    """Encode results in source order: in this process for one worker, else from worker processes.

    Each worker is one core: x265 runs one thread in each (the bytes are the same).
    """
    from .encode import one_thread_each

    encode_options = one_thread_each(encode_options)
    if workers <= 1:
        for source in sources:
            yield _encode_job(encode, source, encode_options)
        return
    yield from _pool_results(sources, workers, encode, encode_options)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def check_encode_options(encode_options: dict[str, Any]) -> None:
    """Encode a tiny picture with ``encode_options``: a bad preset or CRF fails here, not once per image."""
    import numpy as np

    from .encode import X265_PRESETS, encode_image

    preset = encode_options.get("preset")
    if preset is not None and preset not in X265_PRESETS:
        raise BuildError(f"--preset {preset!r} is not an x265 preset; choose one of: {', '.join(X265_PRESETS)}")
    crf = encode_options.get("crf")
    if crf is not None and not 0 <= crf <= 51:
        raise BuildError(f"--crf {crf:g} is outside x265's range 0 to 51")
    try:
        encode_image(np.zeros((16, 16, 3), np.uint8), **encode_options)
    except Exception as exc:  # noqa: BLE001  (PyAV raises its own error types)
        raise BuildError(f"the encoder options {encode_options} do not work: {' '.join(str(exc).split())}") from exc


# --- building ---------------------------------------------------------------------------------


def uploaded_result(result: _R, url: str) -> _R:
    """``result`` of a build written in a staging folder, its paths renamed to where it was uploaded (``url`` and beside it)."""
    classes_path, report_path = sidecar_paths(url)
    result.path = url
    result.classes_path = result.classes_path and classes_path
    result.report_path = result.report_path and report_path
    return result


def sidecar_paths(out: str | os.PathLike) -> tuple[str, str]:
    """The class list and report paths beside ``out``: ``NAME.classes.txt``, ``NAME.report.tsv``."""
    out = os.fspath(out)
    base = out[: -len(".bzna")] if out.endswith(".bzna") else out
    return base + ".classes.txt", base + ".report.tsv"


def side_files(out: str | os.PathLike, classes: Sequence[str] | None, failures: Iterable[tuple[int, str, str]]) -> dict[str, str | None]:
    """The files beside ``out`` and their text, for :meth:`~bzna_boxes.writer.DatasetWriter.close`.

    The class list (``NAME.classes.txt``, UTF-8, one class name per line: line ``k`` (from 0)
    is target ``k``), or None (remove an older one) when there are no classes; the report of
    images not stored (``NAME.report.tsv``: tab-separated ``index``, ``filename``, ``reason``,
    with a header).
    """
    classes_path, report_path = sidecar_paths(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel-tab", lineterminator="\n")
    writer.writerow(("index", "filename", "reason"))
    writer.writerows(failures)
    return {
        classes_path: None if classes is None else "".join(f"{name}\n" for name in classes),
        report_path: buffer.getvalue(),
    }


def check_outputs(src: str | os.PathLike, out: str | os.PathLike, sources: Sequence[Source]) -> None:
    """Refuse (``ValueError``) an output, or a file beside it, that is ``src`` or one of its images."""
    src = os.fspath(src)
    folder = os.path.isdir(src)
    for path in (os.fspath(out), *sidecar_paths(out)):
        check_not_an_input(path, () if folder else (src,), folders=(src,) if folder else (), listed=(s.path for s in sources))


def build_sources(
    sources: Sequence[Source],
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    fail_fast: bool = False,
    progress: bool | None = None,
    fsync: bool = True,
    on_image: Callable[[int], None] | None = None,
    encode: EncodeFunction = encode_source,
    with_side_files: bool = False,
    classes: Sequence[str] | None = None,
    **encode_options: Any,
) -> BuildResult:
    """Write ``sources``, in order, to the dataset ``out``; an image that fails becomes a missing sample.

    ``on_image(1)`` is called after each image is written (e.g. to report progress elsewhere).
    ``encode(source, encode_options)`` makes each sample (see :data:`EncodeFunction`); an
    exception it raises makes that image a missing sample. ``classes`` (name k for target k) are
    stored in the dataset (``moov/udta/bzcl``). ``with_side_files``: the class list (``classes``)
    and the report are also written beside ``out`` (:func:`side_files`), replaced together with it.
    """
    from tqdm import tqdm

    from .writer import DatasetWriter

    out = os.fspath(out)
    if is_url(out):  # built in a local staging folder, then uploaded whole (with its side files)
        from .remote import write_then_upload

        arguments = dict(workers=workers, fail_fast=fail_fast, progress=progress, fsync=fsync, on_image=on_image, encode=encode, with_side_files=with_side_files, classes=classes)
        result = write_then_upload(out, lambda local: build_sources(sources, local, **arguments, **encode_options))
        return uploaded_result(result, out)
    workers = workers or available_cores()
    check_encode_options(encode_options)
    if progress is None:
        progress = sys.stderr.isatty()
    result = BuildResult(out, len(sources))
    start = time.perf_counter()
    results = _results(sources, min(workers, max(1, len(sources))), encode_options, encode)
    with closing(results), DatasetWriter(out, fsync=fsync, classes=classes) as writer, tqdm(
        total=len(sources), unit="img", disable=not progress, dynamic_ncols=True, smoothing=0.05
    ) as bar:
        for index, (sample, reason) in enumerate(results):
            source = sources[index]
            if sample is None:
                if fail_fast:
                    raise BuildError(f"image {index} ({source.filename}): {reason}")
                writer.add_missing(source.target, source.filename)
                result.failures.append((index, source.filename, reason))
            else:
                writer.add_sample(sample)
            bar.update()
            if on_image is not None:
                on_image(1)
        if with_side_files:
            writer.close(side_files(out, classes, result.failures))
            result.classes_path, result.report_path = sidecar_paths(out)
            if classes is None:
                result.classes_path = None
    result.seconds = time.perf_counter() - start
    result.bytes = writer.file_size
    return result


def build(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    fail_fast: bool = False,
    progress: bool | None = None,
    fsync: bool = True,
    encode: EncodeFunction = encode_source,
    **encode_options: Any,
) -> BuildResult:
    """Build ``out`` from ``src`` (ImageFolder tree or list file), with the class list and report beside it.

    ``encode_options`` go to :func:`bzna_boxes.encode.encode_image` (``max_short_side``,
    ``crf``, ``preset``, ``x265_params``); ``encode`` is the per-image work, as in
    :func:`build_sources`.
    """
    listing = list_sources(src)
    check_outputs(src, out, listing.sources)
    return build_sources(
        listing.sources,
        out,
        workers=workers,
        fail_fast=fail_fast,
        progress=progress,
        fsync=fsync,
        encode=encode,
        with_side_files=True,
        classes=listing.classes,
        **encode_options,
    )
