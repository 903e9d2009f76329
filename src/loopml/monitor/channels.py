"""Where alerts go: the log, a webhook (a signed HTTP POST) and email (SMTP).

A channel is written in a rule as a spec string: ``log``, ``webhook:https://...`` or
``email:ops@example.com``. ``open_channel`` turns one into a ``Channel`` whose
``send()`` delivers one ``Notification``, retrying with exponential backoff inside a
bounded time, and reports the outcome as a ``Delivery``: it never raises, so a webhook
that is down can never break the caller. Running deliveries off the caller's thread
is the job of ``loopml.monitor.alerts``.

A webhook's body is the notification as JSON. Receivers check two headers::

    X-Loopml-Timestamp: 1764400000
    X-Loopml-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">

with the workspace's ``webhook`` secret (``LOOPML_WEBHOOK_KEY`` or ``keys/webhook.key``);
``verify_signature`` does it, and refuses a timestamp older than five minutes, so a
captured request cannot be replayed later. ``X-Loopml-Delivery`` stays the same across
the retries of one delivery, so a receiver can drop duplicates.

Email goes through the SMTP server that ``workspace.yaml`` names::

    smtp: {host: smtp.example.com, port: 587, from: loopml@example.com, starttls: true}

with the login from ``LOOPML_SMTP_USER`` and ``LOOPML_SMTP_PASSWORD``; the password is
never written to a file, a log or an error message.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import ssl
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from loopml.errors import InputError, SpecError

logger = logging.getLogger("loopml.alerts")

SIGNATURE_HEADER = "X-Loopml-Signature"
TIMESTAMP_HEADER = "X-Loopml-Timestamp"
DELIVERY_HEADER = "X-Loopml-Delivery"
REPLAY_TOLERANCE_S = 300.0

KINDS = ("log", "webhook", "email")
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


@dataclass(frozen=True)
class Notification:
    """What a channel sends about one alert.

    Attributes:
        alert_id: the alert's id (``loopml alerts ack ID``).
        model: the model the alert is about.
        rule: the rule's name.
        severity: ``info``, ``warning`` or ``critical``.
        message: one line for people.
        details: the rule, the observed value and the observation.
        count: how many times the alert has fired while open.
        first_at: when it first fired.
        stage: ``notify`` (first notice) or ``escalate`` (nobody acknowledged it in time).
    """

    alert_id: str
    model: str
    rule: str
    severity: str
    message: str
    details: Mapping[str, Any]
    count: int
    first_at: datetime
    stage: str = "notify"

    def subject(self) -> str:
        """A one-line title, such as ``[loopml warning] fraud: drift detected``."""
        prefix = "[loopml escalated" if self.stage == "escalate" else "[loopml"
        return f"{prefix} {self.severity}] {self.message}"

    def payload(self) -> dict[str, Any]:
        """The notification as a JSON-ready mapping (a webhook's body)."""
        return {
            "alert": self.alert_id,
            "model": self.model,
            "rule": self.rule,
            "severity": self.severity,
            "stage": self.stage,
            "message": self.message,
            "count": self.count,
            "first_at": self.first_at.isoformat(),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Delivery:
    """How one delivery went.

    Attributes:
        channel: the channel, as safe to show (a webhook's path is hidden).
        ok: whether the channel accepted the notification.
        attempts: the tries made, retries included.
        error: the last failure, when not ok.
        seconds: the time spent, waits between retries included.
    """

    channel: str
    ok: bool
    attempts: int
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """How a channel retries a failed delivery.

    Attributes:
        attempts: the most tries in all (1 means no retry).
        backoff: the wait before the first retry, in seconds; it doubles each time.
        max_backoff: the longest single wait.
        timeout: the time allowed for one try (connect plus response).
        deadline: the most time one delivery may take in all; no try starts after it.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 5.0
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise SpecError("alerts.attempts must be at least 1")
        for name in ("backoff", "max_backoff", "timeout", "deadline"):
            if getattr(self, name) < 0 or (name == "timeout" and self.timeout == 0):
                raise SpecError(f"alerts.{name} must be positive")

    def delays(self) -> list[float]:
        """The waits before each retry: ``backoff``, doubled each time, up to ``max_backoff``."""
        return [min(self.backoff * 2**i, self.max_backoff) for i in range(self.attempts - 1)]


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server that sends alert email.

    Attributes:
        host: the server's host name.
        port: its port (25, 465 for SMTPS, 587 for submission with STARTTLS).
        sender: the ``From`` address.
        starttls: upgrade the connection with STARTTLS before logging in.
        user: the login, from ``LOOPML_SMTP_USER``; None sends without logging in.
        password: from ``LOOPML_SMTP_PASSWORD``; never shown.
    """

    host: str
    port: int = 25
    sender: str = "loopml@localhost"
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_channel(spec: str) -> tuple[str, str]:
    """Split and check a channel spec: ``log``, ``webhook:URL`` or ``email:ADDRESS``.

    Returns:
        The kind and its target (empty for ``log``).

    Raises:
        InputError: an unknown kind, a webhook URL that is not http(s), or a bad address.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(
            f"channel {spec!r} is not a channel",
            hint="write log, webhook:https://host/path or email:name@example.com",
        )
    kind, _, target = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "log" and not target:
        return kind, ""
    if kind == "webhook":
        parts = urlsplit(target)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InputError(
                f"channel {describe(spec)!r}: the webhook needs an http(s) URL",
                hint="write webhook:https://hooks.example.com/ml",
            )
        return kind, target
    if kind == "email":
        if not _EMAIL.fullmatch(target):
            raise InputError(
                f"channel {spec!r}: {target!r} is not an email address",
                hint="write email:ops@example.com",
            )
        return kind, target
    raise InputError(
        f"unknown channel {describe(spec)!r}",
        hint="write log, webhook:https://host/path or email:name@example.com",
    )


def describe(spec: str) -> str:
    """A channel spec as safe to log and store: a webhook's path and query are hidden.

    Webhook URLs often carry their secret in the path (Slack's do), so only the host is
    shown, with a short hash that still tells two webhooks on one host apart.
    """
    kind, _, target = str(spec).strip().partition(":")
    if kind.lower() != "webhook":
        return str(spec).strip()
    parts = urlsplit(target)
    digest = hashlib.sha256(target.encode()).hexdigest()[:8]
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"webhook:{parts.scheme}://{host}{port}/...#{digest}"


def smtp_settings(
    config: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> SmtpSettings | None:
    """The SMTP settings from the workspace file's ``smtp`` section and the environment.

    Args:
        config: the ``smtp`` mapping (``host``, ``port``, ``from``, ``starttls``), or None.
        environ: where ``LOOPML_SMTP_USER``, ``LOOPML_SMTP_PASSWORD`` and
            ``LOOPML_SMTP_STARTTLS`` come from; ``os.environ`` by default.

    Returns:
        The settings, or None when no ``smtp`` section names a host.

    Raises:
        SpecError: the section is malformed or holds a password.
    """
    env = os.environ if environ is None else environ
    if not config:
        return None
    if not isinstance(config, Mapping):
        raise SpecError("workspace.yaml: smtp must be a mapping with host, port and from")
    known = {"host", "port", "from", "starttls"}
    unknown = sorted(set(config) - known)
    if unknown:
        hint = "known keys: from, host, port, starttls"
        if {"password", "user"} & set(unknown):
            hint = "set LOOPML_SMTP_USER and LOOPML_SMTP_PASSWORD in the environment instead"
        raise SpecError(f"workspace.yaml: smtp: unknown key(s) {', '.join(unknown)}", hint=hint)
    host = config.get("host")
    if not isinstance(host, str) or not host:
        raise SpecError("workspace.yaml: smtp.host is missing", hint="name the SMTP server")
    port = config.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SpecError(f"workspace.yaml: smtp.port {port!r} is not a port number")
    sender = config.get("from", "loopml@localhost")
    if not isinstance(sender, str) or not _EMAIL.fullmatch(sender.split("<")[-1].rstrip(">")):
        raise SpecError(f"workspace.yaml: smtp.from {sender!r} is not an email address")
    starttls = config.get("starttls", False)
    if "LOOPML_SMTP_STARTTLS" in env:
        starttls = env["LOOPML_SMTP_STARTTLS"].strip().lower() in {"1", "true", "yes"}
    if not isinstance(starttls, bool):
        raise SpecError("workspace.yaml: smtp.starttls must be true or false")
    return SmtpSettings(
        host=host,
        port=port,
        sender=sender,
        starttls=starttls,
        user=env.get("LOOPML_SMTP_USER") or None,
        password=env.get("LOOPML_SMTP_PASSWORD") or None,
    )


def retry_policy(config: Mapping[str, Any] | None) -> RetryPolicy:
    """The retry policy from the workspace file's ``alerts`` section.

    ``alerts: {attempts: 5, backoff: 0.5, max_backoff: 30, timeout: 5, deadline: 60}``;
    every key is optional.

    Raises:
        SpecError: an unknown key or a value that is not a positive number.
    """
    if not config:
        return RetryPolicy()
    if not isinstance(config, Mapping):
        raise SpecError("workspace.yaml: alerts must be a mapping")
    known = {"attempts", "backoff", "max_backoff", "timeout", "deadline"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise SpecError(
            f"workspace.yaml: alerts: unknown key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"workspace.yaml: alerts.{key} must be a number, not {value!r}")
    values = dict(config)
    if "attempts" in values:
        values["attempts"] = int(values["attempts"])
    return RetryPolicy(**values)


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    key: bytes,
    body: bytes,
    timestamp: str | int,
    signature: str,
    *,
    tolerance: float = REPLAY_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is authentic and fresh: what a receiver should check.

    Args:
        key: the workspace's webhook secret.
        body: the raw request body, as received.
        timestamp: the ``X-Loopml-Timestamp`` header.
        signature: the ``X-Loopml-Signature`` header.
        tolerance: the largest age (or clock skew) accepted, in seconds.
        now: the current Unix time; the clock by default.

    Example:
        >>> ok = verify_signature(key, request.body, request.headers[TIMESTAMP_HEADER],
        ...                       request.headers[SIGNATURE_HEADER])
    """
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(key, body, stamp), str(signature))


class Channel(ABC):
    """One place alerts go. ``send`` retries as its policy says and never raises."""

    kind: ClassVar[str]

    def __init__(self, spec: str, retry: RetryPolicy) -> None:
        self.spec = spec
        self.retry = retry

    @property
    def name(self) -> str:
        """The channel as safe to log and store."""
        return describe(self.spec)

    def _secret_text(self) -> str:
        """Text that must not appear in an error message (a webhook's full URL)."""
        return ""

    def _session(self) -> AbstractContextManager[Any]:
        """What the tries of one delivery share (an HTTP client); nothing by default."""
        return nullcontext()

    @abstractmethod
    def _attempt(self, notification: Notification, delivery_id: str, session: Any) -> None:
        """Try once; raise ``_Permanent`` for a failure that a retry cannot fix."""

    def send(
        self, notification: Notification, *, sleep: Callable[[float], None] = time.sleep
    ) -> Delivery:
        """Deliver ``notification``, retrying with exponential backoff within the deadline.

        Returns:
            How it went; failures are reported here, never raised.
        """
        started = time.monotonic()
        delivery_id = uuid.uuid4().hex
        delays = self.retry.delays()
        attempts = 0
        error: str | None = None
        try:
            with self._session() as session:
                while True:
                    attempts += 1
                    try:
                        self._attempt(notification, delivery_id, session)
                    except _Permanent as exc:
                        error = str(exc)
                        break
                    except _Transient as exc:
                        error = str(exc)
                    except Exception as exc:  # any failure is reported, never raised
                        error = _safe_error(exc, self._secret_text(), self.name)
                    else:
                        return Delivery(self.name, True, attempts, None, time.monotonic() - started)
                    if attempts > len(delays):
                        break
                    wait = delays[attempts - 1]
                    if time.monotonic() - started + wait >= self.retry.deadline:
                        break
                    sleep(wait)
        except Exception as exc:  # opening or closing the session failed
            error = _safe_error(exc, self._secret_text(), self.name)
        return Delivery(self.name, False, attempts, error, time.monotonic() - started)


class _Permanent(Exception):
    """A failure that retrying cannot fix (a 4xx answer, a refused recipient)."""


class _Transient(Exception):
    """A failure worth retrying (a 5xx answer, 429)."""


def _safe_error(exc: BaseException, hide: str = "", shown: str = "") -> str:
    """One short line naming ``exc``'s type, with ``hide`` (a secret URL) replaced by ``shown``."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if hide:
        text = text.replace(hide, shown)
    return f"{type(exc).__name__}: {text}".rstrip(": ")[:300]


class LogChannel(Channel):
    """Writes the alert to the ``loopml.alerts`` logger, at a level that matches its severity."""

    kind = "log"

    def _attempt(self, notification: Notification, delivery_id: str, session: Any) -> None:
        level = _LOG_LEVELS.get(notification.severity, logging.WARNING)
        if notification.stage == "escalate":
            level = max(level, logging.ERROR)
        logger.log(
            level,
            "%s (alert %s, %s, seen %d time%s)",
            notification.subject(),
            notification.alert_id,
            notification.rule,
            notification.count,
            "" if notification.count == 1 else "s",
        )


class WebhookChannel(Channel):
    """POSTs the notification as JSON, signed with HMAC-SHA256 over a timestamp and the body.

    Retries connection failures, timeouts, 5xx and 429 answers; another 4xx answer is
    final (the receiver refused the request; sending it again will not help).
    """

    kind = "webhook"

    def __init__(self, spec: str, retry: RetryPolicy, key: bytes) -> None:
        super().__init__(spec, retry)
        self.url = parse_channel(spec)[1]
        self._key = key

    def _secret_text(self) -> str:
        return self.url

    def _session(self) -> AbstractContextManager[Any]:
        import httpx

        return httpx.Client(
            timeout=self.retry.timeout, follow_redirects=False, verify=_tls_context()
        )

    def _attempt(self, notification: Notification, delivery_id: str, session: Any) -> None:
        import orjson

        body = orjson.dumps(notification.payload(), default=str)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "loopml-alerts",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self._key, body, stamp),
            DELIVERY_HEADER: delivery_id,
        }
        response = session.post(self.url, content=body, headers=headers)
        if response.status_code < 300:
            return
        reason = f"HTTP {response.status_code}"
        if response.status_code >= 500 or response.status_code in {408, 429}:
            raise _Transient(reason)
        raise _Permanent(reason)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (the system's trusted CAs) for every delivery: loading the CAs
    takes longer than a delivery to a nearby receiver."""
    return ssl.create_default_context()


class EmailChannel(Channel):
    """Sends the notification by email through the workspace's SMTP server."""

    kind = "email"

    def __init__(self, spec: str, retry: RetryPolicy, smtp: SmtpSettings) -> None:
        super().__init__(spec, retry)
        self.to = parse_channel(spec)[1]
        self.smtp = smtp

    def _attempt(self, notification: Notification, delivery_id: str, session: Any) -> None:
        import smtplib
        from email.message import EmailMessage
        from email.utils import make_msgid

        message = EmailMessage()
        message["Subject"] = notification.subject()
        message["From"] = self.smtp.sender
        message["To"] = self.to
        message["Message-ID"] = make_msgid(idstring=delivery_id)
        message.set_content(_email_body(notification))
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.retry.timeout) as smtp:
                if self.smtp.starttls:
                    smtp.starttls(context=_tls_context())
                if self.smtp.user:
                    smtp.login(self.smtp.user, self.smtp.password or "")
                smtp.send_message(message)
        except (
            smtplib.SMTPAuthenticationError,
            smtplib.SMTPRecipientsRefused,
            smtplib.SMTPSenderRefused,
            smtplib.SMTPNotSupportedError,
        ) as exc:
            raise _Permanent(_safe_error(exc)) from None


def _email_body(notification: Notification) -> str:
    import orjson

    details = orjson.dumps(
        notification.details, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ).decode()
    action = "was not acknowledged in time" if notification.stage == "escalate" else "fired"
    return (
        f"{notification.message}\n\n"
        f"Alert {notification.alert_id} ({notification.severity}) {action}.\n"
        f"Model: {notification.model}\nRule: {notification.rule}\n"
        f"First seen: {notification.first_at.isoformat()}, "
        f"{notification.count} time(s) since.\n\n"
        f"Acknowledge it with: loopml alerts ack {notification.alert_id}\n\n"
        f"Details:\n{details}\n"
    )


def open_channel(
    spec: str,
    *,
    retry: RetryPolicy | None = None,
    key: bytes | None = None,
    smtp: SmtpSettings | None = None,
) -> Channel:
    """The channel a spec names, ready to send.

    Args:
        spec: ``log``, ``webhook:URL`` or ``email:ADDRESS``.
        retry: how to retry; the defaults when None.
        key: the HMAC key for a webhook.
        smtp: the SMTP settings for email.

    Raises:
        InputError: the spec is malformed, a webhook has no key, or email has no SMTP
            settings.
    """
    kind, _ = parse_channel(spec)
    policy = retry or RetryPolicy()
    if kind == "log":
        return LogChannel(spec, policy)
    if kind == "webhook":
        if not key:
            raise InputError(f"channel {describe(spec)!r} needs a signing key")
        return WebhookChannel(spec, policy, key)
    if smtp is None:
        raise InputError(
            f"channel {spec!r}: no SMTP server is configured",
            hint="add smtp: {host: ..., port: ..., from: ...} to workspace.yaml",
        )
    return EmailChannel(spec, policy, smtp)
