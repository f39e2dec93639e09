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

A sentence is read from the *boundary state*: the mean state the network was in, in the
validation stream at the end of training, just before it read a ``</s>`` (see
``mean_state_before``). Training never starts a sentence from the zero state (the stream
carries its state from one sentence into the next), so a sentence read from zeros starts
in a state the network has not learned to use: on PTB that costs about 10% of test
perplexity. A model without one (an untrained network) reads from zeros.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import List, Optional, Sequence

import numpy as np

from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.rnn.cells import CELLS
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.decoders import STARTS, WORDS
from rnnlm_cli.rnn.initialization import param_shapes
from rnnlm_cli.rnn.network import Hidden, RnnNetwork
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

    def __init__(self, vocab: Vocabulary, network: RnnNetwork, metadata: dict,
                 boundary: Optional[Hidden] = None):
        """``boundary``: the boundary state, per layer a tuple of (H,) arrays (``(h,)`` or
        ``(h, c)``); None reads every sentence from the zero state."""
        if network.vocab_size != len(vocab):
            raise ValueError(f"the network has {network.vocab_size} outputs for a "
                             f"vocabulary of {len(vocab)} words")
        self.vocab = vocab
        self.network = network
        self.metadata = {**metadata, "rnn_config": asdict(network.config)}   # as resolved
        self.config = network.config
        self.boundary = None if boundary is None else _checked_boundary(network, boundary)

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

    def _boundary_hidden(self, batch: int) -> Hidden:
        """The state ``<s>`` is read in, for ``batch`` rows: the boundary state, or zeros."""
        if self.boundary is None:
            return self.network.initial_hidden(batch)
        return [tuple(np.repeat(part[None], batch, axis=0) for part in layer)
                for layer in self.boundary]

    def initial_state(self, batch: int) -> tuple:
        bos = np.full(batch, self.vocab.bos_id, dtype=np.int64)
        return self._flatten(self.network.advance(bos, self._boundary_hidden(batch)))

    def advance(self, state: tuple, token_ids: np.ndarray) -> tuple:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        return self._flatten(self.network.advance(token_ids, self._unflatten(state)))

    def log_probs(self, state: tuple) -> np.ndarray:
        """(B, |V|) float64 natural logs; ``<s>`` is ``-inf``, each row sums to 1."""
        top = state[-self.network.cell.state_size]                       # (B, H)
        return self.network.log_probs(top, excluded=self.vocab.bos_id)

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
        top, _ = net.outputs(inputs, self._boundary_hidden(lengths.size))  # (W, Bg, H)
        states = top[scored]                                             # (P, H)
        targets = words[scored]
        where = (out_starts[None, :] + t)[scored]                        # into out
        block = max(1, LOGIT_FLOATS // net.decoder.width)
        for lo in range(0, targets.size, block):
            out[where[lo:lo + block]] = self._target_log_probs(states[lo:lo + block],
                                                               targets[lo:lo + block])

    def score_stream(self, ids: np.ndarray, lengths: np.ndarray, hidden: Optional[Hidden] = None,
                     cache_floats: int = CACHE_FLOATS):
        """``score`` with the sentences read as one text, each in the context of those
        before it (``perplexity --carry-state``), as training reads its stream: the
        first sentence is read from ``hidden`` after a ``</s>`` (from the boundary state
        after ``<s>`` when ``hidden`` is None, as ``score`` reads every sentence), and
        each later one after the ``</s>`` that ended the one before, in the state that
        sentence left. Returns ``(TokenScores, hidden)``, the state to go on from: give
        it to the next call, and the sentences of both calls are one text.

        One stream, so one row of the network's batch, in pieces of the budget's size."""
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        ends = np.cumsum(lengths + 1)
        targets = np.full(int(ends[-1]) if ends.size else 0, self.vocab.eos_id, dtype=np.int64)
        inside = np.ones(targets.size, dtype=bool)
        inside[ends - 1] = False                                         # the </s> of each
        targets[inside] = ids
        out = np.empty(targets.size)
        if not targets.size:                       # nothing read: the state stays as it was
            return TokenScores(out, np.zeros(0, dtype=np.int64), ends), hidden
        if hidden is None:
            first, hidden = self.vocab.bos_id, self._boundary_hidden(1)
        else:
            first = self.vocab.eos_id
        inputs = np.concatenate([[first], targets[:-1]]).astype(np.int64)
        net = self.network
        width = self.config.hidden * (self.config.gates + 3) * self.config.layers
        piece = max(1, cache_floats // width)
        block = max(1, LOGIT_FLOATS // net.decoder.width)
        for lo in range(0, targets.size, piece):
            hi = min(lo + piece, targets.size)
            top, hidden = net.outputs(inputs[lo:hi, None], hidden)      # (P, 1, H)
            for at in range(lo, hi, block):
                end = min(at + block, hi)
                out[at:end] = self._target_log_probs(top[at - lo:end - lo, 0], targets[at:end])
        return TokenScores(out, np.zeros(out.size, dtype=np.int64), ends), hidden

    def _target_log_probs(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``log p(target)`` after each of the (R, H) states, ``<s>`` excluded: the
        renormalised softmax of ``log_probs``, without the whole rows."""
        return self.network.target_log_probs(states, targets, excluded=self.vocab.bos_id)

    # -- storage ---------------------------------------------------------------------------

    def to_arrays(self) -> dict:
        arrays = dict(self.vocab.to_arrays())
        arrays.update(self.network.to_arrays())
        if self.boundary is not None:
            names = boundary_names(self.config)
            arrays.update(zip(names, (part for layer in self.boundary for part in layer)))
        return arrays

    @classmethod
    def array_schema(cls, config: RnnConfig, vocab_size: Optional[int] = None) -> dict:
        """Name -> (dtype kind codes, ndim) of every array of a model file of ``config``."""
        schema = {"vocab_words": ("u", 1)}
        for name, shape in param_shapes(config, vocab_size or 2).items():
            schema[name] = ("f", len(shape))
        if config.softmax == "class":
            schema.update({name: ("iu", 1) for name in (WORDS, STARTS)})
        return schema

    @classmethod
    def from_arrays(cls, arrays: dict, metadata: dict) -> "RnnModel":
        """Rebuild from a model file's arrays and metadata; ``ValueError`` (or ``KeyError``)
        if they do not fit together."""
        config = RnnConfig.from_dict(metadata["rnn_config"])
        vocab = Vocabulary.from_arrays(arrays)
        network = RnnNetwork.from_arrays(config, arrays, len(vocab))
        for name, param in network.params.items():
            # (A pass over weights that every forward pass reads anyway.)
            if not np.isfinite(param).all():
                raise ValueError(f"array '{name}' holds NaN or infinite weights")
        names = boundary_names(config)
        present = [name for name in names if name in arrays]
        if present and len(present) < len(names):
            missing = next(name for name in names if name not in arrays)
            raise ValueError(f"array '{missing}' is missing")
        parts = [np.asarray(arrays[name]) for name in present]
        k = network.cell.state_size
        boundary = [tuple(parts[i:i + k]) for i in range(0, len(parts), k)] or None
        return cls(vocab, network, metadata, boundary)


class CarriedState(LanguageModel):
    """An ``RnnModel`` whose ``score`` goes on from where its last call stopped: the
    sentences of call after call are one text (``RnnModel.score_stream``), as long as
    the calls come in the text's order (``carries_state``: ``scoring.score_blocks``
    scores its blocks one after another). ``restart`` begins a new text (a new file).
    Decoding (``initial_state``, ``advance``, ``log_probs``) is the model's own."""

    carries_state = True

    def __init__(self, model: RnnModel):
        self.model = model
        self.vocab, self.metadata = model.vocab, model.metadata
        self.hidden: Optional[Hidden] = None

    @property
    def kind(self) -> str:
        return self.model.kind

    def restart(self) -> None:
        self.hidden = None

    def initial_state(self, batch: int) -> tuple:
        return self.model.initial_state(batch)

    def advance(self, state: tuple, token_ids: np.ndarray) -> tuple:
        return self.model.advance(state, token_ids)

    def log_probs(self, state: tuple) -> np.ndarray:
        return self.model.log_probs(state)

    def score(self, ids: np.ndarray, lengths: np.ndarray) -> TokenScores:
        scores, self.hidden = self.model.score_stream(ids, lengths, self.hidden)
        return scores


def boundary_names(config: RnnConfig) -> List[str]:
    """The model-file arrays of the boundary state, layer by layer: ``boundary.layer0.h``
    (and ``boundary.layer0.c`` for the LSTM) ..."""
    parts = CELLS[config.cell].state_parts
    return [f"boundary.layer{layer}.{part}" for layer in range(config.layers) for part in parts]


def _checked_boundary(network: RnnNetwork, boundary: Sequence[tuple]) -> Hidden:
    """``boundary`` in the network's dtype; ``ValueError`` if it does not fit the network."""
    shape = (network.config.layers, network.cell.state_size, network.config.hidden)
    parts = [np.asarray(part) for layer in boundary for part in layer]
    if (len(boundary) != shape[0] or any(len(layer) != shape[1] for layer in boundary)
            or any(p.shape != shape[2:] or p.dtype.kind != "f" for p in parts)):
        raise ValueError(f"the boundary state does not fit {shape[0]} layer(s) of "
                         f"{shape[1]} float vector(s) of {shape[2]}")
    if not all(np.isfinite(p).all() for p in parts):
        raise ValueError("the boundary state holds NaN or infinite values")
    return [tuple(np.array(part, dtype=network.dtype) for part in layer) for layer in boundary]


def mean_state_before(network: RnnNetwork, batches: Sequence,
                      token_id: int) -> Optional[Hidden]:
    """The mean state of ``network`` just before it reads ``token_id``, over the chunks of
    ``batches`` read in order with the state carried (as validation reads them): per layer
    a tuple of (H,) float64 arrays. The stream's first position, whose state is the zero
    state the stream starts from, is left out; None if no other position reads the token.
    """
    hidden, sums, count = None, None, 0
    for index in range(len(batches)):
        inputs, _ = batches[index]                                       # (T, B)
        if hidden is None:
            hidden = network.initial_hidden(inputs.shape[1])
        states = network.state_sequence(inputs, hidden)                  # (T+1, B, H) parts
        at = np.asarray(inputs) == token_id                              # (T, B)
        if index == 0:
            at[0] = False
        chunk = [[part[:-1][at].sum(axis=0, dtype=np.float64) for part in layer]
                 for layer in states]
        sums = chunk if sums is None else [[a + b for a, b in zip(x, y)]
                                           for x, y in zip(sums, chunk)]
        count += int(at.sum())
        hidden = [tuple(part[-1].copy() for part in layer) for layer in states]
    if not count:
        return None
    return [tuple(part / count for part in layer) for layer in sums]
