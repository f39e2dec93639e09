#!/usr/bin/env python3
"""A synthetic corpus with a long-range dependency and a known best perplexity.

Each line is ``KEY f_1 ... f_L TARGET``: a key word drawn uniformly from K keys; filler
words from a Markov chain that ignores the key (first filler from a start distribution
pi, then transitions T); after each filler the line ends with probability q = 1/G, so
the number of fillers L is geometric with mean G and memoryless (no model gains by
counting positions); then the target word fixed by the key. To predict the target a
model must remember the key across L fillers: the long-dependency problem ("In France,
I had a great time and I learnt some of the ___ language").

Under the true source, with <s> before and </s> after each line (KenLM's conventions:
</s> is a token, <s> is not), a line's log-probability is

    log p = -log K + log pi(f_1) + sum_{i<L} [log(1 - q) + log T(f_i, f_{i+1})] + log q

(the target and </s> then have probability 1). The generator prints the exact negative
log-likelihood of the sample it wrote (so the best possible perplexity on it), the
expected entropy per line, and the floor of any model blind to the key, which must
spread the target over the K targets: NLL + log K per line. Every n-gram with n < L + 2
is key-blind at the target, so the floor bounds them.

    python corpora/longrange.py --gap 10 --keys 10 --out-dir /tmp/lr10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import List

import numpy as np


@dataclass
class Source:
    """The true source: its parameters, fixed by ``source_seed``."""

    keys: int
    gap: float
    fillers: int
    start: np.ndarray        # (F,) pi
    transition: np.ndarray   # (F, F) T, rows sum to 1

    @property
    def stop(self) -> float:
        return 1.0 / self.gap

    @classmethod
    def make(cls, keys: int, gap: float, fillers: int, source_seed: int = 0,
             concentration: float = 0.3) -> "Source":
        """Start and transition rows from a Dirichlet: a peaked, learnable filler chain."""
        rng = np.random.default_rng(source_seed)
        start = rng.dirichlet(np.full(fillers, concentration))
        transition = rng.dirichlet(np.full(fillers, concentration), size=fillers)
        return cls(keys, gap, fillers, start, transition)

    def key_word(self, k: int) -> str:
        return f"key{k}"

    def target_word(self, k: int) -> str:
        return f"target{k}"

    def filler_word(self, f: int) -> str:
        return f"w{f}"

    # -- sampling --------------------------------------------------------------------

    def sample(self, lines: int, rng: np.random.Generator) -> List[List[str]]:
        out = []
        for _ in range(lines):
            key = int(rng.integers(self.keys))
            f = int(rng.choice(self.fillers, p=self.start))
            words = [self.key_word(key), self.filler_word(f)]
            while rng.random() >= self.stop:            # continue with probability 1 - q
                f = int(rng.choice(self.fillers, p=self.transition[f]))
                words.append(self.filler_word(f))
            words.append(self.target_word(key))
            out.append(words)
        return out

    # -- exact figures ----------------------------------------------------------------

    def line_logprob(self, words: List[str]) -> float:
        """Natural-log probability of one line (``</s>`` included) under the source."""
        fillers = [int(w[1:]) for w in words[1:-1]]
        logp = -math.log(self.keys) + math.log(self.start[fillers[0]]) + math.log(self.stop)
        for a, b in zip(fillers, fillers[1:]):
            logp += math.log1p(-self.stop) + math.log(self.transition[a, b])
        return logp

    def expected_line_entropy(self) -> float:
        """E[-log p(line)]: log K + H(pi) - log q
        + sum_{i>=1} (1-q)^i  pi T^{i-1} (h - log(1-q)),  h_j = H(T_j),
        the sum being (1-q) pi (I - (1-q) T)^{-1} (h - log(1-q))."""
        q = self.stop
        h = -np.sum(np.where(self.transition > 0,
                             self.transition * np.log(self.transition), 0.0), axis=1)
        h_start = -np.sum(np.where(self.start > 0, self.start * np.log(self.start), 0.0))
        per_step = h - math.log1p(-q)
        continued = (1 - q) * self.start @ np.linalg.solve(
            np.eye(self.fillers) - (1 - q) * self.transition, per_step)
        return math.log(self.keys) + h_start - math.log(q) + float(continued)


def figures(source: Source, sample: List[List[str]]) -> dict:
    """Exact NLL of the sample, best perplexity, and the key-blind floor."""
    nll = -sum(source.line_logprob(words) for words in sample)
    tokens = sum(len(words) + 1 for words in sample)     # words and </s>
    blind = nll + len(sample) * math.log(source.keys)
    return {"lines": len(sample), "tokens": tokens, "nll": nll,
            "true_perplexity": math.exp(nll / tokens),
            "key_blind_floor_perplexity": math.exp(blind / tokens),
            "expected_line_entropy": source.expected_line_entropy(),
            "sample_line_entropy": nll / len(sample)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gap", type=float, default=10.0, help="mean number of fillers G")
    parser.add_argument("--keys", type=int, default=10, help="number of keys K")
    parser.add_argument("--fillers", type=int, default=20, help="filler vocabulary size")
    parser.add_argument("--train-lines", type=int, default=20000)
    parser.add_argument("--valid-lines", type=int, default=2000)
    parser.add_argument("--test-lines", type=int, default=2000)
    parser.add_argument("--source-seed", type=int, default=0, help="fixes the source")
    parser.add_argument("--seed", type=int, default=1, help="fixes the samples")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.gap < 1 or args.keys < 1 or args.fillers < 1:
        parser.error("--gap must be >= 1, --keys and --fillers >= 1")
    source = Source.make(args.keys, args.gap, args.fillers, args.source_seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    report = {"gap": args.gap, "keys": args.keys, "fillers": args.fillers}
    for name, lines in (("train", args.train_lines), ("valid", args.valid_lines),
                        ("test", args.test_lines)):
        sample = source.sample(lines, rng)
        with open(os.path.join(args.out_dir, f"{name}.txt"), "w", encoding="utf-8") as out:
            out.writelines(" ".join(words) + "\n" for words in sample)
        report[name] = figures(source, sample)
    if args.json:
        print(json.dumps(report))
    else:
        for name in ("train", "valid", "test"):
            f = report[name]
            print(f"{name}: {f['lines']} lines, {f['tokens']} tokens; true perplexity "
                  f"{f['true_perplexity']:.4f}, key-blind floor "
                  f"{f['key_blind_floor_perplexity']:.4f}; entropy per line "
                  f"{f['sample_line_entropy']:.4f} nats (expected "
                  f"{f['expected_line_entropy']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
