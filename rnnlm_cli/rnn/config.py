"""How a recurrent network is shaped and initialised: ``RnnConfig``, saved in the model file.

The training options (optimiser, learning rate, BPTT length, ...) are not here: they say how
a model was trained, not what it is, and a model file must be readable without them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

from rnnlm_cli.errors import OptionError
from rnnlm_cli.options import check_choice, check_flag, check_number, check_whole
from rnnlm_cli.rnn.cells import CELLS as CELL_TYPES

CELLS = tuple(CELL_TYPES)   # each cell is described once, in cells.py
ACTIVATIONS = ("tanh", "sigmoid", "relu")
INITS = ("normal", "uniform", "xavier", "orthogonal", "identity")


@dataclass
class RnnConfig:
    """The architecture of a recurrent language model; ``asdict`` of it is in the metadata."""

    cell: str = "lstm"             # a name of cells.CELLS: "rnn" | "gru" | "lstm"
    activation: str = "tanh"       # for cell == "rnn": "tanh" | "sigmoid" | "relu"
    layers: int = 1
    hidden: int = 200
    embed: Optional[int] = None    # None: = hidden
    dropout: float = 0.0           # on embeddings, between layers and before the decoder
    tie_weights: bool = False      # the decoder shares the embedding matrix (embed == hidden)
    init: str = "uniform"          # recurrent matrix W: normal|uniform|xavier|orthogonal|identity
    init_scale: Optional[float] = None   # std (normal), bound (uniform), gain (xavier,
                                   # orthogonal), multiple of I (identity); None: the scheme's
                                   # default (``recurrent_scale``)
    forget_bias: float = 0.0       # LSTM forget-gate bias at initialisation (0 = plain)

    @property
    def embed_size(self) -> int:
        """The width of the embeddings: ``embed``, or ``hidden`` when not given."""
        return self.hidden if self.embed is None else self.embed

    @property
    def recurrent_scale(self) -> float:
        """``init_scale``, or the default of the ``init`` scheme: 1/sqrt(H) for ``normal``
        (spectral radius about 1) and ``uniform`` (the bound of torch.nn.RNN/GRU/LSTM, so
        that the default initialisation is PyTorch's), 1 for the others."""
        if self.init_scale is not None:
            return float(self.init_scale)
        return 1 / math.sqrt(self.hidden) if self.init in ("normal", "uniform") else 1.0

    @property
    def gates(self) -> int:
        """G: how many H-wide blocks the cell's matrices have (1, 3 or 4)."""
        return CELL_TYPES[self.cell].gates

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range."""
        check_choice("cell", self.cell, CELLS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("init", self.init, INITS)
        check_whole("layers", self.layers, 1)
        check_whole("hidden", self.hidden, 1)
        if self.embed is not None:
            check_whole("embed", self.embed, 1)
        check_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_flag("tie_weights", self.tie_weights)
        if self.tie_weights and self.embed_size != self.hidden:
            raise OptionError(f"--tie-weights needs --embed equal to --hidden "
                              f"({self.embed_size} != {self.hidden})")
        if self.init_scale is not None:
            check_number("init_scale", self.init_scale, 0.0, 100.0, low_open=True)
        check_number("forget_bias", self.forget_bias, -100.0, 100.0)

    @classmethod
    def from_dict(cls, d: object) -> "RnnConfig":
        """Rebuild from ``asdict`` output (a model file's metadata) and validate it.

        Raises ``ValueError`` on anything that is not a valid configuration; the caller
        names the file.
        """
        if not isinstance(d, dict):
            raise ValueError(f"rnn_config must be a mapping, not {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)}, key=str)
        if unknown:
            raise ValueError(f"unknown rnn_config setting(s): {', '.join(map(str, unknown))}")
        config = cls(**d)
        try:
            config.validate()
        except OptionError as exc:
            raise ValueError(f"bad rnn_config: {exc}") from None
        return config
