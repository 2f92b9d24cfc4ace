"""Navigation in a parsed tree with the paths used in errors: ``moov/trak[1]/mdia/minf/stbl/stsz``.

``name[i]`` is the i-th (from 0) child of that type; ``name`` alone is ``name[0]``.
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping, Sequence

from ..errors import BoxError
from ..headers import child_path

__all__ = ["find", "find_all", "walk"]

_STEP = re.compile(r"^(.{4})(?:\[(\d+)\])?$", re.S)


def _children(node) -> Sequence:
    if isinstance(node, Mapping):
        return node.get("children") or ()
    return node


def find(tree, path: str, default=BoxError):
    """The box at ``path`` under ``tree`` (a box or a list of boxes).

    Raises :class:`BoxError` when it is absent, unless ``default`` is given.
    """
    node = tree
    walked = []
    for step in path.strip("/").split("/"):
        match = _STEP.match(step)
        if not match:
            raise ValueError(f"bad path step {step!r} in {path!r}")
        fourcc, index = match.group(1), int(match.group(2) or 0)
        same = [child for child in _children(node) if child.get("type") == fourcc]
        walked.append(step)
        if index >= len(same):
            if default is BoxError:
                raise BoxError(f"no box {'/'.join(walked)}", path=path)
            return default
        node = same[index]
    return node


def find_all(tree, fourcc: str) -> list:
    """Every box of type ``fourcc`` under ``tree``, depth first, in file order."""
    return [box for _, box in walk(tree) if box.get("type") == fourcc]


def walk(tree, parent: str = "") -> Iterator[tuple[str, Mapping]]:
    """Yield ``(path, box)`` for every box under ``tree``, depth first, in file order."""
    seen: dict[str, int] = {}
    for box in _children(tree):
        path = child_path(parent, box.get("type"), seen)
        yield path, box
        yield from walk(box, path)
