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
