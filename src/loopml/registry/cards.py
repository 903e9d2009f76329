"""What a model card says that the records cannot: intended use and known limits.

The rest of a card (owner, lineage, signature, metrics, fairness) is read from the
records when the card is shown (``loopml.evaluate.cards``), so it never goes stale.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.context import Context
from loopml.records import ModelVersion
from loopml.registry.versions import resolve
from loopml.store.tables import model_cards


def card_text(conn: Connection, model: str, number: int) -> dict[str, str]:
    """The written part of a version's card: ``intended_use`` and ``limitations``.

    A version without its own text inherits the newest earlier version's.
    """
    row = conn.execute(
        sa.select(model_cards)
        .where(model_cards.c.model == model, model_cards.c.number <= number)
        .order_by(model_cards.c.number.desc())
        .limit(1)
    ).first()
    if row is None:
        return {"intended_use": "", "limitations": ""}
    return {"intended_use": row.intended_use, "limitations": row.limitations}


def set_card_text(
    ctx: Context,
    ref: str,
    *,
    intended_use: str | None = None,
    limitations: str | None = None,
) -> ModelVersion:
    """Write the intended use and limitations on a version's card (None keeps a field).

    Raises:
        NotFound: no such model or version.
    """
    with ctx.write() as conn:
        version = resolve(conn, ref)
        current = card_text(conn, version.model, version.number)
        values = {
            "intended_use": current["intended_use"] if intended_use is None else intended_use,
            "limitations": current["limitations"] if limitations is None else limitations,
        }
        conn.execute(
            model_cards.delete().where(
                model_cards.c.model == version.model, model_cards.c.number == version.number
            )
        )
        conn.execute(
            model_cards.insert().values(
                model=version.model,
                number=version.number,
                updated_by=ctx.actor,
                updated_at=datetime.now(UTC),
                **values,
            )
        )
        ctx.audit(conn, "model.card", f"model:{version.ref}", details=values)
        return version
