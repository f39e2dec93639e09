"""Perplexity and per-sentence / per-token scores over any ``LanguageModel``.

Conventions are KenLM's and SRILM's: each sentence is scored with ``<s>`` before and
``</s>`` after; ``</s>`` is counted as a token and ``<s>`` is not. A token is an OOV
when it is not in the model's vocabulary; it is scored as ``<unk>`` and counted in the
figures "including OOVs", and left out of those "excluding OOVs".

A text of any length is scored in blocks of whole lines (``score_blocks`` over
``tokenizer.read_blocks``), each block in a worker thread, so memory does not grow with
the text; ``Totals`` adds the blocks up. Its log-probability sums are exact
(``ExactSum``), rounded once at the end: the figures do not depend on where the blocks
were cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Iterable, Iterator, List, Optional

import numpy as np

from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.parallel import map_ordered
from rnnlm_cli.tokenizer import TextBlock, Tokenizer, split_lines
from rnnlm_cli.vocab import BOS, EOS, EncodedCorpus

LN10 = math.log(10.0)


@dataclass
class ScoredText:
    """A text encoded with a model's vocabulary, and each of its tokens' scores."""

    tokens: Optional[List[List[str]]]   # the words of each sentence (None: not kept)
    corpus: EncodedCorpus
    scores: TokenScores
    oov: np.ndarray             # (n_tokens + n_sentences,) bool, aligned with the scores
    lines: Optional[List[str]] = None   # the text of each sentence (None: not kept)

    def sentence_slices(self) -> Iterator[slice]:
        start = 0
        for end in self.scores.sentence_ends.tolist():
            yield slice(start, end)
            start = end


@dataclass
class Summary:
    """Totals over a text; log-probabilities are natural logs."""

    sentences: int
    tokens: int          # including </s>
    oovs: int
    logprob: float            # over all tokens, OOVs included
    logprob_in_vocab: float   # over the tokens that are not OOVs
    zero_prob: int            # tokens the model gives probability 0 (OOVs included)

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10

    @property
    def perplexity(self) -> float:
        return _perplexity(self.logprob, self.tokens)

    @property
    def perplexity_excluding_oovs(self) -> float:
        return _perplexity(self.logprob_in_vocab, self.tokens - self.oovs)

    def to_dict(self) -> dict:
        return {"sentences": self.sentences, "tokens": self.tokens, "oovs": self.oovs,
                "logprob": self.logprob, "log10prob": self.log10prob,
                "perplexity": self.perplexity,
                "perplexity_excluding_oovs": self.perplexity_excluding_oovs}


def _perplexity(logprob: float, count: int) -> float:
    if count == 0:
        return math.nan
    if not logprob > -math.inf:
        return math.inf
    try:
        return math.exp(-logprob / count)
    except OverflowError:   # probabilities below e^-709 per token: as good as zero
        return math.inf


def score_text(model: LanguageModel, tokens: List[List[str]]) -> ScoredText:
    """Encode tokenized sentences with the model's vocabulary and score every token."""
    corpus = model.vocab.encode(tokens)
    if corpus.skipped_markers:  # literal <s> / </s> were dropped: drop them here too
        tokens = [[t for t in sent if t not in (BOS, EOS)] for sent in tokens]
    return _scored(model, corpus, tokens)


def score_spans(model: LanguageModel, spans) -> ScoredText:
    """``score_text`` for text tokenized into byte spans (``Tokenizer.token_spans``), the
    fast path of large texts: no Python string per token; the tokens are not kept."""
    return _scored(model, _encoded_spans(model, spans), None)


def _encoded_spans(model: LanguageModel, spans) -> EncodedCorpus:
    return model.vocab.encode_spans(spans.data, spans.starts, spans.sizes, spans.lengths)


def _scored(model: LanguageModel, corpus: EncodedCorpus, tokens) -> ScoredText:
    scores = model.score(corpus.ids, corpus.lengths)
    # Place each OOV among the scores, which also hold one </s> per sentence: word i of
    # the text is score i + (the number of sentences ended before it).
    oov = np.zeros(scores.logprob.size, dtype=bool)
    words = np.flatnonzero(corpus.oov)
    oov[words + np.searchsorted(np.cumsum(corpus.lengths), words, side="right")] = True
    return ScoredText(tokens, corpus, scores, oov)


# -- a text in blocks --------------------------------------------------------------------

def score_blocks(model: LanguageModel, blocks: Iterable[TextBlock],
                 keep_lines: bool = False) -> Iterator["ScoredBlock"]:
    """Each block of text scored, in order; the blocks go through worker threads
    (``parallel.map_ordered``), a few at a time, unless the model's state runs on from
    one block into the next (``carries_state``): then one after another. With
    ``keep_lines`` each block keeps its lines and their tokens (for per-sentence output);
    without it, and where the model's tokenizer can (``Tokenizer.has_spans``), the text
    is cut as bytes (``score_spans``)."""
    tokenizer = model.tokenizer
    as_spans = tokenizer.has_spans and not keep_lines
    score = partial(_score_block, model, tokenizer, as_spans, keep_lines)
    if model.carries_state:
        return _in_turn(model, score, blocks)
    return map_ordered(score, blocks)


def _in_turn(model: LanguageModel, score, blocks: Iterable[TextBlock]) -> Iterator["ScoredBlock"]:
    """The blocks scored one after another, for a model whose state runs on from block to
    block (``rnn.model.CarriedState``); the first block of a file starts a new text."""
    for block in blocks:
        if block.first_line == 1:
            model.restart()
        yield score(block)


@dataclass
class ScoredBlock:
    """One block of a text: its scores, and its share of the totals."""

    scored: ScoredText
    totals: "Totals"


def _score_block(model: LanguageModel, tokenizer: Tokenizer, as_spans: bool, keep_lines: bool,
                 block: TextBlock) -> ScoredBlock:
    if as_spans:   # (the spans are let go before the scoring, the peak of memory)
        scored = _scored(model, _encoded_spans(model, tokenizer.block_spans(block)), None)
    else:
        lines = split_lines(block.text())
        scored = score_text(model, list(tokenizer.tokenize_lines(lines)))
        if keep_lines:
            scored.lines = lines
        else:
            scored.tokens = None
    return ScoredBlock(scored, Totals().add(scored))


class ExactSum:
    """A sum of float64 values kept exactly, as a whole number of units of ``2**-1127``
    (every finite double is one: ``m * 2**(e - 53)`` with a 53-bit ``m`` and ``e >=
    -1073``), so it is the same whatever the order or grouping of the values; ``float()``
    rounds it once. Infinities and NaN are summed as floats beside it and win.

    Adding an array takes a few array operations: ``np.frexp`` gives each value's ``m``
    and ``e``; ``m`` is split in two halves of 26 and 27 bits, whose sums per exponent
    (``np.bincount``) are exact in float64 for up to 2**26 values; each exponent's sums
    then join the Python integer, shifted into place.
    """

    UNITS = 1127
    _SPAN = 2200        # exponents from frexp: -1073 .. 1024, shifted by _LOW
    _LOW = 1100

    def __init__(self) -> None:
        self.units = 0
        self.special = 0.0       # the infinities and NaNs, summed

    def __iadd__(self, other: "ExactSum") -> "ExactSum":
        self.units += other.units
        self.special += other.special
        return self

    def __float__(self) -> float:
        if self.special != 0.0:                    # (NaN != 0.0 too)
            return self.special
        return self.units / (1 << self.UNITS)      # int / int is correctly rounded

    @classmethod
    def of_groups(cls, values: np.ndarray, groups: np.ndarray, count: int) -> List["ExactSum"]:
        """The exact sum of the values of each group ``0 .. count - 1`` (``groups``: int,
        one per value, fewer than ``2**26`` values)."""
        sums = [cls() for _ in range(count)]
        finite = np.isfinite(values)
        if not finite.all():
            for g in range(count):
                sums[g].special = float(values[~finite & (groups == g)].sum())
            values, groups = values[finite], groups[finite]
        fraction, exponent = np.frexp(values)
        whole = fraction * 2.0 ** 53                          # integers, |whole| < 2**53
        high = np.floor(whole * 2.0 ** -26)                   # |high| <= 2**27
        low = whole - high * 2.0 ** 26                        # 0 <= low < 2**26
        where = (exponent + cls._LOW) + groups * cls._SPAN
        size = count * cls._SPAN
        high_sums = np.bincount(where, weights=high, minlength=size).reshape(count, -1)
        low_sums = np.bincount(where, weights=low, minlength=size).reshape(count, -1)
        for g in range(count):
            for e in np.flatnonzero(high_sums[g] != 0).tolist():
                sums[g].units += int(high_sums[g, e]) << (e - cls._LOW + 1074 + 26)
            for e in np.flatnonzero(low_sums[g] != 0).tolist():
                sums[g].units += int(low_sums[g, e]) << (e - cls._LOW + 1074)
        return sums


@dataclass
class Totals:
    """The figures of ``Summary`` added up over the blocks of a text: counts, and
    log-probability sums kept exact (``ExactSum``)."""

    sentences: int = 0
    tokens: int = 0
    oovs: int = 0
    zero_prob: int = 0
    logprob_oov: ExactSum = field(default_factory=ExactSum)        # over the OOVs
    logprob_in_vocab: ExactSum = field(default_factory=ExactSum)   # over the other tokens

    def add(self, scored: ScoredText) -> "Totals":
        logprob, oov = scored.scores.logprob, scored.oov
        self.sentences += int(scored.corpus.lengths.size)
        self.tokens += int(logprob.size)
        self.oovs += int(np.count_nonzero(oov))
        self.zero_prob += int(np.count_nonzero(np.isneginf(logprob)))
        for start in range(0, logprob.size, 1 << 24):       # (ExactSum: < 2**26 values)
            part = slice(start, start + (1 << 24))
            in_vocab, oovs = ExactSum.of_groups(logprob[part], oov[part].astype(np.intp), 2)
            self.logprob_in_vocab += in_vocab
            self.logprob_oov += oovs
        return self

    def __iadd__(self, other: "Totals") -> "Totals":
        self.sentences += other.sentences
        self.tokens += other.tokens
        self.oovs += other.oovs
        self.zero_prob += other.zero_prob
        self.logprob_oov += other.logprob_oov
        self.logprob_in_vocab += other.logprob_in_vocab
        return self

    def summary(self) -> Summary:
        everything = ExactSum()
        everything += self.logprob_in_vocab
        everything += self.logprob_oov
        return Summary(self.sentences, self.tokens, self.oovs, float(everything),
                       float(self.logprob_in_vocab), self.zero_prob)


# -- summaries --------------------------------------------------------------------------

def summarize(scored: ScoredText, where: slice = slice(None)) -> Summary:
    """Totals over all tokens, or over the tokens in ``where`` (one sentence, say)."""
    logprob = scored.scores.logprob[where]
    oov = scored.oov[where]
    with np.errstate(invalid="ignore"):
        return Summary(
            sentences=scored.corpus.lengths.size if where == slice(None) else 1,
            tokens=int(logprob.size), oovs=int(oov.sum()),
            logprob=float(logprob.sum()), logprob_in_vocab=float(logprob[~oov].sum()),
            zero_prob=int(np.count_nonzero(np.isneginf(logprob))))


def sentence_summaries(scored: ScoredText) -> Iterator[Summary]:
    for where in scored.sentence_slices():
        yield summarize(scored, where)


def token_rows(model: LanguageModel, scored: ScoredText) -> Iterator[List[dict]]:
    """For each sentence, its tokens (``</s>`` last) with id, n-gram order used and
    log-probabilities."""
    word_starts = np.cumsum(scored.corpus.lengths) - scored.corpus.lengths
    for index, where in enumerate(scored.sentence_slices()):
        start = int(word_starts[index])
        ids = scored.corpus.ids[start: start + int(scored.corpus.lengths[index])]
        rows = []
        for word, token_id, order, lp, oov in zip(
                scored.tokens[index] + ["</s>"],
                ids.tolist() + [model.vocab.eos_id],
                scored.scores.order[where].tolist(),
                scored.scores.logprob[where].tolist(),
                scored.oov[where].tolist()):
            rows.append({"token": word, "id": token_id, "order": order, "logprob": lp,
                         "log10prob": lp / LN10, "oov": oov})
        yield rows
