"""``train-rnn --resume`` of a damaged or edited checkpoint, through the CLI: every field
of the state and every array is checked before anything is restored, and a bad one gives
exactly ``Error: CHECKPOINT: corrupt checkpoint: <what>`` (exit 1), never a traceback and
never training from a garbage state (``rnn/checkpoint.py``, ``Checkpoint.validate``).

One real checkpoint is made per module (an Adam run stopped 3 chunks into epoch 2, so it
has every part: best, hidden, optimiser slots and step count), then edited case by case.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import rnnlm_cli.cli as cli_module
from conftest import CORPORA
from rnnlm_cli.modelfile import save_model
from test_cli_errors import assert_fails, assert_ok, run

CORPUS = "".join(line + "\n" for line in
                 (CORPORA / "en" / "sentences.txt").read_text(encoding="utf-8").splitlines()[:120])
OPTIONS = ["--hidden", "16", "--batch-size", "8", "--bptt", "10", "--optimizer", "adam",
           "--lr", "0.01"]
CHUNKS = 22   # chunks in an epoch of CORPUS with OPTIONS


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The checkpoint of a run interrupted 3 chunks into epoch 2 (module-wide, read only)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    (folder / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    chunk = cli_module._EpochReport.chunk

    def chunk_then_ctrl_c(self, progress):
        chunk(self, progress)
        assert progress.chunks == CHUNKS
        if (progress.epoch, progress.position) == (2, 3):
            raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(cli_module._EpochReport, "chunk", chunk_then_ctrl_c)
        result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", 3, *OPTIONS)
    assert result.exit_code == 130, result.stderr
    return folder


@pytest.fixture
def work(tmp_path, monkeypatch, made):
    monkeypatch.chdir(tmp_path)
    shutil.copy(made / "corpus.txt", tmp_path / "corpus.txt")
    shutil.copy(made / "m.checkpoint.npz", tmp_path / "good.npz")
    return tmp_path


def contents(path="good.npz"):
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "__meta__"}
        metadata = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
    return arrays, metadata


def write_edited(edit, name="bad.npz") -> str:
    """good.npz with ``edit(arrays, metadata)`` applied, as ``name``."""
    arrays, metadata = contents()
    edit(arrays, metadata)
    metadata.pop("format_version")
    save_model(name, arrays, metadata)
    return name


def resume(path, epochs=3):
    return run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", epochs, *OPTIONS,
               "--resume", path)


def state_edit(key, value):
    def edit(arrays, metadata):
        target = metadata["state"]
        *parents, last = key.split("/")
        for part in parents:
            target = target[int(part) if isinstance(target, list) else part]
        last = int(last) if isinstance(target, list) else last
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return edit


DELETE = object()
CORRUPT = "Error: bad.npz: corrupt checkpoint: "

STATE_CASES = [
    ("position", -1, "position is -1, not a whole number from 0 to 22"),
    ("position", 23, "position is 23, not a whole number from 0 to 22"),
    ("position", "3", 'position is "3", not a whole number from 0 to 22'),
    ("position", 3.0, "position is 3.0, not a whole number from 0 to 22"),
    ("position", 0, "hidden_layout [2] does not fit position 0"),
    ("epoch", -1, "epoch is -1, not a whole number at least 0"),
    ("epoch", True, "epoch is true, not a whole number at least 0"),
    ("epoch", 2, "1 history records for 2 epochs done"),
    ("lr", 0, "lr is 0, not a finite number above 0"),
    ("lr", -0.5, "lr is -0.5, not a finite number above 0"),
    ("lr", math.nan, "lr is NaN, not a finite number above 0"),
    ("lr", math.inf, "lr is Infinity, not a finite number above 0"),
    ("lr", "fast", 'lr is "fast", not a finite number above 0'),
    ("best_valid_ppl", None, "best_valid_ppl null is not the history's best"),
    ("best_valid_ppl", 1.0, "best_valid_ppl 1.0 is not the history's best"),
    ("best_valid_ppl", math.inf, "best_valid_ppl Infinity is not the history's best"),
    ("bad_epochs", 1, "bad_epochs is 1, but 0 epochs have passed since the last improvement"),
    ("bad_epochs", -1, "bad_epochs is -1, but 0 epochs have passed since the last improvement"),
    ("has_best", False, "has_best is false after 1 epochs"),
    ("has_best", 1, "has_best is 1 after 1 epochs"),
    ("stopped", "non-finite", "stopped is \"non-finite\", not null or 'early stop'"),
    ("stopped", "early stop", "stopped early, but not at the end of an epoch"),
    ("stopped", [], "stopped is [], not null or 'early stop'"),
    ("hidden_layout", None, "hidden_layout null does not fit position 3"),
    ("hidden_layout", [1], "hidden_layout [1] does not fit the network"),
    ("hidden_layout", [2, 2], "hidden_layout [2, 2] does not fit the network"),
    ("hidden_layout", "2", 'hidden_layout "2" does not fit the network'),
    ("sums/updates", 2, "sums.updates is 2, not a whole number 3"),
    ("sums/loss", math.nan, "sums.loss is NaN, not a finite number at least 0"),
    ("sums/targets", -5, "sums.targets is -5, not a whole number at least 0"),
    ("sums/clipped", 4, "sums.clipped is 4, not a whole number from 0 to 3"),
    ("sums/seconds", "x", 'sums.seconds is "x", not a finite number at least 0'),
    ("sums/targets", DELETE, "sums has no 'targets'"),
    ("sums/extra", 1, 'sums has an unknown field "extra"'),
    ("sums", [], "sums is [], not an object"),
    ("history", {}, "history is {}, not a list"),
    ("history", [], "0 history records for 1 epochs done"),
    ("history/0/epoch", 2, "history record 1 is of epoch 2"),
    ("history/0/valid_ppl", -1, "history record 1 valid_ppl is -1, not a finite number above 0"),
    ("history/0/train_ppl", math.nan,
     "history record 1 train_ppl is NaN, not a number above 0"),
    ("history/0/clipped", 1.5, "history record 1 clipped is 1.5, not a finite number from 0 to 1"),
    ("history/0/improved", "yes", 'history record 1 improved is "yes", not a boolean'),
    ("history/0/lr", DELETE, "history record 1 has no 'lr'"),
    ("history/0", 7, "history record 1 is 7, not an object"),
    ("rng/bit_generator", "XYZ", None),
    ("rng/state", "x", None),
    ("rng", None, "bad random generator state null"),
    ("rng", DELETE, "the training state has no 'rng'"),
    ("extra", 1, 'the training state has an unknown field "extra"'),
]


@pytest.mark.parametrize("key, value, detail", STATE_CASES,
                         ids=[f"{k}={v!r}" for k, v, _ in STATE_CASES])
def test_a_bad_state_field(work, key, value, detail):
    result = resume(write_edited(state_edit(key, value)))
    if detail is None:
        assert_fails(result, 1, contains=[CORRUPT + "bad random generator state "])
    else:
        assert_fails(result, 1, CORRUPT + detail)
    assert not (work / "m.npz").exists()


def test_the_good_checkpoint_resumes(work):
    result = resume(write_edited(lambda arrays, metadata: None))
    assert_ok(result)
    assert [line[:8] for line in result.stderr.splitlines() if line.startswith("epoch")] == \
        ["epoch 2:", "epoch 3:"]


def test_no_state_at_all(work):
    def edit(arrays, metadata):
        del metadata["state"]
    assert_fails(resume(write_edited(edit)), 1,
                 CORRUPT + "the training state is null, not an object")


def test_options_that_are_not_an_object(work):
    def edit(arrays, metadata):
        metadata["options"] = ["--hidden", 16]
    assert_fails(resume(write_edited(edit)), 1,
                 CORRUPT + "the options it was made with are missing")


def test_more_epochs_done_than_asked_for(work):
    """Consistent, not corrupt: a run of 2 epochs resumed with --epochs 1."""
    def edit(arrays, metadata):
        state = metadata["state"]
        second = dict(state["history"][0], epoch=2, improved=False,
                      valid_ppl=state["history"][0]["valid_ppl"] + 1)
        state.update(epoch=2, bad_epochs=1, history=[state["history"][0], second])
    assert_fails(resume(write_edited(edit), epochs=1), 1,
                 "Error: bad.npz: 2 epochs were done, more than --epochs 1: resume with "
                 "--epochs 2 or more")


def array_edit(name, value):
    def edit(arrays, metadata):
        if value is DELETE:
            del arrays[name]
        elif callable(value):
            arrays[name] = value(arrays[name].copy())
        else:
            arrays[name] = value
    return edit


def nan_at_0(array):
    array.flat[0] = np.nan
    return array


def negative(array):
    array.flat[0] = -1
    return array


ARRAY_CASES = [
    ("hidden.0.1", DELETE, "array 'hidden.0.1' is missing"),
    ("hidden.0.2", np.zeros((8, 16), np.float32), "unexpected array 'hidden.0.2'"),
    ("junk", np.zeros(3), "unexpected array 'junk'"),
    ("hidden.0.0", np.zeros((4, 16), np.float32),
     "array 'hidden.0.0' has dtype float32 and shape (4, 16), not float32 and (8, 16)"),
    ("hidden.0.0", np.zeros((8, 16), np.int32),
     "array 'hidden.0.0' has dtype int32 and shape (8, 16), not float32 and (8, 16)"),
    ("best.embedding", np.zeros(3, np.float32),
     "array 'best.embedding' has dtype float32 and shape (3,), not float32 and (%d, 16)"),
    ("best.decoder.c", DELETE, "array 'best.decoder.c' is missing"),
    ("best.layer0.W", nan_at_0, "array 'best.layer0.W' holds NaN or infinite values"),
    ("net.layer0.W", nan_at_0, "array 'net.layer0.W' holds NaN or infinite values"),
    ("hidden.0.1", nan_at_0, "array 'hidden.0.1' holds NaN or infinite values"),
    ("optim.m.embedding", nan_at_0, "array 'optim.m.embedding' holds NaN or infinite values"),
    ("optim.v.layer0.U", negative, "optimiser state 'v.layer0.U' holds negative values"),
    ("optim.t", np.array(-1), "optimiser state 't' is -1, not a count of steps"),
    ("optim.t", np.array(1.5), "array 'optim.t' has dtype float64 and shape (), not int64 "
                               "and ()"),
    ("optim.t", np.array([1, 2]), "array 'optim.t' has dtype int64 and shape (2,), not int64 "
                                  "and ()"),
    ("optim.t", DELETE, "array 'optim.t' is missing"),
    ("net.embedding", np.zeros((3, 16), np.float32), None),
]


@pytest.mark.parametrize("name, value, detail", ARRAY_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(ARRAY_CASES)])
def test_a_bad_array(work, name, value, detail):
    vocab = contents()[0]["net.embedding"].shape[0]
    result = resume(write_edited(array_edit(name, value)))
    if detail is None:
        assert_fails(result, 1, contains=[CORRUPT + "array 'embedding' has dtype float32 "
                                          "and shape (3, 16)"])
    else:
        assert_fails(result, 1, CORRUPT + detail.replace("%d", str(vocab)))
    assert not (work / "m.npz").exists()


@pytest.mark.parametrize("value, shown", [("lstm\nError: x", '"lstm\\nError: x"'),
                                          ([1, 2], "[1, 2]"), ({"a": None}, '{"a": null}')])
def test_an_edited_option_is_shown_on_one_line(work, value, shown):
    def edit(arrays, metadata):
        metadata["options"]["--cell"] = value
    result = resume(write_edited(edit))
    assert_fails(result, 1, f"Error: bad.npz: made with other options: --cell {shown} (here "
                            "lstm); resume with the options it was made with")
    assert len(result.stderr.splitlines()) == 2   # "Holding out ..." and the Error: line


def test_a_checkpoint_older_than_an_option_resumes_with_its_value(work):
    """A checkpoint written before --lr-schedule existed was trained with plateau decay."""
    def edit(arrays, metadata):
        del metadata["options"]["--lr-schedule"]
    old = write_edited(edit)
    assert_ok(resume(old))
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", 3, *OPTIONS,
                 "--lr-schedule", "cosine", "--resume", old)
    assert_fails(result, 1, f"Error: {old}: made with other options: --lr-schedule "
                            "plateau (here cosine), --epochs unset (here 3); resume with "
                            "the options it was made with")


def test_a_schedule_over_the_run_resumes_with_its_epochs_only(work):
    """Under cosine or linear each update's rate depends on --epochs: a checkpoint of such a
    run resumes with the same --epochs (a plateau run may take more: test above)."""
    def as_cosine(arrays, metadata):
        options = metadata["options"]
        assert options["--lr-schedule"] == "plateau" and "--epochs" not in options
        options["--lr-schedule"], options["--epochs"] = "cosine", 3
        del options["--lr-decay"]
    cosine = write_edited(as_cosine)
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", 5, *OPTIONS,
                 "--lr-schedule", "cosine", "--resume", cosine)
    assert_fails(result, 1, f"Error: {cosine}: made with other options: --epochs 3 (here 5); "
                            "resume with the options it was made with")
    assert_ok(run("train-rnn", "corpus.txt", "-o", "m.npz", "--epochs", 3, *OPTIONS,
                  "--lr-schedule", "cosine", "--resume", cosine))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_decay_beside_a_schedule_over_the_run_is_a_usage_error(work, schedule):
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--lr-schedule", schedule,
                 "--lr-decay", "0.1")
    assert_fails(result, 2, contains=["--lr-decay works with --lr-schedule plateau only"])
    assert not (work / "m.npz").exists()
