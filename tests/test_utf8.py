"""utf8.py: UTF-8 checked and its characters found on the bytes, as Python's strict
decoder judges them; and ``tokenizer.nfc_bytes``, NFC on the bytes of a block."""
from __future__ import annotations

import unicodedata

import numpy as np
from hypothesis import given, settings, strategies as st

from rnnlm_cli.hashing import padded_bytes
from rnnlm_cli.tokenizer import nfc_bytes
from rnnlm_cli.utf8 import code_points, distinct


def decoded(raw: bytes):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check(raw: bytes) -> None:
    found = code_points(padded_bytes(raw), len(raw))
    text = decoded(raw)
    assert (found is None) == (text is None), raw
    if text is not None:
        starts, code = found
        wide = [(i, ord(c)) for i, c in enumerate(text) if ord(c) >= 0x80]
        assert code.tolist() == [c for _, c in wide]
        # each character starts where the UTF-8 of the text before it ends
        assert starts.tolist() == [len(text[:i].encode()) for i, _ in wide]


# Bytes near the edges of the encoding: leads, continuations, the bytes never valid.
EDGY = st.sampled_from([0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                        0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3,
                        0xF4, 0xF5, 0xFF])


@settings(max_examples=1000, deadline=None)
@given(st.lists(EDGY, max_size=12).map(bytes))
def test_bytes_near_the_edges_are_judged_as_python_judges_them(raw):
    check(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(0, 40))
def test_text_and_text_cut_anywhere(text, cut):
    raw = text.encode("utf-8")
    check(raw)
    check(raw[:cut])
    check(raw[cut:])


def test_the_classic_bad_sequences():
    for raw in [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80", b"\x80", b"a\xe1\xbb", b"\xe1\xbb\xc3\x87"]:
        assert code_points(padded_bytes(raw), len(raw)) is None, raw
    check("ệ𝄞€ß".encode())


def test_distinct():
    assert distinct(np.array([0x1EC7, 0xE9, 0x1EC7, 0x10FFFF])).tolist() == \
        [0xE9, 0x1EC7, 0x10FFFF]


def test_nfc_bytes_normalizes_only_what_nfc_changes():
    nfd = unicodedata.normalize("NFD", "tiếng Việt")
    kept = "x\u0301 \u0e01\u0e38 ok"            # marks NFC leaves as they are
    raw = f"plain\n{nfd}\n{kept}\n{nfd} {kept}\n".encode()
    expected = "\n".join(unicodedata.normalize("NFC", line)
                         for line in raw.decode().split("\n")).encode()
    assert nfc_bytes(raw) == expected
    same = f"plain\n{kept}\n".encode()
    assert nfc_bytes(same) is same
    assert nfc_bytes(b"bad \xff\n") is None
