#!/usr/bin/env python3
"""Benchmark ``rnnlm perplexity`` beside KenLM's ``query`` on a large n-gram model.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/scoring_bench.py                      # 5 runs each (a few minutes)
    python bench/scoring_bench.py --repeats 7 --text ../shared/corpora/viwiki/test.txt
    python bench/scoring_bench.py --also-python ../main/venv/bin/python   # before/after

In one run it trains (once, kept in ``--work``) the order-5 Kneser-Ney model of
Vietnamese Wikipedia's ``train.txt`` with ``rnnlm train-ngram --arpa``, builds KenLM's
probing binary of the same ARPA file (``build_binary probing``), and scores ``--text``
(default: ``train.txt`` itself, 4.5M tokens) with both, as whole processes:

- ``rnnlm perplexity MODEL.npz TEXT --json`` (totals only);
- ``query -v summary MODEL.probing < TEXT`` (totals only; without ``-v summary`` query
  also writes a line per sentence).

Each figure is the median of ``--repeats`` runs, rnnlm and query alternating so that
both meet the same load: wall time, CPU time (user + system: what a loaded machine
inflates least), tokens/s (tokens including ``</s>``, over the wall time) and the child's
peak RSS (``os.wait4``'s ``ru_maxrss``). Before them, one unmeasured run of each warms
the page cache and Python's bytecode cache (the children run without
``PYTHONDONTWRITEBYTECODE``, as an installed package does). ``--also-python`` adds the
same measurement for another interpreter's rnnlm (another checkout: before and after a
change in one run), on a model that rnnlm trains itself. The issue's targets are printed
beside the figures: tokens/s at least 1.0x query's, peak RSS at most 1.5x query's.

KenLM's binaries are looked for in ``$KENLM_BIN``, then in ``../peers/kenlm/bin`` beside
the project; without them the KenLM half is skipped with a message. The corpora live in
``../shared``; without them the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from measure import Run, child_env, cpu_model, run_child

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
CORPORA = SHARED / "corpora"
KENLM_DEFAULT = PROJECT.parent / "peers" / "kenlm" / "bin"
ORDER = 5

SPEED_TARGET = 1.0     # rnnlm tokens/s over query's, at least
RSS_TARGET = 1.5       # rnnlm peak RSS over query's, at most


# -- the two commands -----------------------------------------------------------------------

def rnnlm(python: str, *args) -> List[str]:
    return [python, "-m", "rnnlm_cli", *map(str, args)]


def rnnlm_tokens_and_ppl(run: Run):
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    return summary["tokens"], summary["perplexity"]


def query_tokens_and_ppl(run: Run):
    fields = dict(line.split(":\t", 1) for line in run.stdout.splitlines() if ":\t" in line)
    return int(fields["Tokens"]), float(fields["Perplexity including OOVs"])


def kenlm_bin() -> Optional[Path]:
    for folder in (os.environ.get("KENLM_BIN"), KENLM_DEFAULT):
        if folder and all((Path(folder) / name).is_file() for name in ("query", "build_binary")):
            return Path(folder)
    return None


# -- preparing the models ------------------------------------------------------------------

def prepare(work: Path, corpus: Path, python: str, name: str, arpa: bool) -> Path:
    """The order-5 model of ``corpus`` that ``python``'s rnnlm trains, kept in ``work``."""
    model = work / f"{name}.npz"
    if not model.exists():
        print(f"training {model.name} (order {ORDER}) with {python} ...", flush=True)
        extra = ["--arpa", work / f"{name}.arpa"] if arpa else []
        subprocess.run(rnnlm(python, "train-ngram", corpus, "--tokenizer", "whitespace",
                             "--order", ORDER, "-o", model, *extra),
                       check=True, capture_output=True, env=child_env(), cwd=work)
    return model


def prepare_probing(work: Path, kenlm: Path) -> Path:
    binary = work / "rnnlm.probing"
    if not binary.exists():
        print("building KenLM's probing binary ...", flush=True)
        subprocess.run([kenlm / "build_binary", "probing", work / "rnnlm.arpa", binary],
                       check=True, capture_output=True)
    return binary


# -- measuring -----------------------------------------------------------------------------

def measure(commands: Dict[str, tuple], repeats: int, cwd: Path) -> Dict[str, dict]:
    """Each ``name: (args, stdin, parse)`` run once unmeasured, then ``repeats`` times,
    the commands alternating; medians of wall time, CPU time, tokens/s and peak RSS."""
    for args, stdin, _ in commands.values():
        run_child(args, stdin, cwd)
    runs: Dict[str, List[Run]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (args, stdin, _) in commands.items():
            runs[name].append(run_child(args, stdin, cwd))
    results = {}
    for name, (_, _, parse) in commands.items():
        tokens, ppl = parse(runs[name][0])
        seconds = [r.seconds for r in runs[name]]
        results[name] = {
            "tokens": tokens, "perplexity": ppl, "seconds": seconds,
            "median_s": statistics.median(seconds),
            "cpu_s": statistics.median(r.cpu_seconds for r in runs[name]),
            "tokens_per_s": tokens / statistics.median(seconds),
            "peak_rss": statistics.median(r.peak_rss for r in runs[name]),
        }
    return results


def print_results(results: Dict[str, dict], text: Path) -> None:
    print(f"\nScoring {text} with an order-{ORDER} Kneser-Ney model "
          "(whole processes; medians)")
    print(f"  {'':<22} {'wall s':>7} {'range':>13} {'CPU s':>6} {'tokens/s':>11} "
          f"{'peak RSS':>10} {'perplexity':>12}")
    for name, r in results.items():
        print(f"  {name:<22} {r['median_s']:7.3f} {min(r['seconds']):6.3f}-"
              f"{max(r['seconds']):<6.3f} {r['cpu_s']:6.2f} {r['tokens_per_s'] / 1e6:9.2f} M "
              f"{r['peak_rss'] / 2 ** 20:7.0f} MB {r['perplexity']:12.6f}")
    query = results.get("KenLM query")
    if query is None:
        return
    for name, r in results.items():
        if name == "KenLM query":
            continue
        speed = r["tokens_per_s"] / query["tokens_per_s"]
        rss = r["peak_rss"] / query["peak_rss"]
        print(f"  {name}: {speed:.2f}x query's tokens/s (target >= {SPEED_TARGET}x: "
              f"{'met' if speed >= SPEED_TARGET else 'NOT met'}), peak RSS {rss:.2f}x "
              f"query's (target <= {RSS_TARGET}x: {'met' if rss <= RSS_TARGET else 'NOT met'})")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="measured runs of each (median)")
    p.add_argument("--text", type=Path, default=CORPORA / "viwiki" / "train.txt",
                   help="the text to score (default: viwiki/train.txt)")
    p.add_argument("--work", type=Path,
                   default=Path(tempfile.gettempdir()) / "rnnlm-scoring-bench",
                   help="where the models are kept between runs (trained if absent)")
    p.add_argument("--also-python", metavar="PYTHON",
                   help="also measure the rnnlm of another interpreter (another checkout)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    corpus = CORPORA / "viwiki" / "train.txt"
    if not corpus.is_file():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    args.work, args.text = args.work.resolve(), args.text.resolve()   # (children run in work)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs (shared: other work on the machine "
          f"slows both sides); {args.repeats} runs each")
    kenlm = kenlm_bin()
    model = prepare(args.work, corpus, sys.executable, "rnnlm", arpa=kenlm is not None)
    commands = {"rnnlm perplexity": (rnnlm(sys.executable, "perplexity", model, args.text,
                                           "--json"), None, rnnlm_tokens_and_ppl)}
    if args.also_python:
        other = prepare(args.work, corpus, args.also_python, "other", arpa=False)
        commands["rnnlm (--also-python)"] = (
            rnnlm(args.also_python, "perplexity", other, args.text, "--json"), None,
            rnnlm_tokens_and_ppl)
    if kenlm is None:
        print(f"KenLM skipped: no query and build_binary in $KENLM_BIN or {KENLM_DEFAULT} "
              "(build KenLM from source: see bench/README.md)")
    else:
        if not (args.work / "rnnlm.arpa").exists():   # (a model trained without it)
            (args.work / "rnnlm.npz").unlink()
            model = prepare(args.work, corpus, sys.executable, "rnnlm", arpa=True)
        commands["KenLM query"] = ([kenlm / "query", "-v", "summary",
                                    prepare_probing(args.work, kenlm)], args.text,
                                   query_tokens_and_ppl)
    results = measure(commands, args.repeats, args.work)
    print_results(results, args.text)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
