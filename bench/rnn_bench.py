#!/usr/bin/env python3
"""Benchmark `rnnlm train-rnn` beside a plain PyTorch model: speed, memory and PTB quality.

Run from anywhere, with the interpreter rnnlm is installed in::

    python bench/rnn_bench.py              # everything (about 14 minutes on 2 CPUs)
    python bench/rnn_bench.py --quick      # 1 speed repeat, LSTM quality only, no
                                           # training to convergence (about 4 minutes)
    python bench/rnn_bench.py --speed-only # the speed rows alone (about 7 minutes)
    python bench/rnn_bench.py --repeats 5 --json
    python bench/rnn_bench.py --same-init-only   # rnnlm vs PyTorch from rnnlm's weights

All on the Penn Treebank of ``../shared/corpora/ptb``: training text ``valid.txt``
(--tokenizer whitespace; the vocabulary is that file's 6,021 words plus ``<s>``/``</s>``,
not PTB's usual 10k, as it is built from the training file), test text ``test.txt``.
B=20, T=35, float32, 2 threads.

1. Speed. Each rnnlm figure is a whole ``rnnlm train-rnn`` process (1 epoch, ``--valid``
   the first 100 lines of the training file to keep validation cheap), timed with
   ``os.wait4`` (wall time, exact peak RSS); its training tokens/s is the one train-rnn
   writes to ``--log FILE.jsonl`` for the epoch (time of forward, backward, clipping and
   update per chunk). The peer is a child process training a plain PyTorch model of the
   same configuration for one epoch over the same token-stream layout (nn.Embedding,
   nn.RNN(tanh)/nn.GRU/nn.LSTM, nn.Linear; CrossEntropyLoss, backward,
   clip_grad_norm_(5), optim.SGD(lr 1); hidden state detached between chunks;
   ``torch.set_num_threads(2)``), its tokens/s timed around the same work. Per row,
   ``--repeats`` pairs in alternating order; medians, and the median ratio with its range.
   The fraction of the float32 GEMM peak (measured before and after, with
   ``rnn_step_profile.py``'s child) that rnnlm's training reaches counts the matrix products
   of forward and backward per token: decoder 3*2*(H+1)*|V|, input and recurrent
   products 2 * 3*2*G*H*H (G = 1, 3, 4 gate blocks for rnn, gru, lstm).
2. Quality. H=200, 5 epochs, SGD lr 1, clipping at 5, no dropout, constant learning rate
   (``--lr-decay 1 --patience 0``), both sides keeping the epoch with the best perplexity
   on the same 100-line validation file (rnnlm's rule). rnnlm's test perplexity is
   ``rnnlm perplexity model.npz test.txt``; PyTorch's is computed the same way: each line
   from the boundary state (the mean state before each ``</s>`` of the validation stream,
   which rnnlm keeps in its model files), reading ``</s>`` first (rnnlm trains with ``</s>``
   before every sentence and gives ``<s>`` the same embedding), scoring the words and
   ``</s>``, with the ``<s>`` logit excluded from the softmax (rnnlm's renormalisation), OOV
   words as ``<unk>``. PyTorch's default init is its own; rnnlm's default is the same scheme
   (embeddings N(0, 1), W and U uniform in +-1/sqrt(H)) with zero biases.
   Both "incl. OOVs" and "excl. OOVs" figures are printed. Beside them the order-5
   Kneser-Ney model (``train-ngram --order 5``), and (without ``--quick``) the LSTM
   trained to convergence, regularised as 70k training words need: ``CONVERGENCE``
   (tied weights, dropout 0.5, Adam at 2e-3), up to ``--convergence-epochs`` (100),
   learning-rate halving and early stopping (patience 5) on the last 5% of the training
   lines, which train-rnn holds out itself when given no ``--valid``.

   Two PyTorch rows per cell. "default init": PyTorch's own default initialisation beside
   rnnlm's (``--seed 0``): the same scheme (W, U ~ U(+-1/sqrt(H)), embeddings N(0, 1);
   rnnlm's biases zero, PyTorch's random) with different random numbers, so the gap mixes
   the draw with the implementation. "same init" (LSTM and GRU): PyTorch starts
   from rnnlm's exact initial weights, built as ``train-rnn --seed 0`` builds them
   (``RnnNetwork(RnnConfig(cell, hidden=200), |V|, rng)`` with ``rng`` the first child of
   ``SeedSequence(0).spawn(2)``, as ``session.run_training`` does) and copied in float32
   (U = weight_ih.T, W = weight_hh.T, b in bias_ih, the GRU's bn as b_hn in bias_hh), and
   trains on rnnlm's own vocabulary and chunks (``data.read_training_data``, ``session.plan_batches``)
   in rnnlm's order, with rnnlm's clipping rule (scale by 5/||g|| iff ||g|| >= 5, no +1e-6).
   That row isolates the implementation: both should end within a fraction of a percent
   (float rounding, amplified by 5 epochs of SGD). ``--same-init-only`` runs only these
   rows (rnnlm and same-init PyTorch, LSTM and GRU: about 2 minutes).

The issue's targets are printed beside the figures. PyTorch is a peer for this script only
(``pip install torch==2.13.0``, the CPU build); without it the PyTorch columns say so.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from measure import run_child  # noqa: E402  (os.wait4 timing)
from ngram_bench import CORPORA, PROJECT, RNNLM  # noqa: E402
import rnn_step_profile  # noqa: E402  (the float32 GEMM peak child)

B, T = 20, 35
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
SPEED_ROWS = ["rnn:200", "gru:200", "lstm:200", "lstm:650"]
VALID_LINES = 100          # the cheap validation file: the first lines of the training file
VALID_BATCH = 10           # rnnlm's validation streams (session.VALID_BATCH)
MIN_RATIO = 1.0
MAX_RSS = 2e9              # "2 GB", read strictly as 10^9 bytes
MAX_PPL_GAP = 0.03


# ----------------------------------------------------------------------------- figures

def flops_per_token(cell: str, H: int, V: int) -> float:
    """Matrix-product flops of forward + backward per training token, one layer, E = H
    (rnn_step_profile.step_flops divided by T*B, with the actual vocabulary)."""
    G = GATES[cell]
    return 3 * 2 * (H + 1) * V + 2 * 3 * 2 * G * H * H


def gemm_peak() -> float:
    out = rnn_step_profile.run_child("peak", "-", 0, 0, dict(os.environ))
    return out.get("flops", float("nan"))


def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# ------------------------------------------------------------------------------- rnnlm

def rnnlm_train(corpus: Path, out: Path, cell: str, H: int, epochs: int,
                valid: Optional[Path], extra: List[str] = ()) -> dict:
    log = out.with_suffix(".jsonl")
    if log.exists():
        log.unlink()
    args = RNNLM + ["train-rnn", str(corpus), "--tokenizer", "whitespace",
                    "--batch-size", str(B), "--bptt", str(T), "--cell", cell,
                    "--hidden", str(H), "--epochs", str(epochs), "--lr", "1",
                    "--clip-norm", "5", "--log", str(log), "-o", str(out), *extra]
    if valid is not None:
        args += ["--valid", str(valid)]
    run = run_child(args)
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {"seconds": run.seconds, "peak_rss": run.peak_rss, "history": history}


def rnnlm_perplexity(model: Path, text: Path) -> dict:
    run = run_child(RNNLM + ["perplexity", str(model), str(text), "--json"])
    return json.loads(run.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- PyTorch side

def torch_child(spec: dict) -> dict:
    """Train (and optionally test) a plain PyTorch model; see the module docstring."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return {"error": "torch is not installed (pip install torch==2.13.0)"}
    torch.set_num_threads(2)
    torch.manual_seed(spec.get("seed", 0))
    cell, H, epochs, lr, clip = spec["cell"], spec["hidden"], spec["epochs"], 1.0, 5.0

    def read(path):
        with open(path, encoding="utf-8") as f:
            return [line.split() for line in f]

    same_init = spec.get("init") == "rnnlm"
    if same_init:                      # rnnlm's own vocabulary, streams and chunk layout
        rnn_data, rnn_net, train_layout, valid_layout = rnnlm_start(spec)
        words = rnn_data.vocab.words
        unk, bos, eos = (rnn_data.vocab.id(w) for w in ("<unk>", "<s>", "</s>"))
    else:
        train = read(spec["train"])
        words = ["<unk>", "<s>", "</s>"] + sorted({w for s in train for w in s} - {"<unk>"})
        unk, bos, eos = 0, 1, 2
    index = {w: i for i, w in enumerate(words)}
    V = len(words)

    def stream(sentences):            # </s> s1 </s> s2 </s> ...  (batches.token_stream)
        ids = [eos]
        for s in sentences:
            ids.extend(index.get(w, unk) for w in s)
            ids.append(eos)
        return torch.tensor(ids, dtype=torch.long)

    def batchify(ids, batch):          # (L, batch): the classic layout
        rows = ids.numel() // batch
        return ids[: rows * batch].view(batch, rows).t().contiguous()

    rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, H)
            self.rnn = rnn_class(H, H) if cell != "rnn" else nn.RNN(H, H, nonlinearity="tanh")
            self.decoder = nn.Linear(H, V)

        def forward(self, x, hidden=None):
            out, hidden = self.rnn(self.embedding(x), hidden)
            return self.decoder(out), hidden

    def detach(hidden):
        if hidden is None:
            return None
        return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    if same_init:
        copy_rnnlm_weights(torch, model, rnn_net.params, cell, H)
        data = torch.from_numpy(train_layout.astype("int64"))
        valid = torch.from_numpy(valid_layout.astype("int64"))
    else:
        data = batchify(stream(train), B)
        valid = (batchify(stream(read(spec["valid"])), VALID_BATCH) if spec.get("valid")
                 else None)

    def clip_gradients():
        if not same_init:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            return
        # rnnlm's rule (optim.clip_gradients): scale by clip/||g|| iff ||g|| >= clip, without
        # clip_grad_norm_'s +1e-6 in the denominator; the norm summed in float64.
        grads = [q.grad for q in model.parameters() if q.grad is not None]
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
        if math.isfinite(norm) and norm >= clip:
            for g in grads:
                g.mul_(clip / norm)

    def stream_ppl(batched):
        model.eval()
        total, count, hidden = 0.0, 0, None
        with torch.no_grad():
            for i in range(0, batched.size(0) - 1, T):
                n = min(T, batched.size(0) - 1 - i)
                logits, hidden = model(batched[i:i + n], hidden)
                total += nn.functional.cross_entropy(
                    logits.reshape(-1, V), batched[i + 1:i + 1 + n].reshape(-1),
                    reduction="sum").item()
                count += n * batched.size(1)
        model.train()
        return math.exp(total / count)

    history, best, best_state = [], None, None
    for epoch in range(epochs):
        hidden, loss_sum, targets, seconds = None, 0.0, 0, 0.0
        for i in range(0, data.size(0) - 1, T):
            n = min(T, data.size(0) - 1 - i)
            x, y = data[i:i + n], data[i + 1:i + 1 + n]
            started = time.perf_counter()
            hidden = detach(hidden)
            optimizer.zero_grad()
            logits, hidden = model(x, hidden)
            loss = criterion(logits.reshape(-1, V), y.reshape(-1))
            loss.backward()
            clip_gradients()
            optimizer.step()
            seconds += time.perf_counter() - started
            loss_sum += loss.item() * y.numel()
            targets += y.numel()
        record = {"epoch": epoch + 1, "train_ppl": math.exp(loss_sum / targets),
                  "tokens_per_s": targets / seconds}
        if valid is not None:
            record["valid_ppl"] = stream_ppl(valid)
            if best is None or record["valid_ppl"] < best:
                best = record["valid_ppl"]
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        history.append(record)
    result = {"torch": torch.__version__, "vocab": V, "history": history}
    if spec.get("test"):
        if best_state is not None:
            model.load_state_dict(best_state)
        start = boundary_state(torch, model, valid, eos) if valid is not None else None
        result["test"] = score_lines(torch, model, read(spec["test"]), index, unk, bos, eos, V,
                                     start)
    return result


def boundary_state(torch, model, batched, eos):
    """rnnlm's boundary state (``rnn.model.mean_state_before``) for the PyTorch model: the
    mean state in which it reads ``</s>`` in the validation stream, the stream's first
    position left out, stepping through the (L, B) layout one row at a time."""
    sums, count, hidden = None, 0, None
    model.eval()
    with torch.no_grad():
        for t in range(batched.size(0) - 1):          # the last row is only a target
            x = batched[t:t + 1]
            at = x[0] == eos
            if t > 0 and bool(at.any()):
                parts = hidden if isinstance(hidden, tuple) else (hidden,)
                picked = [p[:, at].double().sum(dim=1, keepdim=True) for p in parts]
                sums = picked if sums is None else [a + b for a, b in zip(sums, picked)]
                count += int(at.sum())
            _, hidden = model.rnn(model.embedding(x), hidden)
    model.train()
    if not count:
        return None
    mean = [(p / count).float() for p in sums]           # (layers, 1, H) each
    return tuple(mean) if isinstance(hidden, tuple) else mean[0]


def rnnlm_start(spec: dict):
    """What ``rnnlm train-rnn TRAIN --valid VALID --tokenizer whitespace --seed S`` starts
    from: its data (``data.read_training_data``), its initial network (``session.run_training``: the
    init generator is the first of ``SeedSequence(seed).spawn(2)``) and the (L, B) layouts
    of its training and validation chunks (``session.plan_batches``)."""
    import numpy as np
    from rnnlm_cli.rnn.data import read_training_data
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.network import RnnNetwork
    from rnnlm_cli.rnn.session import plan_batches
    from rnnlm_cli.rnn.training import TrainConfig
    from rnnlm_cli.tokenizer import TokenizerConfig, read_lines
    config = TrainConfig(epochs=spec["epochs"], batch_size=B, bptt=T, lr=1.0, lr_decay=1.0,
                         patience=0, clip_norm=5.0, seed=spec.get("seed", 0))
    data = read_training_data(read_lines(spec["train"]), read_lines(spec["valid"]),
                              TokenizerConfig("whitespace"), spec["train"], spec["valid"])
    init_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[0])
    network = RnnNetwork(RnnConfig(cell=spec["cell"], hidden=spec["hidden"]), len(data.vocab),
                         rng=init_rng, dtype=np.float32)
    train_batches, valid_batches = plan_batches(data, config)
    if train_batches.batch_size != B or train_batches.bptt != T:
        raise SystemExit(f"rnnlm would train with B={train_batches.batch_size}, not {B}")
    return data, network, train_batches.data, valid_batches.data


def copy_rnnlm_weights(torch, model, params: dict, cell: str, H: int) -> None:
    """rnnlm's parameters into the PyTorch model (float32). Gate order is PyTorch's, so
    U = weight_ih.T, W = weight_hh.T; rnnlm's b is bias_ih + bias_hh (all in bias_ih here),
    except the GRU's n block, whose recurrent bias b_hn is rnnlm's bn."""
    def t(a):
        return torch.from_numpy(a.astype("float32", copy=True))
    b = t(params["layer0.b"])
    bias_hh = torch.zeros_like(b)
    if cell == "gru":
        bias_hh[2 * H:] = t(params["layer0.bn"])
    # PyTorch's cells have two bias vectors, bias_ih and bias_hh, that add up: both get the
    # same gradient, so SGD moves their sum at twice the rate and the clipping norm counts
    # that gradient twice. rnnlm has one b. For the same training, bias_hh is held at zero
    # (its gradient masked), except the GRU's n block, which is rnnlm's separate bn.
    mask = torch.zeros_like(b)
    if cell == "gru":
        mask[2 * H:] = 1.0
    model.rnn.bias_hh_l0.register_hook(lambda grad: grad * mask)
    with torch.no_grad():
        model.embedding.weight.copy_(t(params["embedding"]))
        model.rnn.weight_ih_l0.copy_(t(params["layer0.U"]).t())
        model.rnn.weight_hh_l0.copy_(t(params["layer0.W"]).t())
        model.rnn.bias_ih_l0.copy_(b)
        model.rnn.bias_hh_l0.copy_(bias_hh)
        model.decoder.weight.copy_(t(params["decoder.V"]).t())
        model.decoder.bias.copy_(t(params["decoder.c"]))


def score_lines(torch, model, sentences, index, unk, bos, eos, V, start=None) -> dict:
    """rnnlm's way: every line from the boundary state ``start`` (zeros if None), reading
    </s> first; the words and </s> scored; <s> taken out of the softmax; OOVs scored as
    <unk> (and counted)."""
    model.eval()
    logprob = logprob_known = 0.0
    tokens = oovs = 0
    order = sorted(range(len(sentences)), key=lambda k: -len(sentences[k]))
    with torch.no_grad():
        for lo in range(0, len(order), 64):
            group = [sentences[k] for k in order[lo:lo + 64]]
            width = max(len(s) for s in group) + 1
            inputs = torch.full((width, len(group)), eos, dtype=torch.long)
            targets = torch.full((width, len(group)), eos, dtype=torch.long)
            scored = torch.zeros((width, len(group)), dtype=torch.bool)
            known = torch.zeros((width, len(group)), dtype=torch.bool)
            for b, s in enumerate(group):
                ids = [index.get(w, unk) for w in s]
                inputs[1:len(s) + 1, b] = torch.tensor(ids, dtype=torch.long)
                targets[:len(s), b] = torch.tensor(ids, dtype=torch.long)
                scored[:len(s) + 1, b] = True
                known[:len(s), b] = torch.tensor([w in index for w in s])
                known[len(s), b] = True
            hidden = None
            if start is not None:                           # the same start for every line
                expand = lambda p: p.expand(-1, len(group), -1).contiguous()  # noqa: E731
                hidden = (tuple(map(expand, start)) if isinstance(start, tuple)
                          else expand(start))
            logits, _ = model(inputs, hidden)               # padded at the end
            logits = logits.double()
            logits[..., bos] = -math.inf
            lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1))[..., 0]
            logprob += lp[scored].sum().item()
            logprob_known += lp[scored & known].sum().item()
            tokens += int(scored.sum())
            oovs += int((scored & ~known).sum())
    model.train()
    return {"tokens": tokens, "oovs": oovs, "perplexity": math.exp(-logprob / tokens),
            "perplexity_excluding_oovs": math.exp(-logprob_known / (tokens - oovs))}


def run_torch(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--torch-child", json.dumps(spec)],
                         capture_output=True, text=True, check=False, cwd=PROJECT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------- parts

def bench_speed(tmp: Path, train: Path, valid: Path, rows: List[str], repeats: int,
                vocab: int) -> dict:
    peaks = [gemm_peak()]
    table = []
    for row in rows:
        cell, H = row.split(":")
        H = int(H)
        ours, rss, theirs, ratios, note = [], [], [], [], ""
        for r in range(repeats):
            order = ["rnnlm", "torch"] if r % 2 == 0 else ["torch", "rnnlm"]
            pair = {}
            for kind in order:
                if kind == "rnnlm":
                    res = rnnlm_train(train, tmp / f"speed_{cell}{H}.npz", cell, H, 1, valid)
                    pair[kind] = res["history"][-1]["tokens_per_s"]
                    rss.append(res["peak_rss"])
                else:
                    res = run_torch({"cell": cell, "hidden": H, "epochs": 1,
                                     "train": str(train)})
                    if "error" in res:
                        note = res["error"]
                        pair[kind] = None
                    else:
                        pair[kind] = res["history"][-1]["tokens_per_s"]
            ours.append(pair["rnnlm"])
            theirs.append(pair["torch"])
            if pair["torch"]:
                ratios.append(pair["rnnlm"] / pair["torch"])
            print(f"  .. {cell} H={H} pair {r + 1}: rnnlm {pair['rnnlm']:,.0f}, torch "
                  f"{fmt(pair['torch'], ',.0f')} tokens/s", file=sys.stderr, flush=True)
        table.append({"cell": cell, "hidden": H, "rnnlm": ours, "torch": theirs,
                      "ratios": ratios, "peak_rss": rss, "note": note,
                      "flops_per_token": flops_per_token(cell, H, vocab)})
    peaks.append(gemm_peak())
    return {"rows": table, "peaks": peaks}


def bench_quality(tmp: Path, train: Path, valid: Path, test: Path, cells: List[str],
                  epochs: int, same_init: List[str] = (), default_rows: bool = True) -> dict:
    """Per cell: rnnlm (``--seed 0``) and, with ``default_rows``, PyTorch from its own default
    initialisation; for the cells in ``same_init``, PyTorch also from rnnlm's initial weights
    on rnnlm's own chunks (the "same initial weights" row)."""
    rows = []
    for cell in cells:
        model = tmp / f"q_{cell}.npz"
        res = rnnlm_train(train, model, cell, 200, epochs, valid,
                          ["--lr-decay", "1", "--patience", "0", "--seed", "0"])
        best = min(res["history"], key=lambda r: r["valid_ppl"])["epoch"]
        ours = rnnlm_perplexity(model, test)
        row = {"cell": cell, "rnnlm": ours, "rnnlm_best_epoch": best,
               "rnnlm_history": res["history"]}
        spec = {"cell": cell, "hidden": 200, "epochs": epochs, "train": str(train),
                "valid": str(valid), "test": str(test)}
        for key, extra, wanted in (("torch", {}, default_rows),
                                   ("torch_same_init", {"init": "rnnlm", "seed": 0},
                                    cell in same_init)):
            if not wanted:
                continue
            theirs = run_torch({**spec, **extra})
            if "error" not in theirs:
                theirs["best_epoch"] = min(theirs["history"],
                                           key=lambda r: r["valid_ppl"])["epoch"]
            row[key] = theirs
            print(f"  .. quality {cell} ({key}): rnnlm {ours['perplexity']:.2f}, torch "
                  f"{fmt(theirs.get('test', {}).get('perplexity'), '.2f')}",
                  file=sys.stderr, flush=True)
        rows.append(row)
    return {"rows": rows}


def bench_kn(tmp: Path, train: Path, test: Path) -> dict:
    model = tmp / "kn5.npz"
    run_child(RNNLM + ["train-ngram", str(train), "--tokenizer", "whitespace",
                       "--order", "5", "-o", str(model)])
    return rnnlm_perplexity(model, test)


CONVERGENCE = ["--tie-weights", "--dropout", "0.5", "--optimizer", "adam", "--lr", "2e-3",
               "--patience", "5"]


def bench_convergence(tmp: Path, train: Path, test: Path, epochs: int) -> dict:
    model = tmp / "conv_lstm.npz"
    res = rnnlm_train(train, model, "lstm", 200, epochs, None, CONVERGENCE)
    best = min(res["history"], key=lambda r: r["valid_ppl"])
    return {"history": res["history"], "best_epoch": best["epoch"],
            "epochs_run": len(res["history"]), "seconds": res["seconds"],
            "test": rnnlm_perplexity(model, test)}


# ------------------------------------------------------------------------------ printing

def print_speed(speed: dict, repeats: int, vocab: int) -> None:
    peak = max(p for p in speed["peaks"] if math.isfinite(p))
    print(f"== Speed: training tokens/s, 1 epoch of ptb/valid.txt, B={B} T={T} |V|={vocab:,}, "
          f"float32, 2 threads; median of {repeats} alternating pairs (ratio range)")
    print(f"  {'row':<10} {'rnnlm':>8} {'PyTorch':>8} {'ratio':>7} {'(range)':<13} "
          f"{'target':<14} {'GEMM peak':>9}  {'rnnlm peak RSS':>14}")
    for row in speed["rows"]:
        ours, theirs = median(row["rnnlm"]), median(row["torch"])
        ratio = median(row["ratios"])
        spread = (f"({min(row['ratios']):.2f}-{max(row['ratios']):.2f})"
                  if row["ratios"] else "")
        target = (f">=1.0x {verdict(ratio >= MIN_RATIO)}" if ratio is not None else "-")
        frac = ours * row["flops_per_token"] / peak
        print(f"  {row['cell']:>4} H={row['hidden']:<4} {ours:8,.0f} {fmt(theirs, '8,.0f'):>8} "
              f"{fmt(ratio, '6.2f')}x {spread:<13} {target:<14} {frac:9.0%}  "
              f"{median(row['peak_rss']) / 1e6:11,.0f} MB  {row['note']}")
    print(f"  float32 GEMM peak (NumPy's BLAS, 2048^3, rnn_step_profile's child), before and "
          f"after: {speed['peaks'][0] / 1e9:.0f} and {speed['peaks'][1] / 1e9:.0f} GFLOP/s; "
          "fraction = rnnlm tokens/s x matmul flops per token / the higher peak")
    big = [r for r in speed["rows"] if r["hidden"] >= 650]
    if big:
        rss = median(big[0]["peak_rss"])
        print(f"  target: peak RSS of train-rnn at H=650 < 2 GB (10^9 B): {rss / 1e9:.3f} GB "
              f"(whole process, median) -> {verdict(rss < MAX_RSS)}")
    print()


def print_quality(quality: dict, kn: Optional[dict], conv: Optional[dict], epochs: int,
                  quick: bool = True) -> None:
    print(f"== Quality: train ptb/valid.txt, test ptb/test.txt; H=200 B={B} T={T}, SGD lr 1, "
          f"clip 5, no dropout, {epochs} epochs (best epoch on the {VALID_LINES}-line "
          "validation file)")
    print("   test perplexity, every line from the boundary state (mean state before </s> "
          "in validation),\n   </s> counted (incl. OOVs as <unk> / excl. OOVs)")
    print("   default init: each framework from its own default initialisation (the same "
          "schemes,\n   W ~ U(+-1/sqrt(H)), but different random weights, and PyTorch's "
          "biases random, rnnlm's zero)")
    print("   same init: PyTorch started from rnnlm's --seed 0 initial weights (float32 copy) "
          "and trained on\n   rnnlm's own chunks in rnnlm's order, same SGD/clipping rule, "
          "one bias per gate like rnnlm\n   (bias_hh held at 0): isolates implementation "
          "equivalence (should agree to a fraction\n   of a percent: float rounding, "
          "amplified over 5 epochs of SGD)")
    for row in quality["rows"]:
        ours = row["rnnlm"]
        line = (f"  {row['cell']:>4}  rnnlm {ours['perplexity']:7.2f} / "
                f"{ours['perplexity_excluding_oovs']:7.2f} (epoch {row['rnnlm_best_epoch']})")
        print(line)
        for key, label in (("torch", "default init"), ("torch_same_init", "same init   ")):
            if key not in row:
                continue
            t = row[key]
            if "error" in t:
                print(f"        {label}  PyTorch: {t['error']}")
                continue
            tt = t["test"]
            gap = ours["perplexity"] / tt["perplexity"] - 1
            print(f"        {label}  PyTorch {tt['perplexity']:7.2f} / "
                  f"{tt['perplexity_excluding_oovs']:7.2f} (epoch {t['best_epoch']})   "
                  f"rnnlm/PyTorch {gap:+.2%}   target within 3%: "
                  f"{verdict(abs(gap) <= MAX_PPL_GAP)}")
            if key == "torch_same_init":
                per_epoch = "  ".join(
                    f"{a['train_ppl']:.2f}/{b['train_ppl']:.2f}"
                    for a, b in zip(row["rnnlm_history"], t["history"]))
                print(f"          train ppl per epoch, rnnlm/PyTorch: {per_epoch}")
            if tt["tokens"] != ours["tokens"] or tt["oovs"] != ours["oovs"]:
                print(f"        (token counts differ: rnnlm {ours['tokens']} tokens "
                      f"{ours['oovs']} OOVs, PyTorch {tt['tokens']} tokens {tt['oovs']} OOVs)")
    if kn is None:
        print()
        return
    print(f"  order-5 Kneser-Ney (train-ngram --order 5): {kn['perplexity']:.2f} / "
          f"{kn['perplexity_excluding_oovs']:.2f}")
    if conv is None:
        print("  LSTM to convergence: skipped" + (" (--quick)" if quick else ""))
    else:
        tp = conv["test"]
        beats = (tp["perplexity"] < kn["perplexity"]
                 and tp["perplexity_excluding_oovs"] < kn["perplexity_excluding_oovs"])
        lrs = ", ".join(f"{r['valid_ppl']:.0f}@lr{r['lr']:g}" for r in conv["history"])
        print(f"  LSTM H=200 to convergence ({' '.join(CONVERGENCE)}, lr halving, "
              f"last 5% of lines held out): {conv['epochs_run']} epochs run, best epoch "
              f"{conv['best_epoch']}, {conv['seconds']:.0f} s")
        print(f"     held-out ppl per epoch: {lrs}")
        print(f"     test {tp['perplexity']:.2f} / {tp['perplexity_excluding_oovs']:.2f} vs "
              f"Kneser-Ney {kn['perplexity']:.2f} / {kn['perplexity_excluding_oovs']:.2f} -> "
              f"target (LSTM beats KN-5): {verdict(beats)}")
    print()


# ---------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 speed repeat, LSTM-only quality, no training to convergence")
    p.add_argument("--repeats", type=int, default=None, help="speed pairs per row (default 3)")
    p.add_argument("--rows", nargs="+", default=SPEED_ROWS, help="CELL:HIDDEN speed rows")
    p.add_argument("--quality-cells", nargs="+", default=None,
                   help="cells of the 5-epoch comparison (default rnn gru lstm; lstm if --quick)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of the quality comparison")
    p.add_argument("--same-init-cells", nargs="+", default=None,
                   help="cells that also get the 'same initial weights' PyTorch row "
                        "(default lstm gru, or those of --quality-cells)")
    p.add_argument("--same-init-only", action="store_true",
                   help="only the 'same initial weights' rows: rnnlm and PyTorch from rnnlm's "
                        "initial weights (no speed, default-init, KN or convergence runs)")
    p.add_argument("--speed-only", action="store_true",
                   help="only the speed rows (no quality, KN or convergence runs)")
    p.add_argument("--convergence-epochs", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_child:
        print(json.dumps(torch_child(json.loads(args.torch_child))))
        return 0
    repeats = args.repeats or (1 if args.quick else 3)
    cells = args.quality_cells or (["lstm"] if args.quick else ["rnn", "gru", "lstm"])
    if args.same_init_only and not args.quality_cells:
        cells = args.same_init_cells or ["lstm", "gru"]
    same_init = args.same_init_cells or [c for c in cells if c in ("lstm", "gru")]
    ptb = CORPORA / "ptb"
    if not ptb.is_dir():
        print(f"skipped: the shared corpora are not at {CORPORA}")
        return 0
    train, test = ptb / "valid.txt", ptb / "test.txt"
    started = time.perf_counter()
    print("rnnlm recurrent benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '-')} OPENBLAS_L2_SIZE="
          f"{os.environ.get('OPENBLAS_L2_SIZE', '-')}")
    report = {"repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="rnn_bench_") as tmpdir:
        tmp = Path(tmpdir)
        valid = tmp / "valid_small.txt"
        with open(train, encoding="utf-8") as f:
            lines = f.readlines()
        valid.write_text("".join(lines[:VALID_LINES]), encoding="utf-8")
        vocab = len({w for line in lines for w in line.split()} | {"<unk>", "<s>", "</s>"})
        probe = run_torch({"cell": "rnn", "hidden": 8, "epochs": 0, "train": str(valid)})
        print("PyTorch: " + (probe["error"] if "error" in probe else
                             f"{probe['torch']}, torch.set_num_threads(2)"))
        print()
        speed = kn = conv = None
        if not args.same_init_only:
            speed = bench_speed(tmp, train, valid, args.rows, repeats, vocab)
            print_speed(speed, repeats, vocab)
        if args.speed_only:
            report.update(speed=speed)
            if args.json:
                print(json.dumps(report))
            return 0
        quality = bench_quality(tmp, train, valid, test, cells, args.epochs, same_init,
                                default_rows=not args.same_init_only)
        if not args.same_init_only:
            kn = bench_kn(tmp, train, test)
            conv = None if args.quick else bench_convergence(tmp, train, test,
                                                             args.convergence_epochs)
        print_quality(quality, kn, conv, args.epochs, quick=args.quick)
        report.update(speed=speed, quality=quality, kneser_ney=kn, convergence=conv)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
