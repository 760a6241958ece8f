"""Protocol tests of the Keithley 2450 driver: exact messages and replies."""

import logging
import math

import numpy as np
import pymeasure.instruments.instrument as pymeasure_instrument
import pytest
from pymeasure.test import expected_protocol

from drivers.interfaces import SourceMeasureChannel
from drivers.k2450 import RATINGS, Keithley2450, Keithley2450Channel
from drivers.scpi import ERROR_DRAIN_LIMIT, ScpiError

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04365704,1.6.4c"

RUN = (
    ':SOUR:SWE:VOLT:LIST 1,{delay},1,OFF;:TRAC:CLE "defbuffer1";'
    ":OUTP ON;:INIT;*WAI;:OUTP OFF;:SOUR:VOLT {rest}"
)
HEAD = ':SOUR:FUNC VOLT;:SENS:FUNC "CURR"'
#: The limit check's query of the current range: autorange on, 100 uA.
AUTORANGE = (":SENS:CURR:RANG:AUTO?;:SENS:CURR:RANG?", "1;1.000000E-04")


def smu(pairs):
    return expected_protocol(Keithley2450, pairs, name="smu1")


def sweep_message(values, delay, count, rest="0.0"):
    run = RUN.format(delay=delay, rest=rest)
    read = f':TRAC:DATA? 1,{count},"defbuffer1",READ'
    return f"{HEAD};:SOUR:LIST:VOLT {values};{run};{read}"


def sweep_pairs(values, delay, count, reply, level="0.000000E+00"):
    """A sweep: the source level read first, the sweep putting it back."""
    rest = repr(float(level))
    return [(":SOUR:VOLT?", level), (sweep_message(values, delay, count, rest), reply)]


# properties: get


GETS = [
    ("source_function", ":SOUR:FUNC?", "VOLT", "voltage"),
    ("source_function", ":SOUR:FUNC?", "CURR", "current"),
    ("source_voltage", ":SOUR:VOLT?", "5.000000E-01", 0.5),
    ("source_current", ":SOUR:CURR?", "-1.000000E-06", -1e-6),
    ("current_limit", ":SOUR:VOLT:ILIM?", "1.000000E-07", 1e-7),
    ("voltage_limit", ":SOUR:CURR:VLIM?", "2.100000E+01", 21.0),
    ("nplc", ":SENS:CURR:NPLC?", "1.000000E+00", 1.0),
    ("current_range", ":SENS:CURR:RANG?", "1.000000E-04", 1e-4),
    ("current_autorange", ":SENS:CURR:RANG:AUTO?", "1", True),
    ("current_autorange", ":SENS:CURR:RANG:AUTO?", "0", False),
    ("four_wire", ":SENS:CURR:RSEN?", "1", True),
    ("four_wire", ":SENS:CURR:RSEN?", "0", False),
    ("output_enabled", ":OUTP?", "1", True),
    ("output_enabled", ":OUTP?", "0", False),
    ("compliance", ":SOUR:VOLT:ILIM:TRIP?", "1", True),
    ("compliance", ":SOUR:VOLT:ILIM:TRIP?", "0", False),
]


@pytest.mark.parametrize("prop, query, reply, value", GETS)
def test_get(prop, query, reply, value):
    with smu([(query, reply)]) as inst:
        got = getattr(inst.smu, prop)
        assert got == value
        assert type(got) is type(value)


@pytest.mark.parametrize(
    "prop, query, reply, error",
    [
        ("source_voltage", ":SOUR:VOLT?", "garbage", "expected a number"),
        ("current_limit", ":SOUR:VOLT:ILIM?", "1.0E-07,1.0E-07", "expected a number"),
        ("compliance", ":SOUR:VOLT:ILIM:TRIP?", "1,0", "expected 0 or 1"),
        ("output_enabled", ":OUTP?", "2", "expected 0 or 1"),
        ("source_function", ":SOUR:FUNC?", "RES", "unknown source function"),
    ],
)
def test_get_rejects_a_reply_it_cannot_read(prop, query, reply, error):
    with smu([(query, reply)]) as inst:
        with pytest.raises(ValueError, match=error):
            getattr(inst.smu, prop)


# properties: set, with every digit on the wire


SETS = [
    ("source_function", "voltage", ":SOUR:FUNC VOLT"),
    ("source_function", "current", ":SOUR:FUNC CURR"),
    ("source_voltage", 1.23456789, ":SOUR:VOLT 1.23456789"),
    ("source_voltage", -210, ":SOUR:VOLT -210.0"),
    ("source_voltage", 1e-7, ":SOUR:VOLT 1e-07"),
    ("source_current", 1e-7, ":SOUR:CURR 1e-07"),
    ("source_current", -1.05, ":SOUR:CURR -1.05"),
    ("voltage_limit", 0.02, ":SOUR:CURR:VLIM 0.02"),
    ("voltage_limit", 210, ":SOUR:CURR:VLIM 210.0"),
    ("nplc", 0.01, ":SENS:CURR:NPLC 0.01"),
    ("nplc", 10, ":SENS:CURR:NPLC 10.0"),
    ("current_autorange", True, ":SENS:CURR:RANG:AUTO ON"),
    ("current_autorange", False, ":SENS:CURR:RANG:AUTO OFF"),
    ("four_wire", True, ":SENS:CURR:RSEN ON"),
    ("four_wire", False, ":SENS:CURR:RSEN OFF"),
    ("output_enabled", True, ":OUTP ON"),
    ("output_enabled", False, ":OUTP OFF"),
]


@pytest.mark.parametrize("prop, value, command", SETS)
def test_set(prop, value, command):
    with smu([(command, None)]) as inst:
        setattr(inst.smu, prop, value)


@pytest.mark.parametrize(
    "value, command",
    [(1e-7, ":SOUR:VOLT:ILIM 1e-07"), (1e-9, ":SOUR:VOLT:ILIM 1e-09"),
     (1.05, ":SOUR:VOLT:ILIM 1.05")],
)  # fmt: skip
def test_set_current_limit_reads_the_range_first(value, command):
    with smu([AUTORANGE, (command, None)]) as inst:
        inst.smu.current_limit = value


@pytest.mark.parametrize(
    "value, command", [(1e-8, ":SENS:CURR:RANG 1e-08"), (1, ":SENS:CURR:RANG 1.0")]
)
def test_set_current_range_reads_the_limit_first(value, command):
    with smu([(":SOUR:VOLT:ILIM?", "1.050000E-03"), (command, None)]) as inst:
        inst.smu.current_range = value


def test_compliance_cannot_be_set():
    with smu([]) as inst:
        with pytest.raises(LookupError):
            inst.smu.compliance = True


# properties: out of range raises, names the limit, sends nothing


OUT_OF_RANGE = [
    ("current_limit", 1.06, "1.06 A is above the 1.05 A", ":SOUR:VOLT:ILIM"),
    ("current_limit", 5e-10, "5e-10 A is below the 1e-09 A", ":SOUR:VOLT:ILIM"),
    ("source_voltage", 211, "211 V is above the 210 V", ":SOUR:VOLT"),
    ("source_voltage", -210.5, "-210.5 V is below the -210 V", ":SOUR:VOLT"),
    ("source_current", 1.1, "1.1 A is above the 1.05 A", ":SOUR:CURR"),
    ("voltage_limit", 0.01, "0.01 V is below the 0.02 V", ":SOUR:CURR:VLIM"),
    ("voltage_limit", 211, "211 V is above the 210 V", ":SOUR:CURR:VLIM"),
    ("nplc", 0.005, "0.005 PLC is below the 0.01 PLC", ":SENS:CURR:NPLC"),
    ("nplc", 11, "11 PLC is above the 10 PLC", ":SENS:CURR:NPLC"),
    ("current_range", 1e-9, "1e-09 A is below the 1e-08 A", ":SENS:CURR:RANG"),
    ("current_range", 1.5, "1.5 A is above the 1 A", ":SENS:CURR:RANG"),
]


@pytest.mark.parametrize("prop, value, crossed, header", OUT_OF_RANGE)
def test_out_of_range_raises_naming_the_limit(prop, value, crossed, header):
    with smu([]) as inst:
        with pytest.raises(ValueError) as error:
            setattr(inst.smu, prop, value)
        assert str(error.value) == f"{crossed} limit of smu1.smu {header}"


@pytest.mark.parametrize(
    "prop, value",
    [
        ("source_voltage", float("nan")),
        ("current_limit", float("inf")),
        ("source_function", "volts"),
        ("output_enabled", "on"),
        ("four_wire", None),
    ],
)
def test_invalid_values_send_nothing(prop, value):
    with smu([]) as inst:
        with pytest.raises(ValueError):
            setattr(inst.smu, prop, value)


def test_non_numbers_send_nothing():
    with smu([]) as inst:
        with pytest.raises(TypeError):
            inst.smu.source_voltage = "0.5"


def test_channel_limits_follow_the_model():
    with smu([]) as inst:
        limits = inst.smu.limits
        assert (limits["source_voltage"].low, limits["source_voltage"].high) == (
            -210.0,
            210.0,
        )
        assert (limits["current_limit"].low, limits["current_limit"].high) == (
            1e-9,
            1.05,
        )
        assert limits["current_limit"].name == "smu1.smu :SOUR:VOLT:ILIM"
        assert inst.ratings is RATINGS["2450"]


# the instrument and its channel


def test_one_channel_named_after_the_instrument():
    with smu([]) as inst:
        assert list(inst.channels) == ["smu"]
        assert isinstance(inst.smu, Keithley2450Channel)
        assert inst.smu.name == "smu1.smu"


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown 2450 model '2460'"):
        Keithley2450(None, model="2460")


def test_channel_satisfies_the_source_measure_interface_without_talking():
    with smu([]) as inst:
        assert isinstance(inst.smu, SourceMeasureChannel)


def test_property_docs_start_with_a_verb():
    for prop in (
        "source_function",
        "source_voltage",
        "source_current",
        "current_limit",
        "voltage_limit",
        "nplc",
        "current_range",
        "current_autorange",
        "four_wire",
        "output_enabled",
        "compliance",
    ):
        doc = getattr(Keithley2450Channel, prop).__doc__
        assert doc.split()[0] in ("Control", "Measure"), prop
        assert "(dynamic)" not in doc


class RecordingVisaAdapter:
    """Stands in for pymeasure's VISAAdapter and keeps its arguments."""

    def __init__(self, resource, **kwargs):
        self.resource = resource
        self.kwargs = kwargs


def test_a_resource_string_gets_lf_terminations(monkeypatch):
    monkeypatch.setattr(pymeasure_instrument, "VISAAdapter", RecordingVisaAdapter)
    inst = Keithley2450("TCPIP0::192.0.2.7::5025::SOCKET", timeout=5000)
    assert inst.adapter.resource == "TCPIP0::192.0.2.7::5025::SOCKET"
    assert inst.adapter.kwargs == {
        "read_termination": "\n",
        "write_termination": "\n",
        "timeout": 5000,
    }


def test_given_terminations_are_kept(monkeypatch):
    monkeypatch.setattr(pymeasure_instrument, "VISAAdapter", RecordingVisaAdapter)
    inst = Keithley2450("ASRL1::INSTR", read_termination="\r")
    assert inst.adapter.kwargs["read_termination"] == "\r"


# measurements and overflow


def test_measure_current():
    with smu([(":MEAS:CURR?", "1.234500E-06")]) as inst:
        assert inst.smu.measure_current() == 1.2345e-06


@pytest.mark.parametrize(
    "reply", ["+9.9e37", "9.91e37", "9.9E37", "-9.9e37", "9.91E+37"]
)
def test_overflow_reading_is_nan_with_a_warning(reply, caplog):
    with smu([(":MEAS:CURR?", reply)]) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert math.isnan(inst.smu.measure_current())
    assert "smu1.smu: 1 of 1 readings overflowed" in caplog.text


def test_reading_that_is_not_a_number_raises():
    with smu([(":MEAS:CURR?", "OVERFLOW")]) as inst:
        with pytest.raises(ValueError, match="expected a number"):
            inst.smu.measure_current()


# sweeps


def test_sweep_voltage_is_one_message_after_reading_the_level():
    reply = "1.000000E-06,2.000000E-06,-1.000000E-12,1.234570E-05"
    pairs = sweep_pairs("0.1,0.2,-1e-07,1.23456789", "0.001", 4, reply)
    with smu(pairs) as inst:
        currents = inst.smu.sweep_voltage([0.1, 0.2, -1e-7, 1.23456789], 0.001)
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, -1e-12, 1.23457e-05])
        assert currents.dtype == np.float64


def test_sweep_without_delay_takes_a_numpy_array():
    pairs = sweep_pairs("0.5,-0.5", "0.0", 2, "1.0E-06,-1.0E-06")
    with smu(pairs) as inst:
        currents = inst.smu.sweep_voltage(np.array([0.5, -0.5]), 0)
        np.testing.assert_array_equal(currents, [1e-6, -1e-6])


def test_long_sweep_appends_the_list_in_groups_of_100():
    levels = [round(0.01 * i, 2) for i in range(250)]
    groups = [levels[:100], levels[100:200], levels[200:]]
    lists = [",".join(repr(v) for v in group) for group in groups]
    message = (
        f"{HEAD};:SOUR:LIST:VOLT {lists[0]};:SOUR:LIST:VOLT:APP {lists[1]};"
        f":SOUR:LIST:VOLT:APP {lists[2]};{RUN.format(delay='0.01', rest='0.0')};"
        ':TRAC:DATA? 1,250,"defbuffer1",READ'
    )
    reply = ",".join(["1.0E-09"] * 250)
    with smu([(":SOUR:VOLT?", "0.000000E+00"), (message, reply)]) as inst:
        assert inst.smu.sweep_voltage(levels, 0.01).shape == (250,)


def test_sweep_overflow_points_are_nan_with_a_warning(caplog):
    pairs = sweep_pairs("1.0,2.0,3.0", "0.001", 3, "1.0E-03,+9.9E37,-9.9e37")
    with smu(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            currents = inst.smu.sweep_voltage([1.0, 2.0, 3.0], 0.001)
    assert currents[0] == 1e-3
    assert np.isnan(currents[1:]).all()
    assert "smu1.smu: 2 of 3 readings overflowed" in caplog.text


@pytest.mark.parametrize("reply, got", [("1.0E-06", 1), ("1.0,2.0,3.0", 3)])
def test_sweep_with_another_count_of_readings_raises(reply, got):
    with smu(sweep_pairs("0.1,0.2", "0.0", 2, reply)) as inst:
        with pytest.raises(ValueError, match=f"expected 2 readings, got {got}"):
            inst.smu.sweep_voltage([0.1, 0.2], 0)


@pytest.mark.parametrize(
    "levels, settle, error",
    [
        ([0.1, 211.0], 0.001, "211 V is above the 210 V limit of smu1.smu :SOUR:VOLT"),
        ([], 0.001, "at least one level"),
        ([0.1], -0.001, "-0.001 s is below the 0 s limit of settle time of smu1.smu"),
        ([0.1], 1e-5, "1e-05 s is below the 5e-05 s limit of settle time"),
        ([0.1], 20000, "20000 s is above the 10000 s limit of settle time"),
        (
            [0.0] * 2501,
            0.001,
            "2501 points is above the 2500 points limit of the source list of smu1.smu",
        ),
    ],
)
def test_sweep_checks_before_sending(levels, settle, error):
    with smu([]) as inst:
        with pytest.raises(ValueError, match=error):
            inst.smu.sweep_voltage(levels, settle)


# pulse trains, emulated by a list sweep


def test_pulse_train_is_one_list_sweep_read_at_each_pulse_end():
    points = "0.0,0.0,1.5,0.0,0.0,1.5,0.0,0.0,1.5"
    message = sweep_message(points, "0.001", 9)
    reply = "0.0,0.0,1.0E-04,0.0,0.0,1.1E-04,0.0,0.0,1.2E-04"
    with smu([(message, reply)]) as inst:
        currents = inst.smu.pulse_train(
            level_v=1.5, width_s=1e-3, bias_v=0, off_s=2e-3, count=3
        )
        np.testing.assert_array_equal(currents, [1e-4, 1.1e-4, 1.2e-4])


@pytest.mark.parametrize(
    "off_s, points",
    [
        (0.0, "1.2,1.2"),
        (0.4e-3, "1.2,1.2"),
        (0.5e-3, "-0.1,1.2,-0.1,1.2"),
        (1e-3, "-0.1,1.2,-0.1,1.2"),
    ],
)
def test_pulse_off_time_is_a_whole_number_of_points(off_s, points):
    count = len(points.split(","))
    message = sweep_message(points, "0.001", count, rest="-0.1")
    reply = ",".join(f"{i}.0E-06" for i in range(1, count + 1))
    with smu([(message, reply)]) as inst:
        currents = inst.smu.pulse_train(1.2, 1e-3, -0.1, off_s, 2)
        np.testing.assert_array_equal(currents, [(count // 2) * 1e-6, count * 1e-6])


def test_applied_pulses_are_written_without_a_read():
    run = RUN.format(delay="0.0001", rest="0.0")
    message = f"{HEAD};:SOUR:LIST:VOLT 0.0,1.2,0.0,1.2;{run}"
    with smu([(message, None)]) as inst:
        inst.smu.apply_pulses(1.2, 1e-4, 0.0, 1e-4, 2)


# what a sweep or a pulse train changes is put back


def test_a_sweep_puts_back_the_level_it_found():
    # The 2450 ends a sweep at its last level; the output must not come on
    # there later.
    message = sweep_message("0.1,0.8", "0.0", 2, rest="0.25")
    pairs = [(":SOUR:VOLT?", "2.500000E-01"), (message, "1.0E-06,8.0E-06")]
    with smu(pairs) as inst:
        inst.smu.sweep_voltage([0.1, 0.8], 0.0)


@pytest.mark.parametrize("method", ["pulse_train", "apply_pulses"])
def test_pulses_leave_the_bias_level_not_the_pulse_level(method):
    message = sweep_message("0.05,1.5", "0.001", 2, rest="0.05")
    if method == "apply_pulses":
        message = message.rsplit(";", 1)[0]
    reply = "1.0E-07,1.0E-04" if method == "pulse_train" else None
    with smu([(message, reply)]) as inst:
        getattr(inst.smu, method)(1.5, 1e-3, 0.05, 1e-3, 1)


# the current limit and a fixed current range


def test_a_limit_below_a_tenth_of_a_percent_of_the_fixed_range_raises():
    pairs = [(":SENS:CURR:RANG:AUTO?;:SENS:CURR:RANG?", "0;1.000000E-03")]
    with smu(pairs) as inst:
        with pytest.raises(ValueError) as error:
            inst.smu.current_limit = 5e-7
    assert str(error.value) == (
        "5e-07 A is below the 1e-06 A limit of smu1.smu :SOUR:VOLT:ILIM "
        "for the fixed 0.001 A current range (0.1% of it)"
    )


@pytest.mark.parametrize(
    "state, limit, command",
    [("0;1.000000E-03", 1e-6, ":SOUR:VOLT:ILIM 1e-06"),
     ("0;1.000000E-04", 1e-7, ":SOUR:VOLT:ILIM 1e-07"),
     ("1;1.000000E+00", 1e-9, ":SOUR:VOLT:ILIM 1e-09")],
)  # fmt: skip
def test_a_limit_of_a_tenth_of_a_percent_or_under_autorange_is_sent(
    state, limit, command
):
    pairs = [(":SENS:CURR:RANG:AUTO?;:SENS:CURR:RANG?", state), (command, None)]
    with smu(pairs) as inst:
        inst.smu.current_limit = limit


@pytest.mark.parametrize(
    "value, selected, lowest",
    [(1.0, "1", "0.001"), (0.2, "1", "0.001"), (1.1e-3, "0.01", "1e-05")],
)
def test_a_range_the_present_limit_is_too_low_for_raises(value, selected, lowest):
    with smu([(":SOUR:VOLT:ILIM?", "1.050000E-06")]) as inst:
        with pytest.raises(ValueError) as error:
            inst.smu.current_range = value
    assert str(error.value) == (
        f"1.05e-06 A is below the {lowest} A limit of smu1.smu :SOUR:VOLT:ILIM "
        f"for a fixed {selected} A current range (0.1% of it)"
    )


def test_a_range_within_its_headroom_keeps_the_lower_range():
    # 1.02 mA is held by the 1 mA range (up to 105 %): a 1 uA limit is enough.
    pairs = [(":SOUR:VOLT:ILIM?", "1.000000E-06"), (":SENS:CURR:RANG 0.00102", None)]
    with smu(pairs) as inst:
        inst.smu.current_range = 1.02e-3


def test_an_unreadable_range_state_raises():
    pairs = [(":SENS:CURR:RANG:AUTO?;:SENS:CURR:RANG?", "1.000000E-04")]
    with smu(pairs) as inst:
        with pytest.raises(ValueError, match="autorange state and the current range"):
            inst.smu.current_limit = 1e-3


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"level_v": 211.0}, "211 V is above the 210 V limit"),
        ({"bias_v": -211.0}, "-211 V is below the -210 V limit"),
        ({"width_s": 0.0}, "pulse width must be above 0 s"),
        ({"width_s": 1e-5}, "1e-05 s is below the 5e-05 s limit of pulse width"),
        ({"width_s": -1e-3}, "below the 0 s limit of pulse width"),
        ({"off_s": -1.0}, "below the 0 s limit of off time"),
        ({"count": 0}, "pulse count 0"),
        ({"count": 2.5}, "pulse count 2.5"),
        ({"count": True}, "pulse count True"),
        ({"count": 1251}, "2502 points is above the 2500 points limit"),
        ({"width_s": 5e-5, "off_s": 1e4}, "200000001 points is above the 2500"),
    ],
)
@pytest.mark.parametrize("method", ["pulse_train", "apply_pulses"])
def test_pulses_are_checked_before_sending(method, kwargs, error):
    arguments = {"level_v": 1.0, "width_s": 1e-3, "bias_v": 0.0, "off_s": 1e-3}
    arguments["count"] = 1
    arguments.update(kwargs)
    with smu([]) as inst:
        with pytest.raises(ValueError, match=error):
            getattr(inst.smu, method)(**arguments)


# identity, errors, reset, shutdown


def test_identity_from_idn():
    with smu([("*IDN?", IDN), ("*IDN?", IDN)]) as inst:
        assert inst.id == IDN
        assert inst.identity() == {
            "manufacturer": "KEITHLEY INSTRUMENTS",
            "model": "2450",
            "serial": "04365704",
            "firmware": "1.6.4c",
        }


def test_identity_rejects_an_odd_reply():
    with smu([("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450")]) as inst:
        with pytest.raises(ValueError, match="unexpected"):
            inst.identity()


def test_error_queue_is_read_to_its_empty_entry(caplog):
    pairs = [
        (":SYST:ERR?", '-113,"Undefined header;1;2024/05/01 10:00:00.000"'),
        (":SYST:ERR?", '-222,"Data out of range;1;2024/05/01 10:00:01.000"'),
        (":SYST:ERR?", '0,"No error;0;0 0"'),
    ]
    with smu(pairs) as inst:
        with caplog.at_level(logging.ERROR, logger="drivers.scpi"):
            errors = inst.check_errors()
    assert errors == [
        ScpiError(-113, "Undefined header;1;2024/05/01 10:00:00.000"),
        ScpiError(-222, "Data out of range;1;2024/05/01 10:00:01.000"),
    ]
    assert "smu1: error -113" in caplog.text


def test_empty_error_queue():
    with smu([(":SYST:ERR?", '0,"No error;0;0 0"')]) as inst:
        assert inst.check_errors() == []


@pytest.mark.parametrize("garbage", ["", "garbage", "-113", "1.0E-06,2.0E-06"])
def test_error_queue_draining_ends_at_a_reply_that_does_not_parse(garbage, caplog):
    pairs = [(":SYST:ERR?", '-113,"Undefined header;1;0 0"'), (":SYST:ERR?", garbage)]
    with smu(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert len(inst.check_errors()) == 1
    assert "unreadable error queue entry" in caplog.text


def test_error_queue_draining_ends_when_errors_never_stop(caplog):
    pairs = [(":SYST:ERR?", '-350,"Queue overflow;1;0 0"')] * ERROR_DRAIN_LIMIT
    with smu(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert len(inst.check_errors()) == ERROR_DRAIN_LIMIT
    assert f"stopped reading the error queue after {ERROR_DRAIN_LIMIT}" in caplog.text


def test_reset_and_clear():
    with smu([("*RST", None), ("*CLS", None)]) as inst:
        inst.reset()
        inst.clear()


def test_turn_off_stops_a_sweep_and_the_output():
    with smu([(":ABOR;:OUTP OFF", None)]) as inst:
        inst.smu.turn_off()


def test_shutdown_turns_the_output_off():
    with smu([(":ABOR;:OUTP OFF", None)]) as inst:
        inst.shutdown()
        assert inst.isShutdown


def test_leaving_a_with_block_shuts_down():
    pairs = [(":OUTP ON", None), (":ABOR;:OUTP OFF", None)]
    with smu(pairs) as inst:
        with pytest.raises(RuntimeError):
            with inst:
                inst.smu.output_enabled = True
                raise RuntimeError("procedure failed")


class FailingAdapter:
    """Refuses every message."""

    def write(self, message):
        raise OSError("bus error")


def test_shutdown_reports_a_failure():
    inst = Keithley2450(FailingAdapter())
    with pytest.raises(OSError, match="bus error"):
        inst.shutdown()
