"""Keep freed memory in the process (glibc's malloc), for training and scoring.

Both allocate and free the same large NumPy temporaries again and again: every training
chunk (at H=650 on PTB: the (T*B, |V|) logits, the embedding gradient, the gate
buffers, 7-17 MB each), and every order of an n-gram model's lookups over a whole text
(a few MB per array). glibc serves blocks this large with ``mmap`` or trims them off the
heap when freed, so the next use faults the same pages back in from the kernel: about
2,000 page faults and 15 ms of system time per training chunk at H=650, 8% of a step;
15,000 faults and about 70 ms when scoring the Vietnamese Wikipedia test set with an order-5
model. Raising malloc's mmap threshold to its maximum (32 MB on 64-bit) and its trim
threshold to 2 GiB keeps freed blocks on the heap for reuse; the peak RSS hardly
changes, as the same blocks are live at each step. (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment do the same from outside.)

Threads get arenas of their own from glibc, and what a thread frees below the mmap
threshold stays in its arena, out of the other threads' reach: ``train-ngram``'s sorts
on every core (``ngram/packed.py``) then held about 120 MB more at 10M words with
``--memory 200M`` (505 MB against 387 MB on one thread), 270 MB more at 100M words with
``--memory 2G``. ``one_arena`` has all threads allocate from the main heap, as
``MALLOC_ARENA_MAX=1`` would (397 MB); the threads' few large blocks hardly contend.

Kept blocks cost memory where one step's temporaries are not the next one's: the heap
keeps every freed block below 32 MB, and the next step's larger blocks are mapped on top.
``train-ngram`` on disk (``--memory 2G``, 100M words) peaked at 2.62 GB that way, in a
step that sorts nothing, after sorts whose groups made blocks of about 22 MB.
``give_back_free_memory`` (glibc's ``malloc_trim(0)``) returns the free pages of the heap
to the system when a step's sorts are done: 2.48 GB in 448 s. (After each sort instead:
2.44 GB, but 471-485 s, the pages faulted in again and again; mapping every block of
4 MB or more apart kept the peak down too, but made 10M words 28% slower.)
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1            # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_MAX = 32 << 20    # glibc's ceiling on 64-bit systems: 4 MiB * sizeof(long)
TRIM_THRESHOLD = 2**31 - 1     # the largest int mallopt takes: trim only past 2 GiB free


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says; False where there is no glibc
    (macOS, musl, Windows) or it refuses, in which case nothing is changed."""
    mallopt = _glibc_mallopt()
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def one_arena() -> bool:
    """All threads allocate from one heap (see the module docstring); to be called before
    the threads that share work start. False where there is no glibc or it refuses."""
    mallopt = _glibc_mallopt()
    return bool(mallopt and mallopt(M_ARENA_MAX, 1))


def give_back_free_memory() -> bool:
    """The heap's free pages returned to the system (see the module docstring); False
    where there is no glibc."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.malloc_trim(0)
    return True


def _glibc_mallopt():
    """glibc's ``mallopt`` through ctypes, or None where the C library is another."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _glibc():
    """The C library through ctypes if it is glibc, else None."""
    try:
        libc = ctypes.CDLL(None)     # the process's own symbols: libc, without a search
    except (OSError, TypeError):     # Windows has no such handle
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None
