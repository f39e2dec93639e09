"""Output paths (issue 12, point 2): what ``train-ngram`` and ``train-rnn`` may replace,
and that a failure at any point leaves every file as it was and no temporary behind.

Through the CLI (``CliRunner``), with failures injected where the operating system cannot
be made to fail on demand (a refused rename), and as a subprocess under a real file-size
limit (``ulimit -f``).
"""
from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_errors import CORPUS, assert_fails, assert_ok, run, write

SMALL_RNN = ["--hidden", "4", "--epochs", "1", "--batch-size", "4", "--bptt", "5"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    write(tmp_path / "other.txt", CORPUS.replace("cat", "bird"))
    return tmp_path


def no_temporaries(folder: Path) -> bool:
    return not list(folder.glob(".rnnlm-*"))


# -- what may be replaced -------------------------------------------------------------------

def test_a_symlink_is_written_through(work):
    (work / "models").mkdir()
    assert_ok(run("train-ngram", "corpus.txt", "-o", "models/real.npz"))
    os.symlink("models/real.npz", work / "link.npz")
    assert_ok(run("train-ngram", "other.txt", "-o", "link.npz"))
    assert (work / "link.npz").is_symlink()
    assert b"bird" in (work / "models" / "real.npz").read_bytes()
    assert no_temporaries(work) and no_temporaries(work / "models")


def test_a_dangling_symlink_creates_its_target(work):
    os.symlink("target.npz", work / "link.npz")
    assert_ok(run("train-ngram", "corpus.txt", "-o", "link.npz"))
    assert (work / "link.npz").is_symlink() and (work / "target.npz").is_file()


@pytest.mark.parametrize("option", ["-o", "--arpa"])
def test_a_device_is_never_replaced(work, option):
    args = ["-o", "/dev/null", "--arpa", "m.arpa"] if option == "-o" else \
        ["-o", "m.npz", "--arpa", "/dev/null"]
    before = os.stat("/dev/null")
    assert_fails(run("train-ngram", "corpus.txt", *args), 1,
                 "Error: /dev/null: is a device, not a regular file; refusing to replace it",
                 absent=["m.npz", "m.arpa"])
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_fifo_is_never_replaced(work):
    os.mkfifo(work / "pipe")
    assert_fails(run("train-ngram", "corpus.txt", "-o", "pipe"), 1,
                 "Error: pipe: is a FIFO, not a regular file; refusing to replace it")
    assert stat.S_ISFIFO(os.stat(work / "pipe").st_mode)


def test_a_symlink_to_a_device_is_refused(work):
    os.symlink("/dev/null", work / "m.npz")
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz"), 1,
                 "Error: m.npz: is a device, not a regular file; refusing to replace it")
    assert os.readlink(work / "m.npz") == "/dev/null"


def test_a_fifo_as_the_log_is_refused_before_training(work):
    os.mkfifo(work / "log.jsonl")
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", "--log", "log.jsonl",
                     *SMALL_RNN), 1,
                 "Error: log.jsonl: is a FIFO, not a regular file; refusing to replace it",
                 absent=["m.npz"])


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_a_replaced_file_keeps_its_mode(work, mode):
    assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.arpa"))
    for name in ("m.npz", "m.arpa"):
        os.chmod(work / name, mode)
    assert_ok(run("train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"))
    for name in ("m.npz", "m.arpa"):
        assert stat.S_IMODE(os.stat(work / name).st_mode) == mode, name


def test_a_new_file_follows_the_umask(work):
    previous = os.umask(0o027)
    try:
        assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(work / "m.npz").st_mode) == 0o640


# -- outputs that collide, names that are not files -------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["-o", "m.npz", "--arpa", "m.npz"],
     "Error: -o and --arpa name the same file (m.npz); give each its own file"),
    (["-o", "m.npz", "--arpa", "./m.npz"],
     "Error: -o and --arpa name the same file (./m.npz); give each its own file"),
])
def test_train_ngram_outputs_that_are_one_file(work, args, message):
    assert_fails(run("train-ngram", "corpus.txt", *args), 1, message, absent=["m.npz"])


def test_outputs_that_are_hard_links_of_one_file(work):
    write(work / "a.npz", b"old")
    os.link(work / "a.npz", work / "b.arpa")
    assert_fails(run("train-ngram", "corpus.txt", "-o", "a.npz", "--arpa", "b.arpa"), 1,
                 "Error: -o and --arpa name the same file (b.arpa); give each its own file")
    assert (work / "a.npz").read_bytes() == b"old"


@pytest.mark.parametrize("log, message", [
    ("m.npz", "Error: -o and --log name the same file (m.npz); give each its own file"),
    ("m.checkpoint.npz", "Error: the checkpoint and --log name the same file "
                         "(m.checkpoint.npz); give each its own file"),
])
def test_train_rnn_log_that_is_another_output(work, log, message):
    assert_fails(run("train-rnn", "corpus.txt", "-o", "m.npz", "--log", log, *SMALL_RNN), 1,
                 message, absent=["m.npz", "m.checkpoint.npz"])


@pytest.mark.parametrize("command", ["train-ngram", "train-rnn"])
@pytest.mark.parametrize("name, message", [
    ("", "Error: an output file name is empty"),
    ("-", "Error: -: output files are written to disk, not to standard output; "
          "give a file name"),
])
def test_output_names_that_are_not_files(work, command, name, message):
    extra = SMALL_RNN if command == "train-rnn" else []
    assert_fails(run(command, "corpus.txt", "-o", name, *extra), 1, message)


# -- both files or neither ----------------------------------------------------------------------

def trained_pair(work):
    assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.arpa"))
    return (work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()


def test_the_second_write_failing_leaves_both_files_as_they_were(work, monkeypatch):
    before = trained_pair(work)

    def full_disk(model, out, compress=False):
        out.write(b"\\data\\\n")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("rnnlm_cli.ngram.arpa.write_arpa", full_disk)
    assert_fails(run("train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"), 1,
                 "Error: m.arpa: cannot write: No space left on device")
    assert ((work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()) == before
    assert no_temporaries(work)


def test_a_refused_second_rename_puts_the_first_file_back(work, monkeypatch):
    """A sticky folder may refuse to replace one file of the pair (root cannot be refused,
    so the refusal is injected): the file already replaced is restored."""
    before = trained_pair(work)
    real_replace = os.replace

    def refuse_the_arpa(src, dst):
        if str(dst).endswith("m.arpa"):
            raise PermissionError(1, "Operation not permitted")
        return real_replace(src, dst)
    monkeypatch.setattr("rnnlm_cli.outputs.os.replace", refuse_the_arpa)
    assert_fails(run("train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"), 1,
                 "Error: m.arpa: cannot replace: Operation not permitted")
    assert ((work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()) == before
    assert no_temporaries(work)


def test_a_refused_first_rename_of_new_files_leaves_nothing(work, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr("rnnlm_cli.outputs.os.replace", refuse)
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.arpa"), 1,
                 "Error: m.npz: cannot replace: Operation not permitted",
                 absent=["m.npz", "m.arpa"])


def test_an_interrupt_between_the_two_writes_writes_neither(work, monkeypatch):
    before = trained_pair(work)

    def interrupted(model, out, compress=False):
        raise KeyboardInterrupt
    monkeypatch.setattr("rnnlm_cli.ngram.arpa.write_arpa", interrupted)
    assert_fails(run("train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"), 130,
                 "Error: interrupted; no output file was written")
    assert ((work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()) == before


def test_interrupt_message_names_the_files(work, monkeypatch):
    """The message after an interrupt lists what was renamed into place."""
    from rnnlm_cli import outputs
    from conftest import cli_runner
    from rnnlm_cli.cli import cli

    def interrupt_after_writing(*args, **kwargs):
        outputs.written.extend(["m.npz", "m.arpa"])
        raise KeyboardInterrupt
    monkeypatch.setattr("rnnlm_cli.ngram.training.train_ngram_bounded", interrupt_after_writing)
    result = cli_runner().invoke(cli, ["train-ngram", "corpus.txt", "-o", "m.npz"])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == \
        "Error: interrupted after writing m.npz, m.arpa"


# -- full disks and file-size limits, for real ----------------------------------------------------

def limited_run(args, cwd, limit_bytes, stdout=subprocess.PIPE):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, "-m", "rnnlm_cli", *args], cwd=cwd,
                          stdout=stdout, stderr=subprocess.PIPE, text=True,
                          preexec_fn=limit, timeout=120)


def test_a_file_size_limit_is_one_error_line(work):
    """``ulimit -f``: Python ignores SIGXFSZ, so the write fails with EFBIG."""
    before = trained_pair(work)
    result = limited_run(["train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"],
                         work, 20_000)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: m.npz: cannot write: File too large"
    assert ((work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()) == before
    assert no_temporaries(work)


def test_stdout_on_a_full_device_is_one_error_line(work):
    trained_pair(work)
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "rnnlm_cli", "perplexity", "m.npz",
                                 "corpus.txt"], cwd=work, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == \
        ["Error: <stdout>: cannot write: No space left on device"]


def test_a_log_that_cannot_be_written_warns_and_training_goes_on(work, monkeypatch):
    from rnnlm_cli import cli as cli_module
    real_open = open

    class FullFile:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            self.inner.close()
    monkeypatch.setattr(cli_module, "open", FullFile, raising=False)
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--log", "log.jsonl",
                 *SMALL_RNN[:2], "--epochs", "2", *SMALL_RNN[4:])
    assert_ok(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == ["Warning: log.jsonl: cannot write: No space left on device; "
                        "training goes on without the log"]
    assert (work / "m.npz").is_file()


def test_a_failed_periodic_checkpoint_warns_and_training_goes_on(work, monkeypatch):
    from rnnlm_cli.errors import ModelFileError

    def full(*args, **kwargs):
        raise ModelFileError("m.checkpoint.npz: cannot write: No space left on device")
    monkeypatch.setattr("rnnlm_cli.rnn.session.save_checkpoint", full)
    result = run("train-rnn", "corpus.txt", "-o", "m.npz", "--checkpoint-every", "0.00001",
                 *SMALL_RNN)
    assert_ok(result)
    warnings = {line for line in result.stderr.splitlines() if line.startswith("Warning:")}
    assert warnings == {"Warning: m.checkpoint.npz: cannot write: No space left on device; "
                        "training goes on, the next checkpoint will try again"}
    assert (work / "m.npz").is_file()


def test_an_interrupt_at_any_write_leaves_both_old_files(work, monkeypatch):
    """Fault injection, in the process: Ctrl-C at the k-th write of the pair (the model's
    members, the ARPA file's lines), for k spread over the whole write."""
    from rnnlm_cli import outputs
    before = trained_pair(work)
    calls = {"n": 0, "at": None}
    real_write = outputs._Tracked.write

    def counting_write(self, data):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            raise KeyboardInterrupt
        return real_write(self, data)
    monkeypatch.setattr(outputs._Tracked, "write", counting_write)
    assert_ok(run("train-ngram", "other.txt", "-o", "new.npz", "--arpa", "new.arpa"))
    total = calls["n"]
    assert total > 10
    for at in sorted({1, 2, total // 3, total // 2, total - 1, total}):
        calls.update(n=0, at=at)
        assert_fails(run("train-ngram", "other.txt", "-o", "m.npz", "--arpa", "m.arpa"), 130,
                     "Error: interrupted; no output file was written")
        assert ((work / "m.npz").read_bytes(), (work / "m.arpa").read_bytes()) == before
        assert no_temporaries(work)


def test_a_gzipped_arpa_file_has_no_name_or_time_in_its_header(work):
    """The same model, the same bytes: gzip's header holds neither the temporary file's
    name nor the time of writing."""
    assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.arpa.gz"))
    header = (work / "m.arpa.gz").read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] & 0x08 == 0                      # no FNAME
    assert header[4:8] == b"\x00\x00\x00\x00"         # MTIME 0


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupts_wait_for_the_block_while_other_threads_run(signum):
    """A signal to the process may be given to any of its threads (BLAS's, a pool's),
    which the main thread's signal mask does not cover: the block still runs to its end,
    and the interrupt comes after it."""
    import signal
    import threading
    import time
    from rnnlm_cli import process
    from rnnlm_cli.outputs import interrupts_held
    before = {held: signal.signal(held, process._interrupt)      # as process.prepare sets
              for held in (signal.SIGINT, signal.SIGTERM)}
    try:
        other = threading.Thread(target=time.sleep, args=(1.0,), daemon=True)
        other.start()
        steps = []
        with pytest.raises(KeyboardInterrupt) as stopped:
            with interrupts_held():
                os.kill(os.getpid(), getattr(signal, signum))
                for step in range(20):
                    time.sleep(0.005)            # the handler would run here
                    steps.append(step)
        assert steps == list(range(20))
        assert isinstance(stopped.value, process.Terminated) == (signum == "SIGTERM")
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN      # (raised: the rest
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN     # are ignored)
    finally:
        for held, handler in before.items():
            signal.signal(held, handler)


def test_a_signal_found_ignored_when_its_turn_came_is_not_reported(monkeypatch):
    """Python's report of a signal whose handler was swapped for SIG_IGN in the meantime
    (a burst of Ctrl-Cs) is dropped; any other report is made as before."""
    import sys
    from types import SimpleNamespace
    from rnnlm_cli import process
    reported = []
    monkeypatch.setattr(sys, "__unraisablehook__", reported.append)
    race = SimpleNamespace(exc_value=OSError("Signal 15 ignored due to race condition"))
    other = SimpleNamespace(exc_value=OSError("Bad file descriptor"))
    process._unraisable(race)
    process._unraisable(other)
    assert reported == [other]


def test_after_the_first_interrupt_the_next_ones_are_ignored():
    """The first Ctrl-C or SIGTERM is raised; the ones after it, while the process cleans
    up on its way out, do nothing."""
    import signal
    import time
    from rnnlm_cli import process
    before = {held: signal.signal(held, process._interrupt)
              for held in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(process.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        cleaned = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), signum)
            time.sleep(0.01)                   # (a handler that raised would, here)
            cleaned.append(signum)
        assert len(cleaned) == 3
    finally:
        for held, handler in before.items():
            signal.signal(held, handler)
