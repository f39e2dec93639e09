"""One ``train-rnn`` run: batches, a new or resumed network, the loop, checkpoints.

``run_training`` is what the command calls once the text is read and tokenized. It
lays the streams out in batches (fewer parallel streams if the corpus cannot fill one
chunk), builds the network from the seed or from ``--resume``, runs the loop with Ctrl-C
deferred to a chunk boundary, saves checkpoints on the clock and on Ctrl-C, and leaves
the best parameters in the network it returns.
"""
from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from rnnlm_cli.errors import ModelFileError, TrainingError
from rnnlm_cli.allocator import keep_freed_memory
from rnnlm_cli.options import flag
from rnnlm_cli.rnn.batches import Batches, fit_batch_size
from rnnlm_cli.rnn.checkpoint import Checkpoint, save_checkpoint
from rnnlm_cli.rnn.data import TrainingData
from rnnlm_cli.rnn.initialization import check_network_fits
from rnnlm_cli.rnn.optim import make_optimizer
from rnnlm_cli.rnn.training import (Hooks, TrainConfig, Trainer, TrainState,
                                    deferred_interrupts, restore_best)

VALID_BATCH = 10   # parallel streams when measuring validation perplexity


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved at ``path``;
    ``exit_code`` is 128 + the signal's number, as a shell reports it."""

    def __init__(self, path: str, state: TrainState, signum: int = signal.SIGINT):
        super().__init__(path)
        self.path, self.state = path, state
        self.exit_code = 128 + int(signum)


@dataclass
class TrainingRun:
    """The outcome: the network holds the best parameters; ``state`` says how it went."""

    network: object
    state: TrainState
    config: TrainConfig
    batch_size: int
    resumed_from: Optional[str]
    valid_batches: Batches

    def finished_model(self, data: TrainingData, tokenizer: dict):
        """The trained ``RnnModel``, with metadata saying how it was made. It finishes the
        network in place (``<s>``'s embedding, below): call it once, at the end.

        Training reads ``</s>`` before every sentence (``batches.token_stream``); the
        model starts a sentence by reading ``<s>``, which training never saw. So ``<s>``
        gets the embedding ``</s>`` learned: reading either is then the same, and a model
        that starts from ``</s>`` is not changed (``<s>`` is never predicted, so its
        decoder column, shared with the embedding under ``--tie-weights``, is unused).
        And it reads ``<s>`` in the state training reads ``</s>`` in: the boundary state,
        the mean state before each ``</s>`` of the validation stream.
        """
        from rnnlm_cli.rnn.model import RnnModel, mean_state_before, model_metadata
        embedding = self.network.params["embedding"]
        embedding[data.vocab.bos_id] = embedding[data.vocab.eos_id]
        boundary = mean_state_before(self.network, self.valid_batches, data.vocab.eos_id)
        history = self.state.history
        best = min(history, key=lambda r: r.valid_ppl)
        training = {**asdict(self.config), "batch_size_used": self.batch_size,
                    "start_marker": "</s>",
                    "boundary_state": "validation mean" if boundary else "zero",
                    "epochs_run": len(history),
                    "best_epoch": best.epoch, "best_valid_ppl": best.valid_ppl,
                    "stopped": self.state.stopped,
                    "history": [r.deterministic() for r in history]}
        for key in ("checkpoint_every", "log"):   # not how the model was made
            del training[key]
        metadata = model_metadata(self.network.config, tokenizer, data.stats(),
                                  training=training)
        return RnnModel(data.vocab, self.network, metadata, boundary)


def option_flags(model_config, train_config: TrainConfig, tokenizer: dict,
                 vocabulary: dict) -> dict:
    """Every option that decides the weights, keyed by its command-line flag."""
    fields = {**asdict(model_config), **train_config.model_options(), **tokenizer, **vocabulary}
    return {flag(k): v for k, v in fields.items()}


def plan_batches(data: TrainingData, config: TrainConfig):
    """The training and validation chunks: ``(train, valid)`` ``Batches``."""
    train_b = fit_batch_size(data.train.size, config.batch_size, config.bptt)
    valid_b = fit_batch_size(data.valid.size, VALID_BATCH, config.bptt)
    return Batches(data.train, train_b, config.bptt), Batches(data.valid, valid_b, config.bptt)


def run_training(data: TrainingData, model_config, config: TrainConfig, options: dict,
                 checkpoint_path: str, resume: Optional[str] = None,
                 hooks: Optional[Hooks] = None, network_class=None) -> TrainingRun:
    """Train (or resume) a network on ``data``, in four steps:

    1. lay the streams out in chunks (``plan_batches``);
    2. start afresh from the seed (``_start``), or resume from a checkpoint that fits this
       run, validated first (``_resume``);
    3. run the loop (``training.Trainer``) with Ctrl-C and SIGTERM deferred to a chunk
       boundary and checkpoints on the clock (``_Checkpoints``);
    4. on an interrupt, save a checkpoint and raise ``TrainingInterrupted``; otherwise put
       the best epoch's parameters back in the network and return the run.
    """
    if network_class is None:
        from rnnlm_cli.rnn.network import RnnNetwork as network_class
        model_config = model_config.resolved(len(data.vocab))   # --softmax auto settled
        check_network_fits(model_config, len(data.vocab))
    keep_freed_memory()   # no page faults for each chunk's temporaries (allocator.py)
    train_batches, valid_batches = plan_batches(data, config)
    fingerprint = data.fingerprint()
    if resume:
        network, optimizer, state = _resume(resume, options, fingerprint, network_class,
                                            model_config, len(data.vocab), config,
                                            train_batches)
    else:
        network, optimizer, state = _start(network_class, model_config, len(data.vocab),
                                           config, np.bincount(data.train,
                                                               minlength=len(data.vocab)))
    hooks = hooks or Hooks()
    checkpoints = _Checkpoints(checkpoint_path, network, optimizer, options, fingerprint,
                               hooks.on_warning)
    hooks.save_checkpoint = checkpoints.save_on_the_clock
    hooks.checkpoint_seconds = config.checkpoint_every * 60
    signals = []
    try:
        with deferred_interrupts() as requested:
            hooks.interrupt_requested = requested
            signals = getattr(requested, "signals", signals)
            Trainer(network, optimizer, train_batches, valid_batches, config, state,
                    hooks).run()
    except KeyboardInterrupt as stop:
        if state.updating:
            raise   # a second Ctrl-C in the middle of an update: nothing consistent to save
        checkpoints.save(state)
        signum = signals[0] if signals else getattr(stop, "exit_code", 130) - 128
        raise TrainingInterrupted(checkpoint_path, state, signum) from None
    if config.checkpoint_every and state.stopped != "non-finite":
        checkpoints.save_on_the_clock(state)   # the finished run: resume with more --epochs
    if state.best_params is None:
        raise TrainingError(f"{state.message}; no epoch had finished, so no model was written")
    restore_best(network, state)
    return TrainingRun(network, state, config, train_batches.batch_size, resume,
                       valid_batches)


def _start(network_class, model_config, vocab_size: int, config: TrainConfig,
           word_counts: np.ndarray):
    """A new network from ``--seed`` (its first child generator draws the weights, the
    second drives dropout), its optimiser, and the state of epoch 0. The class softmax
    bins the words by their ``word_counts`` in the training stream."""
    init_rng, dropout_rng = (np.random.default_rng(s) for s in
                             np.random.SeedSequence(config.seed).spawn(2))
    network = network_class(model_config, vocab_size, rng=init_rng, dtype=np.float32,
                            word_counts=word_counts)
    optimizer = make_optimizer(config.optimizer, network.params)
    return network, optimizer, TrainState.start(config, dropout_rng)


def _resume(path: str, options: dict, fingerprint: str, network_class, model_config,
            vocab_size: int, config: TrainConfig, train_batches: Batches):
    """The network, optimiser and state of the checkpoint at ``path``, after checking that
    it was made with these options and this data, and that every field fits this run."""
    checkpoint = Checkpoint(path)
    checkpoint.check_matches(options, fingerprint)
    network = _restore_network(checkpoint, network_class, model_config, vocab_size)
    optimizer = make_optimizer(config.optimizer, network.params)
    checkpoint.validate(network, optimizer, train_batches.batch_size, len(train_batches),
                        config.epochs)
    checkpoint.restore_optimizer(optimizer)
    return network, optimizer, checkpoint.restore_state()


class _Checkpoints:
    """Writes this run's checkpoint: on request (an interrupt), and on the clock, where a
    failure (a full disk) is a warning and training goes on."""

    def __init__(self, path: str, network, optimizer, options: dict, fingerprint: str,
                 warn):
        self.path, self.network, self.optimizer = path, network, optimizer
        self.options, self.fingerprint, self.warn = options, fingerprint, warn

    def save(self, state: TrainState) -> None:
        save_checkpoint(self.path, self.network, self.optimizer, state, self.options,
                        self.fingerprint)

    def save_on_the_clock(self, state: TrainState) -> None:
        try:
            self.save(state)
        except ModelFileError as exc:
            self.warn(f"{exc}; training goes on, the next checkpoint will try again")


def _restore_network(checkpoint: Checkpoint, network_class, model_config, vocab_size):
    try:
        return network_class.from_arrays(model_config, checkpoint.network_arrays(), vocab_size)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{checkpoint.path}: corrupt checkpoint: {exc}") from None
