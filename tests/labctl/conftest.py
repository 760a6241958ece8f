"""Databases for the storage tests: a SQLite file, and PostgreSQL by URL.

``any_db`` runs a test on both. PostgreSQL needs ``LABCTL_TEST_POSTGRES_URL``
(``postgresql+psycopg://user@host:port/database``, a user who may create
databases); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import storage

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("LABCTL_TEST_POSTGRES_URL")
NO_POSTGRES = ("PostgreSQL not tested: set LABCTL_TEST_POSTGRES_URL to a database URL "
               "(postgresql+psycopg://user@127.0.0.1:PORT/db) whose user may create "
               "databases; .ci/run starts such a server")


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database URL: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite'}"
        return
    # A server database keeps its CSVs under the working folder.
    monkeypatch.chdir(tmp_path)
    yield from postgres_database()


def postgres_database() -> Iterator[str]:
    """A new database on the test server, dropped after use."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with storage.throwaway_database(POSTGRES_URL, "labctl_test") as url:
        yield url


@pytest.fixture
def spawn():
    """Start ``labctl ARGS`` in a process of its own, from this checkout."""

    def labctl(*args: str, cwd: Path, **popen: object) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        return subprocess.Popen([sys.executable, "-m", "labctl.cli", *args], cwd=cwd,
                                env=env, **popen)

    return labctl
