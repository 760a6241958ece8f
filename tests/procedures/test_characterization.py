"""The device characterizations end to end on the simulated bench, small."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymeasure.experiment import Results
from typer.testing import CliRunner

from labctl import runner, storage
from labctl.cli import app
from labctl.station import load_station
from simulator.bench import bench_for
from tests.conftest import write_bench


def bench_of(station):
    return bench_for(str(station.path.parent / "bench.yaml"))


def run(name, station_path, db_url, **params):
    station = load_station(station_path)
    proc = runner.build_procedure(name, {k: str(v) for k, v in params.items()}, station)
    outcome = runner.run(proc, station, storage.connect(db_url))
    assert outcome.status == "finished", outcome.message
    bench = bench_of(station)
    assert bench.outputs_on() == [] and bench.closed_relays() == []
    assert bench.max_abs_line_voltage_v <= station.limits.max_voltage_v
    points = storage.run_points(storage.connect(db_url), outcome.run_id)
    assert len(Results.load(str(outcome.csv_path)).data) == len(points)
    return outcome, points, bench


def test_forming_a_fresh_cell_takes_the_forming_voltage_and_the_limit_sets_the_mode(
    tmp_path, db_url
):
    fresh = write_bench(tmp_path / "fresh", formed={"A0": False})
    outcome, points, bench = run("forming", fresh, db_url, cells=3, compliance=1e-4)
    summary = outcome.summary
    assert summary["formed"] == 3 and summary["mode"] == "analog"
    assert 1.3 < summary["v_forming_v"] < 1.8  # the preset's 1.5 V, with its spread
    array = bench.arrays["A0"]
    assert array.formed[0, :3].all() and not array.formed[0, 3:].any()
    assert summary["kept_after_hold"] > 0.95  # non-volatile
    # each ramp stops at the compliance
    assert [p["Compliance"] for p in points].count(1) == 3

    volatile = write_bench(tmp_path / "volatile", formed={"A0": False})
    outcome, _, bench = run("forming", volatile, db_url, compliance=5e-6, hold=1.0)
    assert outcome.summary["mode"] == "volatile"
    assert bench.arrays["A0"].mode[0, 0] == 1
    assert outcome.summary["kept_after_hold"] < 0.2  # it decayed

    # Each formed cell's history says when, under what limit, in what mode.
    engine = storage.connect(db_url)
    history = storage.cell_history(engine, "PVK-demo", "A0", 0, 1)
    assert history.cell.mode == "analog" and history.cell.formed_at is not None
    assert history.cell.forming_compliance_a == pytest.approx(1e-4)
    formed = [e for e in history.events if e["kind"] == "formed"]
    assert len(formed) == 1 and formed[0]["procedure"] == "forming"
    assert formed[0]["conductance_s"] == history.cell.last_conductance_s > 0
    assert 1.3 < formed[0]["detail"]["forming_voltage_v"] < 1.8
    # The second chip of that name formed its cell (0, 0) as a volatile one.
    assert storage.cell_history(engine, "PVK-demo", "A0", 0, 0).cell.mode == "volatile"
    assert storage.cell_history(engine, "PVK-demo", "A0", 0, 5) is None  # not formed


def test_forming_leaves_cells_that_already_conduct_alone(station_path, db_url):
    outcome, points, bench = run("forming", station_path, db_url, cells=2)
    assert outcome.summary["formed_before"] == 2 and outcome.summary["formed"] == 0
    assert points == []
    assert bench.max_abs_line_voltage_v <= 0.1 + 1e-12  # only the reads


def test_pulse_response_gives_saturating_asymmetric_curves(station_path, db_url):
    outcome, points, bench = run(
        "pulse_response",
        station_path,
        db_url,
        pulses=30,
        cycles=2,
        set_voltages="1.1,1.3",
    )
    assert len(points) == 2 * 3 * 31
    g = np.array([p["Conductance (S)"] for p in points])
    amplitude = np.array([p["Amplitude (V)"] for p in points])
    pulse = np.array([p["Pulse"] for p in points])
    ends = {a: g[(amplitude == a) & (pulse == 30)].mean() for a in (1.1, 1.3, -1.1)}
    starts = {a: g[(amplitude == a) & (pulse == 0)].mean() for a in (1.1, 1.3, -1.1)}
    assert ends[1.3] > ends[1.1] > starts[1.1]  # a larger amplitude moves further
    assert ends[-1.1] < 0.5 * starts[-1.1]
    summary = outcome.summary
    assert summary["nonlinearity_set"] != pytest.approx(
        summary["nonlinearity_reset"], rel=0.2
    )
    for name in ("nonlinearity_set", "nonlinearity_reset"):
        assert 0.3 <= summary[name] <= 4  # devices.md
    # A = 1 / (rate (V / V_set - 1)^alpha dt) of this cell at 1.3 V, 10 us
    cell = bench.arrays["A0"]
    overdrive = 1.3 / cell.v_set_cell_v[0, 0] - 1
    rate = cell.rate_set_cell_per_s[0, 0] * overdrive**bench.preset.alpha_set
    assert summary["pulses_to_saturate_set"] == pytest.approx(
        1 / (rate * 1e-5), rel=0.1
    )


def test_multilevel_counts_the_levels_that_stay_apart(station_path, db_url):
    outcome, points, bench = run(
        "multilevel", station_path, db_url, levels=8, reads=3, hold=100
    )
    assert outcome.summary["levels"] == 8 and outcome.summary["levels_tried"] == 8
    assert len(points) == 8 * 3 * 2
    assert bench.now_s > 100  # the hold ran on the bench clock
    # Levels too close for the read noise do not all count.
    crowded, _, _ = run(
        "multilevel",
        station_path,
        db_url,
        first_row=2,
        levels=16,
        g_low=50e-6,
        g_high=51.5e-6,
        tolerance=0.002,
        reads=6,
        hold=0,
    )
    assert crowded.summary["levels"] < 16


def test_retention_reads_spread_in_log_time_on_the_bench_clock(station_path, db_url):
    outcome, points, bench = run(
        "retention",
        station_path,
        db_url,
        levels=2,
        cells_per_level=1,
        duration=1e4,
        per_decade=2,
    )
    times = sorted({p["Time (s)"] for p in points})
    assert times[0] == 1.0 and times[-1] == pytest.approx(1e4)
    assert np.allclose(np.diff(np.log10(times)), 0.5)
    assert bench.now_s > 1e4
    p = bench.preset
    loss = 1 - math.exp(-((1e4 / p.retention_tau_s) ** p.retention_beta))
    assert outcome.summary["loss_at_end"] == pytest.approx(loss, rel=0.3)
    assert 3e4 < outcome.summary["retention_s"] < 1e6


def test_endurance_cycles_until_the_window_closes(tmp_path, db_url):
    station = write_bench(
        tmp_path / "bench", device={"endurance_cycles": 150.0, "endurance_sigma": 0.0}
    )
    outcome, points, bench = run(
        "endurance", station, db_url, max_cycles=1000, per_decade=20
    )
    ratios = [p["Ratio"] for p in points]
    assert ratios[0] > 10 and ratios[-1] < 2  # ends failed
    assert 100 <= outcome.summary["endurance_cycles"] <= 150
    assert outcome.summary["failed_at_cycles"] <= 180
    assert bench.arrays["A0"].cycles[0, 0] == 150
    windows = [p["On (S)"] - p["Off (S)"] for p in points[:-1]]
    assert windows[-1] < windows[0]  # it narrowed before it failed


def test_read_disturb_is_nil_below_its_voltage_and_creeps_above(station_path, db_url):
    outcome, points, _ = run(
        "read_disturb",
        station_path,
        db_url,
        read_voltages="0.3,0.75",
        reads=600,
        blocks=3,
    )
    assert len(points) == 2 * 4
    drift = outcome.summary["drift_per_read"]
    assert abs(drift["0.3"]) < 2e-5
    assert drift["0.75"] > 1e-3  # toward SET
    assert outcome.summary["disturb_from_v"] == 0.75


def test_variability_maps_the_set_and_reset_states(station_path, db_url):
    outcome, points, _ = run("variability", station_path, db_url, rows=2, cols=4)
    assert [(p["Row"], p["Column"]) for p in points] == [
        (r, c) for r in range(2) for c in range(4)
    ]
    maps = {
        m.kind: m.to_array()
        for m in storage.run_maps(storage.connect(db_url), outcome.run_id)
    }
    assert maps["on"].shape == (2, 4) and (maps["on"] > 20 * maps["off"]).all()
    assert 0 < outcome.summary["d2d_on"] < 0.1


def test_the_characterizations_are_listed_and_refuse_bad_levels(station_path):
    listed = CliRunner().invoke(app, ["procedures"])
    assert listed.exit_code == 0
    for name in (
        "forming",
        "pulse_response",
        "multilevel",
        "endurance",
        "retention",
        "read_disturb",
        "variability",
    ):
        assert f"{name}:" in listed.output
    station = load_station(station_path)
    with pytest.raises(runner.ParameterError, match="max_voltage_v"):
        runner.build_procedure("pulse_response", {"set_voltages": "1.2,2.5"}, station)
    with pytest.raises(runner.ParameterError, match="comma"):
        runner.build_procedure("read_disturb", {"read_voltages": "0.1;0.2"}, station)
