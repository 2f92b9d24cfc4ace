"""Servers on localhost for the remote-reading tests and benchmarks: a real S3 protocol server
(moto's ``ThreadedMotoServer``) behind a recording proxy that can delay every request and fail
chosen ones (deterministically: by request number or byte range), and a plain HTTP server that
honours ``Range``.

Nothing here is a mock of a client: s3fs and fsspec's HTTP file system talk HTTP to these.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

KEY = "testing"
REGION = "us-east-1"


@dataclass
class Request:
    """One request the proxy saw: method, path (with query) and the Range header (or None)."""

    method: str
    path: str
    range: str | None

    @property
    def span(self) -> tuple[int, int] | None:
        """``(start, end)`` (end exclusive) of a ``bytes=a-b`` range."""
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", self.range or "")
        return (int(found[1]), int(found[2]) + 1) if found else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the headers and the body leave at once (no 40 ms delayed-ACK stall)

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                parts.append(chunk)
            return b"".join(parts)
        return b""

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False) -> None:
        self.send_response(status)
        length = str(len(body))
        for name, value in headers:
            if name.lower() == "content-length" and head:
                length = value  # a HEAD answer says how long the GET's body would be
            elif name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET


class _Server:
    """A threaded HTTP server on 127.0.0.1 (a free port) whose requests go to ``handle``."""

    def __init__(self) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.owner = self
        self.port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def handle(self, handler: _Handler) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class Proxy(_Server):
    """Forwards every request to ``upstream``, recording it in :attr:`requests`.

    ``delay``: seconds added before each request is answered (a distant server). ``fail``:
    ``fail(number, request)`` (``number`` counts from 1) gives a status to answer instead of
    forwarding (503, say), or None to forward.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.removeprefix("http://")
        self.requests: list[Request] = []
        self.delay = 0.0
        self.fail: Callable[[int, Request], int | None] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def handle(self, handler: _Handler) -> None:
        request = Request(handler.command, handler.path, handler.headers.get("Range"))
        body = handler._body()
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        if self.delay:
            time.sleep(self.delay)
        status = self.fail(number, request) if self.fail is not None else None
        if status is not None:
            message = b"<Error><Code>ServiceUnavailable</Code><Message>failed by the test proxy</Message></Error>"
            handler._answer(status, [("Content-Type", "application/xml")], message, handler.command == "HEAD")
            return
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("expect", "connection", "transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self._local.connection = None
            connection.close()
            handler._answer(502, [], b"", handler.command == "HEAD")
            return
        handler._answer(response.status, response.getheaders(), data, handler.command == "HEAD")

    def count(self, method: str | None = None) -> int:
        return sum(1 for r in self.requests if method is None or r.method == method)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.fail = None
        self.delay = 0.0


class S3Server:
    """moto's S3 server on localhost with a :class:`Proxy` in front (what clients talk to)."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.direct = f"http://{host}:{port}"
        self.proxy = Proxy(self.direct)
        self.endpoint = self.proxy.url

    def options(self, **extra) -> dict:
        """``storage_options`` for s3fs talking to the proxy."""
        return {"key": KEY, "secret": KEY, "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION}, "skip_instance_cache": True, **extra}

    def env(self) -> dict:
        """Environment for a process that reads ``s3://`` through the proxy the usual way."""
        return {**os.environ, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": KEY, "AWS_DEFAULT_REGION": REGION}

    def filesystem(self):
        """An s3fs file system talking to moto directly (setting up, not recorded)."""
        import s3fs

        return s3fs.S3FileSystem(key=KEY, secret=KEY, client_kwargs={"endpoint_url": self.direct, "region_name": REGION}, skip_instance_cache=True)

    def stop(self) -> None:
        self.proxy.stop()
        self._moto.stop()


class RangeServer(_Server):
    """Serves ``files`` (URL path -> bytes, or the path of a local file, read at each request)
    over plain HTTP: GET and HEAD, one ``bytes=a-b`` range per request (206), with
    Content-Length, an ETag per content, and Accept-Ranges. ``delay``: seconds added per request."""

    def __init__(self, files: dict[str, bytes | os.PathLike]) -> None:
        super().__init__()
        self.files = files
        self.requests: list[Request] = []
        self.delay = 0.0
        self.honour_ranges = True
        """False: answer every GET with the whole file (200), as a server without Range support."""
        self.status: int | None = None
        """An error status to answer every request with (403, 503...), or None."""
        self._tags: dict[int, tuple[bytes | bytearray, str]] = {}  # id -> (content, its md5): hashed once, not per request

    def _tag(self, data: bytes | bytearray) -> str:
        import hashlib

        kept = self._tags.get(id(data))
        if kept is None or kept[0] is not data or isinstance(data, bytearray):  # a bytearray may change
            kept = self._tags[id(data)] = (data, hashlib.md5(data).hexdigest())
        return kept[1]

    def handle(self, handler: _Handler) -> None:
        self.requests.append(Request(handler.command, handler.path, handler.headers.get("Range")))
        if self.delay:
            time.sleep(self.delay)
        data = self.files.get(handler.path.split("?")[0])
        head = handler.command == "HEAD"
        if self.status is not None:
            handler._answer(self.status, [], b"refused by the test server", head)
            return
        if data is None:
            handler._answer(404, [], b"", head)
            return
        if isinstance(data, (bytes, bytearray)):
            size, tag, read = len(data), self._tag(data), lambda start, end: bytes(data[start:end])
        else:
            stat = os.stat(data)
            size, tag = stat.st_size, f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"

            def read(start: int, end: int) -> bytes:
                with open(data, "rb") as f:
                    return os.pread(f.fileno(), end - start, start)

        headers = [("ETag", f'"{tag}"'), ("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")]
        found = re.fullmatch(r"bytes=(\d*)-(\d*)", handler.headers.get("Range") or "")
        if not found or head or not self.honour_ranges:
            handler._answer(200, [*headers, ("Content-Length", str(size))], b"" if head else read(0, size), head)
            return
        if found[1]:
            start, end = int(found[1]), min(int(found[2]) + 1 if found[2] else size, size)
        else:
            start, end = max(0, size - int(found[2])), size
        if start >= size or start >= end:
            handler._answer(416, [("Content-Range", f"bytes */{size}")], b"", head)
            return
        handler._answer(206, [*headers, ("Content-Range", f"bytes {start}-{end - 1}/{size}")], read(start, end))


@contextmanager
def running_s3(bucket: str) -> Iterator[S3Server]:
    """An :class:`S3Server` with ``bucket`` made, stopped on the way out."""
    server = S3Server()
    try:
        server.filesystem().call_s3("create_bucket", Bucket=bucket)
        yield server
    finally:
        server.stop()


def run_in_session(command: list[str], env: dict, cwd=None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``command`` in a new session and wait for it; its whole process group is killed on
    the way out, whatever happened (a timeout included)."""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if process.poll() is None:
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, err)
