"""``bzna verify`` (check a .bzna dataset) and ``bzna extract`` (write one sample or picture out).

:func:`verify` checks, and reports every problem rather than the first:

* every sample of every track lies inside the file, inside an ``mdat``, and off ``moov`` and
  the ``moof`` boxes (vectorised over the sample tables);
* the layout: a ``bzna_input`` track, ``bzna_fname`` as long as it, ``bzna_target`` as long
  or shorter (the samples past its end have no target, as in the seed's ImageNet, whose target
  track ends at the test split), the video track (when present) as long, each video sample
  inside its input sample;
* the class names (``moov/udta/bzcl``), when stored: readable, distinct, as many as
  ``num_classes`` when it is given;
* targets: 8 bytes each (or 0: none), at least -1, below ``num_classes`` when given, else
  below the number of stored class names when there are;
  filenames: valid UTF-8;
* every inner sample (unless ``inner=False``): it parses, it has the four tracks
  ``bzna_input``, ``bzna_thumb``, ``bzna_target`` (unless its outer target is -1),
  ``bzna_fname`` with their samples inside it, both pictures read as H.265 (``hvc1``/``hev1`` with ``hvcC``), and its target and
  filename equal the outer ones;
* when the file has a checksum table (``moov/udta/bzsc``): every sample of every track it
  covers against its checksum, reading the file in large sequential chunks; each damaged
  sample is reported by index and filename;
* with ``decode=True``: every picture (``bzna_input`` and ``bzna_thumb``) decodes on the CPU.

Payloads are read only for these checks: targets and filenames, each inner MP4's boxes, the
samples the checksum table covers, and the pictures when decoding.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from . import layout
from .checksum import ALGORITHMS, file_checksums
from .dataset import MissingSampleError, _read_targets, at_file_offset, inner_image, inner_tracks
from .errors import BoxError, DecoderUnavailable
from .index import BznaFile, sample_problems
from .storage import Storage, gather

__all__ = ["Problem", "Report", "verify", "extract"]

_KEEP = 1000
"""Problems of each kind kept with their message (the rest are only counted)."""
_FETCH = 256
"""Inner samples fetched together (one ``read_many``) where the storage does not map the file."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong: its kind, a message naming the track and sample, and where."""

    kind: str
    message: str
    offset: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = f" ({self.path or 'file'} at offset {self.offset})" if self.offset is not None else ""
        return f"[{self.kind}] {self.message}{where}"


@dataclass
class Report:
    """What :func:`verify` found: a summary (lines of text) and the problems."""

    path: str
    summary: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    warnings: list = field(default_factory=list)
    """What the reading tolerated (:class:`~bzna_boxes.boxes.BoxWarning`); not problems."""
    damaged: list[int] = field(default_factory=list)
    """Every sample index whose bytes differ from the checksum table, in order (not capped)."""

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, kind: str, message: str, offset: int | None = None, path: str | None = None) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= _KEEP:
            self.problems.append(Problem(kind, message, offset, path))

    def add_error(self, kind: str, error: BoxError, prefix: str = "") -> None:
        self.add(kind, f"{prefix}{error.reason}", error.offset, error.path)

    def format(self, max_problems: int = 20) -> str:
        """The summary, then the first ``max_problems`` problems and the counts by kind."""
        lines = [f"{self.path}:", *(f"  {line}" for line in self.summary)]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        total = sum(self.counts.values())
        if not total:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        lines.append(f"{total} problem{'s' if total != 1 else ''}:")
        shown = self.problems[:max_problems]
        lines.extend(f"  {problem}" for problem in shown)
        if total > len(shown):
            lines.append(f"  ... and {total - len(shown)} more")
        lines.append("by kind: " + ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts.items())))
        return "\n".join(lines)


def _label(track) -> str:
    return f"track {track.track_id} {track.name!r}"


def verify(
    path: str | os.PathLike,
    *,
    num_classes: int | None = None,
    inner: bool = True,
    checksums: bool = True,
    decode: bool = False,
    progress: Callable | None = None,
) -> Report:
    """Check the .bzna file at ``path`` (see the module documentation); never raises BoxError.

    ``progress(iterable, total)`` wraps the loops over inner samples (e.g. a tqdm factory).
    ``decode=True`` without PyAV raises :class:`DecoderUnavailable`.
    """
    report = Report(os.fspath(path))
    try:
        file = BznaFile(path, check_bounds=False)
    except BoxError as exc:
        report.add_error("structure", exc)
        return report
    try:
        _check(file, report, num_classes, inner, checksums, decode, progress or (lambda it, total: it))
        changed = file.changed()
        if changed is not None:  # what was read may be neither the old file nor the new one
            report.add("changed", f"the file changed while it was verified: {changed}; verify it again")
    finally:
        file.close()
    return report


def _check(file: BznaFile, report: Report, num_classes: int | None, inner: bool, checksums: bool, decode: bool, progress: Callable) -> None:
    size = file.size
    report.warnings.extend(file.warnings)
    report.summary.append(f"{size:,} bytes, {len(file.tracks)} tracks, top level: {' '.join(b.type for b in file.boxes)}")
    spans = file.metadata_spans()
    mdats = file.mdat_spans()
    for track in file.tracks:
        missing = int(np.count_nonzero(track.sizes == 0))
        report.summary.append(
            f"{_label(track)} {track.handler}: {len(track):,} samples, {int(track.sizes.sum(dtype=np.uint64)):,} bytes"
            + (f", {missing:,} empty" if missing else "")
        )
        try:
            track.sample_entry  # parsed on first use: a malformed stsd shows here
        except BoxError as exc:
            report.add_error("structure", exc, f"{_label(track)}: ")
        reported = set()
        for index, reason in sample_problems(track.offsets, track.sizes, size, spans):
            report.add("bounds", f"{_label(track)}: sample {index} {reason}", int(track.offsets[index]), track.path)
            reported.add(index)
        for index in _outside_mdats(track.offsets, track.sizes, mdats, size).tolist():
            if index in reported:
                continue
            report.add(
                "bounds",
                f"{_label(track)}: sample {index} at offset {int(track.offsets[index])} (size {int(track.sizes[index])}) is not inside an mdat",
                int(track.offsets[index]),
                track.path,
            )
    tracks = {t.name: t for t in reversed(file.tracks)}  # the first of each name
    if checksums:
        _check_checksums(report, file, tracks.get(layout.FILENAME_TRACK))
    inputs = tracks.get(layout.INPUT_TRACK)
    if inputs is None:
        report.add("layout", f"no {layout.INPUT_TRACK!r} track: not a .bzna dataset")
        return
    count = len(inputs)
    for name in (layout.TARGET_TRACK, layout.FILENAME_TRACK, layout.VIDEO_TRACK):
        track = tracks.get(name)
        if track is None:
            if name != layout.VIDEO_TRACK:
                report.add("layout", f"no {name!r} track")
        elif name == layout.TARGET_TRACK and len(track) < count:
            # the tools that made the seed's ImageNet end the target track at the test split
            report.summary.append(f"{_label(track)} ends after {len(track):,} of {count:,} samples: the rest have no target")
        elif len(track) != count:
            report.add("layout", f"{_label(track)} has {len(track):,} samples, {layout.INPUT_TRACK!r} has {count:,}", path=track.path)
    video = tracks.get(layout.VIDEO_TRACK)
    if video is not None and len(video) == count:
        _check_video(report, inputs, video)
    num_classes = _check_classes(report, file, num_classes)
    targets = _check_targets(report, file, tracks.get(layout.TARGET_TRACK), count, num_classes)
    names = _check_filenames(report, file, tracks.get(layout.FILENAME_TRACK), count)
    if inner:
        _check_inner(report, file, inputs, targets, names, progress)
    if decode:
        _check_decode(report, file, inputs, tracks.get(layout.FILENAME_TRACK), progress)


def _check_checksums(report: Report, file: BznaFile, names) -> None:
    """Every sample the checksum table covers against its checksum; one problem per damaged sample index."""
    path = f"moov/{layout.CHECKSUMS_PATH}"
    try:
        box = file.checksum_table()
    except BoxError as exc:
        report.add_error("checksum", exc, "the checksum table cannot be read: ")
        return
    if box is None:
        report.summary.append(f"checksums: none ({path} absent): sample bytes not checked")
        return
    algorithm = ALGORITHMS.get(box.algorithm)
    if algorithm is None or algorithm.size != box.checksum_size:
        report.summary.append(f"checksums: algorithm {box.algorithm!r} of {box.checksum_size} bytes unknown here: not checked")
        return
    by_id = {track.track_id: track for track in file.tracks}
    checked = []
    for entry in box.entries:
        track = by_id.get(entry.track_id)
        if track is None:
            report.add("checksum", f"the checksum table has checksums for track_ID {entry.track_id}, which the file lacks", box._offset, path)
        elif len(entry.checksums) != len(track):
            report.add("checksum", f"{_label(track)}: the checksum table has {len(entry.checksums):,} checksums for {len(track):,} samples", box._offset, path)
        else:
            checked.append((track, entry.checksums))
    if not checked:
        return
    offsets = np.concatenate([track.offsets for track, _ in checked])
    sizes = np.concatenate([track.sizes for track, _ in checked])
    stored = np.concatenate([sums.astype(np.uint64) for _, sums in checked])
    starts = np.cumsum([0] + [len(track) for track, _ in checked])
    inside = offsets + sizes <= np.uint64(file.size)  # the rest are bounds problems already
    try:
        computed = _checksums_read(file, checked, starts, offsets, sizes, stored, inside, algorithm)
    except BoxError as exc:  # the file shrank since it was opened
        report.add_error("checksum", exc, "the samples cannot be read: ")
        return
    bad = np.flatnonzero(inside & (computed != stored))
    damaged: dict[int, list] = {}
    for at in bad.tolist():
        k = int(np.searchsorted(starts, at, side="right")) - 1
        damaged.setdefault(at - int(starts[k]), []).append((checked[k][0], int(stored[at]), int(computed[at])))
    report.damaged = sorted(damaged)
    for index in report.damaged:
        found = damaged[index]
        track = found[0][0]
        which = ", ".join(f"{t.name!r} (stored {s:08x}, read {c:08x})" for t, s, c in found)
        report.add("checksum", f"sample {index} {_filename(file, names, index)}: bytes differ from the checksum table in {which}", int(track.offsets[index]), track.path)
    report.summary.append(
        f"checksums ({box.algorithm}): {int(np.count_nonzero(inside)):,} samples of {len(checked)} tracks checked"
        + (f", {len(damaged):,} damaged samples" if damaged else ", all match")
    )


def _checksums_read(file: BznaFile, checked: list, starts: np.ndarray, offsets, sizes, stored, inside, algorithm) -> np.ndarray:
    """The checksums of the samples (the tracks of ``checked``, one after the other) as read.

    A video sample (a thumbnail) inside its input sample is read only when that input sample's
    checksum fails: when it matches, the bytes it contains are intact.
    """
    computed = np.zeros(len(offsets), np.uint64)
    covered = np.zeros(len(offsets), bool)
    position = {track.name: k for k, (track, _) in reversed(list(enumerate(checked)))}
    inputs_at, video_at = position.get(layout.INPUT_TRACK), position.get(layout.VIDEO_TRACK)
    if inputs_at is not None and video_at is not None and len(checked[inputs_at][0]) == len(checked[video_at][0]):
        inputs, video = checked[inputs_at][0], checked[video_at][0]
        within = (inputs.sizes > 0) & (video.offsets >= inputs.offsets) & (video.offsets + video.sizes <= inputs.offsets + inputs.sizes)
        covered[starts[video_at] : starts[video_at + 1]] = within
    storage = file.storage
    first = inside & ~covered
    computed[first] = file_checksums(storage, offsets[first], sizes[first], algorithm)
    if covered.any():
        holders = np.flatnonzero(covered) - starts[video_at] + starts[inputs_at]
        intact = computed[holders] == stored[holders]
        computed[np.flatnonzero(covered)[intact]] = stored[np.flatnonzero(covered)[intact]]
        again = np.flatnonzero(covered)[~intact]
        computed[again] = file_checksums(storage, offsets[again], sizes[again], algorithm)
    return computed


def _filename(file: BznaFile, names, index: int) -> str:
    """The filename of sample ``index`` as read (a damaged one shows its bad bytes), for messages."""
    if names is None or index >= len(names) or names.offsets[index] + names.sizes[index] > file.size:
        return "(no filename)"
    return repr(file.storage.read(int(names.offsets[index]), int(names.sizes[index])).decode("utf-8", "backslashreplace"))


def _outside_mdats(offsets: np.ndarray, sizes: np.ndarray, mdats: np.ndarray, file_size: int) -> np.ndarray:
    """Indices of non-empty samples inside the file but not inside one mdat payload."""
    nonempty = sizes > 0
    ends = offsets + sizes
    inside_file = (offsets <= np.uint64(file_size)) & (ends <= np.uint64(file_size))
    if not len(mdats):
        return np.flatnonzero(nonempty & inside_file)
    k = np.searchsorted(mdats[:, 0], offsets, side="right") - 1
    kk = np.maximum(k, 0)
    inside = (k >= 0) & (ends <= mdats[kk, 1])
    return np.flatnonzero(nonempty & inside_file & ~inside)


def _check_video(report: Report, inputs, video) -> None:
    """Each video sample (a thumbnail) lies inside the input sample of the same index."""
    present = (inputs.sizes > 0) & (video.sizes > 0)
    inside = (video.offsets >= inputs.offsets) & (video.offsets + video.sizes <= inputs.offsets + inputs.sizes)
    for index in np.flatnonzero(present & ~inside).tolist():
        report.add(
            "layout",
            f"{_label(video)}: sample {index} at offset {int(video.offsets[index])} (size {int(video.sizes[index])}) is not inside input sample {index}",
            int(video.offsets[index]),
            video.path,
        )


def _check_classes(report: Report, file: BznaFile, num_classes: int | None) -> int | None:
    """The stored class names (``moov/udta/bzcl``), when there are: readable, distinct, as many as
    ``num_classes``; returns the bound of the targets (``num_classes``, else the number of names)."""
    path = f"moov/{layout.CLASSES_PATH}"
    try:
        names = file.class_names()
    except BoxError as exc:
        report.add_error("classes", exc, "the class names cannot be read: ")
        return num_classes
    if names is None:
        return num_classes
    shown = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
    report.summary.append(f"classes: {len(names):,} stored in {path} ({shown})")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            report.add("classes", f"class name {name!r} appears more than once", path=path)
            break
        seen.add(name)
    if num_classes is not None and num_classes != len(names):
        report.add("classes", f"--num-classes {num_classes}, but the file names {len(names):,} classes", path=path)
    return len(names) if num_classes is None else num_classes


def _check_targets(report: Report, file, track, count: int, num_classes: int | None) -> np.ndarray | None:
    if track is None:
        return None
    itemsize = layout.TARGET_DTYPE.itemsize
    n = min(count, len(track))
    sizes = track.sizes[:n]
    wrong = np.flatnonzero((sizes != itemsize) & (sizes != 0))
    for index in wrong.tolist():
        report.add("target", f"{_label(track)}: sample {index} has {int(sizes[index])} bytes, a target has {itemsize} (or 0: none)", int(track.offsets[index]), track.path)
    if len(wrong) or report.counts["bounds"]:
        return None  # the values cannot be read safely
    targets = _read_targets(file, count)
    low = np.flatnonzero(targets < layout.NO_TARGET)
    high = np.flatnonzero(targets >= num_classes) if num_classes is not None else np.zeros(0, np.int64)
    for index in np.union1d(low, high).tolist():
        bound = f"[0, {num_classes})" if num_classes is not None else "[0, 2**63)"
        report.add("target", f"{_label(track)}: sample {index} has target {int(targets[index])}, outside {bound} and not -1", int(track.offsets[index]), track.path)
    labelled = targets[targets >= 0]
    none = count - len(labelled)
    if len(labelled):
        report.summary.append(
            f"targets: {len(labelled):,} in [{int(labelled.min())}, {int(labelled.max())}] ({len(np.unique(labelled)):,} classes)"
            + (f", {none:,} without one (-1)" if none else "")
        )
    else:
        report.summary.append(f"targets: none ({none:,} samples without one)")
    return targets


class _Names(NamedTuple):
    """The outer filenames as read: name ``i`` is ``data[positions[i] : positions[i] + sizes[i]]``."""

    data: Any
    """Sliced into bytes (``gather(..., as_bytes=True)``)."""
    positions: list[int]
    sizes: list[int]

    def name(self, index: int) -> bytes:
        at = self.positions[index]
        return self.data[at : at + self.sizes[index]]


def _check_filenames(report: Report, file, track, count: int) -> _Names | None:
    """Every filename decodes as UTF-8; returns them as read (all fetched at once)."""
    if track is None or report.counts["bounds"]:
        return None
    n = min(count, len(track))
    data, positions = gather(file.storage, track.offsets[:n], track.sizes[:n], as_bytes=True)  # sliced as bytes: decoded fastest
    names = _Names(data, positions.tolist(), track.sizes[:n].tolist())
    for index, (at, size) in enumerate(zip(names.positions, names.sizes)):
        try:
            data[at : at + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            report.add("filename", f"{_label(track)}: sample {index} is not UTF-8 ({exc.reason} at byte {exc.start})", int(track.offsets[index]), track.path)
    return names


def _inner_samples(storage: Storage, inputs, progress: Callable) -> Iterator[tuple[int, memoryview, int, int, int, str]]:
    """``(index, view, base, start, end, path name)`` of each non-empty input sample, through
    ``progress``: its bytes are ``view[start:end]``, and ``view``'s first byte is the file's byte
    ``base`` (the whole map and 0 where the storage maps; else ``_FETCH`` samples fetched at once)."""
    offsets, sizes = inputs.offsets.tolist(), inputs.sizes.tolist()
    present = (index for index in progress(range(len(offsets)), len(offsets)) if sizes[index])
    buffer = storage.buffer
    if buffer is not None:
        for index in present:
            yield index, buffer, 0, offsets[index], offsets[index] + sizes[index], f"{layout.INPUT_TRACK}[{index}]"
        return
    while chosen := list(itertools.islice(present, _FETCH)):
        for index, view in zip(chosen, storage.read_many([(offsets[i], sizes[i]) for i in chosen])):
            yield index, view, offsets[index], 0, sizes[index], f"{layout.INPUT_TRACK}[{index}]"


def _check_inner(report: Report, file, inputs, targets: np.ndarray | None, names: _Names | None, progress: Callable) -> None:
    """Parse every inner sample: its four tracks, both pictures, target and filename."""
    checked = 0
    if report.counts["bounds"]:
        report.summary.append("inner samples: not checked (samples lie outside the file)")
        return
    for index, view, base, start, end, name in _inner_samples(file.storage, inputs, progress):
        prefix = f"{_label(inputs)}: sample {index}: "
        try:
            found = inner_tracks(view, start, end, name)
            for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
                if track in found:
                    inner_image(view, start, end, track, name)
        except BoxError as exc:
            report.add_error("inner", at_file_offset(exc, base) if base else exc, prefix)
            continue
        start += base
        checked += 1
        has_target = targets is None or (index < len(targets) and targets[index] != layout.NO_TARGET)
        absent = [t for t in layout.INNER_TRACKS if t not in found and (t != layout.TARGET_TRACK or has_target)]
        if absent:
            report.add("inner", f"{prefix}the inner sample lacks track{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))}", start, name)
        if layout.TARGET_TRACK in found:
            at, length = found[layout.TARGET_TRACK]
            if length != layout.TARGET_DTYPE.itemsize:
                report.add("inner", f"{prefix}its inner target has {length} bytes, not {layout.TARGET_DTYPE.itemsize}", at + base, name)
            elif targets is not None and index < len(targets):
                value = int.from_bytes(view[at : at + length], "little", signed=True)
                if value != targets[index]:
                    report.add("inner", f"{prefix}its inner target {value} differs from the outer target {int(targets[index])}", at + base, name)
        if layout.FILENAME_TRACK in found and names is not None and index < len(names.sizes):
            at, length = found[layout.FILENAME_TRACK]
            outer_name = names.name(index)
            inner_name = bytes(view[at : at + length])
            if inner_name != outer_name:
                report.add("inner", f"{prefix}its inner filename {inner_name!r} differs from the outer {outer_name!r}", at + base, name)
    missing = len(inputs) - int(np.count_nonzero(inputs.sizes))
    report.summary.append(f"inner samples: {checked:,} parsed" + (f", {missing:,} missing (size 0)" if missing else ""))


def _check_decode(report: Report, file: BznaFile, inputs, names, progress: Callable) -> None:
    """Decode every picture (``bzna_input`` and, when it is another picture, ``bzna_thumb``) on the CPU."""
    if inputs is None or report.counts["bounds"]:
        report.summary.append("pictures: not decoded (samples lie outside the file)")
        return
    from .decode.cpu import CpuDecoder

    try:
        decoder = CpuDecoder()
    except ImportError as exc:
        raise DecoderUnavailable(f"--decode needs PyAV (pip install bzna_boxes[decode]): {exc}") from None
    decoded = failed = 0
    began = time.perf_counter()
    for index, view, base, start, end, name in _inner_samples(file.storage, inputs, progress):
        try:
            found = inner_tracks(view, start, end, name)
        except BoxError:
            continue  # not an inner MP4: the inner check reports it
        for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
            if track not in found or (track == layout.THUMB_TRACK and found[track] == found.get(layout.INPUT_TRACK)):
                continue
            try:
                decoder.decode_frame(inner_image(view, start, end, track, name))
            except ValueError as exc:  # BoxError included
                failed += 1
                reason = exc.reason if isinstance(exc, BoxError) else str(exc)
                report.add("decode", f"sample {index} {_filename(file, names, index)}: its {track} picture does not decode: {reason}", found[track][0] + base, name)
                continue
            decoded += 1
    seconds = time.perf_counter() - began
    rate = f" ({decoded / seconds:,.0f} pictures/s)" if seconds > 0 and decoded else ""
    report.summary.append(f"pictures: {decoded:,} decoded on the CPU in {seconds:.1f} s{rate}" + (f", {failed:,} failed" if failed else ""))


# --- extract --------------------------------------------------------------------------------


def extract(path: str | os.PathLike, index: int, track: str | None = None) -> bytes:
    """The bytes ``bzna extract`` writes: an outer sample, or an inner picture as Annex B.

    ``track`` None: the ``bzna_input`` sample (the inner MP4). ``bzna_input`` or ``bzna_thumb``:
    that inner picture as an Annex B H.265 stream (hvcC parameter sets, then its NAL units,
    each after a 4-byte start code). Any other name, or a track_id: that outer track's sample.
    """
    with BznaFile(path) as file:
        if track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
            outer = file.track(layout.INPUT_TRACK)
            index = _check_index(index, outer)
            start, size = int(outer.offsets[index]), int(outer.sizes[index])
            if not size:
                raise MissingSampleError(f"sample {index} is missing (its {layout.INPUT_TRACK} sample is empty): it has no image")
            from .hevc import to_annexb

            view = file.storage.view(start, size)
            try:
                image = inner_image(view, 0, size, track, f"{layout.INPUT_TRACK}[{index}]")
            except BoxError as exc:
                raise at_file_offset(exc, start) from None
            data = bytes(to_annexb(image))
            del image, view
            return data
        key: str | int = layout.INPUT_TRACK if track is None else int(track) if track.isdigit() else track
        outer = file.track(key)
        index = _check_index(index, outer)
        return file.storage.read(int(outer.offsets[index]), int(outer.sizes[index]))


def _check_index(index: int, track) -> int:
    if not -len(track) <= index < len(track):
        raise IndexError(f"sample index {index} out of range: {_label(track)} has {len(track):,} samples")
    return index % len(track)
