"""Promotion gates: parsing, checking figures and margins, and storing them per model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.errors import InputError, NotFound
from loopml.evaluate.gates import Gates, check_gates_spec

from .conftest import Trained

VALUES = {"roc_auc": 0.9, "log_loss": 0.3, "accuracy": 0.8, "max_robustness_drop": 0.02}


def _outcomes(gates: Gates, values: dict, **champion: object) -> dict[str, bool]:
    return {r.gate: r.passed for r in gates.check("binary", values, **champion)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "passes"),
    [
        (">= 0.9", True),
        ("> 0.9", False),
        ("<= 0.9", True),
        ("< 0.9", False),
        (">=0.85", True),
        ("> .95", False),
        ("< 1e0", True),
        (0.9, True),  # a bare number: at least, for a figure where higher is better
        (0.95, False),
        ("0.91", False),
    ],
)
def test_threshold_expressions(expression: str | float, passes: bool) -> None:
    (result,) = Gates({"roc_auc": expression}).check("binary", VALUES)
    assert result.passed is passes
    assert result.measured == 0.9
    assert ("passes" if passes else "fails") in result.message


def test_a_bare_number_means_at_most_for_lower_is_better_figures() -> None:
    gates = Gates({"log_loss": 0.35, "max_robustness_drop": 0.01})
    assert gates.parsed("binary") == [("log_loss", "<=", 0.35), ("max_robustness_drop", "<=", 0.01)]
    assert _outcomes(gates, VALUES) == {"log_loss": True, "max_robustness_drop": False}
    assert Gates({"rmse": "2.5"}).parsed("regression") == [("rmse", "<=", 2.5)]
    assert Gates({"r2": "0.5"}).parsed("regression") == [("r2", ">=", 0.5)]


@given(
    bound=st.floats(-10, 10, allow_nan=False),
    measured=st.floats(-10, 10, allow_nan=False),
    op=st.sampled_from([">=", ">", "<=", "<"]),
)
def test_an_expression_compares_like_python(bound: float, measured: float, op: str) -> None:
    (result,) = Gates({"accuracy": f"{op} {bound!r}"}).check("binary", {"accuracy": measured})
    expected = {
        ">=": measured >= bound,
        ">": measured > bound,
        "<=": measured <= bound,
        "<": measured < bound,
    }[op]
    assert result.passed is expected


@pytest.mark.parametrize("bad", ["about 0.9", ">= ", "=> 0.9", "0.9 or so", True, "== 0.9"])
def test_an_expression_that_does_not_parse_names_the_gate(bad: object) -> None:
    with pytest.raises(InputError, match="gate roc_auc"):
        Gates({"roc_auc": bad}).parsed("binary")  # type: ignore[dict-item]


def test_an_unknown_figure_is_refused_with_a_suggestion() -> None:
    with pytest.raises(InputError) as caught:
        Gates({"roc_aucc": ">= 0.9"}).parsed("binary")
    assert "roc_aucc" in caught.value.message and "'roc_auc'" in (caught.value.hint or "")
    with pytest.raises(InputError) as other_task:
        Gates({"rmse": "<= 1"}).parsed("binary")
    assert "binary" in other_task.value.message
    with pytest.raises(InputError, match=r"beat_champion_by\.roc_auk"):
        Gates(beat_champion_by={"roc_auk": 0.0}).parsed("binary")
    with pytest.raises(InputError, match="not a number"):
        Gates(beat_champion_by={"roc_auc": "a bit"}).parsed("binary")  # type: ignore[dict-item]
    # A spec may not say its task: any task's figure is fine there, a typo is not.
    assert check_gates_spec({"rmse": "<= 1", "beat_champion_by": {"roc_auc": 0}}).thresholds == {
        "rmse": "<= 1"
    }
    with pytest.raises(InputError, match="'accuracy'"):
        check_gates_spec({"acuracy": 0.9})
    with pytest.raises(InputError, match="beat_champion_by"):
        check_gates_spec({"beat_champion_by": 0.01})
    with pytest.raises(InputError, match=r"beat_champion_by\.roc_auc: the margin 'high'"):
        check_gates_spec({"beat_champion_by": {"roc_auc": "high"}})


def test_beat_the_champion_by_a_margin_in_each_direction() -> None:
    gates = Gates(beat_champion_by={"roc_auc": 0.02, "log_loss": 0.05})
    better = {"roc_auc": 0.93, "log_loss": 0.20}
    worse = {"roc_auc": 0.915, "log_loss": 0.28}
    champion = {"roc_auc": 0.90, "log_loss": 0.30}

    passed = gates.check("binary", better, champion, "m@1")
    assert [r.passed for r in passed] == [True, True]
    assert passed[0].measured == pytest.approx(0.03) and passed[1].measured == pytest.approx(0.10)
    assert "m@1" in passed[0].required
    failed = gates.check("binary", worse, champion, "m@1")
    assert [r.passed for r in failed] == [False, False]  # 0.015 < 0.02 and 0.02 < 0.05
    assert "vs champion 0.9" in failed[0].message
    # No champion yet: nothing to beat.
    first = gates.check("binary", worse)
    assert all(r.passed for r in first) and "no champion" in first[0].message
    # A champion without the figure cannot be beaten on it.
    (unmeasured, _) = gates.check("binary", better, {"log_loss": 0.3}, "m@1")
    assert not unmeasured.passed and "not measured" in unmeasured.message


def test_an_unmeasured_fairness_figure_fails_and_says_how_to_measure_it() -> None:
    gates = Gates({"demographic_parity_difference": "<= 0.1", "roc_auc": ">= 0.5"})
    dpd, auc = gates.check("binary", VALUES)
    assert (dpd.passed, dpd.measured, auc.passed) == (False, None, True)
    assert "not measured" in dpd.message and "--sensitive" in dpd.message
    fair = gates.check("binary", {**VALUES, "demographic_parity_difference": 0.04})
    assert [r.passed for r in fair] == [True, True]


def test_gates_are_stored_per_model_and_a_bad_one_changes_nothing(binary: Trained) -> None:
    ws = binary.ws
    assert ws.evaluations.gates("m") is None
    events = len(ws.audit.ls(action="model.gates", limit=10_000))

    declared = ws.evaluations.set_gates(
        "m",
        {"roc_auc": ">= 0.7", "beat_champion_by": {"roc_auc": 0.01}},
        sensitive=["cat"],
    )

    stored = ws.evaluations.gates("m")
    assert stored is not None and stored.get_params() == declared.get_params() == {
        "thresholds": {"roc_auc": ">= 0.7"},
        "beat_champion_by": {"roc_auc": 0.01},
        "sensitive": ["cat"],
        "slices": [],
    }
    audited = ws.audit.ls(action="model.gates", limit=10_000)
    assert len(audited) == events + 1 and audited[0].target == "model:m"

    for bad in ({"roc_aucc": ">= 0.9"}, {"rmse": "<= 1"}, {"roc_auc": "high"}):
        with pytest.raises(InputError) as caught:
            ws.evaluations.set_gates("m", bad)
        assert next(iter(bad)) in caught.value.message
    with pytest.raises(InputError) as suggested:
        ws.evaluations.set_gates("m", {"roc_aucc": ">= 0.9"})
    assert "did you mean 'roc_auc'" in (suggested.value.hint or "")
    with pytest.raises(NotFound):
        ws.evaluations.set_gates("ghost", {"roc_auc": 0.9})

    after = ws.evaluations.gates("m")
    assert after is not None and after.get_params() == declared.get_params()
    assert len(ws.audit.ls(action="model.gates", limit=10_000)) == events + 1

    # Replacing them is one more audited change, and what is read back is the new set.
    # Named through a version, they are still the model's.
    ws.evaluations.set_gates("m@1", Gates({"accuracy": 0.6}))
    assert ws.audit.ls(action="model.gates", limit=1)[0].target == "model:m"
    replaced = ws.evaluations.gates("m")
    assert replaced is not None and replaced.thresholds == {"accuracy": 0.6}
    assert ws.evaluations.gates("m@1") is not None
    assert replaced.beat_champion_by == {} and replaced.sensitive == []
    results = ws.evaluations.check("m@1")
    assert [(r.gate, r.passed) for r in results] == [("accuracy", True)]


@pytest.mark.parametrize("margin", [-0.01, -1, float("nan"), float("inf"), float("-inf")])
def test_a_negative_or_non_finite_margin_is_refused(margin: float) -> None:
    with pytest.raises(InputError) as caught:
        Gates(beat_champion_by={"roc_auc": margin}).parsed("binary")
    assert "beat_champion_by.roc_auc" in caught.value.message
    assert "0 or more" in caught.value.message
    with pytest.raises(InputError, match=r"beat_champion_by\.roc_auc"):
        check_gates_spec({"beat_champion_by": {"roc_auc": margin}})
    # Zero is the least a margin may be.
    assert Gates(beat_champion_by={"roc_auc": 0}).parsed("binary") == []


@pytest.mark.parametrize("spec", ["roc_auc", ["roc_auc"], 0.9, None])
def test_gates_that_are_not_a_mapping_are_refused(spec: object) -> None:
    with pytest.raises(InputError) as caught:
        Gates.from_spec(spec)  # type: ignore[arg-type]
    assert "gates must map figures to thresholds" in caught.value.message
    assert type(spec).__name__ in caught.value.message


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_sensitive_columns_on_a_model_that_is_not_binary_are_refused(
    lws, tmp_path, task: str
) -> None:
    from tests.train._data import ingest, tabular

    from .conftest import LOGISTIC

    ingest(lws, "t", tabular(rows=200, task=task, seed=4), tmp_path / "data")
    model = "sklearn:sklearn.linear_model.LinearRegression" if task == "regression" else LOGISTIC
    lws.train("r", "t", "y", model=model)
    figure = "rmse" if task == "regression" else "accuracy"

    with pytest.raises(InputError) as caught:
        lws.evaluations.set_gates("r", {figure: 0.5}, sensitive=["cat"])
    assert f"not {task} ones" in caught.value.message
    assert lws.evaluations.gates("r") is None
    assert lws.audit.ls(action="model.gates", limit=10_000) == []
    # The same gates without the sensitive column are fine.
    assert lws.evaluations.set_gates("r", {figure: 0.5}).thresholds == {figure: 0.5}


def test_a_gate_column_the_training_data_lacks_is_refused_naming_it(binary: Trained) -> None:
    ws = binary.ws
    before = ws.evaluations.gates("m")
    events = len(ws.audit.ls(action="model.gates", limit=10_000))

    with pytest.raises(InputError) as sensitive:
        ws.evaluations.set_gates("m", {"roc_auc": 0.7}, sensitive=["cat", "age_band"])
    assert "'age_band'" in sensitive.value.message and "'cat'" not in sensitive.value.message
    assert "d@1" in sensitive.value.message and "m@1" in sensitive.value.message
    assert "cat" in (sensitive.value.hint or "")
    with pytest.raises(InputError, match="'region'"):
        ws.evaluations.set_gates("m", {"roc_auc": 0.7}, slices=["region"])

    after = ws.evaluations.gates("m")
    assert (after.get_params() if after else None) == (before.get_params() if before else None)
    assert len(ws.audit.ls(action="model.gates", limit=10_000)) == events
