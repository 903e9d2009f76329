"""Alerts: rules over monitoring observations, deduplicated, escalated, acknowledged.

Rules (``AlertRule``, from ``loopml.monitor.alert_rules``) watch monitoring
observations: a verdict such as ``drift`` or a metric such as ``roc_auc`` against a
threshold.

``evaluate_rules`` checks an observation against the rules. An alert is identified by
its fingerprint (model and rule): while one is unresolved, the same condition again
bumps its ``count`` and ``last_at`` and notifies nobody; once the condition clears, the
alert is resolved, and the next breach raises a new alert that notifies again. An
acknowledged alert stays quiet (repeats are counted, not sent) and is never escalated.
``escalate`` sends every open alert that nobody acknowledged within its rule's
``escalate_after`` to the rule's ``escalate_to`` channels, once. ``ack`` records who
acknowledged an alert. Every change is audited.

Deliveries to webhooks and email run on a small pool of background threads, so the
caller (a monitoring loop, a serving process) never waits on a slow or dead receiver;
each outcome is written into the alert's ``notified`` list and audited, and a failure
is logged, never raised. ``flush`` waits for the deliveries in flight.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from loopml.context import Context
from loopml.errors import Conflict, InputError, NotFound
from loopml.monitor.alert_rules import (
    AlertRule,
    as_list,
    check_rules,
    is_number,
    lookup,
    same_window,
)
from loopml.monitor.channels import (
    Channel,
    Delivery,
    Notification,
    RetryPolicy,
    SmtpSettings,
    describe,
    open_channel,
    parse_channel,
    retry_policy,
    smtp_settings,
)
from loopml.store.tables import alerts as alerts_table
from loopml.store.tables import models as models_table

logger = logging.getLogger("loopml.alerts")

STATUSES = ("open", "acked", "resolved")


@dataclass(frozen=True)
class Alert:
    """One alert: a rule's breach for a model, from first firing until acked or resolved.

    Attributes:
        id: 32 hex digits (a unique prefix works in ``ack``).
        model: the model it is about.
        rule: the rule's name.
        fingerprint: identifies (model, rule); repeats of an unresolved alert share it.
        severity: ``info``, ``warning`` or ``critical``.
        status: ``open``, ``acked`` or ``resolved``.
        message: one line for people.
        details: the rule's parameters, the observed value and the latest observation.
        count: how many observations breached while it was unresolved.
        first_at: when it was raised.
        last_at: the latest breach (or its resolution).
        notified: one entry per delivery: channel, stage, status, attempts, error.
        escalated_at: when it was escalated, if it was.
        acked_by: who acknowledged it.
        acked_at: when.
    """

    id: str
    model: str
    rule: str
    fingerprint: str
    severity: str
    status: str
    message: str
    details: dict[str, Any]
    count: int
    first_at: datetime
    last_at: datetime
    notified: list[dict[str, Any]]
    escalated_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None

    def public_details(self) -> dict[str, Any]:
        """``details`` with every channel as ``describe`` shows it: a webhook URL's path
        (often its secret) never leaves the workspace in a notification or a printout."""
        shown = dict(self.details)
        if "escalate_to" in shown:
            shown["escalate_to"] = [describe(spec) for spec in as_list(shown["escalate_to"])]
        if isinstance(shown.get("rule"), Mapping):
            rule = dict(shown["rule"])
            for field in ("notify", "escalate_to"):
                rule[field] = [describe(spec) for spec in as_list(rule.get(field))]
            shown["rule"] = rule
        return shown

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready values, channels shown safely (see ``public_details``)."""
        data = asdict(self)
        data["details"] = self.public_details()
        return data

    def notification(self, stage: str = "notify") -> Notification:
        """What channels are sent about this alert."""
        return Notification(
            alert_id=self.id,
            model=self.model,
            rule=self.rule,
            severity=self.severity,
            message=self.message,
            details=self.public_details(),
            count=self.count,
            first_at=self.first_at,
            stage=stage,
        )


def fingerprint(model: str, rule: str) -> str:
    """The identity of (model, rule) that deduplication keys on."""
    return hashlib.sha256(f"{model}\x00{rule}".encode()).hexdigest()


def evaluate_rules(
    ctx: Context,
    model: str,
    observation: Mapping[str, Any],
    rules: Sequence[AlertRule | Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> list[Alert]:
    """Check ``observation`` against ``rules``; raise, repeat or resolve ``model``'s alerts.

    A new alert is stored and its ``notify`` channels are told (the log at once,
    webhooks and email in the background). A breach while the rule's alert is still
    unresolved bumps its count and tells nobody. A rule whose value is present and no
    longer breaches resolves its alert. A rule whose value is missing is skipped.

    Args:
        ctx: the workspace context.
        model: the model's name.
        observation: the latest monitoring results, such as
            ``{"drift": True, "psi_max": 0.31, "roc_auc": 0.71, "window": 10000, ...}``;
            everything in it is kept in the alert's details.
        rules: ``AlertRule`` objects, or the spec's mappings (see ``parse_rules``).
        now: the time of the observation; the clock by default.

    Returns:
        The alerts this observation breached, new or repeated.

    Raises:
        InputError: a rule is invalid, names a channel the workspace cannot reach
            (email without SMTP settings), or watches a value that is not a number.
    """
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model {model!r} is not a model name")
    if not isinstance(observation, Mapping):
        raise InputError(
            f"an observation is a mapping of values, not {type(observation).__name__}",
            hint='pass, e.g., {"drift": True, "psi_max": 0.31}',
        )
    checked = check_rules(rules)
    now = now or datetime.now(UTC)
    settings = _DeliverySettings.of(ctx)
    # Open every channel before anything is stored: a rule the workspace cannot serve
    # is the user's mistake to hear about now, not a delivery failure later.
    for rule in checked:
        for spec in as_list(rule.notify) + as_list(rule.escalate_to):
            settings.channel(ctx, spec)
    judged = []
    for rule in checked:
        if not same_window(rule.window, observation.get("window")):
            continue
        value = lookup(observation, rule.on)
        verdict = rule.breached(value)
        if verdict is not None:
            judged.append((rule, value, verdict))
    if not judged:
        return []
    safe = _json_safe(observation)
    breached: list[Alert] = []
    raised: list[Alert] = []
    with ctx.write() as conn:
        owner = _owner(conn, ctx, model)
        for rule, value, verdict in judged:
            current = _unresolved(conn, fingerprint(model, rule.rule_name))
            if verdict:
                details = _details(rule, value, safe, settings, owner)
                message = _message(model, rule, value, safe)
                if current is None:
                    alert = _raise(conn, ctx, model, rule, message, details, now)
                    raised.append(alert)
                else:
                    alert = _repeat(conn, ctx, current, message, details, now)
                breached.append(alert)
            elif current is not None:
                _resolve(conn, ctx, current, value, now)
    for alert in raised:
        _dispatch(ctx, settings, alert, "notify", as_list(alert.details["rule"]["notify"]))
    return breached


def observation_of(*results: Any, window: int | str | None = None) -> dict[str, Any]:
    """The observation rules judge, from monitoring results (``MonitorResult``).

    A drift result gives ``drift`` (its verdict), ``drifted_features``,
    ``drifted_share``, ``prediction_drift`` and, over the features, the largest of each
    statistic (``psi_max``, ``js_max``, ``ks_max``, ``chi2_max``) and the smallest
    p-value (``ks_p_min``, ``chi2_p_min``). A decay result gives ``decay`` (its verdict),
    ``decay_drop``, and each metric on the labelled window (``roc_auc``...). Every
    result's rows are ``rows`` (``drift_rows``, ``decay_rows`` when both are given).

    Args:
        results: results of kind ``drift`` or ``decay``, in any order.
        window: the window they were measured over (see ``AlertRule.window``).

    Example:
        >>> drift = ws.monitor.drift("fraud@champion", window=10000)
        >>> evaluate_rules(ctx, "fraud", observation_of(drift, window=10000), rules)
    """
    observation: dict[str, Any] = {}
    for result in results:
        kind = getattr(result, "kind", None)
        statistics = dict(getattr(result, "statistics", None) or {})
        observation[str(kind)] = bool(getattr(result, "flagged", False))
        observation[f"{kind}_rows"] = getattr(result, "rows", None)
        if kind == "drift":
            observation["drifted_features"] = list(statistics.get("drifted_features") or [])
            observation["drifted_share"] = statistics.get("drifted_share")
            prediction = statistics.get("prediction")
            observation["prediction_drift"] = bool(prediction and prediction.get("drifted"))
            observation.update(_extremes(statistics.get("features") or []))
        elif kind == "decay":
            observation["decay_drop"] = statistics.get("drop")
            metrics = statistics.get("metrics") or {}
            observation.update({k: v for k, v in metrics.items() if k not in observation})
    rows = [observation[k] for k in ("drift_rows", "decay_rows") if k in observation]
    if len(rows) == 1:
        observation["rows"] = rows[0]
    if window is not None:
        observation["window"] = window
    return observation


def _extremes(features: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The largest of each statistic over the features, and the smallest p-value."""
    found: dict[str, float] = {}
    for feature in features:
        for name, value in (feature.get("statistics") or {}).items():
            if value is None or not is_number(value) or math.isnan(float(value)):
                continue
            key, better = (f"{name}_min", min) if name.endswith("_p") else (f"{name}_max", max)
            found[key] = better(found.get(key, float(value)), float(value))
    return found


def escalate(ctx: Context, now: datetime | None = None) -> list[Alert]:
    """Send open alerts that nobody acknowledged in time to their escalation channels, once.

    An alert escalates when its rule has ``escalate_after`` and that long has passed
    since it was raised; ``escalated_at`` records it, so it escalates only once.
    Acknowledged and resolved alerts never escalate.

    Args:
        ctx: the workspace context.
        now: the current time; the clock by default.

    Returns:
        The alerts escalated by this call.
    """
    now = now or datetime.now(UTC)
    settings = _DeliverySettings.of(ctx)
    escalated: list[tuple[Alert, list[str]]] = []
    with ctx.write() as conn:
        rows = conn.execute(
            sa.select(alerts_table).where(
                alerts_table.c.status == "open", alerts_table.c.escalated_at.is_(None)
            )
        ).all()
        for row in rows:
            after = (row.details or {}).get("escalate_after_s")
            if after is None or row.first_at + timedelta(seconds=float(after)) > now:
                continue
            targets = as_list(row.details.get("escalate_to") or ["log"])
            notified = list(row.notified or []) + [
                _pending_entry(spec, "escalate", i, now) for i, spec in enumerate(targets)
            ]
            conn.execute(
                alerts_table.update()
                .where(alerts_table.c.id == row.id)
                .values(escalated_at=now, notified=notified)
            )
            ctx.audit(
                conn,
                "alert.escalate",
                f"alert:{row.id}",
                details={
                    "model": row.model,
                    "rule": row.rule,
                    "to": [describe(spec) for spec in targets],
                    "after_s": after,
                },
            )
            alert = replace(_alert(row), escalated_at=now, notified=notified)
            escalated.append((alert, targets))
    for alert, targets in escalated:
        _dispatch(ctx, settings, alert, "escalate", targets)
    return [alert for alert, _ in escalated]


def ack(ctx: Context, alert_id: str, actor: str | None = None) -> Alert:
    """Acknowledge an alert: record who and when. It will not escalate or notify again.

    Args:
        ctx: the workspace context.
        alert_id: the alert's id, or a unique prefix of at least 6 characters.
        actor: who acknowledges; the context's actor by default.

    Raises:
        NotFound: no alert has that id.
        Conflict: the prefix is ambiguous, or the alert is already acked or resolved.
    """
    who = actor or ctx.actor
    now = datetime.now(UTC)
    with ctx.write() as conn:
        row = _find(conn, alert_id)
        if row.status == "acked":
            raise Conflict(
                f"alert {row.id} was already acknowledged by {row.acked_by} "
                f"at {row.acked_at:%Y-%m-%d %H:%M:%S} UTC",
            )
        if row.status == "resolved":
            raise Conflict(
                f"alert {row.id} is resolved: its condition cleared",
                hint="`loopml alerts ls` lists the open ones",
            )
        conn.execute(
            alerts_table.update()
            .where(alerts_table.c.id == row.id)
            .values(status="acked", acked_by=who, acked_at=now)
        )
        ctx.audit(
            conn,
            "alert.ack",
            f"alert:{row.id}",
            details={"model": row.model, "rule": row.rule, "acked_by": who},
        )
        return replace(_alert(row), status="acked", acked_by=who, acked_at=now)


def list_alerts(
    ctx: Context, status: str = "open", model: str | None = None, limit: int | None = None
) -> list[Alert]:
    """Alerts, the latest first.

    Args:
        ctx: the workspace context.
        status: ``open``, ``acked``, ``resolved`` or ``all``.
        model: only this model's alerts.
        limit: at most this many.

    Raises:
        InputError: an unknown status.
    """
    if status not in (*STATUSES, "all"):
        raise InputError(f"unknown status {status!r}", hint="use open, acked, resolved or all")
    if limit is not None and limit < 1:
        raise InputError(f"limit {limit} is not a positive number")
    query = sa.select(alerts_table).order_by(
        alerts_table.c.last_at.desc(), alerts_table.c.id.desc()
    )
    if status != "all":
        query = query.where(alerts_table.c.status == status)
    if model:
        query = query.where(alerts_table.c.model == model)
    if limit is not None:
        query = query.limit(limit)
    with ctx.read() as conn:
        return [_alert(row) for row in conn.execute(query).all()]


def get_alert(ctx: Context, alert_id: str) -> Alert:
    """One alert by id or unique prefix.

    Raises:
        NotFound: no alert has that id.
        Conflict: the prefix matches several alerts.
    """
    with ctx.read() as conn:
        return _alert(_find(conn, alert_id))


def flush(timeout: float | None = None) -> bool:
    """Wait for the deliveries in flight (in this process) to finish.

    Returns:
        True when none is left; False when ``timeout`` seconds passed first.
    """
    with _POOL_LOCK:
        pending = set(_PENDING)
    if not pending:
        return True
    _, not_done = wait_futures(pending, timeout=timeout)
    return not not_done


class AlertsAPI:
    """Alerts in a workspace: ``ws.alerts.ls()``, ``ack()``, ``escalate()``, ``evaluate()``.

    Example:
        >>> for alert in ws.alerts.ls(status="open"):
        ...     print(alert.id[:8], alert.severity, alert.message)
        >>> ws.alerts.ack("3f2a9c41")
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def ls(
        self, status: str = "open", model: str | None = None, limit: int | None = None
    ) -> list[Alert]:
        """Alerts with ``status`` (``open``, ``acked``, ``resolved``, ``all``), latest first."""
        return list_alerts(self._ctx, status, model, limit)

    def get(self, alert_id: str) -> Alert:
        """One alert by id or unique prefix."""
        return get_alert(self._ctx, alert_id)

    def ack(self, alert_id: str, actor: str | None = None) -> Alert:
        """Acknowledge an alert (see ``loopml.monitor.alerts.ack``)."""
        return ack(self._ctx, alert_id, actor)

    def evaluate(
        self,
        model: str,
        observation: Mapping[str, Any],
        rules: Sequence[AlertRule | Mapping[str, Any]],
        *,
        now: datetime | None = None,
    ) -> list[Alert]:
        """Check an observation against rules (see ``evaluate_rules``)."""
        return evaluate_rules(self._ctx, model, observation, rules, now=now)

    def escalate(self, now: datetime | None = None) -> list[Alert]:
        """Escalate open alerts nobody acknowledged in time (see ``escalate``)."""
        return escalate(self._ctx, now)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for deliveries in flight; True when all finished."""
        return flush(timeout)


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (NumPy numbers, datetimes and NaN included)."""
    import orjson

    return orjson.loads(
        orjson.dumps(
            value,
            default=str,
            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        )
    )


def _message(model: str, rule: AlertRule, value: Any, observation: Mapping[str, Any]) -> str:
    if rule.threshold is None:
        text = f"{model}: {rule.on} detected"
        drifted = observation.get("drifted_features") if rule.on == "drift" else None
        if isinstance(drifted, list | tuple) and drifted:
            names = ", ".join(map(str, drifted[:5]))
            more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
            text += f" in {names}{more}"
    else:
        text = f"{model}: {rule.on} {float(value):.4g} {rule.op} {float(rule.threshold):g}"
    if rule.window is not None:
        text += f" (window {rule.window})"
    return text


# --------------------------------------------------------------------------- storage


def _details(
    rule: AlertRule,
    value: Any,
    observation: Any,
    settings: _DeliverySettings,
    owner: str | None,
) -> dict[str, Any]:
    escalate_to = as_list(rule.escalate_to)
    if rule.escalate_after is not None and not escalate_to:
        # DESIGN: escalation goes to the owner; by email when the workspace can send it.
        if settings.smtp is not None and owner and "@" in owner:
            escalate_to = [f"email:{owner}"]
        else:
            escalate_to = ["log"]
    return {
        "rule": rule.get_params(),
        "value": _json_safe(value),
        "observation": observation,
        "escalate_after_s": rule.escalate_after_seconds(),
        "escalate_to": escalate_to,
    }


def _owner(conn: Connection, ctx: Context, model: str) -> str | None:
    name = model.split("@", 1)[0]
    found = conn.execute(
        sa.select(models_table.c.owner).where(models_table.c.name == name)
    ).scalar_one_or_none()
    return found or ctx.asset_owner


def _unresolved(conn: Connection, fp: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(alerts_table)
        .where(alerts_table.c.fingerprint == fp, alerts_table.c.status.in_(("open", "acked")))
        .order_by(alerts_table.c.first_at.desc())
        .limit(1)
    ).first()


def _pending_entry(spec: str, stage: str, index: int, now: datetime) -> dict[str, Any]:
    kind = parse_channel(spec)[0]
    return {
        "id": f"{stage}-{index}",
        "stage": stage,
        "channel": describe(spec),
        # The log is written right after commit and cannot fail in a way worth a retry.
        "status": "sent" if kind == "log" else "pending",
        "attempts": 1 if kind == "log" else 0,
        "error": None,
        "at": now.isoformat(),
    }


def _raise(
    conn: Connection,
    ctx: Context,
    model: str,
    rule: AlertRule,
    message: str,
    details: dict[str, Any],
    now: datetime,
) -> Alert:
    notified = [
        _pending_entry(spec, "notify", i, now) for i, spec in enumerate(as_list(rule.notify))
    ]
    alert = Alert(
        id=uuid.uuid4().hex,
        model=model,
        rule=rule.rule_name,
        fingerprint=fingerprint(model, rule.rule_name),
        severity=str(rule.severity),
        status="open",
        message=message,
        details=details,
        count=1,
        first_at=now,
        last_at=now,
        notified=notified,
    )
    conn.execute(
        alerts_table.insert().values(
            id=alert.id,
            model=alert.model,
            rule=alert.rule,
            fingerprint=alert.fingerprint,
            severity=alert.severity,
            status=alert.status,
            message=alert.message,
            details=alert.details,
            count=alert.count,
            first_at=now,
            last_at=now,
            notified=notified,
        )
    )
    ctx.audit(
        conn,
        "alert.raise",
        f"alert:{alert.id}",
        details={
            "model": model,
            "rule": alert.rule,
            "severity": alert.severity,
            "value": details["value"],
            "notify": [entry["channel"] for entry in notified],
        },
    )
    return alert


def _repeat(
    conn: Connection,
    ctx: Context,
    row: Row[Any],
    message: str,
    details: dict[str, Any],
    now: datetime,
) -> Alert:
    count = row._mapping["count"] + 1
    conn.execute(
        alerts_table.update()
        .where(alerts_table.c.id == row.id)
        .values(count=count, last_at=now, message=message, details=details)
    )
    ctx.audit(
        conn,
        "alert.repeat",
        f"alert:{row.id}",
        details={"model": row.model, "rule": row.rule, "count": count, "value": details["value"]},
    )
    return replace(_alert(row), count=count, last_at=now, message=message, details=details)


def _resolve(conn: Connection, ctx: Context, row: Row[Any], value: Any, now: datetime) -> None:
    conn.execute(
        alerts_table.update()
        .where(alerts_table.c.id == row.id)
        .values(status="resolved", last_at=now)
    )
    ctx.audit(
        conn,
        "alert.resolve",
        f"alert:{row.id}",
        details={"model": row.model, "rule": row.rule, "value": _json_safe(value)},
    )


def _find(conn: Connection, alert_id: str) -> Row[Any]:
    text = str(alert_id).strip().lower()
    if len(text) < 6 or len(text) > 32 or not all(c in "0123456789abcdef" for c in text):
        raise NotFound(
            f"no alert {alert_id!r}",
            hint="give the id, or its first 6 characters or more, as `loopml alerts ls` shows",
        )
    rows = conn.execute(
        sa.select(alerts_table).where(alerts_table.c.id.startswith(text, autoescape=True)).limit(2)
    ).all()
    if not rows:
        raise NotFound(f"no alert {alert_id!r}", hint="`loopml alerts ls --status all` lists them")
    if len(rows) > 1:
        raise Conflict(f"alert id {alert_id!r} is ambiguous", hint="give more of the id")
    return rows[0]


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=row.id,
        model=row.model,
        rule=row.rule,
        fingerprint=row.fingerprint,
        severity=row.severity,
        status=row.status,
        message=row.message,
        details=dict(row.details or {}),
        count=row._mapping["count"],
        first_at=row.first_at,
        last_at=row.last_at,
        notified=list(row.notified or []),
        escalated_at=row.escalated_at,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
    )


# --------------------------------------------------------------------------- delivery

_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_PENDING: set[Future[None]] = set()
# Enough threads that one dead webhook (up to its deadline) does not hold the others.
_POOL_THREADS = 8


@dataclass(frozen=True)
class _DeliverySettings:
    """What a workspace's channels need: the retry policy and the SMTP settings."""

    retry: RetryPolicy
    smtp: SmtpSettings | None

    @classmethod
    def of(cls, ctx: Context) -> _DeliverySettings:
        extra = ctx.settings.extra
        return cls(retry_policy(extra.get("alerts")), smtp_settings(extra.get("smtp")))

    def channel(self, ctx: Context, spec: str) -> Channel:
        kind, _ = parse_channel(spec)
        key = ctx.secret_key("webhook") if kind == "webhook" else None
        return open_channel(spec, retry=self.retry, key=key, smtp=self.smtp)


def _submit(work: Callable[[], None]) -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="loopml-alerts")
        future = _POOL.submit(work)
        _PENDING.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _POOL_LOCK:
        _PENDING.discard(future)


def _dispatch(
    ctx: Context, settings: _DeliverySettings, alert: Alert, stage: str, specs: list[str]
) -> None:
    """Tell ``specs`` about ``alert``: the log now, the others on the delivery threads."""
    notification = alert.notification(stage)
    for index, spec in enumerate(specs):
        entry_id = f"{stage}-{index}"
        try:
            channel = settings.channel(ctx, spec)
        except Exception as exc:  # settings changed since the alert was raised
            _record(ctx, alert.id, entry_id, Delivery(describe(spec), False, 0, str(exc)))
            continue
        if channel.kind == "log":
            channel.send(notification)
            continue
        _submit(_deliverer(ctx, alert.id, entry_id, channel, notification))


def _deliverer(
    ctx: Context, alert_id: str, entry_id: str, channel: Channel, notification: Notification
) -> Callable[[], None]:
    def deliver() -> None:
        delivery = channel.send(notification)
        _record(ctx, alert_id, entry_id, delivery)

    return deliver


def _record(ctx: Context, alert_id: str, entry_id: str, delivery: Delivery) -> None:
    """Write a delivery's outcome into the alert and the audit chain; never raise."""
    if not delivery.ok:
        logger.warning(
            "alert %s: %s failed after %d attempt(s): %s",
            alert_id,
            delivery.channel,
            delivery.attempts,
            delivery.error,
        )
    try:
        with ctx.write() as conn:
            notified = conn.execute(
                sa.select(alerts_table.c.notified).where(alerts_table.c.id == alert_id)
            ).scalar_one_or_none()
            entries = [dict(entry) for entry in notified or []]
            for entry in entries:
                if entry.get("id") == entry_id:
                    entry.update(
                        status="sent" if delivery.ok else "failed",
                        attempts=delivery.attempts,
                        error=delivery.error,
                        seconds=round(delivery.seconds, 3),
                        at=datetime.now(UTC).isoformat(),
                    )
            conn.execute(
                alerts_table.update().where(alerts_table.c.id == alert_id).values(notified=entries)
            )
            ctx.audit(
                conn,
                "alert.deliver",
                f"alert:{alert_id}",
                outcome="ok" if delivery.ok else "failed",
                details={
                    "channel": delivery.channel,
                    "stage": entry_id.split("-", 1)[0],
                    "attempts": delivery.attempts,
                    "error": delivery.error,
                },
            )
    except Exception:  # the caller is long gone; the log is the last place to say it
        logger.exception(
            "alert %s: could not record the delivery to %s", alert_id, delivery.channel
        )
