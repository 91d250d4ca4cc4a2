"""Reviews of training points (per model, hence per tenant) and the refit lineage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("train_index", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False, index=True),
        sa.Column("train_id", sa.String(200), nullable=False),
        sa.Column("old_label", sa.Integer, nullable=False),
        sa.Column("new_label", sa.Integer, nullable=True),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("note", sa.String(2000), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.add_column("models", sa.Column("parent_id", sa.String(36), nullable=True))
    op.create_index("ix_models_parent_id", "models", ["parent_id"])
    op.create_index("ix_train_points_model_train_id", "train_points", ["model_id", "train_id"])


def downgrade() -> None:
    op.drop_index("ix_train_points_model_train_id", table_name="train_points")
    op.drop_index("ix_models_parent_id", table_name="models")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("parent_id")
    op.drop_table("reviews")
