"""Files in object stores and on web servers: :class:`RemoteStorage`, over fsspec.

:func:`open_storage` turns what a user gives (a local path, ``file://``, or any fsspec URL:
``s3://``, ``gs://``, ``az://``, ``https://``, ``memory://``) into a
:class:`~bzna_boxes.storage.Storage`. A local file gets a
:class:`~bzna_boxes.storage.LocalStorage` and this module imports nothing else: fsspec (and
s3fs, gcsfs...) is imported only when a URL is opened.

A :class:`RemoteStorage` reads byte ranges, each one request:

- while the file is indexed, small reads (box headers) fetch a block of :data:`BLOCK` bytes, so
  the headers that follow come from it; a larger read starting inside a block fetches only the
  rest; afterwards every read fetches exactly its range, except that what indexing read (the
  ``moov``, the box headers) is served from there without a request (by ``view`` and
  ``read_many`` alike);
- ``read_many`` merges neighbouring spans (gaps up to ``max_gap`` bytes) into one request and
  runs up to ``max_in_flight`` requests at once;
- a request failing with a transient error (a 5xx or 429 answer, a timeout, a reset connection)
  is retried with exponential backoff; when the attempts are spent, :class:`RemoteReadError`
  names the URL and the byte range. Fewer bytes than asked for is an error too: a sample is
  never returned from a short or mixed answer.

The index cache: what a file's indexing read (its box headers and its ``moov``) is kept in a
local folder, keyed by the URL, the size and the ETag (or modification time) the server gives,
so that opening the same unchanged file again makes one request (the HEAD that gives size and
ETag) and a changed file is read again. The folder is ``$BZNA_CACHE_DIR``, else
``$XDG_CACHE_HOME/bzna_boxes/index`` (``~/.cache/bzna_boxes/index``); ``index_cache=False`` or
``BZNA_INDEX_CACHE=0`` turns it off.

Writing: :func:`write_then_upload` has a dataset written to a URL, so that the object appears
whole or not at all. On S3 (s3fs) the dataset is streamed as a multipart upload
(:class:`MultipartUpload`): parts leave while the build runs, the first part (whose header is
written last) is held in memory until the end, and the object appears when the upload
completes; a failure aborts it. Elsewhere the dataset is written in a local staging folder and
uploaded at the end.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import queue
import struct
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

from .errors import BoxError
from .storage import LocalStorage, Span, Storage, check_span

__all__ = ["RemoteStorage", "RemoteReadError", "open_storage", "is_url", "index_cache_dir", "without_payloads", "write_then_upload", "staged_name", "MultipartUpload", "streamed_upload"]

BLOCK = 16 << 10
"""Bytes fetched for a small read (a box header): the headers that follow it come along."""
SMALL = 4 << 10
"""Reads up to this size fetch a whole :data:`BLOCK`."""
MAX_GAP = 64 << 10
"""``read_many`` merges two spans into one request when at most this many bytes lie between them."""
MAX_REQUEST = 16 << 20
"""``read_many`` stops merging into a request once it holds this many bytes."""
MAX_IN_FLIGHT = 32
"""Requests ``read_many`` runs at once."""
ATTEMPTS = 5
"""Tries of one request before :class:`RemoteReadError` (1 + 4 retries)."""
BACKOFF = 0.1
"""Seconds before the first retry; doubled for each next one (up to :data:`MAX_BACKOFF`)."""
MAX_BACKOFF = 5.0
_KEPT_BLOCKS = 64
"""Blocks of small reads kept once a file is indexed (while indexing: all of them)."""
_CACHE_MAGIC = b"bzna-index-cache 1\n"
PART_SIZE = 8 << 20
"""Bytes of each part of a streamed upload (the first one included); S3 wants at least 5 MiB
for every part but the last, and at most 10,000 parts: past 1,000 parts, each next thousand
is twice as large."""
QUEUED_PARTS = 2
"""Parts of a streamed upload waiting for the uploading thread: the writer waits beyond that."""


class RemoteReadError(OSError):
    """Bytes of a remote file could not be had: the URL, the byte range and the last error."""


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a local path."""
    text = os.fspath(location)
    if not isinstance(text, str):
        return False
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def open_storage(location: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, *, index_cache: bool | str | os.PathLike | None = None) -> Storage:
    """The storage of a local path, a ``file://`` URL (both: a :class:`LocalStorage`) or any
    other fsspec URL (a :class:`RemoteStorage`, with ``storage_options`` given to fsspec)."""
    text = os.fspath(location)
    if not is_url(text):
        return LocalStorage(text)
    if text.startswith("file://") and not storage_options:
        return LocalStorage(text[len("file://") :])
    return RemoteStorage(text, storage_options, index_cache=index_cache)


def without_payloads(storage: Storage, boxes: Sequence[tuple[str, int, int, int]]) -> memoryview:
    """The file as one buffer of its full size holding every top-level box (``(type, offset,
    size, header)``) but the ``mdat`` payloads, which are left as zeros: what the box engine
    parses to show a remote file's boxes without fetching its samples. The zeros are pages of
    an anonymous map that are never touched (the engine does not read ``mdat`` payloads)."""
    import mmap

    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    if hasattr(mmap, "MAP_ANONYMOUS"):
        flags |= getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux: no swap reserved for the zeros
    image = mmap.mmap(-1, storage.size, flags=flags) if flags else mmap.mmap(-1, storage.size)
    wanted = [(offset, header if fourcc == "mdat" else size) for fourcc, offset, size, header in boxes]
    for (offset, _), data in zip(wanted, storage.read_many(wanted)):
        image[offset : offset + len(data)] = data
    return memoryview(image)


_T = TypeVar("_T")


def staged_name(local: str, beside: str) -> str:
    """Where, beside the staged file ``local``, the file that ``beside`` names (a URL or a path) is staged."""
    return os.path.join(os.path.dirname(local), beside.rstrip("/").rsplit("/", 1)[-1])


def write_then_upload(url: str, write: Callable[[str], _T], storage_options: Mapping[str, Any] | None = None) -> _T:
    """``write(local)`` a dataset (with :class:`~bzna_boxes.writer.DatasetWriter`) named ``local``
    in a new staging folder, and have it and the side files it leaves beside it (the class list,
    the report) at ``url``, the dataset last.

    On S3 the dataset is not written locally: the writer of ``local`` streams it to ``url`` as a
    :class:`MultipartUpload` (:func:`streamed_upload`), completed once the side files are
    uploaded. Elsewhere ``local`` is written and then uploaded (one request for small files, else
    a multipart upload whose object appears only when it completes). Either way the object at
    ``url`` is whole or absent, as a rename makes a local file: a failed ``write`` leaves no
    object (its multipart upload aborted), a failed upload removes the side files it uploaded.
    The staging folder (in ``$BZNA_STAGING_DIR``, else the system's temporary folder) is removed
    in every case.
    """
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise ImportError(f"{url}: writing to a URL needs fsspec (pip install 'bzna_boxes[remote]')") from None

    fs, path = url_to_fs(url, **dict(storage_options or {}))
    name = url.rsplit("/", 1)[-1]
    if not name or "/" not in path.rstrip("/"):  # a folder, or a bucket (container) alone
        raise ValueError(f"{url}: the output URL names no file")
    folder = tempfile.mkdtemp(prefix=".bzna-upload-", dir=os.environ.get("BZNA_STAGING_DIR") or None)
    local = os.path.join(folder, name)
    upload = MultipartUpload(fs, path, url) if hasattr(fs, "call_s3") else None
    if upload is not None:
        _streams[os.path.abspath(local)] = upload
    try:
        result = write(local)
        parent = path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""
        beside = sorted(f for f in os.listdir(folder) if f != name and not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))
        uploaded: list[str] = []
        try:
            for other in beside:
                target = f"{parent}/{other}" if parent else other
                fs.put_file(os.path.join(folder, other), target)
                uploaded.append(target)
            if upload is None:
                fs.put_file(local, path)
            else:
                upload.complete()
        except BaseException:
            for target in uploaded:
                try:
                    fs.rm_file(target)
                except Exception:  # noqa: BLE001  (best effort: the main error is the one to report)
                    pass
            raise
        return result
    finally:
        if upload is not None:
            _streams.pop(os.path.abspath(local), None)
            upload.abort()  # nothing once completed
        shutil.rmtree(folder, ignore_errors=True)


_streams: dict[str, "MultipartUpload"] = {}
"""The uploads that :func:`write_then_upload` has running, by the absolute staging path they stand for."""


def streamed_upload(local: str | os.PathLike) -> "MultipartUpload | None":
    """The upload a writer of ``local`` writes to instead of the file, when :func:`write_then_upload` streams it."""
    return _streams.get(os.path.abspath(os.fspath(local)))


class MultipartUpload:
    """A write-only file streamed to an S3 object by a multipart upload; the object appears at
    :meth:`complete`, and :meth:`abort` (or a failure) leaves neither object nor parts.

    Bytes are written in order (``write``), except that bytes inside the first part may be
    written again (``seek`` back, then ``write``): the first part is held in memory until
    :meth:`close`, the next ones are uploaded by a thread as they fill (at most
    :data:`QUEUED_PARTS` wait; the writer waits beyond that), so memory stays at a few parts and
    nothing is written to disk. A file no larger than one part is one PUT at :meth:`complete`.
    S3 takes parts in any order and wants all but the last to be at least 5 MiB.
    """

    def __init__(self, fs: Any, path: str, url: str | None = None, *, part_size: int | None = None, attempts: int = ATTEMPTS, backoff: float = BACKOFF):
        part_size = PART_SIZE if part_size is None else part_size
        if part_size < 5 << 20:
            raise ValueError(f"a part of a multipart upload holds at least 5 MiB, not {part_size:,} bytes")
        self._fs = fs
        self.path = path
        self.url = url or path
        self.bucket, self.key, _ = fs.split_path(path)
        self.part_size = part_size
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._head = bytearray()  # part 1
        self._part = bytearray()  # the part filling now
        self._number = 1  # of the part filling now
        self._at = 0  # where the next write goes
        self._size = 0
        self.upload_id: str | None = None
        self._etags: dict[int, str] = {}
        self._queue: queue.Queue = queue.Queue(QUEUED_PARTS)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._done = False

    # --- the file the writer sees

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self._closed:
            raise ValueError(f"{self.url}: the upload is closed")
        if self._at < self._size:  # a patch inside the held first part
            if self._at + len(view) > len(self._head):
                raise ValueError(f"{self.url}: bytes {self._at}..{self._at + len(view)} are no longer held (only the first {len(self._head):,} are)")
            self._head[self._at : self._at + len(view)] = view
            self._at += len(view)
            return len(view)
        written = len(view)
        room = self.part_size - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        while len(view):
            size = self._part_size(self._number + 1)
            take = min(size - len(self._part), len(view))
            self._part += view[:take]
            view = view[take:]
            if len(self._part) == size:
                self._send(self._number + 1, bytes(self._part))
                self._part = bytearray()
                self._number += 1
        self._size += written
        self._at = self._size
        return written

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or not (0 <= offset <= self._size):
            raise ValueError(f"{self.url}: cannot seek to {offset} (whence {whence})")
        self._at = offset
        return offset

    def tell(self) -> int:
        return self._at

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def flush(self) -> None:
        self._check()

    def close(self) -> None:
        """All bytes are written: the last parts leave (the object appears only at :meth:`complete`)."""
        if self._closed:
            return
        if self._part:  # the last part (which starts the upload when it is the second)
            self._send(self._number + 1, bytes(self._part))
        self._closed = True
        if self.upload_id is not None:
            self._send(1, bytes(self._head))
            self._part = self._head = bytearray()
            self._queue.put(None)
            self._thread.join()
            self._check()

    def complete(self) -> None:
        """Make the object: complete the upload (or PUT a file of one part)."""
        self.close()
        if self._done:
            return
        if self.upload_id is None:
            data, self._head = bytes(self._head), bytearray()
            self._retrying(lambda: self._fs.pipe_file(self.path, data), "the object (PUT)")
        else:
            parts = [{"PartNumber": number, "ETag": etag} for number, etag in sorted(self._etags.items())]
            self._retrying(
                lambda: self._fs.call_s3("complete_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}),
                "the end of the upload",
            )
        self._done = True
        self._fs.invalidate_cache(self.path)

    def abort(self) -> None:
        """Give up: the uploaded parts are dropped and no object appears (nothing once completed)."""
        if self._done:
            return
        self._done = self._closed = True
        self._head = self._part = bytearray()
        if self._thread is not None:
            self._error = self._error or InterruptedError("aborted")
            while self._thread.is_alive():  # let the thread drain the queue and stop
                try:
                    self._queue.put(None, timeout=0.1)
                except queue.Full:
                    pass
                self._thread.join(0.1)
        if self.upload_id is not None:
            try:
                self._retrying(lambda: self._fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id), "the abort of the upload")
            except Exception:  # noqa: BLE001  (best effort: an S3 lifecycle rule removes what is left)
                pass

    # --- the parts

    def _part_size(self, number: int) -> int:
        return self.part_size << max(0, (number - 1) // 1000)

    def _send(self, number: int, data: bytes) -> None:
        """Queue a part for the uploading thread (started, with the upload, by the second part)."""
        self._check()
        if self.upload_id is None:
            answer = self._retrying(lambda: self._fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key), "the start of the upload")
            self.upload_id = answer["UploadId"]
            self._thread = threading.Thread(target=self._upload_parts, name="bzna-upload", daemon=True)
            self._thread.start()
        while True:  # wait for room, but not for a thread that has failed
            try:
                self._queue.put((number, data), timeout=0.5)
                return
            except queue.Full:
                self._check()

    def _upload_parts(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._error is not None:
                if item is None:
                    return
                continue
            number, data = item
            try:
                answer = self._retrying(
                    lambda: self._fs.call_s3("upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data),
                    f"part {number}",
                )
                self._etags[number] = answer["ETag"]
            except BaseException as exc:  # noqa: BLE001  (reported to the writer)
                self._error = exc

    def _check(self) -> None:
        if self._error is not None and not isinstance(self._error, InterruptedError):
            error = self._error
            raise OSError(f"{self.url}: the upload failed: {_describe(error)}") from error

    def _retrying(self, call, what: str):
        for attempt in range(self.attempts):
            try:
                return call()
            except Exception as exc:  # noqa: BLE001  (client libraries raise their own types)
                if not _transient(exc) or attempt + 1 == self.attempts:
                    raise OSError(f"{self.url}: {what} could not be written after {attempt + 1} attempts: {_describe(exc)}") from exc
                time.sleep(min(self.backoff * (2**attempt), MAX_BACKOFF))
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"<MultipartUpload {self.url!r} {self._size:,} bytes written>"


def index_cache_dir(index_cache: bool | str | os.PathLike | None = None) -> str | None:
    """The index cache folder that ``index_cache`` asks for (see the module), or None: off."""
    if index_cache is False:
        return None
    if index_cache is not None and index_cache is not True:
        return os.fspath(index_cache)
    if os.environ.get("BZNA_INDEX_CACHE", "1").strip().lower() in ("0", "off", "no", "false"):
        return None
    folder = os.environ.get("BZNA_CACHE_DIR")
    if folder:
        return folder
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bzna_boxes", "index")


def _identity(info: Mapping[str, Any]) -> str | None:
    """What tells one version of an object from the next: its ETag, else its modification time."""
    for key in ("ETag", "etag", "md5Hash", "generation", "LastModified", "last_modified", "Last-Modified", "mtime", "updated", "created"):
        value = info.get(key)
        if value is not None and value != "":
            return f"{key}={value}"
    return None


def _status(exc: BaseException | None) -> int | None:
    """The HTTP status of a client library's error, when it carries one."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _unmasked(exc: BaseException) -> BaseException:
    """fsspec's HTTP file system reports any failed HEAD as ``FileNotFoundError(url)`` from the
    answer's error: that error, when its status is not 404 or 410 (a refusal, a server error)."""
    status = _status(exc.__cause__) if isinstance(exc, FileNotFoundError) else None
    return exc.__cause__ if status is not None and status not in (404, 410) else exc  # type: ignore[return-value]


def _transient(exc: BaseException) -> bool:
    """Whether a request that raised ``exc`` may succeed when tried again."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError, RemoteReadError)):
        return False
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(status, int):
        return status >= 500 or status in (408, 429)
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, EOFError)):
        return True
    return type(exc).__module__.split(".")[0] in ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "google", "azure")


class RemoteStorage:
    """A file of an fsspec file system read by ranged requests (see the module).

    ``requests`` and ``bytes_read`` count what it fetched (the HEAD included).
    """

    buffer = None
    """A remote file is never mapped: readers go through ``read``, ``view`` and ``read_many``."""

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        index_cache: bool | str | os.PathLike | None = None,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        max_gap: int = MAX_GAP,
        max_in_flight: int = MAX_IN_FLIGHT,
    ):
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise ImportError(f"{url}: reading a URL needs fsspec (pip install 'bzna_boxes[remote]')") from None
        self.name = url
        self.storage_options = dict(storage_options or {})
        self.index_cache = index_cache
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_gap = max_gap
        self.max_in_flight = max(1, max_in_flight)
        self.requests = 0
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._fs, self._path = url_to_fs(url, **self.storage_options)
            self._pid = os.getpid()
        except ImportError as exc:
            raise ImportError(f"{url}: {exc}") from None
        info = self._info()
        self.size = int(info["size"])
        self.identity = _identity(info)
        if self.size == 0:
            raise BoxError(f"{url}: the file is empty", offset=0)
        self._blocks: list[tuple[int, bytes | memoryview]] = []  # (offset, bytes) of small reads, newest last
        self._index_ranges: list[tuple[int, memoryview]] = []  # what indexing read, mapped from a file, once indexed
        self._index_starts: list[int] = []
        self._recorded: list[tuple[int, bytes]] | None = []  # every fetch until indexed()
        self._cache_file = self._cache_path()
        self.cached = False
        """Whether the index came from the index cache (no byte of the file fetched to open it)."""
        if self._cache_file is not None:
            blocks = _load_cache(self._cache_file, url, self.size, self.identity)
            if blocks is not None:
                self._blocks = blocks
                self._recorded = None
                self.cached = True

    # --- requests ---------------------------------------------------------------------------

    def _info(self) -> Mapping[str, Any]:
        def head():
            fs = self._client()
            fs.invalidate_cache(self._path)
            return fs.info(self._path)

        info = self._retrying(head, "its size (HEAD)")
        if info.get("type", "file") not in ("file", None) or info.get("size") is None:
            raise IsADirectoryError(f"{self.name}: not a file")
        return info

    def _client(self):
        """The fsspec file system, made anew (with a new lock) in a process forked after this
        one was made (a DataLoader worker): the parent's client and its event loop do not work
        across a fork, and its lock may have been held by a thread the child lacks."""
        if self._pid != os.getpid():
            from fsspec.core import url_to_fs

            self._lock = threading.Lock()
            self._fs = url_to_fs(self.name, **self.storage_options)[0]
            self._pid = os.getpid()
        return self._fs

    def _retrying(self, call, what: str):
        """``call()`` tried up to ``attempts`` times, with backoff, while it fails transiently."""
        self._client()  # after a fork: before the lock is taken
        for attempt in range(self.attempts):
            with self._lock:
                self.requests += 1
            try:
                return call()
            except Exception as caught:  # noqa: BLE001  (client libraries raise their own types)
                exc = _unmasked(caught)
                if isinstance(exc, FileNotFoundError):
                    raise FileNotFoundError(f"{self.name}: no such file") from None
                if isinstance(exc, PermissionError) or _status(exc) in (401, 403):
                    raise PermissionError(f"{self.name}: access denied ({what}): {_describe(exc)}") from exc
                if not _transient(exc):
                    raise
                if attempt + 1 == self.attempts:
                    raise RemoteReadError(f"{self.name}: {what} could not be read after {self.attempts} attempts: {_describe(exc)}") from exc
                time.sleep(min(self.backoff * (2**attempt), MAX_BACKOFF))
        raise AssertionError("unreachable")

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes ``start .. end`` in one request (retried), checked to be exactly that many."""
        self._require()

        def get():
            data = self._client().cat_file(self._path, start=start, end=end)
            if len(data) > end - start:
                raise self._ignored_range(start, end, len(data))
            if len(data) != end - start:
                raise EOFError(f"the server sent {len(data):,} bytes for a range of {end - start:,}")
            return data

        data = self._retrying(get, f"bytes {start}..{end}")
        with self._lock:
            self.bytes_read += len(data)
        return data

    def _ignored_range(self, start: int, end: int, sent: int) -> RemoteReadError:
        """More bytes than asked for: a server that answers a ranged GET with the whole file
        does so every time (trying again would fetch the file again)."""
        return RemoteReadError(f"{self.name}: bytes {start}..{end}: the server sent {sent:,} bytes for a range of {end - start:,}: it does not honour Range requests")

    def _fetch_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Each ``(start, end)`` fetched, up to ``max_in_flight`` at once, retried one by one."""
        self._require()
        self._client()  # after a fork: before the lock is taken
        if len(ranges) == 1:
            return [self._fetch(*ranges[0])]
        results: list[Any] = [None] * len(ranges)
        pending = list(range(len(ranges)))
        for attempt in range(self.attempts):
            with self._lock:
                self.requests += len(pending)
            try:
                got = self._client().cat_ranges(
                    [self._path] * len(pending),
                    [ranges[i][0] for i in pending],
                    [ranges[i][1] for i in pending],
                    on_error="return",
                    batch_size=self.max_in_flight,
                )
            except Exception as exc:  # noqa: BLE001
                got = [exc] * len(pending)
            failed = []
            for i, data in zip(pending, got):
                start, end = ranges[i]
                if isinstance(data, (bytes, bytearray)) and len(data) > end - start:
                    raise self._ignored_range(start, end, len(data))
                if isinstance(data, (bytes, bytearray)) and len(data) != end - start:
                    data = EOFError(f"the server sent {len(data):,} bytes for a range of {end - start:,}")
                if isinstance(data, BaseException):
                    if isinstance(data, FileNotFoundError):
                        raise FileNotFoundError(f"{self.name}: no such file (bytes {start}..{end})") from data
                    if not _transient(data) or attempt + 1 == self.attempts:
                        raise RemoteReadError(f"{self.name}: bytes {start}..{end} could not be read after {attempt + 1} attempts: {_describe(data)}") from data
                    failed.append(i)
                    continue
                results[i] = bytes(data)
                with self._lock:
                    self.bytes_read += len(data)
            if not failed:
                return results
            pending = failed
            time.sleep(min(self.backoff * (2**attempt), MAX_BACKOFF))
        raise AssertionError("unreachable")

    # --- the Storage protocol ----------------------------------------------------------------

    def _from_index(self, offset: int, size: int) -> tuple[memoryview, int] | None:
        """The bytes at ``offset`` held by what indexing read (a view, and how many of ``size``
        it holds)."""
        ranges = self._index_ranges
        if ranges:  # sorted, apart
            at = bisect.bisect_right(self._index_starts, offset) - 1
            if at >= 0 and offset < ranges[at][0] + len(ranges[at][1]):
                start, data = ranges[at]
                held = min(size, len(data) - (offset - start))
                return data[offset - start : offset - start + held], held
        return None

    def _from_blocks(self, offset: int, size: int) -> tuple[memoryview, int] | None:
        """The bytes at ``offset`` held by what indexing read or by a block (a view, and how many
        of ``size`` it holds)."""
        held = self._from_index(offset, size)
        if held is not None:
            return held
        for start, data in reversed(self._blocks):
            if start <= offset < start + len(data):
                at = offset - start
                held = min(size, len(data) - at)
                return memoryview(data)[at : at + held], held
        return None

    def _keep(self, offset: int, data: bytes, block: bool) -> None:
        if self._recorded is not None:
            self._recorded.append((offset, data))
        if block:
            self._blocks.append((offset, data))
            if self._recorded is None and len(self._blocks) > _KEPT_BLOCKS:
                del self._blocks[0]

    def view(self, offset: int, size: int) -> memoryview:
        check_span(self, offset, size)
        if size == 0:
            return memoryview(b"")
        held = self._from_blocks(offset, size)
        if held is not None and held[1] == size:
            return held[0]
        if held is None and size <= SMALL and self._recorded is not None:  # a header, while indexing
            data = self._fetch(offset, min(offset + BLOCK, self.size))
            self._keep(offset, data, True)
            return memoryview(data)[:size]
        if held is None:
            data = self._fetch(offset, offset + size)
            self._keep(offset, data, False)
            return memoryview(data)
        head, count = held
        rest = self._fetch(offset + count, offset + size)
        self._keep(offset + count, rest, False)
        return memoryview(bytes(head) + rest)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.view(offset, size))

    def read_many(self, spans: Sequence[Span]) -> list[memoryview]:
        """``view`` of every span; neighbouring spans share a request (see the module), and a
        span inside what indexing read (the ``moov``) needs none, as for ``view``."""
        for offset, size in spans:
            check_span(self, offset, size)
        out: list[memoryview] = [memoryview(b"")] * len(spans)
        order = sorted(range(len(spans)), key=lambda i: spans[i][0])
        groups: list[tuple[int, int, list[int]]] = []  # start, end, span indices
        for i in order:
            offset, size = spans[i]
            held = self._from_index(offset, size) if self._index_ranges else None
            if held is not None and held[1] == size:
                out[i] = held[0]
                continue
            if groups:
                start, end, members = groups[-1]
                if offset - end <= self.max_gap and max(end, offset + size) - start <= MAX_REQUEST:
                    groups[-1] = (start, max(end, offset + size), members)
                    members.append(i)
                    continue
            groups.append((offset, offset + size, [i]))
        wanted = [(start, end) for start, end, _ in groups if end > start]
        fetched = iter(self._fetch_many(wanted) if wanted else [])
        for start, end, members in groups:
            data = memoryview(next(fetched)) if end > start else memoryview(b"")
            for i in members:
                offset, size = spans[i]
                out[i] = data[offset - start : offset - start + size]
        return out

    def changed(self) -> str | None:
        """How the object now differs from the one opened (one HEAD), or None."""
        try:
            info = self._info()
        except FileNotFoundError:
            return "it was removed"
        if int(info["size"]) != self.size:
            return f"its size changed from {self.size:,} to {int(info['size']):,} bytes"
        if _identity(info) != self.identity:
            return f"it was replaced ({self.identity} became {_identity(info)})"
        return None

    def indexed(self) -> None:
        """The reads made so far are what indexing the file needs: keep them in the index cache
        (when it is on and the server gives an ETag or a modification time), and keep serving
        reads inside them (the ``moov``: class names, the checksum table) from there, without a
        request. They stay in a mapped file (the cache file, else an unlinked temporary file),
        so they cost page cache that the system can reclaim, not memory beside the tables."""
        recorded, self._recorded = self._recorded, None
        if recorded:
            ranges = _coalesce(recorded)
            saved = self._cache_file is not None and _save_cache(self._cache_file, self.name, self.size, self.identity, ranges)
            held = _load_cache(self._cache_file, self.name, self.size, self.identity) if saved else None
            self._index_ranges = held if held is not None else _mapped_ranges(ranges)
        elif self.cached:
            self._index_ranges = [(offset, memoryview(data)) for offset, data in self._blocks]
        self._index_starts = [offset for offset, _ in self._index_ranges]
        self._blocks = [block for block in self._blocks if len(block[1]) <= BLOCK and not self.cached][-_KEPT_BLOCKS:]

    def close(self) -> None:
        self._closed = True
        self._blocks = []
        self._index_ranges = []
        self._recorded = None

    def _require(self) -> None:
        if self._closed:
            raise ValueError(f"{self.name}: the file is closed")

    def _cache_path(self) -> str | None:
        folder = index_cache_dir(self.index_cache)
        if folder is None or self.identity is None:
            return None
        key = json.dumps([self.name, self.size, self.identity]).encode()
        return os.path.join(folder, hashlib.sha256(key).hexdigest() + ".idx")

    def __reduce__(self):
        return _reopen, (self.name, self.storage_options, self.index_cache, self.attempts, self.backoff, self.max_gap, self.max_in_flight)

    def __repr__(self) -> str:
        return f"<RemoteStorage {self.name!r} size={self.size}>"


def _reopen(url, storage_options, index_cache, attempts, backoff, max_gap, max_in_flight) -> RemoteStorage:
    return RemoteStorage(url, storage_options, index_cache=index_cache, attempts=attempts, backoff=backoff, max_gap=max_gap, max_in_flight=max_in_flight)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


def _coalesce(ranges: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The same bytes as fewer ranges: overlapping and touching ones joined, in file order."""
    out: list[tuple[int, bytearray]] = []
    for offset, data in sorted(ranges, key=lambda r: r[0]):
        if out and offset <= out[-1][0] + len(out[-1][1]):
            start, joined = out[-1]
            joined += data[start + len(joined) - offset :]
        else:
            out.append((offset, bytearray(data)))
    return [(offset, bytes(data)) for offset, data in out]


# --- the index cache file: a header line (JSON) and the recorded ranges --------------------------

_RANGE = struct.Struct("<QQ")


def _save_cache(path: str, url: str, size: int, identity: str | None, blocks: list[tuple[int, bytes]]) -> bool:
    """Write the cache file atomically; a cache that cannot be written is skipped silently (False)."""
    from .atomic import atomic_file

    header = json.dumps({"url": url, "size": size, "identity": identity, "ranges": len(blocks)}).encode() + b"\n"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_file(path) as f:
            f.write(_CACHE_MAGIC + header)
            for offset, data in blocks:
                f.write(_RANGE.pack(offset, len(data)))
                f.write(data)
    except OSError:
        return False
    return True


def _mapped_ranges(blocks: list[tuple[int, bytes]]) -> list[tuple[int, memoryview]]:
    """``blocks`` moved to an unlinked temporary file and mapped from there (kept in memory
    when no temporary file can be written)."""
    import mmap

    try:
        with tempfile.TemporaryFile() as f:
            for _, data in blocks:
                f.write(data)
            f.flush()
            mapped = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except (OSError, ValueError):
        return [(offset, memoryview(data)) for offset, data in blocks]
    out, at = [], 0
    for offset, data in blocks:
        out.append((offset, mapped[at : at + len(data)]))
        at += len(data)
    return out


def _load_cache(path: str, url: str, size: int, identity: str | None) -> list[tuple[int, memoryview]] | None:
    """The recorded ranges of a cache file written for exactly this URL, size and identity, else None."""
    import mmap

    try:
        with open(path, "rb") as f:
            data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))  # pages read as used
    except (OSError, ValueError):
        return None
    if bytes(data[: len(_CACHE_MAGIC)]) != _CACHE_MAGIC:
        return None
    line_end = bytes(data[: 1 << 16]).find(b"\n", len(_CACHE_MAGIC))
    try:
        header = json.loads(bytes(data[len(_CACHE_MAGIC) : line_end]))
    except ValueError:
        return None
    if header.get("url") != url or header.get("size") != size or header.get("identity") != identity:
        return None
    blocks = []
    pos = line_end + 1
    for _ in range(int(header.get("ranges", 0))):
        if pos + _RANGE.size > len(data):
            return None
        offset, length = _RANGE.unpack_from(data, pos)
        pos += _RANGE.size
        if pos + length > len(data) or offset + length > size:
            return None
        blocks.append((offset, data[pos : pos + length]))
        pos += length
    return blocks if pos == len(data) else None
