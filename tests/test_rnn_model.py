"""RnnModel, the recurrent backend behind the LanguageModel interface: normalised
distributions without <s>, fast scoring equal to stepping, model files."""
import json
import zipfile

import numpy as np
import pytest

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.modelfile import load_model, save_model
from rnnlm_cli.models import open_model
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.model import RnnModel, model_metadata
from rnnlm_cli.rnn.network import RnnNetwork
from rnnlm_cli.vocab import Vocabulary

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "a dog sat", "the dog ate the cat", "", "on a mat",
    "the the the", "cat", "a cat and a dog sat on the mat and ate"]]
TOKENIZER = {"kind": "whitespace", "level": "word", "lowercase": False}


def make_model(cell="lstm", layers=2, tie=False, seed=0):
    vocab, corpus = Vocabulary.build(SENTENCES)
    config = RnnConfig(cell=cell, layers=layers, hidden=12, tie_weights=tie)
    network = RnnNetwork(config, len(vocab), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for p in network.params.values():       # a model with opinions, not a fresh init
        p += rng.normal(0, 0.3, p.shape).astype(p.dtype)
    corpus_facts = {"name": "tiny", "sentences": len(SENTENCES), "tokens": corpus.num_tokens}
    return RnnModel(vocab, network, model_metadata(config, TOKENIZER, corpus_facts)), corpus


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_log_probs_are_normalised_without_bos(cell):
    model, _ = make_model(cell)
    state = model.initial_state(3)
    for token in ([4, 5, 6], [2, 0, 7]):
        logp = model.log_probs(state)
        assert logp.shape == (3, len(model.vocab)) and logp.dtype == np.float64
        assert np.all(logp[:, model.vocab.bos_id] == -np.inf)
        assert np.all(np.abs(np.exp(logp).sum(axis=1) - 1) < 1e-9)
        state = model.advance(state, np.array(token))
    assert model.kind == "rnn"


def test_state_is_batch_first_and_select_picks_rows():
    model, _ = make_model("lstm", layers=2)
    state = model.advance(model.initial_state(3), np.array([4, 5, 6]))
    assert isinstance(state, tuple) and len(state) == 4
    assert all(part.shape == (3, 12) for part in state)
    picked = model.select(state, np.array([2, 2, 0]))
    assert np.array_equal(model.log_probs(picked), model.log_probs(state)[[2, 2, 0]])


@pytest.mark.parametrize("cell,layers,tie", [("lstm", 2, False), ("gru", 1, True),
                                             ("rnn", 1, False)])
def test_score_equals_stepping(cell, layers, tie):
    model, corpus = make_model(cell, layers, tie)
    fast = model.score(corpus.ids, corpus.lengths)
    slow = LanguageModel.score(model, corpus.ids, corpus.lengths)   # log_probs / advance
    assert np.array_equal(fast.sentence_ends, slow.sentence_ends)
    assert fast.logprob.shape == slow.logprob.shape == (corpus.num_tokens + len(SENTENCES),)
    assert np.allclose(fast.logprob, slow.logprob, rtol=1e-5, atol=1e-5)
    # in small groups of sentences (a small memory budget), the same figures
    grouped = model.score(corpus.ids, corpus.lengths, cache_floats=1)
    assert np.allclose(grouped.logprob, fast.logprob, rtol=1e-5, atol=1e-5)


def test_score_of_nothing_and_of_empty_sentences():
    model, _ = make_model()
    none = model.score(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
    assert none.logprob.size == 0 and none.sentence_ends.size == 0
    empties = model.score(np.zeros(0, dtype=np.int32), np.zeros(2, dtype=np.int64))
    eos = model.log_probs(model.initial_state(1))[0, model.vocab.eos_id]
    assert np.allclose(empties.logprob, [eos, eos], rtol=1e-6)


def test_save_and_load_give_identical_log_probs(tmp_path):
    model, corpus = make_model("gru", layers=2, tie=True)
    path = str(tmp_path / "m.npz")
    save_model(path, model.to_arrays(), model.metadata)
    loaded = open_model(path)
    assert isinstance(loaded, RnnModel) and loaded.config == model.config
    assert loaded.vocab.words == model.vocab.words
    a, b = model.initial_state(2), loaded.initial_state(2)
    for token in ([4, 5], [6, 7]):
        assert np.array_equal(model.log_probs(a), loaded.log_probs(b))
        a, b = model.advance(a, np.array(token)), loaded.advance(b, np.array(token))
    assert np.array_equal(model.score(corpus.ids, corpus.lengths).logprob,
                          loaded.score(corpus.ids, corpus.lengths).logprob)


def corrupt(tmp_path, change_arrays=None, change_meta=None):
    model, _ = make_model("lstm", layers=1)
    arrays, metadata = model.to_arrays(), json.loads(json.dumps(model.metadata))
    if change_arrays:
        change_arrays(arrays)
    if change_meta:
        change_meta(metadata)
    path = str(tmp_path / "bad.npz")
    save_model(path, arrays, metadata)
    return path


@pytest.mark.parametrize("change_arrays,change_meta,message", [
    (lambda a: a.pop("layer0.W"), None, "array 'layer0.W' is missing"),
    (lambda a: a.update({"layer0.W": a["layer0.W"][:, :5]}), None, "array 'layer0.W' has"),
    (lambda a: a.update({"decoder.c": a["decoder.c"].astype(np.int32)}), None,
     "array 'decoder.c' has dtype int32"),
    (lambda a: a.update({"embedding": a["embedding"][:-1]}), None, "array 'embedding' has"),
    (None, lambda m: m["rnn_config"].update(hidden=0), "bad rnn_config: --hidden"),
    (None, lambda m: m["rnn_config"].update(cells="lstm"), "unknown rnn_config setting"),
    (None, lambda m: m.pop("rnn_config"), "rnn_config must be a mapping"),
    (None, lambda m: m["rnn_config"].update(layers=2), "array 'layer1.U' is missing"),
])
def test_a_bad_file_is_a_corrupt_model(tmp_path, change_arrays, change_meta, message):
    path = corrupt(tmp_path, change_arrays, change_meta)
    with pytest.raises(ModelFileError) as info:
        open_model(path)
    assert str(info.value).startswith(f"{path}: corrupt model: ")
    assert message in str(info.value)


def test_model_file_holds_the_metadata(tmp_path):
    model, _ = make_model("rnn", layers=1)
    path = str(tmp_path / "m.npz")
    save_model(path, model.to_arrays(), model.metadata)
    _, metadata = load_model(path)
    assert metadata["model_type"] == "rnn" and metadata["tokenizer"] == TOKENIZER
    assert metadata["rnn_config"]["cell"] == "rnn" and metadata["corpus"]["name"] == "tiny"
    with zipfile.ZipFile(path) as archive:     # plain arrays, nothing pickled
        assert "embedding.npy" in archive.namelist()
