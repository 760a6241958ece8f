"""A run stopped before its end resumes where it stopped, measuring nothing
twice, under the same run, its CSV matching its points."""

import numpy as np
import pytest
from pymeasure.experiment import Results
from sqlalchemy.orm import Session

from labctl import runner, storage
from labctl.rig import Rig
from labctl.station import load_station

CASES = {
    "iv_sweep": {"step": "0.05", "cycles": "2"},
    "read_map": {},
    "program_map": {"targets": "random"},
}


def stop_after(rig, updates):
    """A progress callback that asks the run to stop after some points."""
    seen = [0]

    def progress(_pct):
        seen[0] += 1
        if seen[0] == updates:
            rig.stop_requested = "stopped for the test"

    return progress


def stopped_run(name, station, engine, rig, updates=37):
    proc = runner.build_procedure(name, CASES[name], station)
    outcome = runner.run(proc, station, engine, rig=rig,
                         progress=stop_after(rig, updates))
    assert outcome.status == "aborted", outcome.message
    return outcome


@pytest.mark.parametrize("name", CASES)
def test_a_stopped_run_resumes_where_it_stopped(name, station_path, db_url):
    station = load_station(station_path)
    engine = storage.connect(db_url)
    rig = Rig(station)
    try:
        first = stopped_run(name, station, engine, rig)
        before = storage.run_points(engine, first.run_id)
        resumed = runner.resume(first.run_id, station, engine, rig=rig)
    finally:
        rig.close()
    assert (resumed.run_id, resumed.status) == (first.run_id, "finished")
    assert resumed.csv_path == first.csv_path
    points = storage.run_points(engine, first.run_id)
    assert 0 < len(before) < len(points)
    assert points[:len(before)] == before
    run = storage.get_run(engine, first.run_id)
    assert run.resumes == 1 and run.finished_at is not None
    if name == "iv_sweep":
        levels = runner.build_procedure(name, CASES[name], station).levels()
        assert [p["Voltage (V)"] for p in points] == [float(v) for v in levels] * 2
        assert [p["Cycle"] for p in points] == [0] * len(levels) + [1] * len(levels)
        assert resumed.summary["points"] == len(points)
    else:
        cells = sorted((p["Row"], p["Column"]) for p in points)
        assert cells == [(r, c) for r in range(64) for c in range(8)]
        assert resumed.summary["cells"] == 64 * 8
        last = storage.run_maps(engine, first.run_id)[-1].to_array()
        assert np.isfinite(last).all()
    loaded = Results.load(str(resumed.csv_path)).data
    assert len(loaded) == len(points)
    first_column = list(points[0])[0]
    assert list(loaded[first_column]) == [p[first_column] for p in points]


def test_a_resumed_write_verify_keeps_its_targets_and_its_history(station_path, db_url):
    station = load_station(station_path)
    engine = storage.connect(db_url)
    rig = Rig(station)
    try:
        first = stopped_run("program_map", station, engine, rig)
        resumed = runner.resume(first.run_id, station, engine, rig=rig)
    finally:
        rig.close()
    maps = [m.kind for m in storage.run_maps(engine, first.run_id)]
    assert maps.count("target") == 1  # stored once, reused on resume
    state = storage.chip_state(engine, "PVK-demo")
    cells = state.cells["A0"]
    assert len(cells) == 64 * 8
    assert {c.programmed_run_id for c in cells} == {first.run_id}
    assert sum(c.pulses for c in cells) == resumed.summary["pulses"]
    with Session(engine) as session:
        entries = session.query(storage.ProgrammingEntry).filter_by(
            run_id=first.run_id).count()
    assert entries == 64 * 8


def test_a_finished_run_is_not_resumed(station_path, db_url):
    station = load_station(station_path)
    engine = storage.connect(db_url)
    outcome = runner.run(runner.build_procedure("iv_sweep", {"step": "0.2"}, station),
                         station, engine)
    with pytest.raises(runner.ResumeError, match="is finished; only runs that are"):
        runner.resume(outcome.run_id, station, engine)


def test_a_run_resumes_only_on_its_station_and_chip(station_path, db_url):
    station = load_station(station_path)
    engine = storage.connect(db_url)
    rig = Rig(station)
    try:
        first = stopped_run("read_map", station, engine, rig)
    finally:
        rig.close()
    elsewhere = station.model_copy(update={"name": "bench-2"})
    with pytest.raises(runner.ResumeError, match="ran on station 'demo-sim'"):
        runner.resume(first.run_id, elsewhere, engine)
    with pytest.raises(runner.ResumeError, match="no run 99"):
        runner.resume(99, station, engine)


HEAD = {"sentences": "1"}


def tile_maps(engine, run_id):
    """The kinds of a head run's tile maps, in the order they were stored."""
    return [m.kind for m in storage.run_maps(engine, run_id)]


def head_run_resumed(station_path, db_url, first_tiles, then_tiles=None):
    """An attention_head run stopped after `first_tiles` tiles and resumed
    (stopped again after `then_tiles` more, if given): the engine, both
    outcomes, and the run's maps as the first part left them."""
    station = load_station(station_path)
    engine = storage.connect(db_url)
    rig = Rig(station)
    try:
        proc = runner.build_procedure("attention_head", HEAD, station)
        first = runner.run(proc, station, engine, rig=rig,
                           progress=stop_after(rig, first_tiles))
        assert first.status == "aborted", first.message
        before = storage.run_maps(engine, first.run_id)
        progress = None if then_tiles is None else stop_after(rig, then_tiles)
        again = runner.resume(first.run_id, station, engine, rig=rig, progress=progress)
    finally:
        rig.close()
    return engine, first, again, before


def test_a_stopped_attention_head_run_resumes_at_its_first_unfinished_tile(
    station_path, db_url
):
    engine, first, again, before = head_run_resumed(station_path, db_url, 3, 2)
    assert again.status == "aborted"
    kinds = [m.kind for m in before]
    assert kinds == [f"{kind}-{i}" for i in range(3) for kind in ("tile", "partial")]
    # Tiles 0 to 2 are neither programmed nor multiplied again: the resumed
    # run goes on at tile 3, and the stored partial sums stay as they were.
    after = tile_maps(engine, first.run_id)
    assert after[len(before):] == [
        f"{kind}-{i}" for i in (3, 4) for kind in ("tile", "partial")
    ]
    for m, kept in zip(storage.run_maps(engine, first.run_id), before, strict=False):
        np.testing.assert_array_equal(m.to_array(), kept.to_array())


@pytest.mark.slow
def test_a_resumed_attention_head_run_finishes_as_close_to_float64(
    station_path, db_url
):
    engine, first, resumed, _ = head_run_resumed(station_path, db_url, 40)
    assert resumed.status == "finished", resumed.message
    summary = resumed.summary
    assert summary["tiles_resumed"] == 40 and summary["tiles"] == 144
    assert summary["cosine_mean"] > 0.98
    kinds = tile_maps(engine, first.run_id)
    assert sorted(kinds) == sorted(
        f"{kind}-{i}" for i in range(144) for kind in ("tile", "partial")
    )
