"""The recurrent language model at inference: ``RnnModel``, a ``LanguageModel``.

It wraps a trained ``RnnNetwork`` and its vocabulary. The state of a batch of histories is
the network's hidden state flattened to a tuple of (B, H) arrays, batch first, layer by
layer (``(h0,)``, ``(h0, c0, h1, c1)`` for a two-layer LSTM ...), so
``LanguageModel.select`` picks rows of it as it does for any backend.

``<s>`` is never predicted. The network's softmax covers the whole vocabulary, ``<s>``
included (training never has ``<s>`` as a target, so it learns to give it little mass,
and the training loss is left as it is); at inference ``<s>`` gets probability 0 and the
other words are renormalised: ``log p(w) = z_w - log sum_{v != <s>} exp z_v`` for the
logits ``z``. ``log_probs`` does so in float64; ``score``, which needs one word of each
distribution, in float32 (the same figures to about 1e-7).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import numpy as np

from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.initialization import param_shapes
from rnnlm_cli.rnn.network import RnnNetwork, log_softmax
from rnnlm_cli.vocab import Vocabulary

CACHE_FLOATS = 1 << 24      # budget of a scoring group's cell arrays (64 MB in float32)
LOGIT_FLOATS = 1 << 22      # budget of one block of (positions, |V|) logits


def model_metadata(config: RnnConfig, tokenizer: dict, corpus: dict, **extra) -> dict:
    """The metadata an rnn model file holds: ``model_type``, ``rnn_config``,
    ``tokenizer`` settings, ``corpus`` facts, and whatever else the trainer adds."""
    return {"model_type": "rnn", "rnn_config": asdict(config), "tokenizer": tokenizer,
            "corpus": corpus, **extra}


class RnnModel(LanguageModel):
    """A trained recurrent network with its vocabulary, as a ``LanguageModel``."""

    def __init__(self, vocab: Vocabulary, network: RnnNetwork, metadata: dict):
        if network.vocab_size != len(vocab):
            raise ValueError(f"the network has {network.vocab_size} outputs for a "
                             f"vocabulary of {len(vocab)} words")
        self.vocab = vocab
        self.network = network
        self.metadata = metadata
        self.config = network.config

    @property
    def kind(self) -> str:
        return "rnn"

    # -- state -----------------------------------------------------------------------------

    def _unflatten(self, state: tuple) -> list:
        k = self.network.cell.state_size
        return [tuple(state[i:i + k]) for i in range(0, len(state), k)]

    @staticmethod
    def _flatten(hidden: list) -> tuple:
        return tuple(part for layer in hidden for part in layer)

    def initial_state(self, batch: int) -> tuple:
        hidden = self.network.initial_hidden(batch)
        bos = np.full(batch, self.vocab.bos_id, dtype=np.int64)
        return self._flatten(self.network.advance(bos, hidden))

    def advance(self, state: tuple, token_ids: np.ndarray) -> tuple:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        return self._flatten(self.network.advance(token_ids, self._unflatten(state)))

    def log_probs(self, state: tuple) -> np.ndarray:
        """(B, |V|) float64 natural logs; ``<s>`` is ``-inf``, each row sums to 1."""
        top = state[-self.network.cell.state_size]                       # (B, H)
        return self._renormalised(self.network.logits(top))

    def _renormalised(self, logits: np.ndarray) -> np.ndarray:
        z = logits.astype(np.float64)
        z[:, self.vocab.bos_id] = -np.inf
        return log_softmax(z)

    # -- scoring ---------------------------------------------------------------------------

    def score(self, ids: np.ndarray, lengths: np.ndarray,
              cache_floats: int = CACHE_FLOATS) -> TokenScores:
        """Every sentence at once: the sentences, sorted by length, run as the streams of a
        batch (padded; in groups bounded by ``cache_floats`` of cell arrays), and the
        decoder is one product per block of scored positions."""
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        ends = np.cumsum(lengths + 1)
        out = np.empty(int(ends[-1]) if ends.size else 0)
        width = self.config.hidden * (self.config.gates + 3) * self.config.layers
        budget = max(1, cache_floats // width)                           # positions per group
        order = np.argsort(-lengths, kind="stable")
        starts = np.cumsum(lengths) - lengths                            # of each sentence in ids
        lo = 0
        while lo < order.size:
            steps = int(lengths[order[lo]]) + 1                          # the longest comes first
            hi = min(order.size, lo + max(1, budget // steps))
            group = order[lo:hi]
            self._score_group(ids, starts[group], lengths[group], ends[group] - lengths[group] - 1,
                              out)
            lo = hi
        return TokenScores(out, np.zeros(out.size, dtype=np.int64), ends)

    def _score_group(self, ids, starts, lengths, out_starts, out) -> None:
        """Score the sentences at ``ids[starts[b]:starts[b] + lengths[b]]`` into
        ``out[out_starts[b]:...]``, ``</s>`` included."""
        steps = int(lengths.max()) + 1
        t = np.arange(steps)[:, None]                                    # (W, 1)
        inside = t < lengths[None, :]                                    # (W, Bg): a word
        scored = t <= lengths[None, :]                                   # words and </s>
        words = np.full(inside.shape, self.vocab.eos_id, dtype=np.int64)
        words[inside] = ids[(starts[None, :] + t)[inside]]               # (W, Bg)
        inputs = np.vstack([np.full((1, lengths.size), self.vocab.bos_id), words[:-1]])
        net = self.network
        top, _ = net.outputs(inputs, net.initial_hidden(lengths.size))  # (W, Bg, H)
        states = top[scored]                                             # (P, H)
        targets = words[scored]
        where = (out_starts[None, :] + t)[scored]                        # into out
        block = max(1, LOGIT_FLOATS // net.vocab_size)
        for lo in range(0, targets.size, block):
            out[where[lo:lo + block]] = self._target_log_probs(states[lo:lo + block],
                                                               targets[lo:lo + block])

    def _target_log_probs(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``log p(target)`` after each of the (R, H) states, ``<s>`` excluded: the
        renormalised softmax of ``log_probs``, in the network's float32 for the big passes
        (a relative error of about 1e-7, against a float64 copy of every logit)."""
        z = self.network.logits(states)                                  # (R, V)
        at = np.arange(z.shape[0])
        picked = z[at, targets].astype(np.float64)
        z[:, self.vocab.bos_id] = -np.inf
        top = z.max(axis=1, keepdims=True)
        z -= top
        with np.errstate(under="ignore"):
            np.exp(z, out=z)
        norm = z.sum(axis=1).astype(np.float64)
        return picked - top[:, 0].astype(np.float64) - np.log(norm)

    # -- storage ---------------------------------------------------------------------------

    def to_arrays(self) -> dict:
        arrays = dict(self.vocab.to_arrays())
        arrays.update(self.network.to_arrays())
        return arrays

    @classmethod
    def array_schema(cls, config: RnnConfig, vocab_size: Optional[int] = None) -> dict:
        """Name -> (dtype kind codes, ndim) of every array of a model file of ``config``."""
        schema = {"vocab_words": ("u", 1)}
        for name, shape in param_shapes(config, vocab_size or 1).items():
            schema[name] = ("f", len(shape))
        return schema

    @classmethod
    def from_arrays(cls, arrays: dict, metadata: dict) -> "RnnModel":
        """Rebuild from a model file's arrays and metadata; ``ValueError`` (or ``KeyError``)
        if they do not fit together."""
        config = RnnConfig.from_dict(metadata["rnn_config"])
        vocab = Vocabulary.from_arrays(arrays)
        network = RnnNetwork.from_arrays(config, arrays, len(vocab))
        return cls(vocab, network, metadata)
