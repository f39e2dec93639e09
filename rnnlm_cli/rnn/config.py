"""How a recurrent network is shaped and initialised: ``RnnConfig``, saved in the model file.

The training options (optimiser, learning rate, BPTT length, ...) are not here: they say how
a model was trained, not what it is, and a model file must be readable without them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

from rnnlm_cli.errors import OptionError
from rnnlm_cli.options import check_choice, check_flag, check_number, check_whole
from rnnlm_cli.rnn.cells import CELLS as CELL_TYPES

CELLS = tuple(CELL_TYPES)   # each cell is described once, in cells.py
ACTIVATIONS = ("tanh", "sigmoid", "relu")
INITS = ("normal", "uniform", "xavier", "orthogonal", "identity")
SOFTMAXES = ("auto", "full", "class")
AUTO_CLASS_WORDS = 20_000   # --softmax auto: the class softmax above this many words


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
    softmax: str = "auto"          # the decoder: "full" | "class" (decoders.py); "auto"
                                   # until ``resolved`` for a vocabulary
    classes: Optional[int] = None  # C of the class softmax; None: about sqrt(words)

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
        check_choice("softmax", self.softmax, SOFTMAXES)
        if self.classes is not None:
            check_whole("classes", self.classes, 2)
            if self.softmax == "full":
                raise OptionError("--classes needs --softmax class (or auto)")
        if self.tie_weights and self.softmax == "class":
            raise OptionError("--tie-weights works with --softmax full only (the class "
                              "softmax keeps its word matrix in class order)")

    def resolved(self, vocab_size: int) -> "RnnConfig":
        """This configuration with ``softmax`` and ``classes`` settled for a vocabulary of
        ``vocab_size`` words (``<s>`` included, never predicted):

        - ``auto`` is ``class`` when ``--classes`` is given, or when the vocabulary has
          more than ``AUTO_CLASS_WORDS`` words and the weights are not tied; else ``full``;
        - the class softmax has ``--classes`` classes, by default ``round(sqrt(W))`` for
          the W = |V| - 1 words it predicts (Mikolov et al. 2011), and needs
          ``2 <= C <= W / 2``: two classes at least, of two words on average.

        ``OptionError`` if the vocabulary is too small for the classes asked."""
        self.validate()
        softmax = self.softmax
        if softmax == "auto":
            big = vocab_size > AUTO_CLASS_WORDS and not self.tie_weights
            softmax = "class" if self.classes is not None or big else "full"
        if softmax == "full":
            return replace(self, softmax="full", classes=None)
        words = vocab_size - 1
        classes = self.classes if self.classes is not None else max(2, round(math.sqrt(words)))
        if not 2 <= classes <= words // 2:
            need = "at least 4 words" if self.classes is None else f"{2 * classes} words"
            raise OptionError(f"--softmax class with {classes} classes needs {need} to "
                              f"predict (two per class on average); this vocabulary has "
                              f"{words} (<unk>, </s> and the words kept): use fewer "
                              f"--classes or --softmax full")
        return replace(self, softmax="class", classes=classes)

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
        config = cls(**{"softmax": "full", **d})   # files from before --softmax: full
        try:
            config.validate()
        except OptionError as exc:
            raise ValueError(f"bad rnn_config: {exc}") from None
        if config.softmax == "auto" or (config.softmax == "class") != (config.classes is not None):
            raise ValueError(f"bad rnn_config: softmax {config.softmax!r} with classes "
                             f"{config.classes!r}")
        return config
