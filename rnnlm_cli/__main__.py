"""Allow ``python -m rnnlm_cli``."""
from rnnlm_cli.cli import cli

if __name__ == "__main__":
    cli(prog_name="rnnlm")
