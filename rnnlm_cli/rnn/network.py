"""The recurrent language-model network: embedding, stacked cells, dropout, decoder, loss.

As the textbook writes it, for one stream of T steps and one layer:

    x_t = E[w_t]                                   embedding                   (1)
    s_t = cell(U x_t + b, s_{t-1})                 e.g. f(U x_t + W s_{t-1} + b) (2)
    y_t = softmax(V s_t + c)                       decoder                     (3)
    J   = -(1/T) sum_t log y_t[w_{t+1}]            loss                        (4)

The decoder (3) is one of ``decoders.py``: the full softmax as written, or the
class-factorized softmax (``--softmax class``), which gives the same kind of distribution
over the vocabulary at a fraction of the cost.

with B streams processed side by side and J averaged over all T*B positions. Layers stack:
the outputs s_t of layer l are the inputs x_t of layer l+1. Training is truncated
back-propagation through time: the state at the end of a chunk is handed back, detached,
for the next chunk, and no gradient flows into it.

The work is arranged for speed, not only for the reader: the input projection (2) of all T
steps is one matrix product before the time loop, the decoder (3) is one product over all
T*B positions, and so are both of its gradients (``decoders.py``). The array kernels, and
the per-word sums of the embedding gradient, live in ``kernels.py``: this file reads as
the equations.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from rnnlm_cli.rnn.cells import make_cell
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.decoders import make_decoder
from rnnlm_cli.rnn.initialization import init_params, param_shapes
from rnnlm_cli.rnn.kernels import distinct_rows, sum_rows_by, sum_rows_by_id
from rnnlm_cli.rnn.optim import RowGradient, dense

Hidden = List[tuple]    # per layer: (h,) or (h, c), each (B, H)


class RnnNetwork:
    """Parameters and the forward/backward computation of a recurrent language model.

    ``params`` maps names to arrays: ``"embedding"`` (|V|, E); per layer ``l``:
    ``"layer{l}.U"`` (in, G*H), ``"layer{l}.W"`` (H, G*H), ``"layer{l}.b"`` (G*H,), and
    for the GRU ``"layer{l}.bn"`` (H,); and the decoder's (``decoders.decoder_shapes``):
    ``"decoder.V"`` (H, |V|) (absent with tied weights, where the decoder is
    ``embedding.T``) and ``"decoder.c"`` (|V|,), or those of the class softmax. Nothing but
    the parameters and the decoder's classes is kept on the object: every call takes and
    returns the hidden state.
    """

    def __init__(self, config: RnnConfig, vocab_size: int,
                 rng: Optional[np.random.Generator] = None, dtype=np.float32,
                 word_counts: Optional[np.ndarray] = None):
        """A freshly initialised network; ``rng`` defaults to a generator seeded with 0.
        ``config`` is ``resolved`` for the vocabulary; the class softmax bins the words
        by ``word_counts`` (the training counts; all equal if None)."""
        if vocab_size < 1:
            raise ValueError(f"vocabulary size must be positive, not {vocab_size}")
        config = config.resolved(vocab_size)
        self._setup(config, vocab_size, dtype,
                    make_decoder(config, vocab_size, word_counts=word_counts))
        rng = np.random.default_rng(0) if rng is None else rng
        self.params: Dict[str, np.ndarray] = init_params(config, vocab_size, rng, self.dtype)
        self.decoder.join(self.params)

    def _setup(self, config: RnnConfig, vocab_size: int, dtype, decoder) -> None:
        self.config = config
        self.vocab_size = int(vocab_size)
        self.dtype = np.dtype(dtype)
        self.cell = make_cell(config)
        self.decoder = decoder

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

    # -- training ----------------------------------------------------------------------

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray, hidden: Hidden,
                       dropout_rng: Optional[np.random.Generator] = None,
                       row_gradients: bool = False):
        """Loss (4) of one chunk, its gradient for every parameter, and the final state.

        ``inputs`` and ``targets`` are (T, B) token ids; ``hidden`` comes from
        ``initial_hidden`` or a previous call. Returns ``(loss, grads, new_hidden)``:
        ``loss`` is the mean of ``-log y_t[target]`` over the T*B positions, ``grads`` has
        exactly the keys of ``params``, ``new_hidden`` is a detached copy of the final
        state. Inverted dropout is applied iff ``dropout_rng`` is given and
        ``config.dropout > 0``. With ``row_gradients`` the embedding's gradient is an
        ``optim.RowGradient`` of the rows the chunk read (unless the weights are tied, when
        the decoder's part makes it dense), and the class softmax's ``words.V`` an
        ``optim.BlockGradient`` of the classes of the targets; without, every gradient is
        an array.
        """
        inputs, targets = self._check_ids(inputs, targets)
        masks = self._dropout_masks(inputs.shape, dropout_rng)
        top, new_hidden, tape = self._forward(inputs, hidden, masks)
        T, B, H = top.shape
        loss, dtop, grads = self.decoder.loss_and_grads(self.params, top.reshape(T * B, H),
                                                        targets.reshape(-1))   # (3), (4)
        words, rows = self._backward(dtop.reshape(T, B, H), tape, masks, grads)
        embedding = self.params["embedding"]
        if "embedding" in grads:                                         # tied: the decoder's
            grads["embedding"][words] += rows
        elif row_gradients:
            grads["embedding"] = RowGradient(words, rows, embedding.shape)
        else:
            grads["embedding"] = np.zeros_like(embedding)
            grads["embedding"][words] = rows
        if not row_gradients:
            grads = {name: dense(g) for name, g in grads.items()}
        return loss, {name: grads[name] for name in self.params}, new_hidden

    def loss(self, inputs: np.ndarray, targets: np.ndarray, hidden: Hidden):
        """Forward only, without dropout (validation): ``(loss, new_hidden)``."""
        inputs, targets = self._check_ids(inputs, targets)
        top, new_hidden = self.outputs(inputs, hidden)
        T, B, H = top.shape
        loss, _, _ = self.decoder.loss_and_grads(self.params, top.reshape(T * B, H),
                                                 targets.reshape(-1), grad=False)
        return loss, new_hidden

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

    def _backward(self, dtop: np.ndarray, tape: list, masks: list, grads: dict):
        """From dJ/d(top outputs) (T, B, H) down through the layers to the embeddings;
        fills ``grads`` with the layers' gradients and returns the embeddings' as
        ``(words, rows)``: distinct word ids and the gradient of each one's row."""
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
            return words, dhs                                            # one row per word
        return sum_rows_by_id(words, dhs)

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

    def log_probs(self, states: np.ndarray, excluded: Optional[int] = None) -> np.ndarray:
        """The decoder's distribution (3) after each of the (N, H) top-layer states: (N, |V|)
        float64 natural logs, word ``excluded`` (``<s>``) given 0 and the rest
        renormalised (the class softmax predicts no ``<s>`` in any case)."""
        return self.decoder.log_probs(self.params, np.asarray(states, dtype=self.dtype),
                                      excluded)

    def target_log_probs(self, states: np.ndarray, targets: np.ndarray,
                         excluded: Optional[int] = None) -> np.ndarray:
        """``log_probs(states)[r, targets[r]]`` of each row, without the whole rows."""
        return self.decoder.target_log_probs(self.params, np.asarray(states, dtype=self.dtype),
                                             np.asarray(targets), excluded)

    def step(self, token_ids: np.ndarray, hidden: Hidden):
        """Read one token per stream: ``(log_probs, new_hidden)``, log_probs (B, |V|) float64
        natural logs of the decoder's distribution over the whole vocabulary."""
        new_hidden = self.advance(token_ids, hidden)
        return self.log_probs(new_hidden[-1][0]), new_hidden

    # -- storage ---------------------------------------------------------------------------

    def to_arrays(self) -> Dict[str, np.ndarray]:
        """The parameters under their own names, and the decoder's classes (what a model
        file stores)."""
        return {**self.params, **self.decoder.to_arrays()}

    @classmethod
    def from_arrays(cls, config: RnnConfig, arrays: dict, vocab_size: int) -> "RnnNetwork":
        """A network of ``config`` holding copies of ``arrays`` (writable, even when the
        arrays are memory-mapped from a file); ``ValueError`` if one is missing or of the
        wrong shape or type."""
        config = config.resolved(vocab_size)
        decoder = make_decoder(config, vocab_size, arrays=arrays)
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
        net._setup(config, vocab_size, dtype, decoder)
        net.params = {name: np.array(arrays[name], dtype=dtype) for name in shapes}  # own, writable
        decoder.join(net.params)
        return net
