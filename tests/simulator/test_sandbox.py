"""The TSP sandbox: hostile scripts are stopped with the instrument's own error
(queued in ``errorqueue``, no reply, as on a 2600B) and the instrument keeps
serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.bench import Bench
from simulator.tsp import (
    HIGH_WATER_BYTES,
    INPUT_OVERRUN,
    MESSAGE_LIMIT_CHARS,
    RUNTIME_ERROR,
)
from tests.simulator.tsp_talk import ask

DEMO = Path(__file__).resolve().parents[2] / "data" / "benches" / "demo.yaml"


@pytest.fixture(scope="module")
def smu():
    return Bench.from_file(DEMO).resource("GPIB0::26::INSTR")


def queued(instrument):
    """The error queue, emptied: (code, message) pairs."""
    count = int(float(ask(instrument, "print(errorqueue.count)")[0]))
    entries = []
    for _ in range(count):
        code, message, *_ = ask(instrument, "print(errorqueue.next())")[0].split("\t")
        entries.append((int(float(code)), message))
    return entries


def serving(instrument):
    assert ask(instrument, "print(1 + 1, smua.source.levelv)") == [
        "2.00000e+00\t0.00000e+00"
    ]
    assert ask(instrument, "*IDN?") == [instrument.identity]


ESCAPES = [
    ("io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"),
    ("io.popen('ls')", "global 'io'"),
    ("os.execute('ls')", "attempt to index a nil value (global 'os')"),
    ("os.exit(1)", "global 'os'"),
    ("require('os')", "attempt to call a nil value (global 'require')"),
    ("load('return 1')()", "attempt to call a nil value (global 'load')"),
    ("loadstring('x = 1')()", "global 'loadstring'"),
    ("dofile('/etc/passwd')", "global 'dofile'"),
    ("loadfile('/etc/passwd')", "global 'loadfile'"),
    ("debug.getinfo(1)", "attempt to index a nil value (global 'debug')"),
    ("debug.sethook()", "global 'debug'"),
    ("package.loaded.os.exit()", "global 'package'"),
    ("getmetatable('').__index.dump(print)", "global 'getmetatable'"),
    ("('').dump(print)", "attempt to call a nil value (field 'dump')"),
    ("string.dump(print)", "field 'dump'"),
    ("collectgarbage('stop')", "global 'collectgarbage'"),
    ("setmetatable({}, {__gc = print})", "global 'setmetatable'"),
    ("coroutine.wrap(print)()", "global 'coroutine'"),
    ("python.eval('1')", "global 'python'"),
    ("_G.os.exit()", "attempt to index a nil value (field 'os')"),
    ("smua._smu.bench.now_s = 0", "_smu"),
]


@pytest.mark.parametrize(("script", "expected"), ESCAPES, ids=[s for s, _ in ESCAPES])
def test_a_way_out_of_the_sandbox_is_a_runtime_error(smu, script, expected):
    assert ask(smu, script) == []
    ((code, message),) = queued(smu)
    assert code == RUNTIME_ERROR
    assert message.startswith("TSP Runtime error")
    assert expected in message
    serving(smu)


BOMBS = [
    ("x = string.rep('x', 1e9)", "not enough memory"),
    ("x = ('x'):rep(2^31)", "resulting string too large"),
    ("x = string.rep('ab', 1e8, 'cd')", "not enough memory"),
    ("local s = 'x' while true do s = s .. s end", "not enough memory"),
    ("t = {} for i = 1, 1e9 do t[i] = i end", "not enough memory"),
    ("t = {} while true do t[#t + 1] = {} end", "not enough memory"),
    (
        "t = {} for i = 1, 1e9 do t[i] = string.rep('y', 1e4) .. i end",
        "not enough memory",
    ),
    (
        "local t = {} t[1] = t for i = 2, 1e9 do t[i] = {t[i - 1]} end",
        "not enough memory",
    ),
    ("while true do end", "instruction budget exceeded"),
    ("repeat until false", "instruction budget exceeded"),
    ("for i = 1, math.huge do end", "instruction budget exceeded"),
    ("::top:: goto top", "instruction budget exceeded"),
    ("local function f() return f() end f()", "instruction budget exceeded"),
    ("while true do pcall(function() while true do end end) end", "budget exceeded"),
    # the stack or the message's memory ends first
    ("local function f() return 1 + f() end f()", "stack overflow|not enough memory"),
    (
        "print(string.find(string.rep('a', 5000), string.rep('.-', 12) .. 'b'))",
        "pattern too complex for a string of 5000 characters",
    ),
    (
        "print((string.rep('a', 3000)):match(string.rep('a*', 8) .. 'b'))",
        "pattern too complex",
    ),
    (
        "for w in string.rep('ab', 4000):gmatch('.-.-.-.-x') do end",
        "pattern too complex",
    ),
    (
        "x = string.gsub(string.rep('a', 9000), '(.-)(.-)(.-)b', '%1')",
        "pattern too complex",
    ),
]


@pytest.mark.parametrize(("script", "expected"), BOMBS, ids=[s for s, _ in BOMBS])
def test_a_bomb_is_stopped_and_the_instrument_serves_on(smu, script, expected):
    assert ask(smu, script) == []
    ((code, message),) = queued(smu)
    assert code == RUNTIME_ERROR
    assert any(text in message for text in expected.split("|"))
    serving(smu)


def test_ordinary_patterns_and_long_plain_searches_still_work(smu):
    assert ask(smu, "print(string.find('smua 12.5 V', '%d+%.%d+'))") == [
        "6.00000e+00\t9.00000e+00"
    ]
    assert ask(smu, "print(string.rep('a', 1e6):find('b', 1, true))") == ["nil"]
    assert ask(smu, "print(('1A01,1B02'):gsub(',', ';'))") == ["1A01;1B02\t1.00000e+00"]


def test_a_failed_message_keeps_the_variables_of_others(smu):
    ask(smu, "kept = 42")
    ask(smu, "local s = 'x' while true do s = s .. s end")
    assert queued(smu)[0][1].endswith("not enough memory")
    assert ask(smu, "print(kept)") == ["4.20000e+01"]


def test_a_full_sandbox_frees_what_messages_made_and_serves_on():
    smu = Bench.from_file(DEMO).resource("GPIB0::26::INSTR")
    ask(smu, "kept = 42")
    for k in range(3):  # a message that fills the state
        ask(
            smu,
            f"b{k} = {{}} for i = 1, 1e9 do b{k}[i] = string.rep('z', 1e5) .. i end",
        )
    assert all(code == RUNTIME_ERROR for code, _ in queued(smu))
    assert smu.runtime._lua.get_memory_used() < HIGH_WATER_BYTES
    assert ask(smu, "print(kept, b0)") == ["nil\tnil"]  # freed
    serving(smu)
    assert ask(smu, "smua.source.levelv = 0.1 print(smua.source.levelv)") == [
        "1.00000e-01"
    ]


def test_a_line_feed_in_printed_text_ends_a_reply_line(smu):
    assert ask(smu, "print('a\\nb', 1)") == ["a", "b\t1.00000e+00"]


def test_a_message_longer_than_the_input_buffer_is_refused(smu):
    assert ask(smu, "x = 1 --" + "-" * MESSAGE_LIMIT_CHARS) == []
    ((code, message),) = queued(smu)
    assert code == INPUT_OVERRUN
    for line in ("loadscript big", *["-- " + "x" * 100_000] * 12, "endscript"):
        ask(smu, line)
    assert [code for code, _ in queued(smu)] == [INPUT_OVERRUN]
    assert ask(smu, "print(big)") == ["nil"]
    serving(smu)


# The long run: every way out, by every path to a name.

FORBIDDEN = ("io", "os", "require", "load", "loadstring", "dofile", "loadfile",
             "debug", "package", "getmetatable", "setmetatable", "collectgarbage",
             "coroutine", "rawget", "rawset", "rawequal", "python", "_smu")
REACHES = ("{name}", "_G.{name}", "_G['{name}']", "_G[('{name}'):lower()]",
           "_ENV and _ENV.{name}", "smua.{name}", "node[2].{name}",
           "string.{name}", "math.{name}", "table.{name}", "(_G or {{}}).{name}")


@pytest.mark.slow
def test_every_path_to_a_forbidden_name_finds_nothing_and_bombs_are_stopped():
    smu = Bench.from_file(DEMO).resource("GPIB0::26::INSTR")
    attempts = 0
    for name in FORBIDDEN:
        for reach in REACHES:
            found = reach.format(name=name)
            ask(smu, f"probe = nil probe = {found}")
            queued(smu)  # an error or none: either way it must find nothing
            assert ask(smu, "print(probe == nil)") == ["true"], found
            attempts += 1
    for script, _ in ESCAPES:
        assert ask(smu, script) == []
        assert [code for code, _ in queued(smu)] == [RUNTIME_ERROR], script
        attempts += 1
    bombs = 0
    for script, _ in BOMBS:
        assert ask(smu, script) == []
        assert [code for code, _ in queued(smu)] == [RUNTIME_ERROR], script
        bombs += 1
    serving(smu)
    print(f"Lua sandbox: {attempts} escape attempts found nothing, {bombs} memory "
          "and instruction bombs stopped; the instrument served after each")
