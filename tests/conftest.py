"""Shared test fixtures and the hypothesis profiles (``BZNA_HYPOTHESIS_PROFILE=ci|long``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO / "fixtures" / "media"
MEDIA_FILES = sorted(p for p in MEDIA.iterdir() if p.is_file())

# ci: deterministic (derandomize, no example database), no time limit per example (a loaded machine is slow).
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# long: random seeds and 20 times the examples (tests/strategies.examples), for local fuzzing.
settings.register_profile("long", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("BZNA_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=MEDIA_FILES, ids=lambda p: p.name)
def media_file(request) -> Path:
    """Each real file of fixtures/media in turn."""
    return request.param
