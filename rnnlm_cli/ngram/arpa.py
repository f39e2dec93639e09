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
import zlib
from typing import BinaryIO, Dict, List, Sequence, TextIO, Tuple

import numpy as np

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.smoothing import BackoffTables
from rnnlm_cli.ngram.training import MAX_ORDER
from rnnlm_cli.vocab import SPECIALS, Vocabulary

LN10 = math.log(10.0)
LOG10_ZERO = -99.0


def _open_binary(path: str) -> BinaryIO:
    """The file's bytes, gunzipped if it starts with gzip's magic (whatever its name)."""
    raw = open(path, "rb")
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    return gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw


def _open_text(path: str) -> TextIO:
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline="\n")


# -- reading ---------------------------------------------------------------------------
#
# The layout we accept, and what we do where the format leaves room (KenLM's reader is
# the model; each rule says where we differ):
#
# - Text before ``\data\`` is ignored: the ARPA format allows a preamble (SRILM reads
#   past it; KenLM allows only ``#`` comments there). Reading stops at ``\end\``; a file
#   without it is truncated, an error.
# - ``\data\`` holds one ``ngram N=count`` line per order N, in any order, from 1 up to
#   the model's order, each N once; then the sections ``\1-grams:``, ``\2-grams:``, ...
#   each once, in increasing order, with exactly the declared number of entries.
# - A log10 probability is at most 0 (-99 or below, and ``-inf``, mean zero, as in
#   SRILM); a back-off weight is finite (KenLM refuses NaN and infinities there too).
# - The 1-grams hold ``<s>`` and ``</s>``, as KenLM requires. Without ``<unk>`` an OOV
#   gets probability zero (KenLM gives it log10 -100, the same in practice).
# - Each n-gram appears once in its section; its context (all words but the last) is an
#   (n-1)-gram of the file. KenLM fills in missing contexts of pruned files; we refuse
#   them rather than guess a back-off.
# - Files are UTF-8; lines end at ``\n`` only, as KenLM reads them.

def read_arpa(path: str) -> NgramModel:
    """Load an ARPA file as an ``NgramModel``; a malformed file raises ``ModelFileError``."""
    declared, sections = _read(path, _parse)
    order = len(declared)
    for n in range(1, order + 1):
        _check_count(path, n, declared, sections[n])
    vocab = _vocabulary(path, sections[1])
    tables = _tables(path, vocab, order, sections)
    metadata = {"model_type": "ngram", "order": order, "smoothing": "arpa",
                "source": path, "tokenizer": dict(TOKENIZER)}
    return NgramModel(vocab, tables, metadata)


# How an ARPA model reads text: it does not say, so split at spaces, as KenLM does.
TOKENIZER = {"kind": "whitespace", "level": "word", "lowercase": False}


def read_arpa_vocabulary(path: str) -> Vocabulary:
    """The vocabulary ``read_arpa`` gives the file at ``path``, read from ``\\data\\`` and
    the 1-grams alone: the longer sections, most of a large file, are not read."""
    declared, unigrams = _read(path, _parse_unigrams, whole=False)
    _check_count(path, 1, declared, unigrams)
    return _vocabulary(path, unigrams)


def _read(path: str, parse, whole: bool = True):
    """``parse(path, text)`` of the file's text (then the rest of the file read, if
    ``whole``), its failures as ``ModelFileError``."""
    try:
        with _open_text(path) as text:
            parsed = parse(path, text)
            if whole:
                _read_to_the_end(text)
            return parsed
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: cannot read ARPA file ({_undecodable(path, exc)})") \
            from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ModelFileError(f"{path}: cannot read ARPA file ({exc})") from None


def _check_count(path: str, n: int, declared: Dict[int, int], section: "_Section") -> None:
    found = len(section.grams)
    if found != declared[n]:
        raise ModelFileError(f"{path}: \\data\\ declares {declared[n]} {n}-grams, "
                             f"found {found}")


def _read_to_the_end(text: TextIO) -> None:
    """Read the bytes after ``\\end\\`` (unparsed): a gzip stream checks its CRC at its end."""
    while text.buffer.read(1 << 20):
        pass


class _Section:
    """The entries of one ``\\N-grams:`` section, as read: words, log10 values, lines."""

    __slots__ = ("grams", "probs", "bows", "lines")

    def __init__(self):
        self.grams: List[tuple] = []
        self.probs: List[float] = []
        self.bows: List[float] = []
        self.lines: List[int] = []       # the line number of each entry, for errors


def _parse(path: str, text: TextIO):
    """``(declared counts by order, sections by order)`` of a whole ARPA file."""
    lines = enumerate(text, 1)
    _skip_preamble(path, lines)
    declared, header = _read_counts(path, lines)
    sections: Dict[int, _Section] = {}
    while header is not None:
        lineno, line = header
        if line == "\\end\\":
            break
        n = _section_order(path, lineno, line, declared, len(sections) + 1)
        sections[n] = _Section()
        header = _read_entries(path, lines, n, sections[n])
    else:
        raise ModelFileError(f"{path}: no \\end\\ line: the file is truncated")
    if len(sections) < len(declared):
        missing = len(sections) + 1
        raise ModelFileError(f"{path}: \\data\\ declares {missing}-grams but there is no "
                             f"\\{missing}-grams: section")
    return declared, sections


def _parse_unigrams(path: str, text: TextIO):
    """``(declared counts by order, the 1-gram section)``: ``_parse`` up to the end of the
    1-grams (which must be followed by another section or ``\\end\\``)."""
    lines = enumerate(text, 1)
    _skip_preamble(path, lines)
    declared, header = _read_counts(path, lines)
    if header is None:
        raise ModelFileError(f"{path}: no \\end\\ line: the file is truncated")
    lineno, line = header
    _section_order(path, lineno, line, declared, 1)
    unigrams = _Section()
    if _read_entries(path, lines, 1, unigrams) is None:
        raise ModelFileError(f"{path}: no \\end\\ line: the file is truncated")
    return declared, unigrams


def _skip_preamble(path: str, lines) -> None:
    for _, line in lines:
        if line.strip(_SPACES).lstrip("\ufeff") == "\\data\\":   # a byte-order mark too
            return
    raise ModelFileError(f"{path}: not an ARPA file (no \\data\\ header or no 1-grams)")


def _read_counts(path: str, lines):
    """The ``ngram N=count`` lines: ``({N: count}, (lineno, line) of the next header)``."""
    declared: Dict[int, int] = {}
    header = None
    for lineno, line in lines:
        line = line.strip(_SPACES)
        if not line:
            continue
        if line.startswith("\\"):
            header = (lineno, line)
            break
        n, count = _count(path, lineno, line)
        if n in declared:
            raise ModelFileError(f"{path}: line {lineno}: a second count of {n}-grams "
                                 "in \\data\\")
        declared[n] = count
    if not declared:
        raise ModelFileError(f"{path}: \\data\\ declares no n-gram counts")
    order = max(declared)
    missing = [n for n in range(1, order + 1) if n not in declared]
    if missing:
        raise ModelFileError(f"{path}: \\data\\ declares {order}-grams but no count of "
                             f"{missing[0]}-grams")
    return declared, header


_COUNT = re.compile(r"ngram[ \t]+(\S+?)[ \t]*=[ \t]*(\S*)")


def _count(path: str, lineno: int, line: str) -> Tuple[int, int]:
    """``(N, count)`` of an ``ngram N=count`` line of ``\\data\\``."""
    match = _COUNT.fullmatch(line)
    if match is None:
        raise ModelFileError(f"{path}: line {lineno}: expected 'ngram N=count' in "
                             f"\\data\\, not '{_clip(line)}'")
    order, count = match.groups()
    if not _digits(order, 3) or not 1 <= int(order) <= MAX_ORDER:
        raise ModelFileError(f"{path}: line {lineno}: bad n-gram order '{_clip(order)}' in "
                             f"\\data\\ (1 to {MAX_ORDER})")
    if not _digits(count, 18):
        raise ModelFileError(f"{path}: line {lineno}: bad n-gram count '{_clip(count)}' "
                             "in \\data\\")
    return int(order), int(count)


_SECTION = re.compile(r"\\([0-9]{1,3})-grams:")


def _digits(text: str, most: int) -> bool:
    """ASCII digits, at most ``most`` of them (``int`` refuses thousands of digits)."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _section_order(path: str, lineno: int, line: str, declared: Dict[int, int],
                   expected: int) -> int:
    """The N of a ``\\N-grams:`` header, which must be the next section of the file."""
    match = _SECTION.fullmatch(line)
    if match is None:
        raise ModelFileError(f"{path}: line {lineno}: bad section header '{_clip(line)}'")
    n = int(match.group(1))
    if n not in declared:
        raise ModelFileError(f"{path}: line {lineno}: {n}-grams not declared in \\data\\")
    if n != expected:
        raise ModelFileError(f"{path}: line {lineno}: \\{n}-grams: where \\{expected}-grams: "
                             "was expected (sections go in increasing order, each once)")
    return n


def _read_entries(path: str, lines, n: int, section: _Section):
    """Read the entries of an n-gram section into ``section``; the next header
    ``(lineno, line)``, or None at the end of the file. The hot loop of reading."""
    grams, probs, bows, numbers = section.grams, section.probs, section.bows, section.lines
    for lineno, line in lines:
        line = line.strip(_SPACES)
        if not line:
            continue
        if line[0] == "\\":
            return lineno, line
        prob, words, backoff = _fields(line, n)
        if words is None:
            raise ModelFileError(f"{path}: line {lineno}: a {n}-gram entry needs a "
                                 f"probability, {n} word{'s' if n > 1 else ''} "
                                 "and an optional back-off weight")
        grams.append(words)
        probs.append(_probability(path, lineno, prob))
        bows.append(0.0 if backoff is None else _backoff(path, lineno, backoff))
        numbers.append(lineno)
    return None


_SPACES = " \t\r\n\f\v"
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
        if len(columns) > 3 or len(words) != n or "" in words:
            return None, None, None
        return columns[0], words, columns[2].strip(" ") if len(columns) == 3 else None
    fields = _ASCII_SPACE.split(line)
    if len(fields) not in (n + 1, n + 2):
        return None, None, None
    return fields[0], tuple(fields[1: n + 1]), fields[n + 1] if len(fields) == n + 2 else None


def _probability(path: str, lineno: int, field: str) -> float:
    """A log10 probability: at most 0; -99 or below (SRILM's zero) becomes ``-inf``.

    Called once per entry: the common case is tested first, without further calls.
    """
    try:
        value = float(field)
    except ValueError:
        raise _not_a_number(path, lineno, field) from None
    if LOG10_ZERO < value <= 0.0:
        return value
    if value <= LOG10_ZERO:
        return -math.inf
    raise ModelFileError(f"{path}: line {lineno}: log10 probability {_clip(field)} is "
                         "not at most 0")           # above 0, or NaN


def _backoff(path: str, lineno: int, field: str) -> float:
    """A log10 back-off weight: finite; -99 or below (SRILM's zero) becomes ``-inf``."""
    try:
        value = float(field)
    except ValueError:
        raise _not_a_number(path, lineno, field) from None
    if LOG10_ZERO < value < _INF:
        return value
    if -_INF < value <= LOG10_ZERO:
        return -_INF
    raise ModelFileError(f"{path}: line {lineno}: back-off weight {_clip(field)} is "
                         "not a finite number")     # infinite, or NaN


_INF = math.inf


def _not_a_number(path: str, lineno: int, field: str) -> ModelFileError:
    return ModelFileError(f"{path}: line {lineno}: {_clip(field)!r} is not a number")


def _clip(text: str, limit: int = 40) -> str:
    """``text`` for an error line: cut short (a garbled file may have very long lines),
    and invisible characters escaped (a BOM, a carriage return) so that it stays one line."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _undecodable(path: str, exc: UnicodeDecodeError) -> str:
    """Which line holds the bytes that are not UTF-8 (read again, on this error only)."""
    with _open_binary(path) as raw:
        for lineno, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return f"line {lineno} is not UTF-8: byte 0x{line[bad.start]:02x}"
    return str(exc)


def _vocabulary(path: str, unigrams: _Section) -> Vocabulary:
    """The 1-grams' words, the specials first; ``<s>`` and ``</s>`` must be there."""
    words = [g[0] for g in unigrams.grams]
    seen = set(words)
    if len(seen) != len(words):
        _duplicate(path, 1, unigrams, _first_repeat(words))
    for marker in ("<s>", "</s>"):
        if marker not in seen:
            raise ModelFileError(f"{path}: no {marker} in the 1-grams (an ARPA model needs "
                                 "<s> and </s>)")
    return Vocabulary(list(SPECIALS) + [w for w in words if w not in SPECIALS])


def _first_repeat(items: Sequence) -> int:
    seen = set()
    for index, item in enumerate(items):
        if item in seen:
            return index
        seen.add(item)
    raise ValueError("no repeat")


def _duplicate(path: str, n: int, section: _Section, index: int):
    gram = section.grams[index]
    first = section.grams.index(gram)
    raise ModelFileError(f"{path}: line {section.lines[index]}: the {n}-gram "
                         f"'{_clip(' '.join(gram))}' again (first on line "
                         f"{section.lines[first]})")


def _tables(path: str, vocab: Vocabulary, order: int, sections) -> BackoffTables:
    size = len(vocab)
    keys = [np.arange(size, dtype=np.uint64)]
    logprob = [np.full(size, -np.inf)]
    backoff = [np.zeros(size)]
    unigrams = sections[1]
    ids = np.array([vocab.index[g[0]] for g in unigrams.grams], dtype=np.int64)
    logprob[0][ids] = np.array(unigrams.probs) * LN10
    backoff[0][ids] = np.array(unigrams.bows) * LN10
    logprob[0][vocab.bos_id] = -np.inf
    partial = BackoffTables(1, size, keys, logprob, backoff)
    for n in range(2, order + 1):
        section = sections[n]
        grams = section.grams
        words = np.array([[vocab.index.get(w, -1) for w in g] for g in grams],
                         dtype=np.int64).reshape(len(grams), n)
        unknown = np.flatnonzero((words < 0).any(axis=1))
        if unknown.size:
            raise ModelFileError(f"{path}: line {section.lines[unknown[0]]}: the {n}-gram "
                                 f"'{_clip(' '.join(grams[unknown[0]]))}' holds a word "
                                 "missing from the 1-grams")
        partial.order = n - 1
        lookup = NgramModel(vocab, partial, {}).lookup
        rows = words[:, 0]
        for j in range(2, n):
            rows = lookup(j, rows, words[:, j - 1])
        orphans = np.flatnonzero(rows < 0)
        if orphans.size:
            raise ModelFileError(f"{path}: line {section.lines[orphans[0]]}: the context of "
                                 f"the {n}-gram '{_clip(' '.join(grams[orphans[0]]))}' is not "
                                 f"among the {n - 1}-grams (pruned ARPA files of this kind "
                                 "are not supported)")
        key = rows.astype(np.uint64) * np.uint64(size) + words[:, -1].astype(np.uint64)
        sort = np.argsort(key, kind="stable")
        key = key[sort]
        twins = np.flatnonzero(key[1:] == key[:-1])
        if twins.size:
            _duplicate(path, n, section, int(sort[twins[0] + 1]))
        keys.append(key)
        logprob.append(np.array(section.probs)[sort] * LN10)
        backoff.append(np.array(section.bows)[sort] * LN10)
    return BackoffTables(order, size, keys, logprob, backoff[: order - 1])


# -- writing ---------------------------------------------------------------------------

def write_arpa(model, binary_out: BinaryIO, compress: bool = False) -> None:
    """Write ``model`` (an ``NgramModel`` or a ``streamed.StreamedModel``) in ARPA format
    (log10 values), gzipped if ``compress``."""
    # No name or time in the gzip header: the temporary file's name is not the file's,
    # and the same model gives the same bytes (DESIGN: byte for byte).
    raw = gzip.GzipFile(filename="", fileobj=binary_out, mode="wb", mtime=0) \
        if compress else binary_out
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    _write_text(model, out)
    out.flush()
    out.detach()                 # leave the file itself to the caller
    if compress:
        raw.close()              # writes the gzip trailer


def _write_text(model, out: TextIO) -> None:
    """The ARPA text of ``model`` (an ``NgramModel``, or a ``streamed.StreamedModel`` whose
    tables are on disk), written an order at a time and a chunk of n-grams at a time."""
    words = np.array(model.vocab.words, dtype=object)
    out.write("\\data\\\n")
    for n, size in enumerate(model.ngram_sizes(), 1):
        out.write(f"ngram {n}={size}\n")
    for n, chunks in enumerate(model.ngram_sections(), 1):
        out.write(f"\n\\{n}-grams:\n")
        for grams, logprob, backoff in chunks:        # grams: (rows, n) word ids
            probs = _to_log10(logprob)
            if n == 1:
                probs[grams[:, 0] == model.vocab.bos_id] = LOG10_ZERO
            text = words[grams[:, 0]]
            for j in range(1, n):                       # a column at a time, not a row
                text = text + " " + words[grams[:, j]]
            if backoff is None:
                lines = [f"{p:.8g}\t{t}\n" for p, t in zip(probs.tolist(), text.tolist())]
            else:
                lines = [f"{p:.8g}\t{t}\t{b:.8g}\n" for p, t, b in
                         zip(probs.tolist(), text.tolist(), _to_log10(backoff).tolist())]
            out.write("".join(lines))
    out.write("\n\\end\\\n")


def _to_log10(natural: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(natural, dtype=np.float64) / LN10, LOG10_ZERO)
