"""One table from configuration field to command-line flag (``options.FLAGS``), and the
checks every config's ``validate()`` uses, with messages that name the flag."""
from __future__ import annotations

from dataclasses import fields

import pytest

from rnnlm_cli.cli import cli
from rnnlm_cli.decoding import SamplingConfig
from rnnlm_cli.errors import OptionError
from rnnlm_cli.ngram.training import NgramConfig
from rnnlm_cli.options import (check_choice, check_flag, check_number, check_whole, flag,
                               parse_size, physical_memory)
from rnnlm_cli.rnn.config import RnnConfig
from rnnlm_cli.rnn.training import TrainConfig
from rnnlm_cli.tokenizer import TokenizerConfig


@pytest.mark.parametrize("config, command", [
    (RnnConfig, "train-rnn"), (TrainConfig, "train-rnn"), (NgramConfig, "train-ngram"),
    (TokenizerConfig, "train-ngram"), (TokenizerConfig, "train-rnn"),
    (SamplingConfig, "generate"),
])
def test_every_field_has_the_flag_its_command_spells(config, command):
    spelled = {opt for param in cli.commands[command].params for opt in param.opts}
    for field in fields(config):
        assert flag(field.name) in spelled, (config.__name__, field.name)


def test_flags():
    assert flag("hidden") == "--hidden"
    assert flag("clip_norm") == "--clip-norm"
    assert flag("kind") == "--tokenizer"


@pytest.mark.parametrize("check, args, message", [
    (check_choice, ("cell", "cnn", ("rnn", "lstm")), "--cell must be one of rnn, lstm, not 'cnn'"),
    (check_whole, ("hidden", 0, 1), "--hidden must be a whole number at least 1, not 0"),
    (check_whole, ("hidden", True, 1), "--hidden must be a whole number at least 1, not True"),
    (check_whole, ("order", 21, 1, 20), "--order must be a whole number between 1 and 20, not 21"),
    (check_whole, ("epochs", 2.0, 1), "--epochs must be a whole number at least 1, not 2.0"),
    (check_number, ("lr", 0.0, 0.0, None, True), "--lr must be a number above 0, not 0.0"),
    (check_number, ("lr", float("inf"), 0.0, None, True), "--lr must be a number above 0, not inf"),
    (check_number, ("top_p", 1.5, 0.0, 1.0, True), "--top-p must be a number in (0, 1], not 1.5"),
    (check_number, ("dropout", "x", 0.0, 1.0, False, True),
     "--dropout must be a number in [0, 1), not 'x'"),
    (check_number, ("forget_bias", float("nan")),
     "--forget-bias must be a number (finite), not nan"),
    (check_flag, ("lowercase", 1), "--lowercase must be true or false, not 1"),
])
def test_checks_name_the_flag(check, args, message):
    with pytest.raises(OptionError) as error:
        check(*args)
    assert str(error.value) == message


@pytest.mark.parametrize("check, args", [
    (check_choice, ("cell", "lstm", ("rnn", "lstm"))),
    (check_whole, ("order", 20, 1, 20)),
    (check_number, ("top_p", 1.0, 0.0, 1.0, True)),
    (check_number, ("dropout", 0, 0.0, 1.0, False, True)),
    (check_flag, ("lowercase", False)),
])
def test_checks_pass_values_in_range(check, args):
    check(*args)


def test_every_config_validates_its_defaults():
    for config in (RnnConfig(), TrainConfig(), NgramConfig(), TokenizerConfig(),
                   SamplingConfig()):
        config.validate()


@pytest.mark.parametrize("text, size", [
    ("500M", 500 << 20), ("1.5G", 3 << 29), ("800k", 800 << 10), ("1000000", 10**6),
    ("2TB", 2 << 40), (" 64 MB ", 64 << 20), (".5G", 1 << 29)])
def test_sizes_read_as_sort_and_lmplz_read_them(text, size):
    assert parse_size(text) == size


def test_a_share_of_the_memory_is_of_the_machines():
    assert parse_size("50%") == physical_memory() // 2
    with pytest.raises(OptionError, match="less than the least that works, 1M"):
        parse_size("1023K", least=1 << 20)
