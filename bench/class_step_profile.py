#!/usr/bin/env python3
"""Where a training chunk of the class-factorized softmax spends its time.

Run with the interpreter rnnlm is installed in::

    python bench/class_step_profile.py                   # both setups, 2 BLAS threads
    python bench/class_step_profile.py --setups mikolov --threads 1 --chunks 200

Two setups, each on real data, as ``train-rnn`` trains them (``training.Trainer``'s
``train_chunk``: forward, backward, clipping, SGD update, lr 1, clipping at 5):

- ``viwiki``: ``class_bench.py``'s model, LSTM H=200, B=20, T=35, ``--softmax class
  --classes 250`` on ``viwiki/train.txt`` with ``--tokenizer whitespace --min-count 2``
  (|V| = 60,415);
- ``mikolov``: ``mikolov_bench.py``'s Elman line, sigmoid, H=100, B=20, T=20,
  ``--classes 100``, on the first 3,033 lines of ``ptb/valid.txt``.

After ``--warmup`` chunks, ``--chunks`` chunks are timed, and each part of a chunk is timed
by wrapping the function that does it: the cells' forward (``RnnNetwork._forward``), the
decoder's loss and gradients (``decoder.loss_and_grads``, and inside it the word softmax
of the classes, ``ClassSoftmax._within_classes``), the cells' backward
(``RnnNetwork._backward``), clipping (``optim.clip_gradients``, the gradient norm) and the
update (``optimizer.step``); "rest" is the chunk's time outside those. Wall-clock and CPU
milliseconds per chunk, and tokens/s. The machine may be shared: the load average is
printed with the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", nargs="+", default=["viwiki", "mikolov"],
                   choices=["viwiki", "mikolov"])
    p.add_argument("--threads", type=int, default=2, help="BLAS threads (2)")
    p.add_argument("--chunks", type=int, default=None,
                   help="timed chunks (viwiki 60, mikolov 150)")
    p.add_argument("--warmup", type=int, default=5)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:       # before NumPy loads: its BLAS reads these once
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, str(BENCH))
from ngram_bench import CORPORA  # noqa: E402

SETUPS = {
    "viwiki": dict(cell="lstm", activation="tanh", hidden=200, classes=250, batch=20,
                   bptt=35, chunks=60),
    "mikolov": dict(cell="rnn", activation="sigmoid", hidden=100, classes=100, batch=20,
                    bptt=20, chunks=150),
}
PARTS = ["forward", "decoder", "  within classes", "backward", "clip (norm)", "update"]


def read_data(name: str):
    from rnnlm_cli.rnn.data import read_training_data
    from rnnlm_cli.tokenizer import TokenizerConfig
    if name == "viwiki":
        train = (CORPORA / "viwiki" / "train.txt").read_text(encoding="utf-8").splitlines()
        valid = (CORPORA / "viwiki" / "valid.txt").read_text(encoding="utf-8").splitlines()
        return read_training_data(train, valid[:200], TokenizerConfig("whitespace"),
                                  "train", "valid", min_count=2)
    lines = (CORPORA / "ptb" / "valid.txt").read_text(encoding="utf-8").splitlines()
    return read_training_data(lines[:3033], lines[3033:], TokenizerConfig("whitespace"),
                              "train", "valid")


class Timers:
    """Wall-clock and CPU seconds per part, summed over calls."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.cpu = defaultdict(float)

    def wrap(self, owner, attribute: str, part: str) -> None:
        inner = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start
                self.cpu[part] += time.process_time() - cpu

        setattr(owner, attribute, timed)


def profile(name: str, chunks: int, warmup: int) -> dict:
    from rnnlm_cli.rnn import training
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.network import RnnNetwork
    from rnnlm_cli.rnn.optim import make_optimizer
    from rnnlm_cli.rnn.session import plan_batches
    setup = SETUPS[name]
    data = read_data(name)
    config = RnnConfig(cell=setup["cell"], activation=setup["activation"],
                       hidden=setup["hidden"], softmax="class", classes=setup["classes"])
    train_config = training.TrainConfig(epochs=1, batch_size=setup["batch"],
                                        bptt=setup["bptt"], lr=1.0, clip_norm=5.0)
    train_batches, valid_batches = plan_batches(data, train_config)
    network = RnnNetwork(config, len(data.vocab), np.random.default_rng(0),
                         word_counts=np.bincount(data.train, minlength=len(data.vocab)))
    optimizer = make_optimizer("sgd", network.params)
    state = training.TrainState.start(train_config, np.random.default_rng(1))
    trainer = training.Trainer(network, optimizer, train_batches, valid_batches,
                               train_config, state)
    for _ in range(warmup):
        trainer.train_chunk()
    timers = Timers()
    timers.wrap(network, "_forward", "forward")
    timers.wrap(network.decoder, "loss_and_grads", "decoder")
    timers.wrap(network.decoder, "_within_classes", "  within classes")
    timers.wrap(network, "_backward", "backward")
    timers.wrap(training, "clip_gradients", "clip (norm)")
    timers.wrap(optimizer, "step", "update")
    chunks = min(chunks, len(train_batches) - warmup)
    tokens, start, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(chunks):
        tokens += train_batches[state.position][1].size
        trainer.train_chunk()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"vocab": len(data.vocab), "chunks": chunks, "wall": wall, "cpu": cpu,
            "tokens": tokens, "parts": dict(timers.seconds), "cpu_parts": dict(timers.cpu)}


def report(name: str, res: dict, threads: int) -> None:
    s = SETUPS[name]
    n = res["chunks"]
    print(f"== {name}: {s['cell']} H={s['hidden']}, {s['classes']} classes, |V| = "
          f"{res['vocab']:,}, B={s['batch']} T={s['bptt']}, {threads} BLAS thread(s); "
          f"{n} chunks")
    parts = res["parts"]
    cpu_parts = res["cpu_parts"]
    accounted = sum(v for k, v in parts.items() if not k.startswith(" "))
    cpu_accounted = sum(v for k, v in cpu_parts.items() if not k.startswith(" "))
    for part in PARTS + ["rest"]:
        seconds = parts.get(part, 0.0) if part != "rest" else res["wall"] - accounted
        cpu = cpu_parts.get(part, 0.0) if part != "rest" else res["cpu"] - cpu_accounted
        print(f"  {part:<18} {1000 * seconds / n:8.2f} ms/chunk  {seconds / res['wall']:6.1%}"
              f"   CPU {1000 * cpu / n:8.2f} ms")
    print(f"  {'chunk':<18} {1000 * res['wall'] / n:8.2f} ms/chunk  "
          f"({1000 * res['cpu'] / n:.2f} CPU ms)  {res['tokens'] / res['wall']:,.0f} tokens/s")


def main() -> int:
    if not (CORPORA / "viwiki").is_dir() or not (CORPORA / "ptb").is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    for name in ARGS.setups:
        res = profile(name, ARGS.chunks or SETUPS[name]["chunks"], ARGS.warmup)
        report(name, res, ARGS.threads)
    print(f"load average {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs, shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
