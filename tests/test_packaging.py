"""Packaging: the version on the command line, typing marker, licence."""

import os
import subprocess
import sys
from importlib import resources

import bzna_boxes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_flag_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "bzna_boxes", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"bzna {bzna_boxes.__version__}"


def test_the_package_is_marked_as_typed():
    assert resources.files("bzna_boxes").joinpath("py.typed").is_file()


def test_the_licence_is_declared_and_shipped():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert 'license = "MIT"' in text
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.readline().strip() == "MIT License"


def test_a_bad_preset_names_the_valid_ones(tmp_path):
    from PIL import Image

    (tmp_path / "src" / "a").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "src" / "a" / "x.png")
    out = tmp_path / "d.bzna"
    result = subprocess.run(
        [sys.executable, "-m", "bzna_boxes", "build", str(tmp_path / "src"), str(out), "--preset", "fastest", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "--preset 'fastest' is not an x265 preset" in result.stderr and "ultrafast" in result.stderr
    assert not out.exists()


def test_a_file_that_is_not_iso_bmff_says_what_it_is(tmp_path):
    from PIL import Image

    import pytest

    path = tmp_path / "x.jpg"
    Image.new("RGB", (32, 32)).save(path)
    with pytest.raises(bzna_boxes.BoxError, match="not an ISO-BMFF .* JPEG image's"):
        bzna_boxes.Dataset(path)
    (tmp_path / "y.bin").write_bytes(b"\x00\x00\x00\x10\x01\x02\x03\x04" + bytes(8))
    with pytest.raises(bzna_boxes.BoxError, match="first box type is"):
        bzna_boxes.open(tmp_path / "y.bin").tracks
    (tmp_path / "z.bin").write_bytes(b"abc")
    with pytest.raises(bzna_boxes.BoxError, match="not an ISO-BMFF .* its 3 bytes are too few for a box header"):
        bzna_boxes.open(tmp_path / "z.bin").tracks


def _extras() -> dict[str, list[str]]:
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def test_extras_are_not_pinned_to_one_build_and_decode_names_encode():
    extras = _extras()
    assert extras["decode"] == ["bzna_boxes[encode]"]  # one set of packages, two names
    pins = [spec for specs in extras.values() for spec in specs if "==" in spec]
    assert pins == [], f"extras pinned to one release: {pins}"
    from packaging.requirements import Requirement

    torch_spec = next(Requirement(spec) for spec in extras["test"] if spec.startswith("torch"))
    assert torch_spec.specifier.contains("2.1.0") and torch_spec.specifier.contains("2.13.0+cpu")
