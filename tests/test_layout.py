"""Who may import whom (DESIGN.md, docs/architecture.md), read from the source with ``ast``:
a change that breaks the layering fails here, not in a reviewer's head.

- ``cli.py`` is the only module that imports click, and only ``__main__`` imports it;
- the ground floor (text, vocabulary, hashing, model files, output files, threads)
  imports nothing of the project but itself;
- ``lm.py``, ``scoring.py``, ``decoding.py`` and ``mixture.py`` know models only through
  ``lm.py``: they never import a backend (``ngram/``, ``rnn/``) or ``models.py``;
- ``ngram/`` and ``rnn/`` never import each other.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

from conftest import ROOT

PACKAGE = ROOT / "rnnlm_cli"
GROUND_FLOOR = {"errors", "options", "tokenizer", "utf8", "vocab", "hashing", "modelfile",
                "outputs", "parallel", "allocator", "progress", "charts"}
THROUGH_LM = {"lm", "scoring", "decoding", "mixture"}
BACKENDS = ("ngram", "rnn")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def imports_of(path: Path) -> Set[str]:
    """The project modules (``rnnlm_cli.`` dropped) and ``click`` that ``path`` imports,
    at any depth (imports inside functions count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")[:-1] if path.name != "__init__.py" else \
        module_name(path).split(".")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: from .x import y, from . import x
                base = package[:len(package) - node.level + 1]
                prefix = ".".join(["rnnlm_cli", *base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "click" or name.startswith("click."):
                found.add("click")
            elif name.startswith("rnnlm_cli.") and _is_module(name[len("rnnlm_cli."):]):
                found.add(name[len("rnnlm_cli."):])
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def all_imports() -> Dict[str, Set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def violations(module: str, imported: Set[str]) -> List[str]:
    """What ``module`` may not import, of ``imported`` (see the module docstring)."""
    wrong = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if name == "click" and module != "cli":
            wrong.append("click (only cli.py imports click)")
        elif name == "cli" and module != "__main__":
            wrong.append("cli (only __main__ imports the command line)")
        elif module in GROUND_FLOOR and name != "click" and name not in GROUND_FLOOR:
            wrong.append(f"{name} (the ground floor imports only itself)")
        elif module in THROUGH_LM and (top in BACKENDS or name == "models"):
            wrong.append(f"{name} ({module} knows models only through lm.py)")
        elif module.split(".")[0] in BACKENDS and top in BACKENDS \
                and top != module.split(".")[0]:
            wrong.append(f"{name} (ngram/ and rnn/ never import each other)")
    return wrong


@pytest.mark.parametrize("module, imported", sorted(all_imports().items()))
def test_module_keeps_to_its_floor(module, imported):
    assert violations(module, imported) == [], module


def test_the_rules_catch_what_they_forbid():
    assert violations("scoring", {"ngram.model", "lm"}) == [
        "ngram.model (scoring knows models only through lm.py)"]
    assert violations("vocab", {"parallel", "rnn.config"}) == [
        "rnn.config (the ground floor imports only itself)"]
    assert violations("ngram.arpa", {"rnn.model", "vocab"}) == [
        "rnn.model (ngram/ and rnn/ never import each other)"]
    assert violations("models", {"click", "cli"}) == [
        "cli (only __main__ imports the command line)", "click (only cli.py imports click)"]


def test_the_reader_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    imports = all_imports()
    assert "hashing" in imports["tokenizer"]              # from .hashing import padded_bytes
    assert "ngram.arpa" in imports["models"]              # an import inside a function
    assert "click" in imports["cli"]
