"""Mixtures (issue 14): ``P(w|h) = sum_i lambda_i P_i(w|h)`` over any models, through the
library and the CLI. The probabilities are checked against the components' own scores,
computed independently; EM against its guarantee (the held-out perplexity never rises)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import CORPORA
from rnnlm_cli.mixture import MixtureModel, check_weights, tune_weights
from rnnlm_cli.models import open_model
from test_cli_errors import assert_fails, assert_ok, run, write

EN = CORPORA / "en" / "sentences.txt"
LINES = EN.read_text(encoding="utf-8").splitlines()
TRAIN, HELDOUT, TEST = LINES[:400], LINES[400:440], LINES[440:]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A Kneser-Ney trigram, a Witten-Bell bigram (same vocabulary), an RNN over the words
    seen twice (a smaller vocabulary), and a whitespace-tokenized model."""
    work = tmp_path_factory.mktemp("mixture")
    for name, lines in (("train", TRAIN), ("heldout", HELDOUT), ("test", TEST)):
        write(work / f"{name}.txt", "\n".join(lines) + "\n")
    assert_ok(run("train-ngram", work / "train.txt", "-o", work / "kn.npz"))
    assert_ok(run("train-ngram", work / "train.txt", "-o", work / "wb.npz", "--order", "2",
                  "--smoothing", "witten-bell"))
    assert_ok(run("train-rnn", work / "train.txt", "-o", work / "rnn.npz", "--hidden", "8",
                  "--epochs", "1", "--batch-size", "8", "--bptt", "10", "--min-count", "2",
                  "--valid", work / "heldout.txt"))
    assert_ok(run("train-ngram", work / "train.txt", "-o", work / "ws.npz",
                  "--tokenizer", "whitespace"))
    return work


def per_token(folder, *args) -> list:
    """``(word, log10prob)`` of every token of test.txt, from ``perplexity --per-token``."""
    result = run("perplexity", *args, folder / "test.txt", "--per-token")
    assert_ok(result)
    rows = []
    for line in result.stdout.splitlines():
        if "\tTotal: " not in line:
            continue
        for field in line.split("\tTotal: ")[0].split("\t"):
            word_id, _, logprob = field.rsplit(" ", 2)
            rows.append((word_id.rsplit("=", 1)[0], float(logprob)))
    return rows


# -- the distribution ---------------------------------------------------------------------

@pytest.mark.parametrize("others", [["wb.npz"], ["rnn.npz"], ["wb.npz", "rnn.npz"]])
def test_complete_top_0_of_a_mixture_sums_to_one(folder, others):
    mix = [a for name in others for a in ("--mix", folder / name)]
    for prefix in ("", "The", "The market opens", "zebra unknown"):
        result = run("complete", folder / "kn.npz", *mix, prefix, "--top", "0")
        assert_ok(result)
        total = sum(10 ** float(line.rsplit("\t", 1)[1]) for line in result.stdout.splitlines())
        assert total == pytest.approx(1.0, abs=1e-4)   # (6 printed decimals per token)


def test_log_probs_rows_sum_to_one_in_every_state(folder):
    mixture = MixtureModel([open_model(str(folder / n)) for n in ("kn.npz", "rnn.npz")],
                           [0.3, 0.7])
    state = mixture.initial_state(3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        log_probs = mixture.log_probs(state)
        assert log_probs.shape == (3, len(mixture.vocab))
        np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-9)
        assert np.isneginf(log_probs[:, mixture.vocab.bos_id]).all()
        state = mixture.advance(state, rng.integers(3, len(mixture.vocab), size=3))


def test_the_union_vocabulary_and_the_unk_share(folder):
    kn, rnn = open_model(str(folder / "kn.npz")), open_model(str(folder / "rnn.npz"))
    mixture = MixtureModel([kn, rnn], [0.5, 0.5])
    assert mixture.vocab.words[:len(kn.vocab)] == kn.vocab.words
    assert set(mixture.vocab.words) == set(kn.vocab.words) | set(rnn.vocab.words)
    lacking = [w for w in mixture.vocab.words if w not in rnn.vocab.index]
    assert lacking   # the RNN keeps only the words seen twice
    rnn_alone = rnn.log_probs(rnn.initial_state(1))[0]
    kn_alone = kn.log_probs(kn.initial_state(1))[0]
    mixed = mixture.log_probs(mixture.initial_state(1))[0]
    share = rnn_alone[rnn.vocab.unk_id] - math.log(len(lacking) + 1)   # <unk> itself too
    for word in (lacking[0], lacking[-1], "<unk>", "The"):
        i = mixture.vocab.id(word)
        rnn_p = rnn_alone[rnn.vocab.id(word)] if word in rnn.vocab.index and word != "<unk>" \
            else share
        expected = math.log(0.5 * math.exp(kn_alone[kn.vocab.id(word)]) + 0.5 * math.exp(rnn_p))
        assert mixed[i] == pytest.approx(expected, rel=1e-9), word


# -- scores against the components' own ------------------------------------------------------

def test_per_token_scores_are_the_weighted_sum_of_the_components(folder):
    weights = (0.3, 0.7)
    kn, wb = per_token(folder, folder / "kn.npz"), per_token(folder, folder / "wb.npz")
    mixed = per_token(folder, folder / "kn.npz", "--mix", folder / "wb.npz",
                      "--weights", "0.3,0.7")
    assert [w for w, _ in mixed] == [w for w, _ in kn] == [w for w, _ in wb]
    for (_, m), (_, a), (_, b) in zip(mixed, kn, wb):
        expected = math.log10(weights[0] * 10 ** a + weights[1] * 10 ** b)
        assert m == pytest.approx(expected, abs=2e-5)   # (6 significant digits printed)


def test_different_vocabularies_share_unk_mass_in_per_token_scores(folder):
    kn, rnn = open_model(str(folder / "kn.npz")), open_model(str(folder / "rnn.npz"))
    mixture = MixtureModel([kn, rnn], [0.6, 0.4])
    lacking = sum(1 for w in mixture.vocab.words if w not in rnn.vocab.index)
    kn_rows = per_token(folder, folder / "kn.npz")
    rnn_rows = per_token(folder, folder / "rnn.npz")
    mixed = per_token(folder, folder / "kn.npz", "--mix", folder / "rnn.npz",
                      "--weights", "0.6,0.4")
    checked = 0
    for (word, m), (_, a), (_, b) in zip(mixed, kn_rows, rnn_rows):
        if word not in rnn.vocab.index or word == "<unk>":
            b -= math.log10(lacking + 1)        # the RNN's <unk> mass, shared
            checked += 1
        expected = math.log10(0.6 * 10 ** a + 0.4 * 10 ** b)
        assert m == pytest.approx(expected, abs=2e-5), word
    assert checked > 0


def test_weights_1_0_score_exactly_as_the_first_model(folder):
    alone = run("perplexity", folder / "kn.npz", folder / "test.txt", "--per-token", "--json")
    mixed = run("perplexity", folder / "kn.npz", "--mix", folder / "wb.npz", "--weights",
                "1,0", folder / "test.txt", "--per-token", "--json")
    strip = [line.replace('"order": 3', "").replace('"order": 2', "").replace(
        '"order": 1', "") for line in alone.stdout.splitlines()]
    mixed_strip = [line.replace('"order": 0', "") for line in mixed.stdout.splitlines()]
    assert mixed_strip == strip


def test_a_saved_mixture_scores_as_the_one_on_the_command_line(folder, tmp_path):
    assert_ok(run("mix", folder / "kn.npz", folder / "rnn.npz", "--weights", "0.25,0.75",
                  "-o", tmp_path / "m.npz"))
    saved = run("perplexity", tmp_path / "m.npz", folder / "test.txt", "--json")
    given_ = run("perplexity", folder / "kn.npz", "--mix", folder / "rnn.npz", "--weights",
                 "0.25,0.75", folder / "test.txt", "--json")
    assert_ok(saved)
    assert saved.stdout == given_.stdout
    assert_ok(run("check", tmp_path / "m.npz"))


def test_the_fast_score_equals_the_step_by_step_one(folder):
    from rnnlm_cli.lm import LanguageModel
    mixture = MixtureModel([open_model(str(folder / n)) for n in ("kn.npz", "rnn.npz")],
                           [0.5, 0.5])
    from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig
    tokenizer = Tokenizer(TokenizerConfig.from_dict(mixture.metadata["tokenizer"]))
    corpus = mixture.vocab.encode(list(tokenizer.tokenize_lines(TEST[:20])))
    fast = mixture.score(corpus.ids, corpus.lengths)
    slow = LanguageModel.score(mixture, corpus.ids, corpus.lengths)
    np.testing.assert_allclose(fast.logprob, slow.logprob, rtol=1e-6)
    np.testing.assert_array_equal(fast.sentence_ends, slow.sentence_ends)


def test_generate_from_a_mixture_is_seeded(folder):
    args = ["generate", folder / "kn.npz", "--mix", folder / "rnn.npz", "--num", "3",
            "--seed", "5"]
    first, second = run(*args), run(*args)
    assert_ok(first)
    assert first.stdout == second.stdout and len(first.stdout.splitlines()) == 3


# -- tuning ------------------------------------------------------------------------------------

def test_em_never_raises_the_held_out_perplexity(folder):
    result = run("perplexity", folder / "kn.npz", "--mix", folder / "wb.npz", "--mix",
                 folder / "rnn.npz", "--tune", folder / "heldout.txt", folder / "test.txt")
    assert_ok(result)
    ppls = [float(line.split("held-out perplexity ")[1].split(",")[0])
            for line in result.stderr.splitlines() if line.startswith("EM iteration")]
    assert len(ppls) > 2
    assert all(b <= a * (1 + 1e-12) for a, b in zip(ppls, ppls[1:]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(2, 4), st.integers(1, 40), st.integers(0, 2 ** 32 - 1))
def test_em_is_monotone_and_its_weights_sum_to_one(k, n, seed):
    rng = np.random.default_rng(seed)
    logp = np.log(rng.dirichlet(np.ones(5), size=(k, n))[..., 0] + 1e-12)    # (k, n)
    seen = []
    weights = tune_weights(logp, report=lambda i, w, ppl: seen.append((w, ppl)))
    assert sum(weights) == pytest.approx(1.0)
    assert all(w >= 0 for w in weights)
    ppls = [ppl for _, ppl in seen]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(ppls, ppls[1:]))


def test_em_finds_the_weights_of_a_known_mixture():
    """Tokens drawn from 0.8 P_1 + 0.2 P_2 where P_1 and P_2 are far apart: EM recovers 0.8."""
    rng = np.random.default_rng(1)
    n = 20000
    from_first = rng.random(n) < 0.8
    p1 = np.where(from_first, 0.5, 0.001)
    p2 = np.where(from_first, 0.001, 0.5)
    weights = tune_weights(np.log(np.stack([p1, p2])))
    assert weights[0] == pytest.approx(0.8, abs=0.01)


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("weights, part", [
    ("0.5,0.6", "weights must sum to 1, not 1.1 (0.5,0.6)"),
    ("-0.5,1.5", "weights must be between 0 and 1, not -0.5,1.5"),
    ("1", "1 weight(s) for 2 models: give one per model"),
    ("0.2,0.3,0.5", "3 weight(s) for 2 models: give one per model"),
    ("a,b", "'a,b' is not a list of numbers"),
    ("nan,1", "weights must be between 0 and 1"),
])
def test_bad_weights_are_usage_errors(folder, weights, part):
    assert_fails(run("perplexity", folder / "kn.npz", "--mix", folder / "wb.npz",
                     "--weights", weights, folder / "test.txt"), 2, contains=[part])


def test_bad_weights_of_mix_are_usage_errors(folder, tmp_path):
    assert_fails(run("mix", folder / "kn.npz", folder / "wb.npz", "--weights", "0.9,0.9",
                     "-o", tmp_path / "m.npz"), 2, contains=["weights must sum to 1"],
                 folder=tmp_path, absent=["m.npz"])


def test_models_with_different_tokenizers_do_not_mix(folder, tmp_path):
    assert_fails(run("mix", folder / "kn.npz", folder / "ws.npz", "-o", tmp_path / "m.npz"),
                 1, contains=["Error: model 2 reads text with another tokenizer than model 1",
                              "kind whitespace", "kind regex"],
                 folder=tmp_path, absent=["m.npz"])


def test_a_mixture_file_with_damaged_component_arrays(folder, tmp_path):
    from rnnlm_cli.modelfile import load_model, save_model
    assert_ok(run("mix", folder / "kn.npz", folder / "rnn.npz", "-o", tmp_path / "m.npz"))
    arrays, metadata = load_model(str(tmp_path / "m.npz"))
    arrays = {k: np.array(v) for k, v in arrays.items()}
    del arrays["component1.embedding"]
    save_model(str(tmp_path / "gone.npz"), arrays, metadata)
    assert_fails(run("perplexity", tmp_path / "gone.npz", folder / "test.txt"), 1,
                 contains=["gone.npz (model 2)", "'embedding' is missing"])
    arrays, _ = load_model(str(tmp_path / "m.npz"))
    arrays = {k: np.array(v) for k, v in arrays.items()}
    save_model(str(tmp_path / "weights.npz"), arrays, dict(metadata, weights=[0.5, 0.6]))
    assert_fails(run("perplexity", tmp_path / "weights.npz", folder / "test.txt"), 1,
                 contains=["weights.npz: corrupt mixture: weights must sum to 1"])
    save_model(str(tmp_path / "none.npz"), arrays, dict(metadata, components=[]))
    assert_fails(run("perplexity", tmp_path / "none.npz", folder / "test.txt"), 1,
                 "Error: " + str(tmp_path / "none.npz") +
                 ": corrupt mixture: no list of components and weights")


def test_check_weights_normalises_rounding():
    assert check_weights([0.3333333, 0.3333333, 0.3333334], 3) == pytest.approx([1 / 3] * 3,
                                                                                abs=1e-6)


def test_tuning_reads_the_held_out_text_as_a_text_of_its_own(folder):
    """With --carry-state the recurrent component's state runs from call to call: tuning
    starts it afresh and leaves it fresh, so the text scored next starts from <s>."""
    from rnnlm_cli.mixture import tune_on_text
    from rnnlm_cli.models import carrying_state
    mixture = carrying_state(MixtureModel([open_model(str(folder / "kn.npz")),
                                           open_model(str(folder / "rnn.npz"))], [0.5, 0.5]))
    assert mixture.carries_state and mixture.components[1].carries_state
    corpus = mixture.vocab.encode([line.split() for line in TEST[:20]])
    fresh = mixture.score(corpus.ids, corpus.lengths).logprob
    assert not np.allclose(mixture.score(corpus.ids, corpus.lengths).logprob, fresh)  # goes on
    tuned = tune_on_text(mixture, HELDOUT)
    assert tuned.components[1] is mixture.components[1]
    rnn = tuned.components[1]
    own = rnn.vocab.encode([line.split() for line in TEST[:20]])
    assert np.allclose(rnn.score(own.ids, own.lengths).logprob,
                       rnn.model.score_stream(own.ids, own.lengths)[0].logprob)
