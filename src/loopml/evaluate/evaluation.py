"""Evaluate a model version on a dataset version, and store the result with the version.

Which rows are scored:

- on the dataset version the model was trained on, its training **holdout**, rebuilt
  exactly (same target, task and seed), so the model is never scored on rows it saw;
- on another version with a ``split`` column (``loopml split``), its ``test`` rows;
- otherwise every row.

``holdout_of`` asks for another version's holdout: that is how a challenger and the
champion are compared on the same rows. The split is recorded as ``holdout:MODEL@N``,
``test`` or ``all``.

The whole result (metrics, threshold table, calibration, slices, fairness, robustness)
is a JSON object in the artifact store, verified on read; a row in ``evaluations``
indexes it with its headline figures, which gates read.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.data.api import DataAPI
from loopml.data.versions import resolve as resolve_dataset
from loopml.errors import InputError, IntegrityError, NotFound
from loopml.evaluate import metrics as evaluation_metrics
from loopml.evaluate.fairness import fairness
from loopml.evaluate.robustness import robustness
from loopml.features.splits import SPLIT_COLUMN
from loopml.governance import lineage
from loopml.records import DatasetVersion, Evaluation, ModelVersion, StoredObject
from loopml.registry import signature, versions
from loopml.store import objects as store_objects
from loopml.store.tables import evaluations
from loopml.train import inputs, tracking

# Robustness re-scores the rows three times; a seeded sample this large is plenty.
ROBUSTNESS_ROWS = 20_000
# Lower is better for these; every other figure is better higher.
LOWER_IS_BETTER = frozenset(
    {
        "log_loss",
        "brier",
        "rmse",
        "mae",
        "mape",
        "demographic_parity_difference",
        "equalized_odds_difference",
        "gaussian_noise_drop",
        "missing_values_drop",
        "category_perturbation_drop",
        "max_robustness_drop",
    }
)


def evaluate(
    ctx: Context,
    ref: str | ModelVersion,
    data: str | None = None,
    *,
    target: str | None = None,
    sensitive: Sequence[str] = (),
    slices: Sequence[str] = (),
    holdout_of: str | ModelVersion | None = None,
    unseen_by: str | ModelVersion | None = None,
    check_robustness: bool = True,
    threshold: float = 0.5,
    seed: int = 0,
    trust: Sequence[str] = (),
) -> Evaluation:
    """Measure a model version and store the result with it.

    Args:
        ctx: the workspace context.
        ref: the model version (``fraud@3``, ``fraud@champion``).
        data: the dataset version (default: the one the model was trained on).
        target: the label column (default: the training target).
        sensitive: columns to measure fairness across (binary classifiers).
        slices: columns to measure the headline metrics within each value of.
        holdout_of: score the training holdout of this version instead of choosing
            the rows as the module docstring says (it must have trained on ``data``).
        unseen_by: leave out the rows this version trained on (matched by content over
            its inputs and target), so two versions compare on rows neither has seen.
        check_robustness: measure the metric drop under perturbed inputs.
        threshold: the decision threshold for binary decisions (fairness).
        seed: the seed of the robustness perturbations.
        trust: extra type names to accept in a skops file.

    Raises:
        NotFound: no such model, version or dataset.
        InputError: the data does not match the model's signature, lacks the target or
            a sensitive or slice column, or holds labels the model does not know.

    Example:
        >>> evaluation = ws.evaluate("fraud@champion", sensitive=["age_band"])
        >>> evaluation.summary["values"]["roc_auc"]
    """
    with ctx.read() as conn:
        version = ref if isinstance(ref, ModelVersion) else versions.resolve(conn, ref)
        run = tracking.get(conn, version.run_id)
        if isinstance(unseen_by, str):
            unseen_by = versions.resolve(conn, unseen_by)
        rows_of = version
        if holdout_of is not None:
            rows_of = (
                holdout_of
                if isinstance(holdout_of, ModelVersion)
                else versions.resolve(conn, holdout_of)
            )
            rows_run = tracking.get(conn, rows_of.run_id)
        else:
            rows_run = run
        # By default, the data whose holdout is scored: the one it was trained on.
        trained_on = rows_of.inputs[0] if rows_of.inputs else {}
        data_ref = data or trained_on.get("dataset")
        if data_ref is None:
            raise InputError(f"{rows_of.ref} records no training data", hint="pass --data D@V")
        dataset = resolve_dataset(conn, data_ref)
    label = target or run.params.get("target")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold {threshold} is not in [0, 1]", hint="pass a probability")
    sensitive, slices = _names(sensitive, "sensitive"), _names(slices, "slices")
    if version.task == "anomaly" and label is None:
        raise InputError(
            f"{version.ref} is an anomaly model: evaluating it needs labels",
            hint="pass --target COL naming a 0/1 column that marks the anomalies",
        )
    data_api = DataAPI(ctx)
    schema = data_api.schema(dataset)
    where = f"dataset {dataset.ref}"
    signature.check(version, schema, where)
    needed = [c for c in [label, *sensitive, *slices] if c is not None]
    missing = [c for c in dict.fromkeys(needed) if c not in schema.names]
    if missing:
        raise InputError(
            f"{where} has no column {', '.join(repr(c) for c in missing)}",
            hint=f"its columns are {', '.join(schema.names)}",
        )
    # Only what is scored, labelled, grouped or split on: a wide dataset stays cheap.
    wanted = [
        *(c["name"] for c in version.signature.get("inputs", [])),
        *needed,
        rows_run.params.get("target"),
        SPLIT_COLUMN,
        *(_keys(ctx, unseen_by) if unseen_by is not None else []),
    ]
    table = data_api.read(dataset, columns=[c for c in dict.fromkeys(wanted) if c in schema.names])
    table, split = _rows(table, dataset, rows_of, rows_run, holdout_of is not None)
    if unseen_by is not None:
        table = _unseen(ctx, table, unseen_by)
        split = f"{split}|unseen:{unseen_by.ref}"
    report = _measure(
        version,
        table,
        label,
        sensitive=sensitive,
        slices=slices,
        check_robustness=check_robustness,
        threshold=threshold,
        seed=seed,
        predictor=versions.load(ctx, version, trust),
    )
    report["data"] = {"ref": dataset.ref, "id": dataset.id, "split": split, **report["data"]}
    return _store(ctx, version, dataset, split, report)


def _names(columns: Sequence[str] | str, what: str) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    if not all(isinstance(c, str) for c in columns):
        raise InputError(f"{what} must be column names", hint=f"pass {what}=['age_band']")
    return list(columns)


def _keys(ctx: Context, version: ModelVersion) -> list[str]:
    """The columns that identify a row for ``version``: its inputs and its target."""
    with ctx.read() as conn:
        target = tracking.get(conn, version.run_id).params.get("target")
    keys = [c["name"] for c in version.signature.get("inputs", [])]
    return [*keys, target] if target else keys


def fit_rows(ctx: Context, version: ModelVersion) -> tuple[Any, list[str]]:
    """The rows ``version`` was fitted on (its training split), with the columns that
    identify a row for it (``_keys``)."""
    if not version.inputs:
        raise InputError(f"{version.ref} records no training data to leave out")
    with ctx.read() as conn:
        run = tracking.get(conn, version.run_id)
        dataset = resolve_dataset(conn, version.inputs[0]["dataset"])
    target = run.params.get("target")
    keys = _keys(ctx, version)
    data_api = DataAPI(ctx)
    names = data_api.schema(dataset).names
    table = data_api.read(dataset, columns=[c for c in [*keys, SPLIT_COLUMN] if c in names])
    data = inputs.load(dataset, table, target, version.task, run.params["seed"])
    return data.table.take(data.fit_index), keys


def _row_hashes(table: Any, columns: Sequence[str]) -> Any:
    """One hash per row over ``columns``, equal for equal values whatever the column's
    type in this version (an int column with nulls, a float column: both numbers)."""
    import pandas as pd
    import pyarrow as pa

    same: dict[str, Any] = {}
    for name in columns:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        kind = column.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        numeric = numeric or pa.types.is_decimal(kind) or pa.types.is_boolean(kind)
        same[name] = column.cast(pa.float64() if numeric else pa.string())
    frame = pa.table(same).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _unseen(ctx: Context, table: Any, version: ModelVersion) -> Any:
    """``table`` without the rows ``version`` was fitted on."""
    import numpy as np
    import pyarrow as pa

    seen, keys = fit_rows(ctx, version)
    missing = [c for c in keys if c not in table.schema.names or c not in seen.schema.names]
    if missing:
        raise InputError(
            f"cannot tell which rows {version.ref} trained on: no column "
            f"{', '.join(map(repr, missing))} on both sides"
        )
    if not len(table):
        return table
    fitted = _row_hashes(seen, keys)
    return table.filter(pa.array(~np.isin(_row_hashes(table, keys), fitted)))


def _rows(
    table: Any, dataset: DatasetVersion, rows_of: ModelVersion, run: Any, forced: bool
) -> tuple[Any, str]:
    """The rows to score, and the name of that choice."""
    import pyarrow.compute as pc

    trained_on = rows_of.inputs[0] if rows_of.inputs else {}
    if trained_on.get("id") == dataset.id:
        params = run.params
        data = inputs.load(dataset, table, params.get("target"), rows_of.task, params["seed"])
        return data.table.take(data.test_index), f"holdout:{rows_of.ref}"
    if forced:
        raise InputError(
            f"{rows_of.ref} was not trained on {dataset.ref}: it has no holdout there",
            hint="compare versions on the dataset version the newer one was trained on",
        )
    if SPLIT_COLUMN in table.schema.names:
        test = pc.equal(table[SPLIT_COLUMN].cast("string"), "test")
        chosen = table.filter(pc.fill_null(test, False))
        if len(chosen):
            return chosen, "test"
    return table, "all"


def _measure(
    version: ModelVersion,
    table: Any,
    label: str | None,
    *,
    sensitive: Sequence[str],
    slices: Sequence[str],
    check_robustness: bool,
    threshold: float,
    seed: int,
    predictor: Any,
) -> dict[str, Any]:
    """Every figure of the evaluation, as one JSON-ready report."""
    import numpy as np
    import pyarrow.compute as pc

    without_label = 0
    if label is not None:
        present = pc.is_valid(table[label])
        without_label = len(table) - int(pc.sum(present).as_py() or 0)
        table = table.filter(present)
    if len(table) == 0:
        raise InputError(f"no rows with a label to evaluate {version.ref} on")
    classes = list(version.meta.get("classes", []))
    raw = table[label].to_numpy(zero_copy_only=False)
    scores = np.asarray(predictor.scores(table))
    task = version.task
    if task == "anomaly":
        y = np.asarray(raw).astype(np.int64)
        headline = _anomaly(y, scores)
    else:
        y = _encode(raw, task, classes, version.ref)
        headline = evaluation_metrics.headline(task, y, scores, classes)
    report: dict[str, Any] = {
        "model": version.ref,
        "model_id": version.id,
        "task": task,
        "flavor": version.flavor,
        "target": label,
        "threshold": threshold,
        "data": {"rows": len(table), "rows_without_label": without_label},
        "metrics": headline,
        "slices": {},
        "fairness": {},
        "robustness": None,
    }
    if slices and task != "anomaly":
        groups = {c: table[c].to_numpy(zero_copy_only=False) for c in slices}
        report["slices"] = evaluation_metrics.slices(task, y, scores, classes, groups)
    if sensitive:
        if task != "binary":
            raise InputError(
                f"fairness is measured on binary classifiers; {version.ref} is {task}",
                hint="drop --sensitive, or use --slice to compare groups' metrics",
            )
        for column in sensitive:
            values = table[column].to_pylist()
            report["fairness"][column] = fairness(y, scores, values, threshold)
    if check_robustness and task != "anomaly":
        report["robustness"] = _robustness(predictor, table, y, task, classes, seed)
    report["summary"] = summarise(report)
    return report


def _anomaly(y: Any, scores: Any) -> dict[str, Any]:
    from sklearn import metrics as sk

    result: dict[str, Any] = {"rows": len(y), "roc_auc": None, "pr_auc": None}
    if len(set(y.tolist())) > 1:
        result["roc_auc"] = round(float(sk.roc_auc_score(y, scores)), 6)
        result["pr_auc"] = round(float(sk.average_precision_score(y, scores)), 6)
    return result


def _encode(raw: Any, task: str, classes: Sequence[Any], ref: str) -> Any:
    """Labels as the model's class codes (0..k-1); values as floats for regression."""
    import numpy as np

    if task == "regression":
        return np.asarray(raw, dtype=np.float64)
    codes = {str(c): i for i, c in enumerate(classes)}
    text = [str(v) for v in raw.tolist()]
    unknown = sorted({v for v in text if v not in codes})
    if unknown:
        raise InputError(
            f"labels {', '.join(repr(v) for v in unknown[:5])} are not classes of {ref}",
            hint=f"its classes are {', '.join(map(str, classes))}",
        )
    return np.fromiter((codes[v] for v in text), dtype=np.int64, count=len(text))


def _robustness(
    predictor: Any, table: Any, y: Any, task: str, classes: Sequence[Any], seed: int
) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    if len(table) > ROBUSTNESS_ROWS:
        chosen = np.sort(rng.choice(len(table), ROBUSTNESS_ROWS, replace=False))
        table, y = table.take(chosen), y[chosen]
    frame = predictor.frame(table)
    metric = _robustness_metric(task, y)
    text = predictor.text
    numeric = [c for c in predictor.features if c not in set(text)]

    def measure(scores: Any) -> float:
        report = evaluation_metrics.headline(task, y, scores, classes)
        return float(report[metric])

    result = robustness(
        predictor.scores,
        frame,
        measure,
        numeric=numeric,
        text=text,
        greater_is_better=metric not in LOWER_IS_BETTER,
        seed=seed,
    )
    return {"metric": metric, "rows": len(frame), **result}


def _robustness_metric(task: str, y: Any) -> str:
    if task == "regression":
        return "rmse"
    if task == "binary" and len(set(y.tolist())) > 1:
        return "roc_auc"
    return "accuracy"


def summarise(report: Mapping[str, Any]) -> dict[str, Any]:
    """The flat figures gates check: each scalar metric, the worst fairness gap over
    the sensitive columns, and each robustness drop (``*_drop``)."""
    values: dict[str, float | None] = {
        k: v for k, v in report["metrics"].items() if isinstance(v, int | float) and k != "rows"
    }
    calibration = report["metrics"].get("calibration")
    if calibration:
        values["brier"] = calibration.get("brier")
    if "pr_auc" in values:
        values["average_precision"] = values["pr_auc"]
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        found = [f[gap] for f in report["fairness"].values() if f.get(gap) is not None]
        if found:
            values[gap] = max(found)
    robust = report.get("robustness")
    if robust:
        drops = {}
        for name in ("gaussian_noise", "missing_values", "category_perturbation"):
            drops[f"{name}_drop"] = robust[name]["drop"]
        values.update(drops)
        values["max_robustness_drop"] = max(drops.values())
    return {
        "values": values,
        "sensitive": sorted(report["fairness"]),
        "target": report.get("target"),
        "threshold": report.get("threshold"),
    }


def _store(
    ctx: Context, version: ModelVersion, dataset: DatasetVersion, split: str, report: dict
) -> Evaluation:
    now = datetime.now(UTC)
    evaluation_id = uuid.uuid4().hex
    report = {**report, "id": evaluation_id, "created_at": now.isoformat(), "by": ctx.actor}
    stored = ctx.artifacts.put_bytes(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY))
    with ctx.write() as conn:
        store_objects.record(conn, [stored])
        conn.execute(
            evaluations.insert().values(
                id=evaluation_id,
                model=version.model,
                number=version.number,
                dataset=dataset.dataset,
                dataset_version=dataset.number,
                dataset_id=dataset.id,
                split=split,
                rows=report["data"]["rows"],
                summary=report["summary"],
                report={"sha256": stored.sha256, "size": stored.size},
                created_by=ctx.actor,
                created_at=now,
            )
        )
        target = f"evaluation:{evaluation_id}"
        lineage.record(conn, [f"model:{version.ref}", f"dataset:{dataset.ref}"], target, "evaluate")
        ctx.audit(
            conn,
            "model.evaluate",
            f"model:{version.ref}",
            details={"evaluation": evaluation_id, "data": dataset.ref, "split": split},
        )
        return get(conn, evaluation_id)


def _from_row(row: Any) -> Evaluation:
    return Evaluation(
        id=row.id,
        model=row.model,
        number=row.number,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        dataset_id=row.dataset_id,
        split=row.split,
        rows=row.rows,
        summary=row.summary,
        report=StoredObject(row.report["sha256"], row.report["size"]),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def get(conn: Connection, evaluation_id: str) -> Evaluation:
    """The evaluation with this id (or a unique prefix of at least 6 characters).

    Raises:
        NotFound: no such evaluation.
    """
    row = conn.execute(sa.select(evaluations).where(evaluations.c.id == evaluation_id)).first()
    if row is None and 6 <= len(evaluation_id) < 32 and evaluation_id.isalnum():
        rows = conn.execute(
            sa.select(evaluations).where(evaluations.c.id.startswith(evaluation_id)).limit(2)
        ).all()
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise NotFound(
            f"evaluation {evaluation_id!r} does not exist",
            hint="`loopml model show MODEL` lists a model's evaluations",
        )
    return _from_row(row)


def list_for(conn: Connection, model: str, number: int | None = None) -> list[Evaluation]:
    """A model's evaluations (of one version, when ``number`` is given), newest first."""
    query = sa.select(evaluations).where(evaluations.c.model == model)
    if number is not None:
        query = query.where(evaluations.c.number == number)
    rows = conn.execute(query.order_by(evaluations.c.created_at.desc())).all()
    return [_from_row(row) for row in rows]


def latest(
    conn: Connection,
    model: str,
    number: int,
    *,
    dataset_id: str | None = None,
    split: str | None = None,
) -> Evaluation | None:
    """The newest evaluation of a version (on these rows, when given), or None."""
    for found in list_for(conn, model, number):
        if dataset_id is not None and found.dataset_id != dataset_id:
            continue
        if split is not None and found.split != split:
            continue
        return found
    return None


def read_report(ctx: Context, evaluation: Evaluation) -> dict[str, Any]:
    """The whole stored result of an evaluation, verified against its hash.

    Raises:
        IntegrityError: the stored report was tampered with, truncated or deleted.
    """
    try:
        data = ctx.artifacts.read_bytes(evaluation.report.sha256)
    except IntegrityError as exc:
        raise IntegrityError(
            f"the report of evaluation {evaluation.id} is corrupt; refusing to read it",
            hint="evaluate the model again",
        ) from exc
    except NotFound as exc:
        # The row is committed, so its object must exist: the store lost it.
        raise IntegrityError(
            f"the report of evaluation {evaluation.id} is missing from the store",
            hint="evaluate the model again; `loopml fsck` lists every missing object",
        ) from exc
    report: dict[str, Any] = orjson.loads(data)
    return report
