"""Where each context's continuations start: the child pointers of the n-gram trie.

A table's keys are ``row(context) * |V| + word``, sorted (``model.py``), so the n-grams
that continue a context row ``r`` of order n-1 are the run ``[first[r], first[r + 1])``
of the order-n table, ascending by word. ``first`` is the trie's child-pointer array
(KenLM's trie keeps the same one); it is made here from the sorted keys in one pass
(the count of each context row, then their running sum). ``train-ngram`` stores it in
the model file (``children_n``, n >= 3); a file without it has it made on first use.

A lookup of ``(r, w)`` then reads ``first[r]`` and ``first[r + 1]`` and searches ``w``
within that run only, which is usually a handful of n-grams, for a whole array of
queries at once (``find``): independent reads the processor overlaps, where a binary
search over the whole table (``np.searchsorted``) makes ~22 dependent reads per query,
most of them cache misses when the queries are sparse in the table (a block of text
against a large model).

The search within a run is binary lifting: from ``lo = first[r]``, for ``h`` = the
largest power of two below the run's size down to 1, step to ``lo + h`` if the key
there is at most the query. A position past the run holds a key of a later context,
greater than the query, so the run's end needs no test; only the table's end is
clipped. Queries are taken in order of rising run size, so the queries still stepping
at a level are always a suffix: each level is a few array operations on that suffix.

A damaged file (keys out of order, a stored ``first`` of any values) gives wrong rows but
never a read out of bounds: every read of the table is clipped to it, and so is every
row found; ``first`` itself is read only at context rows, which its length (checked at
load) covers.
"""
from __future__ import annotations

import numpy as np


def child_starts(keys: np.ndarray, contexts: int, vocab_size: int) -> np.ndarray:
    """``first`` (``contexts + 1`` entries, int32 where the table allows): the n-grams
    continuing context row ``r`` are ``keys[first[r]:first[r + 1]]``. ``keys`` sorted; a
    key naming a context row past ``contexts`` (a damaged file) is counted with the last."""
    rows = keys // np.uint64(vocab_size)
    counts = np.bincount(np.minimum(rows, np.uint64(max(contexts - 1, 0))).astype(np.intp),
                         minlength=contexts)
    first = np.zeros(contexts + 1, dtype=np.int32 if keys.size < 2 ** 31 else np.int64)
    np.cumsum(counts[:contexts], out=first[1:])
    return first


def find(keys: np.ndarray, first: np.ndarray, context_rows: np.ndarray,
         queries: np.ndarray) -> np.ndarray:
    """The row in ``keys`` of each query ``context_rows[i] * |V| + word`` (given whole, as
    ``queries``), -1 where absent; ``first`` from ``child_starts``.

    (An empty run needs no test of its own: ``first[r]`` is then the start of a later
    context's run, whose key is not the query, or the table's end, clipped to the last
    key, of an earlier context.)"""
    if keys.size == 0:
        return np.full(queries.size, -1, dtype=np.int64)
    lo = first.take(context_rows)
    size = first[1:].take(context_rows)
    size -= lo                                            # (in first's dtype, int32 mostly)
    lo = lo.astype(np.intp)
    longer = np.flatnonzero(size > 1)                     # runs to search in
    if longer.size:
        _lift(keys, lo, longer, size.take(longer), queries)
    del size, longer
    lo = np.minimum(np.maximum(lo, 0, out=lo), keys.size - 1, out=lo)
    return np.where(keys.take(lo) == queries, lo, -1)


def _lift(keys: np.ndarray, lo: np.ndarray, which: np.ndarray, size: np.ndarray,
          queries: np.ndarray) -> None:
    """For each query ``i`` of ``which``, whose run ``keys[lo[i]:lo[i] + size]`` holds more
    than one key, ``lo[i]`` becomes the last position of the run holding a key at most the
    query (or stays), by binary lifting (the module docstring)."""
    levels = _levels(size)
    by_size = np.argsort(levels, kind="stable")          # (a radix sort of int8: cheap)
    rising = levels.take(by_size)
    which = which.take(by_size)
    stepping, wanted = lo.take(which), queries.take(which)
    for level in range(int(rising[-1]), 0, -1):
        # the queries with this step: a suffix (np.searchsorted, unlike np.bincount, lets
        # other threads run)
        start = int(np.searchsorted(rising, level))
        head = stepping[start:]
        h = 1 << (level - 1)
        head += (keys.take(head + h, mode="clip") <= wanted[start:]) * h
    lo[which] = stepping


def _levels(size: np.ndarray) -> np.ndarray:
    """The steps a run of ``size`` needs: the bit length of ``size - 1`` (0 for sizes 0
    and 1), as int8; steps of 2^(levels-1) .. 1 reach every offset below ``size``."""
    _, exponent = np.frexp(np.maximum(size - 1, 0).astype(np.float64))
    return exponent.astype(np.int8)
