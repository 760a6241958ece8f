"""The sweep benchmark's core at a small size: message counts and bench time."""


import pytest

from tests.bench.scripts import benchmark_module


@pytest.fixture(scope="module")
def figures():
    with benchmark_module("sweep") as module:
        return {f.label: f for f in module.run(points=50)}


def test_every_model_is_benchmarked(figures):
    assert sorted(figures) == ["2400", "2450", "2636B smua", "B2902A ch1"]


@pytest.mark.parametrize("label", ["2636B smua", "2450", "2400", "B2902A ch1"])
def test_the_native_sweep_takes_at_least_20_times_fewer_messages(figures, label):
    f = figures[label]
    assert f.native.messages >= 1
    # The loop sets a level and reads at each point, and turns the output on
    # and off: two messages per point and two more.
    assert f.loop.messages == 2 * 50 + 2
    assert f.message_ratio >= 20


@pytest.mark.parametrize("label", ["2636B smua", "2450", "2400", "B2902A ch1"])
def test_no_path_is_predicted_faster_than_the_integration_time(figures, label):
    f = figures[label]
    assert f.lower_bound_s == pytest.approx(50 / 60)
    assert f.native.bench_s >= f.lower_bound_s
    assert f.loop.bench_s >= f.lower_bound_s
    # Each loop point waits at least one more bus message than a sweep point.
    assert f.loop.bench_s > f.native.bench_s


@pytest.mark.parametrize("label", ["2636B smua", "2450", "2400", "B2902A ch1"])
def test_both_paths_measure_the_same_cells(figures, label):
    assert figures[label].difference < 0.05
