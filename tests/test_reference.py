"""Exactness against KenLM on real corpora (../shared/reference/README.md).

Each corpus is prepared as the reference README says, trained with ``--tokenizer
whitespace``, and scored through the CLI; perplexities must match KenLM's to 0.1%
relative (they agree far closer: KenLM computes in float32). KenLM's own ARPA files must
score to KenLM's figures, and rnnlm's ARPA output must read back to rnnlm's figures.
"""
import json

import pytest

from conftest import cli_runner
from rnnlm_cli.cli import cli

# corpus, order: (PPL incl. OOVs, PPL excl. OOVs, OOVs, tokens incl. </s>), from KenLM.
KENLM = {
    ("ptb-unkword", 3): (271.9585941942738, 215.0525113649404, 3368, 82430),
    ("ptb-unkword", 5): (268.05031967117054, 211.94053063505825, 3368, 82430),
    ("shakes", 3): (586.8951581669656, 288.3000494477669, 2125, 21052),
    ("shakes", 5): (585.6062329621168, 287.7275153634148, 2125, 21052),
    ("viwiki", 3): (262.4163231092919, 184.24614876092144, 16173, 452024),
    ("viwiki", 5): (250.08689938010005, 175.36775653890848, 16173, 452024),
}
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(train, test) paths for each reference corpus, prepared as the README says."""
    from conftest import SHARED
    if not (SHARED / "corpora").is_dir():
        pytest.skip("../shared/corpora is absent (real corpora live beside the project in CI)")
    folder = tmp_path_factory.mktemp("reference")
    corpora = SHARED / "corpora"
    out = {}
    for name in ("valid", "test"):
        text = (corpora / "ptb" / f"{name}.txt").read_text(encoding="utf-8")
        (folder / f"ptb-{name}.txt").write_text(text.replace("<unk>", "unk"), encoding="utf-8")
    out["ptb-unkword"] = (folder / "ptb-valid.txt", folder / "ptb-test.txt")
    lines = (corpora / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n")
    for name, part in (("train", lines[:36000]), ("test", lines[36000:40000])):
        kept = [line for line in part if line.strip()]
        (folder / f"shakes-{name}.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
    out["shakes"] = (folder / "shakes-train.txt", folder / "shakes-test.txt")
    out["viwiki"] = (corpora / "viwiki" / "train.txt", corpora / "viwiki" / "test.txt")
    return folder, out


def run(*args):
    result = cli_runner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


def summary(model, text):
    return json.loads(run("perplexity", model, text, "--json").stdout.splitlines()[-1])


def assert_matches_kenlm(figures, expected):
    ppl, ppl_excl, oovs, tokens = expected
    assert figures["tokens"] == tokens
    assert figures["oovs"] == oovs
    assert figures["perplexity"] == pytest.approx(ppl, rel=TOLERANCE)
    assert figures["perplexity_excluding_oovs"] == pytest.approx(ppl_excl, rel=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("corpus, order", sorted(KENLM))
def test_kneser_ney_perplexity_matches_kenlm(prepared, corpus, order):
    folder, paths = prepared
    train, test = paths[corpus]
    model = folder / f"{corpus}.o{order}.npz"
    arpa = folder / f"{corpus}.o{order}.arpa"
    run("train-ngram", train, "--tokenizer", "whitespace", "--order", order, "-o", model,
        *(("--arpa", arpa) if corpus == "ptb-unkword" else ()))
    figures = summary(model, test)
    assert_matches_kenlm(figures, KENLM[corpus, order])
    if corpus == "ptb-unkword":
        # rnnlm's own ARPA file reads back to the figures of the .npz.
        again = summary(arpa, test)
        for key in ("perplexity", "perplexity_excluding_oovs", "logprob"):
            assert again[key] == pytest.approx(figures[key], rel=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("arpa, corpus, order", [
    ("ptb-unkword.o3.arpa", "ptb-unkword", 3),
    ("ptb-unkword.o5.arpa.gz", "ptb-unkword", 5),
    ("shakes.o3.arpa.gz", "shakes", 3),
])
def test_kenlm_arpa_files_score_to_kenlm_figures(prepared, shared, arpa, corpus, order):
    _, paths = prepared
    figures = summary(shared / "reference" / arpa, paths[corpus][1])
    assert_matches_kenlm(figures, KENLM[corpus, order])
    assert figures["perplexity"] == pytest.approx(KENLM[corpus, order][0], rel=1e-6)


@pytest.mark.slow
def test_reference_discounts_match_lmplz(prepared):
    """lmplz's discounts for ptb-unkword at order 5 (the reference README)."""
    from rnnlm_cli.models import open_model
    folder, paths = prepared
    model = folder / "discounts.npz"
    run("train-ngram", paths["ptb-unkword"][0], "--tokenizer", "whitespace", "--order", 5,
        "-o", model)
    discounts = open_model(str(model)).metadata["smoothing_notes"]["discounts"]
    lmplz = {"1": [0.479348, 1.24412, 1.9582], "2": [0.792484, 1.22263, 1.54662],
             "3": [0.915105, 1.37439, 1.26812], "4": [0.968383, 1.38349, 1.77582],
             "5": [0.974168, 1.57677, 1.3204]}
    for n, expected in lmplz.items():
        assert discounts[n] == pytest.approx(expected, abs=1e-5)
