"""Bench-direct: the bench's own cells programmed and multiplied on without messages."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.engine.chips import RigChip
from labctl.engine.direct import DirectArray, DirectChip
from labctl.engine.mac import MacConfig
from labctl.engine.operators import ActivationConfig
from labctl.engine.placement import ChipOperations, Placement
from labctl.engine.writeverify import WriteVerifyConfig
from labctl.infer import scratch_station
from labctl.rig import Rig
from labctl.station import load_station
from simulator.bench import Bench, bench_for, forget
from simulator.circuit import solve_lines
from tests.conftest import DEMO_BENCH


def quiet_bench(**device: float) -> Bench:
    quiet = {"read_sigma": 0.0, "thermal_noise_a": 0.0}
    return Bench.from_file(DEMO_BENCH, device={**quiet, **device})


@pytest.mark.parametrize("line_ohm", [0.0, 2.0])
def test_a_plane_reading_is_the_circuit_solvers_column_current(line_ohm):
    bench = quiet_bench()
    cells = bench.arrays["A0"]
    cells.set_state(np.random.default_rng(0).uniform(0, 1, cells.shape))
    array = DirectArray(bench, cells, "A0", WriteVerifyConfig(), MacConfig(),
                        line_ohm=line_ohm)
    plane = np.random.default_rng(1).choice([-1.0, 0.0, 1.0], size=32)
    got = array._plane_readings(plane[None, None, :], 8)[0, 0]

    # nets: 0 = +V, 1 = -V, 2 = ground; each column its own net at 0 V
    v = MacConfig().read_voltage_v
    row_net = np.full(64, 2)
    row_net[0::2] = np.select([plane > 0, plane < 0], [0, 1], 2)
    row_net[1::2] = np.select([plane > 0, plane < 0], [1, 0], 2)
    col_net = np.arange(3, 11)
    fixed_v = np.array([v, -v, 0.0] + [0.0] * 8)
    _, source_i, _ = solve_lines([(cells.present_conductance_s(), row_net, col_net)],
                                 [line_ohm], 11, fixed_v, np.zeros(11))
    np.testing.assert_allclose(got, -source_i[3:], rtol=1e-9, atol=1e-15)


def test_a_tile_is_programmed_to_tolerance_by_the_bench_cells():
    bench = Bench.from_file(DEMO_BENCH)
    array = DirectArray.on_bench(bench, "A0", WriteVerifyConfig(), MacConfig())
    targets = np.random.default_rng(2).uniform(15e-6, 85e-6, (64, 8))
    done = array.program(targets)
    true = bench.arrays["A0"].conductance_s
    assert np.mean(np.abs(true - targets) <= 0.02 * targets) >= 0.99
    assert done.converged.mean() >= 0.99
    assert array.ledger.pulses == done.pulses.sum() > 0
    assert bench.arrays["A0"].switch_count.sum() >= done.pulses.sum()


def test_weights_get_arrays_of_their_own_and_operands_share_a_pool():
    bench = Bench.from_file(DEMO_BENCH)
    chip = DirectChip(bench, WriteVerifyConfig(), MacConfig(), dynamic_arrays=2)
    targets = np.full((4, 8), 30e-6)
    chip.program(targets, "layer0.query")
    first = chip.current
    chip.program(targets, "layer0.query")
    assert chip.current is not first and chip.current not in chip.pool
    for _ in range(3):
        chip.program(targets, "scores")
    assert chip.current is chip.pool[0]
    assert chip.current.cells is bench.arrays["A0"]
    wear = chip.wear()
    assert wear["weights"].cells == 2 * 512
    assert wear["run-time operands"].cells == 2 * 512


@pytest.mark.parametrize("kind", ["direct", "instruments"])
def test_a_matrix_with_its_bias_multiplies_on_either_path(tmp_path, kind):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, (6, 20))
    bias = rng.normal(0, 0.3, 6)
    x = rng.normal(size=(5, 20))
    write, mac = WriteVerifyConfig(), MacConfig(bits=8)
    rig = None
    if kind == "direct":
        chip = DirectChip(Bench.from_file(DEMO_BENCH), write, mac)
    else:
        rig = Rig(load_station(scratch_station(tmp_path)))
        chip = RigChip(rig, "A0", write, mac)
    try:
        y = ChipOperations(chip, Placement()).matmul(x, w, "test", bias)
    finally:
        if rig is not None:
            assert bench_for(tmp_path / "bench.yaml").now_s > 0
            rig.close()
            forget(tmp_path / "bench.yaml")
    want = x @ w.T + bias
    cos = np.sum(y * want, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.995
    assert chip.ledger.macs == 5 * 20 * 6 + 5 * 6


def test_operator_cells_leave_the_other_cells_draws_as_they_were():
    rng = np.random.default_rng(4)
    w, x = rng.normal(0, 0.1, (8, 24)), rng.normal(size=(3, 24))
    outputs = []
    for with_operators in (False, True):
        chip = DirectChip(Bench.from_file(DEMO_BENCH), WriteVerifyConfig(),
                          MacConfig(), dynamic_arrays=1,
                          activation=ActivationConfig(knots=4))
        ops = ChipOperations(chip, Placement())
        if with_operators:
            ops.exponentials(np.array([[0.0, -1.0]]), "test")
            ops.gelu(np.array([[0.5, -0.5]]), "test")
        outputs.append(ops.matmul(x, w, "test"))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert chip.ledger.exponential.values == 2 and chip.ledger.activation.values == 2


@pytest.mark.parametrize("recalibrate_after_s", [3600.0, float("inf")])
def test_reference_reads_after_drift_keep_the_products(recalibrate_after_s):
    # A tile programmed, calibrated, then left for 10^7 s: its cells relax.
    # Read again with the fit of the day it was programmed, the products are
    # off; with the reference patterns read again first, they are not.
    from labctl.engine.readout import ReadChainConfig

    bench = Bench.from_file(DEMO_BENCH)
    chain = ReadChainConfig(recalibrate_after_s=recalibrate_after_s)
    array = DirectArray.on_bench(bench, "A0", WriteVerifyConfig(), MacConfig(), chain)
    rng = np.random.default_rng(4)
    w = rng.uniform(-1.0, 1.0, (32, 8))
    g_low, g_high = 15e-6, 85e-6
    targets = np.empty((64, 8))
    targets[0::2] = g_low + (g_high - g_low) * np.clip(w, 0, None)
    targets[1::2] = g_low + (g_high - g_low) * np.clip(-w, 0, None)
    array.program(targets)
    x = rng.uniform(-1.0, 1.0, (40, 32))
    exact = x @ (targets[0::2] - targets[1::2])

    def error():
        got = array.multiply(x, 8)
        return float(np.abs(got - exact).max() / np.abs(exact).max())

    fresh = error()
    cells = bench.arrays["A0"]
    cells.age_to(cells.time_s + 1e7)
    rested = error()
    if recalibrate_after_s == float("inf"):
        assert array.ledger.recalibrations == 0
        assert rested > 5 * fresh
    else:
        assert array.ledger.recalibrations == 1
        assert rested < 2 * fresh + 0.01
