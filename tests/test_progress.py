"""Progress bars: none off a terminal; on one, an interrupted constructor leaves no
traceback behind (tqdm < 4.68 read ``disable`` in ``__del__`` before it was set)."""
from __future__ import annotations

import gc
import io
import sys

import pytest

from rnnlm_cli import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_there_is_no_tqdm_object(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    made = progress.bar(total=3, desc="x")
    assert isinstance(made, progress.NoBar)
    made.update(1)
    made.set_description("y")
    made.set_postfix_str("z")
    made.clear()
    made.refresh()
    made.close()
    assert sys.stderr.getvalue() == ""


def test_on_a_terminal_the_bar_is_drawn(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    made = progress.bar(total=3, desc="stage", leave=False, mininterval=0)
    made.update(1)
    made.close()
    assert "stage" in terminal.getvalue()


def test_an_interrupt_inside_the_constructor_leaves_nothing_for_del(monkeypatch):
    import tqdm as tqdm_module
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    raised = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm_module.tqdm, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        progress.bar(total=3)
    gc.collect()
    assert raised == []
