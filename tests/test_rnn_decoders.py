"""The output layers (rnn/decoders.py): the class-factorized softmax against the explicit
product of its two softmaxes, its gradients against finite differences, frequency binning
by hand, and the settling of ``--softmax auto`` / ``--classes``."""
from __future__ import annotations

import numpy as np
import pytest

import rnnlm_cli.rnn.decoders as decoders
from rnnlm_cli.errors import OptionError
from rnnlm_cli.rnn.config import AUTO_CLASS_WORDS, RnnConfig
from rnnlm_cli.rnn.decoders import ClassSoftmax, frequency_classes, make_decoder
from rnnlm_cli.rnn.gradcheck import check_gradient
from rnnlm_cli.rnn.network import RnnNetwork
from rnnlm_cli.rnn.optim import DenseBlock, ProductBlock, RowGradient, dense

BOS = 1
H, T, B = 5, 4, 3


# -- frequency binning ------------------------------------------------------------------------

def test_frequency_binning_by_hand():
    # ids 0..6, <s> = 1 left out; by falling count: 2 (10), 0 (5), 3 (3), 4, 5 (1), 6 (0).
    # Mass so far: .5 after word 2 (> 1/3: class 0 closed), .75 after word 0 (> 2/3: class
    # 1 closed), and the last class takes the rest.
    words, starts = frequency_classes(np.array([5, 0, 10, 3, 1, 1, 0]), 3, outside=BOS)
    assert words.tolist() == [2, 0, 3, 4, 5, 6]
    assert starts.tolist() == [0, 1, 2, 6]


def test_binning_gives_exactly_c_nonempty_classes_even_when_one_word_has_most_mass():
    # One word has 97% of the mass: without the rule "close a class when the words left
    # just fill the classes left", the classes after it would be too few.
    counts = np.array([970, 0, 10, 10, 5, 3, 2])
    words, starts = frequency_classes(counts, 4, outside=BOS)
    assert starts.tolist() == [0, 1, 2, 3, 6]
    assert sorted(words.tolist()) == [0, 2, 3, 4, 5, 6]
    words, starts = frequency_classes(counts, 6, outside=BOS)        # one word each
    assert starts.tolist() == list(range(7))
    with pytest.raises(ValueError, match="7 classes for 6 words"):
        frequency_classes(counts, 7, outside=BOS)


def test_equal_counts_give_classes_of_equal_size():
    words, starts = frequency_classes(np.ones(41), 4, outside=BOS)
    assert np.diff(starts).tolist() == [10, 10, 10, 10]
    assert words.tolist() == [0] + list(range(2, 41))


def test_classes_read_from_a_file_are_checked():
    for words, starts, message in [
        ([0, 2, 3, 3], [0, 2, 4], "two classes"),
        ([0, 2, 3], [0, 2, 4], "word ids"),
        ([0, 2, 3, 9], [0, 2, 4], "word ids"),
        ([0, 2, 3, 4], [0, 2, 2, 4], "non-empty"),
        ([0, 2, 3, 4], [1, 4], "non-empty"),
        ([0.0, 2, 3, 4], [0, 4], "integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            ClassSoftmax(H, 5, np.array(words), np.array(starts))


# -- the distribution -------------------------------------------------------------------------

def class_network(vocab=13, classes=4, seed=0, dtype=np.float64):
    counts = np.random.default_rng(seed).integers(0, 50, vocab)
    config = RnnConfig(cell="lstm", hidden=H, softmax="class", classes=classes)
    net = RnnNetwork(config, vocab, np.random.default_rng(seed), dtype=dtype,
                     word_counts=counts)
    rng = np.random.default_rng(seed + 1)
    for p in net.params.values():
        p += rng.normal(0, 0.5, p.shape).astype(dtype)
    return net


def explicit_log_probs(net, states):
    """P(w | s) = softmax(A s + a)[k(w)] * softmax(V_k s + c_k)[w], word by word, from the
    parameters and the class lists alone."""
    d, p = net.decoder, net.params
    out = np.full((states.shape[0], net.vocab_size), -np.inf)
    for r, s in enumerate(states):
        zc = p["classes.V"] @ s + p["classes.c"]
        pc = np.exp(zc - zc.max())
        pc /= pc.sum()
        for k in range(d.classes):
            rows = np.arange(d.starts[k], d.starts[k + 1])
            zw = p["words.V"][rows] @ s + p["words.c"][rows]
            pw = np.exp(zw - zw.max())
            pw /= pw.sum()
            out[r, d.words[rows]] = np.log(pc[k] * pw)
    return out


def test_the_factorized_distribution_is_the_explicit_one_and_sums_to_one():
    net = class_network()
    states = np.random.default_rng(3).standard_normal((6, H))
    logp = net.log_probs(states, excluded=BOS)
    assert np.allclose(logp, explicit_log_probs(net, states), rtol=0, atol=1e-12)
    assert np.all(logp[:, BOS] == -np.inf)
    assert np.allclose(np.exp(logp).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="leave out word id 1"):
        net.log_probs(states, excluded=0)


def test_target_log_probs_and_the_loss_are_the_distribution_at_the_targets():
    net = class_network()
    rng = np.random.default_rng(4)
    states = rng.standard_normal((40, H))
    targets = rng.choice(np.delete(np.arange(13), BOS), 40)
    picked = net.target_log_probs(states, targets, excluded=BOS)
    full = net.log_probs(states, excluded=BOS)
    assert np.allclose(picked, full[np.arange(40), targets], rtol=0, atol=1e-12)
    loss, _, _ = net.decoder.loss_and_grads(net.params, states, targets, grad=False)
    assert loss == pytest.approx(-picked.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="no class"):
        net.target_log_probs(states[:1], np.array([BOS]))


@pytest.mark.parametrize("positions", [50, 8])
def test_a_class_too_big_for_one_block_is_done_in_parts(monkeypatch, positions):
    """Class by class (no batches): 50 positions, more than H in each class, whose
    gradient blocks are multiplied out; 8, at most H in each class, whose blocks are kept
    as factors; both cut in parts too."""
    monkeypatch.setattr(decoders, "BATCH_WORDS", 0)
    net = class_network(vocab=30, classes=2)
    rng = np.random.default_rng(5)
    states = rng.standard_normal((positions, H))
    d = net.decoder                  # positions / 2 targets in each class
    targets = np.concatenate([rng.choice(d.words[d.starts[k]:d.starts[k + 1]], positions // 2)
                              for k in range(2)])
    kinds = {DenseBlock if positions // 2 > H else ProductBlock}
    whole = net.decoder.loss_and_grads(net.params, states, targets)
    assert {type(b) for b in whole[2]["words.V"].parts} == kinds
    monkeypatch.setattr(decoders, "LOGIT_FLOATS", 40)               # a few rows at a time
    parts = net.decoder.loss_and_grads(net.params, states, targets)
    assert_same_loss_and_gradients(parts, whole)


def test_classes_in_batches_give_what_they_give_one_by_one(monkeypatch):
    """Batches of classes of every size (up to 12 words, so padded words and positions),
    also cut into several batches: the loss, the state gradients and every parameter
    gradient are those of the classes done one by one."""
    net = class_network(vocab=30, classes=5)                # classes of 3 to 12 words
    rng = np.random.default_rng(6)
    states = rng.standard_normal((40, H))
    targets = rng.choice(np.delete(np.arange(30), BOS), 40)
    monkeypatch.setattr(decoders, "BATCH_WORDS", 0)
    one_by_one = net.decoder.loss_and_grads(net.params, states, targets)
    monkeypatch.setattr(decoders, "BATCH_WORDS", 16)
    batched = net.decoder.loss_and_grads(net.params, states, targets)
    assert {type(b) for b in batched[2]["words.V"].parts} == {RowGradient}
    assert_same_loss_and_gradients(batched, one_by_one)
    monkeypatch.setattr(decoders, "LOGIT_FLOATS", 100)              # one class a batch
    assert_same_loss_and_gradients(net.decoder.loss_and_grads(net.params, states, targets),
                                   one_by_one)
    picked = net.target_log_probs(states, targets, excluded=BOS)
    assert np.allclose(picked, net.log_probs(states, excluded=BOS)[np.arange(40), targets],
                       rtol=0, atol=1e-12)


def assert_same_loss_and_gradients(got, expected):
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    assert np.allclose(got[1], expected[1], rtol=1e-12, atol=1e-15)
    assert list(got[2]) == list(expected[2])
    for name in expected[2]:
        assert np.allclose(dense(got[2][name]), dense(expected[2][name]), rtol=1e-12,
                           atol=1e-15), name


# -- gradients --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_every_gradient_of_a_class_network_matches_finite_differences(cell):
    config = RnnConfig(cell=cell, hidden=H, softmax="class", classes=3)
    rng = np.random.default_rng(7)
    net = RnnNetwork(config, 11, rng, dtype=np.float64, word_counts=rng.integers(1, 30, 11))
    for p in net.params.values():
        p += rng.normal(0, 0.5, p.shape)
    inputs = rng.integers(0, 11, (T, B))
    targets = rng.choice(np.delete(np.arange(11), BOS), (T, B))
    hidden = [tuple(rng.normal(0, 0.5, h.shape) for h in layer)
              for layer in net.initial_hidden(B)]
    loss, grads, _ = net.loss_and_grads(inputs, targets, hidden)
    assert list(grads) == list(net.params)
    assert loss == pytest.approx(net.loss(inputs, targets, hidden)[0], rel=1e-12)
    f = lambda: net.loss_and_grads(inputs, targets, hidden)[0]
    for name, p in net.params.items():
        result = check_gradient(f, p, grads[name])
        assert result.worst < 1e-6, (name, result)
    # Words of classes no target is in get no gradient; the classes' own row does.
    assert np.count_nonzero(grads["classes.c"]) == 3


def test_the_word_gradients_of_every_kind_match_finite_differences(monkeypatch):
    """Classes of 2, 3, 2 and 8 words; those of 2 words done in a batch (3 positions and
    1: one padded), the one of 3 by itself with 2 positions (its gradient block kept as
    the factors), the one of 8 by itself with more positions than H (its block multiplied
    out): the decoder's gradients of every parameter and of the states match finite
    differences."""
    monkeypatch.setattr(decoders, "BATCH_WORDS", 2)
    net = class_network(vocab=16, classes=4)
    d = net.decoder
    assert d.sizes.tolist() == [2, 3, 2, 8]
    rng = np.random.default_rng(9)
    pick = lambda k, n: rng.choice(d.words[d.starts[k]:d.starts[k + 1]], n)
    targets = rng.permutation(np.concatenate([pick(3, H + 2), pick(1, 2), pick(0, 3),
                                              pick(2, 1)]))
    states = rng.standard_normal((targets.size, H))
    loss, dstates, grads = d.loss_and_grads(net.params, states, targets)
    kinds = {(type(b), int(getattr(b, "start", -1))) for b in grads["words.V"].parts}
    assert kinds == {(DenseBlock, d.starts[3]), (ProductBlock, d.starts[1]), (RowGradient, -1)}
    f = lambda: d.loss_and_grads(net.params, states, targets, grad=False)[0]
    for name, g in grads.items():
        assert check_gradient(f, net.params[name], dense(g)).worst < 1e-6, name
    assert check_gradient(f, states, dstates).worst < 1e-6


def test_state_gradients_are_each_positions_own_loss_gradient():
    net = class_network()
    rng = np.random.default_rng(8)
    states = rng.standard_normal((7, H))
    targets = rng.choice(np.delete(np.arange(13), BOS), 7)
    dstates = net.decoder.state_gradients(net.params, states, targets)
    for r in range(7):
        row = states[r:r + 1].copy()
        f = lambda: -net.target_log_probs(row, targets[r:r + 1])[0]
        assert check_gradient(f, row, dstates[r:r + 1]).worst < 1e-6


# -- settling the options ---------------------------------------------------------------------

def test_auto_is_class_above_the_threshold_and_classes_default_to_sqrt():
    assert RnnConfig().resolved(AUTO_CLASS_WORDS).softmax == "full"
    big = RnnConfig().resolved(AUTO_CLASS_WORDS + 1)
    assert (big.softmax, big.classes) == ("class", round(AUTO_CLASS_WORDS ** 0.5))
    assert RnnConfig(classes=5).resolved(100) == RnnConfig(softmax="class", classes=5)
    assert RnnConfig(tie_weights=True).resolved(10 ** 6).softmax == "full"
    assert RnnConfig(softmax="class").resolved(102).classes == 10       # sqrt(101)
    assert RnnConfig(softmax="full").resolved(10 ** 6).classes is None


@pytest.mark.parametrize("config, vocab, message", [
    (RnnConfig(softmax="class"), 4, "needs at least 4 words to predict"),
    (RnnConfig(softmax="class", classes=3), 6, "3 classes needs 6 words"),
    (RnnConfig(softmax="class", classes=100), 50, "use fewer --classes"),
    (RnnConfig(softmax="full", classes=3), 50, "--classes needs --softmax class"),
    (RnnConfig(softmax="class", tie_weights=True), 50, "--tie-weights works with"),
    (RnnConfig(classes=1), 50, "--classes must be a whole number at least 2"),
])
def test_a_vocabulary_too_small_for_the_classes_is_refused(config, vocab, message):
    with pytest.raises(OptionError, match=message):
        config.resolved(vocab)


def test_a_file_whose_classes_disagree_with_its_settings_is_refused():
    net = class_network(classes=4)
    arrays = net.to_arrays()
    with pytest.raises(ValueError, match="4 classes, its settings say 3"):
        make_decoder(RnnConfig(hidden=H, softmax="class", classes=3), 13, arrays=arrays)
    del arrays["classes.starts"]
    with pytest.raises(ValueError, match="'classes.starts' is missing"):
        RnnNetwork.from_arrays(net.config, arrays, 13)
