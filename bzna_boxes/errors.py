"""The exceptions of bzna_boxes: one family, rooted at :class:`BoxError`."""

from __future__ import annotations

__all__ = ["BoxError", "BuildError", "DecoderUnavailable"]


class BoxError(ValueError):
    """Malformed or inconsistent input, with the box path and byte offset where it was found.

    ``str(err)`` reads like ``moov/trak[1]/mdia/minf/stbl/stsz at offset 1234: entry_count 9
    needs 36 bytes, 20 left``. ``err.path``, ``err.offset`` and ``err.reason`` hold the parts.
    """

    def __init__(self, reason: str, *, offset: int | None = None, path: str | None = None):
        self.reason = reason
        self.offset = offset
        self.path = path
        super().__init__(reason)

    def __str__(self) -> str:
        where = self.path or "input"
        if self.offset is not None:
            where = f"{where} at offset {self.offset}"
        return f"{where}: {self.reason}"

    def __reduce__(self):
        return _rebuild_box_error, (type(self), self.reason, self.offset, self.path)


def _rebuild_box_error(cls, reason, offset, path):
    return cls(reason, offset=offset, path=path)


class DecoderUnavailable(RuntimeError):
    """A decoder backend cannot run here (package, driver or device missing)."""


class BuildError(Exception):
    """A build stopped (``fail_fast``) or could not start (bad source)."""
