"""Model files from anyone, through the CLI: devices and FIFOs, claimed shapes and zip
bombs, hostile metadata, encryption and foreign compression, CRC errors, broken
invariants, and a model rewritten in place under a running ``complete``.

Each refusal is one pinned ``Error: ...`` line and exit 1, never a traceback, and never
more memory than the file holds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_cli_errors import assert_fails, assert_ok, run, write
from zip_surgery import (SMALL_CORPUS, TEXT, members, npy, npy_claiming, resave, set_crc,
                         set_flag_bits, set_method, write_zip)

RNNLM = [sys.executable, "-m", "rnnlm_cli"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An order-3 Kneser-Ney model and a tiny RNN model, trained once."""
    folder = tmp_path_factory.mktemp("untrusted")
    corpus = write(folder / "corpus.txt", SMALL_CORPUS)
    assert_ok(run("train-ngram", corpus, "-o", folder / "kn.npz"))
    assert_ok(run("train-rnn", corpus, "-o", folder / "rnn.npz", "--hidden", "8",
                  "--epochs", "1", "--batch-size", "2", "--bptt", "5"))
    return folder


@pytest.fixture
def work(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("kn.npz", "rnn.npz"):
        write(tmp_path / name, (models / name).read_bytes())
    write(tmp_path / "text.txt", TEXT)
    return tmp_path


def perplexity_fails(path, message):
    assert_fails(run("perplexity", path, "text.txt"), 1, message)


# -- 1. devices and FIFOs -------------------------------------------------------------------

NOT_REGULAR = "not a regular file (a device, FIFO or socket); a model must be a file"


@pytest.mark.parametrize("command", [["perplexity"], ["generate"], ["complete"]])
def test_a_device_is_refused(work, command):
    args = command[:1] + ["/dev/zero"] + (["x"] if command[0] == "complete" else [])
    assert_fails(run(*args), 1, f"Error: /dev/zero: {NOT_REGULAR}")


@pytest.mark.parametrize("command", ["perplexity", "generate", "complete"])
def test_a_fifo_is_refused_without_waiting_for_a_writer(work, command):
    os.mkfifo("fifo.npz")
    args = [command, "fifo.npz"] + (["text.txt"] if command == "perplexity" else [])
    done = subprocess.run(RNNLM + args, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr == f"Error: fifo.npz: {NOT_REGULAR}\n"


def test_dev_stdin_holding_a_model_is_refused(work):
    done = subprocess.run(RNNLM + ["perplexity", "/dev/stdin", "text.txt"],
                          input=(work / "kn.npz").read_bytes(), capture_output=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.decode() == f"Error: /dev/stdin: {NOT_REGULAR}\n"


def test_a_fifo_named_like_an_arpa_file_is_refused(work):
    os.mkfifo("fifo.arpa")
    done = subprocess.run(RNNLM + ["perplexity", "fifo.arpa", "text.txt"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, f"Error: fifo.arpa: {NOT_REGULAR}\n")


# -- 2. claimed shapes and zip bombs -----------------------------------------------------------

def test_a_header_claiming_a_huge_shape_is_refused_before_reading(work):
    contents = members("kn.npz")
    contents["logprob_1.npy"] = npy_claiming((10 ** 12,), "<f8", b"\0" * 64)
    write_zip("huge.npz", contents)
    perplexity_fails("huge.npz", "Error: huge.npz: corrupt model: array 'logprob_1' claims "
                     "shape (1000000000000,) of float64 (8000000000000 bytes), but its "
                     "member holds 64")


def test_a_compressed_header_claiming_a_huge_shape_is_refused(work):
    contents = members("kn.npz")
    contents["logprob_1.npy"] = npy_claiming((10 ** 12,), "<f8", b"\0" * 64)
    write_zip("huge.npz", contents, zipfile_deflated())
    perplexity_fails("huge.npz", "Error: huge.npz: corrupt model: array 'logprob_1' claims "
                     "shape (1000000000000,) of float64 (8000000000000 bytes), but its "
                     "member holds 64")


def test_a_zip_bomb_is_refused_before_inflating(work):
    contents = members("kn.npz")
    contents["bomb.npy"] = npy(np.zeros(40 << 20, dtype=np.uint8))   # 40 MB of zeros: 40 kB
    write_zip("bomb.npz", contents, zipfile_deflated())
    size = os.path.getsize("bomb.npz")
    inflated = sum(len(data) for data in contents.values())
    perplexity_fails("bomb.npz", f"Error: bomb.npz: corrupt model: its compressed arrays "
                     f"claim {inflated} bytes, more than 32 times the file's {size} "
                     "(a zip bomb?); refused")


def test_a_compressed_model_within_the_ratio_loads(work):
    write_zip("deflated.npz", members("kn.npz"), zipfile_deflated())
    plain, deflated = (run("perplexity", name, "text.txt") for name in ("kn.npz",
                                                                        "deflated.npz"))
    assert_ok(deflated)
    assert deflated.stdout == plain.stdout


def zipfile_deflated():
    import zipfile
    return zipfile.ZIP_DEFLATED


# -- 3. metadata ----------------------------------------------------------------------------------

def test_deeply_nested_metadata_is_refused(work):
    contents = members("kn.npz")
    contents["__meta__.npy"] = npy(np.frombuffer(b"[" * 100_000, dtype=np.uint8))
    write_zip("deep.npz", contents)
    perplexity_fails("deep.npz", "Error: deep.npz: corrupt model: metadata is not JSON")


def test_metadata_with_a_number_of_many_digits_is_refused(work):
    contents = members("kn.npz")
    contents["__meta__.npy"] = npy(np.frombuffer(b"9" * 100_000, dtype=np.uint8))
    write_zip("digits.npz", contents)
    perplexity_fails("digits.npz", "Error: digits.npz: corrupt model: metadata is not JSON")


def test_huge_metadata_is_refused_before_reading(work):
    contents = members("kn.npz")
    meta = json.dumps({"format_version": 1, "pad": "x" * (5 << 20)}).encode()
    contents["__meta__.npy"] = npy(np.frombuffer(meta, dtype=np.uint8))
    write_zip("big.npz", contents)
    size = len(contents["__meta__.npy"])
    perplexity_fails("big.npz", f"Error: big.npz: corrupt model: metadata of {size} bytes "
                     "(at most 4 MB is read)")


def test_metadata_that_is_not_bytes_is_refused(work):
    contents = members("kn.npz")
    contents["__meta__.npy"] = npy(np.zeros(3))
    write_zip("floats.npz", contents)
    perplexity_fails("floats.npz", "Error: floats.npz: corrupt model: metadata is not text")


# -- 4. encryption, compression methods, CRCs --------------------------------------------------------

def test_an_encrypted_member_is_refused(work):
    write(Path("enc.npz"), set_flag_bits((work / "kn.npz").read_bytes(), "logprob_2.npy", 1))
    perplexity_fails("enc.npz", "Error: enc.npz: member 'logprob_2.npy' is encrypted; refused")


@pytest.mark.parametrize("method", [12, 14, 99])     # bzip2, lzma, no method at all
def test_a_foreign_compression_method_is_refused(work, method):
    write(Path("method.npz"), set_method((work / "kn.npz").read_bytes(), "logprob_2.npy", method))
    perplexity_fails("method.npz", f"Error: method.npz: member 'logprob_2.npy' uses "
                     f"compression method {method} (only stored and deflated are read)")


def test_a_crc_error_in_a_deflated_member_is_refused(work):
    write_zip("deflated.npz", members("kn.npz"), zipfile_deflated())
    write(Path("bad.npz"), set_crc((work / "deflated.npz").read_bytes(), "logprob_2.npy", 1234))
    perplexity_fails("bad.npz", "Error: bad.npz: corrupt model: Bad CRC-32 for file "
                     "'logprob_2.npy'")


def test_a_crc_error_in_a_stored_member_is_found_by_check_not_at_load(work):
    """Stored members are mapped, not read: their CRCs cost a read of the whole file, so
    only ``rnnlm check`` verifies them (the modelfile docstring)."""
    write(Path("bad.npz"), set_crc((work / "kn.npz").read_bytes(), "logprob_2.npy", 1234))
    assert_ok(run("perplexity", "bad.npz", "text.txt"))
    assert_fails(run("check", "bad.npz"), 1,
                 "Error: bad.npz: corrupt archive: Bad CRC-32 for file 'logprob_2.npy'")


def test_a_flipped_bit_in_stored_data_is_found_by_check(work):
    data = bytearray((work / "kn.npz").read_bytes())
    start = data.index(b"logprob_2.npy")
    data[data.index(b"\x93NUMPY", start) + 200] ^= 0x10   # a byte of the array's data
    write(Path("flip.npz"), bytes(data))
    assert_fails(run("check", "flip.npz"), 1,
                 "Error: flip.npz: corrupt archive: Bad CRC-32 for file 'logprob_2.npy'")


# -- 5. invariants of an n-gram model --------------------------------------------------------------

def corrupt(message):
    return f"Error: m.npz: corrupt model: {message}"


def test_order_that_disagrees_with_the_arrays(work):
    resave("kn.npz", "m.npz", lambda a, m: m.update(order=2))
    perplexity_fails("m.npz", corrupt("order 2 in the metadata, but the file holds array "
                                      "'backoff_2'"))


def test_a_key_whose_context_row_is_out_of_range(work):
    def edit(arrays, metadata):
        arrays["keys_3"][-1] = np.uint64(10 ** 9)
    resave("kn.npz", "m.npz", edit)
    rows, v = len(members_array("kn.npz", "keys_2")), len(vocab_of("kn.npz"))
    perplexity_fails("m.npz", corrupt(f"3-gram key {10 ** 9} names context row "
                                      f"{10 ** 9 // v} of {rows} 2-grams"))


@pytest.mark.parametrize("swap, what", [(True, "out of order"), (False, "twice")])
def test_unsorted_or_duplicate_keys_are_found_by_check(work, swap, what):
    def edit(arrays, metadata):
        keys = arrays["keys_2"]
        keys[0], keys[1] = (keys[1], keys[0]) if swap else (keys[0], keys[0])
    resave("kn.npz", "m.npz", edit)
    assert_ok(run("perplexity", "m.npz", "text.txt"))     # wrong numbers, in bounds
    assert_fails(run("check", "m.npz"), 1, corrupt(f"2-gram keys are {what} (at rows 0 and 1)"))


def test_a_nan_unigram_probability_is_refused_at_load(work):
    resave("kn.npz", "m.npz", lambda a, m: a["logprob_1"].__setitem__(5, np.nan))
    perplexity_fails("m.npz", corrupt("1-gram row 5 has log probability nan"))


@pytest.mark.parametrize("value", [np.nan, 0.5])
def test_a_bad_trigram_probability_is_found_by_check(work, value):
    resave("kn.npz", "m.npz", lambda a, m: a["logprob_3"].__setitem__(2, value))
    assert_fails(run("check", "m.npz"), 1, corrupt(f"3-gram row 2 has log probability {value}"))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_bad_backoff_is_refused(work, value):
    resave("kn.npz", "m.npz", lambda a, m: a["backoff_1"].__setitem__(3, value))
    perplexity_fails("m.npz", corrupt(f"1-gram row 3 has back-off weight {value}"))
    resave("kn.npz", "m.npz", lambda a, m: a["backoff_2"].__setitem__(3, value))
    assert_fails(run("check", "m.npz"), 1, corrupt(f"2-gram row 3 has back-off weight {value}"))


def test_a_word_twice_in_the_vocabulary_is_found_by_check(work):
    def edit(arrays, metadata):
        words = bytes(arrays["vocab_words"]).decode().split("\n")
        words[4] = words[3]
        arrays["vocab_words"] = np.frombuffer("\n".join(words).encode(), dtype=np.uint8)
    resave("kn.npz", "m.npz", edit)
    assert_fails(run("check", "m.npz"), 1, corrupt("a vocabulary holds each word once"))


def test_child_pointers_that_do_not_fit_are_refused(work):
    resave("kn.npz", "m.npz", lambda a, m: a.__setitem__("children_3", a["children_3"][:-1]))
    perplexity_fails("m.npz", corrupt("children_3 does not fit the 2-grams"))
    resave("kn.npz", "m.npz",
           lambda a, m: a.__setitem__("children_3", a["children_3"].astype(np.float64)))
    perplexity_fails("m.npz", corrupt("children_3 holds float64, not integers"))
    resave("kn.npz", "m.npz", lambda a, m: a.__setitem__("children_4", a["children_3"]))
    perplexity_fails("m.npz", corrupt("order 3 in the metadata, but the file holds array "
                                      "'children_4'"))


def test_wrong_child_pointers_stay_in_bounds_and_are_found_by_check(work):
    resave("kn.npz", "m.npz", lambda a, m: a["children_3"].__setitem__(
        slice(None), a["children_3"][::-1] * 1000 - 7))
    for command in (["perplexity", "m.npz", "text.txt", "--per-token"],
                    ["complete", "m.npz", "the cat"], ["generate", "m.npz", "--seed", "1"]):
        assert_ok(run(*command))                     # wrong numbers, read in bounds
    assert_fails(run("check", "m.npz"), 1,
                 corrupt("children_3 is not the trie of the 3-gram keys (at 2-gram row 0)"))


def test_a_model_without_child_pointers_makes_them_and_scores_the_same(work):
    """Files written before ``children_n`` existed (or by hand) still load."""
    resave("kn.npz", "m.npz", lambda a, m: a.pop("children_3"))
    assert "children_3.npy" not in members("m.npz")
    expected = run("perplexity", "kn.npz", "text.txt", "--per-token", "--json")
    assert_ok(expected)
    assert run("perplexity", "m.npz", "text.txt", "--per-token", "--json").stdout == \
        expected.stdout
    assert_ok(run("check", "m.npz"))


def members_array(path, name):
    with np.load(path) as npz:
        return npz[name]


def vocab_of(path):
    return bytes(members_array(path, "vocab_words")).decode().split("\n")


# -- 5b. invariants of an RNN model ----------------------------------------------------------------

def test_a_non_finite_rnn_weight_is_refused(work):
    def edit(arrays, metadata):
        name = next(n for n in arrays if arrays[n].dtype.kind == "f" and arrays[n].ndim == 2)
        arrays[name].flat[0] = np.nan
        edit.name = name
    resave("rnn.npz", "m.npz", edit)
    perplexity_fails("m.npz", corrupt(f"array '{edit.name}' holds NaN or infinite weights"))


def test_rnn_weights_that_do_not_fit_the_config_are_refused(work):
    resave("rnn.npz", "m.npz", lambda a, m: m["rnn_config"].update(hidden=9))
    result = run("perplexity", "m.npz", "text.txt")
    assert_fails(result, 1, contains=["Error: m.npz: corrupt model: array '", "not float and"])


# -- 6. a model rewritten in place under a running complete ------------------------------------------

@pytest.mark.parametrize("rewrite", ["truncate", "copy another model over it"])
def test_a_model_rewritten_in_place_does_not_crash_complete(work, rewrite):
    """A small model is read into memory, so a rewrite in place (not by rename) cannot
    pull pages from under the running process (SIGBUS): it goes on answering from the
    model it loaded."""
    other = work / "other.npz"
    assert_ok(run("train-ngram", "text.txt", "-o", other))
    process = subprocess.Popen(RNNLM + ["complete", "kn.npz", "--top", "2"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdin.write("The cat\n")
    process.stdin.flush()
    first = [process.stdout.readline(), process.stdout.readline()]
    if rewrite == "truncate":
        with open("kn.npz", "r+b") as model:
            model.truncate(0)
    else:
        with open("kn.npz", "r+b") as model:          # what cp does: same inode
            model.truncate(0)
            model.write(other.read_bytes())
    out, err = process.communicate("The cat\n", timeout=60)
    assert "Traceback" not in err
    assert process.returncode == 0, err
    assert out.splitlines() == [line.rstrip("\n") for line in first]


def test_an_arpa_file_with_a_nan_unigram_is_refused_at_load(work):
    assert_ok(run("train-ngram", "text.txt", "-o", "t.npz", "--arpa", "t.arpa"))
    lines = (work / "t.arpa").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("\tcat\t") or "\tcat\t" in line)
    lines[at] = "nan" + lines[at][lines[at].index("\t"):]
    write(work / "bad.arpa", "\n".join(lines) + "\n")
    assert_fails(run("perplexity", "bad.arpa", "text.txt"), 1,   # (the reader's own check)
                 contains=["Error: bad.arpa: line ", "log10 probability nan is not at most 0"])


# The command line with every model memory-mapped, as models over READ_LIMIT are.
MAPPED_CLI = [sys.executable, "-c", "import sys, rnnlm_cli.modelfile as m; m.READ_LIMIT = 0; "
              "from rnnlm_cli.cli import main; sys.argv[0] = 'rnnlm'; main()"]


@pytest.mark.parametrize("rewrite", ["truncate", "copy another model over it"])
def test_a_mapped_model_rewritten_in_place_stops_complete_with_one_line(work, rewrite):
    """A large model is memory-mapped (here: every model, READ_LIMIT 0); rewritten in place
    under a running ``complete``, the next line is refused with one Error line, before
    anything reads the changed pages (which could kill the process with SIGBUS)."""
    other = work / "other.npz"
    assert_ok(run("train-ngram", "text.txt", "-o", other, "--order", "2"))
    process = subprocess.Popen(MAPPED_CLI + ["complete", "kn.npz", "--top", "2"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdin.write("The cat\n")
    process.stdin.flush()
    first = [process.stdout.readline(), process.stdout.readline()]
    assert all(line.startswith("The cat\t") for line in first)
    with open("kn.npz", "r+b") as model:                     # what cp does: same inode
        model.truncate(0)
        if rewrite != "truncate":
            model.write(other.read_bytes())
    out, err = process.communicate("The cat\n", timeout=60)
    assert "Traceback" not in err
    assert process.returncode == 1, err
    assert out == ""
    assert err.strip().splitlines() == [
        "Error: kn.npz: rewritten in place while in use (replace a model by renaming a new "
        "file over it); start again to read the new one"]


def test_a_mapped_model_replaced_by_a_rename_goes_on(work):
    process = subprocess.Popen(MAPPED_CLI + ["complete", "kn.npz", "--top", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdin.write("The cat\n")
    process.stdin.flush()
    first = process.stdout.readline()
    assert_ok(run("train-ngram", "text.txt", "-o", "kn.npz", "--order", "2"))   # a rename
    out, err = process.communicate("The cat\n", timeout=60)
    assert process.returncode == 0, err
    assert out == first   # still the model it loaded
