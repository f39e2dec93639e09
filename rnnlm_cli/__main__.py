"""The ``rnnlm`` console script and ``python -m rnnlm_cli``."""
import sys


def run() -> None:
    """Load the command line and run it. A Ctrl-C that comes while Python is still loading
    it (before the commands handle interrupts themselves) is one line, not a traceback:
    nothing has been written by then."""
    try:
        from rnnlm_cli.process import handle_interrupts
        handle_interrupts()       # (SIGTERM too; and a burst of them is one interrupt)
        from rnnlm_cli.cli import main
        main()
    except KeyboardInterrupt as stop:
        sys.stderr.write("Error: interrupted; no output file was written\n")
        sys.exit(getattr(stop, "exit_code", 130))


if __name__ == "__main__":
    run()
