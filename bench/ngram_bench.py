#!/usr/bin/env python3
"""Benchmark rnnlm's n-gram backend beside NLTK (and KenLM's reference figures).

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/ngram_bench.py                  # everything, 3 repeats (a few minutes)
    python bench/ngram_bench.py --repeats 5 --nltk-tokens 1000
    python bench/ngram_bench.py --skip-nltk --json

What it measures, each rnnlm figure being a whole `rnnlm` process (interpreter start,
imports, reading, writing; model load included when scoring), timed and measured with
``os.wait4`` (wall time and the child's exact peak RSS), median of ``--repeats`` runs:

1. training: ``rnnlm train-ngram viwiki/train.txt --tokenizer whitespace --order 3 / 5``;
2. scoring: ``rnnlm perplexity <model> viwiki/test.txt --json``: wall time and tokens/s
   (tokens scored including ``</s>``), and the perplexity beside KenLM's reference figure;
3. the NLTK peer on PTB (``--skip-nltk`` to leave it out): ``KneserNeyInterpolated(3)``
   fitted on ptb/valid.txt (in-process, imports excluded) and scoring the first
   ``--nltk-tokens`` tokens of ptb/test.txt with ``logscore``, beside rnnlm training on
   the same file and scoring the whole test file; the speed ratios rnnlm/NLTK.

The targets of the issue are printed beside the figures. The data lives in
``../shared`` relative to the project root; without it the script says so and exits 0.
NLTK is only a benchmark peer (``pip install nltk``), never a dependency of rnnlm.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from measure import Run, run_child

PROJECT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPORA = SHARED / "corpora"
RNNLM = [sys.executable, "-m", "rnnlm_cli"]

# KenLM's perplexities (including OOVs) on viwiki, from ../shared/reference/README.md.
KENLM_PPL = {3: 262.4163231092919, 5: 250.08689938010005}

# Targets from the issue.
TRAIN_MAX_SECONDS = 15.0
TRAIN_MAX_BYTES = 1e9                 # "1 GB", read strictly as 10^9 bytes
SCORE_MIN_TOKENS_PER_S = 1.5e6
NLTK_MIN_RATIO = 1000.0


# --------------------------------------------------------------------------- measuring

@dataclass
class Stats:
    """Median, min and max of repeated measurements."""

    values: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def to_dict(self) -> dict:
        return {"median": self.median, "min": self.min, "max": self.max,
                "runs": self.values}


def repeat(args: List[str], repeats: int) -> List[Run]:
    return [run_child(args) for _ in range(repeats)]


def stats(values) -> Stats:
    return Stats(list(values))


# ----------------------------------------------------------------------------- rnnlm

def train_args(corpus: Path, order: int, model: Path) -> List[str]:
    return RNNLM + ["train-ngram", str(corpus), "--tokenizer", "whitespace",
                    "--order", str(order), "-o", str(model)]


def score_args(model: Path, text: Path) -> List[str]:
    return RNNLM + ["perplexity", str(model), str(text), "--json"]


def summary_of(run: Run) -> dict:
    """The last JSON line `rnnlm perplexity --json` prints is the summary."""
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_train(corpus: Path, order: int, model: Path, repeats: int) -> dict:
    runs = repeat(train_args(corpus, order, model), repeats)
    return {"seconds": stats(r.seconds for r in runs),
            "peak_rss": stats(r.peak_rss for r in runs)}


def bench_score(model: Path, text: Path, repeats: int) -> dict:
    runs = repeat(score_args(model, text), repeats)
    summary = summary_of(runs[0])
    tokens = summary["tokens"]
    return {"seconds": stats(r.seconds for r in runs),
            "tokens_per_s": stats(tokens / r.seconds for r in runs),
            "peak_rss": stats(r.peak_rss for r in runs),
            "summary": summary}


def count_words(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(len(line.split()) for line in f)


# ------------------------------------------------------------------------------ KenLM

KENLM_CHILD = """
import json, sys, time
started = time.perf_counter()
import kenlm
model = kenlm.Model(sys.argv[1])
loaded = time.perf_counter()
with open(sys.argv[2], encoding="utf-8") as f:
    lines = f.read().split("\\n")
if lines and lines[-1] == "":
    lines.pop()
read = time.perf_counter()
total = sum(model.score(line, bos=True, eos=True) for line in lines)
done = time.perf_counter()
tokens = sum(len(line.split()) + 1 for line in lines)
print(json.dumps({"load_s": loaded - started, "score_s": done - read, "tokens": tokens,
                  "log10prob": total}))
"""

RNNLM_SCORE_CHILD = """
import json, sys, time
started = time.perf_counter()
from rnnlm_cli.models import open_model
from rnnlm_cli.scoring import score_spans
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, read_text
model = open_model(sys.argv[1])
loaded = time.perf_counter()
text = read_text(sys.argv[2])
read = time.perf_counter()
spans = Tokenizer(TokenizerConfig.from_dict(model.metadata["tokenizer"])).token_spans(text)
scored = score_spans(model, spans)
done = time.perf_counter()
print(json.dumps({"load_s": loaded - started, "score_s": done - read,
                  "tokens": int(scored.scores.logprob.size)}))
"""


def bench_scoring_alone(model: Path, arpa: Path, text: Path, repeats: int) -> dict:
    """Scoring alone (tokenizing and lookups, after the model is loaded), in-process:
    rnnlm beside the ``kenlm`` Python module (``pip install kenlm``; its ARPA loading is
    slow and is not counted). KenLM's ``query`` is not installed by pip."""
    def child(code, *args):
        out = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                             capture_output=True, text=True, cwd=PROJECT)
        if out.returncode:
            return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(out.stdout.strip().splitlines()[-1])
    result = {}
    for name, code, path in (("rnnlm", RNNLM_SCORE_CHILD, model), ("kenlm", KENLM_CHILD, arpa)):
        runs = [child(code, path, text) for _ in range(repeats if name == "rnnlm" else 1)]
        if "error" in runs[0]:
            result[name] = {"error": runs[0]["error"]}
            continue
        result[name] = {"tokens_per_s": stats(r["tokens"] / r["score_s"] for r in runs),
                        "load_s": stats(r["load_s"] for r in runs)}
    return result


# ------------------------------------------------------------------------------ NLTK

def read_sentences(path: Path) -> List[List[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f]


def nltk_train(sentences: List[List[str]], order: int, repeats: int):
    """Fit KneserNeyInterpolated; return (last model, Stats of seconds)."""
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    seconds, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        train, vocab = padded_everygram_pipeline(order, sentences)
        model = KneserNeyInterpolated(order=order)
        model.fit(train, vocab)
        seconds.append(time.perf_counter() - start)
    return model, stats(seconds)


def nltk_score(model, sentences: List[List[str]], order: int, max_tokens: int) -> dict:
    """Score the first max_tokens tokens (words and </s>, not <s>) with model.logscore."""
    from nltk.lm.preprocessing import pad_both_ends

    scored, log2_total, infinite = 0, 0.0, 0
    start = time.perf_counter()
    for sent in sentences:
        padded = list(pad_both_ends(sent, n=order))
        # <s> * (order-1), words, </s> * (order-1): score the words and the first </s>.
        for i in range(order - 1, len(padded) - order + 2):
            if scored >= max_tokens:
                break
            lp = model.logscore(padded[i], padded[i - order + 1:i])
            scored += 1
            if math.isinf(lp):
                infinite += 1
            else:
                log2_total += lp
        if scored >= max_tokens:
            break
    seconds = time.perf_counter() - start
    finite = scored - infinite
    return {"tokens": scored, "seconds": seconds, "tokens_per_s": scored / seconds,
            "zero_prob_tokens": infinite,
            "perplexity_finite": 2 ** (-log2_total / finite) if finite else math.nan}


def bench_nltk(train_path: Path, test_path: Path, order: int, max_tokens: int,
               repeats: int) -> Optional[dict]:
    try:
        import nltk
    except ImportError:
        return None
    model, train_seconds = nltk_train(read_sentences(train_path), order, repeats)
    scoring = nltk_score(model, read_sentences(test_path), order, max_tokens)
    return {"version": nltk.__version__, "train_seconds": train_seconds, "score": scoring}


# -------------------------------------------------------------------------- printing

def fmt_s(st: Stats) -> str:
    return f"{st.median:8.2f} s  ({st.min:.2f}-{st.max:.2f})"


def fmt_mb(st: Stats) -> str:
    return (f"{st.median / 1e6:6.0f} MB = {st.median / 2**20:.0f} MiB"
            f"  ({st.min / 1e6:.0f}-{st.max / 1e6:.0f} MB)")


def fmt_rate(st: Stats) -> str:
    return f"{st.median / 1e6:6.3f} M tok/s  ({st.min / 1e6:.3f}-{st.max / 1e6:.3f})"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_header(repeats: int) -> None:
    print("rnnlm n-gram benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; rnnlm figures are whole "
          f"processes (`{' '.join(['python', '-m', 'rnnlm_cli'])} ...`), "
          f"median of {repeats} runs (min-max)")
    print()


def print_viwiki(results: Dict[int, dict], train_tokens: int) -> None:
    print(f"== viwiki: train on train.txt ({train_tokens:,} tokens), score test.txt; "
          "--tokenizer whitespace")
    for order, res in results.items():
        t, s = res["train"], res["score"]
        summary = s["summary"]
        print(f"order {order}")
        print(f"  train   wall     {fmt_s(t['seconds'])}")
        print(f"          peak RSS {fmt_mb(t['peak_rss'])}")
        print(f"  score   wall     {fmt_s(s['seconds'])}   model load included, "
              f"{summary['tokens']:,} tokens incl. </s>")
        print(f"          speed    {fmt_rate(s['tokens_per_s'])}")
        print(f"          peak RSS {fmt_mb(s['peak_rss'])}")
        kenlm = KENLM_PPL[order]
        rel = summary["perplexity"] / kenlm - 1
        print(f"  sanity  PPL incl. OOVs {summary['perplexity']:.6f}  KenLM "
              f"{kenlm:.6f}  (rel. diff {rel:+.1e}; {summary['oovs']:,} OOVs)")
    if 5 in results:
        t, s = results[5]["train"], results[5]["score"]
        print("targets (issue), order 5:")
        print(f"  train wall < {TRAIN_MAX_SECONDS:.0f} s: {t['seconds'].median:.2f} s "
              f"-> {verdict(t['seconds'].median < TRAIN_MAX_SECONDS)}   "
              "(KenLM lmplz: 13.0 s with -S 2G, 9.1 s with -S 4G)")
        print(f"  train peak RSS < 1 GB (10^9 B): {t['peak_rss'].median / 1e9:.3f} GB "
              f"-> {verdict(t['peak_rss'].median < TRAIN_MAX_BYTES)}   "
              "(KenLM lmplz: 505 MB with -S 2G, 0.87 GB with -S 4G)")
        print(f"  scoring >= 1.5M tok/s, load included: "
              f"{s['tokens_per_s'].median / 1e6:.3f} M "
              f"-> {verdict(s['tokens_per_s'].median >= SCORE_MIN_TOKENS_PER_S)}   "
              "(KenLM query, probing: ~3M tok/s)")
    print()


def print_scoring_alone(res: dict) -> None:
    print("== viwiki order 5, scoring alone (model loaded; tokenizing and lookups), in-process")
    for name in ("rnnlm", "kenlm"):
        r = res[name]
        if "error" in r:
            print(f"  {name:6} {r['error']}")
            continue
        what = ("the .npz" if name == "rnnlm" else
                "the ARPA file, into its probing hash table (pip's kenlm has no build_binary)")
        print(f"  {name:6} {fmt_rate(r['tokens_per_s'])}   (load of {what}: "
              f"{r['load_s'].median:.2f} s, not counted)")
    if "error" not in res["rnnlm"] and "error" not in res["kenlm"]:
        ratio = res["rnnlm"]["tokens_per_s"].median / res["kenlm"]["tokens_per_s"].median
        print(f"  rnnlm / kenlm module: {ratio:.2f}x")
    print()


def print_ptb(rnnlm_res: dict, nltk_res: Optional[dict], skipped: Optional[str],
              train_tokens: int) -> None:
    print(f"== PTB, order 3: train on valid.txt ({train_tokens:,} words), score test.txt")
    t, s = rnnlm_res["train"], rnnlm_res["score"]
    rnnlm_train_rate = train_tokens / t["seconds"].median
    print(f"  rnnlm  train  {fmt_s(t['seconds'])}   {rnnlm_train_rate:,.0f} words/s")
    print(f"  rnnlm  score  {fmt_s(s['seconds'])}   "
          f"{s['tokens_per_s'].median:,.0f} tok/s on the whole file "
          f"({s['summary']['tokens']:,} tokens incl. </s>; PPL {s['summary']['perplexity']:.2f})")
    if nltk_res is None:
        print(f"  NLTK   {skipped}")
        print()
        return
    nt, ns = nltk_res["train_seconds"], nltk_res["score"]
    nltk_train_rate = train_tokens / nt.median
    print(f"  NLTK {nltk_res['version']} KneserNeyInterpolated(order=3), in-process, "
          "imports excluded:")
    print(f"  NLTK   train  {fmt_s(nt)}   {nltk_train_rate:,.0f} words/s "
          "(fit only counts; KN sums are computed at query time)")
    print(f"  NLTK   score  {ns['seconds']:8.2f} s  (1 run)      {ns['tokens_per_s']:,.0f} "
          f"tok/s on a SUBSET: the first {ns['tokens']:,} tokens of test.txt (incl. </s>)")
    print(f"                PPL on that subset {ns['perplexity_finite']:.2f} over tokens of "
          f"nonzero probability; {ns['zero_prob_tokens']} had probability 0")
    train_ratio = rnnlm_train_rate / nltk_train_rate
    score_ratio = s["tokens_per_s"].median / ns["tokens_per_s"]
    # No verdict on training alone: NLTK's fit only counts, and pays for the smoothing when
    # it scores; the target is on the same work, the whole job below (and scoring).
    print(f"  ratio rnnlm/NLTK  training {train_ratio:,.1f}x (NLTK defers its KN sums to "
          f"scoring)   scoring {score_ratio:,.0f}x -> target >= {NLTK_MIN_RATIO:.0f}x: "
          f"{verdict(score_ratio >= NLTK_MIN_RATIO)}")
    # The whole PTB job: train, then score all of test.txt. NLTK's scoring time for the
    # whole file is extrapolated from its measured rate on the subset (it would take ~20 min).
    test_tokens = s["summary"]["tokens"]
    rnnlm_job = t["seconds"].median + s["seconds"].median
    nltk_job = nt.median + test_tokens / ns["tokens_per_s"]
    job_ratio = nltk_job / rnnlm_job
    print(f"  whole job (train + score all {test_tokens:,} test tokens): rnnlm {rnnlm_job:.2f} s, "
          f"NLTK ~{nltk_job:,.0f} s (scoring extrapolated from the subset): {job_ratio:,.0f}x "
          f"-> {verdict(job_ratio >= NLTK_MIN_RATIO)}")
    print("  (rnnlm's figures include interpreter start-up and file I/O; NLTK's do not)")
    print()


# ------------------------------------------------------------------------------ main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    p.add_argument("--orders", type=int, nargs="+", default=[3, 5],
                   help="viwiki orders to benchmark (default: 3 5)")
    p.add_argument("--skip-nltk", action="store_true", help="leave out the NLTK peer")
    p.add_argument("--skip-kenlm", action="store_true",
                   help="leave out the kenlm Python module's scoring")
    p.add_argument("--nltk-tokens", type=int, default=2000,
                   help="PTB test tokens NLTK scores (it does 50-100 tokens/s; default 2000)")
    p.add_argument("--json", action="store_true",
                   help="also print all figures as one JSON object at the end")
    return p.parse_args(argv)


def to_jsonable(obj):
    if isinstance(obj, Stats):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv=None) -> int:
    args = parse_args(argv)
    if not CORPORA.is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA} "
              "(they come with the development machines, not with a clone)")
        return 0
    vi_train, vi_test = CORPORA / "viwiki" / "train.txt", CORPORA / "viwiki" / "test.txt"
    ptb_train, ptb_test = CORPORA / "ptb" / "valid.txt", CORPORA / "ptb" / "test.txt"
    print_header(args.repeats)
    report: dict = {"repeats": args.repeats}

    with tempfile.TemporaryDirectory(prefix="ngram_bench_") as tmp:
        viwiki = {}
        for order in args.orders:
            model = Path(tmp) / f"viwiki.o{order}.npz"
            viwiki[order] = {"train": bench_train(vi_train, order, model, args.repeats),
                             "score": bench_score(model, vi_test, args.repeats)}
        print_viwiki(viwiki, count_words(vi_train))
        report["viwiki"] = viwiki
        if 5 in args.orders and not args.skip_kenlm:
            arpa = Path(tmp) / "viwiki.o5.arpa"
            subprocess.run(train_args(vi_train, 5, Path(tmp) / "with-arpa.npz")
                           + ["--arpa", str(arpa)], check=True, capture_output=True)
            alone = bench_scoring_alone(Path(tmp) / "viwiki.o5.npz", arpa, vi_test,
                                        args.repeats)
            print_scoring_alone(alone)
            report["viwiki_scoring_alone"] = alone

        model = Path(tmp) / "ptb.o3.npz"
        ptb = {"train": bench_train(ptb_train, 3, model, args.repeats),
               "score": bench_score(model, ptb_test, args.repeats)}
    nltk_res, skipped = None, None
    if args.skip_nltk:
        skipped = "skipped (--skip-nltk)"
    else:
        nltk_res = bench_nltk(ptb_train, ptb_test, 3, args.nltk_tokens, args.repeats)
        if nltk_res is None:
            skipped = "skipped: nltk not installed (pip install nltk)"
    print_ptb(ptb, nltk_res, skipped, count_words(ptb_train))
    report["ptb"] = {"rnnlm": ptb, "nltk": nltk_res, "nltk_skipped": skipped}

    if args.json:
        print(json.dumps(to_jsonable(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
