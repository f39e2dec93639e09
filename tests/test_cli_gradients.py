"""``rnnlm gradients`` through the CLI: a trained model, an untrained one from options,
--json, the chart, --plot without matplotlib, and the bad inputs of issue 5 (exact
``Error:`` lines, no traceback)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CORPORA
from rnnlm_cli.models import open_model
from rnnlm_cli.rnn.gradients import measure_gradients, model_network
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig
from test_cli_errors import assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"
TEXT = "".join(line + "\n" for line in EN.read_text(encoding="utf-8").splitlines()[:40])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A small trained LSTM and an n-gram model, made once."""
    path = tmp_path_factory.mktemp("gradients")
    write(path / "text.txt", TEXT)
    write(path / "short.txt", "Only five words here .\n")
    assert_ok(run("train-rnn", EN, "--hidden", "16", "--epochs", "1", "-o", path / "rnn.npz"))
    assert_ok(run("train-ngram", path / "text.txt", "-o", path / "ngram.npz"))
    return path


def test_trained_model_json_equals_the_library(folder):
    result = run("gradients", folder / "rnn.npz", folder / "text.txt", "--max-distance", "10",
                 "--json")
    assert_ok(result)
    record = json.loads(result.stdout)
    assert record["distances"] == list(range(11)) and record["cell"] == "lstm"
    lm = open_model(str(folder / "rnn.npz"))
    tokenizer = Tokenizer(TokenizerConfig.from_dict(lm.metadata["tokenizer"]))
    net, stream = model_network(lm, "m", list(tokenizer.tokenize_lines(TEXT.splitlines())))
    report = measure_gradients(net, stream, 10, max_chunks=20)
    np.testing.assert_allclose(record["mean_norm"], report.mean_norm, rtol=1e-12)
    assert record["jacobian_norm"] == pytest.approx(report.jacobian_norm, rel=1e-12)


def test_table_and_chart(folder):
    result = run("gradients", folder / "rnn.npz", folder / "text.txt", "--max-distance", "8")
    assert_ok(result)
    rows = [line for line in result.stdout.splitlines() if line[:8].strip().isdigit()]
    assert [int(row.split()[0]) for row in rows] == list(range(9))
    assert "█" in result.stdout
    assert "layer 1 of 1" in result.stdout and "LSTM's h" in result.stdout
    assert "mean spectral norm of the Jacobian d(h, c)_t/d(h, c)_(t-1)" in result.stdout


@pytest.mark.parametrize("options", [["--cell", "rnn", "--activation", "tanh", "--init",
                                      "normal", "--hidden", "20"],
                                     ["--cell", "gru", "--hidden", "8", "--layers", "2"],
                                     ["--hidden", "8", "--seed", "3"]])
def test_untrained_model_from_options(folder, options):
    result = run("gradients", *options, folder / "text.txt", "--max-distance", "6", "--json")
    assert_ok(result)
    record = json.loads(result.stdout)
    assert len(record["mean_norm"]) == 7 and all(v > 0 for v in record["mean_norm"])


def test_the_seed_gives_train_rnns_starting_point(folder):
    a = run("gradients", "--hidden", "8", "--seed", "4", folder / "text.txt", "--json")
    b = run("gradients", "--hidden", "8", "--seed", "4", folder / "text.txt", "--json")
    c = run("gradients", "--hidden", "8", "--seed", "5", folder / "text.txt", "--json")
    assert a.stdout == b.stdout != c.stdout


def test_max_distance_zero_is_a_usage_error(folder):
    assert_fails(run("gradients", folder / "rnn.npz", folder / "text.txt", "--max-distance",
                     "0"), 2, "Error: Invalid value for '--max-distance': 0 is not in the "
                              "range x>=1.")


def test_short_text_computes_what_it_can(folder):
    result = run("gradients", folder / "rnn.npz", folder / "short.txt", "--json")
    assert_ok(result)
    record = json.loads(result.stdout)
    assert record["max_distance"] == 5 and record["requested_max_distance"] == 50
    assert (f"Warning: {folder / 'short.txt'}: the text gives 6 step(s) per stream, so "
            "distances above 5 cannot be measured (asked for 50); add text or lower "
            "--max-distance") in result.stderr


def test_ngram_model_is_refused(folder):
    model = folder / "ngram.npz"
    assert_fails(run("gradients", model, folder / "text.txt"), 1,
                 f"Error: {model}: an n-gram model: gradients exist only for recurrent "
                 "models (train one with rnnlm train-rnn)")


def test_model_or_options_not_both_nor_neither(folder):
    assert_fails(run("gradients", folder / "rnn.npz", folder / "text.txt", "--cell", "gru"), 2,
                 contains=["not both", "--cell"])
    assert_fails(run("gradients", folder / "text.txt"), 2,
                 contains=["give a MODEL file before TEXT, or network options"])
    assert_fails(run("gradients", "a", "b", "c"), 2, contains=["one or two files, not 3"])


def test_plot_without_matplotlib(folder, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert_fails(run("gradients", folder / "rnn.npz", folder / "text.txt", "--plot",
                     folder / "g.png"), 1,
                 "Error: --plot needs matplotlib, which is not installed (pip install "
                 "matplotlib); the table and chart need nothing")
    assert not (folder / "g.png").exists()


def test_plot_writes_a_png_where_matplotlib_is_installed(folder):
    pytest.importorskip("matplotlib", reason="--plot needs the optional matplotlib")
    png = folder / "curve.png"
    result = run("gradients", folder / "rnn.npz", folder / "text.txt", "--plot", png)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_text_file(folder):
    assert_fails(run("gradients", "--hidden", "8", folder / "absent.txt"), 1,
                 contains=["absent.txt"])
