"""Checking hand-written gradients against finite differences (float64).

``check_gradient`` perturbs entries of one array in place, re-evaluates a scalar function,
and compares the numerical partial derivative with the analytic one by the relative error
``|a - n| / max(|a| + |n|, 1e-6)``. The numerical derivative is the fourth-order centred
difference

    n = (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / (12 h),     h = 1e-3,

whose error, about ``h^4 f^(5) / 30`` plus a rounding noise of ``1.5 eps |f| / h``, stays
near 1e-12 on a loss of order 1. The plain second-order difference ``(f(x+h) - f(x-h))/2h``
is noisier by two orders of magnitude at its best h, too much to hold a relative error of
1e-6 on the partials of size 1e-6 that every network has somewhere. The floor 1e-6 follows
from that noise: a partial smaller than 1e-6 is checked to an absolute 1e-12, the noise
itself, as no relative error can be asked of it (a tied ReLU network here has embedding
partials of 3e-10, whose finite differences are off by 1e-13). Differences of equal
values are taken first, so an entry the function does not depend on gives exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

STEP = 1e-3
FLOOR = 1e-6     # |a| + |n| below this: compared in absolute terms (noise ~1e-12)


def relative_error(analytic: float, numeric: float, floor: float = FLOOR) -> float:
    """``|a - n| / max(|a| + |n|, floor)``."""
    return abs(analytic - numeric) / max(abs(analytic) + abs(numeric), floor)


def numerical_partial(f: Callable[[], float], array: np.ndarray, index: Tuple[int, ...],
                      h: float = STEP) -> float:
    """d f / d array[index] by the fourth-order centred difference; ``array`` is
    perturbed in place and restored."""
    old = array[index]

    def at(delta: float) -> float:
        array[index] = old + delta
        return f()

    try:
        return (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
    finally:
        array[index] = old


@dataclass
class GradCheck:
    """The worst entry of one array: its index, both derivatives and their relative error."""

    worst: float
    index: Optional[Tuple[int, ...]]
    analytic: float
    numeric: float
    checked: int


def check_gradient(f: Callable[[], float], array: np.ndarray, analytic: np.ndarray,
                   sample: Optional[int] = None, rng: Optional[np.random.Generator] = None,
                   h: float = STEP) -> GradCheck:
    """Compare ``analytic`` with numerical partials of ``f`` for every entry of ``array``
    (float64), or for ``sample`` entries drawn at random (from ``rng``) when it has more."""
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays, not {array.dtype}")
    indices = list(np.ndindex(array.shape))
    if sample is not None and len(indices) > sample:
        rng = np.random.default_rng(0) if rng is None else rng
        indices = [indices[i] for i in rng.choice(len(indices), sample, replace=False)]
    result = GradCheck(0.0, None, 0.0, 0.0, len(indices))
    for index in indices:
        numeric = numerical_partial(f, array, index, h)
        error = relative_error(float(analytic[index]), numeric)
        if result.index is None or error > result.worst:
            result = GradCheck(error, index, float(analytic[index]), numeric, len(indices))
    return result
