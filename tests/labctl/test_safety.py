"""The safety guard refuses unsafe actions before anything is sent."""

import pytest
import yaml

from labctl.safety import Guard, GuardedChannel, GuardedMatrix, SafetyError
from labctl import runner
from labctl.rig import Rig
from labctl.station import Limits, load_station
from procedures.base import ParameterError
from simulator.bench import bench_for
from simulator.device import EXPONENTIAL
from tests.conftest import DEMO_STATION, write_bench


class FakeChannel:
    def __init__(self):
        object.__setattr__(self, "sent", [])
        object.__setattr__(self, "output_enabled", False)

    def __setattr__(self, name, value):
        if name != "sent":
            self.sent.append((name, value))
        object.__setattr__(self, name, value)

    def turn_off(self):
        self.sent.append(("turn_off",))

    def pulse_train(self, *args):
        self.sent.append(("pulse_train", args))
        return []


class FakeMatrix:
    def __init__(self):
        self.sent = []

    def close(self, channels):
        self.sent.append(("close", list(channels)))

    def open(self, channels):
        self.sent.append(("open", list(channels)))

    def open_all(self):
        self.sent.append(("open_all",))


LIMITS = Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3)


@pytest.fixture
def rig():
    guard = Guard(LIMITS, {"smu1.smua": "A", "smu1.smub": "B"})
    a, b, m = FakeChannel(), FakeChannel(), FakeMatrix()
    return (GuardedChannel("smu1.smua", a, guard), a,
            GuardedChannel("smu1.smub", b, guard), b, GuardedMatrix("matrix", m, guard), m)


def test_output_needs_a_limit_first(rig):
    ga, a, *_ = rig
    with pytest.raises(SafetyError, match="limit before output.*smu1.smua"):
        ga.output_enabled = True
    assert a.sent == []
    ga.current_limit = 1e-4
    ga.output_enabled = True
    # The limit is sent again with the turn-on itself.
    assert a.sent == [("current_limit", 1e-4), ("current_limit", 1e-4),
                      ("output_enabled", True)]


@pytest.mark.parametrize("level", [2.5, -2.01, float("nan")])
def test_level_above_the_chip_limit_is_refused(rig, level):
    ga, a, *_ = rig
    with pytest.raises(SafetyError, match="max voltage"):
        ga.source_voltage = level
    assert a.sent == []


def test_pulse_amplitude_and_bias_are_checked(rig):
    ga, a, *_ = rig
    ga.current_limit = 1e-4
    a.sent.clear()
    with pytest.raises(SafetyError, match="pulse level 3 V"):
        ga.pulse_train(3.0, 1e-5, 0.0, 1e-5, 5)
    with pytest.raises(SafetyError, match="pulse bias"):
        ga.pulse_train(1.0, 1e-5, -2.5, 1e-5, 5)
    assert a.sent == []


def test_compliance_above_the_chip_limit_is_refused(rig):
    ga, a, *_ = rig
    with pytest.raises(SafetyError, match="compliance"):
        ga.current_limit = 0.5
    assert a.sent == []


def test_no_hot_switching(rig):
    ga, a, gb, b, gm, m = rig
    ga.current_limit = 1e-4
    ga.output_enabled = True
    ga.source_voltage = 0.5
    with pytest.raises(SafetyError, match="no hot switching.*smu1.smua"):
        gm.close(["1A01"])
    with pytest.raises(SafetyError):
        gm.open_all()
    gm.close(["1B01"])  # row B has no live output
    ga.source_voltage = 0.0  # on at 0 V: cold
    gm.close(["1A01"])
    assert m.sent == [("close", ["1B01"]), ("close", ["1A01"])]


def test_force_off_needs_no_check(rig):
    ga, a, *_ = rig
    ga.force_off()
    assert a.sent == [("turn_off",)]


# Refusals name the cells the channel reaches.

LINES_AT = {(1, 1): ("A0", "row", 0), (1, 2): ("A0", "row", 1),
            (1, 9): ("A0", "col", 0), (1, 10): ("A0", "col", 1)}


@pytest.fixture
def wired():
    guard = Guard(LIMITS, {"smu1.smua": "A", "smu1.smub": "B"}, lines_at=LINES_AT)
    a, b, m = FakeChannel(), FakeChannel(), FakeMatrix()
    return (guard, GuardedChannel("smu1.smua", a, guard), a,
            GuardedChannel("smu1.smub", b, guard), b,
            GuardedMatrix("matrix", m, guard), m)


def test_a_refusal_names_rule_channel_and_cell(wired):
    guard, ga, a, gb, b, gm, m = wired
    gm.close(["1A01", "1H09"])  # row 0 on the channel, column 0 on ground
    with pytest.raises(SafetyError) as info:
        ga.source_voltage = 2.5
    assert str(info.value) == (
        "safety rule 'max voltage': smu1.smua: level 2.5 V exceeds the chip's "
        "max_voltage_v of 2 V (cell A0 (0, 0))"
    )
    assert a.sent == []


def test_a_refusal_names_every_cell_reached_or_none(wired):
    guard, ga, a, gb, b, gm, m = wired
    with pytest.raises(SafetyError, match=r"reaching no cell: its bus has no closed"):
        ga.output_enabled = True
    gm.close(["1A01"])
    with pytest.raises(SafetyError, match=r"reaching lines A0.R0 but no cell yet"):
        ga.output_enabled = True
    gm.close(["1H09", "1H10", "1A02"])
    with pytest.raises(SafetyError, match=r"limit before output.*cells A0 \(0, 0\), "
                                          r"A0 \(0, 1\), A0 \(1, 0\) and 1 more\)"):
        ga.output_enabled = True
    assert a.sent == []


def test_a_hot_switch_refusal_names_the_lines(wired):
    guard, ga, a, gb, b, gm, m = wired
    ga.current_limit = 1e-4
    ga.output_enabled = True
    ga.source_voltage = 0.5
    m.sent.clear()
    with pytest.raises(SafetyError, match=r"switching.*1A02 \(cells of line A0.R1\)"):
        gm.close(["1A02"])
    assert m.sent == []


# The per-cell budget.


def budget_guard(**limits):
    lim = Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
                 **limits)
    guard = Guard(lim, {"smu1.smua": "A", "smu1.smub": "B"}, lines_at=LINES_AT)
    drive, bias, m = FakeChannel(), FakeChannel(), FakeMatrix()
    gd = GuardedChannel("smu1.smua", drive, guard)
    gb = GuardedChannel("smu1.smub", bias, guard)
    gm = GuardedMatrix("matrix", m, guard)
    gm.close(["1A01", "1H09", "1B10"])  # cell (0, 0) to ground, (0, 1) to the bias
    for ch in (gd, gb):
        ch.current_limit = 1e-4
        ch.output_enabled = True
    drive.sent.clear()
    return guard, gd, drive, gb


def test_the_budget_is_off_by_default():
    guard, gd, drive, _ = budget_guard()
    for _ in range(1000):
        gd.pulse_train(1.0, 1e-3, 0.0, 1e-3, 10)
    assert len(drive.sent) == 1000
    assert guard.budget.charge_c == {}


def test_a_train_past_the_charge_budget_is_refused_before_it_is_sent():
    # each train: at most 1e-4 A x 1e-5 s x 5 = 5e-9 C through the full-level cell
    guard, gd, drive, _ = budget_guard(max_cell_charge_c=1e-8)
    gd.pulse_train(1.0, 1e-5, 0.0, 1e-5, 5)
    gd.pulse_train(1.0, 1e-5, 0.0, 1e-5, 5)
    assert guard.budget.charge_c[("A0", 0, 0)] == pytest.approx(1e-8)
    with pytest.raises(SafetyError) as info:
        gd.pulse_train(1.0, 1e-5, 0.0, 1e-5, 1)
    message = str(info.value)
    assert message.startswith("safety rule 'cell charge budget': smu1.smua: ")
    assert "cell A0 (0, 0) to 1.1e-08 C" in message
    assert "max_cell_charge_c of 1e-08 C" in message
    assert [s[0] for s in drive.sent] == ["pulse_train", "pulse_train"]
    assert guard.budget.charge_c[("A0", 0, 0)] == pytest.approx(1e-8)


def test_the_energy_budget_counts_the_level():
    guard, gd, drive, _ = budget_guard(max_cell_energy_j=1e-8)
    gd.pulse_train(2.0, 1e-5, 0.0, 1e-5, 5)  # 2 V x 5e-9 C = 1e-8 J
    with pytest.raises(SafetyError, match="cell energy budget.*A0 \\(0, 0\\)"):
        gd.pulse_train(-0.5, 1e-5, 0.0, 1e-5, 1)
    assert len(drive.sent) == 1


def test_a_cell_held_at_another_level_is_not_charged():
    guard, gd, drive, gb = budget_guard(max_cell_charge_c=1e-6)
    gb.source_voltage = 0.5  # column 1 on the bias at V/2: (0, 1) is half-selected
    gd.pulse_train(1.0, 1e-5, 0.0, 1e-5, 5)
    assert set(guard.budget.charge_c) == {("A0", 0, 0)}
    gb.source_voltage = 0.0
    gd.pulse_train(1.0, 1e-5, 0.0, 1e-5, 5)
    assert set(guard.budget.charge_c) == {("A0", 0, 0), ("A0", 0, 1)}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("max_cell_charge_c", 0.0, "greater than 0"),
    ("max_cell_charge_c", 5.0, "less than or equal to 1"),
    ("max_cell_energy_j", -1.0, "greater than 0"),
])
def test_absurd_budgets_are_refused(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
               **{key: value})


# At the protocol: a refused action writes nothing to the instrument.


def test_refusals_write_nothing_to_the_instruments():
    from pymeasure.test import expected_protocol

    from drivers.k707b import Keithley707B
    from drivers.k2600 import Keithley2600

    limits = Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
                    max_cell_charge_c=1e-9)
    # The only messages allowed: the limit and the relays the test sets up.
    pairs = [("smua.source.limiti = 0.0001", None),
             ('node[4].channel.close("1A01,1H09")', None)]
    with expected_protocol(Keithley2600, pairs, name="smu1", model="2636B") as smu:
        matrix = Keithley707B(None, name="matrix", node=4, connection=smu.connection)
        guard = Guard(limits, {"smu1.smua": "A"}, lines_at=LINES_AT)
        ch = GuardedChannel("smu1.smua", smu.smua, guard)
        gm = GuardedMatrix("matrix", matrix, guard)
        with pytest.raises(SafetyError, match="limit before output"):
            ch.output_enabled = True
        with pytest.raises(SafetyError, match="max voltage"):
            ch.source_voltage = 2.5
        with pytest.raises(SafetyError, match="compliance"):
            ch.current_limit = 0.5
        ch.current_limit = 1e-4
        with pytest.raises(SafetyError, match="max voltage"):
            ch.apply_pulses(3.0, 1e-5, 0.0, 1e-5, 1)
        gm.close(["1A01", "1H09"])
        with pytest.raises(SafetyError, match="cell charge budget.*A0 \\(0, 0\\)"):
            ch.apply_pulses(1.0, 1e-3, 0.0, 1e-3, 10)
        guard.state("smu1.smua").on = True
        guard.state("smu1.smua").level_v = 0.5
        with pytest.raises(SafetyError, match="no hot switching"):
            gm.open_all()


# Operator modes' limits.

MODE_LINES_AT = {**LINES_AT, (2, 1): ("S0", "row", 0), (2, 9): ("S0", "col", 0)}


def mode_guard():
    limits = Limits(
        max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
        modes={"exponential": {"max_voltage_v": 0.5, "max_compliance_a": 1e-4}},
    )
    guard = Guard(limits, {"smu1.smua": "A", "smu1.smub": "B"},
                  lines_at=MODE_LINES_AT, array_modes={"A0": "analog",
                                                       "S0": "exponential"})
    a, m = FakeChannel(), FakeMatrix()
    return GuardedChannel("smu1.smua", a, guard), a, GuardedMatrix("matrix", m, guard), m


def test_a_line_of_exponential_cells_takes_no_more_than_their_limits():
    ga, a, gm, m = mode_guard()
    gm.close(["1A01", "1H09"])  # an analog cell: the chip's limits
    ga.current_limit = 5e-4
    ga.source_voltage = 1.5
    ga.source_voltage = 0.0
    gm.open(["1A01"])
    with pytest.raises(SafetyError, match=r"mode limit.*matrix close: current limit "
                                          r"0.0005 A exceeds limits.modes.exponential"
                                          r".max_compliance_a of 0.0001 A"):
        gm.close(["2A01"])
    ga.current_limit = 1e-4
    gm.close(["2A01", "2H09"])
    a.sent.clear()
    with pytest.raises(SafetyError, match=r"mode limit.*level 0.8 V exceeds "
                                          r"limits.modes.exponential.max_voltage_v of "
                                          r"0.5 V for the exponential cells of array S0"
                                          r".*cell S0 \(0, 0\)"):
        ga.source_voltage = 0.8
    with pytest.raises(SafetyError, match="mode limit"):
        ga.current_limit = 2e-4
    with pytest.raises(SafetyError, match="pulse level 0.6 V exceeds"):
        ga.pulse_train(0.6, 1e-6, 0.0, 1e-6, 1)
    assert a.sent == []  # nothing reached the instrument
    ga.source_voltage = 0.4
    ga.source_voltage = 0.0
    gm.open(["2A01"])
    ga.source_voltage = 0.8  # the exponential line left the bus


def test_an_output_set_beyond_a_mode_limit_does_not_turn_on_over_its_cells():
    ga, a, gm, m = mode_guard()
    ga.current_limit = 1e-4
    ga.source_voltage = 0.9  # output off, no cell reached
    with pytest.raises(SafetyError, match=r"matrix close: level 0.9 V exceeds"):
        gm.close(["2A01"])
    ga.source_voltage = 0.0
    gm.close(["2A01"])
    assert m.sent == [("close", ["2A01"])]


def test_mode_limits_above_the_chips_are_refused():
    with pytest.raises(ValueError, match="modes.volatile.max_voltage_v must not"):
        Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
               modes={"volatile": {"max_voltage_v": 3.0}})
    with pytest.raises(ValueError, match="modes"):
        Limits(max_voltage_v=2.0, max_compliance_a=1e-3, max_read_voltage_v=0.3,
               modes={"softmax": {"max_voltage_v": 1.0}})


def test_a_chip_of_exponential_cells_keeps_procedures_under_their_limit(tmp_path):
    station_path = write_bench(tmp_path / "bench")
    chip = yaml.safe_load((DEMO_STATION.parents[1] / "chips/pvk-demo.yaml").read_text())
    chip["arrays"]["A0"]["mode"] = "exponential"
    (tmp_path / "chip.yaml").write_text(yaml.safe_dump(chip))
    station = yaml.safe_load(station_path.read_text())
    station["chip"] = str(tmp_path / "chip.yaml")
    station["limits"]["modes"] = {"exponential": {"max_voltage_v": 0.5}}
    station_path.write_text(yaml.safe_dump(station, sort_keys=False))
    station = load_station(station_path)

    with pytest.raises(ParameterError, match=r"iv_sweep: v_max = 1.4 V exceeds the "
                                             r"chip's modes.exponential.max_voltage_v "
                                             r"\(array A0\) of 0.5 V"):
        runner.build_procedure("iv_sweep", {"v_max": "1.4"}, station)
    bench = bench_for(str(tmp_path / "bench" / "bench.yaml"))
    assert (bench.arrays["A0"].mode == EXPONENTIAL).all()
    rig = Rig(station)
    try:
        lines = rig.lines("A0")
        drive = rig.smu(station.roles.drive)
        drive.current_limit = 1e-4
        lines.select(0, 0, "A", "H", "H", "H")
        with pytest.raises(SafetyError, match="mode limit"):
            drive.source_voltage = 0.7
    finally:
        rig.close()
    assert bench.max_abs_line_voltage_v <= 0.5
