"""The n-gram language model: back-off tables in trie form, queried with NumPy.

Tables are those of ``smoothing.BackoffTables``: for order n, a sorted array of keys
``row(w_1..w_{n-1}) * |V| + w_n``, the natural-log probability of each n-gram and (for
n < N) its natural-log back-off weight as a context. The state of a history is, for
each length k = 1..N-1, the row of the k-gram ending at its last word (-1 if that
k-gram is not in the model); reading one more word extends every row by one lookup,
exactly as KenLM's query state does.

Probability of ``w`` after history ``h`` (the ARPA back-off rule): with ``L`` the
length of the longest n-gram ``(h_{L-1}, w)`` in the model,

    log p(w | h) = log p(h_{L-1} w) + sum_{k=L}^{|h|} log bow(h_k)

where ``h_k`` are the last k words of ``h`` and a missing ``h_k`` has bow 1.
"""
from __future__ import annotations

import threading
from functools import partial
from typing import Dict, Optional

import numpy as np

from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.ngram import trie
from rnnlm_cli.ngram.smoothing import BackoffTables
from rnnlm_cli.parallel import even_cuts, parts_for, run_all
from rnnlm_cli.vocab import Vocabulary


class NgramModel(LanguageModel):
    """A back-off n-gram model (any smoothing; also what an ARPA file holds)."""

    def __init__(self, vocab: Vocabulary, tables: BackoffTables, metadata: dict,
                 children: Optional[Dict[int, np.ndarray]] = None):
        """``children``: ``trie.child_starts`` of some orders n >= 3 (a model file's
        ``children_n``); the others are made when first needed."""
        if tables.vocab_size != len(vocab) or tables.keys[0].size != len(vocab):
            raise ValueError("the unigram table must cover the vocabulary")
        self.vocab = vocab
        self.tables = tables
        self.metadata = metadata
        self.order = tables.order
        self._v = np.uint64(len(vocab))
        self.stored_children = dict(children or {})     # (what rnnlm check compares)
        self._child_starts = dict(self.stored_children)
        for n, first in self._child_starts.items():
            if not 3 <= n <= self.order or first.shape != (tables.keys[n - 2].size + 1,):
                raise ValueError(f"children_{n} does not fit the {n - 1}-grams")
        self._children_lock = threading.Lock()
        # rows pending in scoring: int32 where every table allows (half the memory)
        self._row_dtype = np.int32 if max(k.size for k in tables.keys) < 2 ** 31 else np.int64
        self._word_dtype = np.uint32 if len(vocab) < 2 ** 32 else np.uint64

    @property
    def kind(self) -> str:
        return "ngram"

    # -- lookups ---------------------------------------------------------------------

    def lookup(self, n: int, prefix_rows: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Row of each n-gram ``(prefix, word)`` in the table of order n, -1 if absent.

        ``prefix_rows`` are rows in the table of order n-1 (-1: the prefix is absent).
        """
        words = np.asarray(words, dtype=np.int64)
        if n == 1:
            return words.copy()
        rows = np.full(words.shape, -1, dtype=np.int64)
        present = np.flatnonzero(prefix_rows >= 0)
        if present.size:
            query = prefix_rows[present].astype(np.uint64) * self._v \
                + words[present].astype(np.uint64)
            rows[present] = find_sorted(self.tables.keys[n - 1], query)
        return rows

    # -- LanguageModel -----------------------------------------------------------------

    def initial_state(self, batch: int) -> np.ndarray:
        state = np.full((batch, max(self.order - 1, 0)), -1, dtype=np.int64)
        if self.order > 1:
            state[:, 0] = self.vocab.bos_id
        return state  # (B, N-1): row of the k-gram ending at the last word, k = 1..N-1

    def advance(self, state: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        new = np.full_like(state, -1)
        if self.order > 1:
            new[:, 0] = token_ids
        for k in range(2, self.order):
            new[:, k - 1] = self.lookup(k, state[:, k - 2], token_ids)
        return new

    def log_probs(self, state: np.ndarray) -> np.ndarray:
        """Start from the unigram distribution; for each longer context that exists,
        multiply everything by its back-off weight, then overwrite the words seen
        after it with their own probabilities.

        All rows at once: the back-off weights are added to whole rows, and a word
        overwritten by the context of length k gets the weights of the longer contexts
        added in the same order, so every value is the same float as one row at a time.
        """
        batch, order = state.shape[0], self.order
        bows = np.zeros((batch, order))                  # bows[:, k]: log bow of context k
        for k in range(1, order):
            present = state[:, k - 1] >= 0
            bows[present, k] = self.tables.backoff[k - 1][state[present, k - 1]]
        out = np.tile(self.tables.logprob[0], (batch, 1))                        # (B, V)
        for k in range(1, order):
            out += bows[:, k, None]
        for k in range(1, order):
            present = np.flatnonzero(state[:, k - 1] >= 0)
            if present.size == 0:
                continue
            lo, hi = self._children(k + 1, state[present, k - 1])
            sizes = hi - lo
            total = int(sizes.sum())
            if total == 0:
                continue
            # The entries lo[i] .. hi[i] of every context, back to back.
            entries = np.arange(total) + np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
            words = (self.tables.keys[k][entries] % self._v).astype(np.int64)
            rows = np.repeat(present, sizes)
            value = self.tables.logprob[k][entries]
            for longer in range(k + 1, order):
                value = value + bows[rows, longer]
            out[rows, words] = value
        return out

    def _children(self, n: int, context_rows: np.ndarray):
        """Slices ``[lo, hi)`` of the order-n table holding the n-grams whose context is
        each of ``context_rows``."""
        keys = self.tables.keys[n - 1]
        first = np.asarray(context_rows).astype(np.uint64) * self._v
        return (np.searchsorted(keys, first).astype(np.int64),
                np.searchsorted(keys, first + self._v).astype(np.int64))

    def score(self, ids: np.ndarray, lengths: np.ndarray) -> TokenScores:
        """``_score_sentences`` over groups of whole sentences, one per thread
        (``parallel.py``); the scores are the same however the text is cut."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        cuts = even_cuts(lengths + 1, parts_for(ids.size))
        first_word = np.concatenate(([0], np.cumsum(lengths)))
        return TokenScores.concatenate(run_all([
            partial(self._score_sentences, ids[first_word[a]:first_word[b]], lengths[a:b])
            for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]))

    def _score_sentences(self, ids: np.ndarray, lengths: np.ndarray) -> TokenScores:
        """All positions of all sentences at once, one order at a time.

        Each sentence is laid out as ``w_1 .. w_k </s>`` (``<s>`` is only a context).
        Order 1 gives every token its unigram probability. At order n the candidates are
        the positions whose (n-1)-gram context is in the model; a candidate whose n-gram
        is found takes its probability (dropping any back-off charged before: the longest
        match wins), one that is not is charged the context's back-off weight, which is
        the ARPA rule of the module docstring applied order by order. The found n-grams
        are the contexts of the next order.

        The positions are sorted once, at order 2, by their bigram. Bigrams are looked
        up by binary search over the whole table, each distinct one once (a word's
        continuations are a long run: ~500 n-grams per query on Vietnamese Wikipedia,
        where the trie's pointers would save little); longer n-grams through the trie's
        child pointers (``trie.py``: a handful of n-grams per context). The n-grams found
        come out in the order of their rows, so every later order reads its tables from
        start to end rather than at random.

        A found n-gram's probability is read only once it is known to be the longest
        match (``found``: its row, until then; at the top order at once, in row order):
        most positions go on to find a longer one, and each read of a probability table
        is a cache miss. The values, and the order in which back-offs are added to them,
        are those of the rule as stated (tests/test_ngram_scoring.py checks it bit for
        bit). Pending rows are int32 and words uint32 where the tables and the
        vocabulary allow: less memory, and fewer pages faulted in.
        """
        tables, v, top = self.tables, self._v, self.order
        ends = np.cumsum(lengths + 1)                       # of each sentence, </s> included
        is_eos = np.zeros(int(ends[-1]) if ends.size else 0, dtype=bool)
        is_eos[ends - 1] = True
        words = np.empty(is_eos.size, dtype=self._word_dtype)
        words[~is_eos] = ids
        words[is_eos] = self.vocab.eos_id
        order_used = np.ones(words.size, dtype=np.int8)     # int8: orders up to 127 (--order 1-20)
        if top == 1 or words.size == 0:
            logprob = tables.logprob[0].take(words.astype(np.intp)).astype(np.float64)
            return TokenScores(logprob, order_used, ends)
        # Every position is written below: at order 2 it finds its bigram (then its row
        # waits in ``found``) or takes its unigram probability and the back-off.
        logprob = np.empty(words.size, dtype=np.float64)
        found = np.full(words.size, -1, dtype=self._row_dtype)  # row of a match not yet read
        bigrams = np.empty(words.size, dtype=np.uint64)     # the word before (or <s>) * |V|
        bigrams[1:] = words[:-1]
        bigrams[ends - lengths - 1] = self.vocab.bos_id
        bigrams *= v
        bigrams += words
        positions, queries = _sorted_with_positions(bigrams)    # (sorts bigrams in place)
        goes_on = ~is_eos                                   # </s> is no context
        for n in range(2, top + 1):
            if n == 2:
                rows = _search_ascending(tables.keys[1], queries)
            else:
                rows = trie.find(tables.keys[n - 1], self.child_starts(n), context_rows, queries)
            # (Compacting with flatnonzero + take: several times faster than a boolean mask.)
            if rows.size and rows.min() < 0:
                missed = np.flatnonzero(rows < 0)
                at = positions.take(missed)
                if n == 2:
                    logprob[at] = tables.logprob[0].take(words.take(at).astype(np.intp))
                    contexts = (queries.take(missed) // v).view(np.int64)
                else:
                    self._read_found(logprob, found, order_used, at)
                    contexts = context_rows.take(missed)
                logprob[at] += tables.backoff[n - 2].take(contexts)
                hit = np.flatnonzero(rows >= 0)
                positions, rows = positions.take(hit), rows.take(hit)
            if n == top:      # no longer match to wait for: read them now, in row order
                found[positions] = -1
                logprob[positions] = tables.logprob[n - 1].take(rows)
                order_used[positions] = n
                break
            found[positions] = rows
            order_used[positions] = n
            go_on = np.flatnonzero(goes_on.take(positions))
            positions, context_rows = positions.take(go_on) + 1, rows.take(go_on)
            queries = context_rows.view(np.uint64) * v + words.take(positions)
            del rows, go_on          # (before the next order's lookups: the peak of memory)
        self._read_found(logprob, found, order_used, np.flatnonzero(found >= 0))
        return TokenScores(logprob, order_used, ends)

    def _read_found(self, logprob, found, order_used, positions) -> None:
        """``logprob[p]`` = the probability of the match found at each of ``positions``
        whose row is still pending in ``found`` (of order ``order_used[p]``); then none is
        pending there."""
        positions = positions.take(np.flatnonzero(found.take(positions) >= 0))
        if positions.size == 0:
            return
        orders = order_used.take(positions)
        for n in range(int(orders.min()), int(orders.max()) + 1):
            at = positions.take(np.flatnonzero(orders == n)) if orders.min() < n or \
                orders.max() > n else positions
            logprob[at] = self.tables.logprob[n - 1].take(found.take(at))
        found[positions] = -1

    def child_starts(self, n: int) -> np.ndarray:
        """``trie.child_starts`` of order n >= 3: from the model file, or made on first
        use (one pass over the table) and kept; threads asking at once wait for one."""
        first = self._child_starts.get(n)
        if first is None:
            with self._children_lock:
                if n not in self._child_starts:
                    t = self.tables
                    self._child_starts[n] = trie.child_starts(t.keys[n - 1],
                                                              t.keys[n - 2].size, t.vocab_size)
                first = self._child_starts[n]
        return first

    # -- the n-grams, for the ARPA file -----------------------------------------------------

    def ngram_sizes(self) -> list:
        return [int(keys.size) for keys in self.tables.keys]

    ARPA_CHUNK = 1 << 16          # n-grams a chunk of ``ngram_sections``

    def ngram_sections(self):
        """For each order in turn, its n-grams as ``(word ids (rows, n), log p, log bow or
        None)`` chunks of ``ARPA_CHUNK`` rows: an n-gram's words are its prefix's words,
        found by the prefix row in its key, and its last word."""
        tables, size = self.tables, self._v
        grams = np.arange(len(self.vocab), dtype=np.int64)[:, None]
        for n in range(1, tables.order + 1):
            if n > 1:
                keys = tables.keys[n - 1]
                grams = np.concatenate([grams[(keys // size).astype(np.int64)],
                                        (keys % size).astype(np.int64)[:, None]], 1)
            backoff = tables.backoff[n - 1] if n < tables.order else None
            yield [(grams[start:start + self.ARPA_CHUNK],
                    tables.logprob[n - 1][start:start + self.ARPA_CHUNK],
                    None if backoff is None else backoff[start:start + self.ARPA_CHUNK])
                   for start in range(0, grams.shape[0], self.ARPA_CHUNK)]

    # -- storage -------------------------------------------------------------------------

    def to_arrays(self) -> dict:
        arrays = dict(self.vocab.to_arrays())
        for n in range(1, self.order + 1):
            if n > 1:
                arrays[f"keys_{n}"] = self.tables.keys[n - 1]
            if n > 2:
                arrays[f"children_{n}"] = self.child_starts(n)
            arrays[f"logprob_{n}"] = self.tables.logprob[n - 1]
            if n < self.order:
                arrays[f"backoff_{n}"] = self.tables.backoff[n - 1]
        return arrays

    @classmethod
    def array_schema(cls, order: int) -> dict:
        schema = {"vocab_words": ("u", 1)}
        for n in range(1, order + 1):
            if n > 1:
                schema[f"keys_{n}"] = ("u", 1)
            schema[f"logprob_{n}"] = ("f", 1)
            if n < order:
                schema[f"backoff_{n}"] = ("f", 1)
        return schema

    @classmethod
    def from_arrays(cls, arrays: dict, metadata: dict) -> "NgramModel":
        order = int(metadata["order"])
        vocab = Vocabulary.from_arrays(arrays)
        keys = [np.arange(len(vocab), dtype=np.uint64)]
        keys += [_searchable(arrays[f"keys_{n}"], np.uint64) for n in range(2, order + 1)]
        tables = BackoffTables(order, len(vocab), keys,
                               [arrays[f"logprob_{n}"] for n in range(1, order + 1)],
                               [arrays[f"backoff_{n}"] for n in range(1, order)],
                               metadata.get("smoothing_notes", {}))
        children = {}
        for n in range(3, order + 1):
            first = arrays.get(f"children_{n}")
            if first is not None:
                if first.dtype.kind != "i" or first.ndim != 1:
                    raise ValueError(f"children_{n} holds {first.dtype}, not integers")
                children[n] = _searchable(first, first.dtype.newbyteorder("="))
        return cls(vocab, tables, metadata, children)


def _searchable(array: np.ndarray, dtype) -> np.ndarray:
    """``array`` itself (a view of the model file) if it is aligned and of ``dtype`` in
    the machine's byte order, as rnnlm writes it; otherwise (another integer width or
    byte order in a foreign file, a member NumPy's savez left unaligned) a converted
    copy, made once here rather than by NumPy inside every search and gather."""
    dtype = np.dtype(dtype)
    if array.dtype == dtype and array.dtype.isnative and array.flags.aligned:
        return array
    return array.astype(dtype)


def sorted_distinct(queries: np.ndarray):
    """``(order, distinct, repeats)``: ``queries[order]`` is sorted, and is ``distinct``
    (ascending, each once) with each repeated ``repeats`` times."""
    if queries.size == 0:
        return np.zeros(0, dtype=np.int64), queries.copy(), np.zeros(0, dtype=np.int64)
    order, ordered = _sorted_with_positions(queries.copy())
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return order, ordered[starts], np.diff(np.append(starts, ordered.size))


def _sorted_with_positions(queries: np.ndarray):
    """``(positions, queries[positions])`` with the queries ascending; ``queries`` (uint64)
    is used up: sorted in place. Where the positions fit beside the largest query in 63
    bits, query and position are packed into one integer and sorted as one array, about
    twice as fast as ``argsort`` (and as int64, which NumPy sorts faster than uint64)."""
    bits = max(1, int(queries.size).bit_length())
    if int(queries.max(initial=0)) >= 1 << (63 - bits):
        positions = np.argsort(queries)
        return positions, queries[positions]
    queries <<= np.uint64(bits)
    queries |= np.arange(queries.size, dtype=np.uint64)
    queries.view(np.int64).sort()
    positions = (queries & np.uint64((1 << bits) - 1)).view(np.int64)
    queries >>= np.uint64(bits)
    return positions, queries


def _search_ascending(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``_search`` of ascending ``queries``, each distinct one searched once."""
    if queries.size == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(queries.size, dtype=bool)           # the first of each run of equals
    new[0] = True
    np.not_equal(queries[1:], queries[:-1], out=new[1:])
    distinct = _search(keys, queries.take(np.flatnonzero(new)))
    return distinct.take(np.cumsum(new) - 1)


def find_sorted(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of each query in the sorted array ``keys`` (-1 where absent).

    A large batch is sorted first, so the binary searches walk through ``keys`` in
    order: on a memory-mapped model that touches each page once and keeps the
    processor's address translations warm, several times faster than random order.
    """
    if queries.size > 4096:
        order, distinct, repeats = sorted_distinct(queries)
        rows = np.empty(queries.size, dtype=np.int64)
        rows[order] = np.repeat(_search(keys, distinct), repeats)
        return rows
    return _search(keys, queries)


def _search(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    rows = np.searchsorted(keys, queries)
    if keys.size == 0:
        return np.full(queries.size, -1, dtype=np.int64)
    clipped = np.minimum(rows, keys.size - 1)
    return np.where(keys.take(clipped) == queries, clipped, -1)
