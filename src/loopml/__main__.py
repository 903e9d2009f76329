"""``python -m loopml``: the command line, as the ``loopml`` script runs it."""

from loopml.cli import run

if __name__ == "__main__":
    run()
