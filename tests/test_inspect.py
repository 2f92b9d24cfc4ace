"""``bzna inspect``: text and JSON trees of the real fixtures, depth and type filters, header forms, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bzna_boxes import Box, Boxes, walk
from bzna_boxes.cli import main

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO / "fixtures" / "media"
H265 = MEDIA / "h265.mp4"


def inspect(capsys, *argv) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def flatten(nodes: list[dict]) -> list[dict]:
    out = []
    for node in nodes:
        out.append(node)
        out += flatten(node.get("children", []))
    return out


def test_text_tree_of_h265(capsys):
    code, out, err = inspect(capsys, H265)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:4] == [
        "[ftyp] offset=0 size=8+20",
        "  major_brand = isom",
        "  minor_version = 512",
        "  compatible_brands = [isom, iso2, mp41]",
    ]
    assert "[mdat] offset=36 size=8+2156" in lines
    assert "  data = 2,156 bytes" in lines  # mdat: its length only
    assert "            entry_sizes = 10 entries [152, 332, 242, ..., 111, 111, 181]" in lines
    assert "          [stsd] offset=2609 size=8+2561" in lines
    hvcc = "\n".join(lines[lines.index("              [hvcC] offset=2711 size=8+2439") :])
    assert "general_profile_idc = 1\n" in hvcc and "general_level_idc = 30\n" in hvcc
    assert "nal_unit_type=32 (VPS), num_nalus=1, nalus=[<24 bytes 40010c01ffff0160...>]" in hvcc
    assert "nal_unit_type=39 (prefix SEI), num_nalus=1, nalus=[<2326 bytes" in hvcc
    assert "        name = 'VideoHandler\\x00'" in lines  # the NUL the writer put there is shown
    assert not any("reserved" in line or "pre_defined" in line for line in lines)


def test_text_shows_every_box_once(media_file, capsys):
    code, out, _ = inspect(capsys, media_file)
    tree = Boxes.parse(media_file.read_bytes())
    headers = [line.strip() for line in out.splitlines() if line.lstrip().startswith("[")]
    assert code == 0
    assert [h.split("]")[0][1:] for h in headers] == [box.type for _, box in walk(tree)]
    assert [int(h.split("offset=")[1].split()[0]) for h in headers] == [box._offset for _, box in walk(tree)]


def test_json_matches_the_parse(media_file, capsys):
    code, out, _ = inspect(capsys, media_file, "--json")
    nodes = flatten(json.loads(out))
    tree = Boxes.parse(media_file.read_bytes())
    assert code == 0
    assert [(n["path"], n["type"], n["offset"], n["size"]) for n in nodes] == [
        (path, box.type, box._offset, box._size) for path, box in walk(tree)
    ]


def test_json_fields(capsys):
    _, out, _ = inspect(capsys, H265, "--json", "--entries", "2")
    nodes = {n["path"]: n for n in flatten(json.loads(out))}
    stbl = "moov/trak/mdia/minf/stbl"
    assert nodes[f"{stbl}/stsz"]["fields"]["entry_sizes"] == {"count": 10, "first": [152, 332], "last": [111, 181]}
    assert nodes[f"{stbl}/stts"]["fields"]["entries"] == {"count": 1, "first": [{"sample_count": 10, "sample_delta": 1024}], "last": []}
    assert nodes["mdat"]["fields"] == {"data": {"length": 2156}}
    assert nodes["mdat"]["header_size"] == 8 and "large_size" not in nodes["mdat"]
    hdlr = nodes["moov/trak/mdia/hdlr"]["fields"]
    assert hdlr["handler_type"] == "vide" and hdlr["name"] == "VideoHandler\x00"
    assert hdlr["reserved"] == {"hex": "00" * 12, "length": 12}  # JSON keeps every field
    arrays = nodes[f"{stbl}/stsd/hvc1/hvcC"]["fields"]["arrays"]
    assert [a["nal_unit_type"] for a in arrays] == [32, 33, 34, 39]
    sei = arrays[3]["nalus"][0]
    assert sei["length"] == 2326 and len(sei["hex"]) == 32  # hex prefix of 16 bytes
    assert nodes["moov/mvhd"]["fields"]["matrix"] == [65536, 0, 0, 0, 65536, 0, 0, 0, 1073741824]
    assert nodes[f"{stbl}/stsd"]["fields"]["entry_count"] == 1


def test_entries_zero_gives_counts_only(capsys):
    _, out, _ = inspect(capsys, H265, "--json", "--entries", "0", "--type", "stsz")
    (stsz,) = json.loads(out)
    assert stsz["fields"]["entry_sizes"] == {"count": 10, "first": [], "last": []}


def test_depth_limits_the_tree(capsys):
    _, out, _ = inspect(capsys, H265, "--depth", "1")
    assert [line.split("]")[0] for line in out.splitlines() if line.startswith("[")] == ["[ftyp", "[free", "[mdat", "[moov"]
    assert "[moov] offset=2200 size=8+3318  (3 children not shown)" in out.splitlines()
    assert not any(line.startswith("  [") for line in out.splitlines())
    _, out, _ = inspect(capsys, H265, "--depth", "2", "--json")
    nodes = json.loads(out)
    moov = nodes[-1]
    assert [c["type"] for c in moov["children"]] == ["mvhd", "trak", "udta"]
    assert all("children" not in c for c in moov["children"])
    assert moov["children"][1]["child_count"] == 3 and "child_count" not in moov["children"][0]


def test_type_filter_lists_boxes_with_their_paths(capsys):
    _, out, _ = inspect(capsys, MEDIA / "av_interleaved.mp4", "--type", "stsz", "--type", "hdlr", "--json")
    paths = [n["path"] for n in json.loads(out)]
    assert paths == [
        "moov/trak/mdia/hdlr",
        "moov/trak/mdia/minf/stbl/stsz",
        "moov/trak[1]/mdia/hdlr",
        "moov/trak[1]/mdia/minf/stbl/stsz",
        "moov/udta/meta/hdlr",
    ]
    _, out, _ = inspect(capsys, MEDIA / "av_interleaved.mp4", "--type", "stsz")
    assert [line.split()[0] for line in out.splitlines() if line.startswith("[")] == [
        "[moov/trak/mdia/minf/stbl/stsz]",
        "[moov/trak[1]/mdia/minf/stbl/stsz]",
    ]
    _, out, _ = inspect(capsys, MEDIA / "av_interleaved.mp4", "--type", "stsz", "--depth", "5")
    assert out == ""  # stsz lies at depth 6


def test_avcc_and_clap_fields(capsys):
    _, out, _ = inspect(capsys, MEDIA / "h264.mp4", "--type", "avcC")
    assert "  avc_profile_indication = 100" in out and "  avc_level_indication = 10" in out
    assert "  num_of_sequence_parameter_sets = 1" in out and "  num_of_picture_parameter_sets = 1" in out
    _, out, _ = inspect(capsys, MEDIA / "image_odd.heic", "--type", "clap", "--json")
    (clap,) = json.loads(out)
    fields = clap["fields"]
    assert (fields["clean_aperture_width_n"], fields["clean_aperture_height_n"]) == (233, 201)
    assert (fields["horiz_off_n"], fields["horiz_off_d"], fields["vert_off_n"]) == (-1, 2, -1)


def test_header_forms(tmp_path, capsys):
    boxes = [
        {"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["bzna", "isom"]},
        {"type": "uuid", "extended_type": bytes(range(16)), "data": b"abc"},
        {"type": "free", "large_size": True, "data": b""},
        {"type": "mdat", "size_to_end": True, "data": b"payload"},
    ]
    path = tmp_path / "forms.mp4"
    path.write_bytes(Boxes.build(boxes))
    _, out, _ = inspect(capsys, path)
    lines = out.splitlines()
    assert "[uuid] offset=24 size=24+3  (uuid 000102030405060708090a0b0c0d0e0f)" in lines
    assert "[free] offset=51 size=16+0  (largesize)" in lines
    assert "[mdat] offset=67 size=8+7  (size 0 (to end))" in lines
    _, out, _ = inspect(capsys, path, "--json")
    nodes = json.loads(out)
    assert nodes[1]["extended_type"] == bytes(range(16)).hex() and nodes[1]["header_size"] == 24
    assert nodes[2]["large_size"] is True and nodes[2]["header_size"] == 16
    assert nodes[3]["size_to_end"] is True and nodes[3]["fields"] == {"data": {"length": 7}}


def test_mdat_past_4_gib_is_never_read(tmp_path, capsys):
    """A sparse file: a largesize mdat of 5 GiB (a hole), then a moov whose co64 points past 4 GiB."""
    payload = 5 << 30
    head = Box.build({"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["bzna", "isom"]})
    offsets = np.array([40, 1 << 32, (1 << 32) + 7], ">u8")
    stbl = {"type": "stbl", "children": [{"type": "co64", "chunk_offsets": offsets}]}
    moov = Box.build({"type": "moov", "children": [{"type": "trak", "children": [{"type": "mdia", "children": [{"type": "minf", "children": [stbl]}]}]}]})
    path = tmp_path / "big.bzna"
    with open(path, "wb") as f:
        f.write(head + (1).to_bytes(4, "big") + b"mdat" + (16 + payload).to_bytes(8, "big"))
        f.seek(payload, os.SEEK_CUR)
        f.write(moov)
    _, out, _ = inspect(capsys, path, "--entries", "1")
    lines = out.splitlines()
    assert f"[mdat] offset=24 size=16+{payload}  (largesize)" in lines
    assert f"  data = {payload:,} bytes" in lines
    assert f"[moov] offset={40 + payload} size=8+{len(moov) - 8}" in lines
    assert "            chunk_offsets = 3 entries [40, ..., 4294967303]" in lines


def test_truncated_file_exits_1_with_path_and_offset(tmp_path):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(H265.read_bytes()[:3000])
    proc = subprocess.run([sys.executable, "-m", "bzna_boxes.cli", "inspect", str(path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["bzna inspect: moov at offset 2200: 'moov' box size 3326 runs past the end of its parent (800 bytes left)"]


def test_bad_box_inside_a_table_names_its_path(tmp_path, capsys):
    data = bytearray(H265.read_bytes())
    stsz = data.index(b"stsz") - 4  # entry count 10 -> 1000: more entries than bytes
    data[stsz + 16 : stsz + 20] = (1000).to_bytes(4, "big")
    path = tmp_path / "bad_stsz.mp4"
    path.write_bytes(bytes(data))
    code, out, err = inspect(capsys, path)
    assert code == 1 and out == ""
    assert err.startswith("bzna inspect: moov/trak/mdia/minf/stbl/stsz at offset ")
    assert "1000 entries of 4 bytes need 4000 bytes" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("option", [["--depth", "0"], ["--entries", "-1"]])
def test_bad_options_exit_2(option, capsys):
    code, out, err = inspect(capsys, H265, *option)
    assert code == 2 and out == ""
    assert err.startswith(f"bzna inspect: {option[0]} must be at least")


def test_missing_file_exits_1(tmp_path, capsys):
    code, _, err = inspect(capsys, tmp_path / "absent.mp4")
    assert code == 1 and "No such file" in err


def test_inspect_imports_no_heavy_packages():
    code = "import sys, bzna_boxes.inspect; print(sorted(m for m in ('av', 'torch', 'PIL', 'dask') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
