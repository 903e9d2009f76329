"""Model cards: owner, intended use, limits, lineage, metrics and fairness, from the records."""

from __future__ import annotations

import pytest

from loopml.errors import NotFound
from loopml.evaluate.cards import markdown

from .conftest import LOGISTIC, Trained

USE = "Rank card transactions for a fraud analyst's review queue."
LIMITS = "Not for credit decisions; trained on synthetic data."


def test_a_card_says_who_what_from_where_how_well_and_what_for(binary: Trained) -> None:
    ws = binary.ws
    version = ws.models.get("m@1")
    bare = ws.evaluations.card("m@1")
    assert bare["owner"] == version.owner == ws.actor
    assert "not written" in bare["intended_use"] and "not written" in bare["limitations"]
    assert bare["evaluation"] is None and bare["fairness"] == {} and bare["gates"] is None
    text = markdown(bare)
    assert "Not evaluated yet" in text and "Not measured" in text

    ws.evaluations.set_card("m@1", intended_use=USE, limitations=LIMITS)
    found = ws.evaluate("m@1", sensitive=["cat"], check_robustness=False)
    card = ws.evaluations.card("m@1")

    assert (card["model"], card["version"], card["id"]) == ("m", 1, version.id)
    assert (card["intended_use"], card["limitations"]) == (USE, LIMITS)
    assert card["lineage"]["run"] == version.run_id
    assert ws.runs.get(version.run_id).id == version.run_id
    assert card["lineage"]["data"] == ["d@1"] and card["lineage"]["target"] == "y"
    assert card["inputs"] == ["x1: double", "x2: double", "cat: string"]
    assert card["training_metrics"] == dict(version.metrics)
    assert card["evaluation"]["id"] == found.id
    assert card["evaluation"]["values"] == dict(found.summary["values"])
    fairness = card["fairness"]["cat"]
    assert (
        fairness["demographic_parity_difference"]
        == (found.summary["values"]["demographic_parity_difference"])
    )
    assert {"a", "b", "c"} <= set(fairness["groups"])
    edits = ws.audit.ls(action="model.card", target="model:m@1")
    assert edits[0].details == {"intended_use": USE, "limitations": LIMITS}
    assert edits[0].actor == ws.actor

    text = markdown(card)
    assert text.startswith("# Model card: m@1\n")
    assert f"- Owner: {ws.actor}" in text
    assert f"## Intended use\n\n{USE}\n" in text and f"## Limitations\n\n{LIMITS}\n" in text
    assert f"- Run {version.run_id}, target `y`" in text and "- Data: d@1" in text
    assert f"roc_auc {version.metrics['roc_auc']:.4f}" in text
    assert f"Evaluation {found.id[:12]} on d@1 (holdout:m@1, 200 rows)" in text
    assert "- cat (" in text and "demographic parity difference" in text

    # None keeps a field; a later version inherits the text until it writes its own.
    ws.evaluations.set_card("m@1", limitations="Retrain monthly.")
    assert ws.evaluations.card("m@1")["intended_use"] == USE
    ws.train("m", "d@1", "y", model=LOGISTIC, params={"C": 0.5})
    inherited = ws.evaluations.card("m@2")
    assert (inherited["intended_use"], inherited["limitations"]) == (USE, "Retrain monthly.")
    assert inherited["evaluation"] is None  # m@1's evaluation is not m@2's
    ws.evaluations.set_card("m@2", intended_use="Second opinion only.")
    assert ws.evaluations.card("m@2")["intended_use"] == "Second opinion only."
    assert ws.evaluations.card("m@1")["intended_use"] == USE
    with pytest.raises(NotFound):
        ws.evaluations.card("m@9")
    with pytest.raises(NotFound):
        ws.evaluations.set_card("m@9", intended_use="x")
