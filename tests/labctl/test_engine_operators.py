"""Exponential cells: formed by their compliance, read for the softmax."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.engine.chips import Ledger, RigChip
from labctl.engine.direct import DirectChip
from labctl.engine.encoder import gelu
from labctl.engine.mac import MacConfig
from labctl.engine.operators import (
    ActivationConfig,
    ExponentialArray,
    ExponentialConfig,
    design_gelu,
)
from labctl.engine.placement import ChipOperations, Placement
from labctl.engine.readout import ReadChainConfig
from labctl.engine.writeverify import WriteVerifyConfig
from simulator.bench import Bench
from simulator.device import ACTIVATION, EXPONENTIAL, MODES
from tests.conftest import DEMO_BENCH

SCORES = -np.random.default_rng(5).exponential(1.5, 6000)  # shifted: all ≤ 0


def column(adc_bits: int = 10, config: ExponentialConfig | None = None,
           stuck_fraction: float = 0.0, **bench) -> ExponentialArray:
    """A formed and calibrated column of exponential cells on a fresh demo bench."""
    return ExponentialArray(Bench.from_file(DEMO_BENCH, **bench),
                            config or ExponentialConfig(),
                            ReadChainConfig(adc_bits=adc_bits), Ledger(),
                            MacConfig().nplc, stuck_fraction)


def errors(op: ExponentialArray, scores: np.ndarray = SCORES) -> np.ndarray:
    """Read exponentials minus exp of the score each cell was read at."""
    got = op.exponentials(scores)
    return got - np.exp(np.maximum(scores, op.window.lowest_score))


def predicted_sigma(op: ExponentialArray, scores: np.ndarray) -> np.ndarray:
    """Each reading's spread from the cells' read noise, the thermal floor and
    the ADC's step, carried through the cell's calibration."""
    preset, w = op.bench.preset, op.window
    cells = op.usable[np.arange(scores.size) % op.usable.size]
    volts, _ = w.voltages(scores)
    g = op.cells.present_conductance_s()[cells, 0]
    current = g * w.v0_v * np.expm1(volts / w.v0_v)
    assert op.chain is not None
    lsb = op.chain.full_scale_a / 2 ** (op.chain.config.adc_bits - 1)
    gain = op.calibration.gain[cells] * op.chain.gain[0]
    variance = ((preset.read_sigma * current) ** 2 + preset.thermal_noise_a**2
                + lsb**2 / 12)
    return np.abs(gain) * np.sqrt(variance)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


@pytest.fixture(scope="module")
def default() -> ExponentialArray:
    return column()


def test_cells_formed_under_the_exponential_compliance_are_exponential(default):
    op = default
    assert op.usable.size == op.config.rows
    assert np.all(op.cells.mode[op.usable, 0] == EXPONENTIAL)
    assert MODES[op.bench.preset.mode_for(op.compliance_a)] == "exponential"
    limits = op.bench.station.limits
    assert np.all(op.forming_v[op.usable] <= limits.max_voltage_v)
    assert op.compliance_a <= limits.max_compliance_a
    assert op.tally.cells_formed == op.config.rows
    assert op.tally.setup_j > 0 and op.tally.forming_s > 0


def test_stuck_cells_do_not_form_and_are_not_read():
    op = column(stuck_fraction=0.2)
    assert op.usable.size == pytest.approx(0.8 * op.config.rows, abs=1)
    before = op.tally.reads
    op.exponentials(SCORES[:500])
    assert op.tally.reads - before == 500
    assert rms(errors(op, SCORES[:2000])) < 0.01


def test_exponentials_are_the_cells_currents_within_their_predicted_noise(default):
    err = errors(default)
    sigma = predicted_sigma(default, SCORES)
    # the calibration, from a few noisy readings per cell, adds a little
    assert rms(err) < 1.35 * rms(sigma)
    assert rms(err) > 0.7 * rms(sigma)  # the noise is there, not host float64
    assert abs(float(err.mean())) < 3 * rms(sigma) / np.sqrt(err.size) + 2e-4
    near = SCORES > -1
    assert rms(err[near]) < 1.3 * rms(sigma[near])


def test_more_read_noise_and_fewer_adc_bits_read_worse(default):
    base = rms(errors(default))
    noisy = column(device={"read_sigma": 0.03})
    coarse = column(adc_bits=5)
    assert rms(errors(noisy)) > 3 * base
    assert rms(errors(coarse)) > 3 * base
    # the prediction follows each change
    for op in (noisy, coarse):
        assert rms(errors(op)) < 1.3 * rms(predicted_sigma(op, SCORES))


def test_scores_below_the_read_window_are_read_at_its_floor_and_counted(default):
    led = default.tally
    clipped = led.clipped
    low = default.window.lowest_score
    got = default.exponentials(np.array([low - 5.0, low - 1.0, 0.0]))
    assert led.clipped - clipped == 2
    np.testing.assert_allclose(got[:2], np.exp(low), atol=0.01)
    assert got[2] == pytest.approx(1.0, abs=0.02)


def test_energy_and_readings_of_the_exponentials_scale_with_the_scores(default):
    led = default.tally
    setup = (led.setup_j, led.setup_reads)
    energies = []
    for n in (1000, 3000):
        bench_j, chain_j, reads = (led.read_bench_j, led.read_chain_j,
                                   led.reads)
        default.exponentials(SCORES[:n])
        assert led.reads - reads == n
        energies.append((led.read_bench_j - bench_j,
                         led.read_chain_j - chain_j))
    assert energies[1][0] / energies[0][0] == pytest.approx(3, rel=0.1)
    assert energies[1][1] / energies[0][1] == pytest.approx(3, rel=0.1)
    assert energies[0][1] < energies[0][0]  # 100 ns of conversion, not a PLC
    assert (led.setup_j, led.setup_reads) == setup  # formed and calibrated once


def test_reads_stay_inside_the_chip_limits_and_take_shifted_scores(default):
    with pytest.raises(ValueError, match="max_read_voltage_v"):
        column(config=ExponentialConfig(top_v=0.4))
    with pytest.raises(ValueError, match="exponential band"):
        column(config=ExponentialConfig(compliance_a=5e-4))
    with pytest.raises(ValueError, match="max_compliance_a"):
        column(config=ExponentialConfig(compliance_a=0.05))
    with pytest.raises(ValueError, match="subtract each row's largest"):
        default.exponentials(np.array([0.5, -1.0]))


def test_the_placement_says_where_the_exponentials_ran():
    chip = DirectChip(Bench.from_file(DEMO_BENCH), WriteVerifyConfig(), MacConfig(),
                      ReadChainConfig(), dynamic_arrays=1)
    ops = ChipOperations(chip, Placement.preset("host").with_changes(
        {"softmax": "chip"}))
    shifted = np.array([[0.0, -1.0, -2.0], [-0.5, 0.0, -3.0]])
    got = ops.exponentials(shifted, "test")
    np.testing.assert_allclose(got, np.exp(shifted), atol=0.02)
    assert chip.ledger.exponential.values == 6
    table = ops.table()
    assert table["softmax exponentials"].startswith("chip (exponential cells")
    assert "normalized on the host" in table["softmax exponentials"]
    assert table["softmax normalization, residuals, LayerNorms, pooling"] == "host"
    assert table["FFN activation (GELU)"] == "host"  # not asked for

    host = ChipOperations(chip, Placement.preset("host"))
    np.testing.assert_array_equal(host.exponentials(shifted, "test"), np.exp(shifted))
    assert chip.ledger.exponential.values == 6

    rig_table = Placement().table(RigChip.unavailable)
    assert rig_table["softmax exponentials"].startswith("host (the instruments")
    assert "exponential cell" in rig_table["softmax exponentials"]


# activation cells ---------------------------------------------------------------

INPUTS = np.random.default_rng(6).normal(-0.6, 1.5, 20000)  # FFN pre-activations


def gelu_chip(adc_bits: int = 10, config: ActivationConfig | None = None,
              **bench) -> DirectChip:
    return DirectChip(Bench.from_file(DEMO_BENCH, **bench), WriteVerifyConfig(),
                      MacConfig(), ReadChainConfig(adc_bits=adc_bits),
                      dynamic_arrays=1, activation=config or ActivationConfig())


@pytest.fixture(scope="module")
def gelu_default() -> DirectChip:
    chip = gelu_chip()
    chip.gelu(INPUTS[:10])
    return chip


def gelu_rms(chip: DirectChip, x: np.ndarray = INPUTS) -> float:
    return rms(chip.gelu(x) - gelu(x))


def test_activation_cells_form_in_their_band_and_hold_the_slopes(gelu_default):
    row = gelu_default.activation_cells
    assert row is not None and row.usable.size == row.config.knots
    assert np.all(row.cells.mode[0] == ACTIVATION)
    preset = row.bench.preset
    assert preset.form_activation_from_a <= row.compliance_a
    assert row.compliance_a < preset.form_exponential_from_a
    programmed = row.cells.conductance_s[0, row.usable]
    np.testing.assert_allclose(programmed, row.target_s, rtol=0.03)
    assert gelu_default.ledger.cells_by_operation["activation"] == row.config.knots
    # the knees' sum follows GELU closely before any noise
    assert row.design.rms_error < 0.005 and row.design.max_error < 0.02


def test_one_rectifier_is_not_a_gelu_and_a_sum_of_them_is():
    preset = Bench.from_file(DEMO_BENCH).preset
    two = design_gelu(preset, 2, 6.0, 0.3 / 16)
    eight = design_gelu(preset, 8, 6.0, 0.3 / 16)
    assert two.max_error > 0.1  # the dip near -0.75 is missed
    assert eight.max_error < 0.02


def test_the_gelu_is_the_cells_currents_with_their_noise(gelu_default):
    row = gelu_default.activation_cells
    assert row is not None
    measured = gelu_rms(gelu_default)
    design = rms(row.design.value(row.bench.preset, INPUTS) - gelu(INPUTS))
    assert measured < 0.012
    assert measured > 1.5 * design  # read noise and the ADC are in it
    noisy = gelu_rms(gelu_chip(device={"read_sigma": 0.03}))
    coarse = gelu_rms(gelu_chip(adc_bits=6))
    assert noisy > 2 * measured and coarse > 2 * measured


def test_gelu_readings_energy_and_clipping_are_counted(gelu_default):
    tally = gelu_default.ledger.activation
    before = (tally.values, tally.read_bench_j, tally.read_chain_j, tally.clipped)
    setup = tally.setup_j
    gelu_default.gelu(INPUTS[:1000])
    first = (tally.read_bench_j - before[1], tally.read_chain_j - before[2])
    gelu_default.gelu(np.concatenate([INPUTS[:1000]] * 3))
    second = (tally.read_bench_j - before[1] - first[0],
              tally.read_chain_j - before[2] - first[1])
    assert tally.values - before[0] == 4000
    assert second[0] / first[0] == pytest.approx(3, rel=0.05)
    assert second[1] / first[1] == pytest.approx(3, rel=0.05)
    assert tally.setup_j == setup
    edge = gelu_default.gelu(np.array([40.0, -40.0]))
    assert tally.clipped - before[3] == 2
    assert edge[0] == pytest.approx(16.0, rel=0.02)  # driven at the window's edge
    assert abs(edge[1]) < 0.05


def test_without_activation_cells_the_gelu_stays_on_the_host_and_says_why():
    chip = DirectChip(Bench.from_file(DEMO_BENCH), WriteVerifyConfig(), MacConfig(),
                      dynamic_arrays=1)
    ops = ChipOperations(chip, Placement())
    h = INPUTS[:50].reshape(5, 10)
    np.testing.assert_array_equal(ops.gelu(h, "test"), gelu(h))
    assert "--gelu-cells" in ops.table()["FFN activation (GELU)"]
    assert chip.ledger.activation.values == 0
    on = ChipOperations(gelu_chip(), Placement())
    assert on.table()["FFN activation (GELU)"].startswith("chip (activation cells")
    rig = Placement().table(RigChip.unavailable)["FFN activation (GELU)"]
    assert rig.startswith("host (the instruments") and "activation cell" in rig
