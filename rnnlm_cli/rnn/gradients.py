"""Vanishing and exploding gradients, measured: how the loss at step t reaches the hidden
state of an earlier step k, as a function of the distance d = t - k.

For chunks of a token stream (the layout of ``batches.py``, B streams of T steps, the state
carried from chunk to chunk as in training), the network runs forward in float64 and, for
every step t of a chunk and every stream, the loss of that step alone,
``J_t = -log y_t[w_{t+1}]``, is back-propagated into the **top layer's** hidden state
``s_k`` (``h`` for the LSTM: the gradient with respect to ``h_k`` with ``c_k`` held) of
every earlier step k of the chunk, up to ``max_distance`` steps back. The backward pass is
the cells' own ``backward``, run one step at a time over a cache sliced out of the chunk's
forward cache, with every (t, stream) pair as one row of the batch: ``max_distance + 1``
calls per chunk, exact to rounding. (Lower layers do not matter: nothing flows from the top
layer's state back into them.)

Beside it, the per-step Jacobian ``ds_t/ds_{t-1}`` of the top layer, exactly: its rows are
the state gradients that back-propagating the unit vectors through one step gives (the
whole state, ``(h, c)`` with 2H entries, for the LSTM, since that is what carries the
gradient from step to step), and its **spectral norm** (largest singular value) is
averaged over at most ``JACOBIAN_STEPS`` evenly chosen (step, stream) positions. For the
Elman cell it is ``diag(f'(a_t)) W^T`` in this code's row convention ``s_t = f(s_{t-1} W
+ ...)``, the textbook's ``diag(f') W``; back-propagation multiplies by its transpose,
``W diag(f')`` (textbook ``W^T diag(f')``), of the same norm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.charts import bar
from rnnlm_cli.errors import CorpusError, OptionError
from rnnlm_cli.rnn.batches import Batches, token_stream
from rnnlm_cli.rnn.cells import CELLS
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.initialization import check_network_fits
from rnnlm_cli.rnn.network import RnnNetwork

JACOBIAN_STEPS = 256        # (step, stream) positions whose Jacobian is measured, at most


@dataclass
class GradientReport:
    """What ``measure_gradients`` found; ``to_dict`` is the ``--json`` record."""

    distances: np.ndarray           # (D+1,) 0 .. max_distance measured
    mean_norm: np.ndarray           # (D+1,) mean over (t, stream, chunk) of ||dJ_t/ds_{t-d}||
    counts: np.ndarray              # (D+1,) how many gradients each mean is over
    jacobian_norm: float            # mean spectral norm of ds_t/ds_{t-1}
    jacobian_max: float             # the largest of them
    jacobian_steps: int             # how many Jacobians were measured
    cell: str
    layer: int                      # 1-based: the top layer
    layers: int
    state: str                      # what s_k is: "h" (or "s" for the Elman cell)
    jacobian_state: str             # what the Jacobian maps: "s", "h" or "(h, c)"
    chunks: int
    steps: int                      # T of a chunk
    streams: int                    # B
    requested_max_distance: int
    notes: List[str] = field(default_factory=list)

    @property
    def max_distance(self) -> int:
        return int(self.distances[-1])

    def to_dict(self) -> dict:
        return {"distances": self.distances.tolist(), "mean_norm": self.mean_norm.tolist(),
                "log10_mean_norm": np.log10(self.mean_norm).tolist(),
                "counts": self.counts.tolist(), "jacobian_norm": self.jacobian_norm,
                "jacobian_max": self.jacobian_max, "jacobian_steps": self.jacobian_steps,
                "jacobian": f"spectral norm of d{self.jacobian_state}_t/"
                            f"d{self.jacobian_state}_(t-1), top layer",
                "gradient": f"||dJ_t/d{self.state}_(t-d)||, J_t the loss at step t alone, "
                            f"{self.state} the top layer's hidden state",
                "cell": self.cell, "layer": self.layer, "layers": self.layers,
                "chunks": self.chunks, "steps": self.steps, "streams": self.streams,
                "max_distance": self.max_distance,
                "requested_max_distance": self.requested_max_distance, "notes": self.notes}


def untrained_network(config: RnnConfig, sentences: Sequence[Sequence[str]],
                      seed: int) -> Tuple[RnnNetwork, np.ndarray]:
    """The network ``train-rnn`` would start from with ``config`` and ``seed`` (the same
    initial weights), over the vocabulary of ``sentences``, and their token stream."""
    from rnnlm_cli.vocab import Vocabulary
    config.validate()
    vocab, encoded = Vocabulary.build(sentences)
    check_network_fits(config, len(vocab), copies=2)   # parameters and gradients
    init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    stream = token_stream(encoded.ids, encoded.lengths, vocab.eos_id)
    network = RnnNetwork(config, len(vocab), rng=init_rng, dtype=np.float32,
                         word_counts=np.bincount(stream, minlength=len(vocab)))
    return network, stream


def model_network(lm, name: str, sentences: Sequence[Sequence[str]]
                  ) -> Tuple[RnnNetwork, np.ndarray]:
    """A trained model's network and the token stream of ``sentences`` in its vocabulary;
    ``OptionError`` for a model that is not recurrent."""
    if lm.kind != "rnn":
        what = {"ngram": "an n-gram model", "mixture": "a mixture"}.get(lm.kind, lm.kind)
        raise OptionError(f"{name}: {what}: gradients exist only for recurrent models "
                          "(train one with rnnlm train-rnn)")
    encoded = lm.vocab.encode(sentences)
    return lm.network, token_stream(encoded.ids, encoded.lengths, lm.vocab.eos_id)


def measure_gradients(network: RnnNetwork, stream: np.ndarray, max_distance: int = 50,
                      streams: int = 1, max_chunks: Optional[int] = 20,
                      steps: Optional[int] = None) -> GradientReport:
    """Gradient norms versus distance over the chunks of a token ``stream`` (see the module).

    Chunks have ``steps`` steps (default ``max_distance + 1``, the fewest that reach every
    distance); at most ``max_chunks`` of them are used (None: all). A stream too short for
    ``max_distance`` gives what it can, with a note saying so; fewer than 2 tokens or
    ``max_distance < 1`` is an error.
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 1:
        raise OptionError(f"--max-distance must be a whole number of at least 1, "
                          f"not {max_distance!r}")
    stream = np.asarray(stream)
    if stream.size < 2:
        raise CorpusError("too little text: the gradients need at least one word")
    T = max(steps or 0, max_distance + 1)
    B = max(1, min(streams, stream.size // 2))
    rows = stream.size // B
    notes = []
    if rows - 1 < T:                                 # one short chunk: fewer distances
        T = rows - 1
        notes.append(f"the text gives {T} step(s) per stream, so distances above {T - 1} "
                     f"cannot be measured (asked for {max_distance}); add text or lower "
                     f"--max-distance")
    D = min(max_distance, T - 1)
    arrays = {name: np.asarray(v, dtype=np.float64) if v.dtype.kind == "f" else v
              for name, v in network.to_arrays().items()}              # weights in float64
    net = RnnNetwork.from_arrays(network.config, arrays, network.vocab_size)
    batches = Batches(stream, B, T)
    n_chunks = len(batches) if max_chunks is None else min(len(batches), max_chunks)
    sums, counts = np.zeros(D + 1), np.zeros(D + 1, dtype=np.int64)
    jac_norms: List[np.ndarray] = []
    hidden = net.initial_hidden(B)
    layer = net.config.layers - 1
    cell_params = net._layer(layer)
    for index in range(n_chunks):
        inputs, targets = batches[index]
        top, new_hidden, tape = net._forward(inputs, hidden, [None] * (net.config.layers + 1))
        cache = tape[layer][1]
        grads = _output_gradients(net, top, targets)                   # (Tc, B, H)
        _add_distance_norms(net, cell_params, cache, grads, D, sums, counts)
        budget = (JACOBIAN_STEPS * (index + 1)) // n_chunks - (JACOBIAN_STEPS * index) // n_chunks
        if budget:                                   # JACOBIAN_STEPS in all, spread evenly
            jac_norms.append(_jacobian_norms(net, cell_params, cache, budget))
        hidden = new_hidden
    jac = np.concatenate(jac_norms)
    cell = net.config.cell
    return GradientReport(
        distances=np.arange(D + 1), mean_norm=sums / np.maximum(counts, 1), counts=counts,
        jacobian_norm=float(jac.mean()), jacobian_max=float(jac.max()),
        jacobian_steps=int(jac.size), cell=cell, layer=layer + 1, layers=net.config.layers,
        state=net.cell.state_label, jacobian_state=net.cell.carried_label(),
        chunks=n_chunks, steps=T, streams=B, requested_max_distance=max_distance, notes=notes)


def _output_gradients(net: RnnNetwork, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """dJ_t/ds_t for every step and stream: ``(softmax(V s_t + c) - onehot) V^T`` for the
    full softmax (the decoder's ``state_gradients``)."""
    Tc, B, H = top.shape
    dtop = net.decoder.state_gradients(net.params, top.reshape(Tc * B, H),
                                       np.asarray(targets).reshape(-1))
    return dtop.reshape(Tc, B, H)


def _step_cache(cache: dict, steps: np.ndarray, T: int) -> dict:
    """A one-step cache whose batch rows are the chunk's steps ``steps`` (n,) of every
    stream: (n*B) rows. Arrays of T+1 rows (the states, row j = before step j) give rows
    j and j+1; arrays of T rows (per-step values) give row j."""
    out = {}
    for name, value in cache.items():
        if value.shape[0] == T + 1:
            part = np.stack([value[steps], value[steps + 1]])          # (2, n, B, ...)
        else:
            part = value[steps][None]                                  # (1, n, B, ...)
        out[name] = part.reshape((part.shape[0], -1) + value.shape[2:])
    return out


def step_back(net: RnnNetwork, cell_params: dict, cache: dict, steps: np.ndarray,
              dstate: tuple) -> tuple:
    """Back-propagate the state gradients ``dstate`` (each (n*B, H), rows step-major) at the
    outputs of the chunk's steps ``steps`` through those steps: the gradients at the states
    before them."""
    T = cache["hs"].shape[0] - 1
    step = _step_cache(cache, np.asarray(steps), T)
    zeros = np.zeros((1,) + dstate[0].shape, dtype=dstate[0].dtype)
    _, _, before = net.cell.backward(cell_params, zeros, dstate, step)
    return before


def _add_distance_norms(net, cell_params, cache, grads, D, sums, counts) -> None:
    """For every origin step t (and stream), walk its gradient back D steps, adding
    ||dJ_t/ds_{t-d}|| to ``sums[d]``."""
    Tc, B, H = grads.shape
    origins = np.arange(Tc)
    dstate = (grads.reshape(Tc * B, H),) + tuple(
        np.zeros((Tc * B, H)) for _ in range(net.cell.state_size - 1))
    for d in range(D + 1):
        live = origins - d >= 0                                        # those reaching k = t-d
        if not live.any():
            break
        rows = np.repeat(live, B)
        dstate = tuple(part[rows] for part in dstate)
        origins = origins[live]
        norms = np.linalg.norm(dstate[0], axis=1)
        sums[d] += norms.sum()
        counts[d] += norms.size
        if d < D:
            dstate = step_back(net, cell_params, cache, origins - d, dstate)


def _jacobian_norms(net, cell_params, cache, budget: int) -> np.ndarray:
    """Spectral norms of ds_t/ds_{t-1} at up to ``budget`` (step, stream) positions."""
    T, B = cache["hs"].shape[0] - 1, cache["hs"].shape[1]
    H, k = net.config.hidden, net.cell.state_size
    positions = np.unique(np.linspace(0, T * B - 1, min(budget, T * B)).astype(int))
    out = []
    for pos in positions:
        t, b = divmod(int(pos), B)
        single = {name: value[:, b:b + 1] for name, value in cache.items()}
        # k*H unit vectors at the output state of step t: rows of the Jacobian.
        eye = np.eye(k * H)
        dstate = tuple(eye[:, i * H:(i + 1) * H] for i in range(k))    # each (kH, H)
        step = _step_cache(single, np.array([t]), T)
        step = {name: np.repeat(value, k * H, axis=1) for name, value in step.items()}
        zeros = np.zeros((1, k * H, H))
        _, _, before = net.cell.backward(cell_params, zeros, dstate, step)
        jac = np.concatenate(before, axis=1)                           # (kH, kH): d out/d in
        out.append(np.linalg.norm(jac, 2))
    return np.array(out)


def elman_jacobian(W: np.ndarray, s: np.ndarray, activation: str) -> np.ndarray:
    """``ds_t/ds_{t-1} = diag(f'(a_t)) W^T`` of the Elman cell, from its output ``s`` (H,)."""
    if activation == "tanh":
        deriv = 1 - s * s
    elif activation == "sigmoid":
        deriv = s * (1 - s)
    else:
        deriv = (s > 0).astype(s.dtype)
    return deriv[:, None] * W.T


# -- output -------------------------------------------------------------------------------

def format_report(report: GradientReport, width: int = 40) -> str:
    """The table (distance, mean norm, log10) with a log-scale bar on every row."""
    with np.errstate(divide="ignore"):
        logs = np.log10(report.mean_norm)
    finite = logs[np.isfinite(logs)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    low = min(low, high - 1.0)                                         # at least a decade
    state = report.state
    parts = CELLS[report.cell].state_parts
    held = f" (the {report.cell.upper()}'s {state}, with {', '.join(parts[1:])} held)" \
        if len(parts) > 1 else ""
    lines = [
        f"# ||dJ_t/d{state}_(t-d)||: the loss at step t alone, back-propagated to the hidden "
        f"state {state}{held} of layer {report.layer} of {report.layers} (the top) at step t-d",
        f"# {report.cell}; {report.chunks} chunk(s) of {report.steps} steps x "
        f"{report.streams} stream(s); mean over the chunks' (t, stream) pairs",
        f"# chart: log10 scale, empty at {low:.2f}, full at {high:.2f}",
        f"{'distance':>8}  {'mean norm':>11}  {'log10':>7}  chart",
    ]
    for d, value, log in zip(report.distances, report.mean_norm, logs):
        lines.append(f"{d:>8}  {value:>11.4e}  {log:>7.3f}  "
                     f"{bar(log, low, high, width)}")
    lines.append(f"mean spectral norm of the Jacobian d{report.jacobian_state}_t/"
                 f"d{report.jacobian_state}_(t-1) (top layer): {report.jacobian_norm:.4f} "
                 f"(largest {report.jacobian_max:.4f}, over {report.jacobian_steps} steps)")
    return "\n".join(lines)


def check_plotting() -> None:
    """``OptionError`` unless matplotlib (the optional extra of ``--plot``) is importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptionError("--plot needs matplotlib, which is not installed "
                          "(pip install matplotlib); the table and chart need nothing") from None


def plot_report(report: GradientReport, path: str) -> None:
    """Write the curve to ``path`` (PNG) with matplotlib; ``OptionError`` without it."""
    check_plotting()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(report.distances, report.mean_norm, marker=".")
    ax.set_xlabel("distance t - k")
    ax.set_ylabel(f"mean ||dJ_t/d{report.state}_k||")
    ax.set_title(f"{report.cell}: mean Jacobian spectral norm {report.jacobian_norm:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
