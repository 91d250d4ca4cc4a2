"""Label-error rankings: suggested label and probability per score, ranking status per model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scores", sa.Column("suggested_label", sa.Integer, nullable=True))
    op.add_column("scores", sa.Column("label_error_probability", sa.Float, nullable=True))
    op.add_column("models", sa.Column("rankings", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("rankings")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("label_error_probability")
        batch.drop_column("suggested_label")
