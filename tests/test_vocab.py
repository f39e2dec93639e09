"""rnnlm_cli.vocab: building, encoding (from strings and from byte spans), the byte index."""
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlm_cli.hashing as hashing_module
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, split_lines
from rnnlm_cli.hashing import SHORT, ByteIndex, padded_bytes
from rnnlm_cli.vocab import Vocabulary

WHITESPACE = Tokenizer(TokenizerConfig(kind="whitespace"))
LONG = "a-word-of-more-than-sixteen-bytes"
WORDS = st.sampled_from(["a", "b", "ab", "abcdefgh", "abcdefghi", "<unk>", "<s>", "</s>",
                         "việt", "tiếng", "x" * SHORT, "x" * (SHORT + 1), LONG, LONG + "!"])


def spans_of(text):
    return WHITESPACE.token_spans(text)


def test_build_counts_and_ids():
    vocab, corpus = Vocabulary.build([["b", "a", "b"], [], ["c", "b", "<unk>"]])
    assert vocab.words == ["<unk>", "<s>", "</s>", "b", "a", "c"]
    assert vocab.counts.tolist() == [1, 0, 0, 3, 1, 1]
    assert corpus.ids.tolist() == [3, 4, 3, 5, 3, 0] and corpus.lengths.tolist() == [3, 0, 3]


@settings(max_examples=300, deadline=None)
@given(train=st.lists(st.lists(WORDS, max_size=6), min_size=1, max_size=6),
       test=st.lists(st.lists(WORDS, max_size=6), max_size=6))
def test_encode_spans_equals_encode(train, test):
    vocab, _ = Vocabulary.build(train)
    text = "".join(" ".join(line) + "\n" for line in test)
    spans = spans_of(text)
    fast = vocab.encode_spans(spans.data, spans.starts, spans.sizes, spans.lengths)
    slow = vocab.encode(list(WHITESPACE.tokenize_lines(split_lines(text))))
    for field in ("ids", "lengths", "oov"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
    assert fast.skipped_markers == slow.skipped_markers


def test_byte_index_finds_every_word_and_nothing_else():
    words = ["<unk>", "<s>", "</s>", "a", "b\u00e9", "abcdefgh", "abcdefghi", "x" * SHORT,
             "x" * (SHORT + 1), LONG, "ti\u1ebfng"]
    index = ByteIndex("\n".join(words).encode())
    queries = words + ["", "ab", "abcdefg", "abcdefghij", "x" * (SHORT - 1), LONG + "s",
                       "A", "b"]
    text = "\n".join(queries).encode()
    starts = np.cumsum([0] + [len(q.encode()) + 1 for q in queries[:-1]])
    sizes = np.array([len(q.encode()) for q in queries])
    ids = index.lookup(padded_bytes(text), starts, sizes)
    assert ids.tolist() == list(range(len(words))) + [-1] * (len(queries) - len(words))


def test_byte_index_is_exact_when_hashes_collide(monkeypatch):
    """With every hash equal, every word probes on from the same slot: same answers."""
    monkeypatch.setattr(hashing_module, "_mix", lambda a, b, n: np.zeros(a.shape, np.uint64))
    words = ["<unk>", "<s>", "</s>", "a", "bb", LONG, "ccc"]
    index = ByteIndex("\n".join(words).encode())
    assert index.probes == 6                   # six short words, all from slot 0
    text = b"bb zz a " + LONG.encode() + b" ccc"
    ids = index.lookup(padded_bytes(text), np.array([0, 3, 6, 8, 9 + len(LONG)]),
                       np.array([2, 2, 1, len(LONG), 3]))
    assert ids.tolist() == [4, -1, 3, 5, 6]


@pytest.mark.parametrize("collide", [False, True])
def test_words_alike_in_their_first_eight_bytes_are_told_apart(collide, monkeypatch):
    """The second 8 bytes of a key are compared only for words longer than 8 bytes: words
    of 9 to 16 bytes with the same first 8 bytes and size are still told apart, and a
    word of at most 8 bytes never matches a longer one; also when every hash is the same
    (every query then meets every word on its way)."""
    if collide:
        monkeypatch.setattr(hashing_module, "_mix", lambda a, b, n: np.zeros(a.shape, np.uint64))
    words = ["<unk>", "<s>", "</s>", "abcdefgh", "abcdefghi", "abcdefghj", "abcdefghijklmnop",
             "abcdefghijklmnoq", "abcdefg"]
    index = ByteIndex("\n".join(words).encode())
    queries = words[3:] + ["abcdefghk", "abcdefghijklmnoz", "abcdefghijklmno", "abcdefgi"]
    text = " ".join(queries).encode()
    starts = np.cumsum([0] + [len(q) + 1 for q in queries[:-1]])
    sizes = np.array([len(q) for q in queries])
    ids = index.lookup(padded_bytes(text), starts, sizes)
    assert ids.tolist() == [3, 4, 5, 6, 7, 8, -1, -1, -1, -1]


# Words of 1 to 19 bytes of two letters, many sharing their first 8 bytes.
ALIKE = st.builds(lambda head, tail: head + tail, st.sampled_from(["", "ab", "abababab"]),
                  st.text(alphabet="ab", max_size=11)).filter(bool)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(ALIKE, unique=True, max_size=40), queries=st.lists(ALIKE, max_size=60),
       collide=st.booleans())
def test_byte_index_agrees_with_a_dict(words, queries, collide):
    words = ["<unk>", "<s>", "</s>"] + words
    if collide:           # every word and query from slot 0: each query meets many words
        with patch.object(hashing_module, "_mix", lambda a, b, n: np.zeros(a.shape, np.uint64)):
            index = ByteIndex("\n".join(words).encode())
    else:
        index = ByteIndex("\n".join(words).encode())
    text = " ".join(queries).encode()
    starts = np.cumsum([0] + [len(q) + 1 for q in queries[:-1]]).astype(np.int64)
    sizes = np.array([len(q) for q in queries], dtype=np.int64)
    if collide:
        with patch.object(hashing_module, "_mix", lambda a, b, n: np.zeros(a.shape, np.uint64)):
            ids = index.lookup(padded_bytes(text), starts, sizes)
    else:
        ids = index.lookup(padded_bytes(text), starts, sizes)
    where = {w: i for i, w in enumerate(words)}
    assert ids.tolist() == [where.get(q, -1) for q in queries]


@pytest.mark.parametrize("words", [["<unk>", "<s>", "</s>", "a", "a"],
                                   ["<unk>", "<s>", "</s>", LONG, LONG]])
def test_a_word_twice_is_refused(words):
    with pytest.raises(ValueError, match="each word once"):
        Vocabulary(words)


def test_round_trip_through_arrays_keeps_the_index():
    vocab, _ = Vocabulary.build([["z", "y", LONG], ["y"]])
    again = Vocabulary.from_arrays(vocab.to_arrays())
    assert again.words == vocab.words and again.index == vocab.index
    spans = spans_of("y " + LONG + " q\n")
    corpus = again.encode_spans(spans.data, spans.starts, spans.sizes, spans.lengths)
    assert corpus.ids.tolist() == [vocab.id("y"), vocab.id(LONG), 0]
    assert corpus.oov.tolist() == [False, False, True]


def test_a_word_with_a_newline_or_no_specials_is_refused():
    with pytest.raises(ValueError, match="newline"):
        Vocabulary(["<unk>", "<s>", "</s>", "a\nb"])
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(blob=b"<unk>\n</s>\n<s>\na")


@pytest.mark.parametrize("words", [["<s>", "<unk>", "</s>", "a"], ["<unk>", "<s>", "</s>x"],
                                   ["<unk>", "<s>"]])
def test_a_vocabulary_must_start_with_the_specials(words):
    with pytest.raises(ValueError, match="starts with <unk>, <s>, </s>"):
        Vocabulary(words)


def test_the_specials_alone_are_a_vocabulary():
    assert len(Vocabulary(["<unk>", "<s>", "</s>"])) == 3
    assert Vocabulary.from_arrays(Vocabulary(["<unk>", "<s>", "</s>", "a"]).to_arrays()).id("a") == 3


def _index_arrays(arrays):
    return {k: v for k, v in arrays.items() if k.startswith("vocab_index")}


def test_the_stored_index_is_used_and_finds_what_a_built_one_finds(monkeypatch):
    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(300)] + [LONG, "tiếng"]
    arrays = Vocabulary(words).to_arrays()
    assert len(_index_arrays(arrays)) == 3
    built = Vocabulary.from_arrays({k: v for k, v in arrays.items()
                                    if not k.startswith("vocab_index")})
    monkeypatch.setattr(ByteIndex, "_build", lambda *a: pytest.fail("rebuilt the stored index"))
    stored = Vocabulary.from_arrays(arrays)
    text = " ".join(words[3:] + ["w300", "tiến", LONG + "s"]) + "\n"   # no markers
    spans = spans_of(text)
    ids = stored.encode_spans(spans.data, spans.starts, spans.sizes, spans.lengths).ids
    again = built.encode_spans(spans.data, spans.starts, spans.sizes, spans.lengths).ids
    assert ids.tolist() == again.tolist() == list(range(3, len(words))) + [0, 0, 0]


def test_an_index_of_another_scheme_is_rebuilt():
    arrays = Vocabulary(["<unk>", "<s>", "</s>", "a"]).to_arrays()
    renamed = {k.replace(f"index{ByteIndex.SCHEME}_", f"index{ByteIndex.SCHEME + 1}_"): v
               for k, v in arrays.items()}
    assert Vocabulary.from_arrays(renamed).id("a") == 3


@pytest.mark.parametrize("damage", ["short", "last slot taken", "a slot emptied", "bad id",
                                    "dtype"])
def test_a_stored_index_that_does_not_fit_is_refused(damage):
    arrays = Vocabulary(["<unk>", "<s>", "</s>", "a", "b", "c"]).to_arrays()
    index = {k: np.array(v) for k, v in _index_arrays(arrays).items()}
    key_of_word = [k for k in index if k.endswith("_word")][0]
    word = index[key_of_word]
    if damage == "short":
        index = {k: v[:-1] for k, v in index.items()}
    elif damage == "last slot taken":
        word[-1] = word[word >= 0][0]
    elif damage == "a slot emptied":
        word[np.flatnonzero(word >= 0)[0]] = -1
    elif damage == "bad id":
        word[np.flatnonzero(word >= 0)[0]] = 99 * 32 + 1
    else:
        index[key_of_word] = word.astype(np.int32)
    with pytest.raises(ValueError, match="index does not fit"):
        Vocabulary.from_arrays({**arrays, **index})


def test_build_with_a_fixed_vocabulary_keeps_its_words_and_ids():
    """--vocab-from: exactly the model's words with its ids, whatever the counts; words
    outside it are <unk>; the counts are the new corpus's (a=0: never seen here)."""
    fixed, _ = Vocabulary.build([["a", "b", "a", "c"], ["b", "a", "d"]], min_count=2)
    assert fixed.words == ["<unk>", "<s>", "</s>", "a", "b"]
    vocab, corpus = Vocabulary.build([["d", "e", "e"], ["b", "<s>", "e", "<unk>"]],
                                     fixed=fixed)
    assert vocab.words == fixed.words
    assert vocab.counts.tolist() == [5, 0, 0, 0, 1]     # <unk>: d, e, e, e and the literal
    assert corpus.ids.tolist() == [0, 0, 0, 4, 0, 0] and corpus.lengths.tolist() == [3, 3]
    assert corpus.skipped_markers == 1
    assert "a" in vocab and "e" not in vocab and "<unk>" in vocab


def test_a_fixed_vocabulary_equals_the_one_built_on_the_same_text():
    sentences = [["x", "y", "z", "w"], ["z", "y", "v"]]
    built, built_corpus = Vocabulary.build(sentences, max_vocab=5)
    again, again_corpus = Vocabulary.build(sentences, fixed=built)
    assert again.words == built.words == ["<unk>", "<s>", "</s>", "y", "z"]
    assert again.counts.tolist() == built.counts.tolist() == [3, 0, 0, 2, 2]
    assert again_corpus.ids.tolist() == built_corpus.ids.tolist()
