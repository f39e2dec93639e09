#!/usr/bin/env python3
"""Benchmark the class-factorized softmax (issue #15) on a 60k vocabulary: speed and memory.

Run with an interpreter that has rnnlm and, for the PyTorch rows, torch installed::

    python bench/class_bench.py                  # everything, 3 runs per row (~25 minutes)
    python bench/class_bench.py --quick          # 1 run per row, fewer chunks (~8 minutes)
    python bench/class_bench.py --skip-torch --skip-rss --json
    python bench/class_bench.py --quality --threads 1   # class beside full on PTB (~10 min)

Vietnamese Wikipedia (``../shared/corpora/viwiki/train.txt``, 4.3M whitespace tokens),
``--tokenizer whitespace --min-count 2``: the words seen at least twice, 60,413, plus
``<unk>``, ``<s>`` and ``</s>``. LSTM, H=200, B=20, T=35, SGD lr 1, clipping at 5,
float32, 2 BLAS threads (``OPENBLAS_NUM_THREADS=2``; PyTorch ``set_num_threads(2)``;
``--threads 1``: one, for every row including PTB's, the figures a loaded machine distorts
least: a 2-thread BLAS call waits for both threads to be scheduled).

1. Speed, in training tokens/s over the first chunks of an epoch (``--chunks``, default
   300, for the class softmax; ``--full-chunks``, default 50, for the two full-softmax
   rows, whose chunks take seconds each), each figure from its own child process:

   - rnnlm ``--softmax class --classes C`` (``--classes``, default 250, about sqrt(|V|)
     as Mikolov advises) and rnnlm ``--softmax full``: the child reads the corpus and runs
     ``rnn.session.run_training`` as ``train-rnn`` does, stopping after the chunks
     (a hook raises ``KeyboardInterrupt`` at a chunk boundary, as Ctrl-C would); the
     figure is the loop's own (``TrainState.sums``: targets over the wall-clock seconds of
     forward, backward, clipping and update, what ``--log`` reports per epoch);
   - a plain PyTorch model, full softmax, of the same sizes: nn.Embedding, nn.LSTM,
     nn.Linear, CrossEntropyLoss, backward, clip_grad_norm_(5), optim.SGD(lr=1), hidden
     state detached between chunks (``rnn_bench.py``'s peer), on rnnlm's own vocabulary
     and chunks (``rnn.data.read_training_data``, ``session.plan_batches``), timed around
     the same per-chunk work.

   ``--repeats`` runs per row, rows in rotated order; medians and ranges. Beside them,
   rnnlm's own full-softmax speed on PTB at H=200 (``rnn_bench.py``'s LSTM H=200 row:
   one epoch of ``train-rnn`` on ``ptb/valid.txt``, |V| = 6,023, tokens/s from ``--log``),
   and the issue's targets: class softmax on viwiki at least 0.7x that PTB figure, and at
   least 5x PyTorch's full softmax on viwiki.
2. Memory: the peak RSS (``os.wait4``) of a whole ``rnnlm train-rnn`` process at H=650
   with the class softmax on the same data (``--checkpoint-every 0.5``; once its first
   checkpoint is written, after half a minute of training, it gets SIGINT, saves a
   checkpoint again and exits 130), against the target of 2 GB (10^9 bytes); the chunks
   done and tokens/s are read from its checkpoint. ``--rss-full`` measures the full
   softmax the same way, for comparison.

3. Quality (``--quality``, alone): ``rnn_bench.py``'s PTB quality setup (LSTM H=200,
   train ``ptb/valid.txt``, validation its first lines, SGD lr 1, clipping at 5, constant
   learning rate, ``--seed 0``, ``--epochs``, default 5) trained twice, ``--softmax full``
   and ``--softmax class`` (its default number of classes), and ``rnnlm perplexity`` of
   each best epoch on ``ptb/test.txt``; target: class within 5% of full.

The data lives in ``../shared`` relative to the project root; without it the script says so
and exits 0. PyTorch is a benchmark peer only (``pip install torch==2.13.0``, the CPU
build); without it the PyTorch row says so.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from ngram_bench import CORPORA, PROJECT, RNNLM  # noqa: E402
import rnn_bench  # noqa: E402  (rnnlm's PTB figure, as rnn_bench measures it)

B, T, H, BIG_H = 20, 35, 200, 650
MIN_COUNT = 2
VALID_LINES = 200          # the validation file the readers need: never used (no epoch ends)
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_THREADS = dict.fromkeys(BLAS_VARIABLES, "2")     # --threads sets them
MIN_PTB_RATIO = 0.7
MIN_TORCH_RATIO = 5.0
MAX_QUALITY_GAP = 0.05     # class softmax test perplexity within 5% of the full one's
MAX_RSS = 2e9              # "2 GB", read strictly as 10^9 bytes
RSS_TIMEOUT = 1200.0       # seconds before the H=650 run is stopped without a checkpoint


# --------------------------------------------------------------------------- the children

def rnnlm_data(spec: dict):
    """The training data as ``train-rnn --tokenizer whitespace --min-count 2`` reads it."""
    from rnnlm_cli.rnn.data import read_training_data
    from rnnlm_cli.tokenizer import TokenizerConfig, read_lines
    return read_training_data(read_lines(spec["train"]), read_lines(spec["valid"]),
                              TokenizerConfig("whitespace"), spec["train"], spec["valid"],
                              min_count=MIN_COUNT)


def model_config(softmax: str, classes: int, hidden: int):
    from rnnlm_cli.rnn.config import RnnConfig
    extra = {"softmax": softmax}
    if softmax == "class":
        extra["classes"] = classes
    return RnnConfig(cell="lstm", hidden=hidden, **extra)


def rnnlm_child(spec: dict) -> dict:
    """``train-rnn``'s loop (``session.run_training``) for ``spec["chunks"]`` chunks."""
    from rnnlm_cli.rnn.session import TrainingInterrupted, option_flags, run_training
    from rnnlm_cli.rnn.training import Hooks, TrainConfig
    from rnnlm_cli.tokenizer import TokenizerConfig
    data = rnnlm_data(spec)
    config = TrainConfig(epochs=1, batch_size=B, bptt=T, lr=1.0, clip_norm=5.0, seed=0)
    model = model_config(spec["softmax"], spec["classes"], spec["hidden"])
    model.validate()
    options = option_flags(model, config, TokenizerConfig("whitespace").to_dict(),
                           {"min_count": MIN_COUNT, "max_vocab": None})

    def stop_after(progress):
        if progress.position >= spec["chunks"]:
            raise KeyboardInterrupt   # at a chunk boundary, as a deferred Ctrl-C

    with tempfile.TemporaryDirectory(prefix="class_bench_") as tmp:
        try:
            run = run_training(data, model, config, options, str(Path(tmp) / "ckpt.npz"),
                               hooks=Hooks(on_chunk=stop_after))
            state = run.state
        except TrainingInterrupted as stop:
            state = stop.state
    sums = state.sums
    return {"vocab": len(data.vocab), "chunks": sums.updates, "targets": sums.targets,
            "seconds": sums.seconds, "tokens_per_s": sums.targets / sums.seconds,
            "train_ppl": math.exp(sums.loss / sums.targets)}


def torch_child(spec: dict) -> dict:
    """A plain PyTorch LSTM with a full softmax on rnnlm's vocabulary and chunks."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return {"error": "torch is not installed (pip install torch==2.13.0)"}
    from rnnlm_cli.rnn.session import plan_batches
    from rnnlm_cli.rnn.training import TrainConfig
    torch.set_num_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))
    torch.manual_seed(0)
    data = rnnlm_data(spec)
    train_batches, _ = plan_batches(data, TrainConfig(epochs=1, batch_size=B, bptt=T))
    V, hidden = len(data.vocab), spec["hidden"]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, hidden)
            self.rnn = nn.LSTM(hidden, hidden)
            self.decoder = nn.Linear(hidden, V)

        def forward(self, x, state=None):
            out, state = self.rnn(self.embedding(x), state)
            return self.decoder(out), state

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    criterion = nn.CrossEntropyLoss()
    state, seconds, targets, loss_sum = None, 0.0, 0, 0.0
    for index in range(min(spec["chunks"], len(train_batches))):
        inputs, outputs = train_batches[index]                           # (T, B) each
        x = torch.from_numpy(inputs.astype("int64"))
        y = torch.from_numpy(outputs.astype("int64"))
        started = time.perf_counter()
        state = None if state is None else tuple(s.detach() for s in state)
        optimizer.zero_grad()
        logits, state = model(x, state)
        loss = criterion(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        seconds += time.perf_counter() - started
        loss_sum += loss.item() * y.numel()
        targets += y.numel()
    return {"torch": torch.__version__, "vocab": V, "chunks": spec["chunks"],
            "targets": targets, "seconds": seconds, "tokens_per_s": targets / seconds,
            "train_ppl": math.exp(loss_sum / targets)}


def run_in_child(kind: str, spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, f"--{kind}-child", json.dumps(spec)],
                         capture_output=True, text=True, check=False, cwd=PROJECT,
                         env={**os.environ, **BLAS_THREADS})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------- parts

def bench_speed(spec: dict, rows: List[str], repeats: int, chunks: int,
                full_chunks: int) -> Dict[str, List[dict]]:
    results: Dict[str, List[dict]] = {row: [] for row in rows}
    for r in range(repeats):
        order = rows[r % len(rows):] + rows[:r % len(rows)]
        for row in order:
            kind, softmax = ("torch", "full") if row == "torch" else ("rnnlm", row)
            n = chunks if softmax == "class" else full_chunks
            res = run_in_child(kind, {**spec, "softmax": softmax, "hidden": H, "chunks": n})
            results[row].append(res)
            print(f"  .. {row} run {r + 1}: " + (res["error"] if "error" in res else
                  f"{res['tokens_per_s']:,.0f} tokens/s over {res['chunks']} chunks, "
                  f"|V| {res['vocab']:,}"), file=sys.stderr, flush=True)
    return results


def bench_ptb(tmp: Path, repeats: int) -> List[float]:
    """rnn_bench.py's LSTM H=200 speed row (rnnlm only): tokens/s of one train-rnn epoch."""
    train = CORPORA / "ptb" / "valid.txt"
    valid = tmp / "ptb_valid_small.txt"
    with open(train, encoding="utf-8") as f:
        valid.write_text("".join(f.readlines()[:rnn_bench.VALID_LINES]), encoding="utf-8")
    speeds = []
    for _ in range(repeats):
        res = rnn_bench.rnnlm_train(train, tmp / "ptb_lstm200.npz", "lstm", H, 1, valid)
        speeds.append(res["history"][-1]["tokens_per_s"])
        print(f"  .. PTB full softmax H={H}: {speeds[-1]:,.0f} tokens/s", file=sys.stderr,
              flush=True)
    return speeds


def bench_quality(tmp: Path, epochs: int) -> dict:
    """rnn_bench's PTB quality run with each softmax: the test perplexities."""
    ptb = CORPORA / "ptb"
    valid = tmp / "ptb_valid_small.txt"
    with open(ptb / "valid.txt", encoding="utf-8") as f:
        valid.write_text("".join(f.readlines()[:rnn_bench.VALID_LINES]), encoding="utf-8")
    found = {}
    for softmax in ("full", "class"):
        model = tmp / f"ptb_quality_{softmax}.npz"
        res = rnn_bench.rnnlm_train(ptb / "valid.txt", model, "lstm", H, epochs, valid,
                                    ["--lr-decay", "1", "--patience", "0", "--seed", "0",
                                     "--softmax", softmax])
        test = rnn_bench.rnnlm_perplexity(model, ptb / "test.txt")
        found[softmax] = {"test": test, "seconds": res["seconds"],
                          "valid": [r["valid_ppl"] for r in res["history"]],
                          "tokens_per_s": res["history"][-1]["tokens_per_s"]}
        print(f"  .. PTB quality, --softmax {softmax}: test {test['perplexity']:.2f} "
              f"({res['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return found


def print_quality(found: dict, epochs: int) -> None:
    print(f"== Quality: rnn_bench's PTB setup (LSTM H={H}, train ptb/valid.txt, SGD lr 1, "
          f"clip 5, {epochs} epochs, seed 0);\n   test perplexity of ptb/test.txt incl. / "
          "excl. OOVs, best epoch")
    for softmax, res in found.items():
        test = res["test"]
        valid = " ".join(f"{v:.1f}" for v in res["valid"])
        print(f"  --softmax {softmax:<6} {test['perplexity']:8.2f} / "
              f"{test['perplexity_excluding_oovs']:8.2f}   valid per epoch: {valid}; "
              f"{res['tokens_per_s']:,.0f} tokens/s, {res['seconds']:.0f} s in all")
    gap = found["class"]["test"]["perplexity"] / found["full"]["test"]["perplexity"] - 1
    print(f"  target: class within {MAX_QUALITY_GAP:.0%} of full: {gap:+.2%} -> "
          f"{'MET' if abs(gap) <= MAX_QUALITY_GAP else 'NOT MET'} (no more than "
          f"{MAX_QUALITY_GAP:.0%} worse: {'MET' if gap <= MAX_QUALITY_GAP else 'NOT MET'})")
    print()


def bench_rss(spec: dict, tmp: Path, softmax: str) -> dict:
    """Peak RSS of a whole ``train-rnn`` at H=650, stopped by SIGINT after its first
    periodic checkpoint (half a minute of training)."""
    from rnnlm_cli.rnn.checkpoint import Checkpoint, default_path
    model = tmp / f"rss_{softmax}.npz"
    checkpoint = Path(default_path(str(model)))
    if checkpoint.exists():
        checkpoint.unlink()
    extra = ["--classes", str(spec["classes"])] if softmax == "class" else []
    args = RNNLM + ["train-rnn", spec["train"], "--valid", spec["valid"], "--tokenizer",
                    "whitespace", "--min-count", str(MIN_COUNT), "--cell", "lstm", "--hidden",
                    str(BIG_H), "--batch-size", str(B), "--bptt", str(T), "--epochs", "1",
                    "--softmax", softmax, *extra, "--checkpoint-every", "0.5",
                    "-o", str(model)]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, cwd=PROJECT,
                                env={**os.environ, **BLAS_THREADS})
        while not checkpoint.exists() and proc.poll() is None:
            if time.perf_counter() - start > RSS_TIMEOUT:
                break
            time.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    result = {"softmax": softmax, "peak_rss": usage.ru_maxrss * 1024, "seconds": seconds,
              "exit": proc.returncode, "args": " ".join(args[len(RNNLM):])}
    if checkpoint.exists():
        state = Checkpoint(str(checkpoint)).restore_state()
        result.update(chunks=state.position, tokens_per_s=(
            state.sums.targets / state.sums.seconds if state.sums.seconds else None))
        checkpoint.unlink()
    else:
        result["error"] = (stderr.strip().splitlines() or ["no checkpoint"])[-1]
    print(f"  .. H={BIG_H} {softmax}: peak RSS {result['peak_rss'] / 1e6:,.0f} MB, "
          f"{result.get('chunks', '?')} chunks, exit {proc.returncode}", file=sys.stderr,
          flush=True)
    return result


# ------------------------------------------------------------------------------ printing

def speeds(runs: List[dict]) -> List[float]:
    return [r["tokens_per_s"] for r in runs if "error" not in r]


def summary(values: List[float]) -> str:
    if not values:
        return "n/a"
    text = f"{statistics.median(values):10,.0f}"
    return text + (f"  ({min(values):,.0f}-{max(values):,.0f})" if len(values) > 1 else "")


def print_report(speed: Dict[str, List[dict]], ptb: List[float], rss: List[dict],
                 spec: dict, repeats: int) -> None:
    vocab = next((r["vocab"] for runs in speed.values() for r in runs if "vocab" in r), None)
    print(f"== Speed: LSTM H={H}, B={B}, T={T}, viwiki/train.txt --min-count {MIN_COUNT} "
          f"(|V| = {vocab:,}), float32, {BLAS_THREADS['OPENBLAS_NUM_THREADS']} thread(s);\n"
          f"   training tokens/s over the first "
          f"chunks of an epoch, median of {repeats} run(s) (range)")
    labels = {"class": f"rnnlm --softmax class --classes {spec['classes']}",
              "full": "rnnlm --softmax full", "torch": "PyTorch nn.LSTM, full softmax"}
    for row, runs in speed.items():
        errors = [r["error"] for r in runs if "error" in r]
        chunks = next((r["chunks"] for r in runs if "chunks" in r), "-")
        print(f"  {labels[row]:<40} {summary(speeds(runs))}   ({chunks} chunks)"
              + (f"  {errors[0]}" if errors else ""))
    print(f"  {'rnnlm on PTB, full softmax (rnn_bench)':<40} {summary(ptb)}   "
          f"(one epoch of ptb/valid.txt, |V| = 6,023)")
    ours = speeds(speed.get("class", []))
    if ours and ptb:
        ratio = statistics.median(ours) / statistics.median(ptb)
        print(f"  target: class softmax on viwiki / full softmax on PTB >= {MIN_PTB_RATIO}x: "
              f"{ratio:.2f}x -> {'MET' if ratio >= MIN_PTB_RATIO else 'NOT MET'}")
    theirs = speeds(speed.get("torch", []))
    if ours and theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"  target: class softmax / PyTorch full softmax on viwiki >= {MIN_TORCH_RATIO:g}x:"
              f" {ratio:.1f}x -> {'MET' if ratio >= MIN_TORCH_RATIO else 'NOT MET'}")
    full = speeds(speed.get("full", []))
    if ours and full:
        print(f"  class / full softmax in rnnlm: "
              f"{statistics.median(ours) / statistics.median(full):.1f}x")
    print()
    for res in rss:
        print(f"== Memory: rnnlm {res['args']}")
        speed_text = (f", {res['tokens_per_s']:,.0f} tokens/s"
                      if res.get("tokens_per_s") else "")
        print(f"   peak RSS {res['peak_rss'] / 1e9:.3f} GB after {res['seconds']:.0f} s "
              f"({res.get('chunks', '?')} chunks{speed_text}; exit {res['exit']})"
              + (f"  {res['error']}" if "error" in res else ""))
        if res["softmax"] == "class":
            ok = res["peak_rss"] < MAX_RSS
            print(f"   target: < 2 GB (10^9 B) -> {'MET' if ok else 'NOT MET'}")
    print()


# ---------------------------------------------------------------------------------- main

def has_class_softmax() -> Optional[str]:
    out = subprocess.run(RNNLM + ["train-rnn", "--help"], capture_output=True, text=True,
                         cwd=PROJECT)
    if "--softmax" not in out.stdout or "--classes" not in out.stdout:
        return "train-rnn has no --softmax class / --classes yet (issue #15 not merged)"
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 run per row, 100 class / 20 full-softmax chunks")
    p.add_argument("--repeats", type=int, default=None, help="runs per row (default 3)")
    p.add_argument("--chunks", type=int, default=None, help="class-softmax chunks (300)")
    p.add_argument("--full-chunks", type=int, default=None, help="full-softmax chunks (50)")
    p.add_argument("--classes", type=int, default=250, help="C of --softmax class (250)")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-full", action="store_true", help="no rnnlm --softmax full row")
    p.add_argument("--skip-rss", action="store_true", help="no H=650 memory run")
    p.add_argument("--rss-full", action="store_true",
                   help="also the H=650 memory run with the full softmax")
    p.add_argument("--threads", type=int, default=2,
                   help="BLAS threads of every row, PTB's too (2)")
    p.add_argument("--quality", action="store_true",
                   help="only the quality comparison on PTB (class beside full softmax)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of --quality (5)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rnnlm-child", help=argparse.SUPPRESS)
    p.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rnnlm_child or args.torch_child:
        child = rnnlm_child if args.rnnlm_child else torch_child
        print(json.dumps(child(json.loads(args.rnnlm_child or args.torch_child))))
        return 0
    BLAS_THREADS.update(dict.fromkeys(BLAS_VARIABLES, str(args.threads)))
    os.environ.update(BLAS_THREADS)          # the PTB row's train-rnn inherits them
    repeats = args.repeats or (1 if args.quick else 3)
    chunks = args.chunks or (100 if args.quick else 300)
    full_chunks = args.full_chunks or (20 if args.quick else 50)
    viwiki = CORPORA / "viwiki"
    if not viwiki.is_dir() or not (CORPORA / "ptb").is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    missing = has_class_softmax()
    if missing:
        print(f"skipped: {missing}")
        return 0
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    print("rnnlm class-factorized softmax: speed and memory on a 60k vocabulary (issue #15)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          + " ".join(f"{k}={v}" for k, v in BLAS_THREADS.items()))
    report: dict = {"repeats": repeats, "chunks": chunks, "full_chunks": full_chunks,
                    "classes": args.classes}
    with tempfile.TemporaryDirectory(prefix="class_bench_") as tmpdir:
        tmp = Path(tmpdir)
        if args.quality:
            report["quality"] = bench_quality(tmp, args.epochs)
            print_quality(report["quality"], args.epochs)
            if args.json:
                print(json.dumps(report))
            return 0
        valid = tmp / "viwiki_valid_small.txt"
        with open(viwiki / "valid.txt", encoding="utf-8") as f:
            valid.write_text("".join(f.readlines()[:VALID_LINES]), encoding="utf-8")
        spec = {"train": str(viwiki / "train.txt"), "valid": str(valid),
                "classes": args.classes}
        rows = ["class"] + ([] if args.skip_full else ["full"]) + \
            ([] if args.skip_torch else ["torch"])
        print()
        speed = bench_speed(spec, rows, repeats, chunks, full_chunks)
        ptb = bench_ptb(tmp, repeats)
        rss = []
        if not args.skip_rss:
            for softmax in ["class"] + (["full"] if args.rss_full else []):
                rss.append(bench_rss(spec, tmp, softmax))
        print_report(speed, ptb, rss, spec, repeats)
        report.update(speed=speed, ptb=ptb, rss=rss)
    print(f"total {time.perf_counter() - started:.0f} s; load average at the start "
          f"{load_at_start:.1f}, at the end {os.getloadavg()[0]:.1f} (1-minute, "
          f"{os.cpu_count()} CPUs: others' work shares the machine)")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
