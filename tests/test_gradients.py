"""``rnn/gradients.py``: the gradient norms versus distance equal finite differences of the
loss at step t with respect to the hidden state at step k (float64, tiny models), and the
Elman Jacobian norm equals ||diag(f') W^T|| computed directly."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlm_cli.errors import CorpusError, OptionError
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.gradients import elman_jacobian, format_report, measure_gradients
from rnnlm_cli.rnn.network import RnnNetwork

V = 11


def network(cell, activation="tanh", layers=1, hidden=5, init="normal", scale=0.6):
    config = RnnConfig(cell=cell, activation=activation, layers=layers, hidden=hidden,
                       embed=4, init=init, init_scale=scale)
    net = RnnNetwork(config, V, rng=np.random.default_rng(3), dtype=np.float64)
    return net


def stream(n, seed=1):
    return np.random.default_rng(seed).integers(0, V, size=n).astype(np.int32)


def loss_at(net, inputs, targets, t, k, state, hidden):
    """J_t with the top layer's state part 0 at step k replaced by ``state``: the top layer
    is rerun from step k+1 with (state, the rest of step k's state)."""
    layer = net.config.layers - 1
    _, _, tape = net._forward(inputs, hidden, [None] * (net.config.layers + 1))
    x = tape[layer][0]
    if layer == 0 and tape[-1][1] is not None:
        x = x[tape[-1][1]]                                             # distinct words: spread
    cache = tape[layer][1]
    U, b = net.params[f"layer{layer}.U"], net.params[f"layer{layer}.b"]
    T, B = inputs.shape
    x_proj = (x @ U + b).reshape(T, B, -1)
    start = [state] + ([cache["cs"][k + 1]] if "cs" in cache else [])
    if t == k:
        s_t = state
    else:
        hs, _, _ = net.cell.forward(net._layer(layer), x_proj[k + 1:t + 1], tuple(start))
        s_t = hs[-1]
    logp = net.log_probs(s_t)
    return -logp[np.arange(B), targets[t]].sum()


def finite_difference_norm(net, inputs, targets, t, k, b, hidden, eps=1e-5):
    layer = net.config.layers - 1
    _, _, tape = net._forward(inputs, hidden, [None] * (net.config.layers + 1))
    base = tape[layer][1]["hs"][k + 1].copy()                          # s_k, (B, H)
    grad = np.zeros(base.shape[1])
    for i in range(base.shape[1]):
        plus, minus = base.copy(), base.copy()
        plus[b, i] += eps
        minus[b, i] -= eps
        grad[i] = (loss_at(net, inputs, targets, t, k, plus, hidden)
                   - loss_at(net, inputs, targets, t, k, minus, hidden)) / (2 * eps)
    return np.linalg.norm(grad)


@pytest.mark.parametrize("cell,activation,layers", [("rnn", "tanh", 1), ("gru", "tanh", 1),
                                                    ("lstm", "tanh", 1), ("rnn", "tanh", 2),
                                                    ("rnn", "sigmoid", 1)])
def test_norms_equal_finite_differences(cell, activation, layers):
    net = network(cell, activation, layers)
    D = 6
    data = stream(D + 2)                                               # one chunk, T = D + 1
    report = measure_gradients(net, data, max_distance=D, streams=1)
    assert report.chunks == 1 and report.steps == D + 1
    inputs, targets = data[:-1, None], data[1:, None]
    hidden = net.initial_hidden(1)
    T = D + 1
    for d in (0, 1, 3, D):
        pairs = [(t, t - d) for t in range(d, T)]
        fd = [finite_difference_norm(net, inputs, targets, t, k, 0, hidden) for t, k in pairs]
        assert report.counts[d] == len(pairs)
        assert report.mean_norm[d] == pytest.approx(np.mean(fd), rel=1e-6)


def test_each_pair_equals_finite_differences_with_two_streams():
    """With B = 2 streams the mean is over (t, stream) pairs; the one pair at distance D."""
    net = network("lstm")
    D = 4
    data = stream(2 * (D + 2))
    report = measure_gradients(net, data, max_distance=D, streams=2)
    assert report.streams == 2 and report.counts[D] == 2
    rows = data.size // 2
    grid = data[:rows * 2].reshape(2, rows).T
    inputs, targets = grid[:D + 1], grid[1:D + 2]
    hidden = net.initial_hidden(2)
    fd = [finite_difference_norm(net, inputs, targets, D, 0, b, hidden) for b in (0, 1)]
    assert report.mean_norm[D] == pytest.approx(np.mean(fd), rel=1e-6)


def test_the_state_is_carried_between_chunks():
    net = network("gru")
    report = measure_gradients(net, stream(40), max_distance=5, max_chunks=None)
    assert report.chunks == len(range(0, 39, 6))
    assert np.all(np.isfinite(report.mean_norm)) and np.all(report.mean_norm > 0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_elman_jacobian_norm_equals_the_direct_one(activation):
    net = network("rnn", activation, init="normal", scale=0.8)
    D = 5
    data = stream(D + 2)
    report = measure_gradients(net, data, max_distance=D)
    top, _ = net.outputs(data[:-1, None], net.initial_hidden(1))     # (T, 1, H)
    W = net.params["layer0.W"]
    direct = [np.linalg.norm(np.diag({"tanh": 1 - s * s, "sigmoid": s * (1 - s),
                                      "relu": (s > 0) * 1.0}[activation]) @ W.T, 2)
              for s in top[:, 0]]
    assert report.jacobian_steps == D + 1
    assert report.jacobian_norm == pytest.approx(np.mean(direct), rel=1e-10)
    assert np.linalg.norm(elman_jacobian(W, top[2, 0], activation), 2) == \
        pytest.approx(direct[2], rel=1e-12)


def test_gated_jacobian_equals_finite_differences():
    """The GRU's per-step Jacobian (its spectral norm) against central differences."""
    net = network("gru")
    data = stream(4)
    report = measure_gradients(net, data, max_distance=2)
    layer = net._layer(0)
    x = net.params["embedding"][data[:-1]] @ net.params["layer0.U"] + net.params["layer0.b"]
    hs, _, _ = net.cell.forward(layer, x[:, None, :], (np.zeros((1, 5)),))
    norms = []
    for t in range(3):
        before = np.zeros((1, 5)) if t == 0 else hs[t - 1]
        jac = np.zeros((5, 5))
        for j in range(5):
            e = np.zeros((1, 5))
            e[0, j] = 1e-6
            plus, _, _ = net.cell.forward(layer, x[t:t + 1, None, :], (before + e,))
            minus, _, _ = net.cell.forward(layer, x[t:t + 1, None, :], (before - e,))
            jac[:, j] = (plus[0, 0] - minus[0, 0]) / 2e-6
        norms.append(np.linalg.norm(jac, 2))
    assert report.jacobian_norm == pytest.approx(np.mean(norms), rel=1e-7)


def test_short_text_gives_what_it_can():
    report = measure_gradients(network("rnn"), stream(5), max_distance=50)
    assert report.max_distance == 3 and report.requested_max_distance == 50
    assert report.notes and "cannot be measured" in report.notes[0]


def test_bad_input():
    with pytest.raises(OptionError):
        measure_gradients(network("rnn"), stream(10), max_distance=0)
    with pytest.raises(CorpusError):
        measure_gradients(network("rnn"), stream(1), max_distance=3)


def test_format_has_table_and_chart():
    text = format_report(measure_gradients(network("lstm"), stream(30), max_distance=8))
    assert "█" in text and "log10" in text and "layer 1 of 1" in text and "h, with c" in text
    assert "spectral norm" in text


def test_jacobians_are_capped_and_spread_over_many_chunks():
    from rnnlm_cli.rnn.gradients import JACOBIAN_STEPS
    report = measure_gradients(network("rnn"), stream(2000), max_distance=2, max_chunks=None)
    assert report.chunks > JACOBIAN_STEPS
    assert report.jacobian_steps == JACOBIAN_STEPS
