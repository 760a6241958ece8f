"""The run database keeps every point as it is stored, on SQLite and PostgreSQL."""

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labctl import storage

SNAPSHOT = {
    "path": "/lab/stations/bench1.yaml",
    "instruments": {"smu1": {"model": "2636B"}, "matrix": {"model": "707B"}},
    "identities": {
        "smu1": {"manufacturer": "Keithley Instruments Inc.", "model": "2636B",
                 "serial": "4321", "firmware": "3.2.2"},
        "matrix": {"manufacturer": "Keithley Instruments Inc.", "model": "707B",
                   "serial": "99", "firmware": "1.7.1"},
    },
    "chip_spec": {"name": "PVK-7", "preset": "perovskite",
                  "arrays": {"A0": {"rows": 4, "cols": 3}}},
}


def start(engine, procedure="iv_sweep", snapshot=None, chip="PVK-7"):
    return storage.RunRecorder.start(
        engine, procedure=procedure, parameters={"v": np.float64(0.2)},
        station_name="bench1", station_snapshot=snapshot or SNAPSHOT, chip_name=chip,
        software_version="0", operator="ana", seed=7)


def test_points_maps_results_round_trip(any_db):
    engine = storage.connect(any_db)
    rec = start(engine, "read_map")
    for i in range(5):
        rec.add_point({"Row": i, "Current (A)": np.float64(i * 1e-6)})
    values = np.arange(6.0).reshape(2, 3) * 1e-6
    rec.add_map("A0", "read", values, 0.2)
    rec.add_result(0, "a sentence", {"cosine": 0.99, "map": np.eye(2)})
    # a second connection sees the points before the run finishes
    other = storage.connect(any_db)
    assert [p["Row"] for p in storage.run_points(other, rec.run_id)] == list(range(5))
    rec.finish("finished", summary={"cells": 6}, predicted_bench_s=1.5)
    run = storage.get_run(other, rec.run_id)
    assert run.status == "finished" and run.summary == {"cells": 6}
    assert (run.operator, run.seed, run.parameters) == ("ana", 7, {"v": 0.2})
    np.testing.assert_array_equal(storage.run_maps(other, rec.run_id)[0].to_array(), values)
    result = storage.run_results(other, rec.run_id)[0]
    assert result.metrics == {"cosine": 0.99, "map": [[1.0, 0.0], [0.0, 1.0]]}


def test_a_batch_is_one_transaction_and_points_are_numbered_on(any_db):
    engine = storage.connect(any_db)
    rec = start(engine)
    stored = rec.write([{"a": 1}, {"a": 2}], [storage.CellRead("A0", 0, 0, 1e-5)])
    assert stored == [(0, {"a": 1}), (1, {"a": 2})]
    # a batch with a cell the chip has no array for still stores its points
    rec.write([{"a": 3}], [storage.CellRead("B9", 0, 0, 1e-5)])
    with pytest.raises(IntegrityError):  # one point per number in a run
        with engine.begin() as conn:
            conn.execute(insert(storage.Point), {"run_id": rec.run_id, "seq": 2,
                                                 "data": {}})
    assert [p["a"] for p in storage.run_points(engine, rec.run_id)] == [1, 2, 3]
    with pytest.raises(storage.StorageError, match="not there to resume"):
        storage.RunRecorder.resume(engine, rec.run_id)  # still running
    rec.finish("aborted")
    resumed = storage.RunRecorder.resume(engine, rec.run_id)
    assert resumed.next_seq == 3
    run = storage.get_run(engine, rec.run_id)
    assert (run.status, run.resumes, run.finished_at) == ("running", 1, None)
    with pytest.raises(storage.StorageError, match="not there to resume"):
        storage.RunRecorder.resume(engine, rec.run_id)  # taken by the first


def test_numbers_json_cannot_hold_are_stored_as_null(any_db):
    engine = storage.connect(any_db)
    rec = start(engine)
    rec.add_point({"Current (A)": math.nan, "Limit": [math.inf, 1.0]})
    assert storage.run_points(engine, rec.run_id) == [
        {"Current (A)": None, "Limit": [None, 1.0]}]


def test_cells_keep_their_state_and_history(any_db):
    engine = storage.connect(any_db)
    sweep = start(engine)
    sweep.write(cells=[storage.CellSwept("A0", 1, 2, 3, {"v_max": 1.2})])
    read = start(engine, "read_map")
    read.write(cells=[storage.CellRead("A0", 1, 2, 12e-6), storage.CellRead("A0", 0, 0,
                                                                           11e-6)])
    prog = start(engine, "program_map")
    prog.write(cells=[storage.CellProgrammed("A0", 1, 2, 50e-6, 50.5e-6, 9, 3, True,
                                             False)])
    prog.write(cells=[storage.CellProgrammed("A0", 1, 2, 40e-6, 40.1e-6, 4, 2, True,
                                             False)])

    history = storage.cell_history(engine, "PVK-7", "A0", 1, 2)
    cell = history.cell
    assert (cell.cycles, cell.pulses, cell.stuck) == (3, 13, False)
    assert (cell.target_s, cell.last_conductance_s) == (40e-6, 40.1e-6)
    assert cell.programmed_run_id == cell.last_run_id == prog.run_id
    kinds = [(e["kind"], e["run"], e["procedure"]) for e in history.events]
    assert kinds == [("swept", sweep.run_id, "iv_sweep"),
                     ("read", read.run_id, "read_map"),
                     ("programmed", prog.run_id, "program_map"),
                     ("programmed", prog.run_id, "program_map")]
    assert history.events[2]["detail"]["error"] == pytest.approx(0.01)
    assert storage.cell_history(engine, "PVK-7", "A0", 3, 2) is None

    state = storage.chip_state(engine, "PVK-7")
    assert [(a.name, a.rows, a.cols) for a in state.arrays] == [("A0", 4, 3)]
    assert {(c.row, c.col) for c in state.cells["A0"]} == {(0, 0), (1, 2)}
    assert set(state.runs) == {read.run_id, prog.run_id}


def test_a_batch_naming_a_cell_several_times_stores_each_write(any_db):
    engine = storage.connect(any_db)
    rec = start(engine, "program_map")
    rec.write(cells=[
        storage.CellSwept("A0", 0, 1, 3), storage.CellSwept("A0", 0, 1, 2),
        storage.CellRead("A0", 0, 1, 11e-6), storage.CellRead("A0", 0, 1, 12e-6),
        storage.CellProgrammed("A0", 0, 1, 50e-6, 50.5e-6, 9, 3, True, False),
        storage.CellProgrammed("A0", 0, 1, 40e-6, 40.1e-6, 4, 2, False, True),
        storage.CellRead("A0", 3, 2, 9e-6),
    ])
    history = storage.cell_history(engine, "PVK-7", "A0", 0, 1)
    cell = history.cell
    assert (cell.cycles, cell.pulses, cell.stuck) == (5, 13, True)
    assert (cell.target_s, cell.last_conductance_s) == (40e-6, 40.1e-6)
    kinds = sorted(e["kind"] for e in history.events)
    assert kinds == ["programmed"] * 2 + ["read"] * 2 + ["swept"] * 2
    other = storage.cell_history(engine, "PVK-7", "A0", 3, 2).cell
    assert (other.last_conductance_s, other.pulses) == (9e-6, 0)


def test_an_infinite_target_is_stored_as_infinite(any_db):
    engine = storage.connect(any_db)
    rec = start(engine, "program_map")
    rec.write(cells=[storage.CellProgrammed("A0", 2, 2, math.inf, 1e-5, 1, 1, False,
                                            True)])
    history = storage.cell_history(engine, "PVK-7", "A0", 2, 2)
    assert history.cell.target_s == math.inf
    (entry,) = history.events
    assert (entry["detail"]["target_s"], entry["detail"]["error"]) == (math.inf, None)


def test_a_new_firmware_is_a_new_identity_and_the_old_one_stays(any_db):
    engine = storage.connect(any_db)
    start(engine)
    updated = {**SNAPSHOT, "identities": {**SNAPSHOT["identities"], "smu1": {
        **SNAPSHOT["identities"]["smu1"], "firmware": "3.3.1"}}}
    start(engine, snapshot=updated)
    start(engine, snapshot=updated)
    smu = [i for i in storage.station_identities(engine, "bench1") if i.name == "smu1"]
    assert [i.firmware for i in smu] == ["3.2.2", "3.3.1"]
    assert smu[0].idn == "Keithley Instruments Inc.,2636B,4321,3.2.2"
    assert smu[0].model == "2636B"


def test_runs_are_listed_by_chip_procedure_status_and_time(any_db):
    engine = storage.connect(any_db)
    a = start(engine, "iv_sweep")
    b = start(engine, "read_map")
    c = start(engine, "read_map", chip="other")
    b.finish("finished")
    with Session(engine) as session:
        session.get(storage.Run, a.run_id).started_at = datetime(2024, 5, 1, tzinfo=UTC)
        session.commit()
    ids = lambda **kw: [r.id for r in storage.list_runs(engine, **kw)]  # noqa: E731
    assert ids() == [c.run_id, b.run_id, a.run_id]
    assert ids(chip="PVK-7") == [b.run_id, a.run_id]
    assert ids(procedure="read_map", status="finished") == [b.run_id]
    assert ids(until=datetime(2024, 5, 2, tzinfo=UTC)) == [a.run_id]
    assert ids(since=datetime.now(UTC) - timedelta(hours=1)) == [c.run_id, b.run_id]
    a.add_point({"x": 1})
    counts = storage.point_counts(engine, [a.run_id, b.run_id])
    assert counts == {a.run_id: 1, b.run_id: 0}


def test_runs_of_ended_processes_are_marked_interrupted(any_db):
    engine = storage.connect(any_db)
    live = start(engine)
    dead = start(engine)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with Session(engine) as session:
        session.get(storage.Run, dead.run_id).pid = child.pid
        session.commit()
    assert storage.mark_interrupted(engine) == [dead.run_id]
    assert storage.get_run(engine, dead.run_id).status == "interrupted"
    assert storage.get_run(engine, live.run_id).status == "running"


def test_an_unknown_status_is_refused(any_db):
    engine = storage.connect(any_db)
    rec = start(engine)
    with pytest.raises(ValueError, match="unknown run status"):
        rec.finish("exploded")


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "f" / "x.sqlite"])
def test_unusable_database_paths_are_one_line(tmp_path, make):
    (tmp_path / "f").write_text("a file, not a folder")
    with pytest.raises(storage.StorageError) as info:
        storage.connect(storage.as_url(str(make(tmp_path))))
    assert "\n" not in str(info.value)


def test_unknown_url_scheme_is_one_line():
    with pytest.raises(storage.StorageError, match="database foo://bar"):
        storage.connect("foo://bar")


def test_password_is_redacted():
    assert "secret" not in storage.redacted("postgresql://lab:secret@localhost/db")
