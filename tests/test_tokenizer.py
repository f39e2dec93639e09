"""Tests of rnnlm_cli.tokenizer: tokenizing, detokenizing, settings, reading corpora."""

import io
import os
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlm_cli.tokenizer as tokenizer_module
from rnnlm_cli.errors import CorpusError, OptionError, RnnlmError
from rnnlm_cli.tokenizer import (
    SPACE_SYMBOL,
    Tokenizer,
    TokenizerConfig,
    _decoded_lines,
    read_lines,
    split_lines,
    read_lines_lazily,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIWIKI_TRAIN = SHARED / "corpora" / "viwiki" / "train.txt"


def tok(kind="regex", level="word", lowercase=False):
    return Tokenizer(TokenizerConfig(kind=kind, level=level, lowercase=lowercase))


def nfd(s):
    return unicodedata.normalize("NFD", s)


# --- regex kind, word level --------------------------------------------------------

REGEX_WORD_CASES = [
    ('"Hello," she said.', ['"', "Hello", ",", '"', "she", "said", "."]),
    ("Nguyễn thuỷ tiếng Việt", ["Nguyễn", "thuỷ", "tiếng", "Việt"]),
    ("Tôi yêu tiếng Việt!", ["Tôi", "yêu", "tiếng", "Việt", "!"]),
    ("don't well-known O'Brien", ["don't", "well-known", "O'Brien"]),
    ("don\u2019t", ["don\u2019t"]),
    ("3.14 1,000,000 12:30 2024-05-01", ["3.14", "1,000,000", "12:30", "2024-05-01"]),
    ("05/01/2024 v1.2.3", ["05/01/2024", "v1.2.3"]),
    # separators join digits only, and only between digits
    ("It costs 3. 14 is a, b", ["It", "costs", "3", ".", "14", "is", "a", ",", "b"]),
    ("3.x 1,a a.5", ["3", ".", "x", "1", ",", "a", "a", ".", "5"]),
    # apostrophes and hyphens not between letters are their own tokens
    ("'quoted' -5 well- 'tis", ["'", "quoted", "'", "-", "5", "well", "-", "'", "tis"]),
    ("<unk> <s> </s> <eos> <my-tag_2>", ["<unk>", "<s>", "</s>", "<eos>", "<my-tag_2>"]),
    ("x<unk>y", ["x", "<unk>", "y"]),
    ("< a > <1>", ["<", "a", ">", "<", "1", ">"]),
    ("Wait... what…", ["Wait", ".", ".", ".", "what", "…"]),  # "..." is three "."
    ("(a) [b] {c} 50% ¿Qué? ¡Sí!", [
        "(", "a", ")", "[", "b", "]", "{", "c", "}", "50", "%",
        "¿", "Qué", "?", "¡", "Sí", "!",
    ]),
    ("a+b=c $5 #1 @x", ["a", "+", "b", "=", "c", "$", "5", "#", "1", "@", "x"]),
    ("I ❤ NY 😀😀 👍🏽", ["I", "❤", "NY", "😀", "😀", "👍🏽"]),
    ("🇻🇳 👨\u200d👩\u200d👧", ["🇻🇳", "👨\u200d👩\u200d👧"]),
    ("北京欢迎你 Москва δ", ["北京欢迎你", "Москва", "δ"]),
    ("snake_case", ["snake", "_", "case"]),
    ("  spaced \t out\u3000here\u00a0now  ", ["spaced", "out", "here", "now"]),
    ("ctrl\x00\x1cchars\u200bzw", ["ctrl", "chars", "zw"]),  # controls separate
    ("", []),
    ("   ", []),
]


@pytest.mark.parametrize("text, expected", REGEX_WORD_CASES)
def test_regex_word_tokens(text, expected):
    assert tok().tokenize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (nfd("Nguyễn thuỷ tiếng Việt"), ["Nguyễn", "thuỷ", "tiếng", "Việt"]),
        ("Nguye\u0302\u0303n", ["Nguyễn"]),
        ("Vie\u0323\u0302t", ["Việt"]),  # marks in non-canonical order
    ],
)
def test_decomposed_input_gives_nfc_words(text, expected):
    assert text != unicodedata.normalize("NFC", text)
    tokens = tok().tokenize(text)
    assert tokens == expected
    assert all(unicodedata.is_normalized("NFC", t) for t in tokens)


def test_lowercase():
    assert tok(lowercase=True).tokenize("Hà NỘI, ĐÀ Nẵng <UNK>") == [
        "hà", "nội", ",", "đà", "nẵng", "<unk>",
    ]
    assert tok(lowercase=False).tokenize("Hà NỘI") == ["Hà", "NỘI"]


def test_lowercase_result_is_nfc():
    # "J" + caron has no precomposed form, but lower-cased it composes to U+01F0.
    assert tok(lowercase=True).tokenize("J\u030c") == ["\u01f0"]
    assert tok(lowercase=True, level="char").tokenize("J\u030c") == ["\u01f0"]


# --- whitespace kind ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a b\tc\r\nd\fe\vf", ["a", "b", "c", "d", "e", "f"]),
        ("  hello ,  world . ", ["hello", ",", "world", "."]),
        ("don't 3.14 <unk>", ["don't", "3.14", "<unk>"]),
        ("a\u3000b c", ["a\u3000b", "c"]),  # ideographic space: not a separator
        ("a\u2009b\u00a0c", ["a\u2009b\u00a0c"]),  # thin space, no-break space
        ("a\x1cb\x1fc d", ["a\x1cb\x1fc", "d"]),  # str.split() would split here
        ("a\x85b\u2028c", ["a\x85b\u2028c"]),
        ("", []),
        (" \t ", []),
    ],
)
def test_whitespace_splits_on_ascii_whitespace_only(text, expected):
    t = tok(kind="whitespace")
    assert t.tokenize(text) == expected
    assert list(t.tokenize_lines([text])) == [expected]


def test_whitespace_normalizes_and_lowercases():
    assert tok(kind="whitespace").tokenize(nfd("Việt Nam")) == ["Việt", "Nam"]
    assert tok(kind="whitespace", lowercase=True).tokenize("Việt NAM") == ["việt", "nam"]


def test_tokenize_lines_is_map_of_tokenize():
    lines = [
        "plain ascii line", "Tiếng Việt có dấu", nfd("Tiếng Việt"), "a\u3000b c",
        "x\x1cy", "", "  ", "tab\tsep", "NBSP\u00a0here", "Hello, World!",
    ]
    for kind in ("regex", "whitespace"):
        for level in ("word", "char"):
            for lowercase in (False, True):
                t = tok(kind, level, lowercase)
                assert list(t.tokenize_lines(lines)) == [t.tokenize(x) for x in lines]
    # lazy: works on a one-shot iterator
    assert list(tok(kind="whitespace").tokenize_lines(iter(["a b"]))) == [["a", "b"]]


@pytest.mark.skipif(not VIWIKI_TRAIN.exists(), reason="../shared corpora absent")
def test_viwiki_token_count_matches_kenlm():
    lines = read_lines(str(VIWIKI_TRAIN))
    assert len(lines) == 163_990
    tokens = tok(kind="whitespace").tokenize_lines(lines)
    assert sum(map(len, tokens)) == 4_327_138


# --- character level ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regex", "whitespace"])
def test_char_level(kind):
    t = tok(kind=kind, level="char")
    assert t.tokenize("ab  c") == ["a", "b", SPACE_SYMBOL, "c"]
    assert t.tokenize(" \tab\t c \n") == ["a", "b", SPACE_SYMBOL, "c"]
    assert t.tokenize(nfd("Việt ơi")) == ["V", "i", "ệ", "t", SPACE_SYMBOL, "ơ", "i"]
    assert t.tokenize("a.b,") == ["a", ".", "b", ","]
    assert t.tokenize("") == []


def test_char_level_whitespace_definition():
    # regex kind: any Unicode whitespace; whitespace kind: ASCII whitespace only
    assert tok(level="char").tokenize("a\u3000b") == ["a", SPACE_SYMBOL, "b"]
    assert tok(kind="whitespace", level="char").tokenize("a\u3000b") == ["a", "\u3000", "b"]


def test_char_level_reads_space_symbol_as_space():
    t = tok(level="char")
    assert t.tokenize(f"a{SPACE_SYMBOL}b {SPACE_SYMBOL}") == ["a", SPACE_SYMBOL, "b"]
    assert t.tokenize(SPACE_SYMBOL) == []


def test_char_level_lowercase():
    assert tok(level="char", lowercase=True).tokenize("ĐÀ") == ["đ", "à"]


# --- detokenizing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (['"', "Hello", ",", '"', "she", "said", "."], '"Hello," she said.'),
        (["a", "(", "b", ")", "[", "c", "]", "{", "d", "}", "e"], "a (b) [c] {d} e"),
        (["50", "%", "of", "them", "…"], "50% of them…"),
        (["¿", "Qué", "?", "¡", "Sí", "!"], "¿Qué? ¡Sí!"),
        (["a", ";", "b", ":", "c", "!", "d", "?"], "a; b: c! d?"),
        (["Wait", ".", ".", ".", "what"], "Wait... what"),
        (['"', "a", '"', "b", '"', "c", '"'], '"a" b "c"'),
        (["x", '"', '"', "y"], 'x "" y'),
        (["say", '"', "(", "hi", ")", '"', "."], 'say "(hi)".'),
        (["<s>", "a", "<unk>", ",", "b", "</s>"], "<s> a <unk>, b </s>"),
        (["-", "'", "x", "'"], "- ' x '"),
        (["(", "\u0301"], "( \u0301"),  # a mark glued to "(" would join it
        ([], ""),
    ],
)
def test_detokenize_words(tokens, expected):
    assert tok().detokenize(tokens) == expected


def test_detokenize_chars():
    t = tok(level="char")
    assert t.detokenize(["a", "b", SPACE_SYMBOL, "c", "."]) == "ab c."
    assert t.detokenize([]) == ""


ROUND_TRIP_SENTENCES = [
    "The cat sat on the mat.",
    '"Hello," she said.',
    'He said: "It\'s 3.14, not 3!"',
    "Prices rose 5% in 2024-05 (see Table 2).",
    "Is it well-known? Yes, O'Brien knows.",
    "Wait... what?",
    "Lists [a, b] and sets {c}; done!",
    "<s> the <unk> ran </s>",
    "¿Dónde está? ¡Aquí!",
    "Nguyễn Văn A sinh năm 1990 (tại Hà Nội).",
    "Tôi yêu tiếng Việt, thật đấy!",
    "Nước thuỷ triều lên lúc 12:30, ngày 01/05/2024.",
    'Anh ấy nói: "Xin chào!"',
    "Dân số khoảng 1,000,000 người…",
]


@pytest.mark.parametrize("sentence", ROUND_TRIP_SENTENCES)
def test_round_trip_sentences(sentence):
    t = tok()
    assert t.detokenize(t.tokenize(sentence)) == sentence


@pytest.mark.parametrize("sentence", ROUND_TRIP_SENTENCES)
def test_round_trip_chars(sentence):
    t = tok(level="char")
    assert t.detokenize(t.tokenize(sentence)) == sentence


@settings(max_examples=300, deadline=None)
@given(text=st.text(), lowercase=st.booleans())
def test_regex_word_tokens_are_stable(text, lowercase):
    t = tok(lowercase=lowercase)
    tokens = t.tokenize(text)
    assert all(tokens)
    assert not any(c.isspace() for token in tokens for c in token)
    assert t.tokenize(t.detokenize(tokens)) == tokens


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab1 .,'\"-()!?:%¿<>/\u0301\u3000ệ"))),
)
def test_regex_word_tokens_are_stable_on_punctuation_heavy_text(text):
    t = tok()
    tokens = t.tokenize(text)
    assert t.tokenize(t.detokenize(tokens)) == tokens


@settings(max_examples=200, deadline=None)
@given(text=st.text(), kind=st.sampled_from(["regex", "whitespace"]), lowercase=st.booleans())
def test_char_tokens_are_stable(text, kind, lowercase):
    t = tok(kind=kind, level="char", lowercase=lowercase)
    tokens = t.tokenize(text)
    assert all(len(token) == 1 for token in tokens)
    assert t.tokenize(t.detokenize(tokens)) == tokens


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_whitespace_words_match_bytes_split(text):
    # bytes.split() splits on exactly KenLM's six ASCII whitespace characters
    nfc = unicodedata.normalize("NFC", text)
    expected = [b.decode() for b in nfc.encode().split()]
    t = tok(kind="whitespace")
    assert t.tokenize(text) == expected
    assert list(t.tokenize_lines([text])) == [expected]


# --- configuration -----------------------------------------------------------------


def test_config_defaults_and_round_trip():
    assert TokenizerConfig().to_dict() == {"kind": "regex", "level": "word", "lowercase": False}
    for cfg in [
        TokenizerConfig(),
        TokenizerConfig(kind="whitespace", level="char", lowercase=True),
    ]:
        d = cfg.to_dict()
        assert TokenizerConfig.from_dict(d) == cfg
        assert all(isinstance(v, (str, bool)) for v in d.values())  # JSON-able


def test_config_from_dict_fills_missing_keys():
    assert TokenizerConfig.from_dict({"level": "char"}) == TokenizerConfig(level="char")


@pytest.mark.parametrize(
    "d, message",
    [
        ({"kind": "bpe"},
         "bad tokenizer settings: --tokenizer must be one of regex, whitespace, not 'bpe'"),
        ({"level": "byte"},
         "bad tokenizer settings: --level must be one of word, char, not 'byte'"),
        ({"kind": 1},
         "bad tokenizer settings: --tokenizer must be one of regex, whitespace, not 1"),
        ({"lowercase": 1}, "bad tokenizer settings: --lowercase must be true or false, not 1"),
        ({"lowercase": "false"},
         "bad tokenizer settings: --lowercase must be true or false, not 'false'"),
        ({"casefold": True}, "unknown tokenizer setting(s): casefold"),
    ],
)
def test_config_from_dict_rejects_bad_values(d, message):
    with pytest.raises(ValueError) as e:
        TokenizerConfig.from_dict(d)
    assert str(e.value) == message


def test_config_rejects_non_mapping_and_validates_on_construction():
    with pytest.raises(ValueError, match="must be a mapping"):
        TokenizerConfig.from_dict(["regex"])
    with pytest.raises(OptionError, match="--level must be one of word, char"):
        TokenizerConfig(level="sentence")
    with pytest.raises(TypeError):
        Tokenizer({"kind": "regex"})


# --- read_lines --------------------------------------------------------------------


def write(tmp_path, data: bytes, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"a b\nc d\n", ["a b", "c d"]),
        (b"a b\nc d", ["a b", "c d"]),  # no final newline
        (b"\xef\xbb\xbfa\nb\n", ["a", "b"]),  # BOM removed
        (b"a\r\nb\r\n", ["a", "b"]),  # CRLF
        (b"a\r\r\nb\rc\n", ["a\r", "b\rc"]),  # one \r stripped, inner \r kept
        (b"a\n\n\nb\n", ["a", "", "", "b"]),  # blank lines are sentences
        (b"\n", [""]),
        (b"a\n\n", ["a", ""]),
        ("a\u2028b\x85c\x0cd\n".encode(), ["a\u2028b\x85c\x0cd"]),  # \n only
        ("Tiếng Việt\n".encode(), ["Tiếng Việt"]),
        (b"", []),  # empty is not an error here
    ],
)
def test_read_lines(tmp_path, data, expected):
    assert read_lines(write(tmp_path, data)) == expected


def test_read_lines_stdin(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO("xin chào\r\nthế giới\n".encode())

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert read_lines("-") == ["xin chào", "thế giới"]


def test_read_lines_invalid_utf8_names_line(tmp_path):
    path = write(tmp_path, b"ok\n\xef\xbb\xbfnot a bom here\nbad \xff byte\nok\n")
    with pytest.raises(CorpusError) as e:
        read_lines(path)
    assert str(e.value) == (
        f"{path}: line 3: invalid UTF-8 (use --encoding-errors replace to go on)"
    )


def test_read_lines_invalid_utf8_with_bom_and_truncated_sequence(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfa\nb\nc\nd\xe1\xbb")  # cut-off "ệ" on line 4
    with pytest.raises(CorpusError, match=r": line 4: invalid UTF-8"):
        read_lines(path)


def test_read_lines_invalid_utf8_from_stdin(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO(b"\xff\n")

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    with pytest.raises(CorpusError, match=r"^<stdin>: line 1: invalid UTF-8"):
        read_lines("-")


def test_read_lines_replace_goes_on(tmp_path):
    path = write(tmp_path, b"ok\nfine\nbad \xff byte\nok\n")
    assert read_lines(path, encoding_errors="replace") == [
        "ok", "fine", "bad \ufffd byte", "ok",
    ]


def test_read_lines_missing_file(tmp_path):
    path = str(tmp_path / "nope.txt")
    with pytest.raises(CorpusError) as e:
        read_lines(path)
    assert str(e.value) == f"{path}: no such file"
    assert isinstance(e.value, RnnlmError)


def test_read_lines_directory(tmp_path):
    with pytest.raises(CorpusError) as e:
        read_lines(str(tmp_path))
    assert str(e.value) == f"{tmp_path}: is a directory"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="needs POSIX, and root reads any file"
)
def test_read_lines_permission_denied(tmp_path):
    path = write(tmp_path, b"secret\n")
    Path(path).chmod(0)
    try:
        with pytest.raises(CorpusError) as e:
            read_lines(path)
        assert str(e.value) == f"{path}: permission denied"
    finally:
        Path(path).chmod(0o644)


def test_read_lines_rejects_unknown_error_mode(tmp_path):
    with pytest.raises(OptionError, match="encoding errors must be one of strict, replace"):
        read_lines(write(tmp_path, b"a\n"), encoding_errors="ignore")


def test_read_lines_lazily(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\nthree")
    assert list(read_lines_lazily(str(path))) == ["one", "two", "", "three"]
    path.write_bytes(b"ok\nbad \xff\n")
    lines = read_lines_lazily(str(path))
    assert next(lines) == "ok"
    with pytest.raises(CorpusError, match=r"p.txt: line 2: invalid UTF-8"):
        next(lines)
    assert list(read_lines_lazily(str(path), "replace"))[1] == "bad \ufffd"
    with pytest.raises(CorpusError, match="no such file"):
        read_lines_lazily(str(tmp_path / "nope.txt"))


def test_read_lines_lazily_yields_before_the_stream_ends():
    class Trickle(io.RawIOBase):
        """A stream that fails if read past the first line before it was consumed."""
        def __init__(self):
            self.chunks = [b"first\n", b"second\n"]
            self.consumed = False

        def readable(self):
            return True

        def readline(self, size=-1):
            if len(self.chunks) == 1:
                assert self.consumed, "read ahead of the consumer"
            return self.chunks.pop(0) if self.chunks else b""

    stream = Trickle()
    lines = _decoded_lines(stream, "t", "strict", close=False)
    assert next(lines) == "first"
    stream.consumed = True
    assert list(lines) == ["second"]


# --- token spans: the whitespace tokenizer with array operations ----------------------

WHITESPACE_TEXT = st.lists(st.sampled_from(
    list("ab <>/sunkéệ\u0301\u00a0\x1c\t\r\n\x0b\x0c\u4e2d") + ["xxxxxxxxxxxxxxxxxxx"])
).map("".join) | st.text()


@settings(max_examples=300, deadline=None)
@given(text=WHITESPACE_TEXT, lowercase=st.booleans())
def test_token_spans_are_the_tokens_of_each_line(text, lowercase):
    t = tok(kind="whitespace", lowercase=lowercase)
    spans = t.token_spans(text)
    words = [bytes(spans.data[s:s + n]).decode("utf-8")
             for s, n in zip(spans.starts.tolist(), spans.sizes.tolist())]
    expected = list(t.tokenize_lines(split_lines(text)))
    assert spans.lengths.tolist() == [len(line) for line in expected]
    assert words == [w for line in expected for w in line]
    assert not spans.data[len(spans.data) - 16:].any()          # zero padding after the text


def test_token_spans_of_blank_lines_and_no_final_newline():
    spans = tok(kind="whitespace").token_spans("\n \t\nx y\n\nlast")
    assert spans.lengths.tolist() == [0, 0, 2, 0, 1]
    assert tok(kind="whitespace").token_spans("").lengths.tolist() == []


def test_token_spans_only_for_the_whitespace_word_tokenizer():
    assert tok(kind="regex").token_spans("a b") is None
    assert tok(kind="whitespace", level="char").token_spans("a b") is None


# --- the NFC check of long texts -----------------------------------------------------


def test_composing_starters_are_those_of_this_unicode_version():
    """Every character of combining class 0 that NFC composes with a character before it:
    the second half of some primary composite (Hangul jamo compose by rule, not by table)."""
    seconds = set()
    for code in range(sys.maxunicode + 1):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            first, second = (chr(int(p, 16)) for p in parts)
            if unicodedata.normalize("NFC", first + second) == chr(code):
                seconds.add(second)
    starters = {c for c in seconds if unicodedata.combining(c) == 0}
    hangul = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}
    assert starters | hangul == set(tokenizer_module._COMPOSING_STARTERS)


NFC_PIECES = st.sampled_from(["a", "e", "\u0301", "\u0323", "\u0302", "ệ", "\u212b", "\u1100",
                              "\u1161", "\u11a8", "\u0b47", "\u0b3e", "\n", " ", "Việt", "x"])


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(NFC_PIECES, max_size=30), at=st.integers(0, 12_000))
def test_is_nfc_of_a_long_text_is_unicodedatas(pieces, at):
    filler = "plain ascii line\n" * 700 + "tiếng Việt\n" * 30           # > _LONG_TEXT
    text = filler[:at] + "".join(pieces) + filler[at:]
    assert len(text) >= tokenizer_module._LONG_TEXT
    assert tokenizer_module._is_nfc(text) == unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize("data, blank", [
    (b" \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\n", True),     # every ASCII whitespace
    ("\u00a0\u3000 \n".encode(), True),                  # no-break and ideographic spaces
    (b"  x\n", False), ("  \u00e9\n".encode(), False), ("\u00a0x\n".encode(), False),
    (b"\n", True)])
def test_a_block_is_blank_when_it_holds_only_whitespace(data, blank):
    from rnnlm_cli.tokenizer import TextBlock
    assert TextBlock(data, "t.txt", 1, "strict").is_blank() is blank
