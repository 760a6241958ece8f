"""Runs, points, conductance maps and inference results.

The schema labctl made before it had migrations; a database made then is
stamped with this revision when it is opened.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("procedure", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("station_name", sa.String(128), nullable=False),
        sa.Column("station_snapshot", sa.JSON(), nullable=False),
        sa.Column("chip_name", sa.String(128), nullable=False),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("csv_path", sa.Text(), nullable=True),
        sa.Column("predicted_bench_s", sa.Float(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    for column in ("procedure", "status", "started_at", "chip_name"):
        op.create_index(op.f(f"ix_runs_{column}"), "runs", [column])

    op.create_table(
        "points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_points_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points")),
    )
    op.create_index("ix_points_run_seq", "points", ["run_id", "seq"])

    op.create_table(
        "conductance_maps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("array", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("read_voltage_v", sa.Float(), nullable=True),
        sa.Column("values_s", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_conductance_maps_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conductance_maps")),
    )
    op.create_index(op.f("ix_conductance_maps_run_id"), "conductance_maps", ["run_id"])

    op.create_table(
        "inference_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_inference_results_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inference_results")),
    )
    op.create_index(op.f("ix_inference_results_run_id"), "inference_results",
                    ["run_id"])


def downgrade() -> None:
    for table in ("inference_results", "conductance_maps", "points", "runs"):
        op.drop_table(table)
