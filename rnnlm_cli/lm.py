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
from typing import Any, Sequence

import numpy as np

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


class LanguageModel(ABC):
    """A model of ``p(w_t | <s> w_1 .. w_{t-1})`` over a fixed vocabulary."""

    vocab: Vocabulary
    metadata: dict

    @property
    @abstractmethod
    def kind(self) -> str:
        """A short name of the backend (``"ngram"``, ``"rnn"``)."""

    @abstractmethod
    def initial_state(self, batch: int) -> Any:
        """The state of ``batch`` rows after reading ``<s>``."""

    @abstractmethod
    def advance(self, state: Any, token_ids: np.ndarray) -> Any:
        """The state after each row reads one more token; ``token_ids`` is ``(batch,)``."""

    @abstractmethod
    def log_probs(self, state: Any) -> np.ndarray:
        """``(batch, |V|)`` natural-log next-token distribution of each row."""

    def score(self, sentences: Sequence[np.ndarray]) -> TokenScores:
        """Log-probability of every token of every sentence, ``</s>`` included.

        Each sentence is an array of token ids without ``<s>``/``</s>``. This default
        walks ``advance``/``log_probs`` one position at a time over the whole batch;
        backends override it with a faster path.
        """
        eos = self.vocab.eos_id
        lengths = np.array([len(s) + 1 for s in sentences], dtype=np.int64)
        if len(sentences) == 0:
            empty = np.zeros(0)
            return TokenScores(empty, empty.astype(np.int64), empty.astype(np.int64))
        width = int(lengths.max())
        padded = np.full((len(sentences), width), eos, dtype=np.int64)
        for row, sent in enumerate(sentences):
            padded[row, : len(sent)] = sent
        state = self.initial_state(len(sentences))
        out = np.zeros((len(sentences), width))
        for t in range(width):
            out[:, t] = self.log_probs(state)[np.arange(len(sentences)), padded[:, t]]
            if t + 1 < width:
                state = self.advance(state, padded[:, t])
        mask = np.arange(width)[None, :] < lengths[:, None]
        return TokenScores(out[mask], np.zeros(int(lengths.sum()), dtype=np.int64),
                           np.cumsum(lengths))
