"""A fast stand-in for ``rnn.network.RnnNetwork`` in unit tests of the training side.

``BigramNetwork`` has the network's API with a model small enough to check by hand:
``logits_t = m_t * W[x_t] + b + h_t``, ``softmax`` over the vocabulary, with exact
gradients. The "hidden state" ``h_t = DECAY * h_{t-1} + onehot(x_t)`` has no parameters,
but changes the loss, so a resume that got the carried state wrong changes the weights;
``m_t`` is inverted dropout on the input row, drawn from ``dropout_rng``, so a resume
that got the RNG wrong does too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECAY = 0.5


@dataclass
class FakeConfig:
    dropout: float = 0.0


class BigramNetwork:
    def __init__(self, config, vocab_size, rng=None, dtype=np.float32, word_counts=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.config, self.vocab_size = config, vocab_size
        self.params = {"W": (0.1 * rng.standard_normal((vocab_size, vocab_size))).astype(dtype),
                       "b": np.zeros(vocab_size, dtype=dtype)}

    def initial_hidden(self, batch):
        return [(np.zeros((batch, self.vocab_size), dtype=np.float32),)]

    def _forward(self, inputs, hidden, dropout_rng):
        T, B = inputs.shape
        h = hidden[0][0]
        hs = np.empty((T, B, self.vocab_size), dtype=np.float32)
        for t in range(T):
            h = DECAY * h
            h[np.arange(B), inputs[t]] += 1
            hs[t] = h
        p = self.config.dropout
        mask = np.ones((T, B, 1), dtype=np.float32)
        if p > 0 and dropout_rng is not None:
            mask = (dropout_rng.random((T, B, 1)) >= p).astype(np.float32) / (1 - p)
        logits = mask * self.params["W"][inputs] + self.params["b"] + hs     # (T, B, V)
        logits = logits - logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return log_probs, mask, [(h.copy(),)]

    def loss(self, inputs, targets, hidden):
        log_probs, _, new_hidden = self._forward(inputs, hidden, None)
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)
        return float(-picked.mean()), new_hidden

    def loss_and_grads(self, inputs, targets, hidden, dropout_rng=None, row_gradients=False):
        log_probs, mask, new_hidden = self._forward(inputs, hidden, dropout_rng)
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)
        n = targets.size
        d = np.exp(log_probs)                                                # (T, B, V)
        np.put_along_axis(d, targets[..., None],
                          np.take_along_axis(d, targets[..., None], axis=-1) - 1, axis=-1)
        d /= n
        grads = {"W": np.zeros_like(self.params["W"]),
                 "b": d.sum(axis=(0, 1)).astype(np.float32)}
        np.add.at(grads["W"], inputs.reshape(-1), (mask * d).reshape(n, -1))
        return float(-picked.mean()), grads, new_hidden

    def step(self, token_ids, hidden):
        log_probs, _, new_hidden = self._forward(np.asarray(token_ids)[None], hidden, None)
        return log_probs[0].astype(np.float64), new_hidden

    def to_arrays(self):
        return {k: v.copy() for k, v in self.params.items()}

    @classmethod
    def from_arrays(cls, config, arrays, vocab_size):
        net = cls(config, vocab_size)
        for k in net.params:
            net.params[k] = np.array(arrays[k], dtype=np.float32)
        return net
