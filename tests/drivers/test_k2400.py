"""Protocol tests of the Keithley 2400 driver: exact messages and replies."""

import logging
import math

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from drivers.interfaces import SourceMeasureChannel
from drivers.k2400 import RATINGS, Keithley2400, Keithley2400Channel
from drivers.scpi import ERROR_DRAIN_LIMIT, ScpiError
from tests.drivers.fakes import MutedAdapter

IDN = (
    "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1248014,C30   Mar 17 2006 09:29:29/A02  /K/J"
)

HEAD = ':SOUR:FUNC VOLT;:SENS:FUNC "CURR";:FORM:ELEM CURR;:SOUR:VOLT:MODE LIST'
END = ":OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1;:SOUR:DEL:AUTO ON"


def smu(pairs):
    return expected_protocol(Keithley2400, pairs, name="smu2")


def list_setup(values, delay, count):
    return (
        f"{HEAD};:SOUR:LIST:VOLT {values};:SOUR:DEL {delay};:ARM:COUN 1;"
        f":TRIG:COUN {count};:OUTP ON"
    )


def sweep_pairs(values, delay, count, reply):
    return [(f"{list_setup(values, delay, count)};:READ?", reply), (END, None)]


# properties: get


GETS = [
    ("source_function", ":SOUR:FUNC?", "VOLT", "voltage"),
    ("source_function", ":SOUR:FUNC?", "CURR", "current"),
    ("source_voltage", ":SOUR:VOLT?", "+5.000000E-01", 0.5),
    ("source_current", ":SOUR:CURR?", "-1.000000E-06", -1e-6),
    ("current_limit", ":SENS:CURR:PROT?", "+1.050000E-04", 1.05e-4),
    ("voltage_limit", ":SENS:VOLT:PROT?", "+2.100000E+01", 21.0),
    ("nplc", ":SENS:CURR:NPLC?", "+1.000000E+00", 1.0),
    ("current_range", ":SENS:CURR:RANG?", "+1.050000E-04", 1.05e-4),
    ("current_autorange", ":SENS:CURR:RANG:AUTO?", "1", True),
    ("current_autorange", ":SENS:CURR:RANG:AUTO?", "0", False),
    ("four_wire", ":SYST:RSEN?", "1", True),
    ("four_wire", ":SYST:RSEN?", "0", False),
    ("output_enabled", ":OUTP?", "1", True),
    ("output_enabled", ":OUTP?", "0", False),
    ("compliance", ":SENS:CURR:PROT:TRIP?", "1", True),
    ("compliance", ":SENS:CURR:PROT:TRIP?", "0", False),
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
        ("current_limit", ":SENS:CURR:PROT?", "", "expected a number"),
        ("source_voltage", ":SOUR:VOLT?", "+1.0E-01,+1.0E-06", "expected a number"),
        ("four_wire", ":SYST:RSEN?", "ON", "expected 0 or 1"),
        ("source_function", ":SOUR:FUNC?", "MEM", "unknown source function"),
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
    ("source_voltage", 210, ":SOUR:VOLT 210.0"),
    ("source_voltage", -1e-7, ":SOUR:VOLT -1e-07"),
    ("source_current", 1e-7, ":SOUR:CURR 1e-07"),
    ("source_current", 1.05, ":SOUR:CURR 1.05"),
    ("current_limit", 1e-7, ":SENS:CURR:PROT 1e-07"),
    ("current_limit", 1e-9, ":SENS:CURR:PROT 1e-09"),
    ("current_limit", 1.05, ":SENS:CURR:PROT 1.05"),
    ("voltage_limit", 2e-4, ":SENS:VOLT:PROT 0.0002"),
    ("voltage_limit", 21, ":SENS:VOLT:PROT 21.0"),
    ("nplc", 0.01, ":SENS:CURR:NPLC 0.01"),
    ("nplc", 10, ":SENS:CURR:NPLC 10.0"),
    ("current_range", 1e-6, ":SENS:CURR:RANG 1e-06"),
    ("current_range", 1.05, ":SENS:CURR:RANG 1.05"),
    ("current_autorange", True, ":SENS:CURR:RANG:AUTO ON"),
    ("current_autorange", False, ":SENS:CURR:RANG:AUTO OFF"),
    ("four_wire", True, ":SYST:RSEN ON"),
    ("four_wire", False, ":SYST:RSEN OFF"),
    ("output_enabled", True, ":OUTP ON"),
    ("output_enabled", False, ":OUTP OFF"),
]


@pytest.mark.parametrize("prop, value, command", SETS)
def test_set(prop, value, command):
    with smu([(command, None)]) as inst:
        setattr(inst.smu, prop, value)


def test_compliance_cannot_be_set():
    with smu([]) as inst:
        with pytest.raises(LookupError):
            inst.smu.compliance = False


# properties: out of range raises, names the limit, sends nothing


OUT_OF_RANGE = [
    ("current_limit", 1.1, "1.1 A is above the 1.05 A", ":SENS:CURR:PROT"),
    ("current_limit", 0, "0 A is below the 1e-09 A", ":SENS:CURR:PROT"),
    ("source_voltage", 210.001, "210.001 V is above the 210 V", ":SOUR:VOLT"),
    ("source_voltage", -300, "-300 V is below the -210 V", ":SOUR:VOLT"),
    ("source_current", -1.06, "-1.06 A is below the -1.05 A", ":SOUR:CURR"),
    ("voltage_limit", 1e-4, "0.0001 V is below the 0.0002 V", ":SENS:VOLT:PROT"),
    ("voltage_limit", 250, "250 V is above the 210 V", ":SENS:VOLT:PROT"),
    ("nplc", 0.001, "0.001 PLC is below the 0.01 PLC", ":SENS:CURR:NPLC"),
    ("nplc", 10.5, "10.5 PLC is above the 10 PLC", ":SENS:CURR:NPLC"),
    ("current_range", 1e-7, "1e-07 A is below the 1e-06 A", ":SENS:CURR:RANG"),
    ("current_range", 2, "2 A is above the 1.05 A", ":SENS:CURR:RANG"),
]


@pytest.mark.parametrize("prop, value, crossed, header", OUT_OF_RANGE)
def test_out_of_range_raises_naming_the_limit(prop, value, crossed, header):
    with smu([]) as inst:
        with pytest.raises(ValueError) as error:
            setattr(inst.smu, prop, value)
        assert str(error.value) == f"{crossed} limit of smu2.smu {header}"


@pytest.mark.parametrize(
    "prop, value",
    [
        ("source_voltage", float("-inf")),
        ("nplc", float("nan")),
        ("source_function", "VOLT"),
        ("output_enabled", "OFF"),
    ],
)
def test_invalid_values_send_nothing(prop, value):
    with smu([]) as inst:
        with pytest.raises(ValueError):
            setattr(inst.smu, prop, value)


def test_non_numbers_send_nothing():
    with smu([]) as inst:
        with pytest.raises(TypeError):
            inst.smu.current_limit = True


def test_channel_limits_follow_the_model():
    with smu([]) as inst:
        limits = inst.smu.limits
        assert (limits["current_limit"].low, limits["current_limit"].high) == (
            1e-9,
            1.05,
        )
        assert (limits["current_range"].low, limits["current_range"].high) == (
            1e-6,
            1.05,
        )
        assert limits["source_voltage"].name == "smu2.smu :SOUR:VOLT"
        assert inst.ratings is RATINGS["2400"]


# the instrument and its channel


def test_one_channel_named_after_the_instrument():
    with smu([]) as inst:
        assert list(inst.channels) == ["smu"]
        assert isinstance(inst.smu, Keithley2400Channel)
        assert inst.smu.name == "smu2.smu"


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown 2400 model '2410'"):
        Keithley2400(None, model="2410")


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
        doc = getattr(Keithley2400Channel, prop).__doc__
        assert doc.split()[0] in ("Control", "Measure"), prop
        assert "(dynamic)" not in doc


# measurements and overflow


def test_measure_current_asks_for_the_current_element_only():
    with smu([(":FORM:ELEM CURR;:READ?", "-1.234500E-09")]) as inst:
        assert inst.smu.measure_current() == -1.2345e-09


@pytest.mark.parametrize(
    "reply", ["+9.9e37", "9.91e37", "9.9E37", "-9.9e37", "+9.910000E+37"]
)
def test_overflow_reading_is_nan_with_a_warning(reply, caplog):
    with smu([(":FORM:ELEM CURR;:READ?", reply)]) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert math.isnan(inst.smu.measure_current())
    assert "smu2.smu: 1 of 1 readings overflowed" in caplog.text


def test_a_five_element_reply_is_refused():
    reply = "+1.0E-01,+1.0E-06,+9.91E+37,+1.2E+01,+1.9E+04"
    with smu([(":FORM:ELEM CURR;:READ?", reply)]) as inst:
        with pytest.raises(ValueError, match="expected 1 reading, got 5"):
            inst.smu.measure_current()


# sweeps


def test_sweep_voltage_reads_the_list_then_ends_it():
    pairs = sweep_pairs(
        "0.1,0.2,-1e-07,1.23456789",
        "0.001",
        4,
        "+1.000000E-06,+2.000000E-06,-1.000000E-12,+1.234570E-05",
    )
    with smu(pairs) as inst:
        currents = inst.smu.sweep_voltage([0.1, 0.2, -1e-7, 1.23456789], 0.001)
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, -1e-12, 1.23457e-05])
        assert currents.dtype == np.float64


def test_long_sweep_appends_the_list_in_groups_of_100():
    levels = [-1.0] * 100 + [1.0] * 100 + [0.5] * 5
    lists = (
        ",".join(["-1.0"] * 100)
        + ";:SOUR:LIST:VOLT:APP "
        + ",".join(["1.0"] * 100)
        + ";:SOUR:LIST:VOLT:APP "
        + ",".join(["0.5"] * 5)
    )
    pairs = sweep_pairs(lists, "0.0", 205, ",".join(["1.0E-09"] * 205))
    with smu(pairs) as inst:
        assert inst.smu.sweep_voltage(levels, 0).shape == (205,)


def test_sweep_overflow_points_are_nan_with_a_warning(caplog):
    pairs = sweep_pairs("1.0,2.0", "0.01", 2, "+9.9E37,+1.0E-03")
    with smu(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            currents = inst.smu.sweep_voltage([1.0, 2.0], 0.01)
    assert math.isnan(currents[0])
    assert currents[1] == 1e-3
    assert "smu2.smu: 1 of 2 readings overflowed (+9.9E37)" in caplog.text


@pytest.mark.parametrize("reply, got", [("+1.0E-06", 1), ("1.0,2.0,3.0", 3)])
def test_sweep_with_another_count_of_readings_raises(reply, got):
    pairs = sweep_pairs("0.1,0.2", "0.0", 2, reply)
    with smu(pairs) as inst:
        with pytest.raises(ValueError, match=f"expected 2 readings, got {got}"):
            inst.smu.sweep_voltage([0.1, 0.2], 0)


def test_sweep_ends_the_list_even_when_the_read_fails():
    adapter = MutedAdapter()
    inst = Keithley2400(adapter, name="smu2")
    with pytest.raises(TimeoutError):
        inst.smu.sweep_voltage([0.1], 0)
    assert adapter.sent == [f"{list_setup('0.1', '0.0', 1)};:READ?", END]


@pytest.mark.parametrize(
    "levels, settle, error",
    [
        ([0.1, -211.0], 0.001, "-211 V is below the -210 V limit of smu2.smu"),
        ([], 0.001, "at least one level"),
        ([0.1], -0.001, "-0.001 s is below the 0 s limit of settle time of smu2.smu"),
        ([0.1], 1000, "1000 s is above the 999.9999 s limit of settle time"),
        ([0.0] * 2501, 0.0, "2501 points is above the 2500 points limit"),
    ],
)
def test_sweep_checks_before_sending(levels, settle, error):
    with smu([]) as inst:
        with pytest.raises(ValueError, match=error):
            inst.smu.sweep_voltage(levels, settle)


# pulse trains, emulated by a list sweep


def test_pulse_train_is_one_list_sweep_read_at_each_pulse_end():
    pairs = sweep_pairs(
        "0.2,0.2,0.2,2.0,0.2,0.2,0.2,2.0",
        "0.0005",
        8,
        "0,0,0,+1.0E-05,0,0,0,+2.0E-05",
    )
    with smu(pairs) as inst:
        currents = inst.smu.pulse_train(
            level_v=2.0, width_s=5e-4, bias_v=0.2, off_s=1.5e-3, count=2
        )
        np.testing.assert_array_equal(currents, [1e-5, 2e-5])


def test_pulses_without_off_time_are_back_to_back_points():
    pairs = sweep_pairs("1.0,1.0,1.0", "1e-05", 3, "1.0E-06,2.0E-06,3.0E-06")
    with smu(pairs) as inst:
        currents = inst.smu.pulse_train(1.0, 1e-5, 0.0, 0.0, 3)
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, 3e-6])


def test_applied_pulses_are_one_message_without_a_read():
    message = f"{list_setup('0.0,1.2,0.0,1.2', '1e-05', 4)};:INIT;*WAI;{END}"
    with smu([(message, None)]) as inst:
        inst.smu.apply_pulses(1.2, 1e-5, 0.0, 1e-5, 2)


# what a sweep or a pulse train changes is put back


def test_a_pulse_train_puts_the_source_delay_back_to_automatic():
    # The pulse width is the source delay of every list point; afterwards the
    # 2400 must not wait it before each reading.
    setup = list_setup("0.0,1.5,0.0,1.5", "0.002", 4)
    pairs = [
        (f"{setup};:READ?", "0,+1.0E-05,0,+2.0E-05"),
        (":OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1;:SOUR:DEL:AUTO ON", None),
    ]
    with smu(pairs) as inst:
        inst.smu.pulse_train(1.5, 2e-3, 0.0, 2e-3, 2)


def test_applied_pulses_put_the_source_delay_back_to_automatic():
    setup = list_setup("0.0,1.5", "0.002", 2)
    message = (
        f"{setup};:INIT;*WAI;"
        ":OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1;:SOUR:DEL:AUTO ON"
    )
    with smu([(message, None)]) as inst:
        inst.smu.apply_pulses(1.5, 2e-3, 0.0, 2e-3, 1)


def test_a_sweep_puts_the_source_delay_back_to_automatic():
    pairs = [
        (f"{list_setup('0.1,0.2', '0.05', 2)};:READ?", "+1.0E-06,+2.0E-06"),
        (":OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1;:SOUR:DEL:AUTO ON", None),
    ]
    with smu(pairs) as inst:
        inst.smu.sweep_voltage([0.1, 0.2], 0.05)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"level_v": 211.0}, "211 V is above the 210 V limit"),
        ({"bias_v": -211.0}, "-211 V is below the -210 V limit"),
        ({"width_s": 0.0}, "pulse width must be above 0 s"),
        ({"width_s": 1000.0}, "above the 999.9999 s limit of pulse width"),
        ({"off_s": -1e-3}, "below the 0 s limit of off time"),
        ({"count": 0}, "pulse count 0"),
        ({"count": "3"}, "pulse count '3'"),
        ({"count": 2501}, "2501 points is above the 2500 points limit"),
        ({"off_s": 9e-3, "count": 300}, "3000 points is above the 2500 points"),
    ],
)
@pytest.mark.parametrize("method", ["pulse_train", "apply_pulses"])
def test_pulses_are_checked_before_sending(method, kwargs, error):
    arguments = {"level_v": 1.0, "width_s": 1e-3, "bias_v": 0.0, "off_s": 0.0}
    arguments["count"] = 1
    arguments.update(kwargs)
    with smu([]) as inst:
        with pytest.raises(ValueError, match=error):
            getattr(inst.smu, method)(**arguments)


# identity, errors, reset, shutdown


def test_identity_from_idn():
    with smu([("*IDN?", IDN)]) as inst:
        assert inst.identity() == {
            "manufacturer": "KEITHLEY INSTRUMENTS INC.",
            "model": "2400",
            "serial": "1248014",
            "firmware": "C30   Mar 17 2006 09:29:29/A02  /K/J",
        }


def test_error_queue_is_read_to_its_empty_entry():
    pairs = [
        (":SYST:ERR?", '+803,"Not permitted with OUTPUT off"'),
        (":SYST:ERR?", '-113,"Undefined header"'),
        (":SYST:ERR?", '0,"No error"'),
    ]
    with smu(pairs) as inst:
        assert inst.check_errors() == [
            ScpiError(803, "Not permitted with OUTPUT off"),
            ScpiError(-113, "Undefined header"),
        ]


@pytest.mark.parametrize("garbage", ["", "+1.000000E-06", '"No error"'])
def test_error_queue_draining_ends_at_a_reply_that_does_not_parse(garbage, caplog):
    with smu([(":SYST:ERR?", garbage)]) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert inst.check_errors() == []
    assert "smu2: unreadable error queue entry" in caplog.text


def test_error_queue_draining_ends_when_errors_never_stop(caplog):
    pairs = [(":SYST:ERR?", '-350,"Queue overflow"')] * ERROR_DRAIN_LIMIT
    with smu(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert len(inst.check_errors()) == ERROR_DRAIN_LIMIT
    assert "stopped reading the error queue" in caplog.text


def test_reset():
    with smu([("*RST", None)]) as inst:
        inst.reset()


def test_turn_off_stops_a_sweep_and_the_output():
    with smu([(":ABOR;:OUTP OFF", None)]) as inst:
        inst.smu.turn_off()


def test_shutdown_turns_the_output_off():
    with smu([(":ABOR;:OUTP OFF", None)]) as inst:
        inst.shutdown()
        assert inst.isShutdown


def test_leaving_a_with_block_shuts_down():
    pairs = [(":SOUR:VOLT 0.5", None), (":ABOR;:OUTP OFF", None)]
    with smu(pairs) as inst:
        with pytest.raises(KeyboardInterrupt):
            with inst:
                inst.smu.source_voltage = 0.5
                raise KeyboardInterrupt
