"""The schema comes from Alembic revisions shipped with the package, and they
build exactly the models, on SQLite and on PostgreSQL."""

import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from labctl import storage

TABLES = {"runs", "points", "conductance_maps", "inference_results", "stations",
          "instrument_identities", "chips", "chip_arrays", "cells", "cell_events",
          "programming_log"}


def migrate(url, *steps):
    """Run Alembic commands on the database, in one transaction."""
    engine = storage.open_engine(url)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        storage.lock_schema(conn)
        config = storage.alembic_config()
        config.attributes["connection"] = conn
        for step, revision in steps:
            getattr(command, step)(config, revision)
        conn.commit()
    engine.dispose()


def differences(url):
    engine = storage.open_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        found = compare_metadata(context, storage.Base.metadata)
    engine.dispose()
    return found


def tables(url):
    engine = storage.open_engine(url)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names()) - {"alembic_version"}
    engine.dispose()
    return names


def test_upgrade_head_on_an_empty_database_builds_the_models(any_db):
    migrate(any_db, ("upgrade", "head"))
    assert tables(any_db) == TABLES
    assert differences(any_db) == []


def test_downgrade_to_base_and_up_again(any_db):
    migrate(any_db, ("upgrade", "head"), ("downgrade", "base"))
    assert tables(any_db) == set()
    migrate(any_db, ("upgrade", "head"))
    assert differences(any_db) == []


def test_opening_upgrades_and_keeps_the_rows_of_an_older_schema(any_db):
    migrate(any_db, ("upgrade", storage.BASELINE))
    engine = storage.open_engine(any_db)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO runs (id, procedure, parameters, status, started_at, "
            "station_name, station_snapshot, chip_name, software_version, host, pid) "
            "VALUES (1, 'read_map', '{}', 'finished', '2024-05-01 10:00:00', 'demo', "
            "'{}', 'PVK', '0.1.0', 'h', 1)"))
        conn.execute(text("INSERT INTO points (run_id, seq, data) "
                          "VALUES (1, 0, '{\"a\": 1}')"))
        # made before labctl had migrations: no version table
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    engine = storage.connect(any_db)
    assert storage.current_revision(engine) == storage.head_revision()
    run = storage.get_run(engine, 1)
    assert (run.procedure, run.operator, run.resumes) == ("read_map", "", 0)
    assert storage.run_points(engine, 1) == [{"a": 1}]
    assert differences(any_db) == []


def test_the_head_storage_knows_is_the_newest_revision():
    assert storage.HEAD == storage.head_revision()


def test_opening_twice_upgrades_once(any_db):
    storage.connect(any_db)
    revision = storage.current_revision(storage.connect(any_db))
    assert revision == storage.head_revision()


def test_a_database_of_a_newer_labctl_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    storage.connect(url)
    engine = storage.open_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9001'"))
    engine.dispose()
    with pytest.raises(storage.StorageError, match="newer than this labctl's") as info:
        storage.connect(url)
    assert "\n" not in str(info.value)


def test_the_alembic_command_runs_the_shipped_revisions(tmp_path):
    database = tmp_path / "runs.sqlite"
    ini = storage.MIGRATIONS / "alembic.ini"
    env = {**os.environ, "LABCTL_DB": str(database)}
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout
    assert tables(f"sqlite:///{database}") == TABLES


def test_the_revisions_ship_inside_the_package():
    shipped = {p.name for p in storage.MIGRATIONS.rglob("*")
               if "__pycache__" not in p.parts}
    assert {"env.py", "script.py.mako", "alembic.ini"} <= shipped
    assert storage.MIGRATIONS.parent.name == "labctl"
