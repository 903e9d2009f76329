"""The HTML report: one self-contained file that reads offline, well formed, escaped."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from loopml.evaluate import report as html_report
from loopml.evaluate.gates import Gates

from .conftest import Trained

SVG_NAMESPACE = 'xmlns="http://www.w3.org/2000/svg"'
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr"}


class Structure(HTMLParser):
    """Counts tags, checks that every opened element is closed in order, keeps the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.opened: Counter[str] = Counter()
        self.problems: list[str] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.opened[tag] += 1
        self.attributes += attrs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.opened[tag] += 1  # <line .../> in SVG: complete as it is
        self.attributes += attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Structure:
    parser = Structure()
    parser.feed(html)
    parser.close()
    return parser


def assert_self_contained(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered and "<link" not in lowered and "<iframe" not in lowered
    assert "https://" not in lowered
    # The only URL is the SVG namespace, which is a name, never fetched.
    assert lowered.count("http://") == html.count(SVG_NAMESPACE)
    assert "url(" not in lowered and "@import" not in lowered
    structure = parse(html)
    assert not any(name in {"src", "href"} for name, _ in structure.attributes)


def test_the_report_reads_offline_with_its_charts_inline(binary: Trained, tmp_path: Path) -> None:
    ws = binary.ws
    found = ws.evaluate("m@1", sensitive=["cat"], slices=["cat"])
    values = found.summary["values"]
    gates = Gates({"roc_auc": ">= 0.99", "accuracy": 0.5}).check("binary", values)

    written = ws.evaluations.write_report(found, tmp_path / "out" / "report.html", gates=gates)

    assert written == tmp_path / "out" / "report.html"
    assert [p.name for p in written.parent.iterdir()] == ["report.html"]  # no partial left
    html = written.read_text(encoding="utf-8")
    assert_self_contained(html)
    structure = parse(html)
    assert structure.problems == [] and structure.stack == []
    # Reliability, by threshold, selection rate by cat, robustness drops.
    assert structure.opened["svg"] == 4 == html.count(SVG_NAMESPACE)
    assert structure.opened["table"] >= 7  # gates, metrics, confusion, thresholds, slices...
    text = " ".join(" ".join(structure.text).split())
    assert "Evaluation of m@1" in text and "d@1" in text and "holdout:m@1" in text
    assert found.id in text
    for name in ("roc_auc", "accuracy", "log_loss"):
        assert name in text and f"{values[name]:.4g}" in text
    assert f"{values['demographic_parity_difference']:.4g}" in text
    assert f"{values['brier']:.4g}" in text
    # The gates' outcomes, failing and passing.
    assert re.search(r"roc_auc\s*\S+\s*>= 0.99\s*FAIL", text)
    assert re.search(r"accuracy\s*\S+\s*>= 0.5\s*pass", text)
    # The model card rides along.
    assert "Model card" in text and binary.ws.actor in text


def test_values_from_users_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    report = {
        "model": f"m@1{hostile}",
        "task": "regression",
        "flavor": "sklearn",
        "target": hostile,
        "data": {"ref": "t@1", "split": "all", "rows": 10, "rows_without_label": 0},
        "metrics": {"rows": 10, "rmse": 1.5, "mae": 1.0, "mape": 0.1, "r2": None},
        "slices": {"region": [{"value": hostile, "rows": 10, "rmse": 1.5}]},
        "fairness": {
            hostile: {
                "threshold": 0.5,
                "groups": {
                    hostile: {"count": 4, "selection_rate": 0.5, "accuracy": 1.0},
                    "b": {"count": 6, "selection_rate": 0.25, "accuracy": 0.5},
                },
                "demographic_parity_difference": 0.25,
                "equalized_odds_difference": None,
            }
        },
        "robustness": None,
        "id": "e1",
        "created_at": "2026-01-01T00:00:00",
        "by": "someone",
    }

    html = html_report.render(report, card={"intended_use": hostile, "owner": "a&b"})

    assert_self_contained(html)
    assert "&lt;script&gt;" in html
    structure = parse(html)
    assert structure.problems == [] and structure.stack == []
    assert structure.opened["svg"] == 1  # selection rate by group; no robustness chart
    text = " ".join(structure.text)
    assert hostile in text and "a&b" in text  # shown as text, never as markup
    assert "rmse" in text and "n/a" in text  # an undefined R² reads n/a
    assert "Threshold table" not in text
