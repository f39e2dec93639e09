"""Training an n-gram model: vocabulary, counting, smoothing, in that order."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from rnnlm_cli.errors import CorpusError, OptionError, TrainingError
from rnnlm_cli.ngram.counting import count_ngrams
from rnnlm_cli.ngram.invariants import LOGPROB_SLACK
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.smoothing import METHODS, estimate
from rnnlm_cli.options import check_choice, check_number, check_vocab_source, check_whole
from rnnlm_cli.vocab import Vocabulary

MAX_ORDER = 20


@dataclass
class NgramConfig:
    """How an n-gram model is made; saved in the model file."""

    order: int = 3
    smoothing: str = "kneser-ney"
    add_k: float = 1.0
    prune: List[int] = field(default_factory=list)   # count thresholds for orders 2, 3, ...
    min_count: int = 1
    max_vocab: Optional[int] = None
    vocab_from: Optional[str] = None   # the model file the words came from (--vocab-from)

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range."""
        check_whole("order", self.order, 1, MAX_ORDER)
        check_choice("smoothing", self.smoothing, METHODS)
        check_number("add_k", self.add_k, 0.0, low_open=True)
        if self.prune:
            if self.smoothing != "kneser-ney":
                raise OptionError("--prune works with --smoothing kneser-ney only")
            if len(self.prune) > self.order - 1:
                raise OptionError(f"--prune takes at most {self.order - 1} thresholds "
                                  f"(orders 2..{self.order}), not {len(self.prune)}")
            if any(t < 0 for t in self.prune) or list(self.prune) != sorted(self.prune):
                raise OptionError("--prune thresholds must be non-negative and non-decreasing")
        check_whole("min_count", self.min_count, 1)
        if self.max_vocab is not None:
            check_whole("max_vocab", self.max_vocab, 4, why=" (3 specials and a word)")
        if self.vocab_from is not None:
            check_vocab_source(self.min_count, self.max_vocab)


def train_ngram(sentences: Iterable[Sequence[str]], config: NgramConfig, corpus_name: str,
                tokenizer: dict, progress: Optional[Callable[[str], None]] = None,
                vocab: Optional[Vocabulary] = None) -> NgramModel:
    """Build the vocabulary of ``sentences`` (or take ``vocab``'s words, those of the
    model ``config.vocab_from``), count, smooth: the trained model."""
    config.validate()
    if (vocab is None) != (config.vocab_from is None):
        raise ValueError("give a vocabulary and the file it came from, or neither")
    step = progress or (lambda message: None)
    step("reading the corpus")
    vocab, corpus = Vocabulary.build(sentences, config.min_count, config.max_vocab, vocab)
    if corpus.num_tokens == 0:
        raise CorpusError(f"{corpus_name}: no words to train on (empty, or only blank lines)")
    counts = count_ngrams(corpus.ids, corpus.lengths, config.order, len(vocab),
                          vocab.bos_id, vocab.eos_id, progress=step)
    step("smoothing")
    tables = estimate(counts, config.smoothing, vocab.bos_id, config.add_k, config.prune)
    del counts
    _check_estimate(tables, config)
    metadata = {
        "model_type": "ngram", "order": config.order, "smoothing": config.smoothing,
        "config": asdict(config), "tokenizer": tokenizer,
        "corpus": {"name": corpus_name, "sentences": int(corpus.lengths.size),
                   "tokens": corpus.num_tokens, "skipped_markers": corpus.skipped_markers},
        "ngrams": [int(k.size) for k in tables.keys],
        "smoothing_notes": tables.notes,
    }
    return NgramModel(vocab, tables, metadata)


def _check_estimate(tables, config: NgramConfig) -> None:
    """Never write a model ``rnnlm check`` would refuse: a log-probability that is NaN or
    above 0, or a back-off that is NaN or +inf (``-inf``, an MLE context with no mass
    left, is allowed), is a ``TrainingError`` (floating point gives out, e.g. for a tiny
    ``--add-k``)."""
    for n, (logprob, backoff) in enumerate(zip(tables.logprob, tables.backoff + [None]), 1):
        bad = np.isnan(logprob).any() or (logprob > LOGPROB_SLACK).any() or (
            backoff is not None and (np.isnan(backoff).any() or np.isposinf(backoff).any()))
        if bad:
            advice = "; try a larger --add-k" if config.smoothing == "add-k" else ""
            raise TrainingError(f"the {config.smoothing} estimate of the {n}-grams is not a "
                                f"probability (floating point gives out{advice}); no model "
                                "was written")
