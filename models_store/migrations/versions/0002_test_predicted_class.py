"""Test points keep the registered head's predicted class (for GET /models/{id}/test-points).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("test_points", sa.Column("predicted_class", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("test_points") as batch:
        batch.drop_column("predicted_class")
