"""Shared fixtures: the project's corpora and the real corpora in ../shared."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPORA = ROOT / "corpora"


@pytest.fixture
def shared():
    """``../shared`` (real corpora and KenLM's reference results), or skip."""
    if not (SHARED / "corpora").is_dir():
        pytest.skip("../shared/corpora is absent (real corpora live beside the project in CI)")
    return SHARED
