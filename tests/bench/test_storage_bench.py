"""The storage benchmark's core at a small size: every point stored and loaded."""


import pytest

from tests.bench.scripts import benchmark_module


@pytest.fixture(scope="module")
def figures():
    with benchmark_module("storage") as module:
        (sqlite,) = module.run(points=50, load_points=1000)
        return sqlite, module.report([sqlite])


def test_every_point_is_stored_one_by_one_and_batched(figures):
    sqlite, _ = figures
    assert [(s.batch, s.points, s.stored) for s in sqlite.stores] == [
        (1, 50, 50), (100, 50, 50)]


def test_the_loaded_frame_holds_every_point(figures):
    sqlite, _ = figures
    assert (sqlite.load.points, sqlite.load.rows) == (1000, 1000)


def test_the_report_names_the_database(figures):
    _, report = figures
    assert "SQLite" in report
