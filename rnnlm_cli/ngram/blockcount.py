"""Counting the n-grams of a corpus that does not fit in memory, a block at a time.

The corpus arrives as its *padded sequence*, ``<s> w_1 .. w_k </s> <s> ...`` (word ids),
in blocks of any size. Each block's n-grams of every order 2..N are packed (``packed.py``,
independent of the rest of the corpus), sorted, counted, and written as one sorted run
per order; the last N-1 positions of a block are kept to complete the n-grams that cross
into the next. Blocks are counted on every core at once, each on a thread of its own
(``BlockCounter.add_all``). When every block is in, the runs of each order are merged
(``runs.merge_runs``, counts summed; the orders on every core at once) into its *count
table*: each distinct n-gram once, in lexicographic order, with its count. Unigram
counts are one array over the vocabulary, kept in memory.

An n-gram ends at a position whose offset in its sentence (``<s>`` is offset 0) is at
least n-1, exactly as ``counting.count_ngrams`` counts: the two give the same n-grams and
counts (``tests/test_ngram_bounded.py``). A run counted anywhere else from the same
vocabulary (another process, another machine) is just another run to merge.

Only the top order is sorted (``count_orders``). An n-gram not ending in ``</s>`` is the
prefix of the (n+1)-gram one position longer, so the counts of order n are the sums of
order n+1's counts by prefix (already in order: the prefixes of sorted n-grams are
sorted), plus the n-grams that end in ``</s>``, a few, sorted and merged in. A block
thus counts each n-gram at its *anchor*: the end of the longest n-gram (up to order N)
that it begins and that does not go past a ``</s>``. Each n-gram has one anchor, in one
block, so the runs of all blocks add up to the corpus's counts.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from rnnlm_cli import parallel
from rnnlm_cli.allocator import give_back_free_memory
from rnnlm_cli.ngram import packed
from rnnlm_cli.ngram.runs import (Progress, concat, make_records, merge_runs, sort_records,
                                  write_run)
from rnnlm_cli.ngram.scratch import Scratch, header_size

# Bytes of memory per position of a block while its n-grams are counted: the ids, their
# offsets, one order's packed keys (twice: sorting gathers a copy), the sort's index.
BYTES_PER_POSITION = 128


def count_dtype(packing: packed.Packing) -> np.dtype:
    """A record of a count table: the packed n-gram and its count."""
    return packed.dtype_of(packing, count=np.int64)


@dataclass
class CountTables:
    """The counts of every order: unigrams in memory, orders 2..N as scratch tables."""

    order: int
    vocab_size: int
    unigrams: np.ndarray                                     # (|V|,) int64
    tables: List[Optional[str]] = field(default_factory=list)  # [n - 1]: path; None for n = 1
    runs: int = 0                                            # runs spilled, all orders

    def packing(self, n: int) -> packed.Packing:
        return packed.Packing(n, self.vocab_size)


def count_records(ids: np.ndarray, offsets: np.ndarray, first: int, n: int,
                  vocab_size: int) -> np.ndarray:
    """The sorted run (``count_dtype`` records) of the n-grams of ``ids`` (a stretch of a
    padded sequence, ``offsets`` in their sentences) ending at positions ``first`` on."""
    return _count_ending_at(ids, first + np.flatnonzero(offsets[first:] >= n - 1), n,
                            vocab_size)


def count_orders(ids: np.ndarray, offsets: np.ndarray, first: int, order: int,
                 vocab_size: int, eos: int) -> Iterator[Tuple[int, np.ndarray]]:
    """The sorted runs of orders ``order`` down to 2, as ``(n, run)``, of the n-grams of
    ``ids`` (a stretch of a padded sequence, ``offsets`` in their sentences) anchored at
    positions ``first`` on (see the module's docstring): one sort, of the top order. Only
    the run given last and the one being made are held: write each as it comes."""
    if order < 2:
        return
    run = count_records(ids, offsets, first, order, vocab_size)
    for n in range(order - 1, 1, -1):
        yield n + 1, run
        ends = first + np.flatnonzero((ids[first:] == eos) & (offsets[first:] >= n - 1))
        followed = _prefix_counts(run, packed.Packing(n + 1, vocab_size))
        del run                       # (each order's records freed as soon as they can be)
        merged = concat([followed, _count_ending_at(ids, ends, n, vocab_size)])
        del followed
        run = sort_records(merged, "count", packed.merge_order)
        del merged
    yield 2, run


def _prefix_counts(run: np.ndarray, packing: packed.Packing) -> np.ndarray:
    """The (n-1)-gram prefixes of a sorted run of n-grams, each once, with the sum of the
    counts of the n-grams it begins (a sorted run of order n - 1)."""
    prefixes = packing.drop_last(run["key"])
    dtype = count_dtype(packed.Packing(packing.n - 1, packing.vocab_size))
    if run.size == 0:
        return np.zeros(0, dtype=dtype)
    starts = np.flatnonzero(packed.row_starts(prefixes))
    return make_records(dtype, prefixes[starts], count=np.add.reduceat(run["count"], starts))


def _count_ending_at(ids: np.ndarray, ends: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """The sorted run of the n-grams of ``ids`` ending at the positions ``ends``."""
    packing = packed.Packing(n, vocab_size)
    keys = packed.sort_rows(packing.pack([ids[ends - (n - 1) + j] for j in range(n)]), packing)
    firsts = np.flatnonzero(packed.row_starts(keys))
    return make_records(count_dtype(packing), keys[firsts],
                        count=np.diff(np.append(firsts, keys.shape[0])))


class BlockCounter:
    """Counts the n-grams of a padded sequence given a block at a time (``add``)."""

    def __init__(self, scratch: Scratch, order: int, vocab_size: int, bos: int, eos: int):
        self.scratch, self.order, self.vocab_size = scratch, order, vocab_size
        self.bos, self.eos = bos, eos
        self.unigrams = np.zeros(vocab_size, dtype=np.int64)
        self.runs: List[List[str]] = [[] for _ in range(order + 1)]
        self.tail_ids = np.zeros(0, dtype=np.int32)     # the last N-1 positions so far
        self.tail_offsets = np.zeros(0, dtype=np.int64)

    def add_all(self, read: Callable[[int], Iterable[np.ndarray]], memory: int,
                threads: Optional[int] = None) -> None:
        """Count the n-grams of the padded sequence that ``read(rows)`` gives in blocks of
        about ``rows`` positions, within ``memory`` bytes (``BYTES_PER_POSITION`` a
        position of a block): a block on each of ``threads`` threads at once (by default
        ``parallel.thread_count``), each block's runs sorted on its own thread."""
        threads = threads or parallel.thread_count()
        rows = max(1 << 10, memory // (BYTES_PER_POSITION * threads))
        stop = threading.Event()        # set: the blocks being counted give up
        stretches = (self._stretch(ids) for ids in read(rows) if ids.size)
        counted = parallel.map_ordered(partial(self._count_stretch, stop=stop), stretches,
                                       stop, threads, held=threads)
        for runs in counted:
            for n, path in runs:
                self.runs[n].append(path)

    def _stretch(self, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
        """The next block of ids with the last N-1 positions before it, their offsets, and
        where the block begins: its n-grams are those ending from there on."""
        ids = ids.astype(np.int32, copy=False)
        offsets = self._offsets(ids)
        self.unigrams += np.bincount(ids, minlength=self.vocab_size)
        all_ids = np.concatenate([self.tail_ids, ids])
        all_offsets = np.concatenate([self.tail_offsets, offsets])
        first = self.tail_ids.size
        keep = max(0, all_ids.size - (self.order - 1))
        self.tail_ids, self.tail_offsets = all_ids[keep:], all_offsets[keep:]
        return all_ids, all_offsets, first

    def _count_stretch(self, stretch: Tuple[np.ndarray, np.ndarray, int],
                       stop: threading.Event) -> List[Tuple[int, str]]:
        """Each order's run of one stretch, written: ``(n, path)`` for n = N .. 2."""
        runs = []
        for n, records in count_orders(*stretch, self.order, self.vocab_size, self.eos):
            if stop.is_set():
                raise RuntimeError("stopped: the counting of another block failed")
            runs.append((n, write_run(self.scratch, f"run-{n}", records)))
            del records
        return runs

    def _offsets(self, ids: np.ndarray) -> np.ndarray:
        """Each position's offset in its sentence, carried on from the previous block."""
        index = np.arange(ids.size, dtype=np.int64)
        last_bos = np.maximum.accumulate(np.where(ids == self.bos, index, -1))
        before = self.tail_offsets[-1] if self.tail_offsets.size else -1
        return np.where(last_bos >= 0, index - last_bos, before + 1 + index)

    def run_bytes(self) -> int:
        """The bytes of the records of the runs spilled so far (what a merge pass reads)."""
        return sum(os.path.getsize(path) - header_size() for runs in self.runs
                   for path in runs)

    def finish(self, memory: int, progress: Progress = None) -> CountTables:
        """Merge each order's runs into its count table: the orders on every core, the
        largest first (a merge's rounds are sorted on one), each within its share of
        ``memory``. ``progress`` may be told by several threads at once."""
        give_back_free_memory()     # the block sorts' groups' blocks, before the merges'
        result = CountTables(self.order, self.vocab_size, self.unigrams, [None],
                             sum(len(r) for r in self.runs))
        threads = max(1, min(parallel.thread_count(), self.order - 1))
        share = memory // threads
        stop = threading.Event()        # set: the other merges give up (an error, Ctrl-C)
        tell = progress or (lambda size: None)

        def told(size: int) -> None:    # (told after each round of a merge)
            if stop.is_set():
                raise RuntimeError("stopped: another merge failed")
            tell(size)

        def merge(n: int) -> str:
            dtype = count_dtype(result.packing(n))
            runs = self.runs[n] or [write_run(self.scratch, f"run-{n}", np.zeros(0, dtype))]
            return merge_runs(self.scratch, runs, f"counts-{n}", share // (3 * dtype.itemsize),
                              "count", told)
        top_down = list(range(self.order, 1, -1))
        tables = dict(zip(top_down, parallel.map_ordered(merge, top_down, stop, threads)))
        result.tables += [tables[n] for n in range(2, self.order + 1)]
        return result
