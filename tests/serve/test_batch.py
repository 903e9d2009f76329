"""Batch scoring: a dataset version streamed through a model, in batches, into a new
version with lineage and an audit event; wrong input is refused before anything is
written; a crash part way leaves no version; the CLI and the Ray executor agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.train._data import ingest, tabular

import loopml
from loopml.errors import InputError, NotFound
from loopml.serve import batch
from loopml.workspace import Workspace

ROWS = 2000
LOGISTIC = "sklearn:sklearn.linear_model.LogisticRegression"


# The tests share one module workspace: on one xdist worker, it is made once.
pytestmark = pytest.mark.xdist_group("batch")


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Model ``m`` (binary, x1, x2, cat) in two versions, champion at 1; dataset ``big``
    of ROWS rows; and ``wrong``, whose x1 is text and which lacks ``cat``."""
    from threadpoolctl import threadpool_limits

    folder = tmp_path_factory.mktemp("batch")
    with threadpool_limits(limits=1), loopml.open(folder / "ws") as ws:
        ingest(ws, "d", tabular(rows=300), folder)
        for c in (0.01, 1.0):
            ws.train("m", "d", "y", model=LOGISTIC, params={"C": c})
        ws.models.set_alias("m", "champion", 1)
        ingest(ws, "big", tabular(rows=ROWS, seed=9), folder)
        wrong = tabular(rows=50, seed=2).drop(columns=["cat"])
        wrong["x1"] = wrong["x1"].map(lambda v: f"v{v:.2f}")
        ingest(ws, "wrong", wrong, folder)
        yield ws


def _staging(ws: Workspace) -> list[Path]:
    return list((Path(ws.ctx.artifacts.root) / "staging").iterdir())  # type: ignore[attr-defined]


def test_a_version_is_streamed_in_batches_and_every_row_is_scored(scoring: Workspace) -> None:
    result = scoring.predict("m@champion", data="big", out="big_scored", batch_rows=300)
    # 2000 rows in batches of 300: seven batches, never the whole dataset at once.
    assert (result.rows, result.batches, result.executor) == (ROWS, 7, "local")
    version = result.version
    assert version.ref == "big_scored@1" and version.row_count == ROWS
    assert result.model.ref == "m@1" and result.input.ref == "big@1"
    source = scoring.data.read("big")
    out = scoring.data.read(version)
    assert out.column_names == [*source.column_names, "prediction", "score"]
    # Same rows, same order, and what the model predicts on the whole table at once.
    assert out["uid"].to_pylist() == source["uid"].to_pylist()
    predictor = scoring.models.load("m@1")
    assert np.allclose(out["score"].to_numpy(), predictor.scores(source))
    assert out["prediction"].to_pylist() == list(predictor.predict(source))
    # Lineage: the input version and the model version made it; the audit says so.
    upstream = {(e.source, e.target) for e in scoring.lineage("big_scored@1")}
    assert ("dataset:big@1", "dataset:big_scored@1") in upstream
    assert ("model:m@1", "dataset:big_scored@1") in upstream
    events = scoring.audit.ls(action="dataset.predict", target="dataset:big_scored")
    assert [e.outcome for e in events] == ["ok"]
    assert version.meta["predict"]["model"] == {"ref": "m@1", "id": result.model.id}
    report = result.to_dict()
    assert report["output"] == "big_scored@1" and report["rows"] == ROWS
    assert set(report["seconds"]) == {"load", "score", "total"}


def test_kept_columns_and_clashing_or_missing_ones(scoring: Workspace) -> None:
    result = scoring.predict("m@2", data="big", out="slim", keep=["uid"], batch_rows=5000)
    assert [c.name for c in result.version.schema] == ["uid", "prediction", "score"]
    assert result.batches == 1
    scoring.predict("m@2", data="big", out="scored_once")
    with pytest.raises(InputError, match=r"already has column.*prediction, score"):
        scoring.predict("m@2", data="scored_once", out="twice")
    again = scoring.predict("m@2", data="scored_once", out="twice", keep=["uid", "x1", "x2", "cat"])
    assert again.rows == ROWS
    with pytest.raises(InputError, match=r"--keep names column.*nope"):
        scoring.predict("m", data="big", out="slim", keep=["nope"])
    with pytest.raises(InputError, match="unknown executor"):
        scoring.predict("m", data="big", out="slim", executor="spark")
    with pytest.raises(NotFound):
        scoring.predict("m@9", data="big", out="slim")


def test_input_off_the_signature_is_refused_before_anything_is_written(
    scoring: Workspace,
) -> None:
    with pytest.raises(InputError) as caught:
        scoring.predict("m", data="wrong", out="never")
    message = str(caught.value)
    assert "column 'x1' is string, not a number" in message
    assert "column 'cat'" in message and "is missing" in message
    with pytest.raises(NotFound):
        scoring.data.get("never")
    failed = scoring.audit.ls(action="dataset.predict", target="dataset:never")
    assert [e.outcome for e in failed] == ["failed"]
    assert not _staging(scoring)


def test_a_crash_part_way_leaves_no_version(
    scoring: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = batch.score_batch

    def crashing(*args: object, **kwargs: object) -> pa.RecordBatch:
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("the machine ran out of memory on batch 3")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "score_batch", crashing)
    with pytest.raises(MemoryError):
        scoring.predict("m", data="big", out="half", batch_rows=200)
    assert calls["n"] == 3
    with pytest.raises(NotFound):
        scoring.data.get("half")
    assert not _staging(scoring)
    failed = scoring.audit.ls(action="dataset.predict", target="dataset:half")
    assert [e.outcome for e in failed] == ["failed"]


def test_a_multiclass_model_gets_each_class_probability(scoring: Workspace, tmp_path: Path) -> None:
    ingest(scoring, "colours", tabular(rows=300, seed=3, task="multiclass"), tmp_path)
    scoring.train("mc", "colours", "y", model="sklearn:sklearn.linear_model.LogisticRegression")
    out = scoring.data.read(scoring.predict("mc", data="colours", out="colours_scored").version)
    classes = ["blue", "green", "red"]
    probabilities = np.column_stack([out[f"proba_{c}"].to_numpy() for c in classes])
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    best = probabilities.argmax(axis=1)
    assert out["prediction"].to_pylist() == [classes[i] for i in best]
    assert np.allclose(out["score"].to_numpy(), probabilities.max(axis=1))


def test_a_regression_model_gets_its_value_as_the_prediction(
    scoring: Workspace, tmp_path: Path
) -> None:
    ingest(scoring, "amounts", tabular(rows=300, seed=4, task="regression"), tmp_path)
    scoring.train("reg", "amounts", "y", model="sklearn:sklearn.linear_model.Ridge")
    result = scoring.predict("reg", data="amounts", out="amounts_scored", keep=["uid"])
    out = scoring.data.read(result.version)
    assert out.column_names == ["uid", "prediction"]
    expected = scoring.models.load("reg").predict(scoring.data.read("amounts"))
    assert np.allclose(out["prediction"].to_numpy(), expected)


def test_the_cli_prints_the_version_rows_and_timings(
    scoring: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from loopml.cli import main

    monkeypatch.setenv("LOOPML_WORKSPACE", str(scoring.settings.root))
    main(["predict", "m@champion", "--data", "big@1", "--out", "cli_scored",
          "--batch-rows", "500", "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert (report["output"], report["rows"], report["batches"]) == ("cli_scored@1", ROWS, 4)
    assert report["model"] == "m@1" and report["seconds"]["total"] > 0
    with pytest.raises(SystemExit) as exited:
        main(["predict", "m", "--data", "wrong", "--out", "cli_never"])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("error: the input does not match m@2's signature")
    assert len(printed.err.strip().splitlines()) == 1 and "Traceback" not in printed.err


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_the_ray_executor_scores_the_same_rows(scoring: Workspace) -> None:
    local = scoring.data.read(scoring.predict("m@2", data="big", out="by_local").version)
    result = scoring.predict(
        "m@2", data="big", out="by_ray", executor="ray", workers=2, batch_rows=400
    )
    assert (result.executor, result.rows, result.batches) == ("ray", ROWS, 5)
    remote = scoring.data.read(result.version)
    assert remote["uid"].to_pylist() == local["uid"].to_pylist()
    assert pc.all(pc.equal(remote["prediction"], local["prediction"])).as_py()
    assert np.allclose(remote["score"].to_numpy(), local["score"].to_numpy())
    upstream = {e.source for e in scoring.lineage(result.version.ref)}
    assert {"dataset:big@1", "model:m@2"} <= upstream
