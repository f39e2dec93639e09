"""Charts for a terminal, drawn in Unicode eighth blocks: one horizontal bar per row.

``bar`` draws one bar on a given scale; ``rnnlm gradients`` puts one beside each distance
of its table. ``perplexity_chart`` is the one ``train-rnn`` prints at the end of a run on
a terminal: a row per epoch, the training and validation perplexities side by side.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

BLOCKS = " ▏▎▍▌▋▊▉█"   # 0 to 8 eighths of a cell


def bar(value: float, low: float, high: float, width: int) -> str:
    """A bar of eighth blocks, ``width`` cells long at ``high``, empty at ``low`` (clamped
    to that range); empty for a value that is not finite."""
    if not math.isfinite(value):
        return ""
    fraction = 1.0 if high <= low else (value - low) / (high - low)
    eighths = int(round(min(max(fraction, 0.0), 1.0) * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


def log_scale(values: Sequence[float]) -> Tuple[float, float]:
    """``(low, high)`` in log10 for bars of ``values``: full at the largest, empty an
    eighth of the span below the smallest, so the smallest still shows a bar (a decade
    below it if all are equal). Values that are not finite and positive are left out."""
    logs = [math.log10(v) for v in values if math.isfinite(v) and v > 0]
    if not logs:
        return 0.0, 1.0
    low, high = min(logs), max(logs)
    span = high - low if high > low else 8.0
    return low - span / 8, high


def pick_rows(count: int, most: int, keep: Sequence[int] = ()) -> List[int]:
    """Indices of the rows to draw out of ``count``: all of them if there are at most
    ``most``; else ``most`` evenly spaced ones (the first and last among them) and the
    indices in ``keep``."""
    if count <= most:
        return list(range(count))
    spaced = {round(i * (count - 1) / (most - 1)) for i in range(most)}
    return sorted(spaced | {k for k in keep if 0 <= k < count})


def perplexity_chart(epochs: Sequence[int], train: Sequence[float], valid: Sequence[float],
                     best: Optional[int] = None, width: int = 20, most: int = 20) -> str:
    """Training and validation perplexity per epoch as a table with two bars a row, on
    one log scale (the header says where bars start and end); ``best``, the epoch the
    model keeps, is starred. Past ``most`` epochs, ``most`` evenly spaced ones are drawn,
    with the first, the last and the best (the header says so)."""
    low, high = log_scale([*train, *valid])
    where = [i for i, epoch in enumerate(epochs) if epoch == best]
    rows = pick_rows(len(epochs), most, where)
    shown = "" if len(rows) == len(epochs) else f"; {len(rows)} of {len(epochs)} epochs shown"
    lines = [f"# perplexity per epoch (* the best validation); bars on a log scale, empty "
             f"at {10 ** low:.4g}, full at {10 ** high:.4g}{shown}",
             f"{'epoch':>6}  {'train':>9}  {'valid':>9}  {'train':<{width}}  valid"]
    for i in rows:
        mark = "*" if epochs[i] == best else " "
        bars = [bar(math.log10(v) if v > 0 else math.nan, low, high, width)
                for v in (train[i], valid[i])]
        lines.append(f"{mark}{epochs[i]:>5}  {train[i]:>9.2f}  {valid[i]:>9.2f}  "
                     f"{bars[0]:<{width}}  {bars[1]}".rstrip())
    return "\n".join(lines)
