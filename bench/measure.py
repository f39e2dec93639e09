"""Measuring whole processes for the benchmark scripts: wall time, CPU time and the
child's exact peak RSS (``os.wait4``), and a line about the machine.

The scripts in ``bench/`` import it as ``from measure import ...`` (they run as
``python bench/x.py``, so their own folder is on ``sys.path``).

A child's peak RSS is never below its parent's own peak: Linux carries the parent's
high-water mark into the child (Python starts children with ``vfork``, and ``exec``
keeps the old address space's peak in ``ru_maxrss``). So a benchmark that measures
children does its own heavy work in a child too; ``run_child`` warns on stderr when a
figure may be the parent's.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One child process: wall seconds, CPU seconds (user + system), peak RSS in bytes,
    and what it printed."""

    seconds: float
    cpu_seconds: float
    peak_rss: int
    stdout: str
    stderr: str = ""


def child_env(extra: Optional[Dict[str, str]] = None) -> dict:
    """This process's environment (plus ``extra``) without ``PYTHONDONTWRITEBYTECODE``:
    the children keep Python's bytecode cache, as an installed package does."""
    env = {**os.environ, **(extra or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_child(args: List, stdin: Optional[Path] = None, cwd: Optional[Path] = None,
              env: Optional[Dict[str, str]] = None) -> Run:
    """Run a command (it must succeed), wait for it with ``os.wait4``: wall time, CPU time
    and the child's peak RSS. ``stdin`` is a file to read from (else nothing); ``env``
    adds to the environment; ``cwd`` defaults to the project root. (Run ``python -m
    rnnlm_cli`` from a folder holding no other ``rnnlm_cli``: ``-m`` looks in the working
    folder first.)"""
    args = [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(stdin if stdin else os.devnull, "rb") as source:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=source, stdout=out, stderr=err,
                                cwd=cwd or PROJECT, env=child_env(env))
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped: tell Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{stderr}")
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if usage.ru_maxrss <= own_peak:
        print(f"measure: {Path(args[0]).name}'s peak RSS reads as this process's own peak "
              f"({own_peak >> 10} MB), which the kernel carries into every child: the "
              "child's true peak is lower", file=sys.stderr)
    return Run(seconds, usage.ru_utime + usage.ru_stime,
               usage.ru_maxrss * 1024, stdout, stderr)    # ru_maxrss is in KiB on Linux


def cpu_model() -> str:
    """The processor's name (``lscpu``'s Model name), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())
