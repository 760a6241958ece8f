"""Cell physics: pulse response, thresholds, noise, stuck cells, presets."""

import numpy as np
import pytest

from simulator.device import PRESET_DIR, CellArray, DevicePreset

WIDTH_S = 10e-6


def quiet_preset(name="perovskite"):
    """A preset without cycle-to-cycle, programming or device spread."""
    return DevicePreset.load(name, c2c_sigma=0, prog_sigma=0, d2d_sigma=0)


def pulses_to_saturate(preset, v):
    """``A`` of the closed form for pulses of ``v`` and ``WIDTH_S``."""
    if v > 0:
        rate = preset.rate_set_per_s * (v / preset.v_set_v - 1) ** preset.alpha_set
    else:
        rate = (
            preset.rate_reset_per_s * (v / preset.v_reset_v - 1) ** preset.alpha_reset
        )
    return 1.0 / (rate * WIDTH_S)


def apply(cells, v, count=1):
    for _ in range(count):
        cells.evolve(np.full(cells.shape, v), WIDTH_S)


def test_identical_set_pulses_follow_the_saturating_curve():
    p = quiet_preset()
    cells = CellArray(4, 4, p, np.random.default_rng(1))
    cells.set_state(0.0)
    a = pulses_to_saturate(p, 1.2)
    assert a == pytest.approx(20, rel=0.02)
    for pulse in range(1, 61):
        apply(cells, 1.2)
        expected = (p.g_max_s - p.g_min_s) * (1 - np.exp(-pulse / a)) + p.g_min_s
        np.testing.assert_allclose(cells.conductance_s, expected, rtol=1e-12)


def test_identical_reset_pulses_follow_the_saturating_curve():
    p = quiet_preset()
    cells = CellArray(4, 4, p, np.random.default_rng(1))
    cells.set_state(1.0)
    a = pulses_to_saturate(p, -1.1)
    assert a == pytest.approx(12, rel=0.02)
    for pulse in range(1, 41):
        apply(cells, -1.1)
        expected = p.g_max_s - (p.g_max_s - p.g_min_s) * (1 - np.exp(-pulse / a))
        np.testing.assert_allclose(cells.conductance_s, expected, rtol=1e-12)


def test_hfo2_preset_has_its_own_nonlinearity():
    p = quiet_preset("hfo2")
    assert (p.g_min_s, p.g_max_s) == (20e-6, 200e-6)
    assert pulses_to_saturate(p, 1.5) == pytest.approx(8, rel=0.02)
    assert pulses_to_saturate(p, -1.5) == pytest.approx(30, rel=0.02)


def test_one_long_pulse_equals_two_halves_without_noise():
    p = quiet_preset()
    once = CellArray(2, 2, p, np.random.default_rng(2))
    twice = CellArray(2, 2, p, np.random.default_rng(2))
    once.evolve(np.full((2, 2), 1.3), 2 * WIDTH_S)
    apply(twice, 1.3, count=2)
    np.testing.assert_allclose(once.state, twice.state, rtol=1e-12)


def test_voltages_between_the_thresholds_change_nothing():
    cells = CellArray(64, 8, DevicePreset.load("perovskite"), np.random.default_rng(3))
    before = cells.conductance_s
    v = np.random.default_rng(4).uniform(-0.5, 0.5, cells.shape)
    cells.evolve(v, 1.0)
    assert np.array_equal(cells.conductance_s, before)
    assert cells.switch_count.sum() == 0


def test_each_cell_switches_only_beyond_its_own_threshold():
    # Without read disturb, which creeps cells this close to their thresholds.
    p = DevicePreset.load("perovskite", read_disturb_rate_per_s=0.0)
    cells = CellArray(8, 8, p, np.random.default_rng(5))
    before = cells.conductance_s
    v = np.where(
        np.arange(64).reshape(8, 8) % 2 == 0,
        0.999 * cells.v_set_cell_v,
        0.999 * cells.v_reset_cell_v,
    )
    v[3, 4] = 1.01 * cells.v_set_cell_v[3, 4]
    cells.evolve(v, WIDTH_S)

    changed = cells.conductance_s != before
    assert changed[3, 4]
    changed[3, 4] = False
    assert not changed.any()
    assert cells.switch_count.sum() == 1
    assert cells.switch_count[3, 4] == 1


def test_reset_lowers_every_conductance():
    cells = CellArray(16, 16, DevicePreset.load("perovskite"), np.random.default_rng(6))
    cells.set_state(0.8)
    before = cells.conductance_s
    apply(cells, -1.1)
    assert (cells.conductance_s < before).all()


def test_formed_cells_start_in_the_low_state():
    cells = CellArray(64, 8, DevicePreset.load("perovskite"), np.random.default_rng(7))
    w = cells.state
    assert ((w >= 0) & (w <= 1)).all()
    assert w.mean() == pytest.approx(0.116, abs=0.002)
    assert w.std() == pytest.approx(0.009, rel=0.15)


def test_stuck_cells_never_change():
    p = DevicePreset.load("perovskite")
    cells = CellArray(16, 16, p, np.random.default_rng(8), stuck_fraction=0.25)
    low, high = cells.stuck_low, cells.stuck_high
    assert low.sum() == 32
    assert high.sum() == 32
    assert not (low & high).any()

    stuck = low | high
    g_stuck = cells.conductance_s[stuck]
    np.testing.assert_allclose(cells.conductance_s[low], cells.g_min_cell_s[low])
    np.testing.assert_allclose(cells.conductance_s[high], cells.g_max_cell_s[high])

    cells.set_state(0.5)
    apply(cells, 1.5, count=20)
    apply(cells, -1.5, count=20)
    assert np.array_equal(cells.conductance_s[stuck], g_stuck)
    assert cells.switch_count[stuck].sum() == 0
    assert (cells.switch_count[~stuck] == 40).all()


def test_same_seed_gives_identical_arrays():
    def history(seed):
        p = DevicePreset.load("perovskite")
        cells = CellArray(8, 8, p, np.random.default_rng(seed), stuck_fraction=0.1)
        apply(cells, 1.2, count=5)
        apply(cells, -1.1, count=2)
        return cells.conductance_s, cells.read_conductance()

    first, again, other = history(9), history(9), history(10)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_read_noise_has_the_configured_relative_sigma():
    p = DevicePreset.load("perovskite")
    cells = CellArray(64, 8, p, np.random.default_rng(11))
    cells.set_state(0.5)
    g = cells.conductance_s
    reads = np.stack([cells.read_conductance() for _ in range(400)])
    relative = reads / g - 1
    assert relative.std() == pytest.approx(p.read_sigma, rel=0.03)
    assert abs(relative.mean()) < 0.05 * p.read_sigma
    assert np.array_equal(cells.conductance_s, g)


def test_presets_keep_their_fields_in_si_units():
    p = DevicePreset.load("perovskite")
    assert (p.g_min_s, p.g_max_s) == (0.25e-6, 100e-6)
    assert (p.v_set_v, p.v_reset_v) == (0.8, -0.7)
    assert p.thermal_noise_a == 20e-12
    assert DevicePreset.load(PRESET_DIR / "perovskite.yaml") == p
    assert DevicePreset.load("perovskite", c2c_sigma=0.02).c2c_sigma == 0.02


def test_unknown_key_in_a_preset_file_is_named(tmp_path):
    path = tmp_path / "odd.yaml"
    text = (PRESET_DIR / "perovskite.yaml").read_text()
    path.write_text(text + "retention_s: 1.0e+6\n")
    with pytest.raises(ValueError, match=r"odd\.yaml.*unknown key 'retention_s'"):
        DevicePreset.load(path)


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match=r"perovskite\.yaml.*'c2c_sgima'"):
        DevicePreset.load("perovskite", c2c_sgima=0.02)


def test_out_of_range_value_names_the_field_and_the_file():
    with pytest.raises(ValueError, match=r"perovskite\.yaml: g_max_s"):
        DevicePreset.load("perovskite", g_max_s=1e-7)
    with pytest.raises(ValueError, match=r"perovskite\.yaml: read_voltage_v"):
        DevicePreset.load("perovskite", read_voltage_v=0.9)


def test_repeated_events_land_where_as_many_single_events_do():
    p = DevicePreset.load("perovskite")
    v = np.random.default_rng(12).uniform(-1.6, 1.6, (8, 8))
    stepped_rng, repeated_rng = np.random.default_rng(13), np.random.default_rng(13)
    stepped = CellArray(8, 8, p, stepped_rng)
    repeated = CellArray(8, 8, p, repeated_rng)
    plan = repeated.switching(v, WIDTH_S)
    assert plan is not None and plan.size > 1

    # The draws six evolve() calls take from their generator, in one go.
    draws = repeated_rng.standard_normal((6, 2, plan.size))
    states = repeated.repeat(plan, draws)
    for _ in range(6):
        stepped.evolve(v, WIDTH_S)

    assert np.array_equal(repeated.state, stepped.state)
    assert np.array_equal(repeated.switch_count, stepped.switch_count)
    assert [s[-1] for s in states] == repeated.state.reshape(-1)[plan.cells].tolist()


def test_voltages_inside_the_thresholds_plan_no_switching():
    cells = CellArray(8, 8, DevicePreset.load("perovskite"), np.random.default_rng(15))
    inside = 0.9 * min(cells.lowest_set_v, -cells.highest_reset_v)
    assert cells.switching(np.full(cells.shape, inside), WIDTH_S) is None
    assert cells.switching(np.full(cells.shape, -inside), WIDTH_S) is None
    assert cells.switching(np.full(cells.shape, 1.5), 0.0) is None


def test_reading_does_not_change_the_switching_noise():
    p = DevicePreset.load("perovskite")

    def history(reads_between):
        rng = np.random.default_rng(16)
        cells = CellArray(8, 8, p, rng, read_rng=rng.spawn(1)[0])
        for _ in range(5):
            apply(cells, 1.2)
            for _ in range(reads_between):
                cells.read_conductance()
        return cells.state

    assert np.array_equal(history(0), history(3))
