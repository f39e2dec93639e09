"""The first pass of bounded-memory training read by two processes (``firstpass.py``):
the files cut at the middle byte, each half's words numbered by a process of its own, and
the model the one a single reading makes, every array and byte; an undecodable line is
named as by a single reading; a child that dies is one error, and no process is left."""
import codecs
import multiprocessing
import os
import signal
import threading
import time

import pytest

from conftest import cli_runner
from rnnlm_cli.cli import cli
from rnnlm_cli.errors import CorpusError, TrainingError
from rnnlm_cli.ngram import training
from rnnlm_cli.ngram.firstpass import CorpusFiles
from rnnlm_cli.ngram.scratch import Scratch
from rnnlm_cli.ngram.shards import Shard, halves
from rnnlm_cli.ngram.training import NgramConfig, train_ngram, train_ngram_bounded
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, read_blocks, split_lines
from test_ngram_bounded import assert_same_model, recorded_bars, written, zipf_corpus

MEMORY = 1 << 20     # small enough for the disk path


@pytest.fixture
def in_two(monkeypatch):
    """Every corpus in files read by two processes, however small."""
    monkeypatch.setattr(training, "SPLIT_BYTES", 0)
    monkeypatch.setattr(training, "TEXT_BYTES_PER_POSITION", 0)
    monkeypatch.setattr(training, "thread_count", lambda: 2)


def test_halves_cut_the_files_one_after_another_at_the_middle_byte():
    assert halves(["a"], [10]) == ([Shard("a", 0, 5)], [Shard("a", 5, 10)])
    assert halves(["a", "b"], [4, 4]) == ([Shard("a", 0, 4)], [Shard("b", 0, 4)])
    assert halves(["a", "b", "c"], [2, 6, 3]) == (
        [Shard("a", 0, 2), Shard("b", 0, 3)], [Shard("b", 3, 6), Shard("c", 0, 3)])
    assert halves(["a"], [1]) == ([], [Shard("a", 0, 1)])


def corpus_files(folder, texts, tokenizer="whitespace"):
    """The texts (bytes) as files; their ``CorpusFiles``."""
    paths = []
    for i, data in enumerate(texts):
        path = folder / f"part{i}.txt"
        path.write_bytes(data)
        paths.append(str(path))
    settings = TokenizerConfig(tokenizer).to_dict()
    return CorpusFiles(paths, [len(t) for t in texts], settings, "strict")


def train_from(files, config, memory=MEMORY):
    """``train_ngram_bounded`` on the files, read in one pass or two as decided."""
    tokenizer = Tokenizer(TokenizerConfig.from_dict(files.tokenizer))

    def read(block_bytes):
        for path in files.paths:
            for block in read_blocks(path, files.encoding_errors, block_bytes):
                yield tokenizer.tokenize_lines(split_lines(block.text())), len(block.data)
    with Scratch() as scratch:
        return written(train_ngram_bounded(read, config, "corpus", files.tokenizer, memory,
                                           scratch, sum(files.sizes), files=files))


def train_here(texts, config, tokenizer="whitespace"):
    tokenizer = Tokenizer(TokenizerConfig(tokenizer))
    lines = [line for data in texts for line in split_lines(data.decode("utf-8-sig"))]
    return written(train_ngram(tokenizer.tokenize_lines(lines), config, "corpus",
                               tokenizer.config.to_dict()))


def text(seed, sentences, words=300):
    return "".join(line + "\n" for line in zipf_corpus(seed, sentences, words)).encode()


@pytest.mark.parametrize("texts, order", [
    ([text(1, 3000)], 3),
    ([text(2, 2000), text(3, 500), text(4, 2500)], 5),
    ([codecs.BOM_UTF8 + text(5, 1500), b"one line without its newline"], 4),
    ([text(6, 800) + b"caf\xc3\xa9 cafe\xcc\x81\r\n\t tab  line \r\n" + text(7, 800)], 3),
    ([text(14, 300), b"\n" * 50_000], 3),          # no word in the child's half
    ([b" \n" * 25_000, text(15, 300)], 3)])        # ... or in this process's
def test_two_processes_make_the_model_of_one_reading(tmp_path, in_two, texts, order):
    config = NgramConfig(order)
    assert_same_model(train_here(texts, config), train_from(corpus_files(tmp_path, texts),
                                                            config))


def test_the_regex_tokenizer_and_a_pruned_vocabulary_in_two_processes(tmp_path, in_two):
    texts = [text(8, 2000).replace(b"w1 ", b"W1, "), text(9, 1000)]
    config = NgramConfig(4, min_count=2, max_vocab=120, prune=[0, 1])
    assert_same_model(train_here(texts, config, "regex"),
                      train_from(corpus_files(tmp_path, texts, "regex"), config))


def test_train_ngram_writes_the_same_files_whether_read_in_one_pass_or_two(tmp_path,
                                                                             monkeypatch):
    (tmp_path / "a.txt").write_bytes(text(10, 3000))
    (tmp_path / "b.txt").write_bytes(text(11, 1000))
    bars = recorded_bars(monkeypatch)
    for name, split in [("one", 1 << 60), ("two", 0)]:
        monkeypatch.setattr(training, "SPLIT_BYTES", split)
        result = cli_runner().invoke(cli, [
            "train-ngram", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--order", "4",
            "--memory", "1M", "-o", str(tmp_path / f"{name}.npz"),
            "--arpa", str(tmp_path / f"{name}.arpa")])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "two.npz").read_bytes() == (tmp_path / "one.npz").read_bytes()
    assert (tmp_path / "two.arpa").read_bytes() == (tmp_path / "one.arpa").read_bytes()
    reading = [bar for bar in bars if bar.desc == "reading"]
    size = (tmp_path / "a.txt").stat().st_size + (tmp_path / "b.txt").stat().st_size
    assert [(bar.total, bar.done) for bar in reading] == [(size, size)] * 2
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("bad", [[40], [2900], [40, 2900]])
def test_an_undecodable_line_in_either_half_is_named_as_by_one_reading(tmp_path, in_two,
                                                                        bad):
    lines = [line.encode() for line in zipf_corpus(12, 3000, 200)]
    for i in bad:
        lines[i] += b" \xff"
    texts = [b"\n".join(lines) + b"\n"]
    files = corpus_files(tmp_path, texts)
    with pytest.raises(CorpusError) as caught:
        train_from(files, NgramConfig(3))
    assert str(caught.value) == f"{files.paths[0]}: line {bad[0] + 1}: invalid UTF-8 (use " \
                                "--encoding-errors replace to go on)"
    assert not multiprocessing.active_children()


def test_a_child_that_dies_is_one_error_and_leaves_no_process(tmp_path, in_two):
    texts = [text(13, 200_000)]             # about 2 s of reading a half
    files = corpus_files(tmp_path, texts)
    killed = []

    def kill_the_child():
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)
            time.sleep(0.01)
    killer = threading.Thread(target=kill_the_child)
    killer.start()
    with pytest.raises(TrainingError) as caught:
        train_from(files, NgramConfig(3))
    killer.join()
    assert killed
    assert str(caught.value) == ("the process reading the second half of the corpus ended "
                                 "without a result (killed by signal 9); out of memory?")
    assert not multiprocessing.active_children()
