"""The calibrated cell physics: forming and modes, retention and volatile decay,
endurance wear, read disturb, I-V, noise and energy."""

import math
from pathlib import Path

import numpy as np
import pytest

from simulator.bench import Bench
from simulator.device import (
    ACTIVATION,
    ANALOG,
    EXPONENTIAL,
    EXPONENTIAL_IV,
    MODES,
    RECTIFIER,
    VOLATILE,
    CellArray,
    DevicePreset,
    current_per_siemens,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "benches" / "demo.yaml"
WIDTH_S = 10e-6


def quiet(**changes):
    """The perovskite preset without noise or spread (one cell is every cell)."""
    fields = {
        "c2c_sigma": 0.0,
        "prog_sigma": 0.0,
        "d2d_sigma": 0.0,
        "endurance_sigma": 0.0,
        "read_flicker_q": 0.0,
    }
    return DevicePreset.load("perovskite", **{**fields, **changes})


def cells(preset=None, formed=True, shape=(2, 2)):
    return CellArray(*shape, preset or quiet(), np.random.default_rng(1), formed=formed)


def pulse(array, v, count=1, width_s=WIDTH_S):
    for _ in range(count):
        array.evolve(np.full(array.shape, v), width_s)


# Forming


@pytest.mark.parametrize(
    "compliance_a, mode",
    [(5e-6, VOLATILE), (1e-4, ANALOG), (5e-4, ACTIVATION), (2e-3, EXPONENTIAL)],
)
def test_the_forming_compliance_chooses_the_mode(compliance_a, mode):
    array = cells(formed=False)
    p = array.preset
    assert not array.formed.any()
    assert np.all(array.conductance_s == p.g_pristine_s)
    array.evolve(np.full(array.shape, 1.6), 2e-3, limit_a=compliance_a)
    assert array.formed.all()
    assert (array.mode == mode).all()
    assert MODES[mode] in ("analog", "volatile", "activation", "exponential")
    # The filament grows until the current reaches the limit.
    family = {ACTIVATION: RECTIFIER, EXPONENTIAL: EXPONENTIAL_IV}.get(mode, 0)
    limited = compliance_a / float(current_per_siemens(p, 1.6, family))
    expected = min(max(limited, p.g_min_s), p.g_max_s)
    np.testing.assert_allclose(array.conductance_s, expected, rtol=1e-12)


def test_a_fresh_cell_needs_the_forming_voltage_and_time():
    array = cells(formed=False)
    pulse(array, 1.2, count=200)  # far above SET, below forming: nothing
    assert not array.formed.any()
    assert array.switch_count.sum() == 0
    array.evolve(np.full(array.shape, 1.6), 0.5e-3, limit_a=1e-4)  # too short
    assert not array.formed.any()
    array.evolve(np.full(array.shape, 1.6), 0.5e-3, limit_a=1e-4)  # time adds up
    assert array.formed.all()
    # Formed, it switches as any analog cell.
    before = array.conductance_s
    pulse(array, -1.1)
    assert (array.conductance_s < before).all()


def test_a_bench_file_can_leave_an_array_fresh(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(
        f"station: {ROOT / 'data/stations/demo.yaml'}\nformed: {{A0: false}}\n"
    )
    bench = Bench.from_file(path)
    assert not bench.arrays["A0"].formed.any()
    assert bench.arrays["A0"].lowest_set_v > 1.3  # only forming changes a fresh cell
    assert Bench.from_file(DEMO).arrays["A0"].formed.all()


# Retention and volatile decay


def test_retention_relaxes_as_a_stretched_exponential_of_bench_time():
    p = quiet()
    bench = Bench.from_file(DEMO, device={"d2d_sigma": 0.0})
    bench.set_cell_state("A0", 0.8)
    g0 = bench.arrays["A0"].conductance_s
    seen = []
    for t_s in (1e2, 1e3, 1e4):
        bench.advance(t_s - bench.now_s)
        bench.cell_energy("A0")  # anything that settles the bench ages the cells
        seen.append(bench.arrays["A0"].conductance_s)
        w = 0.8 * math.exp(-((t_s / p.retention_tau_s) ** p.retention_beta))
        np.testing.assert_allclose(
            seen[-1], p.g_min_s + (p.g_max_s - p.g_min_s) * w, rtol=1e-9
        )
    assert (
        (g0 > seen[0]).all() and (seen[0] > seen[1]).all() and (seen[1] > seen[2]).all()
    )
    # 10 % of the written state is gone at the preset's retention time.
    assert p.retention_time_s() == pytest.approx(1.11e5, rel=0.01)
    assert 1e3 <= p.retention_time_s() <= 1e6  # devices.md: retention 1e3-1e6 s


def test_cells_relax_only_as_far_as_the_clock_runs():
    array = cells()
    array.set_state(0.5)
    array.age_to(0.0)
    assert np.all(array.state == 0.5)
    array.age_to(0.5)  # within the ageing tolerance: not evaluated yet
    assert np.all(array.state == 0.5)
    array.age_to(1e5)
    assert np.all(array.state < 0.5 * 0.91)


def test_a_volatile_cell_decays_with_its_time_constant():
    array = cells(formed=False)
    array.evolve(np.full(array.shape, 1.6), 2e-3, limit_a=5e-6)
    assert (array.mode == VOLATILE).all()
    tau_s = array.preset.volatile_tau_s
    array.age_to(1.0)  # the forming state is gone
    assert array.state.max() < 1e-6
    pulse(array, 1.3, count=30)  # written at run time
    written = array.state
    assert written.min() > 0.5
    array.age_to(1.0 + tau_s)
    np.testing.assert_allclose(array.state, written / math.e, rtol=1e-9)
    array.age_to(1.0 + 5 * tau_s)
    np.testing.assert_allclose(array.state, written * math.exp(-5), rtol=1e-9)


# Endurance


def test_the_window_shrinks_with_cycles_then_the_cell_fails_stuck():
    array = cells(quiet(endurance_cycles=40.0))
    windows = []
    for _ in range(60):
        pulse(array, 1.5, count=30)
        on = array.conductance_s
        pulse(array, -1.4, count=30)
        windows.append(float((on - array.conductance_s).mean()))
    assert (array.cycles == 40).all()
    assert (array.stuck_low | array.stuck_high).all()
    # Narrowing, in proportion to the cycles, until the failure.
    assert all(
        later < earlier
        for earlier, later in zip(windows[:38], windows[1:39], strict=True)
    )
    loss = 1 - windows[38] / windows[0]
    assert loss == pytest.approx(array.preset.wear_window_loss * 39 / 40, rel=0.02)
    assert windows[-1] == 0.0  # stuck: SET and RESET change nothing
    assert array.lowest_set_v == math.inf


# Read disturb


def test_reads_beyond_the_disturb_voltage_creep_the_state_and_below_do_not():
    p = quiet()
    array = cells(p)
    array.set_state(0.4)
    array.evolve(np.full(array.shape, 0.95 * p.read_disturb_v), 10.0)
    array.evolve(np.full(array.shape, -0.95 * p.read_disturb_v), 10.0)
    assert np.all(array.state == 0.4)

    up = 1.1 * p.read_disturb_v  # still below the SET threshold
    assert up < p.v_set_v
    array.evolve(np.full(array.shape, up), 1.0)
    rate = p.read_disturb_rate_per_s * (up / p.read_disturb_v - 1)
    np.testing.assert_allclose(array.state, 1 - 0.6 * math.exp(-rate), rtol=1e-12)
    assert array.switch_count.sum() == 0  # a creep, not a switching event
    assert array.cycles.sum() == 0

    down = -1.05 * p.read_disturb_v  # above the RESET threshold
    assert down > p.v_reset_v
    before = array.state
    array.evolve(np.full(array.shape, down), 1.0)
    assert (array.state < before).all()


# I-V and noise


def test_reads_are_ohmic_and_larger_voltages_follow_the_sinh_with_rectification():
    p = DevicePreset.load("perovskite")
    v = np.array([p.read_voltage_v, -p.read_voltage_v, p.ohmic_limit_v])
    np.testing.assert_array_equal(current_per_siemens(p, v), v)
    forward = float(current_per_siemens(p, 1.0))
    reverse = float(current_per_siemens(p, -1.0))
    assert forward == pytest.approx(
        p.ohmic_limit_v + p.iv_v0_v * math.sinh((1.0 - p.ohmic_limit_v) / p.iv_v0_v)
    )
    assert forward / -reverse == pytest.approx(p.rectification_ratio)
    # Floats and arrays take the same formula.
    assert current_per_siemens(p, 0.7) == pytest.approx(
        float(current_per_siemens(p, [0.7])[0])
    )
    activation = float(current_per_siemens(p, -0.5, RECTIFIER))
    assert -current_per_siemens(p, 0.5, RECTIFIER) / activation == pytest.approx(
        p.activation_rectification
    )
    exponential = current_per_siemens(p, np.array([0.1, 0.2]), EXPONENTIAL_IV)
    np.testing.assert_allclose(
        exponential,
        p.exponential_v0_v * np.expm1(np.array([0.1, 0.2]) / p.exponential_v0_v),
    )


@pytest.mark.parametrize("family", [0, RECTIFIER, EXPONENTIAL_IV])
def test_far_past_any_real_level_the_current_stays_finite(family):
    # A solver's trial step (a shorted cell, a source at its limit) may ask
    # for kilovolts; no branch may overflow, whether the voltage comes as a
    # float or in an array.
    p = DevicePreset.load("perovskite")
    v = np.array([-1e6, -1e3, -50.0, 50.0, 1e3, 1e6])
    with np.errstate(over="raise", invalid="raise"):
        currents = current_per_siemens(p, v, family)
        floats = [current_per_siemens(p, float(x), family) for x in v]
    assert np.isfinite(currents).all()
    np.testing.assert_allclose(floats, currents)
    assert (np.sign(currents) == np.sign(v)).all()


def test_the_bench_reads_a_cell_at_its_chord_conductance():
    bench = Bench.from_file(
        DEMO, device={"read_sigma": 0.0, "thermal_noise_a": 0.0, "read_flicker_q": 0.0}
    )
    smu = bench.resource("GPIB0::26::INSTR")
    bench.set_cell_state("A0", 0.6)
    g = bench.arrays["A0"].conductance_s[4, 2]
    # Row 4 on smu1.smua, column 2 on node 2's smua at 0 V (it measures the
    # cell alone), every other line on smu1.smub at 0 V.
    others = [f"{r // 12 + 1}B{r % 12 + 1:02d}" for r in range(64) if r != 4]
    others += [f"6B{c + 5:02d}" for c in range(8) if c != 2]
    smu.write(
        f'node[4].channel.exclusiveclose("{",".join(["1A05", "6C07", *others])}")'
    )
    currents = {}
    for level_v in (0.1, 0.25, 0.65, -0.65):
        smu.write(
            "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
            "node[2].smua.source.limiti = 1e-2 node[2].smua.source.levelv = 0 "
            "node[2].smua.source.output = 1 smub.source.levelv = 0 "
            f"smub.source.output = 1 smua.source.levelv = {level_v} "
            "smua.source.output = 1 print(node[2].smua.measure.i()) "
            "smua.source.levelv = 0"
        )
        currents[level_v] = -float(smu.read())
    p = bench.preset
    for level_v, current_a in currents.items():
        # below every threshold, and at most at the read-disturb voltage
        expected = g * float(current_per_siemens(p, level_v))
        assert current_a == pytest.approx(expected, rel=2e-3)
    assert currents[0.25] / currents[0.1] == pytest.approx(2.5, rel=1e-9)
    assert currents[0.65] / -currents[-0.65] > 1.3  # self-rectification


def test_programming_noise_grows_with_the_conductance():
    p = DevicePreset.load("perovskite", c2c_sigma=0.0, d2d_sigma=0.0)

    def spread(state):
        array = CellArray(32, 32, p, np.random.default_rng(5))
        array.set_state(state)
        # a creep-sized pulse: the change is tiny, the programming noise is not
        array.evolve(np.full(array.shape, 0.81), 1e-7)
        return array.state.std()

    low, high = spread(0.1), spread(0.9)
    assert low == pytest.approx(p.prog_sigma * (1 + p.prog_sigma_growth * 0.1), rel=0.1)
    assert high == pytest.approx(
        p.prog_sigma * (1 + p.prog_sigma_growth * 0.9), rel=0.1
    )


def test_read_noise_gains_a_1_over_f_part_with_the_time_since_writing():
    p = DevicePreset.load("perovskite")
    array = CellArray(64, 8, p, np.random.default_rng(6))
    array.set_state(0.5)
    array.age_to(0.0)
    g = array.conductance_s

    def sigma():
        return (np.stack([array.read_conductance() for _ in range(200)]) / g - 1).std()

    fresh = sigma()
    assert fresh == pytest.approx(p.read_sigma, rel=0.05)
    array.age_to(1e4)
    g = array.conductance_s
    t_r = p.read_flicker_time_s
    flicker = p.read_flicker_q**2 * math.log((1e4 + t_r) / (2 * t_r))
    assert sigma() == pytest.approx(math.sqrt(p.read_sigma**2 + flicker), rel=0.05)
    assert array.read_sigma_max > p.read_sigma


# Energy


def half_select(bench, level_v):
    """Cell (10, 2) between smu1.smua and ground, the rest on smu1.smub at V/2."""
    smu = bench.resource("GPIB0::26::INSTR")
    others = [f"{r // 12 + 1}B{r % 12 + 1:02d}" for r in range(64) if r != 10]
    others += [f"6B{c + 5:02d}" for c in range(8) if c != 2]
    smu.write(
        f'node[4].channel.exclusiveclose("{",".join(["1A11", "6H07", *others])}")'
    )
    smu.write(
        "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
        f"smua.measure.nplc = 0.001 smub.source.levelv = {level_v / 2} "
        "smub.source.output = 1 smua.source.output = 1"
    )
    return smu


def pulses(bench, level_v, count):
    smu = half_select(bench, level_v)
    charge0, energy0 = bench.cell_energy("A0")
    smu.write(f"PulseVMeasureI(smua, 0, {level_v}, 1e-4, 1e-4, {count})")
    charge, energy = bench.cell_energy("A0")
    return charge - charge0, energy - energy0


def test_energy_scales_with_the_pulses_and_is_v_times_i_times_t():
    bench = Bench.from_file(DEMO)
    bench.set_cell_state("A0", 0.5)
    level_v = 0.5  # below every threshold: the cells stay as they are
    g = bench.arrays["A0"].conductance_s[10, 2]
    _, ten = pulses(bench, level_v, 10)
    _, twenty = pulses(bench, level_v, 20)
    per_pulse_j = level_v * g * float(current_per_siemens(bench.preset, level_v)) * 1e-4
    assert ten[10, 2] == pytest.approx(10 * per_pulse_j, rel=1e-9)
    assert twenty[10, 2] == pytest.approx(20 * per_pulse_j, rel=1e-9)
    # Half-selected cells took their share at V/2, the rest nothing.
    assert ten[10, 5] > 0 and ten[3, 2] > 0
    assert ten[3, 5] == 0.0
    assert (twenty > 0).sum() == (ten > 0).sum()


def test_a_switching_train_takes_the_same_energy_at_once_as_pulse_by_pulse(monkeypatch):
    def run():
        bench = Bench.from_file(DEMO)
        bench.set_cell_state("A0", 0.05)
        return pulses(bench, 1.2, 25), bench.arrays["A0"].state

    (charge, energy), state = run()
    monkeypatch.setattr(Bench, "pulse_train", lambda self, *args: None)
    (charge_slow, energy_slow), state_slow = run()
    np.testing.assert_array_equal(state, state_slow)
    np.testing.assert_allclose(energy, energy_slow, rtol=1e-9)
    np.testing.assert_allclose(charge, charge_slow, rtol=1e-9)
    # The switching cell took more than at its starting conductance.
    assert energy[10, 2] > energy[10, 3]
