"""The one interface every backend implements: ``LanguageModel``.

``scoring.py`` and ``decoding.py`` are written against this class only, so a new
backend plugs in without touching them. Every call is batched: a *state* is an
opaque object describing one history per batch row.

All log-probabilities are natural logs. ``<s>`` is never predicted: its entry in
``log_probs`` is ``-inf``; every row of ``log_probs`` sums to one in probability.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, List

import numpy as np

from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig
from rnnlm_cli.vocab import Vocabulary


@dataclass
class TokenScores:
    """Per-token scores of a batch of sentences, flattened.

    ``logprob[i]`` is the natural-log probability of token ``i`` (including each
    sentence's ``</s>``); ``order[i]`` is the n-gram order that supplied it (0 for
    backends without one); ``sentence_ends`` holds the exclusive end offset of each
    sentence in the flat arrays.
    """

    logprob: np.ndarray        # (n_tokens,) float64
    order: np.ndarray          # (n_tokens,) int
    sentence_ends: np.ndarray  # (n_sentences,) int

    @classmethod
    def concatenate(cls, pieces: "List[TokenScores]") -> "TokenScores":
        """The scores of consecutive groups of sentences, as one."""
        if len(pieces) == 1:
            return pieces[0]
        offsets = np.cumsum([0] + [p.logprob.size for p in pieces[:-1]])
        return cls(np.concatenate([p.logprob for p in pieces]),
                   np.concatenate([p.order for p in pieces]),
                   np.concatenate([p.sentence_ends + o for p, o in zip(pieces, offsets)]))


class LanguageModel(ABC):
    """A model of ``p(w_t | <s> w_1 .. w_{t-1})`` over a fixed vocabulary."""

    vocab: Vocabulary
    metadata: dict
    # Whether ``score`` goes on from where its last call stopped (the calls must then come
    # in the text's order; ``rnn.model.CarriedState``); ``restart`` begins a new text.
    carries_state = False

    def restart(self) -> None:
        """Begin a new text: forget the context ``score`` carries (if it does)."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """A short name of the backend (``"ngram"``, ``"rnn"``, ``"mixture"``)."""

    @property
    def tokenizer(self) -> Tokenizer:
        """How the model reads text: the tokenizer it was trained with, whose settings
        travel in its metadata (``metadata["tokenizer"]``). Text to score, prompts and
        prefixes all go through it; ``vocab`` maps its tokens to ids."""
        return Tokenizer(TokenizerConfig.from_dict(self.metadata["tokenizer"]))

    @abstractmethod
    def initial_state(self, batch: int) -> Any:
        """The state of ``batch`` rows after reading ``<s>``."""

    @abstractmethod
    def advance(self, state: Any, token_ids: np.ndarray) -> Any:
        """The state after each row reads one more token; ``token_ids`` is ``(batch,)``."""

    @abstractmethod
    def log_probs(self, state: Any) -> np.ndarray:
        """``(batch, |V|)`` natural-log next-token distribution of each row."""

    def select(self, state: Any, rows: np.ndarray) -> Any:
        """The state of the batch rows ``rows`` (in that order; rows may repeat), as beam
        search needs. A state is an array with the batch first, or a tuple/list of such."""
        if isinstance(state, (tuple, list)):
            return type(state)(self.select(part, rows) for part in state)
        return state[np.asarray(rows)]

    def score(self, ids: np.ndarray, lengths: np.ndarray) -> TokenScores:
        """Log-probability of every token of sentences given back to back, ``</s>`` included.

        ``ids`` holds the token ids of all sentences without ``<s>``/``</s>``, and
        ``lengths`` the number of tokens of each. This default walks
        ``advance``/``log_probs`` one position at a time over the whole batch of
        sentences; backends override it with a faster path.
        """
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        batch, width = lengths.size, int(lengths.max(initial=0)) + 1
        padded = np.full((batch, width), self.vocab.eos_id, dtype=np.int64)
        inside = np.arange(width)[None, :] < lengths[:, None]          # (B, W)
        padded[inside] = ids
        out = np.zeros((batch, width))
        state = self.initial_state(batch)
        for t in range(width):
            out[:, t] = self.log_probs(state)[np.arange(batch), padded[:, t]]
            if t + 1 < width:
                state = self.advance(state, padded[:, t])
        scored = np.arange(width)[None, :] <= lengths[:, None]         # words and </s>
        return TokenScores(out[scored], np.zeros(int(scored.sum()), dtype=np.int64),
                           np.cumsum(lengths + 1))
