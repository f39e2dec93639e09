"""Counting on a Dask cluster (``train-ngram --scheduler``): files cut into shards at any
byte offsets hold each line once; word counters of the shards merge into the corpus's;
and the model counted by two worker processes of a ``LocalCluster``, in many shards and
parts, is the single-machine model, every array and byte of it. Failures of the cluster
are one line each."""
import codecs
import concurrent.futures
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cli_runner
from rnnlm_cli.cli import cli
from rnnlm_cli.errors import CorpusError, TrainingError
from rnnlm_cli.ngram import cluster
from rnnlm_cli.ngram.scratch import Scratch
from rnnlm_cli.ngram.training import NgramConfig, train_ngram, train_ngram_cluster
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, read_blocks, read_range
from rnnlm_cli.vocab import Vocabulary, WordCounter
from test_ngram_bounded import assert_same_model, recorded_bars, written, zipf_corpus


# -- shards of a file ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text("ab é\r", max_size=9), max_size=8),
       final_newline=st.booleans(), bom=st.booleans(),
       cuts=st.lists(st.integers(0, 200), max_size=6), block=st.integers(1, 9))
def test_ranges_cut_anywhere_hold_each_line_once(tmp_path_factory, lines, final_newline, bom,
                                                 cuts, block):
    data = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    data = (codecs.BOM_UTF8 if bom else b"") + data
    path = tmp_path_factory.mktemp("shards") / "corpus.txt"
    path.write_bytes(data)
    whole = b"".join(b.data for b in read_blocks(str(path), block_bytes=block))
    offsets = [0] + sorted(min(c, len(data)) for c in cuts) + [len(data)]
    shards = [read_range(str(path), a, z, block_bytes=block)
              for a, z in zip(offsets, offsets[1:])]
    assert b"".join(b.data for shard in shards for b in shard) == whole


def test_a_range_starting_inside_a_line_leaves_it_to_the_range_before(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"one two\nthree\nfour\n")      # lines begin at 0, 8, 14
    texts = [[b.data for b in read_range(str(path), a, z)] for a, z in
             [(0, 1), (1, 8), (8, 9), (9, 14), (14, 19), (0, 0)]]
    assert texts == [[b"one two\n"], [], [b"three\n"], [], [b"four\n"], []]


def test_a_file_shorter_than_its_range_was_cut_short_while_read(tmp_path):
    """The ranges come from the files' sizes at the start: a file that ends before its
    range does (truncated meanwhile) is an error, not a corpus silently smaller."""
    path = tmp_path / "c.txt"
    path.write_bytes(b"one two\nthree\nfour\n")                     # 19 bytes
    assert [b.data for b in read_range(str(path), 8, 19)] == [b"three\nfour\n"]
    with pytest.raises(CorpusError) as caught:
        list(read_range(str(path), 8, 25))
    assert str(caught.value) == (f"{path}: the file became shorter while it was read (its "
                                 "end came at byte 19; it was 25 bytes or more when reading "
                                 "began): was something writing it?")

    path.write_bytes(b"abcdefghi\n" * 4000)                          # the whole file,
    blocks = read_blocks(str(path), "strict", 10_000)                # 10,000 bytes a read
    assert next(blocks).data == b"abcdefghi\n" * 1000
    os.truncate(path, 15_005)                              # (in the middle of a line)
    with pytest.raises(CorpusError) as caught:
        list(blocks)
    assert str(caught.value) == (f"{path}: the file became shorter while it was read (its "
                                 "end came at byte 15,005; it was 40,000 bytes or more when "
                                 "reading began): was something writing it?")


def test_shards_cover_the_files_and_say_what_they_cannot_read(tmp_path):
    a, b, empty = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "empty.txt"
    a.write_bytes(b"x\n" * 50)
    b.write_bytes(b"y\n" * 7)
    empty.write_bytes(b"")
    sizes = cluster.file_sizes([str(a), str(b)], ["a", "b"])
    shards = cluster.make_shards([str(a), str(b)], sizes, 30)
    assert [(os.path.basename(s.path), s.start, s.end) for s in shards] == \
        [("a.txt", 0, 25), ("a.txt", 25, 50), ("a.txt", 50, 75), ("a.txt", 75, 100),
         ("b.txt", 0, 14)]
    for path, message in [(empty, "e: file is empty"), (tmp_path / "no", "e: no such file"),
                          (tmp_path, "e: not a regular file")]:
        with pytest.raises(Exception, match=message):
            cluster.file_sizes([str(path)], ["e"])


# -- words ------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(sentences=st.lists(st.lists(st.sampled_from(["a", "b", "c", "<s>", "</s>", "<unk>"]),
                                   max_size=5), max_size=12),
       cuts=st.lists(st.integers(0, 12), max_size=4))
def test_word_counters_of_the_parts_merge_into_the_whole_corpus_counter(sentences, cuts):
    whole = WordCounter()
    whole.add(sentences)
    merged = WordCounter()
    offsets = [0] + sorted(cuts) + [len(sentences)]
    for start, end in zip(offsets, offsets[1:]):
        part = WordCounter()
        part.add(sentences[start:end])
        merged.merge(list(part.first_seen), part.counts, part.skipped)
    assert list(merged.first_seen) == list(whole.first_seen)      # the same ids, in order
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.skipped == whole.skipped


def test_parts_are_ranges_of_first_words_of_about_equal_mass():
    # counts by id: <unk> 0, <s> (sentences) 4, </s> 4, then 4, 2, 1, 1  -> mass 16
    vocab = Vocabulary(["<unk>", "<s>", "</s>", "a", "b", "c", "d"], [0, 0, 4, 4, 2, 1, 1])
    assert cluster.part_cuts(vocab, 4, 4).tolist() == [2, 3, 4]     # 4 | 4 | 4 | 4
    assert cluster.part_cuts(vocab, 4, 2).tolist() == [3]           # 8 | 8
    assert cluster.part_cuts(vocab, 4, 1).tolist() == []


def test_a_worker_lost_too_often_is_one_error():
    KilledWorker = pytest.importorskip("distributed", reason="dask[distributed] is not "
                                       "installed").KilledWorker

    class Lost:
        def result(self):
            raise KilledWorker("rnnlm-ngrams-x-3", SimpleNamespace(address="tcp://h:1"), 3)
    with pytest.raises(TrainingError) as caught:
        cluster._result(Lost())
    assert str(caught.value) == ("the Dask job cannot finish: each worker that ran its task "
                                 "rnnlm-ngrams-x-3 died (4 workers); out of memory? (see the "
                                 "workers' logs)")


def test_the_scheduler_lost_is_one_error():
    """The client cancels its futures when it loses the scheduler: one line that says so."""
    client = pytest.importorskip("distributed.client", reason="dask[distributed] is not "
                                 "installed")
    cancelled = getattr(client, "FutureCancelledError", None)   # (Dask 2024.6: the plain one)

    class Cancelled:
        def result(self):
            if cancelled is None:
                raise concurrent.futures.CancelledError("rnnlm-unigrams-x-0")
            raise cancelled("rnnlm-unigrams-x-0", "scheduler-connection-lost")
    with pytest.raises(TrainingError) as caught:
        cluster._result(Cancelled())
    why = "" if cancelled is None else " (scheduler-connection-lost)"
    assert str(caught.value) == f"lost the Dask scheduler, or the job was cancelled on it{why}"


def test_dask_logs_nothing_of_its_own_while_connected_and_as_before_after():
    """Every Dask logger with a level of its own (``distributed.client`` warns of keys it
    reschedules) is quiet below CRITICAL inside ``_dask_logs_quiet``, and set back after."""
    import logging
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    names = ["distributed", "distributed.client", "distributed.scheduler", "tornado"]
    before = [logging.getLogger(name).level for name in names]
    with cluster._dask_logs_quiet():
        assert all(not logging.getLogger(name).isEnabledFor(logging.ERROR)
                   for name in names)
    assert [logging.getLogger(name).level for name in names] == before


# -- on a LocalCluster --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of two worker processes."""
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not "
                                      "installed (pip install 'rnnlm[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local.scheduler_address


def train_on_cluster(address, lines, config, path, vocab=None):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    settings = TokenizerConfig("whitespace").to_dict()

    def train():
        with Scratch() as scratch:
            return written(train_ngram_cluster(address, [str(path)], ["corpus"], config,
                                               "corpus", settings, "strict", 1 << 20, scratch,
                                               vocab=vocab))
    return within(JOB_SECONDS, train)


JOB_SECONDS = 120     # a job here takes a few seconds; one stuck on a lost worker, forever


def within(seconds, job):
    """``job()``, run in a thread of its own; a test failure if it is not done in
    ``seconds`` (a Dask job that waits forever fails its test, not the whole suite)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = job()
        except BaseException as exc:      # raised again in the test's thread
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the Dask job did not finish in {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def train_here(lines, config, vocab=None):
    tokenizer = Tokenizer(TokenizerConfig("whitespace"))
    return written(train_ngram(tokenizer.tokenize_lines(lines), config, "corpus",
                               tokenizer.config.to_dict(), vocab=vocab))


@pytest.fixture
def small_shards(monkeypatch):
    """Shards of about 1,500 bytes (a corpus of 2,000 lines: 30 of them), and parts of
    about 300 KB of counts (a few): each shard and part a task."""
    monkeypatch.setattr(cluster, "MIN_SHARD_BYTES", 1500)
    monkeypatch.setattr(cluster, "SHARD_BYTES_PER_WORKER", 1000)
    made = []
    real = cluster.make_shards

    def recorded(*args):
        shards = real(*args)
        made.extend(shards)
        return shards
    monkeypatch.setattr(cluster, "make_shards", recorded)
    return made


@pytest.mark.parametrize("order, smoothing, prune", [
    (1, "kneser-ney", []), (3, "kneser-ney", []), (5, "kneser-ney", [0, 1, 1]),
    (8, "kneser-ney", []),                        # two uint64 a key
    (4, "witten-bell", []), (3, "add-k", [])])
def test_the_cluster_counts_the_single_machine_model(scheduler, small_shards, tmp_path,
                                                     order, smoothing, prune):
    lines = zipf_corpus(order, 2000, 400)
    config = NgramConfig(order, smoothing, 0.25, prune)
    got = train_on_cluster(scheduler, lines, config, tmp_path / "corpus.txt")
    assert len(small_shards) > 20
    assert_same_model(train_here(lines, config), got)


def test_a_fixed_or_pruned_vocabulary_is_the_same_on_the_cluster(scheduler, small_shards,
                                                                  tmp_path):
    lines = zipf_corpus(11, 1500, 300)
    vocab = Vocabulary(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(0, 400, 3)])
    config = NgramConfig(4, vocab_from="other.npz")
    assert_same_model(train_here(lines, config, vocab),
                      train_on_cluster(scheduler, lines, config, tmp_path / "a.txt", vocab))
    config = NgramConfig(3, min_count=3, max_vocab=50)
    assert_same_model(train_here(lines, config),
                      train_on_cluster(scheduler, lines, config, tmp_path / "b.txt"))


def test_train_ngram_scheduler_writes_the_same_files(scheduler, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(zipf_corpus(5, 6000, 500)) + "\n", encoding="utf-8")
    runner = cli_runner()
    for name, extra in [("here", []), ("cluster", ["--scheduler", scheduler])]:
        result = runner.invoke(cli, ["train-ngram", str(corpus), "--order", "4",
                                     "--tokenizer", "whitespace", "-o", str(tmp_path / name),
                                     "--arpa", str(tmp_path / f"{name}.arpa"), *extra])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "cluster").read_bytes() == (tmp_path / "here").read_bytes()
    assert (tmp_path / "cluster.arpa").read_bytes() == (tmp_path / "here.arpa").read_bytes()


def test_an_undecodable_line_is_named_as_on_one_machine(scheduler, small_shards, tmp_path):
    corpus = tmp_path / "corpus.txt"
    lines = [line.encode() for line in zipf_corpus(3, 800, 100)]
    lines[700] += b" \xff"
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    runner = cli_runner()
    messages = []
    for extra in [[], ["--scheduler", scheduler]]:
        result = runner.invoke(cli, ["train-ngram", str(corpus), "-o", str(tmp_path / "m"),
                                     *extra])
        assert result.exit_code == 1
        messages.append(result.stderr)
    assert messages[0] == messages[1] == f"Error: {corpus}: line 701: invalid UTF-8 (use " \
                                         "--encoding-errors replace to go on)\n"
    assert len(small_shards) > 5 and not (tmp_path / "m").exists()


def test_each_progress_bar_of_the_cluster_ends_at_its_total(scheduler, small_shards,
                                                            tmp_path, monkeypatch):
    bars = recorded_bars(monkeypatch)
    train_on_cluster(scheduler, zipf_corpus(2, 1500, 300), NgramConfig(3),
                     tmp_path / "corpus.txt")
    assert [bar.desc for bar in bars] == ["counting words", "counting n-grams",
                                          "merging parts", "estimating"]
    assert bars[0].total == bars[1].total == (tmp_path / "corpus.txt").stat().st_size
    for bar in bars:
        assert bar.done == bar.total > 0, bar.desc


def killing_plugin(marker, every_time=False):
    """A worker plugin that ends its worker's process (as a crash or the OOM killer
    would) when an n-gram task starts: once (``marker`` notes it), or ``every_time``.
    Defined in a function so that cloudpickle sends the class to the workers by value."""
    from distributed import WorkerPlugin

    class Crash(WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and str(key).startswith("rnnlm-ngrams-") and \
                    (every_time or not os.path.exists(marker)):
                open(marker, "w").close()
                os._exit(1)
    return Crash()


def test_a_worker_that_dies_mid_job_changes_nothing(scheduler, small_shards, tmp_path):
    """Dask runs the lost worker's tasks again elsewhere (the nanny restarts it)."""
    from distributed import Client
    marker = str(tmp_path / "died")
    with Client(scheduler, set_as_default=False) as client:
        client.register_plugin(killing_plugin(marker))
    lines = zipf_corpus(4, 2000, 300)
    config = NgramConfig(4)
    got = train_on_cluster(scheduler, lines, config, tmp_path / "corpus.txt")
    assert os.path.exists(marker)                    # a worker did die
    assert_same_model(train_here(lines, config), got)


def test_a_job_that_keeps_losing_workers_fails_with_one_line_and_no_model(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not "
                                      "installed")
    import dask
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b c\nb c d\n", encoding="utf-8")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as local, \
            distributed.Client(local, set_as_default=False) as client:
        client.register_plugin(killing_plugin(str(tmp_path / "died"), every_time=True))
        result = run_rnnlm("train-ngram", str(corpus), "-o", str(tmp_path / "m.npz"),
                           "--scheduler", local.scheduler_address)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the Dask job cannot finish: each worker that ran "
                                    "its task rnnlm-ngrams-")
    assert result.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "died"]


# -- failures, one line each --------------------------------------------------------------------

def run_rnnlm(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rnnlm_cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("address, says", [
    ("tcp://127.0.0.1:1", "Timed out trying to connect to tcp://127.0.0.1:1 after 1 s"),
    ("lots", "missing port number in address 'lots'"),
    ("tcp://127.0.0.1:99999", "99999 is not a port number (1 to 65535)"),
    ("tcp://[::1]:0", "0 is not a port number (1 to 65535)")])
def test_a_scheduler_out_of_reach_is_one_error_line(tmp_path, address, says):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n", encoding="utf-8")
    result = run_rnnlm("train-ngram", str(corpus), "-o", str(tmp_path / "m.npz"),
                       "--scheduler", address,
                       env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot reach the Dask scheduler at {address}: {says}\n"
    assert os.listdir(tmp_path) == ["c.txt"]


def test_a_server_that_is_not_a_scheduler_is_one_error_line_in_time(tmp_path):
    """Something listens at the address but never answers as a scheduler would (an HTTP
    server, say): the connect timeout and a few seconds, then one line, not a hang."""
    import socket
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n", encoding="utf-8")
    with socket.create_server(("127.0.0.1", 0)) as silent:     # accepts; never says a word
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        result = run_rnnlm("train-ngram", str(corpus), "-o", str(tmp_path / "m.npz"),
                           "--scheduler", address,
                           env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert result.returncode == 1
    assert result.stderr == (f"Error: cannot reach the Dask scheduler at {address}: no "
                             "answer in 6 s: is it a Dask scheduler?\n")
    assert os.listdir(tmp_path) == ["c.txt"]


def test_standard_input_cannot_go_to_the_workers(tmp_path):
    result = cli_runner().invoke(cli, ["train-ngram", "-", "-o", str(tmp_path / "m.npz"),
                                       "--scheduler", "tcp://127.0.0.1:1"], input="a b\n")
    assert result.exit_code == 2
    assert "standard input (-) cannot be shared with them" in result.stderr


def test_without_dask_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)     # import distributed fails
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n", encoding="utf-8")
    result = cli_runner().invoke(cli, ["train-ngram", str(corpus), "-o",
                                       str(tmp_path / "m.npz"), "--scheduler", "tcp://h:1"])
    assert result.exit_code == 1
    assert result.stderr == "Error: --scheduler needs Dask: pip install 'rnnlm[dask]'\n"
