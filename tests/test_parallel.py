"""parallel.py, and the scoring and word lookups that cut their work into threads: the
same answers however the work is cut."""
import concurrent.futures
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from rnnlm_cli import parallel
from rnnlm_cli.ngram.counting import count_ngrams
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.smoothing import estimate
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig
from rnnlm_cli.vocab import Vocabulary


def test_thread_count_follows_the_environment(monkeypatch):
    monkeypatch.setenv("RNNLM_NUM_THREADS", "3")
    assert parallel.thread_count() == 3
    for unusable in ("0", "-2", "many", ""):
        monkeypatch.setenv("RNNLM_NUM_THREADS", unusable)
        assert parallel.thread_count() >= 1


def test_an_unusable_thread_count_is_named_and_the_default_taken(monkeypatch):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    for unusable in ("0", "-1", "abc", "1e3", "1.5", "\u00b2", "\u0663"):   # (2, 3: not ASCII)
        monkeypatch.setenv("RNNLM_NUM_THREADS", unusable)
        assert parallel.thread_count() == 2, unusable
        assert repr(unusable) in parallel.environment_problem()
    for usable, threads in (("1", 1), ("007", 7), ("  3 ", 3), ("9" * 5000, 8)):
        monkeypatch.setenv("RNNLM_NUM_THREADS", usable)
        assert parallel.thread_count() == threads
        assert parallel.environment_problem() is None
    monkeypatch.setenv("RNNLM_NUM_THREADS", " ")           # set empty: as unset
    assert parallel.environment_problem() is None and parallel.thread_count() == 2


def test_an_unusable_thread_count_is_one_warning_line(monkeypatch):
    from click.testing import CliRunner
    from rnnlm_cli.cli import cli
    monkeypatch.setenv("RNNLM_NUM_THREADS", "\u00b2")
    result = CliRunner().invoke(cli, ["perplexity", "--help"])
    assert result.exit_code == 0
    assert "Traceback" not in result.output
    assert "Warning: RNNLM_NUM_THREADS='\u00b2' is not a number of threads" in result.output


def test_threads_asked_for_are_capped_by_the_cores(monkeypatch):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("RNNLM_NUM_THREADS", "100000")
    assert parallel.thread_count() == 2 * parallel.THREADS_PER_CORE
    monkeypatch.setenv("RNNLM_NUM_THREADS", str(2 * parallel.THREADS_PER_CORE - 1))
    assert parallel.thread_count() == 2 * parallel.THREADS_PER_CORE - 1


def test_one_thread_while_the_cores_are_busy(monkeypatch):
    monkeypatch.delenv("RNNLM_NUM_THREADS", raising=False)
    monkeypatch.setattr(parallel, "own_load", lambda: 0.0)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for load, threads in ((0.0, 4), (3.9, 4), (4.0, 1), (9.5, 1)):
        monkeypatch.setattr(parallel.os, "getloadavg", lambda: (load, 0.0, 0.0))
        assert parallel.thread_count() == threads, load
    monkeypatch.setenv("RNNLM_NUM_THREADS", "3")          # the environment decides
    assert parallel.thread_count() == 3

    def no_load_average():
        raise OSError("no load average")
    monkeypatch.delenv("RNNLM_NUM_THREADS")
    monkeypatch.setattr(parallel.os, "getloadavg", no_load_average)
    assert parallel.thread_count() == 4


def test_the_load_this_process_makes_is_not_counted_as_busy(monkeypatch):
    """Two threads working for a minute raise the load average towards 2 themselves:
    less their own share, the machine is not busy; another process's load still counts.
    The share is averaged as the kernel averages the load, exponentially, over a minute."""
    clock = {"wall": 1000.0, "cpu": 50.0}
    monkeypatch.setattr(parallel, "_wall_clock", lambda: clock["wall"])
    monkeypatch.setattr(parallel, "_cpu_clock", lambda: clock["cpu"])
    monkeypatch.setattr(parallel, "_own", {"at": 1000.0, "cpu": 50.0, "load": 0.0})
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("RNNLM_NUM_THREADS", raising=False)
    load = {"now": 0.0}
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (load["now"], 0.0, 0.0))

    def work(seconds, cores):
        clock["wall"] += seconds
        clock["cpu"] += seconds * cores
    work(30, 2)
    assert parallel.own_load() == pytest.approx(2 * (1 - math.exp(-0.5)))
    work(0.5, 2)                                    # too soon: the last figure stands
    assert parallel.own_load() == pytest.approx(2 * (1 - math.exp(-0.5)))
    work(89.5, 2)
    assert parallel.own_load() == pytest.approx(2 * (1 - math.exp(-2)))     # 1.73
    load["now"] = 2.1                               # ours, about: not busy
    assert parallel.thread_count() == 2
    load["now"] = 3.8                               # another process's 2: busy
    assert parallel.thread_count() == 1
    work(120, 0)                                    # idle: our share fades
    assert parallel.own_load() == pytest.approx(1.73 * math.exp(-2), abs=0.01)


def test_parts_are_one_per_thread_and_never_too_small(monkeypatch):
    monkeypatch.setenv("RNNLM_NUM_THREADS", "4")
    assert parallel.parts_for(parallel.MIN_PART * 10) == 4
    assert parallel.parts_for(parallel.MIN_PART * 2 + 1) == 2
    assert parallel.parts_for(10) == 1 and parallel.parts_for(0) == 1


def test_even_cuts():
    sizes = np.array([5, 1, 1, 1, 5, 5, 2])
    cuts = parallel.even_cuts(sizes, 2)
    assert cuts.tolist() == [0, 4, 7]           # totals 8 and 12 (of 20)
    assert parallel.even_cuts(sizes, 1).tolist() == [0, 7]
    assert parallel.even_cuts(np.zeros(0, dtype=int), 3).tolist()[-1] == 0
    many = parallel.even_cuts(np.ones(3, dtype=int), 5)
    assert many[0] == 0 and many[-1] == 3 and np.all(np.diff(many) >= 0)


def test_run_all_keeps_order_uses_threads_and_raises():
    def task(i):
        return lambda: (i * i, threading.current_thread() is threading.main_thread())
    results = parallel.run_all([task(i) for i in range(4)])
    assert results == [(0, True), (1, False), (4, False), (9, False)]

    def boom():
        raise ValueError("bad part")
    with pytest.raises(ValueError, match="bad part"):
        parallel.run_all([task(1), boom, task(2)])


@pytest.mark.parametrize("threaded", [True, False])
def test_background_jobs_run_in_order_behind_the_caller_and_raise(threaded):
    done, release = [], threading.Event()
    background = parallel.Background(threaded)

    def job(i):
        def run():
            if i == 0 and threaded:
                assert release.wait(5)           # the caller goes on meanwhile
            done.append((i, threading.current_thread() is threading.main_thread()))
        return run
    for i in range(3):
        background.add(job(i))
    assert done == ([] if threaded else [(0, True), (1, True), (2, True)])
    release.set()
    background.wait()
    assert done == [(i, not threaded) for i in range(3)]

    failing = parallel.Background(threaded)
    with pytest.raises(ZeroDivisionError):
        failing.add(lambda: 1 / 0)                     # raised at once, or ...
        failing.add(lambda: done.append("skipped"))    # (after an error, none runs)
        failing.wait()                                 # ... once it has run behind
    with pytest.raises(ZeroDivisionError):
        failing.add(lambda: None)
    assert "skipped" not in done


def test_a_stopped_background_job_sees_stopping_and_the_rest_are_dropped():
    background, started, steps = parallel.Background(True), threading.Event(), []

    def long_job():
        started.set()
        while not background.stopping.is_set():
            steps.append(1)
            background.stopping.wait(0.01)
    background.add(long_job)
    background.add(lambda: steps.append("dropped"))
    assert started.wait(5)
    background.stop()                    # returns once the thread is done
    assert not background.thread.is_alive() and "dropped" not in steps


def test_map_ordered_sets_stop_when_it_raises_and_drops_the_items_not_started(monkeypatch):
    """An error in one item, or in the caller, sets ``stop`` before waiting for the items
    started: a long item that reads it ends early; the items after are never run."""
    monkeypatch.setenv("RNNLM_NUM_THREADS", "2")
    started, ran = threading.Event(), []

    def item(i):
        ran.append(i)
        if i == 0:                       # long: until told to stop
            started.set()
            assert stop.wait(10)
            return "stopped"
        assert started.wait(10)
        raise ValueError(f"item {i} failed")
    stop = threading.Event()
    results = parallel.map_ordered(item, range(100), stop)
    with pytest.raises(ValueError, match="item 1 failed"):
        list(results)        # (item 0's result waits for stop, set on the way out)
    assert stop.is_set() and len(ran) <= 6    # at most 2 a thread taken ahead

    stop, started = threading.Event(), threading.Event()
    results = parallel.map_ordered(lambda i: i, range(10), stop)
    assert next(results) == 0
    results.close()                          # the caller leaves early: stop is set too
    assert stop.is_set()


def test_map_ordered_raises_an_error_that_came_before_the_caller_waited(monkeypatch):
    """An item that failed before the caller asked for the first result is raised at
    once, not after the item ahead of it ends (a long one: until told to stop)."""
    monkeypatch.setenv("RNNLM_NUM_THREADS", "2")
    submitted = []

    class Recording(parallel.ThreadPoolExecutor):
        def submit(self, *args):
            submitted.append(super().submit(*args))
            return submitted[-1]
    monkeypatch.setattr(parallel, "ThreadPoolExecutor", Recording)
    stop, saw_stop = threading.Event(), []

    def item(i):
        if i == 1:
            raise ValueError("item 1 failed")
        saw_stop.append(stop.wait(5))

    def items():
        yield from (0, 1)
        concurrent.futures.wait(submitted[1:])     # item 1 has failed: then the caller waits
    with pytest.raises(ValueError, match="item 1 failed"):
        list(parallel.map_ordered(item, items(), stop))
    assert saw_stop == [True]          # item 0 ended because stop was set, not on its own


@pytest.fixture
def threaded(monkeypatch):
    """Cut anything of more than 7 items into 3 parts."""
    monkeypatch.setattr(parallel, "MIN_PART", 7)
    monkeypatch.setenv("RNNLM_NUM_THREADS", "3")


def random_sentences(rng, words, count):
    return [[words[i] for i in rng.integers(0, len(words), rng.integers(0, 9))]
            for _ in range(count)]


def test_ngram_scores_are_the_same_however_the_sentences_are_cut(threaded, monkeypatch):
    rng = np.random.default_rng(1)
    words = list("abcdefg")
    vocab, corpus = Vocabulary.build(random_sentences(rng, words, 60))
    counts = count_ngrams(corpus.ids, corpus.lengths, 4, len(vocab), vocab.bos_id,
                          vocab.eos_id)
    model = NgramModel(vocab, estimate(counts, "kneser-ney", vocab.bos_id), {})
    test = model.vocab.encode(random_sentences(rng, words + ["zz"], 40) + [[]])
    cut = model.score(test.ids, test.lengths)
    monkeypatch.setenv("RNNLM_NUM_THREADS", "1")
    whole = model.score(test.ids, test.lengths)
    assert np.array_equal(cut.logprob, whole.logprob)
    assert np.array_equal(cut.order, whole.order)
    assert np.array_equal(cut.sentence_ends, whole.sentence_ends)
    assert cut.sentence_ends[-1] == test.ids.size + test.lengths.size


def test_word_lookups_are_the_same_however_the_tokens_are_cut(threaded, monkeypatch):
    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(50)] + ["x" * 20]
    vocab = Vocabulary(words)
    text = " ".join(words[3:] + ["w50", "y" * 20, "w7"]) + "\n" + "w1 w2\n"
    spans = Tokenizer(TokenizerConfig(kind="whitespace")).token_spans(text)
    cut = vocab.byte_index.lookup(spans.data, spans.starts, spans.sizes)
    assert cut.tolist() == list(range(3, len(words))) + [-1, -1, 10, 4, 5]
    monkeypatch.setenv("RNNLM_NUM_THREADS", "1")
    assert vocab.byte_index.lookup(spans.data, spans.starts, spans.sizes).tolist() == \
        cut.tolist()


def blas_threads_asked(args, threads: str) -> str:
    """``OPENBLAS_NUM_THREADS`` after ``rnnlm ARGS`` ran with ``RNNLM_NUM_THREADS=threads``
    (in a process of its own: this one has NumPy loaded already)."""
    code = ("import os; from rnnlm_cli.cli import cli; "
            f"cli({[str(a) for a in args]!r}, standalone_mode=False); "
            "print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {**os.environ, "RNNLM_NUM_THREADS": threads}
    env.pop("OPENBLAS_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.mark.parametrize("threads, blas", [("1", "1"), ("2", "None")])
def test_perplexity_on_one_thread_asks_blas_for_one_too(tmp_path, threads, blas):
    """On one thread for its blocks (a busy machine; here RNNLM_NUM_THREADS=1),
    ``perplexity`` asks BLAS for one thread too, before NumPy loads."""
    from test_cli_errors import assert_ok, run, write
    corpus = write(tmp_path / "c.txt", "a b c\nb c a\n")
    assert_ok(run("train-ngram", corpus, "-o", tmp_path / "m.npz", "--order", "2"))
    assert blas_threads_asked(["perplexity", tmp_path / "m.npz", corpus], threads) == blas


@pytest.mark.parametrize("threads, blas", [("1", "1"), ("2", "None")])
def test_train_rnn_on_a_busy_machine_asks_blas_for_one_thread(tmp_path, threads, blas):
    """``train-rnn`` too (its options load NumPy: the group asks before they do): a
    2-thread product waits until both threads get a core."""
    from test_cli_errors import write
    corpus = write(tmp_path / "c.txt", "a b c\nb c a\n" * 5)
    args = ["train-rnn", corpus, "-o", tmp_path / "r.npz", "--hidden", "4", "--epochs", "1",
            "--bptt", "3", "--batch-size", "2"]
    assert blas_threads_asked(args, threads) == blas
    assert (tmp_path / "r.npz").exists()
