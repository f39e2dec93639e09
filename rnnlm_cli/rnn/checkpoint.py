"""Resumable training checkpoints: one ``.npz`` model file of ``model_type`` "rnn-checkpoint".

A checkpoint holds what the loop needs to continue exactly where it stopped: the
network's arrays (``net.*``), the optimiser state (``optim.*``), the best parameters so
far (``best.*``), the hidden state carried between chunks (``hidden.<layer>.<i>``), and in
its metadata the ``TrainState`` (epoch, position in the epoch, learning rate, best
validation perplexity, patience counter, running sums, history, the dropout RNG's
``bit_generator.state``), the options it was made with (as command-line flags) and a
fingerprint of its data. It is written atomically (``modelfile.save_model``).

A checkpoint read back is checked whole (``Checkpoint.validate``) before anything is
restored from it: every field of the state against the others and against this run
(chunks per epoch, network, optimiser, batch size), every array's name, shape, dtype
and values. A damaged or edited file gives ``corrupt checkpoint: <what>``, never a
traceback and never training from a garbage state.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
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


# Options added since checkpoints were first written, with the value that a checkpoint
# without them was trained with: such a checkpoint resumes with that value.
NEWER_OPTIONS = {"--lr-schedule": "plateau"}


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
        if not isinstance(self.metadata.get("options"), dict):
            raise self._corrupt(ValueError("the options it was made with are missing"))

    @property
    def options(self) -> dict:
        return self.metadata.get("options") or {}

    def check_matches(self, options: dict, fingerprint: str) -> None:
        """Raise ``OptionError`` naming every option that differs from this run's. An
        option newer than the checkpoint counts as the value it was made with
        (``NEWER_OPTIONS``)."""
        saved = {**NEWER_OPTIONS, **self.options}
        differ = [f"{flag} {_show(saved.get(flag))} (here {_show(value)})"
                  for flag, value in options.items() if saved.get(flag) != value]
        if differ:
            raise OptionError(f"{self.path}: made with other options: {', '.join(differ)}; "
                              "resume with the options it was made with")
        if self.metadata.get("data") != fingerprint:
            raise OptionError(f"{self.path}: made from other data (the training or "
                              "validation text differs); resume on the text it was made from")

    def validate(self, network, optimizer, batch_size: int, chunks: int, epochs: int) -> None:
        """Check the whole checkpoint against this run before anything is restored.

        ``network`` holds the checkpoint's ``net.*`` (``from_arrays`` checked their
        shapes), ``optimizer`` is fresh (its state names the ``optim.*`` expected);
        ``chunks`` is the number of chunks in an epoch. A bad field raises
        ``ModelFileError``; more epochs done than ``epochs`` raises ``OptionError``.
        """
        saved = self.metadata.get("state")
        try:
            _check_state(saved, chunks)
            _check_arrays(self.arrays, _expected_arrays(network, optimizer, batch_size, saved))
        except (ValueError, TypeError) as exc:
            raise self._corrupt(exc) from None
        if saved["epoch"] > epochs:
            raise OptionError(f"{self.path}: {saved['epoch']} epochs were done, more than "
                              f"--epochs {epochs}: resume with --epochs {saved['epoch']} or "
                              "more")

    def network_arrays(self) -> Dict[str, np.ndarray]:
        return self._section("net.")

    def restore_optimizer(self, optimizer) -> None:
        try:
            optimizer.load_state_dict(self._section("optim."))
        except (TypeError, ValueError) as exc:
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
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) or isinstance(value, str) and value.isprintable():
        return str(value)
    return _brief(value)   # an edited file: a list, or text with a newline, stays one line


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


# -- validation: one small check per part of a checkpoint ------------------------------------

STATE_KEYS = ("epoch", "position", "lr", "best_valid_ppl", "bad_epochs", "sums", "history",
              "stopped", "rng", "has_best", "hidden_layout")
STOPPED = (None, "early stop")   # a run stopped by a non-finite loss saves no checkpoint


def _check_state(saved, chunks: int) -> None:
    """The ``state`` of the metadata: each field, and how the fields fit together."""
    _check_keys("the training state", saved, STATE_KEYS)
    _check_progress(saved, chunks)
    _check_history(saved["history"])
    _check_best(saved)
    _check_sums(saved["sums"], saved["position"])
    try:
        _generator(saved["rng"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ValueError(f"bad random generator state {_brief(saved['rng'])}") from None


def _check_progress(saved: dict, chunks: int) -> None:
    """Where the run is: ``epoch`` epochs done, ``position`` chunks into the next."""
    epoch = _whole("epoch", saved["epoch"], 0)
    position = _whole("position", saved["position"], 0, chunks)
    _number("lr", saved["lr"], low=0.0, low_open=True)
    if saved["stopped"] not in STOPPED:
        raise ValueError(f"stopped is {_brief(saved['stopped'])}, not null or 'early stop'")
    if saved["stopped"] and (epoch == 0 or position):
        raise ValueError("stopped early, but not at the end of an epoch")
    layout = saved["hidden_layout"]
    if (layout is None) != (position == 0):   # the state carried between chunks of an epoch
        raise ValueError(f"hidden_layout {_brief(layout)} does not fit position {position}")


def _check_history(history) -> None:
    """One record per epoch done, each an ``EpochRecord`` with sensible figures."""
    if not isinstance(history, list):
        raise ValueError(f"history is {_brief(history)}, not a list")
    names = tuple(f.name for f in fields(EpochRecord))
    for index, record in enumerate(history):
        what = f"history record {index + 1}"
        _check_keys(what, record, names)
        if record["epoch"] != index + 1 or type(record["epoch"]) is not int:
            raise ValueError(f"{what} is of epoch {_brief(record['epoch'])}")
        _number(f"{what} train_ppl", record["train_ppl"], low=0.0, low_open=True,
                finite=False)   # a finite loss can still overflow exp()
        _number(f"{what} valid_ppl", record["valid_ppl"], low=0.0, low_open=True)
        _number(f"{what} grad_norm", record["grad_norm"], low=0.0)
        _number(f"{what} clipped", record["clipped"], low=0.0, high=1.0)
        _number(f"{what} lr", record["lr"], low=0.0, low_open=True)
        _number(f"{what} tokens_per_s", record["tokens_per_s"], low=0.0)
        _number(f"{what} seconds", record["seconds"], low=0.0)
        if not isinstance(record["improved"], bool):
            raise ValueError(f"{what} improved is {_brief(record['improved'])}, not a boolean")


def _check_best(saved: dict) -> None:
    """The best epoch so far and the patience counter, as the history says they are."""
    history, epoch = saved["history"], saved["epoch"]
    if len(history) != epoch:
        raise ValueError(f"{len(history)} history records for {epoch} epochs done")
    if saved["has_best"] is not (epoch > 0):   # every first epoch improves
        raise ValueError(f"has_best is {_brief(saved['has_best'])} after {epoch} epochs")
    best = saved["best_valid_ppl"]
    if epoch == 0:
        if best is not None:
            raise ValueError(f"best_valid_ppl is {_brief(best)} before any epoch ended")
    elif best != min(r["valid_ppl"] for r in history):
        raise ValueError(f"best_valid_ppl {_brief(best)} is not the history's best")
    since = next((i for i, r in enumerate(reversed(history)) if r["improved"]), epoch)
    if saved["bad_epochs"] != since or type(saved["bad_epochs"]) is not int:
        raise ValueError(f"bad_epochs is {_brief(saved['bad_epochs'])}, but {since} epochs "
                         "have passed since the last improvement")


def _check_sums(sums, position: int) -> None:
    """The running totals of the epoch in progress: one update per chunk done."""
    _check_keys("sums", sums, tuple(f.name for f in fields(EpochSums)))
    _number("sums.loss", sums["loss"], low=0.0)
    _whole("sums.targets", sums["targets"], 0)
    _number("sums.grad_norm", sums["grad_norm"], low=0.0)
    _whole("sums.updates", sums["updates"], position, position)
    _whole("sums.clipped", sums["clipped"], 0, position)
    _number("sums.seconds", sums["seconds"], low=0.0)


def _expected_arrays(network, optimizer, batch_size: int, saved: dict) -> Dict[str, np.ndarray]:
    """An array like each one the checkpoint must hold (name, dtype kind and shape)."""
    expected = _prefixed("net.", network.to_arrays())
    expected.update(_prefixed("optim.", optimizer.state_dict()))
    if saved["has_best"]:
        expected.update(_prefixed("best.", network.params))
    if saved["hidden_layout"] is not None:
        initial = network.initial_hidden(batch_size)
        if saved["hidden_layout"] != [len(parts) for parts in initial]:
            raise ValueError(f"hidden_layout {_brief(saved['hidden_layout'])} does not fit "
                             "the network")
        for layer, parts in enumerate(initial):
            for i, part in enumerate(parts):
                expected[f"hidden.{layer}.{i}"] = part
    return expected


def _check_arrays(arrays: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    """Exactly the ``expected`` arrays, each of its dtype kind and shape, all finite."""
    for name in sorted(set(expected) - set(arrays)):
        raise ValueError(f"array '{name}' is missing")
    for name in sorted(set(arrays) - set(expected)):
        raise ValueError(f"unexpected array '{name}'")
    for name, like in expected.items():
        array = arrays[name]
        if array.dtype.kind != like.dtype.kind or array.shape != like.shape:
            raise ValueError(f"array '{name}' has dtype {array.dtype} and shape "
                             f"{array.shape}, not {like.dtype} and {like.shape}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"array '{name}' holds NaN or infinite values")


def _check_keys(what: str, value, names) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {_brief(value)}, not an object")
    missing = [n for n in names if n not in value]
    if missing:
        raise ValueError(f"{what} has no '{missing[0]}'")
    extra = sorted(set(value) - set(names))
    if extra:
        raise ValueError(f"{what} has an unknown field {_brief(extra[0])}")


def _whole(name: str, value, low: int, high: Optional[int] = None) -> int:
    """``value``, a JSON integer in ``[low, high]``."""
    if type(value) is not int or value < low or (high is not None and value > high):
        span = f"at least {low}" if high is None else \
            f"{low}" if low == high else f"from {low} to {high}"
        raise ValueError(f"{name} is {_brief(value)}, not a whole number {span}")
    return value


def _number(name: str, value, low: float, high: float = math.inf, low_open: bool = False,
            finite: bool = True) -> float:
    """``value``, a JSON number at least (above, if ``low_open``) ``low``, at most ``high``."""
    good = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (math.isfinite(value) or not finite and value == math.inf) and \
        (value > low if low_open else value >= low) and value <= high
    if not good:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        span = bound if high == math.inf else f"from {low:g} to {high:g}"
        raise ValueError(f"{name} is {_brief(value)}, not a {'finite ' if finite else ''}"
                         f"number {span}")
    return value


def _brief(value, limit: int = 40) -> str:
    """``value`` as JSON, cut short for an error line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
