"""What must hold of an n-gram model's tables, checked when a model file is untrusted.

Two levels. ``check_at_load`` costs O(1) per table plus one pass over the unigrams: it
keeps every lookup in bounds, whatever the file holds. A pass over the longer tables is
not made at load: it would touch every page of a memory-mapped model (260 MB for an
order-5 model of Vietnamese Wikipedia) before ``complete`` answers its first prefix, and
bad values there give wrong numbers, never a read out of bounds (a row always comes out
of a search of the table it indexes, and the trie's stored child pointers are only ever
used through clipped reads: ``trie.py``). ``check_all`` (``rnnlm check``) makes that
pass: keys sorted and distinct, every context row in range, no NaN or positive log
probability, no NaN or +inf back-off weight, the stored child pointers those of the
keys, no word twice in the vocabulary.

Each function raises ``ValueError`` naming what is wrong; the caller names the file.
"""
from __future__ import annotations

import numpy as np

from rnnlm_cli.ngram import trie
from rnnlm_cli.ngram.smoothing import LOGPROB_SLACK, BackoffTables


def check_at_load(tables: BackoffTables) -> None:
    """Lengths agree, the largest key's context row exists (the largest is the last key
    if the table is sorted), and the unigram values are sound."""
    v = tables.vocab_size
    for n in range(1, tables.order + 1):
        size = tables.keys[n - 1].size
        if tables.logprob[n - 1].size != size or (
                n < tables.order and tables.backoff[n - 1].size != size):
            raise ValueError(f"{n}-gram arrays differ in length")
        if n > 1 and size:
            _check_context(n, int(tables.keys[n - 1][-1]), tables.keys[n - 2].size, v)
    _check_logprob(1, tables.logprob[0])
    if tables.order > 1:
        _check_backoff(1, tables.backoff[0])


def check_all(tables: BackoffTables) -> None:
    """``check_at_load``, and every key and value of every table."""
    check_at_load(tables)
    v = tables.vocab_size
    for n in range(2, tables.order + 1):
        keys = tables.keys[n - 1]
        step = np.flatnonzero(keys[1:] <= keys[:-1])
        if step.size:
            i = int(step[0])
            what = "twice" if keys[i] == keys[i + 1] else "out of order"
            raise ValueError(f"{n}-gram keys are {what} (at rows {i} and {i + 1})")
        if keys.size:
            _check_context(n, int(keys.max()), tables.keys[n - 2].size, v)
    for n in range(2, tables.order + 1):
        _check_logprob(n, tables.logprob[n - 1])
        if n < tables.order:
            _check_backoff(n, tables.backoff[n - 1])


def check_children(tables: BackoffTables, children: dict) -> None:
    """Each stored ``children_n`` (``trie.child_starts``) is that of the keys; after
    ``check_all``, which makes sure the keys are sorted."""
    for n, first in sorted(children.items()):
        made = trie.child_starts(tables.keys[n - 1], tables.keys[n - 2].size,
                                 tables.vocab_size)
        wrong = np.flatnonzero(first != made)
        if wrong.size:
            raise ValueError(f"children_{n} is not the trie of the {n}-gram keys (at "
                             f"{n - 1}-gram row {int(wrong[0])})")


def check_order(order: int, names) -> None:
    """The metadata's ``order`` against the arrays a file holds: no table of a higher
    order (the tables of orders up to ``order`` are required by the schema)."""
    extra = sorted(name for name in names if _order_of(name) > order)
    if extra:
        raise ValueError(f"order {order} in the metadata, but the file holds array "
                         f"'{extra[0]}'")


def _order_of(name: str) -> int:
    prefix, _, n = name.rpartition("_")
    if prefix in ("keys", "logprob", "children") and n.isdigit():
        return int(n)
    if prefix == "backoff" and n.isdigit():
        return int(n) + 1                # a back-off of order n needs a table of n + 1
    return 0


def _check_context(n: int, key: int, contexts: int, v: int) -> None:
    if key // v >= contexts:
        raise ValueError(f"{n}-gram key {key} names context row {key // v} of "
                         f"{contexts} {n - 1}-grams")


def _check_logprob(n: int, values: np.ndarray) -> None:
    bad = np.flatnonzero(np.isnan(values) | (values > LOGPROB_SLACK))
    if bad.size:
        raise ValueError(f"{n}-gram row {int(bad[0])} has log probability "
                         f"{float(values[bad[0]])}")


def _check_backoff(n: int, values: np.ndarray) -> None:
    """No NaN, no +inf; -inf is a zero weight (MLE gives no mass to unseen words)."""
    bad = np.flatnonzero(np.isnan(values) | (values == np.inf))
    if bad.size:
        raise ValueError(f"{n}-gram row {int(bad[0])} has back-off weight "
                         f"{float(values[bad[0]])}")
