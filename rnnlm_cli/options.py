"""Checking the values of a configuration, one way for every config of the library.

Every configuration dataclass (``TokenizerConfig``, ``NgramConfig``, ``RnnConfig``,
``TrainConfig``, ``SamplingConfig``) has a ``validate()`` that calls the checks below and
raises ``OptionError``. A message names the value the way a user set it, its command-line
flag: ``flag(field)`` is ``--field-name`` unless ``FLAGS`` says otherwise, the one table
from field to flag (``cli.py`` spells the same flags; ``tests/test_options.py`` checks
that every field of every config has its flag there). A model file's settings are
checked by the same ``validate()``; the loader names the file.
"""
from __future__ import annotations

import math
import os
import re
from typing import Iterable, Optional

from rnnlm_cli.errors import OptionError

# Field -> command-line flag, where the flag is not ``--`` + the field with dashes.
FLAGS = {
    "kind": "--tokenizer",          # TokenizerConfig.kind
}


def flag(field: str) -> str:
    """The command-line flag of a configuration field: ``hidden`` -> ``--hidden``."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def check_choice(field: str, value: object, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"{flag(field)} must be one of {', '.join(choices)}, not {value!r}")


def check_whole(field: str, value: object, low: int, high: Optional[int] = None,
                why: str = "") -> None:
    """An int (not a bool) in ``[low, high]``; ``why`` explains the bound in the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or \
            (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise OptionError(f"{flag(field)} must be a whole number {bound}{why}, not {value!r}")


def check_number(field: str, value: object, low: Optional[float] = None,
                 high: Optional[float] = None, low_open: bool = False,
                 high_open: bool = False, why: str = "") -> None:
    """A finite int or float (not a bool) within the bounds (open where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) \
            or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high)):
        bounds = _range(low, high, low_open, high_open)
        raise OptionError(f"{flag(field)} must be a number {bounds}{why}, not {value!r}")


def check_flag(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise OptionError(f"{flag(field)} must be true or false, not {value!r}")


def check_vocab_source(min_count: object, max_vocab: object) -> None:
    """``--vocab-from`` takes a model's words as they are: no ``--min-count`` (beyond its
    default 1) or ``--max-vocab`` beside it."""
    if min_count != 1 or max_vocab is not None:
        raise OptionError("--vocab-from takes the words of a model as they are: give it "
                          "without --min-count and --max-vocab")


def _range(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low:g}"
    if high is not None:
        return f"{'below' if high_open else 'at most'} {high:g}"
    return "(finite)"


# -- sizes of memory ---------------------------------------------------------------------------

LEAST_MEMORY = 1 << 20      # a smaller budget would spend its time on tiny runs
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]?)B?\s*", re.IGNORECASE)
_SHARE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*%\s*")


def parse_size(text: str, least: int = 0) -> int:
    """Bytes from a size as ``sort -S`` and ``lmplz -S`` write one: a number with a unit
    K, M, G or T (powers of 1024; ``B`` optional, ``500M``, ``1.5G``), plain bytes, or a
    share of the machine's memory (``50%``). ``OptionError`` if it is not a size, or
    is below ``least`` bytes."""
    size = _parse_size(text)
    if size < least:
        raise OptionError(f"{text!r} is less than the least that works, "
                          f"{_format_size(least)}")
    return size


def _parse_size(text: str) -> int:
    share = _SHARE.fullmatch(text)
    if share:
        percent = float(share.group(1))
        if not 0 < percent <= 100:
            raise OptionError(f"{text!r}: a share of the memory is above 0% and at most 100%")
        return int(physical_memory() * percent / 100)
    match = _SIZE.fullmatch(text)
    if match is None:
        raise OptionError(f"{text!r} is not a size: give bytes with a unit, as 500M or 4G, "
                          "or a share of the memory, as 50%")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _format_size(size: int) -> str:
    for unit in "TGMK":
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size} bytes"


def physical_memory() -> int:
    """The machine's memory in bytes (1 GiB if the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 30


def available_memory() -> int:
    """The memory free for a new process (Linux's MemAvailable), else the machine's."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()
