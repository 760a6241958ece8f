"""The run database keeps every point as it is stored."""

import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy.orm import Session

from labctl import storage


def test_points_maps_results_round_trip(tmp_path):
    engine = storage.connect(storage.as_url(str(tmp_path / "db.sqlite")))
    rec = storage.RunRecorder.start(
        engine, procedure="read_map", parameters={"v": np.float64(0.2)},
        station_name="s", station_snapshot={"a": [1, 2]}, chip_name="c",
        software_version="0",
    )
    for i in range(5):
        rec.add_point({"Row": i, "Current (A)": np.float64(i * 1e-6)})
    values = np.arange(6.0).reshape(2, 3) * 1e-6
    rec.add_map("A0", "read", values, 0.2)
    rec.add_result(0, "a sentence", {"cosine": 0.99})
    # a second connection sees the points before the run finishes
    other = storage.connect(storage.as_url(str(tmp_path / "db.sqlite")))
    assert [p["Row"] for p in storage.run_points(other, rec.run_id)] == list(range(5))
    rec.finish("finished", summary={"cells": 6}, predicted_bench_s=1.5)
    run = storage.get_run(other, rec.run_id)
    assert run.status == "finished" and run.summary == {"cells": 6}
    np.testing.assert_array_equal(storage.run_maps(other, rec.run_id)[0].to_array(), values)
    assert storage.run_results(other, rec.run_id)[0].metrics == {"cosine": 0.99}


def start(engine):
    return storage.RunRecorder.start(
        engine, procedure="iv_sweep", parameters={}, station_name="s",
        station_snapshot={}, chip_name="c", software_version="0")


def test_runs_of_ended_processes_are_marked_interrupted(tmp_path):
    engine = storage.connect(storage.as_url(str(tmp_path / "db.sqlite")))
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
