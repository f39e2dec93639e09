"""Counting: exact n-gram counts, trie keys and Kneser-Ney left extensions by hand."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm_cli import hashing
from rnnlm_cli.ngram.counting import count_ngrams, padded_sequence
from rnnlm_cli.ngram.model import find_sorted
from rnnlm_cli.vocab import Vocabulary

# Ids: <unk>=0 <s>=1 </s>=2 a=3 b=4; sentences "a b a" and "b a".
IDS = np.array([3, 4, 3, 4, 3])
LENGTHS = np.array([3, 2])


def grams(counts, n):
    """{tuple of words: raw count} read back from the trie keys."""
    words = [[w] for w in range(counts.vocab_size)]
    for k in range(2, n + 1):
        keys = counts.keys[k - 1]
        prefix = (keys // np.uint64(counts.vocab_size)).astype(int)
        last = (keys % np.uint64(counts.vocab_size)).astype(int)
        words = [words[p] + [w] for p, w in zip(prefix, last)]
    names = ["<unk>", "<s>", "</s>", "a", "b"]
    return {tuple(names[w] for w in g): int(c) for g, c in zip(words, counts.counts[n - 1])}


def test_padded_sequence_marks_sentences():
    sequence, offset = padded_sequence(IDS, LENGTHS, bos=1, eos=2)
    assert sequence.tolist() == [1, 3, 4, 3, 2, 1, 4, 3, 2]
    assert offset.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]


def test_counts_of_every_order():
    counts = count_ngrams(IDS, LENGTHS, 3, 5, bos=1, eos=2)
    assert grams(counts, 1) == {("<unk>",): 0, ("<s>",): 2, ("</s>",): 2, ("a",): 3, ("b",): 2}
    assert grams(counts, 2) == {("<s>", "a"): 1, ("<s>", "b"): 1, ("a", "b"): 1,
                                ("b", "a"): 2, ("a", "</s>"): 2}
    assert grams(counts, 3) == {("<s>", "a", "b"): 1, ("a", "b", "a"): 1, ("b", "a", "</s>"): 2,
                                ("<s>", "b", "a"): 1}


def test_keys_are_sorted_and_contexts_contiguous():
    counts = count_ngrams(IDS, LENGTHS, 3, 5, bos=1, eos=2)
    for n in (2, 3):
        keys = counts.keys[n - 1]
        assert np.all(np.diff(keys.astype(np.int64)) > 0)


def test_left_extensions_are_distinct_preceding_words():
    counts = count_ngrams(IDS, LENGTHS, 3, 5, bos=1, eos=2)
    one = dict(zip(["<unk>", "<s>", "</s>", "a", "b"], counts.left_extensions[0].tolist()))
    # a follows <s> and b; b follows <s> and a; </s> follows a only.
    assert one == {"<unk>": 0, "<s>": 0, "</s>": 1, "a": 2, "b": 2}
    two = grams(counts, 2)
    ext = dict(zip(two, counts.left_extensions[1].tolist()))
    # (b a) is preceded by <s> and a; (a </s>) by b (twice: one distinct word).
    assert ext == {("<s>", "a"): 0, ("<s>", "b"): 0, ("a", "b"): 1, ("b", "a"): 2,
                   ("a", "</s>"): 1}


def test_suffix_rows_point_at_the_lower_order_suffix():
    counts = count_ngrams(IDS, LENGTHS, 3, 5, bos=1, eos=2)
    two = list(grams(counts, 2))
    three = list(grams(counts, 3))
    for gram, row in zip(three, counts.suffix[2]):
        assert two[row] == gram[1:]


def test_vocabulary_build_orders_by_count_and_maps_rare_words_to_unk():
    sentences = [["b", "a", "c"], ["a", "<unk>"], ["a", "b"]]
    vocab, corpus = Vocabulary.build(sentences, min_count=2)
    assert vocab.words == ["<unk>", "<s>", "</s>", "a", "b"]
    assert vocab.counts.tolist() == [2, 0, 0, 3, 2]  # <unk>: c and the literal <unk>
    assert corpus.ids.tolist() == [4, 3, 0, 3, 0, 3, 4]
    assert corpus.lengths.tolist() == [3, 2, 2]
    assert "<unk>" in vocab and "c" not in vocab


def test_vocabulary_drops_literal_sentence_markers():
    vocab, corpus = Vocabulary.build([["a", "<s>", "b", "</s>"], ["<s>"]])
    assert corpus.skipped_markers == 3
    assert corpus.lengths.tolist() == [2, 0]
    assert vocab.decode(corpus.ids) == ["a", "b"]


def test_max_vocab_keeps_the_most_frequent_words():
    vocab, _ = Vocabulary.build([["x", "y", "y", "z", "z", "z"]], max_vocab=5)
    assert vocab.words == ["<unk>", "<s>", "</s>", "z", "y"]


def test_unseen_unk_is_an_oov_when_scoring():
    vocab, _ = Vocabulary.build([["a", "b"]])
    encoded = vocab.encode([["a", "<unk>", "zzz"]])
    assert encoded.ids.tolist() == [3, 0, 0]
    assert encoded.oov.tolist() == [False, True, True]


@settings(max_examples=50, deadline=None)
@given(keys=st.sets(st.integers(0, 2**40), max_size=300),
       queries=st.lists(st.integers(0, 2**40), max_size=300))
def test_hash_index_and_sorted_search_find_exactly_the_present_keys(keys, queries):
    table = np.array(sorted(keys), dtype=np.uint64)
    wanted = np.array(queries + sorted(keys), dtype=np.uint64)
    expected = np.array([sorted(keys).index(q) if q in keys else -1 for q in wanted.tolist()])
    slots = hashing.build(table)
    assert slots[-1] == 0
    found = hashing.find(slots, hashing.table_bits(table.size), table, wanted)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(find_sorted(table, wanted), expected)
    copies = 5000 // max(wanted.size, 1) + 1                     # the sorted-batch path
    np.testing.assert_array_equal(find_sorted(table, np.tile(wanted, copies)),
                                  np.tile(expected, copies))
