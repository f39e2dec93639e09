"""Every bad input of the n-gram commands, through the CLI.

Each failure must exit non-zero (1 for library errors, 2 for usage errors), print exactly
one ``Error: ...`` line on stderr (pinned here for library errors), never a traceback, and
leave no output file or ``.rnnlm-*.tmp`` temporary behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_runner
from rnnlm_cli.cli import cli

CORPUS = (
    "The cat sat on the mat.\n"
    "The dog sat on the log.\n"
    "A cat and a dog met on the mat.\n"
    "The train leaves at noon.\n"
    "The dog likes the cat.\n"
)
TEXT = "The cat sat on the log.\nA dog met the train.\n"


# -- helpers -------------------------------------------------------------------------------

def run(*args, input=None):
    return cli_runner().invoke(cli, [str(a) for a in args], input=input)


def assert_ok(result):
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code == 0, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not any(line.startswith("Error:") for line in result.stderr.splitlines())


def assert_fails(result, code, message=None, contains=(), folder=None, absent=()):
    """``message``: the whole ``Error:`` line; ``contains``: parts of it (usage errors)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == code, (result.exit_code, output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    if message is not None:
        assert errors[0] == message
    for part in contains:
        assert part in errors[0], errors[0]
    assert result.stdout == ""
    folder = Path(folder if folder is not None else os.getcwd())
    assert not list(folder.glob(".rnnlm-*.tmp")), list(folder.iterdir())
    for name in absent:
        assert not (folder / name).exists(), name


def write(path: Path, text) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A Kneser-Ney model (.npz and .arpa) and an MLE model, trained once."""
    folder = tmp_path_factory.mktemp("models")
    corpus = write(folder / "corpus.txt", CORPUS)
    assert_ok(run("train-ngram", corpus, "-o", folder / "kn.npz", "--arpa", folder / "kn.arpa"))
    assert_ok(run("train-ngram", corpus, "-o", folder / "mle.npz", "--smoothing", "mle"))
    return folder


@pytest.fixture
def work(tmp_path, monkeypatch, models):
    """``tmp_path`` as the current folder, holding corpus.txt, text.txt, a model copy."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "corpus.txt", CORPUS)
    write(tmp_path / "text.txt", TEXT)
    for name in ("kn.npz", "kn.arpa", "mle.npz"):
        shutil.copy(models / name, tmp_path / name)
    return tmp_path


def model_arrays(path="kn.npz") -> dict:
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def metadata_of(arrays: dict) -> dict:
    return json.loads(bytes(arrays["__meta__"]).decode("utf-8"))


def with_metadata(arrays: dict, metadata) -> dict:
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    return dict(arrays, __meta__=np.frombuffer(raw, dtype=np.uint8))


BAD_UTF8 = b"The cat sat.\nThe dog sat.\nThe \xff\xfe bird.\nThe end.\n"


# -- train-ngram: bad corpora --------------------------------------------------------------

def test_train_missing_corpus(work):
    assert_fails(run("train-ngram", "nope.txt", "-o", "m.npz"), 1,
                 "Error: nope.txt: no such file", absent=["m.npz"])


def test_train_empty_corpus(work):
    write(work / "empty.txt", "")
    assert_fails(run("train-ngram", "empty.txt", "-o", "m.npz"), 1,
                 "Error: empty.txt: file is empty", absent=["m.npz"])


def test_train_only_blank_lines(work):
    write(work / "blank.txt", "\n\n   \n\t\n")
    assert_fails(run("train-ngram", "blank.txt", "-o", "m.npz"), 1,
                 "Error: blank.txt: no words to train on (empty, or only blank lines)",
                 absent=["m.npz"])


def test_train_undecodable_names_file_and_line(work):
    write(work / "bad.txt", BAD_UTF8)
    assert_fails(run("train-ngram", "bad.txt", "-o", "m.npz"), 1,
                 "Error: bad.txt: line 3: invalid UTF-8 (use --encoding-errors replace to go on)",
                 absent=["m.npz"])


def test_train_undecodable_with_replace_succeeds(work):
    write(work / "bad.txt", BAD_UTF8)
    result = run("train-ngram", "bad.txt", "-o", "m.npz", "--encoding-errors", "replace")
    assert_ok(result)
    assert (work / "m.npz").is_file()
    assert not list(work.glob(".rnnlm-*.tmp"))


def test_train_undecodable_stdin(work):
    result = run("train-ngram", "-", "-o", "m.npz", input=BAD_UTF8)
    assert_fails(result, 1, "Error: <stdin>: line 3: invalid UTF-8 "
                            "(use --encoding-errors replace to go on)", absent=["m.npz"])


def test_failed_training_leaves_existing_model_unchanged(work):
    before = (work / "kn.npz").read_bytes()
    write(work / "bad.txt", BAD_UTF8)
    assert_fails(run("train-ngram", "bad.txt", "-o", "kn.npz"), 1,
                 "Error: bad.txt: line 3: invalid UTF-8 (use --encoding-errors replace to go on)")
    assert (work / "kn.npz").read_bytes() == before


def test_failed_training_on_empty_corpus_leaves_existing_model_unchanged(work):
    before = (work / "kn.npz").read_bytes()
    write(work / "blank.txt", "\n\n")
    assert_fails(run("train-ngram", "blank.txt", "-o", "kn.npz"), 1,
                 "Error: blank.txt: no words to train on (empty, or only blank lines)")
    assert (work / "kn.npz").read_bytes() == before


# -- train-ngram: bad options ---------------------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["--order", "0"], "'--order'"),
    (["--order", "21"], "'--order'"),
    (["--add-k", "0"], "'--add-k'"),
    (["--add-k", "-1"], "'--add-k'"),
    (["--prune", "a,b"], "'--prune'"),
    (["--prune", "1.5"], "'--prune'"),
    (["--min-count", "0"], "'--min-count'"),
    (["--max-vocab", "3"], "'--max-vocab'"),
    (["--smoothing", "good-turing"], "'--smoothing'"),
    (["--encoding-errors", "ignore"], "'--encoding-errors'"),
])
def test_train_usage_errors(work, args, option):
    result = run("train-ngram", "corpus.txt", "-o", "m.npz", *args)
    assert_fails(result, 2, contains=["Invalid value for", option], absent=["m.npz"])
    assert "Usage:" in result.stderr


def test_train_prune_not_a_number_names_the_value(work):
    result = run("train-ngram", "corpus.txt", "-o", "m.npz", "--prune", "x")
    assert_fails(result, 2, "Error: Invalid value for '--prune': 'x' is not a whole number",
                 absent=["m.npz"])


def test_train_prune_decreasing(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--prune", "2,1"), 1,
                 "Error: --prune thresholds must be non-negative and non-decreasing",
                 absent=["m.npz"])


def test_train_prune_too_many_thresholds(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--order", "2",
                     "--prune", "0,1"), 1,
                 "Error: --prune takes at most 1 thresholds (orders 2..2), not 2",
                 absent=["m.npz"])


def test_train_prune_with_mle(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--prune", "1",
                     "--smoothing", "mle"), 1,
                 "Error: --prune works with --smoothing kneser-ney only", absent=["m.npz"])


def test_train_missing_output_option(work):
    assert_fails(run("train-ngram", "corpus.txt"), 2, contains=["'-o' / '--output'"])


def test_train_output_is_a_directory(work):
    (work / "out").mkdir()
    result = run("train-ngram", "corpus.txt", "-o", "out")
    assert_fails(result, 2, "Error: Invalid value for '-o' / '--output': "
                            "File 'out' is a directory.")
    assert not list((work / "out").iterdir())


def test_train_output_in_missing_folder(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "nodir/m.npz"), 1,
                 "Error: nodir/m.npz: cannot write: No such file or directory")
    assert not (work / "nodir").exists()


def test_train_arpa_is_a_directory(work):
    (work / "out").mkdir()
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "out"), 2,
                 "Error: Invalid value for '--arpa': File 'out' is a directory.",
                 absent=["m.npz"])


def test_train_arpa_in_missing_folder_leaves_no_model(work):
    assert_fails(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "nodir/m.arpa"), 1,
                 "Error: nodir/m.arpa: cannot write: No such file or directory",
                 absent=["m.npz"])


def test_train_arpa_failure_leaves_existing_model_unchanged(work):
    before = (work / "kn.npz").read_bytes()
    result = run("train-ngram", "corpus.txt", "-o", "kn.npz", "--order", "2",
                 "--arpa", "nodir/m.arpa")
    assert_fails(result, 1, "Error: nodir/m.arpa: cannot write: No such file or directory")
    assert (work / "kn.npz").read_bytes() == before


# -- perplexity: bad model files ------------------------------------------------------------

def test_perplexity_missing_model(work):
    assert_fails(run("perplexity", "nope.npz", "text.txt"), 1, "Error: nope.npz: no such file")


def test_perplexity_model_is_a_directory(work):
    (work / "d.npz").mkdir()
    assert_fails(run("perplexity", "d.npz", "text.txt"), 1, "Error: d.npz: is a directory")


def test_perplexity_foreign_npz(work):
    rng = np.random.default_rng(0)
    np.savez(work / "random.npz", a=rng.random(5), b=rng.integers(0, 9, (3, 4)))
    assert_fails(run("perplexity", "random.npz", "text.txt"), 1,
                 "Error: random.npz: not an rnnlm model (no metadata in the archive)")


def test_perplexity_truncated_model(work):
    data = (work / "kn.npz").read_bytes()
    write(work / "half.npz", data[: len(data) // 2])
    assert_fails(run("perplexity", "half.npz", "text.txt"), 1,
                 "Error: half.npz: not a model file (not an .npz archive, or truncated)")


def test_perplexity_truncated_compressed_model(work):
    np.savez_compressed(work / "c.npz", **model_arrays())
    data = (work / "c.npz").read_bytes()
    write(work / "c_half.npz", data[: len(data) * 3 // 4])
    assert_fails(run("perplexity", "c_half.npz", "text.txt"), 1,
                 "Error: c_half.npz: not a model file (not an .npz archive, or truncated)")


def test_perplexity_compressed_model_is_read(work):
    np.savez_compressed(work / "c.npz", **model_arrays())
    plain, compressed = (run("perplexity", m, "text.txt") for m in ("kn.npz", "c.npz"))
    assert_ok(compressed)
    assert compressed.stdout == plain.stdout


class _Trap:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_perplexity_all_arrays_pickled(work):
    objects = np.array([{"a": 1}], dtype=object)
    np.savez(work / "pickled.npz", **{name: objects for name in model_arrays()})
    assert_fails(run("perplexity", "pickled.npz", "text.txt"), 1,
                 "Error: pickled.npz: array '__meta__' holds Python objects (pickled data); "
                 "refused")


@pytest.mark.parametrize("name", ["vocab_words", "logprob_1", "keys_3", "__meta__"])
def test_perplexity_one_pickled_array_is_never_unpickled(work, name):
    marker = work / "UNPICKLED"
    arrays = model_arrays()
    arrays[name] = np.array([_Trap(str(marker))], dtype=object)
    np.savez(work / "trap.npz", **arrays)
    assert_fails(run("perplexity", "trap.npz", "text.txt"), 1,
                 f"Error: trap.npz: array '{name}' holds Python objects (pickled data); "
                 "refused")
    assert not marker.exists()


def test_perplexity_newer_format_version(work):
    arrays = model_arrays()
    np.savez(work / "v999.npz", **with_metadata(arrays, dict(metadata_of(arrays),
                                                             format_version=999)))
    assert_fails(run("perplexity", "v999.npz", "text.txt"), 1,
                 "Error: v999.npz: made by a newer rnnlm (format version 999; this one reads "
                 "up to 1): upgrade rnnlm")


def test_perplexity_format_version_zero(work):
    arrays = model_arrays()
    np.savez(work / "v0.npz", **with_metadata(arrays, dict(metadata_of(arrays),
                                                           format_version=0)))
    assert_fails(run("perplexity", "v0.npz", "text.txt"), 1,
                 "Error: v0.npz: corrupt model: format version 0")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""])
def test_perplexity_metadata_not_json(work, raw):
    np.savez(work / "m.npz", **with_metadata(model_arrays(), raw))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: corrupt model: metadata is not JSON")


@pytest.mark.parametrize("metadata", [[1, 2], {"model_type": "ngram"}, {"format_version": "1"}])
def test_perplexity_metadata_without_version(work, metadata):
    np.savez(work / "m.npz", **with_metadata(model_arrays(), metadata))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: corrupt model: metadata has no format version")


def test_perplexity_unknown_model_type(work):
    arrays = model_arrays()
    np.savez(work / "m.npz", **with_metadata(arrays, dict(metadata_of(arrays),
                                                          model_type="transformer")))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: unknown model type 'transformer'")


@pytest.mark.parametrize("order", ["3", 0, 21])
def test_perplexity_bad_order_in_metadata(work, order):
    arrays = model_arrays()
    np.savez(work / "m.npz", **with_metadata(arrays, dict(metadata_of(arrays), order=order)))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 f"Error: m.npz: corrupt model: bad order {order!r}")


def test_perplexity_order_larger_than_arrays(work):
    arrays = model_arrays()
    np.savez(work / "m.npz", **with_metadata(arrays, dict(metadata_of(arrays), order=4)))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: corrupt model: array 'backoff_3' is missing")


@pytest.mark.parametrize("name", ["vocab_words", "logprob_1", "keys_2", "logprob_3"])
def test_perplexity_missing_array(work, name):
    arrays = model_arrays()
    del arrays[name]
    np.savez(work / "m.npz", **arrays)
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 f"Error: m.npz: corrupt model: array '{name}' is missing")


def test_perplexity_vocabulary_index_that_does_not_fit(work):
    arrays = model_arrays()
    word = [k for k in arrays if k.startswith("vocab_index") and k.endswith("_word")][0]
    arrays[word] = arrays[word][:-1]
    np.savez(work / "m.npz", **arrays)
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: corrupt model: the stored vocabulary index does not fit the "
                 "vocabulary")


def test_perplexity_array_of_wrong_dtype(work):
    arrays = model_arrays()
    arrays["logprob_2"] = arrays["logprob_2"].astype(np.int32)
    np.savez(work / "m.npz", **arrays)
    shape = arrays["logprob_2"].shape
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 f"Error: m.npz: corrupt model: array 'logprob_2' has dtype int32 and "
                 f"shape {shape}")


def test_perplexity_array_of_wrong_rank(work):
    arrays = model_arrays()
    arrays["logprob_1"] = arrays["logprob_1"].reshape(1, -1)
    np.savez(work / "m.npz", **arrays)
    shape = arrays["logprob_1"].shape
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 f"Error: m.npz: corrupt model: array 'logprob_1' has dtype float64 and "
                 f"shape {shape}")


def test_perplexity_arrays_of_different_lengths(work):
    arrays = model_arrays()
    arrays["logprob_2"] = arrays["logprob_2"][:3]
    np.savez(work / "m.npz", **arrays)
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 "Error: m.npz: corrupt model: 2-gram arrays differ in length")


def test_perplexity_metadata_without_tokenizer(work):
    arrays = model_arrays()
    metadata = metadata_of(arrays)
    del metadata["tokenizer"]
    np.savez(work / "m.npz", **with_metadata(arrays, metadata))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 contains=["Error: m.npz: corrupt model: ", "tokenizer"])


@pytest.mark.parametrize("tokenizer", ["regex", {"kind": "bogus"},
                                       {"kind": "regex", "level": "word", "colour": "red"}])
def test_perplexity_metadata_with_bad_tokenizer(work, tokenizer):
    arrays = model_arrays()
    np.savez(work / "m.npz", **with_metadata(arrays, dict(metadata_of(arrays),
                                                          tokenizer=tokenizer)))
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 contains=["Error: m.npz: corrupt model: ", "tokenizer"])


def test_perplexity_undecodable_vocabulary(work):
    arrays = model_arrays()
    arrays["vocab_words"] = np.frombuffer(b"\xff\xfe\x00abc", dtype=np.uint8)
    np.savez(work / "m.npz", **arrays)
    assert_fails(run("perplexity", "m.npz", "text.txt"), 1,
                 contains=["Error: m.npz: corrupt model: "])


@pytest.mark.parametrize("name", ["plain.npz", "corpus.txt"])
def test_perplexity_text_file_as_model(work, name):
    if name == "plain.npz":
        write(work / name, "this is not a model\n")
    assert_fails(run("perplexity", name, "text.txt"), 1,
                 f"Error: {name}: not a model file (not an .npz archive, or truncated)")


# -- perplexity: bad text -------------------------------------------------------------------

def test_perplexity_missing_text(work):
    assert_fails(run("perplexity", "kn.npz", "nope.txt"), 1, "Error: nope.txt: no such file")


def test_perplexity_missing_second_text(work):
    assert_fails(run("perplexity", "kn.npz", "text.txt", "nope.txt"), 1,
                 "Error: nope.txt: no such file")


def test_perplexity_empty_text(work):
    write(work / "empty.txt", "")
    assert_fails(run("perplexity", "kn.npz", "empty.txt"), 1, "Error: empty.txt: file is empty")


def test_perplexity_empty_stdin(work):
    assert_fails(run("perplexity", "kn.npz", input=""), 1, "Error: <stdin>: file is empty")


def test_perplexity_only_blank_lines(work):
    write(work / "blank.txt", "\n  \n\n")
    assert_fails(run("perplexity", "kn.npz", "blank.txt"), 1,
                 "Error: blank.txt: only blank lines; nothing to score")


def test_perplexity_undecodable_text(work):
    write(work / "bad.txt", BAD_UTF8)
    assert_fails(run("perplexity", "kn.npz", "bad.txt"), 1,
                 "Error: bad.txt: line 3: invalid UTF-8 (use --encoding-errors replace to go on)")


def test_perplexity_undecodable_text_with_replace(work):
    write(work / "bad.txt", BAD_UTF8)
    result = run("perplexity", "kn.npz", "bad.txt", "--encoding-errors", "replace")
    assert_ok(result)
    assert "sentences: 4" in result.stdout


# -- perplexity: malformed ARPA files -------------------------------------------------------

ARPA_CASES = {
    "no header": ("hello world\n", "Error: {}: not an ARPA file (no \\data\\ header or no 1-grams)"),
    "bad section header": ("\\data\\\nngram 1=2\n\n\\1grams\n-1.0\t</s>\n",
                           "Error: {}: line 4: bad section header '\\1grams'"),
    "undeclared order": ("\\data\\\nngram 1=1\n\n\\2-grams:\n-1.0\t<s> </s>\n",
                         "Error: {}: line 4: 2-grams not declared in \\data\\"),
    "too many fields": ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\t0\n"
                        "-1.0\ta b c d\n\n\\end\\\n",
                        "Error: {}: line 6: a 1-gram entry needs a probability, 1 word and an optional back-off weight"),
    "too few fields": ("\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1.0\t<s>\t0\n"
                       "-1.0\t</s>\t0\n\n\\2-grams:\n-1.0\t<s>\n\n\\end\\\n",
                       "Error: {}: line 10: a 2-gram entry needs a probability, 2 words and an optional back-off weight"),
    "not a number": ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t</s>\nxx\t<s>\n\\end\\\n",
                     "Error: {}: line 6: 'xx' is not a number"),
    "count mismatch": ("\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0\t</s>\n-1.0\t<s>\t0\n\\end\\\n",
                       "Error: {}: \\data\\ declares 5 1-grams, found 2"),
    "unknown word in bigram": ("\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1.0\t</s>\n"
                               "-1.0\t<s>\t0\n\n\\2-grams:\n-1.0\t<s> zz\n\\end\\\n",
                               "Error: {}: line 10: the 2-gram '<s> zz' holds a word missing from the 1-grams"),
}


@pytest.mark.parametrize("case", list(ARPA_CASES))
def test_perplexity_malformed_arpa(work, case):
    text, message = ARPA_CASES[case]
    write(work / "bad.arpa", text)
    assert_fails(run("perplexity", "bad.arpa", "text.txt"), 1, message.format("bad.arpa"))


def test_perplexity_truncated_arpa(work):
    lines = (work / "kn.arpa").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if line.startswith("\\3-grams:")) + 2
    write(work / "cut.arpa", "".join(lines[:cut]) + lines[cut].split("\t")[0] + "\n")
    assert_fails(run("perplexity", "cut.arpa", "text.txt"), 1,
                 f"Error: cut.arpa: line {cut + 1}: a 3-gram entry needs a probability, 3 words and an optional back-off weight")


def test_perplexity_missing_arpa(work):
    assert_fails(run("perplexity", "nope.arpa", "text.txt"), 1, "Error: nope.arpa: no such file")


def test_perplexity_undecodable_arpa(work):
    write(work / "bad.arpa", b"\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\t\xff\xfe\n\\end\\\n")
    assert_fails(run("perplexity", "bad.arpa", "text.txt"), 1,
                 contains=["Error: bad.arpa: cannot read ARPA file ("])


def test_perplexity_corrupt_gzip_arpa(work):
    write(work / "bad.arpa.gz", b"\x1f\x8bnot really gzip")
    assert_fails(run("perplexity", "bad.arpa.gz", "text.txt"), 1,
                 contains=["Error: bad.arpa.gz: cannot read ARPA file ("])


@pytest.mark.parametrize("count", ["abc", "", "1.5"])
def test_perplexity_arpa_with_bad_count(work, count):
    write(work / "bad.arpa", f"\\data\\\nngram 1={count}\n\n\\1-grams:\n-1.0\t</s>\n"
                             "-1.0\t<s>\t0\n\\end\\\n")
    assert_fails(run("perplexity", "bad.arpa", "text.txt"), 1,
                 f"Error: bad.arpa: line 2: bad n-gram count '{count}' in \\data\\")


def test_good_arpa_is_read(work):
    # pre-tokenized, so that the ARPA model's whitespace tokenizer reads it as kn.npz does
    write(work / "tokens.txt", "The cat sat on the log .\nA dog met the train .\n")
    npz, arpa = (run("perplexity", m, "tokens.txt") for m in ("kn.npz", "kn.arpa"))
    assert_ok(arpa)
    assert arpa.stdout == npz.stdout


# -- MLE: probability zero --------------------------------------------------------------------

def _strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(line, parse_constant=refuse)


def test_mle_unseen_word_gives_infinite_perplexity(work):
    write(work / "unseen.txt", "The zebra sat on the mat.\n")
    result = run("perplexity", "mle.npz", "unseen.txt")
    assert_ok(result)
    assert "perplexity: inf\n" in result.stdout
    assert "Warning:" in result.stderr and "infinite" in result.stderr
    assert "Traceback" not in result.stderr


def test_mle_unseen_word_json_is_strict(work):
    write(work / "unseen.txt", "The zebra sat on the mat.\nThe cat sat on the mat.\n")
    result = run("perplexity", "mle.npz", "unseen.txt", "--json", "--per-sentence",
                 "--per-token")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    records = [_strict_json(line) for line in lines]
    assert records[0]["perplexity"] is None
    assert records[1]["perplexity"] is not None   # the seen sentence
    assert records[-1]["perplexity"] is None and records[-1]["logprob"] is None
    assert records[-1]["sentences"] == 2
    assert "Warning:" in result.stderr and "infinite" in result.stderr


def test_mle_unseen_word_json_summary(work):
    result = run("perplexity", "mle.npz", "--json", input="The zebra sat.\n")
    assert_ok(result)
    record = _strict_json(result.stdout)
    assert record["perplexity"] is None
    assert record["oovs"] == 1
    assert "Warning:" in result.stderr


# -- a closed stdout --------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--json"], ["--per-token"]])
def test_closed_stdout_is_quiet(work, extra):
    words = "the cat sat on mat dog log a and train leaves at noon".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 8)) for _ in range(20000)]
    write(work / "big.txt", "\n".join(lines) + "\n")
    command = " ".join([sys.executable, "-m", "rnnlm_cli", "perplexity", "kn.npz", "big.txt",
                        "--per-sentence", *extra, "2>err.txt", "|", "head", "-1"])
    done = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1
    errors = (work / "err.txt").read_text()
    assert "Traceback" not in errors
    assert "BrokenPipe" not in errors
    assert "Exception ignored" not in errors
