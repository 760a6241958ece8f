"""The command line on stored runs: listing, resuming, exporting, plotting,
and what runs did to a chip's cells."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labctl import plots, runner, storage
from labctl.cli import app
from labctl.rig import Rig
from labctl.station import load_station
from tests.conftest import write_bench

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    wide = {"COLUMNS": "200"}  # tables unfolded
    return CliRunner(env=wide).invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An I–V sweep, a read map and a write-verify, run through the command line
    (runs 1, 2 and 3 of one database, which the tests only read)."""
    folder = tmp_path_factory.mktemp("runs")
    station = str(write_bench(folder / "bench"))
    db_url = f"sqlite:///{folder / 'runs.sqlite'}"
    for args in (["iv_sweep", "--step", "0.1", "--cycles", "2"], ["read_map"],
                 ["program_map", "--targets", "checkerboard"]):
        result = invoke("run", *args, "--station", station, "--db", db_url,
                        "--operator", "ana")
        assert result.exit_code == 0, result.output
    return db_url


def test_run_streams_each_stored_point_as_a_json_line(station_path, db_url):
    result = invoke("run", "iv_sweep", "--step", "0.2", "--station", str(station_path),
                    "--db", db_url, "--stream")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0] == {"event": "started", "run": 1, "csv": events[0]["csv"]}
    points = [e for e in events if e["event"] == "point"]
    assert [p["seq"] for p in points] == list(range(len(points)))
    stored = storage.run_points(storage.connect(db_url), 1)
    assert [p["data"] for p in points] == stored


def test_runs_list_filters(runs):
    def listed(*args):
        result = invoke("runs", "list", "--db", runs, *args)
        assert result.exit_code == 0, result.output
        return {name for name in ("iv_sweep", "read_map", "program_map")
                if name in result.output}

    assert listed() == {"iv_sweep", "read_map", "program_map"}
    assert listed("--procedure", "read_map") == {"read_map"}
    assert listed("--chip", "PVK-demo", "--status", "finished") == listed()
    assert listed("--chip", "another") == set()
    assert listed("--status", "interrupted") == set()
    assert listed("--since", "2000-01-01", "--until", "2000-01-02") == set()
    assert listed("--since", "2000-01-01") == listed()
    assert "ana" in invoke("runs", "list", "--db", runs).output
    bad = invoke("runs", "list", "--db", runs, "--status", "lost")
    assert bad.exit_code == 2 and "give one of queued, running" in bad.output


def test_runs_show_names_operator_seed_and_points(runs):
    shown = invoke("runs", "show", "1", "--db", runs).output
    assert "operator ana" in shown and "simulated bench seed 20251" in shown
    assert "points: 98" in shown  # 49 levels a cycle, two cycles


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_runs_export_writes_the_points(runs, tmp_path, fmt):
    out = tmp_path / f"run.{fmt}"
    result = invoke("runs", "export", "3", "--format", fmt, "-o", str(out),
                    "--db", runs)
    assert result.exit_code == 0, result.output
    assert "512 points written" in result.output
    stored = storage.run_points(storage.connect(runs), 3)
    columns = ["seq", "Row", "Column", "Target (S)", "Conductance (S)", "Error",
               "Pulses", "Rounds", "Converged", "Stuck"]
    if fmt == "csv":
        frame = pd.read_csv(out)
    elif fmt == "parquet":
        frame = pd.read_parquet(out)
        assert frame.attrs["labctl_run"]["procedure"] == "program_map"
        assert frame.attrs["labctl_run"]["operator"] == "ana"
    else:
        document = json.loads(out.read_text())
        assert document["run"]["id"] == 3 and document["columns"] == columns
        frame = pd.DataFrame(document["points"])
    assert list(frame.columns) == columns
    assert frame.drop(columns="seq").to_dict("records") == stored


def test_runs_export_refuses_an_unknown_format(runs):
    result = invoke("runs", "export", "1", "--format", "xlsx", "--db", runs)
    assert result.exit_code == 2 and "give one of csv, parquet, json" in result.output


def test_plot_writes_a_png_for_each_procedure(runs, tmp_path):
    for run_id in (1, 2, 3):
        out = tmp_path / f"run{run_id}.png"
        result = invoke("plot", str(run_id), "-o", str(out), "--db", runs)
        assert result.exit_code == 0, result.output
        assert out.read_bytes().startswith(PNG)


def test_the_iv_plot_is_log_current_with_direction_arrows(runs):
    engine = storage.connect(runs)
    figure = plots.figure_for(engine, storage.get_run(engine, 1))
    ax = figure.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "Voltage (V)"
    assert len(ax.get_lines()) >= 2  # a curve per cycle
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == 2 * 4  # four legs a cycle


def test_the_map_plots_are_heatmaps_in_microsiemens(runs):
    engine = storage.connect(runs)
    read = plots.figure_for(engine, storage.get_run(engine, 2))
    image = read.axes[0].images[0]
    stored = storage.run_maps(engine, 2)[0].to_array()
    np.testing.assert_allclose(image.get_array(), stored * 1e6)
    assert read.axes[1].get_ylabel() == "Conductance (µS)"  # the colour bar
    program = plots.figure_for(engine, storage.get_run(engine, 3))
    titles = [ax.get_title() for ax in program.axes]
    assert {"target", "programmed"} <= set(titles)
    convergence = next(ax for ax in program.axes if ax.get_title().startswith("conv"))
    assert convergence.get_xlabel() == "Pulses per cell"
    assert convergence.get_lines()[0].get_ydata()[-1] == pytest.approx(1.0)


def test_the_attention_plot_sets_the_chip_beside_the_reference(db_url, tmp_path):
    engine = storage.connect(db_url)
    recorder = storage.RunRecorder.start(
        engine, procedure="attention_head", parameters={"head": 0}, station_name="s",
        station_snapshot={}, chip_name="PVK-demo", software_version="0")
    chip = np.full((3, 3), 1 / 3)
    reference = np.eye(3)
    recorder.add_result(0, "a short sentence", {"attention_chip": chip,
                                                "attention_reference": reference})
    recorder.finish("finished")
    figure = plots.figure_for(engine, storage.get_run(engine, recorder.run_id))
    shown = [ax.images[0].get_array() for ax in figure.axes if ax.images]
    np.testing.assert_allclose(shown[0], chip)
    np.testing.assert_allclose(shown[1], reference)
    missing = invoke("plot", str(recorder.run_id), "--item", "4", "--db", db_url,
                     "-o", str(tmp_path / "x.png"))
    assert missing.exit_code == 2 and "no sentence 4" in missing.output


def test_a_run_without_points_has_nothing_to_plot(db_url):
    engine = storage.connect(db_url)
    recorder = storage.RunRecorder.start(
        engine, procedure="read_map", parameters={}, station_name="s",
        station_snapshot={}, chip_name="c", software_version="0")
    result = invoke("plot", str(recorder.run_id), "--db", db_url)
    assert result.exit_code == 2 and "stored no points" in result.output


def test_cells_history_lists_what_each_run_did(runs):
    result = invoke("cells", "history", "PVK-demo", "0", "0", "--db", runs)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2 I–V cycles" in out
    rows = [out.index(f"│ {kind} ") for kind in ("swept", "read", "programmed")]
    assert rows == sorted(rows)  # oldest first
    missing = invoke("cells", "history", "PVK-demo", "0", "99", "--db", runs)
    assert missing.exit_code == 2 and "no run touched cell (0, 99)" in missing.output


def test_chip_state_says_what_is_programmed_where(runs):
    result = invoke("chip", "state", "PVK-demo", "--db", runs, "--cells")
    assert result.exit_code == 0, result.output
    assert "run 3 program_map" in result.output
    assert "512 of 512 cells touched" in result.output
    assert invoke("chip", "state", "nope", "--db", runs).exit_code == 2


def test_runs_resume_continues_an_interrupted_run(station_path, db_url):
    station = load_station(station_path)
    engine = storage.connect(db_url)
    rig = Rig(station)
    try:
        proc = runner.build_procedure("read_map", {}, station)

        def stop(_pct):
            rig.stop_requested = "stopped"

        first = runner.run(proc, station, engine, rig=rig, progress=stop)
    finally:
        rig.close()
    assert first.status == "aborted"
    result = invoke("runs", "resume", str(first.run_id), "--db", db_url)
    assert result.exit_code == 0, result.output
    assert f"run {first.run_id}: finished" in result.output
    assert len(storage.run_points(engine, first.run_id)) == 64 * 8
    again = invoke("runs", "resume", str(first.run_id), "--db", db_url)
    assert again.exit_code == 2 and "is finished" in again.output


# The queue.


def test_queued_runs_wait_then_run_in_order(tmp_path):
    station = str(write_bench(tmp_path / "bench"))
    db_url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    for args in (["read_map"], ["iv_sweep", "--step", "0.2"]):
        queued = invoke("run", *args, "--queue", "--station", station, "--db", db_url,
                        "--operator", "ana")
        assert queued.exit_code == 0, queued.output
        assert "queued" in queued.output
    engine = storage.connect(db_url)
    waiting = storage.queued_runs(engine, "demo-sim")
    assert [(r.procedure, r.operator) for r in waiting] == [("read_map", "ana"),
                                                            ("iv_sweep", "ana")]
    assert storage.run_points(engine, waiting[0].id) == []  # nothing measured yet
    listed = invoke("runs", "list", "--status", "queued", "--db", db_url)
    assert listed.output.count("queued") == 2

    started = invoke("runs", "start", "--station", station, "--db", db_url)
    assert started.exit_code == 0, started.output
    runs = [storage.get_run(engine, r.id) for r in waiting]
    assert [r.status for r in runs] == ["finished", "finished"]
    assert runs[0].finished_at <= runs[1].started_at  # one after the other
    assert runs[0].station_snapshot["identities"]  # the instruments, as they ran
    assert storage.run_points(engine, runs[1].id)
    again = invoke("runs", "start", "--station", station, "--db", db_url)
    assert "no queued runs" in again.output


def test_a_queued_run_the_station_no_longer_allows_fails_and_the_queue_goes_on(
    tmp_path,
):
    station_path = write_bench(tmp_path / "bench")
    station = load_station(station_path)
    engine = storage.connect(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    first = runner.queue(runner.build_procedure("iv_sweep", {"v_max": "1.5"}, station),
                         station, engine)
    second = runner.queue(runner.build_procedure("read_map", {}, station), station,
                          engine)
    tighter = station.model_copy(update={
        "limits": station.limits.model_copy(update={"max_voltage_v": 1.0})})
    outcomes = runner.run_queued(tighter, engine)
    assert [(o.run_id, o.status) for o in outcomes] == [(first, "failed"),
                                                        (second, "finished")]
    assert "v_max = 1.5 V exceeds the chip's max_voltage_v" in outcomes[0].message
    assert storage.get_run(engine, first).status == "failed"
    with pytest.raises(storage.StorageError, match="not queued"):
        storage.RunRecorder.claim(engine, second, station_snapshot={})


def test_a_signal_stops_the_queue_and_leaves_the_rest_queued(tmp_path):
    station = load_station(write_bench(tmp_path / "bench"))
    engine = storage.connect(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    ids = [runner.queue(runner.build_procedure("read_map", {}, station), station, engine)
           for _ in range(2)]
    rig = Rig(station)
    seen = [0]

    def ctrl_c_after_a_few_points(_pct):
        seen[0] += 1
        if seen[0] == 5:
            rig.stop_requested = "stopped by SIGINT"

    try:
        outcomes = runner.run_queued(station, engine, rig=rig,
                                     progress=ctrl_c_after_a_few_points)
    finally:
        rig.close()
    assert [(o.run_id, o.status) for o in outcomes] == [(ids[0], "aborted")]
    assert storage.get_run(engine, ids[1]).status == "queued"
