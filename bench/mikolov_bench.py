#!/usr/bin/env python3
"""Benchmark `rnnlm train-rnn --softmax class` beside Mikolov's rnnlm-0.4b (issue #15).

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/mikolov_bench.py                 # both tools, 3 runs each (~10 minutes)
    python bench/mikolov_bench.py --repeats 1 --cells rnn
    MIKOLOV_RNNLM=/path/to/rnnlm python bench/mikolov_bench.py --json

The peer is the C++ toolkit that introduced the class-factorized output layer (Mikolov et
al., "Extensions of recurrent neural network language model", ICASSP 2011): rnnlm-0.4b,
built with its own makefile (g++ -O2 -funroll-loops -ffast-math, float weights). It is
not part of this project and is never committed here: the script runs the binary named
by ``MIKOLOV_RNNLM``, else ``../peers/mikolov-rnnlm/rnnlm`` beside the project (as
``../shared`` is), and skips its rows with a message when there is none.

The split (the issue's): ``ptb/valid.txt``'s first 3,033 lines train, its last 337 lines
validate, ``ptb/test.txt`` tests; in the validation and test files, words outside the
training vocabulary are written as ``<unk>`` (a word PTB's text already holds, so both
tools score every token: 82,430 test tokens with ``</s>``). The files are written to
``bench/.mikolov-work/`` (git-ignored).

Mikolov's rnnlm: ``-hidden 100 -class 100 -bptt 4 -bptt-block 10 -rand-seed 1 -binary``
(the FAQ's and example.sh's recommended switches at the issue's size; everything else at
its defaults: SGD alpha 0.1, L2 beta 1e-7, gradient cutoff 15, the frequency-binned
classes of 0.3d+, alpha halved once an epoch improves validation entropy by less than
0.3%, stop at the second such epoch, no direct n-gram connections). It is
single-threaded. Its training speed is measured on the wall clock: with its output
unbuffered (``stdbuf -o0``) each epoch's training pass runs from the moment it prints
``Iter: N`` to the moment it prints that pass's ``TRAIN entropy``, over the words it
counts (``</s>`` included); the figure it prints itself is per CPU second (``clock()``),
given beside. Its test perplexity is ``rnnlm -rnnlm model -test test.txt``: it reads the
test file as one stream, the hidden state carried across sentences.

rnnlm: ``train-rnn`` on the same files (``--tokenizer whitespace``), H=100, ``--softmax
class --classes 100``, 2 BLAS threads (``--threads``; with 1, both tools use one core,
and the figures suffer least from other jobs: a 2-thread BLAS call waits until both of
its threads are scheduled), with the command lines in ``RNNLM_RUNS``: the Elman
cell with a sigmoid (Mikolov's network: ``s_t = sigmoid(U x_t + W s_{t-1})``, a class
softmax over ``s_t``) and the LSTM. Training tokens/s is the figure train-rnn logs per
epoch (``--log``: the chunks' forward, backward, clipping and update on the wall clock);
its test perplexity is ``rnnlm perplexity``, which scores each line on its own from the
boundary state (no context carried across sentences, unlike the peer's reading).

Each side runs ``--repeats`` times (alternating); the table gives medians of the runs (each
run's speed being its median epoch), the epochs run, the best epoch, the test
perplexity, and the whole process's wall time and peak RSS (``os.wait4``). The issue's
targets: rnnlm at least as fast as the C program in training tokens/s, and a test
perplexity no higher than the C program's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from measure import run_child  # noqa: E402  (os.wait4 timing)
from ngram_bench import CORPORA, PROJECT, RNNLM  # noqa: E402

WORK = BENCH / ".mikolov-work"
PEER_DEFAULT = PROJECT.parent / "peers" / "mikolov-rnnlm" / "rnnlm"
TRAIN_LINES, VALID_LINES = 3033, 337
ISSUE_TEST_TOKENS = 82430

# The peer's switches (see the docstring): rnnlm-0.4b's recommended settings at H=100.
MIKOLOV_TRAIN = ["-hidden", "100", "-class", "100", "-bptt", "4", "-bptt-block", "10",
                 "-rand-seed", "1", "-binary"]

# rnnlm's command lines, chosen on the validation file (never on the test set); what was
# tried is in bench/README.md. The Elman cell: SGD at lr 4 (lr 10 learned more slowly, B 10
# or 5 no better), halved after an epoch without improvement, dropout 0.1 (0.2: 179.4 on
# validation, none: 188.6 after 20 epochs, and 0.5% better after 40), 40 epochs: 177.9.
# The LSTM: the Zaremba et al. small-model recipe (lr 1) with dropout 0.3, 40 epochs: 177.9.
COMMON = ["--tokenizer", "whitespace", "--hidden", "100", "--softmax", "class",
          "--classes", "100", "--seed", "0"]
RNNLM_RUNS: Dict[str, List[str]] = {
    "rnn": ["--cell", "rnn", "--activation", "sigmoid", "--batch-size", "20", "--bptt", "20",
            "--lr", "4", "--lr-decay", "0.5", "--patience", "3", "--epochs", "40",
            "--clip-norm", "5", "--dropout", "0.1"],
    "lstm": ["--cell", "lstm", "--batch-size", "20", "--bptt", "20", "--lr", "1",
             "--lr-decay", "0.5", "--patience", "3", "--epochs", "40", "--clip-norm", "5",
             "--dropout", "0.3"],
}
LABELS = {"rnn": "Elman, sigmoid", "lstm": "LSTM"}
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_THREADS = dict.fromkeys(BLAS_VARIABLES, "2")     # --threads sets them


# --------------------------------------------------------------------------------- split

def write_split(ptb: Path, work: Path) -> dict:
    """The issue's split in ``work``: train.txt, valid.txt, test.txt (unknown words as
    <unk> in the last two); returns the counts (tokens include one </s> per line)."""
    lines = (ptb / "valid.txt").read_text(encoding="utf-8").splitlines()
    if len(lines) != TRAIN_LINES + VALID_LINES:
        raise SystemExit(f"{ptb / 'valid.txt'}: {len(lines)} lines, expected "
                         f"{TRAIN_LINES + VALID_LINES}")
    train = [line.split() for line in lines[:TRAIN_LINES]]
    vocab = {w for words in train for w in words}
    if "<unk>" not in vocab:
        raise SystemExit("the training lines hold no <unk>: unknown words would be dropped")
    counts = {"vocabulary": len(vocab)}
    texts = {"train": train, "valid": [line.split() for line in lines[TRAIN_LINES:]],
             "test": [line.split() for line in
                      (ptb / "test.txt").read_text(encoding="utf-8").splitlines()]}
    work.mkdir(parents=True, exist_ok=True)
    for name, sentences in texts.items():
        mapped = [[w if w in vocab else "<unk>" for w in words] for words in sentences]
        (work / f"{name}.txt").write_text("".join(" ".join(s) + "\n" for s in mapped),
                                          encoding="utf-8")
        counts[name] = {"lines": len(sentences),
                        "tokens": sum(len(s) + 1 for s in sentences),
                        "mapped_to_unk": sum(w not in vocab for s in sentences for w in s)}
    return counts


# ------------------------------------------------------------------------- the C program

def find_peer(explicit: Optional[str]) -> Optional[Path]:
    path = Path(explicit or os.environ.get("MIKOLOV_RNNLM") or PEER_DEFAULT)
    return path if path.is_file() and os.access(path, os.X_OK) else None


EPOCH_START = re.compile(rb"Iter:\s*(\d+)\tAlpha: ([\d.]+)\t")
EPOCH_END = re.compile(rb"Iter:\s*(\d+)\tAlpha: ([\d.]+)\t   TRAIN entropy: ([\d.]+)"
                       rb"    Words/sec: ([\d.]+)")
VALID = re.compile(rb"VALID entropy: ([\d.]+)")


def timed_output(args: List[str], cwd: Path) -> dict:
    """Run ``args``, reading its (unbuffered) stdout as it comes: the bytes, the arrival
    time of each byte range, the wall time and the peak RSS (``os.wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    data, arrivals = bytearray(), []          # (end offset, seconds since start)
    while True:
        piece = os.read(proc.stdout.fileno(), 65536)
        if not piece:
            break
        data += piece
        arrivals.append((len(data), time.perf_counter() - start))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return {"stdout": bytes(data), "arrivals": arrivals, "seconds": seconds,
            "peak_rss": usage.ru_maxrss * 1024, "returncode": proc.returncode}


def arrival_time(arrivals, offset: int) -> float:
    """When the byte at ``offset`` had arrived."""
    for end, at in arrivals:
        if end > offset:
            return at
    return arrivals[-1][1]


def mikolov_train(peer: Path, work: Path) -> dict:
    for stale in (work / "mikolov.model", work / "mikolov.model.output.txt"):
        if stale.exists():
            stale.unlink()   # the tool would resume from an existing model file
    args = [peer, "-train", "train.txt", "-valid", "valid.txt", "-rnnlm", "mikolov.model",
            *MIKOLOV_TRAIN, "-debug", "2"]
    stdbuf = shutil.which("stdbuf")
    run = timed_output([stdbuf, "-o0", *args] if stdbuf else args, work)
    out = run["stdout"]
    if run["returncode"] != 0 or b"Words in train file" not in out:
        raise RuntimeError(f"{peer} failed:\n{out.decode(errors='replace')[-2000:]}")
    words = int(re.search(rb"Words in train file: (\d+)", out).group(1))
    starts = {}
    for match in EPOCH_START.finditer(out):
        starts.setdefault(int(match.group(1)), match.start())
    epochs = []
    for match in EPOCH_END.finditer(out):
        k = int(match.group(1))
        begin = arrival_time(run["arrivals"], starts[k])
        end = arrival_time(run["arrivals"], match.end() - 1)
        epochs.append({"epoch": k + 1, "alpha": float(match.group(2)),
                       "train_entropy": float(match.group(3)),
                       "cpu_words_per_s": float(match.group(4)),
                       "wall_words_per_s": words / (end - begin) if stdbuf else None})
    for record, match in zip(epochs, VALID.finditer(out)):
        record["valid_ppl"] = 2 ** float(match.group(1))
    test = run_child([str(peer), "-rnnlm", "mikolov.model", "-test", "test.txt"], cwd=work)
    ppl = float(re.search(r"PPL net: ([\d.]+)", test.stdout).group(1))
    best = min(epochs, key=lambda r: r.get("valid_ppl", float("inf")))
    wall = [r["wall_words_per_s"] for r in epochs if r["wall_words_per_s"]]
    return {"train_words": words, "epochs": epochs, "epochs_run": len(epochs),
            "best_epoch": best["epoch"], "seconds": run["seconds"],
            "peak_rss": run["peak_rss"], "test_ppl": ppl,
            "tokens_per_s": statistics.median(wall) if wall else None,
            "cpu_tokens_per_s": statistics.median(r["cpu_words_per_s"] for r in epochs),
            "whole_run_tokens_per_s": words * len(epochs) / run["seconds"]}


# --------------------------------------------------------------------------------- rnnlm

def rnnlm_train(cell: str, work: Path) -> dict:
    from rnnlm_cli.rnn.checkpoint import default_path
    model, log = work / f"rnnlm_{cell}.npz", work / f"rnnlm_{cell}.jsonl"
    for stale in (log, Path(default_path(str(model)))):   # an interrupted run's leftovers
        if stale.exists():
            stale.unlink()
    args = RNNLM + ["train-rnn", str(work / "train.txt"), "--valid", str(work / "valid.txt"),
                    *COMMON, *RNNLM_RUNS[cell], "--log", str(log), "-o", str(model)]
    run = run_child(args, env=BLAS_THREADS)
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    test = json.loads(run_child(RNNLM + ["perplexity", str(model), str(work / "test.txt"),
                                         "--json"]).stdout.strip().splitlines()[-1])
    best = min(history, key=lambda r: r["valid_ppl"])
    stream = stream_perplexity(model, work / "test.txt")
    return {"command": "rnnlm " + " ".join(args[len(RNNLM):]), "history": history,
            "epochs_run": len(history), "best_epoch": best["epoch"],
            "best_valid_ppl": best["valid_ppl"], "seconds": run.seconds,
            "peak_rss": run.peak_rss, "test_ppl": test["perplexity"],
            "test_tokens": test["tokens"], "test_oovs": test["oovs"],
            "test_stream_ppl": stream,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in history)}


def stream_perplexity(model_path: Path, text: Path) -> float:
    """The perplexity of ``text`` read as one stream, as the C program reads it: ``</s> s1
    </s> s2 ...`` through the model's network, one stream, the state carried from chunk to
    chunk, every word and ``</s>`` predicted (train-rnn's "valid stream ppl" of this text)."""
    from rnnlm_cli.models import open_model
    from rnnlm_cli.rnn.batches import Batches, token_stream
    from rnnlm_cli.rnn.training import perplexity
    from rnnlm_cli.tokenizer import read_lines
    model = open_model(str(model_path))
    encoded = model.vocab.encode([line.split() for line in read_lines(str(text))])
    stream = token_stream(encoded.ids, encoded.lengths, model.vocab.eos_id)
    return perplexity(model.network, Batches(stream, 1, 35))


def rnnlm_has_class_softmax() -> Optional[str]:
    """None if ``train-rnn`` takes ``--softmax class``, else why not."""
    out = subprocess.run(RNNLM + ["train-rnn", "--help"], capture_output=True, text=True,
                         cwd=PROJECT)
    if "--softmax" not in out.stdout or "--classes" not in out.stdout:
        return "train-rnn has no --softmax class / --classes yet (issue #15 not merged)"
    return None


# ----------------------------------------------------------------------------- printing

def median_of(runs: List[dict], key: str) -> Optional[float]:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def spread(runs: List[dict], key: str) -> str:
    values = [r[key] for r in runs if r.get(key) is not None]
    return f"({min(values):,.0f}-{max(values):,.0f})" if len(values) > 1 else ""


def print_table(peer_runs: List[dict], ours: Dict[str, List[dict]], train_words: int) -> None:
    print(f"{'':<34} {'train tokens/s':>14} {'(range)':<17} {'epochs':>6} {'best':>4} "
          f"{'test ppl':>8} {'stream':>7} {'whole run':>9} {'peak RSS':>8}")
    if peer_runs:
        r = peer_runs[0]
        print(f"{'Mikolov rnnlm-0.4b, 1 thread':<34} "
              f"{fmt_speed(median_of(peer_runs, 'tokens_per_s')):>14} "
              f"{spread(peer_runs, 'tokens_per_s'):<17} {r['epochs_run']:>6} "
              f"{r['best_epoch']:>4} {'-':>8} {r['test_ppl']:7.2f} "
              f"{median_of(peer_runs, 'seconds'):8.1f}s "
              f"{median_of(peer_runs, 'peak_rss') / 1e6:6.0f}MB")
        print(f"{'   (its own figure, per CPU second)':<34} "
              f"{median_of(peer_runs, 'cpu_tokens_per_s'):14,.0f}")
    for cell, runs in ours.items():
        r = runs[0]
        threads = BLAS_THREADS["OPENBLAS_NUM_THREADS"]
        label = f"rnnlm {LABELS[cell]}, {threads} thread{'s' if threads != '1' else ''}"
        print(f"{label:<34} {median_of(runs, 'tokens_per_s'):14,.0f} "
              f"{spread(runs, 'tokens_per_s'):<17} {r['epochs_run']:>6} {r['best_epoch']:>4} "
              f"{r['test_ppl']:8.2f} {r['test_stream_ppl']:7.2f} "
              f"{median_of(runs, 'seconds'):8.1f}s {median_of(runs, 'peak_rss') / 1e6:6.0f}MB")
    print(f"  train tokens/s: median over runs of each run's median epoch (training passes "
          f"only, wall clock; {train_words:,} tokens an epoch with </s>)")
    print("  test ppl: `rnnlm perplexity` (each line on its own from the boundary state); "
          "stream: test.txt read as one\n  stream, the state carried across sentences (the C "
          "program's only way); both count all 82,430 tokens")
    if not peer_runs:
        return
    c_speed, c_ppl = median_of(peer_runs, "tokens_per_s"), peer_runs[0]["test_ppl"]
    for cell, runs in ours.items():
        speed, ppl = median_of(runs, "tokens_per_s"), runs[0]["test_ppl"]
        ok = "MET" if c_speed and speed >= c_speed and ppl <= c_ppl else "NOT MET"
        ratio = f"{speed / c_speed:.2f}x" if c_speed else "n/a"
        print(f"  target ({LABELS[cell]}): tokens/s >= C's and test ppl <= C's: "
              f"{ratio}, {ppl:.2f} vs {c_ppl:.2f} -> {ok}")


# ---------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool (default 3)")
    p.add_argument("--cells", nargs="+", default=list(RNNLM_RUNS), choices=list(RNNLM_RUNS),
                   help="rnnlm's rows (default: rnn lstm)")
    p.add_argument("--peer", default=None,
                   help=f"the rnnlm-0.4b binary (default $MIKOLOV_RNNLM, else {PEER_DEFAULT})")
    p.add_argument("--threads", type=int, default=2, help="rnnlm's BLAS threads (2)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    BLAS_THREADS.update(dict.fromkeys(BLAS_VARIABLES, str(args.threads)))
    ptb = CORPORA / "ptb"
    if not ptb.is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    print("rnnlm class softmax beside Mikolov's rnnlm-0.4b (issue #15)")
    counts = write_split(ptb, WORK)
    test = counts["test"]
    print(f"split: train = first {TRAIN_LINES:,} lines of ptb/valid.txt "
          f"({counts['train']['tokens']:,} tokens with </s>, {counts['vocabulary']:,} words), "
          f"valid = last {VALID_LINES} ({counts['valid']['tokens']:,} tokens, "
          f"{counts['valid']['mapped_to_unk']} mapped to <unk>)")
    print(f"test = ptb/test.txt: {test['tokens']:,} tokens with </s> (issue: "
          f"{ISSUE_TEST_TOKENS:,}: {'agrees' if test['tokens'] == ISSUE_TEST_TOKENS else 'DIFFERS'}"
          f"), {test['mapped_to_unk']:,} words outside the training vocabulary written as "
          f"<unk>; files in {WORK.relative_to(PROJECT)}/")
    peer = find_peer(args.peer)
    print("Mikolov's rnnlm: " + (f"{peer} {' '.join(MIKOLOV_TRAIN)}" if peer else
                                 f"not found (build rnnlm-0.4b at {PEER_DEFAULT} or set "
                                 "MIKOLOV_RNNLM): its rows are skipped"))
    missing = rnnlm_has_class_softmax()
    cells = [] if missing else args.cells
    if missing:
        print(f"rnnlm: {missing}: its rows are skipped")
    for cell in cells:
        print(f"rnnlm {cell}: rnnlm train-rnn train.txt --valid valid.txt "
              f"{' '.join(COMMON + RNNLM_RUNS[cell])}")
    print()
    peer_runs: List[dict] = []
    ours: Dict[str, List[dict]] = {cell: [] for cell in cells}
    for r in range(args.repeats):
        order = ["peer", *cells] if r % 2 == 0 else [*cells, "peer"]
        for who in order:
            if who == "peer":
                if peer:
                    peer_runs.append(mikolov_train(peer, WORK))
                    res = peer_runs[-1]
                    print(f"  .. Mikolov run {r + 1}: {fmt_speed(res['tokens_per_s'])} "
                          f"tokens/s, {res['epochs_run']} epochs, test ppl "
                          f"{res['test_ppl']:.2f}", file=sys.stderr, flush=True)
                continue
            ours[who].append(rnnlm_train(who, WORK))
            res = ours[who][-1]
            print(f"  .. rnnlm {who} run {r + 1}: {res['tokens_per_s']:,.0f} tokens/s, "
                  f"{res['epochs_run']} epochs, test ppl {res['test_ppl']:.2f} (stream "
                  f"{res['test_stream_ppl']:.2f})",
                  file=sys.stderr, flush=True)
    print_table(peer_runs, {c: runs for c, runs in ours.items() if runs},
                counts["train"]["tokens"])
    if peer_runs:
        print("  Mikolov per epoch (alpha, valid ppl, wall tokens/s): " + ", ".join(
            f"{e['alpha']:g}/{e.get('valid_ppl', float('nan')):.1f}/"
            f"{fmt_speed(e['wall_words_per_s'])}" for e in peer_runs[0]["epochs"]))
    for cell, runs in ours.items():
        if runs:
            print(f"  rnnlm {cell} per epoch (lr, valid stream ppl, tokens/s): " + ", ".join(
                f"{e['lr']:g}/{e['valid_ppl']:.1f}/{e['tokens_per_s']:,.0f}"
                for e in runs[0]["history"]))
    print(f"total {time.perf_counter() - started:.0f} s; load average at the start "
          f"{load_at_start:.1f}, at the end {os.getloadavg()[0]:.1f} (1-minute, "
          f"{os.cpu_count()} CPUs: others' work shares the machine)")
    if args.json:
        print(json.dumps({"split": counts, "mikolov": peer_runs, "rnnlm": ours}))
    return 0


def fmt_speed(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
