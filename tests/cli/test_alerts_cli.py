"""``loopml alerts ls|show|ack|check``, driven as a user would, over alerts raised by the SDK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from tests.cli.test_cli import assert_user_error, clean_env, one_json_object, run
from tests.monitor.test_channels import down_url, webhook_server

import loopml

DRIFTED = {"drift": True, "psi_max": 0.31, "drifted_features": ["amount"], "window": 10000}
LONG_AGO = datetime.now(UTC) - timedelta(hours=2)


def make_workspace(root: Path, escalate_to: str = "log") -> dict[str, str]:
    """Two open alerts (fraud drift, due to escalate; churn psi) and the CLI's environment."""
    root.mkdir(parents=True, exist_ok=True)
    fast = {"attempts": 2, "backoff": 0.05, "timeout": 2, "deadline": 5}
    (root / "workspace.yaml").write_text(yaml.safe_dump({"alerts": fast}))
    rules = [
        {"on": "drift", "notify": [], "escalate_after": "30m", "escalate_to": [escalate_to]},
        {"on": "psi_max", "threshold": 0.2, "op": ">", "severity": "critical", "notify": []},
    ]
    with loopml.open(root) as ws:
        ws.alerts.evaluate("fraud", DRIFTED, rules[:1], now=LONG_AGO)
        ws.alerts.evaluate("churn", DRIFTED, rules[1:], now=LONG_AGO + timedelta(minutes=1))
    return clean_env(LOOPML_WORKSPACE=str(root), LOOPML_USER="ann@example.com")


def test_ls_show_and_ack(tmp_path: Path) -> None:
    env = make_workspace(tmp_path / "ws")
    listed = one_json_object(run(["alerts", "ls", "--json"], tmp_path, env))["alerts"]
    assert [(a["model"], a["rule"], a["status"]) for a in listed] == [
        ("churn", "psi_max > 0.2", "open"),
        ("fraud", "drift", "open"),
    ]
    churn, fraud = listed
    assert churn["severity"] == "critical" and churn["message"] == "churn: psi_max 0.31 > 0.2"
    assert churn["details"]["observation"]["psi_max"] == 0.31

    table = run(["alerts", "ls", "--model", "fraud"], tmp_path, {**env, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert fraud["id"][:12] in table.stdout and "fraud: drift detected in amount" in table.stdout
    assert churn["id"][:12] not in table.stdout

    shown = run(["alerts", "show", fraud["id"][:8]], tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{fraud['id']} warning open: fraud: drift detected in amount")

    acked = one_json_object(run(["alerts", "ack", fraud["id"], "--json"], tmp_path, env))
    assert (acked["id"], acked["status"], acked["acked_by"]) == (
        fraud["id"],
        "acked",
        "ann@example.com",
    )
    with loopml.open(tmp_path / "ws") as ws:
        assert [a.id for a in ws.alerts.ls()] == [churn["id"]]
        assert ws.alerts.get(fraud["id"]).acked_by == "ann@example.com"
        (event,) = ws.audit.ls(action="alert.ack")
        assert event.actor == "ann@example.com"

    assert_user_error(
        run(["alerts", "ack", fraud["id"]], tmp_path, env), "already acknowledged by ann@"
    )


def test_mistakes_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    env = clean_env(LOOPML_WORKSPACE=str(root))
    for args, mentions in [
        (["alerts", "ack", "0123456789abcdef"], "no alert '0123456789abcdef'"),
        (["alerts", "ack", "nope", "--json"], "no alert 'nope'"),
        (["alerts", "ls", "--status", "closed"], "unknown status 'closed'"),
    ]:
        assert_user_error(run(args, tmp_path, env), mentions)


def test_check_escalates_what_is_due_once_and_waits_for_the_delivery(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with loopml.open(root) as ws:
        key = ws.ctx.secret_key("webhook")
    with webhook_server(key=key) as pager:
        env = make_workspace(root, f"webhook:{pager.url}")
        checked = one_json_object(run(["alerts", "check", "--json"], tmp_path, env))
        again = one_json_object(run(["alerts", "check", "--json"], tmp_path, env))
    (escalated,) = checked["escalated"]
    assert escalated["model"] == "fraud" and escalated["escalated_at"]
    assert checked["deliveries_finished"] and checked["failed"] == 0
    assert [(e["stage"], e["status"]) for e in escalated["notified"]] == [("escalate", "sent")]
    (request,) = pager.received
    assert request.signed and request.json()["stage"] == "escalate"
    assert again["escalated"] == []
    assert "s3cr3t" not in str(checked) and b"s3cr3t" not in request.body


def test_check_exits_non_zero_when_an_escalation_could_not_be_delivered(tmp_path: Path) -> None:
    env = make_workspace(tmp_path / "ws", f"webhook:{down_url()}")
    proc = run(["alerts", "check"], tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "escalated" in proc.stdout and "failed" in proc.stdout
    assert "s3cr3t" not in proc.stdout + proc.stderr
