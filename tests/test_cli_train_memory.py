"""``train-ngram --memory SIZE --temp-dir DIR``: the same model whatever the budget; bad
values refused as usage errors; the temporary folder removed on success, on an error, on
Ctrl-C and on SIGTERM; a full disk one clear error."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from test_cli_errors import assert_fails, assert_ok, run, write
from rnnlm_cli.ngram.scratch import PREFIX


def generated_corpus(sentences: int, seed: int = 0) -> str:
    """Sentences of Zipf-distributed words: several blocks of counting at --memory 1M."""
    rng = np.random.default_rng(seed)
    lines = []
    for length in rng.integers(1, 20, sentences):
        lines.append(" ".join(f"w{i}" for i in (rng.zipf(1.2, length) - 1) % 3000))
    return "\n".join(lines) + "\n"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a corpus, as the current folder, and its own temporary folder."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", generated_corpus(2000))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)    # read TMPDIR again
    return tmp_path


def scratch_left(folder) -> list:
    return [name for name in os.listdir(folder) if name.startswith(PREFIX)]


def test_the_model_is_the_same_whatever_the_memory(work):
    assert_ok(run("train-ngram", "corpus.txt", "--order", "4", "-o", "big.npz",
                  "--arpa", "big.arpa"))
    assert_ok(run("train-ngram", "corpus.txt", "--order", "4", "-o", "small.npz",
                  "--arpa", "small.arpa", "--memory", "1M", "--temp-dir", "."))
    assert (work / "small.npz").read_bytes() == (work / "big.npz").read_bytes()
    assert (work / "small.arpa").read_bytes() == (work / "big.arpa").read_bytes()
    assert scratch_left(work) == [] and scratch_left(work / "tmp") == []


@pytest.mark.parametrize("value, says", [
    ("0", "'0' is less than the least that works, 1M"),
    ("1000", "'1000' is less than the least that works, 1M"),
    ("lots", "'lots' is not a size: give bytes with a unit, as 500M or 4G, or a share of "
             "the memory, as 50%"),
    ("-5G", "'-5G' is not a size"),
    ("0%", "'0%': a share of the memory is above 0% and at most 100%"),
])
def test_a_bad_memory_size_is_a_usage_error(work, value, says):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--memory", value), 2,
                 contains=[f"Error: Invalid value for '--memory': {says}"], absent=["m.npz"])


def test_a_budget_beyond_the_machine_is_taken_with_a_warning(work, monkeypatch):
    monkeypatch.setattr("rnnlm_cli.options.physical_memory", lambda: 8 << 30)
    result = run("train-ngram", "corpus.txt", "-o", "m.npz", "--memory", "9G")
    assert_ok(result)
    assert result.stderr.splitlines()[0] == (
        "Warning: --memory 9G is more than this machine's 8G: a corpus that fits it but "
        "not the machine will be killed for want of memory")
    result = run("train-ngram", "corpus.txt", "-o", "m.npz", "--memory", "8G")
    assert_ok(result)
    assert "Warning" not in result.stderr


def test_a_temp_dir_that_is_missing_or_a_file_is_a_usage_error(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--temp-dir", "nowhere"), 2,
                 contains=["Error: Invalid value for '--temp-dir': nowhere: no such directory"],
                 absent=["m.npz"])
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--temp-dir", "corpus.txt"),
                 2, contains=["'--temp-dir': corpus.txt: not a directory"], absent=["m.npz"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_a_temp_dir_that_is_not_writable_is_a_usage_error(work):
    (work / "locked").mkdir(mode=0o500)
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--temp-dir", "locked"), 2,
                 contains=["'--temp-dir': locked: not writable (permission denied)"])


def test_the_temporary_folder_goes_away_after_an_error(work):
    """A line that is not UTF-8, found after the first blocks are on disk."""
    write(work / "bad.txt", generated_corpus(3000).encode() + b"\xff\n")
    assert_fails(run("train-ngram", "bad.txt", "-o", "m.npz", "--memory", "1M"), 1,
                 "Error: bad.txt: line 3001: invalid UTF-8 (use --encoding-errors replace "
                 "to go on)", absent=["m.npz"])
    assert scratch_left(work / "tmp") == []


def test_the_temporary_folder_goes_away_after_ctrl_c(work, monkeypatch):
    made = []

    def interrupted(counts, *args):
        made.append(os.listdir(work / "tmp"))
        raise KeyboardInterrupt
    monkeypatch.setattr("rnnlm_cli.ngram.training.estimate_streamed", interrupted)
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.arpa",
                     "--memory", "1M"), 130,
                 "Error: interrupted; no output file was written", absent=["m.npz", "m.arpa"])
    assert made and made[0] and scratch_left(work / "tmp") == []


@pytest.mark.parametrize("after", [0, 5])
def test_a_full_disk_is_one_clear_error(work, monkeypatch, after):
    writes = []

    def full(file, data):
        writes.append(len(data))
        if len(writes) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        file.write(data)
    monkeypatch.setattr("rnnlm_cli.ngram.scratch.write_bytes", full)
    result = run("train-ngram", "corpus.txt", "-o", "m.npz", "--memory", "1M")
    assert_fails(result, 1, contains=[
        f"Error: {work / 'tmp'}: cannot write temporary files: No space left on device "
        f"(after 0 MB); give --temp-dir on a disk with more room"], absent=["m.npz"])
    assert scratch_left(work / "tmp") == []


@pytest.mark.parametrize("after", [0.4, 1.5])
def test_a_burst_of_signals_is_one_interrupt(tmp_path, after):
    """Ctrl-C pressed again and again, then a SIGTERM, at two moments of the work: the
    first signal ends the run (130), the others do not break off its cleanup: one line,
    no traceback, nothing left behind."""
    write(tmp_path / "corpus.txt", generated_corpus(60_000))
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlm_cli", "train-ngram", "corpus.txt", "--order", "5",
         "--memory", "1M", "--temp-dir", "tmp", "-o", "m.npz", "--arpa", "m.arpa"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    for signum in [signal.SIGINT] * 5 + [signal.SIGTERM]:
        process.send_signal(signum)
        time.sleep(0.002)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith(("Error", "Warning"))] \
        == ["Error: interrupted; no output file was written"]
    assert scratch_left(tmp_path / "tmp") == []
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "m.arpa").exists()


def test_sigterm_removes_the_temporary_folder(tmp_path):
    """A real signal, in the middle of the work: exit 143, nothing left behind."""
    write(tmp_path / "corpus.txt", generated_corpus(60_000))
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlm_cli", "train-ngram", "corpus.txt", "--order", "5",
         "--memory", "1M", "--temp-dir", "tmp", "-o", "m.npz"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        folders = scratch_left(tmp_path / "tmp")
        if folders and len(os.listdir(tmp_path / "tmp" / folders[0])) > 3:
            break                                   # counted blocks are on disk
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "Error: interrupted; no output file was written"
    assert "Traceback" not in stderr
    assert scratch_left(tmp_path / "tmp") == [] and not (tmp_path / "m.npz").exists()
