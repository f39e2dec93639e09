"""The vocabulary: words <-> integer ids, built from training data only.

Ids 0, 1, 2 are always ``<unk>``, ``<s>``, ``</s>`` (the order KenLM uses). A literal
``<unk>`` in a corpus is the unknown word, as in the Penn Treebank; literal ``<s>`` and
``</s>`` inside a line would break the sentence structure and are dropped (KenLM's
``--skip_symbols``). Every other word gets an id in order of falling count, ties broken
by first appearance, so the same corpus always gives the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.parallel import parts_for, run_all

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
              max_vocab: Optional[int] = None) -> Tuple["Vocabulary", EncodedCorpus]:
        """Build the vocabulary of ``sentences`` and encode them with it, in one pass.

        Words seen fewer than ``min_count`` times, or beyond the ``max_vocab`` most
        frequent (specials included in that size), become ``<unk>``.
        """
        first_seen = {UNK: 0, BOS: 1, EOS: 2}
        setdefault = first_seen.setdefault
        flat: List[int] = []
        lengths: List[int] = []
        for tokens in sentences:
            flat.extend([setdefault(t, len(first_seen)) for t in tokens])
            lengths.append(len(tokens))
        provisional, lengths, skipped = _drop_markers(np.array(flat, dtype=np.int64),
                                                      np.array(lengths, dtype=np.int64))
        counts = np.bincount(provisional, minlength=len(first_seen))
        keep = _choose_words(counts, min_count, max_vocab)
        words_by_id = list(first_seen)
        new_id = np.full(len(words_by_id), cls.unk_id, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        final_counts = np.bincount(new_id, weights=counts, minlength=len(keep)).astype(np.int64)
        vocab = cls([words_by_id[i] for i in keep], final_counts)
        ids = new_id[provisional].astype(np.int32)
        corpus = EncodedCorpus(ids, lengths, np.zeros(ids.size, dtype=bool), skipped)
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


# -- looking words up by their bytes ---------------------------------------------------------

SHORT = 16          # bytes: a word this long or shorter is its own key (two uint64 and a size)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_MIX = [np.uint64(k) for k in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                              0xBF58476D1CE4E5B9, 0x94D049BB133111EB)]


def padded_bytes(data: bytes) -> np.ndarray:
    """``data`` as uint8 with ``SHORT`` zero bytes after it, as ``short_keys`` needs."""
    out = np.zeros(len(data) + SHORT, dtype=np.uint8)
    out[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


def short_keys(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
    """The first and second 8 bytes (little-endian, zero beyond the span) of each span
    ``data[starts[i]:starts[i] + sizes[i]]`` of the padded array ``data``: with the size,
    the exact bytes of every span of at most ``SHORT`` bytes."""
    at = np.ndarray((data.size - 7,), dtype="<u8", buffer=data, strides=(1,))  # 8 bytes at i
    first = at[starts] & _MASKS[np.minimum(sizes, 8)]
    second = at[starts + 8] & _MASKS[np.clip(sizes - 8, 0, 8)]
    return first, second


def _mix(first: np.ndarray, second: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A 64-bit hash of a short key (splitmix64's finaliser over a multiply-xor)."""
    with np.errstate(over="ignore"):
        h = first * _MIX[0] ^ second * _MIX[1] ^ sizes.astype(np.uint64) * _MIX[2]
        h ^= h >> np.uint64(30)
        h *= _MIX[3]
        h ^= h >> np.uint64(27)
        h *= _MIX[4]
        h ^= h >> np.uint64(31)
    return h


def _twins(first: np.ndarray, second: np.ndarray, sizes: np.ndarray, hashes: np.ndarray) -> bool:
    """Whether two of the short keys ``(first, second, sizes)``, sorted by their
    ``hashes``, are the same."""
    same = np.flatnonzero(hashes[1:] == hashes[:-1])
    return bool(np.any((first[same] == first[same + 1]) & (second[same] == second[same + 1])
                       & (sizes[same] == sizes[same + 1])))


class ByteIndex:
    """Word ids by the words' UTF-8 bytes, for whole arrays of tokens at once.

    A word of at most ``SHORT`` bytes is keyed by its bytes themselves (``short_keys``)
    and stored in an open-addressing hash table (linear probing, at most 40% full): a
    query probes slots from the one its hash picks until it meets its own key or an empty
    slot, all queries advancing together. Each slot holds its word's whole key (first and
    second 8 bytes, and ``id * 32 + size``), so a probe is three independent gathers at
    the same slot, and a hash collision never gives a wrong word. Longer words (rare in
    any vocabulary) are looked up by their bytes in a dict.
    """

    SCHEME = 1    # of the hash and the slot layout: a stored index of another is rebuilt

    def __init__(self, blob: bytes, stored: Optional[Sequence[np.ndarray]] = None):
        """The index of the words in ``blob`` (joined by newlines), built, or ``stored``
        (``slot_arrays()`` of an index of the same words, from a model file: checked for
        shape and occupancy, not rebuilt)."""
        data = padded_bytes(blob)
        ends = np.flatnonzero(data[:len(blob)] == 10)                    # the newlines
        starts = np.concatenate(([0], ends + 1))
        sizes = np.concatenate((ends, [len(blob)])) - starts
        self.size = int(starts.size)
        long_words = np.flatnonzero(sizes > SHORT).tolist()
        self.by_bytes = {blob[starts[i]:starts[i] + sizes[i]]: i for i in long_words}
        if len(self.by_bytes) != len(long_words):
            raise ValueError("a vocabulary holds each word once")
        short = np.flatnonzero(sizes <= SHORT)
        self.bits = max(4, int(np.ceil(np.log2(2.5 * max(short.size, 1)))))
        if stored is None:
            self._build(data, starts, sizes, short)
        else:
            self._adopt(stored, short.size)

    def _build(self, data, starts, sizes, short) -> None:
        first, second = short_keys(data, starts[short], sizes[short])
        hashes = _mix(first, second, sizes[short])
        order = np.argsort(hashes)
        short, hashes = short[order], hashes[order]
        first, second = first[order], second[order]
        if _twins(first, second, sizes[short], hashes):
            raise ValueError("a vocabulary holds each word once")
        # Linear probing, inserting in the order of the home slots (the hash's top bits):
        # word i lands at max(home_i, place_(i-1) + 1), i.e. i + max_(j<=i)(home_j - j).
        # Slots run on past the end instead of wrapping round.
        home = (hashes >> np.uint64(64 - self.bits)).astype(np.int64)
        steps = np.arange(short.size)
        place = steps + np.maximum.accumulate(home - steps) if short.size else steps
        self.probes = int((place - home).max(initial=0)) + 1
        slots = (1 << self.bits) + self.probes       # room to run on, and an empty slot last
        self.slot_first = np.zeros(slots, dtype=np.uint64)
        self.slot_second = np.zeros(slots, dtype=np.uint64)
        self.slot_word = np.full(slots, -1, dtype=np.int64)      # id * 32 + size; -1 empty
        self.slot_first[place] = first
        self.slot_second[place] = second
        self.slot_word[place] = short * 32 + sizes[short]

    def _adopt(self, stored: Sequence[np.ndarray], short_words: int) -> None:
        first, second, word = (np.asarray(a) for a in stored)
        slots = word.size
        self.probes = slots - (1 << self.bits)
        if not (first.shape == second.shape == word.shape == (slots,)
                and first.dtype == second.dtype == np.uint64 and word.dtype == np.int64
                and 1 <= self.probes <= max(short_words, 1) and word[-1] == -1):
            raise ValueError("the stored vocabulary index does not fit the vocabulary")
        if np.count_nonzero(word >= 0) != short_words or int(word.max()) >> 5 >= self.size:
            raise ValueError("the stored vocabulary index does not fit the vocabulary")
        self.slot_first, self.slot_second, self.slot_word = first, second, word

    def slot_arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.slot_first, self.slot_second, self.slot_word

    def _slots(self, first, second, sizes) -> np.ndarray:
        return (_mix(first, second, sizes) >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """The id of each span of the padded array ``data`` (see ``padded_bytes``), -1 for
        a span that is no word of the vocabulary; the spans are cut into one group per
        thread (``parallel.py``)."""
        starts, sizes = np.asarray(starts, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
        cuts = np.linspace(0, starts.size, parts_for(starts.size) + 1).astype(np.int64).tolist()
        pieces = run_all([partial(self._lookup, data, starts[a:b], sizes[a:b])
                          for a, b in zip(cuts[:-1], cuts[1:])])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _probe(self, slots, first, second, code):
        """The ``id * 32 + size`` at each slot, and whether the slot holds that key."""
        word = self.slot_word.take(slots)
        return word, ((self.slot_first.take(slots) == first)
                      & (self.slot_second.take(slots) == second) & ((word & 31) == code))

    def _lookup(self, data: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        first, second = short_keys(data, starts, sizes)
        # A long span's code (17) matches no slot (a word's size is at most 16, an empty
        # slot's 31): it probes on to an empty slot, and is then looked up in the dict.
        code = np.minimum(sizes, SHORT + 1)
        slots = self._slots(first, second, sizes)
        word, hit = self._probe(slots, first, second, code)   # every span at once first
        ids = np.where(hit, word >> 5, -1)
        todo = np.flatnonzero(~hit & (word >= 0))         # at another word's slot: go on
        slots = slots.take(todo)
        while todo.size:
            slots += 1
            word, hit = self._probe(slots, first.take(todo), second.take(todo),
                                    code.take(todo))
            ids[todo[hit]] = word[hit] >> 5
            going = np.flatnonzero(~hit & (word >= 0))
            todo, slots = todo.take(going), slots.take(going)
        get = self.by_bytes.get
        for i in np.flatnonzero(sizes > SHORT).tolist() if self.by_bytes else ():
            ids[i] = get(data[starts[i]:starts[i] + sizes[i]].tobytes(), -1)
        return ids


# The model-file arrays of a vocabulary's ByteIndex (see Vocabulary.to_arrays).
_INDEX_KEYS = [f"vocab_index{ByteIndex.SCHEME}_{part}" for part in ("first", "second", "word")]
