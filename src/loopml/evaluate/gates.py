"""Promotion gates: what a version must show before an alias may point at it.

A model's gates are declared in the spec (``evaluate: gates:``) or the SDK::

    {"roc_auc": ">= 0.90",
     "demographic_parity_difference": "<= 0.10",
     "max_robustness_drop": "<= 0.05",
     "beat_champion_by": {"roc_auc": 0.0}}

A threshold names a figure of the evaluation's summary (a metric such as ``roc_auc``
or ``rmse``, a fairness gap, a robustness drop ``*_drop``) with ``>=``, ``>``, ``<=``
or ``<`` and a number; a bare number means "at least" for figures where higher is
better and "at most" for the others. ``beat_champion_by`` asks the version to beat
the current champion by at least the margin on each metric, measured on the same
holdout rows. A figure the evaluation did not measure fails its gate, saying how to
measure it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.data.api import DataAPI
from loopml.errors import InputError
from loopml.evaluate.evaluation import LOWER_IS_BETTER
from loopml.records import ModelVersion
from loopml.registry import versions
from loopml.store.tables import model_gates

CLASSIFICATION = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "average_precision",
    "log_loss",
    "brier",
)
REGRESSION = ("rmse", "mae", "mape", "r2")
FAIRNESS = ("demographic_parity_difference", "equalized_odds_difference")
ROBUSTNESS = (
    "gaussian_noise_drop",
    "missing_values_drop",
    "category_perturbation_drop",
    "max_robustness_drop",
)
FIGURES = {
    "binary": (*CLASSIFICATION, *FAIRNESS, *ROBUSTNESS),
    "multiclass": (*CLASSIFICATION, *ROBUSTNESS),
    "regression": (*REGRESSION, *ROBUSTNESS),
    "anomaly": ("roc_auc", "pr_auc"),
}
_OPS = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}
_EXPRESSION = re.compile(r"\s*(>=|<=|>|<)?\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*")


@dataclass(frozen=True)
class GateResult:
    """One gate checked: its name, the figure measured, what it asks, and the outcome."""

    gate: str
    passed: bool
    measured: float | None
    required: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "measured": self.measured,
            "required": self.required,
            "message": self.message,
        }


class Gates:
    """A model's promotion gates.

    Args:
        thresholds: figure -> ``">= 0.9"``-style expression (or a bare number).
        beat_champion_by: metric -> the margin the champion must be beaten by.
        sensitive: the columns an evaluation for promotion measures fairness across.
        slices: the columns it measures per-slice metrics within.

    Example:
        >>> Gates({"roc_auc": ">= 0.9"}, beat_champion_by={"roc_auc": 0.0})
    """

    def __init__(
        self,
        thresholds: Mapping[str, str | float] | None = None,
        *,
        beat_champion_by: Mapping[str, float] | None = None,
        sensitive: Sequence[str] = (),
        slices: Sequence[str] = (),
    ) -> None:
        self.thresholds = dict(thresholds or {})
        self.beat_champion_by = dict(beat_champion_by or {})
        self.sensitive = list(sensitive)
        self.slices = list(slices)

    @classmethod
    def from_spec(
        cls, gates: Mapping[str, Any], sensitive: Sequence[str] = (), slices: Sequence[str] = ()
    ) -> Gates:
        """Gates from the spec's form: thresholds plus an optional ``beat_champion_by``.

        Raises:
            InputError: ``gates`` is not a mapping.
        """
        if not isinstance(gates, Mapping):
            raise InputError(
                f"gates must map figures to thresholds, not be a {type(gates).__name__}",
                hint="for example {roc_auc: '>= 0.9'}",
            )
        thresholds = {k: v for k, v in gates.items() if k != "beat_champion_by"}
        beat = gates.get("beat_champion_by") or {}
        if not isinstance(beat, Mapping):
            raise InputError(
                "gate beat_champion_by must map metrics to margins",
                hint="write beat_champion_by: {roc_auc: 0.0}",
            )
        return cls(thresholds, beat_champion_by=beat, sensitive=sensitive, slices=slices)

    def get_params(self) -> dict[str, Any]:
        """The gates as given, JSON-ready (what is stored and shown)."""
        return {
            "thresholds": dict(self.thresholds),
            "beat_champion_by": dict(self.beat_champion_by),
            "sensitive": list(self.sensitive),
            "slices": list(self.slices),
        }

    def parsed(self, task: str) -> list[tuple[str, str, float]]:
        """Each threshold as (figure, operator, number), checked against the task.

        Raises:
            InputError: an unknown figure for this task, or an expression that does not
                parse; the message names the gate.
        """
        known = FIGURES.get(task, ())
        result = []
        for figure, expression in self.thresholds.items():
            _check_figure(figure, known, task)
            result.append((figure, *_parse(figure, expression)))
        for figure, margin in self.beat_champion_by.items():
            _check_figure(figure, known, task, prefix="beat_champion_by.")
            _check_margin(figure, margin)
        if self.sensitive and task != "binary":
            raise InputError(
                f"gates: sensitive columns measure fairness of binary classifiers, not {task} ones",
                hint="drop the sensitive columns from the gates",
            )
        return result

    def check(
        self,
        task: str,
        values: Mapping[str, Any],
        champion: Mapping[str, Any] | None = None,
        champion_ref: str | None = None,
        *,
        compared: Mapping[str, Any] | None = None,
        problem: str | None = None,
        same: bool = False,
    ) -> list[GateResult]:
        """Check a version's summary figures (and the champion's, for the margins).

        Args:
            values: the version's figures (thresholds read them).
            champion: the champion's figures on the compared rows; None without one.
            compared: the version's figures on those same rows (default ``values``).
            problem: why the two could not be compared (the margins then fail).
            same: the version is the champion itself (the margins pass).
        """
        results = []
        for figure, op, bound in self.parsed(task):
            measured = values.get(figure)
            required = f"{op} {bound:g}"
            if measured is None:
                results.append(
                    GateResult(figure, False, None, required, _unmeasured(figure, required))
                )
                continue
            passed = _OPS[op](float(measured), bound)
            verdict = "passes" if passed else "fails"
            message = f"{figure} = {measured:g} {verdict} ({required})"
            results.append(GateResult(figure, passed, float(measured), required, message))
        for figure, margin in self.beat_champion_by.items():
            gate = f"beat_champion_by.{figure}"
            better = "lower" if figure in LOWER_IS_BETTER else "higher"
            required = f"{margin:g} {better} than {champion_ref or 'the champion'}"
            if problem is not None:
                results.append(GateResult(gate, False, None, required, f"{gate}: {problem}"))
                continue
            if champion is None:
                why = "it is the champion" if same else "no champion yet to beat"
                results.append(GateResult(gate, True, None, required, f"{gate}: {why}"))
                continue
            mine, theirs = (compared or values).get(figure), champion.get(figure)
            if mine is None or theirs is None:
                results.append(
                    GateResult(gate, False, None, required, _unmeasured(figure, required))
                )
                continue
            gain = float(theirs) - float(mine) if better == "lower" else float(mine) - float(theirs)
            passed = gain >= float(margin)
            message = (
                f"{gate}: {figure} {mine:g} vs champion {theirs:g} "
                f"({'passes' if passed else 'fails'}: gain {gain:+.6g}, needs {margin:g})"
            )
            results.append(GateResult(gate, passed, round(gain, 6), required, message))
        return results

    def __repr__(self) -> str:
        return f"Gates({self.get_params()!r})"


def check_gates_spec(gates: Mapping[str, Any]) -> Gates:
    """Parse gates in the spec's form against every task's figures (a spec may not say
    its task); ``set_gates`` checks them against the model's own task.

    Raises:
        InputError: a figure no task has, or an expression that does not parse.
    """
    found = Gates.from_spec(gates)
    every = tuple(dict.fromkeys(f for figures in FIGURES.values() for f in figures))
    for figure, expression in found.thresholds.items():
        _check_figure(figure, every, "loopml")
        _parse(figure, expression)
    for figure, margin in found.beat_champion_by.items():
        _check_figure(figure, every, "loopml", prefix="beat_champion_by.")
        _check_margin(figure, margin)
    return found


def _check_figure(figure: str, known: Sequence[str], task: str, prefix: str = "") -> None:
    if figure not in known:
        close = difflib.get_close_matches(figure, known, n=1)
        raise InputError(
            f"gate {prefix}{figure}: {task} evaluations have no figure {figure!r}",
            hint=f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(known)}",
        )


def _check_margin(figure: str, margin: object) -> None:
    import math

    if isinstance(margin, bool) or not isinstance(margin, int | float):
        raise InputError(
            f"gate beat_champion_by.{figure}: the margin {margin!r} is not a number",
            hint="write a number such as 0.0 or 0.01",
        )
    if not math.isfinite(margin) or margin < 0:
        raise InputError(
            f"gate beat_champion_by.{figure}: the margin {margin!r} must be 0 or more",
            hint="a negative margin would let a version worse than the champion through",
        )


def _parse(figure: str, expression: str | float) -> tuple[str, float]:
    if isinstance(expression, bool):
        raise InputError(f"gate {figure}: {expression!r} is not a threshold")
    if isinstance(expression, int | float):
        return ("<=" if figure in LOWER_IS_BETTER else ">="), float(expression)
    match = _EXPRESSION.fullmatch(str(expression))
    if match is None:
        raise InputError(
            f"gate {figure}: {expression!r} does not parse",
            hint="write an operator and a number, such as '>= 0.9' or '<= 0.1'",
        )
    op = match.group(1) or ("<=" if figure in LOWER_IS_BETTER else ">=")
    return op, float(match.group(2))


def _unmeasured(figure: str, required: str) -> str:
    how = "evaluate it"
    if figure in ROBUSTNESS:
        how = "evaluate it with robustness on (without --no-robustness)"
    if figure in FAIRNESS:
        how = "declare the sensitive columns with the gates, or evaluate with --sensitive COL"
    return f"{figure} was not measured ({required} cannot be checked): {how}"


def set_gates(ctx: Context, model: str, gates: Gates) -> Gates:
    """Store ``gates`` as the model's promotion gates (replacing any before), audited.

    Raises:
        NotFound: no such model.
        InputError: a gate names a figure the model's task does not have.
    """
    now = datetime.now(UTC)
    with ctx.read() as conn:
        latest = versions.resolve(conn, model)
    gates.parsed(latest.task)
    _check_columns(ctx, latest, gates)
    with ctx.write() as conn:
        model = latest.model  # gates are the model's, even when named as ``m@2``
        conn.execute(model_gates.delete().where(model_gates.c.model == model))
        conn.execute(
            model_gates.insert().values(
                model=model, gates=gates.get_params(), updated_by=ctx.actor, updated_at=now
            )
        )
        ctx.audit(conn, "model.gates", f"model:{model}", details=gates.get_params())
    return gates


def _check_columns(ctx: Context, version: ModelVersion, gates: Gates) -> None:
    """The gates' sensitive and slice columns must be in the data the model trains on."""
    wanted = [*gates.sensitive, *gates.slices]
    trained_on = version.inputs[0].get("dataset") if version.inputs else None
    if not wanted or trained_on is None:
        return
    names = DataAPI(ctx).schema(trained_on).names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InputError(
            f"gates: {', '.join(map(repr, missing))} is not a column of {trained_on}, which "
            f"{version.ref} was trained on",
            hint=f"its columns are {', '.join(names)}",
        )


def get_gates(conn: Connection, model: str) -> Gates | None:
    """The model's stored gates, or None when it has none."""
    row = conn.execute(sa.select(model_gates).where(model_gates.c.model == model)).first()
    if row is None:
        return None
    params = row.gates
    return Gates(
        params.get("thresholds"),
        beat_champion_by=params.get("beat_champion_by"),
        sensitive=params.get("sensitive", ()),
        slices=params.get("slices", ()),
    )


def require_gates(conn: Connection, model: str) -> Gates:
    """The model's gates, or empty gates.

    Raises:
        NotFound: no such model.
    """
    found = get_gates(conn, versions.resolve(conn, model).model)
    if found is None:
        return Gates()
    return found
