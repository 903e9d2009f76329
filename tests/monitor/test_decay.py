"""Performance decay from joined labels: the served version's metric on the labelled
predictions (checked against scikit-learn on the same rows), compared with what the
version measured at training, stored as a ``decay`` time series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score
from tests.train._data import ingest, tabular

import loopml
from loopml.errors import InputError
from loopml.monitor.decay import THRESHOLD, check_decay
from loopml.monitor.feedback import record_feedback
from loopml.serve.prediction_log import PredictionLog
from loopml.workspace import Workspace

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"
PER_REQUEST = 10


@dataclass
class Served:
    """A workspace with model ``m``, and ``frame``'s rows logged as its predictions
    (``score`` is what the version answered for each row)."""

    ws: Workspace
    frame: pd.DataFrame
    folder: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), loopml.open(tmp_path / "ws") as ws:
        ingest(ws, "d", tabular(rows=600, seed=3), tmp_path / "data")
        ws.train("m", "d", "y", model=LOGISTIC, exclude=["uid", "ts"])
        frame = tabular(rows=400, seed=11).reset_index(drop=True)
        predictor = ws.models.load("m@1")
        log = PredictionLog(ws.ctx, "m", flush_rows=100, flush_seconds=60)
        scores = []
        for start in range(0, len(frame), PER_REQUEST):
            part = frame.iloc[start : start + PER_REQUEST]
            # The uid travels with the inputs, as a transaction id would: labels join on it.
            rows = pa.Table.from_pandas(part[["uid", *predictor.features]], preserve_index=False)
            answered = [float(s) for s in predictor.scores(rows)]
            scores += answered
            outputs = [{"prediction": int(s >= 0.5), "score": s} for s in answered]
            log.log(f"req-{start}", "m", 1, rows, outputs, 1.0)
        log.close()
        frame["score"] = scores
        yield Served(ws, frame, tmp_path)


def send_labels(served: Served, frame: pd.DataFrame, labels: np.ndarray) -> None:
    table = pa.table({"uid": frame["uid"].tolist(), "outcome": [int(v) for v in labels]})
    record_feedback(served.ws.ctx, "m", table, key="uid", label="outcome")


def test_the_metric_is_scikit_learns_on_the_labelled_rows(served: Served) -> None:
    labelled = served.frame.iloc[:250]  # labels for some predictions only
    send_labels(served, labelled, labelled["y"].to_numpy())
    ghost = pd.DataFrame({"uid": ["ghost-1", "ghost-2"]})
    send_labels(served, ghost, np.array([1, 0]))  # matching nothing: ignored

    result = check_decay(served.ws.ctx, "m@1", threshold=0.1)

    y, scores = labelled["y"].to_numpy(), labelled["score"].to_numpy()
    expected = roc_auc_score(y, scores)
    baseline = served.ws.models.get("m@1").metrics["roc_auc"]
    stats = result.statistics
    assert (result.kind, result.model, result.number, result.rows) == ("decay", "m", 1, 250)
    assert stats["metric"] == "roc_auc" and stats["value"] == pytest.approx(expected, abs=1e-6)
    assert stats["baseline"] == baseline
    assert stats["drop"] == pytest.approx(baseline - expected, abs=1e-6)
    assert stats["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, scores >= 0.5))
    # The same kind of data as at training: no decay beyond 0.1.
    assert abs(stats["drop"]) < 0.1
    assert result.flagged is False and stats["verdict"] == "ok"
    assert result.source == "feedback:250 labelled predictions"
    # Over time: the window cut in equal slices, oldest first, covering every row.
    points = stats["over_time"]
    assert len(points) == 5 and sum(p["rows"] for p in points) == 250
    first_slice = slice(0, 50)
    assert points[0]["roc_auc"] == pytest.approx(roc_auc_score(y[first_slice], scores[first_slice]))
    assert result.window_start is not None and result.window_start <= result.window_end


def test_a_metric_that_fell_beyond_the_threshold_is_flagged_and_stored(served: Served) -> None:
    frame = served.frame
    # The world turned: what the model calls likely now rarely happens.
    flipped = 1 - frame["y"].to_numpy()
    send_labels(served, frame, flipped)

    result = check_decay(served.ws.ctx, "m")

    expected = roc_auc_score(flipped, frame["score"].to_numpy())
    baseline = served.ws.models.get("m@1").metrics["roc_auc"]
    assert result.statistics["value"] == pytest.approx(expected, abs=1e-6)
    assert baseline - expected > THRESHOLD
    assert result.flagged and result.statistics["verdict"] == "decayed"
    (stored,) = served.ws.monitor.history("m", kind="decay")
    assert stored.id == result.id and stored.flagged and stored.rows == 400
    assert stored.statistics["value"] == pytest.approx(expected, abs=1e-6)
    assert served.ws.monitor.history("m", kind="drift") == []
    event = served.ws.audit.ls(action="monitor.decay")[0]
    assert event.details["result"] == result.id and event.details["flagged"] is True


def test_the_threshold_decides_and_store_false_stores_nothing(served: Served) -> None:
    frame = served.frame
    # A quarter of the labels flipped: worse, by an amount scikit-learn measures.
    labels = frame["y"].to_numpy().copy()
    labels[::4] = 1 - labels[::4]
    send_labels(served, frame, labels)
    drop = served.ws.models.get("m@1").metrics["roc_auc"] - roc_auc_score(labels, frame["score"])
    assert drop > 0.02

    loose = check_decay(served.ws.ctx, "m", threshold=drop + 0.01, store=False)
    strict = check_decay(served.ws.ctx, "m", threshold=drop - 0.01, store=False)

    assert loose.statistics["drop"] == pytest.approx(drop, abs=1e-6)
    assert not loose.flagged and strict.flagged
    assert served.ws.monitor.history("m", kind="decay") == []


def test_the_window_by_rows_by_time_and_other_metrics(served: Served) -> None:
    frame = served.frame
    send_labels(served, frame, frame["y"].to_numpy())

    newest = check_decay(served.ws.ctx, "m", last_rows=100, metric="accuracy", store=False)

    tail = frame.iloc[-100:]
    assert newest.rows == 100 and newest.statistics["metric"] == "accuracy"
    assert newest.statistics["value"] == pytest.approx(
        accuracy_score(tail["y"], tail["score"] >= 0.5)
    )
    assert newest.statistics["baseline"] == served.ws.models.get("m@1").metrics["accuracy"]
    with pytest.raises(InputError, match="no metric 'rmse'"):
        check_decay(served.ws.ctx, "m", metric="rmse", store=False)
    with pytest.raises(InputError, match="no labelled predictions"):
        check_decay(served.ws.ctx, "m", since=datetime.now(UTC), store=False)


def test_without_labels_there_is_nothing_to_measure(served: Served) -> None:
    with pytest.raises(InputError, match="no labelled predictions of m@1") as caught:
        check_decay(served.ws.ctx, "m")
    assert "loopml feedback" in (caught.value.hint or "")

    # Labels that match no prediction are no better.
    send_labels(served, pd.DataFrame({"uid": ["ghost-1", "ghost-2"]}), np.array([0, 1]))
    with pytest.raises(InputError, match="no labelled predictions"):
        check_decay(served.ws.ctx, "m")
    assert served.ws.monitor.history("m", kind="decay") == []


def test_labels_of_another_versions_predictions_do_not_count(served: Served) -> None:
    from threadpoolctl import threadpool_limits

    send_labels(served, served.frame, served.frame["y"].to_numpy())
    with threadpool_limits(limits=1):
        served.ws.train("m", "d", "y", model=LOGISTIC, exclude=["uid", "ts", "x2"])

    # Every logged prediction was made by m@1: m@2 has none labelled.
    with pytest.raises(InputError, match="no labelled predictions of m@2"):
        check_decay(served.ws.ctx, "m@2")
    assert check_decay(served.ws.ctx, "m@1", store=False).rows == 400


def test_labels_that_are_not_classes_of_the_model_are_refused(served: Served) -> None:
    frame = served.frame.iloc[:20]
    table = pa.table({"uid": frame["uid"].tolist(), "outcome": ["fraud"] * 20})
    record_feedback(served.ws.ctx, "m", table, key="uid", label="outcome")
    with pytest.raises(InputError, match="'fraud' are not classes of m@1"):
        check_decay(served.ws.ctx, "m")
