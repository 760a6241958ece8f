"""The circuit benchmark's core at 16 x 16: our reads against the exact solve."""

from dataclasses import replace

import numpy as np
import pytest

from simulator.array_solver import FEW_VECTORS
from tests.bench.scripts import benchmark_module


@pytest.fixture(scope="module")
def benchmark():
    with benchmark_module("circuit") as module:
        yield module


def test_our_reads_agree_with_the_exact_solve(benchmark):
    # One vector by conjugate gradients, the batch by tiles, and the operator.
    figures = benchmark.measure(16, batch=FEW_VECTORS)
    assert figures.checked == FEW_VECTORS
    assert figures.one_error < 1e-9
    assert figures.batch_error < 1e-9
    assert figures.operator_error < 1e-9
    assert figures.theirs_one_s is None  # badcrossbar was not given
    report = benchmark.report([figures])
    assert "| 16² |" in report
    assert "NOT met" not in report


def test_the_report_says_when_a_goal_is_missed(benchmark):
    figures = benchmark.measure(8, batch=2)
    slow = replace(figures, theirs_one_s=figures.one_s, theirs_batch_s=1.0)
    assert "NOT met (lowest ratio 1× at 8²)" in benchmark.report([slow])


def test_the_benchmarked_circuit_has_a_segment_before_each_line(benchmark):
    # One cell: source segment, cell and sense segment in series.
    circuit = benchmark.bench_circuit(1)
    g_s, v = 50e-6, 0.2
    current_a = circuit.read_operator(np.array([[g_s]])).column_currents(np.array([v]))
    r = benchmark.SEGMENT_OHM
    assert current_a[0] == pytest.approx(v / (2 * r + 1 / g_s), rel=1e-12)
