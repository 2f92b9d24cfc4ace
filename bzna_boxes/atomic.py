"""Files that appear whole or not at all: written beside their path, renamed into place on success."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator

__all__ = ["atomic_file", "temporary_beside", "publish", "remove_quietly", "current_umask"]


def current_umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def temporary_beside(path: str | os.PathLike) -> tuple[int, str]:
    """A new hidden temporary file in ``path``'s folder (same file system, so rename is atomic): (fd, name)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    try:
        return tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, f"cannot write {os.fspath(path)}: {exc.strerror}") from None


def publish(temp: str, path: str | os.PathLike) -> None:
    """Give ``temp`` the permissions a new file gets (mkstemp makes it 0600) and rename it to ``path``."""
    os.chmod(temp, 0o666 & ~current_umask())
    os.replace(temp, path)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False, **open_args) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; it becomes ``path`` when the block ends
    without an exception, and is removed otherwise (Ctrl-C included): nothing half-written is left."""
    fd, temp = temporary_beside(path)
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        publish(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise
