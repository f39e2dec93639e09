"""Independent pieces of array work on several cores at once, in Python threads.

NumPy releases the GIL inside its loops (sorting, binary searches, gathers and
scatters, arithmetic on large arrays), so threads that each work on their own slice
of the data run in parallel; only the Python between the NumPy calls takes turns.
Scoring a text splits it into groups of whole sentences (no n-gram crosses a sentence
boundary) and looking words up splits the tokens: on two cores the n-gram lookups of
the Vietnamese Wikipedia test set take 62 ms instead of 107.

Scoring a long text (``perplexity``) goes further: ``map_ordered`` hands whole blocks of
it to worker threads, each block going through every step (tokens, word ids, n-gram
lookups) in one thread, and a worker does not cut its block again (``parts_for`` is 1
inside a worker).

``Background`` runs jobs one after another in a thread of its own while the caller goes
on (``train-ngram``'s estimate on disk makes each order's final tables that way).

``RNNLM_NUM_THREADS`` in the environment sets the number of threads (1: no threads at
all; at most ``THREADS_PER_CORE`` per core, since each thread holds blocks of the text
in memory); by default there is one per core this process may run on, or only one while
the machine is busy (``busy``).
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from queue import Queue
from typing import (TYPE_CHECKING, Callable, Iterable, Iterator, List, Optional, Sequence,
                    TypeVar)

if TYPE_CHECKING:           # (NumPy is imported where it is used: cli.perplexity asks
    import numpy as np      # thread_count before NumPy loads)

T = TypeVar("T")
U = TypeVar("U")

MIN_PART = 1 << 15     # items: below this, a thread costs more than it saves
THREADS_PER_CORE = 4   # RNNLM_NUM_THREADS is capped there: more only hold more memory

_worker = threading.local()   # .active: this thread is a worker of map_ordered


def thread_count() -> int:
    """How many threads to use: ``RNNLM_NUM_THREADS`` if set (at most
    ``THREADS_PER_CORE`` per usable core); else one per usable core, or one while they
    are all busy."""
    cores = usable_cores()
    wanted = threads_asked()
    if wanted:
        return min(wanted, THREADS_PER_CORE * cores)
    return 1 if busy(cores) else cores


def threads_asked() -> Optional[int]:
    """``RNNLM_NUM_THREADS`` as a whole number above 0 (ASCII digits), or None where it is
    unset or unusable (``environment_problem`` says which)."""
    wanted = os.environ.get("RNNLM_NUM_THREADS", "").strip()
    if wanted.isascii() and wanted.isdigit():
        digits = wanted.lstrip("0")[:10]  # (10 digits: far above any cap, and quick)
        return int(digits) if digits else None
    return None


def environment_problem() -> Optional[str]:
    """What is wrong with ``RNNLM_NUM_THREADS``, if it is set and unusable."""
    wanted = os.environ.get("RNNLM_NUM_THREADS", "")
    if not wanted.strip() or threads_asked() is not None:
        return None
    shown = wanted if len(wanted) <= 20 else wanted[:20] + "..."
    return (f"RNNLM_NUM_THREADS={shown!r} is not a number of threads (a whole number from 1); "
            "using the default")


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:             # not on Linux
        return os.cpu_count() or 1


def busy(cores: int) -> bool:
    """Whether the machine's cores are all taken already by others: its 1-minute load
    average (tasks running or waiting to run), less this process's own share of it
    (``own_load``), is at least their number, as ``make -l`` judges it before starting
    another job. (Counting its own threads, a command on two cores judged the machine
    busy a minute into its work on both and went on with one.) More threads then get no
    core of their own (Linux commonly shares the processor between sessions or control
    groups, not between threads) and only cost: each thread's own memory, faulted in page
    by page, and the threads slowing each other in the shared caches. Scoring viwiki's
    training text while other work keeps the two cores busy, one thread is about 10%
    faster than two (bench/README.md)."""
    try:
        return os.getloadavg()[0] - own_load() >= cores
    except (AttributeError, OSError):   # no load average (Windows)
        return False


LOAD_SECONDS = 60.0     # the time constant of the 1-minute load average
_wall_clock, _cpu_clock = time.monotonic, time.process_time
_own = {"at": _wall_clock(), "cpu": _cpu_clock(), "load": 0.0}
_own_lock = threading.Lock()


def own_load() -> float:
    """About what this process adds to the 1-minute load average: the cores it kept busy
    (its CPU time, all threads, per second of wall time since the last call), averaged
    as the kernel averages the load, decaying by exp(-t / 60 s)."""
    with _own_lock:
        now, cpu = _wall_clock(), _cpu_clock()
        elapsed = now - _own["at"]
        if elapsed >= 1.0:             # (shorter intervals: noise, not a rate)
            decay = math.exp(-elapsed / LOAD_SECONDS)
            rate = (cpu - _own["cpu"]) / elapsed
            _own.update(at=now, cpu=cpu, load=_own["load"] * decay + rate * (1 - decay))
        return _own["load"]


def parts_for(items: int) -> int:
    """How many parts to cut ``items`` into: one per thread, each at least ``MIN_PART``;
    one inside a worker of ``map_ordered`` (the other threads have blocks of their own)."""
    if getattr(_worker, "active", False):
        return 1
    return max(1, min(thread_count(), items // MIN_PART))


def even_cuts(sizes: np.ndarray, parts: int) -> np.ndarray:
    """Indices ``0 = c_0 <= c_1 <= ... <= c_parts = len(sizes)`` cutting the sequence of
    ``sizes`` (tokens per sentence, say) into ``parts`` runs of about equal total size."""
    import numpy as np
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if ends.size else 0
    inner = np.searchsorted(ends, np.arange(1, parts) * total / parts)
    return np.concatenate(([0], inner, [len(sizes)])).astype(np.int64)


def run_all(tasks: Sequence[Callable[[], T]]) -> List[T]:
    """Each task's result, in order; the first task runs in the calling thread, the others
    in threads of their own. An exception in any task is raised here."""
    if len(tasks) == 1:
        return [tasks[0]()]
    results: List = [None] * len(tasks)
    errors: List[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = tasks[index]()
        except BaseException as exc:        # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(1, len(tasks))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class Background:
    """Jobs run one after another, in the order given, in a thread of their own while the
    caller goes on (with ``threaded`` False, each at once, in the caller's thread).
    ``add`` hands a job over; ``wait`` waits for all and raises the first error, which
    ``add`` raises too once it has happened (the jobs after it are skipped). ``stop``
    (on the way out after an error) sets ``stopping``, which a long job reads between
    its steps to give up early, and waits for the thread."""

    def __init__(self, threaded: bool):
        self.stopping = threading.Event()
        self.error: Optional[BaseException] = None
        self.jobs: Optional[Queue] = Queue() if threaded else None
        self.thread = threading.Thread(target=self._work, daemon=True) if threaded else None
        if self.thread:
            self.thread.start()

    def add(self, job: Callable[[], None]) -> None:
        self._raise()
        if self.jobs is None:
            self._run(job)
            self._raise()
        else:
            self.jobs.put(job)

    def wait(self) -> None:
        self._end()
        self._raise()

    def stop(self) -> None:
        self.stopping.set()
        self._end()

    def _end(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.error is None and not self.stopping.is_set():
                self._run(job)

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:        # handed to the caller by add, wait
            self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def map_ordered(func: Callable[[T], U], items: Iterable[T],
                stop: Optional[threading.Event] = None, threads: Optional[int] = None,
                held: Optional[int] = None) -> Iterator[U]:
    """``map(func, items)`` in worker threads, one per thread (``threads``, by default
    ``thread_count``), the results in the order of ``items``. At most ``held`` items (by
    default two per thread more than the one whose result the caller is waiting for) are
    taken from ``items`` and not yet given back, so memory stays bounded whatever their
    number. An exception in ``func`` is raised here as soon as it happens,
    whichever item it came from. On the way out after one (or after the caller's own:
    Ctrl-C) ``stop`` is set, which a long ``func`` reads between its steps to give up
    early, the items started are waited for and the others dropped."""
    workers = threads or thread_count()
    if workers == 1:
        yield from map(func, items)
        return
    held = held or 2 * workers + 1
    executor = ThreadPoolExecutor(workers, initializer=_become_worker)
    pending: deque = deque()
    try:
        for item in items:
            pending.append(executor.submit(func, item))
            if len(pending) >= held:
                yield _first_result(pending)
        while pending:
            yield _first_result(pending)
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _first_result(pending: deque):
    """The result of the first of the ``pending`` futures (taken off), once it is done;
    or the error of any of them that has failed (before the call, or meanwhile), at once."""
    while True:
        for future in pending:
            if future.done() and future.exception() is not None:
                future.result()
        if pending[0].done():
            return pending.popleft().result()
        wait([future for future in pending if not future.done()],
             return_when=FIRST_COMPLETED)


def _become_worker() -> None:
    _worker.active = True
