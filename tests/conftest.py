"""Shared fixtures: the project's corpora and the real corpora in ../shared; a CliRunner."""
import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPORA = ROOT / "corpora"


@pytest.fixture
def shared():
    """``../shared`` (real corpora and KenLM's reference results), or skip."""
    if not (SHARED / "corpora").is_dir():
        pytest.skip("../shared/corpora is absent (real corpora live beside the project in CI)")
    return SHARED


def cli_runner():
    """A ``CliRunner`` whose results keep standard error apart in ``result.stderr``: Click 8.2
    always does (and has no ``mix_stderr``); Click 8.0 and 8.1 mix it into stdout by default."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()
