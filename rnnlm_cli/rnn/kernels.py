"""The array kernels of the network: where the recurrent model's speed comes from.

``network.py`` calls these and reads as the equations; each kernel here says what it
computes, the trick it uses, and the invariant the trick relies on (also listed in
docs/architecture.md):

- ``with_ones``: ``[x, 1]``, so the decoder's bias rides in its matrix product.
- ``softmax_cross_entropy``: the loss over all B*T positions in two passes over the
  (N, |V|) logits, row sums by BLAS; relies on logits rarely leaving ``exp``'s range
  (unsafe rows are detected and recomputed with their maximum subtracted).
- ``log_softmax``: the stable row-wise form, for decoding; ``picked_log_softmax``: only
  the targets' log-probabilities, for scoring (the big passes in float32).
- ``distinct_rows``, ``sum_rows_by``, ``sum_rows_by_id``: the embedding and
  input-projection gradients summed per distinct word; rely on every row mapping to a
  word slot below ``count``.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np


def with_ones(x: np.ndarray) -> np.ndarray:
    """``[x, 1]``: (N, H) -> (N, H+1), so that a bias rides along in a matrix product."""
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype)
    out[:, :-1] = x
    out[:, -1] = 1
    return out


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray,
                          recompute: Callable[[np.ndarray], np.ndarray], grad: bool = True):
    """Mean over the N rows of ``-log softmax(logits)[target]`` (equations (3)-(4)), in place.

    Touches the big (N, |V|) array in two passes only, an ``exp`` and a row sum (as a
    matrix-vector product with ones: BLAS does it five times faster than ``sum(axis=1)``):
    ``e = exp(z)`` with no max subtracted, ``norm = sum_j e_j``, ``loss = log norm - z_t``.
    A row where that is not safe (a logit beyond the ``exp`` range: ``norm`` overflows or
    underflows, or is not finite) is recomputed with its maximum subtracted, from
    ``recompute(rows)``, which gives the logits of those rows again.

    Returns ``(loss, row_scale)``. With ``grad``, ``logits`` is left holding
    ``e - onehot * norm``, so that ``dJ/dlogits = row_scale[:, None] * logits`` with
    ``row_scale = 1 / (N norm)``: the caller scales the small (N, H) factors of the
    products that follow instead of the big array.
    """
    N = logits.shape[0]
    at = np.arange(N)
    target_logit = logits[at, targets].astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        np.exp(logits, out=logits)
        norm = logits @ np.ones(logits.shape[1], dtype=logits.dtype)    # row sums (N,)
    shift = np.zeros(N)
    unsafe = np.flatnonzero(~(norm >= np.sqrt(np.finfo(logits.dtype).tiny))
                            | ~np.isfinite(norm))
    if unsafe.size:
        z = recompute(unsafe)                                           # (k, V)
        shift[unsafe] = z.max(axis=1)
        z -= shift[unsafe, None].astype(z.dtype)
        with np.errstate(under="ignore"):
            np.exp(z, out=z)
        logits[unsafe] = z
        norm[unsafe] = z.sum(axis=1)
    loss = float(np.mean(np.log(norm.astype(np.float64)) + shift - target_logit))
    if not grad:
        return loss, None
    logits[at, targets] -= norm
    return loss, (1.0 / (N * norm.astype(np.float64))).astype(logits.dtype)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` (natural logs), stable for any finite input; an entry of
    ``-inf`` (a word ruled out) stays ``-inf`` and the rest sum to one."""
    z = z - z.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def picked_log_softmax(z: np.ndarray, targets: np.ndarray,
                       excluded: Optional[int]) -> np.ndarray:
    """``log softmax(z)[r, targets[r]]`` of each row of the (R, V) logits ``z``, column
    ``excluded`` (if not None) left out of the softmax (``<s>``, never predicted); ``z`` is
    overwritten.
    The big passes stay in ``z``'s float32 (a relative error of about 1e-7, against a
    float64 copy of every logit); only the R results are float64."""
    at = np.arange(z.shape[0])
    picked = z[at, targets].astype(np.float64)
    if excluded is not None:
        z[:, excluded] = -np.inf
    top = z.max(axis=1, keepdims=True)
    z -= top
    with np.errstate(under="ignore"):
        np.exp(z, out=z)
    norm = z.sum(axis=1).astype(np.float64)
    return picked - top[:, 0].astype(np.float64) - np.log(norm)


def distinct_rows(ids: np.ndarray):
    """``(words, where)`` with ``ids == words[where]`` and ``words`` distinct, when at most
    3/4 of the ids are distinct (else ``(ids, None)``: not worth the gathering)."""
    words, where = np.unique(ids, return_inverse=True)
    if words.size > 0.75 * ids.size:
        return ids, None
    return words, where.reshape(-1)


def sum_rows_by(where: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """``out[k] = sum of rows[n] with where[n] == k`` for k < count (zero where k is absent).

    Most words of a chunk occur once (about three in four of the distinct words of a PTB
    chunk): their rows are copied by one gather. The rows of the repeated ones are summed
    by ``_sum_repeated``.
    """
    where = np.asarray(where).reshape(-1)
    sizes = np.bincount(where, minlength=count)
    out = np.empty((count,) + rows.shape[1:], dtype=rows.dtype)
    out[sizes == 0] = 0
    first = np.empty(count, dtype=np.intp)
    first[where] = np.arange(where.size)       # the position of k, where k occurs once
    single = sizes == 1
    out[single] = rows[first[single]]
    repeated = np.flatnonzero(sizes > 1)
    if repeated.size:
        at = np.flatnonzero(sizes[where] > 1)                    # positions of repeated k
        slot = np.searchsorted(repeated, where[at])              # their rank among repeated
        out[repeated] = _sum_repeated(slot, rows[at], repeated.size)
    return out


# Up to this many repeated words, a 0/1 matrix product sums their rows; beyond it (large
# chunks: the product's cost grows with words x positions), sorting and np.add.reduceat.
MAX_ONEHOT_WORDS = 512


def _sum_repeated(slot: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """``out[k] = sum of rows[n] with slot[n] == k``, every k < count present.

    As a product ``onehot @ rows`` with ``onehot[k, n] = [slot[n] == k]``, BLAS sums the
    rows several times faster than ``np.add.reduceat`` over sorted rows or ``np.add.at``
    (for the (700, 2600) input-projection gradient of an H=650 LSTM chunk, ``sum_rows_by``
    took 17 ms with reduceat over all rows, 4.5 ms with the gather and this product); for
    many words the sort is cheaper.
    """
    if count <= MAX_ONEHOT_WORDS:
        onehot = np.zeros((count, slot.size), dtype=rows.dtype)
        onehot[slot, np.arange(slot.size)] = 1
        return onehot @ rows
    order = np.argsort(slot, kind="stable")
    sizes = np.bincount(slot, minlength=count)
    return np.add.reduceat(rows[order], np.cumsum(sizes) - sizes, axis=0)


def sum_rows_by_id(ids: np.ndarray, rows: np.ndarray):
    """``(distinct, sums)``: the distinct ``ids`` and, for each, the sum of the ``rows[n]``
    with that id (the embedding gradient, row by word)."""
    words, where = np.unique(ids, return_inverse=True)
    return words, sum_rows_by(where.reshape(-1), rows, words.size)
