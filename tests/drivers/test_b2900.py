"""Protocol tests of the Keysight B2900 driver: exact messages and replies."""

import logging
import math

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from drivers.b2900 import RATINGS, KeysightB2900, KeysightB2900Channel
from drivers.interfaces import SourceMeasureChannel
from drivers.scpi import ERROR_DRAIN_LIMIT, ScpiError
from tests.drivers.fakes import MutedAdapter

IDN = "Keysight Technologies,B2902A,MY51143745,3.4.2011.5100"

CHANNELS = [("ch1", "1"), ("ch2", "2")]
CHANNEL_IDS = ["ch1", "ch2"]


def b2900(pairs, model="B2902A"):
    return expected_protocol(KeysightB2900, pairs, name="smu3", model=model)


def fill(template, number):
    return template.replace("{ch}", number)


def sweep_message(values, settle, count, number):
    return fill(
        ':SOUR{ch}:FUNC:MODE VOLT;:SOUR{ch}:FUNC:SHAP DC;:SENS{ch}:FUNC "CURR";'
        f":SOUR{{ch}}:VOLT:MODE LIST;:SOUR{{ch}}:LIST:VOLT {values};"
        f":TRIG{{ch}}:SOUR AINT;:TRIG{{ch}}:COUN {count};:TRIG{{ch}}:TRAN:DEL 0;"
        f":TRIG{{ch}}:ACQ:DEL {settle};"
        ":OUTP{ch} ON;:INIT (@{ch});*WAI;:OUTP{ch} OFF;:FETC:ARR:CURR? (@{ch})",
        number,
    )


def rest(number, bias=None):
    """What a sweep (or, with its bias, a pulse train) puts back at its end."""
    message = fill(
        ":SOUR{ch}:FUNC:SHAP DC;:SOUR{ch}:VOLT:MODE FIX;:TRIG{ch}:COUN 1;"
        ":TRIG{ch}:ACQ:DEL 0",
        number,
    )
    return message if bias is None else f"{message};:SOUR{number}:VOLT:TRIG {bias}"


def sweep_pairs(values, settle, count, number, reply):
    return [(sweep_message(values, settle, count, number), reply), (rest(number), None)]


def pulse_commands(bias, level, off, width, count, acquire, number):
    return fill(
        ':SOUR{ch}:FUNC:MODE VOLT;:SENS{ch}:FUNC "CURR";:SOUR{ch}:FUNC:SHAP PULS;'
        f":SOUR{{ch}}:VOLT:MODE FIX;:SOUR{{ch}}:VOLT {bias};"
        f":SOUR{{ch}}:VOLT:TRIG {level};:SOUR{{ch}}:PULS:DEL {off};"
        f":SOUR{{ch}}:PULS:WIDT {width};:TRIG{{ch}}:SOUR AINT;"
        f":TRIG{{ch}}:COUN {count};:TRIG{{ch}}:TRAN:DEL 0;"
        f":TRIG{{ch}}:ACQ:DEL {acquire};"
        ":OUTP{ch} ON;:INIT (@{ch});*WAI;:OUTP{ch} OFF",
        number,
    )


# properties: get


GETS = [
    ("source_function", ":SOUR{ch}:FUNC:MODE?", "VOLT", "voltage"),
    ("source_function", ":SOUR{ch}:FUNC:MODE?", "CURR", "current"),
    ("source_voltage", ":SOUR{ch}:VOLT?", "+5.000000E-01", 0.5),
    ("source_current", ":SOUR{ch}:CURR?", "-1.000000E-06", -1e-6),
    ("current_limit", ":SENS{ch}:CURR:PROT?", "+1.000000E-04", 1e-4),
    ("voltage_limit", ":SENS{ch}:VOLT:PROT?", "+2.000000E+00", 2.0),
    ("nplc", ":SENS{ch}:CURR:NPLC?", "+1.000000E+00", 1.0),
    ("current_range", ":SENS{ch}:CURR:RANG?", "+1.000000E-06", 1e-6),
    ("current_autorange", ":SENS{ch}:CURR:RANG:AUTO?", "1", True),
    ("current_autorange", ":SENS{ch}:CURR:RANG:AUTO?", "0", False),
    ("four_wire", ":SENS{ch}:REM?", "1", True),
    ("four_wire", ":SENS{ch}:REM?", "0", False),
    ("output_enabled", ":OUTP{ch}?", "1", True),
    ("output_enabled", ":OUTP{ch}?", "0", False),
    ("compliance", ":SENS{ch}:CURR:PROT:TRIP?", "1", True),
    ("compliance", ":SENS{ch}:CURR:PROT:TRIP?", "0", False),
]


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
@pytest.mark.parametrize("prop, query, reply, value", GETS)
def test_get(channel, number, prop, query, reply, value):
    with b2900([(fill(query, number), reply)]) as inst:
        got = getattr(getattr(inst, channel), prop)
        assert got == value
        assert type(got) is type(value)


@pytest.mark.parametrize(
    "prop, query, reply, error",
    [
        ("nplc", ":SENS1:CURR:NPLC?", "+1.0E+00,+2.0E+00", "expected a number"),
        ("output_enabled", ":OUTP1?", "", "expected 0 or 1"),
        ("source_function", ":SOUR1:FUNC:MODE?", "RES", "unknown source function"),
    ],
)
def test_get_rejects_a_reply_it_cannot_read(prop, query, reply, error):
    with b2900([(query, reply)]) as inst:
        with pytest.raises(ValueError, match=error):
            getattr(inst.ch1, prop)


# properties: set, with every digit on the wire


SETS = [
    ("source_function", "voltage", ":SOUR{ch}:FUNC:MODE VOLT"),
    ("source_function", "current", ":SOUR{ch}:FUNC:MODE CURR"),
    ("source_voltage", 1.23456789, ":SOUR{ch}:VOLT 1.23456789"),
    ("source_voltage", -210, ":SOUR{ch}:VOLT -210.0"),
    ("source_voltage", 1e-7, ":SOUR{ch}:VOLT 1e-07"),
    ("source_current", 1e-7, ":SOUR{ch}:CURR 1e-07"),
    ("source_current", 3.03, ":SOUR{ch}:CURR 3.03"),
    ("current_limit", 1e-7, ":SENS{ch}:CURR:PROT 1e-07"),
    ("current_limit", 1e-9, ":SENS{ch}:CURR:PROT 1e-09"),
    ("current_limit", 3.03, ":SENS{ch}:CURR:PROT 3.03"),
    ("voltage_limit", 0.02, ":SENS{ch}:VOLT:PROT 0.02"),
    ("voltage_limit", 210, ":SENS{ch}:VOLT:PROT 210.0"),
    ("nplc", 4.8e-4, ":SENS{ch}:CURR:NPLC 0.00048"),
    ("nplc", 100, ":SENS{ch}:CURR:NPLC 100.0"),
    ("current_range", 1e-7, ":SENS{ch}:CURR:RANG 1e-07"),
    ("current_range", 3, ":SENS{ch}:CURR:RANG 3.0"),
    ("current_autorange", True, ":SENS{ch}:CURR:RANG:AUTO ON"),
    ("current_autorange", False, ":SENS{ch}:CURR:RANG:AUTO OFF"),
    ("four_wire", True, ":SENS{ch}:REM ON"),
    ("four_wire", False, ":SENS{ch}:REM OFF"),
    ("output_enabled", True, ":OUTP{ch} ON"),
    ("output_enabled", False, ":OUTP{ch} OFF"),
]


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
@pytest.mark.parametrize("prop, value, command", SETS)
def test_set(channel, number, prop, value, command):
    with b2900([(fill(command, number), None)]) as inst:
        setattr(getattr(inst, channel), prop, value)


def test_compliance_cannot_be_set():
    with b2900([]) as inst:
        with pytest.raises(LookupError):
            inst.ch2.compliance = True


# properties: out of range raises, names the limit, sends nothing


HEADERS = {
    "current_limit": ":SENS{ch}:CURR:PROT",
    "source_voltage": ":SOUR{ch}:VOLT",
    "source_current": ":SOUR{ch}:CURR",
    "voltage_limit": ":SENS{ch}:VOLT:PROT",
    "nplc": ":SENS{ch}:CURR:NPLC",
    "current_range": ":SENS{ch}:CURR:RANG",
}

OUT_OF_RANGE = [
    ("B2902A", "current_limit", 3.1, "3.1 A is above the 3.03 A"),
    ("B2912A", "current_limit", 1e-10, "1e-10 A is below the 1e-09 A"),
    ("B2902A", "source_voltage", 210.5, "210.5 V is above the 210 V"),
    ("B2912A", "source_voltage", -211, "-211 V is below the -210 V"),
    ("B2902A", "source_current", -10.5, "-10.5 A is below the -3.03 A"),
    ("B2902A", "voltage_limit", 0.01, "0.01 V is below the 0.02 V"),
    ("B2902A", "nplc", 1e-4, "0.0001 PLC is below the 0.00048 PLC"),
    ("B2912A", "nplc", 120, "120 PLC is above the 100 PLC"),
    ("B2902A", "current_range", 1e-8, "1e-08 A is below the 1e-07 A"),
    ("B2912A", "current_range", 1e-9, "1e-09 A is below the 1e-08 A"),
    ("B2912A", "current_range", 3.03, "3.03 A is above the 3 A"),
]


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
@pytest.mark.parametrize("model, prop, value, crossed", OUT_OF_RANGE)
def test_out_of_range_raises_naming_the_limit(
    channel, number, model, prop, value, crossed
):
    header = HEADERS[prop]
    with b2900([], model=model) as inst:
        with pytest.raises(ValueError) as error:
            setattr(getattr(inst, channel), prop, value)
        expected = f"{crossed} limit of smu3.{channel} {fill(header, number)}"
        assert str(error.value) == expected


def test_the_lowest_range_of_the_b2912a_is_sent():
    with b2900([(":SENS2:CURR:RANG 1e-08", None)], model="B2912A") as inst:
        inst.ch2.current_range = 1e-8


@pytest.mark.parametrize(
    "prop, value",
    [
        ("source_voltage", float("nan")),
        ("current_limit", float("inf")),
        ("source_function", "pulse"),
        ("four_wire", "yes"),
    ],
)
def test_invalid_values_send_nothing(prop, value):
    with b2900([]) as inst:
        with pytest.raises(ValueError):
            setattr(inst.ch1, prop, value)


def test_non_numbers_send_nothing():
    with b2900([]) as inst:
        with pytest.raises(TypeError):
            inst.ch2.source_voltage = "1"


# models and channels


def test_single_channel_model_has_only_ch1():
    with b2900([], model="B2901A") as inst:
        assert list(inst.channels) == [1]
        assert isinstance(inst.ch1, KeysightB2900Channel)
        with pytest.raises(AttributeError, match="ch2"):
            _ = inst.ch2


@pytest.mark.parametrize("model", ["B2902A", "B2912A"])
def test_dual_channel_models(model):
    with b2900([], model=model) as inst:
        assert list(inst.channels) == [1, 2]
        assert inst.ratings is RATINGS[model]
        assert inst.ch1.name == "smu3.ch1"
        assert inst.ch2.name == "smu3.ch2"


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown B2900 model 'B2961A'"):
        KeysightB2900(None, model="B2961A")


def test_channels_satisfy_the_source_measure_interface_without_talking():
    with b2900([]) as inst:
        assert isinstance(inst.ch1, SourceMeasureChannel)
        assert isinstance(inst.ch2, SourceMeasureChannel)


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
        doc = getattr(KeysightB2900Channel, prop).__doc__
        assert doc.split()[0] in ("Control", "Measure"), prop
        assert "(dynamic)" not in doc


# measurements and overflow


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
def test_measure_current(channel, number):
    with b2900([(f":MEAS:CURR? (@{number})", "+1.234500E-06")]) as inst:
        assert getattr(inst, channel).measure_current() == 1.2345e-06


@pytest.mark.parametrize(
    "reply", ["+9.9e37", "9.91e37", "9.9E37", "-9.9e37", "+9.910000E+37"]
)
def test_overflow_reading_is_nan_with_a_warning(reply, caplog):
    with b2900([(":MEAS:CURR? (@2)", reply)]) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert math.isnan(inst.ch2.measure_current())
    assert "smu3.ch2: 1 of 1 readings overflowed" in caplog.text


# sweeps


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
def test_sweep_voltage_is_one_message(channel, number):
    reply = "+1.000000E-06,+2.000000E-06,-1.000000E-12,+1.234570E-05"
    pairs = sweep_pairs("0.1,0.2,-1e-07,1.23456789", "0.001", 4, number, reply)
    with b2900(pairs) as inst:
        currents = getattr(inst, channel).sweep_voltage(
            [0.1, 0.2, -1e-7, 1.23456789], 0.001
        )
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, -1e-12, 1.23457e-05])
        assert currents.dtype == np.float64


def test_a_full_list_is_one_command():
    levels = [0.001 * i for i in range(2500)]
    values = ",".join(repr(v) for v in levels)
    pairs = sweep_pairs(values, "0.0", 2500, "1", ",".join(["+1.0E-09"] * 2500))
    with b2900(pairs) as inst:
        assert inst.ch1.sweep_voltage(levels, 0).shape == (2500,)


def test_sweep_overflow_points_are_nan_with_a_warning(caplog):
    pairs = sweep_pairs("1.0,2.0", "0.0", 2, "1", "+1.0E-03,+9.910000E+37")
    with b2900(pairs) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            currents = inst.ch1.sweep_voltage([1.0, 2.0], 0)
    assert currents[0] == 1e-3
    assert math.isnan(currents[1])
    assert "smu3.ch1: 1 of 2 readings overflowed" in caplog.text


@pytest.mark.parametrize("reply, got", [("+1.0E-06", 1), ("1.0,2.0,3.0", 3)])
def test_sweep_with_another_count_of_readings_raises(reply, got):
    with b2900(sweep_pairs("0.1,0.2", "0.0", 2, "1", reply)) as inst:
        with pytest.raises(ValueError, match=f"expected 2 readings, got {got}"):
            inst.ch1.sweep_voltage([0.1, 0.2], 0)


@pytest.mark.parametrize(
    "levels, settle, error",
    [
        ([0.1, 211.0], 0.001, "211 V is above the 210 V limit of smu3.ch1 :SOUR1:VOLT"),
        ([], 0.001, "at least one level"),
        ([0.1], -0.001, "-0.001 s is below the 0 s limit of settle time of smu3.ch1"),
        ([0.1], 101, "101 s is above the 100 s limit of settle time"),
        ([0.0] * 2501, 0.0, "2501 points is above the 2500 points limit"),
    ],
)
def test_sweep_checks_before_sending(levels, settle, error):
    with b2900([]) as inst:
        with pytest.raises(ValueError, match=error):
            inst.ch1.sweep_voltage(levels, settle)


# pulse trains in the pulse mode


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
def test_pulse_train_measures_at_each_pulse_end(channel, number):
    acquire = repr(0.01 + 1e-3 - 1e-4)
    commands = pulse_commands("0.0", "1.5", "0.01", "0.001", 3, acquire, number)
    pairs = [
        (f":SENS{number}:CURR:APER?", "+1.000000E-04"),
        (f"{commands};:FETC:ARR:CURR? (@{number})", "+1.0E-04,+1.1E-04,+1.2E-04"),
        (rest(number, "0.0"), None),
    ]
    with b2900(pairs) as inst:
        currents = getattr(inst, channel).pulse_train(
            level_v=1.5, width_s=1e-3, bias_v=0, off_s=0.01, count=3
        )
        np.testing.assert_array_equal(currents, [1e-4, 1.1e-4, 1.2e-4])


def test_pulse_train_with_a_short_reply_raises_after_going_back_to_dc():
    acquire = repr(0.0 + 1e-4 - 5e-5)
    commands = pulse_commands("-0.2", "2.0", "0.0", "0.0001", 2, acquire, "1")
    pairs = [
        (":SENS1:CURR:APER?", "+5.000000E-05"),
        (f"{commands};:FETC:ARR:CURR? (@1)", "+1.0E-04"),
        (rest("1", "-0.2"), None),
    ]
    with b2900(pairs) as inst:
        with pytest.raises(ValueError, match="expected 2 readings, got 1"):
            inst.ch1.pulse_train(2.0, 1e-4, -0.2, 0.0, 2)


def test_pulse_train_goes_back_to_dc_even_when_the_read_fails():
    adapter = MutedAdapter(["+1.0E-04"])  # the aperture query, then silence
    inst = KeysightB2900(adapter, name="smu3")
    with pytest.raises(TimeoutError):
        inst.ch2.pulse_train(1.0, 1e-3, 0.0, 1e-3, 1)
    assert adapter.sent[-1] == rest("2", "0.0")
    assert len(adapter.sent) == 3


def test_a_sweep_puts_the_list_mode_back_even_when_the_read_fails():
    adapter = MutedAdapter()
    inst = KeysightB2900(adapter, name="smu3")
    with pytest.raises(TimeoutError):
        inst.ch1.sweep_voltage([0.1, 0.2], 0.01)
    assert adapter.sent == [sweep_message("0.1,0.2", "0.01", 2, "1"), rest("1")]


def test_an_aperture_longer_than_the_pulse_raises_before_pulsing():
    with b2900([(":SENS1:CURR:APER?", "+2.000000E-02")]) as inst:
        with pytest.raises(ValueError, match="0.02 s measurement aperture"):
            inst.ch1.pulse_train(1.0, 1e-3, 0.0, 1e-3, 5)


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
def test_applied_pulses_are_one_message_without_a_read(channel, number):
    commands = pulse_commands("0.0", "1.2", "0.0001", "5e-05", 4, "0.0001", number)
    message = f"{commands};{rest(number, '0.0')}"
    with b2900([(message, None)]) as inst:
        getattr(inst, channel).apply_pulses(1.2, 5e-5, 0.0, 1e-4, 4)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"level_v": 211.0}, "211 V is above the 210 V limit"),
        ({"bias_v": -211.0}, "-211 V is below the -210 V limit"),
        ({"width_s": 1e-5}, "1e-05 s is below the 5e-05 s limit of pulse width"),
        ({"width_s": 2e5}, "above the 100000 s limit of pulse width"),
        ({"off_s": -1.0}, "below the 0 s limit of off time"),
        ({"off_s": 101.0}, "above the 100 s limit of off time"),
        ({"count": 0}, "pulse count 0"),
        ({"count": 1.0}, "pulse count 1.0"),
        ({"count": 2501}, "2501 points is above the 2500 points limit"),
    ],
)
@pytest.mark.parametrize("method", ["pulse_train", "apply_pulses"])
def test_pulses_are_checked_before_sending(method, kwargs, error):
    arguments = {"level_v": 1.0, "width_s": 1e-3, "bias_v": 0.0, "off_s": 0.0}
    arguments["count"] = 1
    arguments.update(kwargs)
    with b2900([]) as inst:
        with pytest.raises(ValueError, match=error):
            getattr(inst.ch1, method)(**arguments)


# identity, errors, reset, shutdown


def test_identity_from_idn():
    with b2900([("*IDN?", IDN)]) as inst:
        assert inst.identity() == {
            "manufacturer": "Keysight Technologies",
            "model": "B2902A",
            "serial": "MY51143745",
            "firmware": "3.4.2011.5100",
        }


def test_error_queue_is_read_to_its_empty_entry(caplog):
    pairs = [
        (":SYST:ERR?", '-113,"Undefined header"'),
        (":SYST:ERR?", '+0,"No error"'),
    ]
    with b2900(pairs) as inst:
        with caplog.at_level(logging.ERROR, logger="drivers.scpi"):
            assert inst.check_errors() == [ScpiError(-113, "Undefined header")]
    assert "smu3: error -113: Undefined header" in caplog.text


@pytest.mark.parametrize("garbage", ["", "No error", "+0"])
def test_error_queue_draining_ends_at_a_reply_that_does_not_parse(garbage, caplog):
    with b2900([(":SYST:ERR?", garbage)]) as inst:
        with caplog.at_level(logging.WARNING, logger="drivers.scpi"):
            assert inst.check_errors() == []
    assert "unreadable error queue entry" in caplog.text


def test_error_queue_draining_ends_when_errors_never_stop():
    pairs = [(":SYST:ERR?", '+1,"Queue overflow"')] * ERROR_DRAIN_LIMIT
    with b2900(pairs) as inst:
        assert len(inst.check_errors()) == ERROR_DRAIN_LIMIT


def test_reset():
    with b2900([("*RST", None)]) as inst:
        inst.reset()


@pytest.mark.parametrize("channel, number", CHANNELS, ids=CHANNEL_IDS)
def test_turn_off_stops_a_sweep_and_the_output(channel, number):
    with b2900([(f":ABOR (@{number});:OUTP{number} OFF", None)]) as inst:
        getattr(inst, channel).turn_off()


def test_shutdown_turns_both_outputs_off():
    pairs = [(":ABOR (@1);:OUTP1 OFF", None), (":ABOR (@2);:OUTP2 OFF", None)]
    with b2900(pairs) as inst:
        inst.shutdown()
        assert inst.isShutdown


def test_shutdown_of_a_single_channel_model():
    with b2900([(":ABOR (@1);:OUTP1 OFF", None)], model="B2901A") as inst:
        inst.shutdown()


class FailingAdapter:
    """Refuses messages that start with `refused`, records the others."""

    def __init__(self, refused):
        self.refused = refused
        self.sent = []

    def write(self, message):
        if message.startswith(self.refused):
            raise OSError("bus error")
        self.sent.append(message)


def test_shutdown_turns_the_other_output_off_when_one_fails():
    adapter = FailingAdapter(":ABOR (@1)")
    inst = KeysightB2900(adapter)
    with pytest.raises(OSError, match="bus error"):
        inst.shutdown()
    assert adapter.sent == [":ABOR (@2);:OUTP2 OFF"]


def test_leaving_a_with_block_shuts_down():
    pairs = [
        (":OUTP2 ON", None),
        (":ABOR (@1);:OUTP1 OFF", None),
        (":ABOR (@2);:OUTP2 OFF", None),
    ]
    with b2900(pairs) as inst:
        with pytest.raises(RuntimeError):
            with inst:
                inst.ch2.output_enabled = True
                raise RuntimeError("procedure failed")
