"""The commands as users run them: train, score, pipe; outputs checked by content."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import CORPORA, cli_runner
from rnnlm_cli.cli import cli
from rnnlm_cli.modelfile import load_model

EN = CORPORA / "en" / "sentences.txt"
VI = CORPORA / "vi" / "cau.txt"


def run(*args, input=None):
    result = cli_runner().invoke(cli, [str(a) for a in args], input=input,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def en_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "en.npz"
    run("train-ngram", EN, "--order", 3, "-o", path)
    return path


def test_help_lists_every_command_with_a_summary():
    out = run("--help").stdout
    for command in ("train-ngram", "perplexity"):
        assert command in out
    assert run("--version").stdout.startswith("rnnlm, version ")


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "rnnlm_cli", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "train-ngram" in done.stdout


def test_model_file_carries_its_making(en_model):
    arrays, meta = load_model(str(en_model))
    assert meta["format_version"] == 1 and meta["model_type"] == "ngram"
    assert meta["order"] == 3 and meta["smoothing"] == "kneser-ney"
    assert meta["tokenizer"] == {"kind": "regex", "level": "word", "lowercase": False}
    assert meta["corpus"]["name"] == str(EN)
    lines = EN.read_text(encoding="utf-8").splitlines()
    assert meta["corpus"]["sentences"] == len(lines)
    assert meta["corpus"]["tokens"] > sum(len(line.split()) for line in lines)  # punctuation
    assert meta["ngrams"] == [arrays["logprob_1"].size, arrays["keys_2"].size,
                              arrays["keys_3"].size]


def test_training_is_deterministic_and_stdin_equals_files(tmp_path):
    text = EN.read_text(encoding="utf-8")
    halves = text.splitlines(keepends=True)
    (tmp_path / "a.txt").write_text("".join(halves[:200]), encoding="utf-8")
    (tmp_path / "b.txt").write_text("".join(halves[200:]), encoding="utf-8")
    run("train-ngram", EN, "-o", tmp_path / "one.npz")
    run("train-ngram", EN, "-o", tmp_path / "two.npz")
    run("train-ngram", tmp_path / "a.txt", tmp_path / "b.txt", "-o", tmp_path / "split.npz")
    run("train-ngram", "-", "-o", tmp_path / "stdin.npz", input=text)
    one = (tmp_path / "one.npz").read_bytes()
    assert one == (tmp_path / "two.npz").read_bytes()
    for other in ("split.npz", "stdin.npz"):
        a, _ = load_model(str(tmp_path / "one.npz"))
        b, _ = load_model(str(tmp_path / other))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def summary_of(output):
    return json.loads(output.splitlines()[-1])


def test_perplexity_from_stdin_equals_from_file(en_model, tmp_path):
    text = "The train leaves at noon.\nWe walked to the market in the rain.\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    from_file = summary_of(run("perplexity", en_model, tmp_path / "t.txt", "--json").stdout)
    from_stdin = summary_of(run("perplexity", en_model, "--json", input=text).stdout)
    assert from_file == from_stdin
    assert from_file["sentences"] == 2
    assert from_file["tokens"] == 7 + 10      # words and punctuation, plus </s> each
    assert from_file["log10prob"] == pytest.approx(from_file["logprob"] / math.log(10))
    assert from_file["perplexity"] == pytest.approx(math.exp(-from_file["logprob"] / 17))


def test_per_sentence_and_per_token_add_up_to_the_total(en_model):
    text = "The train leaves at noon.\nA zebra sang.\n\nThe sea is calm today.\n"
    lines = run("perplexity", en_model, "--per-sentence", "--per-token", "--json",
                input=text).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    sentences, total = records[:-1], records[-1]
    assert [s["text"] for s in sentences] == text.splitlines()
    assert sum(s["logprob"] for s in sentences) == pytest.approx(total["logprob"])
    assert sum(s["oovs"] for s in sentences) == total["oovs"] >= 1   # zebra, sang
    for sentence in sentences:
        tokens = sentence["token_scores"]
        assert tokens[-1]["token"] == "</s>" and len(tokens) == sentence["tokens"]
        assert sum(t["logprob"] for t in tokens) == pytest.approx(sentence["logprob"])
        assert all(1 <= t["order"] <= 3 for t in tokens)
        assert tokens[0]["order"] <= 2            # only <s> comes before the first word
    blank = json.loads(lines[2])["token_scores"]
    assert [t["token"] for t in blank] == ["</s>"]
    assert blank[0]["order"] == 1   # the corpus has no blank line: <s> </s> was never seen


def test_per_token_text_output_is_kenlm_like(en_model):
    out = run("perplexity", en_model, "--per-token", input="The sea.\n").stdout
    first = out.splitlines()[0].split("\t")
    assert first[0].startswith("The=") and first[-1].startswith("Total: ")
    assert [f.split()[0].split("=")[0] for f in first[:-1]] == ["The", "sea", ".", "</s>"]
    summary = dict(line.split(": ", 1) for line in out.splitlines()[1:])
    assert summary["sentences"] == "1" and summary["tokens"] == "4 (including </s>)"


def test_vietnamese_char_level_model(tmp_path):
    model = tmp_path / "vi-char.npz"
    run("train-ngram", VI, "--level", "char", "--order", 5, "-o", model)
    figures = summary_of(run("perplexity", model, "--json",
                             input="Hôm nay trời đẹp.\n").stdout)
    assert figures["tokens"] == len("Hôm nay trời đẹp.") + 1   # characters (spaces too) + </s>
    assert figures["oovs"] == 0
    assert 1 < figures["perplexity"] < 40


def test_every_smoothing_trains_and_scores(tmp_path):
    perplexity = {}
    for method in ("kneser-ney", "witten-bell", "add-k", "mle"):
        model = tmp_path / f"{method}.npz"
        run("train-ngram", EN, "--smoothing", method, "--order", 2, "-o", model)
        perplexity[method] = summary_of(run("perplexity", model, EN, "--json").stdout)[
            "perplexity"]
    # On its own training text the maximum-likelihood bigram model is the best bigram
    # model there is; every smoothed model gives up some of that likelihood.
    assert all(math.isfinite(p) for p in perplexity.values())
    assert min(perplexity, key=perplexity.get) == "mle"


@pytest.mark.parametrize("suffix", [".arpa", ".arpa.gz"])
def test_arpa_output_reads_back(tmp_path, suffix):
    import gzip
    model, arpa = tmp_path / "m.npz", tmp_path / f"m{suffix}"
    run("train-ngram", EN, "--order", 4, "--tokenizer", "whitespace", "-o", model, "--arpa", arpa)
    data = arpa.read_bytes()
    head = (gzip.decompress(data) if suffix.endswith(".gz") else data).decode().splitlines()
    assert head[0] == "\\data\\" and head[1].startswith("ngram 1=")
    a = summary_of(run("perplexity", model, VI, "--json").stdout)
    b = summary_of(run("perplexity", arpa, VI, "--json").stdout)
    assert b["perplexity"] == pytest.approx(a["perplexity"], rel=1e-6)


def test_arpa_words_may_hold_non_ascii_spaces(tmp_path):
    """Only ASCII whitespace separates words, in ARPA files as in the whitespace tokenizer;
    files with spaces instead of tabs between columns read the same."""
    text = tmp_path / "t.txt"
    text.write_text("a\u3000b c d\nc d a\u3000b\n", encoding="utf-8")
    run("train-ngram", text, "--tokenizer", "whitespace", "-o", tmp_path / "m.npz",
        "--arpa", tmp_path / "m.arpa")
    arpa = (tmp_path / "m.arpa").read_text(encoding="utf-8")
    assert "\ta\u3000b\t" in arpa
    (tmp_path / "spaces.arpa").write_text(arpa.replace("\t", " "), encoding="utf-8")
    figures = [summary_of(run("perplexity", tmp_path / m, text, "--json").stdout)
               for m in ("m.npz", "m.arpa", "spaces.arpa")]
    assert figures[0]["tokens"] == 8 and figures[0]["oovs"] == 0
    for other in figures[1:]:
        assert other["perplexity"] == pytest.approx(figures[0]["perplexity"], rel=1e-7)


@pytest.mark.parametrize("text, options", [
    ("The cat sat.\nA dog ran.\nThe dog sat.\nA cat ran.\nThe end.\n", ()),   # five lines
    ("same line here\n" * 50, ()),                                           # duplicates
    ("abcabcabc\nbca\n", ("--level", "char")),                               # characters
    ("one\n", ("--order", "7")),                                             # one word
])
def test_small_or_degenerate_data_trains_with_a_named_fallback(tmp_path, text, options):
    corpus, model = tmp_path / "c.txt", tmp_path / "m.npz"
    corpus.write_text(text, encoding="utf-8")
    result = run("train-ngram", corpus, "-o", model, "--order", 5, *options)
    _, meta = load_model(str(model))
    fallback = meta["smoothing_notes"]["discount_fallback"]
    assert fallback, "tiny data should need the fallback for some order"
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "fallback discounts 0.5 1 1.5" in warning[0]
    for n in fallback:
        assert f"{n}-grams (" in warning[0]
    figures = summary_of(run("perplexity", model, "--json", input=text.splitlines()[0]).stdout)
    assert math.isfinite(figures["perplexity"]) and figures["perplexity"] >= 1


LONG = "a-token-of-more-than-sixteen-bytes"


@pytest.mark.parametrize("lowercase", [False, True])
def test_totals_from_byte_spans_equal_totals_from_token_strings(tmp_path, lowercase):
    """`perplexity` alone takes the array path of the whitespace tokenizer; with
    --per-sentence it reads token strings. Both must give the same totals."""
    train = tmp_path / "train.txt"
    train.write_text(f"the cat sat\nthe dog sat on the mat\nTiếng Việt {LONG}\n<unk> cat\n",
                     encoding="utf-8")
    flags = ["--lowercase"] if lowercase else []
    model = tmp_path / "m.npz"
    run("train-ngram", train, "--order", 3, "--tokenizer", "whitespace", *flags, "-o", model)
    a = tmp_path / "a.txt"
    a.write_bytes("the cat\r\n\nTIẾNG Vie\u0323\u0302t dog <s> mat\n".encode())
    b = tmp_path / "b.txt"
    b.write_text(f"unknown {LONG} {LONG}s\tcat\x0bsat", encoding="utf-8")   # no final newline
    fast = json.loads(run("perplexity", model, a, b, "--json").stdout)
    slow = json.loads(run("perplexity", model, a, b, "--json", "--per-sentence")
                      .stdout.splitlines()[-1])
    assert fast == slow
    assert fast["sentences"] == 4 and fast["tokens"] == 11 + 4 and fast["oovs"] == (2 if lowercase else 3)
