"""Training an n-gram model: vocabulary, counting, smoothing, in that order.

Three ways, one model. ``train_ngram`` holds the corpus and every table in memory (about
32 (order + 1) bytes a token: ``in_memory_bytes``); ``train_ngram_bounded``, what
``train-ngram`` runs, stays within a memory budget: it reads the corpus once, a block at
a time, and trains in memory if that fits; else it keeps the word ids on disk, counts
them in blocks (``blockcount.py``) and estimates from tables on disk (``streamed.py``).
``train_ngram_cluster`` has the workers of a Dask cluster count (``cluster.py``) and
estimates from the tables they make. All give the same model, bit for bit.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli import progress
from rnnlm_cli.errors import CorpusError, OptionError
from rnnlm_cli.ngram import cluster, firstpass
from rnnlm_cli.ngram.blockcount import BlockCounter, CountTables
from rnnlm_cli.ngram.counting import count_ngrams
from rnnlm_cli.ngram.firstpass import SentenceBlocks
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.scratch import Scratch, TableReader, remove, table_rows
from rnnlm_cli.ngram.smoothing import METHODS, check_estimate, estimate
from rnnlm_cli.ngram.streamed import StreamedModel, estimate_streamed
from rnnlm_cli.options import (LEAST_MEMORY, available_memory, check_choice, check_number,
                               check_vocab_source, check_whole)
from rnnlm_cli.parallel import thread_count
from rnnlm_cli.vocab import Vocabulary, WordCounter

# Memory per byte of text in the first pass: its lines, tokens and ids as Python objects.
TEXT_MEMORY_PER_BYTE = 40
SPLIT_BYTES = 64 << 20          # the first pass is shared by two processes from here
TEXT_BYTES_PER_POSITION = 8     # ... for a corpus of more bytes than the in-memory
                                #     path's positions times this


def default_memory() -> int:
    """The budget when none is given: half the memory free now (at least LEAST_MEMORY).
    Whatever it is, training works; a small one takes more runs and merges, on disk."""
    return max(LEAST_MEMORY, available_memory() // 2)

MAX_ORDER = 20


@dataclass
class NgramConfig:
    """How an n-gram model is made; saved in the model file."""

    order: int = 3
    smoothing: str = "kneser-ney"
    add_k: float = 1.0
    prune: List[int] = field(default_factory=list)   # count thresholds for orders 2, 3, ...
    min_count: int = 1
    max_vocab: Optional[int] = None
    vocab_from: Optional[str] = None   # the model file the words came from (--vocab-from)

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range."""
        check_whole("order", self.order, 1, MAX_ORDER)
        check_choice("smoothing", self.smoothing, METHODS)
        check_number("add_k", self.add_k, 0.0, low_open=True)
        if self.prune:
            if self.smoothing != "kneser-ney":
                raise OptionError("--prune works with --smoothing kneser-ney only")
            if len(self.prune) > self.order - 1:
                raise OptionError(f"--prune takes at most {self.order - 1} thresholds "
                                  f"(orders 2..{self.order}), not {len(self.prune)}")
            if any(t < 0 for t in self.prune) or list(self.prune) != sorted(self.prune):
                raise OptionError("--prune thresholds must be non-negative and non-decreasing")
        check_whole("min_count", self.min_count, 1)
        if self.max_vocab is not None:
            check_whole("max_vocab", self.max_vocab, 4, why=" (3 specials and a word)")
        if self.vocab_from is not None:
            check_vocab_source(self.min_count, self.max_vocab)


def train_ngram(sentences: Iterable[Sequence[str]], config: NgramConfig, corpus_name: str,
                tokenizer: dict, progress: Optional[Callable[[str], None]] = None,
                vocab: Optional[Vocabulary] = None) -> NgramModel:
    """Build the vocabulary of ``sentences`` (or take ``vocab``'s words, those of the
    model ``config.vocab_from``), count, smooth: the trained model."""
    config.validate()
    if (vocab is None) != (config.vocab_from is None):
        raise ValueError("give a vocabulary and the file it came from, or neither")
    counter = WordCounter()
    ids, lengths = counter.add(sentences)
    if ids.size == 0:
        raise CorpusError(f"{corpus_name}: no words to train on (empty, or only blank lines)")
    vocab, new_id = counter.vocabulary(config.min_count, config.max_vocab, vocab)
    return _train_in_memory(vocab, new_id[ids].astype(np.int32), lengths, counter.skipped,
                            config, corpus_name, tokenizer, progress)


def _train_in_memory(vocab: Vocabulary, ids: np.ndarray, lengths: np.ndarray, skipped: int,
                     config: NgramConfig, corpus_name: str, tokenizer: dict,
                     progress: Optional[Callable[[str], None]]) -> NgramModel:
    step = progress or (lambda message: None)
    counts = count_ngrams(ids, lengths, config.order, len(vocab), vocab.bos_id, vocab.eos_id,
                          progress=step)
    step("smoothing")
    tables = estimate(counts, config.smoothing, vocab.bos_id, config.add_k, config.prune)
    del counts
    _check_estimate(tables, config)
    metadata = _metadata(config, tokenizer, corpus_name, int(lengths.size), int(ids.size),
                         skipped, [int(k.size) for k in tables.keys], tables.notes)
    return NgramModel(vocab, tables, metadata)


def train_ngram_bounded(read_blocks: Callable[[int], SentenceBlocks], config: NgramConfig,
                        corpus_name: str, tokenizer: dict, memory: int, scratch: Scratch,
                        total_bytes: Optional[int] = None,
                        vocab: Optional[Vocabulary] = None, arpa: bool = True,
                        files: Optional[firstpass.CorpusFiles] = None):
    """``train_ngram`` within about ``memory`` bytes besides the vocabulary: the same model.

    ``read_blocks(size)`` gives the corpus's sentences a block of about ``size`` bytes of
    text at a time, as ``(sentences, bytes read)`` pairs (``total_bytes`` in all, if
    known: for the progress bar). The corpus is read once: by two processes at once if it
    is ``files`` too large for the in-memory path (``firstpass.py``). If the in-memory
    path fits in ``memory`` (``in_memory_bytes``), it is taken, and an ``NgramModel``
    returned; else the word ids go to the disk of ``scratch``, are counted in blocks and
    the model estimated from tables on disk: a ``StreamedModel``, which writes the same
    files without ever being loaded (its ARPA file only if ``arpa``). Progress bars (on a
    terminal) show each stage.
    """
    config.validate()
    check_whole("memory", memory, 1)
    if (vocab is None) != (config.vocab_from is None):
        raise ValueError("give a vocabulary and the file it came from, or neither")
    counter = WordCounter()
    block_bytes = max(1 << 16, min(64 << 20, memory // TEXT_MEMORY_PER_BYTE))
    room = memory // in_memory_bytes(config.order, 1)
    if _reads_in_two(files, room):
        corpus = firstpass.read_in_two(files, counter, scratch, block_bytes // 2)
    else:
        corpus = firstpass.read_once(read_blocks(block_bytes), counter, scratch, room,
                                     total_bytes)
    if corpus.tokens == 0:
        raise CorpusError(f"{corpus_name}: no words to train on (empty, or only blank lines)")
    vocab, new_id = counter.vocabulary(config.min_count, config.max_vocab, vocab)
    new_id = new_id.astype(np.int32)
    if not corpus.tables:
        ids, lengths = np.concatenate(corpus.ids), np.concatenate(corpus.lengths)
        corpus.ids = corpus.lengths = None                   # (one copy of the ids at a time)
        ids = new_id[ids]
        with _steps(config.order + 1, "estimating") as step:
            return _train_in_memory(vocab, ids, lengths, counter.skipped, config,
                                    corpus_name, tokenizer, step)
    counts = _count_on_disk(corpus.tables, new_id, vocab, config.order, memory, scratch)
    tables = estimate_streamed(counts, config.smoothing, vocab.bos_id, vocab.eos_id,
                               config.add_k, config.prune, memory, scratch, arpa)
    metadata = _metadata(config, tokenizer, corpus_name, corpus.sentences, corpus.tokens,
                         counter.skipped, tables.sizes, tables.notes)
    return StreamedModel(vocab, tables, metadata, memory)


def train_ngram_cluster(address: str, paths: Sequence[str], names: Sequence[str],
                        config: NgramConfig, corpus_name: str, tokenizer: dict,
                        encoding_errors: str, memory: int, scratch: Scratch,
                        vocab: Optional[Vocabulary] = None, arpa: bool = True
                        ) -> StreamedModel:
    """``train_ngram_bounded`` with the counting done by the workers of the Dask cluster
    whose scheduler is at ``address`` (``cluster.py``; they read the files ``paths``,
    ``names`` in messages), and the estimate here, within ``memory``: the same model. A
    task takes at most ``memory`` too (less if a worker has less)."""
    config.validate()
    check_whole("memory", memory, 1)
    if (vocab is None) != (config.vocab_from is None):
        raise ValueError("give a vocabulary and the file it came from, or neither")
    sizes = cluster.file_sizes(paths, names)
    with cluster.connect(address) as client:
        workers, task_memory = cluster.workers_and_memory(client, memory)
        shards = cluster.make_shards(paths, sizes,
                                     cluster.shard_bytes(sum(sizes), workers, task_memory))
        job = cluster.job_name()
        corpus = cluster.count_words(client, shards, tokenizer, encoding_errors, job)
        if corpus.tokens == 0:
            raise CorpusError(f"{corpus_name}: no words to train on (empty, or only blank "
                              "lines)")
        vocab, _ = corpus.counter.vocabulary(config.min_count, config.max_vocab, vocab)
        parts = cluster.parts_for(corpus.tokens + 2 * corpus.sentences, config.order,
                                  workers, task_memory)
        counts = cluster.count_ngrams(client, shards, tokenizer, encoding_errors, vocab,
                                      config.order, cluster.part_cuts(vocab, corpus.sentences,
                                                                      parts), scratch, job)
    tables = estimate_streamed(counts, config.smoothing, vocab.bos_id, vocab.eos_id,
                               config.add_k, config.prune, memory, scratch, arpa)
    metadata = _metadata(config, tokenizer, corpus_name, corpus.sentences, corpus.tokens,
                         corpus.counter.skipped, tables.sizes, tables.notes)
    return StreamedModel(vocab, tables, metadata, memory)


def writing_progress(model, arpa: bool):
    """A progress bar while a ``StreamedModel``'s files are written (``arpa``: the ARPA
    file too); none for a model in memory, written in moments."""
    return model.writing_progress(arpa) if isinstance(model, StreamedModel) else nullcontext()


def _reads_in_two(files: Optional[firstpass.CorpusFiles], room: int) -> bool:
    """Whether the first pass is shared by two processes: for a corpus in files, of at
    least ``SPLIT_BYTES``, that would not fit the in-memory path (at most ``room``
    positions; text has about 6 bytes a position), with two cores to run them."""
    if files is None or thread_count() < 2:
        return False
    size = sum(files.sizes)
    return size >= SPLIT_BYTES and size > TEXT_BYTES_PER_POSITION * room


def in_memory_bytes(order: int, positions: int) -> int:
    """About what the in-memory path holds at its peak for a corpus of ``positions``
    (its tokens, and one ``<s>`` and one ``</s>`` a sentence), besides the vocabulary:
    measured on Vietnamese Wikipedia, 32 (order + 1) bytes a position."""
    return 32 * (order + 1) * positions


def _count_on_disk(tables: List[Tuple[str, Optional[np.ndarray]]], new_id: np.ndarray,
                   vocab: Vocabulary, order: int, memory: int, scratch: Scratch) -> CountTables:
    """The second pass: the padded sequence in blocks, in final ids, counted (the first
    pass's tables one after another, each read through its map of ids)."""
    counter = BlockCounter(scratch, order, len(vocab), vocab.bos_id, vocab.eos_id)
    with progress.bytes_bar("counting", sum(table_rows(path) for path, _ in tables) * 4) as bar:
        def read(rows: int):
            for path, ids in tables:
                final = new_id if ids is None else new_id[ids]
                with TableReader(path) as reader:
                    for block in reader.chunks(rows):
                        bar.update(block.nbytes)
                        yield final[block]
                remove(path)
        counter.add_all(read, memory)
    with progress.bytes_bar("merging", counter.run_bytes()) as bar:
        return counter.finish(memory, progress.shared(bar.update))


@contextmanager
def _steps(total: int, stage: str):
    """A progress bar of ``total`` steps; yields the function that takes a step."""
    bar = progress.bar(total=total, desc=stage, leave=False,
                       bar_format="{desc}{n}/{total} [{elapsed}]")

    def step(message: str) -> None:
        bar.set_description(message)
        bar.update(1)
    try:
        yield step
    finally:
        bar.close()


def _metadata(config: NgramConfig, tokenizer: dict, corpus_name: str, sentences: int,
              tokens: int, skipped_markers: int, ngrams: List[int], notes: dict) -> dict:
    return {
        "model_type": "ngram", "order": config.order, "smoothing": config.smoothing,
        "config": asdict(config), "tokenizer": tokenizer,
        "corpus": {"name": corpus_name, "sentences": sentences, "tokens": tokens,
                   "skipped_markers": skipped_markers},
        "ngrams": ngrams,
        "smoothing_notes": notes,
    }


def _check_estimate(tables, config: NgramConfig) -> None:
    """``smoothing.check_estimate`` on every order, lowest first."""
    for n, (logprob, backoff) in enumerate(zip(tables.logprob, tables.backoff + [None]), 1):
        check_estimate(n, logprob, backoff, config.smoothing)
