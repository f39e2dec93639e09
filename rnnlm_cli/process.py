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
  everything that cleans up after Ctrl-C cleans up after it too.
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
    signal.signal(signal.SIGTERM, _terminate)
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


def _terminate(signum, frame):
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    sys.stderr.write(f"Warning: {text}\n")
    sys.stderr.flush()
