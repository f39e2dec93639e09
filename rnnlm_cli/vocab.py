"""The vocabulary: words <-> integer ids, built from training data only.

Ids 0, 1, 2 are always ``<unk>``, ``<s>``, ``</s>`` (the order KenLM uses). A literal
``<unk>`` in a corpus is the unknown word, as in the Penn Treebank; literal ``<s>`` and
``</s>`` inside a line would break the sentence structure and are dropped (KenLM's
``--skip_symbols``). Every other word gets an id in order of falling count, ties broken
by first appearance, so the same corpus always gives the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.hashing import ByteIndex

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIALS = (UNK, BOS, EOS)


@dataclass
class EncodedCorpus:
    """A corpus as one flat array of token ids plus the length of each sentence."""

    ids: np.ndarray       # (n_tokens,) int32, sentences back to back, no <s>/</s>
    lengths: np.ndarray   # (n_sentences,) int64
    oov: np.ndarray       # (n_tokens,) bool: the token is not in the vocabulary
    skipped_markers: int = 0  # literal <s> / </s> dropped from the text

    @property
    def num_tokens(self) -> int:
        return int(self.ids.size)



class Vocabulary:
    """An immutable list of words; ``words[i]`` has id ``i``."""

    unk_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, words: Optional[Sequence[str]] = None,
                 counts: Optional[np.ndarray] = None, blob: Optional[bytes] = None,
                 stored_index: Optional[Sequence[np.ndarray]] = None):
        """From ``words``, or from ``blob``, the words as UTF-8 joined by newlines (what a
        model file holds: the list of strings is then made on first use), with the
        ``ByteIndex`` stored beside it if there is one."""
        if words is not None:
            words = list(words)
            self.__dict__["words"] = words             # the cached_property, filled
            blob = "\n".join(words).encode("utf-8")
        self._text = blob.decode("utf-8")              # checks the bytes
        head = "\n".join(SPECIALS).encode()      # (a split would copy the whole rest)
        if not blob.startswith(head) or blob[len(head):len(head) + 1] not in (b"", b"\n"):
            raise ValueError("a vocabulary starts with <unk>, <s>, </s>")
        self._blob = blob
        self.byte_index = ByteIndex(blob, stored_index)  # building checks for twins
        if words is not None and len(words) != self.byte_index.size:
            raise ValueError("a word of a vocabulary cannot hold a newline")
        # Training counts (None for a vocabulary read from an ARPA file).
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)

    @cached_property
    def words(self) -> List[str]:
        """``words[i]`` is the word of id ``i``."""
        return self._text.split("\n")

    @cached_property
    def index(self) -> Dict[str, int]:
        """Word -> id (built on first use: a large vocabulary takes a while)."""
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return self.byte_index.size

    def __contains__(self, word: str) -> bool:
        return word in self.index and (word != UNK or self.unk_seen)

    @property
    def unk_seen(self) -> bool:
        """Whether ``<unk>`` is a word of the training data (PTB style) and so in-vocabulary."""
        return self.counts is not None and self.counts[self.unk_id] > 0

    def id(self, word: str) -> int:
        return self.index.get(word, self.unk_id)

    def encode(self, sentences: Iterable[Sequence[str]]) -> EncodedCorpus:
        """Map tokenized sentences to ids; unknown words become ``<unk>``."""
        sentences = sentences if isinstance(sentences, list) else list(sentences)
        get = self.index.get
        ids = np.array([get(t, -1) for tokens in sentences for t in tokens], dtype=np.int32)
        lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        return self._encoded(ids, lengths)

    def encode_spans(self, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
                     lengths: np.ndarray) -> EncodedCorpus:
        """``encode`` for tokens given as byte spans of UTF-8 text, with array operations:
        token i is ``data[starts[i]:starts[i] + sizes[i]]``, sentence k has ``lengths[k]``
        tokens (see ``Tokenizer.token_spans``)."""
        ids = self.byte_index.lookup(data, starts, sizes).astype(np.int32)
        return self._encoded(ids, np.asarray(lengths, dtype=np.int64))

    def _encoded(self, ids: np.ndarray, lengths: np.ndarray) -> EncodedCorpus:
        """From ids (-1: not in the vocabulary) to an ``EncodedCorpus``."""
        ids, lengths, skipped = _drop_markers(ids, lengths)
        oov = ids < 0
        if not self.unk_seen:
            oov |= ids == self.unk_id  # a literal <unk> the model never saw
        ids[ids < 0] = self.unk_id
        return EncodedCorpus(ids, lengths, oov, skipped)

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.words[i] for i in ids]

    # -- building -------------------------------------------------------------

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1,
              max_vocab: Optional[int] = None, fixed: Optional["Vocabulary"] = None
              ) -> Tuple["Vocabulary", EncodedCorpus]:
        """Build the vocabulary of ``sentences`` and encode them with it, in one pass.

        Words seen fewer than ``min_count`` times, or beyond the ``max_vocab`` most
        frequent (specials included in that size), become ``<unk>``. With ``fixed`` (a
        model's vocabulary, ``--vocab-from``), the words are exactly ``fixed``'s, with
        its ids, whatever the counts: a word of ``fixed`` absent from ``sentences`` keeps
        its id (count 0), a word of ``sentences`` absent from ``fixed`` becomes ``<unk>``.
        The counts are those of ``sentences`` in every case.
        """
        counter = WordCounter()
        provisional, lengths = counter.add(sentences)
        vocab, new_id = counter.vocabulary(min_count, max_vocab, fixed)
        ids = new_id[provisional].astype(np.int32)
        corpus = EncodedCorpus(ids, lengths, np.zeros(ids.size, dtype=bool), counter.skipped)
        return vocab, corpus

    def check(self) -> None:
        """Rebuild the index from the words: ``ValueError`` if a word is there twice. (A
        stored index is adopted at load unchecked for twins: rebuilding takes ~20 ms for
        176k words.)"""
        ByteIndex(self._blob)

    # -- storage ----------------------------------------------------------------

    def to_arrays(self) -> dict:
        """Words as one UTF-8 blob joined by newlines (no token holds a newline), and the
        byte index, so that loading need not rebuild it (~20 ms for 176k words)."""
        arrays = {"vocab_words": np.frombuffer(self._blob, dtype=np.uint8)}
        if self.counts is not None:
            arrays["vocab_counts"] = self.counts
        arrays.update(zip(_INDEX_KEYS, self.byte_index.slot_arrays()))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Vocabulary":
        """What ``to_arrays`` gave; a file without the index (or with one of another
        ``ByteIndex.SCHEME``) has it rebuilt."""
        blob = bytes(np.asarray(arrays["vocab_words"]))
        counts = arrays.get("vocab_counts")
        if counts is not None and (counts.dtype.kind not in "iu" or counts.ndim != 1
                                   or counts.size != blob.count(b"\n") + 1):
            raise ValueError("the vocabulary counts do not fit the vocabulary")
        stored = [arrays[key] for key in _INDEX_KEYS] if all(
            key in arrays for key in _INDEX_KEYS) else None
        return cls(None, None if counts is None else np.asarray(counts), blob, stored)


class _Numbering(dict):
    """Words and their provisional ids: looking up a word not seen yet gives it the next
    id (``__missing__``), so a block's tokens are numbered by ``map`` with no Python per
    token (2.2x faster than ``setdefault(word, len(numbering))`` on Vietnamese text)."""

    def __missing__(self, word: str) -> int:
        self[word] = number = len(self)
        return number


class WordCounter:
    """The words of a corpus read a part at a time, each numbered in order of first
    appearance (its *provisional id*) and counted; then the vocabulary and the map from
    provisional to final ids (``vocabulary``). ``Vocabulary.build`` is one ``add`` and
    that; bounded-memory training adds a block of sentences at a time and keeps only the
    provisional ids, on disk."""

    def __init__(self):
        self.first_seen: Dict[str, int] = _Numbering({UNK: 0, BOS: 1, EOS: 2})
        self.counts = np.zeros(len(SPECIALS), dtype=np.int64)   # by provisional id
        self.skipped = 0                                         # literal <s>, </s> dropped

    def add(self, sentences: Iterable[Sequence[str]]) -> Tuple[np.ndarray, np.ndarray]:
        """The provisional ids of ``sentences`` back to back (int64, literal ``<s>`` and
        ``</s>`` dropped), and the length of each sentence."""
        lengths: List[int] = []

        def counted(tokens: Sequence[str]) -> Sequence[str]:
            lengths.append(len(tokens))
            return tokens
        tokens = chain.from_iterable(map(counted, sentences))
        flat = np.fromiter(map(self.first_seen.__getitem__, tokens), dtype=np.int64)
        provisional, lengths, skipped = _drop_markers(flat, np.array(lengths, dtype=np.int64))
        self.skipped += skipped
        counts = np.bincount(provisional, minlength=len(self.first_seen))
        counts[:self.counts.size] += self.counts
        self.counts = counts
        return provisional, lengths

    def merge(self, words: Sequence[str], counts: np.ndarray, skipped: int = 0) -> np.ndarray:
        """Count another counter's words as if its text came after this one's: ``words``
        its ``first_seen`` in order, ``counts`` its ``counts``. The counters of the parts
        of a corpus (shards counted apart), merged in order, are the whole's counter.
        Returns the other counter's provisional ids as this one's (by its id)."""
        ids = np.fromiter(map(self.first_seen.__getitem__, words), dtype=np.int64,
                          count=len(words))
        merged = np.zeros(len(self.first_seen), dtype=np.int64)
        merged[:self.counts.size] = self.counts
        merged[ids] += counts          # (each word once in ``words``: no repeated index)
        self.counts = merged
        self.skipped += skipped
        return ids

    def vocabulary(self, min_count: int = 1, max_vocab: Optional[int] = None,
                   fixed: Optional["Vocabulary"] = None) -> Tuple["Vocabulary", np.ndarray]:
        """The vocabulary of every word added (``fixed``'s words, if given: see
        ``Vocabulary.build``), and each provisional id's final id."""
        words_by_id = list(self.first_seen)
        if fixed is None:
            keep = _choose_words(self.counts, min_count, max_vocab)
            words = [words_by_id[i] for i in keep]
            new_id = np.full(len(words_by_id), Vocabulary.unk_id, dtype=np.int64)
            new_id[keep] = np.arange(len(keep))
        else:
            words = fixed.words
            lookup = fixed.index.get
            new_id = np.fromiter((lookup(w, Vocabulary.unk_id) for w in words_by_id),
                                 dtype=np.int64, count=len(words_by_id))
        final_counts = np.bincount(new_id, weights=self.counts,
                                   minlength=len(words)).astype(np.int64)
        return Vocabulary(words, final_counts), new_id


def _choose_words(counts: np.ndarray, min_count: int, max_vocab: Optional[int]) -> np.ndarray:
    """Provisional ids to keep: specials, then words by falling count (stable on ties)."""
    candidates = np.arange(3, counts.size)
    candidates = candidates[counts[candidates] >= min_count]
    order = np.argsort(-counts[candidates], kind="stable")
    chosen = candidates[order]
    if max_vocab is not None:
        chosen = chosen[: max(0, max_vocab - 3)]
    return np.concatenate([np.arange(3), chosen])


def _drop_markers(ids: np.ndarray, lengths: np.ndarray):
    """Remove literal ``<s>`` and ``</s>`` (ids 1 and 2) from sentences laid back to back."""
    markers = (ids == Vocabulary.bos_id) | (ids == Vocabulary.eos_id)
    skipped = int(np.count_nonzero(markers))
    if skipped:
        sentence_of = np.repeat(np.arange(lengths.size), lengths)
        ids = ids[~markers]
        lengths = np.bincount(sentence_of[~markers], minlength=lengths.size).astype(np.int64)
    return ids, lengths, skipped


# The model-file arrays of a vocabulary's ByteIndex (see Vocabulary.to_arrays).
_INDEX_KEYS = [f"vocab_index{ByteIndex.SCHEME}_{part}" for part in ("first", "second", "word")]
