"""The run database: every measured point is stored when it is measured.

SQLAlchemy 2.0 models in a SQLite file by default, or PostgreSQL by URL.
The default file is ``labctl.sqlite`` in the user's data folder; ``--db`` on
the command line or the ``LABCTL_DB`` environment variable override it (a
path or a SQLAlchemy URL). Opening a database upgrades its schema to the
newest Alembic revision shipped in :mod:`labctl.migrations`.

Beside the runs and their points, maps and inference results, the database
keeps the lab's things: chips with their arrays and cells (each cell's
present state and its history of reads, sweeps and programming), and
stations with the identities their instruments reported.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import socket
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    cast,
    column,
    create_engine,
    event,
    false,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger("labctl.storage")

#: Every status a run can have. ``queued`` is for runs planned but not started
#: (``labctl run --queue``, started by ``labctl runs start``); ``interrupted``
#: marks a run whose process ended without finishing it.
STATUSES = ("queued", "running", "finished", "failed", "aborted", "interrupted")
#: The statuses from which ``labctl runs resume`` continues a run.
RESUMABLE = ("interrupted", "aborted", "failed")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StorageError(RuntimeError):
    """A database that cannot be opened or written, in one line."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# The lab's things -----------------------------------------------------------


class StationRecord(Base):
    """A station by name, as runs have met it."""

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str | None] = mapped_column(Text)  # the station file last used
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InstrumentIdentity(Base):
    """What one instrument of a station reported (``*IDN?`` or its TSP node).

    A new serial number or firmware under the same name is a new row, so the
    history of swaps and updates stays.
    """

    __tablename__ = "instrument_identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    name: Mapped[str] = mapped_column(String(64))  # as in the station file
    model: Mapped[str] = mapped_column(String(32))  # as in the station file
    manufacturer: Mapped[str] = mapped_column(String(128))
    reported_model: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(64))
    firmware: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("station_id", "name", "serial", "firmware"),)

    @property
    def idn(self) -> str:
        """The identity as an ``*IDN?`` reply reads."""
        return ",".join((self.manufacturer, self.reported_model, self.serial,
                         self.firmware))


class ChipRecord(Base):
    """A chip by name (the ``name`` of its chip file)."""

    __tablename__ = "chips"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    preset: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ArrayRecord(Base):
    """One crossbar array of a chip."""

    __tablename__ = "chip_arrays"

    id: Mapped[int] = mapped_column(primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chips.id"))
    name: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    cols: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("chip_id", "name"),)


class CellRecord(Base):
    """One cell's present state; its history is in cell events and the
    programming log. A row exists once a run has touched the cell."""

    __tablename__ = "cells"

    id: Mapped[int] = mapped_column(primary_key=True)
    array_id: Mapped[int] = mapped_column(ForeignKey("chip_arrays.id"))
    row: Mapped[int] = mapped_column(Integer)
    col: Mapped[int] = mapped_column(Integer)
    #: analog (non-volatile weight), volatile, activation or exponential.
    mode: Mapped[str] = mapped_column(String(16), server_default="analog")
    formed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forming_compliance_a: Mapped[float | None] = mapped_column(Float)
    #: Full SET/RESET cycles of I–V sweeps.
    cycles: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Programming pulses applied, all runs together.
    pulses: Mapped[int] = mapped_column(Integer, server_default="0")
    last_conductance_s: Mapped[float | None] = mapped_column(Float)
    last_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    target_s: Mapped[float | None] = mapped_column(Float)
    programmed_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    programmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stuck: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (UniqueConstraint("array_id", "row", "col"),)


class CellEvent(Base):
    """A read or a sweep of one cell by one run."""

    __tablename__ = "cell_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))  # read, swept, formed
    conductance_s: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_cell_events_cell_at", "cell_id", "at"),)


class ProgrammingEntry(Base):
    """What write-verify of one cell took in one run."""

    __tablename__ = "programming_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    target_s: Mapped[float] = mapped_column(Float)
    #: None when the cell's last reading was not a number (an overflow).
    final_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)  # (final - target) / target
    pulses: Mapped[int] = mapped_column(Integer)
    rounds: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool] = mapped_column(Boolean)
    stuck: Mapped[bool] = mapped_column(Boolean)
    #: Write-verify passes the entry sums: 1, or a head run's tiles on the cell.
    writes: Mapped[int] = mapped_column(Integer, server_default="1")

    __table_args__ = (Index("ix_programming_log_cell_at", "cell_id", "at"),)


# Runs ------------------------------------------------------------------------


class Run(Base):
    """One procedure run on one station."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    station_name: Mapped[str] = mapped_column(String(128))
    station_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    chip_name: Mapped[str] = mapped_column(String(128))
    software_version: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    csv_path: Mapped[str | None] = mapped_column(Text)
    predicted_bench_s: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    operator: Mapped[str] = mapped_column(String(128), server_default="")
    #: The simulated bench's seed; None on real instruments.
    seed: Mapped[int | None] = mapped_column(Integer)
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"),
                                                   index=True)
    chip_id: Mapped[int | None] = mapped_column(ForeignKey("chips.id"), index=True)
    #: How often the run was continued by ``labctl runs resume``.
    resumes: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        CheckConstraint("status IN ({})".format(", ".join(f"'{s}'" for s in STATUSES)),
                        name="status"),
        Index("ix_runs_chip_name_started_at", "chip_name", "started_at"),
        Index("ix_runs_procedure_started_at", "procedure", "started_at"),
    )


class Point(Base):
    """One measured point of a run, in the procedure's data columns."""

    __tablename__ = "points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_points_run_seq", "run_id", "seq", unique=True),)


class ConductanceMap(Base):
    """A map of conductances (S) of an array's cells, read or targeted."""

    __tablename__ = "conductance_maps"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    array: Mapped[str] = mapped_column(String(64))
    #: read, target, programmed; tile-N (a head tile's programmed cells) and
    #: partial-N (its MAC readings of every token, not conductances)
    kind: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer)
    cols: Mapped[int] = mapped_column(Integer)
    read_voltage_v: Mapped[float | None] = mapped_column(Float)
    values_s: Mapped[bytes] = mapped_column(LargeBinary)  # float64, row-major

    def to_array(self) -> np.ndarray:
        return np.frombuffer(self.values_s, dtype="<f8").reshape(self.rows, self.cols)


class InferenceResult(Base):
    """The on-chip result of one inference item against its float reference."""

    __tablename__ = "inference_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    item: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


# What a run writes about cells ------------------------------------------------


@dataclass(frozen=True)
class CellRead:
    """A cell read at the read voltage."""

    array: str
    row: int
    col: int
    conductance_s: float


@dataclass(frozen=True)
class CellProgrammed:
    """A cell programmed by write-verify."""

    array: str
    row: int
    col: int
    target_s: float
    final_s: float
    pulses: int
    rounds: int
    converged: bool
    stuck: bool
    writes: int = 1  # write-verify passes summed (a head run: one per tile)


@dataclass(frozen=True)
class CellSwept:
    """Full I–V cycles swept on a cell."""

    array: str
    row: int
    col: int
    cycles: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellFormed:
    """A fresh cell formed under a current limit that chose its mode."""

    array: str
    row: int
    col: int
    compliance_a: float
    mode: str  # analog, volatile, activation or exponential
    conductance_s: float  # read right after forming
    detail: dict[str, Any] = field(default_factory=dict)


CellWrite = CellRead | CellProgrammed | CellSwept | CellFormed


@dataclass(frozen=True)
class MapWrite:
    """A conductance map to store with a run."""

    array: str
    kind: str
    values_s: np.ndarray
    read_voltage_v: float | None


# Opening ---------------------------------------------------------------------


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database on a PostgreSQL server, named ``prefix`` and a random
    suffix, dropped after use (for tests and benchmarks); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(server_url).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def default_url() -> str:
    """The database URL from ``LABCTL_DB`` or the user's data folder."""
    given = os.environ.get("LABCTL_DB")
    if given:
        return as_url(given)
    folder = Path(platformdirs.user_data_dir("labctl", appauthor=False))
    return as_url(str(folder / "labctl.sqlite"))


def as_url(path_or_url: str) -> str:
    """A SQLAlchemy URL from a URL or a SQLite file path (its folder is made)."""
    if "://" in path_or_url:
        return path_or_url
    path = Path(path_or_url).expanduser().resolve()
    if path.is_dir():
        raise StorageError(f"database {path} is a folder; give a file path or a URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"database {path}: cannot make its folder: {exc.strerror}") from None
    return f"sqlite:///{path}"


def redacted(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def connect(url: str | None = None) -> Engine:
    """Open the run database, creating it or upgrading its schema if needed."""
    url = url or default_url()
    try:
        engine = open_engine(url)
        upgrade(engine)
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StorageError(f"database {redacted(url)}: {reason}") from None
    return engine


def open_engine(url: str) -> Engine:
    """An engine for the URL, with labctl's SQLite settings; the schema is
    left as it is (:func:`connect` upgrades it)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (a second labctl, a notebook) never block the run that
    # writes, and the run never blocks them. NORMAL: a commit survives the
    # process being killed; only a power cut may lose the last commits, and
    # never the file's consistency.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Any:
    """The Alembic configuration of labctl's migrations (for ``command.*``)."""
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


#: The newest schema revision in :mod:`labctl.migrations` (a test holds the
#: two together). A database at it opens without loading Alembic at all.
HEAD = "0002"
#: The first revision: the schema labctl made before it had migrations.
BASELINE = "0001"


def head_revision() -> str:
    """The newest schema revision, as Alembic finds it in the migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> None:
    """Bring the schema to the head revision; a no-op when it is there.

    A database made before labctl had migrations is stamped with the
    baseline revision first, then upgraded like any other. Two processes
    opening a database at once upgrade it once: the second waits for the
    first, then finds nothing to do.
    """
    if current_revision(engine) == HEAD:
        return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:  # tables are rebuilt: their keys are checked once, at the end
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            lock_schema(conn)
            if _revision(conn) != HEAD:
                _migrate(conn)
            conn.commit()
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def lock_schema(conn: Connection) -> None:
    """Begin the transaction of a schema change; one process at a time."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7461636)")  # "labctl"


def _migrate(conn: Connection) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = conn
    where = redacted(str(conn.engine.url))
    found = _revision(conn)
    try:
        if found is None and inspect(conn).has_table("runs"):
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
    except CommandError as exc:
        if found is not None and found > HEAD:
            raise StorageError(f"database {where}: its schema is at revision {found}, "
                               f"newer than this labctl's {HEAD}; use a newer "
                               "labctl") from None
        raise StorageError(f"database {where}: {exc}") from None
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StorageError(f"after the upgrade, {len(broken)} rows point at rows "
                               "that do not exist")
    log.info("database %s upgraded to revision %s", redacted(str(conn.engine.url)),
             HEAD)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    """The schema revision in Alembic's version table; None without one."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    query = text(f"SELECT version_num FROM {VERSION_TABLE}")
    found = conn.execute(query).scalars().all()
    if len(found) > 1:
        raise StorageError(f"the schema is at several revisions at once: {found}")
    return found[0] if found else None


VERSION_TABLE = "alembic_version"


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite gives them back naive)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# Writing a run -----------------------------------------------------------------


class RunRecorder:
    """Writes one run: its row, its points, maps, results and cells."""

    def __init__(self, engine: Engine, run_id: int, arrays: dict[str, int],
                 next_seq: int = 0) -> None:
        self.engine = engine
        self.run_id = run_id
        #: Array name → row id, for the cells of the run's chip.
        self.arrays = arrays
        self._seq = next_seq
        self._cells: dict[tuple[str, int, int], int] = {}
        self._loaded: set[str] = set()

    @property
    def next_seq(self) -> int:
        return self._seq

    @classmethod
    def start(
        cls,
        engine: Engine,
        *,
        procedure: str,
        parameters: dict[str, Any],
        station_name: str,
        station_snapshot: dict[str, Any],
        chip_name: str,
        software_version: str,
        csv_path: str | None = None,
        operator: str = "",
        seed: int | None = None,
    ) -> RunRecorder:
        """Write the run's row (status ``running``) and register its station
        and chip; everything in one transaction."""
        snapshot = jsonable(station_snapshot)
        with Session(engine) as session:
            station_id = _register_station(session, station_name, snapshot)
            chip_id, arrays = _register_chip(session, chip_name,
                                             snapshot.get("chip_spec"))
            run = Run(
                procedure=procedure,
                parameters=jsonable(parameters),
                status="running",
                started_at=now(),
                station_name=station_name,
                station_snapshot=snapshot,
                chip_name=chip_name,
                software_version=software_version,
                csv_path=csv_path,
                host=socket.gethostname(),
                pid=os.getpid(),
                operator=operator,
                seed=seed,
                station_id=station_id,
                chip_id=chip_id,
            )
            session.add(run)
            session.commit()
            log.info("run %d started: %s on %s", run.id, procedure, station_name)
            return cls(engine, run.id, arrays)

    @classmethod
    def claim(
        cls,
        engine: Engine,
        run_id: int,
        *,
        station_snapshot: dict[str, Any],
        seed: int | None = None,
    ) -> RunRecorder:
        """Start a queued run: status ``running`` in this process, from now,
        with the station as its instruments just reported it.

        Only a ``queued`` run is taken, and only by one process.
        """
        snapshot = jsonable(station_snapshot)
        with Session(engine) as session:
            run = session.get(Run, run_id)
            if run is None or run.status != "queued":
                raise StorageError(f"run {run_id} is not queued")
            taken = session.execute(
                update(Run).where(Run.id == run_id, Run.status == "queued")
                .values(status="running", started_at=now(), station_snapshot=snapshot,
                        host=socket.gethostname(), pid=os.getpid(), seed=seed))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise StorageError(f"run {run_id} was started by another process")
            station_id = _register_station(session, run.station_name, snapshot)
            chip_id, arrays = _register_chip(session, run.chip_name,
                                             snapshot.get("chip_spec"))
            session.execute(update(Run).where(Run.id == run_id)
                            .values(station_id=station_id, chip_id=chip_id))
            session.commit()
        log.info("run %d started from the queue", run_id)
        return cls(engine, run_id, arrays)

    @classmethod
    def resume(cls, engine: Engine, run_id: int) -> RunRecorder:
        """Take up a stored run again: status ``running`` in this process, its
        points numbered on from the last one stored.

        Only a run whose status is one of :data:`RESUMABLE` is taken, and only
        by one process: a second that tries at the same time is refused.
        """
        with Session(engine) as session:
            taken = session.execute(
                update(Run).where(Run.id == run_id, Run.status.in_(RESUMABLE))
                .values(status="running", finished_at=None, message=None,
                        host=socket.gethostname(), pid=os.getpid(),
                        resumes=Run.resumes + 1))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise StorageError(f"run {run_id} is not there to resume: it is "
                                   "unknown, or no longer "
                                   f"{', '.join(RESUMABLE)}")
            chip_id = session.scalar(select(Run.chip_id).where(Run.id == run_id))
            last = session.scalar(select(func.max(Point.seq))
                                  .where(Point.run_id == run_id))
            rows = session.execute(select(ArrayRecord.name, ArrayRecord.id)
                                   .where(ArrayRecord.chip_id == chip_id))
            arrays = {name: id_ for name, id_ in rows}
            session.commit()
        log.info("run %d resumed after point %s", run_id, last)
        return cls(engine, run_id, arrays, 0 if last is None else last + 1)

    def set_csv_path(self, path: str) -> None:
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            assert run is not None
            run.csv_path = path
            session.commit()

    def write(
        self,
        points: Sequence[dict[str, Any]] = (),
        cells: Sequence[CellWrite] = (),
        maps: Sequence[MapWrite] = (),
    ) -> list[tuple[int, dict[str, Any]]]:
        """Store points, cell updates and maps in one transaction.

        Returns each point's sequence number and its data as stored. Nothing
        of it is stored if the transaction fails or the process dies before
        the commit.
        """
        at = now()
        stored = [(self._seq + i, jsonable(data)) for i, data in enumerate(points)]
        try:
            with self.engine.begin() as conn:
                if stored:
                    _insert_rows(conn, Point.__table__, [
                        {"run_id": self.run_id, "seq": seq, "data": data}
                        for seq, data in stored
                    ])
                if cells:
                    self._write_cells(conn, cells, at)
                if maps:
                    conn.execute(insert(ConductanceMap),
                                 [_map_row(self.run_id, m) for m in maps])
        except BaseException:
            self._cells.clear()  # cells made in the failed transaction are gone
            self._loaded.clear()
            raise
        self._seq += len(stored)
        return stored

    def add_point(self, data: dict[str, Any]) -> None:
        """Store one point and commit it at once."""
        self.write([data])

    def add_map(
        self, array: str, kind: str, values_s: np.ndarray, read_voltage_v: float | None
    ) -> None:
        self.write(maps=[MapWrite(array, kind, values_s, read_voltage_v)])

    def add_result(self, item: int, label: str, metrics: dict[str, Any]) -> None:
        with Session(self.engine) as session:
            session.add(InferenceResult(run_id=self.run_id, item=item, label=label,
                                        metrics=jsonable(metrics)))
            session.commit()

    def finish(
        self,
        status: str,
        message: str | None = None,
        summary: dict[str, Any] | None = None,
        predicted_bench_s: float | None = None,
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {STATUSES}")
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            assert run is not None
            run.status = status
            run.finished_at = now()
            run.message = message
            run.summary = jsonable(summary) if summary is not None else None
            run.predicted_bench_s = predicted_bench_s
            session.commit()
        log.info("run %d %s%s", self.run_id, status, f": {message}" if message else "")

    # Cells.

    def _write_cells(self, conn: Connection, cells: Sequence[CellWrite],
                     at: datetime) -> None:
        known = [c for c in cells if c.array in self.arrays]
        ids = self._cell_ids(conn, {(c.array, c.row, c.col) for c in known})
        by_kind: dict[type, list[tuple[int, CellWrite]]] = {}
        for cell in known:
            cell_id = ids[cell.array, cell.row, cell.col]
            by_kind.setdefault(type(cell), []).append((cell_id, cell))
        for kind, entries in by_kind.items():
            _CELL_WRITERS[kind](conn, self.run_id, at, entries)

    def _cell_ids(self, conn: Connection,
                  keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        """Row ids of the cells, made for those no run touched before."""
        for array in {a for a, _, _ in keys} - self._loaded:
            self._load_cells(conn, array)
        missing = keys - self._cells.keys()
        if missing:
            made = _insert_rows(conn, CellRecord.__table__, [
                {"array_id": self.arrays[a], "row": r, "col": c} for a, r, c in missing
            ], keep_existing=True, returning=("id", "array_id", "row", "col"))
            name_of = {id_: name for name, id_ in self.arrays.items()}
            self._cells.update({(name_of[a], r, c): id_ for id_, a, r, c in made})
            missing -= self._cells.keys()  # made meanwhile by another run
            for array in {a for a, _, _ in missing}:
                found = [(r, c) for a, r, c in missing if a == array]
                self._load_cells(conn, array, found)
        return self._cells

    def _load_cells(self, conn: Connection, array: str,
                    only: list[tuple[int, int]] | None = None) -> None:
        cells = CellRecord.__table__.c
        query = select(cells.id, cells.row, cells.col).where(
            cells.array_id == self.arrays[array])
        if only is not None:
            query = query.where(tuple_(cells.row, cells.col).in_(only))
        rows = conn.execute(query)
        self._cells.update({(array, r, c): id_ for id_, r, c in rows})
        self._loaded.add(array)


def _insert_new(conn: Connection, table: Any) -> Any:
    """An INSERT that leaves rows already there (another run made them)."""
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return insert(table)
    return dialect_insert(table).on_conflict_do_nothing()


def _insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]], *,
                 keep_existing: bool = False,
                 returning: Sequence[str] = ()) -> list[Any]:
    """Insert rows, all with the same columns; ``keep_existing`` leaves a row
    that is there already (by a unique key) as it is.

    PostgreSQL is sent the rows as one record set (see :func:`_records`)
    that one statement inserts: an executemany runs the statement once a
    row, which costs a batch of points more than its commit does. SQLite
    runs in this process, where an executemany is as fast. On PostgreSQL
    the ``returning`` columns of the rows inserted come back (saving a
    query); elsewhere none do.
    """
    statement = _insert_new(conn, table) if keep_existing else insert(table)
    if conn.dialect.name != "postgresql":
        conn.execute(statement, rows)
        return []
    source = _records(table, rows)
    statement = statement.from_select(list(rows[0]), select(*source.c))
    if not returning:
        conn.execute(statement)
        return []
    return list(conn.execute(statement.returning(*(table.c[c] for c in returning))))


def _update_cells(conn: Connection, rows: list[dict[str, Any]], *,
                  added: Sequence[str] = (), **same: Any) -> None:
    """Update cells by ``id``: each row's values (added to the stored ones in
    the columns named in ``added``), and the values of ``same`` in all.

    A cell named by several rows gets what updating it row by row would
    give: the last values, and the sums of the added ones.
    """
    cells = CellRecord.__table__
    rows = _one_row_per_cell(rows, added)
    names = [name for name in rows[0] if name != "id"]
    if conn.dialect.name == "postgresql":  # one statement; see _insert_rows
        new: Any = _records(cells, rows).c
        params = None
    else:
        new = {name: bindparam(f"new_{name}") for name in ["id", *names]}
        params = [{f"new_{k}": v for k, v in row.items()} for row in rows]
    values = {name: cells.c[name] + new[name] if name in added else new[name]
              for name in names}
    conn.execute(update(cells).where(cells.c.id == new["id"]).values(**values, **same),
                 params)


def _one_row_per_cell(rows: list[dict[str, Any]],
                      added: Sequence[str]) -> list[dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    for row in rows:
        before = by_id.get(row["id"])
        if before is not None:
            row = {**row, **{name: before[name] + row[name] for name in added}}
        by_id[row["id"]] = row
    return list(by_id.values())


def _records(table: Any, rows: list[dict[str, Any]]) -> Any:
    """The rows as a PostgreSQL record set of the table's row type, sent as
    one JSON document: the server parses it once, where arrays of values
    (of JSON values above all) cost it and the driver several times more."""
    document = cast(bindparam("records", _records_json(rows), type_=Text), JSON)
    records = func.json_populate_recordset(literal_column(f"NULL::{table.name}"),
                                           document)
    return records.table_valued(*(column(name, table.c[name].type)
                                  for name in rows[0]))


def _records_json(rows: list[dict[str, Any]]) -> str:
    try:
        return json.dumps(rows, default=_default, allow_nan=False)
    except ValueError:  # a float column takes NaN and infinities as text
        return json.dumps([{k: _float_text(v) for k, v in row.items()} for row in rows],
                          default=_default, allow_nan=False)


def _float_text(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf, -inf: as PostgreSQL reads them
    return value


def _write_reads(conn: Connection, run_id: int, at: datetime,
                 entries: list[tuple[int, Any]]) -> None:
    _update_cells(conn, [{"id": id_, "last_conductance_s": _finite(c.conductance_s)}
                         for id_, c in entries],
                  last_verified_at=at, last_run_id=run_id)
    _insert_rows(conn, CellEvent.__table__, [
        {"cell_id": id_, "run_id": run_id, "at": at, "kind": "read",
         "conductance_s": _finite(c.conductance_s)} for id_, c in entries
    ])


def _write_programmed(conn: Connection, run_id: int, at: datetime,
                      entries: list[tuple[int, Any]]) -> None:
    _update_cells(conn, [{"id": id_, "last_conductance_s": _finite(c.final_s),
                          "target_s": c.target_s, "pulses": c.pulses,
                          "stuck": c.stuck} for id_, c in entries],
                  added=["pulses"], last_verified_at=at, last_run_id=run_id,
                  programmed_run_id=run_id, programmed_at=at)
    _insert_rows(conn, ProgrammingEntry.__table__, [
        {"run_id": run_id, "cell_id": id_, "at": at, "target_s": c.target_s,
         "final_s": _finite(c.final_s),
         "error": _finite((c.final_s - c.target_s) / c.target_s),
         "pulses": c.pulses, "rounds": c.rounds, "converged": c.converged,
         "stuck": c.stuck, "writes": c.writes} for id_, c in entries
    ])


def _write_swept(conn: Connection, run_id: int, at: datetime,
                 entries: list[tuple[int, Any]]) -> None:
    _update_cells(conn, [{"id": id_, "cycles": c.cycles} for id_, c in entries],
                  added=["cycles"], last_run_id=run_id)
    _insert_rows(conn, CellEvent.__table__, [
        {"cell_id": id_, "run_id": run_id, "at": at, "kind": "swept",
         "conductance_s": None, "detail": jsonable({"cycles": c.cycles, **c.detail})}
        for id_, c in entries
    ])


def _write_formed(conn: Connection, run_id: int, at: datetime,
                  entries: list[tuple[int, Any]]) -> None:
    _update_cells(conn, [
        {"id": id_, "mode": c.mode, "forming_compliance_a": c.compliance_a,
         "last_conductance_s": _finite(c.conductance_s)}
        for id_, c in entries
    ], formed_at=at, last_verified_at=at, last_run_id=run_id)
    _insert_rows(conn, CellEvent.__table__, [
        {"cell_id": id_, "run_id": run_id, "at": at, "kind": "formed",
         "conductance_s": _finite(c.conductance_s),
         "detail": jsonable({"compliance_a": c.compliance_a, "mode": c.mode,
                             **c.detail})}
        for id_, c in entries
    ])


_CELL_WRITERS = {CellRead: _write_reads, CellProgrammed: _write_programmed,
                 CellSwept: _write_swept, CellFormed: _write_formed}


def _map_row(run_id: int, m: MapWrite) -> dict[str, Any]:
    values = np.ascontiguousarray(m.values_s, dtype="<f8")
    return {"run_id": run_id, "array": m.array, "kind": m.kind, "rows": values.shape[0],
            "cols": values.shape[1], "read_voltage_v": m.read_voltage_v,
            "values_s": values.tobytes()}


def _register_station(session: Session, name: str, snapshot: dict[str, Any]) -> int:
    """The station's row, with the identities its instruments just reported."""
    at = now()
    station_id = _ensure(session, StationRecord, {"name": name},
                         {"first_seen": at, "last_seen": at})
    session.execute(update(StationRecord).where(StationRecord.id == station_id)
                    .values(last_seen=at, path=snapshot.get("path")))
    models = {n: spec.get("model", "")
              for n, spec in snapshot.get("instruments", {}).items()}
    for inst, ident in snapshot.get("identities", {}).items():
        key = {"station_id": station_id, "name": inst,
               "serial": ident.get("serial", ""), "firmware": ident.get("firmware", "")}
        identity_id = _ensure(session, InstrumentIdentity, key, {
            "model": models.get(inst, ""),
            "manufacturer": ident.get("manufacturer", ""),
            "reported_model": ident.get("model", ""),
            "first_seen": at, "last_seen": at,
        })
        session.execute(update(InstrumentIdentity)
                        .where(InstrumentIdentity.id == identity_id)
                        .values(last_seen=at))
    return station_id


def _register_chip(session: Session, name: str,
                   spec: dict[str, Any] | None) -> tuple[int | None, dict[str, int]]:
    """The chip's row and its arrays' ids (none for a station without a chip)."""
    if not name or not spec:
        return None, {}
    chip_id = _ensure(session, ChipRecord, {"name": name},
                      {"preset": spec.get("preset", ""), "registered_at": now()})
    arrays = {}
    for array, shape in spec.get("arrays", {}).items():
        size = {"rows": shape["rows"], "cols": shape["cols"]}
        key = {"chip_id": chip_id, "name": array}
        arrays[array] = _ensure(session, ArrayRecord, key, size)
        session.execute(update(ArrayRecord).where(ArrayRecord.id == arrays[array])
                        .values(**size))
    return chip_id, arrays


def _ensure(session: Session, model: type[Base], key: dict[str, Any],
            values: dict[str, Any]) -> int:
    """The id of the row with these key values, made with ``values`` if there
    is none (a run of another process making it at the same time included)."""
    conn = session.connection()
    conn.execute(_insert_new(conn, model.__table__), {**key, **values})
    found = session.scalar(select(model.id).filter_by(**key))  # type: ignore[attr-defined]
    assert found is not None
    return found


def mark_interrupted(engine: Engine) -> list[int]:
    """Mark runs left 'running' by a process of this host that has ended.

    A run of a process still alive, or of another host (whose processes this
    one cannot see), is left as it is.
    """
    here = socket.gethostname()
    with Session(engine) as session:
        runs = session.scalars(select(Run).where(Run.status == "running")).all()
        ended = [r for r in runs if r.host == here and not _alive(r.pid)]
        for run in ended:
            run.status = "interrupted"
            run.message = run.message or "the process running it ended before it finished"
        session.commit()
        return [run.id for run in ended]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# Reading ------------------------------------------------------------------------


def list_runs(
    engine: Engine,
    limit: int = 50,
    *,
    chip: str | None = None,
    procedure: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Run]:
    """The latest runs, newest first, of a chip, procedure and status, started
    at or after ``since`` and before ``until`` (naive times are local)."""
    query = select(Run)
    if chip is not None:
        query = query.where(Run.chip_name == chip)
    if procedure is not None:
        query = query.where(Run.procedure == procedure)
    if status is not None:
        query = query.where(Run.status == status)
    if since is not None:
        query = query.where(Run.started_at >= _bound(engine, since))
    if until is not None:
        query = query.where(Run.started_at < _bound(engine, until))
    with Session(engine) as session:
        return list(session.scalars(query.order_by(Run.id.desc()).limit(limit)).all())


def _bound(engine: Engine, moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)  # a naive time is taken as local
    return utc.replace(tzinfo=None) if engine.dialect.name == "sqlite" else utc


def point_counts(engine: Engine, run_ids: Iterable[int]) -> dict[int, int]:
    """How many points each run has stored."""
    ids = list(run_ids)
    query = (select(Point.run_id, func.count()).where(Point.run_id.in_(ids))
             .group_by(Point.run_id))
    with engine.connect() as conn:
        counts = {run_id: n for run_id, n in conn.execute(query)}
    return {run_id: counts.get(run_id, 0) for run_id in ids}


def get_run(engine: Engine, run_id: int) -> Run | None:
    with Session(engine) as session:
        return session.get(Run, run_id)


def queue_run(
    engine: Engine,
    *,
    procedure: str,
    parameters: dict[str, Any],
    station_name: str,
    chip_name: str,
    software_version: str,
    operator: str = "",
) -> int:
    """Write a run to be done later (status ``queued``); its id.

    Its ``started_at`` is when it was queued until it starts.
    """
    with Session(engine) as session:
        run = Run(procedure=procedure, parameters=jsonable(parameters), status="queued",
                  started_at=now(), station_name=station_name, station_snapshot={},
                  chip_name=chip_name, software_version=software_version,
                  host=socket.gethostname(), pid=0, operator=operator)
        session.add(run)
        session.commit()
        log.info("run %d queued: %s on %s", run.id, procedure, station_name)
        return run.id


def queued_runs(engine: Engine, station_name: str) -> list[Run]:
    """The queued runs of a station, in the order they were queued."""
    with Session(engine) as session:
        query = (select(Run).where(Run.status == "queued",
                                   Run.station_name == station_name)
                 .order_by(Run.id))
        return list(session.scalars(query).all())


def run_points(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        query = select(Point.data).where(Point.run_id == run_id).order_by(Point.seq)
        return list(session.scalars(query).all())


def run_maps(engine: Engine, run_id: int) -> list[ConductanceMap]:
    with Session(engine) as session:
        query = (select(ConductanceMap).where(ConductanceMap.run_id == run_id)
                 .order_by(ConductanceMap.id))
        return list(session.scalars(query).all())


def run_results(engine: Engine, run_id: int) -> list[InferenceResult]:
    with Session(engine) as session:
        query = (
            select(InferenceResult)
            .where(InferenceResult.run_id == run_id)
            .order_by(InferenceResult.item)
        )
        return list(session.scalars(query).all())


def run_frame(engine: Engine, run_id: int, columns: Sequence[str] = ()) -> Any:
    """A run's points as a pandas DataFrame: ``seq`` then the data columns
    (``columns`` first, in that order, then any others the points hold, in
    the order they first appear). A point without a column has NaN there.

    The points are read as JSON text, a chunk of them per query, and parsed
    into columns by pyarrow while the next chunk is read: a million points
    of numbers load in a second or two. A run with a column pyarrow would not
    give back as the points hold it (numbers and text mixed, arrays or
    objects, a true/false or text column some points lack or hold as null,
    integers beyond 64 bits, text pyarrow takes for times) is read point by
    point instead, at about ten seconds a million points.
    """
    frame = _columnar_frame(engine, run_id, columns)
    if frame is None:
        frame = _point_frame(engine, run_id, columns)
    return frame


#: Points in the first query of :func:`run_frame`; the next ones are sized
#: from it to about :data:`FRAME_CHUNK_CHARS` of JSON each.
FRAME_FIRST_CHUNK_POINTS = 4096
FRAME_CHUNK_CHARS = 1 << 23
#: Chunks parsed at once (each by pyarrow in one thread, see _parse_points).
FRAME_PARSERS = 2


class _NotColumnar(Exception):
    """Points with a column pyarrow would not give back as they hold it."""


def _columnar_frame(engine: Engine, run_id: int, columns: Sequence[str]) -> Any:
    """The frame from pyarrow's columns; None when they are not exactly what
    the points hold, or the run has no points."""
    import pyarrow as pa

    try:
        with engine.connect() as conn:
            chunks = _parse_while_reading(_point_texts(conn, run_id))
        if not chunks:
            return None
        table = pa.concat_tables([t for _, t in chunks], promote_options="permissive")
    except (_NotColumnar, pa.ArrowException):  # pyarrow's types do not mix
        return None
    seq = np.concatenate([s for s, _ in chunks])
    in_order = len(seq) == table.num_rows and bool(np.all(np.diff(seq) > 0))
    if not in_order or "seq" in table.column_names:
        return None
    if not all(_exact(table.column(i)) for i in range(table.num_columns)):
        return None
    frame = table.to_pandas()
    frame.insert(0, "seq", seq)
    return frame.reindex(columns=list(dict.fromkeys(["seq", *columns, *frame.columns])))


def _point_texts(conn: Connection, run_id: int) -> Iterator[tuple[str, str]]:
    """A run's points, chunk by chunk: their numbers and their JSON, one a line.

    The two are aggregated over the same rows, so a number's line is its
    point's line whatever order the database aggregates in. A chunk is the
    points numbered from one stored point on, over a span of numbers sized
    from the last chunk.
    """
    numbered = (Point.run_id == run_id, Point.seq >= bindparam("start"))
    following = select(func.min(Point.seq)).where(*numbered)
    chunk = (select(Point.seq, Point.data)
             .where(*numbered, Point.seq < bindparam("stop"))
             .order_by(Point.seq).subquery())
    query = select(func.aggregate_strings(cast(chunk.c.seq, Text), "\n"),
                   func.aggregate_strings(cast(chunk.c.data, Text), "\n"))
    start = conn.scalar(select(func.min(Point.seq)).where(Point.run_id == run_id))
    span = FRAME_FIRST_CHUNK_POINTS
    while start is not None:
        seqs, data = conn.execute(query, {"start": start, "stop": start + span}).one()
        yield seqs, data
        start = conn.scalar(following, {"start": start + span})
        span = max(1, min(8 * span, span * FRAME_CHUNK_CHARS // len(data)))


def _parse_while_reading(
    texts: Iterator[tuple[str, str]],
) -> list[tuple[np.ndarray, Any]]:
    """The chunks parsed, in order, by :data:`FRAME_PARSERS` threads while
    this one reads the next."""
    parsed: list[tuple[np.ndarray, Any]] = []
    pending: deque[Future[tuple[np.ndarray, Any]]] = deque()
    with ThreadPoolExecutor(max_workers=FRAME_PARSERS) as pool:
        for chunk in texts:
            if len(pending) == FRAME_PARSERS:
                parsed.append(pending.popleft().result())
            pending.append(pool.submit(_parse_points, *chunk))
        parsed += [p.result() for p in pending]
    return parsed


def _parse_points(seqs: str, data: str) -> tuple[np.ndarray, Any]:
    """Numbers and JSON lines as an array of numbers and a pyarrow table;
    :class:`_NotColumnar` as soon as a column cannot be exact."""
    import pyarrow.json as pa_json

    seq = np.fromstring(seqs, dtype=np.int64, sep="\n")
    # In one thread, pyarrow meets the lines in order and orders its columns
    # as they first appear; its threads would order them as they finish.
    one_thread = pa_json.ReadOptions(use_threads=False)
    table = pa_json.read_json(io.BytesIO(data.encode()), read_options=one_thread)
    columns = [table.column(i) for i in range(table.num_columns)]
    if not all(_exact(c, part=True) for c in columns):
        raise _NotColumnar
    if any(_may_hold_long_integers(c) for c in columns) and _long_integers_in(data):
        raise _NotColumnar  # pyarrow made floats of integers the points hold
    return seq, table


#: 19 digits or more, not after a decimal point: in JSON written by Python,
#: an integer as long as the longest of 64 bits, or part of a text; never a
#: float (the shortest repr of a float has at most 17 digits).
_LONG_INTEGER = re.compile(r"(?<![-.\d])-?\d{19,}")


def _long_integers_in(data: str) -> bool:
    """Whether the JSON holds an integer beyond 64 bits (or a text like it)."""
    return any(not -(2**63) <= int(m.group()) < 2**63
               for m in _LONG_INTEGER.finditer(data))


def _exact(values: Any, *, part: bool = False) -> bool:
    """Whether pandas, given pyarrow's column, holds what the points hold.

    A ``part`` of the run's points may hold only nulls in a column: others
    may hold numbers.
    """
    import pyarrow as pa

    kind = values.type
    if pa.types.is_null(kind):
        return part
    if pa.types.is_int64(kind) or pa.types.is_float64(kind):
        return True
    if pa.types.is_boolean(kind) or pa.types.is_string(kind):
        # The points tell a value they lack (NaN) from a null (None); pyarrow
        # has only null.
        return values.null_count == 0
    return False


def _may_hold_long_integers(values: Any) -> bool:
    """Whether the column is of floats, one as large as an integer beyond 64
    bits: pyarrow reads those as floats."""
    import pyarrow as pa

    if not pa.types.is_float64(values.type):
        return False
    return bool(np.any(np.abs(values.to_numpy()) >= 2.0**63))


def _point_frame(engine: Engine, run_id: int, columns: Sequence[str]) -> Any:
    """The frame built point by point from each point's data."""
    import pandas as pd

    with engine.connect() as conn:
        rows = conn.execute(select(Point.seq, Point.data).where(Point.run_id == run_id)
                            .order_by(Point.seq)).all()
    records = [{"seq": seq, **data} for seq, data in rows]
    frame = pd.DataFrame.from_records(records, columns=_frame_columns(records, columns))
    return frame


def _frame_columns(records: list[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    order = ["seq", *columns]
    for record in records:
        order += [key for key in record if key not in order]
    return list(dict.fromkeys(order))


@dataclass
class ChipState:
    """What a chip's cells hold, array by array."""

    chip: ChipRecord
    arrays: list[ArrayRecord]
    cells: dict[str, list[CellRecord]]  # by array name
    runs: dict[int, Run]  # every run named by a cell


def chip_state(engine: Engine, chip: str) -> ChipState | None:
    with Session(engine) as session:
        record = session.scalar(select(ChipRecord).where(ChipRecord.name == chip))
        if record is None:
            return None
        arrays = list(session.scalars(select(ArrayRecord)
                                      .where(ArrayRecord.chip_id == record.id)
                                      .order_by(ArrayRecord.name)))
        cells: dict[str, list[CellRecord]] = {}
        run_ids: set[int] = set()
        for array in arrays:
            cells[array.name] = list(session.scalars(
                select(CellRecord).where(CellRecord.array_id == array.id)
                .order_by(CellRecord.row, CellRecord.col)))
            for cell in cells[array.name]:
                run_ids.update(i for i in (cell.programmed_run_id, cell.last_run_id)
                               if i is not None)
        named = session.scalars(select(Run).where(Run.id.in_(run_ids)))
        runs = {r.id: r for r in named}
        return ChipState(record, arrays, cells, runs)


@dataclass
class CellHistory:
    """One cell's present state and everything runs did to it, oldest first."""

    cell: CellRecord
    events: list[dict[str, Any]]


def cell_history(engine: Engine, chip: str, array: str, row: int,
                 col: int) -> CellHistory | None:
    with Session(engine) as session:
        cell = session.scalar(
            select(CellRecord).join(ArrayRecord).join(ChipRecord)
            .where(ChipRecord.name == chip, ArrayRecord.name == array,
                   CellRecord.row == row, CellRecord.col == col))
        if cell is None:
            return None
        events = [
            {"at": as_utc(e.at), "run": e.run_id, "kind": e.kind,
             "conductance_s": e.conductance_s, "detail": e.detail or {}}
            for e in session.scalars(select(CellEvent)
                                     .where(CellEvent.cell_id == cell.id))
        ]
        events += [
            {"at": as_utc(p.at), "run": p.run_id, "kind": "programmed",
             "conductance_s": p.final_s,
             "detail": {"target_s": p.target_s, "error": p.error, "pulses": p.pulses,
                        "rounds": p.rounds, "converged": p.converged, "stuck": p.stuck,
                        "writes": p.writes}}
            for p in session.scalars(select(ProgrammingEntry)
                                     .where(ProgrammingEntry.cell_id == cell.id))
        ]
        runs = {e["run"] for e in events}
        procedures = dict(session.execute(select(Run.id, Run.procedure)
                                          .where(Run.id.in_(runs))).all())
        for e in events:
            e["procedure"] = procedures.get(e["run"])
        events.sort(key=lambda e: (e["at"], e["run"]))
        return CellHistory(cell, events)


def station_identities(engine: Engine, station: str) -> list[InstrumentIdentity]:
    """Every identity a station's instruments reported, oldest first."""
    with Session(engine) as session:
        return list(session.scalars(
            select(InstrumentIdentity).join(StationRecord)
            .where(StationRecord.name == station)
            .order_by(InstrumentIdentity.name, InstrumentIdentity.first_seen)))


# Values ------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, paths and tuples converted.

    JSON has no NaN or infinity: such numbers are stored as null.
    """
    try:
        return json.loads(json.dumps(value, default=_default, allow_nan=False))
    except ValueError:  # a NaN or infinity somewhere in it
        return _nulled(json.loads(json.dumps(value, default=_default)))


def _nulled(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulled(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store a {type(value).__name__}")

