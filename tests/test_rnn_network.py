"""The recurrent network: gradients of every parameter against finite differences, the
loss at initialisation, dropout, initialisation schemes, shapes and storage."""
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from rnnlm_cli.errors import OptionError
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.gradcheck import check_gradient, numerical_partial, relative_error
from rnnlm_cli.rnn.kernels import log_softmax
from rnnlm_cli.rnn.network import RnnNetwork

T, B, H, V = 4, 2, 5, 7
KINDS = [("rnn", "tanh"), ("rnn", "sigmoid"), ("rnn", "relu"), ("gru", "tanh"),
         ("lstm", "tanh")]


def small_problem(config, seed=0, dtype=np.float64, vocab=V):
    """A float64 network with every parameter (biases too) moved off its initial value,
    a chunk of ids, and a random carried-in state, as a previous chunk would leave it."""
    net = RnnNetwork(config, vocab, np.random.default_rng(seed), dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for p in net.params.values():
        p += rng.normal(0, 0.5, p.shape).astype(dtype)
    inputs = rng.integers(0, vocab, (T, B))
    targets = rng.integers(0, vocab, (T, B))
    hidden = [tuple(rng.normal(0, 0.5, h.shape).astype(dtype) for h in layer)
              for layer in net.initial_hidden(B)]
    return net, inputs, targets, hidden


def worst_errors(net, inputs, targets, hidden, grads, seed=None):
    """Check every entry of every parameter; with ``seed``, dropout masks drawn anew from
    the same seed at every evaluation (so the function is fixed)."""
    rng = (lambda: None) if seed is None else (lambda: np.random.default_rng(seed))
    loss = lambda: net.loss_and_grads(inputs, targets, hidden, rng())[0]
    return {name: check_gradient(loss, p, grads[name]) for name, p in net.params.items()}


def relu_margin(net, inputs, hidden):
    """The smallest |pre-activation| of a relu Elman network over the chunk."""
    x = net.params["embedding"][inputs]                                  # (T, B, E)
    margin = np.inf
    for layer in range(net.config.layers):
        U, W, b = (net.params[f"layer{layer}.{k}"] for k in "UWb")
        h, outputs = hidden[layer][0], []
        for x_t in x:
            a = x_t @ U + b + h @ W
            margin = min(margin, np.abs(a).min())
            h = np.maximum(a, 0)
            outputs.append(h)
        x = np.stack(outputs)
    return margin


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("cell,activation", KINDS, ids=[f"{c}-{a}" for c, a in KINDS])
def test_every_gradient_matches_finite_differences(cell, activation, layers, tie):
    config = RnnConfig(cell=cell, activation=activation, layers=layers, hidden=H,
                       tie_weights=tie)
    net, inputs, targets, hidden = small_problem(config)
    if activation == "relu":        # finite differences are wrong across a kink of relu:
        seed = 0                    # take a problem with no pre-activation near one
        while relu_margin(net, inputs, hidden) < 0.02:
            seed += 1
            net, inputs, targets, hidden = small_problem(config, seed)
    loss, grads, _ = net.loss_and_grads(inputs, targets, hidden)
    assert list(grads) == list(net.params)
    assert all(grads[k].shape == p.shape and grads[k].dtype == p.dtype
               for k, p in net.params.items())
    assert loss == pytest.approx(net.loss(inputs, targets, hidden)[0], rel=1e-12)
    for name, result in worst_errors(net, inputs, targets, hidden, grads).items():
        assert result.checked == net.params[name].size
        assert result.worst < 1e-6, (name, result)


def test_the_carried_in_state_matters_to_loss_and_gradients():
    config = RnnConfig(cell="lstm", hidden=H)
    net, inputs, targets, hidden = small_problem(config)
    zero = net.initial_hidden(B)
    loss_carried, grads_carried, _ = net.loss_and_grads(inputs, targets, hidden)
    loss_zero, grads_zero, _ = net.loss_and_grads(inputs, targets, zero)
    assert loss_carried != loss_zero
    assert not np.allclose(grads_carried["layer0.W"], grads_zero["layer0.W"])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradients_with_dropout_match_finite_differences_for_fixed_masks(cell):
    config = RnnConfig(cell=cell, layers=2, hidden=H, dropout=0.3)
    net, inputs, targets, hidden = small_problem(config)
    _, grads, _ = net.loss_and_grads(inputs, targets, hidden, np.random.default_rng(9))
    for name, result in worst_errors(net, inputs, targets, hidden, grads, seed=9).items():
        assert result.worst < 1e-6, (name, result)


def test_the_checker_flags_a_wrong_gradient():
    """A gradient off by 1e-4 of itself in one entry fails the check, at that entry; the
    right one passes: the check above is trustworthy."""
    config = RnnConfig(cell="lstm", hidden=H)
    net, inputs, targets, hidden = small_problem(config)
    _, grads, _ = net.loss_and_grads(inputs, targets, hidden)
    loss = lambda: net.loss(inputs, targets, hidden)[0]
    W, dW = net.params["layer0.W"], grads["layer0.W"]
    assert check_gradient(loss, W, dW).worst < 1e-6
    wrong = dW.copy()
    wrong[2, 7] *= 1 + 1e-4
    result = check_gradient(loss, W, wrong)
    assert result.worst > 1e-6 and result.index == (2, 7)
    # A gradient of the wrong sign or a missing term is flagged everywhere it matters.
    assert check_gradient(loss, W, -dW).worst > 0.99
    assert check_gradient(loss, W, np.zeros_like(dW)).worst == pytest.approx(1.0)


def test_numerical_partial_restores_the_array_and_is_exact_on_polynomials():
    x = np.array([0.3, -1.2])
    f = lambda: float(x[0] ** 4 - 3 * x[0] * x[1] + x[1] ** 3)
    assert numerical_partial(f, x, (0,)) == pytest.approx(4 * 0.3 ** 3 + 3.6, rel=1e-10)
    assert x.tolist() == [0.3, -1.2]
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1e-7, 0.0) == pytest.approx(0.1)     # below the floor: absolute
    assert relative_error(1e-3, 0.0) == 1.0


@pytest.mark.parametrize("cell,activation", KINDS, ids=[f"{c}-{a}" for c, a in KINDS])
def test_loss_at_initialisation_is_about_log_vocabulary(cell, activation):
    vocab, hidden = 1000, 32
    config = RnnConfig(cell=cell, activation=activation, hidden=hidden)
    net = RnnNetwork(config, vocab, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, vocab, (35, 20)), rng.integers(0, vocab, (35, 20))
    loss, grads, _ = net.loss_and_grads(inputs, targets, net.initial_hidden(20))
    assert abs(loss - math.log(vocab)) < 0.1
    assert all(g.dtype == np.float32 for g in grads.values())


def test_float32_and_float64_agree():
    config = RnnConfig(cell="lstm", layers=2, hidden=16)
    rng = np.random.default_rng(3)
    inputs, targets = rng.integers(0, 50, (10, 3)), rng.integers(0, 50, (10, 3))
    results = []
    for dtype in (np.float32, np.float64):
        net = RnnNetwork(config, 50, np.random.default_rng(0), dtype=dtype)
        results.append(net.loss_and_grads(inputs, targets, net.initial_hidden(3)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for name, g in results[1][1].items():
        assert np.allclose(results[0][1][name], g, rtol=1e-3, atol=1e-6), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("way", ["overflow", "underflow"])
def test_logits_beyond_the_range_of_exp_are_handled_exactly(way, dtype):
    """Rows whose logits overflow exp (one huge logit) or underflow it (all very
    negative) take the max-subtracted path: loss and gradients still equal those of a
    plain stable log-softmax in float64."""
    config = RnnConfig(cell="rnn", hidden=H)
    net, inputs, targets, hidden = small_problem(config, dtype=dtype)
    big = 3000.0 if dtype == np.float64 else 300.0
    if way == "overflow":
        net.params["decoder.V"][:, 0] *= big / np.abs(net.params["decoder.V"][:, 0]).max()
    else:
        net.params["decoder.c"] -= big
    with np.errstate(all="raise"):
        loss, grads, _ = net.loss_and_grads(inputs, targets, hidden)
    top, _ = net.outputs(inputs, hidden)
    states = top.reshape(T * B, H).astype(np.float64)
    logits = states @ net.params["decoder.V"].astype(np.float64) + net.params["decoder.c"]
    logp = log_softmax(logits)
    at, tgt = np.arange(T * B), targets.reshape(-1)
    assert np.isfinite(loss)
    assert loss == pytest.approx(-logp[at, tgt].mean(), rel=1e-5)
    dlogits = np.exp(logp)
    dlogits[at, tgt] -= 1
    dlogits /= T * B
    assert np.allclose(grads["decoder.c"], dlogits.sum(axis=0), rtol=1e-4, atol=1e-6)
    assert np.allclose(grads["decoder.V"], states.T @ dlogits, rtol=1e-4, atol=1e-6)
    assert all(np.isfinite(g).all() for g in grads.values())


def test_dropout_needs_a_generator_and_a_rate():
    config = RnnConfig(cell="gru", layers=2, hidden=H, dropout=0.5)
    net, inputs, targets, hidden = small_problem(config)
    plain, plain_grads, _ = net.loss_and_grads(inputs, targets, hidden)
    dropped, _, _ = net.loss_and_grads(inputs, targets, hidden, np.random.default_rng(0))
    again, _, _ = net.loss_and_grads(inputs, targets, hidden, np.random.default_rng(0))
    assert dropped != plain and dropped == again
    assert net.loss(inputs, targets, hidden)[0] == pytest.approx(plain, rel=1e-12)
    off = RnnNetwork(replace(config, dropout=0.0), V, dtype=np.float64)
    off.params = net.params
    zero, zero_grads, _ = off.loss_and_grads(inputs, targets, hidden, np.random.default_rng(0))
    assert zero == plain
    assert all(np.array_equal(zero_grads[k], plain_grads[k]) for k in plain_grads)


def test_carrying_the_state_across_chunks_is_one_long_forward():
    config = RnnConfig(cell="lstm", layers=2, hidden=8)
    net = RnnNetwork(config, 20, np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 20, (9, 3))
    whole, _ = net.outputs(ids, net.initial_hidden(3))
    first, hidden = net.outputs(ids[:4], net.initial_hidden(3))
    second, _ = net.outputs(ids[4:], hidden)
    assert np.allclose(np.concatenate([first, second]), whole, rtol=1e-13, atol=1e-15)
    _, _, new_hidden = net.loss_and_grads(ids[:4], ids[1:5], net.initial_hidden(3))
    assert all(np.array_equal(a, b) for a, b in zip(new_hidden[1], hidden[1]))
    new_hidden[0][0][:] = 99.0        # a copy, not a view of anything the network keeps
    assert np.array_equal(net.outputs(ids[:4], net.initial_hidden(3))[0], first)


def test_step_is_a_normalised_distribution_after_one_token():
    config = RnnConfig(cell="gru", layers=2, hidden=8)
    net = RnnNetwork(config, 30, np.random.default_rng(0))
    tokens = np.array([3, 4, 5])
    logp, hidden = net.step(tokens, net.initial_hidden(3))
    assert logp.shape == (3, 30) and logp.dtype == np.float64
    assert np.allclose(np.exp(logp).sum(axis=1), 1.0, atol=1e-12)
    top, expected = net.outputs(tokens[None], net.initial_hidden(3))
    assert np.array_equal(hidden[1][0], expected[1][0])
    explicit = top[0] @ net.params["decoder.V"] + net.params["decoder.c"]
    assert np.allclose(logp, log_softmax(explicit.astype(np.float64)))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_identity_init_is_scaled_identity_with_zero_biases(cell):
    config = RnnConfig(cell=cell, activation="relu", hidden=6, init="identity",
                       init_scale=0.5, forget_bias=0.0)
    net = RnnNetwork(config, 10)
    W = net.params["layer0.W"]
    for g in range(config.gates):
        assert np.array_equal(W[:, g * 6:(g + 1) * 6], 0.5 * np.eye(6, dtype=np.float32))
    assert not net.params["layer0.b"].any() and not net.params["decoder.c"].any()


def test_recurrent_inits_have_their_documented_scale():
    H_ = 200
    for init, check in [
            ("orthogonal", lambda w: np.allclose(w @ w.T, 4 * np.eye(H_), atol=1e-9)),
            ("normal", lambda w: abs(w.std() - 2.0) < 0.05),
            ("uniform", lambda w: np.abs(w).max() <= 2.0 and abs(w.std() - 2 / 3 ** 0.5) < 0.05),
            ("xavier", lambda w: np.abs(w).max() <= 2.0 * (6 / (2 * H_)) ** 0.5)]:
        config = RnnConfig(cell="rnn", hidden=H_, init=init, init_scale=2.0)
        net = RnnNetwork(config, 10, dtype=np.float64)
        assert check(net.params["layer0.W"]), init


def test_the_default_initialisation_is_pytorchs():
    """Without --init or --init-scale, W ~ U(+-1/sqrt(H)) (torch.nn.LSTM's bound) and no
    forget-gate bias; without --init-scale, normal has std 1/sqrt(H) and the rest scale 1."""
    H_ = 400
    net = RnnNetwork(RnnConfig(cell="lstm", hidden=H_), 10, dtype=np.float64)
    W, bound = net.params["layer0.W"], 1 / H_ ** 0.5
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.999 * bound
    assert abs(W.std() - bound / 3 ** 0.5) < 0.01 * bound
    assert not net.params["layer0.b"].any()
    for init, scale in [("normal", bound), ("uniform", bound), ("xavier", 1.0),
                        ("orthogonal", 1.0), ("identity", 1.0)]:
        assert RnnConfig(hidden=H_, init=init).recurrent_scale == scale
    assert RnnConfig(hidden=H_, init="normal", init_scale=0.3).recurrent_scale == 0.3


def test_lstm_forget_bias_and_shapes():
    config = RnnConfig(cell="lstm", layers=2, hidden=4, embed=3, forget_bias=1.5)
    net = RnnNetwork(config, 11)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {"embedding": (11, 3), "layer0.U": (3, 16), "layer0.W": (4, 16),
                      "layer0.b": (16,), "layer1.U": (4, 16), "layer1.W": (4, 16),
                      "layer1.b": (16,), "decoder.V": (4, 11), "decoder.c": (11,)}
    assert net.params["layer0.b"].tolist() == [0] * 4 + [1.5] * 4 + [0] * 8
    assert all(v.dtype == np.float32 for v in net.params.values())
    gru = RnnNetwork(RnnConfig(cell="gru", hidden=4, tie_weights=True), 11)
    assert "decoder.V" not in gru.params and gru.params["layer0.bn"].shape == (4,)


def test_same_seed_same_network_and_from_arrays_round_trip():
    config = RnnConfig(cell="gru", layers=2, hidden=8)
    a = RnnNetwork(config, 30, np.random.default_rng(5))
    b = RnnNetwork(config, 30, np.random.default_rng(5))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    c = RnnNetwork.from_arrays(config, a.to_arrays(), 30)
    tokens = np.array([1, 2])
    assert np.array_equal(a.step(tokens, a.initial_hidden(2))[0],
                          c.step(tokens, c.initial_hidden(2))[0])
    arrays = a.to_arrays()
    arrays["layer1.W"] = arrays["layer1.W"][:, :-1]
    with pytest.raises(ValueError, match="layer1.W"):
        RnnNetwork.from_arrays(config, arrays, 30)
    del arrays["layer1.W"]
    with pytest.raises(ValueError, match="'layer1.W' is missing"):
        RnnNetwork.from_arrays(config, arrays, 30)


@pytest.mark.parametrize("change,message", [
    ({"cell": "cnn"}, "--cell must be one of rnn, gru, lstm"),
    ({"activation": "gelu"}, "--activation"),
    ({"hidden": 0}, "--hidden must be a whole number at least 1, not 0"),
    ({"layers": 0}, "--layers"),
    ({"embed": 0}, "--embed"),
    ({"dropout": 1.0}, "--dropout must be a number in [0, 1), not 1.0"),
    ({"dropout": -0.1}, "--dropout"),
    ({"tie_weights": True, "embed": 10}, "--tie-weights needs --embed equal to --hidden"),
    ({"init": "zeros"}, "--init"),
    ({"init_scale": 0.0}, "--init-scale must be a number in (0, 100], not 0.0"),
    ({"init_scale": float("nan")}, "--init-scale"),
    ({"forget_bias": float("inf")}, "--forget-bias"),
])
def test_config_validation_names_the_option(change, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        replace(RnnConfig(hidden=20), **change).validate()


def test_config_from_dict_refuses_unknown_and_bad_settings():
    # A file from before --softmax has a full softmax.
    assert RnnConfig.from_dict({"cell": "gru", "hidden": 8}) == \
        RnnConfig(cell="gru", hidden=8, softmax="full")
    assert RnnConfig.from_dict({"softmax": "class", "classes": 7}).classes == 7
    for settled in ({"softmax": "auto"}, {"softmax": "class"},
                    {"softmax": "full", "classes": 3}):
        with pytest.raises(ValueError, match="softmax|--classes"):
            RnnConfig.from_dict(settled)
    with pytest.raises(ValueError, match="unknown rnn_config setting"):
        RnnConfig.from_dict({"cells": "gru"})
    with pytest.raises(ValueError, match="--hidden"):
        RnnConfig.from_dict({"hidden": "200"})
    with pytest.raises(ValueError, match="mapping"):
        RnnConfig.from_dict(["lstm"])


def test_bad_shapes_are_refused():
    net = RnnNetwork(RnnConfig(cell="lstm", hidden=4), 9)
    with pytest.raises(ValueError, match="hidden state"):
        net.loss(np.zeros((3, 2), dtype=int), np.zeros((3, 2), dtype=int), net.initial_hidden(3))
    with pytest.raises(ValueError, match="inputs and targets"):
        net.loss(np.zeros((3, 2), dtype=int), np.zeros((3, 1), dtype=int), net.initial_hidden(2))


def test_projecting_each_distinct_word_once_changes_nothing(monkeypatch):
    """Layer 0 projects each distinct word of a chunk once when words repeat; the loss and
    every gradient are those of projecting every position."""
    import rnnlm_cli.rnn.network as network_module
    config = RnnConfig(cell="gru", layers=2, hidden=6)
    net = RnnNetwork(config, 12, np.random.default_rng(0), dtype=np.float64)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 4, (6, 3)), rng.integers(0, 12, (6, 3))
    assert network_module.distinct_rows(inputs.reshape(-1))[1] is not None
    fast = net.loss_and_grads(inputs, targets, net.initial_hidden(3))
    monkeypatch.setattr(network_module, "distinct_rows", lambda ids: (ids, None))
    plain = net.loss_and_grads(inputs, targets, net.initial_hidden(3))
    assert fast[0] == pytest.approx(plain[0], rel=1e-13)
    for name in net.params:
        assert np.allclose(fast[1][name], plain[1][name], rtol=1e-12, atol=1e-15), name


@pytest.mark.parametrize("max_onehot", [512, 0])          # the product, and the sort
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_are_summed_per_word(monkeypatch, max_onehot, dtype):
    """``sum_rows_by`` against a plain loop: words once, repeated, and absent (zero rows)."""
    import rnnlm_cli.rnn.kernels as kernels
    monkeypatch.setattr(kernels, "MAX_ONEHOT_WORDS", max_onehot)
    rng = np.random.default_rng(7)
    where = np.array([3, 0, 5, 3, 7, 3, 0, 8, 2])           # 1, 4 and 6 absent; 3 thrice
    rows = rng.standard_normal((where.size, 5)).astype(dtype)
    expected = np.zeros((9, 5))
    for n, k in enumerate(where):
        expected[k] += rows[n]
    out = kernels.sum_rows_by(where, rows, 9)
    assert out.dtype == dtype and out.shape == (9, 5)
    assert np.allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert not out[[1, 4, 6]].any()
    assert np.array_equal(out[[5, 7, 8, 2]], rows[[2, 4, 7, 8]])  # single rows copied exactly


def test_gradients_match_finite_differences_when_no_word_repeats():
    config = RnnConfig(cell="lstm", layers=2, hidden=H)
    net, _, targets, hidden = small_problem(config, vocab=16)
    inputs = np.random.default_rng(4).permutation(16)[:T * B].reshape(T, B)
    from rnnlm_cli.rnn.kernels import distinct_rows
    assert distinct_rows(inputs.reshape(-1))[1] is None
    _, grads, _ = net.loss_and_grads(inputs, targets, hidden)
    for name, result in worst_errors(net, inputs, targets, hidden, grads).items():
        assert result.worst < 1e-6, (name, result)


def test_the_decoder_stays_one_array_through_updates_and_replacement():
    """``decoder.V`` and ``decoder.c`` are the parts of one [V; c] array that the decoder
    product uses without copying; in-place updates keep it current, and a network whose
    parameters were replaced by assignment still computes from the new values."""
    config = RnnConfig(cell="lstm", hidden=5)
    net = RnnNetwork(config, 9, np.random.default_rng(0), dtype=np.float64)
    V, c = net.params["decoder.V"], net.params["decoder.c"]
    joined = net.decoder.matrix_with_bias(net.params)
    assert V.base is joined and c.base is joined
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 9, (4, 2)), rng.integers(0, 9, (4, 2))
    _, grads, _ = net.loss_and_grads(inputs, targets, net.initial_hidden(2))
    for name, p in net.params.items():
        p -= 0.5 * grads[name]                                   # as the optimisers do
    assert np.array_equal(net.decoder.matrix_with_bias(net.params), np.vstack([V, c]))
    states = rng.standard_normal((3, 5))
    assert np.allclose(net.log_probs(states), log_softmax(states @ V + c), rtol=1e-13)
    loaded = RnnNetwork.from_arrays(config, net.to_arrays(), 9)
    assert loaded.params["decoder.V"].base is loaded.decoder.matrix_with_bias(loaded.params)
    loaded.params["decoder.c"] = np.full(9, 2.0)                 # no longer joined
    assert np.array_equal(loaded.decoder.matrix_with_bias(loaded.params),
                          np.vstack([V, np.full(9, 2.0)]))
