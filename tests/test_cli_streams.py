"""Closed and odd standard streams, and signals, as a shell gives them (issue 12, points
3 and 10): each command runs as a real process under ``bash -c``.

- ``>&-``: results nobody can see are an error, not a silent success;
- ``2>&-`` and a stderr pipe whose reader went away: the work goes on, the files are
  written, the exit status tells;
- ``<&-``: reading stdin is one ``Error:`` line;
- SIGTERM is Ctrl-C: training saves its checkpoint, writing leaves no temporary, and a
  signal at any moment of ``train-ngram -o M --arpa A`` leaves both old files or both new
  ones.
"""
from __future__ import annotations

import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CORPORA

EN = CORPORA / "en" / "sentences.txt"
RNNLM = f"{shlex.quote(sys.executable)} -m rnnlm_cli"
SMALL_RNN = "--hidden 8 --batch-size 8 --bptt 10"


def shell(command: str, cwd: Path, input: str = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command.replace("rnnlm ", RNNLM + " ")], cwd=cwd,
                          input=input, capture_output=True, text=True, timeout=120)


def error_lines(stderr: str) -> list:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    work = tmp_path_factory.mktemp("streams")
    (work / "corpus.txt").write_text(EN.read_text(encoding="utf-8"), encoding="utf-8")
    done = shell("rnnlm train-ngram corpus.txt -o m.npz", work)
    assert done.returncode == 0, done.stderr
    return work


# -- stdout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "echo 'the cat' | rnnlm perplexity m.npz >&-",
    "rnnlm generate m.npz --seed 1 >&-",
    "rnnlm complete m.npz the >&-",
])
def test_closed_stdout_is_an_error(folder, command):
    result = shell(command, folder)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "Error: standard output is closed: the results would be lost (redirect it to a file "
        "or /dev/null)"]


def test_training_needs_no_stdout(folder):
    result = shell("rnnlm train-ngram corpus.txt -o closed.npz >&-", folder)
    assert result.returncode == 0, result.stderr
    assert (folder / "closed.npz").is_file()


def test_a_reader_that_goes_away_is_a_quiet_exit(folder):
    result = shell("yes 'the cat sat' | head -5000 | rnnlm perplexity m.npz --per-token "
                   "| head -1; echo \"status ${PIPESTATUS[2]}\"", folder)
    assert result.stdout.splitlines()[0].startswith("the=")
    assert result.stdout.splitlines()[-1] == "status 1"
    assert result.stderr == ""


# -- stderr ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command, output", [
    ("rnnlm train-ngram corpus.txt -o e.npz 2>&-", "e.npz"),
    (f"rnnlm train-rnn corpus.txt -o r.npz --epochs 1 {SMALL_RNN} 2>&-", "r.npz"),
])
def test_closed_stderr_does_not_stop_the_work(folder, command, output):
    result = shell(command, folder)
    assert result.returncode == 0
    assert (folder / output).is_file()


def test_closed_stderr_keeps_the_exit_status(folder):
    assert shell("rnnlm perplexity missing.npz corpus.txt 2>&-", folder).returncode == 1


def test_progress_into_a_closed_pipe_does_not_stop_training(folder):
    """Every epoch line goes to a pipe whose reader has exited: training finishes."""
    result = shell(f"rnnlm train-rnn corpus.txt -o piped.npz --epochs 3 {SMALL_RNN} "
                   "2>&1 >/dev/null | true; echo \"status ${PIPESTATUS[0]}\"", folder)
    assert result.stdout.strip() == "status 0"
    assert (folder / "piped.npz").is_file()


# -- stdin -----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "rnnlm perplexity m.npz <&-",
    "rnnlm perplexity m.npz - <&-",
    "rnnlm complete m.npz <&-",
    "rnnlm generate m.npz --prompt-file - <&-",
    "rnnlm train-ngram - -o s.npz <&-",
])
def test_closed_stdin_is_one_error_line(folder, command):
    result = shell(command, folder)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "Error: <stdin>: standard input is closed; give a file instead of -"]


@pytest.mark.parametrize("command", [
    "rnnlm perplexity m.npz - - < corpus.txt",
    "rnnlm train-ngram - corpus.txt - -o twice.npz < corpus.txt",
    f"rnnlm train-rnn - --valid - -o twice.npz {SMALL_RNN} < corpus.txt",
])
def test_stdin_given_twice_is_a_usage_error(folder, command):
    result = shell(command, folder)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "Error: standard input (-) is given more than once; it can be read only once"]
    assert not (folder / "twice.npz").exists()


# -- signals -----------------------------------------------------------------------------------

def start(args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnlm_cli", *shlex.split(args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_during_training_saves_a_checkpoint(folder):
    process = start(f"train-rnn corpus.txt -o t.npz --epochs 200 {SMALL_RNN}", folder)
    for line in process.stderr:
        if line.startswith("epoch 1:"):
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 143   # 128 + SIGTERM, as a shell reports it
    assert "Traceback" not in rest
    assert rest.startswith("Interrupted in epoch ")
    assert "checkpoint saved to t.checkpoint.npz" in rest
    assert "--resume t.checkpoint.npz" in rest
    assert (folder / "t.checkpoint.npz").is_file() and not (folder / "t.npz").exists()
    assert not list(folder.glob(".rnnlm-*"))


def test_sigterm_before_the_write_writes_nothing(folder):
    big = folder / "big.txt"
    big.write_text(EN.read_text(encoding="utf-8") * 200, encoding="utf-8")   # ~2 s of work
    process = start("train-ngram big.txt --order 6 -o late.npz --arpa late.arpa", folder)
    time.sleep(0.8)   # Python and NumPy are loaded, the corpus is being read or counted
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("training finished within a second on this machine")
    assert process.returncode == 143
    assert error_lines(stderr) == ["Error: interrupted; no output file was written"]
    assert not (folder / "late.npz").exists() and not (folder / "late.arpa").exists()
    assert not list(folder.glob(".rnnlm-*"))


def test_signals_at_random_moments_leave_both_old_files_or_both_new(tmp_path):
    """Fault injection: SIGTERM or SIGINT at random moments of ``train-ngram -o M --arpa A``
    over existing files. After each run: the pair is the old one or the new one, never
    one of each, never damaged, and no temporary is left."""
    text = EN.read_text(encoding="utf-8")
    (tmp_path / "old.txt").write_text(text, encoding="utf-8")
    (tmp_path / "new.txt").write_text(text.replace("the", "a") * 8, encoding="utf-8")
    pairs = {}
    for name in ("new", "old"):
        done = shell(f"rnnlm train-ngram {name}.txt --order 5 -o m.npz --arpa m.arpa",
                     tmp_path)
        assert done.returncode == 0, done.stderr
        pairs[name] = ((tmp_path / "m.npz").read_bytes(), (tmp_path / "m.arpa").read_bytes())
    began = time.monotonic()
    start("train-ngram new.txt --order 5 -o other.npz --arpa other.arpa", tmp_path).wait()
    whole_run = time.monotonic() - began
    draw = random.Random(12)
    moments = sorted(draw.uniform(0.5, 1.05) * whole_run for _ in range(8))
    outcomes = set()
    for i, moment in enumerate(moments):
        process = start("train-ngram new.txt --order 5 -o m.npz --arpa m.arpa", tmp_path)
        time.sleep(moment)
        process.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr
        pair = ((tmp_path / "m.npz").read_bytes(), (tmp_path / "m.arpa").read_bytes())
        assert pair in (pairs["old"], pairs["new"])
        assert not list(tmp_path.glob(".rnnlm-*"))
        outcomes.add("new" if pair == pairs["new"] else "old")
        if pair == pairs["new"]:   # back to the old pair for the next moment
            (tmp_path / "m.npz").write_bytes(pairs["old"][0])
            (tmp_path / "m.arpa").write_bytes(pairs["old"][1])
    assert "old" in outcomes   # at least one signal landed before the renames
