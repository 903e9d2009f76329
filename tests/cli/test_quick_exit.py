"""The ``loopml`` script ends its process right after the command (``loopml.cli.run``):
exit handlers run, output arrives whole, exit codes hold, and a running thread is
never cut short."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_program(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``loopml.cli.run`` in a fresh interpreter, its ``main`` replaced by ``body``."""
    program = textwrap.dedent(
        """
        import atexit, sys, threading, time
        from pathlib import Path
        import loopml.cli as cli

        out = Path(sys.argv[1])

        def main(argv=None):
        {body}

        cli.main = main
        cli.run()
        raise AssertionError("run() returned")
        """
    ).format(body=textwrap.indent(textwrap.dedent(body), "    "))
    return subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_handlers_run_and_all_output_arrives(tmp_path: Path) -> None:
    proc = run_program(
        """
        atexit.register(lambda: (out / "handler-ran").write_text("yes"))
        # Far more than a pipe buffer, half of it without a final newline.
        sys.stdout.write("x" * 300_000 + "\\n" + "y" * 300_000)
        sys.stderr.write("to stderr")
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "x" * 300_000 + "\n" + "y" * 300_000
    assert proc.stderr == "to stderr"
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_the_exit_code_of_the_command_is_kept(tmp_path: Path) -> None:
    proc = run_program("sys.exit(3)", tmp_path)
    assert proc.returncode == 3
    # A message as the exit status is printed and exits 1, the regular way.
    proc = run_program("sys.exit('stopped: a message')", tmp_path)
    assert proc.returncode == 1
    assert "stopped: a message" in proc.stderr


def test_a_running_thread_finishes_before_the_process_ends(tmp_path: Path) -> None:
    proc = run_program(
        """
        def late():
            time.sleep(0.5)
            (out / "thread-done").write_text("done")

        threading.Thread(target=late).start()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "thread-done").read_text() == "done"


def test_the_installed_script_and_python_m_use_it() -> None:
    script = Path(sys.executable).parent / "loopml"
    assert "from loopml.cli import run" in script.read_text()
    main_module = Path(__file__).resolve().parents[2] / "src" / "loopml" / "__main__.py"
    assert "run()" in main_module.read_text()
