"""The bench: its file, the wiring, the circuit through the instruments, the clock."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.station import ConfigError
from simulator.array_solver import ArrayCircuit
from simulator.bench import Bench, Timing, bench_for, forget
from simulator.circuit import solve
from simulator.device import DevicePreset, current_per_siemens
from tests.simulator.test_array_solver import resistive_bench
from tests.simulator.tsp_talk import ask

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "benches" / "demo.yaml"
STATION = ROOT / "data" / "stations" / "demo.yaml"
READ_V = 0.1


@pytest.fixture
def bench():
    return Bench.from_file(DEMO)


@pytest.fixture
def smu(bench):
    return bench.resource("GPIB0::26::INSTR")


def currents(instrument, *channels):
    query = ", ".join(f"{channel}.measure.i()" for channel in channels)
    return [float(f) for f in ask(instrument, f"print({query})")[0].split("\t")]


# The demo wiring: row line r on slot r // 12 + 1, column r % 12 + 1; column
# line c on slot 6, column c + 5. Buses: A smu1.smua, B smu1.smub, C smu2.smua,
# H ground.


def row(r, bus):
    slot, column = divmod(r, 12)
    return f"{slot + 1}{bus}{column + 1:02d}"


def col(c, bus):
    return f"6{bus}{c + 5:02d}"


def close(smu, channels):
    ask(smu, f'node[4].channel.exclusiveclose("{",".join(channels)}")')


def outputs_on(smu, level_v=READ_V):
    ask(
        smu,
        "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
        "node[2].smua.source.limiti = 1e-2 "
        f"smua.source.levelv = {level_v} smua.source.output = 1 "
        "node[2].smua.source.levelv = 0 node[2].smua.source.output = 1",
    )


@pytest.fixture
def programmed(bench):
    """Cells in known random states; their noise-free conductances."""
    rng = np.random.default_rng(7)
    bench.set_cell_state("A0", rng.uniform(0.0, 1.0, (64, 8)))
    return bench.arrays["A0"].conductance_s


def write_bench(tmp_path, text):
    path = tmp_path / "bench.yaml"
    path.write_text(f"station: {STATION}\n" + text)
    return path


# The bench file


def test_the_demo_bench_builds_every_instrument(bench):
    assert set(bench.instruments) == {"smu1", "smu2", "smu3", "matrix"}
    assert bench.resources() == ["GPIB0::26::INSTR"]
    assert bench.arrays["A0"].shape == (64, 8)
    assert bench.now_s == 0.0


def test_an_unknown_key_is_one_line_naming_file_and_key(tmp_path):
    path = write_bench(tmp_path, "colour: blue\n")
    with pytest.raises(ConfigError) as error:
        Bench.from_file(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and "colour" in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("seed: -1\n", "seed"),
        ("stuck_fraction: 2\n", "stuck_fraction"),
        ("device: {no_such_field: 1}\n", "device"),
        ("timing: {relay_operate_s: -1}\n", "timing"),
        ("timing: {warp: 1}\n", "timing.warp"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        Bench.from_file(write_bench(tmp_path, text))


def test_a_missing_station_is_reported(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="station"):
        Bench.from_file(path)


def test_overrides_replace_file_values(tmp_path):
    path = write_bench(tmp_path, "seed: 3\n")
    bench = Bench.from_file(
        path, seed=4, device={"read_sigma": 0.0}, timing={"bus_latency_s": 0.002}
    )
    assert bench.seed == 4
    assert bench.preset.read_sigma == 0.0
    assert bench.timing == Timing(bus_latency_s=0.002)
    with pytest.raises(ConfigError, match="colour"):
        Bench.from_file(path, colour="blue")


def test_one_seed_gives_one_chip(tmp_path):
    path = write_bench(tmp_path, "seed: 11\n")
    first = Bench.from_file(path).arrays["A0"].conductance_s
    again = Bench.from_file(path).arrays["A0"].conductance_s
    other = Bench.from_file(path, seed=12).arrays["A0"].conductance_s
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_stuck_fraction_reaches_the_cells(tmp_path):
    bench = Bench.from_file(write_bench(tmp_path, "stuck_fraction: 0.5\n"))
    array = bench.arrays["A0"]
    assert (array.stuck_low | array.stuck_high).sum() == 256


def test_the_registry_keeps_one_bench_per_file():
    forget(DEMO)
    first = bench_for(DEMO)
    assert bench_for(str(DEMO)) is first
    forget(DEMO)
    assert bench_for(DEMO) is not first
    forget(DEMO)


# Physics through the instruments


def test_with_every_other_line_grounded_the_current_is_g_times_v(smu, programmed):
    i, j = 5, 3
    others = [row(r, "H") for r in range(64) if r != i]
    others += [col(c, "H") for c in range(8) if c != j]
    close(smu, [row(i, "A"), col(j, "C"), *others])
    outputs_on(smu)
    drive_a, sense_a = currents(smu, "smua", "node[2].smua")
    assert sense_a == pytest.approx(-programmed[i, j] * READ_V, rel=0.02)
    assert drive_a == pytest.approx(programmed[i].sum() * READ_V, rel=0.01)


def test_floating_lines_add_the_sneak_paths(smu, programmed):
    i, j = 5, 3
    close(smu, [row(i, "A"), col(j, "C")])
    outputs_on(smu)
    (sense_a,) = currents(smu, "node[2].smua")
    expected = -_sneak_current(programmed, i, j, READ_V)
    assert sense_a == pytest.approx(expected, rel=0.01)
    assert abs(sense_a) > 3 * programmed[i, j] * READ_V


def _sneak_current(g, i, j, v):
    """Current into column j held at 0 V with row i at v and all else floating."""
    rows, cols = g.shape
    n = rows + cols
    laplacian = np.zeros((n, n))
    for r in range(rows):
        for c in range(cols):
            a, b = r, rows + c
            laplacian[[a, b], [a, b]] += g[r, c]
            laplacian[a, b] -= g[r, c]
            laplacian[b, a] -= g[r, c]
    fixed = {i: v, rows + j: 0.0}
    free = [k for k in range(n) if k not in fixed]
    known = np.array(list(fixed.values()))
    line_v = np.zeros(n)
    line_v[list(fixed)] = known
    line_v[free] = np.linalg.solve(
        laplacian[np.ix_(free, free)], -laplacian[np.ix_(free, list(fixed))] @ known
    )
    return float(g[:, j] @ line_v[:rows])


def test_opening_the_relays_leaves_only_thermal_noise(smu, bench, programmed):
    close(smu, [row(5, "A"), col(3, "C")])
    outputs_on(smu)
    ask(smu, 'node[4].channel.open("allslots")')
    floor_a = bench.preset.thermal_noise_a
    readings = [currents(smu, "smua", "node[2].smua") for _ in range(20)]
    assert np.abs(readings).max() < 6 * floor_a
    assert np.std(readings) > 0


def test_repeated_readings_carry_fresh_read_noise(smu, programmed):
    close(smu, [row(5, "A"), *[col(c, "H") for c in range(8)]])
    outputs_on(smu)
    readings = [currents(smu, "smua")[0] for _ in range(30)]
    mean = np.mean(readings)
    assert mean == pytest.approx(programmed[5].sum() * READ_V, rel=0.01)
    assert 0 < np.std(readings) / mean < 0.01


def test_a_half_select_pulse_switches_only_the_selected_cell(smu, bench, programmed):
    i, j, pulse_v = 10, 2, 1.2
    before = programmed.copy()
    others = [row(r, "B") for r in range(64) if r != i]
    others += [col(c, "B") for c in range(8) if c != j]
    close(smu, [row(i, "A"), col(j, "H"), *others])
    ask(
        smu,
        "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
        f"smub.source.levelv = {pulse_v / 2} smub.source.output = 1 "
        "smua.source.output = 1 "
        f"smua.source.levelv = {pulse_v} delay(1e-3) smua.source.levelv = 0 "
        "smua.source.output = 0 smub.source.output = 0",
    )
    after = bench.arrays["A0"].conductance_s
    changed = after != before
    assert changed[i, j] and after[i, j] > before[i, j]
    assert changed.sum() == 1
    assert bench.max_abs_line_voltage_v == pytest.approx(pulse_v)


def test_a_read_does_not_change_the_cells(smu, bench, programmed):
    close(smu, [row(5, "A"), col(3, "H")])
    outputs_on(smu, level_v=0.3)
    ask(smu, "delay(10) x = smua.measure.i() smua.source.output = 0")
    # The cells relax over the 10 s as on a twin bench left alone, no more.
    idle = Bench.from_file(DEMO)
    idle.set_cell_state("A0", np.random.default_rng(7).uniform(0.0, 1.0, (64, 8)))
    idle.advance(bench.now_s)
    idle.cell_energy("A0")
    after = bench.arrays["A0"].conductance_s
    assert bench.arrays["A0"].switch_count.sum() == 0
    np.testing.assert_allclose(after, idle.arrays["A0"].conductance_s, rtol=1e-4)
    assert not np.allclose(after, programmed, rtol=1e-5)  # they did relax


def test_a_current_limit_holds_the_source_at_its_limit(smu, programmed):
    close(smu, [row(5, "A"), *[col(c, "H") for c in range(8)]])
    ask(smu, "smua.source.limiti = 1e-6 smua.source.levelv = 1 smua.source.output = 1")
    current, voltage = (
        float(f) for f in ask(smu, "print(smua.measure.iv())")[0].split("\t")
    )
    assert current == pytest.approx(1e-6, rel=1e-3)
    assert voltage == pytest.approx(1e-6 / programmed[5].sum(), rel=0.02)


def test_two_sources_on_one_net_are_a_short(smu, bench, caplog):
    close(smu, [row(5, "A"), row(5, "B")])
    with caplog.at_level(logging.WARNING, logger="simulator.bench"):
        ask(
            smu,
            "smua.source.levelv = 0.5 smub.source.levelv = -0.5 "
            "smua.source.output = 1 smub.source.output = 1",
        )
        reply = ask(smu, "print(smua.source.compliance, smub.source.compliance)")
    assert reply == ["true\ttrue"]
    assert any("short" in record.message for record in caplog.records)
    a, b = currents(smu, "smua", "smub")
    assert a > 0 > b


def test_a_source_on_the_ground_bus_is_a_short(smu):
    close(smu, [row(5, "A"), row(5, "H")])
    ask(
        smu, "smua.source.levelv = 0.2 smua.source.limiti = 1e-3 smua.source.output = 1"
    )
    assert ask(smu, "print(smua.source.compliance)") == ["true"]
    assert currents(smu, "smua")[0] == pytest.approx(1e-3, rel=1e-3)


def test_an_output_that_is_off_reads_the_voltage_of_its_net(smu):
    # smu1.smua drives row 5 at 0.2 V; smu2.smua, off, sits on column 3.
    close(smu, [row(5, "A"), col(3, "C")])
    ask(smu, "smua.source.levelv = 0.2 smua.source.output = 1")
    volts = float(ask(smu, "print(node[2].smua.measure.v())")[0])
    assert volts == pytest.approx(0.2, rel=1e-6)
    assert abs(currents(smu, "node[2].smua")[0]) < 1e-9


def test_a_current_source_sets_the_voltage_the_cells_need(smu, programmed):
    close(smu, [row(5, "A"), *[col(c, "H") for c in range(8)]])
    ask(
        smu,
        "smua.source.func = smua.OUTPUT_DCAMPS smua.source.leveli = 1e-6 "
        "smua.source.limitv = 5 smua.source.output = 1",
    )
    volts = float(ask(smu, "print(smua.measure.v())")[0])
    assert volts == pytest.approx(1e-6 / programmed[5].sum(), rel=0.02)


# Records and the clock


def test_views_of_outputs_and_relays(smu, bench):
    close(smu, [row(0, "A"), col(0, "H")])
    ask(smu, "smua.source.output = 1")
    assert bench.outputs_on() == ["smu1.smua"]
    assert bench.closed_relays() == ["1A01", "6H05"]


def test_levels_applied_are_recorded(smu, bench):
    close(smu, [row(0, "A")])
    ask(
        smu, "smua.source.levelv = 0.3 smua.source.output = 1 smua.source.levelv = -0.7"
    )
    assert bench.max_abs_line_voltage_v == pytest.approx(0.7)
    assert [event[1:] for event in bench.events] == [
        ("smu1.smua", 0.3),
        ("smu1.smua", -0.7),
    ]


def test_a_level_on_a_channel_that_reaches_no_line_is_not_a_line_voltage(smu, bench):
    ask(smu, "smua.source.levelv = 1.5 smua.source.output = 1")
    assert bench.max_abs_line_voltage_v == 0.0


def test_advance_moves_the_clock(bench):
    bench.advance(2.5)
    assert bench.now_s == 2.5
    with pytest.raises(ValueError):
        bench.advance(-1)


def test_hot_switching_is_counted(smu, bench):
    ask(smu, "smua.source.levelv = 0.1 smua.source.output = 1")
    close(smu, [row(0, "A")])
    assert bench.hot_switch_count == 1
    ask(smu, "smua.source.levelv = 0")
    close(smu, [row(1, "A")])
    assert bench.hot_switch_count == 1


def test_a_change_is_made_even_when_the_solve_before_it_fails(smu, bench, monkeypatch):
    # An output turned off and relays opened must reach the chip, whatever
    # the solve of the time before the change does: the instrument believes
    # them done.
    close(smu, [row(0, "A"), col(0, "H")])
    outputs_on(smu)
    bench.advance(1.0)

    def fail(noisy):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(bench, "_solution", fail)
    ask(smu, "smua.source.output = 0")
    assert bench.outputs_on() == ["smu2.smua"]
    bench.advance(1.0)
    ask(smu, 'node[4].channel.open("allslots")')
    assert bench.closed_relays() == []
    assert "Singular matrix" in ask(smu, "print(errorqueue.next())")[0]
    monkeypatch.undo()
    assert ask(smu, "print(smua.source.output, node[4].channel.getclose('allslots'))")


@dataclass(frozen=True)
class PresetCells:
    """The bench's analog cells as the array solver takes nonlinear cells."""

    g_s: np.ndarray
    preset: DevicePreset

    def current_a(self, v):
        return self.g_s * current_per_siemens(self.preset, v)

    def conductance_s(self, v):
        step = 1e-6
        above = current_per_siemens(self.preset, v + step)
        below = current_per_siemens(self.preset, v - step)
        return self.g_s * (above - below) / (2 * step)


def test_resistive_lines_carry_the_cells_nonlinear_current(tmp_path):
    # Row 5 driven far past the ohmic region, the other lines grounded: the
    # bench's reading is the array solver's Newton solution of the same
    # circuit, not the cells at their low-voltage conductance.
    i, j, v, ohm = 5, 3, 0.7, 100.0
    bench = resistive_bench(tmp_path, ohm)
    bench.set_cell_state("A0", np.random.default_rng(13).uniform(0.0, 1.0, (64, 8)))
    g = bench.arrays["A0"].conductance_s
    smu = bench.resource("GPIB0::26::INSTR")
    close(smu, [row(r, "A" if r == i else "H") for r in range(64)]
          + [col(c, "C" if c == j else "H") for c in range(8)])
    ask(smu, "smua.source.limiti = 1e-1 node[2].smua.source.limiti = 1e-1 "
             f"smua.source.levelv = {v} smua.source.output = 1 "
             "node[2].smua.source.levelv = 0 node[2].smua.source.output = 1")
    sense_a = currents(smu, "node[2].smua")[0]

    circuit = ArrayCircuit(64, 8, r_row_ohm=ohm, r_col_ohm=ohm, source_ohm=ohm,
                           sense_ohm=ohm)
    row_v = np.where(np.arange(64) == i, v, 0.0)
    expected = circuit.solve_nonlinear(PresetCells(g, bench.preset), row_v)
    ohmic = circuit.solve(g, row_v)
    assert sense_a == pytest.approx(-expected.col_current_a[j], rel=1e-5)
    assert -expected.col_current_a[j] > 1.05 * -ohmic.col_current_a[j]


# Pulse trains


def half_select(bench, i=10, j=2, others="B", level_v=1.2, limit_a=1e-2):
    """Row i on smu1.smua, column j on ground, the other lines on `others`."""
    smu = bench.resource("GPIB0::26::INSTR")
    rng = np.random.default_rng(7)
    bench.set_cell_state("A0", rng.uniform(0.0, 1.0, (64, 8)))
    lines = [row(r, others) for r in range(64) if r != i]
    lines += [col(c, others) for c in range(8) if c != j]
    close(smu, [row(i, "A"), col(j, "H"), *lines])
    ask(
        smu,
        f"smua.source.limiti = {limit_a} smub.source.limiti = 1e-2 "
        f"smua.measure.nplc = 0.001 smub.source.levelv = {level_v / 2} "
        "smub.source.output = 1 smua.source.output = 1",
    )
    return smu


def pulse_train(bench, level_v, count, **wiring):
    """Run PulseVMeasureI on a half-selected cell; what the bench is left with."""
    smu = half_select(bench, level_v=level_v, **wiring)
    ask(smu, f"PulseVMeasureI(smua, 0, {level_v}, 1e-5, 2e-5, {count})")
    readings = ask(smu, f"printbuffer(1, {count}, smua.nvbuffer1.readings)")[0]
    times = ask(smu, f"printbuffer(1, {count}, smua.nvbuffer1.timestamps)")[0]
    array = bench.arrays["A0"]
    return {
        "state": array.state,
        "switch_count": array.switch_count.copy(),
        "now_s": bench.now_s,
        "events": list(bench.events),
        "max_v": bench.max_abs_line_voltage_v,
        "times": times,
        "readings": np.array([float(f) for f in readings.split(", ")]),
        "errors": smu.errorqueue.entries(),
    }


def trains_in_one_step(monkeypatch):
    """Watch the factory pulse function: True for each train taken in one step."""
    taken = []
    step = Bench.pulse_train

    def spy(self, *args):
        result = step(self, *args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(Bench, "pulse_train", spy)
    return taken


def one_by_one(monkeypatch):
    """Make the factory pulse function take its pulses one at a time."""
    monkeypatch.setattr(Bench, "pulse_train", lambda self, *args: None)


def same_bench(a, b):
    for key in ("state", "switch_count"):
        assert np.array_equal(a[key], b[key]), key
    for key in ("now_s", "events", "max_v", "times", "errors"):
        assert a[key] == b[key], key


@pytest.mark.parametrize(
    "level_v, count, others",
    [
        (1.2, 28, "B"),  # V/2 scheme: the selected cell alone switches
        (-1.1, 9, "B"),
        (1.3, 6, "H"),  # the rest grounded: the whole selected row switches
    ],
)
def test_a_pulse_train_in_one_step_leaves_the_chip_as_pulses_one_by_one(
    monkeypatch, level_v, count, others
):
    taken = trains_in_one_step(monkeypatch)
    at_once = pulse_train(Bench.from_file(DEMO), level_v, count, others=others)
    assert taken == [True]
    one_by_one(monkeypatch)
    pulses = pulse_train(Bench.from_file(DEMO), level_v, count, others=others)

    same_bench(at_once, pulses)
    switched = (at_once["switch_count"] > 0).sum()
    assert switched == (1 if others == "B" else 8)
    # Readings differ by their read noise only.
    sigma = Bench.from_file(DEMO).preset.read_sigma
    relative = at_once["readings"] / pulses["readings"] - 1
    assert np.abs(relative).max() < 10 * sigma


def test_noise_free_readings_of_a_pulse_train_are_those_pulse_by_pulse(monkeypatch):
    quiet = {"device": {"read_sigma": 0.0, "thermal_noise_a": 0.0}}
    at_once = pulse_train(Bench.from_file(DEMO, **quiet), 1.2, 12)
    one_by_one(monkeypatch)
    pulses = pulse_train(Bench.from_file(DEMO, **quiet), 1.2, 12)
    same_bench(at_once, pulses)
    np.testing.assert_allclose(at_once["readings"], pulses["readings"], rtol=1e-12)
    assert len(set(at_once["readings"].tolist())) == 12  # the cell moves each pulse


def test_a_train_that_could_reach_the_current_limit_is_taken_pulse_by_pulse(
    monkeypatch,
):
    # 20 uA is below what the selected row can draw at 1.2 V.
    limited = pulse_train(Bench.from_file(DEMO), 1.2, 5, limit_a=2e-5)
    one_by_one(monkeypatch)
    pulses = pulse_train(Bench.from_file(DEMO), 1.2, 5, limit_a=2e-5)
    same_bench(limited, pulses)
    assert np.array_equal(limited["readings"], pulses["readings"])
    assert limited["readings"].max() == pytest.approx(2e-5, rel=1e-3)


def test_a_train_whose_bias_switches_cells_is_taken_pulse_by_pulse(monkeypatch):
    # At 1.8 V the half-selected cells see 0.9 V, above their SET threshold.
    bias = pulse_train(Bench.from_file(DEMO), 1.8, 3)
    one_by_one(monkeypatch)
    pulses = pulse_train(Bench.from_file(DEMO), 1.8, 3)
    same_bench(bias, pulses)
    assert (bias["switch_count"] > 0).sum() > 8


# Currents of a chip held everywhere


def test_with_every_line_on_a_bus_the_currents_are_the_nodal_solution(smu, bench):
    rng = np.random.default_rng(21)
    bench.set_cell_state("A0", rng.uniform(0.0, 1.0, (64, 8)))
    buses = "ABCH"  # smu1.smua, smu1.smub, smu2.smua, ground
    row_bus = rng.choice(list(buses), 64)
    col_bus = rng.choice(list(buses), 8)
    close(
        smu,
        [row(r, b) for r, b in enumerate(row_bus)]
        + [col(c, b) for c, b in enumerate(col_bus)],
    )
    levels = {"A": 0.15, "B": -0.1, "C": 0.05, "H": 0.0}
    ask(
        smu,
        "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
        "node[2].smua.source.limiti = 1e-2 "
        f"smua.source.levelv = {levels['A']} smub.source.levelv = {levels['B']} "
        f"node[2].smua.source.levelv = {levels['C']} smua.source.output = 1 "
        "smub.source.output = 1 node[2].smua.source.output = 1",
    )
    readings = [currents(smu, "smua", "smub", "node[2].smua") for _ in range(40)]
    net = {b: k for k, b in enumerate(buses)}
    g = bench.arrays["A0"].conductance_s
    fixed = np.array([levels[b] for b in buses])
    _, expected = solve(
        [(g, np.array([net[b] for b in row_bus]), np.array([net[b] for b in col_bus]))],
        len(buses),
        fixed,
        np.zeros(len(buses)),
    )
    np.testing.assert_allclose(
        np.mean(readings, axis=0), expected[:3], rtol=2e-3, atol=1e-9
    )


def two_array_bench(folder):
    """The demo station on a chip of two arrays, A0 (48 x 8) and A1 (8 x 8)."""

    chip = {
        "name": "two",
        "preset": "perovskite",
        "arrays": {"A0": {"rows": 48, "cols": 8}, "A1": {"rows": 8, "cols": 8}},
    }
    (folder / "chip.yaml").write_text(yaml.safe_dump(chip))
    station = yaml.safe_load(STATION.read_text())
    station["chip"] = str(folder / "chip.yaml")
    pins = [f"A0.R{i}" for i in range(48)] + [f"A1.R{i}" for i in range(8)]
    pins += [f"A0.C{i}" for i in range(8)] + [f"A1.C{i}" for i in range(8)]
    station["wiring"]["columns"] = {s + 1: pins[12 * s : 12 * s + 12] for s in range(6)}
    (folder / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    path = folder / "bench.yaml"
    path.write_text(f"station: {folder / 'station.yaml'}\nseed: 5\n")
    return Bench.from_file(path)


def test_a_pulse_train_over_two_arrays_leaves_both_as_pulses_one_by_one(
    tmp_path, monkeypatch
):
    def run(folder):
        folder.mkdir()
        bench = two_array_bench(folder)
        smu = bench.resource("GPIB0::26::INSTR")
        # A0 row 5 and A1 row 2 on the drive, A0 column 1 and A1 column 6 on
        # ground, every other line on the bias: one selected cell per array.
        buses = {pin: "B" for pin in bench.station.pin_channels()}
        buses.update({"A0.R5": "A", "A1.R2": "A", "A0.C1": "H", "A1.C6": "H"})
        places = bench.station.pin_channels()
        close(
            smu, [f"{places[p][0]}{bus}{places[p][1]:02d}" for p, bus in buses.items()]
        )
        ask(
            smu,
            "smua.source.limiti = 1e-2 smub.source.limiti = 1e-2 "
            "smub.source.levelv = 0.6 smub.source.output = 1 smua.source.output = 1 "
            "PulseVMeasureI(smua, 0, 1.2, 1e-5, 2e-5, 7)",
        )
        arrays = bench.arrays.values()
        return [a.state for a in arrays], [a.switch_count for a in arrays], bench.now_s

    taken = trains_in_one_step(monkeypatch)
    at_once = run(tmp_path / "at_once")
    assert taken == [True]
    one_by_one(monkeypatch)
    pulses = run(tmp_path / "pulses")
    for a, b in zip(at_once[0], pulses[0], strict=True):
        assert np.array_equal(a, b)
    assert [(c == 7).sum() for c in at_once[1]] == [1, 1]
    assert at_once[2] == pulses[2]
