"""TSP runtime: print formats, error queue, scripts, sandbox, budget, TSP-Link."""

from pathlib import Path

import pytest

from simulator.bench import Bench
from simulator.tsp import (
    CHUNK_CACHE_SIZE,
    RUNTIME_ERROR,
    SYNTAX_ERROR,
    TspRuntime,
)
from tests.simulator.tsp_talk import ask

DEMO = Path(__file__).resolve().parents[2] / "data" / "benches" / "demo.yaml"
EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"


@pytest.fixture
def bench():
    return Bench.from_file(DEMO)


@pytest.fixture
def smu(bench):
    return bench.resource("GPIB0::26::INSTR")


def errors(instrument):
    """Drain the error queue: (code, message) pairs."""
    entries = []
    while True:
        code, message, *_ = ask(instrument, "print(errorqueue.next())")[0].split("\t")
        if float(code) == 0:
            return entries
        entries.append((int(float(code)), message))


# print


def test_print_formats_numbers_like_the_2600b(smu):
    assert ask(smu, "print(4)") == ["4.00000e+00"]
    assert ask(smu, "print(-1.5e-9, 0)") == ["-1.50000e-09\t0.00000e+00"]


def test_print_separates_values_with_tabs_and_spells_booleans_and_nil(smu):
    assert ask(smu, "print('a', true, false, nil, 2)") == [
        "a\ttrue\tfalse\tnil\t2.00000e+00"
    ]


def test_each_print_is_one_reply_line(smu):
    assert ask(smu, "print(1) print('two')") == ["1.00000e+00", "two"]


def test_print_follows_format_asciiprecision(smu):
    assert ask(smu, "format.asciiprecision = 3 print(1234.5)") == ["1.23e+03"]


def test_no_print_means_no_reply(smu):
    assert ask(smu, "x = 1") == []


# Common commands


def test_idn_names_maker_model_serial_and_firmware(smu):
    (reply,) = ask(smu, "*IDN?")
    maker, model, serial, firmware = (f.strip() for f in reply.split(","))
    assert (maker, model, firmware) == (
        "Keithley Instruments Inc.",
        "Model 2636B",
        "3.2.2",
    )
    assert serial.isdigit()


def test_opc_query_prints_1_and_the_others_reply_nothing(smu):
    assert ask(smu, "*OPC?") == ["1"]
    for command in ("*WAI", "*TRG", "*CLS", "*RST"):
        assert ask(smu, command) == []


def test_cls_empties_the_error_queue(smu):
    ask(smu, "x = = 1")
    ask(smu, "*CLS")
    assert ask(smu, "print(errorqueue.count)") == ["0.00000e+00"]


# Error queue


def test_empty_error_queue_entry(smu):
    assert ask(smu, "print(errorqueue.next())") == [EMPTY]


def test_syntax_error_queues_285_and_gets_no_reply(smu):
    assert ask(smu, "print(1") == []
    assert ask(smu, "print(errorqueue.count)") == ["1.00000e+00"]
    ((code, message),) = errors(smu)
    assert code == SYNTAX_ERROR
    assert message.startswith("TSP Syntax error at line 1:")


def test_runtime_error_queues_286_and_gets_no_reply(smu):
    assert ask(smu, "print(nothing.here)") == []
    ((code, message),) = errors(smu)
    assert code == RUNTIME_ERROR
    assert "nothing" in message


def test_error_queue_clear(smu):
    ask(smu, "print(1")
    ask(smu, "errorqueue.clear()")
    assert ask(smu, "print(errorqueue.next())") == [EMPTY]


def test_a_chunk_stops_at_its_error(smu):
    assert ask(smu, "print('before') error('stop') print('after')") == ["before"]
    assert errors(smu)[0][0] == RUNTIME_ERROR


# Scripts


def test_loadscript_makes_a_named_script_that_runs_when_called(smu):
    for line in ("loadscript greet", "print('hello')", "print(2)", "endscript"):
        assert ask(smu, line) == []
    assert ask(smu, "greet()") == ["hello", "2.00000e+00"]
    assert ask(smu, "greet.run()") == ["hello", "2.00000e+00"]


def test_loadandrunscript_runs_at_once(smu):
    ask(smu, "loadandrunscript")
    ask(smu, "x = 21")
    assert ask(smu, "endscript") == []
    assert ask(smu, "print(x * 2)") == ["4.20000e+01"]


def test_a_script_with_a_syntax_error_is_not_made(smu):
    for line in ("loadscript broken", "print(", "endscript"):
        ask(smu, line)
    assert errors(smu)[0][0] == SYNTAX_ERROR
    assert ask(smu, "print(broken)") == ["nil"]


# Sandbox


@pytest.mark.parametrize(
    "name",
    [
        "os", "io", "require", "load", "loadfile", "dofile", "debug", "package",
        "collectgarbage", "rawset", "rawget", "getmetatable", "setmetatable",
        "python", "coroutine",
    ],
)  # fmt: skip
def test_dangerous_globals_are_nil(smu, name):
    assert ask(smu, f"print({name})") == ["nil"]


def test_safe_base_functions_are_there(smu):
    reply = ask(
        smu,
        "print(tostring(1.5), tonumber('2'), type({}), select('#', 1, 2), "
        "math.floor(2.5), string.format('%d', 7), table.concat({1, 2}, '-'), "
        "unpack({3}), table.unpack({4}))",
    )
    assert reply == [
        "1.5\t2.00000e+00\ttable\t2.00000e+00\t2.00000e+00\t7\t1-2\t"
        "3.00000e+00\t4.00000e+00"
    ]


def test_string_dump_is_removed(smu):
    assert ask(smu, "print(string.dump)") == ["nil"]


def test_python_objects_show_only_their_public_names(smu):
    assert ask(smu, "print(smua.source._state)") == []
    assert ask(smu, "print(localnode._instrument)") == []
    assert [code for code, _ in errors(smu)] == [RUNTIME_ERROR, RUNTIME_ERROR]


def test_read_only_attributes_refuse_assignment(smu):
    assert ask(smu, "smua.source.compliance = true") == []
    assert ask(smu, "smua.source = 1") == []
    assert [code for code, _ in errors(smu)] == [RUNTIME_ERROR, RUNTIME_ERROR]
    assert ask(smu, "print(smua.source.levelv)") == ["0.00000e+00"]


def test_an_endless_loop_is_stopped_and_the_instrument_answers_on(smu):
    assert ask(smu, "while true do end") == []
    ((code, message),) = errors(smu)
    assert code == RUNTIME_ERROR
    assert "budget" in message
    assert ask(smu, "print(1)") == ["1.00000e+00"]


def test_pcall_cannot_hide_the_end_of_the_budget(smu):
    ask(smu, "while true do pcall(function() while true do end end) end")
    assert errors(smu)[0][0] == RUNTIME_ERROR
    assert ask(smu, "print(pcall(error, 'x'))") == ["false\tx"]


# Chunk cache


def test_repeated_lines_run_each_time(smu):
    ask(smu, "n = 0")
    for _ in range(3):
        ask(smu, "n = n + 1")
    assert ask(smu, "print(n)") == ["3.00000e+00"]


def test_the_chunk_cache_is_bounded(smu):
    for i in range(CHUNK_CACHE_SIZE + 20):
        ask(smu, f"x = {i}")
    runtime = smu.runtime
    assert isinstance(runtime, TspRuntime)
    assert len(runtime._chunks) <= CHUNK_CACHE_SIZE


# TSP-Link


def test_the_master_reaches_its_nodes(smu):
    reply = ask(smu, "print(node[2].model, node[3].smub.source.levelv, node[4].model)")
    assert reply == ["2636B\t0.00000e+00\t707B"]


def test_node_1_and_localnode_are_the_master(smu):
    assert ask(smu, "print(node[1] == localnode, localnode.model)") == ["true\t2636B"]
    assert ask(smu, "print(tsplink.state, localnode.linefreq)") == [
        "online\t6.00000e+01"
    ]


def test_a_setting_on_a_node_reaches_that_instrument(smu, bench):
    ask(smu, "node[3].smub.source.levelv = 0.25")
    assert bench.source("smu3.smub").level_v == 0.25
    assert bench.source("smu1.smub").level_v == 0.0


def test_a_nodes_errors_go_to_the_masters_queue_with_the_node(smu):
    ask(smu, "node[2].smua.source.limiti = 50")
    code, message, _, node = ask(smu, "print(errorqueue.next())")[0].split("\t")
    assert float(code) == -222
    assert "smua.source.limiti" in message
    assert float(node) == 2


def test_time_spent_on_a_node_is_charged_to_the_bench_clock(smu, bench):
    before = bench.now_s
    ask(smu, "node[2].smua.measure.nplc = 10 x = node[2].smua.measure.i()")
    assert bench.now_s - before >= 10 / 60


def test_reset_resets_the_nodes_too(smu, bench):
    ask(smu, "node[2].smua.source.levelv = 1 reset()")
    assert bench.source("smu2.smua").level_v == 0.0


def test_a_memory_bomb_is_stopped(smu):
    assert ask(smu, 'x = string.rep("x", 1e9)') == []
    ((code, message),) = errors(smu)
    assert code == RUNTIME_ERROR
    assert "memory" in message
    assert ask(smu, "print(1)") == ["1.00000e+00"]
