"""The training loop of a recurrent LM: truncated BPTT over chunks, epochs, early stopping.

The loop knows nothing of text or files. It takes a network (``loss_and_grads``,
``loss``, ``initial_hidden``, ``params``), an optimiser, two ``Batches``-like sequences of
``(inputs, targets)`` chunks and a ``TrainConfig``, and mutates a ``TrainState``, the one
object a checkpoint needs besides the weights and the optimiser state. Each chunk:
forward and backward from the hidden state the previous chunk left (detached), the
gradient norm measured, clipped, the update applied. Each epoch ends with the validation
perplexity: the best parameters so far are kept, the learning rate decays when it does
not improve (or follows a schedule over the whole run, ``lr_schedule``), and ``patience``
epochs without improvement stop training. A non-finite loss or gradient stops training
before the update, so the weights never turn NaN.

The state changes only between chunks: an interrupt (``KeyboardInterrupt`` from a hook,
or Ctrl-C, which ``deferred_interrupts`` holds back until the next chunk boundary) leaves
a state that resumes exactly where it stopped.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from rnnlm_cli.options import check_choice, check_number, check_whole
from rnnlm_cli.rnn.optim import OPTIMIZERS, Optimizer, clip_gradients


LR_SCHEDULES = ("plateau", "cosine", "linear")


@dataclass
class TrainConfig:
    """How a recurrent model is trained; saved in the model and its checkpoints.

    The defaults follow the small LSTM of Zaremba et al. (2014) on the Penn Treebank:
    SGD at learning rate 1, norm clipping at 5, 20 streams of 20 steps, 13 epochs, the
    rate halved (here: when validation perplexity stops improving).
    """

    epochs: int = 13
    batch_size: int = 20
    bptt: int = 20
    optimizer: str = "sgd"
    lr: float = 1.0
    lr_decay: float = 0.5      # lr *= lr_decay after an epoch that does not improve
    lr_schedule: str = "plateau"   # "plateau" (lr_decay) or a schedule over all updates:
                                   # "cosine" | "linear" (``scheduled_lr``)
    patience: int = 3          # epochs without improvement before stopping; 0: never stop
    clip_norm: float = 5.0     # 0: no clipping
    seed: int = 0
    checkpoint_every: float = 0.0   # minutes; 0: only on Ctrl-C
    log: Optional[str] = None       # JSONL file of the epoch records

    # Options that may change when a run is resumed: they do not change the model.
    RESUMABLE = ("epochs", "checkpoint_every", "log")

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range."""
        check_whole("epochs", self.epochs, 1)
        check_whole("batch_size", self.batch_size, 1)
        check_whole("bptt", self.bptt, 1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_number("lr", self.lr, 0.0, low_open=True)
        check_number("lr_decay", self.lr_decay, 0.0, 1.0, low_open=True, why=" (1: no decay)")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_whole("patience", self.patience, 0, why=" (0: never stop)")
        check_number("clip_norm", self.clip_norm, 0.0, why=" (0: off)")
        check_whole("seed", self.seed, 0)
        check_number("checkpoint_every", self.checkpoint_every, 0.0, why=" minutes (0: off)")

    def model_options(self) -> dict:
        """The options that decide the trained weights: all but ``RESUMABLE``; under a
        schedule over the whole run, ``epochs`` too (each update's rate depends on them)
        and not ``lr_decay`` (unused)."""
        options = {k: v for k, v in asdict(self).items() if k not in self.RESUMABLE}
        if self.lr_schedule != "plateau":
            options["epochs"] = self.epochs
            del options["lr_decay"]
        return options


# -- what the loop reports -------------------------------------------------------------------

@dataclass
class ChunkProgress:
    """After each chunk: where the epoch is, and its running figures."""

    epoch: int          # 1-based
    position: int       # chunks done in this epoch
    chunks: int         # chunks in an epoch
    loss: float         # mean loss over the epoch so far (natural log)
    tokens_per_s: float

    @property
    def ppl(self) -> float:
        return _exp(self.loss)


@dataclass
class EpochRecord:
    """One epoch's figures: the stderr line and a line of ``--log``."""

    epoch: int
    train_ppl: float
    valid_ppl: float
    grad_norm: float    # mean gradient norm before clipping
    clipped: float      # fraction of updates whose gradient was clipped
    lr: float           # the learning rate of this epoch
    improved: bool
    tokens_per_s: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def deterministic(self) -> dict:
        """The record without timings: what the model file keeps (same run, same bytes)."""
        return {k: v for k, v in asdict(self).items() if k not in ("tokens_per_s", "seconds")}


@dataclass
class EpochSums:
    """Running totals over the current epoch."""

    loss: float = 0.0       # sum of loss * targets
    targets: int = 0
    grad_norm: float = 0.0  # sum of norms before clipping
    clipped: int = 0
    updates: int = 0
    seconds: float = 0.0


@dataclass
class TrainState:
    """Everything the loop changes; with the weights and optimiser state, a checkpoint."""

    lr: float
    rng: np.random.Generator                  # dropout masks
    epoch: int = 0                            # epochs completed
    position: int = 0                         # chunks done in the current epoch
    hidden: Optional[list] = None             # carried between chunks; None: epoch start
    best_params: Optional[Dict[str, np.ndarray]] = None
    best_valid_ppl: Optional[float] = None
    bad_epochs: int = 0                       # epochs since the last improvement
    sums: EpochSums = field(default_factory=EpochSums)
    history: List[EpochRecord] = field(default_factory=list)
    stopped: Optional[str] = None             # "early stop" or "non-finite": why it ended
    message: str = ""                         # what went wrong, when stopped is "non-finite"
    updating: bool = False                    # inside an update: not a state to save

    @classmethod
    def start(cls, config: TrainConfig, rng: np.random.Generator) -> "TrainState":
        return cls(lr=config.lr, rng=rng)


class NonFiniteLoss(Exception):
    """Raised inside the loop; the state is left as it was before the bad chunk."""


@dataclass
class Hooks:
    """What the caller hears from the loop. ``on_chunk`` and ``on_epoch`` may raise
    ``KeyboardInterrupt``: the state is consistent at those points."""

    on_chunk: Callable[[ChunkProgress], None] = lambda progress: None
    on_epoch: Callable[[EpochRecord], None] = lambda record: None
    on_epoch_start: Callable[[int, int, int], None] = lambda epoch, done, chunks: None
    save_checkpoint: Optional[Callable[[TrainState], None]] = None
    checkpoint_seconds: float = 0.0           # 0: no periodic checkpoints
    interrupt_requested: Callable[[], bool] = lambda: False
    on_warning: Callable[[str], None] = lambda message: None
    clock: Callable[[], float] = time.monotonic


# -- the loop ------------------------------------------------------------------------------

def train(network, optimizer: Optimizer, train_batches: Sequence, valid_batches: Sequence,
          config: TrainConfig, state: TrainState, hooks: Optional[Hooks] = None
          ) -> TrainState:
    """Train until ``config.epochs`` epochs are done or training stops; returns ``state``.

    On a non-finite loss ``state.stopped`` is ``"non-finite"`` and ``state.message``
    says where; the parameters are those of the last good update.
    """
    return Trainer(network, optimizer, train_batches, valid_batches, config, state,
                   hooks).run()


class Trainer:
    """The loop of one run, top to bottom: epochs of chunks, then validation.

    It owns what every step reads and changes: the network and its optimiser, the
    training and validation chunks, the configuration, the ``TrainState`` (the only thing
    that changes, and the whole of what a checkpoint saves) and the ``Hooks`` it reports
    to. The state changes only inside ``train_chunk`` and ``end_epoch``, each flagged
    ``state.updating`` while it does; between them it is consistent, and that is where
    the loop may stop for an interrupt (``KeyboardInterrupt``) or save a checkpoint.
    """

    def __init__(self, network, optimizer: Optimizer, train_batches: Sequence,
                 valid_batches: Sequence, config: TrainConfig, state: TrainState,
                 hooks: Optional[Hooks] = None):
        self.network, self.optimizer = network, optimizer
        self.train_batches, self.valid_batches = train_batches, valid_batches
        self.config, self.state = config, state
        self.hooks = hooks or Hooks()
        self.timer = _CheckpointTimer(self.hooks)

    def run(self) -> TrainState:
        state = self.state
        try:
            with np.errstate(all="ignore"):   # overflow is caught as a non-finite loss, once
                while state.epoch < self.config.epochs and state.stopped is None:
                    self.hooks.on_epoch_start(state.epoch + 1, state.position,
                                              len(self.train_batches))
                    self.train_epoch()
                    self.end_epoch()
                    self.timer.maybe_save(state)
        except NonFiniteLoss as exc:
            state.stopped = "non-finite"
            state.message = str(exc)
        return state

    def train_epoch(self) -> None:
        """The rest of the epoch's chunks (all of them, unless resumed mid-epoch)."""
        state, batches = self.state, self.train_batches
        while state.position < len(batches):
            self.train_chunk()
            self.hooks.on_chunk(ChunkProgress(state.epoch + 1, state.position, len(batches),
                                              state.sums.loss / state.sums.targets,
                                              _rate(state.sums)))
            self.timer.maybe_save(state)
            if self.hooks.interrupt_requested():
                raise KeyboardInterrupt

    def train_chunk(self) -> None:
        """Forward, backward, clipping and one update, on the chunk at ``state.position``."""
        state, config = self.state, self.config
        started = time.perf_counter()
        state.updating = True   # the dropout RNG moves from here on
        inputs, targets = self.train_batches[state.position]             # (T, B), (T, B)
        hidden = state.hidden if state.hidden is not None else \
            self.network.initial_hidden(inputs.shape[1])
        loss, grads, hidden = self.network.loss_and_grads(inputs, targets, hidden,
                                                          dropout_rng=state.rng,
                                                          row_gradients=True)
        loss = float(loss)
        norm, clipped = clip_gradients(grads, config.clip_norm)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise NonFiniteLoss(_non_finite_message(state, config, "loss" if not
                                                    math.isfinite(loss) else "gradient"))
        self.optimizer.step(self.network.params, grads,
                            scheduled_lr(config, state, len(self.train_batches)))
        sums = state.sums
        sums.loss += loss * targets.size
        sums.targets += targets.size
        sums.grad_norm += norm
        sums.clipped += clipped
        sums.updates += 1
        sums.seconds += time.perf_counter() - started
        state.hidden = hidden
        state.position += 1
        state.updating = False

    def end_epoch(self) -> None:
        """Validation, the best parameters kept, learning-rate decay and early stopping."""
        state, config = self.state, self.config
        started = time.perf_counter()
        valid_ppl = perplexity(self.network, self.valid_batches, self.hooks.interrupt_requested)
        if not math.isfinite(valid_ppl):
            raise NonFiniteLoss(_non_finite_message(state, config, "validation perplexity"))
        sums = state.sums
        improved = state.best_valid_ppl is None or valid_ppl < state.best_valid_ppl
        record = EpochRecord(
            epoch=state.epoch + 1, train_ppl=_exp(sums.loss / max(sums.targets, 1)),
            valid_ppl=valid_ppl, grad_norm=sums.grad_norm / max(sums.updates, 1),
            clipped=sums.clipped / max(sums.updates, 1),
            lr=scheduled_lr(config, state, len(self.train_batches), position=0),
            improved=improved,
            tokens_per_s=_rate(sums), seconds=sums.seconds + time.perf_counter() - started)
        state.updating = True
        if improved:
            state.best_params = {k: p.copy() for k, p in self.network.params.items()}
            state.best_valid_ppl = valid_ppl
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
            if config.lr_schedule == "plateau":
                state.lr *= config.lr_decay
        state.epoch += 1
        state.position, state.hidden, state.sums = 0, None, EpochSums()
        state.history.append(record)
        if config.patience and state.bad_epochs >= config.patience:
            state.stopped = "early stop"
        state.updating = False
        self.hooks.on_epoch(record)


def scheduled_lr(config: TrainConfig, state: TrainState, chunks: int,
                 position: Optional[int] = None) -> float:
    """The learning rate of the update at chunk ``position`` (default: the state's) of
    epoch ``state.epoch``, with ``chunks`` chunks an epoch.

    ``plateau``: ``state.lr``, which ``end_epoch`` multiplies by ``lr_decay`` after an epoch
    that does not improve. The schedules follow the run's progress p = u / U, update u of
    U = ``epochs`` x ``chunks``, from ``state.lr`` (= ``--lr``) down towards 0, as
    PyTorch's ``CosineAnnealingLR`` (Loshchilov & Hutter 2017, eq. 5, one cycle, minimum
    0) and ``LinearLR`` do:

        cosine: lr(p) = lr_0 (1 + cos(pi p)) / 2          linear: lr(p) = lr_0 (1 - p)

    A run resumed with more ``--epochs`` stretches what is left of the schedule."""
    if config.lr_schedule == "plateau":
        return state.lr
    done = state.epoch * chunks + (state.position if position is None else position)
    progress = min(done / max(config.epochs * chunks, 1), 1.0)
    if config.lr_schedule == "cosine":
        return state.lr * (1 + math.cos(math.pi * progress)) / 2
    return state.lr * (1 - progress)


def perplexity(network, batches: Sequence,
               interrupt_requested: Callable[[], bool] = lambda: False) -> float:
    """Perplexity of ``network`` over the chunks of ``batches``, hidden state carried."""
    hidden = None
    total, count = 0.0, 0
    for index in range(len(batches)):
        inputs, targets = batches[index]
        if hidden is None:
            hidden = network.initial_hidden(inputs.shape[1])
        loss, hidden = network.loss(inputs, targets, hidden)
        total += float(loss) * targets.size
        count += targets.size
        if interrupt_requested():
            raise KeyboardInterrupt
    return _exp(total / count)


def restore_best(network, state: TrainState) -> None:
    """Put the best parameters (by validation perplexity) back into ``network``."""
    if state.best_params is None:
        raise ValueError("no epoch has finished: there is no best model")
    for k, p in network.params.items():
        p[...] = state.best_params[k]


def _non_finite_message(state: TrainState, config: TrainConfig, what: str) -> str:
    where = f"epoch {state.epoch + 1}, chunk {state.position + 1}"
    if what == "validation perplexity":
        where = f"the end of epoch {state.epoch + 1}"
    advice = (f"a lower --lr (now {state.lr:g}) or a smaller --clip-norm "
              f"(now {config.clip_norm:g})" if config.clip_norm else
              f"--clip-norm 5 or a lower --lr (now {state.lr:g})")
    return f"the {what} became infinite or NaN at {where}; try {advice}"


def _exp(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def _rate(sums: EpochSums) -> float:
    return sums.targets / sums.seconds if sums.seconds > 0 else 0.0


class _CheckpointTimer:
    """Calls ``hooks.save_checkpoint`` when ``hooks.checkpoint_seconds`` have passed."""

    def __init__(self, hooks: Hooks):
        self.hooks = hooks
        self.last = hooks.clock()

    def maybe_save(self, state: TrainState) -> None:
        hooks = self.hooks
        if not (hooks.save_checkpoint and hooks.checkpoint_seconds > 0):
            return
        if hooks.clock() - self.last >= hooks.checkpoint_seconds:
            hooks.save_checkpoint(state)
            self.last = hooks.clock()


# -- Ctrl-C between chunks -------------------------------------------------------------------

@contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (and SIGTERM, as ``kill`` sends it) back until the loop asks: yields
    ``requested() -> bool``.

    The first signal only sets a flag, which the loop checks between chunks (where the
    state is consistent); a second one interrupts at once, as usual. Outside the main
    thread (where signal handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pending = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum, frame):
        if not pending:
            pending.append(signum)
        elif callable(previous[signum]):  # the second: as the handler before would
            previous[signum](signum, frame)     # (the command line's: raise, once)
        else:
            raise KeyboardInterrupt

    def requested() -> bool:
        return bool(pending)
    requested.signals = pending   # which signal came first (for the exit status)

    for signum in signals:
        signal.signal(signum, handler)
    try:
        yield requested
    finally:
        for signum, before in previous.items():
            if signal.getsignal(signum) is handler:    # (not if the one before changed it)
                signal.signal(signum, before)
