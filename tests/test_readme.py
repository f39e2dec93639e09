"""The README's console examples run as written (so they cannot drift from the code)."""
import os
import re
import subprocess
import sys
from pathlib import Path


from conftest import ROOT


def readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    commands = [line[2:] for block in blocks for line in block.splitlines()
                if line.startswith("$ ")]
    # Installing is the reader's job; run what follows it.
    return [re.sub(r"^pip install [^&]*&& ", "", c) for c in commands
            if "pytest" not in c]


def test_readme_has_examples():
    assert len(readme_commands()) >= 4


def test_readme_examples_run(tmp_path):
    os.symlink(ROOT / "corpora", tmp_path / "corpora")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for command in readme_commands():
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stdout.strip() or "train-ngram" in command, command
