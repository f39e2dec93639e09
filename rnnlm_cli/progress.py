"""Progress bars on stderr: a tqdm bar when stderr is a terminal, nothing otherwise.

``bar(**tqdm_options)`` is the one way the commands make a bar. Off a terminal it returns
``NoBar``, whose methods do nothing, so no tqdm object exists at all in a pipe, a test or a
batch job. On a terminal the tqdm object is made so that an interrupt arriving inside its
constructor cannot print a traceback at exit: tqdm before 4.68 reads ``self.disable`` in
``__del__``, which a constructor stopped halfway through has not set yet.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Callable, Optional


class NoBar:
    """The bar when nobody can see one: every method tqdm's callers use, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str = None, refresh: bool = True) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def clear(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def on_terminal() -> bool:
    """Whether stderr is a terminal, where bars (and ``train-rnn``'s chart) are drawn."""
    return sys.stderr.isatty()


def bar(**options):
    """A tqdm bar on stderr with ``options`` if stderr is a terminal, else a ``NoBar``."""
    if not on_terminal():
        return NoBar()
    from tqdm import tqdm
    made = tqdm.__new__(tqdm)
    made.disable = True   # what __del__ reads if __init__ is interrupted (see above)
    made.__init__(file=sys.stderr, **options)
    return made


@contextmanager
def bytes_bar(desc: str, total: Optional[int]):
    """A ``bar`` counting bytes (``total`` if known: then tqdm shows the time left), closed
    when the block ends."""
    with steps_bar(desc, total, unit="B", unit_scale=True, unit_divisor=1024) as made:
        yield made


@contextmanager
def steps_bar(desc: str, total: Optional[int], **options):
    """A ``bar`` of ``total`` steps, closed when the block ends."""
    made = bar(total=total, desc=desc, leave=False, **options)
    try:
        yield made
    finally:
        made.close()


def shared(update: Callable[[int], None]) -> Callable[[int], None]:
    """``update`` (a bar's) made safe to call from several threads at once."""
    lock = threading.Lock()

    def locked(size: int) -> None:
        with lock:
            update(size)
    return locked
