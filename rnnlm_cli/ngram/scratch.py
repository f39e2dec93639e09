"""Scratch space for bounded-memory training: a temporary folder of ``.npy`` tables that
is removed whatever happens (success, an error, Ctrl-C, SIGTERM).

A table is a ``.npy`` file of one-dimensional records (a structured dtype), written a
chunk at a time (``TableWriter``) and read a chunk at a time (``TableReader``), never
mapped into memory: a mapped file's pages count towards the process's memory once read.
A table in progress has a header of fixed size that is rewritten with the final number
of rows when it is closed, so any ``np.load`` reads a finished table.

Every write goes through ``write_bytes``; a write that fails (a full disk, a quota, a
file-size limit) is a ``TrainingError`` naming the folder, not a traceback.

Writing and deleting tables happen behind the caller's back (``_WriteBehind``): one
thread writes the chunks appended and unlinks the tables removed, in order, while the
caller computes the next chunk; a write that failed is raised by the table's next
``append`` or its ``close``.
"""
from __future__ import annotations

import errno
import itertools
import os
import queue
import shutil
import tempfile
import threading
from typing import Callable, Optional

import numpy as np

from rnnlm_cli.errors import TrainingError
from rnnlm_cli.outputs import interrupts_held

PREFIX = "rnnlm-train-"
_HEADER_SIZE = 256        # bytes of a table's .npy header (a multiple of 64, as NumPy's)
_ADVICE = {errno.ENOSPC: "; give --temp-dir on a disk with more room",
           errno.EDQUOT: "; give --temp-dir on a disk with more room",
           errno.EFBIG: " (a file-size limit: ulimit -f)"}


class Scratch:
    """A temporary folder inside ``parent`` (the system's temporary folder by default),
    made when the first file is, and removed with everything in it when the ``with``
    block ends, however it ends."""

    def __init__(self, parent: Optional[str] = None):
        self.parent = parent or tempfile.gettempdir()
        self._folder: Optional[str] = None
        self._names = itertools.count()
        self.files_made = 0
        self.bytes_written = 0

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        with interrupts_held():          # a second Ctrl-C does not leave half a folder
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
        if isinstance(error, OSError) and self._holds(error.filename):
            raise TrainingError(f"{self.parent}: a temporary file is gone ("
                                f"{error.strerror or error}: {os.path.basename(error.filename)}"
                                "); was the folder cleaned up during the run?") from None
        return False

    def _holds(self, path) -> bool:
        """Whether ``path`` (a file an error names) is in the folder."""
        return self._folder is not None and isinstance(path, str) and \
            os.path.dirname(os.path.abspath(path)) == os.path.abspath(self._folder)

    @property
    def folder(self) -> str:
        if self._folder is None:
            with interrupts_held():      # made and noted together, for __exit__
                try:
                    self._folder = tempfile.mkdtemp(prefix=PREFIX, dir=self.parent)
                except OSError as exc:
                    raise self.failure(exc) from None
        return self._folder

    def path(self, name: str) -> str:
        """A new file name in the folder (``name`` says what it holds)."""
        self.files_made = next(self._names) + 1
        return os.path.join(self.folder, f"{self.files_made:05d}-{name}.npy")

    def writer(self, name: str, dtype) -> "TableWriter":
        return TableWriter(self.path(name), np.dtype(dtype), self)

    def failure(self, exc: OSError) -> TrainingError:
        """The error for a write to the scratch folder that failed."""
        return TrainingError(f"{self.parent}: cannot write temporary files: "
                             f"{exc.strerror or exc} (after {self.bytes_written >> 20} MB)"
                             f"{_ADVICE.get(exc.errno, '')}")


def remove(path: str) -> None:
    """Delete a table that is no longer needed (disk space is part of the budget too),
    once the writes before are done (``_WriteBehind``)."""
    _BEHIND.put(None, path)


def settle() -> None:
    """Wait until every write and removal handed to ``_WriteBehind`` is done."""
    _BEHIND.wait(lambda: _BEHIND.pending_jobs == 0)


def _unlink(path: str) -> None:
    """Delete a table; one that cannot be is left to the folder's removal (``Scratch``)."""
    try:
        os.unlink(path)
    except OSError:
        pass


class _WriteBehind:
    """A thread that writes tables' chunks and deletes tables, in the order given, while
    the caller goes on (the kernel's copy into the page cache, and its freeing of a
    deleted table's pages, took a tenth of train-ngram's time). At most ``LIMIT`` bytes
    wait to be written: ``put`` waits for room beyond that."""

    LIMIT = 32 << 20

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.changed = threading.Condition()
        self.pending_bytes = self.pending_jobs = 0
        self.thread: Optional[threading.Thread] = None

    def put(self, writer: Optional["TableWriter"], data) -> None:
        """Write ``data`` (a buffer) to ``writer``'s file, or unlink the path ``data``
        if ``writer`` is None."""
        size = 0 if writer is None else len(data)
        with self.changed:
            while self.pending_bytes and self.pending_bytes + size > self.LIMIT:
                self.changed.wait()
            self.pending_bytes += size
            self.pending_jobs += 1
            if writer is not None:
                writer.pending_jobs += 1
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="rnnlm-write-behind")
                self.thread.start()
        self.jobs.put((writer, data))

    def wait(self, done: Callable[[], bool]) -> None:
        with self.changed:
            while not done():
                self.changed.wait()

    def _run(self) -> None:
        while True:
            writer, data = self.jobs.get()
            size = 0 if writer is None else len(data)
            try:
                if writer is None:
                    _unlink(data)
                elif writer.error is None:
                    write_bytes(writer.file, data)
                    writer.scratch.bytes_written += size
            except BaseException as exc:     # raised by the table's next append or close
                writer.error = exc
            finally:
                with self.changed:
                    self.pending_bytes -= size
                    self.pending_jobs -= 1
                    if writer is not None:
                        writer.pending_jobs -= 1
                    self.changed.notify_all()


_BEHIND = _WriteBehind()


def write_bytes(file, data) -> None:
    """The one place tables are written (tests make it fail as a full disk would)."""
    file.write(data)


class TableWriter:
    """Appends record arrays to a new ``.npy`` table; ``close()`` makes it whole. The
    records appended are written by ``_WriteBehind``'s thread: they must not change
    afterwards (every caller appends arrays it has just made)."""

    def __init__(self, path: str, dtype: np.dtype, scratch: Scratch):
        self.path, self.dtype, self.scratch = path, dtype, scratch
        self.rows = 0
        self.pending_jobs = 0
        self.error: Optional[BaseException] = None     # a write that failed, behind
        try:
            self.file = open(path, "wb")
        except OSError as exc:
            raise scratch.failure(exc) from None
        self._write(_header(dtype, 0))

    def append(self, records: np.ndarray) -> None:
        if records.dtype != self.dtype:
            raise TypeError(f"{self.path}: records of {records.dtype}, not {self.dtype}")
        if records.size:
            self._write(np.ascontiguousarray(records).view(np.uint8))
            self.rows += records.size

    def close(self) -> str:
        """Finish the table (its header gets the number of rows); its path."""
        if self.file.closed:
            return self.path
        try:
            _BEHIND.wait(lambda: self.pending_jobs == 0)
            self._raise_failure()
            self.file.seek(0)
            write_bytes(self.file, _header(self.dtype, self.rows))
            self.file.close()
        except OSError as exc:
            raise self.scratch.failure(exc) from None
        finally:
            if not self.file.closed:
                self._close_quietly()
        return self.path

    def _write(self, data) -> None:
        self._raise_failure()
        _BEHIND.put(self, data)
        if len(data) > _BEHIND.LIMIT:    # (a large array is not kept alive behind the caller)
            _BEHIND.wait(lambda: self.pending_jobs == 0)
            self._raise_failure()

    def _raise_failure(self) -> None:
        """Raise the error of a write that failed behind (``_WriteBehind``)."""
        if self.error is not None:
            error = self.error
            self._close_quietly()
            if isinstance(error, OSError):
                raise self.scratch.failure(error) from None
            raise error

    def _close_quietly(self) -> None:
        try:
            _BEHIND.wait(lambda: self.pending_jobs == 0)   # (no write into a closed file)
        finally:
            try:
                self.file.close()
            except OSError:
                pass    # the error that brought us here is the one to report

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            self.close()
        else:
            self._close_quietly()
        return False


def header_size() -> int:
    """The bytes before a table's first record."""
    return _HEADER_SIZE


def _header(dtype: np.dtype, rows: int) -> bytes:
    """A ``.npy`` version 1.0 header for ``rows`` records, padded to ``_HEADER_SIZE``."""
    text = (f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, "
            f"'fortran_order': False, 'shape': ({rows},), }}")
    room = _HEADER_SIZE - 10
    if len(text) + 1 > room:
        raise ValueError(f"a record type too long for a table header: {dtype}")
    text = text.ljust(room - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + text.encode("latin1")


class TableReader:
    """Reads a ``.npy`` table of records front to back, ``read(rows)`` at a time (each
    read's size in bytes told to ``meter``, if given: a progress bar)."""

    def __init__(self, path: str, meter: Optional[Callable[[int], None]] = None):
        self.path, self.meter = path, meter
        self._file = open(path, "rb")
        version = np.lib.format.read_magic(self._file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(self._file)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(self._file)
        self.dtype = dtype
        self.rows = int(shape[0]) if shape else 0
        self.start = self._file.tell()
        self.position = 0

    @property
    def remaining(self) -> int:
        return self.rows - self.position

    def read(self, rows: int) -> np.ndarray:
        """The next ``rows`` records (fewer at the end)."""
        rows = max(0, min(rows, self.remaining))
        records = np.empty(rows, dtype=self.dtype)
        if rows:
            got = self._file.readinto(records.view(np.uint8))
            if got != records.nbytes:
                raise TrainingError(f"{self.path}: a temporary file was cut short "
                                    "(was the temporary folder cleaned up under us?)")
            if self.meter:
                self.meter(records.nbytes)
        self.position += rows
        return records

    def seek(self, row: int) -> None:
        self._file.seek(self.start + row * self.dtype.itemsize)
        self.position = row

    def chunks(self, rows: int):
        """The remaining records, ``rows`` at a time."""
        while self.remaining:
            yield self.read(rows)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TableReader":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class TableArray:
    """A one-column table as a *chunked array* (``modelfile.write_model`` writes it to a
    model file a chunk at a time)."""

    def __init__(self, path: str, chunk_bytes: int, meter: Callable[[int], None],
                 dtype=None):
        """``dtype``: the array's, if not the table's (a cast of each chunk)."""
        self.path, self.chunk_bytes, self.meter = path, chunk_bytes, meter
        with TableReader(path) as reader:
            self.dtype = np.dtype(dtype or reader.dtype)
            self.shape = (reader.rows,)

    def chunks(self):
        with TableReader(self.path) as reader:
            for chunk in reader.chunks(max(1, self.chunk_bytes // reader.dtype.itemsize)):
                self.meter(chunk.nbytes)
                yield chunk.astype(self.dtype, copy=False)


def table_rows(path: str) -> int:
    """The records in the table at ``path`` (its header read, nothing else)."""
    with TableReader(path) as table:
        return table.rows


def read_table(path: str) -> np.ndarray:
    """A whole (small) table."""
    with TableReader(path) as reader:
        return reader.read(reader.rows)
