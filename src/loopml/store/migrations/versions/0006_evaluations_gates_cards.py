"""Stored evaluations, each model's promotion gates, and model cards.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("dataset_version", sa.Integer, nullable=False),
        sa.Column("dataset_id", sa.String(64), nullable=False),
        sa.Column("split", sa.String(50), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evaluations_model", "evaluations", ["model", "number"])
    op.create_table(
        "model_gates",
        sa.Column("model", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
        sa.Column("gates", sa.JSON, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_cards",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("intended_use", sa.Text, nullable=False),
        sa.Column("limitations", sa.Text, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_cards")
    op.drop_table("model_gates")
    op.drop_index("ix_evaluations_model", "evaluations")
    op.drop_table("evaluations")
