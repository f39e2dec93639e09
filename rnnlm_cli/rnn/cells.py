"""Recurrent cells, forward and backward by hand in NumPy: Elman RNN, GRU, LSTM.

A cell runs a whole chunk of T steps of B parallel streams. The network computes the input
projection ``x_proj = x_t U + b`` of all T steps in one matrix product before calling the
cell, so inside the time loop there is only the recurrent product ``h_{t-1} W``,
``(B, H) @ (H, G*H)``, and elementwise work written into preallocated arrays. Whatever does
not depend on the recursion (the derivatives of the nonlinearities, the weight gradient
``dW = sum_t h_{t-1}^T da_t``) is done for all steps at once, outside the loop.

Every cell has the same two calls, with an explicit cache and nothing kept on ``self``:

    forward(params, x_proj, h0)         -> (hs, last, cache)
    backward(params, dhs, dlast, cache) -> (dx_proj, grads, dh0)

``params`` holds the cell's own arrays (``"W"``, and ``"bn"`` for the GRU); ``x_proj`` is
``(T, B, G*H)``; ``h0`` and ``last`` are tuples of ``(B, H)`` arrays, ``(h,)`` or ``(h, c)``
for the LSTM; ``hs`` is ``(T, B, H)``, the output at every step; ``dlast`` (or None) is the
gradient of the loss with respect to ``last``; ``grads`` has the keys of ``params``.

A cell is described once, here, by its class: ``name`` (the ``--cell`` value), ``gates``
(G, the H-wide blocks of its U, W and b), ``state_parts`` (``("h",)``, or ``("h", "c")``
for the LSTM: what it carries from step to step), ``state_label`` (how reports write its
state), ``extra_params`` (its own per-layer arrays besides U, W and b, with their sizes in
units of H), and ``init_bias`` (its biases at initialisation). ``CELLS`` lists the cells;
the configuration, the initialisation, the network, the model file and the command line
take everything from there, so a new cell is a class here, its tests and a line of README.

Gate blocks are in PyTorch's order, so weights carry over to and from ``torch.nn``:
``U = weight_ih.T``, ``W = weight_hh.T``, ``b = bias_ih + bias_hh`` (for the GRU, the
candidate's recurrent bias is kept apart: ``b_n`` of ``b`` is ``bias_ih_n`` only and
``bn = bias_hh_n``).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

Arrays = Dict[str, np.ndarray]


def make_cell(config):
    """The cell object of an ``RnnConfig`` (stateless: it only knows its kind)."""
    return CELLS[config.cell].from_config(config)


class Cell:
    """What every cell declares (see the module docstring); the defaults are the plain
    cell's: one state part ``h``, no parameters of its own, zero biases."""

    name = ""
    gates = 1
    state_parts: Tuple[str, ...] = ("h",)
    state_keys: Tuple[str, ...] = ("hs",)   # the cache arrays of the state parts
    state_label = "h"                       # the output state in reports (``gradients``)
    extra_params: Dict[str, int] = {}       # name -> size in units of H, per layer

    @property
    def state_size(self) -> int:
        return len(self.state_parts)

    @classmethod
    def carried_label(cls) -> str:
        """What the cell carries from step to step, as reports write it: ``h``, ``(h, c)``."""
        if len(cls.state_parts) == 1:
            return cls.state_label
        return "(" + ", ".join(cls.state_parts) + ")"

    @classmethod
    def from_config(cls, config) -> "Cell":
        return cls()

    @staticmethod
    def init_bias(bias: np.ndarray, config) -> None:
        """Set a layer's bias ``b`` (G*H,) at initialisation, in place (zero by default)."""


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """``a <- sigmoid(a)`` in place, as ``(1 + tanh(a/2)) / 2``: the same function, with no
    overflow for any ``a`` and an absolute error of a rounding unit."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _start(h0: np.ndarray, T: int, dtype) -> np.ndarray:
    """A ``(T+1, B, H)`` buffer whose row 0 is ``h0``: rows ``0..T-1`` are then the
    previous states ``h_{t-1}`` and rows ``1..T`` the outputs, without a copy."""
    buf = np.empty((T + 1,) + h0.shape, dtype=dtype)
    buf[0] = h0
    return buf


def _carried(dlast: Optional[tuple], k: int, like: np.ndarray) -> np.ndarray:
    """The gradient flowing into the last state's part ``k``, as a fresh array."""
    if dlast is None or dlast[k] is None:
        return np.zeros_like(like)
    return np.array(dlast[k], dtype=like.dtype)


def _carried_transposed(dlast: Optional[tuple], k: int, like: np.ndarray) -> np.ndarray:
    """``_carried`` as an (H, B) array: the backward loops keep the gradient at the
    previous state transposed, since BLAS computes ``(dJ/dh_{t-1})^T = W da_t^T``, a
    (H, G*H) by (G*H, B) product, about a third faster than ``da_t W^T`` for a small B
    (and needs no transposed copy of W)."""
    return np.ascontiguousarray(_carried(dlast, k, like).T)


class ElmanCell(Cell):
    """The Elman cell: ``s_t = f(U x_t + W s_{t-1} + b)`` with f = tanh, sigmoid or relu."""

    name = "rnn"
    gates = 1
    state_label = "s"

    def __init__(self, activation: str = "tanh"):
        self.activation = activation

    @classmethod
    def from_config(cls, config) -> "ElmanCell":
        return cls(config.activation)

    def forward(self, params: Arrays, x_proj: np.ndarray, h0: tuple):
        W = params["W"]                                    # (H, H)
        T = x_proj.shape[0]
        hs = _start(h0[0], T, x_proj.dtype)               # (T+1, B, H)
        for t in range(T):
            a = hs[t + 1]
            np.matmul(hs[t], W, out=a)                    # W s_{t-1}
            a += x_proj[t]                                # + U x_t + b
            self._activate(a)                             # s_t = f(.)
        cache = {"hs": hs}
        return hs[1:], (hs[T].copy(),), cache

    def _activate(self, a: np.ndarray) -> None:
        if self.activation == "tanh":
            np.tanh(a, out=a)
        elif self.activation == "sigmoid":
            sigmoid_(a)
        else:
            np.maximum(a, 0, out=a)

    def _derivative(self, s: np.ndarray) -> np.ndarray:
        """f'(a) written with the output s = f(a)."""
        if self.activation == "tanh":
            return 1 - s * s                              # tanh' = 1 - tanh^2
        if self.activation == "sigmoid":
            return s * (1 - s)                            # sigma' = sigma (1 - sigma)
        return (s > 0).astype(s.dtype)                    # relu' = [a > 0]

    def backward(self, params: Arrays, dhs: np.ndarray, dlast: Optional[tuple], cache: dict):
        W = params["W"]                                    # (H, H)
        hs = cache["hs"]                                   # (T+1, B, H)
        T, B, H = dhs.shape
        deriv = self._derivative(hs[1:])                  # (T, B, H)
        da = np.empty_like(deriv)                         # dJ/da_t = dJ/ds_t * f'(a_t)
        dh = np.empty((B, H), dtype=hs.dtype)
        dh_next = _carried_transposed(dlast, 0, dh)       # (dJ/ds_t through s_{t+1})^T
        for t in reversed(range(T)):
            np.add(dhs[t], dh_next.T, out=dh)
            np.multiply(dh, deriv[t], out=da[t])
            np.matmul(W, da[t].T, out=dh_next)            # dJ/ds_{t-1} = da_t W^T
        dW = hs[:-1].reshape(-1, H).T @ da.reshape(-1, H)  # sum_t s_{t-1}^T da_t
        return da, {"W": dW}, (dh_next.T.copy(),)


class GruCell(Cell):
    """The gated recurrent unit, in the PyTorch/cuDNN form (reset applied after the product):

        r_t = sigma(U_r x_t + W_r h_{t-1} + b_r)
        z_t = sigma(U_z x_t + W_z h_{t-1} + b_z)
        n_t = tanh(U_n x_t + b_n + r_t * (W_n h_{t-1} + bn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    (Cho et al. 2014 put r inside, ``W_n (r * h)``; this is the variant of torch.nn.GRU and
    cuDNN, which needs the separate recurrent bias ``bn`` of the candidate.)
    """

    name = "gru"
    gates = 3
    extra_params = {"bn": 1}      # the candidate's recurrent bias, (H,)

    def forward(self, params: Arrays, x_proj: np.ndarray, h0: tuple):
        W, bn = params["W"], params["bn"]                # (H, 3H), (H,)
        T, B, G = x_proj.shape
        H = G // 3
        hs = _start(h0[0], T, x_proj.dtype)               # (T+1, B, H)
        hw = np.empty((T, B, G), dtype=x_proj.dtype)      # W h_{t-1} (+ bn on the n block)
        gates = np.empty((T, B, G), dtype=x_proj.dtype)   # r, z, n
        tmp = np.empty((B, H), dtype=x_proj.dtype)
        for t in range(T):
            np.matmul(hs[t], W, out=hw[t])
            hw[t, :, 2 * H:] += bn                        # W_n h_{t-1} + bn
            rz = gates[t, :, :2 * H]
            np.add(x_proj[t, :, :2 * H], hw[t, :, :2 * H], out=rz)
            sigmoid_(rz)                                  # r_t, z_t
            r, z, n = rz[:, :H], rz[:, H:], gates[t, :, 2 * H:]
            np.multiply(r, hw[t, :, 2 * H:], out=n)
            n += x_proj[t, :, 2 * H:]
            np.tanh(n, out=n)                             # n_t
            np.subtract(hs[t], n, out=tmp)
            tmp *= z
            np.add(n, tmp, out=hs[t + 1])                 # h_t = n + z (h_{t-1} - n)
        cache = {"hs": hs, "hw": hw, "gates": gates}
        return hs[1:], (hs[T].copy(),), cache

    def backward(self, params: Arrays, dhs: np.ndarray, dlast: Optional[tuple], cache: dict):
        W = params["W"]                                    # (H, 3H)
        hs, hw, gates = cache["hs"], cache["hw"], cache["gates"]
        T, B, H = dhs.shape
        r, z, n = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]   # (T, B, H) each
        # Factors that do not depend on the recursion, for all steps at once:
        k_n = (1 - z) * (1 - n * n)                       # da_n = dh * (1 - z) * tanh'
        k_z = (hs[:-1] - n) * z * (1 - z)                 # da_z = dh * (h_{t-1} - n) * sigma'
        k_r = hw[..., 2 * H:] * r * (1 - r)               # da_r = da_n * (W_n h + bn) * sigma'
        d_rec = np.empty((T, B, 3 * H), dtype=hs.dtype)   # dJ/d(W h_{t-1} + [0, 0, bn])
        da_n = np.empty((T, B, H), dtype=hs.dtype)        # dJ/d(U_n x_t + b_n)
        dh = np.empty((B, H), dtype=hs.dtype)
        direct = _carried(dlast, 0, dh)                   # dJ/dh_t along z * h_t
        dh_next = np.zeros((H, B), dtype=hs.dtype)        # (dJ/dh_t through W)^T
        for t in reversed(range(T)):
            np.add(dhs[t], dh_next.T, out=dh)
            dh += direct                                  # dJ/dh_t
            g = d_rec[t]
            np.multiply(dh, k_n[t], out=da_n[t])
            np.multiply(dh, k_z[t], out=g[:, H:2 * H])    # da_z
            np.multiply(da_n[t], k_r[t], out=g[:, :H])    # da_r
            np.multiply(da_n[t], r[t], out=g[:, 2 * H:])  # through r * (W_n h + bn)
            np.matmul(W, g.T, out=dh_next)                # (g W^T)^T
            np.multiply(dh, z[t], out=direct)             # the direct path z * h_{t-1}
        direct += dh_next.T
        dW = hs[:-1].reshape(-1, H).T @ d_rec.reshape(-1, 3 * H)
        dbn = d_rec[..., 2 * H:].sum(axis=(0, 1))
        dx_proj = d_rec.copy()
        dx_proj[..., 2 * H:] = da_n
        return dx_proj, {"W": dW, "bn": dbn}, (direct,)


class LstmCell(Cell):
    """The LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
    gates in PyTorch's order i, f, g, o, all from ``a_t = U x_t + W h_{t-1} + b``:

        i_t = sigma(a_i)   f_t = sigma(a_f)   g_t = tanh(a_g)   o_t = sigma(a_o)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    The four nonlinearities take one ``tanh`` over the whole (B, 4H) block, since
    ``sigma(a) = (1 + tanh(a/2)) / 2``: scale the sigmoid columns by 1/2, tanh, then map
    them back with ``* 1/2 + 1/2``.
    """

    name = "lstm"
    gates = 4
    state_parts = ("h", "c")
    state_keys = ("hs", "cs")

    @staticmethod
    def init_bias(bias: np.ndarray, config) -> None:
        """The forget gate's block (i, f, g, o) starts at ``forget_bias``."""
        H = config.hidden
        bias[H:2 * H] = config.forget_bias

    @staticmethod
    def _gate_affine(H: int, dtype) -> Tuple[np.ndarray, np.ndarray]:
        half, one, zero = np.full(H, 0.5, dtype), np.ones(H, dtype), np.zeros(H, dtype)
        scale = np.concatenate([half, half, one, half])     # (4H,)
        offset = np.concatenate([half, half, zero, half])   # (4H,)
        return scale, offset

    def forward(self, params: Arrays, x_proj: np.ndarray, h0: tuple):
        W = params["W"]                                    # (H, 4H)
        T, B, G = x_proj.shape
        H = G // 4
        hs = _start(h0[0], T, x_proj.dtype)               # (T+1, B, H)
        cs = _start(h0[1], T, x_proj.dtype)               # (T+1, B, H)
        gates = np.empty((T, B, G), dtype=x_proj.dtype)   # i, f, g, o after the nonlinearity
        tanh_c = np.empty((T, B, H), dtype=x_proj.dtype)
        ig = np.empty((B, H), dtype=x_proj.dtype)
        scale, offset = self._gate_affine(H, x_proj.dtype)
        for t in range(T):
            a = gates[t]
            np.matmul(hs[t], W, out=a)                    # W h_{t-1}
            a += x_proj[t]                                # + U x_t + b
            a *= scale
            np.tanh(a, out=a)
            a *= scale
            a += offset                                   # i, f, o = sigma(.), g = tanh(.)
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            np.multiply(f, cs[t], out=cs[t + 1])
            np.multiply(i, g, out=ig)
            cs[t + 1] += ig                               # c_t = f c_{t-1} + i g
            np.tanh(cs[t + 1], out=tanh_c[t])
            np.multiply(o, tanh_c[t], out=hs[t + 1])      # h_t = o tanh(c_t)
        cache = {"hs": hs, "cs": cs, "gates": gates, "tanh_c": tanh_c}
        return hs[1:], (hs[T].copy(), cs[T].copy()), cache

    def backward(self, params: Arrays, dhs: np.ndarray, dlast: Optional[tuple], cache: dict):
        W = params["W"]                                    # (H, 4H)
        hs, cs, gates, tanh_c = cache["hs"], cache["cs"], cache["gates"], cache["tanh_c"]
        T, B, H = dhs.shape
        i, f = gates[..., :H], gates[..., H:2 * H]
        g, o = gates[..., 2 * H:3 * H], gates[..., 3 * H:]
        # Factors that do not depend on the recursion, for all steps at once: with dc and dh
        # the gradients at c_t and h_t, da_{i,f,g} = dc * k_{i,f,g} and da_o = dh * k_o.
        k = np.empty((T, B, 4, H), dtype=hs.dtype)
        np.multiply(g, i * (1 - i), out=k[:, :, 0])       # dc/di * sigma'(a_i)
        np.multiply(cs[:-1], f * (1 - f), out=k[:, :, 1])  # dc/df * sigma'(a_f)
        np.multiply(i, 1 - g * g, out=k[:, :, 2])         # dc/dg * tanh'(a_g)
        np.multiply(tanh_c, o * (1 - o), out=k[:, :, 3])  # dh/do * sigma'(a_o)
        dc_dh = o * (1 - tanh_c * tanh_c)                 # dh_t/dc_t
        da = np.empty((T, B, 4, H), dtype=hs.dtype)       # dJ/da_t, block by block
        dh = np.empty((B, H), dtype=hs.dtype)
        dc = np.empty_like(dh)
        dh_next = _carried_transposed(dlast, 0, dh)       # (dJ/dh_t through step t+1)^T
        dc_next = _carried(dlast, 1, dh)                  # dJ/dc_t through step t+1
        for t in reversed(range(T)):
            np.add(dhs[t], dh_next.T, out=dh)             # dJ/dh_t
            np.multiply(dh, dc_dh[t], out=dc)
            dc += dc_next                                 # dJ/dc_t
            np.multiply(k[t, :, :3], dc[:, None, :], out=da[t, :, :3])
            np.multiply(k[t, :, 3], dh, out=da[t, :, 3])
            np.multiply(dc, f[t], out=dc_next)            # dJ/dc_{t-1} = dc * f_t
            np.matmul(W, da[t].reshape(B, 4 * H).T, out=dh_next)  # dJ/dh_{t-1} = da_t W^T
        da = da.reshape(T, B, 4 * H)
        dW = hs[:-1].reshape(-1, H).T @ da.reshape(-1, 4 * H)
        return da, {"W": dW}, (dh_next.T.copy(), dc_next)


CELLS = {cell.name: cell for cell in (ElmanCell, GruCell, LstmCell)}   # --cell values
