"""The recurrent language-model network: embedding, stacked cells, dropout, decoder, loss.

As the textbook writes it, for one stream of T steps and one layer:

    x_t = E[w_t]                                   embedding                   (1)
    s_t = cell(U x_t + b, s_{t-1})                 e.g. f(U x_t + W s_{t-1} + b) (2)
    y_t = softmax(V s_t + c)                       decoder                     (3)
    J   = -(1/T) sum_t log y_t[w_{t+1}]            loss                        (4)

with B streams processed side by side and J averaged over all T*B positions. Layers stack:
the outputs s_t of layer l are the inputs x_t of layer l+1. Training is truncated
back-propagation through time: the state at the end of a chunk is handed back, detached,
for the next chunk, and no gradient flows into it.

The work is arranged for speed, not only for the reader: the input projection (2) of all T
steps is one matrix product before the time loop, the decoder (3) is one product over all
T*B positions, and so are both of its gradients. The bias c rides in that product (a column
of ones beside the states), and the softmax touches the (T*B, |V|) logits in two passes
only (see ``softmax_cross_entropy``). Those array kernels, and the per-word sums of the
embedding gradient, live in ``kernels.py``: this file reads as the equations.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from rnnlm_cli.rnn.cells import make_cell
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.initialization import init_params, param_shapes
from rnnlm_cli.rnn.kernels import (distinct_rows, log_softmax, scatter_add_rows,
                                   softmax_cross_entropy, sum_rows_by, with_ones)

Hidden = List[tuple]    # per layer: (h,) or (h, c), each (B, H)


class RnnNetwork:
    """Parameters and the forward/backward computation of a recurrent language model.

    ``params`` maps names to arrays: ``"embedding"`` (|V|, E); per layer ``l``:
    ``"layer{l}.U"`` (in, G*H), ``"layer{l}.W"`` (H, G*H), ``"layer{l}.b"`` (G*H,), and
    for the GRU ``"layer{l}.bn"`` (H,); ``"decoder.V"`` (H, |V|) (absent with tied weights,
    where the decoder is ``embedding.T``) and ``"decoder.c"`` (|V|,). Nothing but the
    parameters is kept on the object: every call takes and returns the hidden state.
    """

    def __init__(self, config: RnnConfig, vocab_size: int,
                 rng: Optional[np.random.Generator] = None, dtype=np.float32):
        """A freshly initialised network; ``rng`` defaults to a generator seeded with 0."""
        config.validate()
        self._setup(config, vocab_size, dtype)
        rng = np.random.default_rng(0) if rng is None else rng
        self.params: Dict[str, np.ndarray] = init_params(config, vocab_size, rng, self.dtype)
        self._join_decoder()

    def _setup(self, config: RnnConfig, vocab_size: int, dtype) -> None:
        if vocab_size < 1:
            raise ValueError(f"vocabulary size must be positive, not {vocab_size}")
        self.config = config
        self.vocab_size = int(vocab_size)
        self.dtype = np.dtype(dtype)
        self.cell = make_cell(config)

    # -- state -------------------------------------------------------------------------

    def initial_hidden(self, batch: int) -> Hidden:
        """Zero state for ``batch`` streams: per layer ``(h,)``, or ``(h, c)`` for the LSTM."""
        H = self.config.hidden
        return [tuple(np.zeros((batch, H), dtype=self.dtype)
                      for _ in range(self.cell.state_size))
                for _ in range(self.config.layers)]

    def _layer(self, layer: int) -> Dict[str, np.ndarray]:
        """The cell's own parameters of ``layer``, under the cell's names."""
        return {"W": self.params[f"layer{layer}.W"],
                **{name: self.params[f"layer{layer}.{name}"] for name in self.cell.extra_params}}

    def _decoder(self) -> np.ndarray:
        """The (H, |V|) decoder matrix: ``V``, or the transposed embedding when tied."""
        if self.config.tie_weights:
            return self.params["embedding"].T
        return self.params["decoder.V"]

    # -- training ----------------------------------------------------------------------

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray, hidden: Hidden,
                       dropout_rng: Optional[np.random.Generator] = None):
        """Loss (4) of one chunk, its gradient for every parameter, and the final state.

        ``inputs`` and ``targets`` are (T, B) token ids; ``hidden`` comes from
        ``initial_hidden`` or a previous call. Returns ``(loss, grads, new_hidden)``:
        ``loss`` is the mean of ``-log y_t[target]`` over the T*B positions, ``grads`` has
        exactly the keys of ``params``, ``new_hidden`` is a detached copy of the final
        state. Inverted dropout is applied iff ``dropout_rng`` is given and
        ``config.dropout > 0``.
        """
        inputs, targets = self._check_ids(inputs, targets)
        masks = self._dropout_masks(inputs.shape, dropout_rng)
        top, new_hidden, tape = self._forward(inputs, hidden, masks)
        T, B, H = top.shape
        s1 = with_ones(top.reshape(T * B, H))                           # [s_t, 1]   (N, H+1)
        dec1 = self._decoder_with_bias()                                 # [V; c]     (H+1, V)
        logits = s1 @ dec1                                               # V s_t + c  (N, V)
        loss, row_scale = softmax_cross_entropy(logits, targets.reshape(-1),
                                                lambda rows: s1[rows] @ dec1)
        # Now dJ/dlogits = row_scale[:, None] * logits: scale the small factors instead.
        grads = {}
        dstates = logits @ dec1[:H].T                                    # (N, H)
        dstates *= row_scale[:, None]
        s1 *= row_scale[:, None]
        if self.config.tie_weights:
            d_dec1 = logits.T @ s1                                       # (V, H+1): [dE, dc]
            grads["decoder.c"] = d_dec1[:, H].copy()
            grads["embedding"] = np.ascontiguousarray(d_dec1[:, :H])
        else:
            d_dec1 = s1.T @ logits                                       # (H+1, V): [dV; dc]
            grads["decoder.V"], grads["decoder.c"] = d_dec1[:H], d_dec1[H]
            grads["embedding"] = np.zeros_like(self.params["embedding"])
        del logits, d_dec1
        self._backward(dstates.reshape(T, B, H), tape, masks, grads)
        return loss, {name: grads[name] for name in self.params}, new_hidden

    def loss(self, inputs: np.ndarray, targets: np.ndarray, hidden: Hidden):
        """Forward only, without dropout (validation): ``(loss, new_hidden)``."""
        inputs, targets = self._check_ids(inputs, targets)
        top, new_hidden = self.outputs(inputs, hidden)
        T, B, H = top.shape
        s1 = with_ones(top.reshape(T * B, H))
        dec1 = self._decoder_with_bias()
        loss, _ = softmax_cross_entropy(s1 @ dec1, targets.reshape(-1),
                                        lambda rows: s1[rows] @ dec1, grad=False)
        return loss, new_hidden

    def _join_decoder(self) -> None:
        """Keep ``decoder.V`` and ``decoder.c`` as the two parts of one (H+1, |V|) array
        ``[V; c]``, so that the decoder product (3) needs no copy of V at every chunk (at
        H=650 a 16 MB copy). The optimisers update both in place, which keeps them joined."""
        if self.config.tie_weights:
            return
        H = self.config.hidden
        joined = np.empty((H + 1, self.vocab_size), dtype=self.dtype)
        joined[:H], joined[H] = self.params["decoder.V"], self.params["decoder.c"]
        self.params["decoder.V"], self.params["decoder.c"] = joined[:H], joined[H]

    def _decoder_with_bias(self) -> np.ndarray:
        """``[V; c]`` (H+1, |V|): one product with ``[s, 1]`` gives ``V s + c`` (3). Untied,
        it is the array the two parameters are parts of (``_join_decoder``); with tied
        weights it is the transposed view of ``[E, c]`` (|V|, H+1), made without a
        transposing copy."""
        H, c = self.config.hidden, self.params["decoder.c"]
        if self.config.tie_weights:
            dec1 = np.empty((self.vocab_size, H + 1), dtype=self.dtype)
            dec1[:, :H], dec1[:, H] = self.params["embedding"], c
            return dec1.T
        joined = self.params["decoder.V"].base          # still joined (not replaced)?
        if joined is not None and joined is c.base and joined.dtype == self.dtype \
                and joined.shape == (H + 1, self.vocab_size):
            return joined
        dec1 = np.empty((H + 1, self.vocab_size), dtype=self.dtype)
        dec1[:H], dec1[H] = self.params["decoder.V"], c
        return dec1

    def _check_ids(self, inputs, targets) -> Tuple[np.ndarray, np.ndarray]:
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        if inputs.ndim != 2 or inputs.shape != targets.shape or inputs.size == 0:
            raise ValueError(f"inputs and targets must be non-empty (T, B) arrays of the same "
                             f"shape, not {inputs.shape} and {targets.shape}")
        return inputs, targets

    def _dropout_masks(self, shape, rng) -> List[Optional[np.ndarray]]:
        """Inverted-dropout masks (0 or 1/(1-p)) for the embeddings, the output of every
        layer but the last (between layers) and the last (before the decoder)."""
        p = self.config.dropout
        if rng is None or p <= 0:
            return [None] * (self.config.layers + 1)
        T, B = shape
        widths = [self.config.embed_size] + [self.config.hidden] * self.config.layers
        masks = []
        for width in widths:
            keep = rng.random((T, B, width), dtype=self.dtype) >= p
            masks.append(keep * self.dtype.type(1.0 / (1.0 - p)))
        return masks

    def _forward(self, inputs: np.ndarray, hidden: Hidden, masks: list):
        """Embedding (1) and the stacked cells (2): the top layer's outputs (T, B, H),
        the final state, and what the backward pass needs of each layer.

        Without dropout on the embeddings, a word that occurs several times in the chunk
        (half the positions of a PTB chunk do) has the same input projection everywhere,
        so layer 0 projects each distinct word once and spreads the rows out; in the
        backward pass its gradients are summed per word before the products.
        """
        T, B = inputs.shape
        words, where = inputs.reshape(-1), None                          # x = E[words][where]
        if masks[0] is None:
            words, where = distinct_rows(words)
        x = np.take(self.params["embedding"], words, axis=0)            # (N or u, E)
        if masks[0] is not None:
            x *= masks[0].reshape(T * B, -1)
        tape, new_hidden = [], []
        for layer in range(self.config.layers):
            U, b = self.params[f"layer{layer}.U"], self.params[f"layer{layer}.b"]
            x_proj = x @ U                                               # all T at once
            x_proj += b
            if layer == 0 and where is not None:
                x_proj = np.take(x_proj, where, axis=0)                  # (u, G*H) -> (N, G*H)
            hs, last, cache = self.cell.forward(self._layer(layer), x_proj.reshape(T, B, -1),
                                                self._state(hidden[layer], B))
            tape.append((x, cache))
            new_hidden.append(last)
            x = hs.reshape(T * B, -1)                                    # (N, H)
            if masks[layer + 1] is not None:
                x = x * masks[layer + 1].reshape(T * B, -1)
        tape.append((words, where))
        return x.reshape(T, B, -1), new_hidden, tape

    def _state(self, state: tuple, batch: int) -> tuple:
        H = self.config.hidden
        state = tuple(np.asarray(part, dtype=self.dtype) for part in state)
        if len(state) != self.cell.state_size or any(p.shape != (batch, H) for p in state):
            raise ValueError(f"hidden state of shape {[p.shape for p in state]} does not fit "
                             f"{self.cell.state_size} x ({batch}, {H})")
        return state

    def _backward(self, dtop: np.ndarray, tape: list, masks: list, grads: dict) -> None:
        """From dJ/d(top outputs) (T, B, H) down through the layers to the embeddings;
        fills ``grads`` with the layers' gradients and adds the embeddings' to
        ``grads["embedding"]``."""
        T, B, _ = dtop.shape
        words, where = tape[-1]
        dhs = dtop.reshape(T * B, -1)
        for layer in reversed(range(self.config.layers)):
            if masks[layer + 1] is not None:
                dhs = dhs * masks[layer + 1].reshape(T * B, -1)
            x, cache = tape[layer]
            dx_proj, cell_grads, _ = self.cell.backward(self._layer(layer),
                                                        dhs.reshape(T, B, -1), None, cache)
            dx_proj = dx_proj.reshape(T * B, -1)                        # (N, G*H)
            if layer == 0 and where is not None:
                dx_proj = sum_rows_by(where, dx_proj, words.size)        # (u, G*H)
            U = self.params[f"layer{layer}.U"]
            grads[f"layer{layer}.U"] = x.T @ dx_proj                     # (in, G*H)
            grads[f"layer{layer}.b"] = dx_proj.sum(axis=0)
            for name, value in cell_grads.items():
                grads[f"layer{layer}.{name}"] = value
            dhs = dx_proj @ U.T                                          # dJ/dx of this layer
        if masks[0] is not None:
            dhs *= masks[0].reshape(T * B, -1)
        if where is not None:
            grads["embedding"][words] += dhs                             # one row per word
        else:
            scatter_add_rows(grads["embedding"], words, dhs)

    # -- inference -----------------------------------------------------------------------

    def outputs(self, inputs: np.ndarray, hidden: Hidden):
        """The top layer's outputs s_t for (T, B) ``inputs``, no dropout: ``((T, B, H),
        new_hidden)``."""
        inputs = np.asarray(inputs)
        top, new_hidden, _ = self._forward(inputs, hidden, [None] * (self.config.layers + 1))
        return top, new_hidden

    def state_sequence(self, inputs: np.ndarray, hidden: Hidden) -> Hidden:
        """Every layer's whole state at every step of (T, B) ``inputs``, no dropout: per
        layer a tuple like ``hidden``'s of (T+1, B, H) arrays, row 0 the state given and
        row t+1 the state after reading ``inputs[t]``."""
        _, _, tape = self._forward(np.asarray(inputs), hidden,
                                   [None] * (self.config.layers + 1))
        return [tuple(cache[key] for key in self.cell.state_keys) for _, cache in tape[:-1]]

    def advance(self, token_ids: np.ndarray, hidden: Hidden) -> Hidden:
        """The state after each of the B streams reads one more token."""
        _, new_hidden = self.outputs(np.asarray(token_ids).reshape(1, -1), hidden)
        return new_hidden

    def logits(self, states: np.ndarray) -> np.ndarray:
        """``V s + c`` for (N, H) top-layer states: (N, |V|), in the network's dtype."""
        out = np.asarray(states, dtype=self.dtype) @ self._decoder()
        out += self.params["decoder.c"]
        return out

    def step(self, token_ids: np.ndarray, hidden: Hidden):
        """Read one token per stream: ``(log_probs, new_hidden)``, log_probs (B, |V|) float64
        natural logs of the softmax (3) over the whole vocabulary."""
        new_hidden = self.advance(token_ids, hidden)
        return log_softmax(self.logits(new_hidden[-1][0]).astype(np.float64)), new_hidden

    # -- storage ---------------------------------------------------------------------------

    def to_arrays(self) -> Dict[str, np.ndarray]:
        """The parameters under their own names (what a model file stores)."""
        return dict(self.params)

    @classmethod
    def from_arrays(cls, config: RnnConfig, arrays: dict, vocab_size: int) -> "RnnNetwork":
        """A network of ``config`` holding copies of ``arrays`` (writable, even when the
        arrays are memory-mapped from a file); ``ValueError`` if one is missing or of the
        wrong shape or type."""
        config.validate()
        shapes = param_shapes(config, vocab_size)
        for name, shape in shapes.items():
            if name not in arrays:
                raise ValueError(f"array '{name}' is missing")
            value = arrays[name]
            if value.dtype.kind != "f" or tuple(value.shape) != shape:
                raise ValueError(f"array '{name}' has dtype {value.dtype} and shape "
                                 f"{tuple(value.shape)}, not float and {shape}")
        dtype = np.result_type(*(arrays[name].dtype for name in shapes))
        net = cls.__new__(cls)
        net._setup(config, vocab_size, dtype)
        net.params = {name: np.array(arrays[name], dtype=dtype) for name in shapes}  # own, writable
        net._join_decoder()
        return net
