"""Initial values of a recurrent network's parameters, and the shapes they must have.

- Embeddings: N(0, 1), torch.nn.Embedding's default. (The classic PTB recipes use
  uniform +-0.1; with SGD at learning rate 1 such small embeddings learn far slower: an
  H=200 LSTM on PTB reached test perplexity 675 after 5 epochs with them, 358 with these.)
- Input matrices ``U`` (in, G*H): uniform in +-1/sqrt(in), torch.nn.RNN/LSTM/GRU's default.
- Recurrent matrices ``W`` (H, G*H): by ``--init``, separately for each H x H gate block:
  ``normal`` N(0, scale^2); ``uniform`` U(-scale, scale); ``xavier`` Glorot uniform with
  gain ``scale``, bound ``scale * sqrt(6 / (H + H))``; ``orthogonal`` ``scale * Q`` with Q
  from the QR decomposition of a Gaussian matrix (Saxe et al. 2014); ``identity``
  ``scale * I`` (the IRNN recipe of Le et al. 2015, meant for ``--activation relu``).
  Without ``--init-scale`` the scale is ``RnnConfig.recurrent_scale``: the default
  (``uniform``, bound 1/sqrt(H)) is torch.nn.RNN/GRU/LSTM's. On PTB (H=200, 5 epochs of
  SGD at lr 1) it gave test perplexity 287 (LSTM) and 260 (tanh RNN), against 308 and 274
  with Glorot's bound sqrt(3/H), the default before.
- Biases: zero (so ``identity`` has the zero biases IRNN asks for), except the LSTM forget
  gate, which starts at ``forget_bias`` for every ``--init``: 0 by default, as PyTorch
  (whose biases are small and random); 1 is the recipe of Gers et al. (2000) and
  Jozefowicz et al. (2015), which docs/gradients.md found slower to learn long gaps.
- Decoder ``V`` (H, |V|), and the class softmax's ``words.V`` and ``classes.V``: uniform in
  +-1/sqrt(H) (torch.nn.Linear's bound); the biases ``c`` zero.

Values are drawn in float64 and then cast, so a float32 and a float64 network made with the
same seed hold the same numbers up to rounding.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple

import numpy as np

from rnnlm_cli.errors import OptionError
from rnnlm_cli.rnn.cells import CELLS
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.decoders import decoder_shapes

EMBED_STD = 1.0


def param_shapes(config: RnnConfig, vocab_size: int) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order (``--softmax auto`` as
    ``resolved`` for the vocabulary)."""
    if config.softmax == "auto":
        config = config.resolved(vocab_size)
    H, G, E = config.hidden, config.gates, config.embed_size
    shapes = {"embedding": (vocab_size, E)}
    for layer in range(config.layers):
        fan_in = E if layer == 0 else H
        shapes[f"layer{layer}.U"] = (fan_in, G * H)
        shapes[f"layer{layer}.W"] = (H, G * H)
        shapes[f"layer{layer}.b"] = (G * H,)
        for name, size in CELLS[config.cell].extra_params.items():
            shapes[f"layer{layer}.{name}"] = (size * H,)
    shapes.update(decoder_shapes(config, vocab_size))
    return shapes


TRAINING_COPIES = 4   # parameters, gradients, the best epoch's copy, optimiser state


def check_network_fits(config: RnnConfig, vocab_size: int, copies: int = TRAINING_COPIES,
                       memory: Optional[int] = None) -> None:
    """``OptionError`` if ``copies`` float32 copies of the network's parameters alone would
    not fit in ``memory`` bytes (default: the machine's): ``--hidden 1000000`` is refused
    with the figures, before NumPy is asked for terabytes."""
    config = config.resolved(vocab_size)
    count = sum(math.prod(shape) for shape in param_shapes(config, vocab_size).values())
    needed = count * 4 * copies
    memory = memory if memory is not None else _physical_memory()
    if memory and needed > memory:
        raise OptionError(
            f"--hidden {config.hidden}, --embed {config.embed_size}, --layers "
            f"{config.layers} and {vocab_size:,} words make {count:.3g} parameters: about "
            f"{_size(needed)} to train (float32, {copies} copies), more than this machine's "
            f"{_size(memory)} of memory; choose a smaller network")


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0   # unknown (not POSIX): no check


def _size(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"


def init_params(config: RnnConfig, vocab_size: int, rng: np.random.Generator,
                dtype=np.float32) -> Dict[str, np.ndarray]:
    """Fresh parameters for ``config``, drawn from ``rng``."""
    H, G = config.hidden, config.gates
    params = {}
    for name, shape in param_shapes(config, vocab_size).items():
        if name == "embedding":
            value = rng.normal(0.0, EMBED_STD, shape)
        elif name.endswith(".U"):
            bound = 1 / math.sqrt(shape[0])
            value = rng.uniform(-bound, bound, shape)
        elif name.endswith(".W"):
            value = np.concatenate([recurrent_block(config.init, config.recurrent_scale, H, rng)
                                    for _ in range(G)], axis=1)
        elif name in ("decoder.V", "words.V", "classes.V"):
            bound = 1 / math.sqrt(H)
            value = rng.uniform(-bound, bound, shape)
        else:
            value = np.zeros(shape)
            if name.endswith(".b"):
                CELLS[config.cell].init_bias(value, config)   # the LSTM's forget gate
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def recurrent_block(init: str, scale: float, H: int, rng: np.random.Generator) -> np.ndarray:
    """One H x H block of a recurrent matrix, by the ``--init`` scheme (float64)."""
    if init == "normal":
        return rng.normal(0.0, scale, (H, H))
    if init == "uniform":
        return rng.uniform(-scale, scale, (H, H))
    if init == "xavier":
        bound = scale * math.sqrt(6.0 / (H + H))
        return rng.uniform(-bound, bound, (H, H))
    if init == "orthogonal":
        q, r = np.linalg.qr(rng.normal(0.0, 1.0, (H, H)))
        return scale * q * np.where(np.diag(r) < 0, -1.0, 1.0)   # sign fix: Haar-uniform Q
    if init == "identity":
        return scale * np.eye(H)
    raise ValueError(f"unknown init {init!r}")
