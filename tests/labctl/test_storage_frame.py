"""A run's frame read in columns is the frame built point by point, on SQLite
and PostgreSQL: same columns in the same order, same types, same values."""

import random

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from labctl import storage

SNAPSHOT = {
    "chip_spec": {"preset": "perovskite", "arrays": {"A0": {"rows": 4, "cols": 4}}}
}
REQUESTED = ("Current (A)", "Absent (V)")
BY_POINTS = storage._point_frame

# Points pyarrow reads exactly: the frame comes from its columns.
COLUMNAR = {
    "ragged numbers": [
        {"Row": 0, "Current (A)": 1.2345678901234567e-05},
        {"Row": 1},
        {"Column": 3, "Row": 2, "Current (A)": -0.0, "Count": 2**63 - 1},
        {"Current (A)": 2, "Count": -(2**63)},
        {"Row": 4, "Current (A)": None, "Late": 1e308},
        {"Row": 5, "Current (A)": 5e-324, "Late": 3},
    ],
    "text and flags in every point": [
        {"Label": 'cell "A", row 3 # first', "Flag": True, "Voltage (V)": 0.1},
        {"Label": "µA\nsecond line\t\\", "Flag": False, "Voltage (V)": 2},
    ],
    "empty points": [{}, {"a": 1}, {}],
    "floats beyond 64-bit integers": [
        {"Current (A)": 9.91e37},
        {"Current (A)": 1e-9},
        {"Current (A)": -1e300},
    ],
    "nanosecond times beside overflow readings": [
        {"Time (ns)": 1_700_000_000_000_000_000, "Current (A)": 9.91e37},
        {"Time (ns)": 1_700_000_000_000_000_001, "Current (A)": 1e-9},
    ],
    "numpy values": [
        {"Current (A)": np.float64(1e-6), "Row": np.int64(3), "Flag": np.bool_(True)}
    ],
}

# Points pyarrow would not give back as they hold them: read point by point.
POINT_BY_POINT = {
    "arrays": [{"Trace (A)": [1, 2.5]}, {"Trace (A)": [3e-7]}],
    "objects": [{"Meta": {"x": 1}}, {"Meta": {"y": "z"}}],
    "text some points lack": [{"Label": "x"}, {"Current (A)": 1.0}],
    "text held as null": [{"Label": None}, {"Label": "y"}],
    "flags some points lack": [{"Flag": True}, {"Current (A)": 1.0}],
    "flags held as null": [{"Flag": None}, {"Flag": False}],
    "numbers and text": [{"a": 1}, {"a": "x"}],
    "numbers and flags": [{"a": 1}, {"a": True}],
    "integers beyond 64 bits": [{"a": 2**64}, {"a": 1}],
    "integers beyond 64 bits among floats": [{"a": -(2**70)}, {"a": 0.5}],
    "only nulls": [{"a": None}, {"a": None}],
    "a column named seq": [{"seq": 7, "a": 1}, {"a": 2}],
    "text that looks like a time": [{"At": "2024-05-01T12:00:00"}],
}


@pytest.fixture
def engine(any_db):
    engine = storage.connect(any_db)
    yield engine
    engine.dispose()


@pytest.fixture
def read_point_by_point(monkeypatch):
    """The runs :func:`storage.run_frame` read point by point."""
    runs = []

    def spy(engine, run_id, columns):
        runs.append(run_id)
        return BY_POINTS(engine, run_id, columns)

    monkeypatch.setattr(storage, "_point_frame", spy)
    return runs


def stored_run(engine, points=()):
    rec = storage.RunRecorder.start(
        engine,
        procedure="probe",
        parameters={},
        station_name="bench1",
        station_snapshot=SNAPSHOT,
        chip_name="PVK-7",
        software_version="0",
    )
    if points:
        rec.write(points)
    rec.finish("finished")
    return rec.run_id


def assert_frame_as_point_by_point(engine, run_id, columns=REQUESTED):
    frame = storage.run_frame(engine, run_id, columns)
    expected = BY_POINTS(engine, run_id, columns)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    return frame


@pytest.mark.parametrize("name", COLUMNAR)
def test_points_pyarrow_reads_exactly_are_read_in_columns(
    engine, read_point_by_point, name
):
    run_id = stored_run(engine, COLUMNAR[name])
    frame = assert_frame_as_point_by_point(engine, run_id)
    assert read_point_by_point == []
    assert list(frame.columns[:3]) == ["seq", *REQUESTED]


def test_ragged_numbers_keep_their_order_types_and_values(engine):
    run_id = stored_run(engine, COLUMNAR["ragged numbers"])
    frame = storage.run_frame(engine, run_id, REQUESTED)
    assert list(frame.columns) == [
        "seq",
        "Current (A)",
        "Absent (V)",
        "Row",
        "Column",
        "Count",
        "Late",
    ]
    assert frame["seq"].tolist() == list(range(6))
    assert frame["Absent (V)"].isna().all()
    assert frame["Count"].iloc[2] == 2**63 - 1  # as a float, as pandas would have it
    current = frame["Current (A)"].to_numpy()
    assert current[0] == 1.2345678901234567e-05 and np.signbit(current[2])
    assert np.isnan(current[1]) and np.isnan(current[4])


@pytest.mark.parametrize("name", POINT_BY_POINT)
def test_points_pyarrow_would_change_are_read_point_by_point(
    engine, read_point_by_point, name
):
    run_id = stored_run(engine, POINT_BY_POINT[name])
    assert_frame_as_point_by_point(engine, run_id)
    assert read_point_by_point == [run_id]


def test_a_run_without_points_is_the_empty_frame(engine):
    frame = assert_frame_as_point_by_point(engine, stored_run(engine))
    assert frame.empty and list(frame.columns) == ["seq", *REQUESTED]
    assert_frame_as_point_by_point(engine, 999)  # no such run


@pytest.fixture
def small_chunks(monkeypatch):
    """Queries of a few points each."""
    monkeypatch.setattr(storage, "FRAME_FIRST_CHUNK_POINTS", 3)
    monkeypatch.setattr(storage, "FRAME_CHUNK_CHARS", 120)


def test_types_that_differ_from_chunk_to_chunk_are_merged(
    engine, small_chunks, read_point_by_point
):
    points = (
        [{"a": i, "b": None, "t": "x"} for i in range(3)]  # b only nulls
        + [{"a": 0.5, "b": 1, "c": 2, "t": "y"} for _ in range(20)]  # a floats
        + [{"d": 7, "a": 1, "b": 2.5, "t": "z"}]
    )  # d only at the end
    run_id = stored_run(engine, points)
    frame = assert_frame_as_point_by_point(engine, run_id, ["b"])
    assert read_point_by_point == []
    assert list(frame.columns) == ["seq", "b", "a", "t", "c", "d"]


@pytest.mark.parametrize("late", [{"a": "text"}, {"a": [1.0]}, {"a": None, "e": None}])
def test_a_late_chunk_pyarrow_would_change_sends_the_run_point_by_point(
    engine, small_chunks, read_point_by_point, late
):
    run_id = stored_run(engine, [{"a": i} for i in range(30)] + [late])
    assert_frame_as_point_by_point(engine, run_id)
    assert read_point_by_point == [run_id]


def test_numbers_with_gaps_between_them_are_read_in_columns(
    engine, small_chunks, read_point_by_point
):
    run_id = stored_run(engine)
    seqs = [0, 1, 2, 9, 40, 41, 1000, 1001, 100_000]
    with engine.begin() as conn:
        conn.execute(
            insert(storage.Point),
            [{"run_id": run_id, "seq": seq, "data": {"x": seq * 0.5}} for seq in seqs],
        )
    frame = assert_frame_as_point_by_point(engine, run_id)
    assert frame["seq"].tolist() == seqs
    assert read_point_by_point == []


def test_random_ragged_points_give_the_same_frame(
    engine, small_chunks, read_point_by_point
):
    rng = random.Random(7)
    keys = ["Row", "Column", "Current (A)", "Voltage (V)", "Cycle", "Late"]

    def value():
        return rng.choice(
            [rng.randint(-(2**40), 2**40), rng.uniform(-1, 1) * 1e-6, None, 0, 0.0]
        )

    points = [
        {k: value() for k in rng.sample(keys[:5], rng.randint(0, 5))}
        for _ in range(400)
    ]
    points[350]["Late"] = 1
    run_id = stored_run(engine, points)
    assert_frame_as_point_by_point(engine, run_id, ["Cycle"])
    assert read_point_by_point == []


def test_a_key_first_met_deep_in_a_large_chunk_keeps_its_place(
    engine, read_point_by_point
):
    points = [{"Row": i, "Current (A)": i * 1e-9} for i in range(30_000)]
    points[20_000]["Middle"] = 1.5
    points[29_999] = {"Last": 2, **points[29_999]}
    run_id = stored_run(engine, points)
    frame = assert_frame_as_point_by_point(engine, run_id, ["Current (A)"])
    assert list(frame.columns) == ["seq", "Current (A)", "Row", "Middle", "Last"]
    assert read_point_by_point == []
