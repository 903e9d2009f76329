"""``ws.evaluations``: evaluate versions, read reports and cards, gate and promote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopml.context import Context
from loopml.evaluate import cards, evaluation, promotion, report
from loopml.evaluate.gates import GateResult, Gates, get_gates, set_gates
from loopml.records import Evaluation, ModelVersion
from loopml.registry import cards as registry_cards
from loopml.registry import versions


class EvaluationsAPI:
    """Evaluations, reports, model cards, gates and promotion.

    Example:
        >>> found = ws.evaluations.run("fraud@3", sensitive=["age_band"])
        >>> ws.evaluations.write_report(found, "fraud-3.html")
        >>> ws.evaluations.set_gates("fraud", {"roc_auc": ">= 0.9"})
        >>> ws.evaluations.promote("fraud", 3)
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def run(self, ref: str, data: str | None = None, **options: Any) -> Evaluation:
        """Evaluate a version and store the result (see ``evaluation.evaluate``)."""
        return evaluation.evaluate(self._ctx, ref, data, **options)

    def ls(self, model: str, number: int | None = None) -> list[Evaluation]:
        """A model's evaluations (of one version), newest first."""
        with self._ctx.read() as conn:
            versions.resolve(conn, model)  # NotFound for an unknown model
            return evaluation.list_for(conn, model, number)

    def get(self, evaluation_id: str) -> Evaluation:
        """One evaluation by id (or a unique prefix)."""
        with self._ctx.read() as conn:
            return evaluation.get(conn, evaluation_id)

    def report(self, found: Evaluation | str) -> dict[str, Any]:
        """The whole stored result, verified against its hash."""
        found = found if isinstance(found, Evaluation) else self.get(found)
        return evaluation.read_report(self._ctx, found)

    def write_report(
        self, found: Evaluation | str, path: str | Path, gates: Sequence[GateResult] = ()
    ) -> Path:
        """Write the evaluation's self-contained HTML report (with the model card)."""
        found = found if isinstance(found, Evaluation) else self.get(found)
        html = report.render(self.report(found), gates=gates, card=self.card(found.model_ref))
        return report.write(path, html)

    def set_gates(
        self,
        model: str,
        gates: Gates | Mapping[str, Any],
        *,
        sensitive: Sequence[str] = (),
        slices: Sequence[str] = (),
    ) -> Gates:
        """Declare a model's promotion gates (the spec's form, or a ``Gates``)."""
        if not isinstance(gates, Gates):
            gates = Gates.from_spec(gates, sensitive=sensitive, slices=slices)
        return set_gates(self._ctx, model, gates)

    def gates(self, model: str) -> Gates | None:
        """A model's declared gates, or None."""
        with self._ctx.read() as conn:
            return get_gates(conn, versions.resolve(conn, model).model)

    def check(self, ref: str) -> list[GateResult]:
        """Check a version against its model's gates without promoting it."""
        return promotion.check(self._ctx, ref)[1]

    def promote(
        self,
        model: str,
        number: int,
        *,
        alias: str = "champion",
        force: bool = False,
        reason: str = "",
    ) -> promotion.Promotion:
        """Point ``alias`` at a version that passes the gates (see ``promotion.promote``)."""
        return promotion.promote(self._ctx, model, number, alias=alias, force=force, reason=reason)

    def rollback(
        self, model: str, alias: str = "champion", *, reason: str = ""
    ) -> promotion.Promotion:
        """Move ``alias`` back to the version it pointed at before."""
        return promotion.rollback(self._ctx, model, alias, reason=reason)

    def card(self, ref: str) -> dict[str, Any]:
        """The version's model card, assembled from the records."""
        return cards.card(self._ctx, ref)

    def set_card(
        self, ref: str, *, intended_use: str | None = None, limitations: str | None = None
    ) -> ModelVersion:
        """Write a version's intended use and limitations."""
        return registry_cards.set_card_text(
            self._ctx, ref, intended_use=intended_use, limitations=limitations
        )
