"""Alert rules, deduplication, resolution, escalation and acknowledgement, with deliveries
to real receivers: a webhook server on a loopback port that checks the signature with the
workspace's key, one that is down, and a real SMTP server."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import WorkspaceFactory
from tests.monitor.test_channels import down_url, smtp_server, webhook_server

from loopml.config import load_yaml
from loopml.errors import Conflict, InputError, NotFound
from loopml.monitor import alerts
from loopml.monitor.alert_rules import AlertRule, parse_rules
from loopml.workspace import Workspace

SQLITE = pytest.mark.parametrize("workspace_factory", ["sqlite-local"], indirect=True)
BOTH_DATABASES = pytest.mark.parametrize(
    "workspace_factory", ["sqlite-local", "postgresql-local"], indirect=True
)
FAST = {"attempts": 3, "backoff": 0.05, "timeout": 2, "deadline": 10}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DRIFTED = {"drift": True, "psi_max": 0.31, "drifted_features": ["amount"], "window": 10000}
CALM = {"drift": False, "psi_max": 0.02, "drifted_features": [], "window": 10000}


def open_ws(factory: WorkspaceFactory, *, user: str | None = None, **settings: Any) -> Workspace:
    """A workspace whose ``workspace.yaml`` holds ``settings`` (fast retries by default)."""
    factory.root.mkdir(parents=True, exist_ok=True)
    config = {"alerts": FAST, **settings}
    (factory.root / "workspace.yaml").write_text(yaml.safe_dump(config))
    return factory(user=user)


@pytest.fixture(autouse=True)
def _deliveries_finish() -> Iterator[None]:
    yield
    assert alerts.flush(30), "deliveries were still running after the test"


def actions(ws: Workspace) -> list[tuple[str, str]]:
    """The alert audit events, oldest first: (action, outcome)."""
    events = ws.audit.ls(limit=1000, target="alert:")
    return [(e.action, e.outcome) for e in reversed(events)]


# --------------------------------------------------------------------------- rules


def test_the_spec_form_parses_into_rules_with_their_params() -> None:
    rules = parse_rules(
        [
            {
                "on": "drift",
                "severity": "warning",
                "notify": ["log", "webhook:https://hooks.example.com/ml"],
                "escalate_after": "30m",
            },
            {"on": "roc_auc", "threshold": "< 0.8", "window": "1h", "notify": "log"},
            {"name": "psi", "on": "psi_max", "threshold": 0.2, "op": ">=", "severity": "critical"},
        ]
    )
    drift, auc, psi = rules
    assert drift.get_params() == {
        "name": None,
        "on": "drift",
        "threshold": None,
        "op": None,
        "window": None,
        "severity": "warning",
        "notify": ["log", "webhook:https://hooks.example.com/ml"],
        "escalate_after": "30m",
        "escalate_to": [],
    }
    assert drift.escalate_after_seconds() == 1800
    assert (auc.op, auc.threshold, auc.rule_name, auc.notify) == ("<", 0.8, "roc_auc < 0.8", "log")
    assert psi.rule_name == "psi"
    assert [auc.breached(0.79), auc.breached(0.8), auc.breached(float("nan"))] == [
        True,
        False,
        None,
    ]
    assert [psi.breached(0.2), psi.breached(0.19), drift.breached(np.bool_(True))] == [
        True,
        False,
        True,
    ]
    # The same parameters make the same rule.
    assert AlertRule(**psi.get_params()).get_params() == psi.get_params()


def test_the_readmes_rules_parse() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.DOTALL) if "alerts:" in b
    ]
    drift, auc = parse_rules(load_yaml(block)["monitor"]["alerts"])
    # PyYAML's YAML 1.1 reads the key `on:` as True; the rules still parse.
    assert parse_rules(yaml.safe_load(block)["monitor"]["alerts"])[1].on == "roc_auc"
    assert (drift.rule_name, auc.rule_name, auc.escalate_after_seconds()) == (
        "drift",
        "roc_auc < 0.8",
        900,
    )


@pytest.mark.parametrize(
    ("entry", "mentions"),
    [
        ({"on": "drift", "severity": "loud"}, "monitor.alerts[1]: alert rule 'drift': severity"),
        ({"on": "psi_max"}, "threshold: a rule on the metric 'psi_max' needs a threshold"),
        ({"on": "psi_max", "threshold": 0.2}, "op: say which side fires"),
        ({"on": "psi_max", "threshold": 0.2, "op": "=="}, "op: '==' is not a comparison"),
        ({"on": "psi_max", "threshold": "about 0.2"}, "threshold: 'about 0.2' is not a number"),
        ({"on": "drift", "op": ">"}, "op: given without a threshold"),
        ({"on": "drift", "notify": ["pager:ops"]}, "notify: unknown channel"),
        ({"on": "drift", "escalate_to": ["log"]}, "escalate_to: given without escalate_after"),
        ({"on": "drift", "escalate_after": "soon"}, "escalate_after: invalid window"),
        ({"on": "drift", "window": 0}, "window: window 0 is not a positive row count"),
        ({"on": "drift", "window": "1 fortnight"}, "window: invalid window"),
        ({"on": "drift", "level": "high"}, "unknown field(s) level"),
        ({"severity": "warning"}, "on: missing"),
        ({"on": ""}, "on: '' names nothing"),
        ({"on": "drift"}, "name: 'drift' is also monitor.alerts[0]"),
        ("drift", "expected a mapping"),
    ],
)
def test_a_bad_rule_names_the_entry_and_the_field(entry: Any, mentions: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_rules([{"on": "drift"}, entry])
    assert mentions in str(caught.value)
    assert "monitor.alerts[1]" in str(caught.value)


@given(
    op=st.sampled_from([">", ">=", "<", "<="]),
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_a_threshold_with_its_comparison_parses_back(op: str, value: float, spaces: str) -> None:
    (rule,) = parse_rules([{"on": "m", "threshold": f"{op}{spaces}{value!r}"}])
    assert (rule.op, rule.threshold) == (op, value)
    assert rule.breached(value) is (op in {">=", "<="})


# --------------------------------------------------------------------------- evaluation


@BOTH_DATABASES
def test_an_alert_is_raised_once_repeats_quietly_resolves_and_fires_again(
    workspace_factory: WorkspaceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loopml.alerts")
    ws = open_ws(workspace_factory)
    with webhook_server(key=ws.ctx.secret_key("webhook")) as server:
        rules = [{"on": "drift", "severity": "warning", "notify": ["log", f"webhook:{server.url}"]}]
        (first,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0)
        assert (first.status, first.count, first.severity, first.rule) == (
            "open",
            1,
            "warning",
            "drift",
        )
        assert first.message == "fraud: drift detected in amount"
        assert ws.alerts.flush(10)
        (request,) = server.received
        assert request.signed, "the receiver could not verify the signature with the key"
        assert request.json()["alert"] == first.id and request.json()["stage"] == "notify"

        (again,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0 + timedelta(minutes=5))
        assert (again.id, again.count, again.last_at) == (first.id, 2, T0 + timedelta(minutes=5))
        assert ws.alerts.flush(10)
        assert len(server.received) == 1, "a repeat of an open alert must not notify again"

        assert ws.alerts.evaluate("fraud", CALM, rules, now=T0 + timedelta(minutes=10)) == []
        assert ws.alerts.get(first.id).status == "resolved"
        assert ws.alerts.ls() == []

        (second,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0 + timedelta(minutes=15))
        assert second.id != first.id and second.count == 1
        assert ws.alerts.flush(10)
        assert len(server.received) == 2 and all(r.signed for r in server.received)
        # The rule names the webhook; its secret path is not sent anywhere.
        assert all(b"s3cr3t" not in r.body for r in server.received)
        assert "s3cr3t" not in str(second.to_dict())

    stored = ws.alerts.get(first.id[:8])
    assert stored.count == 2 and stored.first_at == T0
    assert [(e["channel"], e["status"], e["attempts"]) for e in stored.notified] == [
        ("log", "sent", 1),
        (stored.notified[1]["channel"], "sent", 1),
    ]
    assert stored.notified[1]["channel"].startswith("webhook:http://127.0.0.1:")
    assert "s3cr3t" not in str(stored.notified)
    logged = [r for r in caplog.records if r.name == "loopml.alerts"]
    assert [r.levelno for r in logged] == [logging.WARNING, logging.WARNING]
    assert actions(ws) == [
        ("alert.raise", "ok"),
        ("alert.deliver", "ok"),
        ("alert.repeat", "ok"),
        ("alert.resolve", "ok"),
        ("alert.raise", "ok"),
        ("alert.deliver", "ok"),
    ]
    assert ws.audit.verify().ok


@SQLITE
def test_a_webhook_that_is_down_never_blocks_the_caller_and_the_failure_is_recorded(
    workspace_factory: WorkspaceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="loopml.alerts")
    # Four tries with 0.3 s, 0.6 s and 1.2 s between them: about 2 s of delivery.
    ws = open_ws(workspace_factory, alerts={"attempts": 4, "backoff": 0.3, "timeout": 1})
    rules = [{"on": "psi_max", "threshold": 0.2, "op": ">", "notify": [f"webhook:{down_url()}"]}]
    ws.ctx.secret_key("webhook")
    started = time.monotonic()
    (alert,) = ws.alerts.evaluate("fraud", DRIFTED, rules)
    spent = time.monotonic() - started
    # The delivery takes 2 s or more (asserted below); the caller waits for none of it.
    assert spent < 1.0, f"the caller waited {spent:.2f}s for a dead webhook"
    assert ws.alerts.get(alert.id).notified[0]["status"] == "pending"

    assert ws.alerts.flush(20)
    (entry,) = ws.alerts.get(alert.id).notified
    assert entry["status"] == "failed" and entry["attempts"] == 4
    assert entry["error"].startswith("ConnectError") and entry["seconds"] >= 1.8
    assert "s3cr3t" not in str(entry)
    assert actions(ws) == [("alert.raise", "ok"), ("alert.deliver", "failed")]
    (warning,) = [r for r in caplog.records if "failed after 4 attempt(s)" in r.getMessage()]
    assert alert.id in warning.getMessage() and "s3cr3t" not in warning.getMessage()


@SQLITE
def test_a_webhook_that_fails_then_recovers_is_retried_in_the_background(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    with webhook_server(key=ws.ctx.secret_key("webhook"), statuses=[500, 502]) as server:
        rules = [{"on": "decay", "severity": "critical", "notify": f"webhook:{server.url}"}]
        (alert,) = ws.alerts.evaluate("fraud", {"decay": True, "roc_auc": 0.7}, rules)
        assert ws.alerts.flush(10)
    (entry,) = ws.alerts.get(alert.id).notified
    assert (entry["status"], entry["attempts"], entry["error"]) == ("sent", 3, None)
    assert len(server.received) == 3


# --------------------------------------------------------------------------- escalation


@SQLITE
def test_unacknowledged_alerts_escalate_once_acked_and_resolved_ones_never(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    with webhook_server(key=ws.ctx.secret_key("webhook")) as pager:
        escalating = {
            "notify": ["log"],
            "escalate_after": "30m",
            "escalate_to": [f"webhook:{pager.url}"],
        }
        rules = [
            {"on": "drift", **escalating},
            {"on": "psi_max", "threshold": 0.2, "op": ">", **escalating},
            {"on": "roc_auc", "threshold": 0.8, "op": "<", **escalating},
        ]
        observation = {**DRIFTED, "roc_auc": 0.7}
        drift, psi, auc = ws.alerts.evaluate("fraud", observation, rules, now=T0)
        ws.alerts.ack(psi.id)
        ws.alerts.evaluate("fraud", {"roc_auc": 0.9}, rules, now=T0 + timedelta(minutes=1))
        assert ws.alerts.get(auc.id).status == "resolved"

        assert ws.alerts.escalate(now=T0 + timedelta(minutes=29)) == []
        (escalated,) = ws.alerts.escalate(now=T0 + timedelta(minutes=31))
        assert escalated.id == drift.id and escalated.escalated_at == T0 + timedelta(minutes=31)
        assert ws.alerts.escalate(now=T0 + timedelta(hours=5)) == []
        assert ws.alerts.flush(10)
    (request,) = pager.received
    assert request.signed and request.json()["stage"] == "escalate"
    assert request.json()["alert"] == drift.id
    stored = ws.alerts.get(drift.id)
    assert [(e["stage"], e["status"]) for e in stored.notified] == [
        ("notify", "sent"),
        ("escalate", "sent"),
    ]
    assert ("alert.escalate", "ok") in actions(ws)


@SQLITE
def test_escalation_defaults_to_the_owners_email_through_smtp(
    workspace_factory: WorkspaceFactory,
) -> None:
    with smtp_server() as mailbox:
        smtp = {"host": "127.0.0.1", "port": mailbox.port, "from": "loopml@example.com"}
        ws = open_ws(workspace_factory, user="risk-ml@example.com", smtp=smtp)
        # The spec's own form, as the fraud example writes it: no escalate_to.
        rules = [{"on": "drift", "severity": "warning", "notify": ["log"], "escalate_after": "30m"}]
        (alert,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0)
        assert alert.details["escalate_to"] == ["email:risk-ml@example.com"]
        (escalated,) = ws.alerts.escalate(now=T0 + timedelta(hours=1))
        assert ws.alerts.flush(10)
    ((sender, recipients, message),) = mailbox.messages
    assert (sender, recipients) == ("loopml@example.com", ["risk-ml@example.com"])
    assert message["Subject"] == "[loopml escalated warning] fraud: drift detected in amount"
    assert escalated.id in message.get_payload(decode=True).decode()
    assert ws.alerts.get(alert.id).notified[-1]["status"] == "sent"


@SQLITE
def test_without_smtp_escalation_goes_to_the_log(
    workspace_factory: WorkspaceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loopml.alerts")
    ws = open_ws(workspace_factory, user="risk-ml@example.com")
    rules = [{"on": "drift", "notify": [], "escalate_after": "30m"}]
    (alert,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0)
    assert alert.notified == [] and caplog.records == []
    ws.alerts.escalate(now=T0 + timedelta(hours=1))
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "escalated" in record.getMessage()


# --------------------------------------------------------------------------- acknowledgement


@SQLITE
def test_ack_records_who_and_silences_repeats(workspace_factory: WorkspaceFactory) -> None:
    ws = open_ws(workspace_factory)
    with webhook_server(key=ws.ctx.secret_key("webhook")) as server:
        rules = [{"on": "drift", "notify": f"webhook:{server.url}", "escalate_after": "1m"}]
        (alert,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0)
        acked = ws.alerts.ack(alert.id[:8], actor="ann@example.com")
        assert (acked.id, acked.status, acked.acked_by) == (alert.id, "acked", "ann@example.com")
        assert acked.acked_at is not None

        (repeat,) = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0 + timedelta(minutes=2))
        assert (repeat.id, repeat.count, repeat.status) == (alert.id, 2, "acked")
        assert ws.alerts.escalate(now=T0 + timedelta(hours=1)) == []
        assert ws.alerts.flush(10)
        assert len(server.received) == 1
    assert [a.id for a in ws.alerts.ls(status="acked")] == [alert.id]
    assert ws.alerts.ls(status="open") == []
    with pytest.raises(Conflict, match=r"already acknowledged by ann@example\.com"):
        ws.alerts.ack(alert.id)
    (event,) = ws.audit.ls(action="alert.ack")
    assert event.target == f"alert:{alert.id}" and event.details["acked_by"] == "ann@example.com"


@SQLITE
def test_ack_of_an_unknown_or_malformed_id_is_not_found(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    for bad in ("0" * 32, "abcdef12", "zz", "abc", "; drop table alerts"):
        with pytest.raises(NotFound, match="no alert"):
            ws.alerts.ack(bad)


# --------------------------------------------------------------------------- observations


@SQLITE
def test_a_rule_judges_only_observations_over_its_window(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    rules = [{"on": "psi_max", "threshold": 0.2, "op": ">", "window": "1h"}]
    assert ws.alerts.evaluate("fraud", DRIFTED, rules) == []  # over 10000 rows
    (alert,) = ws.alerts.evaluate("fraud", {**DRIFTED, "window": "60m"}, rules)
    assert alert.message == "fraud: psi_max 0.31 > 0.2 (window 1h)"
    (counted,) = ws.alerts.evaluate("fraud", {"psi_max": 0.5}, [{**rules[0], "window": 10000}])
    assert counted.rule == "psi_max > 0.2" and counted.id == alert.id


@SQLITE
def test_observations_with_numpy_values_nested_paths_and_gaps(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    rules = [
        {"on": "features.amount.psi", "threshold": 0.25, "op": ">="},
        {"on": "roc_auc", "threshold": 0.8, "op": "<"},
    ]
    observation = {
        "features": {"amount": {"psi": np.float32(0.5)}},
        "roc_auc": np.float64("nan"),
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "counts": np.array([1, 2, 3]),
    }
    (alert,) = ws.alerts.evaluate("fraud", observation, rules)
    assert alert.rule == "features.amount.psi >= 0.25"
    stored = ws.alerts.get(alert.id)
    assert stored.details["value"] == 0.5
    assert stored.details["observation"]["counts"] == [1, 2, 3]
    assert stored.details["observation"]["roc_auc"] is None


@SQLITE
def test_rules_the_workspace_cannot_serve_fail_before_anything_is_stored(
    workspace_factory: WorkspaceFactory,
) -> None:
    ws = open_ws(workspace_factory)
    with pytest.raises(InputError, match="no SMTP server is configured"):
        ws.alerts.evaluate("fraud", DRIFTED, [{"on": "drift", "notify": "email:ops@example.com"}])
    with pytest.raises(InputError, match=r"monitor.alerts\[1\]: alert rule 'psi_max': threshold"):
        ws.alerts.evaluate("fraud", DRIFTED, [{"on": "drift"}, {"on": "psi_max"}])
    with pytest.raises(InputError, match="'drifted_features' is list, not a number"):
        ws.alerts.evaluate(
            "fraud", DRIFTED, [{"on": "drifted_features", "threshold": 1, "op": ">"}]
        )
    with pytest.raises(InputError, match="name: used by two rules"):
        ws.alerts.evaluate("fraud", DRIFTED, [AlertRule(on="drift"), {"on": "drift"}])
    with pytest.raises(InputError, match="list of rules"):
        ws.alerts.evaluate("fraud", DRIFTED, AlertRule(on="drift"))  # type: ignore[arg-type]
    assert ws.alerts.ls(status="all") == []


@SQLITE
def test_ls_filters_by_status_and_model(workspace_factory: WorkspaceFactory) -> None:
    ws = open_ws(workspace_factory)
    rules = [{"on": "drift", "notify": []}]
    fraud = ws.alerts.evaluate("fraud", DRIFTED, rules, now=T0)[0]
    churn = ws.alerts.evaluate("churn", DRIFTED, rules, now=T0 + timedelta(minutes=1))[0]
    ws.alerts.ack(churn.id)
    assert [a.id for a in ws.alerts.ls()] == [fraud.id]
    assert [a.id for a in ws.alerts.ls(status="all")] == [churn.id, fraud.id]
    assert [a.id for a in ws.alerts.ls(status="all", model="churn")] == [churn.id]
    assert len(ws.alerts.ls(status="all", limit=1)) == 1
    with pytest.raises(InputError, match="unknown status"):
        ws.alerts.ls(status="closed")


@SQLITE
def test_monitoring_results_become_the_observation_rules_judge(
    workspace_factory: WorkspaceFactory,
) -> None:
    from loopml.monitor.monitoring import MonitorResult

    def feature(name: str, psi: float, ks_p: float, drifted: bool) -> dict[str, Any]:
        return {
            "name": name,
            "statistics": {"psi": psi, "ks": 0.1, "ks_p": ks_p},
            "drifted": drifted,
        }

    drift = MonitorResult(
        id="d" * 32, model="fraud", number=1, kind="drift", source="log:last 5000 rows",
        window_start=None, window_end=None, rows=5000, flagged=True, created_at=T0,
        statistics={
            "drifted_features": ["amount"],
            "drifted_share": 0.5,
            "features": [feature("amount", 0.42, 0.001, True), feature("hour", 0.03, 0.4, False)],
            "prediction": {"name": "prediction", "drifted": False},
        },
    )  # fmt: skip
    decay = MonitorResult(
        id="e" * 32, model="fraud", number=1, kind="decay", source="feedback:800",
        window_start=None, window_end=None, rows=800, flagged=False, created_at=T0,
        statistics={"drop": 0.01, "metrics": {"roc_auc": 0.86, "f1": 0.4}},
    )  # fmt: skip
    observation = alerts.observation_of(drift, decay, window=5000)
    assert observation == {
        "drift": True,
        "drift_rows": 5000,
        "drifted_features": ["amount"],
        "drifted_share": 0.5,
        "prediction_drift": False,
        "psi_max": 0.42,
        "ks_max": 0.1,
        "ks_p_min": 0.001,
        "decay": False,
        "decay_rows": 800,
        "decay_drop": 0.01,
        "roc_auc": 0.86,
        "f1": 0.4,
        "window": 5000,
    }
    ws = open_ws(workspace_factory)
    rules = [
        {"on": "drift", "notify": []},
        {"on": "decay", "notify": []},
        {"on": "psi_max", "threshold": 0.3, "op": ">", "window": 5000, "notify": []},
        {"on": "roc_auc", "threshold": 0.8, "op": "<", "notify": []},
    ]
    raised = ws.alerts.evaluate("fraud", observation, rules)
    assert [a.rule for a in raised] == ["drift", "psi_max > 0.3"]
    assert raised[0].message == "fraud: drift detected in amount"
