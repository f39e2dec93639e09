"""ARPA back-off files, in and out (the format of SRILM, KenLM and most ASR toolkits).

An ARPA file lists, per order, ``log10 p(w | h)``, the words, and (below the top order)
``log10 bow``. We read files written by KenLM or SRILM (plain or gzipped) into the same
trie tables ``smoothing`` builds, and write our tables back out. Following SRILM, a log10
value of -99 or below stands for probability zero. ``<s>`` is never predicted, whatever
probability a file gives it.
"""
from __future__ import annotations

import gzip
import io
import math
import re
from typing import BinaryIO, Dict, List, TextIO, Tuple

import numpy as np

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.smoothing import BackoffTables
from rnnlm_cli.vocab import SPECIALS, Vocabulary

LN10 = math.log(10.0)
LOG10_ZERO = -99.0


def _open_text(path: str) -> TextIO:
    raw = open(path, "rb")
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
    return io.TextIOWrapper(stream, encoding="utf-8")


# -- reading ---------------------------------------------------------------------------

def read_arpa(path: str) -> NgramModel:
    """Load an ARPA file as an ``NgramModel``; a malformed file raises ``ModelFileError``."""
    try:
        with _open_text(path) as text:
            declared, sections = _parse(path, text)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read ARPA file ({exc})") from None
    order = len(declared)
    for n in range(1, order + 1):
        if len(sections.get(n, ([], [], []))[0]) != declared[n - 1]:
            raise ModelFileError(f"{path}: \\data\\ declares {declared[n - 1]} {n}-grams, "
                                 f"found {len(sections.get(n, ([],))[0])}")
    vocab = _vocabulary(sections[1][0])
    tables = _tables(path, vocab, order, sections)
    metadata = {"model_type": "ngram", "order": order, "smoothing": "arpa",
                "source": path, "tokenizer": {"kind": "whitespace", "level": "word",
                                              "lowercase": False}}
    return NgramModel(vocab, tables, metadata)


def _parse(path: str, text: TextIO):
    declared: List[int] = []
    sections: Dict[int, Tuple[list, list, list]] = {}
    current = None
    for lineno, line in enumerate(text, 1):
        line = line.strip(" \t\r\n\f\v")
        if not line:
            continue
        if line.startswith("\\"):
            current = _section(path, lineno, line, declared)
            if current:
                sections[current] = ([], [], [])
            continue
        if current is None:
            if line.startswith("ngram ") and "=" in line:
                declared.append(_count(path, lineno, line))
            continue
        prob, words, backoff = _fields(line, current)
        if words is None:
            raise ModelFileError(f"{path}: line {lineno}: a {current}-gram entry needs a "
                                 f"probability, {current} word{'s' if current > 1 else ''} "
                                 "and an optional back-off weight")
        grams, probs, bows = sections[current]
        grams.append(words)
        probs.append(_log10(path, lineno, prob))
        bows.append(0.0 if backoff is None else _log10(path, lineno, backoff))
    if not declared or 1 not in sections:
        raise ModelFileError(f"{path}: not an ARPA file (no \\data\\ header or no 1-grams)")
    return declared, sections


_ASCII_SPACE = re.compile(r"[ \t\r\f\v]+")


def _fields(line: str, n: int):
    """(log10 prob, words, log10 backoff or None) of an n-gram entry; words None if malformed.

    KenLM and SRILM put tabs between the columns and single spaces between the words;
    other tools use spaces throughout. Only ASCII whitespace separates: a word may hold
    a no-break or ideographic space, as the tokenizer leaves it.
    """
    if "\t" in line:
        columns = line.split("\t")
        words = tuple(_ASCII_SPACE.split(columns[1].strip(" "))) if len(columns) > 1 else ()
        if len(columns) > 3 or len(words) != n:
            return None, None, None
        return columns[0], words, columns[2].strip(" ") if len(columns) == 3 else None
    fields = _ASCII_SPACE.split(line)
    if len(fields) not in (n + 1, n + 2):
        return None, None, None
    return fields[0], tuple(fields[1: n + 1]), fields[n + 1] if len(fields) == n + 2 else None


def _count(path: str, lineno: int, line: str) -> int:
    value = line.split("=", 1)[1].strip()
    if not value.isdigit():
        raise ModelFileError(f"{path}: line {lineno}: bad n-gram count '{value}' in \\data\\")
    return int(value)


def _section(path: str, lineno: int, line: str, declared: List[int]):
    if line in ("\\data\\", "\\end\\"):
        return None
    if line.endswith("-grams:"):
        try:
            n = int(line[1:].split("-")[0])
        except ValueError:
            raise ModelFileError(f"{path}: line {lineno}: bad section header '{line}'") from None
        if not 1 <= n <= len(declared):
            raise ModelFileError(f"{path}: line {lineno}: {n}-grams not declared in \\data\\")
        return n
    raise ModelFileError(f"{path}: line {lineno}: bad section header '{line}'")


def _log10(path: str, lineno: int, field: str) -> float:
    try:
        value = float(field)
    except ValueError:
        raise ModelFileError(f"{path}: line {lineno}: {field!r} is not a number") from None
    return -math.inf if value <= LOG10_ZERO else value


def _vocabulary(unigrams: List[tuple]) -> Vocabulary:
    words = list(SPECIALS) + [g[0] for g in unigrams if g[0] not in SPECIALS]
    return Vocabulary(words)


def _tables(path: str, vocab: Vocabulary, order: int, sections) -> BackoffTables:
    size = len(vocab)
    keys = [np.arange(size, dtype=np.uint64)]
    logprob = [np.full(size, -np.inf)]
    backoff = [np.zeros(size)]
    grams, probs, bows = sections[1]
    ids = np.array([vocab.index[g[0]] for g in grams], dtype=np.int64)
    logprob[0][ids] = np.array(probs) * LN10
    backoff[0][ids] = np.array(bows) * LN10
    logprob[0][vocab.bos_id] = -np.inf
    partial = BackoffTables(1, size, keys, logprob, backoff)
    for n in range(2, order + 1):
        grams, probs, bows = sections[n]
        words = np.array([[vocab.index.get(w, -1) for w in g] for g in grams],
                         dtype=np.int64).reshape(len(grams), n)
        if (words < 0).any():
            raise ModelFileError(f"{path}: a {n}-gram holds a word missing from the 1-grams")
        partial.order = n - 1
        lookup = NgramModel(vocab, partial, {}).lookup
        rows = words[:, 0]
        for j in range(2, n):
            rows = lookup(j, rows, words[:, j - 1])
        if (rows < 0).any():
            raise ModelFileError(f"{path}: a {n}-gram's context is missing from the "
                                 f"{n - 1}-grams (pruned ARPA files of this kind are not "
                                 "supported)")
        key = rows.astype(np.uint64) * np.uint64(size) + words[:, -1].astype(np.uint64)
        sort = np.argsort(key, kind="stable")
        keys.append(key[sort])
        logprob.append(np.array(probs)[sort] * LN10)
        backoff.append(np.array(bows)[sort] * LN10)
    return BackoffTables(order, size, keys, logprob, backoff[: order - 1])


# -- writing ---------------------------------------------------------------------------

def write_arpa(model: NgramModel, binary_out: BinaryIO, compress: bool = False) -> None:
    """Write ``model`` in ARPA format (log10 values), gzipped if ``compress``."""
    raw = gzip.GzipFile(fileobj=binary_out, mode="wb") if compress else binary_out
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    _write_text(model, out)
    out.flush()
    out.detach()                 # leave the file itself to the caller
    if compress:
        raw.close()              # writes the gzip trailer


def _write_text(model: NgramModel, out: TextIO) -> None:
    tables, words = model.tables, np.array(model.vocab.words, dtype=object)
    out.write("\\data\\\n")
    for n in range(1, tables.order + 1):
        out.write(f"ngram {n}={tables.keys[n - 1].size}\n")
    size = np.uint64(len(words))
    grams = np.arange(len(words), dtype=np.int64)[:, None]    # (rows, n) word ids
    for n in range(1, tables.order + 1):
        if n > 1:    # a key is prefix row * |V| + last word (see counting.py)
            keys = tables.keys[n - 1]
            grams = np.concatenate([grams[(keys // size).astype(np.int64)],
                                    (keys % size).astype(np.int64)[:, None]], 1)
        out.write(f"\n\\{n}-grams:\n")
        probs = _to_log10(tables.logprob[n - 1])
        if n == 1:
            probs[model.vocab.bos_id] = LOG10_ZERO
        bows = _to_log10(tables.backoff[n - 1]) if n < tables.order else None
        text = [" ".join(words[g]) for g in grams]
        if bows is None:
            out.writelines(f"{p:.8g}\t{t}\n" for p, t in zip(probs.tolist(), text))
        else:
            out.writelines(f"{p:.8g}\t{t}\t{b:.8g}\n"
                           for p, t, b in zip(probs.tolist(), text, bows.tolist()))
    out.write("\n\\end\\\n")


def _to_log10(natural: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(natural, dtype=np.float64) / LN10, LOG10_ZERO)
