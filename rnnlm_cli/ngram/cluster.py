"""Counting n-grams on a Dask cluster (``train-ngram --scheduler``): the count tables of
``blockcount.py``, made by the workers of a ``dask.distributed`` cluster, so that the
model is the one a single machine makes.

The client cuts the corpus files into *shards* at byte offsets (``make_shards``); a worker
reads the lines that begin in its shard (``tokenizer.read_range``) from the same path, so
the workers must see the files where the client does (a shared filesystem). Two rounds
of tasks, one task a shard:

1. *words* (``count_words``): each shard's words in order of first appearance, with their
   counts (``vocab.WordCounter``). Merged in shard order on the client, they are the
   counts of one pass over the corpus: the same vocabulary, the same ids.
2. *n-grams* (``count_ngrams``): each shard's n-grams of orders 2..N, counted
   (``blockcount.count_orders``) and cut into *parts* by ranges of their first word,
   ranges of about equal unigram mass (``part_cuts``), so parts of about equal size. For
   each order and part a task sums the shards' pieces: a partition of the key space, so
   an order's parts, one after another, are its count table, which the client writes to
   its scratch folder a part at a time.

The estimate then runs on the client, from the tables, as on one machine
(``streamed.py``). Dask moves the pieces between workers, keeps them in worker memory
(spilling to the workers' disks past their limit), and recomputes what a lost worker
held; a task that loses ``distributed.scheduler.allowed-failures`` workers fails the job,
and no model is written.
"""
from __future__ import annotations

import logging
import os
import pickle
import threading
import uuid
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from rnnlm_cli import progress
from rnnlm_cli.errors import CorpusError, OptionError, RnnlmError, TrainingError
from rnnlm_cli.ngram import packed
from rnnlm_cli.ngram.blockcount import CountTables, count_dtype, count_orders
from rnnlm_cli.ngram.counting import padded_sequence
from rnnlm_cli.ngram.runs import concat, sort_records
from rnnlm_cli.ngram.scratch import Scratch
from rnnlm_cli.ngram.shards import Shard, shard_blocks
from rnnlm_cli.vocab import Vocabulary, WordCounter

MIN_SHARD_BYTES = 1 << 16
SHARD_BYTES_PER_WORKER = 4     # shards a worker, at least, while they are not too small
# Memory of an n-gram task per byte of its shard: a position takes about 5 bytes of text
# (a word and a space) and BYTES_PER_POSITION while counted, and its counts are kept.
TASK_MEMORY_PER_BYTE = 64
MAX_PARTS = 4096


@dataclass
class CorpusWords:
    """Round 1's result: the words of the whole corpus, counted, and its size."""

    counter: WordCounter
    sentences: int = 0
    tokens: int = 0


@contextmanager
def connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address`` (with at least one
    worker), closed on leaving; what goes wrong on the way is one ``RnnlmError``."""
    try:
        import dask
        from dask.utils import parse_timedelta
        from distributed import Client
    except ImportError:
        raise OptionError("--scheduler needs Dask: pip install 'rnnlm[dask]'") from None
    _check_port(address)
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    with _dask_logs_quiet():               # the errors are ours to tell, in one line
        client = Client.__new__(Client)
        try:
            _within(parse_timedelta(timeout) + 5, client.__init__, address,
                    timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            client.status = "closed"   # else its __del__ tries to close it, and says why not
            raise TrainingError(f"cannot reach the Dask scheduler at {address}: "
                                f"{_one_line(exc)}") from None
        try:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise TrainingError(f"the Dask scheduler at {address} has no worker "
                                    f"({_one_line(exc)})") from None
            yield client
        finally:
            client.close()


def _check_port(address: str) -> None:
    """A port number that no server can have (Dask would try it for its whole connect
    timeout) is an error at once. (An address Dask cannot parse, the client's own error
    says what is wrong with.)"""
    from distributed.comm import parse_address, parse_host_port
    try:
        port = parse_host_port(parse_address(address)[1])[1]
    except (ValueError, TypeError):
        return
    if not 0 < port < 65536:
        raise TrainingError(f"cannot reach the Dask scheduler at {address}: "
                            f"{port} is not a port number (1 to 65535)")


def _within(seconds: float, func, *args, **kwargs) -> None:
    """``func(*args, **kwargs)`` in a thread of its own, given ``seconds``: Dask's client
    bounds the connection to the scheduler, not the wait for its answer, and a server
    that is not a Dask scheduler (an HTTP server on that port) never gives one."""
    failed: List[BaseException] = []

    def run() -> None:
        try:
            func(*args, **kwargs)
        except BaseException as exc:      # (raised in the caller's thread, below)
            failed.append(exc)
    thread = threading.Thread(target=run, name="rnnlm-dask-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {seconds:.0f} s: is it a Dask scheduler?")
    if failed:
        raise failed[0]


@contextmanager
def _dask_logs_quiet():
    """Dask's and Tornado's loggers (each has its own level in Dask's logging config:
    ``distributed.client`` warns of a key it reschedules, and logs a lost scheduler with
    its tracebacks) told nothing below CRITICAL, their levels put back on leaving."""
    names = ["distributed", "tornado"] + [
        name for name in logging.Logger.manager.loggerDict
        if name.startswith(("distributed.", "tornado."))]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def file_sizes(paths: Sequence[str], names: Sequence[str]) -> List[int]:
    """The sizes of the corpus files, each a regular, non-empty file (the workers read
    byte ranges of it); else a ``CorpusError``."""
    sizes = []
    for path, name in zip(paths, names):
        try:
            status = os.stat(path)
        except FileNotFoundError:
            raise CorpusError(f"{name}: no such file") from None
        except OSError as exc:
            raise CorpusError(f"{name}: {exc.strerror or exc}") from None
        if not os.path.isfile(path):
            raise CorpusError(f"{name}: not a regular file (the Dask workers read byte "
                              "ranges of the corpus files)")
        if status.st_size == 0:
            raise CorpusError(f"{name}: file is empty")
        sizes.append(status.st_size)
    return sizes


def make_shards(paths: Sequence[str], sizes: Sequence[int], shard_bytes: int) -> List[Shard]:
    """The files cut into shards of about ``shard_bytes``."""
    shards = []
    for path, size in zip(paths, sizes):
        count = max(1, -(-size // shard_bytes))
        cuts = [size * i // count for i in range(count + 1)]
        shards += [Shard(os.path.abspath(path), a, z) for a, z in zip(cuts, cuts[1:])]
    return shards


def shard_bytes(total_bytes: int, workers: int, memory: int) -> int:
    """Shards small enough for a task's ``memory``, and several a worker."""
    spread = total_bytes // (SHARD_BYTES_PER_WORKER * max(1, workers))
    return max(MIN_SHARD_BYTES, min(spread, memory // TASK_MEMORY_PER_BYTE))


def workers_and_memory(client, memory: int) -> Tuple[int, int]:
    """The cluster's worker count, and the memory a task may take: ``memory``, or less
    if a worker's limit shared among its threads is less."""
    workers = client.scheduler_info()["workers"].values()
    limits = [w["memory_limit"] // max(1, w["nthreads"]) for w in workers
              if w.get("memory_limit")]
    return len(workers), min([memory] + limits)


def count_words(client, shards: List[Shard], tokenizer: dict, encoding_errors: str,
                job: str) -> CorpusWords:
    """Round 1: the corpus's words counted, shard by shard, merged in shard order."""
    futures = [client.submit(_shard_words, shard, tokenizer, encoding_errors,
                             key=f"rnnlm-words-{job}-{i}") for i, shard in enumerate(shards)]
    corpus = CorpusWords(WordCounter())
    done: Dict[int, ShardWords] = {}
    merged = 0
    index = {future.key: i for i, future in enumerate(futures)}
    with progress.bytes_bar("counting words", sum(s.end - s.start for s in shards)) as bar:
        for future in _as_completed(client, futures):
            i = index[future.key]
            done[i] = _result(future)
            bar.update(shards[i].end - shards[i].start)
            while merged in done:           # merge in shard order, as soon as possible
                shard = done.pop(merged)
                corpus.counter.merge(shard.words, shard.counts, shard.skipped)
                corpus.sentences += shard.sentences
                corpus.tokens += shard.tokens
                futures[merged] = None
                merged += 1
    return corpus


def part_cuts(vocab: Vocabulary, sentences: int, parts: int) -> np.ndarray:
    """The first word ids at which parts 1.. begin: cuts of the ids into ``parts`` ranges
    of about equal mass, a word's mass being how often it begins an n-gram (its count;
    ``<s>``: once a sentence). Fewer parts where one word outweighs a part."""
    mass = np.asarray(vocab.counts, dtype=np.float64).copy()
    mass[vocab.bos_id] = sentences
    total = np.cumsum(mass)
    targets = total[-1] * np.arange(1, parts) / parts
    cuts = np.searchsorted(total, targets, side="right")
    return np.unique(cuts[(cuts > 0) & (cuts < len(vocab))])


def parts_for(positions: int, order: int, workers: int, memory: int) -> int:
    """How many parts: each part's sum within ``memory`` (about three copies of the
    part: the pieces, sorted, summed), and at least two a worker."""
    records_bytes = positions * (order - 1) * count_dtype(packed.Packing(2, 2)).itemsize
    return int(min(MAX_PARTS, max(2 * max(1, workers), -(-3 * records_bytes // memory))))


def count_ngrams(client, shards: List[Shard], tokenizer: dict, encoding_errors: str,
                 vocab: Vocabulary, order: int, cuts: np.ndarray, scratch: Scratch,
                 job: str) -> CountTables:
    """Round 2: every shard's n-grams counted and cut into parts, the parts summed on the
    workers and written, in key order, as each order's count table."""
    # The words go in the graph as one pickled blob (fast), and the task that indexes
    # them can be run again if a worker holding its result is lost.
    index = client.submit(WordIndex, pickle.dumps(list(vocab.words)),
                          key=f"rnnlm-vocabulary-{job}")
    shard_futures = [client.submit(_shard_ngrams, shard, tokenizer, encoding_errors, index,
                                   order, cuts, key=f"rnnlm-ngrams-{job}-{i}")
                     for i, shard in enumerate(shards)]
    parts = [[_submit_part(client, shard_futures, n, p, job) for p in range(cuts.size + 1)]
             for n in range(2, order + 1)]
    unigrams = [client.submit(_unigrams, f, key=f"rnnlm-unigrams-{job}-{i}")
                for i, f in enumerate(shard_futures)]
    del shard_futures              # (the scheduler keeps them while a task needs them)
    counts = CountTables(order, len(vocab), np.zeros(len(vocab), dtype=np.int64), [None])
    with progress.bytes_bar("counting n-grams", sum(s.end - s.start for s in shards)) as bar:
        for i, future in enumerate(unigrams):
            counts.unigrams += _result(future)
            bar.update(shards[i].end - shards[i].start)
            unigrams[i] = None
    with progress.steps_bar("merging parts", sum(map(len, parts))) as bar:
        for n, order_parts in enumerate(parts, 2):
            with scratch.writer(f"counts-{n}", count_dtype(counts.packing(n))) as table:
                for p, future in enumerate(order_parts):
                    table.append(_result(future))
                    order_parts[p] = None
                    bar.update(1)
            counts.tables.append(table.path)
    return counts


def _submit_part(client, shard_futures: list, n: int, part: int, job: str):
    """The task that sums part ``part`` of order ``n`` from every shard's piece of it (a
    small task a piece takes each piece out of its shard's result, where that is)."""
    pieces = [client.submit(_piece, shard, n, part, key=f"rnnlm-piece-{job}-{n}-{part}-{i}")
              for i, shard in enumerate(shard_futures)]
    return client.submit(_sum_pieces, *pieces, key=f"rnnlm-part-{job}-{n}-{part}")


def job_name() -> str:
    """A name for this job's tasks, unlike any other job's on a shared scheduler."""
    return uuid.uuid4().hex[:12]


# -- on the workers --------------------------------------------------------------------------

def _shard_words(shard: Shard, tokenizer: dict, encoding_errors: str) -> ShardWords:
    counter, sentences, tokens = WordCounter(), 0, 0
    for block in _shard_sentences(shard, tokenizer, encoding_errors):
        ids, lengths = counter.add(block)
        sentences += lengths.size
        tokens += ids.size
    return ShardWords(list(counter.first_seen), counter.counts, sentences, tokens,
                      counter.skipped)


class WordIndex:
    """The vocabulary's ids by word, made on a worker from its pickled word list. (Task
    results that are plain dicts, lists or tuples Dask serializes item by item: seconds
    for a vocabulary; an object of a class of its own it pickles whole.)"""

    def __init__(self, words: bytes):
        self.ids = {word: i for i, word in enumerate(pickle.loads(words))}


@dataclass
class ShardWords:
    """Round 1's result for a shard (``WordCounter``'s fields, and the shard's size)."""

    words: List[str]        # in order of first appearance
    counts: np.ndarray      # by position in ``words``
    sentences: int
    tokens: int
    skipped: int


@dataclass
class ShardNgrams:
    """Round 2's result for a shard: its unigram counts (over its padded sequence) and,
    for each order 2..N, its counted n-grams cut into parts."""

    unigrams: np.ndarray
    pieces: List[List[np.ndarray]]     # [n - 2][part]


def _shard_ngrams(shard: Shard, tokenizer: dict, encoding_errors: str, index: WordIndex,
                  order: int, cuts: np.ndarray) -> ShardNgrams:
    """The shard counted, its n-grams cut into parts at ``cuts`` (first word ids)."""
    counter, ids, lengths = WordCounter(), [], []
    for block in _shard_sentences(shard, tokenizer, encoding_errors):
        block_ids, block_lengths = counter.add(block)
        ids.append(block_ids.astype(np.int32))
        lengths.append(block_lengths)
    final = np.fromiter((index.ids.get(w, Vocabulary.unk_id) for w in counter.first_seen),
                        dtype=np.int32, count=len(counter.first_seen))
    sequence, offsets = padded_sequence(final[np.concatenate(ids)], np.concatenate(lengths),
                                        Vocabulary.bos_id, Vocabulary.eos_id, dtype=np.int32)
    del ids
    pieces = []
    runs = sorted(count_orders(sequence, offsets, 0, order, len(index.ids),
                               Vocabulary.eos_id), key=lambda pair: pair[0])
    for n, records in runs:
        starts = packed.Packing(n, len(index.ids)).pack([cuts] + [np.zeros_like(cuts)] * (n - 1))
        pieces.append(np.split(records, packed.searchsorted(records["key"], starts)))
    return ShardNgrams(np.bincount(sequence, minlength=len(index.ids)), pieces)


def _piece(shard: ShardNgrams, n: int, part: int) -> np.ndarray:
    return shard.pieces[n - 2][part]


def _unigrams(shard: ShardNgrams) -> np.ndarray:
    return shard.unigrams


def _sum_pieces(*pieces: np.ndarray) -> np.ndarray:
    """One part of a count table: the shards' pieces of it, each key once with its total."""
    return sort_records(concat(pieces), "count", packed.merge_order)


def _shard_sentences(shard: Shard, tokenizer: dict,
                     encoding_errors: str) -> Iterator[Iterator[List[str]]]:
    """The tokenized sentences of a shard, a block at a time."""
    if not os.path.isfile(shard.path):
        raise CorpusError(f"{shard.path}: not found on a Dask worker (the workers must see "
                          "the corpus files at the paths the client gives)")
    for sentences, _ in shard_blocks(shard, tokenizer, encoding_errors):
        yield sentences


# -- on the client: results and their failures -----------------------------------------------

def _as_completed(client, futures):
    from distributed import as_completed
    return as_completed(futures, loop=client.loop)


def _result(future):
    """``future.result()``; a failure of the cluster rather than of the corpus is one
    ``TrainingError`` that says what happened."""
    from distributed import KilledWorker
    try:
        return future.result()
    except RnnlmError:
        raise
    except KilledWorker as exc:
        raise TrainingError(f"the Dask job cannot finish: each worker that ran its task "
                            f"{exc.args[0]} died ({exc.args[2] + 1} workers); out of "
                            "memory? (see the workers' logs)") from None
    except ImportError as exc:
        raise TrainingError(f"the Dask workers cannot run rnnlm ({_one_line(exc)}): install "
                            "it, the same version, on every worker") from None
    except (OSError, TimeoutError) as exc:
        raise TrainingError(f"lost the Dask scheduler: {_one_line(exc)}") from None
    except CancelledError as exc:         # (the client's tasks, when it loses the scheduler)
        reason = getattr(exc, "reason", None)      # (newer Dask says why; older, not)
        why = f" ({reason})" if reason and reason != "unknown" else ""
        raise TrainingError(f"lost the Dask scheduler, or the job was cancelled on it{why}"
                            ) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
