"""Run a procedure on a station: validate, open, measure, store, end safe.

Order of a run:

1. the station file and the procedure's parameters are validated, and the
   procedure checks its levels against the chip's limits: any problem stops
   the run before an instrument is opened;
2. the rig is opened and the run row is written (status ``running``);
3. the procedure executes; its points, with what they tell about cells, are
   committed to the database as they come (points closer together than
   :data:`COMMIT_INTERVAL_S` in one transaction), then appended to the run's
   pymeasure-format CSV, and only then reported as stored;
4. whatever happens (an error, Ctrl-C, SIGTERM), outputs are turned off and
   relays opened before the run is finalized and before the error is shown.

A run that stopped before its end (its process killed, Ctrl-C, an error) is
continued by :func:`resume`: the procedure is given the points stored so far
and measures only what is left, under the same run.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymeasure.experiment import (
    FloatParameter,
    IntegerParameter,
    ListParameter,
    Procedure,
    Results,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

import labctl
from labctl import storage
from labctl.rig import Rig, RunAborted
from labctl.station import Station, resolve_library
from procedures import PROCEDURES
from procedures.base import LabProcedure, ParameterError

log = logging.getLogger("labctl.run")

#: Points that come faster than this are committed together; a point that
#: comes later than this after the last commit is committed at once.
COMMIT_INTERVAL_S = 0.1

#: Called with each event a run reports: ``{"event": "started", ...}`` once,
#: then ``{"event": "point", "run", "seq", "data"}`` for each point once it is
#: committed and in the CSV.
Stream = Callable[[dict[str, Any]], None]


class ResumeError(ParameterError):
    """A run that cannot be continued, in one line."""


@dataclass
class RunOutcome:
    run_id: int
    status: str
    csv_path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    predicted_bench_s: float | None = None


def procedure_class(name: str) -> type[LabProcedure]:
    try:
        return PROCEDURES[name]
    except KeyError:
        known = ", ".join(sorted(PROCEDURES))
        raise ParameterError(f"unknown procedure '{name}'; known: {known}") from None


def build_procedure(name: str, params: dict[str, Any], station: Station) -> LabProcedure:
    """Make a procedure with the given parameters, validated against the chip."""
    cls = procedure_class(name)
    proc = cls()
    known = proc._parameters
    for key, value in params.items():
        if key not in known:
            raise ParameterError(
                f"{name}: unknown parameter '{key}'; known: {', '.join(sorted(known))}"
            )
        parameter = known[key]
        try:
            parameter.value = value
        except (ValueError, TypeError):
            raise ParameterError(f"{name}: {key} = {value!r}: {_allowed(parameter)}") from None
        if isinstance(parameter.value, float) and not math.isfinite(parameter.value):
            raise ParameterError(f"{name}: {key} = {value!r}: {_allowed(parameter)}")
        setattr(proc, key, parameter.value)
    proc.note_mode_limit(station)
    proc.check(station)
    return proc


def _allowed(parameter: Any) -> str:
    """What a pymeasure Parameter accepts, in words."""
    units = f" {parameter.units}" if getattr(parameter, "units", None) else ""
    if isinstance(parameter, ListParameter):
        return "give one of " + ", ".join(map(str, parameter.choices))
    kind = "a whole number" if isinstance(parameter, IntegerParameter) else "a number"
    if isinstance(parameter, FloatParameter | IntegerParameter):
        return f"give {kind} from {parameter.minimum:g} to {parameter.maximum:g}{units}"
    return "give a value"


def csv_folder(engine: Engine) -> Path:
    """Where run CSVs go: ``<database name>-runs/`` beside a SQLite file, else
    ``labctl-runs/<database name>/`` in the working folder."""
    database = engine.url.database or "labctl"
    if engine.dialect.name == "sqlite" and engine.url.database:
        path = Path(database).resolve()
        return path.parent / f"{path.stem}-runs"
    return Path.cwd() / "labctl-runs" / Path(database).name


def new_csv(folder: Path, run_id: int, procedure: str) -> Path:
    """A CSV path no other run uses (a file left by a reset database is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"run-{run_id:05d}-{procedure}"
    for n in range(1, 1000):
        path = folder / (f"{stem}.csv" if n == 1 else f"{stem}-{n}.csv")
        try:
            path.touch(exist_ok=False)
        except FileExistsError:
            continue
        path.unlink()  # pymeasure's Results writes the header into a new file
        return path
    raise RuntimeError(f"{folder}: no free file name for {stem}")


class CsvLog:
    """A run's pymeasure-format CSV: pymeasure's header, then one line per point.

    Numbers are written so that they read back exactly; text, and lists
    (written as JSON), are quoted, so commas and ``#`` in them survive
    pymeasure's ``Results.load``.
    """

    def __init__(self, proc: LabProcedure, path: Path,
                 points: Sequence[dict[str, Any]] = ()) -> None:
        self.path = path
        self.columns = list(proc.DATA_COLUMNS)
        self.units = Procedure.parse_columns(self.columns)
        self._write_anew(proc, points)
        self._file = open(path, "a", encoding=Results.ENCODING, newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file, quoting=csv.QUOTE_NONNUMERIC,
                                  lineterminator=Results.LINE_BREAK)

    def _write_anew(self, proc: LabProcedure, points: Sequence[dict[str, Any]]) -> None:
        """Header, labels and the points, in place of whatever the file held."""
        partial = self.path.with_name(self.path.name + ".partial")
        partial.unlink(missing_ok=True)
        Results(proc, str(partial))  # writes pymeasure's header and the labels
        with open(partial, "a", encoding=Results.ENCODING, newline="") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC,
                                lineterminator=Results.LINE_BREAK)
            writer.writerows(self.row(p) for p in points)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.path)

    def append(self, points: Sequence[dict[str, Any]]) -> None:
        self._writer.writerows(self.row(p) for p in points)
        self._file.flush()

    def row(self, point: dict[str, Any]) -> list[Any]:
        return [self._cell(column, point.get(column)) for column in self.columns]

    def _cell(self, column: str, value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if value is None:
            return math.nan
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int | float):
            return value
        if hasattr(value, "m_as"):  # a pint quantity: in the column's units
            units = self.units.get(column)
            return value.m_as(units) if units else value.magnitude
        if isinstance(value, np.ndarray | list | tuple | dict):
            return json.dumps(storage.jsonable(value))
        return str(value)

    def close(self) -> None:
        self._file.close()


class _Sink:
    """Takes a procedure's emits and stores them.

    Points, the cell updates that go with them and maps are committed to the
    database together, then the points are appended to the CSV, then
    reported: a point reported is a point stored.
    """

    def __init__(self, recorder: storage.RunRecorder, csv_log: CsvLog,
                 progress: Callable[[float], None] | None, stream: Stream | None,
                 interval_s: float = COMMIT_INTERVAL_S) -> None:
        self.recorder = recorder
        self.csv = csv_log
        self.progress = progress
        self.stream = stream
        self.interval_s = interval_s
        self.points = 0
        self._points: list[dict[str, Any]] = []
        self._cells: list[storage.CellWrite] = []
        self._maps: list[storage.MapWrite] = []
        self._committed_at = -math.inf

    def emit(self, topic: str, record: Any) -> None:
        if topic == "results":
            self._points.append(record)
            self._flush_when_due()
        elif topic == "progress" and self.progress is not None:
            self.progress(float(record))

    def add_cells(self, cells: Sequence[storage.CellWrite]) -> None:
        self._cells.extend(cells)
        self._flush_when_due()

    def add_map(self, array: str, kind: str, values_s: np.ndarray,
                read_voltage_v: float | None, *, flush: bool = True) -> None:
        """Store a map of an array; ``flush=False`` lets it wait for the next
        map or point's commit."""
        self._maps.append(storage.MapWrite(array, kind, np.asarray(values_s),
                                           read_voltage_v))
        if flush:
            self.flush()

    def add_result(self, item: int, label: str, metrics: dict[str, Any]) -> None:
        self.flush()
        self.recorder.add_result(item, label, metrics)

    def _flush_when_due(self) -> None:
        if time.monotonic() - self._committed_at >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if not (self._points or self._cells or self._maps):
            return
        try:
            stored = self.recorder.write(self._points, self._cells, self._maps)
        except SQLAlchemyError:
            if not self._points or not (self._cells or self._maps):
                raise
            # A cell record or map the database refuses must not take the
            # measured points with it: they are stored alone, then the error.
            self._keep(self.recorder.write(self._points))
            self._points, self._cells, self._maps = [], [], []
            raise
        self._points, self._cells, self._maps = [], [], []
        self._keep(stored)

    def _keep(self, stored: list[tuple[int, dict[str, Any]]]) -> None:
        """Points the database holds: into the CSV, counted and reported."""
        self._committed_at = time.monotonic()
        self.csv.append([data for _, data in stored])
        self.points += len(stored)
        if self.stream is not None:
            for seq, data in stored:
                self.stream({"event": "point", "run": self.recorder.run_id, "seq": seq,
                             "data": data})

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.csv.close()


@contextlib.contextmanager
def _stop_on_signals(rig: Rig, proc: LabProcedure) -> Iterator[None]:
    """SIGINT or SIGTERM asks the run to stop at its next point; a second one
    stops the procedure at once. Either way the safe end follows: a signal
    that comes while the procedure is not running (the run is ending) never
    interrupts anything."""
    procedure_code = {type(proc).startup.__code__, type(proc).execute.__code__}

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if rig.stop_requested is None:
            rig.stop_requested = f"stopped by {name}"
            log.warning("%s: stopping at the next point (again to stop at once)", name)
            return
        while frame is not None and frame.f_code not in procedure_code:
            frame = frame.f_back
        if frame is None:
            log.warning("%s: the run is ending; its safe end goes on", name)
            return
        raise RunAborted(f"stopped by {name}")

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM must not cut a safe end short."""
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    except ValueError:
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def station_snapshot(station: Station, identities: dict[str, Any]) -> dict[str, Any]:
    snap = station.model_dump(mode="json", exclude={"chip_spec"})
    snap["chip_spec"] = station.chip_spec.model_dump(mode="json") if station.chip_spec else None
    snap["identities"] = identities
    return snap


def simulated_seed(station: Station) -> int | None:
    """The seed of the simulated bench behind the station; None on real
    instruments."""
    for name in station.instruments:
        bench, _, backend = resolve_library(station, name).rpartition("@")
        if backend == "labsim" and bench:
            from simulator.bench import bench_for

            return bench_for(bench).seed
    return None


def default_operator() -> str:
    """Who runs: ``LABCTL_OPERATOR``, else the login name."""
    given = os.environ.get("LABCTL_OPERATOR")
    if given:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


#: Opens a run's records once the instruments answered: given the identities,
#: returns the run's recorder and its CSV.
_Opener = Callable[[dict[str, Any]], tuple[storage.RunRecorder, CsvLog]]


def run(
    proc: LabProcedure,
    station: Station,
    engine: Engine,
    *,
    rig: Rig | None = None,
    progress: Callable[[float], None] | None = None,
    stream: Stream | None = None,
    operator: str | None = None,
) -> RunOutcome:
    """Run a built procedure on the station and store everything it measures.

    Raises what made the run impossible before its row was written (the
    instruments not answering, say), after the safe end; once the row exists,
    every outcome is stored and returned.
    """

    def open_new(identities: dict[str, Any]) -> tuple[storage.RunRecorder, CsvLog]:
        recorder = storage.RunRecorder.start(
            engine,
            procedure=proc.NAME,
            parameters=proc.parameter_values(),
            station_name=station.name,
            station_snapshot=station_snapshot(station, identities),
            chip_name=station.chip_spec.name if station.chip_spec else "",
            software_version=labctl.__version__,
            operator=default_operator() if operator is None else operator,
            seed=simulated_seed(station),
        )
        csv_path = new_csv(csv_folder(engine), recorder.run_id, proc.NAME)
        recorder.set_csv_path(str(csv_path))
        return recorder, CsvLog(proc, csv_path)

    return _execute(proc, station, open_new, rig=rig, progress=progress, stream=stream)


def queue(proc: LabProcedure, station: Station, engine: Engine, *,
          operator: str | None = None) -> int:
    """Store a built procedure as a queued run of the station; its id.

    Nothing is opened: :func:`run_queued` runs it later.
    """
    return storage.queue_run(
        engine,
        procedure=proc.NAME,
        parameters=proc.parameter_values(),
        station_name=station.name,
        chip_name=station.chip_spec.name if station.chip_spec else "",
        software_version=labctl.__version__,
        operator=default_operator() if operator is None else operator,
    )


def run_queued(
    station: Station,
    engine: Engine,
    *,
    rig: Rig | None = None,
    progress: Callable[[float], None] | None = None,
    stream: Stream | None = None,
    on_start: Callable[[storage.Run], None] | None = None,
) -> list[RunOutcome]:
    """Run the station's queued runs one after the other, oldest first.

    A run whose parameters no longer pass the station's checks (the station
    file changed since) is marked failed with the reason, and the next one
    goes on. A run that fails or is aborted is stored as such and the queue
    goes on, unless it was stopped by Ctrl-C or SIGTERM: then the runs still
    queued stay queued.
    """
    outcomes = []
    for queued in storage.queued_runs(engine, station.name):
        if on_start is not None:
            on_start(queued)
        try:
            proc = build_procedure(queued.procedure, queued.parameters, station)
        except ParameterError as exc:
            storage.RunRecorder(engine, queued.id, {}).finish("failed", str(exc))
            outcomes.append(RunOutcome(queued.id, "failed", Path(), {}, str(exc)))
            continue
        run_id = queued.id

        def claim(identities: dict[str, Any],
                  run_id: int = run_id) -> tuple[storage.RunRecorder, CsvLog]:
            recorder = storage.RunRecorder.claim(
                engine, run_id, station_snapshot=station_snapshot(station, identities),
                seed=simulated_seed(station))
            csv_path = new_csv(csv_folder(engine), recorder.run_id, proc.NAME)
            recorder.set_csv_path(str(csv_path))
            return recorder, CsvLog(proc, csv_path)

        outcome = _execute(proc, station, claim, rig=rig, progress=progress,
                           stream=stream)
        outcomes.append(outcome)
        if outcome.status == "aborted" and (outcome.message or "").startswith(
            "stopped by"
        ):
            break
    return outcomes


def resume(
    run_id: int,
    station: Station,
    engine: Engine,
    *,
    rig: Rig | None = None,
    progress: Callable[[float], None] | None = None,
    stream: Stream | None = None,
) -> RunOutcome:
    """Continue a stored run that stopped before its end, on the same station
    and chip, measuring only what its stored points do not hold."""
    stored = storage.get_run(engine, run_id)
    if stored is None:
        raise ResumeError(f"no run {run_id} in {storage.redacted(str(engine.url))}")
    _check_resumable(stored, station)
    proc = build_procedure(stored.procedure, stored.parameters, station)
    points = storage.run_points(engine, run_id)
    maps = {m.kind: m.to_array() for m in storage.run_maps(engine, run_id)}
    try:
        proc.resume_from(points, maps)
    except ParameterError as exc:
        raise ResumeError(f"run {run_id}: {exc}") from None

    def reopen(_identities: dict[str, Any]) -> tuple[storage.RunRecorder, CsvLog]:
        recorder = storage.RunRecorder.resume(engine, run_id)
        if stored.csv_path:
            csv_path = Path(stored.csv_path)
        else:
            csv_path = new_csv(csv_folder(engine), run_id, proc.NAME)
            recorder.set_csv_path(str(csv_path))
        return recorder, CsvLog(proc, csv_path, points)

    log.info("run %d: resuming %s after %d points", run_id, stored.procedure,
             len(points))
    return _execute(proc, station, reopen, rig=rig, progress=progress, stream=stream)


def _check_resumable(stored: storage.Run, station: Station) -> None:
    where = f"run {stored.id} ({stored.procedure})"
    if stored.status not in storage.RESUMABLE:
        raise ResumeError(f"{where} is {stored.status}; only runs that are "
                          f"{', '.join(storage.RESUMABLE)} can be resumed")
    if station.name != stored.station_name:
        raise ResumeError(f"{where} ran on station {stored.station_name!r}; "
                          f"this is station {station.name!r}")
    chip = station.chip_spec.name if station.chip_spec else ""
    if chip != stored.chip_name:
        raise ResumeError(f"{where} ran on chip {stored.chip_name!r}; the station "
                          f"holds chip {chip!r}")


def _execute(
    proc: LabProcedure,
    station: Station,
    open_run: _Opener,
    *,
    rig: Rig | None,
    progress: Callable[[float], None] | None,
    stream: Stream | None,
) -> RunOutcome:
    own_rig = rig is None
    rig = rig or Rig(station)
    rig.stop_requested = None
    recorder: storage.RunRecorder | None = None
    sink: _Sink | None = None
    csv_path = Path()
    status, message, error = "finished", None, None
    clock_at_start = predicted = None
    with _stop_on_signals(rig, proc):
        try:
            recorder, csv_log = open_run(rig.identities())
            rig.note_run(recorder.run_id)
            csv_path = csv_log.path
            sink = _Sink(recorder, csv_log, progress, stream)
            if stream is not None:
                stream({"event": "started", "run": recorder.run_id,
                        "csv": str(csv_path)})
            proc.emit = sink.emit  # type: ignore[method-assign]
            proc.should_stop = lambda: rig.stop_requested is not None  # type: ignore[method-assign]
            proc.rig = rig
            proc.sink = sink
            clock_at_start = rig.predicted_bench_s()
            proc.startup()
            proc.execute()
            if rig.stop_requested:
                status, message = "aborted", rig.stop_requested
        except (KeyboardInterrupt, RunAborted) as exc:
            status, message, error = "aborted", str(exc) or "stopped by Ctrl-C", exc
        except Exception as exc:
            status, message, error = "failed", f"{type(exc).__name__}: {exc}", exc
            log.debug("run failed", exc_info=True)
        finally:
            with _signals_ignored():
                problems = rig.safe_shutdown(message if status != "finished" else None)
                with contextlib.suppress(Exception):
                    proc.shutdown()
                if sink is not None:
                    try:
                        sink.close()
                    except Exception as exc:  # the database went away, say
                        if status == "finished":
                            status, message = "failed", f"{type(exc).__name__}: {exc}"
                if problems and status == "finished":
                    status, message = "failed", "; ".join(problems)
                elif problems:
                    message = f"{message}; safe end: {'; '.join(problems)}"
                with contextlib.suppress(Exception):
                    predicted = rig.predicted_bench_s()
                if predicted is not None and clock_at_start is not None:
                    predicted -= clock_at_start
                if recorder is not None:
                    recorder.finish(status, message, proc.summary, predicted)
                if own_rig:
                    rig.close()
    if recorder is None:
        assert error is not None
        raise error
    return RunOutcome(recorder.run_id, status, csv_path, proc.summary, message, predicted)
