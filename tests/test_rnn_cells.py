"""The recurrent cells alone: forward against the equations, backward against finite
differences (float64), and against torch.nn when PyTorch is installed."""
import numpy as np
import pytest

from rnnlm_cli.rnn.cells import ElmanCell, GruCell, LstmCell, sigmoid_
from rnnlm_cli.rnn.gradcheck import check_gradient

T, B, H = 4, 2, 5
CELLS = [ElmanCell("tanh"), ElmanCell("sigmoid"), ElmanCell("relu"), GruCell(), LstmCell()]
IDS = ["rnn-tanh", "rnn-sigmoid", "rnn-relu", "gru", "lstm"]


def cell_inputs(cell, seed=0):
    """Random float64 parameters, input projections, carried-in state, and the weights
    of a loss that depends on every output and on the last state."""
    rng = np.random.default_rng(seed)
    G = cell.gates
    params = {"W": rng.normal(0, 0.5, (H, G * H))}
    if isinstance(cell, GruCell):
        params["bn"] = rng.normal(0, 0.5, H)
    x_proj = rng.normal(0, 1.0, (T, B, G * H))
    h0 = tuple(rng.normal(0, 0.5, (B, H)) for _ in range(cell.state_size))
    w_hs = rng.normal(0, 1.0, (T, B, H))
    w_last = tuple(rng.normal(0, 1.0, (B, H)) for _ in range(cell.state_size))
    return params, x_proj, h0, w_hs, w_last


def test_sigmoid_in_place_is_accurate_and_quiet():
    a = np.array([-1000.0, -30.0, -1.0, 0.0, 2.0, 30.0, 1000.0])
    expected = 1 / (1 + np.exp(-np.clip(a, -700, 700)))
    with np.errstate(all="raise"):
        out = sigmoid_(a.copy())
    assert np.allclose(out, expected, rtol=1e-15, atol=2e-16)


def reference_step(cell, params, x, state):
    """One step straight from the textbook equations of each cell (no tricks)."""
    sig = lambda v: 1 / (1 + np.exp(-v))
    W = params["W"]
    if isinstance(cell, ElmanCell):
        f = {"tanh": np.tanh, "sigmoid": sig, "relu": lambda v: np.maximum(v, 0)}
        return (f[cell.activation](x + state[0] @ W),)
    if isinstance(cell, GruCell):
        h = state[0]
        hw = h @ W
        r = sig(x[:, :H] + hw[:, :H])
        z = sig(x[:, H:2 * H] + hw[:, H:2 * H])
        n = np.tanh(x[:, 2 * H:] + r * (hw[:, 2 * H:] + params["bn"]))
        return ((1 - z) * n + z * h,)
    h, c = state
    a = x + h @ W
    i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
    c = f * c + i * g
    return (o * np.tanh(c), c)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_forward_follows_the_equations(cell):
    params, x_proj, h0, _, _ = cell_inputs(cell)
    hs, last, _ = cell.forward(params, x_proj, h0)
    state = h0
    for t in range(T):
        state = reference_step(cell, params, x_proj[t], state)
        assert np.allclose(hs[t], state[0], rtol=1e-12, atol=1e-14)
    for got, want in zip(last, state):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_forward_leaves_its_inputs_alone(cell):
    params, x_proj, h0, _, _ = cell_inputs(cell)
    before = (x_proj.copy(), [h.copy() for h in h0], {k: v.copy() for k, v in params.items()})
    cell.forward(params, x_proj, h0)
    assert np.array_equal(x_proj, before[0])
    assert all(np.array_equal(a, b) for a, b in zip(h0, before[1]))
    assert all(np.array_equal(params[k], before[2][k]) for k in params)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_backward_matches_finite_differences(cell):
    """Every entry of W (and bn), x_proj and the carried-in state h0 (and c0), for a loss
    that reads every output and the last state (so dlast is exercised too)."""
    params, x_proj, h0, w_hs, w_last = cell_inputs(cell)
    h0 = tuple(np.array(h) for h in h0)

    def loss():
        hs, last, _ = cell.forward(params, x_proj, h0)
        return float(np.sum(hs * w_hs) + sum(np.sum(l * w) for l, w in zip(last, w_last)))

    _, _, cache = cell.forward(params, x_proj, h0)
    dx_proj, grads, dh0 = cell.backward(params, w_hs, w_last, cache)
    assert set(grads) == set(params)
    checks = {name: check_gradient(loss, params[name], grads[name]) for name in params}
    checks["x_proj"] = check_gradient(loss, x_proj, dx_proj)
    for k, part in enumerate(h0):
        checks[f"h0[{k}]"] = check_gradient(loss, part, dh0[k])
    for name, result in checks.items():
        assert result.worst < 1e-6, (name, result)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_backward_without_dlast_is_backward_with_zero_dlast(cell):
    params, x_proj, h0, w_hs, _ = cell_inputs(cell)
    _, _, cache = cell.forward(params, x_proj, h0)
    zeros = tuple(np.zeros((B, H)) for _ in h0)
    a = cell.backward(params, w_hs, None, cache)
    b = cell.backward(params, w_hs, zeros, cache)
    assert np.array_equal(a[0], b[0])
    assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert all(np.array_equal(x, y) for x, y in zip(a[2], b[2]))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_same_outputs_as_torch(kind):
    """With weights carried over (U = weight_ih.T, W = weight_hh.T, b = bias_ih + bias_hh,
    the GRU's bn = bias_hh_n), the cells compute what torch.nn.RNN/GRU/LSTM compute."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    E = 3
    module = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](
        E, H).double()
    cell = {"rnn": ElmanCell("tanh"), "gru": GruCell(), "lstm": LstmCell()}[kind]
    w_ih, w_hh = module.weight_ih_l0.detach().numpy(), module.weight_hh_l0.detach().numpy()
    b_ih, b_hh = module.bias_ih_l0.detach().numpy(), module.bias_hh_l0.detach().numpy()
    params = {"W": w_hh.T.copy()}
    b = b_ih + b_hh
    if kind == "gru":
        b = b_ih + np.concatenate([b_hh[:2 * H], np.zeros(H)])
        params["bn"] = b_hh[2 * H:].copy()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (T, B, E))
    h0 = tuple(rng.normal(0, 0.5, (B, H)) for _ in range(cell.state_size))
    hs, last, _ = cell.forward(params, x @ w_ih.T + b, h0)
    torch_state = tuple(torch.from_numpy(h[None]) for h in h0)
    out, _ = module(torch.from_numpy(x), torch_state if kind == "lstm" else torch_state[0])
    assert np.allclose(hs, out.detach().numpy(), rtol=1e-10, atol=1e-12)
