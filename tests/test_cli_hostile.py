"""What a hostile but fair try of the hardened CLI found (issue 12), each now pinned:
outputs that would destroy an input, option values that overflow, interrupts before a
command runs, and the smaller rough edges."""
from __future__ import annotations

import gzip
import math
import os

import click
import pytest

from conftest import CORPORA, cli_runner
from test_cli_errors import assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"
SMALL_RNN = ["--hidden", "4", "--epochs", "1", "--batch-size", "4", "--bptt", "5"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "c.txt", EN.read_text(encoding="utf-8"))
    write(tmp_path / "v.txt", "The cat sat on the mat.\n")
    return tmp_path


def unchanged(work, name="c.txt"):
    return (work / name).read_text(encoding="utf-8") == \
        (EN.read_text(encoding="utf-8") if name == "c.txt" else "The cat sat on the mat.\n")


# -- an output that is an input ----------------------------------------------------------------

@pytest.mark.parametrize("args, option, path, read", [
    (["train-ngram", "c.txt", "-o", "c.txt"], "-o", "c.txt", "c.txt"),
    (["train-ngram", "c.txt", "-o", "x.npz", "--arpa", "c.txt"], "--arpa", "c.txt", "c.txt"),
    (["train-rnn", "c.txt", "-o", "m.npz", "--log", "c.txt", *SMALL_RNN], "--log", "c.txt",
     "c.txt"),
    (["train-rnn", "c.txt", "-o", "v.txt", "--valid", "v.txt", *SMALL_RNN], "-o", "v.txt",
     "v.txt"),
])
def test_an_output_that_is_an_input_is_refused_before_any_work(work, args, option, path,
                                                               read):
    assert_fails(run(*args), 1, f"Error: {option} {path} is {read}, a file this run reads; "
                                "writing it would destroy it: give another file")
    assert unchanged(work) and unchanged(work, "v.txt")


def test_an_input_reached_through_a_symlink_is_the_same_file(work):
    os.symlink("c.txt", work / "link.txt")
    assert_fails(run("train-ngram", "link.txt", "-o", "c.txt"), 1,
                 contains=["-o c.txt is link.txt, a file this run reads"])
    assert unchanged(work)


def test_mix_does_not_write_over_its_models_or_held_out_text(work):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz"))
    before = (work / "a.npz").read_bytes()
    assert_fails(run("mix", "a.npz", "-o", "a.npz"), 1,
                 contains=["-o a.npz is a.npz, a file this run reads"])
    assert_fails(run("mix", "a.npz", "--tune", "c.txt", "-o", "c.txt"), 1,
                 contains=["-o c.txt is c.txt, a file this run reads"])
    assert (work / "a.npz").read_bytes() == before and unchanged(work)


def test_the_log_of_a_resumed_run_is_not_its_checkpoint(work):
    assert_ok(run("train-rnn", "c.txt", "-o", "m.npz", *SMALL_RNN, "--checkpoint-every",
                  "0.0001"))
    checkpoint = (work / "m.checkpoint.npz").read_bytes()
    assert_fails(run("train-rnn", "c.txt", "-o", "n.npz", *SMALL_RNN[:2], "--epochs", "2",
                     *SMALL_RNN[4:], "--checkpoint-every", "0.0001", "--resume",
                     "m.checkpoint.npz", "--log", "m.checkpoint.npz"), 1,
                 contains=["--log m.checkpoint.npz is m.checkpoint.npz, a file this run reads"])
    assert (work / "m.checkpoint.npz").read_bytes() == checkpoint


def test_mix_refuses_an_arpa_name(work):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz"))
    assert_fails(run("mix", "a.npz", "-o", "m.arpa"), 1,
                 "Error: m.arpa: -o writes an rnnlm .npz model, not an ARPA file",
                 absent=["m.arpa"])


# -- values that overflow ------------------------------------------------------------------------

@pytest.mark.parametrize("k", ["1e-17", "1e-300"])
@pytest.mark.parametrize("memory", [[], ["--memory", "1M"]])
def test_a_tiny_add_k_is_refused_rather_than_written_as_nan(work, k, memory, recwarn):
    result = run("train-ngram", "c.txt", "-o", "a.npz", "--smoothing", "add-k", "--add-k", k,
                 *memory)
    assert_fails(result, 1,
                 "Error: the add-k estimate of the 2-grams is not a probability (floating "
                 "point gives out; try a larger --add-k); no model was written",
                 absent=["a.npz"])
    assert len(result.stderr.splitlines()) == 1          # the Error: line alone, and no
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]   # NumPy warning


@pytest.mark.parametrize("option, value", [("--forget-bias", "1e39"),
                                           ("--init-scale", "1e308"),
                                           ("--forget-bias", "-1e5")])
def test_initial_values_beyond_float32_are_usage_errors(work, option, value):
    assert_fails(run("train-rnn", "c.txt", "-o", "m.npz", *SMALL_RNN, option, value), 2,
                 contains=[option, "is not in the range"], absent=["m.npz"])


def test_a_perplexity_past_the_float_range_is_inf_not_a_traceback():
    from rnnlm_cli.scoring import _perplexity
    assert _perplexity(-1e6, 10) == math.inf
    assert _perplexity(-math.inf, 10) == math.inf
    assert _perplexity(-10.0, 10) == pytest.approx(math.e)


# -- an interrupt before the command runs ---------------------------------------------------------

@pytest.mark.parametrize("interrupt, code", [(KeyboardInterrupt(), 130), (None, 143)])
def test_an_interrupt_while_click_parses_is_one_error_line(monkeypatch, capsys, interrupt,
                                                           code):
    from rnnlm_cli import cli as cli_module
    from rnnlm_cli.process import Terminated

    def interrupted(*args, **kwargs):
        raise click.Abort() from (interrupt or Terminated())
    monkeypatch.setattr(cli_module.cli, "main", interrupted)
    assert cli_module._run_command() == code
    assert capsys.readouterr().err == "Error: interrupted; no output file was written\n"


# -- smaller edges ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["train-ngram", "c.txt", "-o", "p.npz", "--prune", "1,,2"], "--prune"),
    (["perplexity", "a.npz", "--mix", "a.npz", "--weights", "0.5,,0.5", "c.txt"], "--weights"),
])
def test_an_empty_list_item_is_a_usage_error(work, args, option):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz"))
    assert_fails(run(*args), 2, contains=[option, "has an empty item"], absent=["p.npz"])


def test_an_arpa_name_ending_in_gz_in_any_case_is_gzipped(work):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz", "--arpa", "A.ARPA.GZ"))
    with gzip.open(work / "A.ARPA.GZ", "rt", encoding="utf-8") as arpa:
        assert arpa.readline().strip() == "\\data\\"


def test_a_model_from_stdin_is_refused_clearly(work):
    assert_fails(run("perplexity", "-", "c.txt", input="x"), 1,
                 "Error: -: a model is read from a file, not from standard input")


def test_gradients_of_a_mixture_say_what_it_is(work):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz"))
    assert_ok(run("mix", "a.npz", "-o", "m.npz"))
    assert_fails(run("gradients", "m.npz", "c.txt"), 1,
                 contains=["m.npz: a mixture: gradients exist only for recurrent models"])


def test_an_unknown_word_warning_lists_each_word_once_and_at_most_ten(work):
    assert_ok(run("train-ngram", "c.txt", "-o", "a.npz"))
    prefix = " ".join(f"zz{i}" for i in range(30)) + " zz0 zz1"
    from rnnlm_cli.cli import cli
    result = cli_runner().invoke(cli, ["complete", "a.npz", prefix, "--top", "1"])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1
    assert warnings[0].endswith(": " + " ".join(f"zz{i}" for i in range(10)) + " and 20 more")
