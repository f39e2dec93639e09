"""The long-range corpus generator: its stated entropy is the true source's."""
import importlib.util
import math
import sys

import numpy as np
import pytest

from conftest import CORPORA, cli_runner

spec = importlib.util.spec_from_file_location("longrange", CORPORA / "longrange.py")
longrange = importlib.util.module_from_spec(spec)
sys.modules["longrange"] = longrange          # dataclasses look their module up there
spec.loader.exec_module(longrange)


def token_by_token_nll(source, words):
    """-log p(line) as a language model sees it: one conditional per token, </s> included."""
    fillers = [int(w[1:]) for w in words[1:-1]]
    key = int(words[0][3:])
    p = [1 / source.keys, source.start[fillers[0]]]                      # key, first filler
    p += [(1 - source.stop) * source.transition[a, b] for a, b in zip(fillers, fillers[1:])]
    p += [source.stop * (words[-1] == f"target{key}"), 1.0]              # target, </s>
    return -sum(math.log(x) for x in p)


def test_stated_nll_is_the_sum_of_per_token_conditionals(tmp_path):
    assert longrange.main(["--gap", "4", "--keys", "3", "--fillers", "5", "--train-lines",
                           "200", "--valid-lines", "1", "--test-lines", "1", "--json",
                           "--out-dir", str(tmp_path)]) == 0
    source = longrange.Source.make(3, 4, 5, 0)
    lines = [line.split() for line in (tmp_path / "train.txt").read_text().splitlines()]
    stated = longrange.figures(source, lines)
    assert stated["nll"] == pytest.approx(sum(token_by_token_nll(source, w) for w in lines),
                                          rel=1e-12)
    assert stated["tokens"] == sum(len(w) + 1 for w in lines)
    blind = stated["nll"] + len(lines) * math.log(3)
    assert stated["key_blind_floor_perplexity"] == pytest.approx(
        math.exp(blind / stated["tokens"]))


@pytest.mark.parametrize("gap, keys, fillers", [(5, 10, 20), (20, 4, 6)])
def test_expected_entropy_matches_the_sample_within_sampling_error(gap, keys, fillers):
    source = longrange.Source.make(keys, gap, fillers, source_seed=3)
    sample = source.sample(8000, np.random.default_rng(11))
    nll = np.array([-source.line_logprob(w) for w in sample])
    standard_error = nll.std(ddof=1) / math.sqrt(nll.size)
    assert abs(nll.mean() - source.expected_line_entropy()) < 4 * standard_error
    lengths = np.array([len(w) - 2 for w in sample])                    # fillers per line
    assert abs(lengths.mean() - gap) < 4 * lengths.std(ddof=1) / math.sqrt(lengths.size)
    assert lengths.min() >= 1


def test_targets_follow_keys_and_fillers_ignore_them():
    source = longrange.Source.make(5, 6, 8, source_seed=1)
    for words in source.sample(300, np.random.default_rng(0)):
        assert words[-1] == "target" + words[0][3:]
        assert all(w.startswith("w") for w in words[1:-1])


def test_a_briefly_trained_lstm_beats_the_key_blind_floor_at_a_short_gap(tmp_path):
    """At G = 3 an LSTM learns to carry the key to the target within four epochs: its test
    perplexity falls below what any key-blind model can reach (issue 5)."""
    import json

    from rnnlm_cli.cli import cli
    assert longrange.main(["--gap", "3", "--keys", "4", "--fillers", "6", "--train-lines",
                           "3000", "--valid-lines", "200", "--test-lines", "300",
                           "--out-dir", str(tmp_path)]) == 0
    source = longrange.Source.make(4, 3, 6, 0)
    test_lines = [line.split() for line in (tmp_path / "test.txt").read_text().splitlines()]
    floor = longrange.figures(source, test_lines)["key_blind_floor_perplexity"]
    runner = cli_runner()
    trained = runner.invoke(cli, [
        "train-rnn", str(tmp_path / "train.txt"), "--valid", str(tmp_path / "valid.txt"),
        "--tokenizer", "whitespace", "--hidden", "32", "--epochs", "4", "--optimizer", "adam",
        "--lr", "0.01", "--batch-size", "16", "--bptt", "20", "-o", str(tmp_path / "m.npz")])
    assert trained.exit_code == 0, trained.stderr
    scored = runner.invoke(cli, ["perplexity", str(tmp_path / "m.npz"),
                                 str(tmp_path / "test.txt"), "--json"])
    perplexity = json.loads(scored.stdout.splitlines()[-1])["perplexity"]
    assert perplexity < floor
