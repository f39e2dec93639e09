#!/usr/bin/env python3
"""Training-step speed of the NumPy recurrent network beside a plain PyTorch model.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/rnn_step_profile.py                    # rnn, gru, lstm at H=200; lstm at H=650
    python bench/rnn_step_profile.py --rows lstm:200 --repeats 5
    python bench/rnn_step_profile.py --without-openblas-env   # also children without
                                                              # OPENBLAS_CORETYPE/_L2_SIZE

One training step is what a training loop does per chunk, and nothing else (no data
loading, no clipping): for rnnlm, ``RnnNetwork.loss_and_grads`` on (T, B) = (35, 20)
random token ids over a 10,000-word vocabulary, then plain SGD ``p -= lr * g`` (in
place, no temporaries); for
PyTorch, nn.Embedding + nn.RNN/GRU/LSTM + nn.Linear, CrossEntropyLoss, backward and an
``optim.SGD`` step, float32 with ``torch.set_num_threads(2)``. Each figure is training
tokens/s (T*B per step), from its own child process, best of 3 rounds of timed steps after
warm-up; per row, ``--repeats`` pairs of children run in alternating order (rnnlm first,
then torch first, ...), and the medians of each side and of the pairs' ratios are printed,
with the range of the ratios: on a shared machine the speed of both drifts together. PyTorch is a peer for this script only
(``pip install torch==2.13.0`` installs the CPU build); without it the torch column says so.
The float32 GEMM peak of NumPy's BLAS on this machine is measured too, and the fraction of
it one rnnlm step reaches (counting the matrix products' flops only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

V, B, T = 10_000, 20, 35
DEFAULT_ROWS = ["rnn:200", "gru:200", "lstm:200", "lstm:650"]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def step_flops(cell: str, H: int) -> float:
    """Flops of the matrix products of one step (forward and backward), one layer, E = H."""
    N, G = T * B, GATES[cell]
    decoder = 3 * 2 * N * (H + 1) * V           # logits, dV, dS
    inputs = 3 * 2 * N * H * G * H              # x U, dU, dX
    recurrent = 3 * 2 * N * H * G * H           # h W per step, dh W^T per step, dW
    return decoder + inputs + recurrent


def numpy_child(cell: str, H: int, steps: int) -> dict:
    import numpy as np

    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.network import RnnNetwork

    net = RnnNetwork(RnnConfig(cell=cell, hidden=H), V, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    hidden = net.initial_hidden(B)

    def step(hidden):
        _, grads, hidden = net.loss_and_grads(x, y, hidden)
        for name, p in net.params.items():      # SGD in place, as torch's fused step is
            g = grads[name]
            g *= np.float32(-0.1)
            p += g
        return hidden

    return {"tokens_per_s": best_rate(step, hidden, steps)}


def best_rate(step, hidden, steps: int) -> float:
    """Tokens/s of ``step``: three warm-up steps, then the best of three timed runs."""
    for _ in range(3):
        hidden = step(hidden)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            hidden = step(hidden)
        best = max(best, steps * T * B / (time.perf_counter() - start))
    return best


def torch_child(cell: str, H: int, steps: int) -> dict:

    try:
        import torch
        from torch import nn
    except ImportError:
        return {"error": "torch is not installed (pip install torch==2.13.0)"}
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, H)
            self.rnn = rnn_class(H, H)
            self.decoder = nn.Linear(H, V)

        def forward(self, x, hidden):
            out, hidden = self.rnn(self.embedding(x), hidden)
            return self.decoder(out.reshape(-1, H)), hidden

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T * B,))
    zeros = torch.zeros(1, B, H)
    hidden = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def step(hidden):
        hidden = tuple(h.detach() for h in hidden) if cell == "lstm" else hidden.detach()
        optimizer.zero_grad()
        logits, hidden = model(x, hidden)
        criterion(logits, y).backward()
        optimizer.step()
        return hidden

    return {"tokens_per_s": best_rate(step, hidden, steps), "torch": torch.__version__}


def peak_child() -> dict:
    """Float32 GEMM flops/s of NumPy's BLAS: best of a few 2048^3 products."""

    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - start))
    return {"flops": best}


def run_child(kind: str, cell: str, H: int, steps: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, cell, str(H), str(steps)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def median_of(results):
    figures = [r["tokens_per_s"] for r in results if "tokens_per_s" in r]
    return statistics.median(figures) if figures else None


def measure(envs: dict, rows, repeats: int) -> list:
    """Per row, ``repeats`` pairs of children, rnnlm and torch in alternating order (so a
    machine that speeds up or slows down during the run favours neither); the medians of
    each side and of the pairs' ratios."""
    table = []
    for label, env in envs.items():
        peaks = [run_child("peak", "-", 0, 0, env).get("flops", float("nan"))]
        for row in rows:
            cell, H = row.split(":")
            H = int(H)
            steps = 20 if H <= 300 else 6
            ours, theirs, ratios = [], [], []
            for r in range(repeats):
                pair = [("numpy", ours), ("torch", theirs)]
                for kind, results in (pair if r % 2 == 0 else pair[::-1]):
                    results.append(run_child(kind, cell, H, steps, env))
                if "tokens_per_s" in ours[-1] and "tokens_per_s" in theirs[-1]:
                    ratios.append(ours[-1]["tokens_per_s"] / theirs[-1]["tokens_per_s"])
            np_tps = median_of(ours)
            note = next((r["error"] for r in ours + theirs if "error" in r), "")
            table.append({"env": label, "cell": cell, "hidden": H, "rnnlm": np_tps,
                          "torch": median_of(theirs),
                          "ratio": statistics.median(ratios) if ratios else None,
                          "ratio_range": [min(ratios), max(ratios)] if ratios else None,
                          "flops_per_step": step_flops(cell, H), "note": note})
        peaks.append(run_child("peak", "-", 0, 0, env).get("flops", float("nan")))
        for row in table:
            if row["env"] == label:
                row["peak_gflops"] = [p / 1e9 for p in peaks]
                row["fraction_of_peak"] = (row["rnnlm"] / (T * B) * row["flops_per_step"]
                                           / max(peaks) if row["rnnlm"] else None)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="CELL:HIDDEN ...")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--without-openblas-env", action="store_true",
                        help="also measure with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, cell, H, steps = args.child
        child = {"numpy": numpy_child, "torch": torch_child}.get(kind)
        result = peak_child() if kind == "peak" else child(cell, int(H), int(steps))
        print(json.dumps(result))
        return
    blas_env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                if k in os.environ}
    envs = {"as set" + (f" ({' '.join(f'{k}={v}' for k, v in blas_env.items())})"
                        if blas_env else ""): dict(os.environ)}
    if args.without_openblas_env and blas_env:
        envs["without OPENBLAS_CORETYPE/_L2_SIZE"] = {k: v for k, v in os.environ.items()
                                                     if k not in blas_env}
    table = measure(envs, args.rows, args.repeats)
    print(f"training tokens/s, B={B} T={T} |V|={V}, float32, 2 threads; medians of "
          f"{args.repeats} alternating pairs of children")
    for row in table:
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
        spread = ("" if row["ratio_range"] is None else
                  f" ({row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f})")
        print(f"  [{row['env']}] {row['cell']:>4} H={row['hidden']:<4} rnnlm "
              f"{fmt(row['rnnlm'], '8.0f')}  torch {fmt(row['torch'], '8.0f')}  "
              f"ratio {fmt(row['ratio'], '.2f')}x{spread}  "
              f"{fmt(row['fraction_of_peak'], '.0%')} of GEMM peak {row['note']}")
    for label in envs:
        peaks = next(r["peak_gflops"] for r in table if r["env"] == label)
        print(f"  [{label}] float32 GEMM peak (2048^3), before and after: "
              f"{peaks[0]:.0f} and {peaks[1]:.0f} GFLOP/s (a large difference means the "
              "machine was busy with something else)")
    if args.json:
        print(json.dumps(table))


if __name__ == "__main__":
    main()
