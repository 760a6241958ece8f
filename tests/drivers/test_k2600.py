"""Protocol tests of the Keithley 2600B driver: exact messages and replies."""

from contextlib import contextmanager

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from drivers.interfaces import SourceMeasureChannel
from drivers.k2600 import (
    RATINGS,
    Keithley2600,
    Keithley2600Channel,
    current_reader,
    measure_currents,
)

IDN = "Keithley Instruments Inc., Model 2636B, 4308079, 3.2.2"

# (channel attribute, node or None, the TSP object its commands name)
PLACES = [("smua", None, "smua"), ("smub", None, "smub"), ("smua", 2, "node[2].smua")]
PLACE_IDS = ["smua", "smub", "node2-smua"]


@contextmanager
def smu_channel(pairs, place, model="2636B"):
    """Yield the channel at `place`, on a master or on node N of the master."""
    channel, node, _ = place
    with expected_protocol(Keithley2600, pairs, name="smu1", model=model) as smu:
        instrument = smu
        if node is not None:
            instrument = Keithley2600(
                None, name="smu2", model=model, node=node, connection=smu.connection
            )
        yield getattr(instrument, channel)


def fill(template, obj):
    return template.replace("{ch}", obj)


# properties: get


GETS = [
    ("source_function", "print({ch}.source.func)", "1.00000e+00", "voltage"),
    ("source_function", "print({ch}.source.func)", "0.00000e+00", "current"),
    ("source_voltage", "print({ch}.source.levelv)", "5.00000e-01", 0.5),
    ("source_current", "print({ch}.source.leveli)", "-1.00000e-06", -1e-6),
    ("current_limit", "print({ch}.source.limiti)", "1.00000e-07", 1e-7),
    ("voltage_limit", "print({ch}.source.limitv)", "2.00000e+01", 20.0),
    ("output_enabled", "print({ch}.source.output)", "1.00000e+00", True),
    ("output_enabled", "print({ch}.source.output)", "0.00000e+00", False),
    ("nplc", "print({ch}.measure.nplc)", "1.00000e+00", 1.0),
    ("compliance", "print({ch}.source.compliance)", "true", True),
    ("compliance", "print({ch}.source.compliance)", "false", False),
]


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("prop, query, reply, value", GETS)
def test_get(place, prop, query, reply, value):
    with smu_channel([(fill(query, place[2]), reply)], place) as channel:
        got = getattr(channel, prop)
        assert got == value
        assert type(got) is type(value)


def test_get_rejects_a_reply_that_is_not_a_number():
    with smu_channel([("print(smua.source.levelv)", "nil")], PLACES[0]) as channel:
        with pytest.raises(ValueError, match="expected a number"):
            _ = channel.source_voltage


def test_get_rejects_an_unknown_function_code():
    with smu_channel([("print(smua.source.func)", "2.00000e+00")], PLACES[0]) as ch:
        with pytest.raises(ValueError, match="unknown source function"):
            _ = ch.source_function


# properties: set


SETS = [
    ("source_function", "voltage", "{ch}.source.func = {ch}.OUTPUT_DCVOLTS"),
    ("source_function", "current", "{ch}.source.func = {ch}.OUTPUT_DCAMPS"),
    ("source_voltage", 1.23456789, "{ch}.source.levelv = 1.23456789"),
    ("source_voltage", -200, "{ch}.source.levelv = -200.0"),
    ("source_voltage", 1e-7, "{ch}.source.levelv = 1e-07"),
    ("source_current", 1e-7, "{ch}.source.leveli = 1e-07"),
    ("source_current", -1.5, "{ch}.source.leveli = -1.5"),
    ("current_limit", 1e-7, "{ch}.source.limiti = 1e-07"),
    ("current_limit", 100e-12, "{ch}.source.limiti = 1e-10"),
    ("current_limit", 1.5, "{ch}.source.limiti = 1.5"),
    ("voltage_limit", 2, "{ch}.source.limitv = 2.0"),
    ("voltage_limit", 200, "{ch}.source.limitv = 200.0"),
    ("output_enabled", True, "{ch}.source.output = {ch}.OUTPUT_ON"),
    ("output_enabled", False, "{ch}.source.output = {ch}.OUTPUT_OFF"),
    ("nplc", 0.001, "{ch}.measure.nplc = 0.001"),
    ("nplc", 25, "{ch}.measure.nplc = 25.0"),
]


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("prop, value, command", SETS)
def test_set(place, prop, value, command):
    with smu_channel([(fill(command, place[2]), None)], place) as channel:
        setattr(channel, prop, value)


def test_compliance_cannot_be_set():
    with smu_channel([], PLACES[0]) as channel:
        with pytest.raises(LookupError):
            channel.compliance = True


def test_ratings_of_a_40_volt_model_are_sent_exactly():
    pairs = [("smua.source.limiti = 3.0", None), ("smua.source.levelv = 40.0", None)]
    with smu_channel(pairs, PLACES[0], model="2602B") as channel:
        channel.current_limit = 3
        channel.source_voltage = 40


# properties: out of range raises, names the limit, sends nothing


OUT_OF_RANGE = [
    ("2636B", "current_limit", 1.6, "1.6 A is above the 1.5 A", "source.limiti"),
    ("2636B", "current_limit", 5e-11, "5e-11 A is below the 1e-10 A", "source.limiti"),
    ("2602B", "current_limit", 5e-9, "5e-09 A is below the 1e-08 A", "source.limiti"),
    ("2602B", "current_limit", 3.5, "3.5 A is above the 3 A", "source.limiti"),
    ("2602B", "source_voltage", 41, "41 V is above the 40 V", "source.levelv"),
    ("2612B", "source_voltage", -201, "-201 V is below the -200 V", "source.levelv"),
    ("2636B", "source_current", 1.6, "1.6 A is above the 1.5 A", "source.leveli"),
    ("2602B", "source_current", -3.1, "-3.1 A is below the -3 A", "source.leveli"),
    ("2602B", "voltage_limit", 0.005, "0.005 V is below the 0.01 V", "source.limitv"),
    ("2636B", "voltage_limit", 0.01, "0.01 V is below the 0.02 V", "source.limitv"),
    ("2602B", "voltage_limit", 41, "41 V is above the 40 V", "source.limitv"),
    ("2636B", "nplc", 0.0001, "0.0001 PLC is below the 0.001 PLC", "measure.nplc"),
    ("2636B", "nplc", 26, "26 PLC is above the 25 PLC", "measure.nplc"),
]


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("model, prop, value, crossed, attribute", OUT_OF_RANGE)
def test_out_of_range_raises_naming_the_limit(
    place, model, prop, value, crossed, attribute
):
    with smu_channel([], place, model=model) as channel:
        with pytest.raises(ValueError) as error:
            setattr(channel, prop, value)
        assert str(error.value) == f"{crossed} limit of {place[2]}.{attribute}"


@pytest.mark.parametrize(
    "prop, value",
    [
        ("source_voltage", float("nan")),
        ("current_limit", float("inf")),
        ("source_function", "volts"),
        ("output_enabled", "on"),
    ],
)
def test_invalid_values_send_nothing(prop, value):
    with smu_channel([], PLACES[0]) as channel:
        with pytest.raises(ValueError):
            setattr(channel, prop, value)


def test_non_numbers_send_nothing():
    with smu_channel([], PLACES[0]) as channel:
        with pytest.raises(TypeError):
            channel.source_voltage = "0.5"


def test_channel_limits_follow_the_model():
    with smu_channel([], PLACES[0], model="2611B") as channel:
        limits = channel.limits
        assert (limits["source_voltage"].low, limits["source_voltage"].high) == (
            -200.0,
            200.0,
        )
        assert limits["current_limit"].low == 10e-9
        assert limits["current_limit"].name == "smua.source.limiti"


# models and channels


@pytest.mark.parametrize("model", ["2601B", "2611B", "2635B"])
def test_single_channel_models_have_only_smua(model):
    with expected_protocol(Keithley2600, [], model=model) as smu:
        assert list(smu.channels) == ["smua"]
        assert isinstance(smu.smua, Keithley2600Channel)
        with pytest.raises(AttributeError, match="smub"):
            _ = smu.smub


@pytest.mark.parametrize(
    "model", ["2602B", "2604B", "2612B", "2614B", "2634B", "2636B"]
)
def test_dual_channel_models(model):
    with expected_protocol(Keithley2600, [], model=model) as smu:
        assert list(smu.channels) == ["smua", "smub"]
        assert smu.ratings is RATINGS[model]


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown 2600B model '2400'"):
        Keithley2600(None, model="2400")


def test_channel_names_and_objects():
    with expected_protocol(Keithley2600, [], name="smu1") as smu:
        node = Keithley2600(None, name="smu2", node=2, connection=smu.connection)
        assert smu.smua.name == "smu1.smua"
        assert node.smub.name == "smu2.smub"
        assert smu.smub.tsp_object == "smub"
        assert node.smua.tsp_object == "node[2].smua"
        assert node.smua.connection is smu.connection


def test_channel_satisfies_the_source_measure_interface_without_talking():
    with expected_protocol(Keithley2600, []) as smu:
        assert isinstance(smu.smua, SourceMeasureChannel)
        assert isinstance(smu.smub, SourceMeasureChannel)


def test_property_docs_start_with_a_verb():
    for prop in (
        "source_function",
        "source_voltage",
        "source_current",
        "current_limit",
        "voltage_limit",
        "output_enabled",
        "nplc",
        "compliance",
    ):
        doc = getattr(Keithley2600Channel, prop).__doc__
        assert doc.split()[0] in ("Control", "Measure"), prop
        assert "(dynamic)" not in doc


# measurements


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_measure_current(place):
    pairs = [(f"print({place[2]}.measure.i())", "1.23450e-06")]
    with smu_channel(pairs, place) as channel:
        assert channel.measure_current() == 1.2345e-06


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_measure_voltage(place):
    pairs = [(f"print({place[2]}.measure.v())", "2.00001e-01")]
    with smu_channel(pairs, place) as channel:
        assert channel.measure_voltage() == 0.200001


def test_measure_currents_with_one_query_across_nodes():
    query = "print(smua.measure.i(), smub.measure.i(), node[2].smua.measure.i())"
    reply = "1.00000e-06\t2.00000e-06\t-3.00000e-09"
    with expected_protocol(Keithley2600, [(query, reply)], name="smu1") as smu:
        node = Keithley2600(None, name="smu2", node=2, connection=smu.connection)
        currents = measure_currents([smu.smua, smu.smub, node.smua])
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, -3e-9])


def test_queued_readings_travel_in_one_message_with_the_settings_between():
    message = (
        "smua.source.levelv = 0.1 print(smua.measure.i(), node[2].smua.measure.i()) "
        "smua.source.levelv = 0.2 print(smua.measure.i(), node[2].smua.measure.i())"
    )
    pairs = [(message, "1.00000e-06\t2.00000e-06"), (None, "3.00000e-06\t4.00000e-06")]
    with expected_protocol(Keithley2600, pairs, name="smu1") as smu:
        node = Keithley2600(None, name="smu2", node=2, connection=smu.connection)
        reader = current_reader([smu.smua, node.smua])
        with smu.connection.batch():
            for level in (0.1, 0.2):
                smu.smua.set_voltage_level(level)
                reader.queue()
        np.testing.assert_array_equal(reader.collect(2), [[1e-6, 2e-6], [3e-6, 4e-6]])


def test_a_short_reply_to_a_queued_reading_raises():
    pairs = [("print(smua.measure.i(), smub.measure.i())", "1.00000e-06")]
    with expected_protocol(Keithley2600, pairs, name="smu1") as smu:
        reader = current_reader([smu.smua, smu.smub])
        reader.queue()
        with pytest.raises(ValueError, match="expected 2 currents"):
            reader.collect(1)


def test_measure_currents_of_no_channel_sends_nothing():
    assert measure_currents([]).shape == (0,)


def test_measure_currents_needs_one_connection():
    with expected_protocol(Keithley2600, [], name="smu1") as smu1:
        with expected_protocol(Keithley2600, [], name="smu2") as smu2:
            with pytest.raises(ValueError, match="smu2.smua not on the connection"):
                measure_currents([smu1.smua, smu2.smua])


def test_measure_currents_checks_the_reply():
    query = "print(smua.measure.i(), smub.measure.i())"
    with expected_protocol(Keithley2600, [(query, "1.00000e-06\tnil")]) as smu:
        with pytest.raises(ValueError, match="expected 2 currents"):
            measure_currents([smu.smua, smu.smub])


# sweeps and pulses


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_sweep_voltage_is_one_message(place):
    obj = place[2]
    message = (
        f"{obj}.nvbuffer1.clear() "
        f"SweepVListMeasureI({obj}, {{0.1, 0.2, -1e-07, 1.23456789}}, 0.001, 4) "
        f"printbuffer(1, 4, {obj}.nvbuffer1.readings)"
    )
    reply = "1.00000e-06, 2.00000e-06, -1.00000e-12, 1.23457e-05"
    with smu_channel([(message, reply)], place) as channel:
        currents = channel.sweep_voltage([0.1, 0.2, -1e-7, 1.23456789], 0.001)
        np.testing.assert_array_equal(currents, [1e-6, 2e-6, -1e-12, 1.23457e-05])
        assert currents.dtype == np.float64


def test_sweep_joins_an_open_batch():
    message = (
        "smua.source.limiti = 1e-07 smua.nvbuffer1.clear() "
        "SweepVListMeasureI(smua, {0.5}, 0.0, 1) "
        "printbuffer(1, 1, smua.nvbuffer1.readings)"
    )
    with smu_channel([(message, "1.00000e-07")], PLACES[0]) as channel:
        with channel.connection.batch():
            channel.current_limit = 1e-7
            assert channel.sweep_voltage([0.5], 0) == pytest.approx([1e-7])


@pytest.mark.parametrize(
    "levels, settle, error",
    [
        ([0.1, 41.0], 0.001, "41 V is above the 40 V limit of smua.source.levelv"),
        ([], 0.001, "at least one level"),
        ([0.1], -0.001, "-0.001 s is below the 0 s limit of settle time"),
    ],
)
def test_sweep_checks_before_sending(levels, settle, error):
    with smu_channel([], PLACES[0], model="2602B") as channel:
        with pytest.raises(ValueError, match=error):
            channel.sweep_voltage(levels, settle)


def test_sweep_with_a_short_buffer_raises():
    message = (
        "smua.nvbuffer1.clear() SweepVListMeasureI(smua, {0.1, 0.2}, 0.0, 2) "
        "printbuffer(1, 2, smua.nvbuffer1.readings)"
    )
    with smu_channel([(message, "1.00000e-06")], PLACES[0]) as channel:
        with pytest.raises(ValueError, match="expected 2 buffer readings, got 1"):
            channel.sweep_voltage([0.1, 0.2], 0)


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_pulse_train_is_one_message(place):
    obj = place[2]
    message = (
        f"{obj}.nvbuffer1.clear() "
        f"PulseVMeasureI({obj}, 0.0, 1.5, 0.001, 0.01, 3) "
        f"printbuffer(1, 3, {obj}.nvbuffer1.readings)"
    )
    reply = "1.00000e-04, 1.10000e-04, 1.20000e-04"
    with smu_channel([(message, reply)], place) as channel:
        currents = channel.pulse_train(
            level_v=1.5, width_s=1e-3, bias_v=0, off_s=0.01, count=3
        )
        np.testing.assert_array_equal(currents, [1e-4, 1.1e-4, 1.2e-4])


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_lean_level_setter_sends_what_the_property_sends(place):
    obj = place[2]
    pairs = [(f"{obj}.source.levelv = 1.23456789", None)] * 2
    with smu_channel(pairs, place) as channel:
        channel.source_voltage = 1.23456789
        channel.set_voltage_level(1.23456789)


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_lean_senders_send_what_the_properties_and_methods_send(place):
    obj = place[2]
    pairs = [
        (f"{obj}.source.output = {obj}.OUTPUT_ON", None),
        (f"{obj}.source.output = {obj}.OUTPUT_OFF", None),
        (f"{obj}.nvbuffer1.clear() PulseVMeasureI({obj}, 0.0, 1.2, 1e-05, 1e-05, 3)", None),
        (f"print({obj}.measure.i())", "-1.50000e-06"),
    ]
    with smu_channel(pairs, place) as channel:
        set_output = channel.output_writer()
        set_output(True)
        set_output(False)
        channel.pulse_writer()(1.2, 1e-5, 0.0, 1e-5, 3)
        assert channel.current_getter()() == -1.5e-6


def test_lean_level_setter_checks_the_range():
    with smu_channel([], PLACES[0]) as channel:
        with pytest.raises(ValueError, match="200 V limit"):
            channel.set_voltage_level(250.0)


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_applied_pulses_travel_with_the_next_query(place):
    obj = place[2]
    message = (
        f"{obj}.nvbuffer1.clear() "
        f"PulseVMeasureI({obj}, 0.0, 1.2, 1e-05, 1e-05, 4) "
        f"print({obj}.measure.i())"
    )
    with smu_channel([(message, "2.00000e-06")], place) as channel:
        with channel.connection.batch():
            channel.apply_pulses(1.2, 1e-5, 0.0, 1e-5, 4)
            assert channel.measure_current() == 2e-6


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"level_v": 41.0}, "41 V is above the 40 V limit"),
        ({"bias_v": -41.0}, "-41 V is below the -40 V limit"),
        ({"width_s": 0.0}, "pulse width must be above 0 s"),
        ({"width_s": -1e-3}, "below the 0 s limit of pulse width"),
        ({"off_s": -1.0}, "below the 0 s limit of off time"),
        ({"count": 0}, "pulse count 0"),
        ({"count": 2.5}, "pulse count 2.5"),
        ({"count": True}, "pulse count True"),
    ],
)
def test_pulse_train_checks_before_sending(kwargs, error):
    arguments = {"level_v": 1.0, "width_s": 1e-3, "bias_v": 0.0, "off_s": 0.0}
    arguments["count"] = 1
    arguments.update(kwargs)
    with smu_channel([], PLACES[0], model="2602B") as channel:
        with pytest.raises(ValueError, match=error):
            channel.pulse_train(**arguments)


# resets, errors, identity, shutdown


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_channel_reset(place):
    with smu_channel([(f"{place[2]}.reset()", None)], place) as channel:
        channel.reset()


def test_instrument_reset_direct_and_node():
    pairs = [("reset()", None), ("node[2].reset()", None)]
    with expected_protocol(Keithley2600, pairs) as smu:
        node = Keithley2600(None, node=2, connection=smu.connection)
        smu.reset()
        node.reset()


def test_error_queue():
    pairs = [
        ("errorqueue.clear()", None),
        ("print(errorqueue.count)", "1.00000e+00"),
        ("print(errorqueue.next())", "-2.86000e+02\tbad\t2.00000e+00\t0.00000e+00"),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        smu.clear_errors()
        [error] = smu.check_errors()
        assert (error.code, error.message) == (-286, "bad")


def test_identity_and_id():
    pairs = [
        ("*IDN?", IDN),
        ("*IDN?", IDN),
        (
            "print(node[3].model, node[3].serialno, node[3].revision)",
            "2612B\t41\t3.3.5",
        ),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        node = Keithley2600(None, model="2612B", node=3, connection=smu.connection)
        assert smu.id == IDN
        assert smu.identity()["model"] == "2636B"
        assert node.identity() == {
            "manufacturer": "Keithley Instruments Inc.",
            "model": "2612B",
            "serial": "41",
            "firmware": "3.3.5",
        }


def test_shutdown_turns_both_outputs_off():
    pairs = [
        ("smua.source.output = smua.OUTPUT_OFF", None),
        ("smub.source.output = smub.OUTPUT_OFF", None),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        smu.shutdown()
        assert smu.isShutdown


def test_shutdown_of_a_single_channel_model():
    pairs = [("smua.source.output = smua.OUTPUT_OFF", None)]
    with expected_protocol(Keithley2600, pairs, model="2635B") as smu:
        smu.shutdown()


def test_shutdown_of_a_node():
    pairs = [
        ("node[2].smua.source.output = node[2].smua.OUTPUT_OFF", None),
        ("node[2].smub.source.output = node[2].smub.OUTPUT_OFF", None),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        Keithley2600(None, node=2, connection=smu.connection).shutdown()


def test_shutdown_in_a_batch_drops_queued_commands_and_acts_at_once():
    pairs = [
        ("smua.source.output = smua.OUTPUT_OFF", None),
        ("smub.source.output = smub.OUTPUT_OFF", None),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        with smu.connection.batch():
            smu.smua.source_voltage = 1.0
            smu.smua.output_enabled = True
            smu.shutdown()


class FailingAdapter:
    """Refuses messages to one channel, records the others."""

    def __init__(self, refused):
        self.refused = refused
        self.sent = []

    def write(self, message):
        if message.startswith(self.refused):
            raise OSError("bus error")
        self.sent.append(message)


def test_shutdown_turns_the_other_output_off_when_one_fails():
    adapter = FailingAdapter("smua.")
    smu = Keithley2600(adapter)
    with pytest.raises(OSError, match="bus error"):
        smu.shutdown()
    assert adapter.sent == ["smub.source.output = smub.OUTPUT_OFF"]


def test_leaving_a_with_block_shuts_down():
    pairs = [
        ("smua.source.output = smua.OUTPUT_ON", None),
        ("smua.source.output = smua.OUTPUT_OFF", None),
        ("smub.source.output = smub.OUTPUT_OFF", None),
    ]
    with expected_protocol(Keithley2600, pairs) as smu:
        with pytest.raises(RuntimeError):
            with smu:
                smu.smua.output_enabled = True
                raise RuntimeError("procedure failed")


# batches across instruments of one TSP-Link


def test_settings_of_two_nodes_in_one_message():
    message = (
        "smua.source.limiti = 1e-07 node[2].smub.source.levelv = 0.5 "
        "print(smua.measure.i(), node[2].smub.measure.i())"
    )
    with expected_protocol(Keithley2600, [(message, "1.0\t2.0")]) as smu:
        node = Keithley2600(None, node=2, connection=smu.connection)
        with smu.connection.batch():
            smu.smua.current_limit = 1e-7
            node.smub.source_voltage = 0.5
            currents = measure_currents([smu.smua, node.smub])
        np.testing.assert_array_equal(currents, [1.0, 2.0])


def test_property_read_in_a_batch_carries_the_queued_writes():
    message = "smua.source.levelv = 0.25 print(smua.source.levelv)"
    with expected_protocol(Keithley2600, [(message, "2.50000e-01")]) as smu:
        with smu.connection.batch():
            smu.smua.source_voltage = 0.25
            assert smu.smua.source_voltage == 0.25
