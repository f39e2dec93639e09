#!/usr/bin/env python3
"""Benchmark `rnnlm mix`: a Kneser-Ney + LSTM mixture on PTB, its quality and its cost.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/mix_bench.py                       # everything: about 7 minutes on 2 idle
                                                    # CPUs, 22 on 2 busy ones
    python bench/mix_bench.py --reuse bench/.mix-work   # keep the models there; a rerun
                                                    # trains only what is missing (seconds)
    python bench/mix_bench.py --repeats 5 --json

All on the Penn Treebank of ``../shared/corpora/ptb``, ``--tokenizer whitespace``, as in
``rnn_bench.py``. What is run, in order (``rnnlm`` is ``python -m rnnlm_cli`` with this
interpreter, each a child process):

1. The split. ``ptb/valid.txt`` is cut as ``train-rnn`` cuts a corpus given no ``--valid``
   (``rnnlm_cli.rnn.data.hold_out``: the last 5% of the lines, 168 of 3,370, held out):
   ``train.txt`` (the first 3,202 lines) and ``heldout.txt`` (the last 168), written to the
   work folder. ``ptb/test.txt`` is used for nothing but the final figures.
2. Training, both on ``train.txt`` only: ``rnnlm train-ngram train.txt --order 5
   --tokenizer whitespace -o kn.npz``; and the LSTM of ``rnn_bench.py``'s convergence run,
   ``rnnlm train-rnn train.txt --tokenizer whitespace --batch-size 20 --bptt 35 --cell lstm
   --hidden 200 --epochs 100 --clip-norm 5`` with ``CONVERGENCE`` (``--tie-weights
   --dropout 0.5 --optimizer adam --lr 2e-3 --patience 5``) and ``--valid heldout.txt``
   (so the LSTM sees exactly the lines it saw in rnn_bench.py, where train-rnn held them
   out itself) ``-o lstm.npz``, about 6 minutes on 2 idle CPUs. On a busy machine set
   ``OPENBLAS_NUM_THREADS=1`` for the whole run (the children inherit it; the script
   prints it): with the other core taken, one epoch trained at 4,500 tokens/s on 1 BLAS
   thread and 1,900 on 2. Also, for comparison with the old setup, ``kn_all.npz``: the
   same KN model of all of ``valid.txt`` (``--skip-old-kn`` leaves it out).
3. The mixture: ``rnnlm mix kn.npz lstm.npz --tune heldout.txt -o mix.npz`` (EM from equal
   weights; the held-out perplexity of each iteration, which rnnlm prints on stderr, is
   shown, with the final weights).
4. Quality: ``rnnlm perplexity MODEL ptb/test.txt --json`` for kn.npz, lstm.npz, mix.npz
   (and kn_all.npz), and the same mixture given on the command line, ``rnnlm perplexity
   kn.npz --mix lstm.npz --tune heldout.txt ptb/test.txt --json``, which must give the
   figures of the saved file. Test perplexity including OOVs (as ``<unk>``) and excluding
   them, ``</s>`` counted. Target (issue #14): the mixture at most 165 including OOVs.
5. Cost: whole ``rnnlm perplexity MODEL ptb/test.txt`` processes for kn.npz, lstm.npz and
   mix.npz (wall time, interpreter start, imports and model load included), ``--repeats``
   rounds (default 5), the three in a rotated order each round; medians. Target: the
   mixture at most 1.2x the sum of its components' times. As process start-up is counted
   twice in that sum, also scoring alone: a child process that opens the model, reads and
   tokenizes test.txt, then times ``scoring.score_spans`` (what ``perplexity`` calls), the
   same rounds; and the time to open each model (``models.open_model``).

The work folder is a temporary one, or ``--reuse DIR`` (``bench/.mix-work`` is git-ignored):
there the split and the models are kept, with a manifest of the commands that made them;
a model whose command (or training text) changed is trained again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
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
from rnn_bench import B, T, CONVERGENCE  # noqa: E402  (the converged LSTM's options)

MAX_MIX_PPL = 165.0          # issue #14: the mixture's test perplexity, OOVs included
MAX_COST_RATIO = 1.2         # issue #14: perplexity on the mixture <= 1.2x KN + LSTM
OLD_SETUP = {"kn": (191.41, 211.09), "lstm": (185.35, 206.35)}   # bench/README.md, 2026-12-02

EM_LINE = re.compile(r"EM iteration (\d+): held-out perplexity ([0-9.]+), weights ([0-9.,]+)")

SCORE_CHILD = """
import json, sys, time
from rnnlm_cli.models import open_model
from rnnlm_cli.scoring import score_spans, summarize
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, read_text
t0 = time.perf_counter()
model = open_model(sys.argv[1])
t1 = time.perf_counter()
spans = Tokenizer(TokenizerConfig.from_dict(model.metadata["tokenizer"])).token_spans(
    read_text(sys.argv[2]))
t2 = time.perf_counter()
scored = score_spans(model, spans)
t3 = time.perf_counter()
s = summarize(scored)
print(json.dumps({"load_s": t1 - t0, "read_s": t2 - t1, "score_s": t3 - t2,
                  "tokens": s.tokens, "perplexity": s.perplexity}))
"""


# ------------------------------------------------------------------------------ running

def run(args: List[str]) -> dict:
    """A child process: its wall time, stdout and stderr; an error if it fails."""
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stderr}")
    return {"seconds": seconds, "stdout": out.stdout, "stderr": out.stderr}


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def em_steps(stderr: str) -> List[dict]:
    return [{"iteration": int(m.group(1)), "perplexity": float(m.group(2)),
             "weights": [float(w) for w in m.group(3).split(",")]}
            for m in EM_LINE.finditer(stderr)]


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Work:
    """The work folder: the split, the models, and ``manifest.json`` (per model, the command
    and the digest of its inputs), so a model is made again only when those change."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest_path = folder / "manifest.json"
        self.manifest = (json.loads(self.manifest_path.read_text())
                         if self.manifest_path.exists() else {})

    def make(self, name: str, args: List[str], inputs: List[Path],
             clear: Optional[Path] = None, note: str = "") -> dict:
        """Run ``args`` (which write ``name``) unless the manifest says it was run already
        with the same command and inputs; returns the recorded run (seconds, stderr).
        ``clear`` (a log the command appends to) is deleted before it runs."""
        out = self.folder / name
        key = {"args": [str(a) for a in args[len(RNNLM):]],
               "inputs": [digest(p) for p in inputs]}
        done = self.manifest.get(name)
        if out.exists() and done and done["key"] == key:
            return dict(done["run"], reused=True)
        if clear is not None and clear.exists():
            clear.unlink()
        say(f"rnnlm {' '.join(key['args'][:1])} -> {name}{note}")
        result = run(args)
        record = {"seconds": result["seconds"], "stderr": result["stderr"]}
        self.manifest[name] = {"key": key, "run": record}
        self.manifest_path.write_text(json.dumps(self.manifest, indent=1))
        return dict(record, reused=False)


# ------------------------------------------------------------------------------- parts

def split(ptb: Path, folder: Path) -> Dict[str, Path]:
    from rnnlm_cli.rnn.data import hold_out
    with open(ptb / "valid.txt", encoding="utf-8") as f:
        lines = f.readlines()
    train, heldout = hold_out(lines)
    paths = {"train": folder / "train.txt", "heldout": folder / "heldout.txt"}
    for key, part in (("train", train), ("heldout", heldout)):
        text = "".join(part)
        if not paths[key].exists() or paths[key].read_text(encoding="utf-8") != text:
            paths[key].write_text(text, encoding="utf-8")
    return paths


def train_models(work: Work, ptb: Path, paths: Dict[str, Path], epochs: int,
                 old_kn: bool) -> dict:
    f = work.folder
    runs = {}
    kn = lambda text, out: RNNLM + ["train-ngram", str(text), "--order", "5",  # noqa: E731
                                    "--tokenizer", "whitespace", "-o", str(f / out)]
    runs["kn"] = work.make("kn.npz", kn(paths["train"], "kn.npz"), [paths["train"]])
    if old_kn:
        runs["kn_all"] = work.make("kn_all.npz", kn(ptb / "valid.txt", "kn_all.npz"),
                                   [ptb / "valid.txt"])
    log = f / "lstm.jsonl"
    lstm = RNNLM + ["train-rnn", str(paths["train"]), "--tokenizer", "whitespace",
                    "--batch-size", str(B), "--bptt", str(T), "--cell", "lstm",
                    "--hidden", "200", "--epochs", str(epochs), "--lr", "1",
                    "--clip-norm", "5", "--log", str(log), "-o", str(f / "lstm.npz"),
                    *CONVERGENCE, "--valid", str(paths["heldout"])]
    runs["lstm"] = work.make("lstm.npz", lstm, [paths["train"], paths["heldout"]], clear=log,
                             note=f" (up to {epochs} epochs, about 6 minutes)")
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    runs["lstm"]["history"] = history
    runs["mix"] = work.make("mix.npz", RNNLM + ["mix", str(f / "kn.npz"), str(f / "lstm.npz"),
                                                "--tune", str(paths["heldout"]),
                                                "-o", str(f / "mix.npz")],
                            [f / "kn.npz", f / "lstm.npz", paths["heldout"]])
    runs["mix"]["em"] = em_steps(runs["mix"]["stderr"])
    return runs


def quality(folder: Path, test: Path, heldout: Path, old_kn: bool) -> dict:
    rows = {}
    for name in ["kn", "lstm", "mix"] + (["kn_all"] if old_kn else []):
        say(f"perplexity {name}.npz test.txt")
        rows[name] = last_json(run(RNNLM + ["perplexity", str(folder / f"{name}.npz"),
                                            str(test), "--json"])["stdout"])
    say("perplexity kn.npz --mix lstm.npz --tune heldout.txt test.txt")
    out = run(RNNLM + ["perplexity", str(folder / "kn.npz"), "--mix", str(folder / "lstm.npz"),
                       "--tune", str(heldout), str(test), "--json"])
    rows["mix_cli"] = dict(last_json(out["stdout"]), em=em_steps(out["stderr"]))
    return rows


def cost(folder: Path, test: Path, repeats: int) -> dict:
    names = ["kn", "lstm", "mix"]
    whole = {n: [] for n in names}
    alone = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % 3:] + names[:r % 3]
        for name in order:
            model = str(folder / f"{name}.npz")
            whole[name].append(run(RNNLM + ["perplexity", model, str(test)])["seconds"])
            alone[name].append(last_json(run([sys.executable, "-c", SCORE_CHILD, model,
                                              str(test)])["stdout"]))
        say(f"cost round {r + 1}/{repeats}: " + ", ".join(
            f"{n} {whole[n][-1]:.2f} s ({alone[n][-1]['score_s']:.2f} s scoring)"
            for n in names))
    return {"whole": whole, "alone": alone}


# ----------------------------------------------------------------------------- printing

def med(values) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_report(runs: dict, q: dict, c: Optional[dict], repeats: int) -> None:
    em = runs["mix"]["em"]
    print("== Split: ptb/valid.txt, first 95% of lines (train.txt) / last 5% (heldout.txt), "
          "as train-rnn holds out; test ptb/test.txt")
    for name, label in (("kn", "order-5 Kneser-Ney (train-ngram --order 5)"),
                        ("lstm", "LSTM H=200, " + " ".join(CONVERGENCE))):
        extra = ""
        if name == "lstm" and runs["lstm"].get("history"):
            h = runs["lstm"]["history"]
            best = min(h, key=lambda r: r["valid_ppl"])
            extra = (f", {len(h)} epochs run, best epoch {best['epoch']} (held-out "
                     f"{best['valid_ppl']:.2f})")
        reused = " (reused)" if runs[name].get("reused") else ""
        print(f"  {label}: trained in {runs[name]['seconds']:.1f} s{reused}{extra}")
    print()
    print("== EM on heldout.txt (rnnlm mix kn.npz lstm.npz --tune heldout.txt): held-out "
          "perplexity, weights KN,LSTM")
    for step in em:
        print(f"  iteration {step['iteration']:>3}: {step['perplexity']:9.4f}   "
              f"{','.join(f'{w:.4f}' for w in step['weights'])}")
    cli_em = q["mix_cli"]["em"]
    same_em = ([s["perplexity"] for s in cli_em] == [s["perplexity"] for s in em]
               and [s["weights"] for s in cli_em] == [s["weights"] for s in em])
    print(f"  (perplexity --mix --tune printed {len(cli_em)} iterations, "
          f"{'the same' if same_em else 'DIFFERENT'})")
    final = em[-1]["weights"] if em else None
    print()
    print("== Test perplexity, ptb/test.txt (incl. OOVs / excl. OOVs), </s> counted")
    rows = [("kn", "KN-5"), ("lstm", "LSTM"), ("mix", "mixture, mix.npz"),
            ("mix_cli", "mixture, --mix --tune")]
    for name, label in rows:
        r = q[name]
        print(f"  {label:<24} {r['perplexity']:8.2f} / {r['perplexity_excluding_oovs']:8.2f}   "
              f"({r['tokens']:,} tokens, {r['oovs']:,} OOVs)")
    if "kn_all" in q:
        r = q["kn_all"]
        print(f"  old setup (all of valid.txt): KN-5 {r['perplexity']:.2f} / "
              f"{r['perplexity_excluding_oovs']:.2f}; README: KN-5 {OLD_SETUP['kn'][0]} / "
              f"{OLD_SETUP['kn'][1]}, LSTM {OLD_SETUP['lstm'][0]} / {OLD_SETUP['lstm'][1]}")
    m, mc = q["mix"], q["mix_cli"]
    gap = abs(m["logprob"] - mc["logprob"])
    print(f"  saved file vs command line: log-probability difference {gap:.3g} "
          f"({'identical' if gap == 0 else 'differs'})")
    print(f"  weights KN,LSTM: {','.join(f'{w:.4f}' for w in final) if final else 'n/a'}")
    print(f"  target (issue #14): mixture <= {MAX_MIX_PPL:g} incl. OOVs: "
          f"{m['perplexity']:.2f} -> {verdict(m['perplexity'] <= MAX_MIX_PPL)}")
    print()
    if c is None:
        return
    w, a = c["whole"], c["alone"]
    print(f"== Cost: rnnlm perplexity MODEL ptb/test.txt, median of {repeats} rounds "
          "(rotated order), seconds (min-max)")
    print(f"  {'model':<8} {'whole process':>20} {'open model':>11} {'score_spans':>18}")
    for name in ("kn", "lstm", "mix"):
        load = med([x["load_s"] for x in a[name]])
        score = [x["score_s"] for x in a[name]]
        print(f"  {name:<8} {med(w[name]):7.3f} ({min(w[name]):.3f}-{max(w[name]):.3f}) "
              f"{load:11.3f} {med(score):7.3f} ({min(score):.3f}-{max(score):.3f})")
    ratio = med(w["mix"]) / (med(w["kn"]) + med(w["lstm"]))
    score = {n: med([x["score_s"] for x in a[n]]) for n in a}
    ratio_alone = score["mix"] / (score["kn"] + score["lstm"])
    print(f"  mixture / (KN + LSTM), whole processes: {ratio:.2f}x -> target <= "
          f"{MAX_COST_RATIO}x: {verdict(ratio <= MAX_COST_RATIO)}")
    print(f"  mixture / (KN + LSTM), scoring alone:   {ratio_alone:.2f}x")
    print()


# --------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reuse", metavar="DIR", type=Path,
                   help="keep the split and models in DIR (created if absent) and reuse "
                        "those already made with the same command (e.g. bench/.mix-work)")
    p.add_argument("--repeats", type=int, default=5, help="cost rounds (default 5)")
    p.add_argument("--epochs", type=int, default=100,
                   help="train-rnn --epochs of the LSTM (default 100, as rnn_bench.py)")
    p.add_argument("--skip-old-kn", action="store_true",
                   help="leave out the KN model of all of valid.txt (the old setup)")
    p.add_argument("--skip-cost", action="store_true", help="no timing")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    ptb = CORPORA / "ptb"
    if not ptb.is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    started = time.perf_counter()
    print("rnnlm mixture benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; " + " ".join(
        f"{k}={os.environ.get(k, '-')}" for k in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                  "OPENBLAS_L2_SIZE")))
    print()
    with tempfile.TemporaryDirectory(prefix="mix_bench_") as tmpdir:
        folder = args.reuse or Path(tmpdir)
        folder.mkdir(parents=True, exist_ok=True)
        work = Work(folder.resolve())
        paths = split(ptb, work.folder)
        runs = train_models(work, ptb, paths, args.epochs, not args.skip_old_kn)
        q = quality(work.folder, ptb / "test.txt", paths["heldout"], not args.skip_old_kn)
        c = None if args.skip_cost else cost(work.folder, ptb / "test.txt", args.repeats)
        print_report(runs, q, c, args.repeats)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        for r in runs.values():
            r.pop("stderr", None)
        print(json.dumps({"training": runs, "quality": q, "cost": c,
                          "repeats": args.repeats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
