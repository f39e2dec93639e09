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
from rnnlm_cli.rnn.batches import Batches, token_stream
from rnnlm_cli.rnn.model import CarriedState, RnnModel, mean_state_before, model_metadata
from rnnlm_cli.rnn.network import RnnNetwork
from rnnlm_cli.vocab import Vocabulary

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "a dog sat", "the dog ate the cat", "", "on a mat",
    "the the the", "cat", "a cat and a dog sat on the mat and ate"]]
TOKENIZER = {"kind": "whitespace", "level": "word", "lowercase": False}


def make_model(cell="lstm", layers=2, tie=False, seed=0, boundary=True):
    vocab, corpus = Vocabulary.build(SENTENCES)
    config = RnnConfig(cell=cell, layers=layers, hidden=12, tie_weights=tie)
    network = RnnNetwork(config, len(vocab), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for p in network.params.values():       # a model with opinions, not a fresh init
        p += rng.normal(0, 0.3, p.shape).astype(p.dtype)
    state = None
    if boundary:                            # a state far from zero, as after training
        state = [tuple(rng.normal(0, 0.5, 12) for _ in range(network.cell.state_size))
                 for _ in range(layers)]
    corpus_facts = {"name": "tiny", "sentences": len(SENTENCES), "tokens": corpus.num_tokens}
    return RnnModel(vocab, network, model_metadata(config, TOKENIZER, corpus_facts),
                    state), corpus


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


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("rnn", 2)])
def test_mean_state_before_averages_the_states_that_read_the_token(cell, layers):
    model, corpus = make_model(cell, layers)
    net, eos = model.network, model.vocab.eos_id
    stream = token_stream(corpus.ids, corpus.lengths, eos)
    batches = Batches(stream, 2, 4)
    mean = mean_state_before(net, batches, eos)
    # by hand: step through the two streams one token at a time, from zeros
    hidden, seen = net.initial_hidden(2), []
    for t in range(batches.data.shape[0] - 1):
        for b in np.flatnonzero(batches.data[t] == eos):
            if t > 0:                       # not the zero state the stream starts from
                seen.append([tuple(part[b] for part in layer) for layer in hidden])
        hidden = net.advance(batches.data[t], hidden)
    assert len(seen) > 3
    for layer in range(layers):
        for k in range(net.cell.state_size):
            expected = np.mean([state[layer][k] for state in seen], axis=0)
            assert np.allclose(mean[layer][k], expected, rtol=1e-5, atol=1e-6)
            assert np.abs(expected).max() > 0.01
    assert mean_state_before(net, Batches(stream[:3], 1, 1), model.vocab.id("sat")) is None


def test_sentences_are_read_from_the_boundary_state():
    model, corpus = make_model("lstm", 2)
    plain, _ = make_model("lstm", 2, boundary=False)
    hidden = [tuple(np.repeat(part[None], 1, axis=0) for part in layer)
              for layer in model.boundary]
    bos = np.array([model.vocab.bos_id])
    expected = model.network.step(bos, hidden)[0][0]
    logp = model.log_probs(model.initial_state(1))[0]
    keep = np.arange(len(model.vocab)) != model.vocab.bos_id
    assert np.allclose(logp[keep] - expected[keep],
                       logp[keep][0] - expected[keep][0], atol=1e-6)   # renormalised only
    assert not np.allclose(logp, plain.log_probs(plain.initial_state(1))[0], atol=1e-3)
    assert np.allclose(model.score(corpus.ids, corpus.lengths).logprob[0],
                       logp[corpus.ids[0]], atol=1e-5)


def test_score_of_nothing_and_of_empty_sentences():
    model, _ = make_model()
    none = model.score(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
    assert none.logprob.size == 0 and none.sentence_ends.size == 0
    empties = model.score(np.zeros(0, dtype=np.int32), np.zeros(2, dtype=np.int64))
    eos = model.log_probs(model.initial_state(1))[0, model.vocab.eos_id]
    assert np.allclose(empties.logprob, [eos, eos], rtol=1e-6)


def stepped_stream(model, corpus):
    """By hand: one state through the whole text, <s> first, each sentence's </s> read
    before the next sentence."""
    stream = token_stream(corpus.ids, corpus.lengths, model.vocab.eos_id)[1:]   # targets
    state, out = model.initial_state(1), []
    for token in stream:
        out.append(model.log_probs(state)[0, token])
        state = model.advance(state, np.array([token]))
    return np.array(out)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("rnn", 1)])
def test_score_stream_reads_each_sentence_after_those_before(cell, layers):
    model, corpus = make_model(cell, layers)
    expected = stepped_stream(model, corpus)
    scores, _ = model.score_stream(corpus.ids, corpus.lengths)
    assert np.array_equal(scores.sentence_ends, np.cumsum(corpus.lengths + 1))
    assert np.allclose(scores.logprob, expected, rtol=1e-5, atol=1e-5)
    alone = model.score(corpus.ids, corpus.lengths).logprob
    first = corpus.lengths[0] + 1
    assert np.allclose(scores.logprob[:first], alone[:first], rtol=1e-5, atol=1e-5)
    assert not np.allclose(scores.logprob[first:], alone[first:], atol=1e-3)   # context
    # one position per piece (the smallest budget), and the text cut in two calls
    tiny, _ = model.score_stream(corpus.ids, corpus.lengths, cache_floats=1)
    assert np.allclose(tiny.logprob, expected, rtol=1e-5, atol=1e-5)
    cut = int(corpus.lengths[:3].sum())
    head, hidden = model.score_stream(corpus.ids[:cut], corpus.lengths[:3])
    tail, _ = model.score_stream(corpus.ids[cut:], corpus.lengths[3:], hidden)
    assert np.allclose(np.concatenate([head.logprob, tail.logprob]), expected,
                       rtol=1e-5, atol=1e-5)


def test_carried_state_goes_on_from_call_to_call_until_restarted():
    model, corpus = make_model("lstm", 1)
    expected = stepped_stream(model, corpus)
    carried = CarriedState(model)
    assert carried.carries_state and carried.kind == "rnn" and carried.vocab is model.vocab
    parts = [carried.score(corpus.ids[:0], corpus.lengths[:0])]   # nothing: no change
    cut = int(corpus.lengths[:5].sum())
    parts.append(carried.score(corpus.ids[:cut], corpus.lengths[:5]))
    parts.append(carried.score(corpus.ids[cut:], corpus.lengths[5:]))
    assert np.allclose(np.concatenate([p.logprob for p in parts]), expected, rtol=1e-5,
                       atol=1e-5)
    carried.restart()
    again = carried.score(corpus.ids, corpus.lengths)
    assert np.allclose(again.logprob, expected, rtol=1e-5, atol=1e-5)


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
    for layer, loaded_layer in zip(model.boundary, loaded.boundary):
        assert all(np.array_equal(a, b) for a, b in zip(layer, loaded_layer))


def test_a_model_without_a_boundary_state_reads_from_zeros(tmp_path):
    model, corpus = make_model("lstm", layers=1, boundary=False)
    path = str(tmp_path / "m.npz")
    save_model(path, model.to_arrays(), model.metadata)
    with zipfile.ZipFile(path) as archive:
        assert not any(name.startswith("boundary.") for name in archive.namelist())
    loaded = open_model(path)
    assert loaded.boundary is None
    zero = model.network.initial_hidden(1)
    expected = model.network.step(np.array([model.vocab.bos_id]), zero)[0][0]
    got = loaded.log_probs(loaded.initial_state(1))[0]
    assert np.allclose(got[model.vocab.eos_id] - got[4],
                       expected[model.vocab.eos_id] - expected[4], atol=1e-6)


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
    (lambda a: a.pop("boundary.layer0.c"), None, "array 'boundary.layer0.c' is missing"),
    (lambda a: a.update({"boundary.layer0.h": a["boundary.layer0.h"][:5]}), None,
     "the boundary state does not fit 1 layer(s) of 2 float vector(s) of 12"),
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
