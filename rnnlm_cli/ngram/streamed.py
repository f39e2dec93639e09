"""Estimating a back-off model from count tables on disk, a chunk at a time.

The in-memory path (``smoothing.estimate``) holds every order at once and finds an
n-gram's context and suffix by their rows. Here each order's counts are a scratch table
(``blockcount.CountTables``) read front to back, in one of two orders, as KenLM's lmplz
does (Heafield et al. 2013, "Scalable Modified Kneser-Ney Language Model Estimation"):

- *lexicographic order* (w_1 .. w_n), the count table's own: the n-grams of a context
  (w_1 .. w_{n-1}) are consecutive rows, so per-context sums (denominators, left-over
  mass) are taken chunk by chunk, and a chunk never cuts a context in two;
- *suffix order* (w_2 .. w_n, w_1), the table sorted again (``_rotate``): the suffixes
  (w_2 .. w_n) come in lexicographic order, so the table of order n-1 can be read
  alongside (``runs.AlignedReader``) to fetch each suffix's probability, and the n-grams
  sharing a suffix are consecutive: their number is the suffix's Kneser-Ney adjusted
  count, the number of distinct words seen before it.

Per order, bottom up: (1) ``lower``, the order-below value of each n-gram's suffix, is
fetched in suffix order and put back at the n-gram's row of the count table (order 2
reads the unigram array); (2) the lexicographic pass applies the method's per-order formulas,
shared with the in-memory path (``smoothing.kn_order``, ``wb_order``, ``add_k_order``,
``mle_order``, ``interpolate``, ``katz_backoff``), to each chunk's contexts: the value of
every n-gram (p, or a back-off method's estimate) and the back-off weight of every
context, a table of the order below. Then (3) each order's final tables are written,
pruned, with trie keys and the back-off weights merged in (``_finish_order``): order n's
as soon as order n+1's pass has made their weights, in a thread of their own, while the
main thread goes on with (1) and (2) of the orders above.

A chunk holds whole contexts, so every sum adds the same numbers in the same order as
the in-memory path's ``np.bincount``: the model is the same, bit for bit, whatever the
memory (``tests/test_ngram_bounded.py`` compares every array).
"""
from __future__ import annotations

import os
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np

from rnnlm_cli import parallel, progress
from rnnlm_cli.ngram import packed
from rnnlm_cli.ngram.blockcount import CountTables
from rnnlm_cli.vocab import Vocabulary
from rnnlm_cli.ngram.runs import (CHUNK_ROWS, AlignedReader, RunSorter, concat,
                                  make_records)
from rnnlm_cli.ngram.scratch import (Scratch, TableArray, TableReader, header_size, read_table,
                                     remove, settle, table_rows)
from rnnlm_cli.ngram.smoothing import (
    Contexts, add_k_order, add_k_unigrams, check_estimate, choose_discounts, counts_of_counts,
    interpolate, interpolated_backoff, katz_backoff, kn_order, mle_order, prune_thresholds,
    safe_log, unigram_probabilities, wb_order)

# Bytes of memory per row of a chunk in each step (its records, ids and temporaries); a
# sort's buffer takes SORT_FACTOR times the bytes of its records (the sort's copy, index).
ROW_BYTES = {"lookup": 320, "normalize": 400, "finish": 320}
SORT_FACTOR = 4


@dataclass
class StreamedTables:
    """The estimated model as scratch tables, per order (index n - 1; unigrams in memory):
    the kept n-grams' packed ids (for the ARPA file), trie keys, log p and log bow."""

    order: int
    vocab_size: int
    unigram_logprob: np.ndarray
    unigram_backoff: Optional[np.ndarray]
    ids: List[Optional[str]] = field(default_factory=list)
    rows: List[Optional[str]] = field(default_factory=list)     # (n < N): see _finish_order
    children: List[Optional[str]] = field(default_factory=list)  # (n >= 3): trie.child_starts
    keys: List[Optional[str]] = field(default_factory=list)
    logprob: List[Optional[str]] = field(default_factory=list)
    backoff: List[Optional[str]] = field(default_factory=list)
    sizes: List[int] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


class StreamedModel:
    """A trained model whose tables are scratch files: what ``train-ngram`` writes to the
    model file (``to_arrays``: chunked arrays for ``modelfile.write_model``) and the ARPA
    file (``ngram_sections``, as ``NgramModel``'s), a chunk at a time, never loaded whole."""

    ARPA_ROW_BYTES = 1024       # memory per n-gram of a chunk of ARPA text (500 measured)
    # Bytes of a table read at a time into the model file: below malloc's mmap threshold
    # (allocator.py), so each chunk reuses the last one's heap block, where chunks of a
    # quarter of the memory were mapped afresh and their pages faulted in and zeroed
    # (3.7 GB of tables: 4.1 s to write with 16 MB chunks, 9.6 s with 512 MB ones).
    WRITE_CHUNK_BYTES = 16 << 20

    def __init__(self, vocab: Vocabulary, tables: StreamedTables, metadata: dict,
                 memory: int):
        self.vocab, self.tables, self.metadata, self.memory = vocab, tables, metadata, memory
        self.order = tables.order
        self._meter = _ignore

    @contextmanager
    def writing_progress(self, arpa: bool):
        """A progress bar (on a terminal) of the tables read while the model file (and the
        ARPA file, if ``arpa``) is written in the block."""
        tables = self.tables

        def size(*columns):
            return sum(os.path.getsize(path) - header_size()
                       for paths in columns for path in paths if path)
        total = size(tables.keys, tables.children, tables.logprob, tables.backoff)
        if arpa:
            total += size(tables.ids, tables.logprob, tables.backoff)
        with progress.bytes_bar("writing", total) as bar:
            self._meter = bar.update
            try:
                yield
            finally:
                self._meter = _ignore

    def to_arrays(self) -> dict:
        """The arrays of ``NgramModel.to_arrays``, in the same order."""
        tables = self.tables
        chunk = max(1 << 16, min(self.WRITE_CHUNK_BYTES, self.memory // 4))

        def on_disk(path, dtype=None):
            return TableArray(path, chunk, lambda size: self._meter(size), dtype)
        arrays = dict(self.vocab.to_arrays())
        for n in range(1, self.order + 1):
            if n > 1:
                arrays[f"keys_{n}"] = on_disk(tables.keys[n - 1])
            if n > 2:     # trie.child_starts' type: int32 where the table allows
                small = tables.sizes[n - 1] < 2 ** 31
                arrays[f"children_{n}"] = on_disk(tables.children[n - 1],
                                                  np.int32 if small else np.int64)
            arrays[f"logprob_{n}"] = tables.unigram_logprob if n == 1 \
                else on_disk(tables.logprob[n - 1])
            if n < self.order:
                arrays[f"backoff_{n}"] = tables.unigram_backoff if n == 1 \
                    else on_disk(tables.backoff[n - 1])
        return arrays

    def ngram_sizes(self) -> List[int]:
        return list(self.tables.sizes)

    def ngram_sections(self):
        """For each order, its n-grams as ``(word ids, log p, log bow or None)`` chunks."""
        tables = self.tables
        if self.order > 1 and not tables.ids[1]:
            raise ValueError("the model was estimated without the n-grams' ids (arpa=False)")
        yield [(np.arange(tables.vocab_size)[:, None], tables.unigram_logprob,
                tables.unigram_backoff)]
        rows = max(64, self.memory // self.ARPA_ROW_BYTES)
        for n in range(2, self.order + 1):
            yield self._chunks(n, rows)

    def _chunks(self, n: int, rows: int):
        tables, packing = self.tables, packed.Packing(n, self.tables.vocab_size)
        with ExitStack() as stack:
            readers = [stack.enter_context(TableReader(path)) for path in
                       (tables.ids[n - 1], tables.logprob[n - 1], tables.backoff[n - 1]) if path]
            while readers[0].remaining:
                ids, logprob, *backoff = [reader.read(rows) for reader in readers]
                self._meter(ids.nbytes + logprob.nbytes + sum(b.nbytes for b in backoff))
                yield packing.unpack(ids["key"]), logprob, (backoff[0] if backoff else None)


def _ignore(size: int) -> None:
    pass


def estimate_streamed(counts: CountTables, method: str, bos: int, eos: int, add_k: float,
                      prune: Optional[Sequence[int]], memory: int, scratch: Scratch,
                      arpa: bool = True) -> StreamedTables:
    """``smoothing.estimate`` on count tables on disk, within about ``memory`` bytes.
    ``arpa``: keep the n-grams' packed ids too, which only an ARPA file needs."""
    tables = _Estimator(counts, method, bos, eos, add_k, prune, memory, scratch, arpa).run()
    settle()                    # the tables of the steps are deleted, behind
    return tables


class _Estimator:
    def __init__(self, counts: CountTables, method: str, bos: int, eos: int, add_k: float,
                 prune: Optional[Sequence[int]], memory: int, scratch: Scratch,
                 arpa: bool = True):
        self.counts, self.method, self.add_k, self.arpa = counts, method, add_k, arpa
        self.bos, self.eos = bos, eos
        self.order, self.vocab_size = counts.order, counts.vocab_size
        self.thresholds = prune_thresholds(prune, counts.order) if prune else None
        self.memory, self.scratch = memory, scratch
        self.meter: Callable[[int], None] = _ignore
        # Kneser-Ney: the counts of adjusted counts 0..4 of each order (index n), tallied
        # by the passes that read them (_rotate, _unigram_adjusted, _extensions)
        self.tallies = [np.zeros(5, dtype=np.int64) for _ in range(counts.order + 1)]
        self.stopping = threading.Event()   # set: _finish_order gives up (see _run)
        self.final: Optional[StreamedTables] = None   # the tables _finish makes

    def rows(self, step: str) -> int:
        """Rows of a chunk for ``step`` (see ``ROW_BYTES``): a quarter of the memory, as
        two steps run at once (``_run``), one of them beside ``_lower``'s half."""
        return max(64, min(CHUNK_ROWS, self.memory // (4 * ROW_BYTES[step])))

    def sort_rows(self, dtype: np.dtype) -> int:
        """Records of ``dtype`` that a sort may buffer."""
        return max(64, self.memory // (SORT_FACTOR * dtype.itemsize))

    def feed_rows(self, sort_rows: int) -> int:
        """Rows read at a time to feed a sort that buffers ``sort_rows`` records."""
        return max(64, min(CHUNK_ROWS, sort_rows // 4))

    def packing(self, n: int) -> packed.Packing:
        return packed.Packing(n, self.vocab_size)

    def reader(self, path: str) -> TableReader:
        """A reader of one of the tables each step reads whole, on the progress bar."""
        return TableReader(path, self.meter)

    def _planned_reads(self) -> int:
        """The bytes that the steps' ``reader``s will read, order by order: records of a
        key and one number (the counts; the suffix order's keys and rows; the final values
        have two numbers) and the lower values, one number a row."""
        kn, total = self.method == "kneser-ney", 0
        for n in range(2, self.order + 1):
            rows = self.counts_rows(n)
            record, longer = 8 * self.packing(n).words + 8, n > 2
            # _normalize, _finish_order; _rotate (n > 2); _unigram_adjusted (n = 2)
            total += rows * ((2 + longer + (kn and n == 2)) * record + 8)
            if longer:      # the lower values; the suffix order: _lower, _extensions
                total += rows * (8 + (self._lower_passes(rows) + kn) * record)
        return total

    # -- the whole estimate ------------------------------------------------------------------

    def run(self) -> StreamedTables:
        with progress.bytes_bar("estimating", self._planned_reads()) as bar:
            self.meter = progress.shared(bar.update)     # (told by two threads)
            return self._run()

    def _run(self) -> StreamedTables:
        N = self.order
        rotated = [None] * (N + 1)
        rotated[3:] = [self._rotate(n) for n in range(3, N + 1)]
        extensions = [None] * (N + 1)
        notes = {"add-k": {"add_k": self.add_k}}.get(self.method, {})
        if self.method == "kneser-ney":
            extensions[2:N] = [self._extensions(n, rotated[n + 1]) for n in range(2, N)]
            notes = {"discounts": {}, "discount_fallback": {}}
            self.unigram_adjusted = self._unigram_adjusted()
            self.discounts = self._kn_discounts(notes)
        unigram_value = self._unigrams()
        # Order n's final tables can be made once the back-off weights of its n-grams are
        # in (order n+1's lexicographic pass): made in a thread of their own while this
        # one goes on with the orders above (each step a core: 2 NumPy passes at once).
        finishing = parallel.Background(parallel.thread_count() > 1)
        self.stopping = finishing.stopping
        values = [None, None]
        try:
            for n in range(2, N + 1):
                lower = None if n == 2 else self._lower(n, rotated[n], values[n - 1])
                if rotated[n]:
                    remove(rotated[n])
                table, weights = self._normalize(n, lower, extensions[n], unigram_value,
                                                 notes)
                remove(self.counts.tables[n - 1])     # (an estimate uses its counts up)
                values.append(table)
                finishing.add(partial(self._finish, n - 1, values[n - 1], weights,
                                      unigram_value, notes))
            finishing.add(partial(self._finish, N, values[N], None, unigram_value, notes))
            finishing.wait()
        except BaseException:
            finishing.stop()
            raise
        return self.final

    # -- suffix order and adjusted counts -------------------------------------------------------

    def _rotate(self, n: int) -> str:
        """The n-grams of order n sorted by (w_2 .. w_n, w_1): records of the packed key
        and the n-gram's row in the count table (where ``_lower`` puts its value back)."""
        packing = self.packing(n)
        dtype = packed.dtype_of(packing, row=np.int64)
        sort_rows = self.sort_rows(dtype)
        # The n-grams come in lexicographic order: among equal suffixes, w_1 ascending.
        sorter = RunSorter(self.scratch, f"suffix-order-{n}", dtype, sort_rows,
                           order=packed.suffix_order(packing))
        with self.reader(self.counts.tables[n - 1]) as reader:
            for chunk in reader.chunks(self.feed_rows(sort_rows)):
                first_row = reader.position - chunk.size
                sorter.add(make_records(dtype, packing.rotate(chunk["key"]),
                                        row=np.arange(first_row, reader.position)))
                if self.method == "kneser-ney":
                    self._tally_raw(n, chunk, packed.first_ids(chunk["key"], packing))
        return sorter.finish(sort_rows)

    def _extensions(self, n: int, rotated: str) -> str:
        """Order n's left extensions (n < N): for each n-gram that follows a word, the
        number of distinct words it follows, from the order-(n+1) table in suffix order.
        Every n-gram but those starting with ``<s>`` is there (they follow nothing)."""
        upper, packing = self.packing(n + 1), self.packing(n)
        dtype = packed.dtype_of(packing, extensions=np.int64)
        carry = np.zeros(0, dtype=dtype)
        with self.reader(rotated) as reader, self.scratch.writer(f"extensions-{n}", dtype) as out:
            def emit(records):          # (the extensions are adjusted counts: tallied)
                out.append(records)
                self.tallies[n] += counts_of_counts(records["extensions"])
            for chunk in reader.chunks(self.rows("lookup")):
                suffixes = packing.pack(upper.unpack(chunk["key"])[:, :n])
                firsts = np.flatnonzero(packed.row_starts(suffixes))
                groups = make_records(dtype, suffixes[firsts], extensions=np.diff(
                    np.append(firsts, suffixes.shape[0])))
                if carry.size and np.array_equal(carry["key"][0], groups["key"][0]):
                    groups["extensions"][0] += carry["extensions"][0]
                else:
                    emit(carry)
                emit(groups[:-1])
                carry = groups[-1:]
            emit(carry)
        return out.path

    def _adjusted(self, chunk: np.ndarray, ids: np.ndarray,
                  extensions: Optional[AlignedReader]) -> np.ndarray:
        """Kneser-Ney's adjusted counts of a chunk (``smoothing.adjusted_counts``): raw at
        the top order and for n-grams starting with ``<s>``, else left extensions (the
        extensions table has a row for each of the others, in order)."""
        adjusted = chunk["count"].copy()
        if extensions is not None:
            follows = ids[:, 0] != self.bos
            adjusted[follows] = extensions.take(chunk["key"][follows])["extensions"]
        return adjusted.astype(np.float64)

    def _kn_discounts(self, notes: dict) -> List[np.ndarray]:
        """The discounts of every order, from the adjusted counts' counts of counts (noted
        in order 1..N, as the in-memory path notes them)."""
        self.tallies[1] = counts_of_counts(self.unigram_adjusted)
        return [None] + [choose_discounts(self.tallies[n], n, notes)
                         for n in range(1, self.order + 1)]

    def _tally_raw(self, n: int, chunk: np.ndarray, first_ids: np.ndarray) -> None:
        """Tally the adjusted counts that are raw counts in a chunk of order n's count
        table: all of them at the top order, else those of n-grams starting with ``<s>``
        (the others' are their left extensions: ``_extensions`` tallies them)."""
        counts = chunk["count"] if n == self.order else chunk["count"][first_ids == self.bos]
        self.tallies[n] += counts_of_counts(counts)

    # -- order 1, in memory ---------------------------------------------------------------------

    def _raw_unigrams(self) -> np.ndarray:
        raw = self.counts.unigrams.astype(np.float64)
        raw[self.bos] = 0.0                           # <s> is never predicted
        return raw

    def _unigrams(self) -> np.ndarray:
        """The unigram values: p, or the estimate of a back-off method."""
        raw = self._raw_unigrams()
        every = Contexts(np.zeros(self.vocab_size, dtype=np.intp), 1)
        if self.method == "kneser-ney":
            alpha, gamma = kn_order(self.unigram_adjusted, self.discounts[1],
                                    np.ones(self.vocab_size, dtype=bool), every)
            return unigram_probabilities(alpha, gamma, self.bos)
        if self.method == "witten-bell":
            alpha, gamma = wb_order(raw, every)
            return unigram_probabilities(alpha, gamma, self.bos)
        if self.method == "add-k":
            return add_k_unigrams(raw, self.add_k, self.bos)
        return mle_order(raw, every)[0]

    def _unigram_adjusted(self) -> np.ndarray:
        """Kneser-Ney's unigram counts: each word's number of distinct words before it
        (the bigrams ending in it); raw counts if the model is of order 1."""
        if self.order == 1:
            return self._raw_unigrams()
        before = np.zeros(self.vocab_size, dtype=np.int64)
        packing = self.packing(2)
        with self.reader(self.counts.tables[1]) as reader:
            for chunk in reader.chunks(self.rows("normalize")):
                ids = packing.unpack(chunk["key"])
                before += np.bincount(ids[:, 1], minlength=self.vocab_size)
                self._tally_raw(2, chunk, ids[:, 0])
        before[self.bos] = 0
        return before.astype(np.float64)

    # -- orders 2..N ----------------------------------------------------------------------------

    def lower_rows(self) -> int:
        """Lower values ``_lower`` holds at once (float64): half the memory."""
        return max(64, self.memory // 16)

    def _lower_passes(self, rows: int) -> int:
        """The passes ``_lower`` makes over a suffix order of ``rows`` n-grams."""
        return -(-rows // self.lower_rows())

    def _lower(self, n: int, rotated: str, values_below: str) -> str:
        """The order-(n-1) value of each n-gram's suffix, in lexicographic order of the
        n-grams: a table of float64, row i for the count table's row i.

        The values are fetched in suffix order, beside the table below, and put in place
        by each n-gram's row (``_rotate``): a scatter into a slice of ``lower_rows`` rows
        held in memory, one pass over the suffix order a slice (one pass, up to 2 GB of
        memory: 134M n-grams). A sort back into lexicographic order took 5x longer."""
        rows = self.counts_rows(n)
        with self.scratch.writer(f"lower-{n}", np.float64) as out:
            for start in range(0, rows, self.lower_rows()):
                held = np.empty(min(self.lower_rows(), rows - start))
                self._place_lower(n, rotated, values_below, start, held)
                out.append(held)
        return out.path

    def _place_lower(self, n: int, rotated: str, values_below: str, start: int,
                     held: np.ndarray) -> None:
        """Fill ``held`` with the lower values of the n-grams of rows start.. (one pass)."""
        packing, below = self.packing(n), self.packing(n - 1)
        # Every (n-1)-gram but those starting with <s> is the suffix of some n-gram.
        def starts_with_bos(records):
            return below.unpack(records["key"])[:, 0] == self.bos
        with self.reader(rotated) as reader, \
                AlignedReader(values_below, self.rows("lookup"), starts_with_bos) as values:
            for chunk in reader.chunks(self.rows("lookup")):
                ids = packing.unpack(chunk["key"])                # (w_2 .. w_n, w_1)
                lower = values.for_groups(below.pack(ids[:, :n - 1]))["value"]
                place = chunk["row"] - start
                inside = (place >= 0) & (place < held.size)
                if inside.all():
                    held[place] = lower
                else:
                    held[place[inside]] = lower[inside]

    def counts_rows(self, n: int) -> int:
        """The n-grams in order n's count table."""
        return table_rows(self.counts.tables[n - 1])

    def _normalize(self, n: int, lower: Optional[str], extensions: Optional[str],
                   unigram_value: np.ndarray, notes: dict):
        """The lexicographic pass over order n: a table of (key, count, value) for the
        n-grams, and one of (key, log bow) for their contexts, of order n-1."""
        packing, below = self.packing(n), self.packing(n - 1)
        values_type = packed.dtype_of(packing, count=np.int64, value=np.float64)
        weights_type = packed.dtype_of(below, log_bow=np.float64)
        paths = [self.counts.tables[n - 1]] + ([lower] if lower else [])
        with ExitStack() as stack:
            beside = stack.enter_context(AlignedReader(extensions, self.rows("lookup"))) \
                if extensions else None
            values = stack.enter_context(self.scratch.writer(f"values-{n}", values_type))
            weights = stack.enter_context(self.scratch.writer(f"backoff-{n - 1}", weights_type))
            for parts, ids in _context_chunks(paths, packing, self.rows("normalize"),
                                              self.meter):
                chunk = parts[0]
                if lower:
                    if parts[1].size != chunk.size:
                        raise RuntimeError(f"the lower values of the {n}-grams are out of step")
                    below_value = parts[1]
                else:
                    below_value = unigram_value[ids[:, 1]]
                firsts = np.flatnonzero(packed.row_starts(ids[:, :n - 1]))
                ctx = Contexts(np.cumsum(packed.row_starts(ids[:, :n - 1])) - 1, firsts.size)
                value, log_bow = self._order_formulas(chunk, ids, ctx, below_value, beside)
                values.append(make_records(values_type, chunk["key"], count=chunk["count"],
                                           value=value))
                weights.append(make_records(weights_type, below.pack(ids[firsts, :n - 1]),
                                            log_bow=log_bow))
        for path in (extensions, lower):
            if path:
                remove(path)
        return values.path, weights.path

    def _order_formulas(self, chunk: np.ndarray, ids: np.ndarray, ctx: Contexts,
                        lower: np.ndarray, extensions: Optional[AlignedReader]):
        """The method's formulas on one chunk of whole contexts: the value of each n-gram
        and the log back-off weight of each context (as ``smoothing``'s whole orders)."""
        if self.method == "kneser-ney":
            a = self._adjusted(chunk, ids, extensions)
            n = ids.shape[1]
            keep = chunk["count"] > self.thresholds[n - 1] if self.thresholds \
                else np.ones(chunk.size, dtype=bool)
            alpha, gamma = kn_order(a, self.discounts[n], keep, ctx)
            return interpolate(alpha, gamma[ctx.row], lower), interpolated_backoff(gamma)
        c = chunk["count"].astype(np.float64)
        if self.method == "witten-bell":
            alpha, gamma = wb_order(c, ctx)
            return interpolate(alpha, gamma[ctx.row], lower), interpolated_backoff(gamma)
        if self.method == "add-k":
            estimate, left_over = add_k_order(c, ctx, self.add_k, self.vocab_size - 1)
        else:
            estimate, left_over = mle_order(c, ctx)
        return estimate, katz_backoff(left_over, lower, ctx)

    # -- the final tables ------------------------------------------------------------------------

    def _finish(self, n: int, values: Optional[str], weights: Optional[str],
                unigram_value: np.ndarray, notes: dict) -> None:
        """Order n's final tables (in ``self.final``), from its values and its n-grams'
        back-off weights (none at the top order); the tables read are removed."""
        if n > 1:
            self._finish_order(n, values, weights, self.final)
            remove(values)
        else:
            self.final = self._finish_unigrams(unigram_value, weights, notes)
        if weights:
            remove(weights)

    def _finish_unigrams(self, unigram_value: np.ndarray, weights: Optional[str],
                         notes: dict) -> StreamedTables:
        unigram_logprob = safe_log(unigram_value)
        unigram_backoff = None
        if weights:
            unigram_backoff = np.zeros(self.vocab_size)
            bows = read_table(weights)
            unigram_backoff[self.packing(1).unpack(bows["key"])[:, 0]] = bows["log_bow"]
        check_estimate(1, unigram_logprob, unigram_backoff, self.method)
        return StreamedTables(self.order, self.vocab_size, unigram_logprob, unigram_backoff,
                              ids=[None], rows=[None], children=[None, None], keys=[None],
                              logprob=[None], backoff=[None], sizes=[self.vocab_size],
                              notes=notes)

    def _finish_order(self, n: int, values: str, weights: Optional[str],
                      result: StreamedTables) -> None:
        """Order n's kept n-grams with their trie keys, log p and log bow.

        Two tables line up with order n's: the back-off weights (from order n+1) and the
        kept rows of order n-1 (from the step before), each with a row for every n-gram,
        or every (n-1)-gram, that does not end in ``</s>``: those, and only those, are
        continued by a word."""
        packing, below = self.packing(n), self.packing(n - 1)
        rows = self.rows("finish")
        ids_type = packed.dtype_of(packing)
        rows_type = packed.dtype_of(packing, row=np.int64)
        kept_rows = 0
        with ExitStack() as stack:
            def open_writer(name, dtype):
                return stack.enter_context(self.scratch.writer(name, dtype))
            ids_out = open_writer(f"ids-{n}", ids_type) if self.arpa else None
            keys_out = open_writer(f"keys-{n}", np.uint64)
            logprob_out = open_writer(f"logprob-{n}", np.float64)
            backoff_out = open_writer(f"backoff-{n}", np.float64) if weights else None
            rows_out = open_writer(f"rows-{n}", rows_type) if weights else None
            children = _ChildStarts(open_writer(f"children-{n}", np.int64), rows) \
                if n > 2 else None
            bows = stack.enter_context(AlignedReader(weights, rows)) if weights else None
            contexts = stack.enter_context(AlignedReader(result.rows[n - 2], rows)) \
                if n > 2 else None
            reader = stack.enter_context(self.reader(values))
            for chunk in reader.chunks(rows):
                if self.stopping.is_set():
                    raise RuntimeError("stopped: the estimate of the orders above failed")
                ids = packing.unpack(chunk["key"])
                context = ids[:, 0] if n == 2 else \
                    contexts.for_groups(below.pack(ids[:, :-1]))["row"]
                # (no pruning: a slice, a view, where a mask would copy every column)
                keep = chunk["count"] > self.thresholds[n - 1] if self.thresholds \
                    else slice(None)
                kept = np.count_nonzero(keep) if self.thresholds else chunk.size
                logprob = safe_log(chunk["value"][keep])
                backoff = None
                if weights:
                    continued = ids[:, -1] != self.eos
                    backoff = np.zeros(chunk.size)
                    backoff[continued] = bows.take(chunk["key"][continued])["log_bow"]
                    row = np.full(chunk.size, -1, dtype=np.int64)
                    row[keep] = kept_rows + np.arange(kept)
                    rows_out.append(make_records(rows_type, chunk["key"][continued],
                                                 row=row[continued]))
                    backoff = backoff[keep]
                check_estimate(n, logprob, backoff, self.method)
                if np.any(context[keep] < 0):
                    raise RuntimeError(f"a context of a kept {n}-gram was pruned")
                if ids_out:
                    ids_out.append(make_records(ids_type, chunk["key"][keep]))
                keys_out.append(context[keep].astype(np.uint64) * np.uint64(self.vocab_size)
                                + ids[keep, -1].astype(np.uint64))
                if children:
                    children.add(context[keep])
                logprob_out.append(logprob)
                if backoff_out:
                    backoff_out.append(backoff)
                kept_rows += kept
            if children:
                children.finish(result.sizes[n - 2])
        result.ids.append(ids_out.path if ids_out else None)
        result.keys.append(keys_out.path)
        result.logprob.append(logprob_out.path)
        result.backoff.append(backoff_out.path if backoff_out else None)
        result.rows.append(rows_out.path if rows_out else None)
        if children:
            result.children.append(children.out.path)
        result.sizes.append(keys_out.rows)
        if n > 2:
            remove(result.rows[n - 2])


class _ChildStarts:
    """``trie.child_starts`` of an order, written as its n-grams' context rows come (in
    order, kept n-grams only): ``first[r]`` is the number of n-grams of a context row
    below r, for r = 0 .. the rows of the order below."""

    def __init__(self, out, rows: int):
        self.out, self.rows = out, rows
        self.next_row = 0          # the first context row whose entry is not written yet
        self.seen = 0              # the n-grams before the current chunk

    def add(self, contexts: np.ndarray) -> None:
        if contexts.size:
            self._write_up_to(int(contexts[-1]) + 1, contexts)
            self.seen += contexts.size

    def finish(self, context_rows: int) -> None:
        self._write_up_to(context_rows + 1, np.zeros(0, dtype=np.int64))

    def _write_up_to(self, end: int, contexts: np.ndarray) -> None:
        """The entries of the rows next_row .. end - 1, a chunk of ``rows`` at a time."""
        for start in range(self.next_row, end, self.rows):
            stop = min(end, start + self.rows)
            # row start + i: the contexts below it, those below ``start`` (bin 0), then
            # those of each row start .. start + i - 1 (bins 1 .. i): a running sum.
            bins = np.clip(contexts - (start - 1), 0, stop - start)
            below = np.cumsum(np.bincount(bins, minlength=stop - start + 1)[:stop - start])
            self.out.append(self.seen + below)
        self.next_row = max(self.next_row, end)


def _context_chunks(paths: List[str], packing: packed.Packing, rows: int,
                    meter: Callable[[int], None]) -> Iterator[tuple]:
    """Aligned chunks of tables sorted alike (the first one's keys are n-grams of
    ``packing``), each ending at a context's end: ``([chunk of each table], ids)``."""
    readers = [TableReader(path, meter) for path in paths]
    held = [reader.read(0) for reader in readers]
    try:
        while True:
            parts = [concat([h, r.read(rows)]) for h, r in zip(held, readers)]
            if parts[0].size == 0:
                return
            ids = packing.unpack(parts[0]["key"])
            if not readers[0].remaining:
                yield parts, ids
                return
            cut = int(np.flatnonzero(packed.row_starts(ids[:, :-1]))[-1])
            if cut == 0:                    # one context fills the chunk: read on
                held = parts
                continue
            yield [part[:cut] for part in parts], ids[:cut]
            held = [part[cut:] for part in parts]
    finally:
        for reader in readers:
            reader.close()
