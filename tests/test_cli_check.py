"""``rnnlm check MODEL...``: every CRC, array and invariant of model files of each kind."""
from __future__ import annotations

import pytest

from test_cli_errors import assert_fails, assert_ok, run, write
from zip_surgery import SMALL_CORPUS, set_crc


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An n-gram model with its ARPA file, and an RNN model with its checkpoint."""
    folder = tmp_path_factory.mktemp("check")
    corpus = write(folder / "corpus.txt", SMALL_CORPUS)
    assert_ok(run("train-ngram", corpus, "-o", folder / "kn.npz", "--arpa", folder / "kn.arpa"))
    assert_ok(run("train-rnn", corpus, "-o", folder / "rnn.npz", "--hidden", "8", "--epochs",
                  "1", "--batch-size", "2", "--bptt", "5", "--checkpoint-every", "60"))
    return folder


@pytest.fixture
def work(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in models.iterdir():
        write(tmp_path / path.name, path.read_bytes())
    return tmp_path


def test_check_prints_one_ok_line_per_model(work):
    result = run("check", "kn.npz", "kn.arpa", "rnn.npz", "rnn.checkpoint.npz")
    assert_ok(result)
    assert result.stdout.splitlines() == [
        "kn.npz: ok (order-3 n-gram model, 21 words, 80 n-grams)",
        "kn.arpa: ok (order-3 n-gram model, 21 words, 80 n-grams)",
        "rnn.npz: ok (1-layer lstm model, hidden 8, 20 words)",
        "rnn.checkpoint.npz: ok (train-rnn checkpoint after epoch 1, 12 arrays)",
    ]
    assert result.stderr == ""


def test_check_stops_at_the_first_bad_file(work):
    write(work / "bad.npz", set_crc((work / "kn.npz").read_bytes(), "keys_2.npy", 7))
    result = run("check", "kn.npz", "bad.npz", "rnn.npz")
    assert result.exit_code == 1
    assert result.stdout == "kn.npz: ok (order-3 n-gram model, 21 words, 80 n-grams)\n"
    assert result.stderr == "Error: bad.npz: corrupt archive: Bad CRC-32 for file 'keys_2.npy'\n"


def test_check_of_a_missing_file(work):
    assert_fails(run("check", "nope.npz"), 1, "Error: nope.npz: no such file")


def test_check_needs_a_model(work):
    assert_fails(run("check"), 2, contains=["Missing argument 'MODEL...'"])


def test_check_help_has_an_example():
    result = run("check", "--help")
    assert_ok(result)
    assert "Example:" in result.stdout and "rnnlm check en.npz" in result.stdout
