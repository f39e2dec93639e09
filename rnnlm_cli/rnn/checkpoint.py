"""Resumable training checkpoints: one ``.npz`` model file of ``model_type`` "rnn-checkpoint".

A checkpoint holds what the loop needs to continue exactly where it stopped: the
network's arrays (``net.*``), the optimiser state (``optim.*``), the best parameters so
far (``best.*``), the hidden state carried between chunks (``hidden.<layer>.<i>``), and in
its metadata the ``TrainState`` (epoch, position in the epoch, learning rate, best
validation perplexity, patience counter, running sums, history, the dropout RNG's
``bit_generator.state``), the options it was made with (as command-line flags) and a
fingerprint of its data. It is written atomically (``modelfile.save_model``).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Dict, Mapping, Optional

import numpy as np

from rnnlm_cli.errors import ModelFileError, OptionError
from rnnlm_cli.modelfile import load_model, save_model
from rnnlm_cli.rnn.training import EpochRecord, EpochSums, TrainState

CHECKPOINT_TYPE = "rnn-checkpoint"
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def default_path(model_path: str) -> str:
    """Where ``train-rnn -o MODEL.npz`` keeps its checkpoint: ``MODEL.checkpoint.npz``."""
    stem = model_path[:-4] if model_path.endswith(".npz") else model_path
    return stem + ".checkpoint.npz"


def save_checkpoint(path: str, network, optimizer, state: TrainState, options: dict,
                    fingerprint: str) -> None:
    """Write a checkpoint of a consistent ``state`` (between two chunks) to ``path``."""
    if state.updating:
        raise ValueError("cannot checkpoint in the middle of an update")
    arrays = _prefixed("net.", network.to_arrays())
    arrays.update(_prefixed("optim.", optimizer.state_dict()))
    if state.best_params is not None:
        arrays.update(_prefixed("best.", state.best_params))
    for layer, parts in enumerate(state.hidden or ()):
        for i, part in enumerate(parts):
            arrays[f"hidden.{layer}.{i}"] = part
    metadata = {"model_type": CHECKPOINT_TYPE, "options": options, "data": fingerprint,
                "state": _state_to_json(state)}
    save_model(path, arrays, metadata)


class Checkpoint:
    """A checkpoint read back: check it fits this run, then restore from it."""

    def __init__(self, path: str):
        self.path = path
        self.arrays, self.metadata = load_model(path)
        kind = self.metadata.get("model_type")
        if kind != CHECKPOINT_TYPE:
            what = f"an {kind} model file" if isinstance(kind, str) else "no checkpoint"
            raise ModelFileError(f"{path}: not a train-rnn checkpoint ({what})")

    @property
    def options(self) -> dict:
        return self.metadata.get("options") or {}

    def check_matches(self, options: dict, fingerprint: str) -> None:
        """Raise ``OptionError`` naming every option that differs from this run's."""
        saved = self.options
        differ = [f"{flag} {_show(saved.get(flag))} (here {_show(value)})"
                  for flag, value in options.items() if saved.get(flag) != value]
        if differ:
            raise OptionError(f"{self.path}: made with other options: {', '.join(differ)}; "
                              "resume with the options it was made with")
        if self.metadata.get("data") != fingerprint:
            raise OptionError(f"{self.path}: made from other data (the training or "
                              "validation text differs); resume on the text it was made from")

    def network_arrays(self) -> Dict[str, np.ndarray]:
        return self._section("net.")

    def restore_optimizer(self, optimizer) -> None:
        try:
            optimizer.load_state_dict(self._section("optim."))
        except ValueError as exc:
            raise self._corrupt(exc) from None

    def restore_state(self) -> TrainState:
        try:
            return _state_from_json(self.metadata["state"], self._section("best."),
                                    self._hidden())
        except (KeyError, TypeError, ValueError) as exc:
            raise self._corrupt(exc) from None

    def _section(self, prefix: str) -> Dict[str, np.ndarray]:
        """The arrays under ``prefix``, as writable copies (loading memory-maps them)."""
        return {k[len(prefix):]: np.array(v) for k, v in self.arrays.items()
                if k.startswith(prefix)}

    def _hidden(self) -> Optional[list]:
        layout = self.metadata["state"]["hidden_layout"]
        if layout is None:
            return None
        section = self._section("hidden.")
        return [tuple(section[f"{layer}.{i}"] for i in range(parts))
                for layer, parts in enumerate(layout)]

    def _corrupt(self, exc: Exception) -> ModelFileError:
        detail = f"'{exc.args[0]}' is missing" if isinstance(exc, KeyError) else str(exc)
        return ModelFileError(f"{self.path}: corrupt checkpoint: {detail}")


def _prefixed(prefix: str, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {prefix + k: v for k, v in arrays.items()}


def _show(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _state_to_json(state: TrainState) -> dict:
    return {
        "epoch": state.epoch, "position": state.position, "lr": state.lr,
        "best_valid_ppl": state.best_valid_ppl, "bad_epochs": state.bad_epochs,
        "sums": asdict(state.sums), "history": [r.to_dict() for r in state.history],
        "stopped": state.stopped, "rng": state.rng.bit_generator.state,
        "has_best": state.best_params is not None,
        "hidden_layout": None if state.hidden is None else [len(p) for p in state.hidden],
    }


def _state_from_json(saved: dict, best: Dict[str, np.ndarray],
                     hidden: Optional[list]) -> TrainState:
    if saved["has_best"] and not best:
        raise KeyError("best.*")
    return TrainState(
        lr=float(saved["lr"]), rng=_generator(saved["rng"]), epoch=int(saved["epoch"]),
        position=int(saved["position"]), hidden=hidden,
        best_params=best if saved["has_best"] else None,
        best_valid_ppl=saved["best_valid_ppl"], bad_epochs=int(saved["bad_epochs"]),
        sums=EpochSums(**saved["sums"]),
        history=[EpochRecord(**r) for r in saved["history"]], stopped=saved["stopped"])


def _generator(state: dict) -> np.random.Generator:
    name = state["bit_generator"]
    if name not in BIT_GENERATORS:
        raise ValueError(f"unknown random generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
