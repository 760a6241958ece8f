"""Number formatting, validators, TSP parsing, the shared connection and its batches."""

import math

import numpy as np
import pytest
from pymeasure.adapters import ProtocolAdapter
from pymeasure.test import expected_protocol

from drivers._format import format_number, strict_choice_named, strict_range_named
from drivers.tsp import (
    ERROR_DRAIN_LIMIT,
    TspConnection,
    TspError,
    TspInstrument,
    parse_bool,
    parse_buffer,
    parse_error,
    parse_number,
    parse_value,
    parse_values,
)

EMPTY_QUEUE = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"
SYNTAX_ERROR = "-2.85000e+02\tTSP Syntax error at line 1\t2.00000e+00\t0.00000e+00"


def connection(pairs):
    adapter = ProtocolAdapter(pairs)
    return adapter, TspConnection(adapter)


def assert_all_sent(adapter):
    assert adapter._index == len(adapter.comm_pairs)
    assert adapter._write_buffer is None
    assert adapter._read_buffer is None


# format_number


@pytest.mark.parametrize(
    "value, text",
    [
        (1e-7, "1e-07"),
        (100e-9, "1e-07"),
        (1.23456789, "1.23456789"),
        (0.5, "0.5"),
        (-2, "-2.0"),
        (1e-12, "1e-12"),
        (np.float64(2.5e-3), "0.0025"),
    ],
)
def test_format_number_round_trips(value, text):
    assert format_number(value) == text
    assert float(format_number(value)) == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_format_number_rejects_non_finite(value):
    with pytest.raises(ValueError, match="not finite"):
        format_number(value)


@pytest.mark.parametrize("value", [True, "1", None])
def test_format_number_rejects_non_numbers(value):
    with pytest.raises(TypeError):
        format_number(value)


# validators


def test_range_accepts_inside_and_bounds():
    limit = strict_range_named(1e-10, 1.5, "A", "smua.source.limiti")
    assert limit(1e-7, ()) == 1e-7
    assert limit(1.5) == 1.5
    assert limit(1e-10) == 1e-10
    assert isinstance(limit(1), float)


def test_range_above_names_the_limit():
    limit = strict_range_named(1e-10, 1.5, "A", "smua.source.limiti")
    with pytest.raises(ValueError) as error:
        limit(1.6)
    assert str(error.value) == ("1.6 A is above the 1.5 A limit of smua.source.limiti")


def test_range_below_names_the_limit():
    limit = strict_range_named(10e-9, 3, "A", "smub.source.limiti")
    with pytest.raises(
        ValueError, match=r"^1e-09 A is below the 1e-08 A limit of smub"
    ):
        limit(1e-9)


def test_range_keeps_every_digit_of_a_value_just_over():
    limit = strict_range_named(-40, 40, "V", "smua.source.levelv")
    with pytest.raises(ValueError, match=r"^40.000001 V is above the 40 V limit"):
        limit(40.000001)


def test_range_without_name():
    with pytest.raises(ValueError, match=r"^2 V is above the 1 V limit$"):
        strict_range_named(0, 1, "V")(2)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_range_rejects_non_finite(value):
    with pytest.raises(ValueError, match="not a finite value of smua"):
        strict_range_named(0, 1, "V", "smua.source.levelv")(value)


def test_range_rejects_non_numbers():
    with pytest.raises(TypeError, match="smua.source.levelv"):
        strict_range_named(0, 1, "V", "smua.source.levelv")("0.5")


def test_range_must_not_be_empty():
    with pytest.raises(ValueError, match="empty range"):
        strict_range_named(2, 1, "V")


def test_choice_accepts_and_names_the_choices():
    choose = strict_choice_named(("voltage", "current"), "source function")
    assert choose("current", ()) == "current"
    with pytest.raises(ValueError, match="'volts' is not a valid source function"):
        choose("volts", ())


# parsing


@pytest.mark.parametrize(
    "text, value",
    [
        ("4.00000e+00", 4.0),
        ("-1.23450e-09\n", -1.2345e-09),
        ("nil", None),
        ("true", True),
        ("false", False),
        ("2636B", "2636B"),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_parse_values_splits_tabs():
    assert parse_values("1.00000e+00\tnil\ttrue\tabc") == [1.0, None, True, "abc"]


@pytest.mark.parametrize("text", ["nil", "true", "abc", ""])
def test_parse_number_rejects_non_numbers(text):
    with pytest.raises(ValueError, match="expected a number"):
        parse_number(text)


@pytest.mark.parametrize(
    "text, value",
    [("true", True), ("false", False), ("1.00000e+00", True), ("0.00000e+00", False)],
)
def test_parse_bool(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["nil", "2.00000e+00", "yes"])
def test_parse_bool_rejects_others(text):
    with pytest.raises(ValueError):
        parse_bool(text)


def test_parse_buffer():
    readings = parse_buffer("4.07205e-05, 4.10966e-05, -1.00000e-09", count=3)
    np.testing.assert_array_equal(readings, [4.07205e-05, 4.10966e-05, -1e-09])
    assert readings.dtype == np.float64


def test_parse_buffer_checks_the_count():
    with pytest.raises(ValueError, match="expected 3 buffer readings, got 2"):
        parse_buffer("1.0, 2.0", count=3)


def test_parse_error():
    assert parse_error(SYNTAX_ERROR) == TspError(
        -285, "TSP Syntax error at line 1", 2, 0
    )
    assert parse_error(EMPTY_QUEUE).code == 0
    with pytest.raises(ValueError, match="not an error queue entry"):
        parse_error("nil")


# connection and batches


def test_write_outside_batch_is_sent_at_once():
    adapter, conn = connection([("smua.source.levelv = 0.5", None)])
    conn.write("smua.source.levelv = 0.5")
    assert_all_sent(adapter)


def test_ask_outside_batch():
    adapter, conn = connection([("print(smua.measure.i())", "1.00000e-06")])
    assert conn.ask("print(smua.measure.i())") == "1.00000e-06"
    assert_all_sent(adapter)


def test_batch_sends_one_message_joined_by_spaces():
    adapter, conn = connection(
        [("smua.source.limiti = 1e-07 smua.source.levelv = 0.1", None)]
    )
    with conn.batch():
        conn.write("smua.source.limiti = 1e-07")
        conn.write("smua.source.levelv = 0.1")
        assert adapter._index == 0
    assert_all_sent(adapter)


def test_query_in_batch_travels_with_the_pending_writes():
    adapter, conn = connection(
        [
            ("a = 1 b = 2 print(a)", "1.00000e+00"),
            ("c = 3", None),
        ]
    )
    with conn.batch():
        conn.write("a = 1")
        conn.write("b = 2")
        assert conn.ask("print(a)") == "1.00000e+00"
        conn.write("c = 3")
    assert_all_sent(adapter)


def test_nested_batches_flatten_into_the_outermost():
    adapter, conn = connection([("a = 1 b = 2 c = 3", None)])
    with conn.batch():
        conn.write("a = 1")
        with conn.batch():
            conn.write("b = 2")
        assert conn.batching
        conn.write("c = 3")
    assert not conn.batching
    assert_all_sent(adapter)


def test_empty_batch_sends_nothing():
    adapter, conn = connection([])
    with conn.batch():
        pass
    assert_all_sent(adapter)


def test_failed_batch_sends_nothing():
    adapter, conn = connection([])
    with pytest.raises(RuntimeError):
        with conn.batch():
            conn.write("smua.source.output = smua.OUTPUT_ON")
            raise RuntimeError("level rejected")
    assert not conn.batching
    assert_all_sent(adapter)


def test_failed_inner_batch_drops_only_its_own_writes():
    adapter, conn = connection([("a = 1 c = 3", None)])
    with conn.batch():
        conn.write("a = 1")
        with pytest.raises(RuntimeError):
            with conn.batch():
                conn.write("b = 2")
                raise RuntimeError("level rejected")
        conn.write("c = 3")
    assert_all_sent(adapter)


def test_failed_inner_batch_after_a_flush_drops_what_it_queued_since():
    adapter, conn = connection([("a = 1 b = 2 print(b)", "2"), ("d = 4", None)])
    with conn.batch():
        conn.write("a = 1")
        with pytest.raises(RuntimeError):
            with conn.batch():
                conn.write("b = 2")
                conn.ask("print(b)")
                conn.write("c = 3")
                raise RuntimeError("level rejected")
        conn.write("d = 4")
    assert_all_sent(adapter)


def test_urgent_write_drops_the_queue_and_goes_first():
    adapter, conn = connection(
        [("smua.source.output = smua.OUTPUT_OFF", None), ("x = 1", None)]
    )
    with conn.batch():
        conn.write("smua.source.output = smua.OUTPUT_ON")
        conn.write_urgent("smua.source.output = smua.OUTPUT_OFF")
        conn.write("x = 1")
    assert_all_sent(adapter)


# the instrument base


def test_instrument_commands_go_through_the_batch():
    with expected_protocol(
        TspInstrument, [("x = 1 print(x)", "1.00000e+00")], name="tsp"
    ) as inst:
        with inst.connection.batch():
            inst.write("x = 1")
            assert inst.ask("print(x)") == "1.00000e+00"


def test_node_prefix_replaces_the_placeholder():
    with expected_protocol(
        TspInstrument, [("node[3].errorqueue.clear()", None)], name="master"
    ) as master:
        node = TspInstrument(None, "node3", node=3, connection=master.connection)
        assert node.node_prefix == "node[3]."
        assert master.node_prefix == ""
        node.clear_errors()


def test_node_on_the_masters_adapter_and_connection():
    with expected_protocol(TspInstrument, [], name="master") as master:
        node = TspInstrument(
            master.adapter, "node2", node=2, connection=master.connection
        )
        assert node.connection is master.connection
        assert node.adapter is master.adapter


@pytest.mark.parametrize("node", [0, 65, True, 2.0])
def test_node_number_is_checked(node):
    with expected_protocol(TspInstrument, [], name="master") as master:
        with pytest.raises(ValueError, match="node"):
            TspInstrument(None, "bad", node=node, connection=master.connection)


def test_adapter_must_match_the_shared_connection():
    with expected_protocol(TspInstrument, [], name="master") as master:
        with pytest.raises(ValueError, match="not the one of the shared connection"):
            TspInstrument(ProtocolAdapter(), "x", node=2, connection=master.connection)


def test_adapter_or_connection_is_needed():
    with pytest.raises(ValueError, match="give an adapter"):
        TspInstrument(None, "x")


def test_adapter_options_are_refused():
    with expected_protocol(TspInstrument, [], name="tsp") as inst:
        with pytest.raises(TypeError, match="adapter options"):
            inst.write("x = 1", encoding="latin-1")


def test_identity_direct():
    with expected_protocol(
        TspInstrument,
        [("*IDN?", "Keithley Instruments Inc., Model 2636B, 4308079, 3.2.2")],
        name="smu1",
    ) as inst:
        assert inst.identity() == {
            "manufacturer": "Keithley Instruments Inc.",
            "model": "2636B",
            "serial": "4308079",
            "firmware": "3.2.2",
        }


def test_identity_node():
    with expected_protocol(
        TspInstrument,
        [
            (
                "print(node[2].model, node[2].serialno, node[2].revision)",
                "2636B\t4308080\t3.2.2",
            )
        ],
        name="smu1",
    ) as master:
        node = TspInstrument(None, "smu2", node=2, connection=master.connection)
        assert node.identity() == {
            "manufacturer": "Keithley Instruments Inc.",
            "model": "2636B",
            "serial": "4308080",
            "firmware": "3.2.2",
        }


def test_identity_rejects_a_strange_reply():
    with expected_protocol(TspInstrument, [("*IDN?", "hello")], name="x") as inst:
        with pytest.raises(ValueError, match="unexpected"):
            inst.identity()


def test_id_direct_and_node():
    with expected_protocol(
        TspInstrument,
        [
            ("*IDN?", "Keithley Instruments Inc., Model 2636B, 4308079, 3.2.2"),
            (
                "print(node[2].model, node[2].serialno, node[2].revision)",
                "2636B\t4308080\t3.2.2",
            ),
        ],
        name="smu1",
    ) as master:
        node = TspInstrument(None, "smu2", node=2, connection=master.connection)
        assert master.id == "Keithley Instruments Inc., Model 2636B, 4308079, 3.2.2"
        assert node.id == "Keithley Instruments Inc., Model 2636B, 4308080, 3.2.2"


def test_reset_and_clear_errors():
    with expected_protocol(
        TspInstrument,
        [("reset()", None), ("errorqueue.clear()", None)],
        name="tsp",
    ) as inst:
        inst.reset()
        inst.clear_errors()


def test_check_errors_reads_the_count_of_entries():
    with expected_protocol(
        TspInstrument,
        [
            ("print(errorqueue.count)", "2.00000e+00"),
            ("print(errorqueue.next())", SYNTAX_ERROR),
            ("print(errorqueue.next())", "-2.86000e+02\tbad value\t2.00000e+00\t2.0"),
        ],
        name="tsp",
    ) as inst:
        assert inst.check_errors() == [
            TspError(-285, "TSP Syntax error at line 1", 2, 0),
            TspError(-286, "bad value", 2, 2),
        ]


def test_check_errors_on_an_empty_queue():
    with expected_protocol(
        TspInstrument, [("print(errorqueue.count)", "0.00000e+00")], name="tsp"
    ) as inst:
        assert inst.check_errors() == []


def test_check_errors_stops_at_an_empty_entry():
    with expected_protocol(
        TspInstrument,
        [
            ("print(errorqueue.count)", "5.00000e+00"),
            ("print(errorqueue.next())", SYNTAX_ERROR),
            ("print(errorqueue.next())", EMPTY_QUEUE),
        ],
        name="tsp",
    ) as inst:
        assert len(inst.check_errors()) == 1


@pytest.mark.parametrize("count", ["nil", "1.00000e+09", "-1", "nan", "garbage"])
def test_check_errors_ends_when_the_count_is_garbage(count):
    pairs = [("print(errorqueue.count)", count)]
    pairs += [("print(errorqueue.next())", SYNTAX_ERROR)] * ERROR_DRAIN_LIMIT
    with expected_protocol(TspInstrument, pairs, name="tsp") as inst:
        assert len(inst.check_errors()) == ERROR_DRAIN_LIMIT


def test_check_errors_ends_at_an_unreadable_entry():
    with expected_protocol(
        TspInstrument,
        [
            ("print(errorqueue.count)", "3.00000e+00"),
            ("print(errorqueue.next())", SYNTAX_ERROR),
            ("print(errorqueue.next())", "nil"),
        ],
        name="tsp",
    ) as inst:
        assert len(inst.check_errors()) == 1


def test_check_errors_on_a_node():
    with expected_protocol(
        TspInstrument,
        [
            ("print(node[2].errorqueue.count)", "1.00000e+00"),
            ("print(node[2].errorqueue.next())", SYNTAX_ERROR),
        ],
        name="smu1",
    ) as master:
        node = TspInstrument(None, "smu2", node=2, connection=master.connection)
        assert len(node.check_errors()) == 1
