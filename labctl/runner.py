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
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymeasure.experiment import FloatParameter, IntegerParameter, ListParameter, Results
from sqlalchemy.engine import Engine

import labctl
from labctl import storage
from labctl.rig import Rig, RunAborted
from labctl.station import Station
from procedures import PROCEDURES
from procedures.base import LabProcedure, ParameterError

log = logging.getLogger("labctl.run")


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
def _stop_on_signals(rig: Rig) -> Iterator[None]:
    """SIGINT or SIGTERM asks the run to stop at its next point; a second one
    stops it at once. Either way the safe end follows."""

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if rig.stop_requested is None:
            rig.stop_requested = f"stopped by {name}"
            log.warning("%s: stopping at the next point (again to stop at once)", name)
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


def run(
    proc: LabProcedure,
    station: Station,
    engine: Engine,
    *,
    rig: Rig | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunOutcome:
    """Run a built procedure on the station and store everything it measures.

    Raises what made the run impossible before its row was written (the
    instruments not answering, say), after the safe end; once the row exists,
    every outcome is stored and returned.
    """
    own_rig = rig is None
    rig = rig or Rig(station)
    rig.stop_requested = None
    recorder: storage.RunRecorder | None = None
    sink: _Recorder | None = None
    csv_path = Path()
    status, message, error = "finished", None, None
    clock_at_start = predicted = None
    with _stop_on_signals(rig):
        try:
            identities = rig.identities()
            recorder = storage.RunRecorder.start(
                engine,
                procedure=proc.NAME,
                parameters=proc.parameter_values(),
                station_name=station.name,
                station_snapshot=station_snapshot(station, identities),
                chip_name=station.chip_spec.name if station.chip_spec else "",
                software_version=labctl.__version__,
            )
            csv_path = new_csv(csv_folder(engine), recorder.run_id, proc.NAME)
            recorder.set_csv_path(str(csv_path))
            sink = _Recorder(recorder, Results(proc, str(csv_path)), progress)
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
                    sink.close()
                if problems and status == "finished":
                    status, message = "failed", "; ".join(problems)
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
