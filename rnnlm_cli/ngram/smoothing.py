"""Smoothing: from n-gram counts to a back-off model (probabilities and back-off weights).

Every method yields the same form, the one ARPA files store: for each n-gram its
probability ``p(w | h)`` and, for each context ``h``, a back-off weight ``bow(h)`` such
that for a word never seen after ``h``

    p(w | h) = bow(h) * p(w | h')        (h' is h without its first word)

Interpolated methods (Kneser-Ney, Witten-Bell) have the recursive form

    p(w | h) = alpha(h w) + gamma(h) * p(w | h')        and bow(h) = gamma(h),

with the unigram level interpolated with the uniform distribution over the vocabulary
less ``<s>`` (which is never predicted). Back-off methods (add-k, MLE) give each seen
n-gram its own estimate and leave the rest of the mass to ``bow(h)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from rnnlm_cli.errors import TrainingError
from rnnlm_cli.ngram.counting import NgramCounts

METHODS = ("kneser-ney", "witten-bell", "add-k", "mle")
# lmplz --discount_fallback: what KenLM uses when discounts cannot be estimated.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
LOGPROB_SLACK = 1e-6     # rounding may make log p(w | h) = log 1 a hair above 0


@dataclass
class BackoffTables:
    """The estimated model: per order, keys (as in ``NgramCounts``), log p, log bow."""

    order: int
    vocab_size: int
    keys: List[np.ndarray]
    logprob: List[np.ndarray]             # natural log p(w | h) of each n-gram
    backoff: List[np.ndarray]             # natural log bow of each n-gram as a context (n < N)
    notes: dict = field(default_factory=dict)   # discounts, fall-backs: saved in metadata


def estimate(counts: NgramCounts, method: str, bos: int, add_k: float = 1.0,
             prune: Optional[Sequence[int]] = None) -> BackoffTables:
    """Estimate a back-off model from ``counts`` with the smoothing ``method``."""
    if method == "kneser-ney":
        return _kneser_ney(counts, bos, prune)
    if method == "witten-bell":
        return _witten_bell(counts, bos)
    if method == "add-k":
        return _add_k(counts, bos, add_k)
    if method == "mle":
        return _mle(counts, bos)
    raise ValueError(f"unknown smoothing method {method!r}")


def check_estimate(n: int, logprob: np.ndarray, backoff: Optional[np.ndarray],
                   method: str) -> None:
    """Never write a model ``rnnlm check`` would refuse: a log-probability of order n that
    is NaN or above 0, or a back-off that is NaN or +inf (``-inf``, an MLE context with no
    mass left, is allowed), is a ``TrainingError`` (floating point gives out, e.g. for a
    tiny ``--add-k``)."""
    bad = np.isnan(logprob).any() or (logprob > LOGPROB_SLACK).any() or (
        backoff is not None and (np.isnan(backoff).any() or np.isposinf(backoff).any()))
    if bad:
        advice = "; try a larger --add-k" if method == "add-k" else ""
        raise TrainingError(f"the {method} estimate of the {n}-grams is not a "
                            f"probability (floating point gives out{advice}); no model "
                            "was written")


# -- helpers shared by the methods ------------------------------------------------

def _raw_counts(counts: NgramCounts, n: int, bos: int) -> np.ndarray:
    """Occurrence counts of order n, with ``<s>`` never counted as a predicted unigram."""
    c = counts.counts[n - 1].astype(np.float64)
    if n == 1:
        c[bos] = 0.0
    return c


@dataclass
class Contexts:
    """Each n-gram's context: its row in the table of order n-1 (row 0, the empty context,
    for unigrams), computed once per order."""

    row: np.ndarray    # (n-grams,) intp
    count: int         # number of context rows

    def total(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the n-grams sharing each context (one entry per row)."""
        return np.bincount(self.row, weights=values, minlength=self.count)


def _contexts(counts: NgramCounts, n: int) -> Contexts:
    if n == 1:
        return Contexts(np.zeros(counts.size(1), dtype=np.intp), 1)
    return Contexts(counts.context(n).astype(np.intp), counts.size(n - 1))


def safe_log(x: np.ndarray, out=None) -> np.ndarray:
    """ln x (-inf for 0, NaN below it, without a warning: ``check_estimate`` says what
    is wrong with an estimate, in one line), always of a contiguous array. NumPy's
    vectorized log and the C library's can differ in the last bit, and which of them a
    strided array gets (a field of the records the bounded estimate reads) can change
    from call to call (NumPy 1.22 on AVX-512): a model estimated in chunks would not be
    the same bytes as one estimated whole."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.ascontiguousarray(x), out=out)


def _interpolate(counts: NgramCounts, bos: int, alpha: List[np.ndarray],
                 gamma: List[np.ndarray], notes: dict) -> BackoffTables:
    """Recursive interpolation ``p = alpha + gamma(h) p_lower``; bow(h) = gamma(h).

    ``gamma[n-1]`` has one entry per context row of order n-1 (one entry for n = 1),
    NaN where a context has no continuation (its back-off weight is then 1).
    """
    vocab_size = counts.vocab_size
    lower = unigram_probabilities(alpha[0], gamma[0], bos)
    logprob = []
    for n in range(2, counts.order + 1):
        ctx = _contexts(counts, n).row
        probs = interpolate(alpha[n - 1], gamma[n - 1][ctx], lower[counts.suffix[n - 1]])
        alpha[n - 1] = None                       # free memory as we go: big corpora
        logprob.append(safe_log(lower, out=lower))
        lower = probs
    logprob.append(safe_log(lower, out=lower))
    backoff = [interpolated_backoff(g) for g in gamma[1:]]
    return BackoffTables(counts.order, vocab_size, list(counts.keys), logprob, backoff, notes)


def unigram_probabilities(alpha: np.ndarray, gamma: np.ndarray, bos: int) -> np.ndarray:
    """The unigram level, interpolated with the uniform distribution over the vocabulary
    less ``<s>`` (which is never predicted): ``p(w) = alpha(w) + gamma / (|V| - 1)``."""
    probs = alpha + gamma[0] * (1.0 / (alpha.size - 1))
    probs[bos] = 0.0
    return probs


def interpolate(alpha: np.ndarray, gamma_of_context: np.ndarray,
                lower: np.ndarray) -> np.ndarray:
    """``p(w | h) = alpha(h w) + gamma(h) p(w | h')``, n-gram by n-gram."""
    return alpha + gamma_of_context * lower


def interpolated_backoff(gamma: np.ndarray) -> np.ndarray:
    """log bow(h) = log gamma(h); a context never continued (NaN) backs off with weight 1."""
    return safe_log(np.where(np.isnan(gamma), 1.0, gamma))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (a context never continued)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1),
                        np.nan)


# -- interpolated modified Kneser-Ney (Chen & Goodman 1998; KenLM's lmplz) -----------

def adjusted_counts(counts: NgramCounts, n: int, bos: int) -> np.ndarray:
    """Kneser-Ney counts: raw at the highest order and for n-grams starting with ``<s>``
    (nothing can precede them); elsewhere the number of distinct words seen before."""
    if n == counts.order:
        a = counts.counts[n - 1].copy()
    else:
        a = np.where(counts.starts_with_bos[n - 1], counts.counts[n - 1],
                     counts.left_extensions[n - 1])
    if n == 1:
        a[bos] = 0
    return a


def counts_of_counts(adjusted: np.ndarray) -> np.ndarray:
    """t_k, the number of n-grams with adjusted count k, for k = 0..4 (int64)."""
    return np.array([np.count_nonzero(adjusted == k) for k in range(5)], dtype=np.int64)


def kn_discounts(adjusted: np.ndarray):
    """``discounts_from(counts_of_counts(adjusted))``."""
    return discounts_from(counts_of_counts(adjusted))


def discounts_from(counts_of_count: np.ndarray):
    """Discounts D_1, D_2, D_3+ from counts-of-counts, Chen & Goodman eq. (26):

        Y = t1 / (t1 + 2 t2),   D_k = k - (k + 1) Y t_{k+1} / t_k,

    where t_k is the number of n-grams with adjusted count k. Returns ``(D, problem)``:
    ``problem`` is None, or why the discounts cannot be estimated (a count-of-count is
    zero or a discount falls outside [0, k]: KenLM's BadDiscountException).
    """
    t = np.asarray(counts_of_count, dtype=np.float64)
    for k in (1, 2, 3):
        if t[k] == 0:
            return None, f"no n-grams with adjusted count {k}"
    y = t[1] / (t[1] + 2 * t[2])
    discounts = np.array([k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3)])
    for k, d in zip((1, 2, 3), discounts):
        if not 0 <= d <= k:
            return None, f"discount D{k} = {d:.4f} is outside [0, {k}]"
    return discounts, None


def _kneser_ney(counts: NgramCounts, bos: int, prune: Optional[Sequence[int]]) -> BackoffTables:
    thresholds = prune_thresholds(prune, counts.order)
    alpha, gamma, notes = [], [], {"discounts": {}, "discount_fallback": {}}
    kept = []
    for n in range(1, counts.order + 1):
        a = adjusted_counts(counts, n, bos).astype(np.float64)
        discounts = choose_discounts(counts_of_counts(a), n, notes)
        keep = counts.counts[n - 1] > thresholds[n - 1] if n > 1 else np.ones(a.size, bool)
        alpha_n, gamma_n = kn_order(a, discounts, keep, _contexts(counts, n))
        alpha.append(alpha_n)
        gamma.append(gamma_n)
        kept.append(keep)
    tables = _interpolate(counts, bos, alpha, gamma, notes)
    if prune:
        tables = _drop_pruned(tables, kept)
    return tables


def prune_thresholds(prune: Optional[Sequence[int]], order: int) -> List[int]:
    """The count threshold of each order 1..N (0 for unigrams, the last repeating)."""
    thresholds = [0] + list(prune or [])
    return thresholds + [thresholds[-1]] * (order - len(thresholds))


def choose_discounts(counts_of_count: np.ndarray, n: int, notes: dict) -> np.ndarray:
    """The discounts of order n, or lmplz's fallback where they cannot be estimated;
    noted in ``notes`` (saved with the model)."""
    discounts, problem = discounts_from(counts_of_count)
    if problem:
        discounts = np.array(FALLBACK_DISCOUNTS)
        notes["discount_fallback"][str(n)] = problem
    notes["discounts"][str(n)] = [float(d) for d in discounts]
    return discounts


def kn_order(a: np.ndarray, discounts: np.ndarray, keep: np.ndarray, ctx: "Contexts"):
    """One order of Kneser-Ney from its adjusted counts ``a``: ``(alpha, gamma)``,

        alpha(h w) = (a(h w) - D(a)) / sum_w a(h w),
        gamma(h) = sum_w D(a(h w)) / sum_w a(h w),

    ``D(a)`` being D_1, D_2, D_3+ for a = 1, 2, >= 3 (0 for a = 0); a pruned n-gram
    (``keep`` False) gives its whole count to gamma's mass, as lmplz does."""
    d_of = np.concatenate([[0.0], discounts])[np.minimum(a, 3).astype(np.int64)]
    denominator = ctx.total(a)
    left_over = ctx.total(np.where(keep, d_of, a))
    return (a - d_of) / denominator[ctx.row], _ratio(left_over, denominator)


def _drop_pruned(tables: BackoffTables, kept: List[np.ndarray]) -> BackoffTables:
    """Remove pruned n-grams and renumber the context rows inside the keys."""
    vocab = np.uint64(tables.vocab_size)
    new_row = np.arange(tables.keys[0].size, dtype=np.uint64)
    for n in range(2, tables.order + 1):
        keep = kept[n - 1]
        keys = tables.keys[n - 1][keep]
        tables.keys[n - 1] = new_row[keys // vocab] * vocab + keys % vocab
        tables.logprob[n - 1] = tables.logprob[n - 1][keep]
        if n < tables.order:
            tables.backoff[n - 1] = tables.backoff[n - 1][keep]
        new_row = np.cumsum(keep, dtype=np.uint64) - np.uint64(1)
    return tables


# -- Witten-Bell (interpolated, as SRILM's -wbdiscount -interpolate) ----------------

def _witten_bell(counts: NgramCounts, bos: int) -> BackoffTables:
    """alpha = c(h w) / (c(h) + T(h)),  gamma(h) = T(h) / (c(h) + T(h)),
    T(h) the number of distinct words seen after h (Witten & Bell 1991)."""
    alpha, gamma = [], []
    for n in range(1, counts.order + 1):
        alpha_n, gamma_n = wb_order(_raw_counts(counts, n, bos), _contexts(counts, n))
        alpha.append(alpha_n)
        gamma.append(gamma_n)
    return _interpolate(counts, bos, alpha, gamma, {})


def wb_order(c: np.ndarray, ctx: "Contexts"):
    """One order of Witten-Bell from raw counts: ``(alpha, gamma)``."""
    total = ctx.total(c)
    types = ctx.total((c > 0).astype(np.float64))
    return c / (total + types)[ctx.row], _ratio(types, total + types)


# -- back-off methods: add-k and maximum likelihood -----------------------------------

def _backoff_model(counts: NgramCounts, bos: int, estimates: List[np.ndarray],
                   left_over: List[np.ndarray], notes: dict) -> BackoffTables:
    """Seen n-grams keep ``estimates``; each context's ``left_over`` mass goes to the
    words unseen after it, in proportion to the lower order (Katz's normalisation):

        bow(h) = left_over(h) / (1 - sum_{w seen after h} p(w | h'))
    """
    backoff = []
    for n in range(2, counts.order + 1):
        ctx = _contexts(counts, n)
        lower = estimates[n - 2][counts.suffix[n - 1]]
        backoff.append(katz_backoff(left_over[n - 1], lower, ctx))
    return BackoffTables(counts.order, counts.vocab_size, list(counts.keys),
                         [safe_log(p) for p in estimates], backoff, notes)


def katz_backoff(left_over: np.ndarray, lower: np.ndarray, ctx: "Contexts") -> np.ndarray:
    """log bow(h) of each context row, from the mass it leaves and the lower-order
    estimate ``lower`` of each n-gram's suffix; 0 (bow 1) for a context never continued."""
    lower_mass = ctx.total(lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        bow = np.where(left_over > 0, left_over / (1.0 - lower_mass), 0.0)
    has_children = ctx.total(np.ones(ctx.row.size)) > 0
    return safe_log(np.where(has_children, bow, 1.0))


def _add_k(counts: NgramCounts, bos: int, k: float) -> BackoffTables:
    """p(w | h) = (c(h w) + k) / (c(h) + k |V|) for w seen after h (|V| less <s>);
    the unigram level gives every word of the vocabulary that estimate."""
    size = counts.vocab_size - 1
    estimates, left_over = [add_k_unigrams(_raw_counts(counts, 1, bos), k, bos)], [None]
    for n in range(2, counts.order + 1):
        estimate_n, left_over_n = add_k_order(_raw_counts(counts, n, bos), _contexts(counts, n),
                                              k, size)
        estimates.append(estimate_n)
        left_over.append(left_over_n)
    return _backoff_model(counts, bos, estimates, left_over, {"add_k": k})


def add_k_unigrams(unigram: np.ndarray, k: float, bos: int) -> np.ndarray:
    """The unigram level of add-k: every word of the vocabulary less ``<s>`` gets
    (c + k) / (N + k (|V| - 1))."""
    size = unigram.size - 1
    p1 = (unigram + k) / (unigram.sum() + k * size)
    p1[bos] = 0.0
    return p1


def add_k_order(c: np.ndarray, ctx: "Contexts", k: float, size: int):
    """One order (n >= 2) of add-k: ``(estimate of each n-gram, mass left by each context)``."""
    total = ctx.total(c)
    seen = ctx.total(np.ones_like(c))
    return ((c + k) / (total + k * size)[ctx.row],
            k * (size - seen) / np.maximum(total + k * size, 1e-300))


def _mle(counts: NgramCounts, bos: int) -> BackoffTables:
    """p(w | h) = c(h w) / c(h) with h the longest history seen; unseen words get 0."""
    estimates, left_over = [], []
    for n in range(1, counts.order + 1):
        estimate_n, left_over_n = mle_order(_raw_counts(counts, n, bos), _contexts(counts, n))
        estimates.append(estimate_n)
        left_over.append(left_over_n)
    return _backoff_model(counts, bos, estimates, left_over, {})


def mle_order(c: np.ndarray, ctx: "Contexts"):
    """One order of maximum likelihood: ``(c(h w) / c(h), no mass left: zeros)``."""
    total = ctx.total(c)
    return c / total[ctx.row], np.zeros_like(total)
