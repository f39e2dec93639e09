"""The ``rnnlm`` process before a command runs: standard streams, SIGTERM, warnings.

``prepare()`` is called once by the console script (``cli.main``), never by the library:

- A standard stream the shell closed (``<&-``, ``>&-``, ``2>&-``) gets ``/dev/null`` on
  its descriptor, so the next file opened does not take fd 0, 1 or 2 by accident. Then:
  a closed stdin reads as an error (``tokenizer`` says so when ``-`` is read); a closed
  stdout is an error at the first result written (``StandardOutputError``: results that
  nobody sees must not pass for success); a closed stderr silently swallows progress and
  messages (the exit status still tells).
- Writing results to stdout that fails (``> /dev/full``) is a ``StandardOutputError``
  naming ``<stdout>``. A broken pipe is left alone: ``cli`` exits quietly, as Unix tools
  do when ``| head`` has read enough.
- stderr never fails: progress bars and messages that cannot be written (a closed pipe,
  a full disk) are dropped, so a long training run is never stopped by its own progress.
- SIGTERM (``kill``, a scheduler's stop) raises ``Terminated``, a ``KeyboardInterrupt``:
  everything that cleans up after Ctrl-C cleans up after it too. Once one of them has
  been raised, the Ctrl-Cs and SIGTERMs after it are ignored: the cleanup runs to its end.
- A Python or NumPy warning is one ``Warning: ...`` line, not the file and line of the
  code that raised it.
"""
from __future__ import annotations

import io
import os
import signal
import sys
import warnings

from rnnlm_cli.errors import RnnlmError


class StandardOutputError(RnnlmError):
    """Results could not be written to standard output (closed, or a write failed)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled as Ctrl-C is."""

    exit_code = 128 + signal.SIGTERM


def prepare() -> None:
    """Set the process up for a command (see the module docstring)."""
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    for fd in closed:
        _reopen_on_devnull(fd)
    sys.stdout = _text_stream(_GuardedStdout(1, closed=1 in closed), sys.stdout)
    sys.stderr = _text_stream(_ForgivingStderr(2, closed=2 in closed), sys.stderr)
    handle_interrupts()
    warnings.showwarning = _show_warning


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _reopen_on_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    if devnull != fd:
        os.dup2(devnull, fd)
        os.close(devnull)


def _text_stream(raw: io.RawIOBase, like) -> io.TextIOWrapper:
    """A text stream over ``raw`` with the encoding of the stream it replaces."""
    encoding = getattr(like, "encoding", None) or "utf-8"
    errors = getattr(like, "errors", None) or "strict"
    line_buffering = bool(getattr(like, "line_buffering", False))
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                            line_buffering=line_buffering, write_through=False)


class _FdWriter(io.RawIOBase):
    """A writable raw stream over a file descriptor that it does not own."""

    name = "<fd>"

    def __init__(self, fd: int, closed: bool):
        super().__init__()
        self.fd, self.was_closed = fd, closed

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return not self.was_closed and os.isatty(self.fd)

    def close(self) -> None:
        super().close()   # the descriptor stays open: it is the process's, not ours


class _GuardedStdout(_FdWriter):
    """stdout: a failed write is a ``StandardOutputError``; a broken pipe stays one."""

    name = "<stdout>"

    failed = False   # after the one error, the rest is dropped (the exit flushes again)

    def write(self, data) -> int:
        if self.failed:
            return len(data)
        if self.was_closed:
            self.failed = True
            raise StandardOutputError("standard output is closed: the results would be "
                                      "lost (redirect it to a file or /dev/null)")
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.failed = True
            raise StandardOutputError(f"<stdout>: cannot write: {exc.strerror}") from None


class _ForgivingStderr(_FdWriter):
    """stderr: what cannot be written is dropped (the exit status still tells)."""

    name = "<stderr>"

    def write(self, data) -> int:
        if not self.was_closed:
            try:
                os.write(self.fd, data)
            except OSError:
                self.was_closed = True   # a reader that went away does not come back
        return len(data)


def handle_interrupts() -> None:
    """Ctrl-C and SIGTERM raise, the first of them only (``_interrupt``)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    sys.unraisablehook = _unraisable


def _unraisable(unraisable) -> None:
    """Python reports a signal that arrived for ``_interrupt`` but found ``SIG_IGN`` in
    its place when its turn came ("Signal 15 ignored due to race condition", with a
    traceback header): ignoring it is what was meant, so that report is dropped; any
    other is made as Python makes it."""
    error = unraisable.exc_value
    if isinstance(error, OSError) and "ignored due to race condition" in str(error):
        return
    sys.__unraisablehook__(unraisable)


def ignore_interrupts() -> None:
    """The process is on its way out after an interrupt that did not come through
    ``_interrupt`` (``train-rnn`` takes the first Ctrl-C itself): the next ones are
    ignored too. Only where ``handle_interrupts`` was called (the console script, not a
    library's caller)."""
    if signal.getsignal(signal.SIGINT) is _interrupt:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _interrupt(signum, frame):
    """Ctrl-C (SIGINT) raises ``KeyboardInterrupt``, SIGTERM ``Terminated``; the first
    only: the signals after it are ignored (``SIG_IGN``, which Python leaves in place as
    it exits, where it would put back the default, deadly action over a handler of its
    own), so that the cleanup it starts (threads joined, temporary files removed, the one
    ``Error:`` line) runs to its end, not broken off by a second Ctrl-C with a traceback
    from wherever it landed."""
    for held in (signal.SIGINT, signal.SIGTERM):
        signal.signal(held, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    sys.stderr.write(f"Warning: {text}\n")
    sys.stderr.flush()
