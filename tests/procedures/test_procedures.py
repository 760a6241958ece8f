"""Procedures end to end on the simulated bench, through pyvisa and the drivers."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pymeasure.experiment import Results
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labctl import runner, storage
from labctl.engine.writeverify import WriteVerify
from labctl.rig import Rig
from labctl.station import load_station
from procedures.base import ParameterError
from simulator.bench import bench_for


def bench_of(station):
    return bench_for(str(station.path.parent / "bench.yaml"))


def run(name, station, db_url, rig=None, **params):
    proc = runner.build_procedure(name, {k: str(v) for k, v in params.items()}, station)
    return runner.run(proc, station, storage.connect(db_url), rig=rig)


def points(db_url, run_id):
    return storage.run_points(storage.connect(db_url), run_id)


def test_iv_sweep_shows_set_and_reset(station_path, db_url):
    station = load_station(station_path)
    outcome = run("iv_sweep", station, db_url)
    assert outcome.status == "finished", outcome.message
    data = points(db_url, outcome.run_id)
    v = np.array([p["Voltage (V)"] for p in data])
    i = np.array([p["Current (A)"] for p in data])
    peak = int(np.argmax(v))
    trough = int(np.argmin(v))
    up = np.argmin(np.abs(v[:peak] - 0.2))
    down = peak + np.argmin(np.abs(v[peak:trough] - 0.2))
    # the positive branch SETs the cell: it conducts more on the way back
    assert i[down] > 2 * i[up]
    # the negative branch RESETs it again
    after = trough + np.argmin(np.abs(v[trough:] + 0.2))
    before = peak + np.argmin(np.abs(v[peak:trough] + 0.2))
    assert abs(i[after]) < 0.7 * abs(i[before])
    # every point is in the database and in the pymeasure CSV
    loaded = Results.load(str(outcome.csv_path))
    assert len(loaded.data) == len(data) == len(IVSWEEP_LEVELS(station))
    np.testing.assert_allclose(loaded.data["Current (A)"], i)
    # and the bench ends safe
    bench = bench_of(station)
    assert bench.outputs_on() == [] and bench.closed_relays() == []
    assert bench.max_abs_line_voltage_v <= station.limits.max_voltage_v


def IVSWEEP_LEVELS(station):
    return runner.build_procedure("iv_sweep", {}, station).levels()


def test_read_map_grounded_reads_the_cells_floating_shows_sneak_paths(station_path, db_url):
    station = load_station(station_path)
    truth = bench_of(station).arrays["A0"].conductance_s.copy()
    rig = Rig(station)
    try:
        grounded = run("read_map", station, db_url, rig=rig)
        floating = run("read_map", station, db_url, rig=rig, unselected="floating")
    finally:
        rig.close()
    engine = storage.connect(db_url)
    g = storage.run_maps(engine, grounded.run_id)[0].to_array()
    f = storage.run_maps(engine, floating.run_id)[0].to_array()
    # grounded unselected lines: I = G V through SMU and matrix, to read noise
    np.testing.assert_allclose(g, truth, rtol=0.02)
    assert np.median(np.abs(g / truth - 1)) < 0.005
    # floating lines add sneak currents through unselected cells
    assert np.median(f / truth) > 1.1
    assert len(points(db_url, grounded.run_id)) == truth.size


def test_programmed_cells_read_back_their_targets(station_path, db_url):
    station = load_station(station_path)
    rig = Rig(station)
    try:
        prog = run("program_map", station, db_url, rig=rig, targets="gradient")
        read = run("read_map", station, db_url, rig=rig)
    finally:
        rig.close()
    assert prog.status == "finished", prog.message
    assert prog.summary["converged_fraction"] >= 0.99
    engine = storage.connect(db_url)
    maps = {m.kind: m.to_array() for m in storage.run_maps(engine, prog.run_id)}
    measured = storage.run_maps(engine, read.run_id)[0].to_array()
    np.testing.assert_allclose(measured, maps["target"], rtol=0.04)


def test_open_relays_leave_no_current(station_path):
    station = load_station(station_path)
    rig = Rig(station)
    try:
        
        drive = rig.smu(station.roles.drive)
        sense = rig.smu(station.roles.sense[0])
        for ch in (drive, sense):
            ch.current_limit = 1e-3
            ch.source_voltage = 0.0
            ch.output_enabled = True
        lines = rig.lines("A0")
        drive_bus = rig.bus_of(station.roles.drive)
        lines.set([drive_bus] * lines.n_rows,
                  [rig.bus_of(station.roles.sense[0])] + [None] * (lines.n_cols - 1))
        drive.source_voltage = 0.2
        connected = -sense.measure_current()
        drive.source_voltage = 0.0
        lines.clear()
        drive.source_voltage = 0.2
        opened = -sense.measure_current()
    finally:
        rig.close()
    assert connected > 64 * 5e-6 * 0.2  # a whole column of cells conducts
    assert abs(opened) < 1e-9  # only the thermal noise floor is left


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("iv_sweep", {"v_max": "5"}, "v_max = 5 V exceeds the chip's max_voltage_v"),
        ("iv_sweep", {"compliance": "0.5"}, "exceeds the chip's max_compliance_a"),
        ("iv_sweep", {"colour": "red"}, "unknown parameter 'colour'"),
        ("iv_sweep", {"row": "-3"}, "row"),
        ("read_map", {"read_voltage": "1.0"}, "exceeds the chip's max_read_voltage_v"),
        ("read_map", {"unselected": "sideways"}, "unselected"),
        ("program_map", {"targets": "nonsense"}, "neither a pattern"),
        ("launch", {}, "unknown procedure 'launch'"),
    ],
)
def test_bad_parameters_are_refused_before_opening_anything(station_path, name, params,
                                                            expected):
    station = load_station(station_path)
    with pytest.raises(ParameterError, match=expected) as info:
        runner.build_procedure(name, params, station)
    assert "\n" not in str(info.value)


def test_station_check_finds_swapped_cables(tmp_path):
    import yaml

    from tests.conftest import write_bench

    physical = write_bench(tmp_path / "bench")
    believed = yaml.safe_load(physical.read_text())
    buses = believed["wiring"]["buses"]
    buses["C"], buses["E"] = buses["E"], buses["C"]
    believed_path = tmp_path / "believed.yaml"
    believed_path.write_text(yaml.safe_dump(believed))
    assert Rig_check(physical) == []
    problems = Rig_check(believed_path)
    assert {p.split()[1] for p in problems} >= {"C", "E"}
    assert any(p.startswith("bus E (smu2.smua): smu2.smua saw") for p in problems)


def Rig_check(path):
    rig = Rig(load_station(path))
    try:
        return rig.check_wiring()
    finally:
        rig.close()


def test_a_cell_record_the_database_refuses_keeps_the_measured_points(
    station_path, db_url, monkeypatch
):
    def refuse(*args, **kwargs):
        raise IntegrityError("INSERT INTO programming_log", {}, Exception("refused"))

    monkeypatch.setitem(storage._CELL_WRITERS, storage.CellProgrammed, refuse)
    station = load_station(station_path)
    outcome = run("program_map", station, db_url, targets="gradient")
    assert outcome.status == "failed"
    assert "refused" in outcome.message
    stored = points(db_url, outcome.run_id)
    assert stored, "the points measured before the refusal are lost"
    assert len(Results.load(str(outcome.csv_path)).data) == len(stored)


def test_an_unreadable_cell_is_logged_without_a_conductance(
    station_path, db_url, monkeypatch
):
    # An overflow reading (NaN) is a measurement like any other: stored as none.
    program_cell = WriteVerify._program_cell

    def first_unreadable(self, r, c, target):
        entry = program_cell(self, r, c, target)
        return replace(entry, final_s=math.nan) if (r, c) == (0, 0) else entry

    monkeypatch.setattr(WriteVerify, "_program_cell", first_unreadable)
    outcome = run("program_map", load_station(station_path), db_url, targets="gradient",
                  on_instrument="false")
    assert outcome.status == "finished", outcome.message
    with Session(storage.connect(db_url)) as session:
        finals = session.scalars(select(storage.ProgrammingEntry.final_s).where(
            storage.ProgrammingEntry.run_id == outcome.run_id)).all()
    assert len(finals) > 1
    assert finals.count(None) == 1
