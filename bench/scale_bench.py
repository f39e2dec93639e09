#!/usr/bin/env python3
"""rnnlm's n-gram training and scoring at scale, beside KenLM (issue #16), in one run.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/scale_bench.py --quick          # the whole pipeline on 0.3M-3M tokens
    python bench/scale_bench.py                  # 10M, 30M, 100M tokens (hours)
    python bench/scale_bench.py --sections corpus          # only make the corpus
    python bench/scale_bench.py --sections scoring,errors  # some sections again

Sections (``--sections``, all by default, in this order):

``corpus``
    Made once and kept in ``bench/data/scale`` (``scale-quick`` with ``--quick``;
    ``bench/data/`` is ignored by git): the order-5 Kneser-Ney model of
    ``viwiki/train.txt`` (``train-ngram --tokenizer whitespace``), then sentences sampled
    from it with a fixed seed by ``BackoffSampler`` (below) until 100M words, written
    space-separated one sentence a line, with the 10M and 30M prefixes (whole sentences)
    and a held-out sample of 10k sentences drawn with another seed. It prints the number
    of distinct 5-grams at each size, beside real text (viwiki's own files) at the sizes
    it has: a corpus that repeated itself would stop growing there.
``growth``
    ``rnnlm train-ngram --order 5 --memory 2G``, the same without ``--memory`` (its
    default budget) and KenLM's ``lmplz -o 5 -S 2G`` on each size, whole processes taking
    turns (wall time and the child's peak RSS by ``os.wait4``, ``bench/measure.py``),
    median of ``--repeats`` runs (``--repeats-largest`` at the largest size); the two
    rnnlm models must be the same bytes. Then the perplexity of the held-out sample by
    ``rnnlm perplexity`` and by KenLM's ``query`` on lmplz's model, and at the largest
    size the issue's targets: peak RSS at most 2.5 GB, wall time at most 1.0x lmplz's,
    perplexity within 0.1% of KenLM's.
``scoring``
    ``rnnlm perplexity MODEL.npz TEXT --json`` beside ``query -v summary MODEL.probing <
    TEXT``, the probing binary built by ``build_binary probing`` from lmplz's ARPA file of
    the same corpus (the same n-grams as rnnlm's model: the script prints both counts),
    on ``viwiki/train.txt`` (its own model) and on the largest corpus (the largest
    model): one unmeasured run of each, then ``--score-repeats`` runs taking turns;
    tokens/s and peak RSS ratios beside the targets (at least 1.0x query's speed, at most
    1.5x its peak RSS).
``dask``
    Only if ``rnnlm train-ngram --help`` offers ``--scheduler`` (else it says so and
    goes on): a ``distributed.LocalCluster`` of 2 worker processes (started by
    ``python -c`` in a child), ``train-ngram --scheduler ADDRESS`` on the smallest size
    beside the single-process run of ``growth``: the time of each and whether the model
    files are the same bytes.
``errors``
    Bad input to ``train-ngram``: ``--memory 0``, ``--memory lots``, a ``--temp-dir`` that
    does not exist and one that cannot be written, an unreachable ``--scheduler``: the
    exit status and what it printed (one ``Error:`` line each).

``--dask`` runs the dask section alone (with the corpus it needs); ``--check-sampler``
checks ``BackoffSampler`` alone: a chi-square test of its next-word draws against the
source model's own distributions after a few histories (ratios near 1: exact).

Every timed section prints the load average (as ``uptime``) at its start and end: the
machine is shared. KenLM is not a dependency: ``--kenlm DIR`` names the folder holding
``lmplz``, ``query`` and ``build_binary``; by default they are looked for on ``PATH``,
then in ``$KENLM_BIN``, then in ``../peers/kenlm/bin``; without them the KenLM half is
skipped with a message. Without ``../shared/corpora`` the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from measure import PROJECT, Run, cpu_model, load_average, run_child

from rnnlm_cli.models import open_model
from rnnlm_cli.ngram import trie
from rnnlm_cli.vocab import Vocabulary

VIWIKI = PROJECT.parent / "shared" / "corpora" / "viwiki"
DATA = PROJECT / "bench" / "data"
KENLM_FALLBACK = PROJECT.parent / "peers" / "kenlm" / "bin"
RNNLM = [sys.executable, "-m", "rnnlm_cli"]
ORDER = 5
BUDGET = "2G"
SECTIONS = ("corpus", "growth", "scoring", "dask", "errors")

CORPUS_SEED, HELDOUT_SEED, HASH_SEED = 1, 2, 3
RSS_TARGET = 2.5e9            # train-ngram --memory 2G: peak RSS at most 2.5 GB
WALL_TARGET = 1.0             # ... and at most 1.0x lmplz's wall time
PPL_TARGET = 1e-3             # held-out perplexity within 0.1% of KenLM's
SPEED_TARGET = 1.0            # scoring: tokens/s at least 1.0x query's
SCORE_RSS_TARGET = 1.5        # ... with peak RSS at most 1.5x query's


@dataclass
class Plan:
    """What to make and measure: corpus sizes in words (the last is "the" large corpus),
    the held-out sample's sentences, and where the files go."""

    sizes: Dict[str, int]
    heldout_sentences: int
    folder: Path
    sentences_per_round: int         # sampled side by side

    @property
    def largest(self) -> str:
        return list(self.sizes)[-1]

    def corpus(self, name: str) -> Path:
        return self.folder / f"corpus-{name}.txt"

    @property
    def heldout(self) -> Path:
        return self.folder / "heldout.txt"

    @property
    def source_model(self) -> Path:
        return DATA / "source-viwiki.o5.npz"

    @property
    def models(self) -> Path:
        return self.folder / "models"


FULL = Plan({"10M": 10_000_000, "30M": 30_000_000, "100M": 100_000_000}, 10_000,
            DATA / "scale", 500_000)
QUICK = Plan({"300k": 300_000, "1M": 1_000_000, "3M": 3_000_000}, 2_000,
             DATA / "scale-quick", 100_000)


def say(*parts) -> None:
    print(*parts, flush=True)


def section_start(title: str) -> float:
    say(f"\n== {title}\n   (load average at start: {load_average()})")
    return time.perf_counter()


def section_end(started: float) -> None:
    say(f"   (load average at end: {load_average()}; section took "
        f"{time.perf_counter() - started:.0f} s)")


# -- sampling a corpus from a back-off model ----------------------------------------------

class BackoffSampler:
    """Sentences sampled from a back-off n-gram model (``NgramModel``), many at once.

    The model gives, after a history whose last L words ``h_L`` are its longest context
    in the model (the ARPA rule of ``ngram/model.py``)::

        p(w | h_L) = p*(h_L w)                      if (h_L w) is in the model (explicit)
                   = bow(h_L) * p(w | h_{L-1})      otherwise

    The explicit n-grams of ``h_L`` hold mass ``M = sum_w p*(h_L w)``, and in a
    normalized model ``bow(h_L) = (1 - M) / (1 - sum over those w of p(w | h_{L-1}))``.
    So an exact sample of ``p(. | h_L)`` is: with probability M, an explicit word, chosen
    in proportion to ``p*``; else a sample of ``p(. | h_{L-1})`` (the same procedure, one
    word of context shorter) drawn again while it is one of the explicit words of
    ``h_L``: the draws this rejection accepts have the distribution ``p(w | h_{L-1})``
    renormalized over the other words, which is what the second line gives them. At the
    empty context the unigram distribution is sampled directly.

    The recursion is unrolled into a small machine run on all the sentences at once
    (``Rows``): each row draws at a level (going down a level when it backs off), or
    holds a candidate word accepted up to a level, which is checked against the explicit
    words of the context one word longer: accepted there it climbs a level, rejected it
    is drawn afresh at its level. A row whose candidate reaches its longest context has
    its next word and goes on to the one after, whatever the other rows are doing, so a
    row stuck in a long rejection holds no one up; each pass of the loop is a few array
    operations per level over the rows at that stage.

    The explicit words of a context are a contiguous run of the next order's table
    (trie keys ``row(context) * |V| + word``, sorted; ``trie.child_starts`` gives the
    runs). A run is sampled by binary lifting over the cumulative probabilities within
    the run, computed once per table with the running sum set back to zero at each run's
    start (so they are accurate to about 1e-16, not to the table's whole sum).

    Two conditions, by rejection too: a sentence never holds ``<unk>`` or ``<s>``
    (KenLM refuses them in its training text), and empty sentences are dropped.
    """

    def __init__(self, model):
        tables = model.tables
        self.order = tables.order
        self.vocab_size = len(model.vocab)
        self.eos = model.vocab.eos_id
        self.bos = model.vocab.bos_id
        self.keys = tables.keys
        self.first, self.within, self.mass = {}, {}, {}
        for n in range(2, self.order + 1):        # the order-n table continues (n-1)-grams
            first = trie.child_starts(tables.keys[n - 1], tables.keys[n - 2].size,
                                      self.vocab_size).astype(np.int64)
            self.first[n] = first
            self.within[n], self.mass[n] = run_cumsums(np.exp(tables.logprob[n - 1]), first)
        self.unigram_cum = np.cumsum(np.exp(tables.logprob[0]))

    def sentences(self, count: int, rng: np.random.Generator):
        """``(words, lengths)``: ``count`` sentences (fewer: the empty ones are dropped)
        back to back as word ids, and each one's length."""
        state = np.full((count, self.order - 1), -1, dtype=np.int64)   # (B, N-1)
        state[:, 0] = self.bos
        rows = Rows(self, state, np.arange(count))
        owners, tokens = [], []
        while rows.size:
            final = rows.step(rng)
            owners.append(rows.sentence[final])
            tokens.append(rows.word[final])
            going = final[rows.word[final] != self.eos]
            rows.restart(going, self.advance(rows.state[going], rows.word[going]))
            rows.drop(final[rows.word[final] == self.eos])
        owner = np.concatenate(owners)
        token = np.concatenate(tokens)[np.argsort(owner, kind="stable")]   # by sentence
        lengths = np.bincount(owner, minlength=count) - 1                  # without </s>
        return token[token != self.eos].astype(np.int32), lengths[lengths > 0]

    def draw(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The next word of each row of ``state`` (what ``sentences`` draws at each
        step)."""
        rows = Rows(self, state, np.arange(state.shape[0]))
        done = np.zeros(state.shape[0], dtype=bool)
        while not done.all():
            final = rows.step(rng)
            done[final] = True
            rows.accepted[final] = self.order          # (out of the loop: not drawn again)
        return rows.word

    def advance(self, state: np.ndarray, words: np.ndarray) -> np.ndarray:
        """The state after ``words``: for k = 1..N-1, the row of the k-gram ending at the
        new word (-1 if it is not in the model), as ``NgramModel.advance``."""
        new = np.full_like(state, -1)
        new[:, 0] = words
        for k in range(2, self.order):
            new[:, k - 1] = self.row(k, state[:, k - 2], words)
        return new

    def row(self, n: int, context: np.ndarray, words: np.ndarray) -> np.ndarray:
        """The row of each n-gram ``(context, word)`` in the order-n table, -1 if absent
        (``context``: rows of the order n-1 table, -1 for an absent one)."""
        rows = np.full(words.size, -1, dtype=np.int64)
        present = np.flatnonzero(context >= 0)
        if present.size:
            queries = context[present].astype(np.uint64) * np.uint64(self.vocab_size) \
                + words[present].astype(np.uint64)
            rows[present] = trie.find(self.keys[n - 1], self.first[n], context[present],
                                      queries)
        return rows

    def unigrams(self, count: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(count) * self.unigram_cum[-1]
        return np.minimum(np.searchsorted(self.unigram_cum, u, side="right"),
                          self.vocab_size - 1)

    def explicit(self, n: int, context: np.ndarray, u: np.ndarray):
        """For contexts (rows of the order n-1 table) and uniform numbers ``u``: which
        draw an explicit word (``u`` below the context's mass), and those words."""
        mass = np.where(context >= 0, self.mass[n][np.maximum(context, 0)], 0.0)
        chosen = np.flatnonzero(u < mass)
        lo = self.first[n][context[chosen]]
        entry = first_above(self.within[n], lo, self.first[n][context[chosen] + 1] - lo,
                            u[chosen])
        words = (self.keys[n - 1][entry] % np.uint64(self.vocab_size)).astype(np.int64)
        return chosen, words


class Rows:
    """The sentences ``BackoffSampler`` is writing, one row each, and where each stands
    in drawing its next word: ``level``, the context length it draws at (while
    ``word`` is -1), or ``word``, a candidate accepted up to context length
    ``accepted``; ``top`` is the longest context of its history in the model."""

    def __init__(self, sampler: BackoffSampler, state: np.ndarray, sentence: np.ndarray):
        self.sampler = sampler
        self.state, self.sentence = state, sentence             # (B, N-1), (B,)
        self.top = self.longest(state)
        self.word = np.full(sentence.size, -1, dtype=np.int64)
        self.level = self.top.copy()
        self.accepted = np.full(sentence.size, -1, dtype=np.int64)

    @property
    def size(self) -> int:
        return self.sentence.size

    def longest(self, state: np.ndarray) -> np.ndarray:
        """The length of the longest context in the model (>= 1: the last word)."""
        return state.shape[1] - np.argmax((state >= 0)[:, ::-1], axis=1)

    def step(self, rng: np.random.Generator) -> np.ndarray:
        """One pass: every row draws or checks once; the rows whose word is final."""
        drawing = np.flatnonzero(self.word < 0)
        checking = np.flatnonzero((self.word >= 0) & (self.accepted < self.top))
        self.draw(drawing, rng)
        self.check(checking)
        final = np.flatnonzero((self.word >= 0) & (self.accepted == self.top))
        special = final[(self.word[final] == Vocabulary.unk_id)
                        | (self.word[final] == self.sampler.bos)]
        self.word[special], self.level[special] = -1, self.top[special]   # drawn afresh
        return np.setdiff1d(final, special, assume_unique=True)

    def draw(self, rows: np.ndarray, rng: np.random.Generator) -> None:
        """Rows at level 0 take a unigram; rows at level L >= 1 an explicit word of their
        context of length L with probability M, else go down to level L - 1."""
        levels = self.level[rows]
        for level in np.unique(levels).tolist():
            at = rows[levels == level]
            if level == 0:
                self.word[at], self.accepted[at] = self.sampler.unigrams(at.size, rng), 0
                continue
            chosen, words = self.sampler.explicit(level + 1, self.state[at, level - 1],
                                                  rng.random(at.size))
            self.level[at] -= 1
            self.level[at[chosen]] += 1
            self.word[at[chosen]], self.accepted[at[chosen]] = words, level

    def check(self, rows: np.ndarray) -> None:
        """A candidate accepted up to context length j that is an explicit word of the
        context of length j + 1 is drawn afresh at level j; else it is accepted up to
        j + 1."""
        levels = self.accepted[rows]                   # (a copy: the loop changes them)
        for level in np.unique(levels).tolist():
            at = rows[levels == level]
            explicit = self.sampler.row(level + 2, self.state[at, level], self.word[at]) >= 0
            rejected = at[explicit]
            self.word[rejected], self.level[rejected] = -1, level
            self.accepted[at[~explicit]] = level + 1

    def restart(self, rows: np.ndarray, state: np.ndarray) -> None:
        """The rows whose word was final go on from ``state``."""
        self.state[rows] = state
        self.top[rows] = self.longest(state)
        self.word[rows], self.level[rows], self.accepted[rows] = -1, self.top[rows], -1

    def drop(self, rows: np.ndarray) -> None:
        if rows.size:
            keep = np.ones(self.size, dtype=bool)
            keep[rows] = False
            for name in ("state", "sentence", "top", "word", "level", "accepted"):
                setattr(self, name, getattr(self, name)[keep])


def run_cumsums(prob: np.ndarray, first: np.ndarray):
    """``(within, mass)``: for each entry of a table, the sum of the probabilities of its
    run up to and including it; for each context, its run's total (0 if empty)."""
    sizes = np.diff(first)
    starts = first[:-1][sizes > 0]
    seg = prob.astype(np.float64)
    totals = np.add.reduceat(seg, starts) if starts.size else np.zeros(0)
    seg[starts[1:]] -= totals[:-1]            # the running sum falls back to ~0 at each run
    running = np.cumsum(seg)
    leftover = np.zeros(starts.size)          # what is left of the earlier runs (rounding)
    leftover[1:] = running[starts[1:] - 1] - totals[:-1]
    within = running - np.repeat(leftover, sizes[sizes > 0])
    mass = np.zeros(sizes.size)
    mass[sizes > 0] = within[first[1:][sizes > 0] - 1]
    return within, mass


def first_above(within: np.ndarray, lo: np.ndarray, size: np.ndarray,
                u: np.ndarray) -> np.ndarray:
    """For each run ``within[lo:lo + size]`` (ascending), the first position whose value
    exceeds ``u`` (the last of the run if none does, by rounding), by binary lifting:
    ``k`` counts the run's values at most ``u``, built from the largest power of two
    down. The runs are taken longest first, so the runs long enough for a step of ``h``
    are a prefix (most runs are short)."""
    by_size = np.argsort(-size, kind="stable")
    size, lo, u = size[by_size], lo[by_size], u[by_size]
    k = np.zeros(lo.size, dtype=np.int64)
    step = 1 << (int(size[0]).bit_length() - 1) if size.size else 0
    while step:
        head = int(np.searchsorted(-size, -step, side="right"))     # runs of >= step
        can = np.flatnonzero(k[:head] + step <= size[:head])
        k[can[within[lo[can] + k[can] + step - 1] <= u[can]]] += step
        step >>= 1
    found = np.empty_like(lo)
    found[by_size] = lo + np.minimum(k, size - 1)
    return found


# -- distinct 5-grams ------------------------------------------------------------------------

class FivegramHashes:
    """Each 5-gram of ``<s> w_1 .. w_n </s>`` (the n-grams a model of order 5 counts) as a
    64-bit simple tabulation hash, ``T_1[w_1] ^ ... ^ T_5[w_5]`` with random tables:
    universal, so two distinct 5-grams collide with probability 2^-64 and the expected
    number of collisions among n distinct ones is n^2 / 2^65 (under 0.001 at 100M)."""

    def __init__(self, vocab_size: int, bos: int, eos: int):
        rng = np.random.default_rng(HASH_SEED)
        self.tables = rng.integers(0, np.iinfo(np.uint64).max, size=(ORDER, vocab_size),
                                   dtype=np.uint64, endpoint=True)
        self.bos, self.eos = bos, eos

    def of(self, words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        padded_lengths = lengths + 2
        ends = np.cumsum(padded_lengths)
        padded = np.empty(int(ends[-1]) if ends.size else 0, dtype=np.int64)
        inside = np.ones(padded.size, dtype=bool)
        inside[ends - padded_lengths] = inside[ends - 1] = False
        padded[ends - padded_lengths], padded[ends - 1] = self.bos, self.eos
        padded[inside] = words
        sentence = np.repeat(np.arange(lengths.size), padded_lengths)
        start = np.flatnonzero(sentence[:-(ORDER - 1)] == sentence[ORDER - 1:])
        hashes = self.tables[0][padded[start]]
        for j in range(1, ORDER):
            hashes ^= self.tables[j][padded[start + j]]
        return hashes


def distinct(hashes: np.ndarray) -> int:
    return int(np.unique(hashes).size)


def fivegrams_per_sentence(lengths: np.ndarray) -> np.ndarray:
    return np.maximum(lengths + 2 - (ORDER - 1), 0)


def check_sampler(model_path: Path, samples: int = 400_000) -> None:
    """Pearson's chi-square of ``samples`` next words drawn by ``BackoffSampler.draw``
    after a few histories against the model's own distribution (``log_probs``, without
    ``<unk>`` and ``<s>``); words expected fewer than 5 times are pooled. An exact
    sampler gives chi-square / degrees of freedom near 1 (within a few sqrt(2 / dof))."""
    model = open_model(str(model_path))
    sampler = BackoffSampler(model)
    rng = np.random.default_rng(CORPUS_SEED)
    state = model.initial_state(1)
    history = ["<s>"]
    say("\n| history | longest context | chi-square | degrees of freedom | ratio |\n"
        "| --- | --- | --- | --- | --- |")
    for _ in range(ORDER + 1):
        expected = np.exp(model.log_probs(state)[0])
        expected[[Vocabulary.unk_id, model.vocab.bos_id]] = 0.0
        expected *= samples / expected.sum()
        drawn = np.bincount(sampler.draw(np.repeat(state, samples, axis=0), rng),
                            minlength=expected.size)
        big = expected >= 5
        pooled_expected, pooled_drawn = expected[~big].sum(), drawn[~big].sum()
        chi2 = float(((drawn[big] - expected[big]) ** 2 / expected[big]).sum()
                     + (pooled_drawn - pooled_expected) ** 2 / max(pooled_expected, 1e-12))
        dof = int(big.sum())
        top = int(Rows(sampler, state, np.arange(1)).top[0])
        say(f"| {' '.join(history[-4:])} | {top} | {chi2:.0f} | {dof} | {chi2 / dof:.3f} |")
        expected[model.vocab.eos_id] = 0.0
        word = int(np.argmax(expected))        # the likeliest: longer contexts next
        history.append(model.vocab.words[word])
        state = model.advance(state, np.array([word]))


def real_text_growth(sizes: List[int]) -> Dict[int, int]:
    """Distinct 5-grams in the first ``size`` words (whole sentences) of viwiki's own
    text (train, valid and test one after the other), for each of ``sizes``."""
    ids: Dict[str, int] = {"<s>": 0, "</s>": 1}
    words, lengths = [], []
    for name in ("train.txt", "valid.txt", "test.txt"):
        with open(VIWIKI / name, encoding="utf-8") as text:
            for line in text:
                tokens = [t for t in line.split() if t not in ("<s>", "</s>")]
                words.extend(ids.setdefault(t, len(ids)) for t in tokens)
                lengths.append(len(tokens))
    lengths = np.array(lengths)
    hasher = FivegramHashes(len(ids), 0, 1)
    hashes = hasher.of(np.array(words, dtype=np.int64), lengths)
    return prefix_counts(hashes, lengths, sizes)


def prefix_counts(hashes: np.ndarray, lengths: np.ndarray, sizes: List[int]) -> Dict[int, int]:
    """Distinct 5-grams of the shortest prefix of whole sentences holding ``size`` words,
    for each size the text reaches."""
    words_so_far = np.cumsum(lengths)
    grams_so_far = np.cumsum(fivegrams_per_sentence(lengths))
    counts = {}
    for size in sizes:
        if words_so_far[-1] >= size:
            last = int(np.searchsorted(words_so_far, size))
            counts[size] = distinct(hashes[:grams_so_far[last]])
    return counts


# -- the corpus ------------------------------------------------------------------------------


def corpus_meta(plan: Plan, quick: bool) -> dict:
    """What ``corpus.json`` says of the corpus of ``plan``, made first if absent, in a
    child process (``--corpus-child``): this process stays small, since a child's peak
    RSS never reads below its parent's (``bench/measure.py``)."""
    meta_path = plan.folder / "corpus.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        say(f"corpus: kept from an earlier run ({plan.folder}, made {meta['made']})")
    else:
        subprocess.run([sys.executable, __file__, "--corpus-child"]
                       + (["--quick"] if quick else []), check=True)
        meta = json.loads(meta_path.read_text())
    return meta


def make_corpus(plan: Plan) -> None:
    """The corpus files of ``plan`` and ``corpus.json``, which says what they hold."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    if not plan.source_model.exists():
        say(f"training the source model {plan.source_model.name} on viwiki/train.txt ...")
        run = run_child(RNNLM + ["train-ngram", VIWIKI / "train.txt", "--order", ORDER,
                                 "--tokenizer", "whitespace", "-o", plan.source_model])
        say(f"  {run.seconds:.0f} s")
    model = open_model(str(plan.source_model))
    started = time.perf_counter()
    sampler = BackoffSampler(model)
    say(f"sampler ready in {time.perf_counter() - started:.1f} s "
        f"({len(model.vocab):,} words, {model.ngram_sizes()} n-grams)")
    lines = SentenceWriter(model.vocab)
    hasher = FivegramHashes(len(model.vocab), model.vocab.bos_id, model.vocab.eos_id)

    started = time.perf_counter()
    rng = np.random.default_rng(CORPUS_SEED)
    targets = sorted(plan.sizes.items(), key=lambda item: item[1])
    outputs = {name: open(plan.corpus(name).with_suffix(".part"), "wb") for name, _ in targets}
    written = {name: [0, 0] for name, _ in targets}            # words, sentences
    all_hashes, all_lengths, total = [], [], 0
    while total < targets[-1][1]:
        words, lengths = sampler.sentences(plan.sentences_per_round, rng)
        ends = np.cumsum(lengths)
        for name, size in targets:
            if written[name][0] >= size:
                continue
            keep = min(int(np.searchsorted(ends, size - written[name][0])) + 1, lengths.size)
            outputs[name].write(lines.text(words[:ends[keep - 1]], lengths[:keep]))
            written[name][0] += int(ends[keep - 1])
            written[name][1] += keep
        keep = min(int(np.searchsorted(ends, targets[-1][1] - total)) + 1, lengths.size)
        all_hashes.append(hasher.of(words[:ends[keep - 1]], lengths[:keep]))
        all_lengths.append(lengths[:keep])
        total += int(ends[keep - 1])
        rate = total / (time.perf_counter() - started)
        print(f"\r  sampled {total / 1e6:.1f}M words ({rate / 1e6:.2f}M words/s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.perf_counter() - started
    for name, out in outputs.items():
        out.close()
        plan.corpus(name).with_suffix(".part").rename(plan.corpus(name))

    heldout_words, heldout_lengths = first_sentences(
        sampler, plan.heldout_sentences, np.random.default_rng(HELDOUT_SEED))
    plan.heldout.write_bytes(lines.text(heldout_words, heldout_lengths))

    lengths = np.concatenate(all_lengths)
    hashes = np.concatenate(all_hashes)
    del all_hashes
    real_sizes = [1_000_000, 2_000_000, 4_000_000, 5_000_000]
    meta = {
        "made": datetime.date.today().isoformat(),
        "source": "viwiki/train.txt, train-ngram --order 5 --tokenizer whitespace",
        "seed": CORPUS_SEED, "heldout_seed": HELDOUT_SEED,
        "sampling_seconds": seconds,
        "files": {name: {"words": w, "sentences": s} for name, (w, s) in written.items()},
        "heldout": {"words": int(heldout_words.size), "sentences": int(heldout_lengths.size)},
        "distinct_5grams": {str(k): v for k, v in prefix_counts(
            hashes, lengths, real_sizes + [s for _, s in targets]).items()},
        "real_distinct_5grams": {str(k): v for k, v in real_text_growth(real_sizes).items()},
    }
    (plan.folder / "corpus.json").write_text(json.dumps(meta, indent=1))


def first_sentences(sampler: BackoffSampler, count: int, rng: np.random.Generator):
    """``(words, lengths)`` of the first ``count`` (non-empty) sentences sampled."""
    words, lengths = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    while lengths.size < count:
        more_words, more_lengths = sampler.sentences(count, rng)
        words = np.concatenate([words, more_words])
        lengths = np.concatenate([lengths, more_lengths])
    return words[:int(lengths[:count].sum())], lengths[:count]


class SentenceWriter:
    """Word ids to lines of UTF-8 text, words separated by one space."""

    def __init__(self, vocab: Vocabulary):
        encoded = [word.encode("utf-8") for word in vocab.words]
        self.spaced = np.array([w + b" " for w in encoded], dtype=object)
        self.ended = np.array([w + b"\n" for w in encoded], dtype=object)

    def text(self, words: np.ndarray, lengths: np.ndarray) -> bytes:
        last = np.zeros(words.size, dtype=bool)
        last[np.cumsum(lengths) - 1] = True
        return b"".join(np.where(last, self.ended[words], self.spaced[words]).tolist())


def print_corpus(meta: dict, plan: Plan) -> None:
    say(f"corpus sampled from the order-5 model of {meta['source']}, seed {meta['seed']} "
        f"(held-out: seed {meta['heldout_seed']}); sampling took "
        f"{meta['sampling_seconds']:.0f} s")
    say("\n| file | words | sentences | words/sentence |\n| --- | --- | --- | --- |")
    for name, f in list(meta["files"].items()) + [("heldout", meta["heldout"])]:
        say(f"| {name} | {f['words']:,} | {f['sentences']:,} | "
            f"{f['words'] / f['sentences']:.1f} |")
    say("\nDistinct 5-grams (of `<s> w1 .. wn </s>`, by 64-bit tabulation hashes), "
        "sampled text beside viwiki's own text (train+valid+test) at the sizes it has:")
    say("\n| words | viwiki text | per word | sampled | per word |\n| --- | --- | --- | --- | --- |")
    real, sampled = meta["real_distinct_5grams"], meta["distinct_5grams"]
    for size in sorted({int(k) for k in list(real) + list(sampled)}):
        r, s = real.get(str(size)), sampled.get(str(size))
        say(f"| {size / 1e6:g}M | {f'{r:,}' if r else '-'} | "
            f"{f'{r / size:.3f}' if r else '-'} | {f'{s:,}' if s else '-'} | "
            f"{f'{s / size:.3f}' if s else '-'} |")


# -- KenLM ------------------------------------------------------------------------------------

def find_kenlm(option: Optional[Path]) -> Optional[Path]:
    names = ("lmplz", "query", "build_binary")
    if option is not None:
        return option if all((option / n).is_file() for n in names) else None
    on_path = shutil.which("lmplz")
    for folder in (Path(on_path).parent if on_path else None,
                   os.environ.get("KENLM_BIN"), KENLM_FALLBACK):
        if folder and all((Path(folder) / n).is_file() for n in names):
            return Path(folder)
    return None


def query_tokens_and_ppl(run: Run):
    fields = dict(line.split(":\t", 1) for line in run.stdout.splitlines() if ":\t" in line)
    return int(fields["Tokens"]), float(fields["Perplexity including OOVs"])


def rnnlm_tokens_and_ppl(run: Run):
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    return summary["tokens"], summary["perplexity"]


def model_ngram_sizes(path: Path) -> List[int]:
    """The n-grams of each order of an rnnlm n-gram model file, from the shapes of its
    ``logprob_n`` arrays (their headers alone: nothing of the model is loaded here)."""
    sizes = []
    with zipfile.ZipFile(path) as archive:
        for n in range(1, ORDER + 1):
            with archive.open(f"logprob_{n}.npy") as member:
                read_header = (np.lib.format.read_array_header_1_0
                               if np.lib.format.read_magic(member) == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, _ = read_header(member)
                sizes.append(int(shape[0]))
    return sizes


def arpa_counts(arpa: Path) -> List[int]:
    counts = []
    with open(arpa, encoding="utf-8") as text:
        for line in text:
            if line.startswith("ngram "):
                counts.append(int(line.split("=")[1]))
            elif counts and not line.strip():
                return counts
    return counts


# -- growth: training at each size ------------------------------------------------------------

@dataclass
class Timings:
    runs: List[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)

    def cell(self) -> str:
        seconds = [r.seconds for r in self.runs]
        spread = f" ({min(seconds):.0f}-{max(seconds):.0f})" if len(seconds) > 1 else ""
        return (f"{self.median('seconds'):.0f}{spread} | "
                f"{self.median('peak_rss') / 1e9:.2f}")


def train_commands(plan: Plan, name: str, kenlm: Optional[Path], scratch: Path) -> dict:
    corpus, models = plan.corpus(name), plan.models
    rnnlm = RNNLM + ["train-ngram", corpus, "--order", ORDER, "--tokenizer", "whitespace",
                     "--temp-dir", scratch]
    commands = {
        f"rnnlm --memory {BUDGET}": rnnlm + ["--memory", BUDGET,
                                             "-o", models / f"rnnlm-{name}-budget.npz"],
        "rnnlm (default budget)": rnnlm + ["-o", models / f"rnnlm-{name}-default.npz"],
    }
    if kenlm:
        # --discount_fallback: where an order's discounts cannot be estimated (at 100M
        # sampled words every word follows at least two others: no adjusted count of 1),
        # lmplz stops without it; rnnlm takes the same fallback (0.5, 1, 1.5) by itself,
        # with a warning, and notes it in the model's metadata.
        commands[f"lmplz -S {BUDGET}"] = [kenlm / "lmplz", "-o", ORDER, "-S", BUDGET,
                                          "--discount_fallback",
                                          "-T", f"{scratch}/", "--text", corpus,
                                          "--arpa", models / f"lmplz-{name}.arpa"]
    return commands


def growth(plan: Plan, kenlm: Optional[Path], repeats: int, repeats_largest: int,
           meta: dict) -> dict:
    """Time and peak RSS of each training command at each size; the held-out perplexity."""
    plan.models.mkdir(exist_ok=True)
    results = {}
    for name in plan.sizes:
        started = section_start(f"growth: training order {ORDER} on corpus-{name} "
                                f"({meta['files'][name]['words']:,} words)")
        with tempfile.TemporaryDirectory(dir=DATA, prefix="scratch-") as scratch:
            commands = train_commands(plan, name, kenlm, Path(scratch))
            timings = {label: Timings() for label in commands}
            for _ in range(repeats_largest if name == plan.largest else repeats):
                for label, args in commands.items():      # in turns: the load falls alike
                    run = run_child(args)
                    timings[label].runs.append(run)
                    say(f"   {label}: {run.seconds:.1f} s, {run.peak_rss / 1e9:.2f} GB "
                        f"(load {load_average()})")
        budget_model = plan.models / f"rnnlm-{name}-budget.npz"
        default_model = plan.models / f"rnnlm-{name}-default.npz"
        same = filecmp.cmp(budget_model, default_model, shallow=False)
        default_model.unlink()            # (the same bytes, or the answer says it is not)
        results[name] = {"timings": timings, "same_model": same,
                         "model_ngrams": model_ngram_sizes(budget_model)}
        results[name].update(heldout_perplexities(plan, name, kenlm))
        section_end(started)
    return results


def heldout_perplexities(plan: Plan, name: str, kenlm: Optional[Path]) -> dict:
    model = plan.models / f"rnnlm-{name}-budget.npz"
    tokens, ppl = rnnlm_tokens_and_ppl(
        run_child(RNNLM + ["perplexity", model, plan.heldout, "--json"]))
    found = {"rnnlm_ppl": ppl}
    found["rnnlm_tokens"] = tokens
    arpa = plan.models / f"lmplz-{name}.arpa"
    if kenlm and arpa.exists():
        found["kenlm_tokens"], found["kenlm_ppl"] = query_tokens_and_ppl(run_child(
            [kenlm / "query", "-v", "summary", probing_binary(plan, kenlm, name)],
            stdin=plan.heldout))
        found["arpa_ngrams"] = arpa_counts(arpa)
    return found


def print_growth(results: dict, meta: dict, plan: Plan) -> None:
    labels = list(next(iter(results.values()))["timings"])
    say(f"\nTraining order {ORDER}, whole processes: wall seconds (median; range) | peak "
        "RSS GB (median)")
    say("\n| corpus | distinct 5-grams | " + " | ".join(f"{l} s | GB" for l in labels)
        + " | same model |")
    say("| --- " * (3 + 2 * len(labels)) + "|")
    for name, r in results.items():
        grams = r["model_ngrams"][-1]
        hashed = meta["distinct_5grams"].get(str(plan.sizes[name]))
        check = "" if hashed in (None, grams) else f" (hashed: {hashed:,})"
        say(f"| {name} ({len(r['timings'][labels[0]].runs)} runs) | {grams:,}{check} | "
            + " | ".join(r["timings"][l].cell() for l in labels)
            + f" | {'yes' if r['same_model'] else 'NO'} |")
    say("\nHeld-out perplexity (including OOVs), rnnlm perplexity beside KenLM query on "
        "lmplz's model:")
    say("\n| corpus | rnnlm | KenLM | relative difference | tokens equal | n-grams equal |\n"
        "| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        kenlm = r.get("kenlm_ppl")
        if kenlm is None:
            say(f"| {name} | {r['rnnlm_ppl']:.4f} | - | - | - | - |")
            continue
        say(f"| {name} | {r['rnnlm_ppl']:.4f} | {kenlm:.4f} | "
            f"{r['rnnlm_ppl'] / kenlm - 1:+.2e} | "
            f"{'yes' if r['rnnlm_tokens'] == r['kenlm_tokens'] else 'NO'} | "
            f"{'yes' if r['arpa_ngrams'] == r['model_ngrams'] else 'NO'} |")


def print_targets(results: dict, plan: Plan) -> None:
    r = results[plan.largest]
    budget = r["timings"][f"rnnlm --memory {BUDGET}"]
    rss = budget.median("peak_rss")
    say(f"\nTargets at {plan.largest} (train-ngram --memory {BUDGET}):")
    say(f"  peak RSS {rss / 1e9:.2f} GB, target <= {RSS_TARGET / 1e9} GB: "
        f"{verdict(rss <= RSS_TARGET)}")
    lmplz = r["timings"].get(f"lmplz -S {BUDGET}")
    if lmplz is None:
        say("  wall time and perplexity beside lmplz: skipped (no KenLM)")
        return
    ratio = budget.median("seconds") / lmplz.median("seconds")
    say(f"  wall {budget.median('seconds'):.0f} s = {ratio:.2f}x lmplz's "
        f"{lmplz.median('seconds'):.0f} s, target <= {WALL_TARGET}x: "
        f"{verdict(ratio <= WALL_TARGET)}")
    diff = abs(r["rnnlm_ppl"] / r["kenlm_ppl"] - 1)
    say(f"  held-out perplexity {r['rnnlm_ppl']:.4f} vs KenLM's {r['kenlm_ppl']:.4f}: "
        f"{diff:.1e} apart, target <= {PPL_TARGET:.0e}: {verdict(diff <= PPL_TARGET)}")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# -- scoring ----------------------------------------------------------------------------------

def scoring(plan: Plan, kenlm: Optional[Path], repeats: int) -> dict:
    """rnnlm perplexity beside KenLM query on viwiki/train.txt and the largest corpus."""
    results = {}
    cases = {"viwiki/train.txt": (VIWIKI / "train.txt", plan.source_model, "viwiki"),
             f"corpus-{plan.largest}": (plan.corpus(plan.largest),
                                        plan.models / f"rnnlm-{plan.largest}-budget.npz",
                                        plan.largest)}
    for title, (text, model, name) in cases.items():
        started = section_start(f"scoring {title}")
        commands = {"rnnlm perplexity": (RNNLM + ["perplexity", model, text, "--json"],
                                         None, rnnlm_tokens_and_ppl)}
        if kenlm:
            binary = probing_binary(plan, kenlm, name)
            commands["KenLM query (probing)"] = ([kenlm / "query", "-v", "summary", binary],
                                                 text, query_tokens_and_ppl)
        for args, stdin, _ in commands.values():          # warm the page cache
            run_child(args, stdin)
        timings = {label: Timings() for label in commands}
        for _ in range(repeats):
            for label, (args, stdin, _) in commands.items():
                run = run_child(args, stdin)
                timings[label].runs.append(run)
                say(f"   {label}: {run.seconds:.2f} s, {run.peak_rss / 1e6:.0f} MB "
                    f"(load {load_average()})")
        results[title] = {label: (timings[label], *parse(timings[label].runs[0]))
                          for label, (_, _, parse) in commands.items()}
        section_end(started)
    return results


def probing_binary(plan: Plan, kenlm: Path, name: str) -> Path:
    """KenLM's probing binary of lmplz's model of the corpus ``name`` (``viwiki``: of
    viwiki/train.txt, with ``--skip_symbols`` as rnnlm drops its literal ``<s>``)."""
    binary = plan.models / f"lmplz-{name}.probing"
    if binary.exists():
        return binary
    arpa = plan.models / f"lmplz-{name}.arpa"
    if not arpa.exists():
        say(f"   lmplz on viwiki/train.txt for {arpa.name} ...")
        run_child([kenlm / "lmplz", "-o", ORDER, "-S", BUDGET, "--skip_symbols",
                   "--text", VIWIKI / "train.txt", "--arpa", arpa])
    say(f"   build_binary probing {arpa.name} ...")
    run_child([kenlm / "build_binary", "probing", arpa, binary])
    return binary


def print_scoring(results: dict) -> None:
    say("\nScoring, whole processes (model load included), median of the runs after a "
        "warm-up:")
    say("\n| text | command | wall s (range) | CPU s | tokens/s | peak RSS MB | perplexity |\n"
        "| --- | --- | --- | --- | --- | --- | --- |")
    for title, rows in results.items():
        for label, (t, tokens, ppl) in rows.items():
            seconds = [r.seconds for r in t.runs]
            say(f"| {title} | {label} | {t.median('seconds'):.2f} ({min(seconds):.2f}-"
                f"{max(seconds):.2f}) | {t.median('cpu_seconds'):.2f} | "
                f"{tokens / t.median('seconds') / 1e6:.2f}M | "
                f"{t.median('peak_rss') / 1e6:.0f} | {ppl:.4f} |")
    for title, rows in results.items():
        if len(rows) < 2:
            continue
        (ours, tokens, _), (query, query_tokens, _) = rows.values()
        speed = (tokens / ours.median("seconds")) / (query_tokens / query.median("seconds"))
        rss = ours.median("peak_rss") / query.median("peak_rss")
        say(f"  {title}: {speed:.2f}x query's tokens/s (target >= {SPEED_TARGET}x: "
            f"{verdict(speed >= SPEED_TARGET)}), peak RSS {rss:.2f}x query's (target <= "
            f"{SCORE_RSS_TARGET}x: {verdict(rss <= SCORE_RSS_TARGET)})")


# -- dask (issue #16's distributed counting; skipped until train-ngram has --scheduler) -----

CLUSTER = """
import sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                       dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()          # until the benchmark closes our stdin
cluster.close()
"""


def has_scheduler_option() -> bool:
    help_text = subprocess.run(RNNLM + ["train-ngram", "--help"], capture_output=True,
                               text=True, cwd=PROJECT).stdout
    return "--scheduler" in help_text


def dask_section(plan: Plan, growth_results: Optional[dict], repeats: int) -> None:
    started = section_start("dask: train-ngram --scheduler on a LocalCluster of 2 workers")
    if not has_scheduler_option():
        say("   skipped: `rnnlm train-ngram --help` has no --scheduler option yet")
        return section_end(started)
    name = list(plan.sizes)[0]
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    address = cluster.stdout.readline().strip()
    try:
        if not address:
            say("   skipped: the LocalCluster did not start (is `distributed` installed?)")
            return section_end(started)
        say(f"   cluster at {address}")
        model = plan.models / f"rnnlm-{name}-dask.npz"
        runs = [run_child(RNNLM + ["train-ngram", plan.corpus(name), "--order", ORDER,
                                   "--tokenizer", "whitespace", "--scheduler", address,
                                   "-o", model]) for _ in range(repeats)]
    finally:
        cluster.stdin.close()
        cluster.wait()
    single = plan.models / f"rnnlm-{name}-budget.npz"
    same = filecmp.cmp(model, single, shallow=False)
    seconds = statistics.median(r.seconds for r in runs)
    say(f"\n| corpus-{name} | wall s (median of {repeats}) | same model |\n| --- | --- | --- |")
    say(f"| train-ngram --scheduler (2 workers) | {seconds:.1f} | {'yes' if same else 'NO'} |")
    if growth_results and name in growth_results:
        single_seconds = growth_results[name]["timings"]["rnnlm (default budget)"]
        say(f"| train-ngram, one process | {single_seconds.median('seconds'):.1f} | - |")
    section_end(started)


# -- bad input --------------------------------------------------------------------------------

def errors_section(plan: Plan) -> None:
    """Each bad option: its exit status, and whether stderr holds exactly one ``Error:``
    line and no traceback (a usage error, exit 2, has Click's usage lines above it)."""
    say("\n== bad input to train-ngram (exit status, what it printed on stderr)")
    with tempfile.TemporaryDirectory(dir=DATA) as folder:
        locked = Path(folder) / "locked"
        locked.mkdir(mode=0o500)
        cases = {
            "--memory 0": ["--memory", "0"],
            "--memory lots": ["--memory", "lots"],
            "--temp-dir (missing)": ["--temp-dir", f"{folder}/missing"],
        }
        if os.geteuid() != 0:
            cases["--temp-dir (mode 500)"] = ["--temp-dir", locked]
        else:       # root writes through permission bits: a folder nobody can write in
            cases["--temp-dir /proc --memory 1M (root: a folder no one can write)"] = [
                "--temp-dir", "/proc", "--memory", "1M"]
        if has_scheduler_option():
            cases["--scheduler tcp://127.0.0.1:9 (unreachable)"] = [
                "--scheduler", "tcp://127.0.0.1:9"]
        else:
            say("   (--scheduler: not offered yet, not checked)")
        for title, extra in cases.items():
            out = Path(folder) / "m.npz"
            done = subprocess.run(RNNLM + ["train-ngram", plan.heldout, "--order", "3",
                                           "-o", out, *extra],
                                  capture_output=True, text=True, cwd=PROJECT)
            lines = done.stderr.strip().splitlines()
            errors = [line for line in lines if line.startswith("Error:")]
            shape = "one Error: line" if len(errors) == 1 and "Traceback" not in done.stderr \
                else f"NOT one Error: line ({len(lines)} lines)"
            say(f"   {title}: exit {done.returncode}, {shape}, model written: "
                f"{'YES' if out.exists() else 'no'}: {errors[0] if errors else lines[-1:]}")


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="sizes 0.3M, 1M, 3M words (the pipeline in a few minutes)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--kenlm", type=Path, metavar="DIR",
                   help="the folder holding lmplz, query and build_binary")
    p.add_argument("--repeats", type=int, default=3,
                   help="training runs of each command below the largest size (median)")
    p.add_argument("--repeats-largest", type=int, default=1,
                   help="training runs of each command at the largest size")
    p.add_argument("--score-repeats", type=int, default=3,
                   help="scoring runs of each command, after a warm-up (median)")
    p.add_argument("--dask", action="store_true",
                   help="only the dask section (train-ngram --scheduler; skipped with a "
                        "message while train-ngram has no such option)")
    p.add_argument("--check-sampler", action="store_true",
                   help="only check the sampler: chi-square of its next-word draws against "
                        "the source model's distributions (a minute or two)")
    p.add_argument("--corpus-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--check-sampler-child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.dask:
        sections = ["dask"]
    if not VIWIKI.is_dir():
        say(f"skipped: the shared corpora are not at {VIWIKI.parent}")
        return 0
    plan = QUICK if args.quick else FULL
    if args.corpus_child:
        make_corpus(plan)
        return 0
    if args.check_sampler:
        subprocess.run([sys.executable, __file__, "--check-sampler-child"], check=True)
        return 0
    if args.check_sampler_child:
        say("BackoffSampler against the source model's own next-word distributions:")
        check_sampler(plan.source_model)
        return 0
    kenlm = find_kenlm(args.kenlm)
    say(f"scale_bench {datetime.date.today().isoformat()}: {cpu_model()}, "
        f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
        f" GiB RAM, shared with other work; load average {load_average()}")
    say(f"KenLM: {kenlm}" if kenlm else "KenLM skipped: no lmplz, query and build_binary "
        f"(--kenlm DIR, PATH, $KENLM_BIN or {KENLM_FALLBACK}); see bench/README.md")
    DATA.mkdir(exist_ok=True)
    started = section_start(f"corpus ({plan.folder})")
    meta = corpus_meta(plan, args.quick)
    print_corpus(meta, plan)
    section_end(started)
    growth_results = None
    if "growth" in sections:
        growth_results = growth(plan, kenlm, args.repeats, args.repeats_largest, meta)
        print_growth(growth_results, meta, plan)
        print_targets(growth_results, plan)
    if "scoring" in sections:
        print_scoring(scoring(plan, kenlm, args.score_repeats))
    if "dask" in sections:
        dask_section(plan, growth_results, args.repeats)
    if "errors" in sections:
        errors_section(plan)
    say(f"\ndone; load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
