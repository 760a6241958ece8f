"""The safety guard refuses unsafe actions before anything is sent."""

import pytest

from labctl.safety import Guard, GuardedChannel, GuardedMatrix, SafetyError
from labctl.station import Limits


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
    assert a.sent == [("current_limit", 1e-4), ("output_enabled", True)]


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
