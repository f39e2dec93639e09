"""Option values at the edges (issue 12, point 7): refused with a message naming the limit,
or handled in memory proportional to the work actually done; warnings are one line."""
from __future__ import annotations

import re
import resource
import subprocess
import sys

import pytest

from conftest import CORPORA
from test_cli_errors import CORPUS, assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    assert_ok(run("train-ngram", EN, "-o", folder / "m.npz"))
    return folder / "m.npz"


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    return tmp_path


@pytest.mark.parametrize("command, option, value", [
    ("train-ngram", "--add-k", "inf"),
    ("train-ngram", "--add-k", "nan"),
    ("train-rnn", "--lr", "-inf"),
    ("generate", "--temperature", "inf"),
    ("generate", "--temperature", "nan"),
    ("generate", "--top-p", "nan"),
    ("train-rnn", "--dropout", "nan"),
    ("train-rnn", "--lr-decay", "nan"),
    ("train-rnn", "--checkpoint-every", "inf"),
    ("gradients", "--init-scale", "inf"),
])
def test_non_finite_values_are_refused(work, model, command, option, value):
    args = {"train-ngram": ["corpus.txt", "-o", "m.npz", "--smoothing", "add-k"],
            "generate": [model], "train-rnn": ["corpus.txt", "-o", "m.npz"],
            "gradients": ["corpus.txt", "--cell", "rnn"]}[command]
    # (Click may name the range first: inf is outside --add-k's.)
    assert_fails(run(command, *args, option, value), 2,
                 contains=[f"Error: Invalid value for '{option}': ", value], absent=["m.npz"])


def test_add_k_names_its_limit(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--smoothing", "add-k",
                     "--add-k", "1e300"), 2, contains=["--add-k", "1000000.0"],
                 absent=["m.npz"])


@pytest.mark.parametrize("args, parameters", [
    (["--hidden", "1000000"], "8e+12"),
    (["--embed", "100000000", "--hidden", "8"], "5.2e+09"),   # 20 x E + E x 32 + ...
    (["--layers", "100000", "--hidden", "1000"], "8e+11"),
])
def test_a_network_larger_than_memory_is_refused_with_the_figures(work, args, parameters):
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", "1", *args)
    assert_fails(result, 1, contains=[f"make {parameters} parameters", "to train (float32, "
                                      "4 copies), more than this machine's",
                                      "choose a smaller network"],
                 absent=["m.npz", "m.checkpoint.npz"])


def test_the_size_check_counts_every_parameter():
    from rnnlm_cli.errors import OptionError
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.initialization import check_network_fits, param_shapes
    config = RnnConfig(cell="lstm", hidden=10, embed=6)
    count = sum(int(__import__("math").prod(s)) for s in param_shapes(config, 50).values())
    assert count == 50 * 6 + (6 * 40 + 10 * 40 + 40) + (10 * 50 + 50)
    check_network_fits(config, 50, copies=4, memory=count * 16)   # exactly fits
    with pytest.raises(OptionError, match=re.escape(f"make {count:.3g} parameters")):
        check_network_fits(config, 50, copies=4, memory=count * 16 - 1)


def test_an_untrained_network_for_gradients_is_checked_too(work):
    assert_fails(run("gradients", "corpus.txt", "--hidden", "2000000"), 1,
                 contains=["make 3.2e+13 parameters", "2 copies"])   # U and W: 8 H^2


def test_a_beam_too_wide_for_the_vocabulary_names_the_limit(model):
    widest = 2 ** 24 // 1174
    assert_fails(run("complete", model, "The", "--beam", "1000000000", "--max-tokens", "3"), 1,
                 f"Error: a beam of 1000000000 hypotheses (--beam, or --top if larger) is too "
                 f"wide for 1174 words: at most {widest} (beam x words <= 16777216)")
    assert_ok(run("complete", model, "The", "--beam", str(widest), "--max-tokens", "2",
                  "--top", "1"))


def test_a_huge_top_with_one_token_is_every_next_token(model):
    result = run("complete", model, "The", "--top", "1000000000")
    assert_ok(result)
    full = run("complete", model, "The", "--top", "0")
    assert result.stdout == full.stdout


@pytest.mark.parametrize("option", ["--beam", "--top", "--max-tokens", "--num", "--hidden"])
def test_float_spellings_of_counts_are_usage_errors(model, option):
    command = "train-rnn" if option == "--hidden" else \
        "generate" if option == "--num" else "complete"
    args = [EN, "-o", "x.npz"] if command == "train-rnn" else [model]
    assert_fails(run(command, *args, option, "1e9"), 2,
                 contains=[option, "'1e9' is not a valid integer"])


def run_with_memory_limit(args, limit_bytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, "-m", "rnnlm_cli", *map(str, args)],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)


def test_generate_memory_grows_with_the_tokens_drawn_not_max_tokens(model):
    """``--max-tokens 10^9`` for 20 samples once allocated 20 x 10^9 ids up front (160 GB);
    now each sample ends at its ``</s>``, in well under a gigabyte of address space."""
    result = run_with_memory_limit(["generate", model, "--num", "20", "--seed", "4",
                                    "--max-tokens", "1000000000"], 1_500_000_000)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 20


def test_running_out_of_memory_is_one_error_line(model):
    result = run_with_memory_limit(["complete", model, "The", "--beam", "14290",
                                    "--max-tokens", "3"], 400_000_000)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: out of memory: the model, the text or the options ask for more than this "
        "machine has")


def test_a_numpy_warning_is_one_warning_line():
    code = ("from rnnlm_cli.process import prepare; prepare(); import numpy as np; "
            "np.float32(3e38) * np.float32(10)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    lines = result.stderr.splitlines()   # (NumPy 1.x says float_scalars, 2.x scalar multiply)
    assert len(lines) == 1 and lines[0].startswith("Warning: overflow encountered in ")
