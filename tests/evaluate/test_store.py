"""Evaluating a version: which rows are scored, the figures, and how the result is kept.

Every expected figure is computed here with scikit-learn or fairlearn on rows chosen
without asking loopml (``holdout_index`` rebuilds the training holdout by hand).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as sk
from tests.train._data import holdout_rows, ingest, tabular

from loopml.errors import InputError, IntegrityError, NotFound
from loopml.workspace import Workspace

from .conftest import LOGISTIC, Trained, holdout_index
from .test_report import assert_self_contained, parse


def _holdout(trained: Trained, seed: int = 0) -> pa.Table:
    table = trained.ws.data.read("d@1")
    assert table["uid"].to_pylist() == trained.frame["uid"].tolist()  # rows keep their order
    return table.take(holdout_index(trained.frame, "y", seed=seed, stratify=True))


def _scores(ws: Workspace, ref: str, table: pa.Table) -> np.ndarray:
    return np.asarray(ws.models.load(ref).scores(table))


def _stored(ws: Workspace) -> tuple[int, int, set[str]]:
    """What an evaluation adds: evaluations, audit events and stored objects."""
    objects = {sha for sha, _age in ws.ctx.artifacts.iter_objects()}
    return len(ws.evaluations.ls("m")), len(ws.audit.ls(limit=10_000)), objects


def test_the_default_evaluation_scores_exactly_the_training_holdout(binary: Trained) -> None:
    ws = binary.ws
    holdout = _holdout(binary)
    truth = holdout["y"].to_numpy()
    scores = _scores(ws, "m@1", holdout)
    predicted = (scores >= 0.5).astype(int)

    found = ws.evaluate("m@1", check_robustness=False)

    assert (found.model_ref, found.data_ref, found.split) == ("m@1", "d@1", "holdout:m@1")
    assert found.rows == len(holdout) == 200
    values = found.summary["values"]
    assert values["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-6)
    assert values["pr_auc"] == pytest.approx(sk.average_precision_score(truth, scores), abs=1e-6)
    assert values["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted), abs=1e-6)
    assert values["precision"] == pytest.approx(sk.precision_score(truth, predicted), abs=1e-6)
    assert values["recall"] == pytest.approx(sk.recall_score(truth, predicted), abs=1e-6)
    assert values["f1"] == pytest.approx(sk.f1_score(truth, predicted), abs=1e-6)
    assert values["log_loss"] == pytest.approx(sk.log_loss(truth, scores), abs=1e-6)
    assert values["brier"] == pytest.approx(sk.brier_score_loss(truth, scores), abs=1e-6)
    # The same rows training measured the version on: the same figures.
    trained = ws.models.get("m@1").metrics
    for name in ("roc_auc", "average_precision", "f1", "accuracy", "log_loss"):
        assert values[name] == pytest.approx(trained[name], abs=1e-6), name
    report = ws.evaluations.report(found)
    assert report["metrics"]["confusion_matrix"]["matrix"] == (
        sk.confusion_matrix(truth, predicted).tolist()
    )
    assert sum(b["rows"] for b in report["metrics"]["calibration"]["reliability"]) == 200
    assert report["robustness"] is None and report["fairness"] == {}


def test_a_split_version_scores_its_test_rows_and_another_version_every_row(
    binary: Trained, tmp_path: Path
) -> None:
    ws = binary.ws
    ws.features.split("d_split", "d@1", by="random", test=0.3, seed=5)
    test = holdout_rows(ws, "d_split")

    on_split = ws.evaluate("m@1", "d_split", check_robustness=False)

    assert (on_split.split, on_split.data_ref, on_split.rows) == ("test", "d_split@1", len(test))
    assert 250 <= len(test) <= 350
    truth = test["y"].to_numpy()
    assert on_split.summary["values"]["roc_auc"] == pytest.approx(
        sk.roc_auc_score(truth, _scores(ws, "m@1", test)), abs=1e-6
    )

    # Another version of the data, never trained on and without a split: every row.
    other = tabular(rows=300, seed=7)
    ingest(ws, "d", other, tmp_path / "data")
    on_other = ws.evaluate("m@1", "d@2", check_robustness=False)

    assert (on_other.split, on_other.data_ref, on_other.rows) == ("all", "d@2", 300)
    everything = ws.data.read("d@2")
    assert on_other.summary["values"]["roc_auc"] == pytest.approx(
        sk.roc_auc_score(other["y"], _scores(ws, "m@1", everything)), abs=1e-6
    )


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_regression_and_multiclass_evaluations(lws: Workspace, tmp_path: Path, task: str) -> None:
    frame = tabular(rows=600, task=task, seed=4)
    ingest(lws, "t", frame, tmp_path / "data")
    model = "sklearn:sklearn.linear_model.LinearRegression" if task == "regression" else LOGISTIC
    lws.train("r", "t", "y", model=model)
    holdout = lws.data.read("t").take(
        holdout_index(frame, "y", seed=0, stratify=task == "multiclass")
    )
    predictor = lws.models.load("r@1")

    found = lws.evaluate("r@1")
    values = found.summary["values"]
    report = lws.evaluations.report(found)

    assert (found.split, found.rows) == ("holdout:r@1", 120)
    if task == "regression":
        truth = holdout["y"].to_numpy()
        predictions = np.asarray(predictor.predict(holdout), dtype=float)
        assert values["rmse"] == pytest.approx(
            sk.root_mean_squared_error(truth, predictions), abs=1e-6
        )
        assert values["mae"] == pytest.approx(sk.mean_absolute_error(truth, predictions), abs=1e-6)
        assert values["mape"] == pytest.approx(
            sk.mean_absolute_percentage_error(truth, predictions), abs=1e-6
        )
        assert values["r2"] == pytest.approx(sk.r2_score(truth, predictions), abs=1e-6)
        assert values["r2"] > 0.8
        assert "roc_auc" not in values
        robust = report["robustness"]
        assert robust["metric"] == "rmse"
        assert robust["baseline"] == pytest.approx(values["rmse"], abs=1e-6)
        # For an error, a loss is the error growing: drop = perturbed - baseline.
        noisy = robust["gaussian_noise"]
        assert noisy["drop"] == pytest.approx(noisy["value"] - robust["baseline"], abs=1e-5)
        assert noisy["drop"] > 0
    else:
        truth = holdout["y"].to_pylist()
        labels = predictor.predict(holdout).tolist()
        assert values["accuracy"] == pytest.approx(sk.accuracy_score(truth, labels), abs=1e-6)
        assert values["f1"] == pytest.approx(sk.f1_score(truth, labels, average="macro"), abs=1e-6)
        assert values["roc_auc"] == pytest.approx(
            sk.roc_auc_score(truth, predictor.predict_proba(holdout), multi_class="ovr"), abs=1e-6
        )
        matrix = report["metrics"]["confusion_matrix"]
        assert matrix["labels"] == ["blue", "green", "red"]
        assert (
            matrix["matrix"]
            == sk.confusion_matrix(truth, labels, labels=["blue", "green", "red"]).tolist()
        )
        assert report["robustness"]["metric"] == "accuracy"
    # Its report renders too, offline, with the robustness chart.
    html = lws.evaluations.write_report(found, tmp_path / "r.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    structure = parse(html)
    assert structure.problems == [] and structure.stack == []
    assert structure.opened["svg"] == 1
    assert ("Confusion matrix" in html) is (task == "multiclass")
    # Fairness is measured on binary decisions only.
    with pytest.raises(InputError, match="binary"):
        lws.evaluate("r@1", sensitive=["cat"])


def test_an_anomaly_detector_needs_labels_to_be_evaluated(lws: Workspace, tmp_path: Path) -> None:
    frame = tabular(rows=600, task="anomaly", seed=2)
    ingest(lws, "events", frame.drop(columns=["is_outlier"]), tmp_path / "data")
    lws.train("odd", "events", task="anomaly")

    with pytest.raises(InputError) as caught:
        lws.evaluate("odd@1")
    assert "anomaly" in caught.value.message and "--target" in (caught.value.hint or "")
    assert lws.evaluations.ls("odd") == []
    # With no gates to check, promoting it needs no evaluation, hence no labels.
    promoted = lws.promote("odd", 1)
    assert (promoted.evaluation, promoted.gates) == (None, [])
    assert lws.models.aliases("odd") == {"champion": 1}
    lws.evaluations.set_gates("odd", {"roc_auc": 0.8})
    with pytest.raises(InputError, match="needs labels"):
        lws.promote("odd", 1)

    ingest(lws, "labelled", frame, tmp_path / "data")
    found = lws.evaluate("odd@1", "labelled", target="is_outlier")
    truth = frame["is_outlier"].to_numpy()
    scores = _scores(lws, "odd@1", lws.data.read("labelled"))
    assert (found.split, found.rows) == ("all", 600)
    assert found.summary["values"]["roc_auc"] == pytest.approx(
        sk.roc_auc_score(truth, scores), abs=1e-6
    )
    assert found.summary["values"]["roc_auc"] > 0.9


def test_data_that_does_not_fit_the_signature_is_refused_and_nothing_is_stored(
    binary: Trained, tmp_path: Path
) -> None:
    ws, frame = binary.ws, binary.frame
    ingest(ws, "no_x2", frame.drop(columns=["x2"]), tmp_path / "data")
    wrong = frame.copy()
    wrong["x1"] = [f"v{i % 7}" for i in range(len(wrong))]
    ingest(ws, "text_x1", wrong, tmp_path / "data")
    before = _stored(ws)

    with pytest.raises(InputError) as missing:
        ws.evaluate("m@1", "no_x2")
    assert "'x2'" in missing.value.message and "missing" in missing.value.message
    assert "no_x2@1" in missing.value.message
    with pytest.raises(InputError) as typed:
        ws.evaluate("m@1", "text_x1")
    assert "'x1'" in typed.value.message and "string" in typed.value.message
    assert "'x2'" not in typed.value.message

    assert _stored(ws) == before


def test_bad_columns_labels_and_refs_are_refused_and_nothing_is_stored(
    binary: Trained, tmp_path: Path
) -> None:
    ws, frame = binary.ws, binary.frame
    three = frame.copy()
    three.loc[:9, "y"] = 2
    ingest(ws, "three_labels", three, tmp_path / "data")
    before = _stored(ws)

    with pytest.raises(InputError) as sensitive:
        ws.evaluate("m@1", sensitive=["age_band"])
    assert "'age_band'" in sensitive.value.message and "cat" in (sensitive.value.hint or "")
    with pytest.raises(InputError, match="'region'"):
        ws.evaluate("m@1", slices=["region"])
    with pytest.raises(InputError, match="'label'"):
        ws.evaluate("m@1", target="label")
    with pytest.raises(InputError) as labels:
        ws.evaluate("m@1", "three_labels")
    assert "'2'" in labels.value.message and "not classes of m@1" in labels.value.message
    assert "0, 1" in (labels.value.hint or "")
    for ref, data in (("m@9", None), ("ghost@1", None), ("m@1", "ghost")):
        with pytest.raises(NotFound):
            ws.evaluate(ref, data)

    assert _stored(ws) == before


def test_a_stored_evaluation_reads_back_whole_and_is_audited_and_in_lineage(
    binary: Trained,
) -> None:
    ws = binary.ws
    found = ws.evaluate("m@1", check_robustness=False)

    assert ws.evaluations.get(found.id) == found
    assert ws.evaluations.get(found.id[:10]) == found
    assert found.id in [e.id for e in ws.evaluations.ls("m", 1)]
    assert found.created_by == ws.actor
    report = ws.evaluations.report(found.id)
    assert (report["id"], report["model"], report["by"]) == (found.id, "m@1", ws.actor)
    assert report["summary"] == found.summary
    assert report["data"]["split"] == found.split and report["data"]["rows"] == found.rows
    with pytest.raises(NotFound):
        ws.evaluations.get("0" * 32)
    with pytest.raises(NotFound):
        ws.evaluations.ls("ghost")

    events = [
        e
        for e in ws.audit.ls(action="model.evaluate", limit=10_000)
        if e.details.get("evaluation") == found.id
    ]
    assert len(events) == 1
    assert (events[0].target, events[0].actor, events[0].outcome) == (
        "model:m@1",
        ws.actor,
        "ok",
    )
    assert events[0].details["data"] == "d@1" and events[0].details["split"] == "holdout:m@1"
    assert ws.audit.verify().ok

    node = f"evaluation:{found.id}"
    into = {(e.source, e.activity) for e in ws.lineage(node) if e.target == node}
    assert into == {("model:m@1", "evaluate"), ("dataset:d@1", "evaluate")}
    assert node in {e.target for e in ws.lineage("model:m@1", "downstream")}


def test_a_tampered_or_truncated_report_refuses_to_load_naming_it(binary: Trained) -> None:
    ws = binary.ws
    found = ws.evaluate("m@1", check_robustness=False)
    path = ws.ctx.artifacts.local_path(found.report.sha256)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)  # objects are stored read-only
    original = path.read_bytes()
    try:
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(IntegrityError) as caught:
            ws.evaluations.report(found)
        assert found.id in str(caught.value) and "corrupt" in str(caught.value)

        path.write_bytes(original[: len(original) // 2])
        with pytest.raises(IntegrityError, match=found.id):
            ws.evaluations.report(found)
        # A card shows the newest evaluation: it refuses too, rather than show bad figures.
        with pytest.raises(IntegrityError, match=found.id):
            ws.evaluations.card("m@1")
        path.unlink()
        with pytest.raises(IntegrityError, match=f"{found.id} is missing"):
            ws.evaluations.report(found)
    finally:
        path.write_bytes(original)
    assert ws.evaluations.report(found)["id"] == found.id


def test_fairness_is_fairlearns_and_robustness_and_slices_are_reported(binary: Trained) -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    ws = binary.ws
    holdout = _holdout(binary)
    truth = holdout["y"].to_numpy()
    scores = _scores(ws, "m@1", holdout)
    groups = np.array(["(missing)" if v is None else v for v in holdout["cat"].to_pylist()])
    decisions = (scores >= 0.6).astype(int)

    found = ws.evaluate("m@1", sensitive=["cat"], slices=["cat"], threshold=0.6)
    report = ws.evaluations.report(found)

    fair = report["fairness"]["cat"]
    assert fair["threshold"] == 0.6
    expected_dpd = demographic_parity_difference(truth, decisions, sensitive_features=groups)
    expected_eod = equalized_odds_difference(truth, decisions, sensitive_features=groups)
    assert fair["demographic_parity_difference"] == pytest.approx(expected_dpd, abs=1e-6)
    assert fair["equalized_odds_difference"] == pytest.approx(expected_eod, abs=1e-6)
    assert expected_dpd > 0.1  # category a shifts the label: a real gap to measure
    assert set(fair["groups"]) == set(groups.tolist())
    for group, measured in fair["groups"].items():
        members = groups == group
        assert measured["count"] == int(members.sum())
        assert measured["selection_rate"] == pytest.approx(decisions[members].mean(), abs=1e-6)
        positives = members & (truth == 1)
        assert measured["true_positive_rate"] == pytest.approx(
            decisions[positives].mean(), abs=1e-6
        )
    values = found.summary["values"]
    assert values["demographic_parity_difference"] == fair["demographic_parity_difference"]
    assert found.summary["sensitive"] == ["cat"]

    robust = report["robustness"]
    assert robust["metric"] == "roc_auc" and robust["rows"] == 200
    assert robust["baseline"] == pytest.approx(values["roc_auc"], abs=1e-6)
    drops = {}
    for name in ("gaussian_noise", "missing_values", "category_perturbation"):
        assert robust[name]["drop"] == pytest.approx(
            robust["baseline"] - robust[name]["value"], abs=2e-6
        )
        assert values[f"{name}_drop"] == robust[name]["drop"]
        drops[name] = robust[name]["drop"]
    assert values["max_robustness_drop"] == max(drops.values())
    assert drops["missing_values"] > 0  # blanking a tenth of the cells costs something

    by_cat = {row["value"]: row for row in report["slices"]["cat"]}
    assert set(by_cat) == set(groups.tolist())
    assert sum(row["rows"] for row in by_cat.values()) == 200
    for value, row in by_cat.items():
        members = groups == value
        if members.sum() >= 30:
            assert row["accuracy"] == pytest.approx(
                sk.accuracy_score(truth[members], (scores[members] >= 0.5).astype(int)),
                abs=1e-6,
            )
        else:
            assert "accuracy" not in row  # too few rows to score


@pytest.mark.slow
@pytest.mark.parametrize("workspace_factory", ["postgresql-s3"], indirect=True)
def test_evaluations_are_kept_on_postgresql_and_s3(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, "d", tabular(rows=400), tmp_path / "data")
    ws.train("m", "d", "y", model=LOGISTIC)

    found = ws.evaluate("m@1", sensitive=["cat"])

    assert ws.evaluations.get(found.id) == found
    report = ws.evaluations.report(found)
    assert report["summary"] == found.summary and found.rows == 80
    assert set(report["fairness"]) == {"cat"}
    assert ws.evaluations.card("m@1")["evaluation"]["id"] == found.id


@pytest.mark.parametrize("threshold", [7.0, -0.1, float("nan")])
def test_a_threshold_outside_0_to_1_is_refused_and_nothing_is_stored(
    binary: Trained, threshold: float
) -> None:
    ws = binary.ws
    before = _stored(ws)
    with pytest.raises(InputError, match="threshold"):
        ws.evaluate("m@1", threshold=threshold, check_robustness=False)
    assert _stored(ws) == before


def test_a_sensitive_column_named_alone_is_one_column(binary: Trained) -> None:
    ws = binary.ws
    as_list = ws.evaluate("m@1", sensitive=["cat"], check_robustness=False)

    alone = ws.evaluate("m@1", sensitive="cat", check_robustness=False)  # type: ignore[arg-type]

    assert alone.summary["sensitive"] == as_list.summary["sensitive"] == ["cat"]
    assert set(ws.evaluations.report(alone)["fairness"]) == {"cat"}
    assert alone.summary["values"] == as_list.summary["values"]
    assert "demographic_parity_difference" in alone.summary["values"]
    with pytest.raises(InputError, match="column names"):
        ws.evaluate("m@1", sensitive=[1], check_robustness=False)  # type: ignore[list-item]


def test_the_summary_keeps_the_target_and_threshold_it_was_measured_at(binary: Trained) -> None:
    ws = binary.ws
    default = ws.evaluate("m@1", check_robustness=False)
    stricter = ws.evaluate("m@1", sensitive=["cat"], check_robustness=False, threshold=0.7)

    assert (default.summary["target"], default.summary["threshold"]) == ("y", 0.5)
    assert (stricter.summary["target"], stricter.summary["threshold"]) == ("y", 0.7)
    assert ws.evaluations.get(stricter.id).summary["threshold"] == 0.7  # as stored
    assert ws.evaluations.report(stricter)["fairness"]["cat"]["threshold"] == 0.7


def test_unseen_by_leaves_out_exactly_the_rows_that_version_trained_on(binary: Trained) -> None:
    ws, frame = binary.ws, binary.frame
    ws.train("u", "d@1", "y", model=LOGISTIC, features=["x1"], seed=1)
    other = ws.models.get("u@1")
    mine = holdout_index(frame, "y", seed=0, stratify=True)
    theirs = holdout_index(frame, "y", seed=1, stratify=True)
    unseen = sorted(set(mine) & set(theirs))  # held out by both: u@1 never fitted on them
    assert 0 < len(unseen) < len(mine)

    found = ws.evaluate("m@1", unseen_by=other, check_robustness=False)

    assert (found.split, found.rows) == ("holdout:m@1|unseen:u@1", len(unseen))
    rows = ws.data.read("d@1").take(unseen)
    assert found.summary["values"]["roc_auc"] == pytest.approx(
        sk.roc_auc_score(rows["y"].to_numpy(), _scores(ws, "m@1", rows)), abs=1e-6
    )
    # Its own fitted rows are not in its holdout: leaving them out leaves every row.
    itself = ws.evaluate("m@1", unseen_by=ws.models.get("m@1"), check_robustness=False)
    assert itself.rows == len(mine)  # m@1 never fitted on its own holdout


def test_unseen_by_matches_rows_whose_column_type_changed_between_versions(
    lws: Workspace, tmp_path: Path
) -> None:
    import pandas as pd

    old = tabular(rows=500, seed=0)
    old["n"] = np.random.default_rng(0).integers(0, 1_000_000, size=len(old))
    new = tabular(rows=500, seed=9)
    new["n"] = pd.array(np.random.default_rng(9).integers(0, 1_000_000, size=500), dtype="Int64")
    new.loc[:4, "n"] = pd.NA  # the column gains nulls: another type in the next version
    both = pd.concat([old, new], ignore_index=True)
    ingest(lws, "d", old, tmp_path / "data")
    ingest(lws, "d", both, tmp_path / "data")
    lws.train("m", "d@1", "y", model=LOGISTIC, features=["x1", "n"])
    lws.train("m", "d@2", "y", model=LOGISTIC, features=["x1", "n"])

    found = lws.evaluate("m@1", "d@2", holdout_of="m@2", unseen_by="m@1", check_robustness=False)

    # m@2's holdout rows that m@1 fitted (d@1's rows outside m@1's holdout) are left out.
    fitted_by_first = set(range(500)) - set(holdout_index(old, "y", seed=0, stratify=True))
    expected = [
        i for i in holdout_index(both, "y", seed=0, stratify=True) if i not in fitted_by_first
    ]
    assert 0 < len(expected) < 200
    assert (found.split, found.rows) == ("holdout:m@2|unseen:m@1", len(expected))
