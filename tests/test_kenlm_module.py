"""KenLM's Python module scores rnnlm's ARPA files as rnnlm scores its own models.

Trains order-3 and order-5 Kneser-Ney models with ``rnnlm train-ngram --tokenizer
whitespace --arpa``, loads the ARPA file with ``kenlm.Model``, and compares, sentence by
sentence, ``score(sentence, bos=True, eos=True)`` (log10) with rnnlm's per-sentence log10
probability, and the perplexity over the whole test text. Skips where the ``kenlm`` module
is not installed (``pip install kenlm`` builds it from source: cmake, g++, zlib headers).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_runner
from rnnlm_cli.cli import cli

kenlm = pytest.importorskip(
    "kenlm", reason="the kenlm Python module is not installed (pip install kenlm builds it "
                    "from source; it needs cmake, g++ and the zlib headers)")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
EN = ROOT / "corpora" / "en" / "sentences.txt"
PTB = SHARED / "corpora" / "ptb"

SENTENCE_TOLERANCE = 1e-4      # log10, absolute, per sentence
PERPLEXITY_TOLERANCE = 1e-4    # relative: 0.01%


def _en_corpus():
    lines = EN.read_text(encoding="utf-8").splitlines()
    split = len(lines) * 4 // 5
    return lines[:split], lines[split:]


def _ptb_corpus():
    if not PTB.is_dir():
        pytest.skip(f"shared corpora not found at {PTB} (a fresh clone without ../shared)")

    def read(name):
        # KenLM and rnnlm both give <unk> a meaning of their own: make it a plain word.
        return (PTB / name).read_text(encoding="utf-8").replace("<unk>", "unk").splitlines()

    return read("valid.txt"), read("test.txt")


CORPORA = {"en": _en_corpus, "ptb": _ptb_corpus}


@pytest.fixture(scope="module", params=[(name, order) for name in CORPORA for order in (3, 5)],
                ids=lambda p: f"{p[0]}-order{p[1]}")
def trained(request, tmp_path_factory):
    """(arpa path, test sentences, rnnlm's per-sentence records and summary)."""
    name, order = request.param
    folder = tmp_path_factory.mktemp(f"{name}{order}")
    train, test = CORPORA[name]()
    (folder / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    runner = cli_runner()
    result = runner.invoke(cli, ["train-ngram", str(folder / "train.txt"), "--order", str(order),
                                 "--tokenizer", "whitespace", "-o", str(folder / "m.npz"),
                                 "--arpa", str(folder / "m.arpa")])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(cli, ["perplexity", str(folder / "m.npz"), str(folder / "test.txt"),
                                 "--per-sentence", "--json"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return folder / "m.arpa", test, records[:-1], records[-1]


def test_kenlm_reads_the_order(trained, request):
    arpa, _, _, _ = trained
    _, order = request.node.callspec.params["trained"]
    assert kenlm.Model(str(arpa)).order == order


def test_sentence_scores_agree(trained):
    arpa, test, sentences, _ = trained
    model = kenlm.Model(str(arpa))
    assert len(sentences) == len(test)
    worst = (0.0, None)
    for line, record in zip(test, sentences):
        ours = record["log10prob"]
        theirs = model.score(line, bos=True, eos=True)
        assert ours is not None, line
        if abs(ours - theirs) > worst[0]:
            worst = (abs(ours - theirs), line)
    assert worst[0] <= SENTENCE_TOLERANCE, f"largest difference {worst[0]:.3g} on {worst[1]!r}"


def test_oov_counts_agree(trained):
    arpa, test, sentences, _ = trained
    model = kenlm.Model(str(arpa))
    for line, record in zip(test, sentences):
        oovs = sum(oov for _, _, oov in model.full_scores(line, bos=True, eos=True))
        assert record["oovs"] == oovs, line
        assert record["tokens"] == len(line.split()) + 1, line


def test_perplexity_agrees(trained):
    arpa, test, _, summary = trained
    model = kenlm.Model(str(arpa))
    log10prob = sum(model.score(line, bos=True, eos=True) for line in test)
    tokens = sum(len(line.split()) + 1 for line in test)
    theirs = 10.0 ** (-log10prob / tokens)
    assert summary["tokens"] == tokens
    assert summary["perplexity"] == pytest.approx(theirs, rel=PERPLEXITY_TOLERANCE)
