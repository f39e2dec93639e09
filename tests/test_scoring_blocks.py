"""``perplexity`` reads its text in blocks (``tokenizer.read_blocks``), scores them in
worker threads and adds them up exactly (``scoring.Totals``): every figure and every
output line must be the same whatever the block size and the number of threads, on both
paths (the byte-span path of the totals, the line path of ``--per-sentence``), with OOVs,
blank lines, literal markers, CRLF, a BOM, text not in NFC and a line longer than a block.
"""
from __future__ import annotations

import json
import math
import random
import unicodedata
from fractions import Fraction

import numpy as np
import pytest

from rnnlm_cli import parallel, tokenizer
from rnnlm_cli.errors import CorpusError
from rnnlm_cli.scoring import ExactSum
from rnnlm_cli.tokenizer import read_blocks
from test_cli_errors import assert_fails, assert_ok, run, write

CORPUS = "".join(f"{a} {b} {c} .\n" for a in ("the", "a", "one") for b in ("cat", "dog", "cá")
                 for c in ("sat", "ran", "ngủ", "ate")) * 2
WORDS = ["the", "a", "one", "cat", "dog", "cá", "sat", "ran", "ngủ", "ate", ".", "zebra"]
# OOVs (zebra, <unk>), a blank line, a literal <s>, CRLF, "cá" decomposed (not NFC: the
# tokenizer composes it), a combining mark that NFC keeps, tabs, a long line, and no
# newline at the end; and 400 lines of random words, enough tokens for a sum made block
# by block in floats to differ in its last bits.
TEXT = ("\ufeffthe cat sat .\n"
        "a zebra ran .\r\n"
        "\n"
        "one dog <s> ate <unk> .\n"
        + unicodedata.normalize("NFD", "the cá ngủ .") + "\n"
        "a\tdog  x\u0301 .\n"
        + "the cat ate . " * 40 + "\n"
        + "".join(" ".join(random.Random(i).choices(WORDS, k=i % 13)) + "\n"
                  for i in range(400))
        + "one cá sat ."
        )
COMMANDS = {
    "totals": [],
    "json": ["--json"],
    "per-sentence": ["--per-sentence"],
    "per-token": ["--per-token"],
    "json-per-token": ["--json", "--per-sentence", "--per-token"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    write(folder / "corpus.txt", CORPUS)
    for kind in ("whitespace", "regex"):
        assert_ok(run("train-ngram", folder / "corpus.txt", "-o", folder / f"{kind}.npz",
                      "--order", "4", "--tokenizer", kind))
    (folder / "text.txt").write_bytes(TEXT.encode("utf-8"))
    return folder


def perplexity(models, kind, options, block_bytes, threads, monkeypatch):
    monkeypatch.setattr(tokenizer, "BLOCK_BYTES", block_bytes)
    monkeypatch.setenv("RNNLM_NUM_THREADS", str(threads))
    result = run("perplexity", models / f"{kind}.npz", models / "text.txt", *options)
    assert_ok(result)
    return result.stdout


@pytest.mark.parametrize("kind", ["whitespace", "regex"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_output_does_not_depend_on_blocks_or_threads(models, kind, command, monkeypatch):
    options = COMMANDS[command]
    whole = perplexity(models, kind, options, 1 << 20, 1, monkeypatch)
    for block_bytes, threads in [(1, 2), (50, 3), (999, 1)]:
        assert perplexity(models, kind, options, block_bytes, threads, monkeypatch) == whole, \
            (block_bytes, threads)


@pytest.fixture(scope="module")
def rnn_model(models):
    path = models / "rnn.npz"
    assert_ok(run("train-rnn", models / "corpus.txt", "-o", path, "--hidden", "8",
                  "--epochs", "1", "--tokenizer", "regex"))
    return path


def logprobs(output):
    """The logprob of each JSON line (sentences, then the summary)."""
    return [json.loads(line)["logprob"] for line in output.splitlines()]


def test_carried_state_does_not_depend_on_blocks_or_threads(models, rnn_model, monkeypatch):
    """The same figures however the text is cut (to float32 rounding, as without
    --carry-state): a block does not start the text again. Lines read alone differ."""
    options = ["--carry-state", "--json", "--per-sentence"]
    whole = logprobs(perplexity(models, "rnn", options, 1 << 20, 1, monkeypatch))
    alone = logprobs(perplexity(models, "rnn", options[1:], 1 << 20, 1, monkeypatch))
    assert len(whole) == len(alone) == 409
    assert abs(whole[-1] - alone[-1]) > 0.1          # the lines were read in context
    for block_bytes, threads in [(1, 2), (50, 3)]:
        cut = logprobs(perplexity(models, "rnn", options, block_bytes, threads, monkeypatch))
        assert cut == pytest.approx(whole, abs=1e-5), (block_bytes, threads)


def test_carried_state_starts_again_with_each_file(models, rnn_model, monkeypatch):
    monkeypatch.setattr(tokenizer, "BLOCK_BYTES", 40)
    text = models / "text.txt"
    once = run("perplexity", rnn_model, text, "--carry-state", "--json", "--per-sentence")
    twice = run("perplexity", rnn_model, text, text, "--carry-state", "--json",
                "--per-sentence")
    first = [json.loads(line) for line in once.stdout.splitlines()][:-1]
    both = [json.loads(line) for line in twice.stdout.splitlines()][:-1]
    assert len(both) == 2 * len(first) == 816
    for a, b in zip(first, both[len(first):]):
        assert b["logprob"] == pytest.approx(a["logprob"], abs=1e-5)
    alone = run("perplexity", rnn_model, text, "--json", "--per-sentence")
    alone = [json.loads(line) for line in alone.stdout.splitlines()][:-1]
    assert first[0]["logprob"] == pytest.approx(alone[0]["logprob"], abs=1e-5)
    assert sum(a["logprob"] for a in first) != pytest.approx(sum(a["logprob"] for a in alone),
                                                            abs=0.1)


def test_carried_state_needs_a_recurrent_model(models):
    text = models / "text.txt"
    assert_fails(run("perplexity", models / "regex.npz", text, "--carry-state"), 2,
                 f"Error: --carry-state needs a recurrent model; {models / 'regex.npz'} is "
                 "n-gram, reading each line alone")
    assert_fails(run("perplexity", models / "regex.npz", text, "--carry-state", "--mix",
                     models / "regex.npz"), 2,
                 "Error: --carry-state needs a recurrent model; the models mixed are n-gram, "
                 "reading each line alone")


def token_logprobs(output):
    """(token, logprob) of every token of --per-token --json output."""
    return [(t["token"], t["logprob"]) for line in output.splitlines()[:-1]
            for t in json.loads(line)["token_scores"]]


def test_a_mixture_carries_the_state_of_its_recurrent_model(models, rnn_model):
    text, ngram = models / "text.txt", models / "regex.npz"
    rnn = token_logprobs(run("perplexity", rnn_model, text, "--carry-state", "--json",
                             "--per-token").stdout)
    kn = token_logprobs(run("perplexity", ngram, text, "--json", "--per-token").stdout)
    mixed = token_logprobs(run("perplexity", rnn_model, text, "--mix", ngram, "--weights",
                               "0.3,0.7", "--carry-state", "--json", "--per-token").stdout)
    assert [t for t, _ in rnn] == [t for t, _ in kn] == [t for t, _ in mixed]
    by_hand = [math.log(0.3 * math.exp(a) + 0.7 * math.exp(b)) for (_, a), (_, b) in zip(rnn, kn)]
    assert [p for _, p in mixed] == pytest.approx(by_hand, abs=1e-9)
    # --tune reads the held-out text as a text of its own: EM starts at the perplexity
    # of the equal mixture, carried
    tuned = run("perplexity", rnn_model, "--mix", ngram, "--tune", text, "--carry-state",
                text)
    assert_ok(tuned)
    equal = json.loads(run("perplexity", rnn_model, text, "--mix", ngram, "--carry-state",
                           "--json").stdout)
    assert f"EM iteration 0: held-out perplexity {equal['perplexity']:.4f}," in tuned.stderr


def test_the_totals_are_those_of_the_sentences(models, monkeypatch):
    """The byte-span path (totals alone) and the line path (--per-sentence) give the same
    summary; the summary is the sum of the sentence lines, and counts what it should:
    408 sentences (a blank line, the last one without a newline are sentences), tokens
    with their </s>, the literal <s> dropped, zebra, <unk> and x\u0301 the OOVs."""
    monkeypatch.setattr(tokenizer, "BLOCK_BYTES", 7)
    totals = run("perplexity", models / "whitespace.npz", models / "text.txt", "--json")
    details = run("perplexity", models / "whitespace.npz", models / "text.txt", "--json",
                  "--per-sentence")
    summary = json.loads(totals.stdout)
    lines = [json.loads(line) for line in details.stdout.splitlines()]
    assert lines[-1] == summary
    sentences = lines[:-1]
    assert [s["sentence"] for s in sentences] == list(range(408))
    assert summary["sentences"] == 408
    assert summary["oovs"] == 3 + sum(s["oovs"] for s in sentences[7:-1])
    assert [s["tokens"] for s in sentences[:7]] == [5, 5, 1, 6, 5, 5, 161]
    assert summary["tokens"] == sum(s["tokens"] for s in sentences)
    assert summary["logprob"] == pytest.approx(sum(s["logprob"] for s in sentences), abs=1e-9)
    assert sentences[4]["text"] == unicodedata.normalize("NFD", "the cá ngủ .")
    assert sentences[4]["oovs"] == 0        # composed by the tokenizer: in the vocabulary


def test_blocks_are_whole_lines_of_bounded_size(tmp_path):
    text = b"\xef\xbb\xbf" + b"ab\n" * 10 + b"x" * 25 + b"\nlast"
    path = write(tmp_path / "t.txt", "")
    path.write_bytes(text)
    blocks = list(read_blocks(str(path), block_bytes=4))
    assert b"".join(b.data for b in blocks) == text[3:] + b"\n"
    assert all(b.data.endswith(b"\n") for b in blocks)
    assert all(len(b.data) <= 4 + 3 or b.data.count(b"\n") == 1 for b in blocks)
    assert [b.first_line for b in blocks] == [1 + sum(x.data.count(b"\n") for x in blocks[:i])
                                              for i in range(len(blocks))]
    assert list(read_blocks(str(write(tmp_path / "e.txt", "")))) == []
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    assert list(read_blocks(str(tmp_path / "bom.txt"), block_bytes=1)) == []


def test_a_bad_byte_in_a_later_block_names_its_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"a b\n" * 50 + b"ok\nbad \xff\n")
    with pytest.raises(CorpusError, match=r"bad.txt: line 52: invalid UTF-8"):
        for block in read_blocks(str(tmp_path / "bad.txt"), block_bytes=8):
            block.text()


def test_a_bad_byte_far_into_the_text_is_one_error(models, monkeypatch):
    monkeypatch.setattr(tokenizer, "BLOCK_BYTES", 16)
    (models / "bad.txt").write_bytes(b"the cat sat .\n" * 30 + b"a \xc3\x28 dog\n")
    assert_fails(run("perplexity", models / "whitespace.npz", models / "bad.txt"), 1,
                 f"Error: {models / 'bad.txt'}: line 31: invalid UTF-8 "
                 "(use --encoding-errors replace to go on)")


def test_only_blank_lines_in_many_blocks_is_one_error_and_no_output(models, monkeypatch):
    monkeypatch.setattr(tokenizer, "BLOCK_BYTES", 2)
    write(models / "blank.txt", "\n \n\t\n" * 20)
    for options in ([], ["--per-sentence"]):
        assert_fails(run("perplexity", models / "whitespace.npz", models / "blank.txt",
                         *options), 1,
                     f"Error: {models / 'blank.txt'}: only blank lines; nothing to score")


# -- ExactSum ----------------------------------------------------------------------------------

def exact(values) -> float:
    return float(sum(Fraction(v) for v in values))      # Fraction -> float rounds correctly


def test_exact_sum_is_the_correctly_rounded_sum_however_it_is_cut():
    rng = np.random.default_rng(3)
    values = np.concatenate([-rng.exponential(5, 3000), rng.normal(0, 1e-300, 10),
                             [5e-324, -5e-324, 1e300, -1e300, -0.0, 0.0, 2.0 ** -1022]])
    rng.shuffle(values)
    expected = exact(values.tolist())
    assert expected == math.fsum(values)
    for cuts in ([], [1], [17, 500, 2999], list(range(0, values.size, 7))):
        total = ExactSum()
        for part in np.split(values, cuts):
            total += ExactSum.of_groups(part, np.zeros(part.size, dtype=np.intp), 1)[0]
        assert float(total) == expected


def test_exact_sum_by_groups_and_non_finite_values():
    values = np.array([-1.5, -2.25, -np.inf, -0.125, 3.0])
    in_vocab, oov = ExactSum.of_groups(values, np.array([0, 1, 1, 0, 0]), 2)
    assert float(in_vocab) == 1.375 and float(oov) == -np.inf
    nan = ExactSum.of_groups(np.array([np.nan, 1.0]), np.zeros(2, dtype=np.intp), 1)[0]
    assert math.isnan(float(nan))
    assert float(ExactSum()) == 0.0


# -- map_ordered -------------------------------------------------------------------------------

def test_map_ordered_keeps_order_reads_ahead_a_little_and_raises(monkeypatch):
    monkeypatch.setenv("RNNLM_NUM_THREADS", "3")
    taken = []

    def items():
        for i in range(40):
            taken.append(i)
            yield i

    def work(i):
        assert parallel.parts_for(10 ** 9) == 1       # a worker does not cut its item again
        return i * i
    results = parallel.map_ordered(work, items())
    assert next(results) == 0
    assert len(taken) <= 2 * 3 + 1
    assert list(results) == [i * i for i in range(1, 40)]

    def fails(i):
        if i == 5:
            raise ValueError("item 5")
        return i
    with pytest.raises(ValueError, match="item 5"):
        list(parallel.map_ordered(fails, range(20)))
    assert parallel.parts_for(10 ** 9) == 3                 # (not in a worker here)
