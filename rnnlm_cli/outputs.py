"""Output files that are whole or absent: checked before the work, written beside their
target, renamed into place.

The promise of every command that writes a file (a model, an ARPA file, a checkpoint):
an interrupted or failed run leaves the files it would have replaced as they were, and
no temporary file behind. How:

- ``check_outputs`` runs before any work: an output must be a regular file or not exist
  yet (a device, FIFO, socket or directory at the path is refused, never replaced: as
  root, ``-o /dev/null`` would otherwise replace the device node), its folder must exist
  and be writable, and two outputs must not be the same file.
- ``atomic_outputs`` writes each file to a temporary beside its target (same file system,
  so the rename is atomic), flushes it to disk, then renames all of them into place with
  Ctrl-C and SIGTERM held back, so a group of files (``-o M --arpa A``) is replaced
  together or not at all. Should a rename fail half-way (a sticky folder refusing one),
  the files already replaced are put back from hard-link backups.
- A symbolic link is written through: the file it points to is replaced, the link stays.
- A replaced file keeps its permission bits (a 600 model stays 600); a new one gets
  0666 less the umask, as any file the user creates.

``written`` lists what the process has written so far, for the message after an
interruption.
"""
from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

from rnnlm_cli.errors import ModelFileError, OptionError

TEMP_PREFIX = ".rnnlm-"
TEMP_SUFFIX = ".tmp"

written: List[str] = []   # the paths renamed into place by this process, in order


# -- before the work ---------------------------------------------------------------------------

def check_outputs(outputs: Dict[str, Optional[str]],
                  inputs: Sequence[Optional[str]] = ()) -> None:
    """Fail now, not after a long run, if an output cannot be written.

    ``outputs`` maps a name for each output (an option, as the user typed it) to its path
    (``None``: not asked for). Two names for one file are an ``OptionError``, and so is an
    output that is one of the ``inputs`` (files the run reads: a corpus, a model; ``-``
    and ``None`` are skipped), which the run would replace with what it writes.
    """
    read = {_identity(path): path for path in inputs if path not in (None, "-")}
    seen: Dict[str, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        check_output(path)
        identity = _identity(path)
        if identity in seen:
            raise OptionError(f"{seen[identity]} and {name} name the same file ({path}); "
                              "give each its own file")
        if identity in read:
            raise OptionError(f"{name} {path} is {read[identity]}, a file this run reads; "
                              "writing it would destroy it: give another file")
        seen[identity] = name


def check_output(path: str) -> None:
    """Raise ``OptionError`` or ``ModelFileError`` if a file cannot be written at ``path``."""
    if path == "":
        raise OptionError("an output file name is empty")
    if path == "-":
        raise OptionError("-: output files are written to disk, not to standard output; "
                          "give a file name")
    target = os.path.realpath(path)
    _check_replaceable(path, target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ModelFileError(f"{path}: cannot write: No such file or directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ModelFileError(f"{path}: cannot write: Permission denied")


def check_folder(path: str) -> None:
    """``OptionError`` unless ``path`` is a folder where files can be made (a place for
    temporary files)."""
    if not os.path.exists(path):
        raise OptionError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise OptionError(f"{path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OptionError(f"{path}: not writable (permission denied)")


def _check_replaceable(path: str, target: str) -> Optional[os.stat_result]:
    """The target's status if it exists; an error if it is anything but a regular file."""
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write: {exc.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise ModelFileError(f"{path}: is {_kind(status.st_mode)}, not a regular file; "
                             "refusing to replace it")
    return status


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _identity(path: str) -> str:
    """One key per file: its resolved path, or its device and inode if it exists (hard
    links are the same file under two names)."""
    target = os.path.realpath(path)
    try:
        status = os.stat(target)
    except OSError:
        return target
    return f"{status.st_dev}:{status.st_ino}"


# -- writing ----------------------------------------------------------------------------------

@contextmanager
def atomic_output(path: str, mode: str = "w"):
    """A file object whose contents replace ``path`` only if the block completes."""
    with atomic_outputs([path], mode) as (out,):
        yield out


@contextmanager
def atomic_outputs(paths: List[str], mode: str = "w"):
    """File objects, one per path, whose contents replace all the paths together, only if
    the block completes; on any error or interrupt every temporary is removed and every
    path is left as it was. A write that fails (disk full, file size limit) is a
    ``ModelFileError`` naming its file."""
    pending = [_Pending(path) for path in paths]
    last = [paths[0]]   # the output written to last: the one a failed write was for
    try:
        with interrupts_held():   # (a temporary made is a temporary noted, to be removed)
            for item in pending:
                item.open(mode)
        try:
            yield [_Tracked(item.file, item.path, last) for item in pending]
            for item in pending:
                last[0] = item.path
                item.finish()
        except OSError as exc:
            raise ModelFileError(f"{last[0]}: cannot write: {exc.strerror or exc}") from None
        with interrupts_held():
            _replace_all(pending)
    finally:
        for item in pending:
            item.discard()


class _Tracked:
    """A temporary's file object that notes, at each write, which output it is for."""

    def __init__(self, file, path: str, last: List[str]):
        self._file, self._path, self._last = file, path, last

    def write(self, data):
        self._last[0] = self._path
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


class _Pending:
    """One output on its way: the temporary file beside the target."""

    def __init__(self, path: str):
        self.path = path
        self.target = os.path.realpath(path)
        self.status = _check_replaceable(path, self.target)
        self.temp: Optional[str] = None
        self.file = None

    def open(self, mode: str) -> None:
        try:
            fd, self.temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                                             dir=os.path.dirname(self.target))
        except OSError as exc:
            raise ModelFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        self.file = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
        self._set_mode()

    def _set_mode(self) -> None:
        """The replaced file's permission bits (and owner, where allowed), or those of a
        new file; mkstemp makes 0600."""
        if self.status is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.temp, 0o666 & ~umask)
            return
        os.chmod(self.temp, stat.S_IMODE(self.status.st_mode))
        if (self.status.st_uid, self.status.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(self.temp, self.status.st_uid, self.status.st_gid)
            except OSError:
                pass   # not root: the new file is the writer's, as with any editor

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def discard(self) -> None:
        if self.file is not None and not self.file.closed:
            try:
                self.file.close()
            except OSError:
                pass   # the data is being thrown away; a failed flush changes nothing
        if self.temp is not None and os.path.lexists(self.temp):
            os.unlink(self.temp)


def _replace_all(pending: List[_Pending]) -> None:
    """Rename every temporary over its target; all of them, or none (rolled back)."""
    backups = [_backup(item) if len(pending) > 1 else None for item in pending]
    done: List[int] = []
    try:
        for i, item in enumerate(pending):
            try:
                os.replace(item.temp, item.target)
            except OSError as exc:
                raise ModelFileError(f"{item.path}: cannot replace: {exc.strerror}") from None
            item.temp = None
            done.append(i)
    except BaseException:
        for i in reversed(done):
            _restore(pending[i], backups[i])
        raise
    finally:
        for backup in backups:
            if backup is not None and os.path.lexists(backup):
                os.unlink(backup)
    written.extend(item.path for item in pending)


def _backup(item: _Pending) -> Optional[str]:
    """A hard link to the file about to be replaced (only where a later rename of the same
    group could still fail), so that it can be put back."""
    if item.status is None:
        return None
    backup = os.path.join(os.path.dirname(item.target),
                          f"{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}-"
                          f"{os.path.basename(item.target)}{TEMP_SUFFIX}")
    try:
        os.link(item.target, backup)
    except OSError:
        return None   # no hard links here: a failed group can then not restore this one
    return backup


def _restore(item: _Pending, backup: Optional[str]) -> None:
    if backup is not None:
        os.replace(backup, item.target)
    elif item.status is None:
        os.unlink(item.target)


@contextmanager
def interrupts_held():
    """Ctrl-C and SIGTERM wait until the block is done (the renames of one group): while
    it runs their handlers only note them, and the first one noted is raised again after
    it. (Blocking them in this thread with ``pthread_sigmask`` is not enough: the kernel
    gives a process's signal to any thread that does not block it, BLAS's or a pool's,
    and Python then runs the handler in the main thread all the same.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: List[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in held}
    for signum in held:
        signal.signal(signum, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if noted:
            signal.raise_signal(noted[0])
