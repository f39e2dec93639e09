#!/usr/bin/env python3
"""Peak memory and time of ``rnnlm train-ngram`` under ``--memory`` budgets, beside the
unbounded in-memory training it falls back from.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/ngram_memory_bench.py                       # viwiki, order 5, 3 repeats
    python bench/ngram_memory_bench.py --memory 100M,400M --repeats 5 --tokenizer regex
    python bench/ngram_memory_bench.py --arpa                # the ARPA file written too

Each figure is a whole ``rnnlm train-ngram`` process, timed and measured with ``os.wait4``
(wall time and the child's exact peak RSS), median of ``--repeats`` runs, the
configurations taking turns so that a busy machine weighs on all alike:

- ``in memory``: no ``--memory`` (the default budget, half the free memory, holds the
  whole corpus and every table: the path train-ngram always took before budgets);
- ``--memory SIZE`` for each size of ``--memory``: counting in blocks, sorted runs and
  the estimate from tables on disk, under the budget.

Every model must be byte for byte the in-memory one (and its ARPA file, with ``--arpa``);
the script checks and says so. The data lives in ``../shared`` relative to the project
root; without it the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import sys
import tempfile
from pathlib import Path

from measure import cpu_model, run_child

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
RNNLM = [sys.executable, "-m", "rnnlm_cli"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPORA / "viwiki" / "train.txt")
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--tokenizer", default="whitespace")
    parser.add_argument("--memory", default="200M,500M",
                        help="budgets to measure, comma-separated (default 200M,500M)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arpa", action="store_true", help="write the ARPA file too")
    options = parser.parse_args()
    if not options.corpus.is_file():
        print(f"{options.corpus} is absent: nothing to measure")
        return 0
    budgets = [None] + options.memory.split(",")
    runs = {budget: [] for budget in budgets}
    with tempfile.TemporaryDirectory() as folder:
        def outputs(budget):
            name = Path(folder) / f"m-{budget or 'in-memory'}"
            return name.with_suffix(".npz"), name.with_suffix(".arpa")

        for _ in range(options.repeats):
            for budget in budgets:                  # in turns: the load falls on all alike
                model, arpa = outputs(budget)
                args = RNNLM + ["train-ngram", str(options.corpus), "--order",
                                str(options.order), "--tokenizer", options.tokenizer,
                                "-o", str(model), "--temp-dir", folder]
                args += ["--arpa", str(arpa)] if options.arpa else []
                args += ["--memory", budget] if budget else []
                run = run_child(args)
                runs[budget].append((run.seconds, run.peak_rss))
        same = all(filecmp.cmp(outputs(b)[0], outputs(None)[0], shallow=False) and
                   (not options.arpa or filecmp.cmp(outputs(b)[1], outputs(None)[1],
                                                    shallow=False)) for b in budgets[1:])
    print(f"train-ngram {options.corpus.parent.name}/{options.corpus.name} --order "
          f"{options.order} --tokenizer {options.tokenizer}{' --arpa' if options.arpa else ''}"
          f"; median of {options.repeats} (range); CPU: {cpu_model()}, {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'budget':>12} {'seconds':>22} {'peak RSS MB':>22}")
    for budget in budgets:
        seconds = [s for s, _ in runs[budget]]
        peaks = [p / 2**20 for _, p in runs[budget]]
        print(f"{budget or 'in memory':>12} {statistics.median(seconds):>8.1f} "
              f"({min(seconds):.1f}-{max(seconds):.1f}) {statistics.median(peaks):>10.0f} "
              f"({min(peaks):.0f}-{max(peaks):.0f})")
    print("models (and ARPA files) byte for byte the in-memory one:", "yes" if same else "NO")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
