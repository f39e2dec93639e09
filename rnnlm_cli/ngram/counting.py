"""Counting every n-gram of a corpus, vectorized.

Each sentence is read as ``<s> w_1 .. w_k </s>`` (one ``<s>``: an n-gram that starts
with ``<s>`` is shorter than the model's order only at the start of a sentence, as in
KenLM). The n-grams of each order are kept as a sorted table of packed keys, one row
per distinct n-gram, in *trie* form: the key of ``(w_1 .. w_n)`` is

    key = index_of(w_1 .. w_{n-1}) * |V| + w_n

where ``index_of`` is the row of the prefix in the table of order ``n - 1`` (for
unigrams the row is the word id). Keys stay below ``rows(n-1) * |V|``, far inside 64
bits for any corpus that fits in memory, and all n-grams that share a context are
contiguous in the table. Counting order ``n`` is one ``np.unique`` over the keys at
every corpus position; no Python loop touches a token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from rnnlm_cli import hashing


@dataclass
class NgramCounts:
    """Tables of every order 1..N (index ``n - 1`` holds order ``n``)."""

    order: int
    vocab_size: int
    keys: List[np.ndarray] = field(default_factory=list)       # sorted uint64 (order 1: word ids)
    counts: List[np.ndarray] = field(default_factory=list)     # raw occurrence counts
    suffix: List[Optional[np.ndarray]] = field(default_factory=list)  # row of (w_2..w_n) in n-1
    left_extensions: List[np.ndarray] = field(default_factory=list)   # distinct v with (v w_1..w_n)
    starts_with_bos: List[np.ndarray] = field(default_factory=list)   # bool

    def context(self, n: int) -> np.ndarray:
        """Row of each n-gram's context ``(w_1 .. w_{n-1})`` in the table of order n-1."""
        return self.keys[n - 1] // np.uint64(self.vocab_size)

    def size(self, n: int) -> int:
        return int(self.keys[n - 1].size)


def padded_sequence(ids: np.ndarray, lengths: np.ndarray, bos: int, eos: int,
                    dtype=np.int64):
    """``<s> s_1 </s> <s> s_2 </s> ...`` as one array of ``dtype``, and each position's
    offset in its sentence."""
    lengths = np.asarray(lengths, dtype=np.int64)
    padded_lengths = lengths + 2
    total = int(padded_lengths.sum())
    starts = np.cumsum(padded_lengths) - padded_lengths
    sequence = np.empty(total, dtype=dtype)
    is_word = np.ones(total, dtype=bool)
    is_word[starts] = False
    is_word[starts + padded_lengths - 1] = False
    sequence[is_word] = ids
    sequence[starts] = bos
    sequence[starts + padded_lengths - 1] = eos
    offset = np.arange(total, dtype=dtype) - np.repeat(starts.astype(dtype), padded_lengths)
    return sequence, offset


def unique_with_inverse(keys: np.ndarray):
    """``np.unique(keys, return_inverse=True, return_counts=True)``, faster: a plain sort
    (SIMD in NumPy) and hash probes replace the argsort ``np.unique`` needs for the inverse."""
    ordered = np.sort(keys)
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    table = ordered[starts]
    counts = np.diff(np.append(starts, ordered.size))
    del ordered, first
    slots = hashing.build(table)
    rows = hashing.find(slots, hashing.table_bits(table.size), table, keys)
    return table, rows, counts


def count_ngrams(ids: np.ndarray, lengths: np.ndarray, order: int, vocab_size: int,
                 bos: int, eos: int, progress: Optional[Callable[[str], None]] = None
                 ) -> NgramCounts:
    """Count all n-grams of orders 1..``order`` of the sentences ``ids`` split by ``lengths``."""
    # Ids, counts and rows fit in 32 bits unless the corpus has 2^31 tokens: half the memory.
    small = np.int32 if int(np.sum(lengths)) + 2 * len(lengths) < 2**31 else np.int64
    sequence, offset = padded_sequence(ids, lengths, bos, eos, dtype=small)
    result = NgramCounts(order, vocab_size)
    result.keys.append(np.arange(vocab_size, dtype=np.uint64))
    result.counts.append(np.bincount(sequence, minlength=vocab_size).astype(small))
    result.suffix.append(None)
    bos_unigram = np.zeros(vocab_size, dtype=bool)
    bos_unigram[bos] = True
    result.starts_with_bos.append(bos_unigram)
    row_ending_at = sequence  # row of the (n-1)-gram ending at each position
    for n in range(2, order + 1):
        if progress:
            progress(f"counting {n}-grams")
        positions = np.flatnonzero(offset >= n - 1)
        keys = row_ending_at[positions - 1].astype(np.uint64) * np.uint64(vocab_size) \
            + sequence[positions].astype(np.uint64)
        table, rows, counts = unique_with_inverse(keys)
        an_occurrence = np.empty(table.size, dtype=np.int64)
        an_occurrence[rows] = positions
        suffix = row_ending_at[an_occurrence].astype(small)
        result.left_extensions.append(
            np.bincount(suffix, minlength=result.size(n - 1)).astype(small))
        result.keys.append(table)
        result.counts.append(counts.astype(small))
        result.suffix.append(suffix)
        result.starts_with_bos.append(offset[an_occurrence] == n - 1)
        del keys, an_occurrence
        row_ending_at = np.full(sequence.size, -1, dtype=small)
        row_ending_at[positions] = rows
    # The highest order has no left extensions counted; they are not needed.
    result.left_extensions.append(np.zeros(0, dtype=small))
    return result
