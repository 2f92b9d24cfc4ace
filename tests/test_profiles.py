"""The Hypothesis profiles of tests/conftest.py: nothing depends on how fast a loaded machine runs."""

from __future__ import annotations

from hypothesis import settings


def test_no_profile_has_a_deadline():
    assert settings.get_profile("ci").deadline is None
    assert settings.get_profile("long").deadline is None
    assert settings.get_profile("ci").derandomize
