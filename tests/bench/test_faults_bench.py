"""The fault benchmark's core on one procedure and two faults: its counts add up."""


import pytest

from tests.bench.scripts import benchmark_module

FAULTS = ["timeout", "relay_welded"]


@pytest.fixture(scope="module")
def bench_module():
    with benchmark_module("faults") as module:
        yield module


@pytest.fixture(scope="module")
def matrix(bench_module):
    return bench_module.run(procedures=["iv_sweep"], faults=FAULTS)


def test_every_fault_is_run_once_and_strikes(matrix):
    assert list(matrix.per_fault) == FAULTS
    for counts in matrix.per_fault.values():
        assert counts.runs == 1
        assert counts.struck >= 1


def test_the_total_is_the_sum_of_the_faults(bench_module, matrix):
    total = matrix.total
    assert total.runs == 2
    for name in ["runs", "struck", *bench_module.MUST_BE_ZERO]:
        assert getattr(total, name) == sum(
            getattr(c, name) for c in matrix.per_fault.values()
        )


def test_no_case_ends_unsafe(bench_module, matrix):
    assert matrix.total.bad == 0, matrix.failures
    assert matrix.failures == []
    report = bench_module.report(matrix)
    assert report.splitlines()[-2].startswith("total")
    assert "FAIL" not in report
