"""From tokenized text to the training and validation streams of a recurrent model.

The vocabulary is built from the training text only (or taken from a model file,
``--vocab-from``); validation text is encoded with it (unknown words become ``<unk>``).
Without a validation file, the last 5% of the training lines are held out. A fingerprint
of both streams and the vocabulary lets a checkpoint tell whether it is resumed on the
same data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.errors import CorpusError
from rnnlm_cli.options import check_vocab_source
from rnnlm_cli.rnn.batches import token_stream
from rnnlm_cli.vocab import EncodedCorpus, Vocabulary

HOLD_OUT = 0.05


def hold_out(lines: List[str], fraction: float = HOLD_OUT) -> Tuple[List[str], List[str]]:
    """The lines split into training and validation: the last ``fraction`` (at least one)."""
    if len(lines) < 2:
        raise CorpusError("cannot hold out validation text from a corpus of one line: "
                          "give --valid FILE")
    held = min(len(lines) - 1, max(1, round(len(lines) * fraction)))
    return lines[:-held], lines[-held:]


@dataclass
class TrainingData:
    """The vocabulary and the token streams a recurrent model trains and validates on."""

    vocab: Vocabulary
    train: np.ndarray       # (N,) int32 token stream, see batches.token_stream
    valid: np.ndarray       # (M,) int32
    train_corpus: EncodedCorpus
    valid_corpus: EncodedCorpus
    train_name: str = ""    # the files, for messages and the model's metadata
    valid_name: str = ""
    held_out: int = 0       # lines held out of the training text for validation (0: a file)
    vocabulary: dict = field(default_factory=dict)   # how the words were chosen

    def fingerprint(self) -> str:
        """SHA-256 of the vocabulary and both streams (not of the file names)."""
        digest = hashlib.sha256()
        for blob in (self.vocab.to_arrays()["vocab_words"], self.train, self.valid):
            digest.update(np.ascontiguousarray(blob).tobytes())
            digest.update(b"\0")
        return digest.hexdigest()

    def stats(self) -> dict:
        """What the model file records of its data."""
        return {"name": self.train_name, "sentences": int(self.train_corpus.lengths.size),
                "tokens": self.train_corpus.num_tokens,
                "skipped_markers": self.train_corpus.skipped_markers,
                "valid": {"name": self.valid_name,
                          "sentences": int(self.valid_corpus.lengths.size),
                          "tokens": self.valid_corpus.num_tokens},
                "vocabulary": self.vocabulary}


def read_training_data(lines: List[str], valid_lines: Optional[List[str]], tokenizer_config,
                       train_name: str, valid_name: Optional[str], min_count: int = 1,
                       max_vocab: Optional[int] = None, vocab: Optional[Vocabulary] = None,
                       vocab_from: Optional[str] = None) -> "TrainingData":
    """Text to streams, as ``train-rnn`` reads it: the corpus ``lines`` and the validation
    ``valid_lines`` (``None``: the last 5% of ``lines``, held out; ``held_out`` then says
    how many), tokenized with ``tokenizer_config`` (a ``TokenizerConfig``). The words are
    chosen as ``prepare_data`` says."""
    from rnnlm_cli.tokenizer import Tokenizer
    held = 0
    if valid_lines is None:
        lines, valid_lines = hold_out(lines)
        held, valid_name = len(valid_lines), "held-out text"
    tokenize = Tokenizer(tokenizer_config).tokenize_lines
    data = prepare_data(list(tokenize(lines)), list(tokenize(valid_lines)), train_name,
                        valid_name, min_count, max_vocab, vocab, vocab_from)
    data.held_out = held
    return data


def prepare_data(train_sentences: Sequence[Sequence[str]],
                 valid_sentences: Sequence[Sequence[str]], train_name: str, valid_name: str,
                 min_count: int = 1, max_vocab: Optional[int] = None,
                 vocab: Optional[Vocabulary] = None, vocab_from: Optional[str] = None
                 ) -> TrainingData:
    """Build the vocabulary of the training sentences (``Vocabulary.build``: by
    ``min_count`` and ``max_vocab``, or exactly the words of ``vocab``, the vocabulary of
    the model file ``vocab_from``); encode both sides as streams."""
    if (vocab is None) != (vocab_from is None):
        raise ValueError("give a vocabulary and the file it came from, or neither")
    if vocab is not None:
        check_vocab_source(min_count, max_vocab)
    chosen = {"min_count": min_count, "max_vocab": max_vocab, "vocab_from": vocab_from}
    vocab, train = Vocabulary.build(train_sentences, min_count, max_vocab, vocab)
    if train.num_tokens == 0:
        raise CorpusError(f"{train_name}: no words to train on (empty, or only blank lines)")
    valid = vocab.encode(list(valid_sentences))
    if valid.num_tokens == 0:
        raise CorpusError(f"{valid_name}: no words to validate on (only blank lines)")
    eos = vocab.eos_id
    return TrainingData(vocab, token_stream(train.ids, train.lengths, eos),
                        token_stream(valid.ids, valid.lengths, eos), train, valid,
                        train_name, valid_name, vocabulary=chosen)
