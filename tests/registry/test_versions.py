"""Versions: ids are content hashes, numbers count up; lineage and audit record each
registration; and a trained model round-trips through every backend combination."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.train._data import ingest, tabular

from loopml.errors import InputError, NotFound
from loopml.workspace import Workspace

LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


def test_the_same_training_twice_is_the_same_content_under_two_numbers(
    lws: Workspace, tmp_path: Path
) -> None:
    ingest(lws, "tx", tabular(rows=500), tmp_path / "data")
    first = lws.train("twice", "tx", "y", model=LOGISTIC, seed=3).version
    second = lws.train("twice", "tx", "y", model=LOGISTIC, seed=3).version
    assert (first.number, second.number) == (1, 2)
    assert len(first.id) == 64 and all(c in "0123456789abcdef" for c in first.id)
    assert first.run_id != second.run_id
    assert lws.models.get(f"twice@{second.id[:10]}").number == 2
    assert lws.models.get("twice@1").id == first.id
    assert lws.models.get("twice").number == 2
    assert lws.models.get("twice@latest").number == 2
    # Other params, other content, other id.
    third = lws.train("twice", "tx", "y", model=LOGISTIC, params={"C": 0.01}, seed=3).version
    assert third.number == 3 and third.id not in {first.id, second.id}
    with pytest.raises(NotFound, match="has no version '9'"):
        lws.models.get("twice@9")
    with pytest.raises(NotFound, match="does not exist"):
        lws.models.get("never")
    listed = {
        model.name: (latest.number if latest else None, count)
        for model, latest, count in lws.models.ls()
    }
    assert listed == {"twice": (3, 3)}
    # The same seed, data and deterministic estimator fit the same model: the same
    # artifacts, so the same content id (the id is documented as the content hash,
    # "equal artifacts, equal id").
    a = lws.models.load("twice@1").model.steps[-1][1]
    b = lws.models.load("twice@2").model.steps[-1][1]
    assert np.array_equal(a.coef_, b.coef_)  # the fitted models are identical...
    assert first.artifacts == second.artifacts  # ...so their stored bytes should be
    assert first.id == second.id
    assert lws.models.get(f"twice@{first.id[:10]}").number == 2


def test_lineage_and_audit_record_the_registration(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "tx", tabular(rows=400), tmp_path / "data")
    lws.features.split("tx_split", "tx", by="random", test=0.25, seed=1)
    result = lws.train("traced", "tx_split", "y", model=LOGISTIC)
    run_id = result.run.id

    edges = lws.lineage("model:traced@1")
    direct = {edge.source for edge in edges if edge.target == "model:traced@1"}
    assert direct == {"dataset:tx_split@1", f"run:{run_id}"}
    sources = {edge.source for edge in edges}
    assert "dataset:tx@1" in sources  # the split's own input, further up
    # Upstream of the dataset is its own input, not the model made from it.
    assert not any(edge.target == "model:traced@1" for edge in lws.lineage("tx_split"))
    downstream = lws.lineage("dataset:tx_split@1", direction="downstream")
    assert any(edge.target == "model:traced@1" for edge in downstream)

    (registered,) = lws.audit.ls(action="model.register")
    assert registered.target == "model:traced@1"
    assert registered.details["id"] == result.version.id
    assert registered.details["run_id"] == run_id
    starts = [e for e in lws.audit.ls(action="run.start") if e.target == f"run:{run_id}"]
    ends = [e for e in lws.audit.ls(action="run.end") if e.target == f"run:{run_id}"]
    assert len(starts) == 1 and len(ends) == 1
    assert ends[0].details["status"] == "finished"
    assert starts[0].seq < registered.seq < ends[0].seq
    assert lws.audit.verify().ok


def test_a_failed_training_is_audited_as_failed(lws: Workspace, tmp_path: Path) -> None:
    ingest(lws, "tx", tabular(rows=200), tmp_path / "data")
    with pytest.raises(InputError, match="nope"):
        lws.train("broken", "tx", "nope")
    (run,) = lws.runs.ls("broken")
    (end,) = [e for e in lws.audit.ls(action="run.end") if e.target == f"run:{run.id}"]
    assert end.outcome == "failed"
    assert end.details["status"] == "failed"
    assert lws.audit.ls(action="model.register") == []


def test_a_model_round_trips_through_each_backend(ws: Workspace, tmp_path: Path) -> None:
    name = f"rt_{uuid.uuid4().hex[:6]}"
    frame = tabular(rows=300, seed=9)
    ingest(ws, "tx", frame, tmp_path / "data")
    result = ws.train(name, "tx", "y", model=LOGISTIC, params={"C": 0.7})
    version = ws.models.get(f"{name}@1")
    assert version.id == result.version.id
    assert version.params["C"] == 0.7
    predictor = ws.models.load(f"{name}@1")
    table = pa.Table.from_pandas(frame.head(50), preserve_index=False)
    scores = predictor.scores(table)
    assert scores.shape == (50,)
    assert np.all((scores >= 0) & (scores <= 1))
    labels = predictor.predict(table)
    assert set(labels.tolist()) <= {0, 1}
    assert np.array_equal(labels.astype(int), (scores >= 0.5).astype(int))
    run = ws.runs.get(result.run.id)
    assert run.status == "finished" and run.tags["model_version"] == f"{name}@1"
    assert ws.lineage(f"model:{name}@1")
