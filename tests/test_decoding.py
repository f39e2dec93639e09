"""Sampling and beam search (``decoding.py``) over any ``LanguageModel``.

Every model is built through ``MODEL_BUILDERS``: the properties that must hold for all
of them (next-token distributions sum to one, beam search is exact when the beam spans
the vocabulary, greedy is temperature 0, top-k/top-p stay in their sets, seeds
reproduce) run once per entry, n-gram and RNN models alike. Sampling
frequencies are checked against ``MarkovLM``, a hand-built model whose distribution is
known exactly.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from conftest import CORPORA
from rnnlm_cli import decoding
from rnnlm_cli.decoding import SamplingConfig, encode_prompt
from rnnlm_cli.errors import OptionError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.ngram.training import NgramConfig, train_ngram
from rnnlm_cli.tokenizer import SPACE_SYMBOL, Tokenizer, TokenizerConfig
from rnnlm_cli.vocab import Vocabulary

EN = CORPORA / "en" / "sentences.txt"
SMALL = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog met on the mat .",
    "the dog likes the cat .",
    "<unk> sat on a <unk> .",
]


# -- models -----------------------------------------------------------------------------------

def ngram(lines, order=3, smoothing="kneser-ney", kind="whitespace", level="word"):
    tokenizer = Tokenizer(TokenizerConfig(kind, level))
    return train_ngram(tokenizer.tokenize_lines(lines), NgramConfig(order, smoothing),
                       "test", tokenizer.config.to_dict())


def en_lines():
    return EN.read_text(encoding="utf-8").splitlines()


class MarkovLM(LanguageModel):
    """A first-order Markov chain over ``a`` and ``b`` with known probabilities: the state
    is the last token read (``(B,)`` ids)."""

    WORDS = ["<unk>", "<s>", "</s>", "a", "b"]
    #              <unk>  <s>   </s>  a     b       after:
    P = np.array([[0.10, 0.0, 0.20, 0.40, 0.30],   # <unk>
                  [0.05, 0.0, 0.05, 0.60, 0.30],   # <s>
                  [0.20, 0.0, 0.20, 0.30, 0.30],   # </s> (never read)
                  [0.10, 0.0, 0.30, 0.10, 0.50],   # a
                  [0.00, 0.0, 0.50, 0.25, 0.25]])  # b

    def __init__(self):
        self.vocab = Vocabulary(self.WORDS)
        self.metadata = {"tokenizer": TokenizerConfig("whitespace").to_dict()}

    @property
    def kind(self):
        return "markov"

    def initial_state(self, batch):
        return np.full(batch, self.vocab.bos_id)

    def advance(self, state, token_ids):
        return np.asarray(token_ids).copy()

    def log_probs(self, state):
        with np.errstate(divide="ignore"):
            return np.log(self.P[state])


def random_rnn(lines, cell, layers, level="word", hidden=16, seed=0):
    """An untrained recurrent model with random normal weights (peaked distributions,
    unlike a fresh initialisation): decoding must hold for any weights."""
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.model import RnnModel, model_metadata
    from rnnlm_cli.rnn.network import RnnNetwork
    tokenizer = Tokenizer(TokenizerConfig("regex", level))
    vocab, _ = Vocabulary.build(tokenizer.tokenize_lines(lines))
    config = RnnConfig(cell=cell, layers=layers, hidden=hidden)
    network = RnnNetwork(config, len(vocab), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for param in network.params.values():
        param[...] = rng.normal(0.0, 1.0, param.shape)
    return RnnModel(vocab, network, model_metadata(config, tokenizer.config.to_dict(), {}))


MODEL_BUILDERS = {
    "ngram-kn3-en": lambda: ngram(en_lines(), 3, kind="regex"),
    "ngram-wb4-small": lambda: ngram(SMALL, 4, "witten-bell"),
    "ngram-kn5-char": lambda: ngram(en_lines()[:60], 5, kind="regex", level="char"),
    "ngram-mle2-small": lambda: ngram(SMALL, 2, "mle"),
    "ngram-addk1-small": lambda: ngram(SMALL, 1, "add-k"),
    "markov": MarkovLM,
    "rnn-lstm2-small": lambda: random_rnn(SMALL, "lstm", 2),   # a state of four arrays
    "rnn-gru-char": lambda: random_rnn(en_lines()[:60], "gru", 1, level="char"),
}


@pytest.fixture(scope="module", params=sorted(MODEL_BUILDERS))
def model(request):
    return MODEL_BUILDERS[request.param]()


@pytest.fixture(scope="module")
def en_model():
    return MODEL_BUILDERS["ngram-kn3-en"]()


def sample(*args):
    return list(decoding.sample(*args))


def prompt(model, text=""):
    return encode_prompt(model, model.tokenizer, text)


def prefixes(model):
    """A few prefixes of the model's own text: empty, in-vocabulary, unknown words."""
    words = [w for w in model.vocab.words[3:8]]
    level = model.tokenizer.config.level
    joiner = "" if level == "char" else " "
    return ["", joiner.join(words[:1]), joiner.join(words[:3]), "zzqx" if level == "word"
            else "\u00e6\u00f8"]


def state_after(model, ids):
    state = model.initial_state(1)
    for token_id in ids:
        state = model.advance(state, np.array([token_id]))
    return state


def distribution(model, ids):
    """The model's next-token log-probabilities after ``<s> ids``."""
    return np.asarray(model.log_probs(state_after(model, ids)), dtype=np.float64)[0]


# -- the next-token distribution ----------------------------------------------------------------

def test_top_0_is_the_whole_next_token_distribution(model):
    for text in prefixes(model):
        found = decoding.complete(model, prompt(model, text), top=0, max_tokens=1)
        probs = np.exp([c.logprob for c in found])
        assert abs(probs.sum() - 1) < 1e-6, text
        assert np.all(np.diff([c.logprob for c in found]) <= 0)
        assert all(len(c.tokens) == 1 and c.tokens[0] != "<s>" for c in found)
        assert len({c.tokens[0] for c in found}) == len(found)


def test_batched_log_probs_equal_row_by_row_and_score(model):
    """The contract decoding relies on: a row's distribution does not depend on the
    other rows of the batch, and agrees with ``score`` on whole sentences."""
    rng = np.random.default_rng(0)
    size = len(model.vocab)
    ids = rng.integers(3, size, (16, 6)) if size > 3 else np.zeros((16, 6), dtype=int)
    ids[::3, 2] = model.vocab.unk_id
    state = model.initial_state(16)
    for t in range(ids.shape[1]):
        batch = np.asarray(model.log_probs(state))
        for row in (0, 5, 15):
            alone = np.asarray(model.log_probs(model.select(state, np.array([row]))))[0]
            # float32 backends may round a row differently in another batch size
            np.testing.assert_allclose(batch[row], alone, rtol=0, atol=1e-5)
        state = model.advance(state, ids[:, t])
    sentence = ids[1, :4]
    expected = [distribution(model, sentence[:i].tolist())[w]
                for i, w in enumerate([*sentence.tolist(), model.vocab.eos_id])]
    scores = model.score(sentence, np.array([sentence.size])).logprob
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


# -- beam search --------------------------------------------------------------------------------

def exhaustive(model, prompt_ids, max_tokens=2):
    """Every continuation (exactly ``max_tokens`` tokens, or ending earlier at </s>) with
    its log-probability, by enumeration."""
    eos, bos = model.vocab.eos_id, model.vocab.bos_id
    out = {}
    first = distribution(model, prompt_ids)
    for v1, lp1 in enumerate(first):
        if v1 == bos or lp1 == -np.inf:
            continue
        if v1 == eos or max_tokens == 1:
            out[(v1,)] = lp1
            continue
        second = distribution(model, [*prompt_ids, v1])
        for v2, lp2 in enumerate(second):
            if v2 != bos and lp2 > -np.inf:
                out[(v1, v2)] = lp1 + lp2
    return out


def test_beam_as_wide_as_the_vocabulary_is_exhaustive(model):
    vocab = model.vocab
    for text in prefixes(model)[:3]:
        p = prompt(model, text)
        truth = exhaustive(model, p.ids.tolist())
        first = distribution(model, p.ids.tolist())
        assert abs(np.exp(list(truth.values())).sum() - 1) < 1e-6
        best = sorted(truth.values(), reverse=True)[:10]
        found = decoding.complete(model, p, top=10, max_tokens=2, beam=len(vocab))
        assert np.allclose([c.logprob for c in found], best, rtol=0, atol=1e-5)
        for c in found:
            ids = tuple(vocab.index[t] for t in c.tokens)
            assert truth[ids] == pytest.approx(c.logprob, abs=1e-5)
            assert c.token_logprobs[0] == pytest.approx(first[ids[0]], abs=1e-5)


def test_completions_end_at_eos_or_run_max_tokens(en_model):
    found = decoding.complete(en_model, prompt(en_model, "The market"), top=20, max_tokens=3)
    assert len(found) == 20
    assert any(c.tokens[-1] == "</s>" for c in found)
    for c in found:
        assert c.tokens[-1] == "</s>" or len(c.tokens) == 3
        assert "</s>" not in c.tokens[:-1]
        assert c.text == en_model.tokenizer.detokenize(c.tokens)
        assert c.logprob == pytest.approx(sum(c.token_logprobs))
    assert [c.logprob for c in found] == sorted((c.logprob for c in found), reverse=True)


def test_wider_beam_never_finds_worse(en_model):
    p = prompt(en_model, "The train")
    narrow = decoding.complete(en_model, p, top=5, max_tokens=4, beam=5)
    wide = decoding.complete(en_model, p, top=5, max_tokens=4, beam=50)
    assert all(w >= n - 1e-12 for w, n in zip([c.logprob for c in wide],
                                              [c.logprob for c in narrow]))


def test_complete_rejects_bad_options(en_model):
    p = prompt(en_model, "")
    with pytest.raises(OptionError):
        decoding.complete(en_model, p, top=0, max_tokens=2)
    with pytest.raises(OptionError):
        decoding.complete(en_model, p, top=-1)
    with pytest.raises(OptionError):
        decoding.complete(en_model, p, beam=0)


# -- sampling: known frequencies ----------------------------------------------------------------

def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with integer ``df`` degrees of freedom (closed forms)."""
    h = x / 2
    if df % 2 == 0:
        return math.exp(-h) * sum(h ** i / math.factorial(i) for i in range(df // 2))
    return math.erfc(math.sqrt(h)) + math.exp(-h) * sum(
        h ** (i - 0.5) / math.gamma(i + 0.5) for i in range(1, (df + 1) // 2))


def test_chi2_sf_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7):
        for x in (0.5, 3.0, 11.0):
            assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9)


def assert_frequencies_match(counts: Counter, expected: dict, n: int):
    """Pearson's chi-square test at significance 0.001; tokens of probability 0 must not
    appear at all."""
    assert set(counts) <= {t for t, p in expected.items() if p > 0}, counts
    support = [t for t, p in expected.items() if p > 0]
    statistic = sum((counts[t] - n * expected[t]) ** 2 / (n * expected[t]) for t in support)
    assert chi2_sf(statistic, len(support) - 1) > 0.001, (statistic, counts, expected)


def reshaped(probs: np.ndarray, temperature=1.0, top_k=0, top_p=1.0) -> np.ndarray:
    """The distribution sampling should follow, computed the plain way."""
    p = np.where(probs > 0, probs ** (1 / temperature), 0.0)
    p = p / p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.ones_like(p, dtype=bool)
    if top_k:
        keep[order[top_k:]] = False
    p = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
    if top_p < 1:
        before = np.cumsum(p[order]) - p[order]
        keep[order[before >= top_p]] = False
    p = np.where(keep, p, 0)
    return p / p.sum()


@pytest.mark.parametrize("options", [
    {}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_k": 2}, {"top_p": 0.75},
    {"top_k": 3, "temperature": 0.7, "top_p": 0.9},
])
def test_sampling_frequencies_match_the_distribution(options):
    # A fixed seed (a correct sampler fails at 0.001 for one seed in a thousand; over 40
    # seeds the p-values of these tests spread evenly over (0, 1)).
    model, n = MarkovLM(), 20000
    rng = np.random.default_rng(0)
    samples = sample(model, prompt(model), n, SamplingConfig(max_tokens=2, **options),
                              rng)
    words = model.WORDS
    first = Counter(s.tokens[0] for s in samples)
    expected = reshaped(model.P[1], **options)
    assert_frequencies_match(first, dict(zip(words, expected)), n)
    after_a = Counter(s.tokens[1] for s in samples if s.tokens[0] == "a")
    expected = reshaped(model.P[3], **options)
    assert_frequencies_match(after_a, dict(zip(words, expected)), sum(after_a.values()))


def test_no_unk_samples_from_the_rest():
    model, n = MarkovLM(), 20000
    samples = sample(model, prompt(model), n, SamplingConfig(max_tokens=1, no_unk=True),
                              np.random.default_rng(7))
    p = model.P[1].copy()
    p[0] = 0
    assert_frequencies_match(Counter(s.tokens[0] for s in samples),
                             dict(zip(model.WORDS, p / p.sum())), n)


def test_samples_report_the_models_own_log_probabilities():
    model = MarkovLM()
    samples = sample(model, prompt(model), 200,
                              SamplingConfig(max_tokens=6, temperature=3.0, top_k=2),
                              np.random.default_rng(3))
    for s in samples:
        ids = [model.vocab.index[t] for t in s.tokens]
        expected = np.log(model.P[[model.vocab.bos_id, *ids[:-1]], ids])
        np.testing.assert_allclose(s.token_logprobs, expected)
        assert s.logprob == pytest.approx(expected.sum())


# -- sampling: properties over every model -----------------------------------------------------

def greedy(model, prompt_ids, max_tokens):
    ids = []
    for _ in range(max_tokens):
        lp = distribution(model, [*prompt_ids, *ids])
        lp[model.vocab.bos_id] = -np.inf
        ids.append(int(np.argmax(lp)))
        if ids[-1] == model.vocab.eos_id:
            break
    return ids


def test_temperature_zero_is_greedy(model):
    for text in prefixes(model)[:3]:
        p = prompt(model, text)
        samples = sample(model, p, 4, SamplingConfig(max_tokens=12, temperature=0),
                                  np.random.default_rng(0))
        expected = model.vocab.decode(greedy(model, p.ids.tolist(), 12))
        assert all(s.tokens == expected for s in samples)


def replay_steps(model, p, sample):
    """(distribution, emitted id) at each step of a sample."""
    ids = p.ids.tolist()
    for token in sample.tokens:
        token_id = model.vocab.index[token]
        yield distribution(model, ids), token_id
        ids.append(token_id)


@pytest.mark.parametrize("top_k", [1, 3])
def test_top_k_never_leaves_the_k_most_probable(model, top_k):
    p = prompt(model, prefixes(model)[1])
    samples = sample(model, p, 50, SamplingConfig(max_tokens=15, top_k=top_k),
                              np.random.default_rng(5))
    for s in samples:
        for lp, token_id in replay_steps(model, p, s):
            lp[model.vocab.bos_id] = -np.inf
            # the k-th largest log-probability; ties with it are allowed too
            kth = np.sort(lp)[::-1][top_k - 1]
            assert lp[token_id] >= kth


@pytest.mark.parametrize("top_p", [0.3, 0.75])
def test_top_p_never_leaves_the_nucleus(model, top_p):
    p = prompt(model, prefixes(model)[1])
    samples = sample(model, p, 50, SamplingConfig(max_tokens=15, top_p=top_p),
                              np.random.default_rng(6))
    for s in samples:
        for lp, token_id in replay_steps(model, p, s):
            probs = np.exp(lp)
            probs[model.vocab.bos_id] = 0
            above = probs[probs > probs[token_id]].sum()
            assert above < top_p + 1e-9


def test_same_seed_same_text_other_seed_other_text(model):
    config = SamplingConfig(max_tokens=20, temperature=1.2)
    p = prompt(model)

    def texts(seed):
        return [(s.text, s.tokens) for s in
                sample(model, p, 8, config, np.random.default_rng(seed))]
    assert texts(11) == texts(11)
    assert texts(11) != texts(12)


def test_samples_stop_at_eos_or_max_tokens_and_never_emit_bos(model):
    samples = sample(model, prompt(model), 100, SamplingConfig(max_tokens=7),
                              np.random.default_rng(8))
    for s in samples:
        assert "<s>" not in s.tokens
        assert "</s>" not in s.tokens[:-1]
        assert s.tokens[-1] == "</s>" or len(s.tokens) == 7
        assert len(s.token_logprobs) == len(s.tokens)
        assert all(lp <= 0 for lp in s.token_logprobs)


def test_no_unk_never_emits_unk():
    model = ngram(SMALL * 3, 3)
    p = prompt(model, "the")
    rng = np.random.default_rng(2)
    free = sample(model, p, 300, SamplingConfig(max_tokens=10), rng)
    assert any("<unk>" in s.tokens for s in free)  # the test has teeth
    for options in ({}, {"temperature": 3.0}, {"top_p": 0.99}, {"top_k": 4}):
        config = SamplingConfig(max_tokens=10, no_unk=True, **options)
        assert not any("<unk>" in s.tokens for s in sample(model, p, 300, config, rng))


def test_no_unk_after_a_context_only_unk_follows_ends_the_sentence():
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.array([[1.0, 0, 0, 0], [0.5, 0, 0.25, 0.25]]))
        logits = decoding.sampling_logits(log_probs, SamplingConfig(no_unk=True), 0, 2)
    assert logits[0].tolist() == [-np.inf, -np.inf, 0.0, -np.inf]
    assert np.isneginf(logits[1, 0])


def test_top_k_keeps_exactly_k_on_ties():
    log_probs = np.log(np.full((3, 10), 0.1))
    logits = decoding.sampling_logits(log_probs, SamplingConfig(top_k=4), 0, 2)
    assert (np.isfinite(logits).sum(axis=1) == 4).all()


def test_char_model_joins_characters():
    model = MODEL_BUILDERS["ngram-kn5-char"]()
    p = prompt(model, "The ")
    assert p.tokens[-1] == SPACE_SYMBOL
    for s in sample(model, p, 20, SamplingConfig(max_tokens=40),
                             np.random.default_rng(4)):
        words = [t for t in s.tokens if t != "</s>"]
        assert s.text == "The " + "".join(words).replace(SPACE_SYMBOL, " ")
        assert SPACE_SYMBOL not in s.text


def test_word_model_puts_no_space_before_punctuation(en_model):
    samples = sample(en_model, prompt(en_model, "The market"), 30,
                              SamplingConfig(max_tokens=30), np.random.default_rng(9))
    assert any(s.tokens[-2:] == [".", "</s>"] for s in samples)
    for s in samples:
        assert s.text.startswith("The market")
        assert " ." not in s.text and " ," not in s.text


def test_large_batches_are_cut_to_fit(monkeypatch):
    model = MarkovLM()
    monkeypatch.setattr(decoding, "BATCH_ELEMENTS", 3 * len(model.vocab))
    samples = sample(model, prompt(model), 10, SamplingConfig(max_tokens=4),
                              np.random.default_rng(0))
    assert len(samples) == 10


def test_sampling_config_is_validated():
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1},
                {"max_tokens": 0}):
        with pytest.raises(OptionError):
            SamplingConfig(**bad).validate()


# -- prompts ----------------------------------------------------------------------------------

def test_prompt_unknown_words_read_as_unk(en_model):
    p = prompt(en_model, "The zebra qux sat")
    assert p.tokens == ["The", "zebra", "qux", "sat"]
    assert p.unknown == ["zebra", "qux"]
    assert p.ids[1] == p.ids[2] == en_model.vocab.unk_id
    assert p.warning("'x'") == "Warning: 'x': not in the vocabulary, read as <unk>: zebra qux"
    assert prompt(en_model, "The train").warning("'x'") is None


def test_prompt_markers_dropped_and_empty_is_start(en_model):
    assert prompt(en_model, "<s> The </s>").tokens == ["The"]
    assert prompt(en_model, "").ids.size == 0
    assert prompt(en_model, "   ").ids.size == 0
