"""The first pass of bounded-memory training (``training.train_ngram_bounded``): the
corpus read once, its words numbered in order of first appearance and counted
(``vocab.WordCounter``), and each word's *provisional id* kept: in memory while the corpus
is small enough for the in-memory path, else written to a scratch table as the padded
sequence ``<s> w.. </s> <s> ...`` (``<s>``, ``</s>`` keep their ids) for the second pass
to count.

Tokenizing and numbering are Python work a word at a time, on one core (the GIL). A large
corpus in files is read by two processes at once (``read_in_two``): this one reads the
lines that begin in the first half of the bytes, a child process those of the second
half (``shards.halves``), each numbering the words it meets and writing its own table.
The child's counter merged after this one's (``WordCounter.merge``) is the counter of one
reading, the same ids and counts; the child's table keeps its own ids, with the map to the
merged ones beside it (``Corpus.tables``), and the two tables one after the other are the
padded sequence of one reading (each ends a sentence).
"""
from __future__ import annotations

import multiprocessing
import signal
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli import progress
from rnnlm_cli.errors import TrainingError
from rnnlm_cli.ngram.counting import padded_sequence
from rnnlm_cli.ngram.scratch import Scratch, TableWriter
from rnnlm_cli.ngram.shards import Shard, halves, shard_blocks
from rnnlm_cli.vocab import Vocabulary, WordCounter

SentenceBlocks = Iterable[Tuple[Iterable[Sequence[str]], int]]


@dataclass(frozen=True)
class CorpusFiles:
    """A corpus of regular, non-empty files, which processes can read a part each; the
    tokenizer (``TokenizerConfig.to_dict()``) and the decoding of its text."""

    paths: Sequence[str]
    sizes: Sequence[int]
    tokenizer: dict
    encoding_errors: str


@dataclass
class Corpus:
    """The first pass's corpus: provisional ids and sentence lengths, block by block, in
    memory; or, once too large for the in-memory path, padded sequences on disk
    (``tables``: each table's path, and the map of its ids to the counter's, or None
    where they are the counter's own)."""

    ids: List[np.ndarray] = field(default_factory=list)
    lengths: List[np.ndarray] = field(default_factory=list)
    tables: List[Tuple[str, Optional[np.ndarray]]] = field(default_factory=list)
    sentences: int = 0
    tokens: int = 0


@dataclass
class _Half:
    """What the child process of ``read_in_two`` sends back: its ``WordCounter``'s fields,
    its part's size, and its table (None if its part has no words)."""

    words: List[str]
    counts: np.ndarray
    skipped: int
    sentences: int
    tokens: int
    table: Optional[str]


def read_once(blocks: SentenceBlocks, counter: WordCounter, scratch: Scratch, room: int,
              total_bytes: Optional[int]) -> Corpus:
    """The corpus read in this process: in memory while it has at most ``room``
    positions, else all of it in one scratch table."""
    corpus = Corpus()
    with progress.bytes_bar("reading", total_bytes) as bar:
        _read(blocks, counter, corpus, lambda: scratch.writer("corpus", np.int32), room,
              bar.update)
    return corpus


def read_in_two(files: CorpusFiles, counter: WordCounter, scratch: Scratch,
                block_bytes: int) -> Corpus:
    """The corpus read by this process and a child at once, a half each (module
    docstring), into two scratch tables; blocks of ``block_bytes`` in each."""
    first, second = halves(files.paths, files.sizes)
    context = multiprocessing.get_context("spawn")   # (fork is unsafe with threads)
    child_bytes = context.Value("q", 0, lock=False)  # read by the child so far
    receiver, sender = context.Pipe(duplex=False)
    table = scratch.path("corpus")
    child = context.Process(target=_read_half, name="rnnlm-first-pass", daemon=True,
                            args=(second, files, block_bytes, table, scratch.parent,
                                  child_bytes, sender))
    corpus = Corpus()
    with ExitStack() as stack:
        child.start()
        stack.callback(_end, child)
        sender.close()
        bar = stack.enter_context(progress.bytes_bar("reading", sum(files.sizes)))
        meter = _Meter(bar.update, child_bytes)
        _read(_blocks(first, files, block_bytes), counter, corpus,
              lambda: scratch.writer("corpus", np.int32), 0, meter.update)
        half = _receive(child, receiver, meter)
    ids = counter.merge(half.words, half.counts, half.skipped)
    if half.table is not None:
        corpus.tables.append((half.table, ids))
    corpus.sentences += half.sentences
    corpus.tokens += half.tokens
    return corpus


def _read(blocks: SentenceBlocks, counter: WordCounter, corpus: Corpus,
          new_table: Callable[[], TableWriter], room: int, update) -> None:
    """Each block's words numbered and counted, the blocks kept in ``corpus`` until it
    has more than ``room`` positions, then all written to one table (``new_table()``;
    ``update(size)`` after each block)."""
    with ExitStack() as stack:
        table = None
        for block, size in blocks:
            ids, lengths = counter.add(block)
            corpus.sentences += lengths.size
            corpus.tokens += ids.size
            corpus.ids.append(ids.astype(np.int32))
            corpus.lengths.append(lengths)
            if table is None and corpus.tokens + 2 * corpus.sentences > room:
                table = stack.enter_context(new_table())
            if table is not None:
                for part, part_lengths in zip(corpus.ids, corpus.lengths):
                    table.append(_padded(part, part_lengths))
                corpus.ids, corpus.lengths = [], []
            update(size)
        if table is not None:
            corpus.tables.append((table.close(), None))


def _blocks(shards: List[Shard], files: CorpusFiles, block_bytes: int) -> SentenceBlocks:
    return (block for shard in shards for block in
            shard_blocks(shard, files.tokenizer, files.encoding_errors, block_bytes))


def _padded(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return padded_sequence(ids, lengths, Vocabulary.bos_id, Vocabulary.eos_id,
                           dtype=np.int32)[0]


class _Meter:
    """The reading bar moved by this process's bytes and the child's."""

    def __init__(self, update, child_bytes):
        self._update, self._child_bytes, self._child_seen = update, child_bytes, 0

    def update(self, size: int = 0) -> None:
        child = self._child_bytes.value
        self._update(size + child - self._child_seen)
        self._child_seen = child


def _receive(child, receiver, meter: _Meter) -> _Half:
    """The child's half, once it is done; its error raised here."""
    while not receiver.poll(0.2):     # (a child that dies closes the pipe: poll is true)
        meter.update()
    try:
        kind, value = receiver.recv()
    except (EOFError, OSError):
        child.join()
        code = child.exitcode
        how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
        raise TrainingError(f"the process reading the second half of the corpus ended "
                            f"without a result ({how}); out of memory?") from None
    meter.update()
    if kind == "error":
        raise value
    return value


def _end(child) -> None:
    """The child ended, whatever happened here (it is not waited for on an error)."""
    if child.is_alive():
        child.terminate()
    child.join()


# -- in the child process ---------------------------------------------------------------------

def _read_half(shards: List[Shard], files: CorpusFiles, block_bytes: int, path: str,
               parent: str, done, sender) -> None:
    """The child of ``read_in_two``: the words of ``shards`` numbered and counted, their
    padded sequence written to ``path`` (``_read``, as here); sends ``("half", _Half)``
    or ``("error", exc)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's: it ends this
    try:
        counter, corpus = WordCounter(), Corpus()

        def read(size: int) -> None:
            done.value += size
        _read(_blocks(shards, files, block_bytes), counter, corpus,
              lambda: TableWriter(path, np.dtype(np.int32), Scratch(parent)), 0, read)
        table = corpus.tables[0][0] if corpus.tables else None
        message = ("half", _Half(list(counter.first_seen), counter.counts, counter.skipped,
                                 corpus.sentences, corpus.tokens, table))
    except BaseException as exc:     # (everything goes back: nothing printed here)
        message = ("error", exc)
    try:
        sender.send(message)
    except Exception:                # an error that cannot be pickled: its words
        sender.send(("error", TrainingError(f"reading the corpus: {message[1]}")))
