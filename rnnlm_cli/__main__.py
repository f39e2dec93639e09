"""Allow ``python -m rnnlm_cli``."""
from rnnlm_cli.cli import main

if __name__ == "__main__":
    main()
