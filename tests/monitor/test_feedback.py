"""Feedback: labels joined to logged predictions by request id or by an input column;
unmatched labels are counted and shown, never a crash; the latest label of a key wins;
``joined`` hands predictions with their labels to the decay computation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from tests.train._data import ingest, tabular

import loopml
from loopml.errors import InputError, NotFound
from loopml.monitor.feedback import joined, record_feedback
from loopml.serve.prediction_log import PredictionLog
from loopml.workspace import Workspace


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Workspace]:
    """Model ``m`` registered, and 30 logged one-row requests req-0..req-29 whose input
    ``tx_id`` is 1000 + i and whose score is i / 100; a shadow copy of req-0 too."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), loopml.open(tmp_path / "ws") as ws:
        ingest(ws, "d", tabular(rows=200), tmp_path / "data")
        ws.train("m", "d", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
        log = PredictionLog(ws.ctx, "m", flush_rows=10, flush_seconds=60)
        for i in range(30):
            rows = pa.table({"tx_id": [1000 + i], "x1": [float(i)]})
            log.log(f"req-{i}", "m", 1, rows, [i / 100], 2.0)
        log.log("req-0", "m", 2, pa.table({"tx_id": [1000], "x1": [0.0]}), [0.9], 2.0, True)
        log.close()
        yield ws


def _csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_labels_join_by_request_id_and_unmatched_are_reported(
    served: Workspace, tmp_path: Path
) -> None:
    lines = ["request_id,label"] + [f"req-{i},{i % 2}" for i in range(20)]
    lines += ["ghost-1,1", "ghost-2,0"]
    result = record_feedback(served.ctx, "m", _csv(tmp_path, "l.csv", "\n".join(lines)))
    assert (result.rows, result.matched, result.unmatched) == (22, 20, 2)
    assert sorted(result.unmatched_keys) == ["ghost-1", "ghost-2"]
    assert result.stored.startswith("feedback/m/") and result.stored.endswith(".parquet")
    root = Path(served.ctx.artifacts.root)  # type: ignore[attr-defined]
    assert (root / result.stored).is_file()
    table = joined(served.ctx, "m")
    # Served predictions only (the shadow copy of req-0 is left out), oldest first.
    assert table["request_id"].to_pylist() == [f"req-{i}" for i in range(20)]
    assert table["label"].to_pylist() == [i % 2 for i in range(20)]
    assert table["score"].to_pylist() == [i / 100 for i in range(20)]
    assert "label_received_at" in table.column_names
    events = served.audit.ls(action="model.feedback", target="model:m")
    assert events[0].details["matched"] == 20 and events[0].details["unmatched"] == 2


def test_labels_join_by_an_input_column_and_the_latest_label_wins(
    served: Workspace, tmp_path: Path
) -> None:
    # tx_id is read from CSV as a number and logged as a number; a repeated key keeps
    # its last row; a later file overrides an earlier one.
    first = record_feedback(
        served.ctx,
        "m",
        _csv(tmp_path, "a.csv", "tx_id,fraud\n1003,0\n1004,0\n1003,1\n,1\n"),
        key="tx_id",
        label="fraud",
    )
    assert (first.rows, first.matched, first.duplicates, first.missing_keys) == (2, 2, 1, 1)
    record_feedback(
        served.ctx,
        "m",
        _csv(tmp_path, "b.csv", "tx_id,fraud\n1004,1\n"),
        key="tx_id",
        label="fraud",
    )
    table = joined(served.ctx, "m")
    assert dict(zip(table["tx_id"].to_pylist(), table["label"].to_pylist(), strict=True)) == {
        1003: 1,
        1004: 1,
    }


def test_bad_labels_are_clear_errors(served: Workspace, tmp_path: Path) -> None:
    labels = _csv(tmp_path, "l.csv", "request_id,outcome\nreq-1,1\n")
    with pytest.raises(InputError, match=r"no column 'label'.*--label"):
        record_feedback(served.ctx, "m", labels)
    with pytest.raises(InputError, match="has no column 'outcome' to join on"):
        record_feedback(served.ctx, "m", labels, key="outcome", label="request_id")
    with pytest.raises(NotFound, match="does not exist"):
        record_feedback(served.ctx, "nobody", labels, label="outcome")
    with pytest.raises(NotFound, match="labels file"):
        record_feedback(served.ctx, "m", tmp_path / "missing.csv")
    assert joined(served.ctx, "nobody").num_rows == 0


def test_the_cli_fails_only_when_no_label_matches(
    served: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loopml.cli import main

    monkeypatch.setenv("LOOPML_WORKSPACE", str(served.settings.root))
    some = _csv(tmp_path, "some.csv", "request_id,label\nreq-3,1\nnope,0\n")
    main(["feedback", "m", "--data", str(some), "--json"])
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    assert (report["matched"], report["unmatched"], report["unmatched_keys"]) == (1, 1, ["nope"])
    assert "1 label(s) match no logged prediction of m by request_id: nope" in printed.err
    none = _csv(tmp_path, "none.csv", "request_id,label\nnope-1,0\nnope-2,1\n")
    with pytest.raises(SystemExit) as exited:
        main(["feedback", "m", "--data", str(none)])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert "0 matched, 2 unmatched" in printed.out
    assert "error: no label matches a logged prediction of m" in printed.err
    assert "Traceback" not in printed.err
