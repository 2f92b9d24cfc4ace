"""``bzna inspect``: the box tree of an MP4 or ``.bzna`` file, as text (like Bento4's mp4dump) or JSON.

The file is memory-mapped and parsed by the box engine, which never reads an ``mdat`` payload
and views tables in place, so a 140 GB dataset prints as fast as its moov parses. Each box shows
its type, offset, size, header form (``largesize``, ``size 0``, ``uuid``) and fields; a table
shows its entry count and its first and last K entries; bytes show a hex prefix and a length;
raw and unknown boxes show only their length.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import numpy as np

from .boxes import Boxes, lookup
from .boxes.movie import UNITY_MATRIX
from .errors import BoxError
from .headers import child_path
from .remote import is_url, without_payloads

__all__ = ["inspect_file", "inspect_boxes", "box_summary", "format_text"]

HEX_PREFIX = 16
"""Bytes shown in hex before a byte string is cut short (JSON); text shows half of that."""

SHORT_LIST = 16
"""Lists (not tables) up to this long are shown whole, like a matrix or a few brands."""

_HIDDEN_IN_TEXT = ("reserved", "pre_defined")
_NAL_TYPES = {32: "VPS", 33: "SPS", 34: "PPS", 39: "prefix SEI", 40: "suffix SEI"}


def inspect_file(path: str | os.PathLike, *, depth: int | None = None, types=None, entries: int = 3) -> tuple[list[dict], list]:
    """The summaries of the boxes of the file at ``path`` (:func:`inspect_boxes`) and what reading it tolerated.

    Each warning (:class:`~bzna_boxes.boxes.BoxWarning`) is also attached to its box's summary.
    """
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise BoxError(f"{path} is empty: an MP4 file holds at least one box", offset=0)
    if is_url(path):  # every box but the mdat payloads, fetched
        from .index import BznaFile

        with BznaFile(path, check_bounds=False) as file:
            tree = Boxes.parse(without_payloads(file.storage, file.boxes))
    else:
        tree = Boxes.parse_file(path)
    nodes = inspect_boxes(tree, depth=depth, types=types, entries=entries)
    warnings = list(getattr(tree, "warnings", ()))
    _attach_warnings(nodes, warnings)
    return nodes, warnings


def inspect_boxes(tree, *, depth: int | None = None, types=None, entries: int = 3) -> list[dict]:
    """Summaries (JSON-ready dicts) of the boxes of ``tree``, down to ``depth`` levels.

    With ``types``, only the boxes of those fourccs, each as a flat entry with its path.
    """
    if types:
        wanted = set(types)
        return [
            box_summary(box, path, entries)
            for path, box, _level in _walk(tree, "", 1, depth)
            if box.get("type") in wanted
        ]
    return [_subtree(box, path, 1, depth, entries) for path, box in _named(tree, "")]


def _attach_warnings(nodes: list[dict], warnings: list) -> None:
    """Add ``warnings`` (``[{"reason", "offset"}]``) to the node of the box each one names."""
    by_path: dict[str, list] = {}
    for warning in warnings:
        by_path.setdefault(warning.path, []).append({"reason": warning.reason, "offset": warning.offset})
    stack = list(nodes)
    while stack and by_path:
        node = stack.pop()
        found = by_path.pop(node["path"], None)
        if found:
            node["warnings"] = found
        stack.extend(node.get("children", ()))


def _named(boxes, parent: str) -> Iterator[tuple[str, Mapping]]:
    """``(path, box)`` for each box of a list, with the ``type[i]`` names used in errors."""
    seen: dict[str, int] = {}
    for box in boxes:
        yield child_path(parent, box.get("type"), seen), box


def _walk(boxes, parent: str, level: int, depth: int | None) -> Iterator[tuple[str, Mapping, int]]:
    if depth is not None and level > depth:
        return
    for path, box in _named(boxes, parent):
        yield path, box, level
        yield from _walk(box.get("children") or (), path, level + 1, depth)


def _subtree(box: Mapping, path: str, level: int, depth: int | None, entries: int) -> dict:
    shown = depth is None or level < depth
    node = box_summary(box, path, entries, count_children=not shown)
    if shown and "children" in box:
        node["children"] = [_subtree(child, p, level + 1, depth, entries) for p, child in _named(box["children"], path)]
    return node


def box_summary(box: Mapping, path: str, entries: int = 3, *, count_children: bool = False) -> dict:
    """One box as a JSON-ready dict: path, type, offset, size, header form and summarized fields.

    ``count_children`` records how many child boxes there are (``child_count``), for boxes whose
    children are not listed.
    """
    fourcc = box.get("type")
    header = 8 + 8 * bool(box.get("large_size")) + 16 * ("extended_type" in box)
    node: dict[str, Any] = {"path": path, "type": fourcc, "offset": box.get("_offset"), "size": box.get("_size"), "header_size": header}
    if box.get("large_size"):
        node["large_size"] = True
    if box.get("size_to_end"):
        node["size_to_end"] = True
    if "extended_type" in box:
        node["extended_type"] = bytes(box["extended_type"]).hex()
    if box.get("declared_size") is not None:
        node["declared_size"] = box["declared_size"]
    raw = (lookup(fourcc).raw or "data" in box) if isinstance(fourcc, str) else True
    fields: dict[str, Any] = {}
    for key, value in box.items():
        if key in ("type", "large_size", "size_to_end", "extended_type", "declared_size", "children") or key.startswith("_"):
            continue
        if raw and key == "data":
            fields["data"] = {"length": _length(value)}  # never read: it may be a 100 GB mdat
        else:
            fields[key] = summarize(value, entries)
    node["fields"] = fields
    if count_children and "children" in box:
        node["child_count"] = len(box["children"])
    return node


def _length(value) -> int:
    return value.nbytes if isinstance(value, memoryview) else len(value)


def summarize(value, entries: int = 3):
    """A field value as JSON-ready data: tables and long lists cut to ``entries`` at each end."""
    if isinstance(value, np.ndarray):
        return _cut(value, len(value), entries, _rows)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value[:HEX_PREFIX])
        return {"hex": data.hex(), "length": _length(value)}
    if isinstance(value, Mapping):
        return {k: summarize(v, entries) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        if len(value) <= max(2 * entries, SHORT_LIST):
            return [summarize(v, entries) for v in value]
        return _cut(value, len(value), entries, lambda part: [summarize(v, entries) for v in part])
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _cut(seq, count: int, entries: int, convert) -> dict:
    """``{"count", "first", "last"}``: the first ``entries`` items and the last ones not among them."""
    head = min(entries, count)
    tail = max(head, count - entries)
    return {"count": count, "first": convert(seq[:head]), "last": convert(seq[tail:])}


def _rows(arr: np.ndarray) -> list:
    """Table entries as ints (or dicts of ints for tables with several columns)."""
    names = arr.dtype.names
    if names is None:
        return arr.tolist()
    return [dict(zip(names, row)) for row in arr.tolist()]


# ---------------------------------------------------------------------------
# Text


def format_text(nodes: list[dict], *, flat: bool = False) -> Iterator[str]:
    """mp4dump-like lines for :func:`inspect_boxes` output; ``flat`` labels each box with its path."""
    for node in nodes:
        yield from _node_lines(node, 0, flat)


def _node_lines(node: dict, level: int, flat: bool) -> Iterator[str]:
    pad = "  " * level
    label = node["path"] if flat else node["type"]
    notes = []
    if node.get("large_size"):
        notes.append("largesize")
    if node.get("size_to_end"):
        notes.append("size 0 (to end)")
    if "extended_type" in node:
        notes.append(f"uuid {node['extended_type']}")
    if "declared_size" in node:
        notes.append(f"its header says {node['declared_size']:,} bytes: cut short by the end of the file")
    if "child_count" in node:
        notes.append(f"{node['child_count']} child{'' if node['child_count'] == 1 else 'ren'} not shown")
    note = f"  ({', '.join(notes)})" if notes else ""
    yield f"{pad}[{_printable(label)}] offset={node['offset']} size={node['header_size']}+{node['size'] - node['header_size']}{note}"
    for key, value in node["fields"].items():
        if key.startswith(_HIDDEN_IN_TEXT) or (key == "matrix" and value == UNITY_MATRIX):
            continue
        yield f"{pad}  {key} = {_text(key, value)}"
    for warning in node.get("warnings", ()):
        yield f"{pad}  ! {warning['reason']}"
    for child in node.get("children", ()):
        yield from _node_lines(child, level + 1, flat)


def _text(key: str, value) -> str:
    if key == "flags" and isinstance(value, int):
        return f"0x{value:06x}"
    if key == "data" and isinstance(value, dict) and set(value) == {"length"}:
        return f"{value['length']:,} bytes"
    if key == "nal_unit_type" and value in _NAL_TYPES:
        return f"{value} ({_NAL_TYPES[value]})"
    return _value_text(value)


def _value_text(value) -> str:
    if isinstance(value, dict):
        if set(value) == {"hex", "length"}:
            shown = value["hex"][: HEX_PREFIX]
            more = "..." if value["length"] > len(shown) // 2 else ""
            return f"<{value['length']} bytes{' ' + shown if shown else ''}{more}>"
        if set(value) == {"count", "first", "last"}:
            items = [_value_text(v) for v in value["first"]]
            if value["count"] > len(value["first"]) + len(value["last"]):
                items.append("...")
            items += [_value_text(v) for v in value["last"]]
            return f"{value['count']:,} entr{'y' if value['count'] == 1 else 'ies'} [{', '.join(items)}]"
        inner = ", ".join(f"{k}={_text(k, v)}" for k, v in value.items() if not k.startswith(_HIDDEN_IN_TEXT))
        return f"{{{inner}}}"
    if isinstance(value, list):
        return f"[{', '.join(_value_text(v) for v in value)}]"
    if isinstance(value, str):
        return _printable(value)
    return str(value)


def _printable(text: str) -> str:
    return text if text.isprintable() and text else repr(text)
