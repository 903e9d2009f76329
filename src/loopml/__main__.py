"""``python -m loopml``: the command line, as the ``loopml`` script runs it."""

from loopml.cli import main

if __name__ == "__main__":
    main()
