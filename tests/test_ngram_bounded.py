"""Bounded-memory training: packed n-grams, sorted runs and their merge, counting in
blocks, and the whole model. Each is checked against the in-memory path or a plain
Python reference, with memory budgets small enough to force many runs and several merge
passes: the model file and the ARPA file are the same, byte for byte."""
import bisect
import errno
import io
import os
import tempfile
import threading
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm_cli.errors import TrainingError
from rnnlm_cli.modelfile import write_model
from rnnlm_cli.ngram import blockcount, packed
from rnnlm_cli.ngram.arpa import write_arpa
from rnnlm_cli.ngram.blockcount import BlockCounter, count_orders
from rnnlm_cli.ngram.counting import count_ngrams, padded_sequence
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.runs import (AlignedReader, RunSorter, concat, gather, make_records, merge_runs,
                                  sort_records, write_run)
from rnnlm_cli.ngram.scratch import Scratch, read_table, settle
from rnnlm_cli.ngram.smoothing import METHODS
from rnnlm_cli.ngram.training import NgramConfig, train_ngram, train_ngram_bounded
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig
from rnnlm_cli.vocab import Vocabulary


# -- packed n-grams ---------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [5, 300, 70_000, 2**21 + 1])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_packed_keys_sort_and_search_as_tuples_of_ids(vocab_size, n):
    rng = np.random.default_rng(n)
    packing = packed.Packing(n, vocab_size)
    ids = rng.integers(0, vocab_size, (400, n))
    ids[:50] = ids[50:100]                                # repeats
    keys = packing.pack(ids)
    np.testing.assert_array_equal(packing.unpack(keys), ids)
    ordered = keys[packed.lex_order(keys)]
    np.testing.assert_array_equal(packed.sort_rows(keys), ordered)
    np.testing.assert_array_equal(packed.sort_rows(keys, packing), ordered)   # (as complex)
    tuples = sorted(map(tuple, ids.tolist()))
    assert list(map(tuple, packing.unpack(ordered).tolist())) == tuples
    assert packed.row_starts(ordered).sum() == len(set(tuples))
    rotated = [t[1:] + t[:1] for t in map(tuple, ids.tolist())]      # (w_2 .. w_n, w_1)
    assert list(map(tuple, packing.unpack(packing.rotate(keys)).tolist())) == rotated
    np.testing.assert_array_equal(packing.rotate(packing.rotate(keys), left=False), keys)
    unique = np.unique(ids, axis=0)              # rotated in lexicographic order: the suffix order
    rotated = packing.rotate(packing.pack(unique))
    np.testing.assert_array_equal(packed.suffix_order(packing)(rotated),
                                  packed.lex_order(rotated))
    if n > 1:                                                     # (w_1 .. w_{n-1})
        shorter = packed.Packing(n - 1, vocab_size)
        np.testing.assert_array_equal(packing.drop_last(keys), shorter.pack(ids[:, :-1]))
    queries = rng.integers(0, vocab_size, (300, n))
    queries[:100] = ids[:100]
    expected = [bisect.bisect_left(tuples, tuple(q)) for q in queries.tolist()]
    assert packed.searchsorted(ordered, packing.pack(queries)).tolist() == expected
    for q in queries[:30]:
        assert packed.count_at_most(ordered, packing.pack(q[None])[0]) == \
            bisect.bisect_right(tuples, tuple(q))


@pytest.mark.parametrize("vocab_size", [5, 300, 70_000, 2**21 + 1])
@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_sorted_runs_end_to_end_merge_in_lexicographic_order(vocab_size, n):
    """``merge_order`` (one timsort of whole rows, as byte strings when they are several
    words) orders runs laid end to end as ``lex_order`` does, ties kept in place."""
    rng = np.random.default_rng(vocab_size + n)
    packing = packed.Packing(n, vocab_size)
    ids = rng.integers(0, min(vocab_size, 7), (600, n))       # many equal keys
    ids[::3] = rng.integers(0, vocab_size, (200, n))
    keys = packing.pack(ids)
    runs = np.concatenate([part[packed.lex_order(part)] for part in np.array_split(keys, 7)])
    np.testing.assert_array_equal(packed.merge_order(runs), packed.lex_order(runs))
    np.testing.assert_array_equal(packed.first_ids(keys, packing), ids[:, 0])


@pytest.fixture
def two_threads(monkeypatch):
    """Sorts cut even small tables into groups, sorted on two threads."""
    monkeypatch.setenv("RNNLM_NUM_THREADS", "2")
    monkeypatch.setattr("rnnlm_cli.parallel.MIN_PART", 4)


def test_first_word_groups_cut_between_ranges_of_first_words():
    rng = np.random.default_rng(5)
    words = np.concatenate([rng.integers(0, 50, 3000), np.full(2000, 7)]).astype(np.uint64)
    labels, ends = packed.first_word_groups(words, 4)
    groups = [np.flatnonzero(labels == i) for i in packed.nonempty(ends)]
    assert 2 <= len(groups) <= 4
    assert [g.size for g in groups] == np.diff(ends)[np.diff(ends) > 0].tolist()
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(words.size))
    for group in groups:
        assert np.all(np.diff(group) > 0)                 # each group's rows in order
    for before, after in zip(groups, groups[1:]):
        assert words[before].max() < words[after].min()   # equal words share a group
    _, ends = packed.first_word_groups(np.full(500, 3, dtype=np.uint64), 4)
    assert len(packed.nonempty(ends)) == 1
    labels, ends = packed.first_word_groups(np.arange(100_000, dtype=np.uint64), 255)
    assert len(packed.nonempty(ends)) == 255 and labels.max() == 254


def test_no_more_groups_than_a_byte_labels(monkeypatch):
    monkeypatch.setenv("RNNLM_NUM_THREADS", "1000")
    monkeypatch.setattr("rnnlm_cli.parallel.usable_cores", lambda: 250)
    assert packed.group_count(10**9) == 255


@pytest.mark.parametrize("vocab_size", [5, 300, 70_000, 2**21 + 1])
@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_sorting_in_groups_on_two_threads_is_sorting_the_whole(vocab_size, n, two_threads,
                                                               monkeypatch):
    """``sort_rows`` and ``in_groups`` of an order cut a large table into groups by first
    word and sort them on two threads: the same rows, the same order (so the same sums)
    as one sort of the whole, with each of the orders the estimate sorts with."""
    rng = np.random.default_rng(vocab_size * n)
    packing = packed.Packing(n, vocab_size)
    ids = rng.integers(0, min(vocab_size, 9), (3000, n))
    ids[::3] = rng.integers(0, vocab_size, (1000, n))
    keys = packing.pack(ids)
    records = np.zeros(keys.shape[0], dtype=packed.dtype_of(packing, count=np.int64))
    records["key"], records["count"] = keys, rng.integers(1, 5, keys.shape[0])
    runs = np.concatenate([sort_records(part) for part in np.array_split(records, 5)])
    unique = sort_records(records, "count")
    rotated = unique.copy()                          # (w_2 .. w_n, w_1), in lexicographic order
    rotated["key"] = packing.rotate(unique["key"])
    grouped = []
    real_groups = packed.first_word_groups
    monkeypatch.setattr(packed, "first_word_groups",
                        lambda *a: grouped.append(real_groups(*a)) or grouped[-1])
    cases = [(records, packed.lex_order), (runs, packed.merge_order)]
    if n > 1:
        cases.append((rotated, packed.suffix_order(packing)))
    for table, order in cases:
        grouped.clear()
        got = packed.in_groups(order)(table["key"])
        assert len(grouped) == 1 and len(packed.nonempty(grouped[0][1])) > 1  # in groups
        np.testing.assert_array_equal(got, order(table["key"]))
        np.testing.assert_array_equal(got, packed.lex_order(table["key"]))
    grouped.clear()
    np.testing.assert_array_equal(packed.sort_rows(keys), keys[packed.lex_order(keys)])
    assert len(grouped) == 1
    grouped.clear()
    np.testing.assert_array_equal(packed.sort_rows(keys, packing), keys[packed.lex_order(keys)])
    assert len(grouped) == 1
    monkeypatch.setenv("RNNLM_NUM_THREADS", "1")           # one sort, in place, as well
    np.testing.assert_array_equal(packed.sort_rows(keys), keys[packed.lex_order(keys)])
    assert len(grouped) == 1


def test_a_word_holds_as_many_ids_as_fit():
    assert packed.Packing(5, 2**16).words == 2        # 16 bits: four ids a word
    assert packed.Packing(4, 2**16).words == 1
    assert packed.Packing(5, 2**16 + 1).words == 2    # 17 bits: three a word
    assert packed.Packing(3, 101_778).words == 1


# -- runs and their merge ---------------------------------------------------------------------

def count_records(keys):
    packing = packed.Packing(1, 1000)
    records = np.zeros(len(keys), dtype=packed.dtype_of(packing, count=np.int64))
    records["key"][:, 0] = keys
    records["count"] = 1
    return records


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(0, 999), max_size=2000),
       buffer_rows=st.integers(1, 300), memory_rows=st.integers(1, 2000))
def test_sorting_in_runs_gives_each_key_once_with_its_total(values, buffer_rows,
                                                            memory_rows):
    with Scratch() as scratch:
        sorter = RunSorter(scratch, "t", count_records([]).dtype, buffer_rows, "count")
        for start in range(0, len(values), 97):
            sorter.add(count_records(values[start:start + 97]))
        table = read_table(sorter.finish(memory_rows))
        settle()                                # (runs are deleted behind)
        assert os.listdir(scratch.folder) == [os.path.basename(sorter.runs[0])] or \
            len(os.listdir(scratch.folder)) == 1          # merged runs are deleted
    expected = sorted(Counter(values).items())
    assert list(zip(table["key"][:, 0].tolist(), table["count"].tolist())) == expected


@pytest.mark.parametrize("n", [1, 5])
def test_records_are_copied_as_numpy_copies_them(n):
    """gather, concat and make_records copy records as opaque rows of bytes: the same
    records as NumPy's own take, concatenate and field assignments, keys of one or two
    words."""
    rng = np.random.default_rng(n)
    packing = packed.Packing(n, 70000)
    dtype = packed.dtype_of(packing, count=np.int64, value=np.float64)
    keys = rng.integers(0, 2 ** 62, size=(500, packing.words), dtype=np.uint64)
    counts, values = rng.integers(0, 9, size=500), rng.random(500)
    records = make_records(dtype, keys, count=counts, value=values)
    expected = np.zeros(500, dtype=dtype)
    expected["key"], expected["count"], expected["value"] = keys, counts, values
    assert records.tobytes() == expected.tobytes()
    index = rng.integers(0, 500, size=800)
    assert gather(records, index).tobytes() == np.take(expected, index).tobytes()
    assert gather(records[::3], index[:100] // 3).tobytes() == \
        np.take(expected[::3], index[:100] // 3).tobytes()          # not contiguous
    parts = [records[:10], records[10:10], records[200:], records[10:200]]
    assert concat(parts).tobytes() == np.concatenate(parts).tobytes()
    assert concat(parts).dtype == dtype
    with pytest.raises(TypeError):
        concat([records, records.astype(packed.dtype_of(packing, count=np.int64,
                                                       value=np.int64))])


@pytest.mark.parametrize("missing", [0, 5, 8])
def test_an_aligned_table_out_of_step_with_its_stream_is_an_error(missing):
    """``AlignedReader.take`` gives a table's rows for a stream of the same keys, and
    stops at a row missing from the table or from the stream (first, middle, next to
    last)."""
    records = count_records(range(10, 20))
    with Scratch() as scratch:
        short = write_run(scratch, "t", np.delete(records, missing))
        whole = write_run(scratch, "t", records)
        with AlignedReader(short, 4) as table:
            assert table.take(records["key"][:missing]).tolist() == \
                records[:missing].tolist()
            with pytest.raises(RuntimeError, match="out of step|ends before"):
                table.take(records["key"][missing:])
        with AlignedReader(whole, 4) as table:
            with pytest.raises(RuntimeError, match="out of step"):
                table.take(np.delete(records, missing)["key"])
        with AlignedReader(whole, 4) as table:
            assert table.take(records["key"]).tolist() == records.tolist()


def test_many_runs_merge_in_several_passes():
    rng = np.random.default_rng(3)
    with Scratch() as scratch:
        runs, everything = [], []
        for _ in range(40):
            keys = np.unique(rng.integers(0, 5000, 300))
            everything.extend(keys.tolist())
            records = count_records(keys)
            records["count"] = keys % 7 + 1
            runs.append(write_run(scratch, "run", records))
        read = []
        # 600 records in memory: 2 runs at once, so 6 passes over 40 runs: 39 merges.
        table = read_table(merge_runs(scratch, runs, "merged", 600, "count", read.append))
        settle()
        assert len(os.listdir(scratch.folder)) == 1
        assert scratch.files_made == 40 + 39
    totals = Counter()
    for key in everything:
        totals[key] += key % 7 + 1
    assert table["key"][:, 0].tolist() == sorted(totals)
    assert table["count"].tolist() == [totals[k] for k in sorted(totals)]
    assert sum(read) == len(everything) * 16              # the first pass, told as it reads


# -- counting in blocks -----------------------------------------------------------------------

def count_in_blocks(ids, lengths, order, vocab_size, block, memory, threads=1):
    sequence, _ = padded_sequence(ids, lengths, 1, 2, dtype=np.int32)
    with Scratch() as scratch:
        counter = BlockCounter(scratch, order, vocab_size, bos=1, eos=2)
        counter.add_all(lambda rows: (sequence[start:start + block]
                                      for start in range(0, sequence.size, block)),
                        memory, threads)
        tables = counter.finish(memory)
        grams = [tables.unigrams] + [read_table(p) for p in tables.tables[1:]]
    return tables, grams


def as_trie(grams, order, vocab_size):
    """The count tables' packed n-grams as ``count_ngrams``'s trie keys."""
    keys, previous = [np.arange(vocab_size, dtype=np.uint64)], np.arange(vocab_size)[:, None]
    for n in range(2, order + 1):
        ids = packed.Packing(n, vocab_size).unpack(grams[n - 1]["key"])
        lower = packed.Packing(n - 1, vocab_size)
        rows = packed.searchsorted(lower.pack(previous), lower.pack(ids[:, :-1]))
        keys.append(rows.astype(np.uint64) * np.uint64(vocab_size) + ids[:, -1].astype(np.uint64))
        previous = ids
    return keys


def assert_counts_equal(ids, lengths, order, vocab_size, block, memory, threads=1):
    expected = count_ngrams(ids, lengths, order, vocab_size, 1, 2)
    tables, grams = count_in_blocks(ids, lengths, order, vocab_size, block, memory, threads)
    np.testing.assert_array_equal(grams[0], expected.counts[0])
    for n, keys in enumerate(as_trie(grams, order, vocab_size)[1:], 2):
        np.testing.assert_array_equal(keys, expected.keys[n - 1])
        np.testing.assert_array_equal(grams[n - 1]["count"], expected.counts[n - 1])
    return tables


@pytest.mark.parametrize("order", [2, 3, 5, 8])
def test_lower_orders_summed_from_the_top_order_are_counted_as_themselves(order):
    """``count_orders`` sorts the top order only, and sums each order below from the one
    above by prefix, with the n-grams ending in ``</s>`` merged in: over a whole padded
    sequence (every anchor in it), each order's run is its own count."""
    rng = np.random.default_rng(order)
    lengths = rng.integers(0, 9, 300)
    ids = rng.zipf(1.3, lengths.sum()) % 40 + 3
    sequence, offsets = padded_sequence(ids, lengths, 1, 2, dtype=np.int32)
    runs = list(count_orders(sequence, offsets, 0, order, 43, eos=2))
    assert [n for n, _ in runs] == list(range(order, 1, -1))       # top order first
    for n, run in runs:
        expected = blockcount.count_records(sequence, offsets, 0, n, 43)
        np.testing.assert_array_equal(run["key"], expected["key"])
        np.testing.assert_array_equal(run["count"], expected["count"])
    assert list(count_orders(sequence, offsets, 0, 1, 43, eos=2)) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_counts_in_many_small_blocks_equal_the_in_memory_counts(threads, monkeypatch):
    """Blocks counted in turn, or on two or three threads at once: the same counts."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 15, 400)
    ids = rng.zipf(1.3, lengths.sum()) % 500 + 3            # 500 words, Zipf-like
    counted_on, together = [], threading.Barrier(threads, timeout=10)
    real = blockcount.count_orders
    def count_orders(*args):
        counted_on.append(threading.current_thread())
        if len(counted_on) <= threads:
            together.wait()                   # the first blocks are counted at once
        yield from real(*args)
    monkeypatch.setattr(blockcount, "count_orders", count_orders)
    tables = assert_counts_equal(ids, lengths, 5, 503, block=61, memory=4000,
                                 threads=threads)
    assert tables.runs == 4 * -(-(lengths.sum() + 800) // 61)   # a run per order per block
    assert len(set(counted_on)) == threads
    assert (threading.main_thread() in counted_on) == (threads == 1)


def test_an_error_counting_one_block_is_raised_and_the_blocks_after_are_not_counted(
        monkeypatch):
    sequence = np.tile(np.array([1, 3, 4, 5, 2], dtype=np.int32), 400)
    calls = []
    real = blockcount.count_orders
    def count_orders(*args):
        calls.append(threading.current_thread())
        if len(calls) == 3:
            raise TrainingError("block 3 failed")
        yield from real(*args)
    monkeypatch.setattr(blockcount, "count_orders", count_orders)
    before = {t for t in threading.enumerate() if t.name != "rnnlm-write-behind"}
    with Scratch() as scratch:
        counter = BlockCounter(scratch, 3, 6, bos=1, eos=2)
        blocks = (sequence[start:start + 20] for start in range(0, sequence.size, 20))
        with pytest.raises(TrainingError, match="block 3 failed"):
            counter.add_all(lambda rows: blocks, 4000, threads=2)
    assert {t for t in threading.enumerate() if t.name != "rnnlm-write-behind"} == before
    assert len(calls) <= 5 and next(blocks, None) is not None     # of 100 blocks


def test_a_sentence_longer_than_a_block_is_counted_whole():
    ids = np.array([3, 4, 3, 4, 3, 4, 3, 3, 3, 3, 5, 4] * 5)
    assert_counts_equal(ids, np.array([ids.size]), 4, 6, block=3, memory=1000)


@settings(max_examples=60, deadline=None)
@given(sentences=st.lists(st.lists(st.integers(3, 9), max_size=8), min_size=1, max_size=12),
       order=st.integers(1, 6), block=st.integers(1, 20))
def test_counting_in_blocks_agrees_on_random_tiny_corpora(sentences, order, block):
    ids = np.array([w for s in sentences for w in s], dtype=np.int64)
    lengths = np.array([len(s) for s in sentences])
    assert_counts_equal(ids, lengths, order, 10, block, memory=500)


def test_the_scratch_folder_goes_away_after_an_error():
    with pytest.raises(KeyboardInterrupt):
        with Scratch() as scratch:
            write_run(scratch, "run", count_records([1, 2]))
            folder = scratch.folder
            raise KeyboardInterrupt
    assert not os.path.exists(folder)


def test_a_scratch_folder_removed_during_training_is_one_error(monkeypatch, tmp_path):
    """Something (a cleaner of /tmp) deletes the folder between the counting and the
    merges: the table that cannot be read is named in one TrainingError, not an OSError."""
    import shutil
    real = blockcount.merge_runs

    def merge(scratch, *args):
        settle()                                   # (the runs' writes are done)
        shutil.rmtree(scratch.folder, ignore_errors=True)   # (on both merging threads)
        return real(scratch, *args)
    monkeypatch.setattr(blockcount, "merge_runs", merge)
    with pytest.raises(TrainingError) as caught:
        train_both(zipf_corpus(4, 2500, 400), NgramConfig(4, "kneser-ney"), memory=20_000)
    assert str(caught.value).startswith(f"{tempfile.gettempdir()}: a temporary file is gone "
                                        "(No such file or directory: 0")
    assert str(caught.value).endswith("); was the folder cleaned up during the run?")

    with pytest.raises(FileNotFoundError):         # a file of the caller's own: as it was
        with Scratch(str(tmp_path)) as scratch:
            write_run(scratch, "run", count_records([1, 2]))
            open(tmp_path / "elsewhere" / "x")


def test_tables_are_written_and_removed_behind_in_order(monkeypatch):
    """Chunks appended are written by another thread, at most LIMIT bytes waiting; a
    table closed is whole, a table removed goes once its writes are done, and a write
    that failed behind is raised by the next append or the close."""
    from rnnlm_cli.ngram import scratch as scratch_module
    monkeypatch.setattr(scratch_module._WriteBehind, "LIMIT", 1000)
    waiting = []
    real_write = scratch_module.write_bytes

    def slow_write(file, data):
        waiting.append(scratch_module._BEHIND.pending_bytes)
        time.sleep(0.001)
        real_write(file, data)
    monkeypatch.setattr(scratch_module, "write_bytes", slow_write)
    chunks = [count_records(range(i, i + 7)) for i in range(0, 700, 7)]   # 168 bytes each
    with Scratch() as scratch:
        with scratch.writer("t", chunks[0].dtype) as out:
            for chunk in chunks:
                out.append(chunk)
        assert read_table(out.path).tobytes() == np.concatenate(chunks).tobytes()
        assert max(waiting) <= 1000 + 168 and max(waiting) > 168     # behind, and bounded
        scratch_module.remove(out.path)
        scratch_module.settle()
        assert not os.path.exists(out.path)

        def refused(path):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        crashed = []
        monkeypatch.setattr(threading, "excepthook", crashed.append)
        monkeypatch.setattr(scratch_module.os, "unlink", refused)
        scratch_module.remove(write_run(scratch, "kept", chunks[0]))  # left to the folder's
        scratch_module.settle()                                         # removal: no error
        assert crashed == []
        monkeypatch.undo()
        assert read_table(write_run(scratch, "after", chunks[1])).tobytes() == \
            chunks[1].tobytes()                         # the thread writes on

        def full(file, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(scratch_module, "write_bytes", full)
        with pytest.raises(TrainingError, match="No space left on device"):
            with scratch.writer("u", chunks[0].dtype) as out:
                for chunk in chunks:
                    out.append(chunk)


# -- the whole model, bounded and in memory ---------------------------------------------------

def zipf_corpus(seed, sentences, words):
    """Sentences of Zipf-distributed words (``w0`` the most frequent), with the odd literal
    ``<unk>`` and ``<s>`` (dropped from the text, as KenLM does)."""
    rng = np.random.default_rng(seed)
    lines = []
    for length in rng.integers(0, 14, sentences):
        tokens = [f"w{i}" for i in (rng.zipf(1.2, length) - 1) % words]
        if length and rng.random() < 0.05:
            tokens[rng.integers(length)] = rng.choice(["<unk>", "<s>"])
        lines.append(" ".join(tokens))
    return lines


def train_both(lines, config, memory, block_lines=37, vocab=None):
    """``(npz bytes, ARPA bytes, arrays)`` of the model trained in memory and bounded, and
    the number of scratch files the bounded one made."""
    tokenizer = Tokenizer(TokenizerConfig("whitespace"))
    settings = tokenizer.config.to_dict()
    model = train_ngram(tokenizer.tokenize_lines(lines), config, "corpus", settings,
                        vocab=vocab)
    expected = written(model)

    def blocks(size):
        for start in range(0, len(lines), block_lines):
            part = lines[start:start + block_lines]
            yield tokenizer.tokenize_lines(part), sum(len(line) + 1 for line in part)
    with Scratch() as scratch:
        bounded = train_ngram_bounded(blocks, config, "corpus", settings, memory, scratch,
                                      vocab=vocab)
        got = written(bounded)
        final = [] if isinstance(bounded, NgramModel) else [  # (in memory: a small corpus)
            os.path.basename(path) for paths in (bounded.tables.ids, bounded.tables.keys,
                                                 bounded.tables.children,
                                                 bounded.tables.logprob, bounded.tables.backoff)
            for path in paths if path]
        assert sorted(os.listdir(scratch.folder)) == sorted(final)   # nothing else left
    return expected, got, scratch.files_made


def written(model):
    npz, arpa = io.BytesIO(), io.BytesIO()
    write_model(npz, model.to_arrays(), model.metadata)
    write_arpa(model, arpa)
    npz.seek(0)
    with np.load(npz) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return npz.getvalue(), arpa.getvalue(), arrays


def assert_same_model(expected, got):
    npz, arpa, arrays = expected
    assert sorted(got[2]) == sorted(arrays)
    for name, array in arrays.items():            # the first array that differs, by name
        np.testing.assert_array_equal(got[2][name], array, err_msg=name)
        assert got[2][name].dtype == array.dtype, name
    assert got[1] == arpa
    assert got[0] == npz


@pytest.mark.parametrize("order, smoothing, prune", [
    (1, "kneser-ney", []), (3, "kneser-ney", []), (4, "kneser-ney", [0, 1, 2]),
    (8, "kneser-ney", [1]),                       # 8 ids of 9 bits: two uint64 a key
    (4, "witten-bell", []), (4, "add-k", []), (4, "mle", [])])
def test_a_model_trained_in_a_small_memory_is_the_in_memory_model(order, smoothing, prune):
    lines = zipf_corpus(order, 2500, 400)
    config = NgramConfig(order, smoothing, 0.25, prune)
    expected, got, files = train_both(lines, config, memory=20_000)
    assert_same_model(expected, got)
    assert files > 20 * (order - 1)               # many runs spilled and merged


@pytest.mark.parametrize("threads", ["1", "2"])
def test_final_tables_made_behind_or_in_turn_give_the_in_memory_model(threads, monkeypatch):
    """Order n's final tables are made in a thread of their own while the orders above
    are estimated (two threads), or in turn (one): the same model."""
    monkeypatch.setenv("RNNLM_NUM_THREADS", threads)
    made_on = []
    from rnnlm_cli.ngram.streamed import _Estimator
    real = _Estimator._finish_order
    def finish_order(self, *args):
        made_on.append(threading.current_thread() is threading.main_thread())
        return real(self, *args)
    monkeypatch.setattr(_Estimator, "_finish_order", finish_order)
    expected, got, _ = train_both(zipf_corpus(7, 2500, 400), NgramConfig(5, "kneser-ney"),
                                  memory=20_000)
    assert_same_model(expected, got)
    assert made_on == [threads == "1"] * 4


@pytest.mark.parametrize("threads", ["1", "2"])
def test_count_tables_merged_on_two_threads_or_one_give_the_in_memory_model(threads,
                                                                           monkeypatch):
    """Each order's runs are merged into its count table, the orders on two threads at
    once (the largest first) or in turn on one: the same model."""
    monkeypatch.setenv("RNNLM_NUM_THREADS", threads)
    merged = []
    real = blockcount.merge_runs
    def merge(scratch, runs, name, *args):
        merged.append((name, threading.current_thread() is threading.main_thread()))
        return real(scratch, runs, name, *args)
    monkeypatch.setattr(blockcount, "merge_runs", merge)
    expected, got, _ = train_both(zipf_corpus(7, 2500, 400), NgramConfig(5, "kneser-ney"),
                                  memory=20_000)
    assert_same_model(expected, got)
    assert sorted(name for name, _ in merged) == [f"counts-{n}" for n in range(2, 6)]
    assert merged[0][0] in ("counts-5", "counts-4")        # (two started at once)
    assert [on_main for _, on_main in merged] == [threads == "1"] * 4


def test_an_error_in_one_merge_of_counts_stops_the_others_and_is_raised(two_threads,
                                                                      monkeypatch):
    """Order 4's merge fails while order 5's is under way: the error is raised at once,
    order 5's merge gives up at its next round, as does a merge of a lower order begun
    meanwhile, and no thread is left."""
    real = blockcount.merge_runs
    began, rounds = [], []
    order_5_going = threading.Event()
    def merge(scratch, runs, name, rows, field, told):
        began.append(name)
        if name == "counts-4":
            assert order_5_going.wait(10)
            raise TrainingError("no room left for counts-4")
        def tell(size):
            rounds.append(name)
            order_5_going.set()
            time.sleep(0.01)
            told(size)
        return real(scratch, runs, name, 64, field, tell)    # (64 rows: many rounds)
    monkeypatch.setattr(blockcount, "merge_runs", merge)
    before = {t for t in threading.enumerate() if t.name != "rnnlm-write-behind"}
    with pytest.raises(TrainingError, match="no room left for counts-4"):
        train_both(zipf_corpus(7, 2500, 400), NgramConfig(5, "kneser-ney"), memory=20_000)
    assert {t for t in threading.enumerate() if t.name != "rnnlm-write-behind"} == before
    assert began[:2] in (["counts-5", "counts-4"], ["counts-4", "counts-5"])
    assert 0 < rounds.count("counts-5") < 50     # order 5 stopped early (of 111 rounds)
    for name in began[2:]:     # (taken by the thread order 4's failure freed, at once)
        assert rounds.count(name) <= 1


@pytest.mark.parametrize("failing", ["_finish_order", "_normalize"])
def test_an_error_on_either_thread_of_the_estimate_is_raised_and_no_thread_left(
        failing, two_threads, monkeypatch):
    """The final tables of order n are made in a thread of their own while the main
    thread estimates the orders above: an error in either is the one raised, and the
    other thread is stopped, not left running."""
    from rnnlm_cli.ngram.streamed import _Estimator
    real = getattr(_Estimator, failing)
    threads = []

    def fail_at_order_3(self, n, *args):
        threads.append(threading.current_thread())
        if n == 3:
            raise TrainingError(f"{failing} failed")
        return real(self, n, *args)
    monkeypatch.setattr(_Estimator, failing, fail_at_order_3)
    def others():                   # (the thread that writes tables stays, on purpose)
        return {t for t in threading.enumerate() if t.name != "rnnlm-write-behind"}
    before = others()
    with pytest.raises(TrainingError, match=f"{failing} failed"):
        train_both(zipf_corpus(3, 2500, 400), NgramConfig(5, "kneser-ney"), memory=20_000)
    assert others() == before
    on_main = [t is threading.main_thread() for t in threads]
    assert all(on_main) if failing == "_normalize" else not any(on_main)


def test_without_an_arpa_file_the_ids_are_not_kept_and_the_model_is_the_same():
    lines = zipf_corpus(5, 2500, 400)
    config = NgramConfig(4, "kneser-ney")
    tokenizer = Tokenizer(TokenizerConfig("whitespace"))
    settings = tokenizer.config.to_dict()
    expected = written(train_ngram(tokenizer.tokenize_lines(lines), config, "corpus",
                                   settings))

    def blocks(size):
        yield tokenizer.tokenize_lines(lines), sum(len(line) + 1 for line in lines)
    with Scratch() as scratch:
        bounded = train_ngram_bounded(blocks, config, "corpus", settings, 20_000, scratch,
                                      arpa=False)
        assert bounded.tables.ids == [None] * 4
        assert not [name for name in os.listdir(scratch.folder) if "-ids-" in name]
        npz = io.BytesIO()
        write_model(npz, bounded.to_arrays(), bounded.metadata)
        assert npz.getvalue() == expected[0]
        with pytest.raises(ValueError, match="without the n-grams' ids"):
            write_arpa(bounded, io.BytesIO())


@pytest.mark.parametrize("memory", [20_000, 400_000])
def test_lower_values_put_in_place_in_slices_give_the_in_memory_model(memory, monkeypatch):
    """``_lower`` scatters each n-gram's lower value to its row, a slice of rows a pass
    over the suffix order: several passes (a small memory) or one, the same model."""
    from rnnlm_cli.ngram.streamed import _Estimator
    starts = {}
    real_place = _Estimator._place_lower
    def place(self, n, rotated, values_below, start, held):
        starts.setdefault(n, []).append((start, held.size))
        return real_place(self, n, rotated, values_below, start, held)
    monkeypatch.setattr(_Estimator, "_place_lower", place)
    lines = zipf_corpus(11, 2500, 400)
    expected, got, _ = train_both(lines, NgramConfig(4, "kneser-ney"), memory=memory)
    assert_same_model(expected, got)
    rows = {n: got[2][f"logprob_{n}"].size for n in (3, 4)}     # (no pruning: every n-gram)
    for n in (3, 4):                    # slices end to end, covering the rows once
        assert [start for start, _ in starts[n]] == list(range(0, rows[n], memory // 16))
        assert sum(size for _, size in starts[n]) == rows[n]
    assert len(starts[4]) == (1 if memory == 400_000 else -(-rows[4] // 1250)) > 0
    assert memory == 400_000 or len(starts[4]) > 3


@pytest.mark.parametrize("order, smoothing", [(5, "kneser-ney"), (4, "witten-bell"),
                                             (8, "kneser-ney")])
def test_sorting_on_two_threads_gives_the_in_memory_model_too(order, smoothing,
                                                              two_threads, monkeypatch):
    lines = zipf_corpus(order, 2500, 400)
    groups = []
    real_groups = packed.first_word_groups
    monkeypatch.setattr(packed, "first_word_groups",
                        lambda *a: groups.append(real_groups(*a)) or groups[-1])
    expected, got, _ = train_both(lines, NgramConfig(order, smoothing), memory=20_000)
    assert_same_model(expected, got)
    assert sum(len(packed.nonempty(g[1])) > 1 for g in groups) > 20   # many in groups


def test_a_fixed_vocabulary_gives_the_same_model_too():
    """``--vocab-from``: words of the corpus outside it are <unk>; its words absent from
    the corpus keep their ids, with no n-grams."""
    lines = zipf_corpus(9, 2000, 300)
    vocab = Vocabulary(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(0, 400, 2)])
    config = NgramConfig(4, vocab_from="other.npz")
    expected, got, files = train_both(lines, config, memory=20_000, vocab=vocab)
    assert_same_model(expected, got)
    assert files > 60


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "<unk>", "<s>"]),
                               max_size=7).map(" ".join), min_size=1, max_size=30),
       order=st.integers(1, 6), smoothing=st.sampled_from(METHODS),
       prune=st.sampled_from([[], [1], [0, 2]]), memory=st.integers(1, 5000),
       block_lines=st.integers(1, 9))
def test_bounded_training_agrees_on_random_tiny_corpora(lines, order, smoothing, prune,
                                                       memory, block_lines):
    if not any(set(line.split()) - {"<s>"} for line in lines):
        return                                    # no words: an error both ways
    prune = prune[:order - 1] if smoothing == "kneser-ney" else []
    config = NgramConfig(order, smoothing, 0.5, prune)
    expected, got, _ = train_both(lines, config, memory, block_lines)
    assert_same_model(expected, got)


def recorded_bars(monkeypatch) -> list:
    """Every progress bar made from now on (its ``desc``, ``total`` and the ``done`` its
    updates add up to), in the order made."""
    bars = []

    class Bar:
        def __init__(self, total=None, desc="", **options):
            self.total, self.desc, self.done = total, desc, 0
            bars.append(self)

        def update(self, size=1):
            self.done += size

        def close(self):
            pass
    monkeypatch.setattr("rnnlm_cli.progress.bar", Bar)
    return bars


def test_each_progress_bar_ends_at_its_total(monkeypatch):
    """On a terminal each stage's bar counts bytes up to the total it announced (so that
    its time left is right), the estimate's total planned before a table is read."""
    bars = recorded_bars(monkeypatch)
    lines = zipf_corpus(0, 1500, 300)
    tokenizer = Tokenizer(TokenizerConfig("whitespace"))
    text = sum(len(line) + 1 for line in lines)
    with Scratch() as scratch:
        model = train_ngram_bounded(
            lambda size: [(tokenizer.tokenize_lines(lines), text)], NgramConfig(4), "corpus",
            {}, 20_000, scratch, total_bytes=text)
        with model.writing_progress(arpa=True):
            write_model(io.BytesIO(), model.to_arrays(), model.metadata)
            write_arpa(model, io.BytesIO())
    assert [bar.desc for bar in bars] == ["reading", "counting", "merging", "estimating",
                                          "writing"]
    for bar in bars:
        assert bar.done == bar.total > 0, bar.desc
