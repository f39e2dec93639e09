"""Optimisers and gradient-norm clipping over a network's ``params`` dict.

Each optimiser updates the parameters in place, in their own dtype (float32 in
training), with PyTorch's update rules and default constants, so a run compares with
a PyTorch run of the same settings. ``state_dict()`` gives the optimiser's state as
plain arrays for a checkpoint (keys like ``"m.layer0.W"``: the slot, then the
parameter); ``load_state_dict`` takes them back. ``clip_gradients`` is the
norm-clipping algorithm over the whole gradient.

A gradient is an array like its parameter, or one of two sparse kinds:

- a ``RowGradient``: the gradient of an embedding matrix is zero but for the rows of the
  words a chunk reads (a few hundred of 60,000), so it is kept as those rows only;
- a ``BlockGradient``: the gradient of the class softmax's word matrix is zero but for
  the blocks of rows of the classes a chunk's targets fall in, and each block is a product
  ``dz^T s`` of a few positions' factors, (p, m)^T (p, H): a large class's block is kept
  as the factors (``ProductBlock``; a class of 9,000 words hit by 3 positions: 3 x (9,000
  + 200) numbers instead of 9,000 x 200), the small classes' rows come multiplied out
  (``RowGradient`` parts).

Norms, clipping, SGD and Adagrad touch the stored rows alone (for both, a zero gradient
changes neither the parameter nor the state, so the update is the dense one exactly);
Adam, whose moments move with a zero gradient too, decays them everywhere and adds the
stored rows (the dense update's floats exactly). A block's norm comes
from its factors' Gram matrices, ``||L^T R||^2 = <L L^T, R R^T>``, and SGD subtracts the
product from the parameter's rows piece by piece, so the (m, H) block is never written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import numpy as np

Arrays = Dict[str, np.ndarray]


@dataclass
class RowGradient:
    """The gradient of a (n, ...) parameter: ``values[i]`` at row ``rows[i]`` (distinct
    rows), zero elsewhere."""

    rows: np.ndarray
    values: np.ndarray
    shape: Tuple[int, ...]

    @property
    def dtype(self):
        return self.values.dtype

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.values.dtype)
        out[self.rows] = self.values
        return out

    # The interface of a sparse gradient (and of a part of a ``BlockGradient``):

    def pieces(self):
        """``(index, values)`` pairs: the gradient's nonzero rows ``param[index]`` are
        ``values``, which the caller may scale in place (the gradient is used up)."""
        return [(self.rows, self.values)]

    def squared_norm(self) -> float:
        return _sum_of_squares(self.values)

    def scale(self, factor) -> None:
        self.values *= factor

    def subtract_from(self, param: np.ndarray) -> None:
        """``param -= gradient`` (SGD's step after ``scale(lr)``)."""
        param[self.rows] -= self.values


PIECE_ROWS = 256   # rows of a block's product made at once (200 KB at H=200: in cache)


@dataclass
class ProductBlock:
    """Rows ``start:start + m`` of a gradient, given as the product ``left.T @ right`` of
    ``left`` (p, m) and ``right`` (p, k); zero elsewhere."""

    start: int
    left: np.ndarray
    right: np.ndarray

    def pieces(self):
        """The product ``PIECE_ROWS`` rows at a time (each piece made while in cache)."""
        m = self.left.shape[1]
        for lo in range(0, m, PIECE_ROWS):
            hi = min(lo + PIECE_ROWS, m)
            yield slice(self.start + lo, self.start + hi), self.left[:, lo:hi].T @ self.right

    def squared_norm(self) -> float:
        """``||L^T R||_F^2 = sum((L L^T) * (R R^T))`` from the (p, p) Gram matrices, in
        float64 (their entries may cancel)."""
        left, right = self.left.astype(np.float64), self.right.astype(np.float64)
        return float(np.vdot(left @ left.T, right @ right.T))

    def scale(self, factor) -> None:
        self.left *= factor

    def subtract_from(self, param: np.ndarray) -> None:
        """``param -= gradient``, ``PIECE_ROWS`` rows of the product at a time. When
        ``param`` is the first columns of a joined array (``decoders.join``), the rows of
        the joined array are updated, the product padded with zero columns: NumPy goes
        through contiguous rows much faster than rows with a gap (1.7x on the word
        matrix of viwiki's class softmax), and ``x - 0`` leaves the other columns as
        they are, exactly."""
        rows, right = _whole_rows(param), self.right
        if rows is not param:
            right = np.zeros((right.shape[0], rows.shape[1]), dtype=right.dtype)
            right[:, :param.shape[1]] = self.right
        m = self.left.shape[1]
        for lo in range(0, m, PIECE_ROWS):
            hi = min(lo + PIECE_ROWS, m)
            rows[self.start + lo:self.start + hi] -= self.left[:, lo:hi].T @ right


def _whole_rows(param: np.ndarray) -> np.ndarray:
    """The C-contiguous 2-D array whose first columns ``param`` is, if it is one; else
    ``param``."""
    whole = param.base
    if whole is None or param.ndim != 2 or whole.ndim != 2 or whole is param \
            or not whole.flags.c_contiguous or whole.dtype != param.dtype \
            or whole.shape[0] != param.shape[0] or whole.strides != param.strides \
            or whole.__array_interface__["data"][0] != param.__array_interface__["data"][0]:
        return param
    return whole


@dataclass
class DenseBlock:
    """Rows ``start:start + m`` of a gradient, given as the array ``values`` (m, k); zero
    elsewhere."""

    start: int
    values: np.ndarray

    def pieces(self):
        return [(slice(self.start, self.start + len(self.values)), self.values)]

    def squared_norm(self) -> float:
        return _sum_of_squares(self.values)

    def scale(self, factor) -> None:
        self.values *= factor

    def subtract_from(self, param: np.ndarray) -> None:
        param[self.start:self.start + len(self.values)] -= self.values


@dataclass
class BlockGradient:
    """The gradient of a (n, k) parameter: the sum of ``parts`` with no nonzero row in
    common (``ProductBlock``, ``DenseBlock``, ``RowGradient``)."""

    parts: List[object]
    shape: Tuple[int, ...]
    dtype: np.dtype

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.dtype)
        for index, values in self.pieces():
            out[index] = values
        return out

    def pieces(self):
        return (piece for part in self.parts for piece in part.pieces())

    def squared_norm(self) -> float:
        return sum(part.squared_norm() for part in self.parts)

    def scale(self, factor) -> None:
        for part in self.parts:
            part.scale(factor)

    def subtract_from(self, param: np.ndarray) -> None:
        for part in self.parts:
            part.subtract_from(param)


SPARSE = (RowGradient, BlockGradient)


def dense(g) -> np.ndarray:
    """``g`` as an array like its parameter."""
    return g.dense() if isinstance(g, SPARSE) else g


def clip_gradients(grads: Mapping[str, np.ndarray], threshold: float) -> Tuple[float, bool]:
    """``if ||g|| >= threshold: g = threshold / ||g|| * g``, over all arrays together.

    Scales ``grads`` in place; ``threshold`` 0 disables clipping. Returns the norm before
    clipping and whether the gradient was scaled.
    """
    norm = global_norm(grads)
    if threshold <= 0 or not norm >= threshold or not math.isfinite(norm):
        return norm, False
    scale = threshold / norm
    for g in grads.values():
        if isinstance(g, SPARSE):
            g.scale(g.dtype.type(scale))
        else:
            g *= g.dtype.type(scale)
    return norm, True


NORM_BLOCK = 1 << 15   # float32 dot products this long lose ~1e-7; their sum is float64


def global_norm(arrays: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of all arrays (and sparse gradients) taken as one vector."""
    total = 0.0
    for a in arrays.values():
        total += a.squared_norm() if isinstance(a, SPARSE) else _sum_of_squares(a)
    return math.sqrt(total)


def _sum_of_squares(a: np.ndarray) -> float:
    """``sum(a ** 2)`` in float64, without copying ``a``.

    A contiguous array: blocks of ``NORM_BLOCK`` values through BLAS ``dot`` in the
    array's dtype, summed in float64 (as exact as a float64 sum for clipping, at a tenth
    of its cost). Any other (a part of a joined array, ``decoders.join``: rows with a gap
    between them): each row's sum of squares by ``einsum`` (no copy), summed in float64.
    """
    if not a.flags.c_contiguous and a.ndim >= 2:
        rows = a.reshape(a.shape[0], -1)
        return float(np.einsum("ij,ij->i", rows, rows).sum(dtype=np.float64))
    flat = a.reshape(-1)
    total = 0.0
    for start in range(0, flat.size, NORM_BLOCK):
        block = flat[start:start + NORM_BLOCK]
        total += float(np.dot(block, block))
    return total


class Optimizer:
    """``step(params, grads, lr)`` updates ``params`` in place. It may overwrite
    ``grads`` (SGD scales them in place rather than allocate a temporary as large as
    the parameters): a gradient is used up by the step."""

    name = ""

    def step(self, params: Arrays, grads: Mapping[str, np.ndarray], lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> Arrays:
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"{self.name} has no state, got {sorted(state)}")

    @staticmethod
    def _slots(prefix: str, params: Arrays) -> Arrays:
        return {f"{prefix}.{k}": np.zeros_like(p) for k, p in params.items()}

    @staticmethod
    def _load_slots(target: Arrays, state: Mapping[str, np.ndarray],
                    squares: bool = False) -> None:
        """Copy ``state`` into the slots of ``target``; ``squares``: sums of squared
        gradients, which a square root is taken of (never negative)."""
        for key, slot in target.items():
            if key not in state:
                raise ValueError(f"optimiser state '{key}' is missing")
            value = np.asarray(state[key])
            if value.shape != slot.shape:
                raise ValueError(f"optimiser state '{key}' has shape {value.shape}, "
                                 f"not {slot.shape}")
            if squares and (value < 0).any():
                raise ValueError(f"optimiser state '{key}' holds negative values")
            slot[...] = value


class SGD(Optimizer):
    """``p -= lr * g``, computed as ``g *= lr; p -= g`` (the same floats; for a
    ``ProductBlock``, ``lr`` scales its (p, m) factor)."""

    name = "sgd"

    def __init__(self, params: Arrays):
        pass

    def step(self, params, grads, lr):
        for k, p in params.items():
            g = grads[k]
            if isinstance(g, SPARSE):
                g.scale(p.dtype.type(lr))               # a product block: its small factor
                g.subtract_from(p)
            else:
                g *= p.dtype.type(lr)
                p -= g


class Adagrad(Optimizer):
    """``s += g**2; p -= lr * g / (sqrt(s) + eps)`` (PyTorch's Adagrad, eps 1e-10)."""

    name = "adagrad"

    def __init__(self, params: Arrays, eps: float = 1e-10):
        self.eps = eps
        self.sum = self._slots("sum", params)

    def step(self, params, grads, lr):
        for k, p in params.items():
            g, s = grads[k], self.sum[f"sum.{k}"]
            if not isinstance(g, SPARSE):
                s += g * g
                denom = np.sqrt(s)
                denom += p.dtype.type(self.eps)
                p -= p.dtype.type(lr) * g / denom
                continue
            for index, g in g.pieces():                 # the nonzero rows alone
                s_rows = s[index] + g * g
                s[index] = s_rows
                p[index] -= p.dtype.type(lr) * g / (np.sqrt(s_rows) + p.dtype.type(self.eps))

    def state_dict(self):
        return dict(self.sum)

    def load_state_dict(self, state):
        self._load_slots(self.sum, state, squares=True)


class Adam(Optimizer):
    """PyTorch's Adam (betas 0.9, 0.999; eps 1e-8), with bias correction.

    ``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g**2;
    p -= lr / (1-b1**t) * m / (sqrt(v) / sqrt(1-b2**t) + eps)``
    """

    name = "adam"

    def __init__(self, params: Arrays, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m = self._slots("m", params)
        self.v = self._slots("v", params)

    def step(self, params, grads, lr):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr / (1 - b1 ** self.t)
        root_correction = math.sqrt(1 - b2 ** self.t)
        for k, p in params.items():
            f = p.dtype.type
            g, m, v = grads[k], self.m[f"m.{k}"], self.v[f"v.{k}"]
            # The moments decay everywhere, and take the gradient where it is nonzero:
            # a zero row gives m * b1 + 0, the dense update's floats exactly.
            m *= f(b1)
            v *= f(b2)
            for index, values in (g.pieces() if isinstance(g, SPARSE) else [(Ellipsis, g)]):
                m[index] += f(1 - b1) * values
                v[index] += f(1 - b2) * (values * values)
            _adam_update(p, m, v, f(step_size), f(root_correction), f(self.eps))

    def state_dict(self):
        return {**self.m, **self.v, "t": np.array(self.t, dtype=np.int64)}

    def load_state_dict(self, state):
        if "t" not in state:
            raise ValueError("optimiser state 't' is missing")
        self._load_slots(self.m, state)
        self._load_slots(self.v, state, squares=True)
        t = np.asarray(state["t"])
        if t.shape != () or t.dtype.kind not in "iu" or t < 0:
            raise ValueError(f"optimiser state 't' is {t.tolist()!r}, not a count of steps")
        self.t = int(t)


ADAM_BLOCK = 1 << 14   # values per block of Adam's update: its 5 arrays stay in L2 cache


def _adam_update(p, m, v, step_size, root_correction, eps) -> None:
    """``p -= step_size * m / (sqrt(v) / root_correction + eps)``, a block of rows at a
    time: each temporary is a block's (64 KB) rather than the parameter's (40 MB for a
    40k x 256 embedding), so the update reads ``m``, ``v`` and ``p`` once instead of
    going through memory once per operation (3x faster on a 40k x 256 embedding)."""
    if p.ndim == 0:
        p, m, v = p.reshape(1), m.reshape(1), v.reshape(1)
    rows = max(1, ADAM_BLOCK * p.shape[0] // max(p.size, 1))
    for lo in range(0, p.shape[0], rows):
        block = slice(lo, lo + rows)
        denom = np.sqrt(v[block])
        denom /= root_correction
        denom += eps
        update = step_size * m[block]
        update /= denom
        p[block] -= update


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adagrad, Adam)}


def make_optimizer(name: str, params: Arrays) -> Optimizer:
    """The optimiser called ``name`` (sgd, adagrad, adam) with fresh state for ``params``."""
    return OPTIMIZERS[name](params)
