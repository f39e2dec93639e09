"""Tokenizers: a line of text to a list of tokens and back, and reading corpus files.

Two kinds of tokenizer, each at word or character level:

- ``whitespace``: for pre-tokenized corpora. Tokens are separated by ASCII whitespace
  only (space, ``\\t``, ``\\n``, ``\\r``, ``\\f``, ``\\v``), exactly as KenLM reads them, so
  token counts agree with KenLM's; a no-break space or an ideographic space inside a
  line is part of a token.
- ``regex``: for raw text. Words of any script (with their combining marks), words with
  inner apostrophes or hyphens (``don't``, ``well-known``), numbers with inner separators
  (``3.14``, ``1,000,000``, ``12:30``, ``2024-05-01``) and markup tags (``<unk>``,
  ``</s>``) are single tokens; every other punctuation mark or symbol is a token of its
  own (so ``...`` is three ``.`` tokens; ``…`` is one).

Character level makes every code point a token and each run of whitespace one
``SPACE_SYMBOL`` token (a ``SPACE_SYMBOL`` already in the text counts as whitespace).
Every line is NFC-normalised first, then lower-cased if asked.

``read_lines`` reads a corpus the way KenLM does: UTF-8, lines split on ``\\n`` only.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import stat
import sys
import unicodedata
from dataclasses import dataclass, fields
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from .errors import CorpusError, OptionError
from .options import check_choice, check_flag
from .hashing import padded_bytes
from .utf8 import code_points, distinct

KINDS = ("regex", "whitespace")
LEVELS = ("word", "char")

SPACE_SYMBOL = "\u2581"  # stands for a space in character-level token streams


@dataclass(frozen=True)
class TokenizerConfig:
    """How text is cut into tokens; stored in every model file."""

    kind: str = "regex"  # "regex" (raw text) | "whitespace" (pre-tokenized corpora)
    level: str = "word"  # "word" | "char"
    lowercase: bool = False

    def __post_init__(self) -> None:
        self.validate()   # frozen: checked once, when made

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range (bool
        only for ``lowercase``: 0/1 or "false" from a hand-edited file would be a silent
        surprise)."""
        check_choice("kind", self.kind, KINDS)
        check_choice("level", self.level, LEVELS)
        check_flag("lowercase", self.lowercase)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "level": self.level, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        """Build from ``to_dict`` output; missing keys take their defaults."""
        if not isinstance(d, dict):
            raise ValueError(f"tokenizer settings must be a mapping, not {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)}, key=str)
        if unknown:
            raise ValueError(f"unknown tokenizer setting(s): {', '.join(map(str, unknown))}")
        try:
            return cls(**d)
        except OptionError as exc:
            raise ValueError(f"bad tokenizer settings: {exc}") from None


# --- normalisation -----------------------------------------------------------------


def _nfc(line: str) -> str:
    if _is_nfc(line):  # cheap check; most lines already are
        return line
    return unicodedata.normalize("NFC", line)


# The characters of canonical combining class 0 that NFC can still compose with the one
# before them (Unicode's NFC_Quick_Check = Maybe): the second halves of primary composites
# (tests/test_tokenizer.py derives this list from unicodedata) and Hangul jamo V and T.
_COMPOSING_STARTERS = frozenset(
    [chr(c) for c in (0x09BE, 0x09D7, 0x0B3E, 0x0B56, 0x0B57, 0x0BBE, 0x0BD7, 0x0CC2, 0x0CD5,
                      0x0CD6, 0x0D3E, 0x0D57, 0x0DCF, 0x0DDF, 0x102E, 0x1B35, 0x11127,
                      0x1133E, 0x11357, 0x114B0, 0x114BA, 0x114BD, 0x115AF, 0x11930)]
    + [chr(c) for c in range(0x1161, 0x1176)] + [chr(c) for c in range(0x11A8, 0x11C3)])
_LONG_TEXT = 10_000     # characters: from here on, ``_is_nfc`` looks at distinct characters


def _may_change_in_nfc(ch: str) -> bool:
    """Whether NFC can change a text because it holds ``ch``: a combining mark (reordered or
    composed), a starter that composes with what precedes it, or a character NFC replaces."""
    return (unicodedata.combining(ch) != 0 or ch in _COMPOSING_STARTERS
            or not unicodedata.is_normalized("NFC", ch))


def _is_nfc(text: str) -> bool:
    """``unicodedata.is_normalized("NFC", text)``, for a long text several times faster:
    only the lines holding a character that NFC may change (``_may_change_in_nfc``, found
    among the text's distinct characters) are checked. NFC never composes across a
    newline, so a text is NFC if each of its lines is."""
    if text.isascii():
        return True
    if len(text) < _LONG_TEXT:
        return unicodedata.is_normalized("NFC", text)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    high = codes[codes >= 0x300]                  # every such character is U+0300 or above
    distinct = np.flatnonzero(np.bincount(high)).tolist()
    changing = [c for c in distinct if _may_change_in_nfc(chr(c))]
    if not changing:
        return True
    newlines = np.flatnonzero(codes == 0x0A)
    lines = np.unique(np.searchsorted(newlines, np.flatnonzero(np.isin(codes, changing))))
    starts = np.concatenate(([0], newlines + 1))[lines].tolist()
    ends = np.append(newlines, codes.size)[lines].tolist()
    return all(unicodedata.is_normalized("NFC", text[a:b]) for a, b in zip(starts, ends))


def _normalize(line: str, lowercase: bool) -> str:
    if line.isascii():  # ASCII text is always NFC, and stays ASCII when lower-cased
        return line.lower() if lowercase else line
    line = _nfc(line)
    if lowercase:
        # Lower-casing can un-normalise ("J\u030c" -> "j\u030c", which NFC composes to
        # "\u01f0"), so normalise again: tokenize(detokenize(tokens)) must give the same.
        line = _nfc(line.lower())
    return line


# --- splitting ---------------------------------------------------------------------

_ASCII_SPACE_RE = re.compile(r"[ \t\n\r\f\v]+")


def _split_ascii_whitespace(line: str) -> list[str]:
    """Split like KenLM: on ASCII whitespace only."""
    # str.split() also splits on Unicode spaces and on \x1c-\x1f; all of those are
    # non-printable, so on a printable line (whose only whitespace is " ") it agrees.
    if line.isprintable():
        return line.split()
    return [t for t in _ASCII_SPACE_RE.split(line) if t]


_WORD_CHARS = r"[\p{L}\p{M}\p{N}][\p{L}\p{M}\p{N}\u200c\u200d]*"  # ZWNJ/ZWJ inside words

_TOKEN_PATTERN = (
    r"</?[A-Za-z_][\w-]*>"  # markup tag: <unk>, <s>, </s>, <eos>
    # word or number; inner apostrophes/hyphens join words, and . , : / join digits
    + rf"|{_WORD_CHARS}(?:(?:['\u2019\-\u2010\u2011]|(?<=\p{{N}})[.,:/](?=\p{{N}})){_WORD_CHARS})*"
    + r"|\p{RI}\p{RI}"  # flag: a pair of regional indicators
    # emoji with its modifiers, and ZWJ sequences of emoji
    + r"|\p{Extended_Pictographic}[\p{M}\p{Emoji_Modifier}]*"
    + r"(?:\u200d\p{Extended_Pictographic}[\p{M}\p{Emoji_Modifier}]*)*"
    # any other visible character (punctuation, symbol) with its combining marks;
    # whitespace, controls and lone format characters separate tokens
    + r"|[^\s\p{Cc}\p{Cf}\p{Cs}]\p{M}*"
)


@functools.lru_cache(maxsize=None)
def _token_re():
    """The compiled token pattern (compiled, and ``regex`` imported, on first use: the
    whitespace tokenizer needs neither)."""
    import regex
    return regex.compile(_TOKEN_PATTERN)


def _split_regex_words(line: str) -> list[str]:
    return _token_re().findall(line)


def _split_chars(words: list[str]) -> list[str]:
    return list(SPACE_SYMBOL.join(words))


def _split_regex_chars(line: str) -> list[str]:
    return _split_chars(_space_symbol_as_space(line).split())  # any Unicode whitespace


def _split_whitespace_chars(line: str) -> list[str]:
    return _split_chars(_split_ascii_whitespace(_space_symbol_as_space(line)))


def _space_symbol_as_space(line: str) -> str:
    # A SPACE_SYMBOL in the text is read as the space it stands for: kept as a token, it
    # would come back from detokenize as a space and not survive a round trip.
    return line.replace(SPACE_SYMBOL, " ") if SPACE_SYMBOL in line else line


_SPLITTERS: dict[tuple[str, str], Callable[[str], list[str]]] = {
    ("regex", "word"): _split_regex_words,
    ("regex", "char"): _split_regex_chars,
    ("whitespace", "word"): _split_ascii_whitespace,
    ("whitespace", "char"): _split_whitespace_chars,
}


# --- detokenizing ------------------------------------------------------------------

_CLOSING = frozenset([".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "\u2026"])
_OPENING = frozenset(["(", "[", "{", "\u00bf", "\u00a1"])


def _starts_with_mark(token: str) -> bool:
    # Glued to the token before it, a combining mark would join that token.
    return unicodedata.category(token[0])[0] == "M" or unicodedata.combining(token[0]) != 0


def _detokenize_words(tokens: Sequence[str]) -> str:
    parts: list[str] = []
    glue_next = False  # the previous token opens: no space after it
    quote_open = False  # straight double quotes alternate open/close
    for token in tokens:
        if not token:
            continue
        if token == '"':
            glue_before, glue_after = quote_open, not quote_open
            quote_open = not quote_open
        else:
            glue_before, glue_after = token in _CLOSING, token in _OPENING
        if parts and not ((glue_next or glue_before) and not _starts_with_mark(token)):
            parts.append(" ")
        parts.append(token)
        glue_next = glue_after
    return "".join(parts)


def _detokenize_chars(tokens: Sequence[str]) -> str:
    return "".join(tokens).replace(SPACE_SYMBOL, " ")


# --- token spans: splitting on ASCII whitespace with array operations ----------------

@dataclass
class TokenSpans:
    """Tokens as spans of UTF-8 bytes: token i is ``data[starts[i]:starts[i] + sizes[i]]``,
    line k holds ``lengths[k]`` of them. ``data`` is zero-padded (``hashing.padded_bytes``)."""

    data: np.ndarray        # uint8
    starts: np.ndarray      # (n_tokens,) int64
    sizes: np.ndarray       # (n_tokens,) int64
    lengths: np.ndarray     # (n_lines,) int64

    @classmethod
    def of_whitespace(cls, raw: bytes) -> "TokenSpans":
        """Lines split on ``\\n``, tokens on ASCII whitespace (``_split_ascii_whitespace``)."""
        data = padded_bytes(raw)
        text = data[:len(raw)]
        space = np.ones(len(raw) + 2, dtype=bool)          # a space before and after
        # ASCII whitespace: space, or \t \n \v \f \r (9-13; uint8 arithmetic wraps below 9)
        np.logical_or(text == 0x20, (text - np.uint8(9)) < np.uint8(5), out=space[1:-1])
        edges = np.flatnonzero(space[1:] != space[:-1])    # token starts and ends, in turn
        starts, ends = edges[0::2], edges[1::2]
        newlines = np.flatnonzero(text == 0x0A)
        # Tokens before each line end; a last line without "\n" holds the rest.
        before = np.searchsorted(starts, newlines)
        if not raw.endswith(b"\n") and raw:
            before = np.append(before, starts.size)
        return cls(data, starts, ends - starts, np.diff(before, prepend=0))


def nfc_bytes(raw: bytes) -> Optional[bytes]:
    """The UTF-8 text ``raw`` in NFC (``raw`` itself if it is), None if ``raw`` is not
    UTF-8. The characters are found on the bytes (``utf8.code_points``); only the lines
    holding one that NFC may change (``_may_change_in_nfc``) are decoded and checked, as
    ``_is_nfc`` does with a string."""
    data = padded_bytes(raw)                  # (its zero padding is more than utf8.PADDING)
    found = code_points(data, len(raw))
    if found is None:
        return None
    starts, code = found
    changing = np.flatnonzero(_nfc_may_change(code))
    if changing.size == 0:
        return raw
    newlines = np.flatnonzero(data[:len(raw)] == 0x0A)
    lines = np.unique(np.searchsorted(newlines, starts.take(changing)))
    line_starts = np.concatenate(([0], newlines + 1))[lines].tolist()
    line_ends = np.append(newlines, len(raw))[lines].tolist()
    pieces, done = [], 0
    for a, b in zip(line_starts, line_ends):
        line = raw[a:b].decode("utf-8")
        if not unicodedata.is_normalized("NFC", line):
            pieces += [raw[done:a], unicodedata.normalize("NFC", line).encode("utf-8")]
            done = b
    return b"".join(pieces + [raw[done:]]) if pieces else raw


# What _may_change_in_nfc says of each code point, filled in as characters are met: 0 not
# asked yet, 1 no, 2 yes (characters below U+0300 never change). Threads may fill it in at
# once: each writes the same answer.
_NFC_ANSWERS = np.zeros(0x110000, dtype=np.int8)
_NFC_ANSWERS[:0x300] = 1


def _nfc_may_change(code: np.ndarray) -> np.ndarray:
    """``_may_change_in_nfc`` of each code point of ``code`` (int), as a bool array."""
    answers = _NFC_ANSWERS.take(code)
    new = answers == 0
    if new.any():
        for c in distinct(code[new]).tolist():
            _NFC_ANSWERS[c] = 2 if _may_change_in_nfc(chr(c)) else 1
        answers = _NFC_ANSWERS.take(code)
    return answers == 2


# --- the tokenizer -----------------------------------------------------------------


class Tokenizer:
    """Tokenizes and detokenizes lines as its ``TokenizerConfig`` says."""

    def __init__(self, config: TokenizerConfig):
        if not isinstance(config, TokenizerConfig):
            raise TypeError(f"expected a TokenizerConfig, got {type(config).__name__}")
        self.config = config
        self._split = _SPLITTERS[(config.kind, config.level)]

    def __repr__(self) -> str:
        return f"Tokenizer({self.config!r})"

    def tokenize(self, line: str) -> list[str]:
        """The tokens of one line; never empty strings."""
        return self._split(_normalize(line, self.config.lowercase))

    def tokenize_lines(self, lines: Iterable[str]) -> Iterator[list[str]]:
        """``map(self.tokenize, lines)``, faster for pre-tokenized corpora."""
        c = self.config
        if c.kind == "whitespace" and c.level == "word" and not c.lowercase:
            return self._whitespace_words(lines)
        return map(self.tokenize, lines)

    @staticmethod
    def _whitespace_words(lines: Iterable[str]) -> Iterator[list[str]]:
        # The hot path of training on a pre-tokenized corpus: most lines are printable
        # (so only " " separates tokens) and already NFC, and need one str.split().
        is_normalized = unicodedata.is_normalized
        for line in lines:
            if line.isprintable() and (line.isascii() or is_normalized("NFC", line)):
                yield line.split()
            else:
                yield _split_ascii_whitespace(_normalize(line, False))

    def token_spans(self, text: str) -> Optional[TokenSpans]:
        """The tokens of every line of ``text`` (lines as ``read_lines`` splits them) as
        byte spans of its normalised UTF-8, found with array operations: what
        ``tokenize_lines`` gives, without a Python string per token. Only for the
        whitespace word tokenizer (None for the others)."""
        if not self.has_spans:
            return None
        return TokenSpans.of_whitespace(_normalize(text, self.config.lowercase).encode("utf-8"))

    @property
    def has_spans(self) -> bool:
        """Whether ``token_spans`` and ``block_spans`` cut text (the whitespace word
        tokenizer only)."""
        return (self.config.kind, self.config.level) == ("whitespace", "word")

    def block_spans(self, block: "TextBlock") -> TokenSpans:
        """``token_spans`` of a block of text read as bytes (``read_blocks``), without a
        Python string of it where it can (``nfc_bytes``). Only for a tokenizer that
        ``has_spans``."""
        if not self.config.lowercase:
            data = nfc_bytes(block.data)
            if data is not None:
                return TokenSpans.of_whitespace(data)
        return TokenSpans.of_whitespace(_normalize(block.text(), self.config.lowercase)
                                        .encode("utf-8"))

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Join tokens back into text (see the module docstring for the spacing rules)."""
        if self.config.level == "char":
            return _detokenize_chars(tokens)
        return _detokenize_words(tokens)


# --- is this text tokenized? ---------------------------------------------------------

# The end of a whitespace token with punctuation glued to a word: ``word,`` ``so;``
# ``what?`` anywhere, or ``end.`` last on its line (a ``.`` inside a line is often an
# abbreviation, ``mr.`` or ``u.s.``, which tokenized corpora such as PTB keep whole).
# Matching from the word character, not the whole token, keeps the scan fast (4x).
_GLUED_PUNCTUATION = re.compile(r"\w(?:[,;:!?]+(?=\s|$)|\.(?=[ \t\r]*$))", re.M)
UNTOKENIZED_SAMPLE = 50_000    # characters looked at: the test costs about 3 ms
UNTOKENIZED_SHARE = 0.02       # glued tokens per token from which text looks untokenized


def untokenized_example(text: str) -> Optional[str]:
    """A token of ``text`` with punctuation glued on (``end.``) if the text looks
    untokenized, else None: what to warn about before splitting it on spaces only.

    Looks at the first ``UNTOKENIZED_SAMPLE`` characters. Raw English or Vietnamese has
    such a token about once in 8 (commas, and the full stop of each line); PTB's
    tokenized text once in 2,500 (``u.s.`` ending a line). From 1 in 50 on, it warns.
    """
    sample = text[:UNTOKENIZED_SAMPLE]
    glued = _GLUED_PUNCTUATION.findall(sample)
    if not glued or len(glued) < UNTOKENIZED_SHARE * len(sample.split()):
        return None
    first = _GLUED_PUNCTUATION.search(sample)
    start = max(sample.rfind(space, 0, first.start()) for space in " \t\n\r\f\v") + 1
    return sample[start:first.end()]


# --- reading corpora ---------------------------------------------------------------

ENCODING_ERRORS = ("strict", "replace")


def read_lines(path: str, encoding_errors: str = "strict") -> list[str]:
    """All lines of a UTF-8 text file (``"-"``: stdin), without their line ends.

    Lines are split on ``\\n`` only, as KenLM does (not on U+2028 or ``\\x85``); one
    trailing ``\\r`` per line and a leading BOM are removed; blank lines are kept.
    """
    return split_lines(read_text(path, encoding_errors))


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as ``read_lines`` gives them: split on ``\\n`` only, one
    trailing ``\\r`` removed from each, nothing after the final newline."""
    lines = text.split("\n")
    if lines[-1] == "":  # after the final newline, or an empty file
        lines.pop()
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def read_text(path: str, encoding_errors: str = "strict") -> str:
    """The whole text of a UTF-8 file (``"-"``: stdin), a leading BOM removed: what
    ``read_lines`` splits into lines."""
    _check_encoding_errors(encoding_errors)
    name = "<stdin>" if path == "-" else path
    data = _read_bytes(path, name)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return _decode(data, name, encoding_errors)


# read_blocks: about this many bytes a block (a longer line: its own). 2 MB: a block's
# sorted n-gram lookups then lie close together in the model's tables (perplexity on
# viwiki's training text takes 1.3x the CPU time in blocks of 256 kB), and a block's
# arrays (about 200 bytes a token at their peak) stay well below the model's size.
BLOCK_BYTES = 1 << 21


_ASCII_ISSPACE = bytes(c for c in range(128) if chr(c).isspace())


@dataclass
class TextBlock:
    """Whole lines of a text file, as its bytes: each line ends with ``\\n`` (one is added
    to a last line without it). What ``read_blocks`` gives, the bytes not yet decoded."""

    data: bytes
    name: str              # the file, for messages ("<stdin>" for -)
    first_line: int        # the number of the block's first line in its file
    encoding_errors: str   # "strict" or "replace" (Python's codec error handlers)

    def text(self) -> str:
        """The block decoded; undecodable bytes are a ``CorpusError`` naming their line
        (or U+FFFD with ``encoding_errors="replace"``), as ``read_text`` says."""
        try:
            return self.data.decode("utf-8", errors=self.encoding_errors)
        except UnicodeDecodeError as e:
            line = self.first_line + self.data.count(b"\n", 0, e.start)
            raise CorpusError(f"{self.name}: line {line}: invalid UTF-8 "
                              "(use --encoding-errors replace to go on)") from None

    def is_blank(self) -> bool:
        """Whether the block holds nothing but whitespace (``str.isspace``). (The block is
        decoded only if its first byte that is no ASCII whitespace is not ASCII either.)"""
        rest = self.data.lstrip(_ASCII_ISSPACE)
        if rest and rest[0] < 0x80:
            return False
        return not rest or not self.text().strip()


def read_blocks(path: str, encoding_errors: str = "strict",
                block_bytes: Optional[int] = None) -> Iterator[TextBlock]:
    """The lines of a UTF-8 text file (``"-"``: stdin) in blocks of about ``block_bytes``
    (default ``BLOCK_BYTES``) bytes, as ``read_text`` would read it (a leading BOM
    removed, lines split on ``\\n``) but never the whole file at once. Decoding is left to
    the blocks (``TextBlock.text``, ``Tokenizer.block_spans``). An empty file gives no
    block; the file is opened when the first block is asked for."""
    _check_encoding_errors(encoding_errors)
    name = "<stdin>" if path == "-" else path
    size = block_bytes or BLOCK_BYTES
    stream = _stdin() if path == "-" else _open_binary(path, name)
    try:
        yield from _line_blocks(_chunks(stream, name, size), name, encoding_errors)
    finally:
        if path != "-":
            stream.close()


def read_range(path: str, start: int, end: int, encoding_errors: str = "strict",
               block_bytes: Optional[int] = None) -> Iterator[TextBlock]:
    """The lines of the file ``path`` that begin at a byte offset in ``[start, end)``, in
    blocks as ``read_blocks`` gives them: cut a file at any offsets, and the ranges hold
    each of its lines once (a *shard*: ``ngram/cluster.py``). Line numbers in messages
    count from the range's first line (``TextBlock.first_line`` 1)."""
    _check_encoding_errors(encoding_errors)
    stream = _open_binary(path, path)
    try:
        chunks = _range_chunks(stream, path, start, end, block_bytes or BLOCK_BYTES)
        yield from _line_blocks(chunks, path, encoding_errors)
    finally:
        stream.close()


def _line_blocks(chunks: Iterator[bytes], name: str,
                 encoding_errors: str) -> Iterator[TextBlock]:
    """``chunks`` of a text regrouped into blocks of whole lines."""
    line, unfinished = 1, []          # the pieces of a line longer than a chunk
    for chunk in chunks:
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            unfinished.append(chunk)
            continue
        data = b"".join(unfinished + [chunk[:end]]) if unfinished else chunk[:end]
        unfinished = [chunk[end:]] if end < len(chunk) else []
        yield TextBlock(data, name, line, encoding_errors)
        line += _newlines(data)
    if unfinished:
        yield TextBlock(b"".join(unfinished) + b"\n", name, line, encoding_errors)


def _newlines(data: bytes) -> int:
    """The number of newlines in ``data`` (NumPy's compare is ~7x faster than
    ``bytes.count`` on megabyte blocks)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A))


def _range_chunks(stream: BinaryIO, name: str, start: int, end: int,
                  size: int) -> Iterator[bytes]:
    """The bytes of the lines of ``stream`` that begin in ``[start, end)``, in pieces of
    about ``size`` (a BOM at offset 0 removed)."""
    if start >= end:
        return
    try:
        if start > 0:
            stream.seek(start - 1)
            if stream.read(1) != b"\n":
                stream.readline()     # a line begun before start: the range before's
        position, read = stream.tell(), b"\n"      # read: the last bytes read
        if position == 0:
            if stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
                position, read = len(codecs.BOM_UTF8), codecs.BOM_UTF8  # line 1's start
            else:
                stream.seek(0)
        while position < end:
            wanted = min(size, end - position)
            read = stream.read(wanted)
            position += len(read)
            if len(read) < wanted:  # (the ranges were cut by the file's size at the start)
                raise _shortened(name, position, end)
            yield read
        rest = b"" if read.endswith(b"\n") else stream.readline()
        if rest:
            yield rest                # the rest of the last line, begun before end
    except OSError as e:
        raise CorpusError(f"{name}: cannot read: {e.strerror or e}") from None


def _chunks(stream: BinaryIO, name: str, size: int) -> Iterator[bytes]:
    """The bytes of ``stream`` in pieces of about ``size``, a leading BOM removed; a file
    that ends before the size it had when reading began is an error (``_shortened``)."""
    first, position, expected = True, 0, _size_to_read(stream)
    while True:
        try:
            chunk = stream.read(size)
            while first and 0 < len(chunk) < len(codecs.BOM_UTF8):   # (a BOM cut in two)
                more = stream.read(size)
                if not more:
                    break
                chunk += more
        except OSError as e:
            raise CorpusError(f"{name}: cannot read: {e.strerror or e}") from None
        position += len(chunk)
        if len(chunk) < size and expected is not None and position < expected:
            raise _shortened(name, position, expected)   # (a short read: the end of it)
        if not chunk:
            return
        if first and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[len(codecs.BOM_UTF8):]
        first = False
        if chunk:
            yield chunk


def _size_to_read(stream: BinaryIO) -> Optional[int]:
    """The bytes from here to the end of a regular file (None for a pipe or a terminal)."""
    try:
        info = os.fstat(stream.fileno())
        return info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else None
    except (OSError, AttributeError, ValueError):
        return None


def _shortened(name: str, position: int, end: int) -> CorpusError:
    """A file that ended at ``position`` where it had ``end`` bytes when reading began
    (truncated, or rewritten, meanwhile): its lines would silently be fewer."""
    return CorpusError(f"{name}: the file became shorter while it was read (its end came "
                       f"at byte {position:,}; it was {end:,} bytes or more when reading "
                       "began): was something writing it?")


def _check_encoding_errors(encoding_errors: str) -> None:
    if encoding_errors not in ENCODING_ERRORS:
        raise OptionError(
            f"encoding errors must be one of {', '.join(ENCODING_ERRORS)}, "
            f"not {encoding_errors!r}"
        )


def _read_bytes(path: str, name: str) -> bytes:
    try:
        if path == "-":
            return _stdin().read()
        with _open_binary(path, name) as f:
            return f.read()
    except OSError as e:   # an I/O error while reading (a failing disk, EISDIR, ...)
        raise CorpusError(f"{name}: cannot read: {e.strerror or e}") from None


def _stdin() -> BinaryIO:
    """Standard input as bytes; an error if the shell closed it (``<&-``)."""
    if sys.stdin is None:
        raise CorpusError("<stdin>: standard input is closed; give a file instead of -")
    return sys.stdin.buffer


def _open_binary(path: str, name: str) -> BinaryIO:
    """Open a file for reading; the usual failures become one-line ``CorpusError``s."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{name}: is a directory") from None
    except PermissionError:
        raise CorpusError(f"{name}: permission denied") from None
    except OSError as e:
        raise CorpusError(f"{name}: {e.strerror or e}") from None


def _decode(data: bytes, name: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        line_number = data.count(b"\n", 0, e.start) + 1
        raise CorpusError(
            f"{name}: line {line_number}: invalid UTF-8 "
            "(use --encoding-errors replace to go on)"
        ) from None


def read_lines_lazily(path: str, encoding_errors: str = "strict") -> Iterator[str]:
    """The lines of a text file (``"-"``: stdin), each as soon as it arrives: a coprocess
    gets its answer before it writes the next line. (``read_lines`` reads a whole file first;
    this reads the same way, one line at a time.)

    UTF-8, split on ``\\n``, one trailing ``\\r`` and a leading BOM removed; undecodable
    bytes are an error naming the line unless ``encoding_errors`` is ``"replace"``. The
    file is opened at once, so a missing file is an error before anything is read.
    """
    _check_encoding_errors(encoding_errors)
    if path == "-":
        return _decoded_lines(_stdin(), "<stdin>", encoding_errors, close=False)
    return _decoded_lines(_open_binary(path, path), path, encoding_errors, close=True)


def _decoded_lines(stream: BinaryIO, name: str, encoding_errors: str,
                   close: bool) -> Iterator[str]:
    try:
        for number, raw in enumerate(iter(stream.readline, b""), start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                yield raw.decode("utf-8", errors=encoding_errors)
            except UnicodeDecodeError:
                raise CorpusError(f"{name}: line {number}: invalid UTF-8 "
                                  "(use --encoding-errors replace to go on)") from None
    finally:
        if close:
            stream.close()
