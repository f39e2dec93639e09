"""N-grams as packed word ids: a representation that does not depend on the rest of the
corpus, so that blocks of a corpus (or shards counted on other machines) can be counted
apart and their sorted runs merged.

The n word ids of an n-gram are packed ``bits`` bits each (``bits`` = the bit length of
the largest id), ``per_word = 64 // bits`` ids to a uint64, the first id in the most
significant place; an n-gram is ``W = ceil(n / per_word)`` such words, a row of a
``(rows, W)`` uint64 array. Comparing rows word by word (``lexsort``) then compares the
n-grams word id by word id: *lexicographic order*, the order of the model's trie tables
(``counting.py``: sorting trie keys sorts n-grams by context, then word).

Where ``W`` is 1 (short n-grams, small vocabularies) everything is one uint64 and NumPy's
plain ``sort`` and ``searchsorted`` do; the functions below take the general path only
for longer keys.

Sorting many rows uses every core (``parallel.py``): ``first_word_groups`` cuts the rows
into groups by ranges of their first uint64 word, each group is sorted in a thread, and
the sorted groups laid end to end are the sorted rows, the same as one sort gives. The
groups' temporaries are given back to the system when a step's sorting is done
(``allocator.give_back_free_memory``: ``RunSorter.finish``, ``BlockCounter.finish``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from rnnlm_cli import parallel

GROUPS_PER_THREAD = 4     # more groups than threads: less memory at once, and a thread
                          # given a small group takes another


@dataclass(frozen=True)
class Packing:
    """How the n-grams of one order ``n`` over a vocabulary of ``vocab_size`` words pack."""

    n: int
    vocab_size: int

    @property
    def bits(self) -> int:
        return max(1, (self.vocab_size - 1).bit_length())

    @property
    def per_word(self) -> int:
        return 64 // self.bits

    @property
    def words(self) -> int:
        """W: uint64 words per n-gram."""
        return -(-self.n // self.per_word)

    def pack(self, ids) -> np.ndarray:
        """``(rows, n)`` word ids (or a list of the n columns) -> ``(rows, W)`` uint64 keys."""
        columns = ids if isinstance(ids, list) else [ids[:, j] for j in range(ids.shape[1])]
        keys = np.zeros((columns[0].shape[0], self.words), dtype=np.uint64)
        bits = np.uint64(self.bits)
        for j, column in enumerate(columns):
            word = j // self.per_word
            if j % self.per_word:
                keys[:, word] <<= bits
            keys[:, word] |= column.astype(np.uint64)
        return keys

    def rotate(self, keys: np.ndarray, left: bool = True) -> np.ndarray:
        """``pack(np.roll(unpack(keys), -1 if left else 1, axis=1))`` without unpacking:
        (w_1 .. w_n) -> (w_2 .. w_n, w_1), or back. Each uint64 word shifts its ids by
        one place, and the id that leaves a word enters the next one (the last word's
        goes round to the first), so a rotation is 2 shifts, a mask and an or a word."""
        bits = np.uint64(self.bits)
        lowest = np.uint64((1 << self.bits) - 1)
        held = [min(self.per_word, self.n - w * self.per_word) for w in range(self.words)]
        top = [np.uint64(self.bits * (h - 1)) for h in held]   # where a word's first id sits
        out = np.empty_like(keys)
        for w in range(self.words):
            word = keys[:, w]
            if left:    # drop the first id, shift up, take the next word's first id
                after = (w + 1) % self.words
                rest = word & np.uint64((1 << int(top[w])) - 1)
                out[:, w] = (rest << bits) | (keys[:, after] >> top[after])
            else:       # drop the last id, shift down, take the previous word's last id
                before = keys[:, (w - 1) % self.words]
                out[:, w] = (word >> bits) | ((before & lowest) << top[w])
        return out

    def drop_last(self, keys: np.ndarray) -> np.ndarray:
        """``Packing(n - 1)``'s keys of the (n-1)-gram prefixes of ``keys``:
        ``pack(unpack(keys)[:, :-1])`` without unpacking (the last word loses its last
        id, the lowest bits, or goes if that was its only one)."""
        if self.n - (self.words - 1) * self.per_word == 1:
            return keys[:, :-1]
        out = keys.copy()
        out[:, -1] >>= np.uint64(self.bits)
        return out

    def unpack(self, keys: np.ndarray) -> np.ndarray:
        """``(rows, W)`` keys -> ``(rows, n)`` int64 word ids, a column at a time into
        contiguous columns (Fortran order; 2x faster than rows, in place, no temporaries;
        the ids are read by column)."""
        ids = np.empty((self.n, keys.shape[0]), dtype=np.int64)
        mask = np.int64((1 << self.bits) - 1)
        for word in range(self.words):
            # (as int64: an arithmetic shift, whose sign bits the mask then clears)
            column = np.ascontiguousarray(keys[:, word]).view(np.int64)
            in_word = min(self.per_word, self.n - word * self.per_word)
            for place in range(in_word):
                j = word * self.per_word + place
                np.right_shift(column, self.bits * (in_word - 1 - place), out=ids[j])
                np.bitwise_and(ids[j], mask, out=ids[j])
        return ids.T


def dtype_of(packing: Packing, **fields) -> np.dtype:
    """A record: the packed ``key`` and the named ``fields`` (name=dtype)."""
    return np.dtype([("key", np.uint64, (packing.words,))]
                    + [(name, np.dtype(kind)) for name, kind in fields.items()])


def lex_order(keys: np.ndarray) -> np.ndarray:
    """The permutation that sorts the rows of ``keys`` lexicographically (stable): a
    stable sort by each word, last word first (faster than ``np.lexsort``)."""
    order = np.argsort(keys[:, -1], kind="stable")
    for w in range(keys.shape[1] - 2, -1, -1):
        order = order[np.argsort(keys[order, w], kind="stable")]
    return order


def merge_order(keys: np.ndarray) -> np.ndarray:
    """``lex_order`` of keys that are sorted runs laid end to end (what a merge sorts):
    one stable sort of whole rows, a timsort that finds the runs and merges them, for
    several times less than ``lex_order``'s pass a word. Rows of several words are
    compared as byte strings, their words big-endian: byte order is then row order."""
    if keys.shape[1] == 1:
        return np.argsort(keys[:, 0], kind="stable")
    return np.argsort(_byte_rows(keys), kind="stable")


def suffix_order(packing: Packing) -> Callable[[np.ndarray], np.ndarray]:
    """``lex_order`` of keys rotated by ``packing.rotate`` (w_2 .. w_n, w_1) whose rows
    come in lexicographic order of the n-grams, so that rows of equal suffix (w_2 .. w_n)
    come with w_1 ascending: a stable sort by the suffix alone.

    A radix sort, least significant ids first, a few ids a pass: each pass sorts uint64
    values holding those ids above the row's place, with NumPy's sort of values (SIMD),
    several times faster than its sorts that find a permutation; the places read off
    the sorted values are the pass's stable permutation. (Two passes for a suffix of
    four 18-bit ids and 22M rows: 36 + 25 bits a value.)"""
    bits, mask = np.uint64(packing.bits), np.uint64((1 << packing.bits) - 1)

    def id_at(words: np.ndarray, j: int) -> np.ndarray:
        """Id j of the keys, from their word holding it (``words``, one column)."""
        held = min(packing.per_word, packing.n - (j // packing.per_word) * packing.per_word)
        place = j % packing.per_word
        return (words >> np.uint64(packing.bits * (held - 1 - place))) & mask

    def order(keys: np.ndarray) -> np.ndarray:
        rows = keys.shape[0]
        place_bits = max(1, (rows - 1).bit_length())
        per_pass = (64 - place_bits) // packing.bits
        if per_pass < 1:
            return merge_order(keys)
        words = [np.ascontiguousarray(keys[:, w]) for w in range(packing.words)]
        places = np.arange(rows, dtype=np.uint64)
        permutation = None                 # (None: the identity)
        for stop in range(packing.n - 1, 0, -per_pass):
            wanted = range(max(0, stop - per_pass), stop)
            moved = {w: words[w] if permutation is None else np.take(words[w], permutation)
                     for w in {j // packing.per_word for j in wanted}}
            values = np.zeros(rows, dtype=np.uint64)
            for j in wanted:
                values <<= bits
                values |= id_at(moved[j // packing.per_word], j)
            values <<= np.uint64(place_bits)
            values |= places
            values.sort()
            step = (values & np.uint64((1 << place_bits) - 1)).astype(np.intp)
            permutation = step if permutation is None else permutation[step]
        return np.arange(rows) if permutation is None else permutation
    return order


def _byte_rows(keys: np.ndarray) -> np.ndarray:
    """Rows of several words as byte strings, the words big-endian: their byte order is
    the rows' lexicographic order (NumPy compares ``S`` strings as unsigned bytes)."""
    return np.ascontiguousarray(keys, dtype=">u8").view(f"S{8 * keys.shape[1]}")[:, 0]


def first_ids(keys: np.ndarray, packing: "Packing") -> np.ndarray:
    """The first word id of each packed n-gram (the top bits of its first uint64)."""
    shift = np.uint64(packing.bits * (min(packing.per_word, packing.n) - 1))
    return (keys[:, 0] >> shift).astype(np.int64)


def sort_rows(keys: np.ndarray, packing: Optional[Packing] = None) -> np.ndarray:
    """The rows of ``keys`` sorted lexicographically: a plain sort of one-word keys, of
    two-word keys of ``packing`` as complex numbers where they fit (``_sort_as_complex``),
    else of rows as byte strings, their words big-endian (as ``merge_order``; NumPy sorts
    values, not a permutation, about 1.8x faster than ``lex_order`` and its gather).
    Many rows are sorted in groups on every core (``first_word_groups``)."""
    out = np.empty_like(keys)
    count = group_count(keys.shape[0])
    if count == 1:
        _sort_rows_into(keys, out, packing)
    else:
        _each_group(keys, count, lambda rows, place: _sort_rows_into(
            np.take(keys, rows, axis=0), out[place], packing))
    return out


def _sort_rows_into(keys: np.ndarray, out: np.ndarray, packing: Optional[Packing]) -> None:
    """``out`` (of ``keys``' shape) gets the rows of ``keys`` sorted, sorted in place: no
    memory but ``out``'s. Rows of several words are written with their words big-endian,
    sorted as byte strings, and the bytes swapped back (where the machine's are not)."""
    if keys.shape[1] == 1:
        out[:, 0] = keys[:, 0]
        out[:, 0].sort()
        return
    if packing is not None and keys.shape[1] == 2 and packing.n * packing.bits <= 106:
        _sort_as_complex(keys, out, packing)
        return
    big_endian = out.view(">u8")
    big_endian[...] = keys
    out.reshape(-1).view(f"S{8 * keys.shape[1]}").sort()
    if not big_endian.dtype.isnative:
        out.byteswap(inplace=True)


def _sort_as_complex(keys: np.ndarray, out: np.ndarray, packing: Packing) -> None:
    """``_sort_rows_into`` for keys of two words and at most 106 bits, each key one
    complex number in ``out``'s bytes: the key's ids as one number X (the first word's
    bits, then the second's), its high half the real part, its low half the imaginary
    part, each at most 53 bits and so exact in a float64. NumPy sorts complex numbers
    by real, then imaginary part: X's order, 1.7x faster than 16-byte strings."""
    second = (packing.n - packing.per_word) * packing.bits     # bits of the second word
    low = packing.n * packing.bits // 2                         # bits of the low half
    # (second <= low: the second word holds at most as many ids as the first)
    spill, top = np.uint64(low - second), np.uint64(second)
    number = out.view(np.complex128).reshape(-1)
    number.real = keys[:, 0] >> spill
    number.imag = ((keys[:, 0] & np.uint64((1 << (low - second)) - 1)) << top) | keys[:, 1]
    number.sort()
    high, rest = number.real.astype(np.uint64), number.imag.astype(np.uint64)
    out[:, 0] = (high << spill) | (rest >> top)
    out[:, 1] = rest & np.uint64((1 << second) - 1)


def in_groups(order: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``order`` (keys -> the stable permutation that sorts them lexicographically), for
    many rows found a group at a time on every core (``first_word_groups``): each
    group's rows in the order ``order`` gives them, the groups end to end."""
    def grouped(keys: np.ndarray) -> np.ndarray:
        count = group_count(keys.shape[0])
        if count == 1:
            return order(keys)
        permutation = np.empty(keys.shape[0], dtype=np.intp)

        def order_group(rows: np.ndarray, place: slice) -> None:
            permutation[place] = rows[order(np.take(keys, rows, axis=0))]
        _each_group(keys, count, order_group)
        return permutation
    return grouped


def _each_group(keys: np.ndarray, count: int,
                work: Callable[[np.ndarray, slice], None]) -> None:
    """``work(rows, place)`` in ``parallel``'s worker threads for each of up to ``count``
    groups of ``first_word_groups``: the group's row numbers (in table order) and its
    place in the rows laid out group after group."""
    labels, ends = first_word_groups(keys[:, 0], count)

    def one(i: int) -> None:
        work(np.flatnonzero(labels == i), slice(ends[i], ends[i + 1]))
    for _ in parallel.map_ordered(one, nonempty(ends)):
        pass


def group_count(rows: int) -> int:
    """How many groups to sort ``rows`` rows in: ``GROUPS_PER_THREAD`` per thread where
    there are threads to share them (``parallel.parts_for``), else one; at most 255
    (``first_word_groups`` labels rows with a byte)."""
    threads = parallel.parts_for(rows)
    return 1 if threads == 1 else min(255, GROUPS_PER_THREAD * threads)


def first_word_groups(first_words: np.ndarray, groups: int) -> Tuple[np.ndarray, np.ndarray]:
    """The rows cut into up to ``groups`` groups of about equal size, between ranges of
    their first uint64 words (``first_words``): ``(labels, ends)``, each row's group
    (uint8) and the groups' ends as the rows would be laid out group after group. The
    groups come in increasing order of their ranges; rows of equal first words share a
    group, so sorting each group's rows (stably, or rows that are unique) and laying the
    groups end to end gives what sorting the whole gives."""
    sample = np.sort(first_words[::max(1, first_words.size // (64 * groups))])
    pivots = np.unique(sample[np.arange(1, groups) * sample.size // groups])
    labels = np.zeros(first_words.size, dtype=np.uint8)
    for pivot in pivots:                 # a row's group: how many pivots are at most its word
        labels += first_words >= pivot
    ends = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=pivots.size + 1))])
    return labels, ends


def nonempty(ends: np.ndarray) -> List[int]:
    """The groups of ``first_word_groups`` that have rows."""
    return np.flatnonzero(np.diff(ends)).tolist()


def row_starts(keys: np.ndarray) -> np.ndarray:
    """Of sorted rows: True where a row differs from the one before (and at row 0)."""
    starts = np.ones(keys.shape[0], dtype=bool)
    if keys.shape[0] > 1:      # a column at a time: 8x faster than np.any(..., axis=1)
        np.not_equal(keys[1:, 0], keys[:-1, 0], out=starts[1:])
        for w in range(1, keys.shape[1]):
            starts[1:] |= keys[1:, w] != keys[:-1, w]
    return starts


def less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row, ``a < b`` lexicographically (``b`` may be one row, broadcast)."""
    result = np.zeros(np.broadcast(a[:, 0], b[..., 0]).shape, dtype=bool)
    equal = np.ones_like(result)
    for w in range(a.shape[1]):
        result |= equal & (a[:, w] < b[..., w])
        equal &= a[:, w] == b[..., w]
    return result


def count_at_most(keys: np.ndarray, bound: np.ndarray) -> int:
    """How many rows of the sorted ``keys`` are at most the row ``bound``."""
    return int(searchsorted(keys, bound[None, :], side="right")[0])


def searchsorted(table: np.ndarray, queries: np.ndarray, side: str = "left") -> np.ndarray:
    """``np.searchsorted`` on rows: for each query row, the first row of the sorted
    ``table`` that is not less than it (side left) or greater than it (side right). For
    keys of several words, a binary search run for every query at once, one vector step
    per halving."""
    if table.shape[1] == 1:
        return np.searchsorted(table[:, 0], queries[:, 0], side=side).astype(np.int64)
    low = np.zeros(queries.shape[0], dtype=np.int64)
    high = np.full(queries.shape[0], table.shape[0], dtype=np.int64)
    for _ in range(int(table.shape[0]).bit_length()):
        middle = (low + high) >> 1
        active = low < high
        row = table[np.minimum(middle, table.shape[0] - 1)]
        # Go right past rows less than the query (left), or not greater than it (right).
        right = less(row, queries) if side == "left" else ~less(queries, row)
        right &= active
        low = np.where(right, middle + 1, low)
        high = np.where(active & ~right, middle, high)
    return low
