#!/usr/bin/env python3
"""Vanishing and exploding gradients, seen and cured: the script that writes docs/gradients.md.

Run from the project root, with the interpreter rnnlm is installed in::

    python bench/gradients_report.py                 # everything: about 75 minutes on 2 CPUs
    python bench/gradients_report.py --quick         # G = 10 only, one seed: about 8 minutes
    python bench/gradients_report.py --jobs 1 --work-dir /tmp/gr

On the long-range corpus of ``corpora/longrange.py`` (K = 10 keys, 20 filler words, 20,000
training lines, 2,000 validation and 2,000 test lines; the target at the end of a line is
fixed by the key at its start, a mean of G fillers earlier), for G = 5, 10, 20, 40:

1. the corpus figures: the source's true test perplexity, the key-blind floor (what any
   model that cannot see the key is bound to), and Kneser-Ney models' actual perplexity
   (``train-ngram --order 2, 3, 5``);
2. gradient norms against distance (``rnnlm gradients --json``, ||dJ_t/ds_(t-d)||, and the
   per-step Jacobian's spectral norm) for five settings, at initialisation and after
   training: tanh RNN, normal init (std 1/sqrt(H)); tanh RNN, normal init 4/sqrt(H) (large);
   ReLU RNN with identity init (IRNN); GRU; LSTM;
3. training each setting with and without ``--clip-norm 1`` (H=64, Adam 3e-3, B=32, T=60,
   12 epochs, constant learning rate: the recipe of the issue's PyTorch measurement), and
   again with plain SGD at learning rate 1 (G = 10), where clipping decides whether
   training diverges: whether it diverged (non-finite loss), and the test perplexity;
4. the headline: what makes the gated cells learn G = 20. LSTM and GRU variants (forget-gate
   bias, initialisation, BPTT length, learning rate), three seeds each, 20 epochs; for each,
   the epoch at which validation perplexity first closes half the gap between the floor and
   the true perplexity, and the test perplexity;
5. where PyTorch is installed (``pip install torch==2.13.0``; ``--skip-torch`` leaves it
   out), the issue's PyTorch reference measured beside them: nn.LSTM H=64, same recipe,
   G = 10 and 20, its stream perplexity on the test text.

Every run is a child process with one BLAS thread (``--jobs`` of them at a time; these
H=64 products are too small for two threads to help). Results are kept as JSON under
``--work-dir`` (default ``bench/.gradients-work``): a rerun reuses them, ``--fresh``
recomputes. The report goes to ``--out`` (default ``docs/gradients.md``), with the chart
``docs/gradients-curves.png`` where matplotlib is installed.

A model "learns the dependency" to the degree it closes the gap between the key-blind
floor and the true perplexity, measured in nats per token:
``closed = (ln floor - ln ppl) / (ln floor - ln true)``: 100% is the true source, 0% the
floor, below 0 worse than any key-blind model could be.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

PROJECT = Path(__file__).resolve().parents[1]
RNNLM = [sys.executable, "-m", "rnnlm_cli"]
GAPS = (5, 10, 20, 40)
HIDDEN = 64
KEYS = 10
TRAINING_ONLY = ("--bptt", "--lr")            # train-rnn options that take a value
KN_ORDERS = (2, 3, 5)                        # Kneser-Ney models beside the floor
DISTANCES = (0, 5, 10, 20, 30, 40, 60)      # columns of the gradient tables
MAX_DISTANCE = 60
RECIPE = ["--tokenizer", "whitespace", "--hidden", str(HIDDEN), "--optimizer", "adam",
          "--lr", "3e-3", "--batch-size", "32", "--bptt", "60", "--lr-decay", "1",
          "--patience", "0"]
EPOCHS = 12
HEADLINE_GAP, HEADLINE_EPOCHS, HEADLINE_SEEDS = 20, 20, (0, 1, 2)

# rnnlm's initialisation when this report was last run, given explicitly so that the report
# stays the same experiment: W Glorot-uniform with gain 1, LSTM forget-gate bias 1. (The
# defaults are now PyTorch's, W ~ U(+-1/sqrt(H)) and forget bias 0, after this report.)
XAVIER = ["--init", "xavier", "--init-scale", "1"]
FB1 = ["--forget-bias", "1"]

# The five settings: (what it is, the network options of train-rnn and gradients).
SETTINGS = {
    "tanh": ("tanh RNN, W ~ N(0, 1/H)",
             ["--cell", "rnn", "--activation", "tanh", "--init", "normal",
              "--init-scale", str(1 / math.sqrt(HIDDEN))]),
    "tanh-large": ("tanh RNN, W ~ N(0, 16/H)",
                   ["--cell", "rnn", "--activation", "tanh", "--init", "normal",
                    "--init-scale", str(4 / math.sqrt(HIDDEN))]),
    "irnn": ("ReLU RNN, W = I (IRNN)",
             ["--cell", "rnn", "--activation", "relu", "--init", "identity"]),
    "gru": ("GRU", ["--cell", "gru", *XAVIER]),
    "lstm": ("LSTM (forget bias 1)", ["--cell", "lstm", *XAVIER, *FB1]),
}

# The headline's variants at G = 20: (what changes, options added to RECIPE).
HEADLINE = {
    "lstm": ("LSTM, xavier W, forget bias 1 (rnnlm's defaults then)",
             ["--cell", "lstm", *XAVIER, *FB1]),
    "lstm-fb0": ("LSTM, forget bias 0", ["--cell", "lstm", *XAVIER, "--forget-bias", "0"]),
    "lstm-fb3": ("LSTM, forget bias 3", ["--cell", "lstm", *XAVIER, "--forget-bias", "3"]),
    "lstm-torch-init": ("LSTM, PyTorch's init (W ~ U(+-1/sqrt(H)), forget bias 0)",
                        ["--cell", "lstm", "--init", "uniform",
                         "--init-scale", str(1 / math.sqrt(HIDDEN)), "--forget-bias", "0"]),
    "lstm-orthogonal": ("LSTM, orthogonal W",
                        ["--cell", "lstm", "--init", "orthogonal", "--init-scale", "1", *FB1]),
    "lstm-bptt120": ("LSTM, --bptt 120", ["--cell", "lstm", *XAVIER, *FB1, "--bptt", "120"]),
    "lstm-lr1e-2": ("LSTM, --lr 1e-2", ["--cell", "lstm", *XAVIER, *FB1, "--lr", "1e-2"]),
    "gru": ("GRU, xavier W (rnnlm's defaults then)", ["--cell", "gru", *XAVIER]),
    "gru-bptt120": ("GRU, --bptt 120", ["--cell", "gru", *XAVIER, "--bptt", "120"]),
}


# -- running children ------------------------------------------------------------------------

def child_env() -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def rnnlm(*args) -> subprocess.CompletedProcess:
    return subprocess.run(RNNLM + [str(a) for a in args], capture_output=True, text=True,
                          env=child_env(), cwd=PROJECT, check=False)


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


class Cache:
    """Results as JSON files named by what made them, so that a rerun reuses them."""

    def __init__(self, folder: Path, fresh: bool):
        self.folder, self.fresh = folder, fresh
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, spec: dict, compute) -> dict:
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        path = self.folder / f"{name}-{digest}.json"
        if path.exists() and not self.fresh:
            return json.loads(path.read_text())
        result = compute()
        path.write_text(json.dumps(result))
        return result


# -- the parts -------------------------------------------------------------------------------

def make_corpus(work: Path, gap: int) -> dict:
    """Write the G corpus (longrange.py's defaults: K=10, 20 fillers, seeds 0 and 1)."""
    folder = work / f"g{gap}"
    out = subprocess.run([sys.executable, str(PROJECT / "corpora" / "longrange.py"),
                          "--gap", str(gap), "--keys", str(KEYS), "--out-dir", str(folder),
                          "--json"], capture_output=True, text=True, check=True)
    return {"folder": str(folder), **json.loads(out.stdout)}


def ngram_perplexity(folder: str, order: int = 5) -> dict:
    model = Path(folder) / f"kn{order}.npz"
    done = rnnlm("train-ngram", Path(folder) / "train.txt", "--order", order,
                 "--tokenizer", "whitespace", "-o", model)
    if done.returncode:
        return {"error": done.stderr.strip()}
    return last_json(rnnlm("perplexity", model, Path(folder) / "test.txt", "--json").stdout)


def network_options(args: List[str]) -> List[str]:
    """``args`` without the training options (and their values) ``rnnlm gradients`` lacks."""
    out, skip = [], False
    for a in args:
        if skip or a in TRAINING_ONLY:
            skip = not skip
            continue
        out.append(a)
    return out


def gradient_curve(text: str, network_args: List[str], model: Optional[str] = None) -> dict:
    """``rnnlm gradients`` on a trained model, or an untrained one from options (seed 0)."""
    args = [model] if model else network_args + ["--hidden", HIDDEN, "--seed", 0]
    done = rnnlm("gradients", *args, text, "--max-distance", MAX_DISTANCE, "--chunks", 40,
                 "--streams", 4, "--json")
    if done.returncode:
        return {"error": done.stderr.strip()}
    return last_json(done.stdout)


def train_and_test(folder: str, args: List[str], epochs: int, seed: int, model: Path,
                   curve: bool = False) -> dict:
    """One ``train-rnn`` run, its epoch log, the test perplexity of the model it wrote,
    and (with ``curve``) the trained model's gradient curve on the test text."""
    log = model.with_suffix(".jsonl")
    for stale in (model, log):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    done = rnnlm("train-rnn", Path(folder) / "train.txt", "--valid", Path(folder) / "valid.txt",
                 *RECIPE, *args, "--epochs", epochs, "--seed", seed, "-o", model, "--log", log)
    result = {"seconds": time.monotonic() - started, "exit": done.returncode,
              "diverged": "infinite or NaN" in done.stderr,
              "stderr": done.stderr.strip().splitlines()[-1:],
              "history": [json.loads(line) for line in log.read_text().splitlines()]
              if log.exists() else []}
    if done.returncode == 0 and model.exists():
        result["test"] = last_json(rnnlm("perplexity", model, Path(folder) / "test.txt",
                                         "--json").stdout)
        if curve:
            result["curve"] = gradient_curve(str(Path(folder) / "test.txt"), [], str(model))
    return result


# -- PyTorch, for reference ------------------------------------------------------------------

def torch_child(spec: dict) -> dict:
    """nn.LSTM with the issue's recipe; its stream perplexity on the validation and test
    text (the state carried, as PyTorch's word_language_model evaluates)."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return {"error": "torch is not installed (pip install torch==2.13.0)"}
    torch.set_num_threads(1)
    torch.manual_seed(spec["seed"])
    B, T, H = 32, 60, HIDDEN

    def read(name):
        with open(Path(spec["folder"]) / name, encoding="utf-8") as f:
            return [line.split() for line in f]

    train = read("train.txt")
    words = ["</s>"] + sorted({w for s in train for w in s})
    index = {w: i for i, w in enumerate(words)}

    def batchify(sentences, batch):
        ids = [0]
        for s in sentences:
            ids.extend(index[w] for w in s)
            ids.append(0)
        rows = len(ids) // batch
        return torch.tensor(ids[:rows * batch]).view(batch, rows).t().contiguous()

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(len(words), H)
            self.rnn = nn.LSTM(H, H)
            self.decoder = nn.Linear(H, len(words))

        def forward(self, x, hidden=None):
            out, hidden = self.rnn(self.embedding(x), hidden)
            return self.decoder(out), hidden

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_of = nn.CrossEntropyLoss()

    def stream_ppl(data):
        model.eval()
        total, count, hidden = 0.0, 0, None
        with torch.no_grad():
            for i in range(0, data.size(0) - 1, T):
                x, y = data[i:i + T], data[i + 1:i + 1 + T]
                x = x[:y.size(0)]
                logits, hidden = model(x, hidden)
                total += nn.functional.cross_entropy(logits.reshape(-1, len(words)),
                                                     y.reshape(-1), reduction="sum").item()
                count += y.numel()
        model.train()
        return math.exp(total / count)

    data, valid = batchify(train, B), batchify(read("valid.txt"), 10)
    history, best, best_state = [], math.inf, None
    for epoch in range(spec["epochs"]):
        hidden = None
        for i in range(0, data.size(0) - 1, T):
            x, y = data[i:i + T], data[i + 1:i + 1 + T]
            x = x[:y.size(0)]
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            optimizer.zero_grad()
            logits, hidden = model(x, hidden)
            loss = loss_of(logits.reshape(-1, len(words)), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        ppl = stream_ppl(valid)
        history.append({"epoch": epoch + 1, "valid_ppl": ppl})
        if ppl < best:
            best, best_state = ppl, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"torch": torch.__version__, "history": history,
            "test_stream_ppl": stream_ppl(batchify(read("test.txt"), 10))}


def run_torch(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--torch-child", json.dumps(spec)],
                          capture_output=True, text=True, env=child_env(), check=False)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return last_json(done.stdout)


# -- the plan --------------------------------------------------------------------------------

@dataclass
class Plan:
    gaps: tuple
    seeds: tuple
    epochs: int
    headline_epochs: int
    torch: bool
    work: Path
    cache: Cache
    jobs: int
    results: Dict[str, dict] = field(default_factory=dict)

    def submit(self, pool, futures, name, spec, compute):
        futures[name] = pool.submit(self.cache.get, name, spec, compute)

    def run(self) -> dict:
        corpora = {g: make_corpus(self.work, g) for g in self.gaps}
        futures = {}
        models = self.work / "models"
        models.mkdir(exist_ok=True)
        with ThreadPoolExecutor(self.jobs) as pool:
            for g, c in corpora.items():
                folder = c["folder"]
                for order in KN_ORDERS:
                    self.submit(pool, futures, f"kn{order}-g{g}", {"g": g, "c": c["test"]},
                                lambda folder=folder, order=order:
                                ngram_perplexity(folder, order))
                for key, (_, args) in SETTINGS.items():
                    test = str(Path(folder) / "test.txt")
                    self.submit(pool, futures, f"init-{key}-g{g}", {"a": args, "g": g},
                                lambda test=test, args=args: gradient_curve(test, args))
                    for clip in ("1", "0"):
                        name = f"grid-{key}-g{g}-clip{clip}"
                        full = args + ["--clip-norm", clip]
                        self.submit(pool, futures, name, {"a": full, "e": self.epochs, "g": g},
                                    lambda folder=folder, full=full, name=name, clip=clip:
                                    train_and_test(folder, full, self.epochs, 0,
                                                   models / f"{name}.npz", curve=clip == "1"))
            high = 10 if 10 in corpora else self.gaps[0]
            for key, (_, args) in SETTINGS.items():
                for clip in ("1", "0"):
                    name = f"sgd-{key}-g{high}-clip{clip}"
                    full = args + ["--optimizer", "sgd", "--lr", "1", "--clip-norm", clip]
                    self.submit(pool, futures, name, {"a": full, "e": self.epochs, "g": high},
                                lambda full=full, name=name: train_and_test(
                                    corpora[high]["folder"], full, self.epochs, 0,
                                    models / f"{name}.npz"))
            if HEADLINE_GAP in corpora:
                folder = corpora[HEADLINE_GAP]["folder"]
                test = str(Path(folder) / "test.txt")
                for key, (_, args) in HEADLINE.items():
                    net = network_options(args)
                    self.submit(pool, futures, f"init-headline-{key}", {"a": net},
                                lambda net=net: gradient_curve(test, net))
                    for seed in self.seeds:
                        name = f"headline-{key}-seed{seed}"
                        full = args + ["--clip-norm", "1"]
                        self.submit(pool, futures, name,
                                    {"a": full, "e": self.headline_epochs, "s": seed},
                                    lambda full=full, name=name, seed=seed: train_and_test(
                                        folder, full, self.headline_epochs, seed,
                                        models / f"{name}.npz"))
                    # the first seed's trained model, once its run is done (queued before)
                    first = f"headline-{key}-seed{self.seeds[0]}"
                    self.submit(pool, futures, f"curve-{first}",
                                {"a": args, "e": self.headline_epochs, "s": self.seeds[0]},
                                lambda first=first: futures[first].result() and gradient_curve(
                                    test, [], str(models / f"{first}.npz")))
            if self.torch:
                for g in (g for g in (10, HEADLINE_GAP) if g in corpora):
                    for seed in self.seeds:
                        spec = {"folder": corpora[g]["folder"], "seed": seed,
                                "epochs": self.headline_epochs}
                        self.submit(pool, futures, f"torch-g{g}-seed{seed}", spec,
                                    lambda spec=spec: run_torch(spec))
            total = len(futures)
            for done, (name, future) in enumerate(futures.items(), 1):
                self.results[name] = future.result()
                print(f"[{done}/{total}] {name}", file=sys.stderr, flush=True)
        return {"corpora": corpora, "runs": self.results}


# -- the report ------------------------------------------------------------------------------

def closed(ppl: Optional[float], figures: dict) -> Optional[float]:
    """The share of the floor-to-true gap closed, in nats per token."""
    if ppl is None or not math.isfinite(ppl):
        return None
    floor, true = figures["key_blind_floor_perplexity"], figures["true_perplexity"]
    return (math.log(floor) - math.log(ppl)) / (math.log(floor) - math.log(true))


def ppl_of(run: dict) -> Optional[float]:
    return run.get("test", {}).get("perplexity")


def fmt(value, spec=".3f", none="—") -> str:
    return none if value is None else format(value, spec)


def pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def escape_epoch(run: dict, figures: dict) -> Optional[int]:
    """The first epoch whose validation perplexity closes half of the floor-to-true gap
    (of the validation text)."""
    for record in run.get("history", []):
        if (closed(record["valid_ppl"], figures) or -1) >= 0.5:
            return record["epoch"]
    return None


def curve_cells(curve: dict) -> List[str]:
    if "error" in curve:
        return ["error"] * (len(DISTANCES) + 1)
    logs = curve["log10_mean_norm"]
    cells = [fmt(logs[d], ".1f") if d < len(logs) and curve["counts"][d] else "—"
             for d in DISTANCES]
    return cells + [fmt(curve["jacobian_norm"], ".2f")]


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def unicode_chart(curves: Dict[str, dict]) -> List[str]:
    """log10 ||dJ_t/ds_(t-d)|| against d, one line per setting, drawn in block characters."""
    blocks = " ▁▂▃▄▅▆▇█"
    values = [v for c in curves.values() if "error" not in c
              for v, n in zip(c["log10_mean_norm"], c["counts"]) if n and math.isfinite(v)]
    low, high = min(values), max(values)
    lines = [f"log10 norm from {low:.1f} (blank) to {high:.1f} (full block), "
             f"distance 0 to {MAX_DISTANCE} left to right:", "```"]
    for key, curve in curves.items():
        if "error" in curve:
            continue
        row = ""
        for v, n in zip(curve["log10_mean_norm"], curve["counts"]):
            level = 0 if not n else round((v - low) / (high - low) * (len(blocks) - 1))
            row += blocks[max(0, min(len(blocks) - 1, level))]
        lines.append(f"{key:>10} {row}")
    return lines + ["```"]


def plot(data: dict, gaps, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = data["runs"]
    shown = [HEADLINE_GAP if HEADLINE_GAP in gaps else gaps[0]] + list(gaps)
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.6), sharey=True)
    for ax, (panel, g) in zip(axes, enumerate(shown)):
        for key in SETTINGS:
            name = f"init-{key}-g{g}" if panel == 0 else f"grid-{key}-g{g}-clip1"
            curve = runs.get(name, {})
            curve = curve.get("curve", curve) if panel else curve
            if not curve or "error" in curve or "log10_mean_norm" not in curve:
                continue
            d = [x for x, n in zip(curve["distances"], curve["counts"]) if n]
            v = [y for y, n in zip(curve["log10_mean_norm"], curve["counts"]) if n]
            ax.plot(d, v, label=key)
        ax.set_title("at initialisation" if panel == 0 else f"trained, G = {g}")
        ax.set_xlabel("distance t - k")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("log10 mean ||dJ_t / ds_k|| (clipped at -20)")
    axes[0].set_ylim(-20, 12)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def render(data: dict, gaps, seeds, epochs, headline_epochs, chart: Optional[str]) -> str:
    corpora, runs = data["corpora"], data["runs"]
    out = ["# Vanishing and exploding gradients, measured", "",
           "Written by `python bench/gradients_report.py` (see its docstring for every "
           "setting); the numbers below are from its last run, on "
           f"{time.strftime('%Y-%m-%d')}, on a 2-CPU machine. "
           "Rerun it to check them; the prose in **Findings** was written against this run.", ""]
    out += findings_section(data, gaps, seeds, headline_epochs)
    out += ["", "## The long-range corpus", "",
            f"`corpora/longrange.py --gap G --keys {KEYS}`: 20,000 training, 2,000 validation "
            "and 2,000 test lines `keyK w.. w.. targetK`, the number of fillers geometric with "
            "mean G. Test-set figures (perplexity per token, `</s>` counted):", ""]
    rows = []
    for g in gaps:
        test = corpora[g]["test"]
        kn = [runs.get(f"kn{order}-g{g}", {}).get("perplexity") for order in KN_ORDERS]
        rows.append([str(g), f"{corpora[g]['train']['tokens']:,}", fmt(test["true_perplexity"]),
                     fmt(test["key_blind_floor_perplexity"])] +
                    [f"{fmt(p)} ({pct(closed(p, test))})" for p in kn])
    out += table(["G", "training tokens", "true perplexity", "key-blind floor"] +
                 [f"Kneser-Ney order {order}" for order in KN_ORDERS], rows)
    out += ["", "(In brackets, the share of the floor-to-true gap closed: an n-gram model "
            "cannot see the key, so it stays at or above the floor.)"]
    out += ["", "## Gradient norm against distance", "",
            f"`rnnlm gradients --max-distance {MAX_DISTANCE} --chunks 40 --streams 4` on each "
            f"test text: log10 of the mean ||dJ_t/ds_(t-d)|| at distance d, and the mean "
            "spectral norm of the per-step Jacobian ds_t/ds_(t-1) (of (h, c) for the LSTM). "
            f"H = {HIDDEN}, seed 0.", ""]
    if chart:
        out += [f"![gradient norm against distance]({chart})", ""]
    header = ["setting"] + [f"d={d}" for d in DISTANCES] + ["Jacobian"]
    g0 = HEADLINE_GAP if HEADLINE_GAP in gaps else gaps[0]
    out += [f"At initialisation (G = {g0} text):", ""]
    out += table(header, [[SETTINGS[k][0]] + curve_cells(runs[f"init-{k}-g{g0}"])
                          for k in SETTINGS])
    out += [""] + unicode_chart({k: runs[f"init-{k}-g{g0}"] for k in SETTINGS})
    for g in gaps:
        out += ["", f"After training (Adam, `--clip-norm 1`, {epochs} epochs), G = {g}:", ""]
        out += table(header, [[SETTINGS[k][0]] + curve_cells(
            runs[f"grid-{k}-g{g}-clip1"].get("curve", {"error": "no model"})) for k in SETTINGS])
    out += grid_section(data, gaps, epochs)
    out += headline_section(data, seeds, headline_epochs)
    return "\n".join(out) + "\n"


def run_cell(run: dict, figures: dict) -> str:
    if run.get("exit"):
        return "diverged, no model" if run.get("diverged") else "failed"
    ppl = ppl_of(run)
    note = f" (diverged in epoch {len(run['history']) + 1})" if run.get("diverged") else ""
    return f"{fmt(ppl)} ({pct(closed(ppl, figures))}){note}"


def grid_section(data: dict, gaps, epochs) -> List[str]:
    corpora, runs = data["corpora"], data["runs"]
    out = ["", "## Training with and without clipping", "",
           f"H = {HIDDEN}, Adam at 3e-3, B = 32, T = 60, {epochs} epochs, constant learning "
           "rate, seed 0; the best epoch by validation perplexity. Test perplexity (share of "
           "the floor-to-true gap closed); *diverged* means a non-finite loss stopped "
           "training (the best model so far was kept). Mean gradient norm before clipping "
           "and the share of updates clipped are over all epochs of the clipped run.", ""]
    rows = []
    for g in gaps:
        test = corpora[g]["test"]
        for k in SETTINGS:
            a, b = runs[f"grid-{k}-g{g}-clip1"], runs[f"grid-{k}-g{g}-clip0"]
            hist = a.get("history", [])
            norm = statistics.mean(r["grad_norm"] for r in hist) if hist else None
            share = statistics.mean(r["clipped"] for r in hist) if hist else None
            rows.append([str(g), SETTINGS[k][0], run_cell(a, test), run_cell(b, test),
                         fmt(norm, ".3g"), pct(share)])
    out += table(["G", "setting", "clip 1", "no clipping", "grad norm", "clipped"], rows)
    high = 10 if 10 in gaps else gaps[0]
    test = corpora[high]["test"]
    out += ["", f"Plain SGD at learning rate 1 (G = {high}, otherwise the same): the step is "
            "the gradient itself, so an exploding gradient is an exploding step.", ""]
    rows = []
    for k in SETTINGS:
        a, b = runs[f"sgd-{k}-g{high}-clip1"], runs[f"sgd-{k}-g{high}-clip0"]
        hist = b.get("history", [])
        rows.append([SETTINGS[k][0], run_cell(a, test), run_cell(b, test),
                     fmt(max((r["grad_norm"] for r in hist), default=None), ".3g")])
    out += table(["setting", "clip 1", "no clipping", "largest epoch-mean grad norm, unclipped"],
                 rows)
    return out


def headline_runs(runs: dict, key: str, seeds) -> List[dict]:
    return [runs[f"headline-{key}-seed{s}"] for s in seeds if f"headline-{key}-seed{s}" in runs]


def headline_section(data: dict, seeds, headline_epochs) -> List[str]:
    corpora, runs = data["corpora"], data["runs"]
    if HEADLINE_GAP not in corpora:
        return []
    figures = corpora[HEADLINE_GAP]
    out = ["", f"## What makes the gated cells learn G = {HEADLINE_GAP}", "",
           f"The recipe above, {headline_epochs} epochs, clip 1, seeds "
           f"{', '.join(map(str, seeds))}. *Learned by epoch*: the first epoch whose "
           "validation perplexity closes half the floor-to-true gap (— : never). Test "
           f"perplexity (true {fmt(figures['test']['true_perplexity'])}, floor "
           f"{fmt(figures['test']['key_blind_floor_perplexity'])}) and gap closed, by seed.",
           ""]
    rows, curves = [], []
    for key, (label, _) in HEADLINE.items():
        group = headline_runs(runs, key, seeds)
        epochs = [escape_epoch(r, figures["valid"]) for r in group]
        cells = [run_cell(r, figures["test"]) for r in group]
        rows.append([label, ", ".join("—" if e is None else str(e) for e in epochs)] + cells)
        init = runs.get(f"init-headline-{key}", {"error": "not run"})
        trained = runs.get(f"curve-headline-{key}-seed{seeds[0]}", {"error": "not run"})
        curves.append([label, *curve_cells(init)[2:4], curve_cells(init)[-1],
                       *curve_cells(trained)[2:4], curve_cells(trained)[-1]])
    out += table(["variant", "learned by epoch"] + [f"seed {s}" for s in seeds], rows)
    out += ["", f"Their gradients on the G = {HEADLINE_GAP} test text: log10 mean "
            "||dJ_t/ds_(t-d)|| at d = 10 and 20 and the per-step Jacobian's spectral norm, at "
            f"initialisation and after training (seed {seeds[0]}):", ""]
    out += table(["variant", "init d=10", "init d=20", "init Jacobian", "trained d=10",
                  "trained d=20", "trained Jacobian"], curves)
    torch_rows = []
    for g in (10, HEADLINE_GAP):
        group = [runs.get(f"torch-g{g}-seed{s}") for s in seeds]
        group = [r for r in group if r]
        if not group:
            continue
        if any("error" in r for r in group):
            torch_rows.append([str(g), next(r["error"] for r in group if "error" in r)])
            continue
        fig = corpora[g]
        epochs = [escape_epoch(r, fig["valid"]) for r in group]
        torch_rows.append([str(g), ", ".join("—" if e is None else str(e) for e in epochs)] +
                          [f"{fmt(r['test_stream_ppl'])} ({pct(closed(r['test_stream_ppl'], fig['test']))})"
                           for r in group])
    if torch_rows:
        version = next((r["torch"] for r in runs.values() if isinstance(r, dict) and "torch" in r),
                       "")
        out += ["", f"PyTorch {version} for reference: nn.Embedding, nn.LSTM (its default "
                "init: forget bias 0, W ~ U(+-1/sqrt(H))), nn.Linear, the same recipe and "
                f"{headline_epochs} epochs, `clip_grad_norm_(1)`; test perplexity of the "
                "stream (state carried, as PyTorch's word_language_model evaluates):", ""]
        out += table(["G", "learned by epoch"] + [f"seed {s}" for s in seeds], torch_rows)
    return out


def findings_section(data: dict, gaps, seeds, headline_epochs) -> List[str]:
    """The measured verdicts, generated: which settings learn the dependency at which gap."""
    corpora, runs = data["corpora"], data["runs"]
    out = ["## Findings", "", "Which settings learn the dependency (closing at least half "
           "the floor-to-true gap on test, Adam with clipping):", ""]
    for k in SETTINGS:
        learned = [g for g in gaps
                   if (closed(ppl_of(runs[f"grid-{k}-g{g}-clip1"]), corpora[g]["test"])
                       or -1) >= 0.5]
        out.append(f"- {SETTINGS[k][0]}: "
                   + (f"G = {', '.join(map(str, learned))}" if learned else "none of G = "
                      + ", ".join(map(str, gaps))))
    diverged = [SETTINGS[k][0] for k in SETTINGS
                if any(runs[f"{part}-{k}-g{g}-clip0"].get("diverged")
                       for part, gg in (("grid", gaps), ("sgd", (10,))) for g in gg
                       if f"{part}-{k}-g{g}-clip0" in runs)]
    diverged_clipped = [SETTINGS[k][0] for k in SETTINGS
                        if any(r.get("diverged") for name, r in runs.items()
                               if name.startswith(("grid-", "sgd-")) and f"-{k}-g" in name
                               and name.endswith("clip1"))]
    out += ["", "Runs that diverged without clipping: " + (", ".join(diverged) or "none")
            + "; with clipping: " + (", ".join(diverged_clipped) or "none") + "."]
    out += [""] + FINDINGS_PROSE
    return out


# Written against the measured run (see the tables); rerunning regenerates the tables and
# the verdicts above, not this text.
FINDINGS_PROSE = """
**Headline: what makes the LSTM learn G = 20 is a forget-gate bias of 0, not 1.** With
`--forget-bias 0` (or PyTorch's initialisation, which has it) the LSTM learns the dependency
on all three seeds, by epoch 8 to 12, ending 78-91% of the way from the key-blind floor to
the true perplexity. Forget bias 1 (rnnlm's default when this was run) learns on two seeds
of three and late (epochs 17 and 18); a bias of 3 never learns. A higher learning rate (Adam at 1e-2) also
brings learning forward (epochs 6, 12, 9); an orthogonal recurrent matrix helps less (12, 19,
13); twice the BPTT length (120 steps) does not help, for the LSTM or the GRU. The GRU
learns G = 20 on two seeds of three. At G = 40 no gated cell learns in 12 epochs with seed 0
except the GRU (68%).

**It is not the vanishing gradient that decides it.** At initialisation the forget bias of 3
gives the largest gradient twenty steps back (10^-1.4) and PyTorch's initialisation the
smallest (10^-5.4), yet they learn in the opposite order. What the bias changes is how much
the cell keeps: with f = sigma(3) = 0.95 the cell state is a running sum of some twenty
filler inputs, in which the key is one term among many, and the gradient reaching the key
is no stronger than that reaching each filler; with f near 0.5 the memory starts short, and
a unit that learns to latch the key stands out. (That reading is ours; the tables show the
effect, not the mechanism.)

**G = 10, the issue's reference point.** The LSTM ends 1.4% above the true test perplexity
(8.131 against 8.019; 92% of the gap closed), as do the GRU and the IRNN; PyTorch's LSTM with
the same recipe, measured here, ends 1.5-2.0% above. The issue's PyTorch figure was about 4%
above.

**The Elman RNN.** With tanh and W ~ N(0, 1/H) (spectral radius about 1) it learns part of
the dependency at G = 5 and 10 (90%, 59%) and none at G = 20 or 40, where training itself
makes it forget: the trained network's Jacobian norm falls to 0.55 and 0.34, and the gradient
twenty steps back to 10^-16 and 10^-24, the contracting regime that Bengio et al. (1994)
showed is the price of storing information robustly. A large initial scale (N(0, 16/H),
Jacobian norm 4.9) is the exploding regime: the gradient grows by ten orders of magnitude
over 60 steps, and the model never gets near the floor, clipped or not. ReLU with identity
initialisation (IRNN, Le et al. 2015) keeps the gradient flat at initialisation and is the
best long-range learner here with seed 0: 89% at G = 20 and 72% at G = 40.

**Clipping.** With Adam at 3e-3 the gated cells' gradient norms (0.13-0.18) never reach the
threshold of 1, so clipping changes nothing for them; it matters for the IRNN, whose
gradient spikes (2-5% of updates clipped; 72% against 46% of the gap at G = 40). With plain
SGD at learning rate 1, where the step is the gradient, the IRNN without clipping diverged
(a non-finite loss in its first epoch, so no model), and with clipping trained to 62%:
Pascanu et al.'s (2013) argument for clipping, seen directly. Clipping does not rescue the
exploding tanh network; it bounds the step, not the dynamics.

**Where we disagree with the literature or the issue, and why.**
- Gers et al. (2000) and Jozefowicz et al. (2015) recommend a forget-gate bias of 1, and it
  was rnnlm's default when this report was run; on this task it slows learning and 3
  prevents it. Their tasks (language modelling, music) reward long memory of everything;
  this one rewards keeping one word among many. Since this report the default is 0 (and W
  PyTorch's U(+-1/sqrt(H))): PyTorch's initialisation, which also gave the better PTB
  perplexity after 5 epochs (bench/rnn_bench.py); `--forget-bias 1` restores the recipe.
  The runs here keep the old settings explicitly (`XAVIER`, `FB1` in the script).
- The issue reports that PyTorch's LSTM with this recipe does not learn G = 20 in 20 epochs.
  Measured here, on this corpus, it does, on all three seeds, by epoch 11 to 14. Learning
  arrives after a plateau whose length varies with the seed and, presumably, with the filler
  chain, which the issue does not give; a slightly harder corpus or a shorter run would miss
  it. We could not reproduce that figure.
- The issue reports that the tanh RNN stays above the key-blind floor at G = 10; ours closes
  59% of the gap. Our tanh network starts with W ~ N(0, 1/H), spectral radius about 1;
  PyTorch's nn.RNN draws W from U(+-1/sqrt(H)), radius about 0.58, so its gradient vanishes
  faster. (We did not run PyTorch's tanh RNN to confirm this.)
- n-gram models cannot see the key: Kneser-Ney of order 2 sits on the floor, and orders 3 and
  5 above it (the filler chain is first-order, and longer contexts only dilute its counts).
""".strip().split("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(PROJECT / "docs" / "gradients.md"))
    parser.add_argument("--work-dir", default=str(PROJECT / "bench" / ".gradients-work"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="G = 10 only, one seed")
    parser.add_argument("--fresh", action="store_true", help="recompute every result")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="of the main grid")
    parser.add_argument("--headline-epochs", type=int, default=HEADLINE_EPOCHS)
    parser.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_child:
        print(json.dumps(torch_child(json.loads(args.torch_child))))
        return 0
    gaps = (10,) if args.quick else GAPS
    seeds = HEADLINE_SEEDS[:1] if args.quick else HEADLINE_SEEDS
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    plan = Plan(gaps, seeds, args.epochs, args.headline_epochs, not args.skip_torch, work,
                Cache(work / "results", args.fresh), args.jobs)
    data = plan.run()
    (work / "report.json").write_text(json.dumps(data))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name("gradients-curves.png")
    chart = png.name if plot(data, gaps, png) else None
    out.write_text(render(data, gaps, seeds, args.epochs, args.headline_epochs, chart),
                   encoding="utf-8")
    print(f"wrote {out}" + (f" and {png}" if chart else " (no chart: matplotlib is not "
                                                         "installed)"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
