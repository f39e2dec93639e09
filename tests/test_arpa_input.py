"""ARPA files as input, through the CLI: what a well-formed file may vary, and every
malformation we refuse with one ``Error:`` line naming the file (and the line, where
there is one), never a traceback.

The rules are in ``ngram/arpa.py`` (the comment above ``read_arpa``); the cases here
follow issue #12: the counts of ``\\data\\``, the values, the sections, duplicates, the
specials, file names, untokenized text, and ``train-ngram -o x.arpa``.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from conftest import cli_runner
from rnnlm_cli.cli import cli

GOOD = """\\data\\
ngram 1=5
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.5
-0.5\t</s>
-0.7\ta\t-0.3
-0.8\tb\t-0.2

\\2-grams:
-0.3\t<s> a
-0.4\ta b
-0.2\tb </s>
-0.5\ta </s>

\\end\\
"""
TEXT = "a b\nb a\n"


def run(*args, input=None):
    return cli_runner().invoke(cli, [str(a) for a in args], input=input)


def assert_ok(result):
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code == 0, result.stderr
    assert not any(line.startswith("Error:") for line in result.stderr.splitlines())


def assert_fails(result, message):
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 1, (result.exit_code, output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [message], result.stderr
    assert result.stdout == ""


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path


def lines_of(text: str = GOOD) -> list:
    return text.splitlines()


def perplexity(work: Path, text: str, name: str = "m.arpa"):
    data = text.encode("utf-8") if isinstance(text, str) else text
    (work / name).write_bytes(data)
    return run("perplexity", name, "text.txt")


def replaced(old: str, new: str, text: str = GOOD) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_the_good_file_is_read(work):
    result = perplexity(work, GOOD)
    assert_ok(result)
    assert "tokens: 6 (including </s>)" in result.stdout


# -- the counts of \data\ ---------------------------------------------------------------------

def test_counts_in_any_order(work):
    swapped = replaced("ngram 1=5\nngram 2=4", "ngram 2=4\nngram 1=5")
    assert perplexity(work, swapped).stdout == perplexity(work, GOOD).stdout


def test_a_missing_order(work):
    text = replaced("ngram 2=4", "ngram 3=4")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: \\data\\ declares 3-grams but no count of 2-grams")


def test_a_second_count_of_an_order(work):
    text = replaced("ngram 2=4", "ngram 1=5\nngram 2=4")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 3: a second count of 1-grams in \\data\\")


@pytest.mark.parametrize("order", ["0", "-1", "21", "999999999999999999999", "x", "1.0"])
def test_a_bad_order(work, order):
    text = replaced("ngram 2=4", f"ngram {order}=4")
    assert_fails(perplexity(work, text),
                 f"Error: m.arpa: line 3: bad n-gram order '{order[:40]}' in \\data\\ "
                 "(1 to 20)")


def test_a_huge_count(work):
    text = replaced("ngram 2=4", "ngram 2=" + "9" * 5000)
    assert_fails(perplexity(work, text),
                 f"Error: m.arpa: line 3: bad n-gram count '{'9' * 40}...' in \\data\\")


def test_a_count_line_that_is_not_one(work):
    text = replaced("ngram 2=4", "bigrams 4")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 3: expected 'ngram N=count' in \\data\\, not "
                 "'bigrams 4'")


def test_no_counts(work):
    text = replaced("ngram 1=5\nngram 2=4\n", "")
    assert_fails(perplexity(work, text), "Error: m.arpa: \\data\\ declares no n-gram counts")


def test_text_before_data_is_ignored(work):
    text = "# made by hand\nngram 1=99\nsome words\n\n" + GOOD
    assert perplexity(work, text).stdout == perplexity(work, GOOD).stdout


def test_a_byte_order_mark_is_ignored(work):
    assert perplexity(work, "\ufeff" + GOOD).stdout == perplexity(work, GOOD).stdout


# -- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1.5", "nan", "inf", "1e400", "NaN", "+0.1"])
def test_a_probability_above_zero_or_nan(work, value):
    text = replaced("-0.4\ta b", f"{value}\ta b")
    assert_fails(perplexity(work, text),
                 f"Error: m.arpa: line 14: log10 probability {value} is not at most 0")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-1e400"])
def test_a_back_off_that_is_not_finite(work, value):
    text = replaced("-0.7\ta\t-0.3", f"-0.7\ta\t{value}")
    assert_fails(perplexity(work, text),
                 f"Error: m.arpa: line 9: back-off weight {value} is not a finite number")


@pytest.mark.parametrize("value", ["-99", "-100", "-inf", "-1e400"])
def test_srilm_zero_probability(work, value):
    """-99 and below (and -inf) is probability zero: perplexity infinite, not an error."""
    text = replaced("-0.4\ta b", f"{value}\ta b")
    result = perplexity(work, text)
    assert_ok(result)
    assert "perplexity: inf\n" in result.stdout
    assert "probability zero" in result.stderr


def test_a_probability_of_exactly_zero_is_read(work):
    assert_ok(perplexity(work, replaced("-0.4\ta b", "0\ta b")))


def test_garbage_number(work):
    text = replaced("-0.4\ta b", "-0.4x\ta b")
    assert_fails(perplexity(work, text), "Error: m.arpa: line 14: '-0.4x' is not a number")


# -- sections ---------------------------------------------------------------------------------

def test_no_end(work):
    text = replaced("\\end\\\n", "")
    assert_fails(perplexity(work, text), "Error: m.arpa: no \\end\\ line: the file is truncated")


def test_truncated_in_the_middle(work):
    text = GOOD[:GOOD.index("-0.4\ta b")]
    assert_fails(perplexity(work, text), "Error: m.arpa: no \\end\\ line: the file is truncated")


def test_text_after_end_is_ignored(work):
    assert perplexity(work, GOOD + "trailing words\n").stdout == perplexity(work, GOOD).stdout


def test_sections_out_of_order(work):
    lines = lines_of()
    text = "\n".join(lines[:3] + lines[11:17] + lines[4:11] + lines[17:]) + "\n"
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 4: \\2-grams: where \\1-grams: was expected (sections "
                 "go in increasing order, each once)")


def test_a_section_twice(work):
    text = replaced("\\end\\", "\\2-grams:\n-0.3\t<s> b\n\n\\end\\")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 18: \\2-grams: where \\3-grams: was expected (sections "
                 "go in increasing order, each once)")


def test_a_section_of_an_undeclared_order(work):
    text = replaced("\\end\\", "\\3-grams:\n-0.3\t<s> a b\n\n\\end\\")
    assert_fails(perplexity(work, text), "Error: m.arpa: line 18: 3-grams not declared in \\data\\")


def test_a_declared_section_missing(work):
    text = replaced("ngram 2=4", "ngram 2=4\nngram 3=0")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: \\data\\ declares 3-grams but there is no \\3-grams: section")


def test_an_empty_declared_section_is_read(work):
    text = replaced("ngram 2=4", "ngram 2=4\nngram 3=0").replace("\\end\\", "\\3-grams:\n\n\\end\\")
    assert_ok(perplexity(work, text))


def test_a_second_data_header(work):
    text = replaced("\\2-grams:", "\\data\\")
    assert_fails(perplexity(work, text), "Error: m.arpa: line 12: bad section header '\\data\\'")


# -- duplicates, specials, contexts, words ----------------------------------------------------

def test_a_duplicate_unigram(work):
    text = replaced("-0.8\tb\t-0.2", "-0.8\ta\t-0.2")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 10: the 1-gram 'a' again (first on line 9)")


def test_a_duplicate_bigram(work):
    text = replaced("-0.5\ta </s>", "-0.5\ta b")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 16: the 2-gram 'a b' again (first on line 14)")


@pytest.mark.parametrize("marker, line", [("<s>", "-99\t<s>\t-0.5"), ("</s>", "-0.5\t</s>")])
def test_a_missing_sentence_marker(work, marker, line):
    text = replaced(line, "-0.9\tc").replace("<s> a", "c a").replace("b </s>", "b c") \
        .replace("a </s>", "a c")
    assert_fails(perplexity(work, text),
                 f"Error: m.arpa: no {marker} in the 1-grams (an ARPA model needs <s> and </s>)")


def test_a_missing_unk_makes_oovs_zero(work):
    """As KenLM (log10 -100): an OOV gets probability zero; excluding OOVs is finite."""
    text = replaced("-1.0\t<unk>\t0", "-0.9\tc")
    (work / "text.txt").write_text("a zebra\n", encoding="utf-8")
    result = perplexity(work, text)
    assert_ok(result)
    assert "perplexity: inf\n" in result.stdout
    assert "perplexity excluding OOVs: inf" not in result.stdout


def test_a_context_missing_from_the_lower_order(work):
    text = replaced("ngram 2=4", "ngram 2=4\nngram 3=1").replace(
        "\\end\\", "\\3-grams:\n-0.1\tb a b\n\n\\end\\")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 20: the context of the 3-gram 'b a b' is not among the "
                 "2-grams (pruned ARPA files of this kind are not supported)")


def test_an_empty_word(work):
    text = replaced("-0.4\ta b", "-0.4\t\t-0.1")
    assert_fails(perplexity(work, text),
                 "Error: m.arpa: line 14: a 2-gram entry needs a probability, 2 words and an "
                 "optional back-off weight")


def test_invalid_utf8_names_the_line(work):
    data = replaced("-0.8\tb\t-0.2", "-0.8\tb\udcff\t-0.2").encode("utf-8", "surrogateescape")
    assert_fails(perplexity(work, data),
                 "Error: m.arpa: cannot read ARPA file (line 10 is not UTF-8: byte 0xff)")


def test_invalid_utf8_in_a_gzipped_file(work):
    data = gzip.compress(GOOD.replace("\tb\t", "\tb\xff\t").encode("latin-1"))
    assert_fails(perplexity(work, data, "m.arpa.gz"),
                 "Error: m.arpa.gz: cannot read ARPA file (line 10 is not UTF-8: byte 0xff)")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_gzip_stream(work, cut):
    data = gzip.compress(GOOD.encode())
    result = perplexity(work, data[:int(len(data) * cut)], "m.arpa.gz")
    assert_fails(result, "Error: m.arpa.gz: cannot read ARPA file (Compressed file ended "
                         "before the end-of-stream marker was reached)")


def test_a_gzip_stream_with_a_bad_checksum(work):
    data = bytearray(gzip.compress(GOOD.encode()))
    data[-6] ^= 0xFF     # the CRC32 of the trailer
    result = perplexity(work, bytes(data), "m.arpa.gz")
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert_fails(result, error)
    assert error.startswith("Error: m.arpa.gz: cannot read ARPA file (CRC check failed ")


def test_crlf_line_ends(work):
    assert perplexity(work, GOOD.replace("\n", "\r\n")).stdout == perplexity(work, GOOD).stdout


# -- file names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["m.ARPA", "m.Arpa", "m.LM", "m.lm", "m.Arpa.gz", "m.LM.GZ"])
def test_arpa_suffixes_are_case_insensitive(work, name):
    data = gzip.compress(GOOD.encode()) if name.lower().endswith(".gz") else GOOD.encode()
    result = perplexity(work, data, name)
    assert_ok(result)
    assert result.stdout == perplexity(work, GOOD).stdout


def test_a_gzipped_arpa_without_gz_in_its_name(work):
    result = perplexity(work, gzip.compress(GOOD.encode()), "m.arpa")
    assert_ok(result)
    assert result.stdout == perplexity(work, GOOD, "plain.arpa").stdout


@pytest.mark.parametrize("name", ["m.ARPA", "m.LM", "m.arpa.gz"])
def test_generate_and_complete_read_arpa_names(work, name):
    data = gzip.compress(GOOD.encode()) if name.endswith(".gz") else GOOD.encode()
    (work / name).write_bytes(data)
    assert_ok(run("generate", name, "--seed", 1))
    assert_ok(run("complete", name, "a"))


# -- train-ngram -o x.arpa ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["m.arpa", "m.ARPA", "m.arpa.gz", "m.lm"])
def test_train_ngram_refuses_arpa_output(work, name):
    (work / "corpus.txt").write_text("a b\nb a\n", encoding="utf-8")
    assert_fails(run("train-ngram", "corpus.txt", "-o", name),
                 f"Error: {name}: -o writes an rnnlm .npz model, not an ARPA file; write "
                 f"ARPA with --arpa {name} (and -o MODEL.npz)")
    assert not (work / name).exists()
    assert not list(work.glob(".rnnlm-*.tmp"))


def test_train_ngram_with_arpa_option_still_works(work):
    (work / "corpus.txt").write_text("a b\nb a\n", encoding="utf-8")
    assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz", "--arpa", "m.ARPA"))
    assert_ok(run("perplexity", "m.ARPA", "text.txt"))
    assert os.path.getsize(work / "m.npz") > 0


# -- text that looks untokenized --------------------------------------------------------------

WARNING = ("Warning: the text looks untokenized (punctuation glued to words, as in '{}') but "
           "an ARPA model splits it at spaces only: tokenize it as the model's training text "
           "was, or score with the .npz model")


def warnings_of(result) -> list:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


@pytest.mark.parametrize("text, glued", [
    ("a b.\nb a.\n", "b."),
    ("a, b\n", "a,"),
    ("a b\nb sớm.\n", "sớm."),
])
def test_untokenized_text_gives_one_warning(work, text, glued):
    (work / "text.txt").write_text(text * 3, encoding="utf-8")
    result = perplexity(work, GOOD)
    assert_ok(result)
    assert warnings_of(result) == [WARNING.format(glued)]


@pytest.mark.parametrize("text", [
    "a b .\nb a , b\n",             # tokenized
    "a b\n" * 99 + "a b.\n",        # 1 glued token in 300: under 1 in 50
    "mr. a b\nu.s. b a\n3,000 a\n",  # abbreviations inside a line, numbers
])
def test_tokenized_text_gives_no_warning(work, text):
    (work / "text.txt").write_text(text, encoding="utf-8")
    result = perplexity(work, GOOD)
    assert_ok(result)
    assert warnings_of(result) == []


def test_no_warning_for_an_npz_model(work):
    """An .npz model knows its tokenizer: it reads raw text as it was trained."""
    (work / "corpus.txt").write_text("a b.\nb a.\n", encoding="utf-8")
    assert_ok(run("train-ngram", "corpus.txt", "-o", "m.npz"))
    (work / "text.txt").write_text("a b.\n", encoding="utf-8")
    result = run("perplexity", "m.npz", "text.txt")
    assert_ok(result)
    assert warnings_of(result) == []


def test_the_warning_is_printed_once_for_several_files(work):
    (work / "more.txt").write_text("b, a.\n", encoding="utf-8")
    (work / "text.txt").write_text("a b.\n", encoding="utf-8")
    (work / "m.arpa").write_text(GOOD, encoding="utf-8")
    result = run("perplexity", "m.arpa", "text.txt", "more.txt")
    assert_ok(result)
    assert warnings_of(result) == [WARNING.format("b.")]


def test_ptb_is_tokenized(shared):
    from rnnlm_cli.tokenizer import untokenized_example
    text = (shared / "corpora" / "ptb" / "test.txt").read_text(encoding="utf-8")
    assert untokenized_example(text) is None
