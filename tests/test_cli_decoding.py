"""``rnnlm generate`` and ``rnnlm complete`` as users run them: outputs, pipes, bad input.

Models are made through ``TRAINED``; the tests that must hold for every backend run once
per entry, n-gram and RNN models alike.
"""
from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import CORPORA, cli_runner
from rnnlm_cli.cli import cli
from rnnlm_cli.decoding import encode_prompt
from rnnlm_cli.models import open_model
from test_cli_errors import assert_fails
from test_decoding import exhaustive, greedy, random_rnn

EN = CORPORA / "en" / "sentences.txt"
TINY = "the cat sat on the mat .\nthe dog sat on the log .\n<unk> sat on a <unk> .\n"

def write_random_rnn(path, lines=None):
    from rnnlm_cli.modelfile import save_model
    lines = lines or EN.read_text(encoding="utf-8").splitlines()
    model = random_rnn(lines, "lstm", 1, hidden=24)
    save_model(str(path), model.to_arrays(), model.metadata)


# name -> (the command that trains it, writing {out}, or a function writing it; suffix)
TRAINED = {
    "ngram-kn3": (["train-ngram", EN, "--order", 3, "-o", "{out}"], ".npz"),
    "ngram-arpa": (["train-ngram", EN, "--order", 4, "--smoothing", "witten-bell",
                    "-o", "{out}.npz", "--arpa", "{out}"], ".arpa"),
    "ngram-char": (["train-ngram", EN, "--order", 5, "--level", "char", "-o", "{out}"],
                   ".npz"),
    "rnn-lstm": (write_random_rnn, ".npz"),
}


def run(*args, input=None):
    return cli_runner().invoke(cli, [str(a) for a in args], input=input)


def ok(*args, input=None):
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    (folder / "tiny.txt").write_text(TINY, encoding="utf-8")
    ok("train-ngram", folder / "tiny.txt", "--tokenizer", "whitespace", "-o",
       folder / "tiny.npz")
    write_random_rnn(folder / "tiny-rnn.npz", TINY.splitlines())
    return folder


def trained(folder, name):
    """The model ``name`` of ``TRAINED``, trained once per test module."""
    args, suffix = TRAINED[name]
    path = folder / f"{name}{suffix}"
    if path.exists():
        return path
    if callable(args):
        args(path)
    else:
        ok(*[str(a).format(out=path) for a in args])
    return path


@pytest.fixture(scope="module", params=sorted(TRAINED))
def model_file(request, folder):
    return trained(folder, request.param)


@pytest.fixture(scope="module")
def en(folder):
    return trained(folder, "ngram-kn3")


@pytest.fixture(scope="module")
def chars(folder):
    return trained(folder, "ngram-char")


def json_lines(output):
    return [json.loads(line) for line in output.splitlines()]


def test_help_lists_the_commands_with_examples():
    out = ok("--help").stdout
    assert "generate" in out and "complete" in out
    for command in ("generate", "complete"):
        help_text = ok(command, "--help").stdout
        assert "Example:" in help_text and f"rnnlm {command} en.npz" in help_text
    generate_help = " ".join(ok("generate", "--help").stdout.split())
    assert "not those of the distribution" in generate_help


# -- complete -----------------------------------------------------------------------------------

def test_top_0_next_token_probabilities_sum_to_one(model_file):
    for prefix in ("", "The", "The zebra qux", "e"):
        record = json.loads(ok("complete", model_file, prefix, "--top", 0, "--json").stdout)
        assert record["prefix"] == prefix
        logprobs = [c["logprob"] for c in record["completions"]]
        assert abs(sum(math.exp(lp) for lp in logprobs) - 1) < 1e-6
        assert logprobs == sorted(logprobs, reverse=True)
        assert "<s>" not in [c["tokens"][0] for c in record["completions"]]


@pytest.mark.parametrize("name", ["tiny.npz", "tiny-rnn.npz"])
def test_beam_as_wide_as_the_vocabulary_finds_the_exhaustive_best(folder, name):
    path = folder / name
    model = open_model(str(path))
    for prefix in ("", "the", "the cat sat", "The"):
        ids = encode_prompt(model, model.tokenizer, prefix).ids.tolist()
        truth = exhaustive(model, ids, 2)
        record = json.loads(ok("complete", path, prefix, "--max-tokens", 2, "--top", 12,
                               "--beam", len(model.vocab), "--json").stdout)
        found = record["completions"]
        assert np.allclose([c["logprob"] for c in found],
                           sorted(truth.values(), reverse=True)[:12], rtol=0, atol=1e-5)
        for c in found:
            key = tuple(model.vocab.index[t] for t in c["tokens"])
            assert truth[key] == pytest.approx(c["logprob"], abs=1e-5)
            assert c["log10prob"] == pytest.approx(c["logprob"] / math.log(10))


def test_tsv_lines_prefix_continuation_log10prob(en):
    out = ok("complete", en, "The market", "--top", 3).stdout.splitlines()
    assert len(out) == 3
    rows = [line.split("\t") for line in out]
    assert all(len(row) == 3 and row[0] == "The market" for row in rows)
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    record = json.loads(ok("complete", en, "The market", "--top", 3, "--json").stdout)
    assert [row[1] for row in rows] == [c["text"] for c in record["completions"]]
    assert scores == [round(c["log10prob"], 6) for c in record["completions"]]


def test_longer_continuations_end_at_eos_or_max_tokens(en):
    record = json.loads(ok("complete", en, "The train leaves at", "--max-tokens", 4,
                           "--top", 10, "--json").stdout)
    for c in record["completions"]:
        assert c["tokens"][-1] == "</s>" or len(c["tokens"]) == 4
        assert c["logprob"] == pytest.approx(sum(c["token_logprobs"]))
    ended = [c for c in record["completions"] if c["tokens"][-1] == "</s>"]
    assert ended and all(c["text"].endswith("</s>") for c in ended)


def test_empty_prefix_is_the_start_of_a_sentence(en):
    as_argument = ok("complete", en, "").stdout
    from_stdin = ok("complete", en, input="\n").stdout
    assert as_argument == from_stdin
    assert as_argument.splitlines()[0].split("\t")[:2] == ["", "The"]


def test_prefix_of_unknown_words_only(en):
    result = ok("complete", en, "zebra qux")
    assert result.stderr == ("Warning: 'zebra qux': not in the vocabulary, read as <unk>: "
                             "zebra qux\n")
    assert len(result.stdout.splitlines()) == 5


def test_stdin_prefixes_answered_in_order_with_warnings_naming_lines(en):
    result = ok("complete", en, "--top", 2, input="The market\nA zebra\r\n\nThe\n")
    prefixes = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert prefixes == ["The market"] * 2 + ["A zebra"] * 2 + [""] * 2 + ["The"] * 2
    assert result.stderr == ("Warning: <stdin>: line 2: not in the vocabulary, read as "
                             "<unk>: zebra\n")
    records = json_lines(ok("complete", en, "--json", input="The market\nA zebra\n").stdout)
    assert [r["prefix"] for r in records] == ["The market", "A zebra"]


def test_char_model_completes_words(chars):
    record = json.loads(ok("complete", chars, "The mark", "--max-tokens", 3, "--json").stdout)
    assert all(len(c["tokens"]) <= 3 for c in record["completions"])
    assert any(c["text"].startswith("et") for c in record["completions"])


# -- generate -----------------------------------------------------------------------------------

def test_generate_same_seed_same_text(model_file):
    first = ok("generate", model_file, "--num", 5, "--seed", 42).stdout
    assert first == ok("generate", model_file, "--num", 5, "--seed", 42).stdout
    assert first != ok("generate", model_file, "--num", 5, "--seed", 43).stdout
    assert len(first.splitlines()) == 5


def test_generate_json_records(en):
    out = ok("generate", en, "--num", 20, "--seed", 1, "--max-tokens", 8, "--json",
             "--prompt", "The market").stdout
    records = json_lines(out)
    assert len(records) == 20
    for r in records:
        assert set(r) == {"prompt", "tokens", "text", "logprob", "log10prob",
                          "token_logprobs"}
        assert r["prompt"] == "The market" and r["text"].startswith("The market")
        assert r["tokens"][-1] == "</s>" or len(r["tokens"]) == 8
        assert "</s>" not in r["text"] and "<s>" not in r["tokens"]
        assert len(r["token_logprobs"]) == len(r["tokens"])
        assert r["logprob"] == pytest.approx(sum(r["token_logprobs"]))
        assert r["log10prob"] == pytest.approx(r["logprob"] / math.log(10))


def test_json_log_probabilities_are_the_models_not_the_tempered_ones(en):
    model = open_model(str(en))
    record = json.loads(ok("generate", en, "--seed", 3, "--temperature", 5, "--top-k", 7,
                           "--json", "--max-tokens", 6).stdout)
    state = model.initial_state(1)
    for token, logprob in zip(record["tokens"], record["token_logprobs"]):
        token_id = model.vocab.index[token]
        assert model.log_probs(state)[0, token_id] == pytest.approx(logprob)
        state = model.advance(state, np.array([token_id]))


def test_temperature_zero_is_greedy_and_top_k_1_agrees(en):
    out = ok("generate", en, "--num", 3, "--temperature", 0, "--json").stdout
    tokens = [r["tokens"] for r in json_lines(out)]
    model = open_model(str(en))
    assert tokens == [model.vocab.decode(greedy(model, [], 50))] * 3
    top_1 = ok("generate", en, "--num", 3, "--top-k", 1, "--json", "--seed", 5).stdout
    assert [r["tokens"] for r in json_lines(top_1)] == tokens


def test_no_unk(folder):
    path = folder / "tiny.npz"
    free = ok("generate", path, "--num", 200, "--seed", 0).stdout
    assert "<unk>" in free  # the model does emit it
    assert "<unk>" not in ok("generate", path, "--num", 200, "--seed", 0, "--no-unk").stdout


def test_generate_char_model_joins_characters(chars):
    records = json_lines(ok("generate", chars, "--num", 10, "--seed", 2, "--json",
                            "--prompt", "The ").stdout)
    for r in records:
        chars_out = "".join(t for t in r["tokens"] if t != "</s>").replace("\u2581", " ")
        assert r["text"] == "The " + chars_out


def test_prompts_from_a_file_or_stdin(en, tmp_path):
    (tmp_path / "prompts.txt").write_text("The market\n\nA zebra\n", encoding="utf-8")
    from_file = ok("generate", en, "--prompt-file", tmp_path / "prompts.txt", "--num", 2,
                   "--seed", 4, "--json")
    records = json_lines(from_file.stdout)
    assert [r["prompt"] for r in records] == ["The market"] * 2 + [""] * 2 + ["A zebra"] * 2
    assert from_file.stderr == (f"Warning: {tmp_path / 'prompts.txt'}: line 3: not in the "
                                "vocabulary, read as <unk>: zebra\n")
    from_stdin = ok("generate", en, "--prompt-file", "-", "--num", 2, "--seed", 4, "--json",
                    input="The market\n\nA zebra\n")
    assert from_stdin.stdout == from_file.stdout
    both = json_lines(ok("generate", en, "--prompt", "I", "--prompt-file", "-", "--json",
                         input="We\n").stdout)
    assert [r["prompt"] for r in both] == ["I", "We"]


# -- bad input -----------------------------------------------------------------------------

USAGE = [
    (["generate", "{m}", "--top-p", "0"], "Invalid value for '--top-p': 0.0 is not in the "
                                         "range 0<x<=1."),
    (["generate", "{m}", "--top-p", "1.5"], "Invalid value for '--top-p': 1.5 is not in the "
                                           "range 0<x<=1."),
    (["generate", "{m}", "--temperature", "-1"], "Invalid value for '--temperature': -1.0 is "
                                                "not in the range x>=0."),
    (["generate", "{m}", "--top-k", "-1"], "Invalid value for '--top-k': -1 is not in the "
                                          "range x>=0."),
    (["generate", "{m}", "--num", "0"], "Invalid value for '-n' / '--num': 0 is not in the "
                                       "range x>=1."),
    (["generate", "{m}", "--max-tokens", "0"], "Invalid value for '--max-tokens': 0 is not "
                                              "in the range x>=1."),
    (["generate", "{m}", "--seed", "-3"], "Invalid value for '--seed': -3 is not in the "
                                         "range x>=0."),
    (["complete", "{m}", "x", "--top", "-2"], "Invalid value for '--top': -2 is not in the "
                                             "range x>=0."),
    (["complete", "{m}", "x", "--beam", "0"], "Invalid value for '--beam': 0 is not in the "
                                             "range x>=1."),
    (["complete", "{m}", "x", "--max-tokens", "0"], "Invalid value for '--max-tokens': 0 is "
                                                   "not in the range x>=1."),
    (["complete", "{m}", "x", "--top", "0", "--max-tokens", "2"],
     "--top 0 (every next token) needs --max-tokens 1"),
]


@pytest.mark.parametrize("args,message", USAGE, ids=[" ".join(a[2:]) for a, _ in USAGE])
def test_usage_errors(en, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*[a.format(m=en) for a in args])
    assert_fails(result, 2, "Error: " + message)
    assert result.stderr.startswith(f"Usage: cli {args[0]} ")


def test_errors(en, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_fails(run("complete", "nope.npz", "x"), 1, "Error: nope.npz: no such file")
    assert_fails(run("generate", "nope.npz"), 1, "Error: nope.npz: no such file")
    assert_fails(run("generate", en, "--prompt-file", "nope.txt"), 1,
                 "Error: nope.txt: no such file")
    assert_fails(run("complete", en, input=b"The \xff\n"), 1,
                 "Error: <stdin>: line 1: invalid UTF-8 (use --encoding-errors replace to "
                 "go on)")
    assert_fails(run("generate", en, "--prompt-file", "-", input=b"\xfe\n"), 1,
                 "Error: <stdin>: line 1: invalid UTF-8 (use --encoding-errors replace to "
                 "go on)")
    replaced = ok("complete", en, "--encoding-errors", "replace", input=b"The \xff\n")
    assert replaced.stdout.startswith("The \ufffd\t")


# -- pipes ----------------------------------------------------------------------------------

class Reader:
    """Lines of a child's stdout, read by a thread, each awaited with a timeout."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout=30):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no answer: the line was not flushed") from None


@pytest.mark.parametrize("extra,lines_per_answer", [(["--top", "2"], 2), (["--json"], 1)])
def test_complete_works_as_a_coprocess(en, extra, lines_per_answer):
    child = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", "complete", str(en), *extra],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        reader = Reader(child.stdout)
        for prefix in ("The market", "A cat sat on"):
            child.stdin.write(prefix + "\n")
            child.stdin.flush()  # stdin stays open: the answer must come before EOF
            answer = [reader.get() for _ in range(lines_per_answer)]
            assert all(line.startswith(prefix + "\t") or
                       json.loads(line)["prefix"] == prefix for line in answer), answer
        child.stdin.close()
        assert reader.get() is None
        assert child.wait(timeout=30) == 0
        assert child.stderr.read() == ""
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("command", [
    "complete {m} --top 3 < prefixes.txt",
    "complete {m} --top 0 --json < prefixes.txt",
    "generate {m} --num 20000 --seed 1",
    "generate {m} --prompt-file prefixes.txt --num 3 --json",
])
def test_closed_stdout_is_quiet(en, tmp_path, command):
    words = "the cat sat on mat dog log a and train leaves at noon".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 6)) for _ in range(5000)]
    (tmp_path / "prefixes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shell = (f"{sys.executable} -m rnnlm_cli {command.format(m=en)} 2>err.txt | head -1")
    done = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1
    errors = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in errors and "Exception ignored" not in errors, errors
    assert not [line for line in errors.splitlines() if not line.startswith("Warning:")]
