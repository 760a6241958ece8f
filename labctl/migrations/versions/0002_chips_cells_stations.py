"""Chips, cells and their history; stations and instrument identities.

Runs gain who ran them, the simulated bench's seed, their station and chip,
and how often they were resumed; a run's points are unique by number.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
STATUSES = ("queued", "running", "finished", "failed", "aborted", "interrupted")


def upgrade() -> None:
    create_stations()
    create_chips()
    extend_runs()
    create_cells()
    with op.batch_alter_table("points") as batch:
        batch.drop_index("ix_points_run_seq")
        batch.create_index("ix_points_run_seq", ["run_id", "seq"], unique=True)


def create_stations() -> None:
    op.create_table(
        "stations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stations")),
        sa.UniqueConstraint("name", name=op.f("uq_stations_name")),
    )
    op.create_table(
        "instrument_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("manufacturer", sa.String(128), nullable=False),
        sa.Column("reported_model", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("firmware", sa.String(64), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["stations.id"],
                                name=op.f("fk_instrument_identities_station_id_stations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_identities")),
        sa.UniqueConstraint("station_id", "name", "serial", "firmware",
                            name=op.f("uq_instrument_identities_station_id_name_serial_"
                                      "firmware")),
    )


def create_chips() -> None:
    op.create_table(
        "chips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("registered_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chips")),
        sa.UniqueConstraint("name", name=op.f("uq_chips_name")),
    )
    op.create_table(
        "chip_arrays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chip_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["chip_id"], ["chips.id"],
                                name=op.f("fk_chip_arrays_chip_id_chips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chip_arrays")),
        sa.UniqueConstraint("chip_id", "name",
                            name=op.f("uq_chip_arrays_chip_id_name")),
    )


def extend_runs() -> None:
    allowed = ", ".join(f"'{s}'" for s in STATUSES)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("operator", sa.String(128), server_default="",
                                   nullable=False))
        batch.add_column(sa.Column("seed", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("station_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("chip_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resumes", sa.Integer(), server_default="0",
                                   nullable=False))
        batch.create_foreign_key(op.f("fk_runs_station_id_stations"), "stations",
                                 ["station_id"], ["id"])
        batch.create_foreign_key(op.f("fk_runs_chip_id_chips"), "chips", ["chip_id"],
                                 ["id"])
        batch.create_check_constraint("status", f"status IN ({allowed})")
        batch.drop_index("ix_runs_procedure")
        batch.drop_index("ix_runs_chip_name")
        batch.create_index("ix_runs_chip_name_started_at", ["chip_name", "started_at"])
        batch.create_index("ix_runs_procedure_started_at", ["procedure", "started_at"])
        batch.create_index(op.f("ix_runs_station_id"), ["station_id"])
        batch.create_index(op.f("ix_runs_chip_id"), ["chip_id"])


def create_cells() -> None:
    op.create_table(
        "cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("array_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), server_default="analog", nullable=False),
        sa.Column("formed_at", WHEN, nullable=True),
        sa.Column("forming_compliance_a", sa.Float(), nullable=True),
        sa.Column("cycles", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pulses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_conductance_s", sa.Float(), nullable=True),
        sa.Column("last_verified_at", WHEN, nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("target_s", sa.Float(), nullable=True),
        sa.Column("programmed_run_id", sa.Integer(), nullable=True),
        sa.Column("programmed_at", WHEN, nullable=True),
        sa.Column("stuck", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["array_id"], ["chip_arrays.id"],
                                name=op.f("fk_cells_array_id_chip_arrays")),
        sa.ForeignKeyConstraint(["last_run_id"], ["runs.id"],
                                name=op.f("fk_cells_last_run_id_runs")),
        sa.ForeignKeyConstraint(["programmed_run_id"], ["runs.id"],
                                name=op.f("fk_cells_programmed_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cells")),
        sa.UniqueConstraint("array_id", "row", "col",
                            name=op.f("uq_cells_array_id_row_col")),
    )
    op.create_table(
        "cell_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("conductance_s", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["cell_id"], ["cells.id"],
                                name=op.f("fk_cell_events_cell_id_cells")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_cell_events_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cell_events")),
    )
    op.create_index("ix_cell_events_cell_at", "cell_events", ["cell_id", "at"])
    op.create_index(op.f("ix_cell_events_run_id"), "cell_events", ["run_id"])
    op.create_table(
        "programming_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("target_s", sa.Float(), nullable=False),
        sa.Column("final_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Float(), nullable=True),
        sa.Column("pulses", sa.Integer(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("converged", sa.Boolean(), nullable=False),
        sa.Column("stuck", sa.Boolean(), nullable=False),
        sa.Column("writes", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["cell_id"], ["cells.id"],
                                name=op.f("fk_programming_log_cell_id_cells")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_programming_log_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programming_log")),
    )
    op.create_index("ix_programming_log_cell_at", "programming_log", ["cell_id", "at"])
    op.create_index(op.f("ix_programming_log_run_id"), "programming_log", ["run_id"])


def downgrade() -> None:
    with op.batch_alter_table("points") as batch:
        batch.drop_index("ix_points_run_seq")
        batch.create_index("ix_points_run_seq", ["run_id", "seq"])
    for table in ("programming_log", "cell_events", "cells"):
        op.drop_table(table)
    with op.batch_alter_table("runs") as batch:
        for index in ("ix_runs_chip_id", "ix_runs_station_id",
                      "ix_runs_procedure_started_at", "ix_runs_chip_name_started_at"):
            batch.drop_index(index)
        batch.create_index("ix_runs_procedure", ["procedure"])
        batch.create_index("ix_runs_chip_name", ["chip_name"])
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.drop_constraint("fk_runs_chip_id_chips", type_="foreignkey")
        batch.drop_constraint("fk_runs_station_id_stations", type_="foreignkey")
        for column in ("resumes", "chip_id", "station_id", "seed", "operator"):
            batch.drop_column(column)
    for table in ("chip_arrays", "chips", "instrument_identities", "stations"):
        op.drop_table(table)
