"""The evaluation report as one self-contained HTML file.

Everything is inline: the styles, and the charts as SVG. There are no scripts and no
links to fetch, so the file reads offline, from an email attachment or an archive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopml.errors import InputError
from loopml.evaluate import _svg
from loopml.evaluate.gates import GateResult

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation of {{ r.model }}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
.pass { color: #2a7d2a; } .fail { color: #b22; font-weight: bold; }
.charts svg { margin: 0 1em 1em 0; border: 1px solid #eee; }
.muted { color: #777; }
</style></head><body>
<h1>Evaluation of {{ r.model }}</h1>
<p>A {{ r.task }} model ({{ r.flavor }}), scored on <b>{{ r.data.ref }}</b>
({{ r.data.split }}, {{ r.data.rows }} rows{% if r.data.rows_without_label %};
{{ r.data.rows_without_label }} without a label left out{% endif %}).
Target <code>{{ r.target }}</code>. Evaluation {{ r.id }} by {{ r.by }} at {{ r.created_at }}.</p>

{% if gates %}<h2>Gates</h2>
<table><tr><th class="name">gate</th><th>measured</th><th>required</th><th>result</th></tr>
{% for g in gates %}<tr><td class="name">{{ g.gate }}</td><td>{{ fmt(g.measured) }}</td>
<td>{{ g.required }}</td><td class="{{ 'pass' if g.passed else 'fail' }}">
{{ 'pass' if g.passed else 'FAIL' }}</td></tr>{% endfor %}</table>{% endif %}

<h2>Metrics</h2>
<table><tr>{% for k, v in headline %}<th>{{ k }}</th>{% endfor %}</tr>
<tr>{% for k, v in headline %}<td>{{ fmt(v) }}</td>{% endfor %}</tr></table>

{% if r.metrics.confusion_matrix %}<h3>Confusion matrix</h3>
<table><tr><th class="name">true \\ predicted</th>
{% for label in r.metrics.confusion_matrix.labels %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in r.metrics.confusion_matrix.matrix %}<tr>
<th class="name">{{ r.metrics.confusion_matrix.labels[loop.index0] }}</th>
{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}

<div class="charts">{% for chart in charts %}{{ chart | safe }}{% endfor %}</div>

{% if r.metrics.calibration %}<p>Brier score: {{ fmt(r.metrics.calibration.brier) }}</p>{% endif %}

{% if r.metrics.thresholds %}<h3>Threshold table</h3>
<table><tr><th>threshold</th><th>tp</th><th>fp</th><th>tn</th><th>fn</th>
<th>precision</th><th>recall</th><th>f1</th></tr>
{% for t in r.metrics.thresholds %}<tr><td>{{ t.threshold }}</td><td>{{ t.tp }}</td>
<td>{{ t.fp }}</td><td>{{ t.tn }}</td><td>{{ t.fn }}</td><td>{{ fmt(t.precision) }}</td>
<td>{{ fmt(t.recall) }}</td><td>{{ fmt(t.f1) }}</td></tr>{% endfor %}</table>{% endif %}

{% for column, rows in r.slices.items() %}<h3>Slices by {{ column }}</h3>
<table><tr>{% for k in rows[0].keys() %}<th>{{ k }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for v in row.values() %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endfor %}

{% if r.fairness %}<h2>Fairness</h2>{% endif %}
{% for column, f in r.fairness.items() %}<h3>By {{ column }}</h3>
<p>Demographic parity difference {{ fmt(f.demographic_parity_difference) }};
equalized odds difference {{ fmt(f.equalized_odds_difference) }}
(decisions at score &ge; {{ f.threshold }}).</p>
<table><tr><th class="name">group</th><th>count</th><th>selection rate</th><th>accuracy</th>
<th>TPR</th><th>FPR</th></tr>
{% for group, m in f.groups.items() %}<tr><td class="name">{{ group }}</td><td>{{ m.count }}</td>
<td>{{ fmt(m.selection_rate) }}</td><td>{{ fmt(m.accuracy) }}</td>
<td>{{ fmt(m.true_positive_rate) }}</td><td>{{ fmt(m.false_positive_rate) }}</td></tr>
{% endfor %}</table>{% endfor %}

{% if r.robustness %}<h2>Robustness</h2>
<p>{{ r.robustness.metric }} on {{ r.robustness.rows }} rows: {{ fmt(r.robustness.baseline) }}
as they are. A positive drop is a loss.</p>
<table><tr><th class="name">perturbation</th><th>{{ r.robustness.metric }}</th><th>drop</th></tr>
{% for name in perturbations %}<tr><td class="name">{{ name }}</td>
<td>{{ fmt(r.robustness[name].value) }}</td><td>{{ fmt(r.robustness[name].drop) }}</td></tr>
{% endfor %}</table>{% endif %}

{% if card %}<h2>Model card</h2>
<table>{% for k, v in card %}<tr><th class="name">{{ k }}</th>
<td class="name">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
<p class="muted">Made by loopml; reads offline.</p>
</body></html>
"""

_PERTURBATIONS = ("gaussian_noise", "missing_values", "category_perturbation")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def charts(report: Mapping[str, Any]) -> list[str]:
    """The report's SVG charts: reliability, precision and recall by threshold,
    selection rate per group, and the robustness drops."""
    out = []
    metrics = report.get("metrics", {})
    calibration = metrics.get("calibration")
    if calibration and calibration.get("reliability"):
        points = [(b["mean_score"], b["observed_rate"]) for b in calibration["reliability"]]
        out.append(
            _svg.line_chart(
                "Reliability",
                {"observed": points},
                "mean predicted",
                "observed rate",
                diagonal=True,
            )
        )
    thresholds = metrics.get("thresholds")
    if thresholds:
        series = {
            name: [(t["threshold"], t[name]) for t in thresholds]
            for name in ("precision", "recall", "f1")
        }
        out.append(_svg.line_chart("By threshold", series, "threshold", "value"))
    for column, found in report.get("fairness", {}).items():
        bars = [(g, m.get("selection_rate")) for g, m in found["groups"].items()]
        out.append(_svg.bar_chart(f"Selection rate by {column}", bars, "selection rate"))
    robust = report.get("robustness")
    if robust:
        bars = [(name.replace("_", " "), robust[name]["drop"]) for name in _PERTURBATIONS]
        out.append(_svg.bar_chart(f"{robust['metric']} drop", bars, "drop"))
    return out


def render(
    report: Mapping[str, Any],
    *,
    gates: Sequence[GateResult] = (),
    card: Mapping[str, Any] | None = None,
) -> str:
    """The report as a self-contained HTML page."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    template = environment.from_string(_TEMPLATE)
    headline = [
        (k, v)
        for k, v in report.get("metrics", {}).items()
        if isinstance(v, int | float) or (v is None and k != "confusion_matrix")
    ]
    card_rows = [(k, _card_value(v)) for k, v in (card or {}).items()]
    return template.render(
        r=report,
        headline=headline,
        charts=charts(report),
        gates=[g.to_dict() for g in gates],
        card=card_rows,
        perturbations=_PERTURBATIONS,
        fmt=_fmt,
    )


def _card_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_card_value(v) for v in value)
    return _fmt(value)


def check_target(path: str | Path) -> Path:
    """Refuse a report path that cannot be written, before any work is done.

    Raises:
        InputError: the path is a folder, or its folder is a file.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target} is a folder", hint="name a file in it, such as report.html")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"cannot write {target}: {parent} is a file")
    return target


def write(path: str | Path, html: str) -> Path:
    """Write the page, creating its folder; the file appears whole or not at all.

    Raises:
        InputError: the path cannot be written (it names the path and the cause).
    """
    import os

    target = check_target(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(html, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {exc.strerror}") from exc
    return target
