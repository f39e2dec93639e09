"""One vocabulary for train-ngram and train-rnn, so that their perplexities, OOVs included,
compare: the same --min-count / --max-vocab gives the same words and ids in both commands,
and --vocab-from MODEL takes the words of any model file. Tiny corpora, counted by hand;
the bad inputs through the CLI (one Error line, no output file). And train-rnn's chart of
perplexity per epoch: drawn on a terminal only."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from rnnlm_cli.modelfile import load_model, save_model
from rnnlm_cli.models import open_model
from test_cli_errors import assert_fails, assert_ok, run, write

SPECIALS = ["<unk>", "<s>", "</s>"]
TINY = ["--hidden", "4", "--epochs", "1", "--batch-size", "1", "--bptt", "3"]
COMMANDS = ["train-ngram", "train-rnn"]

# Counts (regex tokenizer): y 3, x 2, Z 2, w 1, v 1, X 1; first seen in the order
# x y Z w v X. Lower-cased: x 3, y 3, z 2, w 1, v 1.
CORPUS = "x y Z w\nZ y v\nX y x\n"
VALID = "y x\n"
M_TEXT = "a b a c\nb a d\n"     # a 3, b 2, c 1, d 1: with --min-count 2, the words a, b
N_TEXT = "d e e\nb e\n"         # e 3, d 1, b 1


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in (("corpus.txt", CORPUS), ("valid.txt", VALID), ("m.txt", M_TEXT),
                       ("n.txt", N_TEXT), ("v.txt", "e a\n")):
        write(tmp_path / name, text)
    return tmp_path


def train(command, *args):
    """Train with ``command``; train-rnn: a tiny network for one epoch, validated on
    v.txt, unless ``args`` say otherwise (the options given last win)."""
    extra = []
    if command == "train-rnn":
        extra = TINY + ([] if "--valid" in args else ["--valid", "v.txt"])
    result = run(command, *extra, *args)
    assert_ok(result)
    return result


def words(path) -> list:
    arrays, _ = load_model(str(path))
    return bytes(arrays["vocab_words"]).decode("utf-8").split("\n")


def counts(path) -> list:
    return load_model(str(path))[0]["vocab_counts"].tolist()


# -- the same options, the same words -----------------------------------------------------------

@pytest.mark.parametrize("options, expected", [
    ([], ["y", "x", "Z", "w", "v", "X"]),
    (["--min-count", "2"], ["y", "x", "Z"]),
    (["--max-vocab", "5"], ["y", "x"]),                       # x and Z tie at the cut: x first
    (["--lowercase"], ["x", "y", "z", "w", "v"]),
    (["--lowercase", "--max-vocab", "4"], ["x"]),             # x and y tie at 3: x first
    (["--tokenizer", "whitespace", "--min-count", "2"], ["y", "x", "Z"]),
    (["--level", "char", "--max-vocab", "6"], None),
])
def test_the_same_options_give_the_same_words_and_ids_in_both_commands(work, options,
                                                                       expected):
    train("train-ngram", "corpus.txt", "-o", "ngram.npz", *options)
    train("train-rnn", "corpus.txt", "-o", "rnn.npz", "--valid", "valid.txt", *options)
    assert words("rnn.npz") == words("ngram.npz")
    assert counts("rnn.npz") == counts("ngram.npz")
    if expected is not None:
        assert words("ngram.npz") == SPECIALS + expected


def test_without_valid_train_rnn_builds_its_words_from_the_lines_it_trains_on(work):
    """The default hold-out keeps the last line of three out of training, and so out of
    the vocabulary: the words are train-ngram's on the first two lines, not on all three."""
    write(work / "first-two.txt", "".join(CORPUS.splitlines(keepends=True)[:2]))
    assert_ok(run("train-rnn", "corpus.txt", "-o", "rnn.npz", *TINY))
    train("train-ngram", "first-two.txt", "-o", "two.npz")
    train("train-ngram", "corpus.txt", "-o", "all.npz")
    assert words("rnn.npz") == words("two.npz") == SPECIALS + ["y", "Z", "x", "w", "v"]
    assert words("all.npz") != words("rnn.npz")


# -- --vocab-from ---------------------------------------------------------------------------------

@pytest.fixture
def sources(work):
    """Models of every kind to take words from: n-gram .npz and ARPA (a, b), RNN (e, d, b),
    and their mixture (the union: a, b, e, d)."""
    train("train-ngram", "m.txt", "--min-count", "2", "-o", "m.npz", "--arpa", "m.arpa")
    train("train-rnn", "n.txt", "-o", "r.npz")
    assert_ok(run("mix", "m.npz", "r.npz", "-o", "mix.npz"))
    return {"m.npz": ["a", "b"], "m.arpa": ["a", "b"], "r.npz": ["e", "d", "b"],
            "mix.npz": ["a", "b", "e", "d"]}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("source", ["m.npz", "m.arpa", "r.npz", "mix.npz"])
def test_a_model_trained_with_vocab_from_has_exactly_its_words(sources, command, source):
    train(command, "corpus.txt", "--vocab-from", source, "-o", "new.npz")
    assert words("new.npz") == SPECIALS + sources[source]
    assert words("new.npz") == open_model(source).vocab.words
    # None of x, y, Z, w, v, X is a word of the source: all 10 tokens are <unk>.
    assert counts("new.npz") == [10] + [0] * (len(sources[source]) + 2)
    _, meta = load_model("new.npz")
    whitespace = source.endswith(".arpa")   # an ARPA file splits text at spaces only
    assert meta["tokenizer"]["kind"] == ("whitespace" if whitespace else "regex")
    recorded = meta["config"] if command == "train-ngram" else meta["corpus"]["vocabulary"]
    assert (recorded["vocab_from"], recorded["min_count"], recorded["max_vocab"]) == \
        (source, 1, None)


@pytest.mark.parametrize("command", COMMANDS)
def test_counts_are_the_new_corpus_and_a_word_it_lacks_keeps_its_id(sources, command):
    train(command, "n.txt", "--vocab-from", "m.npz", "-o", "new.npz")
    assert words("new.npz") == SPECIALS + ["a", "b"]
    assert counts("new.npz") == [4, 0, 0, 0, 1]     # <unk>: d, e, e, e; a never seen here
    lm = open_model("new.npz")
    probabilities = np.exp(lm.log_probs(lm.initial_state(1)))[0]
    assert probabilities[3] > 0 and probabilities.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("way", [["--vocab-from", "m.npz"], ["--min-count", "2"]])
def test_oovs_are_counted_alike_by_both_kinds_of_model(work, sources, way):
    """An n-gram model and an RNN with one vocabulary: the same tokens and OOVs per
    sentence. Text: 'a e <unk>' (e is an OOV; <unk> was seen in training, so it is a
    word) and 'b d' (d is an OOV), plus </s> each: 7 tokens, 2 OOVs."""
    corpus = "n.txt" if way[0] == "--vocab-from" else "m.txt"
    train("train-ngram", corpus, *way, "-o", "ngram.npz")
    train("train-rnn", corpus, *way, "-o", "rnn.npz")
    write(work / "text.txt", "a e <unk>\nb d\n")
    found = []
    for model in ("ngram.npz", "rnn.npz"):
        result = run("perplexity", model, "text.txt", "--per-sentence", "--json")
        assert_ok(result)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        found.append([(r.get("tokens"), r.get("oovs")) for r in records])
    assert found[0] == found[1] == [(4, 1), (3, 1), (7, 2)]


def test_train_rnn_takes_the_tokenizer_of_the_model(work):
    """A lower-casing model: the corpus is lower-cased too, without --lowercase."""
    write(work / "low.txt", "A b\nB a\n")
    write(work / "upper.txt", "A B c\n")
    train("train-ngram", "low.txt", "--lowercase", "-o", "low.npz")
    for extra in ([], ["--lowercase"], ["--tokenizer", "regex", "--level", "word"]):
        train("train-rnn", "upper.txt", "--vocab-from", "low.npz", *extra, "-o", "new.npz")
        _, meta = load_model("new.npz")
        assert meta["tokenizer"] == {"kind": "regex", "level": "word", "lowercase": True}
        assert words("new.npz") == SPECIALS + ["a", "b"]
        assert counts("new.npz") == [1, 0, 0, 1, 1]     # a, b lower-cased; c is <unk>


@pytest.mark.parametrize("command", COMMANDS)
def test_a_tokenizer_option_against_the_models_is_a_usage_error(work, command):
    write(work / "low.txt", "A b\n")
    train("train-ngram", "low.txt", "--lowercase", "-o", "low.npz")
    assert_fails(run(command, "corpus.txt", "--vocab-from", "low.npz", "--tokenizer",
                     "whitespace", "--level", "word", "-o", "new.npz"), 2,
                 contains=["Error: low.npz reads text with --tokenizer regex --level word "
                           "--lowercase, and --vocab-from reads the corpus the same way: "
                           "--tokenizer whitespace disagrees"], absent=["new.npz"])
    train("train-ngram", "low.txt", "-o", "cased.npz")
    assert_fails(run(command, "corpus.txt", "--vocab-from", "cased.npz", "--lowercase",
                     "-o", "new.npz"), 2,
                 contains=["(no --lowercase), and --vocab-from reads the corpus the same "
                           "way: --lowercase disagrees"], absent=["new.npz"])


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("option", [["--min-count", "2"], ["--min-count", "1"],
                                    ["--max-vocab", "10"]])
def test_vocab_from_with_min_count_or_max_vocab_is_a_usage_error(sources, command, option):
    assert_fails(run(command, "corpus.txt", "--vocab-from", "m.npz", *option, "-o", "new.npz"),
                 2, contains=["Error: --vocab-from takes the words of m.npz as they are: "
                              f"give it without {option[0]}"], absent=["new.npz"])


def bad_sources(folder):
    """``{name: its Error line}``: files --vocab-from must refuse, made in ``folder``."""
    write(folder / "notes.txt", "not a model\n")
    (folder / "adir").mkdir()
    whole = (folder / "m.npz").read_bytes()
    write(folder / "truncated.npz", whole[:len(whole) // 2])
    write(folder / "bad.arpa", "hello\n")
    arrays, meta = load_model(str(folder / "m.npz"))
    save_model(str(folder / "no-table.npz"),
               {k: v for k, v in arrays.items() if k != "logprob_2"}, meta)
    save_model(str(folder / "no-specials.npz"),
               {**arrays, "vocab_words": np.frombuffer(b"a\nb\nc\nd\ne", np.uint8)}, meta)
    return {
        "notes.txt": "notes.txt: not a model file (not an .npz archive, or truncated)",
        "nope.npz": "nope.npz: no such file",
        "adir": "adir: is a directory",
        "truncated.npz": "truncated.npz: not a model file (not an .npz archive, or truncated)",
        "bad.arpa": "bad.arpa: not an ARPA file (no \\data\\ header or no 1-grams)",
        "no-table.npz": "no-table.npz: corrupt model: array 'logprob_2' is missing",
        "no-specials.npz": "no-specials.npz: corrupt model: a vocabulary starts with "
                           "<unk>, <s>, </s>",
        "-": "-: a model is read from a file, not from standard input",
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_model_is_one_error_line(sources, work, command):
    for name, message in bad_sources(work).items():
        assert_fails(run(command, "corpus.txt", "--vocab-from", name, "-o", "new.npz"), 1,
                     f"Error: {message}", absent=["new.npz"])


@pytest.mark.parametrize("command", COMMANDS)
def test_the_output_may_not_be_the_vocabulary_source(work, sources, command):
    before = (work / "m.npz").read_bytes()
    assert_fails(run(command, "corpus.txt", "--vocab-from", "m.npz", "-o", "m.npz"), 1,
                 "Error: -o m.npz is m.npz, a file this run reads; writing it would "
                 "destroy it: give another file")
    assert (work / "m.npz").read_bytes() == before


def test_a_checkpoint_is_not_a_vocabulary_source(sources):
    train("train-rnn", "corpus.txt", "-o", "c.npz", "--checkpoint-every", "60")
    assert_fails(run("train-ngram", "corpus.txt", "--vocab-from", "c.checkpoint.npz", "-o",
                     "new.npz"), 1,
                 "Error: c.checkpoint.npz: a training checkpoint, not a model: take the "
                 "vocabulary of the model file (-o) it belongs to", absent=["new.npz"])


def test_resume_needs_the_vocab_from_the_run_was_made_with(sources):
    train("train-rnn", "corpus.txt", "--vocab-from", "m.npz", "-o", "a.npz",
          "--checkpoint-every", "60")
    train("train-rnn", "corpus.txt", "-o", "b.npz", "--checkpoint-every", "60")
    train("train-rnn", "corpus.txt", "--vocab-from", "m.npz", "-o", "a.npz", "--epochs", "2",
          "--resume", "a.checkpoint.npz")
    assert words("a.npz") == SPECIALS + ["a", "b"]
    assert_fails(run("train-rnn", *TINY, "--valid", "v.txt", "corpus.txt", "-o", "a.npz",
                     "--epochs", "3", "--resume", "a.checkpoint.npz"), 1,
                 "Error: a.checkpoint.npz: made with other options: --vocab-from m.npz "
                 "(here unset); resume with the options it was made with")
    assert_fails(run("train-rnn", *TINY, "--valid", "v.txt", "corpus.txt", "--vocab-from",
                     "m.npz", "-o", "b.npz", "--epochs", "2", "--resume", "b.checkpoint.npz"),
                 1,
                 "Error: b.checkpoint.npz: made with other options: --vocab-from unset "
                 "(here m.npz); resume with the options it was made with")


# -- the chart of perplexity per epoch -----------------------------------------------------------

RNN_TWO_EPOCHS = ["train-rnn", "corpus.txt", "--valid", "valid.txt", "-o", "m.npz",
                  "--hidden", "4", "--epochs", "2", "--batch-size", "1", "--bptt", "3"]


def test_off_a_terminal_no_chart_is_drawn(work):
    result = run(*RNN_TWO_EPOCHS)
    assert_ok(result)
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "m.npz"]
    assert "█" not in result.stderr and result.stdout == ""


def test_on_a_terminal_the_chart_follows_the_summary(work):
    """stderr a real pseudo-terminal (stdout a pipe): the chart, one row per epoch."""
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    process = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", *RNN_TWO_EPOCHS],
                               stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
                               env=env, cwd=work)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:          # EIO: every writer of the terminal has gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    stdout = process.stdout.read()
    process.stdout.close()
    assert process.wait() == 0 and stdout == b""
    text = seen.decode("utf-8").replace("\r\n", "\n")
    after = text[text.index("m.npz: 1-layer lstm model"):].splitlines()
    assert after[1].startswith("# perplexity per epoch (* the best validation); bars on a "
                               "log scale")
    assert after[2].split() == ["epoch", "train", "valid", "train", "valid"]
    history = load_model(str(work / "m.npz"))[1]["training"]["history"]
    rows = after[3:5]
    for row, record in zip(rows, history):
        assert row[1:6].strip() == str(record["epoch"])
        assert row[6:17].strip() == f"{record['train_ppl']:.2f}"
        assert row[17:28].strip() == f"{record['valid_ppl']:.2f}"
        assert "█" in row
    assert len(after) == 5


# -- the vocabulary alone is read -------------------------------------------------------------

ARPA = """\\data\\
ngram 1=5
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.5
-0.5\t</s>
-0.7\tb\t-0.3
-0.8\ta\t-0.2

\\2-grams:
-0.3\t<s> b
{bigram}

\\end\\
"""


def test_an_arpa_files_words_come_from_its_1_grams_alone(work):
    """A fault past the 1-grams (here a bigram whose probability is not a number) stops
    read_arpa, not read_arpa_vocabulary; a fault in the 1-grams stops both."""
    from rnnlm_cli.errors import ModelFileError
    from rnnlm_cli.models import open_vocabulary
    from rnnlm_cli.ngram.arpa import read_arpa
    write(work / "good.arpa", ARPA.format(bigram="-0.2\tb a"))
    write(work / "late.arpa", ARPA.format(bigram="x\tb a"))
    vocab, tokenizer = open_vocabulary("good.arpa")
    assert vocab.words == read_arpa("good.arpa").vocab.words == SPECIALS + ["b", "a"]
    assert tokenizer.kind == "whitespace"
    with pytest.raises(ModelFileError):
        read_arpa("late.arpa")
    assert open_vocabulary("late.arpa")[0].words == SPECIALS + ["b", "a"]
    for name, text, message in [
            ("short.arpa", ARPA.replace("ngram 1=5", "ngram 1=6"),
             "short.arpa: \\data\\ declares 6 1-grams, found 5"),
            ("twice.arpa", ARPA.replace("-0.8\ta", "-0.8\tb"),
             "twice.arpa: line 10: the 1-gram 'b' again (first on line 9)"),
            ("cut.arpa", ARPA[:ARPA.index("\\2-grams")],
             "cut.arpa: no \\end\\ line: the file is truncated")]:
        write(work / name, text.format(bigram="-0.2\tb a"))
        with pytest.raises(ModelFileError) as error:
            open_vocabulary(name)
        assert str(error.value) == message


def test_an_npz_models_words_are_read_without_building_the_model(sources, monkeypatch):
    """Neither backend builds its model (the n-gram tables, the RNN's network), nor is an
    ARPA file's n-gram table made: the words are read from the vocabulary arrays."""
    from rnnlm_cli.models import open_vocabulary
    from rnnlm_cli.ngram import arpa
    from rnnlm_cli.ngram.model import NgramModel
    from rnnlm_cli.rnn.model import RnnModel

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built")
    for owner, name in ((NgramModel, "from_arrays"), (RnnModel, "from_arrays"),
                        (arpa, "_tables")):
        monkeypatch.setattr(owner, name, refuse)
    for source, expected in sources.items():
        assert open_vocabulary(source)[0].words == SPECIALS + expected


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell", "add-k", "mle"])
def test_words_the_corpus_lacks_get_a_share_of_probability_that_sums_to_one(smoothing):
    """The words a, q of the fixed vocabulary never occur in 'd e e / b e': every method
    but MLE still gives them probability; every distribution sums to one. MLE by hand:
    after <s>, <unk> (d) and b half each; after b, <unk> (e) always."""
    from rnnlm_cli.ngram.training import NgramConfig, train_ngram
    from rnnlm_cli.vocab import Vocabulary
    fixed = Vocabulary(SPECIALS + ["a", "b", "q"])
    model = train_ngram([["d", "e", "e"], ["b", "e"]],
                        NgramConfig(order=2, smoothing=smoothing, vocab_from="fixed.npz"),
                        "corpus", {}, vocab=fixed)
    start = model.initial_state(1)
    after_b = model.advance(start, np.array([4]))
    for state in (start, after_b):
        p = np.exp(model.log_probs(state))[0]
        assert p.sum() == pytest.approx(1.0)
        unseen = p[[3, 5]]
        assert (unseen == 0).all() if smoothing == "mle" else (unseen > 0).all()
    if smoothing == "mle":
        assert np.exp(model.log_probs(start))[0] == pytest.approx([0.5, 0, 0, 0, 0.5, 0])
        assert np.exp(model.log_probs(after_b))[0] == pytest.approx([1, 0, 0, 0, 0, 0])
