"""Smoothing: probabilities computed by hand on a tiny corpus, for every method, and the
property that every next-token distribution sums to one."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm_cli.ngram.counting import count_ngrams
from rnnlm_cli.ngram.model import NgramModel, sorted_distinct
from rnnlm_cli.ngram.smoothing import METHODS, estimate, kn_discounts
from rnnlm_cli.vocab import Vocabulary

# "a b" and "a": <s> a b </s>, <s> a </s>. Vocabulary <unk> <s> </s> a b; the
# predictable vocabulary (all but <s>) has 4 words. Unigram counts: a 2, b 1, </s> 2.
# Bigrams: (<s> a) 2, (a b) 1, (a </s>) 1, (b </s>) 1.
TINY = [["a", "b"], ["a"]]


def train(sentences, order, method, **options):
    vocab, corpus = Vocabulary.build(sentences)
    counts = count_ngrams(corpus.ids, corpus.lengths, order, len(vocab),
                          vocab.bos_id, vocab.eos_id)
    tables = estimate(counts, method, vocab.bos_id, **options)
    return NgramModel(vocab, tables, {})


def prob(model, history, word):
    """p(word | <s> history) through log_probs (the full distribution)."""
    state = model.initial_state(1)
    for w in history:
        state = model.advance(state, np.array([model.vocab.id(w)]))
    return math.exp(model.log_probs(state)[0, model.vocab.id(word)])


def sentence_prob(model, words):
    encoded = model.vocab.encode([words])
    return math.exp(model.score(encoded.ids, encoded.lengths).logprob.sum())


# Each method's bigram probabilities, worked out by hand in the comments.
HAND = {
    "mle": {
        # c(h w) / c(h); an unseen word after a seen history gets 0.
        ((), "a"): 2 / 5, ((), "</s>"): 2 / 5, ((), "<unk>"): 0.0,
        (("<s>",), "a"): 1.0, (("<s>",), "b"): 0.0,
        (("a",), "b"): 1 / 2, (("a",), "</s>"): 1 / 2, (("a",), "a"): 0.0,
        (("b",), "</s>"): 1.0,
    },
    "add-k": {
        # k = 1, |V| = 4. Unigrams (c + 1) / (5 + 4).
        ((), "<unk>"): 1 / 9, ((), "a"): 3 / 9, ((), "b"): 2 / 9,
        # After <s>: a seen, (2 + 1) / (2 + 4) = 1/2; the rest share 1/2 in proportion
        # to the unigrams: bow = (1/2) / (1 - 3/9) = 3/4, so b gets 3/4 * 2/9 = 1/6.
        (("<s>",), "a"): 1 / 2, (("<s>",), "b"): 1 / 6, (("<s>",), "</s>"): 1 / 4,
        # After a: b and </s> seen, 2/6 each; bow = (1/3) / (1 - 5/9) = 3/4.
        (("a",), "b"): 1 / 3, (("a",), "</s>"): 1 / 3, (("a",), "a"): 1 / 4,
        (("a",), "<unk>"): 1 / 12,
        # After b: </s> seen, 2/5; bow = (3/5) / (1 - 3/9) = 9/10.
        (("b",), "</s>"): 2 / 5, (("b",), "a"): 3 / 10,
    },
    "witten-bell": {
        # Unigrams: N = 5 tokens, T = 3 types: (c + T/|V|) / (N + T) = (c + 3/4) / 8.
        ((), "<unk>"): 3 / 32, ((), "a"): 11 / 32, ((), "b"): 7 / 32, ((), "</s>"): 11 / 32,
        # (c(h w) + T(h) p(w)) / (c(h) + T(h)).
        (("<s>",), "a"): (2 + 11 / 32) / 3, (("<s>",), "b"): (7 / 32) / 3,
        (("a",), "b"): (1 + 2 * 7 / 32) / 4, (("a",), "</s>"): (1 + 2 * 11 / 32) / 4,
        (("b",), "</s>"): (1 + 11 / 32) / 2,
    },
    "kneser-ney": {
        # Too little data for discounts at either order: lmplz's fallback D = .5, 1, 1.5.
        # Unigram adjusted counts (distinct left words): a 1, b 1, </s> 2; sum 4.
        # gamma = (.5 + .5 + 1) / 4 = 1/2, uniform 1/4: p(a) = .5/4 + 1/8 = 1/4.
        ((), "a"): 1 / 4, ((), "b"): 1 / 4, ((), "</s>"): 1 / 4 + 1 / 8, ((), "<unk>"): 1 / 8,
        # After <s>: (2 - 1)/2 + (1/2) p(a) = 5/8; b only through the back-off.
        (("<s>",), "a"): 5 / 8, (("<s>",), "b"): 1 / 8,
        # After a: (1 - .5)/2 + (1/2) p(w).
        (("a",), "b"): 3 / 8, (("a",), "</s>"): 7 / 16, (("a",), "a"): 1 / 8,
        (("b",), "</s>"): 11 / 16,
    },
}


@pytest.mark.parametrize("method", METHODS)
def test_bigram_probabilities_by_hand(method):
    model = train(TINY, 2, method)
    for (history, word), expected in HAND[method].items():
        context = [w for w in history if w != "<s>"]
        if history == ():
            got = math.exp(model.tables.logprob[0][model.vocab.id(word)])
        else:
            got = prob(model, context, word)
        assert got == pytest.approx(expected, abs=1e-12), (history, word)


@pytest.mark.parametrize("method, expected", [
    ("mle", 1 * 1 / 2 * 1),
    ("add-k", 1 / 2 * 1 / 3 * 2 / 5),
    ("witten-bell", (2 + 11 / 32) / 3 * (1 + 2 * 7 / 32) / 4 * (1 + 11 / 32) / 2),
    ("kneser-ney", 5 / 8 * 3 / 8 * 11 / 16),
])
def test_sentence_probability_by_hand(method, expected):
    assert sentence_prob(train(TINY, 2, method), ["a", "b"]) == pytest.approx(expected, rel=1e-12)


def test_mle_gives_zero_to_an_unseen_word_and_backs_off_from_unseen_histories():
    model = train([["a", "b", "c"], ["b", "c", "a"]], 3, "mle")
    assert sentence_prob(model, ["c"]) == 0.0   # c never follows <s>: probability zero
    # The history (c, b) is unseen: p(c | c b) backs off to p(c | b) = 1.
    assert prob(model, ["a", "b", "c", "b"], "c") == pytest.approx(1.0)


def test_add_k_uses_k():
    model = train(TINY, 1, "add-k", add_k=0.5)
    # (c + k) / (N + k |V|) = (2 + .5) / (5 + 2).
    assert math.exp(model.tables.logprob[0][model.vocab.id("a")]) == pytest.approx(2.5 / 7)


def test_kn_discounts_from_counts_of_counts():
    # t1 = 4, t2 = 2, t3 = 1, t4 = 1: Y = 4 / (4 + 4) = 1/2;
    # D1 = 1 - 2 Y t2/t1 = 1/2, D2 = 2 - 3 Y t3/t2 = 5/4, D3 = 3 - 4 Y t4/t3 = 1.
    discounts, problem = kn_discounts(np.array([1, 1, 1, 1, 2, 2, 3, 4, 7]))
    assert problem is None
    assert discounts.tolist() == pytest.approx([0.5, 1.25, 1.0])


@pytest.mark.parametrize("adjusted, problem", [
    ([1, 1, 2], "no n-grams with adjusted count 3"),
    ([2, 2, 3, 3], "no n-grams with adjusted count 1"),
    # t1 = 10, t2 = 1, t3 = 10: Y = 10/12, D2 = 2 - 3 Y t3/t2 = -23.
    ([1] * 10 + [2] + [3] * 10, "discount D2 = -23.0000 is outside [0, 2]"),
])
def test_kn_discounts_report_why_they_cannot_be_estimated(adjusted, problem):
    assert kn_discounts(np.array(adjusted)) == (None, problem)


def test_kn_fallback_is_recorded_per_order():
    model = train([["a", "b"], ["a", "b"], ["a", "b"]], 3, "kneser-ney")
    fallback = model.tables.notes["discount_fallback"]
    assert set(fallback) == {"1", "2", "3"}
    assert model.tables.notes["discounts"]["3"] == [0.5, 1.0, 1.5]


def test_prune_moves_mass_to_the_backoff_and_still_sums_to_one():
    sentences = [s.split() for s in ["a b c", "a b d", "a b c", "b c d", "c d a", "a c b"]]
    full = train(sentences, 3, "kneser-ney")
    pruned = train(sentences, 3, "kneser-ney", prune=[0, 1])
    assert pruned.tables.keys[1].size == full.tables.keys[1].size
    assert pruned.tables.keys[2].size < full.tables.keys[2].size
    kept = full.tables.keys[2].size - pruned.tables.keys[2].size
    assert kept > 0
    for history in ([], ["a"], ["a", "b"], ["b", "c"], ["c", "a"]):
        total = sum(prob(pruned, history, w) for w in pruned.vocab.words if w != "<s>")
        assert total == pytest.approx(1.0, abs=1e-12)


# -- every distribution sums to one --------------------------------------------------------

corpora = st.lists(st.lists(st.sampled_from("abcde"), min_size=0, max_size=7),
                   min_size=1, max_size=8).filter(lambda s: any(s))


@settings(max_examples=60, deadline=None)
@given(sentences=corpora, order=st.integers(1, 4), method=st.sampled_from(METHODS),
       history=st.lists(st.sampled_from("abcdez"), max_size=5))
def test_every_next_token_distribution_sums_to_one(sentences, order, method, history):
    model = train(sentences, order, method)
    state = model.initial_state(1)
    for word in history + [None]:
        total = np.exp(model.log_probs(state)[0]).sum()
        assert abs(total - 1.0) < 1e-9
        if word is not None:
            state = model.advance(state, np.array([model.vocab.id(word)]))


@settings(max_examples=40, deadline=None)
@given(sentences=corpora, order=st.integers(1, 4), method=st.sampled_from(METHODS),
       test=st.lists(st.sampled_from("abcz"), max_size=6))
def test_fast_scoring_equals_walking_the_distributions(sentences, order, method, test):
    """``score`` (array lookups) agrees with ``log_probs`` + ``advance`` token by token."""
    model = train(sentences, order, method)
    encoded = model.vocab.encode([test])
    fast = model.score(encoded.ids, encoded.lengths).logprob
    slow = super(NgramModel, model).score(encoded.ids, encoded.lengths).logprob
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=0)


# A pruned model, as SRILM writes them: the trigram "<s> a b" is kept while its suffix
# "a b" is pruned, so the longest match is not always found by shortening the history.
PRUNED_ARPA = """\\data\\
ngram 1=5
ngram 2=2
ngram 3=1

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.5\t</s>
-0.6\ta\t-0.2
-0.7\tb\t-0.1

\\2-grams:
-0.4\t<s> a\t-0.25
-0.3\ta </s>

\\3-grams:
-0.1\t<s> a b

\\end\\
"""


def test_scoring_a_pruned_model_by_hand(tmp_path):
    from rnnlm_cli.ngram.arpa import read_arpa
    path = tmp_path / "pruned.arpa"
    path.write_text(PRUNED_ARPA, encoding="utf-8")
    model = read_arpa(str(path))
    encoded = model.vocab.encode([["a", "b"], ["b", "a"], []])
    scores = model.score(encoded.ids, encoded.lengths)
    log10 = scores.logprob / math.log(10)
    # a|<s>: bigram. b|<s> a: the trigram. </s>|a b: no "a b </s>", no "b </s>": the
    # unigram plus bow(b); the context "a b" is not in the model (bow 1).
    # b|<s>: p(b) bow(<s>). a|<s> b: p(a) bow(b) ("<s> b" absent). </s>|b a: "a </s>".
    # </s>|<s>: p(</s>) bow(<s>).
    expected = [-0.4, -0.1, -0.5 - 0.1, -0.7 - 0.3, -0.6 - 0.1, -0.3, -0.5 - 0.3]
    np.testing.assert_allclose(log10, expected, rtol=0, atol=1e-6)
    assert scores.order.tolist() == [2, 3, 1, 1, 1, 2, 1]
    slow = super(NgramModel, model).score(encoded.ids, encoded.lengths).logprob
    np.testing.assert_allclose(scores.logprob, slow, rtol=1e-12, atol=0)


def stored_ngrams(model, n):
    """The word tuples of the order-n table, decoded from the trie keys."""
    words = [(w,) for w in model.vocab.words]
    v = np.uint64(len(model.vocab))
    for k in range(2, n + 1):
        keys = model.tables.keys[k - 1]
        words = [words[int(p)] + (model.vocab.words[int(w)],)
                 for p, w in zip(keys // v, keys % v)]
    return words


@settings(max_examples=30, deadline=None)
@given(sentences=corpora, order=st.integers(2, 4), method=st.sampled_from(METHODS))
def test_the_distribution_after_every_stored_context_sums_to_one(sentences, order, method):
    model = train(sentences, order, method)
    for n in range(1, order):
        for context in stored_ngrams(model, n):
            if "</s>" in context:
                continue
            state = model.initial_state(1)
            for word in context:
                if word != "<s>":
                    state = model.advance(state, np.array([model.vocab.id(word)]))
            total = np.exp(model.log_probs(state)[0]).sum()
            assert abs(total - 1.0) < 1e-9, context


@pytest.mark.parametrize("high", [50, 2 ** 62])      # packed with positions, and argsort
def test_sorted_distinct(high):
    queries = np.random.default_rng(0).integers(0, 40, 1000).astype(np.uint64) * np.uint64(
        high // 40)
    order, distinct, repeats = sorted_distinct(queries)
    assert np.array_equal(queries[order], np.repeat(distinct, repeats))
    assert np.array_equal(distinct, np.unique(queries)) and repeats.sum() == queries.size
    assert np.array_equal(np.sort(order), np.arange(queries.size))
    empty = sorted_distinct(np.zeros(0, dtype=np.uint64))
    assert all(part.size == 0 for part in empty)
