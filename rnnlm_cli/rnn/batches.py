"""The training stream and its batchify layout: ``B`` parallel streams cut in chunks of ``T``.

As in the Penn Treebank RNN recipes (Mikolov's rnnlm, Zaremba et al., PyTorch's
word_language_model), a corpus becomes one token stream with ``</s>`` after every
sentence, and the stream starts with ``</s>``, which stands for ``<s>``: the model
reads ``</s>`` before the first word of every sentence, and so learns what follows a
sentence start. The stream is cut into ``B`` equal parallel streams (the tail that does
not fill a row is dropped), laid out as the columns of a ``(L, B)`` matrix; chunk ``i``
is rows ``i*T .. i*T+T`` as inputs and the same rows shifted by one as targets (the
last chunk may be shorter). Chunks are indexed by position, so training can restart
in the middle of an epoch, and nothing is random: the same corpus gives the same chunks.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from rnnlm_cli.errors import CorpusError


def token_stream(ids: np.ndarray, lengths: np.ndarray, eos_id: int) -> np.ndarray:
    """``</s> s1 </s> s2 </s> ...``: sentences given back to back, each followed by ``</s>``."""
    ids = np.asarray(ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    stream = np.full(ids.size + lengths.size + 1, eos_id, dtype=np.int32)
    # The word j of sentence k lands after the leading </s> and k earlier </s>.
    sentence_of = np.repeat(np.arange(lengths.size), lengths)
    stream[1 + np.arange(ids.size) + sentence_of] = ids
    return stream


def fit_batch_size(n_tokens: int, batch_size: int, bptt: int) -> int:
    """The largest batch size up to ``batch_size`` that fills one chunk of ``bptt`` steps.

    A stream of ``n_tokens`` gives ``n_tokens - 1`` (input, target) pairs; each of ``B``
    rows needs ``bptt + 1`` tokens for one whole chunk. A stream shorter than one chunk
    even with ``B = 1`` trains on one short chunk; fewer than 2 tokens is an error.
    """
    if n_tokens < 2:
        raise CorpusError("too little text to train on: a recurrent model needs at least "
                          "one word")
    return max(1, min(batch_size, n_tokens // (bptt + 1)))


class Batches:
    """The chunks of a token stream: ``batches[i]`` is ``(inputs, targets)``, each ``(T, B)``."""

    def __init__(self, stream: np.ndarray, batch_size: int, bptt: int):
        if batch_size < 1 or bptt < 1:
            raise ValueError("batch size and bptt must be positive")
        rows = stream.size // batch_size
        if rows < 2:
            raise ValueError(f"a stream of {stream.size} tokens cannot fill "
                             f"{batch_size} rows of 2 tokens")
        self.batch_size, self.bptt = batch_size, bptt
        self.data = np.ascontiguousarray(
            stream[: rows * batch_size].reshape(batch_size, rows).T)   # (L, B)

    def __len__(self) -> int:
        return -(-(self.data.shape[0] - 1) // self.bptt)

    @property
    def num_targets(self) -> int:
        """The number of predicted tokens in an epoch (``(L - 1) * B``)."""
        return (self.data.shape[0] - 1) * self.batch_size

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.bptt
        stop = min(start + self.bptt, self.data.shape[0] - 1)
        return self.data[start:stop], self.data[start + 1: stop + 1]   # (T, B), (T, B)
