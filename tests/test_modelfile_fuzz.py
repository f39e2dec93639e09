"""Fuzzing of model files through ``rnnlm perplexity``: mutations of a valid small n-gram
and RNN ``.npz`` (bit flips, truncation, swapped and duplicated members, edited ``.npy``
and zip headers). Each mutant must either load and score, printing the usual summary, or
be refused with one ``Error:`` line and exit 1: never a traceback.

Derandomized with a bounded number of examples, so CI runs the same cases in a few seconds.
"""
from __future__ import annotations

import os
import struct
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from test_cli_errors import assert_ok, run, write
from zip_surgery import SMALL_CORPUS, TEXT, members, npy_claiming

# RNNLM_FUZZ_EXAMPLES=5000 (and RNNLM_FUZZ_SEED) for a long run by hand.
EXAMPLES = int(os.environ.get("RNNLM_FUZZ_EXAMPLES", 60))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="RNNLM_FUZZ_SEED" not in os.environ, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
KINDS = ["kn.npz", "rnn.npz"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The two valid models, the text to score, and room for the mutants."""
    path = tmp_path_factory.mktemp("fuzz")
    corpus = write(path / "corpus.txt", SMALL_CORPUS)
    write(path / "text.txt", TEXT)
    assert_ok(run("train-ngram", corpus, "-o", path / "kn.npz"))
    assert_ok(run("train-rnn", corpus, "-o", path / "rnn.npz", "--hidden", "4", "--embed",
                  "4", "--epochs", "1", "--batch-size", "2", "--bptt", "5"))
    return path


def assert_scores_or_refuses(folder, data: bytes):
    """Score ``text.txt`` with the model ``data``: the summary, or one Error line."""
    mutant = write(folder / "mutant.npz", data)
    result = run("perplexity", mutant, folder / "text.txt")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    if result.exit_code == 0:
        assert result.stdout.splitlines()[0] == "sentences: 2", output
        assert result.stdout.splitlines()[1] == "tokens: 15 (including </s>)", output
        assert result.stdout.splitlines()[-1].startswith("perplexity excluding OOVs: "), output
    else:
        assert result.exit_code == 1, output
        assert result.stdout == ""
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.stderr


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_bit_flips(folder, kind, data):
    model = bytearray((folder / kind).read_bytes())
    for _ in range(data.draw(st.integers(1, 8), "flips")):
        at = data.draw(st.integers(0, len(model) - 1), "at")
        model[at] ^= 1 << data.draw(st.integers(0, 7), "bit")
    assert_scores_or_refuses(folder, bytes(model))


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_bit_flips_in_headers_and_metadata(folder, kind, data):
    """Flips where they matter most: the first bytes of each member (zip local header,
    .npy header), the central directory, and the metadata."""
    model = bytearray((folder / kind).read_bytes())
    spots = sensitive_offsets(bytes(model))
    for _ in range(data.draw(st.integers(1, 4), "flips")):
        at = data.draw(st.sampled_from(spots), "at")
        model[at] ^= 1 << data.draw(st.integers(0, 7), "bit")
    assert_scores_or_refuses(folder, bytes(model))


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_truncation(folder, kind, fraction):
    model = (folder / kind).read_bytes()
    assert_scores_or_refuses(folder, model[:int(len(model) * fraction)])


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_swapped_and_duplicated_members(folder, kind, data):
    contents = members(folder / kind)
    names = list(contents)
    first, second = (data.draw(st.sampled_from(names), label) for label in ("a", "b"))
    items = list(contents.items())
    if data.draw(st.booleans(), "swap"):
        contents[first], contents[second] = contents[second], contents[first]
        items = list(contents.items())
    else:
        items.append((first, contents[second]))   # a second member of the same name
    order = data.draw(st.permutations(range(len(items))), "order")
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), "method")
    assert_scores_or_refuses(folder, archive_bytes(folder, [items[i] for i in order], method))


DTYPES = ["<f8", "<f4", "<u8", "<i8", "|u1", "<f2", "<c16", "|b1", "<U3", "|V8", "|O", ">f8",
          "<M8[s]"]


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_edited_npy_headers(folder, kind, data):
    contents = members(folder / kind)
    name = data.draw(st.sampled_from(list(contents)), "member")
    old = contents[name]
    header_end = old.index(b"\n") + 1
    shape = tuple(data.draw(st.lists(st.one_of(st.integers(0, 40), st.just(10 ** 12)),
                                     max_size=3), "shape"))
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    body = old[header_end:] if data.draw(st.booleans(), "keep body") else \
        old[header_end:header_end + data.draw(st.integers(0, 64), "size")]
    contents[name] = npy_claiming(shape, dtype, body)
    method = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), "method")
    assert_scores_or_refuses(folder, archive_bytes(folder, list(contents.items()), method))


# Fields of a local header ("PK\3\4") and a central directory entry ("PK\1\2"):
# (offset, struct format) of flags, method, CRC, sizes, name and extra lengths, offset.
LOCAL_FIELDS = [(6, "<H"), (8, "<H"), (14, "<I"), (18, "<I"), (22, "<I"), (26, "<H"),
                (28, "<H")]
CENTRAL_FIELDS = [(8, "<H"), (10, "<H"), (16, "<I"), (20, "<I"), (24, "<I"), (28, "<H"),
                  (30, "<H"), (42, "<I")]
END_FIELDS = [(8, "<H"), (10, "<H"), (12, "<I"), (16, "<I")]      # of "PK\5\6"


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_edited_zip_headers(folder, kind, data):
    model = bytearray((folder / kind).read_bytes())
    for _ in range(data.draw(st.integers(1, 3), "edits")):
        signature, fields = data.draw(st.sampled_from([
            (b"PK\x03\x04", LOCAL_FIELDS), (b"PK\x01\x02", CENTRAL_FIELDS),
            (b"PK\x05\x06", END_FIELDS)]), "header")
        starts = find_all(bytes(model), signature)
        if not starts:
            continue
        start = data.draw(st.sampled_from(starts), "which")
        offset, fmt = data.draw(st.sampled_from(fields), "field")
        bits = struct.calcsize(fmt) * 8
        value = data.draw(st.one_of(st.integers(0, 16), st.integers(0, (1 << bits) - 1),
                                    st.just((1 << bits) - 1)), "value")
        struct.pack_into(fmt, model, start + offset, value)
    assert_scores_or_refuses(folder, bytes(model))


def archive_bytes(folder, items, method) -> bytes:
    path = folder / "rebuilt.npz"
    with zipfile.ZipFile(path, "w", method) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")      # zipfile warns of a duplicate name
        for name, data in items:
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data,
                             compress_type=method)
    return path.read_bytes()


def find_all(data: bytes, needle: bytes) -> list:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def sensitive_offsets(data: bytes) -> list:
    spots = []
    for start in find_all(data, b"PK\x03\x04") + find_all(data, b"\x93NUMPY"):
        spots.extend(range(start, min(start + 128, len(data))))
    central = data.rfind(b"PK\x01\x02")
    first_central = data.find(b"PK\x01\x02")
    spots.extend(range(first_central if first_central >= 0 else central, len(data)))
    meta = data.rfind(b"__meta__.npy")
    spots.extend(range(meta, min(meta + 4096 + 600, len(data))))
    return sorted(set(spots))
