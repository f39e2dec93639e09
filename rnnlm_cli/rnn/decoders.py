"""The output layer of the network: from the top state s to a distribution over words.

Two decoders share one interface (``make_decoder`` picks one by ``--softmax``):

``FullSoftmax``, the textbook decoder, one softmax over the whole vocabulary:

    y = softmax(V s + c)                                                         (3)

``ClassSoftmax``, the class-factorized decoder of Mikolov et al. (2011, "Extensions of
recurrent neural network language model"): every word but ``<s>`` belongs to one of C
classes, and

    P(w | s) = P(k(w) | s) * P(w | k(w), s)                                      (5)
    P(k | s) = softmax_k(A s + a)            over the C classes                  (6)
    P(w | k, s) = softmax_w(V_k s + c_k)     over the words of class k only      (7)

so a step costs O((C + |k(w)|) H) instead of O(|V| H), and the distribution is exact and
sums to one over the vocabulary (``<s>``, never predicted, is in no class and gets 0).
Classes come from frequency binning (``frequency_classes``): words sorted by falling
count fill the classes in turn, each class taking about 1/C of the unigram mass, so
frequent words sit in small classes and rare words share large ones.

The word matrix of the class decoder is stored a row per word, in *class order*: row j
of ``words.V`` (|V|-1, H) and ``words.c`` is the word ``classes.words[j]``, and class k
holds the rows ``classes.starts[k]:classes.starts[k+1]``. So the words of a class are one
contiguous block of memory (no gather of the matrix per chunk; a class of a few frequent
words is a few cache lines, not H+1 strided pieces), and the product (7) for all the
positions whose target is in class k is one matrix product. Training and scoring group the
B*T positions by class and loop over the large classes present, never over tokens; the
small classes (most of them, a few words each) are done together, one stacked product per
size. ``classes.V`` (C, H) and ``classes.c`` hold (6) the same way.

A chunk's targets fall in a few hundred classes, each hit by a few positions, so the
gradient of ``words.V`` is zero outside their rows, and a class's block, ``dz^T s`` for
its p positions, has rank p: training keeps it as an ``optim.BlockGradient`` of these
factors, whose norm, clipping and SGD step never write the (|V|-1, H) matrix
(``_WordGradients``).

Every decoder keeps its matrix and bias joined as one array, ``[V; c]`` (H+1, K) for the
full softmax and ``[V, c]`` (K, H+1) for the class softmax, so that a product with
``[s, 1]`` (``kernels.with_ones``) gives ``V s + c`` and no copy is made per chunk
(``join``).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from rnnlm_cli.rnn.kernels import (log_softmax, picked_log_softmax, softmax_cross_entropy,
                                   with_ones)
from rnnlm_cli.rnn.optim import BlockGradient, DenseBlock, ProductBlock, RowGradient
from rnnlm_cli.vocab import Vocabulary

WORDS, STARTS = "classes.words", "classes.starts"
LOGIT_FLOATS = 1 << 22      # at most this many logits of one class (or batch) at once
BATCH_WORDS = 128           # classes of at most this many words are done in batches
BATCH_LOGITS = 1 << 14      # ... if their positions need at most this many logits


# -- joined matrices -------------------------------------------------------------------------

def join(params: Dict[str, np.ndarray], matrix: str, bias: str, by_rows: bool = False) -> None:
    """Make ``params[matrix]`` (H, K) and ``params[bias]`` (K,) the two parts of one
    (H+1, K) array ``[V; c]``, in place (with ``by_rows``: V (K, H) and c the parts of
    ``[V, c]`` (K, H+1)). The optimisers update both in place, which keeps them joined;
    ``joined`` finds the array again."""
    V = params[matrix]
    both = np.empty(_joined_shape(V.shape, by_rows), dtype=V.dtype)
    _fill(both, V, params[bias], by_rows)
    params[matrix], params[bias] = _parts(both, by_rows)


def joined(params: Dict[str, np.ndarray], matrix: str, bias: str,
           by_rows: bool = False) -> np.ndarray:
    """The array ``join`` made, or a fresh one if the parameters were replaced since."""
    V, c = params[matrix], params[bias]
    shape = _joined_shape(V.shape, by_rows)
    both = V.base
    if both is not None and both is c.base and both.dtype == V.dtype and both.shape == shape:
        return both
    both = np.empty(shape, dtype=V.dtype)
    _fill(both, V, c, by_rows)
    return both


def _joined_shape(shape, by_rows: bool):
    return (shape[0], shape[1] + 1) if by_rows else (shape[0] + 1, shape[1])


def _parts(both: np.ndarray, by_rows: bool):
    return (both[:, :-1], both[:, -1]) if by_rows else (both[:-1], both[-1])


def _fill(both: np.ndarray, V: np.ndarray, c: np.ndarray, by_rows: bool) -> None:
    matrix, bias = _parts(both, by_rows)
    matrix[...], bias[...] = V, c


def decoder_shapes(config, vocab_size: int) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of the decoder's parameters for a resolved ``config``: ``decoder.V``
    (H, |V|) (none when tied: it is ``embedding.T``) and ``decoder.c`` (|V|,); for the
    class softmax ``words.V`` (|V|-1, H) and ``words.c`` over the words in class order,
    and ``classes.V`` (C, H), ``classes.c`` (C,)."""
    if config.softmax not in ("full", "class"):
        raise ValueError(f"softmax {config.softmax!r} is not resolved for a vocabulary")
    H = config.hidden
    if config.softmax == "class":
        W, C = vocab_size - 1, config.classes
        return {"words.V": (W, H), "words.c": (W,), "classes.V": (C, H), "classes.c": (C,)}
    shapes = {} if config.tie_weights else {"decoder.V": (H, vocab_size)}
    shapes["decoder.c"] = (vocab_size,)
    return shapes


# -- the full softmax (3) --------------------------------------------------------------------

class FullSoftmax:
    """``softmax(V s + c)`` over the whole vocabulary (3); ``V`` is ``embedding.T`` with
    tied weights."""

    kind = "full"

    def __init__(self, hidden: int, vocab_size: int, tied: bool):
        self.hidden, self.vocab_size, self.tied = hidden, vocab_size, tied

    @property
    def width(self) -> int:
        """How many logits one position needs at once."""
        return self.vocab_size

    def to_arrays(self) -> Dict[str, np.ndarray]:
        return {}

    def join(self, params) -> None:
        if not self.tied:
            join(params, "decoder.V", "decoder.c")

    def matrix_with_bias(self, params) -> np.ndarray:
        """``[V; c]`` (H+1, |V|); with tied weights the transposed view of ``[E, c]``."""
        if self.tied:
            H = self.hidden
            dec1 = np.empty((self.vocab_size, H + 1), dtype=params["embedding"].dtype)
            dec1[:, :H], dec1[:, H] = params["embedding"], params["decoder.c"]
            return dec1.T
        return joined(params, "decoder.V", "decoder.c")

    def loss_and_grads(self, params, top: np.ndarray, targets: np.ndarray, grad: bool = True):
        """Mean ``-log y[target]`` (4) over the N rows of ``top`` (N, H); with ``grad``
        also dJ/dtop (N, H) and the decoder's gradients (``embedding`` too when tied)."""
        H = self.hidden
        s1 = with_ones(top)                                              # [s_t, 1]   (N, H+1)
        dec1 = self.matrix_with_bias(params)                             # [V; c]     (H+1, V)
        logits = s1 @ dec1                                               # V s_t + c  (N, V)
        loss, row_scale = softmax_cross_entropy(logits, targets, lambda rows: s1[rows] @ dec1,
                                                grad=grad)
        if not grad:
            return loss, None, None
        # Now dJ/dlogits = row_scale[:, None] * logits: scale the small factors instead.
        grads = {}
        dtop = logits @ dec1[:H].T                                       # (N, H)
        dtop *= row_scale[:, None]
        s1 *= row_scale[:, None]
        if self.tied:
            d_dec1 = logits.T @ s1                                       # (V, H+1): [dE, dc]
            grads["decoder.c"] = d_dec1[:, H].copy()
            grads["embedding"] = np.ascontiguousarray(d_dec1[:, :H])
        else:
            d_dec1 = s1.T @ logits                                       # (H+1, V): [dV; dc]
            grads["decoder.V"], grads["decoder.c"] = d_dec1[:H], d_dec1[H]
        return loss, dtop, grads

    def state_gradients(self, params, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """dJ_t/ds_t of each row's own loss ``-log y[target]``: ``(y - onehot) V^T``."""
        dec1 = self.matrix_with_bias(params)
        probs = np.exp(log_softmax(with_ones(top) @ dec1))
        probs[np.arange(top.shape[0]), targets] -= 1.0
        return probs @ dec1[:-1].T

    def log_probs(self, params, states: np.ndarray, excluded: Optional[int]) -> np.ndarray:
        """(B, |V|) float64 natural logs of (3), word ``excluded`` (``<s>``; None: none)
        given 0 and the rest renormalised."""
        z = (with_ones(states) @ self.matrix_with_bias(params)).astype(np.float64)
        if excluded is not None:
            z[:, excluded] = -np.inf
        return log_softmax(z)

    def target_log_probs(self, params, states: np.ndarray, targets: np.ndarray,
                         excluded: Optional[int]) -> np.ndarray:
        """``log_probs(states)[r, targets[r]]`` of each row, the big pass in float32."""
        z = with_ones(states) @ self.matrix_with_bias(params)
        return picked_log_softmax(z, targets, excluded=excluded)


# -- the class-factorized softmax (5)-(7) ----------------------------------------------------

def frequency_classes(counts: np.ndarray, classes: int, outside: int):
    """Frequency binning: ``(words, starts)`` for ``classes`` classes of every word id but
    ``outside``, from their counts.

    Words sorted by falling count (ties by id) fill the classes in turn; a class is closed
    once the mass of the words so far reaches its share, ``(k + 1) / C`` of the total (the
    rule of Mikolov's rnnlm, which waits for more than the share), and also when the words
    left are just enough to give each remaining class one. So there are exactly C classes,
    none empty, when C is at most the number of words. Returns the word ids in class order
    and the C+1 offsets of the classes in it.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ids = np.delete(np.arange(counts.size), outside)
    order = ids[np.argsort(-counts[ids], kind="stable")]
    n, C = order.size, classes
    if not 1 <= C <= n:
        raise ValueError(f"{C} classes for {n} words")
    total = counts[order].sum()
    mass = np.cumsum(counts[order]) / total if total > 0 else np.arange(1, n + 1) / n
    starts = [0]
    for position in range(n - 1):            # close a class after word `position`?
        k = len(starts) - 1                  # the class being filled
        left = n - 1 - position              # words after this one
        if k < C - 1 and (mass[position] >= (k + 1) / C - 1e-12 or left == C - 1 - k):
            starts.append(position + 1)
    starts.append(n)
    return order.astype(np.int64), np.asarray(starts, dtype=np.int64)


class ClassSoftmax:
    """``P(k(w) | s) P(w | k(w), s)`` (5)-(7). ``words`` (|V|-1,) are the word ids in class
    order, ``starts`` (C+1,) the offsets of the classes in it; the one id missing from
    ``words`` (``<s>``) gets probability 0."""

    kind = "class"

    def __init__(self, hidden: int, vocab_size: int, words: np.ndarray, starts: np.ndarray):
        self.hidden, self.vocab_size = hidden, vocab_size
        self.words, self.starts = _checked_classes(words, starts, vocab_size)
        self.classes = self.starts.size - 1
        self.sizes = np.diff(self.starts)
        self.row_of = np.full(vocab_size, -1, dtype=np.int64)      # word id -> row
        self.row_of[self.words] = np.arange(self.words.size)
        self.outside = int(np.flatnonzero(self.row_of < 0)[0])
        self.class_of_row = np.repeat(np.arange(self.classes), self.sizes)

    @property
    def width(self) -> int:
        return self.classes

    def to_arrays(self) -> Dict[str, np.ndarray]:
        return {WORDS: self.words, STARTS: self.starts}

    def join(self, params) -> None:
        join(params, "words.V", "words.c", by_rows=True)
        join(params, "classes.V", "classes.c", by_rows=True)

    def loss_and_grads(self, params, top: np.ndarray, targets: np.ndarray, grad: bool = True):
        """Mean ``-log P(target)`` (5) over the N rows of ``top`` (N, H); with ``grad``
        also dJ/dtop and the gradients of ``classes.*`` and ``words.*``: that of
        ``words.V`` an ``optim.BlockGradient`` (nonzero in the classes of the targets
        only), the others arrays."""
        N, H = top.shape
        s1, rows, k, class1, logp_class, dz_class = self._class_softmax(params, top, targets,
                                                                        grad, 1.0 / N)
        word1 = joined(params, "words.V", "words.c", by_rows=True)       # [V, c] (W, H+1)
        if not grad:
            logp_word = self._within_classes(s1, k, rows, word1)
            return -float(np.mean(logp_class + logp_word)), None, None
        dtop = dz_class @ class1[:, :H]                                  # (N, H)
        words = _WordGradients(word1.shape, word1.dtype)
        logp_word = self._within_classes(s1, k, rows, word1, dtop, words, 1.0 / N)
        d_class1 = dz_class.T @ s1                                       # (C, H+1)
        grads = {"classes.V": d_class1[:, :H], "classes.c": d_class1[:, H],
                 "words.V": words.matrix(), "words.c": words.bias}
        return -float(np.mean(logp_class + logp_word)), dtop, grads

    def state_gradients(self, params, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """dJ_t/ds_t of each row's own loss ``-log P(target)`` (no parameter gradients)."""
        H = self.hidden
        s1, rows, k, class1, _, dz_class = self._class_softmax(params, top, targets, True, 1.0)
        dtop = dz_class @ class1[:, :H]
        self._within_classes(s1, k, rows, joined(params, "words.V", "words.c", by_rows=True),
                             dtop)
        return dtop

    def log_probs(self, params, states: np.ndarray, excluded: Optional[int]) -> np.ndarray:
        """(B, |V|) float64 natural logs of (5) for every word; ``<s>`` is ``-inf``.
        The softmax (7) of every class at once: per-class maxima and sums over the
        segments of the (B, W) logits by ``reduceat``."""
        self._check_excluded(excluded)
        s1 = with_ones(states)
        class1 = joined(params, "classes.V", "classes.c", by_rows=True)
        logp_class = log_softmax((s1 @ class1.T).astype(np.float64))     # (B, C)
        word1 = joined(params, "words.V", "words.c", by_rows=True)
        z = (s1 @ word1.T).astype(np.float64)                            # (B, W)
        top = np.maximum.reduceat(z, self.starts[:-1], axis=1)           # (B, C)
        z -= np.repeat(top, self.sizes, axis=1)
        with np.errstate(under="ignore"):
            norm = np.add.reduceat(np.exp(z), self.starts[:-1], axis=1)   # (B, C)
        z += np.repeat(logp_class - np.log(norm), self.sizes, axis=1)   # (5) in logs
        out = np.full((states.shape[0], self.vocab_size), -np.inf)
        out[:, self.words] = z
        return out

    def target_log_probs(self, params, states: np.ndarray, targets: np.ndarray,
                         excluded: Optional[int]) -> np.ndarray:
        """``log P(targets[r])`` (5) after each of the (R, H) states, in float64."""
        self._check_excluded(excluded)
        s1, rows, k, _, logp_class, _ = self._class_softmax(params, states, targets, False, 1.0)
        word1 = joined(params, "words.V", "words.c", by_rows=True)
        return logp_class + self._within_classes(s1, k, rows, word1)

    def _class_softmax(self, params, top, targets, grad: bool, scale: float):
        """The class part (6) for the N rows of ``top``: ``[s, 1]`` (N, H+1), the targets'
        rows and classes, ``[A, a]`` (C, H+1), ``log P(k_i | s_i)`` (N,) and with ``grad``
        the gradient of ``-scale * sum_i`` of it with respect to the class logits."""
        s1 = with_ones(top)
        rows = self._rows(targets)
        k = self.class_of_row[rows]
        class1 = joined(params, "classes.V", "classes.c", by_rows=True)  # [A, a] (C, H+1)
        logp_class, dz_class = _log_softmax_and_grad(s1 @ class1.T, k, grad, scale)
        return s1, rows, k, class1, logp_class, dz_class

    # -- the word softmax (7), class by class --------------------------------------------------

    def _within_classes(self, s1, k, rows, word1, dtop=None, words=None,
                        scale: float = 1.0) -> np.ndarray:
        """``log P(w_i | k_i, s_i)`` (7) for every position i (N,), whose target is word
        row ``rows[i]`` of class ``k[i]``. With ``dtop``, add the gradient of ``-scale *
        sum_i`` of it with respect to s to ``dtop`` (N, H), and with ``words`` (a
        ``_WordGradients``) hand it each class's part of the gradient of ``[V, c]``.

        The positions are grouped by class. A class of many words gets its own products
        (its positions against its block of rows, ``_one_class``); the small classes,
        most of them, are done together, a batch of products per size (``_batched``), so
        the Python work does not grow with the number of classes. A class of one word has
        P = 1: skipped."""
        logp_word = np.zeros(k.size)
        order = np.argsort(k, kind="stable")                             # grouped by class
        count = np.bincount(k, minlength=self.classes)
        first = np.cumsum(count) - count           # class q: order[first[q]:][:count[q]]
        busy = np.flatnonzero((self.sizes > 1) & (count > 0))
        size = self.sizes[busy]
        small = (size <= BATCH_WORDS) & (size * count[busy] <= BATCH_LOGITS)
        for q in busy[~small]:
            self._one_class(q, order[first[q]:first[q] + count[q]], s1, rows, word1,
                            logp_word, dtop, words, scale)
        width = 1 << np.ceil(np.log2(size[small])).astype(np.int64)     # sizes up to a power of 2
        for M in np.unique(width):
            group = busy[small][width == M]
            group = group[np.argsort(-count[group], kind="stable")]     # most positions first
            # the batch's logits (n, P, M) and gathered rows (n, M, H+1): bounded
            per_batch = max(1, LOGIT_FLOATS // (int(M) * max(int(count[group[0]]),
                                                                self.hidden + 1)))
            for b in range(0, group.size, per_batch):
                self._batched(group[b:b + per_batch], int(M), order, first, count, s1, rows,
                              word1, logp_word, dtop, words, scale)
        return logp_word

    def _one_class(self, q, at, s1, rows, word1, logp_word, dtop, words, scale) -> None:
        """(7) for the positions ``at`` of class ``q``: their states against the class's
        block of rows, in parts of at most ``LOGIT_FLOATS`` logits."""
        H = self.hidden
        lo, hi = self.starts[q], self.starts[q + 1]
        block = word1[lo:hi]                                             # (m, H+1)
        step = max(1, LOGIT_FLOATS // int(hi - lo))
        parts = []
        for part in range(0, at.size, step):                             # bounded memory
            where = at[part:part + step]
            logp, dz = _log_softmax_and_grad(s1[where] @ block.T, rows[where] - lo,
                                             dtop is not None, scale)
            logp_word[where] = logp
            if dtop is not None:
                dtop[where] += dz @ block[:, :H]
                parts.append(dz)
        if words is not None:
            words.add_class(int(lo), parts, s1[at])

    def _batched(self, qs, M, order, first, count, s1, rows, word1, logp_word, dtop, words,
                 scale) -> None:
        """(7) for the classes ``qs``, of at most ``M`` words each, as one stack of
        products: class j's positions (padded to P, the most of any) against its rows
        (padded to M), (n, P, H+1) @ (n, H+1, M). A padded word's logit is -inf, so it
        has probability 0 and no gradient; a padded position is dropped."""
        H = self.hidden
        n, P = qs.size, int(count[qs].max())
        j = np.arange(P)
        real_at = j < count[qs][:, None]                                 # (n, P)
        at = order[np.minimum(first[qs][:, None] + j, order.size - 1)]   # (n, P)
        i = np.arange(M)
        real_word = i < self.sizes[qs][:, None]                          # (n, M)
        word_rows = np.where(real_word, self.starts[qs][:, None] + i, 0)
        x = s1[at]                                                       # (n, P, H+1)
        w = word1[word_rows]                                             # (n, M, H+1)
        z = np.matmul(x, w.transpose(0, 2, 1))                          # (n, P, M)
        z += np.where(real_word, 0, -np.inf).astype(z.dtype)[:, None, :]
        target = np.where(real_at, rows[at] - self.starts[qs][:, None], 0)
        logp, dz = _log_softmax_and_grad(z.reshape(n * P, M), target.reshape(-1),
                                         dtop is not None, scale)
        logp_word[at[real_at]] = logp.reshape(n, P)[real_at]
        if dtop is None:
            return
        dz = dz.reshape(n, P, M)
        dz[~real_at] = 0
        dtop[at[real_at]] += np.matmul(dz, w[:, :, :H])[real_at]
        if words is not None:
            g = np.matmul(dz.transpose(0, 2, 1), x)                     # (n, M, H+1)
            words.add_rows(word_rows[real_word], g[real_word])

    def _rows(self, targets: np.ndarray) -> np.ndarray:
        """The row of ``words.V`` of each target word."""
        rows = self.row_of[np.asarray(targets).reshape(-1)]
        if (rows < 0).any():
            raise ValueError(f"word id {self.outside} (<s>) is in no class: it cannot be "
                             "a target")
        return rows

    def _check_excluded(self, excluded: Optional[int]) -> None:
        if excluded is not None and excluded != self.outside:
            raise ValueError(f"the classes leave out word id {self.outside}, not {excluded}")


class _WordGradients:
    """The gradient of the word matrix ``[V, c]`` (W, H+1), as ``_within_classes`` gives it
    class by class: ``bias`` (W,), the gradient of ``words.c``, and the parts of that of
    ``words.V`` (``matrix``), zero outside the classes given.

    A large class's part is ``dz^T s`` (m, H) for its p positions' logit gradients ``dz``
    (p, m) and states ``s`` (p, H): kept as these factors (``optim.ProductBlock``) when
    p <= H, the usual case (a few positions per class, classes of up to thousands of
    words), else multiplied out (``optim.DenseBlock``), which is then the smaller. The
    small classes' rows come multiplied out, a batch at a time (``optim.RowGradient``)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = (shape[0], shape[1] - 1), dtype
        self.parts: list = []
        self.bias = np.zeros(shape[0], dtype=dtype)

    def add_class(self, start: int, parts: list, s1: np.ndarray) -> None:
        """The class whose rows start at ``start``: ``parts``, the dJ/dz (p_j, m) of its
        positions in order, and their ``[s, 1]`` (p, H+1)."""
        p, H = s1.shape[0], s1.shape[1] - 1
        m = parts[0].shape[1]
        if p <= H:
            left = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self.parts.append(ProductBlock(start, left, s1[:, :H]))
            self.bias[start:start + m] = left.sum(axis=0)                # dz^T 1
            return
        values = np.zeros((m, H + 1), dtype=self.dtype)
        done = 0
        for dz in parts:                                                 # dz^T [s, 1]
            values += dz.T @ s1[done:done + dz.shape[0]]
            done += dz.shape[0]
        self.parts.append(DenseBlock(start, values[:, :H]))
        self.bias[start:start + m] = values[:, H]

    def add_rows(self, rows: np.ndarray, values: np.ndarray) -> None:
        """The gradient of ``[V, c]`` at ``rows``: ``values`` (r, H+1)."""
        self.parts.append(RowGradient(rows, values[:, :-1], self.shape))
        self.bias[rows] = values[:, -1]

    def matrix(self) -> BlockGradient:
        """The gradient of ``words.V``."""
        return BlockGradient(self.parts, self.shape, self.dtype)


def _log_softmax_and_grad(z: np.ndarray, targets: np.ndarray, grad: bool, scale: float):
    """For the (R, K) logits ``z``: ``log softmax(z)[r, targets[r]]`` (R,) in float64,
    and with ``grad`` the gradient of ``-scale * sum_r`` of it, ``scale (softmax(z) -
    onehot)`` (R, K) in ``z``'s dtype (``z`` is overwritten)."""
    at = np.arange(z.shape[0])
    z -= z.max(axis=1, keepdims=True)
    picked = z[at, targets].astype(np.float64)
    with np.errstate(under="ignore"):
        np.exp(z, out=z)
    norm = z.sum(axis=1, dtype=np.float64)
    logp = picked - np.log(norm)
    if not grad:
        return logp, None
    z *= (scale / norm)[:, None].astype(z.dtype)
    z[at, targets] -= z.dtype.type(scale)
    return logp, z


def _checked_classes(words, starts, vocab_size: int):
    """``(words, starts)`` as int64 arrays; ``ValueError`` unless ``words`` holds every id
    below ``vocab_size`` but one, each once, and ``starts`` cuts it into non-empty classes."""
    words, starts = np.asarray(words), np.asarray(starts)
    if words.dtype.kind not in "iu" or starts.dtype.kind not in "iu" \
            or words.ndim != 1 or starts.ndim != 1:
        raise ValueError("the classes are not two integer vectors")
    words, starts = words.astype(np.int64), starts.astype(np.int64)
    if words.size != vocab_size - 1 or (words.size and (words.min() < 0
                                                        or words.max() >= vocab_size)):
        raise ValueError(f"the classes do not hold {vocab_size - 1} word ids below "
                         f"{vocab_size}")
    if np.unique(words).size != words.size:
        raise ValueError("a word is in two classes")
    if starts.size < 2 or starts[0] != 0 or starts[-1] != words.size \
            or (np.diff(starts) <= 0).any():
        raise ValueError("the class offsets do not cut the words into non-empty classes")
    return words, starts


def make_decoder(config, vocab_size: int, arrays: Optional[dict] = None,
                 word_counts: Optional[np.ndarray] = None, outside: int = Vocabulary.bos_id):
    """The decoder ``config.softmax`` names: a ``FullSoftmax``, or a ``ClassSoftmax`` whose
    classes are read from ``arrays`` (a model file's) or binned from ``word_counts`` (all
    ones if None), leaving out word id ``outside`` (``<s>``)."""
    if config.softmax == "full":
        return FullSoftmax(config.hidden, vocab_size, config.tie_weights)
    if arrays is not None:
        if WORDS not in arrays or STARTS not in arrays:
            raise ValueError(f"array '{WORDS if WORDS not in arrays else STARTS}' is missing")
        decoder = ClassSoftmax(config.hidden, vocab_size, arrays[WORDS], arrays[STARTS])
        if decoder.classes != config.classes:
            raise ValueError(f"the model has {decoder.classes} classes, its settings say "
                             f"{config.classes}")
        return decoder
    counts = np.ones(vocab_size) if word_counts is None else np.asarray(word_counts)
    if counts.shape != (vocab_size,):
        raise ValueError(f"{counts.shape} word counts for {vocab_size} words")
    words, starts = frequency_classes(counts, config.classes, outside)
    return ClassSoftmax(config.hidden, vocab_size, words, starts)
