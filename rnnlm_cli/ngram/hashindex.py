"""An open-addressing hash index over a sorted key array, built and probed with NumPy.

Counting uses it to find, for every corpus position, the row of its n-gram among the
distinct n-grams: binary search (``np.searchsorted``) costs ~22 dependent memory reads
per lookup in a table of millions of keys in random order; a hash probe costs one or
two, and NumPy's gathers let the processor overlap those reads across the whole batch.
The slots hold row numbers into the sorted table (``row + 1``; 0 marks an empty slot),
so the table keeps its trie order. (Scoring a memory-mapped model is another matter:
there, sorted queries and binary search win; see ``model.find_sorted``.)

Slots are found by multiplicative (Fibonacci) hashing, ``(key * 2^64/phi) >> (64 - bits)``,
with linear probing; the table is at most half full.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def table_bits(n_keys: int) -> int:
    """log2 of the slot count: the smallest power of two at least twice ``n_keys``."""
    return max(4, int(2 * max(n_keys, 1) - 1).bit_length())


def _home(keys: np.ndarray, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((keys * _GOLDEN) >> np.uint64(64 - bits)).astype(np.intp)


def build(keys: np.ndarray) -> np.ndarray:
    """Slots (int32 ``row + 1``, 0 empty) holding every row of the unique ``keys``.

    Linear probing without wrap-around: taking the keys in order of their home slot
    ``h``, each goes to the first free slot at or after ``h``, i.e. slot
    ``p_i = max(h_i, p_{i-1} + 1)``, which unrolls to ``p_i = i + max_{j<=i}(h_j - j)``:
    one sort and one running maximum. Slots past ``2^bits`` take the overflow, and one
    empty slot at the very end stops every probe.
    """
    bits = table_bits(keys.size)
    # Sort (home, row) pairs packed in one uint64: a plain sort is much faster than argsort.
    packed = np.sort((_home(keys, bits).astype(np.uint64) << np.uint64(32))
                     | np.arange(keys.size, dtype=np.uint64))
    order = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    home = (packed >> np.uint64(32)).astype(np.int64)
    rank = np.arange(keys.size, dtype=np.int64)
    position = rank + np.maximum.accumulate(home - rank) if keys.size else rank
    end = max(1 << bits, int(position[-1]) + 1 if keys.size else 0) + 1
    slots = np.zeros(end, dtype=np.int32)
    slots[position] = order + 1
    return slots


def find(slots: np.ndarray, bits: int, keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of each query in ``keys`` (-1 where absent); ``bits`` as ``table_bits``.

    The first probe is made for every query at once; only the few that land on another
    key's slot probe on. ``mode="clip"``: a damaged file can give a wrong row, never an
    index error.
    """
    if keys.size == 0:
        return np.full(queries.size, -1, dtype=np.int64)
    position = _home(queries, bits)
    rows = slots.take(position).astype(np.int64) - 1
    occupied = rows >= 0
    hit = keys.take(rows, mode="clip") == queries
    result = np.where(hit & occupied, rows, -1)
    todo = np.flatnonzero(occupied & ~hit)
    while todo.size:
        position[todo] += 1
        rows = slots.take(position[todo]).astype(np.int64) - 1
        occupied = rows >= 0
        hit = occupied & (keys.take(rows, mode="clip") == queries[todo])
        result[todo[hit]] = rows[hit]
        todo = todo[occupied & ~hit]
    return result
