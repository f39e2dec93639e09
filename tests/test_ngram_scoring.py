"""ngram/model.py's fast scoring (``NgramModel.score``: all positions at once, order by
order, through the trie) must give every token exactly, bit for bit, what the ARPA
back-off rule gives when each token is scored on its own:

    log p(w | h) = log p(h_{L-1} w) + sum_{k=L}^{|h|} log bow(h_k)

with ``L`` the length of the longest n-gram ending in ``w`` that the model holds, ``h_k``
the last k words of the history (``<s>`` included) and a missing ``h_k`` adding nothing,
the back-offs added in order of rising k. The tables here are random tries: any n-gram
whose prefix is there may be there, whether or not its suffixes are (pruned models,
foreign ARPA files), with random values.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.smoothing import BackoffTables
from rnnlm_cli.vocab import Vocabulary

BOS, EOS = Vocabulary.bos_id, Vocabulary.eos_id


def random_model(seed: int, words: int, order: int, density: float) -> NgramModel:
    """A model of ``words`` words whose order-n table holds each continuation of each
    (n-1)-gram with probability ``density``; log-probabilities in [-8, 0], back-offs in
    [-3, 1]."""
    rng = np.random.default_rng(seed)
    vocab = Vocabulary(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(3, words)])
    keys = [np.arange(words, dtype=np.uint64)]
    for _ in range(2, order + 1):
        every = np.arange(keys[-1].size * words, dtype=np.uint64)     # row * |V| + word
        keys.append(every[rng.random(every.size) < density])
    logprob = [rng.uniform(-8, 0, k.size) for k in keys]
    backoff = [rng.uniform(-3, 1, k.size) for k in keys[:-1]]
    return NgramModel(vocab, BackoffTables(order, words, keys, logprob, backoff), {})


def row(model: NgramModel, ngram) -> int:
    """The row of an n-gram (word ids) in its table, found from its first word by a
    search of each longer prefix's key; -1 if it is not in the model."""
    tables, v, r = model.tables, len(model.vocab), ngram[0]
    for n, word in enumerate(ngram[1:], start=2):
        keys, key = tables.keys[n - 1], r * v + word
        r = int(np.searchsorted(keys, np.uint64(key)))
        if r == keys.size or int(keys[r]) != key:
            return -1
    return r


def scored_one_by_one(model: NgramModel, sentences):
    """Each token's log-probability and the order that gave it, by the rule above."""
    tables, top = model.tables, model.order
    logprob, order_used = [], []
    for sentence in sentences:
        tokens = [BOS] + list(sentence) + [EOS]
        for t in range(1, len(tokens)):
            history, word = tokens[max(0, t - top + 1):t], tokens[t]
            longest = max(n for n in range(1, len(history) + 2)
                          if row(model, history[len(history) - n + 1:] + [word]) >= 0)
            value = float(tables.logprob[longest - 1][
                row(model, history[len(history) - longest + 1:] + [word])])
            for k in range(longest, len(history) + 1):
                context = row(model, history[len(history) - k:])
                if context >= 0:
                    value += float(tables.backoff[k - 1][context])
            logprob.append(value)
            order_used.append(longest)
    return logprob, order_used


sentences = st.lists(st.lists(st.integers(0, 7).filter(lambda w: w not in (BOS, EOS)),
                              max_size=9), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), order=st.integers(1, 5),
       density=st.sampled_from([0.15, 0.4, 0.8, 1.0]), text=sentences)
def test_fast_scoring_is_the_rule_token_by_token(seed, order, density, text):
    model = random_model(seed, 8, order, density)
    ids = np.array([w for s in text for w in s], dtype=np.int32)
    lengths = np.array([len(s) for s in text], dtype=np.int64)
    scores = model.score(ids, lengths)
    logprob, order_used = scored_one_by_one(model, text)
    assert scores.logprob.tolist() == logprob          # the same floats, not just close
    assert scores.order.tolist() == order_used
    assert scores.sentence_ends.tolist() == np.cumsum(lengths + 1).tolist()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), order=st.integers(2, 5), text=sentences)
def test_wide_rows_and_words_score_the_same(seed, order, text):
    """Pending rows are int32 and words uint32 unless a table or the vocabulary is too
    large for them; the wide types give the same scores."""
    model = random_model(seed, 8, order, 0.5)
    ids = np.array([w for s in text for w in s], dtype=np.int64)
    lengths = np.array([len(s) for s in text])
    narrow = model.score(ids, lengths)
    model._row_dtype, model._word_dtype = np.int64, np.uint64
    wide = model.score(ids, lengths)
    assert np.array_equal(narrow.logprob, wide.logprob)
    assert np.array_equal(narrow.order, wide.order)


def test_a_model_of_one_order_and_an_empty_text():
    model = random_model(0, 6, 1, 1.0)
    scores = model.score(np.array([3, 0, 5]), np.array([2, 0, 1]))
    expected = model.tables.logprob[0][[3, 0, EOS, EOS, 5, EOS]]
    assert scores.logprob.tolist() == expected.tolist()
    assert scores.order.tolist() == [1] * 6
    empty = random_model(0, 6, 3, 0.5).score(np.zeros(0, dtype=np.int32), np.zeros(0))
    assert empty.logprob.size == 0 and empty.sentence_ends.size == 0
