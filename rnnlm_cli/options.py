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
