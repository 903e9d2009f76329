"""The ``loopml`` command line: thin Typer commands over the SDK.

Errors from loopml print one line on stderr and exit with the error's code
(2 for the user's mistakes, 3 access, 4 store); set ``LOOPML_DEBUG=1`` for tracebacks.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Annotated

import typer

from loopml.cli import alerts, audit, data, features, model, schedule
from loopml.cli._common import invocation
from loopml.cli.demo import demo
from loopml.cli.evaluate import evaluate, promote, rollback
from loopml.cli.feedback import feedback
from loopml.cli.ingest import ingest
from loopml.cli.monitor import monitor
from loopml.cli.pipeline import pipeline_app, retrain, run, watch
from loopml.cli.predict import predict
from loopml.cli.schedule import scheduler
from loopml.cli.serve import serve
from loopml.cli.split import split
from loopml.cli.train import runs_app, train
from loopml.cli.transform import lineage, transform
from loopml.cli.workspace import fsck, gc, init

app = typer.Typer(
    name="loopml",
    help="loopml: ingest, features, train, evaluate, serve, monitor, retrain; governed, fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help text: Rich markup would eat the brackets of NAME[@VERSION].
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", "-w", help="Workspace folder or metadata URL, for every command."
        ),
    ] = None,
) -> None:
    """loopml: ingest, features, train, evaluate, serve, monitor and retrain; governed and fast."""
    # `loopml -w WS data ls` and `loopml data ls -w WS` mean the same: the global
    # option travels to every command through the variable they all read.
    if workspace:
        os.environ["LOOPML_WORKSPACE"] = workspace
        invocation.workspace_flag = workspace


app.command()(init)
app.command()(ingest)
app.command()(transform)
app.command()(lineage)
app.command()(split)
app.command()(fsck)
app.command()(gc)
app.command()(demo)
app.command()(train)
app.command()(evaluate)
app.command()(promote)
app.command()(rollback)
app.command()(run)
app.command()(retrain)
app.command()(watch)
app.command()(predict)
app.command()(feedback)
app.command()(scheduler)
app.command()(serve)
app.command()(monitor)
app.add_typer(data.app, name="data")
app.add_typer(audit.app, name="audit")
app.add_typer(features.app, name="features")
app.add_typer(runs_app, name="runs")
app.add_typer(model.app, name="model")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(schedule.app, name="schedule")
app.add_typer(alerts.app, name="alerts")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map loopml errors to one line and their exit code."""
    from loopml.errors import LoopMLError

    try:
        # Without standalone mode, Typer returns a command's exit code instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except LoopMLError as exc:
        _fail(f"error: {exc}", exc.exit_code, exc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130, None)
    except typer.TyperException as exc:
        # Usage errors (unknown command or option, bad value) know how to show themselves.
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        _fail("interrupted", 130, None)
    except Exception as exc:  # a bug, not the user's mistake: say so, briefly
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (set LOOPML_DEBUG=1 for details)", 1, exc
        )

    if isinstance(code, int) and code:
        sys.exit(code)


def run() -> None:
    """The ``loopml`` script: ``main``, then a quick end to the process.

    Tearing the interpreter down module by module (DuckDB, Arrow, NumPy's thread pools)
    takes a fifth of a second after every command, longer than many commands. Once the
    command is done, with its exit handlers run and its output flushed, the process ends
    at once, as multiprocessing's children do. Nothing is cut short: when another
    non-daemon thread is still running, or the exit status is not a number, the process
    ends the regular way. Files loopml writes are closed, and committed, before that.
    """
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if not isinstance(code, int) or any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: nothing more can reach the reader anyway
        pass
    os._exit(code)


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if exc is not None and os.environ.get("LOOPML_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    print(message, file=sys.stderr)
    sys.exit(code)
