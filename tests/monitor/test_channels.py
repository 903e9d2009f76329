"""Alert channels against real receivers: an HTTP server on a loopback port that checks
the HMAC signature itself, one that fails then recovers, one that is down, one that
hangs; and a real SMTP server (aiosmtpd) that receives the email."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loopml.errors import InputError, SpecError
from loopml.monitor.channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Notification,
    RetryPolicy,
    SmtpSettings,
    describe,
    open_channel,
    parse_channel,
    retry_policy,
    sign,
    smtp_settings,
    verify_signature,
)

KEY = bytes.fromhex("11" * 32)
SECRET_PATH = "/hooks/T0123/B4567/s3cr3t-token"


# --------------------------------------------------------------------------- receivers


@dataclass
class Received:
    """One request a webhook server received, and whether its signature held."""

    body: bytes
    headers: dict[str, str]
    signed: bool

    def json(self) -> Any:
        return json.loads(self.body)


def expected_signature(key: bytes, body: bytes, timestamp: str) -> str:
    """The signature, computed here without loopml, as a receiver would."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass
class WebhookServer:
    """A real HTTP server on a loopback port. It answers each POST with the next status of
    ``statuses`` (then 200), or 401 when the signature is wrong; ``hang`` never answers."""

    key: bytes = KEY
    statuses: Sequence[int] = ()
    hang: bool = False
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script = list(self.statuses)
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stamp = self.headers.get(TIMESTAMP_HEADER, "")
                given = self.headers.get(SIGNATURE_HEADER, "")
                signed = (
                    stamp.isdigit()
                    and abs(time.time() - int(stamp)) < 300
                    and hmac.compare_digest(expected_signature(server.key, body, stamp), given)
                )
                server.received.append(Received(body, dict(self.headers.items()), signed))
                if server.hang:
                    server._release.wait(30)
                    return
                status = server._script.pop(0) if server._script else 200
                if not signed:
                    status = 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The webhook's URL, with a secret in its path as Slack's carry."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{SECRET_PATH}"

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def webhook_server(**options: Any) -> Iterator[WebhookServer]:
    server = WebhookServer(**options)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def down_url() -> str:
    """A webhook URL on a loopback port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}{SECRET_PATH}"


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) received."""

    port: int
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"


@contextmanager
def smtp_server(login: tuple[str, str] | None = None) -> Iterator[Mailbox]:
    """A real SMTP server on a free loopback port; with ``login``, it requires AUTH."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and login is not None
            and (data.login.decode(), data.password.decode()) == login
        )
        # handled=False: the server itself answers 235 or 535.
        return AuthResult(success=ok, handled=False)

    for attempt in range(5):
        mailbox = Mailbox(free_port())
        options: dict[str, Any] = {}
        if login:
            options = {"authenticator": authenticate, "auth_required": True}
        controller = Controller(
            mailbox, hostname="127.0.0.1", port=mailbox.port, auth_require_tls=False, **options
        )
        try:
            controller.start()
        except (OSError, RuntimeError):  # the free port was taken meanwhile
            if attempt == 4:
                raise
            continue
        try:
            yield mailbox
        finally:
            controller.stop()
        return


def notification(**changes: Any) -> Notification:
    values: dict[str, Any] = {
        "alert_id": "a" * 32,
        "model": "fraud",
        "rule": "drift",
        "severity": "warning",
        "message": "fraud: drift detected in amount",
        "details": {"value": True, "observation": {"psi_max": 0.31}},
        "count": 1,
        "first_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return Notification(**{**values, **changes})


FAST = RetryPolicy(attempts=3, backoff=0.05, timeout=2.0, deadline=10.0)


# --------------------------------------------------------------------------- signatures


def test_a_signature_verifies_and_refuses_tampering_replay_and_garbage() -> None:
    body = b'{"alert": "x"}'
    now = time.time()
    stamp = int(now)
    signature = sign(KEY, body, stamp)
    assert signature == expected_signature(KEY, body, str(stamp))
    assert verify_signature(KEY, body, str(stamp), signature, now=now)
    assert not verify_signature(KEY, body + b" ", stamp, signature, now=now)
    assert not verify_signature(bytes(32), body, stamp, signature, now=now)
    # The timestamp is signed: moving it breaks the signature; an old one is a replay.
    assert not verify_signature(KEY, body, stamp + 1, signature, now=now)
    assert not verify_signature(KEY, body, stamp, signature, now=now + 301)
    assert verify_signature(KEY, body, stamp, signature, now=now + 299)
    assert not verify_signature(KEY, body, "soon", signature, now=now)


# --------------------------------------------------------------------------- webhook


def test_webhook_posts_the_alert_signed_with_the_key() -> None:
    with webhook_server() as server:
        delivery = open_channel(f"webhook:{server.url}", retry=FAST, key=KEY).send(notification())
    assert delivery.ok and delivery.attempts == 1 and delivery.error is None
    (request,) = server.received
    assert request.signed
    assert request.headers["Content-Type"] == "application/json"
    payload = request.json()
    assert payload["alert"] == "a" * 32
    assert (payload["model"], payload["rule"], payload["severity"]) == ("fraud", "drift", "warning")
    assert payload["stage"] == "notify"
    assert payload["details"]["observation"] == {"psi_max": 0.31}
    assert payload["first_at"] == "2026-01-02T03:04:05+00:00"


def test_a_receiver_with_another_key_refuses_it_and_it_is_not_retried() -> None:
    with webhook_server(key=bytes(32)) as server:
        delivery = open_channel(f"webhook:{server.url}", retry=FAST, key=KEY).send(notification())
    assert not delivery.ok
    assert delivery.attempts == 1 and delivery.error == "HTTP 401"
    assert [r.signed for r in server.received] == [False]


def test_webhook_retries_5xx_with_exponential_backoff_until_it_is_accepted() -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    policy = RetryPolicy(attempts=5, backoff=0.05, timeout=2.0, deadline=10.0)
    with webhook_server(statuses=[500, 503, 429]) as server:
        channel = open_channel(f"webhook:{server.url}", retry=policy, key=KEY)
        delivery = channel.send(notification(), sleep=sleep)
    assert delivery.ok and delivery.attempts == 4
    assert waits == [0.05, 0.1, 0.2]
    assert len(server.received) == 4 and all(r.signed for r in server.received)
    # One delivery id across the retries lets the receiver drop duplicates.
    assert len({r.headers[DELIVERY_HEADER] for r in server.received}) == 1


def test_webhook_gives_up_after_its_attempts_and_reports_it() -> None:
    policy = RetryPolicy(attempts=3, backoff=0.01, timeout=2.0, deadline=10.0)
    with webhook_server(statuses=[500] * 10) as server:
        delivery = open_channel(f"webhook:{server.url}", retry=policy, key=KEY).send(notification())
    assert not delivery.ok
    assert delivery.attempts == 3 and delivery.error == "HTTP 500"
    assert len(server.received) == 3


def test_a_webhook_that_is_down_fails_without_raising_or_leaking_its_url() -> None:
    url = down_url()
    policy = RetryPolicy(attempts=3, backoff=0.01, timeout=1.0, deadline=10.0)
    delivery = open_channel(f"webhook:{url}", retry=policy, key=KEY).send(notification())
    assert not delivery.ok and delivery.attempts == 3
    assert delivery.error is not None and delivery.error.startswith("ConnectError")
    assert "s3cr3t" not in delivery.error and "s3cr3t" not in delivery.channel


def test_a_hanging_webhook_is_bounded_by_the_deadline() -> None:
    policy = RetryPolicy(attempts=50, backoff=0.1, timeout=0.3, deadline=1.0)
    with webhook_server(hang=True) as server:
        started = time.monotonic()
        delivery = open_channel(f"webhook:{server.url}", retry=policy, key=KEY).send(notification())
        spent = time.monotonic() - started
    assert not delivery.ok
    assert delivery.error is not None and "Timeout" in delivery.error
    assert 1 < delivery.attempts < 5
    assert spent < 3.0


# --------------------------------------------------------------------------- log


def test_the_log_channel_logs_at_the_alerts_severity(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="loopml.alerts")
    channel = open_channel("log")
    assert channel.send(notification(severity="critical")).ok
    assert channel.send(notification(severity="info", stage="escalate", count=3)).ok
    first, second = caplog.records
    assert first.levelno == logging.CRITICAL
    assert "fraud: drift detected in amount" in first.getMessage()
    assert "a" * 32 in first.getMessage()
    # An escalation is never quieter than an error.
    assert second.levelno == logging.ERROR and "escalated" in second.getMessage()


# --------------------------------------------------------------------------- email


def test_email_reaches_a_real_smtp_server() -> None:
    with smtp_server() as mailbox:
        smtp = SmtpSettings(host="127.0.0.1", port=mailbox.port, sender="loopml@example.com")
        channel = open_channel("email:ops@example.com", retry=FAST, smtp=smtp)
        delivery = channel.send(notification(severity="critical", stage="escalate"))
    assert delivery.ok and delivery.attempts == 1
    ((sender, recipients, message),) = mailbox.messages
    assert sender == "loopml@example.com" and recipients == ["ops@example.com"]
    assert message["Subject"] == "[loopml escalated critical] fraud: drift detected in amount"
    body = message.get_payload(decode=True).decode()
    assert "loopml alerts ack " + "a" * 32 in body
    assert '"psi_max": 0.31' in body


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_logs_in_with_the_environments_credentials_and_never_shows_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(login=("alerts", "hunter2-secret")) as mailbox:
        config = {"host": "127.0.0.1", "port": mailbox.port, "from": "loopml@example.com"}
        good = smtp_settings(
            config, {"LOOPML_SMTP_USER": "alerts", "LOOPML_SMTP_PASSWORD": "hunter2-secret"}
        )
        bad = smtp_settings(config, {"LOOPML_SMTP_USER": "alerts", "LOOPML_SMTP_PASSWORD": "wrong"})
        assert good is not None and bad is not None
        sent = open_channel("email:ops@example.com", retry=FAST, smtp=good).send(notification())
        refused = open_channel("email:ops@example.com", retry=FAST, smtp=bad).send(notification())
    assert sent.ok and len(mailbox.messages) == 1
    # A refused login is final: retrying the same password cannot help.
    assert not refused.ok and refused.attempts == 1
    assert refused.error is not None and "Authentication" in refused.error
    assert "hunter2" not in repr(good) and "hunter2" not in caplog.text
    assert "wrong" not in (refused.error or "")


def test_email_to_a_server_that_is_down_fails_after_retries() -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=free_port(), sender="loopml@example.com")
    policy = RetryPolicy(attempts=2, backoff=0.01, timeout=1.0, deadline=5.0)
    delivery = open_channel("email:ops@example.com", retry=policy, smtp=smtp).send(notification())
    assert not delivery.ok and delivery.attempts == 2
    assert delivery.error is not None and "Connection" in delivery.error


# --------------------------------------------------------------------------- specs and settings


def test_channel_specs_parse_and_webhooks_hide_their_path() -> None:
    assert parse_channel("log") == ("log", "")
    assert parse_channel("webhook:https://hooks.example.com/ml") == (
        "webhook",
        "https://hooks.example.com/ml",
    )
    assert parse_channel("email:ops@example.com") == ("email", "ops@example.com")
    shown = describe("webhook:https://hooks.slack.com/services/T0/B0/s3cr3t")
    assert shown.startswith("webhook:https://hooks.slack.com/...#") and "s3cr3t" not in shown
    assert shown != describe("webhook:https://hooks.slack.com/services/T0/B0/other")
    assert describe("email:ops@example.com") == "email:ops@example.com"


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        ("pager:ops", "unknown channel"),
        ("", "not a channel"),
        ("webhook:ftp://example.com/x", "http(s) URL"),
        ("webhook:hooks.example.com", "http(s) URL"),
        ("email:not-an-address", "not an email address"),
        ("log:extra", "unknown channel"),
    ],
)
def test_bad_channel_specs_say_what_is_wrong(spec: str, mentions: str) -> None:
    with pytest.raises(InputError, match=mentions.replace("(", r"\(").replace(")", r"\)")):
        parse_channel(spec)


def test_a_bad_webhook_spec_does_not_echo_its_secret_path() -> None:
    with pytest.raises(InputError) as caught:
        parse_channel("webhook:ftp://example.com/s3cr3t")
    assert "s3cr3t" not in str(caught.value)


def test_email_needs_smtp_settings_and_a_webhook_needs_a_key() -> None:
    with pytest.raises(InputError, match="no SMTP server"):
        open_channel("email:ops@example.com")
    with pytest.raises(InputError, match="signing key"):
        open_channel("webhook:https://hooks.example.com/ml")


def test_smtp_settings_come_from_the_file_and_the_login_from_the_environment() -> None:
    assert smtp_settings(None, {}) is None
    found = smtp_settings(
        {"host": "mail.example.com", "port": 587, "from": "ml@example.com", "starttls": True},
        {"LOOPML_SMTP_USER": "u", "LOOPML_SMTP_PASSWORD": "p"},
    )
    assert found == SmtpSettings("mail.example.com", 587, "ml@example.com", True, "u", "p")
    assert "'p'" not in repr(found)
    overridden = smtp_settings({"host": "h"}, {"LOOPML_SMTP_STARTTLS": "true"})
    assert overridden is not None and overridden.starttls and overridden.user is None


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ({"host": "h", "password": "x"}, "LOOPML_SMTP_PASSWORD"),
        ({"port": 25}, "smtp.host"),
        ({"host": "h", "port": "25"}, "smtp.port"),
        ({"host": "h", "from": "nobody"}, "smtp.from"),
        ({"host": "h", "starttls": "yes"}, "smtp.starttls"),
        (["h"], "mapping"),
    ],
)
def test_bad_smtp_settings_name_the_field(config: Any, mentions: str) -> None:
    with pytest.raises(SpecError) as caught:
        smtp_settings(config, {})
    assert mentions in str(caught.value)


def test_the_retry_policy_comes_from_the_alerts_settings() -> None:
    assert retry_policy(None) == RetryPolicy()
    policy = retry_policy({"attempts": 2, "backoff": 1, "deadline": 3})
    assert (policy.attempts, policy.backoff, policy.deadline) == (2, 1, 3)
    assert RetryPolicy(attempts=6, backoff=1, max_backoff=5).delays() == [1, 2, 4, 5, 5]
    for bad, mentions in [
        ({"retries": 3}, "unknown key"),
        ({"attempts": 0}, "attempts"),
        ({"timeout": "5s"}, "alerts.timeout"),
        ({"backoff": -1}, "alerts.backoff"),
    ]:
        with pytest.raises(SpecError, match=mentions):
            retry_policy(bad)
