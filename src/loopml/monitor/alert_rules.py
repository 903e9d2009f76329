"""Alert rules: what to watch in a monitoring observation, how loud, whom to tell.

A rule watches one value of an observation: a verdict such as ``drift`` or ``decay``
(it fires when true) or a metric such as ``psi_max`` or ``roc_auc`` compared with a
threshold. The spec writes rules as mappings, which ``parse_rules`` reads::

    monitor:
      alerts:
        - {on: drift, severity: warning, notify: [log, "webhook:https://hooks.example.com/ml"],
           escalate_after: 30m}
        - {on: roc_auc, threshold: "< 0.80", window: 1h, severity: critical,
           notify: ["email:risk-ml@example.com"], escalate_after: 15m,
           escalate_to: ["webhook:https://pager.example.com/loopml"]}

``loopml.monitor.alerts`` raises, deduplicates and escalates the alerts they fire.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from loopml.errors import InputError
from loopml.features.timeseries import parse_window
from loopml.monitor.channels import describe, parse_channel

SEVERITIES = ("info", "warning", "critical")
# Verdicts: an observation says true or false; a rule on one needs no threshold.
VERDICTS = ("drift", "decay")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_RULE_KEYS = (
    "name",
    "on",
    "threshold",
    "op",
    "window",
    "severity",
    "notify",
    "escalate_after",
    "escalate_to",
)
_MICROSECONDS = 1_000_000


class AlertRule:
    """When to raise an alert, how loud, whom to tell, and whom to tell next.

    Parameters are stored as given and checked by ``validate()`` (which
    ``evaluate_rules`` calls), so ``get_params()`` returns exactly what was written.

    Args:
        name: unique among a model's rules; the default is ``on`` for a verdict and
            ``"<on> <op> <threshold>"`` for a metric (``"roc_auc < 0.8"``).
        on: what to watch: ``drift`` or ``decay`` (a verdict), or a metric of the
            observation such as ``psi_max`` or ``roc_auc`` (a dotted path reaches into
            nested mappings: ``features.amount.psi``).
        threshold: the value that breaches; needed for a metric.
        op: which side of the threshold fires: ``>``, ``>=``, ``<`` or ``<=``.
        window: the stretch of traffic the value is measured over: a row count
            (``10000``) or a duration (``1h``). The rule only judges observations over
            that window (those with a ``window`` entry that differs are skipped);
            None judges every observation.
        severity: ``info``, ``warning`` or ``critical``.
        notify: channel specs to tell when the alert is raised: ``log``,
            ``webhook:https://...``, ``email:ops@example.com``.
        escalate_after: a duration (``30m``) after which an open, unacknowledged alert
            goes to ``escalate_to``; None never escalates.
        escalate_to: channel specs for escalation. Empty means the model's owner by
            email when SMTP is configured and the owner is an address, else the log.

    Example:
        >>> rule = AlertRule(on="psi_max", threshold=0.2, op=">", severity="warning",
        ...                  notify=["log"], escalate_after="30m")
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        on: str,
        threshold: float | None = None,
        op: str | None = None,
        window: int | str | None = None,
        severity: str = "warning",
        notify: Sequence[str] | str = ("log",),
        escalate_after: str | int | None = None,
        escalate_to: Sequence[str] | str = (),
    ) -> None:
        self.name = name
        self.on = on
        self.threshold = threshold
        self.op = op
        self.window = window
        self.severity = severity
        self.notify = notify
        self.escalate_after = escalate_after
        self.escalate_to = escalate_to

    def get_params(self) -> dict[str, Any]:
        """The parameters exactly as given, JSON-ready."""
        return {
            "name": self.name,
            "on": self.on,
            "threshold": self.threshold,
            "op": self.op,
            "window": self.window,
            "severity": self.severity,
            "notify": as_list(self.notify),
            "escalate_after": self.escalate_after,
            "escalate_to": as_list(self.escalate_to),
        }

    def __repr__(self) -> str:
        params = self.get_params()
        for field in ("notify", "escalate_to"):
            params[field] = [describe(spec) for spec in params[field]]
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if v not in (None, []))
        return f"AlertRule({shown})"

    @property
    def rule_name(self) -> str:
        """The rule's name: ``name``, or one made from what it watches."""
        if self.name:
            return str(self.name)
        if self.threshold is None:
            return str(self.on)
        if not is_number(self.threshold):
            return str(self.on)
        number = float(self.threshold)
        # Short (0.8, not 0.8000000000000000444), yet exact: two thresholds, two names.
        shown = f"{number:g}" if float(f"{number:g}") == number else repr(number)
        return f"{self.on} {self.op} {shown}"

    def validate(self) -> AlertRule:
        """Check every parameter; return the rule.

        Raises:
            InputError: a parameter is wrong; the message names the rule and the field.
        """
        label = self.rule_name if isinstance(self.on, str) and self.on else "?"

        def fail(field: str, problem: str, hint: str) -> InputError:
            return InputError(f"alert rule {label!r}: {field}: {problem}", hint=hint)

        if self.name is not None and (
            not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200
        ):
            raise fail("name", f"{self.name!r} is not a name", "a non-empty string, at most 200")
        if not isinstance(self.on, str) or not self.on.strip() or len(self.on) > 100:
            raise fail("on", f"{self.on!r} names nothing", "write drift, decay or a metric name")
        if self.threshold is not None and not (
            is_number(self.threshold) and math.isfinite(float(self.threshold))
        ):
            raise fail("threshold", f"{self.threshold!r} is not a number", "write, e.g., 0.2")
        if self.threshold is None and self.on not in VERDICTS:
            raise fail(
                "threshold",
                f"a rule on the metric {self.on!r} needs a threshold",
                "add threshold and op, e.g. threshold: 0.2, op: '>'",
            )
        if self.threshold is not None and self.op not in OPERATORS:
            raise fail(
                "op",
                f"{self.op!r} is not a comparison" if self.op else "say which side fires",
                "use one of >, >=, <, <= (e.g. op: '<' for roc_auc)",
            )
        if self.threshold is None and self.op is not None:
            raise fail("op", "given without a threshold", "add a threshold, or drop op")
        try:
            _window_key(self.window)
        except InputError as exc:
            raise fail("window", exc.message, "a row count (10000) or a duration (1h)") from None
        if self.severity not in SEVERITIES:
            raise fail("severity", f"{self.severity!r} is unknown", "use info, warning or critical")
        for field in ("notify", "escalate_to"):
            for spec in as_list(getattr(self, field)):
                try:
                    parse_channel(spec)
                except InputError as exc:
                    raise fail(field, exc.message, exc.hint or "") from None
        if self.escalate_after is not None:
            try:
                self.escalate_after_seconds()
            except InputError as exc:
                raise fail("escalate_after", exc.message, "a duration such as 30m") from None
        elif as_list(self.escalate_to):
            raise fail("escalate_to", "given without escalate_after", "add escalate_after: 30m")
        return self

    def escalate_after_seconds(self) -> float | None:
        """``escalate_after`` in seconds, or None."""
        if self.escalate_after is None:
            return None
        if is_number(self.escalate_after):
            if float(self.escalate_after) <= 0:
                raise InputError(f"{self.escalate_after!r} is not a positive number of seconds")
            return float(self.escalate_after)
        return parse_window(str(self.escalate_after)) / _MICROSECONDS

    def breached(self, value: Any) -> bool | None:
        """Whether ``value`` breaches the rule; None when it says nothing (missing, NaN).

        Raises:
            InputError: the value is not a number or a verdict.
        """
        if value is None:
            return None
        if not (is_number(value) or _is_bool(value)):
            raise InputError(
                f"alert rule {self.rule_name!r}: on: {self.on!r} is {type(value).__name__}, "
                "not a number or a verdict",
                hint="point the rule at a numeric metric, drift or decay",
            )
        number = float(value)
        if math.isnan(number):
            return None
        if self.threshold is None:
            return bool(number)
        return OPERATORS[str(self.op)](number, float(self.threshold))


def parse_rules(items: Sequence[Mapping[str, Any]] | None) -> list[AlertRule]:
    """Rules from the spec's ``monitor: alerts:`` list, validated.

    A threshold may carry its comparison: ``threshold: "< 0.8"`` is ``op: "<"`` with
    ``threshold: 0.8``. ``notify`` and ``escalate_to`` may be one spec or a list.

    Raises:
        InputError: an entry is not a mapping, has an unknown key, a bad value, or a
            name used twice; the message names the entry (``monitor.alerts[1]``) and field.
    """
    rules: list[AlertRule] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items or []):
        where = f"monitor.alerts[{index}]"
        if not isinstance(item, Mapping):
            raise InputError(
                f"{where}: expected a mapping, got {type(item).__name__}",
                hint="write {on: drift, severity: warning, notify: [log]}",
            )
        if True in item and "on" not in item:
            # A YAML 1.1 reader (PyYAML's safe_load) reads the key `on:` as True.
            item = {("on" if key is True else key): value for key, value in item.items()}
        unknown = sorted(set(map(str, item)) - set(_RULE_KEYS))
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(unknown)}",
                hint=f"known fields: {', '.join(_RULE_KEYS)}",
            )
        if "on" not in item:
            raise InputError(f"{where}: on: missing", hint="write on: drift, decay or a metric")
        params = dict(item)
        threshold = params.get("threshold")
        if isinstance(threshold, str):
            params["op"], params["threshold"] = _split_threshold(threshold, params.get("op"), where)
        try:
            rule = AlertRule(**params).validate()
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}", hint=exc.hint) from None
        if rule.rule_name in seen:
            raise InputError(
                f"{where}: name: {rule.rule_name!r} is also monitor.alerts[{seen[rule.rule_name]}]",
                hint="give one of them a distinct name",
            )
        seen[rule.rule_name] = index
        rules.append(rule)
    return rules


def as_list(value: Any) -> list[Any]:
    """One channel spec or a list of them, as a list (None as empty)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def is_number(value: Any) -> bool:
    """Whether ``value`` is a number (NumPy's included), not a bool or a string."""
    if _is_bool(value):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str | bytes)


def _split_threshold(text: str, op: Any, where: str) -> tuple[str, float]:
    """``"< 0.8"`` as ``("<", 0.8)``; a bare number keeps ``op``."""
    stripped = text.strip()
    found = next((o for o in (">=", "<=", ">", "<") if stripped.startswith(o)), None)
    number_text = stripped[len(found) :] if found else stripped
    try:
        number = float(number_text)
    except ValueError:
        raise InputError(
            f"{where}: threshold: {text!r} is not a number with a comparison",
            hint="write, e.g., threshold: '< 0.8' or threshold: 0.8 with op: '<'",
        ) from None
    if found and op is not None and op != found:
        raise InputError(f"{where}: op: {op!r} contradicts threshold {text!r}")
    return (found or op), number


def check_rules(rules: Sequence[AlertRule | Mapping[str, Any]]) -> list[AlertRule]:
    """Rules validated, mappings parsed as the spec writes them; names unique."""
    if isinstance(rules, AlertRule | Mapping | str):
        raise InputError("rules must be a list of rules", hint="wrap the rule in a list")
    checked: list[AlertRule] = []
    for index, rule in enumerate(rules):
        if isinstance(rule, AlertRule):
            checked.append(rule.validate())
        else:
            try:
                checked.extend(parse_rules([rule]))
            except InputError as exc:
                message = exc.message.replace("monitor.alerts[0]", f"monitor.alerts[{index}]")
                raise InputError(message, hint=exc.hint) from None
    names = [rule.rule_name for rule in checked]
    for name in names:
        if names.count(name) > 1:
            raise InputError(
                f"alert rule {name!r}: name: used by two rules",
                hint="give one of them a distinct name",
            )
    return checked


def _window_key(window: Any) -> tuple[str, float] | None:
    """A window as ("rows", n) or ("seconds", s), so ``"60m"`` equals ``"1h"``."""
    if window is None:
        return None
    if isinstance(window, timedelta):
        if window.total_seconds() <= 0:
            raise InputError(f"window {window} is empty")
        return ("seconds", window.total_seconds())
    if is_number(window):
        if float(window) != int(float(window)) or int(float(window)) < 1:
            raise InputError(f"window {window!r} is not a positive row count")
        return ("rows", float(int(float(window))))
    if isinstance(window, str):
        if window.strip().isdigit():
            return _window_key(int(window.strip()))
        return ("seconds", parse_window(window) / _MICROSECONDS)
    raise InputError(f"window {window!r} is neither a row count nor a duration")


def same_window(rule_window: Any, observed: Any) -> bool:
    """Whether a rule over ``rule_window`` judges an observation over ``observed``.

    A rule without a window judges every observation, and so is every rule judged on an
    observation that does not say its window; ``"60m"`` and ``"1h"`` are one window.
    """
    if rule_window is None or observed is None:
        return True
    try:
        return _window_key(rule_window) == _window_key(observed)
    except InputError:
        # An observation's own window is not the rule's to judge; apply the rule.
        return True


def lookup(observation: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (a key, or a dotted path into nested mappings), or None."""
    if path in observation:
        return observation[path]
    node: Any = observation
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
