"""The run database: every measured point is stored when it is measured.

SQLAlchemy 2.0 models in a SQLite file by default, or any database by URL.
The default file is ``labctl.sqlite`` in the user's data folder; ``--db`` on
the command line or the ``LABCTL_DB`` environment variable override it (a
path or a SQLAlchemy URL).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger("labctl.storage")

STATUSES = ("running", "finished", "failed", "aborted", "interrupted")


class StorageError(RuntimeError):
    """A database that cannot be opened or written, in one line."""


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One procedure run on one station."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    station_name: Mapped[str] = mapped_column(String(128))
    station_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    chip_name: Mapped[str] = mapped_column(String(128), index=True)
    software_version: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    csv_path: Mapped[str | None] = mapped_column(Text)
    predicted_bench_s: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)


class Point(Base):
    """One measured point of a run, in the procedure's data columns."""

    __tablename__ = "points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_points_run_seq", "run_id", "seq"),)


class ConductanceMap(Base):
    """A map of conductances (S) of an array's cells, read or targeted."""

    __tablename__ = "conductance_maps"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    array: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # read, target, programmed
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
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def connect(url: str | None = None) -> Engine:
    """Open (and create if needed) the run database."""
    url = url or default_url()
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(engine)
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StorageError(f"database {redacted(url)}: {reason}") from None
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def now() -> datetime:
    return datetime.now(UTC)


class RunRecorder:
    """Writes one run: its row, each point as it comes, maps and results."""

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self._seq = 0

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
    ) -> RunRecorder:
        with Session(engine) as session:
            run = Run(
                procedure=procedure,
                parameters=_jsonable(parameters),
                status="running",
                started_at=now(),
                station_name=station_name,
                station_snapshot=_jsonable(station_snapshot),
                chip_name=chip_name,
                software_version=software_version,
                csv_path=csv_path,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            session.add(run)
            session.commit()
            log.info("run %d started: %s on %s", run.id, procedure, station_name)
            return cls(engine, run.id)

    def set_csv_path(self, path: str) -> None:
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            assert run is not None
            run.csv_path = path
            session.commit()

    def add_point(self, data: dict[str, Any]) -> None:
        """Store one point and commit it at once."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(Point),
                {"run_id": self.run_id, "seq": self._seq, "data": _jsonable(data)},
            )
        self._seq += 1

    def add_map(
        self, array: str, kind: str, values_s: np.ndarray, read_voltage_v: float | None
    ) -> None:
        values = np.ascontiguousarray(values_s, dtype="<f8")
        with Session(self.engine) as session:
            session.add(
                ConductanceMap(
                    run_id=self.run_id,
                    array=array,
                    kind=kind,
                    rows=values.shape[0],
                    cols=values.shape[1],
                    read_voltage_v=read_voltage_v,
                    values_s=values.tobytes(),
                )
            )
            session.commit()

    def add_result(self, item: int, label: str, metrics: dict[str, Any]) -> None:
        with Session(self.engine) as session:
            session.add(
                InferenceResult(
                    run_id=self.run_id, item=item, label=label, metrics=_jsonable(metrics)
                )
            )
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
            run.summary = _jsonable(summary) if summary is not None else None
            run.predicted_bench_s = predicted_bench_s
            session.commit()
        log.info("run %d %s%s", self.run_id, status, f": {message}" if message else "")


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


def list_runs(engine: Engine, limit: int = 50) -> list[Run]:
    with Session(engine) as session:
        query = select(Run).order_by(Run.id.desc()).limit(limit)
        return list(session.scalars(query).all())


def get_run(engine: Engine, run_id: int) -> Run | None:
    with Session(engine) as session:
        return session.get(Run, run_id)


def run_points(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        query = select(Point.data).where(Point.run_id == run_id).order_by(Point.seq)
        return list(session.scalars(query).all())


def run_maps(engine: Engine, run_id: int) -> list[ConductanceMap]:
    with Session(engine) as session:
        query = select(ConductanceMap).where(ConductanceMap.run_id == run_id)
        return list(session.scalars(query).all())


def run_results(engine: Engine, run_id: int) -> list[InferenceResult]:
    with Session(engine) as session:
        query = (
            select(InferenceResult)
            .where(InferenceResult.run_id == run_id)
            .order_by(InferenceResult.item)
        )
        return list(session.scalars(query).all())


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, paths and tuples converted."""
    return json.loads(json.dumps(value, default=_default))


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
