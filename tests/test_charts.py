"""rnnlm_cli.charts: eighth-block bars, the log scale, the rows drawn, and train-rnn's chart
of perplexity per epoch."""
from __future__ import annotations

import math

import pytest

from rnnlm_cli.charts import BLOCKS, bar, log_scale, perplexity_chart, pick_rows

FULL = "█"


def eighths(drawn: str) -> int:
    """The length of a bar in eighths of a cell."""
    return sum(8 if c == FULL else BLOCKS.index(c) for c in drawn)


@pytest.mark.parametrize("value, expected", [
    (0.0, ""), (1.0, FULL * 4), (0.5, FULL * 2), (0.25 + 1 / 32, FULL + "▏"),
    (0.125, "▌"), (-3.0, ""), (7.0, FULL * 4), (math.inf, ""), (math.nan, ""),
])
def test_bar_is_width_cells_at_high_and_empty_at_low(value, expected):
    assert bar(value, 0.0, 1.0, 4) == expected


def test_log_scale_fills_at_the_largest_and_leaves_the_smallest_a_bar():
    low, high = log_scale([10.0, 1000.0, math.inf, math.nan, 0.0])
    assert high == pytest.approx(3.0)
    assert low == pytest.approx(1.0 - 2.0 / 8)                 # an eighth of the span below
    assert log_scale([50.0, 50.0]) == (pytest.approx(math.log10(50) - 1), math.log10(50))
    assert log_scale([math.nan]) == (0.0, 1.0)


def test_pick_rows():
    assert pick_rows(5, 20) == [0, 1, 2, 3, 4]
    assert pick_rows(10, 4) == [0, 3, 6, 9]                   # 0, 3, 6, 9: evenly spaced
    assert pick_rows(10, 4, keep=[4]) == [0, 3, 4, 6, 9]


def rows(chart: str):
    """The data rows: (marked, epoch, train, valid, train bar, valid bar)."""
    found = []
    for line in chart.splitlines()[2:]:
        mark, epoch, train, valid = line[0], line[1:6], line[6:17], line[17:28]
        train_bar, valid_bar = line[30:50].rstrip(), line[52:]
        found.append((mark == "*", int(epoch), float(train), float(valid), train_bar,
                      valid_bar))
    return found


def test_a_decreasing_series_draws_shorter_bars_each_epoch():
    train = [400.0, 200.0, 100.0, 50.0]
    valid = [300.0, 180.0, 120.0, 110.0]
    chart = perplexity_chart([1, 2, 3, 4], train, valid, best=4)
    lines = chart.splitlines()
    assert lines[0] == ("# perplexity per epoch (* the best validation); bars on a log scale, "
                        "empty at 38.56, full at 400")   # 50 / 8^(1/8): log(400/50) / 8 below 50
    assert lines[1].split() == ["epoch", "train", "valid", "train", "valid"]
    drawn = rows(chart)
    assert [r[1] for r in drawn] == [1, 2, 3, 4]
    assert [r[2] for r in drawn] == train and [r[3] for r in drawn] == valid
    assert [r[0] for r in drawn] == [False, False, False, True]
    train_lengths = [eighths(r[4]) for r in drawn]
    valid_lengths = [eighths(r[5]) for r in drawn]
    assert train_lengths[0] == 20 * 8                            # the largest value: full
    assert train_lengths == sorted(train_lengths, reverse=True)
    assert len(set(train_lengths)) == 4
    assert valid_lengths == sorted(valid_lengths, reverse=True)
    # One scale for both: equal perplexities draw equal bars. Halving is 1/3.375 of the
    # span (log 2 / log(400 / 38.55)): 160 eighths * 0.2963 = 47.4, so 47 eighths shorter.
    assert train_lengths[0] - train_lengths[1] == 47
    assert train_lengths[3] == round(160 * (1 / 9))             # the smallest: an eighth of 9/8


def test_one_epoch_and_a_non_finite_perplexity():
    chart = perplexity_chart([1], [120.0], [math.inf], best=1)
    (marked, epoch, train, valid, train_bar, valid_bar), = rows(chart)
    assert marked and epoch == 1 and train == 120.0 and valid == math.inf
    assert train_bar == FULL * 20 and valid_bar == ""


def test_many_epochs_are_resampled_keeping_first_last_and_best():
    epochs = list(range(1, 41))
    train = [1000.0 / e for e in epochs]
    valid = [100.0 + abs(e - 10) for e in epochs]                # best at epoch 10
    chart = perplexity_chart(epochs, train, valid, best=10, most=5)
    assert chart.splitlines()[0].endswith("; 6 of 40 epochs shown")
    # Rows 0, 9.75, 19.5, 29.25, 39 of 0..39, rounded (half to even), and the best's, 9.
    assert [r[1] for r in rows(chart)] == [1, 10, 11, 21, 30, 40]
    assert [r[1] for r in rows(chart) if r[0]] == [10]
