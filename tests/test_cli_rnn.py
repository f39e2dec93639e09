"""``rnnlm train-rnn`` through the CLI, with the real network: training, scoring the model
with ``rnnlm perplexity``, resuming, and every bad input of issue 3 (exact ``Error:`` lines,
no files left behind). Small networks: the whole module runs in seconds."""
from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest

import rnnlm_cli.cli as cli_module
from conftest import CORPORA, cli_runner
from rnnlm_cli.modelfile import load_model
from test_cli_errors import assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"
SMALL = ["--hidden", "16", "--batch-size", "8", "--bptt", "10"]   # fast: about 0.1 s an epoch
CORPUS = "".join(line + "\n" for line in EN.read_text(encoding="utf-8").splitlines()[:120])


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    return tmp_path


def train(*args):
    result = run("train-rnn", *args)
    assert_ok(result)
    return result


def weights(path) -> dict:
    arrays, _ = load_model(str(path))
    return {k: np.asarray(v).tobytes() for k, v in arrays.items()}


def test_option_defaults_are_the_configs_defaults():
    """The command spells its defaults out for --help; they must not drift from the configs."""
    from dataclasses import asdict
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.training import TrainConfig
    # What the command resolves when no option is given (a parameter's ``default``
    # attribute is a sentinel for flags in newer Click, not the value the command sees).
    with cli_module.train_rnn.make_context("train-rnn", ["corpus.txt", "-o", "m.npz"]) as ctx:
        resolved = ctx.params
    for name, value in {**asdict(RnnConfig()), **asdict(TrainConfig())}.items():
        assert resolved[name] == value, name


# -- training and scoring ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def en_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rnn")
    result = train(EN, "-o", folder / "en.npz", "--epochs", 1, "--log", folder / "log.jsonl",
                   *SMALL)
    return folder, result


def test_train_rnn_on_the_english_corpus(en_model):
    folder, result = en_model
    lines = result.stderr.splitlines()
    assert lines[0] == "Holding out the last 24 of 488 lines for validation (--valid FILE to choose)"
    assert lines[1].startswith("epoch 1: train ppl ")
    for part in ("valid stream ppl", "(best)", "grad norm", "clipped", "lr 1,", "tokens/s"):
        assert part in lines[1]
    assert lines[-1].startswith(f"{folder / 'en.npz'}: 1-layer lstm model, H=16, ")
    assert result.stdout == ""
    arrays, meta = load_model(str(folder / "en.npz"))
    assert meta["model_type"] == "rnn" and meta["rnn_config"]["hidden"] == 16
    assert meta["tokenizer"] == {"kind": "regex", "level": "word", "lowercase": False}
    assert meta["corpus"]["sentences"] == 464 and meta["corpus"]["valid"]["sentences"] == 24
    training = meta["training"]
    assert training["epochs_run"] == 1 and training["bptt"] == 10
    assert "log" not in training and "tokens_per_s" not in training["history"][0]
    assert all(np.isfinite(a).all() for k, a in arrays.items() if a.dtype.kind == "f")
    # sentences are read from the mean state before </s> in the validation stream
    assert training["boundary_state"] == "validation mean"
    for name in ("boundary.layer0.h", "boundary.layer0.c"):
        assert arrays[name].shape == (16,) and np.abs(arrays[name]).max() > 1e-3


def test_log_has_one_json_object_per_epoch(en_model):
    folder, result = en_model
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert len(records) == 1
    assert set(records[0]) == {"epoch", "train_ppl", "valid_ppl", "grad_norm", "clipped", "lr",
                               "improved", "tokens_per_s", "seconds"}
    assert f"valid stream ppl {records[0]['valid_ppl']:.2f}" in result.stderr


def test_perplexity_scores_with_the_rnn_model(en_model):
    folder, _ = en_model
    result = run("perplexity", folder / "en.npz", "--json", input="The train leaves at noon.\n")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["sentences"] == 1 and summary["tokens"] == 7
    arrays, _ = load_model(str(folder / "en.npz"))
    assert 1 < summary["perplexity"] < len(bytes(arrays["vocab_words"]).split(b"\n"))


def test_same_seed_same_model_byte_for_byte(work):
    for name in ("a.npz", "b.npz"):
        train("corpus.txt", "-o", name, "--epochs", 2, "--dropout", "0.2", *SMALL)
    assert (work / "a.npz").read_bytes() == (work / "b.npz").read_bytes()
    train("corpus.txt", "-o", "c.npz", "--epochs", 2, "--dropout", "0.2", "--seed", 1, *SMALL)
    assert weights(work / "a.npz") != weights(work / "c.npz")


@pytest.mark.parametrize("args", [
    ["--level", "char", "--cell", "gru", "--optimizer", "adam", "--lr", "0.01"],
    ["--cell", "rnn", "--activation", "relu", "--init", "identity", "--layers", "2",
     "--optimizer", "adagrad", "--lr", "0.1"],
    ["--tie-weights", "--embed", "16", "--dropout", "0.3", "--valid", "corpus.txt"],
])
def test_train_rnn_options(work, args):
    train("corpus.txt", "-o", "m.npz", "--epochs", 1, *SMALL, *args)
    assert_ok(run("perplexity", "m.npz", input="The cat sat.\n"))


def test_a_corpus_shorter_than_one_chunk_trains_with_fewer_streams(work):
    write(work / "tiny.txt", "The cat sat on the mat.\nThe dog sat.\n")
    result = train("tiny.txt", "-o", "m.npz", "--epochs", 1, "--hidden", 8)
    assert "Note: 9 training tokens do not fill 20 streams of 21; training with 1 stream(s)" \
        in result.stderr.splitlines()
    assert (work / "m.npz").is_file()


# -- Ctrl-C, checkpoints, resume -----------------------------------------------------------------

def interrupt_at(monkeypatch, n):
    """Ctrl-C as the n-th chunk ends (through the CLI's progress callback)."""
    calls = []
    chunk = cli_module._EpochReport.chunk

    def chunk_then_ctrl_c(self, progress):
        chunk(self, progress)
        calls.append(progress)
        if len(calls) == n:
            raise KeyboardInterrupt
    monkeypatch.setattr(cli_module._EpochReport, "chunk", chunk_then_ctrl_c)


def test_ctrl_c_saves_a_checkpoint_and_resuming_gives_the_same_model(work, monkeypatch):
    args = ["corpus.txt", "-o", "m.npz", "--epochs", 2, "--dropout", "0.1", *SMALL]
    train(*args[:1], "-o", "whole.npz", *args[3:])
    with monkeypatch.context() as patch:
        interrupt_at(patch, 15)
        result = run("train-rnn", *args)
    assert result.exit_code == 130 and "Traceback" not in result.stderr
    message = result.stderr.splitlines()[-2:]
    assert message[0].startswith("Interrupted in epoch ")
    assert message[0].endswith("chunk(s): checkpoint saved to m.checkpoint.npz")
    assert message[1] == ("To resume: rnnlm train-rnn corpus.txt -o m.npz --hidden 16 "
                          "--dropout 0.1 --epochs 2 --batch-size 8 --bptt 10 "
                          "--resume m.checkpoint.npz")
    assert not (work / "m.npz").exists() and (work / "m.checkpoint.npz").is_file()
    resumed = run(*shlex.split(message[1].split(": ", 1)[1])[1:])
    assert_ok(resumed)
    assert weights(work / "m.npz") == weights(work / "whole.npz")
    assert (work / "m.npz").read_bytes() == (work / "whole.npz").read_bytes()


def test_checkpoint_every_and_resume_with_more_epochs(work):
    train("corpus.txt", "-o", "m.npz", "--epochs", 1, "--checkpoint-every", 60, *SMALL)
    assert (work / "m.checkpoint.npz").is_file()   # the finished run, to extend
    train("corpus.txt", "-o", "two.npz", "--epochs", 2, *SMALL)
    result = train("corpus.txt", "-o", "m.npz", "--epochs", 2, *SMALL,
                   "--resume", "m.checkpoint.npz")
    assert [line[:8] for line in result.stderr.splitlines() if line.startswith("epoch")] == \
        ["epoch 2:"]
    assert weights(work / "m.npz") == weights(work / "two.npz")


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--hidden", "0"], "Error: Invalid value for '--hidden': 0 is not in the range x>=1."),
    (["--bptt", "0"], "Error: Invalid value for '--bptt': 0 is not in the range x>=1."),
    (["--lr", "-1"], "Error: Invalid value for '--lr': -1.0 is not in the range x>0."),
    (["--lr", "0"], "Error: Invalid value for '--lr': 0.0 is not in the range x>0."),
    (["--cell", "transformer"],
     "Error: Invalid value for '--cell': 'transformer' is not one of 'rnn', 'gru', 'lstm'."),
    (["--dropout", "1"], "Error: Invalid value for '--dropout': 1.0 is not in the range 0<=x<1."),
    (["--lr-decay", "0"],
     "Error: Invalid value for '--lr-decay': 0.0 is not in the range 0<x<=1."),
    (["--clip-norm", "-5"],
     "Error: Invalid value for '--clip-norm': -5.0 is not in the range x>=0."),
])
def test_usage_errors(work, args, message):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", *args), 2, message,
                 absent=["m.npz", "m.checkpoint.npz"])


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "Error: Invalid value for '--lr': 'nan' is not a finite number."),
    (["--lr", "inf"], "Error: Invalid value for '--lr': 'inf' is not a finite number."),
    (["--forget-bias", "nan"],
     "Error: Invalid value for '--forget-bias': 'nan' is not a finite number."),
    (["--clip-norm", "inf"],
     "Error: Invalid value for '--clip-norm': 'inf' is not a finite number."),
    (["--init-scale", "-inf"], None),
])
def test_non_finite_option_values_are_usage_errors(work, args, message):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", *SMALL, *args), 2, message,
                 contains=[args[0]], absent=["m.npz", "m.checkpoint.npz"])


def test_inconsistent_option_values(work):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", *SMALL, "--tie-weights",
                     "--embed", "8"), 2,
                 "Error: --tie-weights needs --embed equal to --hidden (8 != 16)",
                 absent=["m.npz", "m.checkpoint.npz"])


def test_only_blank_lines(work):
    write(work / "blank.txt", "\n\n  \n")
    assert_fails(run("train-rnn", "blank.txt", "-o", "m.npz", "--valid", "corpus.txt"), 1,
                 "Error: blank.txt: no words to train on (empty, or only blank lines)",
                 absent=["m.npz"])


def test_one_line_and_no_valid_file(work):
    write(work / "one.txt", "The cat sat.\n")
    assert_fails(run("train-rnn", "one.txt", "-o", "m.npz"), 1,
                 "Error: cannot hold out validation text from a corpus of one line: "
                 "give --valid FILE", absent=["m.npz"])


def test_output_in_missing_folder(work):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "nodir/m.npz"), 1,
                 "Error: nodir/m.npz: cannot write: No such file or directory")


def test_diverging_training_writes_no_model(work):
    # At lr 1e30 the weights reach ~1e37 after one update: whether a training chunk's loss
    # overflows first or only the validation perplexity does depends on the machine's
    # rounding (both seen); either way no model may be written.
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", *SMALL, "--lr", "1e30",
                 "--clip-norm", "0")
    assert_fails(result, 1, contains=["became infinite or NaN at ", "; try --clip-norm 5 or a "
                                      "lower --lr (now 1e+30); no epoch had finished, so no "
                                      "model was written"],
                 absent=["m.npz", "m.checkpoint.npz"])
    assert re.match(r"Error: the (loss became infinite or NaN at epoch 1, chunk \d+|validation "
                    r"perplexity became infinite or NaN at the end of epoch 1);",
                    result.stderr.strip().splitlines()[-1])


def test_resume_of_a_file_that_is_not_a_checkpoint(work):
    train("corpus.txt", "-o", "m.npz", "--epochs", 1, *SMALL)
    assert_fails(run("train-rnn", "corpus.txt", "-o", "n.npz", *SMALL, "--resume", "m.npz"),
                 1, "Error: m.npz: not a train-rnn checkpoint (an rnn model file)",
                 absent=["n.npz"])
    assert_fails(run("train-rnn", "corpus.txt", "-o", "n.npz", *SMALL, "--resume",
                     "corpus.txt"), 1,
                 "Error: corpus.txt: not a model file (not an .npz archive, or truncated)",
                 absent=["n.npz"])
    assert_fails(run("train-rnn", "corpus.txt", "-o", "n.npz", "--resume", "nope.npz"), 1,
                 "Error: nope.npz: no such file", absent=["n.npz"])


def test_resume_of_a_checkpoint_made_with_other_options_or_data(work):
    train("corpus.txt", "-o", "m.npz", "--epochs", 1, "--checkpoint-every", 60, *SMALL)
    assert_fails(run("train-rnn", "corpus.txt", "-o", "n.npz", *SMALL, "--hidden", "8",
                     "--lowercase", "--resume", "m.checkpoint.npz"), 1,
                 "Error: m.checkpoint.npz: made with other options: --hidden 16 (here 8), "
                 "--lowercase off (here on); resume with the options it was made with",
                 absent=["n.npz"])
    write(work / "other.txt", CORPUS + "One more line.\n")
    assert_fails(run("train-rnn", "other.txt", "-o", "n.npz", *SMALL,
                     "--resume", "m.checkpoint.npz"), 1,
                 "Error: m.checkpoint.npz: made from other data (the training or validation "
                 "text differs); resume on the text it was made from", absent=["n.npz"])


def broken_writer(out, arrays, metadata):
    out.write(b"PK\x03\x04 half a model")
    raise KeyboardInterrupt


def test_an_interrupted_save_leaves_no_damaged_model(work, monkeypatch):
    train("corpus.txt", "-o", "m.npz", "--epochs", 1, *SMALL)
    before = (work / "m.npz").read_bytes()
    monkeypatch.setattr("rnnlm_cli.modelfile.write_model", broken_writer)
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", 1, *SMALL,
                 "--seed", "1")
    assert_fails(result, 130, "Error: interrupted; no output file was written")
    assert (work / "m.npz").read_bytes() == before


def test_an_interrupted_checkpoint_save_leaves_no_damaged_checkpoint(work, monkeypatch):
    def broken_save(path, arrays, metadata):
        from rnnlm_cli.outputs import atomic_output
        with atomic_output(path, "wb") as out:
            broken_writer(out, arrays, metadata)
    monkeypatch.setattr("rnnlm_cli.rnn.checkpoint.save_model", broken_save)
    interrupt_at(monkeypatch, 3)
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", *SMALL)
    assert_fails(result, 130, "Error: interrupted; no output file was written",
                 absent=["m.npz", "m.checkpoint.npz"])


def test_perplexity_of_a_checkpoint_says_what_it_is(tmp_path):
    from rnnlm_cli.cli import cli
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat\nthe dog ran\n" * 20, encoding="utf-8")
    model = tmp_path / "m.npz"
    runner = cli_runner()
    result = runner.invoke(cli, ["train-rnn", str(corpus), "-o", str(model), "--hidden", "4",
                                 "--epochs", "1", "--checkpoint-every", "0.0001"])
    assert result.exit_code == 0, result.stderr
    checkpoint = tmp_path / "m.checkpoint.npz"
    assert checkpoint.exists()
    result = runner.invoke(cli, ["perplexity", str(checkpoint)], input="the cat\n")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {checkpoint}: a training checkpoint, not a model: continue it with "
        "rnnlm train-rnn --resume, or use the model file (-o) it belongs to")
