"""UTF-8 text checked, and its characters listed, with array operations on its bytes.

Scoring a large text reads it as bytes and cuts it into tokens as bytes
(``tokenizer.TokenSpans``); these functions let it do so without ever making a Python
string of the text: ``code_points`` both checks that the bytes are UTF-8 and says which
characters they hold and where, which is what the NFC check needs (a line none of whose
characters can change under NFC is in NFC).

A character of n bytes starts with a lead byte that says n (``110xxxxx`` 2,
``1110xxxx`` 3, ``11110xxx`` 4) followed by n - 1 continuation bytes ``10xxxxxx``.
Bytes are valid UTF-8, as Python's strict decoder judges them, when every lead byte is
followed by its continuation bytes, there is no other continuation byte (so the count of
continuation bytes is the sum of n - 1 over the leads), and no character is encoded in
more bytes than it needs (overlong), is a surrogate (U+D800-U+DFFF) or lies past
U+10FFFF: lead bytes C0, C1 and F5-FF never occur, and after E0, ED, F0 and F4 the second
byte has a narrower range (RFC 3629's table).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# Bytes of the character each byte starts (0: not a lead byte, or one never valid).
_LENGTH = np.zeros(256, dtype=np.int8)
_LENGTH[0xC2:0xE0] = 2
_LENGTH[0xE0:0xF0] = 3
_LENGTH[0xF0:0xF5] = 4
# The range of the second byte after each lead (RFC 3629); continuation bytes otherwise.
_SECOND_LOW = np.full(256, 0x80, dtype=np.uint8)
_SECOND_HIGH = np.full(256, 0xBF, dtype=np.uint8)
_SECOND_LOW[[0xE0, 0xF0]] = [0xA0, 0x90]
_SECOND_HIGH[[0xED, 0xF4]] = [0x9F, 0x8F]
# The bits of the lead byte that belong to the code point, by length.
_LEAD_BITS = np.array([0, 0, 0x1F, 0x0F, 0x07], dtype=np.int32)

PADDING = 3     # zero bytes the array must hold after the text (a lead's 3 followers)


def code_points(data: np.ndarray, size: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(starts, code points)`` of the non-ASCII characters in the first ``size`` bytes of
    ``data`` (the byte offset where each starts, int64, and its code point, int32), or None
    if those bytes are not valid UTF-8. ``data`` (uint8) holds at least ``PADDING`` zero
    bytes after them."""
    text = data[:size]
    if size == 0 or int(text.max()) < 0x80:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    leads = np.flatnonzero(text >= 0xC0)
    first = text.take(leads)
    length = _LENGTH.take(first)
    if leads.size and int(length.min()) == 0:
        return None                                  # C0, C1, F5-FF
    continuation = np.count_nonzero((text & np.uint8(0xC0)) == 0x80)
    if continuation != int(length.sum(dtype=np.int64)) - leads.size:
        return None                                  # a stray or a missing continuation
    second = data.take(leads + 1)
    if not np.all((second >= _SECOND_LOW.take(first)) & (second <= _SECOND_HIGH.take(first))):
        return None                                  # overlong, surrogate, past U+10FFFF
    code = (first & _LEAD_BITS.take(length)).astype(np.int32)
    code = (code << 6) | (second & 0x3F)
    for k in (2, 3):            # the third and fourth bytes of the longer characters
        longer = np.flatnonzero(length > k)
        if longer.size == 0:
            break
        follower = data.take(leads.take(longer) + k)
        if not np.all((follower & np.uint8(0xC0)) == 0x80):
            return None
        code[longer] = (code.take(longer) << 6) | (follower & 0x3F)
    return leads, code


def distinct(code: np.ndarray) -> np.ndarray:
    """The distinct values (ascending) of an array of code points."""
    seen = np.zeros(0x110000, dtype=bool)
    seen[code] = True
    return np.flatnonzero(seen)
