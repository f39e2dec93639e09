"""Perplexity and per-sentence / per-token scores over any ``LanguageModel``.

Conventions are KenLM's and SRILM's: each sentence is scored with ``<s>`` before and
``</s>`` after; ``</s>`` is counted as a token and ``<s>`` is not. A token is an OOV
when it is not in the model's vocabulary; it is scored as ``<unk>`` and counted in the
figures "including OOVs", and left out of those "excluding OOVs".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional

import numpy as np

from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.vocab import BOS, EOS, EncodedCorpus

LN10 = math.log(10.0)


@dataclass
class ScoredText:
    """A text encoded with a model's vocabulary, and each of its tokens' scores."""

    tokens: Optional[List[List[str]]]   # the words of each sentence (None: not kept)
    corpus: EncodedCorpus
    scores: TokenScores
    oov: np.ndarray             # (n_tokens + n_sentences,) bool, aligned with the scores

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
    return _scored(model, model.vocab.encode_spans(spans.data, spans.starts, spans.sizes,
                                                   spans.lengths), None)


def _scored(model: LanguageModel, corpus: EncodedCorpus, tokens) -> ScoredText:
    scores = model.score(corpus.ids, corpus.lengths)
    # Place each word's OOV flag among the scores, which also hold one </s> per sentence.
    sentence_of_word = np.repeat(np.arange(corpus.lengths.size), corpus.lengths)
    oov = np.zeros(scores.logprob.size, dtype=bool)
    oov[np.arange(corpus.ids.size) + sentence_of_word] = corpus.oov
    return ScoredText(tokens, corpus, scores, oov)


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
