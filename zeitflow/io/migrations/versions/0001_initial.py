"""Initial schema: projects, runs, stage_outputs, channel_stats, datasets, models, metric_tables,
backfills, backfill_runs (stages.md §13).

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.String(36), nullable=False)


def upgrade() -> None:
    op.create_table(
        "projects",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_table(
        "runs",
        _id(),
        sa.Column("project_id", sa.String(36), nullable=True),
        sa.Column("partition", sa.String(64), nullable=True),
        sa.Column("flow_name", sa.String(200), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("deployment", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("parameters", _json(), nullable=True),
        sa.Column("parameters_hash", sa.String(64), nullable=True),
        sa.Column("code_version", sa.String(100), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(
            "status IN ('running', 'paused', 'completed', 'failed', 'cancelled')", name="ck_runs_status"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_runs_project_id_projects", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_runs_project_id", "runs", ["project_id"])
    op.create_index("ix_runs_flow_run_id", "runs", ["flow_run_id"])
    op.create_index("ix_runs_flow_name_partition", "runs", ["flow_name", "partition"])

    op.create_table(
        "stage_outputs",
        _id(),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("output_name", sa.String(200), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("columns", _json(), nullable=False),
        sa.Column("first_utc", _ts(), nullable=True),
        sa.Column("last_utc", _ts(), nullable=True),
        sa.Column("parameters_hash", sa.String(64), nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(100), nullable=False),
        sa.Column("report", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stage_outputs"),
        sa.UniqueConstraint(
            "stage", "parameters_hash", "inputs_hash", "code_version", "output_name",
            name="uq_stage_outputs_natural_key",
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_stage_outputs_run_id_runs"),
    )
    op.create_index("ix_stage_outputs_run_id", "stage_outputs", ["run_id"])
    op.create_index(
        "ix_stage_outputs_cache", "stage_outputs", ["stage", "parameters_hash", "inputs_hash", "code_version"]
    )

    op.create_table(
        "channel_stats",
        sa.Column("stage_output_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(500), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("numeric", sa.BigInteger(), nullable=True),
        sa.Column("numeric_share_percent", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("step_median_minutes", sa.Float(), nullable=True),
        sa.Column("step_min_minutes", sa.Float(), nullable=True),
        sa.Column("step_max_minutes", sa.Float(), nullable=True),
        sa.Column("offset_minutes", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("stage_output_id", "channel", name="pk_channel_stats"),
        sa.ForeignKeyConstraint(
            ["stage_output_id"], ["stage_outputs.id"], name="fk_channel_stats_stage_output_id_stage_outputs",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "datasets",
        _id(),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("input_channels", _json(), nullable=False),
        sa.Column("output_channels", _json(), nullable=False),
        sa.Column("n_in", sa.Integer(), nullable=False),
        sa.Column("n_out", sa.Integer(), nullable=False),
        sa.Column("stride_minutes", sa.Float(), nullable=False),
        sa.Column("offset_minutes", sa.Float(), nullable=False),
        sa.Column("window_options", _json(), nullable=False),
        sa.Column("time_feature_options", _json(), nullable=True),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_val", sa.Integer(), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column("reference_start", _ts(), nullable=True),
        sa.Column("reference_end", _ts(), nullable=True),
        sa.Column("source_output_ids", _json(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("run_id", "name", name="uq_datasets_run_id_name"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_datasets_run_id_runs"),
    )
    op.create_index("ix_datasets_run_id", "datasets", ["run_id"])

    op.create_table(
        "models",
        _id(),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("scalers_uri", sa.Text(), nullable=True),
        sa.Column("epochs_run", sa.Integer(), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("trained_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("run_id", "name", name="uq_models_run_id_name"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_models_run_id_runs"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_models_dataset_id_datasets"),
    )
    op.create_index("ix_models_run_id", "models", ["run_id"])
    op.create_index("ix_models_dataset_id", "models", ["dataset_id"])

    op.create_table(
        "metric_tables",
        _id(),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("table", sa.String(16), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("json_uri", sa.Text(), nullable=True),
        sa.Column("summary", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_metric_tables"),
        sa.UniqueConstraint("model_id", "table", name="uq_metric_tables_model_id_table"),
        sa.CheckConstraint("\"table\" IN ('overall', 'per_step', 'reasons')", name="ck_metric_tables_table"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_metric_tables_model_id_models", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_metric_tables_model_id", "metric_tables", ["model_id"])

    op.create_table(
        "backfills",
        _id(),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("start", sa.String(64), nullable=False),
        sa.Column("end", sa.String(64), nullable=False),
        sa.Column("reprocess", sa.String(16), nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("reverse", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("runs", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backfills"),
        sa.CheckConstraint("reprocess IN ('none', 'failed', 'all')", name="ck_backfills_reprocess"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')", name="ck_backfills_status"
        ),
    )
    op.create_index("ix_backfills_deployment", "backfills", ["deployment"])

    op.create_table(
        "backfill_runs",
        sa.Column("backfill_id", sa.String(36), nullable=False),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("backfill_id", "partition", name="pk_backfill_runs"),
        sa.ForeignKeyConstraint(
            ["backfill_id"], ["backfills.id"], name="fk_backfill_runs_backfill_id_backfills",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("backfill_runs")
    op.drop_table("backfills")
    op.drop_table("metric_tables")
    op.drop_table("models")
    op.drop_table("datasets")
    op.drop_table("channel_stats")
    op.drop_table("stage_outputs")
    op.drop_index("ix_runs_flow_name_partition", table_name="runs")
    op.drop_table("runs")
    op.drop_table("projects")
