"""ngram/trie.py: the trie's child pointers and the search within a context's run must
find exactly the rows a binary search over the whole table finds, and stay in bounds
whatever a damaged file holds."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlm_cli.ngram import trie
from rnnlm_cli.ngram.model import _search


def table(rng, contexts, vocab, sizes):
    """Sorted keys ``row * vocab + word``: context row r continued by ``sizes[r]``
    distinct words."""
    keys = [r * vocab + np.sort(rng.choice(vocab, size, replace=False))
            for r, size in enumerate(sizes)]
    return np.concatenate(keys).astype(np.uint64)


def test_child_starts_by_hand():
    v = 10
    keys = np.array([0 * v + 3, 0 * v + 7, 2 * v + 1, 3 * v + 0, 3 * v + 4, 3 * v + 9],
                    dtype=np.uint64)
    assert trie.child_starts(keys, 5, v).tolist() == [0, 2, 2, 3, 6, 6]
    assert trie.child_starts(keys[:0], 3, v).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("seed", range(5))
def test_find_agrees_with_binary_search(seed):
    rng = np.random.default_rng(seed)
    v, contexts = 300, 60
    # runs of every length: empty, single, a few, long (up to the whole vocabulary)
    sizes = rng.choice([0, 1, 1, 2, 3, 5, 17, 64, 129, 300], contexts)
    keys = table(rng, contexts, v, sizes)
    first = trie.child_starts(keys, contexts, v)
    present = keys[rng.integers(0, keys.size, 2500)]               # half of them in the table
    anything = rng.integers(0, contexts * v, 2500).astype(np.uint64)
    queries = np.concatenate([present, anything])
    rows = (queries // np.uint64(v)).astype(np.int64)
    found = trie.find(keys, first, rows, queries)
    assert np.array_equal(found, _search(keys, queries))
    assert np.array_equal(keys[found[:2500]], present)


def test_the_last_key_of_the_table_and_an_empty_table():
    v = 8
    keys = np.array([1 * v + 2, 1 * v + 5, 1 * v + 7], dtype=np.uint64)   # context 1 ends it
    first = trie.child_starts(keys, 2, v)
    queries = np.array([v + 7, v + 6, v + 2, 7], dtype=np.uint64)
    assert trie.find(keys, first, np.array([1, 1, 1, 0]), queries).tolist() == [2, -1, 0, -1]
    empty = np.zeros(0, dtype=np.uint64)
    assert trie.find(empty, trie.child_starts(empty, 2, v), np.array([0, 1]),
                     np.array([3, v + 1], dtype=np.uint64)).tolist() == [-1, -1]


def test_damaged_child_pointers_give_rows_in_bounds():
    rng = np.random.default_rng(0)
    v, contexts = 50, 30
    keys = table(rng, contexts, v, rng.integers(0, 6, contexts))
    first = rng.integers(-2 ** 31, 2 ** 31 - 1, contexts + 1).astype(np.int32)
    rows = rng.integers(0, contexts, 2000)
    queries = rows.astype(np.uint64) * np.uint64(v) + rng.integers(0, v, 2000).astype(np.uint64)
    found = trie.find(keys, first, rows, queries)
    assert found.min() >= -1 and found.max() < keys.size
