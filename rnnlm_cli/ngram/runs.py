"""Sorting more records than fit in memory: sorted runs spilled to scratch tables, then
merged.

Records are structured arrays with a ``key`` field of packed n-grams (``packed.py``),
sorted by key. A *run* is a table whose records are sorted by key with each key once;
runs are made in memory (``sort_records``) from whatever fits, written to the scratch
folder, and merged (``merge_runs``) into one run. Where a field is named as the sum
field (a count), records with the same key are combined into one holding the sum: a key
counted in several blocks of a corpus, or on several machines, gets its total.

The merge is vectorized, a round at a time rather than a record at a time: each run has
a buffer of its next records; the smallest of the buffers' last keys, the *frontier*, is
a key up to which every record of every run is in a buffer, so the records up to it are
taken from all buffers, sorted together, combined and written. Each round empties at
least the buffer that set the frontier. Too many runs for the memory (each needs a
buffer of useful size) are merged in groups, and the groups' runs merged again.
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np

from rnnlm_cli.allocator import give_back_free_memory
from rnnlm_cli.ngram import packed
from rnnlm_cli.ngram.scratch import Scratch, TableReader, header_size, remove

MIN_BUFFER = 64           # records in a merge buffer, at the least
# Records a chunk of work holds at most, whatever the memory (a merge's round, a chunk
# of a pass, a slice of a sorted buffer written out): a chunk's arrays of a number a
# record (4 MB) and its records then stay below malloc's mmap threshold (32 MB,
# allocator.py) and reuse the heap's freed blocks, where a larger array is mapped afresh
# for each chunk, its pages faulted in, zeroed and given back. (train-ngram, 30M words,
# --memory 2G: 100 GB of huge pages faulted in before, and a third of the CPU time in
# the kernel; 50 GB with chunks of 1M records, 34 GB with these and the merges' too.)
CHUNK_ROWS = 1 << 19
_HEADER = header_size()
Progress = Optional[Callable[[int], None]]   # told the bytes read, as they are


Order = Callable[[np.ndarray], np.ndarray]    # keys -> the permutation that sorts them


def sort_records(records: np.ndarray, sum_field: Optional[str] = None,
                 order: Order = packed.lex_order) -> np.ndarray:
    """``records`` sorted by key; with ``sum_field``, one record per key holding the sum.
    ``order`` finds the permutation that sorts keys lexicographically: ``packed.lex_order``
    for records in any order, or a faster one that knows how they come
    (``packed.merge_order``: sorted runs end to end; ``packed.in_groups`` of either to
    sort on every core)."""
    records = gather(records, order(records["key"]))
    if sum_field is None or records.size == 0:
        return records
    firsts = np.flatnonzero(packed.row_starts(records["key"]))
    combined = gather(records, firsts)
    combined[sum_field] = np.add.reduceat(records[sum_field], firsts)
    return combined


def gather(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``records[index]`` for an integer index: ``np.take`` of the records as opaque rows
    (``_opaque``)."""
    return np.take(_opaque(records), index).view(records.dtype)


def make_records(dtype: np.dtype, keys: np.ndarray, **fields) -> np.ndarray:
    """Records of ``dtype`` (``packed.dtype_of``: the key, then fields of 8 bytes) from
    packed ``keys`` and the named fields' values. The keys go in through a view of the
    records as rows of uint64 words: assigning the array field itself goes element by
    element, 5x slower (NumPy 2.4: 10M keys of two words)."""
    records = np.empty(keys.shape[0], dtype=dtype)
    if dtype.itemsize % 8 == 0 and dtype.fields["key"][1] == 0:
        words = records.view(np.uint64).reshape(-1, dtype.itemsize // 8)
        words[:, :keys.shape[1]] = keys
    else:
        records["key"] = keys
    for name, values in fields.items():
        records[name] = values
    return records


def concat(parts: List[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)`` of records of one dtype, as opaque rows (``_opaque``)."""
    dtype = parts[0].dtype
    if any(part.dtype != dtype for part in parts):
        raise TypeError("records of different types cannot be laid end to end")
    return np.concatenate([_opaque(part) for part in parts]).view(dtype)


def _opaque(records: np.ndarray) -> np.ndarray:
    """A view of records as opaque rows of bytes (``V`` items), which NumPy copies with
    ``memcpy``: its copies of records with an array field (the packed key) go a field
    at a time, element by element, 6x slower for ``np.take`` and 12x for
    ``np.concatenate`` (NumPy 2.4: 10M records of 24 bytes)."""
    records = np.ascontiguousarray(records)
    return records.view(np.dtype((np.void, records.dtype.itemsize)))


def select(records: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``records[mask]`` for a boolean mask: ``np.compress``, 5x faster on records."""
    return np.compress(mask, records)


def write_run(scratch: Scratch, name: str, records: np.ndarray) -> str:
    """Write sorted records as a run; its path."""
    with scratch.writer(name, records.dtype) as out:
        out.append(records)
    return out.path


class RunSorter:
    """Takes records in any order, ``add`` by ``add``, and gives them back as one run:
    buffered up to ``buffer_rows`` at a time, each full buffer sorted (on every core:
    ``packed.in_groups``) and spilled. (A merge's rounds are sorted on one: runs laid end
    to end are merged by one timsort in about the time it takes to cut them in groups.)"""

    def __init__(self, scratch: Scratch, name: str, dtype: np.dtype, buffer_rows: int,
                 sum_field: Optional[str] = None, order: Order = packed.lex_order):
        self.scratch, self.name, self.sum_field, self.order = scratch, name, sum_field, order
        self.buffer_rows = max(MIN_BUFFER, buffer_rows)
        self.dtype = dtype
        self.buffer: Optional[np.ndarray] = None   # buffer_rows records, once one comes
        self.filled = 0
        self.runs: List[str] = []

    def add(self, records: np.ndarray) -> None:
        while records.size:
            if self.buffer is None:     # its pages are touched (made resident) as it fills
                self.buffer = np.empty(self.buffer_rows, dtype=self.dtype)
            room = self.buffer_rows - self.filled
            part, records = records[:room], records[room:]
            _opaque(self.buffer)[self.filled:self.filled + part.size] = _opaque(part)
            self.filled += part.size
            if self.filled == self.buffer_rows:
                self._spill()

    def _spill(self) -> None:
        held = self.buffer[:self.filled] if self.buffer is not None \
            else np.zeros(0, dtype=self.dtype)
        order = packed.in_groups(self.order)
        if self.sum_field:
            self.runs.append(write_run(self.scratch, self.name,
                                       sort_records(held, self.sum_field, order)))
        else:                       # gathered and written a chunk at a time
            permutation = order(held["key"])
            with self.scratch.writer(self.name, self.dtype) as out:
                for start in range(0, permutation.size, CHUNK_ROWS):
                    out.append(gather(held, permutation[start:start + CHUNK_ROWS]))
            self.runs.append(out.path)
        self.filled = 0

    def finish(self, memory_rows: int, progress: Progress = None) -> str:
        """The one run of everything added (merging the spilled runs); the buffer is freed."""
        if self.filled or not self.runs:
            self._spill()
        self.buffer = None
        give_back_free_memory()     # the sorts' groups' blocks, before the merge's
        return merge_runs(self.scratch, self.runs, self.name, memory_rows, self.sum_field,
                          progress)


def merge_runs(scratch: Scratch, runs: List[str], name: str, memory_rows: int,
               sum_field: Optional[str] = None, progress: Progress = None) -> str:
    """Merge sorted runs into one (the runs merged are deleted); its path.

    ``memory_rows`` records may be in memory at once: about a quarter of them (at most
    ``CHUNK_ROWS``) in the buffers, the rest for a round's sorting. Merges at most
    ``memory_rows / (4 * MIN_BUFFER)`` runs at once, in several passes if there are more. ``progress`` is
    told the bytes of ``runs`` as the first pass reads them (later passes, over runs
    merged here, are not told: they happen only with a budget too small for one pass).
    """
    runs = list(runs)
    fan_in = max(2, memory_rows // (4 * MIN_BUFFER))
    while len(runs) > 1:
        groups = [runs[i:i + fan_in] for i in range(0, len(runs), fan_in)]
        runs = [_merge_group(scratch, group, name, memory_rows, sum_field, progress)
                if len(group) > 1 else group[0] for group in groups]
        if progress:
            progress(sum(os.path.getsize(group[0]) - _HEADER for group in groups
                         if len(group) == 1))         # a run left alone counts as read
            progress = None
    return runs[0]


def _merge_group(scratch: Scratch, group: List[str], name: str, memory_rows: int,
                 sum_field: Optional[str], progress: Progress) -> str:
    readers = [TableReader(path) for path in group]
    try:
        buffer_rows = max(MIN_BUFFER, min(memory_rows // 4, CHUNK_ROWS) // len(group))
        buffers = [reader.read(buffer_rows) for reader in readers]
        with scratch.writer(name, readers[0].dtype) as out:
            while True:
                for i, reader in enumerate(readers):       # top up half-empty buffers
                    if buffers[i].size < buffer_rows // 2 and reader.remaining:
                        buffers[i] = concat(
                            [buffers[i], reader.read(buffer_rows - buffers[i].size)])
                if not any(b.size for b in buffers):
                    break
                taken = _take_round(buffers, [r.remaining > 0 for r in readers])
                if progress:
                    progress(sum(part.nbytes for part in taken))
                out.append(sort_records(concat(taken), sum_field,
                                        packed.merge_order))
    finally:
        for reader in readers:
            reader.close()
    for path in group:
        remove(path)
    return out.path


def _take_round(buffers: List[np.ndarray], more: List[bool]) -> List[np.ndarray]:
    """Take from the buffers every record up to the frontier (the smallest last key of
    a buffer whose run has more to read; all records if none has)."""
    lasts = [b["key"][-1] for b, m in zip(buffers, more) if m and b.size]
    if lasts:
        lasts = np.stack(lasts)
        frontier = lasts[packed.lex_order(lasts)[0]]
        counts = [packed.count_at_most(b["key"], frontier) if b.size else 0
                  for b in buffers]
    else:
        counts = [b.size for b in buffers]
    taken = [b[:c] for b, c in zip(buffers, counts)]
    buffers[:] = [b[c:] for b, c in zip(buffers, counts)]
    return taken


class AlignedReader:
    """Reads a sorted table alongside a stream of keys that are its rows, in the same
    order: no search, rows are taken as they come and their keys checked against the
    stream's. (Each n-gram's left extensions beside the n-grams; the suffixes of the
    n-grams in suffix order beside the table of the order below: the stages of an
    estimate are built so that their tables line up, as lmplz's streams do.)

    ``skip`` drops the table's rows that have no counterpart in the stream (a mask of a
    chunk of records: the n-grams starting with ``<s>``, which are nobody's suffix).
    """

    def __init__(self, path: str, buffer_rows: int,
                 skip: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.reader = TableReader(path)
        self.buffer_rows, self.skip = max(MIN_BUFFER, buffer_rows), skip
        self.buffer = self.reader.read(0)
        self.last: Optional[np.ndarray] = None     # the row of the last group (``for_groups``)

    def take(self, keys: np.ndarray) -> np.ndarray:
        """The table's next rows, one for each row of ``keys`` (checked to be theirs at
        both ends: rows and keys are sorted and unique, so a row missing from either, or
        extra, shifts the last ones apart; a check of every key took 2% of the time of
        train-ngram)."""
        parts, needed = [], keys.shape[0]
        while needed:
            if not self.buffer.size:
                if not self.reader.remaining:
                    raise RuntimeError(f"{self.reader.path} ends before the rows it should "
                                       "hold")
                chunk = self.reader.read(max(self.buffer_rows, needed))
                self.buffer = select(chunk, ~self.skip(chunk)) if self.skip else chunk
                continue
            parts.append(self.buffer[:needed])
            self.buffer = self.buffer[needed:]
            needed -= parts[-1].size
        rows = concat(parts) if parts else self.buffer[:0]
        if rows.size and not (np.array_equal(rows["key"][0], keys[0])
                              and np.array_equal(rows["key"][-1], keys[-1])):
            raise RuntimeError(f"{self.reader.path} is out of step with the rows read beside it")
        return rows

    def for_groups(self, keys: np.ndarray) -> np.ndarray:
        """For sorted ``keys`` with repeats, whose distinct keys are the table's next rows
        (the first one may be the last of the previous call's): each key's row."""
        if keys.shape[0] == 0:
            return self.buffer[:0]
        starts = packed.row_starts(keys)
        continued = self.last is not None and np.array_equal(keys[0], self.last["key"])
        starts[0] = not continued
        new = self.take(keys[starts])
        rows = concat([self.last[None], new]) if continued else new
        self.last = rows[-1].copy()
        return gather(rows, np.cumsum(starts) - (0 if continued else 1))

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "AlignedReader":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
