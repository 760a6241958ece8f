"""Run a procedure on a station: validate, open, measure, store, end safe.

Order of a run:

1. the station file and the procedure's parameters are validated, and the
   procedure checks its levels against the chip's limits: any problem stops
   the run before an instrument is opened;
2. the rig is opened and the run row is written (status ``running``);
3. the procedure executes; each emitted point is committed to the database
   and appended to the run's pymeasure-format CSV at once;
4. whatever happens (an error, Ctrl-C, SIGTERM), outputs are turned off and
   relays opened before the run is finalized and before the error is shown.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymeasure.experiment import Results
from sqlalchemy.engine import Engine

import labctl
from labctl import storage
from labctl.rig import Rig
from labctl.station import Station
from procedures import PROCEDURES
from procedures.base import LabProcedure, ParameterError

log = logging.getLogger("labctl.run")


class RunAborted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM."""


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
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"{name}: {key}: {exc}") from None
        setattr(proc, key, parameter.value)
    proc.check(station.limits)
    return proc


def csv_folder(engine: Engine) -> Path:
    """Where run CSVs go: beside a SQLite database, else in the working folder."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database:
        return Path(database).resolve().parent / "runs"
    return Path.cwd() / "runs"


class _Recorder:
    """Takes a procedure's emits: points to the database and the CSV."""

    def __init__(self, recorder: storage.RunRecorder, results: Results,
                 progress: Callable[[float], None] | None) -> None:
        self.recorder = recorder
        self.results = results
        self.progress = progress
        self._csv = open(results.data_filename, "a", encoding=Results.ENCODING)  # noqa: SIM115
        self.points = 0

    def emit(self, topic: str, record: Any) -> None:
        if topic == "results":
            self.recorder.add_point(record)
            self._csv.write(self.results.format(record) + "\n")
            self._csv.flush()
            self.points += 1
        elif topic == "progress" and self.progress is not None:
            self.progress(float(record))

    def add_map(self, *args: Any, **kwargs: Any) -> None:
        self.recorder.add_map(*args, **kwargs)

    def add_result(self, *args: Any, **kwargs: Any) -> None:
        self.recorder.add_result(*args, **kwargs)

    def close(self) -> None:
        self._csv.close()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into RunAborted in the main thread."""

    def handler(signum: int, _frame: Any) -> None:
        raise RunAborted(f"stopped by {signal.Signals(signum).name}")

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


def run(
    proc: LabProcedure,
    station: Station,
    engine: Engine,
    *,
    rig: Rig | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunOutcome:
    """Run a built procedure on the station and store everything it measures."""
    own_rig = rig is None
    rig = rig or Rig(station)
    with _stop_on_signals():
        try:
            identities = rig.identities()
        except BaseException:
            with _signals_ignored():
                rig.safe_shutdown()
            raise
        recorder = storage.RunRecorder.start(
            engine,
            procedure=proc.NAME,
            parameters=proc.parameter_values(),
            station_name=station.name,
            station_snapshot=station_snapshot(station, identities),
            chip_name=station.chip_spec.name if station.chip_spec else "",
            software_version=labctl.__version__,
        )
        folder = csv_folder(engine)
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = folder / f"run-{recorder.run_id:05d}-{proc.NAME}.csv"
        recorder.set_csv_path(str(csv_path))
        sink = _Recorder(recorder, Results(proc, str(csv_path)), progress)
        proc.emit = sink.emit  # type: ignore[method-assign]
        # Ctrl-C and SIGTERM raise RunAborted instead of asking to stop.
        proc.should_stop = lambda: False  # type: ignore[method-assign]
        proc.rig = rig
        proc.sink = sink
        status, message = "finished", None
        clock_at_start = rig.predicted_bench_s()
        try:
            proc.startup()
            proc.execute()
        except (KeyboardInterrupt, RunAborted) as exc:
            status, message = "aborted", str(exc) or "stopped by Ctrl-C"
        except Exception as exc:
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            log.debug("run %d failed", recorder.run_id, exc_info=True)
        finally:
            with _signals_ignored():
                problems = rig.safe_shutdown(message if status != "finished" else None)
                with contextlib.suppress(Exception):
                    proc.shutdown()
                sink.close()
                if problems and status == "finished":
                    status, message = "failed", "; ".join(problems)
                predicted = rig.predicted_bench_s()
                if predicted is not None and clock_at_start is not None:
                    predicted -= clock_at_start
                recorder.finish(status, message, proc.summary, predicted)
                if own_rig:
                    rig.close()
    return RunOutcome(
        recorder.run_id, status, csv_path, proc.summary, message, predicted
    )
