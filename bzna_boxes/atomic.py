"""Files that appear whole or not at all: written beside their path, renamed into place on success.

Also what every command that writes relies on: :func:`check_not_an_input` (an output never
replaces one of the command's inputs), :func:`publish_together` (a dataset and its side files
replaced together) and :class:`OutputLock` (one writer per output at a time).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
from contextlib import contextmanager
from typing import IO, Iterable, Iterator, Sequence

__all__ = [
    "atomic_file",
    "temporary_beside",
    "publish",
    "publish_together",
    "remove_quietly",
    "current_umask",
    "check_not_an_input",
    "OutputLock",
]


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


def publish_together(staged: Sequence[tuple[str, str]]) -> None:
    """Rename each ``(temporary, path)`` into place, in order (the main file last): all of them or none.

    Every target is checked first (a folder in the way fails before anything is renamed); on
    any failure the temporaries not yet renamed are removed.
    """
    try:
        for _, path in staged:
            if os.path.isdir(path):
                raise IsADirectoryError(errno.EISDIR, f"cannot replace {path}: it is a directory", path)
        for temp, path in staged:
            publish(temp, path)
    except BaseException:
        for temp, _ in staged:
            remove_quietly(temp)
        raise


# --- outputs that are inputs --------------------------------------------------------------------


def _local_path(location: str) -> str:
    """The path a ``file://`` URL names (readers and writers take it as that local file)."""
    return location[len("file://") :] if isinstance(location, str) and location.startswith("file://") else location


def check_not_an_input(
    output: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    folders: Iterable[str | os.PathLike] = (),
    listed: Iterable[str | os.PathLike] = (),
) -> None:
    """Refuse (``ValueError``) an ``output`` that is one of the command's inputs.

    ``inputs``: files read (the same file by :func:`os.path.samefile`, links included, when both
    exist, else the same absolute path). ``folders``: folders listed (an ImageFolder tree): the
    output may not lie inside one. ``listed``: the files of a list (maybe millions): the same
    absolute path, or the same file among those with the output's name.
    """
    output = _local_path(os.fspath(output))
    absolute = os.path.abspath(output)
    try:
        found = os.stat(output)
    except OSError:
        found = None

    def same(path: str) -> bool:
        path = _local_path(path)
        if os.path.abspath(path) == absolute:
            return True
        try:
            return found is not None and os.path.samestat(os.stat(path), found)
        except OSError:
            return False

    name = os.path.basename(absolute)
    for path in map(os.fspath, inputs):
        if same(path):
            raise ValueError(f"the output {output} is also an input ({path}): choose another output path")
    parent = os.path.realpath(os.path.dirname(absolute))
    for folder in folders:
        root = os.path.realpath(os.fspath(folder))
        if parent == root or parent.startswith(root.rstrip(os.sep) + os.sep):
            raise ValueError(f"the output {output} lies inside the input folder {os.fspath(folder)}: choose a path outside it")
    for path in map(os.fspath, listed):
        if os.path.basename(path) == name and same(path):
            raise ValueError(f"the output {output} is also one of the listed images ({path}): choose another output path")


# --- one writer per output ----------------------------------------------------------------------

_RANDOM_PART = r"[a-z0-9_]{8}"
"""What :func:`tempfile.mkstemp` puts between a temporary file's prefix and suffix."""


def lock_path(path: str | os.PathLike) -> str:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.lock")


class OutputLock:
    """An exclusive lock on an output path, held from creation until :meth:`release`.

    The lock is ``flock`` on ``.NAME.lock`` beside the output, so it ends with the process that
    holds it (killed included). A second lock on the same output, in this process or another,
    fails at once with :class:`BlockingIOError` naming the lock file. Holding it, the lock
    removes the temporary files (``.NAME.XXXXXXXX.tmp``) that dead writers of this output left.
    The lock file is removed on release.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.lock_path = lock_path(self.path)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:  # name the output, not only the lock file
                raise type(exc)(exc.errno, f"cannot write {self.path}: {exc.strerror}", self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BlockingIOError(
                    errno.EWOULDBLOCK, f"{self.path} is being written by another writer (it holds the lock {self.lock_path})", self.lock_path
                ) from None
            # the file may have been removed by its last holder between open and flock: lock the current one
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.lock_path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._fd: int | None = fd
        self.removed = remove_stale_temporaries(self.path)

    def release(self) -> None:
        """Remove the lock file and release the lock (twice is harmless)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        remove_quietly(self.lock_path)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files of ``path`` (``.NAME.XXXXXXXX.tmp`` beside it); only while holding its lock."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(re.escape(f".{name}.") + _RANDOM_PART + re.escape(".tmp"))
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            remove_quietly(entry.path)
            removed.append(entry.path)
    return removed
