"""The initial tables: api keys, models, jobs, train/test points, self-scores.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False, index=True),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("num_classes", sa.Integer, nullable=False),
        sa.Column("num_outputs", sa.Integer, nullable=False),
        sa.Column("feature_dim", sa.Integer, nullable=True),
        sa.Column("input_dim", sa.Integer, nullable=True),
        sa.Column("n_train", sa.Integer, nullable=False),
        sa.Column("n_test", sa.Integer, nullable=False),
        sa.Column("methods", sa.JSON, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("queue", sa.String(50), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("ready_at", TS, nullable=True),
        sa.Column("diagnostics", sa.JSON, nullable=True),
        sa.Column("result_dir", sa.String(500), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_table(
        "train_points",
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("train_index", sa.Integer, primary_key=True),
        sa.Column("train_id", sa.String(200), nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("predicted_class", sa.Integer, nullable=False),
        sa.Column("record", sa.JSON, nullable=True),
    )
    op.create_table(
        "test_points",
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("test_index", sa.Integer, primary_key=True),
        sa.Column("test_id", sa.String(200), nullable=False),
        sa.Column("label", sa.Integer, nullable=True),
        sa.Column("record", sa.JSON, nullable=True),
    )
    op.create_index(
        "ix_test_points_model_test_id", "test_points", ["model_id", "test_id"], unique=True
    )
    op.create_table(
        "scores",
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("method", sa.String(20), primary_key=True),
        sa.Column("train_index", sa.Integer, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_scores_rank", "scores", ["model_id", "method", sa.text("score DESC"), "train_index"]
    )


def downgrade() -> None:
    op.drop_index("ix_scores_rank", table_name="scores")
    op.drop_table("scores")
    op.drop_index("ix_test_points_model_test_id", table_name="test_points")
    op.drop_table("test_points")
    op.drop_table("train_points")
    op.drop_table("jobs")
    op.drop_table("models")
    op.drop_table("api_keys")
