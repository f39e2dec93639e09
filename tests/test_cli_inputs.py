"""Inputs that are not what they should be follow one rule (issue 12, point 8): a MODEL,
``--valid``, ``--resume`` or ``--prompt-file`` that cannot be read is a user error, exit 1
and one line, exactly like a CORPUS; and ``complete``'s TSV stays three columns whatever
the prefix holds (point 9)."""
from __future__ import annotations

import pytest

from conftest import CORPORA
from test_cli_errors import CORPUS, assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    (tmp_path / "folder").mkdir()
    assert_ok(run("train-ngram", EN, "-o", "m.npz"))
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["perplexity", "folder", "corpus.txt"], "Error: folder: is a directory"),
    (["generate", "folder"], "Error: folder: is a directory"),
    (["complete", "folder", "The"], "Error: folder: is a directory"),
    (["gradients", "folder", "corpus.txt"], "Error: folder: is a directory"),
    (["perplexity", "missing.npz", "corpus.txt"], "Error: missing.npz: no such file"),
    (["train-ngram", "folder", "-o", "x.npz"], "Error: folder: is a directory"),
    (["train-rnn", "corpus.txt", "--valid", "folder", "-o", "x.npz"],
     "Error: folder: is a directory"),
    (["train-rnn", "corpus.txt", "--valid", "missing.txt", "-o", "x.npz"],
     "Error: missing.txt: no such file"),
    (["train-rnn", "corpus.txt", "--resume", "folder", "-o", "x.npz"],
     "Error: folder: is a directory"),
    (["generate", "m.npz", "--prompt-file", "folder"], "Error: folder: is a directory"),
    (["generate", "m.npz", "--prompt-file", "missing.txt"], "Error: missing.txt: no such file"),
])
def test_unreadable_inputs_are_user_errors(work, args, message):
    assert_fails(run(*args), 1, message, absent=["x.npz"])


def test_complete_escapes_tab_newline_and_backslash_in_the_prefix(work):
    prefix = "The\tcat\\ sat\non"
    result = run("complete", "m.npz", prefix, "--top", "2")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 3
        assert fields[0] == "The\\tcat\\\\ sat\\non"
        float(fields[2])


def test_complete_leaves_ordinary_prefixes_as_they_are(work):
    result = run("complete", "m.npz", "The market", "--top", "1")
    assert_ok(result)
    assert result.stdout.split("\t")[0] == "The market"
