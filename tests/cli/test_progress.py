"""On a terminal, ingest draws a progress bar with the rows read and the rate."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

LOOPML = str(Path(sys.executable).with_name("loopml"))


def _run_in_terminal(argv: list[str]) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with a terminal for stdout and stderr
        os.execv(argv[0], argv)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the terminal closes when the child exits
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_ingest_shows_progress_on_a_terminal_and_not_in_a_pipe(tmp_path: Path) -> None:
    csv = tmp_path / "big.csv"
    rows = 400_000
    with csv.open("w") as handle:
        handle.write("id,v\n")
        handle.writelines(f"{i},{i % 97}\n" for i in range(rows))
    code, screen = _run_in_terminal([LOOPML, "-w", str(tmp_path / "ws"), "ingest", "d", str(csv)])
    assert code == 0, screen
    assert "ingesting d" in screen
    assert f"{rows:,} rows" in screen
    assert "rows/s" in screen or "0:00" in screen
    piped = subprocess.run(
        [LOOPML, "-w", str(tmp_path / "ws"), "ingest", "d", str(csv)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ingesting d" not in piped.stderr + piped.stdout
