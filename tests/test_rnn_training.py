"""The training side of the recurrent backend: optimisers, clipping, batches, the loop,
checkpoints. Fast: the network is ``rnn_fakes.BigramNetwork``, a bigram softmax with the
network's API and exact gradients (integration tests with the real network live in
``test_cli_rnn.py``)."""
from __future__ import annotations

import copy
import math
import os
import platform
import resource
import signal
import sys
from dataclasses import replace

import numpy as np
import pytest

from rnn_fakes import BigramNetwork, FakeConfig
from rnnlm_cli.errors import CorpusError, ModelFileError, OptionError, TrainingError
from rnnlm_cli.modelfile import save_model
from rnnlm_cli.rnn.batches import Batches, fit_batch_size, token_stream
from rnnlm_cli.rnn.checkpoint import Checkpoint
from rnnlm_cli.rnn.data import hold_out, prepare_data
from rnnlm_cli.rnn.optim import SGD, Adagrad, Adam, clip_gradients, make_optimizer
from rnnlm_cli.rnn.session import TrainingInterrupted, option_flags, run_training
from rnnlm_cli.rnn.training import Hooks, TrainConfig, perplexity


# -- optimisers, by hand ---------------------------------------------------------------------

G1, G2, LR = np.array([0.5, 1.0]), np.array([-1.0, 2.0]), 0.1


def two_steps(cls):
    params = {"p": np.array([1.0, -2.0], dtype=np.float32)}
    optimizer = cls(params)
    after = []
    for g in (G1, G2):
        optimizer.step(params, {"p": g.astype(np.float32)}, LR)
        assert params["p"].dtype == np.float32
        after.append(params["p"].copy())
    return after


def test_sgd_by_hand():
    # p -= lr * g: [1, -2] - 0.1 [0.5, 1] = [0.95, -2.1]; - 0.1 [-1, 2] = [1.05, -2.3]
    first, second = two_steps(SGD)
    np.testing.assert_allclose(first, [0.95, -2.1], rtol=1e-7)
    np.testing.assert_allclose(second, [1.05, -2.3], rtol=1e-7)


def test_adagrad_by_hand():
    # s = g1^2 = [0.25, 1]: p -= 0.1 g1 / sqrt(s) = 0.1 [1, 1] -> [0.9, -2.1]
    # s = [1.25, 5]: p -= 0.1 [-1/sqrt(1.25), 2/sqrt(5)] = 0.1 [-0.894427, 0.894427]
    first, second = two_steps(Adagrad)
    np.testing.assert_allclose(first, [0.9, -2.1], rtol=1e-7)
    np.testing.assert_allclose(second, [0.9 + 0.1 / math.sqrt(1.25), -2.1 - 0.2 / math.sqrt(5)],
                               rtol=1e-7)


def test_adam_by_hand():
    # t=1: m = 0.1 g1, v = 0.001 g1^2; the bias corrections make the step lr * sign(g1).
    # t=2: m = [-0.055, 0.29], v = [0.00124975, 0.004999],
    #      p -= 0.1 / (1 - 0.9^2) * m / (sqrt(v) / sqrt(1 - 0.999^2) + 1e-8)
    first, second = two_steps(Adam)
    np.testing.assert_allclose(first, [0.9, -2.1], rtol=1e-7)
    m, v = np.array([-0.055, 0.29]), np.array([0.00124975, 0.004999])
    expected = np.array([0.9, -2.1]) - 0.1 / 0.19 * m / (np.sqrt(v) / math.sqrt(0.001999) + 1e-8)
    np.testing.assert_allclose(expected, [0.93661035, -2.19651820], rtol=1e-8)
    np.testing.assert_allclose(second, expected, rtol=1e-6)


def test_adam_updates_block_by_block_as_the_whole_formula(monkeypatch):
    """Blocks of 2 rows (``ADAM_BLOCK`` 7 values, rows of 3), a 1-D and a 2-D parameter:
    three steps give PyTorch's formula applied to the whole arrays."""
    import rnnlm_cli.rnn.optim as optim
    monkeypatch.setattr(optim, "ADAM_BLOCK", 7)
    rng = np.random.default_rng(4)
    params = {"W": rng.standard_normal((9, 3)), "b": rng.standard_normal(5)}
    expected = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    adam = Adam(params)
    for t in range(1, 4):
        grads = {k: rng.standard_normal(p.shape) for k, p in params.items()}
        for k, g in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * g
            v2[k] = 0.999 * v2[k] + 0.001 * g * g
            expected[k] -= 0.01 / (1 - 0.9 ** t) * m[k] / (
                np.sqrt(v2[k]) / math.sqrt(1 - 0.999 ** t) + 1e-8)
        adam.step(params, grads, 0.01)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_optimizer_state_round_trips(name):
    rng = np.random.default_rng(1)
    grads = [{"a": rng.standard_normal((3, 2)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)} for _ in range(3)]
    start = {"a": np.ones((3, 2), np.float32), "b": np.zeros(4, np.float32)}
    whole = {k: v.copy() for k, v in start.items()}
    optimizer = make_optimizer(name, whole)
    for g in grads:
        optimizer.step(whole, copies(g), 0.01)    # a step may use its gradient up
    split = {k: v.copy() for k, v in start.items()}
    first = make_optimizer(name, split)
    first.step(split, copies(grads[0]), 0.01)
    saved = {k: v.copy() for k, v in first.state_dict().items()}
    second = make_optimizer(name, split)
    second.load_state_dict(saved)
    for g in grads[1:]:
        second.step(split, copies(g), 0.01)
    for k in whole:
        assert whole[k].tobytes() == split[k].tobytes()


def copies(arrays):
    return {k: v.copy() for k, v in arrays.items()}


def test_clipping_scales_the_whole_gradient_to_the_threshold():
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([[0.0, 4.0]], np.float32)}
    norm, clipped = clip_gradients(grads, 1.0)
    assert (norm, clipped) == (5.0, True)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0], rtol=1e-7)
    np.testing.assert_allclose(grads["b"], [[0.0, 0.8]], rtol=1e-7)
    assert math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values())) \
        == pytest.approx(1.0, rel=1e-7)


@pytest.mark.parametrize("threshold, clipped", [(10.0, False), (5.0, True), (0.0, False)])
def test_clipping_leaves_smaller_gradients_alone(threshold, clipped):
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([[0.0, 4.0]], np.float32)}
    assert clip_gradients(grads, threshold) == (5.0, clipped)   # at the threshold: scale 1
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    np.testing.assert_array_equal(grads["b"], [[0.0, 4.0]])


# -- batches ---------------------------------------------------------------------------------

def test_token_stream_starts_with_eos_and_ends_each_sentence():
    ids, lengths = np.array([3, 4, 5, 6, 7, 8]), np.array([2, 1, 0, 3])
    assert token_stream(ids, lengths, 2).tolist() == [2, 3, 4, 2, 5, 2, 2, 6, 7, 8, 2]


def test_batchify_layout_by_hand():
    stream = np.array([2, 3, 4, 2, 5, 2, 6, 7, 8, 2, 9])    # 11 tokens: the 11th is dropped
    batches = Batches(stream, batch_size=2, bptt=2)
    # columns are the two halves: [2 3 4 2 5] and [2 6 7 8 2]
    assert batches.data.tolist() == [[2, 2], [3, 6], [4, 7], [2, 8], [5, 2]]
    assert len(batches) == 2 and batches.num_targets == 8
    inputs, targets = batches[0]
    assert inputs.tolist() == [[2, 2], [3, 6]] and targets.tolist() == [[3, 6], [4, 7]]
    inputs, targets = batches[1]
    assert inputs.tolist() == [[4, 7], [2, 8]] and targets.tolist() == [[2, 8], [5, 2]]
    with pytest.raises(IndexError):
        batches[2]


def test_last_chunk_is_shorter():
    batches = Batches(np.arange(10), batch_size=2, bptt=3)
    assert len(batches) == 2
    assert [batches[i][0].shape for i in range(2)] == [(3, 2), (1, 2)]
    assert batches[1][0].tolist() == [[3, 8]] and batches[1][1].tolist() == [[4, 9]]


def test_batch_size_shrinks_to_fill_one_chunk():
    assert fit_batch_size(1000, 20, 35) == 20
    assert fit_batch_size(100, 20, 35) == 2     # 2 rows of 50 >= 36 tokens
    assert fit_batch_size(10, 20, 35) == 1      # one short chunk of 9 steps
    assert len(Batches(np.arange(10), 1, 35)) == 1
    with pytest.raises(CorpusError):
        fit_batch_size(1, 20, 35)


# -- data ------------------------------------------------------------------------------------

def test_hold_out_takes_the_last_five_percent():
    lines = [str(i) for i in range(100)]
    train, valid = hold_out(lines)
    assert train == lines[:95] and valid == lines[95:]
    assert hold_out(["a", "b"]) == (["a"], ["b"])
    with pytest.raises(CorpusError, match="give --valid FILE"):
        hold_out(["a"])


def test_prepare_data_encodes_validation_with_the_training_vocabulary():
    data = prepare_data([["a", "b"], ["a"]], [["b", "c"]], "t", "v")
    a, b = data.vocab.id("a"), data.vocab.id("b")
    assert data.train.tolist() == [2, a, b, 2, a, 2]
    assert data.valid.tolist() == [2, b, 0, 2]
    assert data.fingerprint() == prepare_data([["a", "b"], ["a"]], [["b", "c"]], "x",
                                              "y").fingerprint()
    assert data.fingerprint() != prepare_data([["a", "b"], ["a"]], [["b"]], "t",
                                              "v").fingerprint()
    with pytest.raises(CorpusError, match="t: no words to train on"):
        prepare_data([[], []], [["a"]], "t", "v")


# -- the loop ---------------------------------------------------------------------------------

def corpus(n_sentences=60, seed=0):
    rng = np.random.default_rng(seed)
    words = "the cat dog sat on mat log a ran".split()
    return [[words[i] for i in rng.integers(0, len(words), rng.integers(2, 8))]
            for _ in range(n_sentences)]


DATA = prepare_data(corpus(), corpus(8, seed=1), "train", "valid")
CONFIG = TrainConfig(epochs=2, batch_size=4, bptt=5, optimizer="adam", lr=0.05, clip_norm=1.0)


def fit(config=CONFIG, model=FakeConfig(dropout=0.3), **kwargs):
    options = option_flags(model, config, {"kind": "regex"}, {"min_count": 1})
    return run_training(DATA, model, config, options, network_class=BigramNetwork, **kwargs)


def params_bytes(network):
    return {k: v.tobytes() for k, v in network.params.items()}


def test_training_lowers_the_loss_and_keeps_the_best_epoch(tmp_path):
    seen = []
    run = fit(replace(CONFIG, epochs=3), hooks=Hooks(on_epoch=seen.append),
              checkpoint_path=str(tmp_path / "c.npz"))
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert seen[0].train_ppl > seen[-1].train_ppl
    assert seen[0].valid_ppl > seen[-1].valid_ppl
    assert all(0 <= r.clipped <= 1 and r.grad_norm > 0 and r.lr == 0.05 for r in seen)
    best = min(seen, key=lambda r: r.valid_ppl)
    assert run.state.best_valid_ppl == best.valid_ppl
    valid_batches = Batches(DATA.valid, 1, 5)
    assert perplexity(run.network, valid_batches) < seen[0].valid_ppl
    assert not (tmp_path / "c.npz").exists()   # no --checkpoint-every, no Ctrl-C


def test_progress_after_every_chunk(tmp_path):
    seen = []
    fit(replace(CONFIG, epochs=1), hooks=Hooks(on_chunk=seen.append),
        checkpoint_path=str(tmp_path / "c.npz"))
    chunks = seen[0].chunks
    assert [p.position for p in seen] == list(range(1, chunks + 1))
    assert all(p.epoch == 1 and p.ppl == pytest.approx(math.exp(p.loss)) for p in seen)
    assert seen[-1].tokens_per_s > 0


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    path = str(tmp_path / "c.npz")
    one, two = fit(checkpoint_path=path), fit(checkpoint_path=path)
    assert params_bytes(one.network) == params_bytes(two.network)
    other = fit(replace(CONFIG, seed=1), checkpoint_path=path)
    assert params_bytes(one.network) != params_bytes(other.network)


class ScriptedValidation(BigramNetwork):
    """Validation perplexities from a script, one per epoch (one validation chunk)."""

    script = []

    def loss(self, inputs, targets, hidden):
        return math.log(self.script.pop(0)), hidden


def scripted(script, tmp_path, **options):
    ScriptedValidation.script = list(script)
    config = replace(CONFIG, epochs=len(script), lr=1.0, optimizer="sgd", **options)
    data = prepare_data(corpus(), [["the", "cat"]], "train", "valid")
    snapshots = []
    network = []

    def on_epoch(record):
        snapshots.append({k: v.copy() for k, v in network[0].params.items()})

    class Recording(ScriptedValidation):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            network.append(self)

    options = option_flags(FakeConfig(), config, {}, {})
    run = run_training(data, FakeConfig(), config, options, str(tmp_path / "c.npz"),
                       hooks=Hooks(on_epoch=on_epoch), network_class=Recording)
    return run, snapshots


def test_lr_decays_when_validation_stops_improving_and_patience_stops(tmp_path):
    run, snapshots = scripted([100, 90, 95, 92, 91, 80], tmp_path, lr_decay=0.5, patience=2)
    history = run.state.history
    assert [r.valid_ppl for r in history] == pytest.approx([100, 90, 95, 92])  # 2 bad: stop
    assert [r.improved for r in history] == [True, True, False, False]
    assert [r.lr for r in history] == [1.0, 1.0, 1.0, 0.5]
    assert run.state.lr == 0.25 and run.state.stopped == "early stop"
    assert run.state.best_valid_ppl == pytest.approx(90)
    assert params_bytes(run.network) == {k: v.tobytes() for k, v in snapshots[1].items()}


def test_patience_zero_never_stops_and_decay_one_keeps_the_rate(tmp_path):
    run, _ = scripted([100, 101, 102, 103], tmp_path, lr_decay=1.0, patience=0)
    assert len(run.state.history) == 4 and run.state.stopped is None
    assert [r.lr for r in run.state.history] == [1.0] * 4
    assert run.state.best_valid_ppl == pytest.approx(100)


@pytest.mark.parametrize("schedule, rate", [
    ("cosine", lambda p: (1 + math.cos(math.pi * p)) / 2),   # cos 0 = 1 ... cos(pi 5/6)
    ("linear", lambda p: 1 - p),
])
def test_a_schedule_gives_every_update_its_rate_and_ignores_plateaus(schedule, rate, tmp_path,
                                                                      monkeypatch):
    rates = []
    step = SGD.step
    monkeypatch.setattr(SGD, "step", lambda self, params, grads, lr: (rates.append(lr),
                                                                      step(self, params, grads,
                                                                           lr)))
    run, _ = scripted([100, 90, 95], tmp_path, lr_schedule=schedule, lr_decay=0.5)
    chunks = len(rates) // 3
    assert chunks >= 2 and len(rates) == 3 * chunks
    expected = [rate(u / (3 * chunks)) for u in range(3 * chunks)]  # update u of 3 epochs
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[0] == 1.0 and 0 < rates[-1] < rates[-2]            # 1 at first, never 0
    assert [r.lr for r in run.state.history] == pytest.approx(expected[::chunks])
    assert run.state.lr == 1.0        # the bad third epoch did not decay the base rate


def test_a_resumed_schedule_goes_on_from_where_it_stopped(tmp_path):
    config = replace(CONFIG, epochs=2, lr_schedule="cosine")
    whole = fit(config, checkpoint_path=str(tmp_path / "whole.npz"))
    path = str(tmp_path / "c.npz")
    chunks = len(Batches(DATA.train, 4, 5))

    def stop(progress):
        if progress.epoch == 1 and progress.position == chunks // 2:
            raise KeyboardInterrupt
    with pytest.raises(TrainingInterrupted):
        fit(config, hooks=Hooks(on_chunk=stop), checkpoint_path=path)
    resumed = fit(config, checkpoint_path=path, resume=path)
    assert params_bytes(resumed.network) == params_bytes(whole.network)


class Diverging(BigramNetwork):
    """Returns a NaN loss (or an infinite gradient) from the ``bad``-th update on."""

    bad, what, calls = 0, "loss", 0

    def loss_and_grads(self, inputs, targets, hidden, dropout_rng=None, row_gradients=False):
        loss, grads, hidden = super().loss_and_grads(inputs, targets, hidden, dropout_rng)
        Diverging.calls += 1
        if Diverging.calls >= self.bad:
            if self.what == "loss":
                loss = math.nan
            else:
                grads["W"][0, 0] = np.inf
        return loss, grads, hidden


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_loss_before_any_epoch_is_an_error(tmp_path, what):
    Diverging.bad, Diverging.what, Diverging.calls = 3, what, 0
    with pytest.raises(TrainingError) as error:
        run_training(DATA, FakeConfig(), CONFIG, {}, str(tmp_path / "c.npz"),
                     network_class=Diverging)
    assert str(error.value) == (
        f"the {what} became infinite or NaN at epoch 1, chunk 3; try a lower --lr (now 0.05) "
        "or a smaller --clip-norm (now 1); no epoch had finished, so no model was written")
    assert not (tmp_path / "c.npz").exists()


def test_non_finite_loss_keeps_the_last_good_model(tmp_path):
    chunks = len(Batches(DATA.train, CONFIG.batch_size, CONFIG.bptt))
    Diverging.bad, Diverging.what, Diverging.calls = chunks + 2, "loss", 0
    epochs = []
    config = replace(CONFIG, clip_norm=0.0)
    run = run_training(DATA, FakeConfig(), config, {}, str(tmp_path / "c.npz"),
                       hooks=Hooks(on_epoch=epochs.append), network_class=Diverging)
    assert run.state.stopped == "non-finite"
    assert run.state.message == ("the loss became infinite or NaN at epoch 2, chunk 2; try "
                                 "--clip-norm 5 or a lower --lr (now 0.05)")
    assert len(epochs) == 1 and run.state.best_valid_ppl == epochs[0].valid_ppl
    assert all(np.isfinite(p).all() for p in run.network.params.values())
    assert params_bytes(run.network) == {k: v.tobytes()
                                         for k, v in run.state.best_params.items()}


def test_train_config_validation():
    for config, message in [
        (TrainConfig(bptt=0), "--bptt must be a whole number at least 1, not 0"),
        (TrainConfig(epochs=0), "--epochs must be a whole number at least 1, not 0"),
        (TrainConfig(lr=-1.0), "--lr must be a number above 0, not -1.0"),
        (TrainConfig(lr=math.nan), "--lr must be a number above 0, not nan"),
        (TrainConfig(lr_decay=1.5), "--lr-decay must be a number in (0, 1] (1: no decay), not 1.5"),
        (TrainConfig(lr_schedule="step"),
         "--lr-schedule must be one of plateau, cosine, linear, not 'step'"),
        (TrainConfig(clip_norm=-1.0), "--clip-norm must be a number at least 0 (0: off), not -1.0"),
        (TrainConfig(optimizer="rmsprop"),
         "--optimizer must be one of sgd, adagrad, adam, not 'rmsprop'"),
    ]:
        with pytest.raises(OptionError) as error:
            config.validate()
        assert str(error.value) == message
    TrainConfig().validate()


# -- checkpoints and resume -------------------------------------------------------------------

class StopAt:
    """A hook that raises ``KeyboardInterrupt`` (Ctrl-C) at the n-th call."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, _):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


def interrupted_then_resumed(tmp_path, stops, config=CONFIG, model=FakeConfig(dropout=0.3)):
    """Train, interrupted by each hook of ``stops`` in turn, resuming after each."""
    tmp_path.mkdir(exist_ok=True)
    path = str(tmp_path / "c.npz")
    resume = None
    for hooks in stops:
        with pytest.raises(TrainingInterrupted) as stop:
            fit(config, model, hooks=hooks, checkpoint_path=path, resume=resume)
        assert stop.value.path == path and os.path.exists(path)
        resume = path
    return fit(config, model, checkpoint_path=path, resume=resume)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, optimizer):
    config = replace(CONFIG, optimizer=optimizer, lr=0.5 if optimizer == "sgd" else 0.05)
    whole = fit(config, checkpoint_path=str(tmp_path / "w.npz"))
    chunks = len(Batches(DATA.train, config.batch_size, config.bptt))
    for name, stops in {
        "mid-epoch": [Hooks(on_chunk=StopAt(3))],
        "end of an epoch's chunks": [Hooks(on_chunk=StopAt(chunks))],
        "after an epoch": [Hooks(on_epoch=StopAt(1))],
        "twice": [Hooks(on_chunk=StopAt(chunks + 2)), Hooks(on_chunk=StopAt(1))],
    }.items():
        resumed = interrupted_then_resumed(tmp_path / name, stops, config)
        assert params_bytes(resumed.network) == params_bytes(whole.network), name
        assert resumed.state.history == [replace(r, tokens_per_s=s.tokens_per_s,
                                                 seconds=s.seconds) for r, s in
                                         zip(whole.state.history, resumed.state.history)]


def test_ctrl_c_waits_for_the_chunk_to_finish(tmp_path):
    """A real SIGINT during a chunk: the chunk completes, then a checkpoint is saved."""
    whole = fit(checkpoint_path=str(tmp_path / "w.npz"))

    def press_ctrl_c(progress):
        if progress.position == 2:
            os.kill(os.getpid(), signal.SIGINT)

    resumed = interrupted_then_resumed(tmp_path, [Hooks(on_chunk=press_ctrl_c)])
    saved = Checkpoint(str(tmp_path / "c.npz")).restore_state()
    assert (saved.epoch, saved.position) == (0, 2)   # the chunk in progress completed
    assert params_bytes(resumed.network) == params_bytes(whole.network)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_periodic_checkpoints_do_not_change_the_result(tmp_path):
    whole = fit(checkpoint_path=str(tmp_path / "w.npz"))
    ticks = iter(range(0, 10 ** 6, 61))
    path = str(tmp_path / "c.npz")
    saved = []
    run = fit(replace(CONFIG, checkpoint_every=1.0), checkpoint_path=path,
              hooks=Hooks(clock=lambda: next(ticks),
                          on_chunk=lambda p: saved.append(os.path.getmtime(path))
                          if os.path.exists(path) else None))
    assert len(saved) > 1
    assert params_bytes(run.network) == params_bytes(whole.network)
    state = Checkpoint(path).restore_state()   # the final checkpoint: the finished run
    assert (state.epoch, state.position) == (2, 0)


def test_checkpoint_restores_the_exact_state(tmp_path):
    path = str(tmp_path / "c.npz")
    with pytest.raises(TrainingInterrupted) as stop:
        fit(checkpoint_path=path, hooks=Hooks(on_chunk=StopAt(20)))
    live = stop.value.state
    saved = Checkpoint(path).restore_state()
    chunks = len(Batches(DATA.train, CONFIG.batch_size, CONFIG.bptt))
    assert (saved.epoch, saved.position) == (live.epoch, live.position) == (1, 20 - chunks)
    assert saved.lr == live.lr and saved.best_valid_ppl == live.best_valid_ppl
    assert saved.sums == live.sums and saved.history == live.history
    assert saved.rng.bit_generator.state == live.rng.bit_generator.state
    assert [[h.tobytes() for h in layer] for layer in saved.hidden] == \
        [[h.tobytes() for h in layer] for layer in live.hidden]
    assert {k: v.tobytes() for k, v in saved.best_params.items()} == \
        {k: v.tobytes() for k, v in live.best_params.items()}


def test_resume_with_other_options_names_them(tmp_path):
    path = str(tmp_path / "c.npz")
    with pytest.raises(TrainingInterrupted):
        fit(checkpoint_path=path, hooks=Hooks(on_chunk=StopAt(2)))
    with pytest.raises(OptionError) as error:
        fit(replace(CONFIG, lr=0.1, bptt=6), checkpoint_path=path, resume=path)
    assert str(error.value) == (f"{path}: made with other options: --bptt 5 (here 6), "
                                "--lr 0.05 (here 0.1); resume with the options it was made with")
    with pytest.raises(OptionError) as error:
        fit(CONFIG, FakeConfig(dropout=0.0), checkpoint_path=path, resume=path)
    assert str(error.value).startswith(f"{path}: made with other options: --dropout 0.3 "
                                       "(here 0)")
    # --epochs, --checkpoint-every and --log may change: they do not change the weights
    fit(replace(CONFIG, epochs=3, checkpoint_every=5.0, log="x.jsonl"), checkpoint_path=path,
        resume=path)


def test_resume_on_other_data_is_refused(tmp_path):
    path = str(tmp_path / "c.npz")
    with pytest.raises(TrainingInterrupted):
        fit(checkpoint_path=path, hooks=Hooks(on_chunk=StopAt(2)))
    other = prepare_data(corpus(), corpus(8, seed=2), "train", "valid")
    options = option_flags(FakeConfig(dropout=0.3), CONFIG, {"kind": "regex"}, {"min_count": 1})
    with pytest.raises(OptionError) as error:
        run_training(other, FakeConfig(dropout=0.3), CONFIG, options, path, resume=path,
                     network_class=BigramNetwork)
    assert str(error.value) == (f"{path}: made from other data (the training or validation "
                                "text differs); resume on the text it was made from")


def test_resume_of_a_file_that_is_not_a_checkpoint(tmp_path):
    model = str(tmp_path / "m.npz")
    save_model(model, {"x": np.zeros(2)}, {"model_type": "rnn"})
    with pytest.raises(ModelFileError) as error:
        fit(checkpoint_path=str(tmp_path / "c.npz"), resume=model)
    assert str(error.value) == f"{model}: not a train-rnn checkpoint (an rnn model file)"
    text = tmp_path / "t.txt"
    text.write_text("hello\n")
    with pytest.raises(ModelFileError) as error:
        fit(checkpoint_path=str(tmp_path / "c.npz"), resume=str(text))
    assert str(error.value) == f"{text}: not a model file (not an .npz archive, or truncated)"


def test_the_fake_network_has_exact_gradients():
    """The double is only useful if its gradients are right: centred differences, float64."""
    network = BigramNetwork(FakeConfig(), 5, np.random.default_rng(3), dtype=np.float64)
    network.params["b"] += np.random.default_rng(4).standard_normal(5)
    inputs = np.array([[1, 2], [3, 4], [0, 1]])
    targets = np.array([[2, 3], [4, 0], [1, 1]])
    hidden = [(np.full((2, 5), 0.25),)]
    _, grads, _ = network.loss_and_grads(inputs, targets, hidden)
    for name, param in network.params.items():
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + 1e-6
            up, _ = network.loss(inputs, targets, hidden)
            param[index] = saved - 1e-6
            down, _ = network.loss(inputs, targets, hidden)
            param[index] = saved
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, atol=1e-7)


def test_gradient_norm_of_large_arrays_is_accurate():
    rng = np.random.default_rng(5)
    grads = {"big": rng.standard_normal(300_001).astype(np.float32),
             "small": rng.standard_normal((3, 7)).astype(np.float32)}
    exact = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    norm, clipped = clip_gradients(grads, 0.0)
    assert norm == pytest.approx(exact, rel=1e-7) and not clipped


def test_gradient_norm_of_the_parts_of_a_joined_array_is_accurate_and_copies_nothing():
    """``[V, c]`` (60,000, 201) as the class softmax keeps it: the norm of its two parts,
    neither contiguous, is that of the whole, without a copy of V (the peak memory of
    the call stays far below V's 48 MB)."""
    import tracemalloc
    joined = np.random.default_rng(6).standard_normal((60_000, 201)).astype(np.float32)
    grads = {"V": joined[:, :200], "c": joined[:, 200]}
    exact = math.sqrt(float(np.sum(joined.astype(np.float64) ** 2)))
    tracemalloc.start()
    norm, _ = clip_gradients(grads, 0.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert norm == pytest.approx(exact, rel=1e-7)
    assert peak < 4_000_000


# -- with the real network --------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_resume_with_the_real_network(tmp_path, cell):
    """Two layers, dropout between them: hidden state, RNG and Adam's moments all resume."""
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.network import RnnNetwork
    model = RnnConfig(cell=cell, layers=2, hidden=8, dropout=0.2)
    options = option_flags(model, CONFIG, {}, {})

    def go(path, **kwargs):
        return run_training(DATA, model, CONFIG, options, str(path), network_class=RnnNetwork,
                            **kwargs)

    whole = go(tmp_path / "w.npz")
    with pytest.raises(TrainingInterrupted):
        go(tmp_path / "c.npz", hooks=Hooks(on_chunk=StopAt(7)))
    resumed = go(tmp_path / "c.npz", resume=str(tmp_path / "c.npz"))
    assert params_bytes(resumed.network) == params_bytes(whole.network)
    assert whole.state.history[-1].valid_ppl < whole.state.history[0].train_ppl


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc tuning applies to glibc only")
def test_training_keeps_freed_memory_with_glibc():
    """A freed block of a few MB is reused: allocating it again after the tuning touches no
    new pages (without it, glibc unmaps the block and the next allocation faults it in)."""
    from rnnlm_cli.allocator import keep_freed_memory
    assert keep_freed_memory()

    def faults_of_one_round():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.ones(4 << 20, dtype=np.uint8)      # 4 MB, every page touched
        del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_one_round()
    assert faults_of_one_round() < 100                # 4 MB is 1,024 pages


# -- row gradients (the embedding's) ----------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_a_row_gradient_updates_as_its_dense_gradient_does(name):
    """Rows 7, 2, 5 of a (10, 3) parameter: two steps of the optimiser with the sparse
    gradient leave parameters and state as two steps with the dense one."""
    from rnnlm_cli.rnn.optim import RowGradient, make_optimizer
    rng = np.random.default_rng(0)
    start = {"E": rng.standard_normal((10, 3)).astype(np.float32),
             "b": rng.standard_normal(4).astype(np.float32)}
    rows = np.array([7, 2, 5])
    steps = [(rng.standard_normal((3, 3)).astype(np.float32),
              rng.standard_normal(4).astype(np.float32)) for _ in range(2)]
    results = []
    for sparse in (True, False):
        params = {k: v.copy() for k, v in start.items()}
        optimizer = make_optimizer(name, params)
        for values, bias in steps:
            g = RowGradient(rows, values.copy(), (10, 3))
            grads = {"E": g if sparse else g.dense(), "b": bias.copy()}
            norm, _ = clip_gradients(grads, 1.0)
            optimizer.step(params, grads, 0.5)
        results.append((params, optimizer.state_dict(), norm))
    (sparse_params, sparse_state, n1), (dense_params, dense_state, n2) = results
    assert n1 == pytest.approx(n2, rel=1e-7)
    for k in start:
        np.testing.assert_allclose(sparse_params[k], dense_params[k], rtol=1e-6, atol=1e-7)
    for k in dense_state:
        np.testing.assert_allclose(sparse_state[k], dense_state[k], rtol=1e-6, atol=1e-7)
    untouched = np.setdiff1d(np.arange(10), rows)
    if name != "adam":                 # Adam's moments move the other rows too
        assert np.array_equal(sparse_params["E"][untouched], start["E"][untouched])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_networks_row_gradient_is_its_dense_gradient(dropout):
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.network import RnnNetwork
    from rnnlm_cli.rnn.optim import RowGradient
    net = RnnNetwork(RnnConfig(cell="gru", hidden=6, dropout=dropout), 40,
                     np.random.default_rng(0), dtype=np.float64)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 40, (5, 3)), rng.integers(0, 40, (5, 3))
    run = lambda rows: net.loss_and_grads(inputs, targets, net.initial_hidden(3),
                                          np.random.default_rng(2), row_gradients=rows)[1]
    sparse, dense = run(True)["embedding"], run(False)["embedding"]
    assert isinstance(sparse, RowGradient)
    assert sorted(sparse.rows.tolist()) == sorted(set(inputs.reshape(-1).tolist()))
    np.testing.assert_allclose(sparse.dense(), dense, rtol=1e-12, atol=1e-15)


# -- block gradients (the class softmax's word matrix) ---------------------------------------

def block_gradient(rng, shape, dtype=np.float32):
    """A (14, k) gradient, zero but for rows 1-3 (a product of 2 positions' factors), rows
    4-5 (dense values), rows 8-11 (a product of 6 positions' factors) and rows 13 and 0
    (rows with values)."""
    from rnnlm_cli.rnn.optim import BlockGradient, DenseBlock, ProductBlock, RowGradient
    k = shape[1]
    normal = lambda *size: rng.standard_normal(size).astype(dtype)
    return BlockGradient([ProductBlock(1, normal(2, 3), normal(2, k)),
                          DenseBlock(4, normal(2, k)),
                          ProductBlock(8, normal(6, 4), normal(6, k)),
                          RowGradient(np.array([13, 0]), normal(2, k), shape)],
                         shape, np.dtype(dtype))


def test_a_block_gradient_is_its_parts_and_zero_elsewhere(monkeypatch):
    import rnnlm_cli.rnn.optim as optim
    monkeypatch.setattr(optim, "PIECE_ROWS", 3)     # the product of rows 8-11 in two pieces
    g = block_gradient(np.random.default_rng(0), (14, 5))
    product = lambda b: b.left.astype(np.float64).T @ b.right.astype(np.float64)
    expected = np.zeros((14, 5))
    expected[1:4], expected[4:6] = product(g.parts[0]), g.parts[1].values
    expected[8:12], expected[[13, 0]] = product(g.parts[2]), g.parts[3].values
    np.testing.assert_allclose(g.dense(), expected, rtol=1e-6, atol=1e-6)
    assert g.squared_norm() == pytest.approx(float((expected ** 2).sum()), rel=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_block_gradient_updates_as_its_dense_gradient_does(name, threshold, monkeypatch):
    """Two steps with clipping (or none), on a parameter that is a part of a joined array
    as in the network: the same norms, parameters and optimiser state as the dense
    gradients give; rows outside the blocks untouched (but by Adam). Products are made a
    few rows at a time (``PIECE_ROWS`` 2), as for blocks of thousands of rows."""
    import rnnlm_cli.rnn.optim as optim
    monkeypatch.setattr(optim, "PIECE_ROWS", 2)
    rng = np.random.default_rng(1)
    start = rng.standard_normal((14, 6)).astype(np.float32)
    steps = [block_gradient(rng, (14, 5)) for _ in range(2)]
    results = []
    for sparse in (True, False):
        joined = start.copy()
        params = {"V": joined[:, :5], "c": joined[:, 5]}
        optimizer = make_optimizer(name, params)
        norms = []
        for g in steps:
            g = copy.deepcopy(g)
            grads = {"V": g if sparse else g.dense(), "c": np.ones(14, np.float32)}
            norms.append(clip_gradients(grads, threshold)[0])
            optimizer.step(params, grads, 0.5)
        results.append((joined, optimizer.state_dict(), norms))
    (sparse_p, sparse_state, n1), (dense_p, dense_state, n2) = results
    assert n1 == pytest.approx(n2, rel=1e-6)
    np.testing.assert_allclose(sparse_p, dense_p, rtol=1e-5, atol=1e-6)
    for k in dense_state:
        np.testing.assert_allclose(sparse_state[k], dense_state[k], rtol=1e-5, atol=1e-6)
    if name != "adam":
        np.testing.assert_array_equal(sparse_p[[6, 7, 12], :5], start[[6, 7, 12], :5])


def test_the_norm_of_a_product_block_survives_cancellation():
    """Two positions with almost the same state and opposite logit gradients: the block
    is a thousandth of its factors' size, and its norm from the Gram matrices is still
    exact to float32's precision (they are taken in float64: in float32 the cancelling
    terms would leave an error of about 10%)."""
    from rnnlm_cli.rnn.optim import BlockGradient, ProductBlock
    rng = np.random.default_rng(2)
    dz = rng.standard_normal(300).astype(np.float32)
    state = rng.standard_normal(200).astype(np.float32)
    left = np.stack([dz, -dz])
    right = np.stack([state, state + np.float32(1e-3) * rng.standard_normal(200,
                                                                          dtype=np.float32)])
    g = BlockGradient([ProductBlock(0, left, right)], (300, 200), np.dtype(np.float32))
    exact = np.linalg.norm(left.astype(np.float64).T @ right.astype(np.float64))
    assert exact < 1e-2 * np.linalg.norm(left) * np.linalg.norm(right)
    assert clip_gradients({"V": g}, 0.0)[0] == pytest.approx(exact, rel=1e-6)


def test_sgd_on_a_part_of_a_joined_array_leaves_the_other_part_exactly():
    """A product block's step goes through the whole rows of ``[V, c]``, padded with a
    zero column: ``c`` is not changed by a single bit, ``V`` as by the dense gradient."""
    from rnnlm_cli.rnn.optim import BlockGradient, ProductBlock
    rng = np.random.default_rng(3)
    joined = rng.standard_normal((9, 4)).astype(np.float32)
    joined[0, 3], joined[1, 3] = -0.0, np.float32(1e-30)
    before = joined.copy()
    left, right = rng.standard_normal((2, 6)).astype(np.float32), \
        rng.standard_normal((2, 3)).astype(np.float32)
    g = BlockGradient([ProductBlock(2, left, right)], (9, 3), np.dtype(np.float32))
    expected = before[:, :3] - 0.5 * g.dense()
    SGD({}).step({"V": joined[:, :3]}, {"V": g}, 0.5)
    assert before[:, 3].tobytes() == joined[:, 3].tobytes()
    np.testing.assert_allclose(joined[:, :3], expected, rtol=1e-6, atol=1e-6)
