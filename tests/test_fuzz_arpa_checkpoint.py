"""Fuzzing the two file readers a user may feed damaged files: ARPA models and training
checkpoints. Each mutation of a valid file must either load (and run) or give exactly one
``Error:`` line naming the file, exit 1, with nothing on stdout: never a traceback.

Hypothesis draws the mutations (``derandomize=True``: the same examples on every run, so
CI is reproducible), each test a few seconds.

- ARPA: lines deleted, duplicated, swapped or replaced by junk; a number turned into
  nan, inf, a huge value or garbage; the file truncated; bytes flipped; plain or gzipped.
- Checkpoint: bits flipped, the file truncated, members renamed onto each other or
  duplicated, values of the metadata JSON replaced by random JSON of any type.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnlm_cli.cli as cli_module
from conftest import CORPORA
from test_arpa_input import GOOD
from test_cli_errors import run

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def assert_loads_or_one_error(result, path):
    """Exit 0, or exit 1 with exactly one ``Error: PATH: ...`` line; never a traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code in (0, 1), (result.exit_code, output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    if result.exit_code == 0:
        assert errors == [], result.stderr
    else:
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith(f"Error: {path}: "), errors[0]
        assert result.stdout == ""


# -- ARPA ----------------------------------------------------------------------------------

NUMBERS = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", "99", "-99", "-100",
           "0", "-0", "1.5", "", "x", "--1", "0x10", "1" * 30, "-1e38"]
JUNK = ["", "\\data\\", "\\end\\", "\\1-grams:", "\\2-grams:", "\\3-grams:", "ngram 1=5",
        "ngram 2=4", "ngram 0=1", "-1\ta", "-1\ta b c", "-1\t<s> </s>", "\t\t", "#", "\ufeff",
        "-0.5\t\u00a0", "\\", "\\99-grams:"]


@st.composite
def arpa_mutations(draw):
    """GOOD with 1 to 3 line-level mutations, as text."""
    lines = GOOD.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "number", "junk"]))
        if kind == "delete":
            del lines[at]
        elif kind == "duplicate":
            lines.insert(at, lines[at])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif kind == "number":
            numbers = list(re.finditer(r"-?[0-9][0-9.e-]*", lines[at]))
            if numbers:
                found = draw(st.sampled_from(numbers))
                lines[at] = (lines[at][:found.start()] + draw(st.sampled_from(NUMBERS)) +
                             lines[at][found.end():])
        else:
            lines.insert(at, draw(st.sampled_from(JUNK)))
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@st.composite
def byte_mutations(draw, data: bytes):
    """``data`` truncated, or with 1 to 4 bytes XOR-ed with random values."""
    if draw(st.booleans()):
        return data[:draw(st.integers(0, len(data) - 1))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "text.txt").write_text("a b\nb a\n\n", encoding="utf-8")
    return folder


def score(folder, data: bytes, name: str):
    path = folder / name
    path.write_bytes(data)
    return run("perplexity", path, folder / "text.txt"), path


@FUZZ
@given(text=arpa_mutations())
def test_mutated_arpa_lines(folder, text):
    result, path = score(folder, text.encode("utf-8"), "m.arpa")
    assert_loads_or_one_error(result, path)


@FUZZ
@given(data=byte_mutations(GOOD.encode("utf-8")))
def test_mutated_arpa_bytes(folder, data):
    result, path = score(folder, data, "m.arpa")
    assert_loads_or_one_error(result, path)


@FUZZ
@given(text=arpa_mutations(), damage=st.booleans(), data=st.data())
def test_mutated_gzipped_arpa(folder, text, damage, data):
    packed = gzip.compress(text.encode("utf-8"), mtime=0)
    if damage:
        packed = data.draw(byte_mutations(packed))
    result, path = score(folder, packed, "m.arpa.gz")
    assert_loads_or_one_error(result, path)


# -- checkpoints -----------------------------------------------------------------------------

CORPUS = "".join(line + "\n" for line in
                 (CORPORA / "en" / "sentences.txt").read_text(encoding="utf-8").splitlines()[:40])
OPTIONS = ["--hidden", "8", "--batch-size", "4", "--bptt", "5", "--optimizer", "adam",
           "--lr", "0.01", "--epochs", "2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint saved after the last chunk of epoch 2, before its validation: it has
    every part, and resuming it costs one validation pass (fast for the fuzzer)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    (folder / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    chunk = cli_module._EpochReport.chunk

    def chunk_then_ctrl_c(self, progress):
        chunk(self, progress)
        if (progress.epoch, progress.position) == (2, progress.chunks):
            raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_module._EpochReport, "chunk", chunk_then_ctrl_c)
        result = run("train-rnn", folder / "corpus.txt", "-o", folder / "m.npz", *OPTIONS)
    assert result.exit_code == 130, result.stderr
    return folder


def resume(folder, data: bytes):
    path = folder / "bad.npz"
    path.write_bytes(data)
    result = run("train-rnn", folder / "corpus.txt", "-o", folder / "out.npz", *OPTIONS,
                 "--resume", path)
    return result, path


def members(data: bytes) -> list:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def archive(entries) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "Duplicate name": on purpose
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zipped:
            for name, content in entries:
                zipped.writestr(name, content)
    return out.getvalue()


@FUZZ
@given(data=st.data())
def test_checkpoint_bytes(checkpoint, data):
    good = (checkpoint / "m.checkpoint.npz").read_bytes()
    result, path = resume(checkpoint, data.draw(byte_mutations(good)))
    assert_loads_or_one_error(result, path)


@FUZZ
@given(data=st.data())
def test_checkpoint_members_swapped_or_duplicated(checkpoint, data):
    entries = members((checkpoint / "m.checkpoint.npz").read_bytes())
    names = [name for name, _ in entries]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(entries) - 1))
        j = data.draw(st.integers(0, len(entries) - 1))
        kind = data.draw(st.sampled_from(["swap contents", "duplicate", "rename", "drop"]))
        if kind == "swap contents":
            entries[i], entries[j] = (entries[i][0], entries[j][1]), (entries[j][0], entries[i][1])
        elif kind == "duplicate":
            entries.insert(j, entries[i])
        elif kind == "rename" and len(entries) > 1:
            entries[i] = (data.draw(st.sampled_from(names + ["x.npy", "net.npy"])), entries[i][1])
        elif len(entries) > 1:
            del entries[i]
    result, path = resume(checkpoint, archive(entries))
    assert_loads_or_one_error(result, path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) |
    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


def paths_in(value, prefix=()):
    """Every path (tuple of keys and indices) into nested JSON ``value``."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_in(item, prefix + (index,))


@FUZZ
@given(data=st.data())
def test_checkpoint_metadata_values(checkpoint, data):
    entries = members((checkpoint / "m.checkpoint.npz").read_bytes())
    at = next(i for i, (name, _) in enumerate(entries) if name == "__meta__.npy")
    raw = np.load(io.BytesIO(entries[at][1]))
    metadata = json.loads(bytes(raw).decode("utf-8"))
    for _ in range(data.draw(st.integers(1, 2))):
        where = data.draw(st.sampled_from([p for p in paths_in(metadata) if p]))
        target = metadata
        for key in where[:-1]:
            target = target[key]
        if data.draw(st.booleans()) or not isinstance(target, dict):
            target[where[-1]] = data.draw(JSON_VALUES)
        else:
            del target[where[-1]]
    blob = io.BytesIO()
    np.save(blob, np.frombuffer(json.dumps(metadata).encode(), np.uint8))
    entries[at] = ("__meta__.npy", blob.getvalue())
    result, path = resume(checkpoint, archive(entries))
    assert_loads_or_one_error(result, path)
