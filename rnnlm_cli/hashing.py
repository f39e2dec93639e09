"""Hash tables built and probed with NumPy, whole arrays at a time: the two lookups that
must beat binary search.

- ``ByteIndex``: word ids by the words' UTF-8 bytes, for every token of a text at once
  (``Vocabulary.encode_spans``; the tokenizer cuts text into byte spans of the padded
  array ``padded_bytes`` makes).
- ``build`` and ``find``: the row of each n-gram key among the sorted distinct keys of a
  count table (``ngram/counting.py``). Binary search (``np.searchsorted``) costs ~22
  dependent memory reads per lookup in a table of millions of keys in random order; a hash
  probe costs one or two, and NumPy's gathers let the processor overlap those reads
  across the whole batch. (Scoring a memory-mapped model is another matter: there the
  tables are sorted, bigrams are found by binary search of sorted queries and longer
  n-grams through the trie's child pointers; see ``ngram/model.py``, ``ngram/trie.py``.)

The one trick both share: open addressing with linear probing, built without a loop and
without wrap-around (``probe_places``). Taking the keys in order of their home slot
``h``, each goes to the first free slot at or after ``h``, i.e. ``p_i = max(h_i,
p_{i-1} + 1)``, which unrolls to ``p_i = i + max_{j<=i}(h_j - j)``: one sort and one
running maximum. Slots run on past ``2^bits`` instead of wrapping, and one empty slot at
the very end stops every probe. Queries probe together: the first probe for all at once,
then only those that met another key's slot move on one slot, until each meets its own
key or an empty slot.

Invariants a table relies on: keys are distinct (a builder checks: ``ByteIndex`` refuses
twins), a table is at most half full (``ByteIndex`` 40%), so probe runs stay short; a
stored ``ByteIndex`` (in a model file) is adopted only if its shape and occupancy fit
its vocabulary, and a different ``SCHEME`` is rebuilt.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.parallel import parts_for, run_all


def probe_places(home: np.ndarray) -> np.ndarray:
    """The slot of each key under linear probing, for keys sorted by their ``home`` slots:
    ``p_i = i + max_{j<=i}(home_j - j)`` (see the module docstring)."""
    steps = np.arange(home.size, dtype=np.int64)
    return steps + np.maximum.accumulate(home - steps) if home.size else steps


# -- n-gram keys (uint64) to rows of their sorted table -----------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def table_bits(n_keys: int) -> int:
    """log2 of the slot count: the smallest power of two at least twice ``n_keys``."""
    return max(4, int(2 * max(n_keys, 1) - 1).bit_length())


def _home(keys: np.ndarray, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((keys * _GOLDEN) >> np.uint64(64 - bits)).astype(np.intp)


def build(keys: np.ndarray) -> np.ndarray:
    """Slots (int32 ``row + 1``, 0 empty) holding every row of the unique ``keys``, placed
    by Fibonacci hashing ``(key * 2^64/phi) >> (64 - bits)`` and ``probe_places``."""
    bits = table_bits(keys.size)
    # Sort (home, row) pairs packed in one uint64: a plain sort is much faster than argsort.
    packed = np.sort((_home(keys, bits).astype(np.uint64) << np.uint64(32))
                     | np.arange(keys.size, dtype=np.uint64))
    order = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    home = (packed >> np.uint64(32)).astype(np.int64)
    position = probe_places(home)
    end = max(1 << bits, int(position[-1]) + 1 if keys.size else 0) + 1
    slots = np.zeros(end, dtype=np.int32)
    slots[position] = order + 1
    return slots


def find(slots: np.ndarray, bits: int, keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of each query in ``keys`` (-1 where absent); ``bits`` as ``table_bits``.

    The first probe is made for every query at once; only the few that land on another
    key's slot probe on. ``mode="clip"``: a damaged file can give a wrong row, never an
    index error.
    """
    if keys.size == 0:
        return np.full(queries.size, -1, dtype=np.int64)
    position = _home(queries, bits)
    rows = slots.take(position).astype(np.int64) - 1
    occupied = rows >= 0
    hit = keys.take(rows, mode="clip") == queries
    result = np.where(hit & occupied, rows, -1)
    todo = np.flatnonzero(occupied & ~hit)
    while todo.size:
        position[todo] += 1
        rows = slots.take(position[todo]).astype(np.int64) - 1
        occupied = rows >= 0
        hit = occupied & (keys.take(rows, mode="clip") == queries[todo])
        result[todo[hit]] = rows[hit]
        todo = todo[occupied & ~hit]
    return result


# -- words to ids by their bytes ---------------------------------------------------------------

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
    the exact bytes of every span of at most ``SHORT`` bytes. (The second 8 bytes are read
    only for the spans longer than 8 bytes: most words are not.)"""
    at = np.ndarray((data.size - 7,), dtype="<u8", buffer=data, strides=(1,))  # 8 bytes at i
    first = at[starts] & _MASKS[np.minimum(sizes, 8)]
    second = np.zeros(starts.size, dtype=np.uint64)
    longer = np.flatnonzero(sizes > 8)
    if longer.size:
        second[longer] = (at[starts.take(longer) + 8]
                          & _MASKS[np.minimum(sizes.take(longer) - 8, 8)])
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
        # Linear probing in the order of the home slots (the hash's top bits): probe_places.
        home = (hashes >> np.uint64(64 - self.bits)).astype(np.int64)
        place = probe_places(home)
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
        """The ``id * 32 + size`` at each slot, and whether the slot holds that key. The
        second 8 bytes are compared only for keys longer than 8 bytes: a key of at most 8
        bytes and a stored word of the same size both have zeros there."""
        word = self.slot_word.take(slots)
        hit = (self.slot_first.take(slots) == first) & ((word & 31) == code)
        check = np.flatnonzero(hit & (code > 8))
        if check.size:
            hit[check] = self.slot_second.take(slots.take(check)) == second.take(check)
        return word, hit

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
