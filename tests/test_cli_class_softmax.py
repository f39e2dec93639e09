"""A class-softmax model (``train-rnn --softmax class``) through every command: scoring
gives the figures of its whole distribution, ``complete --top 0`` sums to one over the
vocabulary, generation, gradients, resume; and the bad input of ``--softmax`` and
``--classes``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rnnlm_cli.models import open_model
from rnnlm_cli.rnn.data import hold_out
from rnnlm_cli.rnn.decoders import frequency_classes
from test_cli_errors import assert_fails, assert_ok, run, write
from test_cli_rnn import CORPUS, SMALL, interrupt_at, train, weights

CLASSES = ["--softmax", "class", "--classes", "6"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    return tmp_path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    write(folder / "corpus.txt", CORPUS)
    result = train(folder / "corpus.txt", "-o", folder / "c.npz", "--epochs", 2, *CLASSES,
                   *SMALL)
    assert "6 word classes" in result.stderr
    return folder


def step_by_step_log10(model, tokens):
    """log10 P(sentence) from the model's whole next-word distributions, read word by word
    (the path decoding takes), ``</s>`` included."""
    ids = [model.vocab.id(t) for t in tokens] + [model.vocab.eos_id]
    state, total = model.initial_state(1), 0.0
    for word in ids:
        log_probs = model.log_probs(state)[0]
        assert math.isclose(np.exp(log_probs).sum(), 1.0, abs_tol=1e-9)
        total += log_probs[word]
        state = model.advance(state, np.array([word]))
    return total / math.log(10)


def test_the_model_file_holds_the_classes(folder):
    model = open_model(str(folder / "c.npz"))
    assert model.metadata["rnn_config"]["softmax"] == "class"
    assert model.network.decoder.classes == 6
    train_lines, _ = hold_out(CORPUS.splitlines())
    stream = [model.vocab.id(t) for tokens in model.tokenizer.tokenize_lines(train_lines)
              for t in tokens + ["</s>"]]
    words, starts = frequency_classes(np.bincount(stream, minlength=len(model.vocab)), 6,
                                      outside=model.vocab.bos_id)
    assert np.array_equal(model.network.decoder.words, words)   # binned by training counts
    assert np.array_equal(model.network.decoder.starts, starts)


def test_perplexity_is_the_figure_of_the_whole_distribution(folder):
    model = open_model(str(folder / "c.npz"))
    lines = CORPUS.splitlines()[:6]
    write(folder / "six.txt", "".join(line + "\n" for line in lines))
    result = run("perplexity", folder / "c.npz", folder / "six.txt", "--per-sentence")
    assert_ok(result)
    printed = [float(line.split("\t")[0]) for line in result.stdout.splitlines()[:6]]
    expected = [step_by_step_log10(model, model.tokenizer.tokenize(line)) for line in lines]
    assert printed == pytest.approx(expected, abs=2e-4)


def test_complete_top_0_sums_to_one_over_the_vocabulary(folder):
    model = open_model(str(folder / "c.npz"))
    for prefix in ("", "The", "The market opens"):
        result = run("complete", folder / "c.npz", prefix, "--top", "0")
        assert_ok(result)
        lines = result.stdout.splitlines()
        assert len(lines) == len(model.vocab) - 1                 # every word but <s>
        total = sum(10 ** float(line.rsplit("\t", 1)[1]) for line in lines)
        assert total == pytest.approx(1.0, abs=1e-4)


def test_generate_and_gradients_work_on_a_class_model(folder):
    result = run("generate", folder / "c.npz", "--num", "3", "--seed", "1")
    assert_ok(result)
    assert len(result.stdout.splitlines()) == 3
    result = run("gradients", folder / "c.npz", folder / "corpus.txt", "--max-distance", "5",
                 "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert len(report["mean_norm"]) == 6 and all(v > 0 for v in report["mean_norm"])


def test_ctrl_c_and_resume_give_the_same_class_model(work, monkeypatch):
    args = ["corpus.txt", "-o", "m.npz", "--epochs", 2, *CLASSES, *SMALL]
    train("corpus.txt", "-o", "whole.npz", *args[3:])
    with monkeypatch.context() as patch:
        interrupt_at(patch, 15)
        result = run("train-rnn", *args)
    assert result.exit_code == 130 and "Traceback" not in result.stderr
    train(*args, "--resume", "m.checkpoint.npz")
    assert weights(work / "m.npz") == weights(work / "whole.npz")


def test_auto_is_the_full_softmax_on_a_small_vocabulary(work):
    result = train("corpus.txt", "-o", "m.npz", "--epochs", 1, *SMALL)
    assert "(full softmax)" in result.stderr
    assert open_model("m.npz").metadata["rnn_config"]["softmax"] == "full"


# (Options that cannot go together are usage errors, 2; classes the corpus's vocabulary is too
# small for are found once it is read, 1, as a network too big for memory is.)
@pytest.mark.parametrize("args, status, message", [
    (["--classes", "0"], 2, "Error: Invalid value for '--classes': 0 is not in the range x>=2."),
    (["--softmax", "classy"], 2, "Error: Invalid value for '--softmax': 'classy' is not one "
                                 "of 'auto', 'full', 'class'."),
    (["--classes", "1000"], 1, "Error: --softmax class with 1000 classes needs 2000 words to "
                               "predict"),
    (["--softmax", "full", "--classes", "5"], 2, "Error: --classes needs --softmax class"),
    (["--softmax", "class", "--tie-weights"], 2, "Error: --tie-weights works with --softmax "
                                                 "full only"),
])
def test_bad_class_options(work, args, status, message):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", *args, *SMALL), status,
                 contains=[message], absent=["m.npz", "m.checkpoint.npz"])


def test_a_class_softmax_on_a_three_word_vocabulary_is_refused(work):
    write(work / "tiny.txt", "a a a\n" * 40)                    # <unk>, </s>, a: 3 words
    assert_fails(run("train-rnn", "tiny.txt", "-o", "m.npz", "--softmax", "class", *SMALL),
                 1, contains=["Error: --softmax class with 2 classes needs at least 4 words to "
                              "predict", "this vocabulary has 3"], absent=["m.npz"])
