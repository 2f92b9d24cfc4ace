"""Sample tables that declare more samples than a file can hold: a BoxError before any allocation.

The files are made here: a small dataset whose ``bzna_input`` track is rewritten to declare
2**32 - 1 samples (a constant ``stsz`` size through one ``stsc`` run, or a ``trun`` without a
size column), then, for the sparse variants, stretched to 10 GB of apparent size with
``os.truncate`` (a hole: nothing is written). Each reader runs in a child process whose address
space is capped a little above what it already uses and the file's map, so that an attempt to allocate the 16 GiB
such a table expands to fails there instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bzna_boxes
from bzna_boxes import Box, BoxError, Boxes, find, layout

from bzna_factory import write_numbered

HUGE = 0xFFFFFFFF
SPARSE_SIZE = 10 * 10**9

_READERS = textwrap.dedent(
    """
    import json, os, resource, sys
    import numpy as np
    import bzna_boxes
    from bzna_boxes import verify as verify_module
    from bzna_boxes.errors import BoxError

    path = sys.argv[1]
    pages = int(open("/proc/self/statm").read().split()[0])
    # what the interpreter maps now, the file's map, and 1 GiB
    limit = pages * os.sysconf("SC_PAGE_SIZE") + os.path.getsize(path) + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def run(name, fn):
        try:
            fn()
        except BoxError as exc:
            return {"reader": name, "error": "BoxError", "message": str(exc)}
        except BaseException as exc:
            return {"reader": name, "error": type(exc).__name__, "message": str(exc)[:200]}
        return {"reader": name, "error": None, "message": ""}

    def verify():
        report = verify_module.verify(path)
        errors = [p for p in report.problems if p.kind == "structure"]
        if errors:
            raise BoxError(errors[0].message, offset=errors[0].offset, path=errors[0].path)

    results = [
        run("open", lambda: bzna_boxes.open(path).tracks),
        run("Dataset", lambda: len(bzna_boxes.Dataset(path))),
        run("verify", verify),
        run("extract", lambda: verify_module.extract(path, 0)),
        run("concat", lambda: bzna_boxes.concat([path], path + ".out.bzna", fsync=False)),
    ]
    print(json.dumps(results))
    """
)


def _run_readers(path: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", _READERS, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    return json.loads(out)


def _input_stbl(tree):
    for trak in find(tree, "moov").children:
        if trak.type == "trak" and str(find(trak, "mdia/hdlr").name).rstrip("\x00") == layout.INPUT_TRACK:
            return trak, find(trak, "mdia/minf/stbl")
    raise AssertionError("no bzna_input track")


def one_chunk_of_constant_size(path: Path, count: int) -> int:
    """A 16-sample dataset whose bzna_input is rewritten as one chunk of ``count`` samples of 1 byte
    (stsz's constant size, one stsc run); returns the chunk's offset."""
    write_numbered(path, 16)
    tree = Boxes.parse(path.read_bytes())
    _, stbl = _input_stbl(tree)
    start = int(find(stbl, "stco").chunk_offsets[0])
    for box in stbl.children:
        if box.type == "stsz":
            box.sample_size, box.sample_count, box.entry_sizes = 1, count, None
        elif box.type == "stsc":
            box.entries = np.array([(1, count, 1)], box.entries.dtype)
        elif box.type == "stco":
            box.chunk_offsets = np.array([start], ">u4")
    path.write_bytes(Boxes.build(tree))
    return start


def constant_size_bomb(path: Path) -> Path:
    """bzna_input: one chunk of 2**32 - 1 samples of 1 byte."""
    one_chunk_of_constant_size(path, HUGE)
    return path


def trun_bomb(path: Path) -> Path:
    """A movie fragment after moov whose trun gives bzna_input 2**32 - 1 samples of tfhd's default size 1."""
    write_numbered(path, 16)
    tree = Boxes.parse(path.read_bytes())
    trak, _ = _input_stbl(tree)
    track_id = find(trak, "tkhd").track_id
    tfhd = {"type": "tfhd", "flags": 0x020010, "track_id": track_id, "default_sample_size": 1}  # default-base-is-moof, default size
    trun = {"type": "trun", "flags": 0, "samples": np.zeros(HUGE, np.dtype([]))}  # no column: 0 bytes whatever the count
    moof = {"type": "moof", "children": [{"type": "mfhd", "sequence_number": 1}, {"type": "traf", "children": [tfhd, trun]}]}
    path.write_bytes(Boxes.build(tree) + Box.build(moof))
    return path


BOMBS = {"constant stsz": constant_size_bomb, "trun": trun_bomb}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse 10 GB"])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_count_the_file_cannot_hold_is_a_box_error_before_any_allocation(tmp_path, bomb, sparse):
    path = BOMBS[bomb](tmp_path / "bomb.bzna")
    assert path.stat().st_size < 1 << 20
    if sparse:
        os.truncate(path, SPARSE_SIZE)  # a hole: the tables stay as they are, the apparent size grows
        if path.stat().st_blocks * 512 >= SPARSE_SIZE:
            pytest.skip("this file system does not keep holes")
    results = _run_readers(path)
    assert [r["reader"] for r in results] == ["open", "Dataset", "verify", "extract", "concat"]
    for result in results:
        assert result["error"] == "BoxError", result
        assert "4,294,967,295 samples of 1 bytes are more than the file holds" in result["message"], result
        where = "moof/traf/trun" if bomb == "trun" else "/stsz"
        assert where in result["message"], result


def test_a_sparse_file_names_the_bytes_it_stores(tmp_path):
    path = constant_size_bomb(tmp_path / "bomb.bzna")
    os.truncate(path, SPARSE_SIZE)
    stored = path.stat().st_blocks * 512
    if stored >= SPARSE_SIZE:
        pytest.skip("this file system does not keep holes")
    with pytest.raises(BoxError, match=f"{stored:,} bytes stored of {SPARSE_SIZE:,}"):
        bzna_boxes.open(path)


def test_tables_that_fit_still_open(tmp_path):
    """The same layout with a count the file holds: one chunk of 16 one-byte samples."""
    path = tmp_path / "fits.bzna"
    start = one_chunk_of_constant_size(path, 16)
    with bzna_boxes.open(path) as file:
        track = file.track(layout.INPUT_TRACK)
        assert track.offsets.tolist() == list(range(start, start + 16))
        assert [bytes(track[i]) for i in range(16)] == [bytes([i]) for i in range(16)]
