"""Fuzzing the SCPI and TSP front ends: they never raise, never hang, and every
reply is well formed (a str with no line feed, or a binary ``#0`` block).

Messages are raw text, token soup from each language's vocabulary, and (for
SCPI) headers built from the instrument's own command patterns with random
forms, cases, suffixes and parameters. The short runs are in the default
suite; ``-m slow`` sends at least 100 000 messages to each front end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.bench import Bench

BENCHES = Path(__file__).resolve().parents[2] / "data" / "benches"
SLOW_MESSAGES = 100_000

LATIN1 = st.characters(max_codepoint=255)
RAW = st.text(alphabet=LATIN1, max_size=80)

SCPI_PARAMS = [
    "1",
    "0",
    "-1",
    "2.5",
    "-1.5e-3",
    "1e-12",
    "1e999",
    "-1e999",
    "9.9e37",
    "NAN",
    "INF",
    "MAX",
    "MIN",
    "DEF",
    "UP",
    "DOWN",
    "ON",
    "OFF",
    "VOLT",
    "CURR",
    '"VOLT"',
    '"CURR"',
    '"RES"',
    "'x'",
    '"unterminated',
    "(@1)",
    "(@1:2)",
    "#H1F",
    "#B101",
    "#Q7",
    "#12ab",
    "#0xyz",
    "1 V",
    "2mA",
    "5 kOhm",
    "",
    ",",
    "  ",
    "LIN",
    "LOG",
    "LIST",
    "BEST",
    "FIX",
    "AUTO",
    "ONCE",
    "1,2,3",
    "-0",
    "+.5",
    ".",
    "e3",
    "0x10",
    "1.2.3",
]
SCPI_SOUP = [
    ":",
    ";",
    ",",
    "?",
    "*",
    " ",
    "*IDN?",
    "*RST",
    "*CLS",
    "*OPC?",
    "*OPC",
    "*ESR?",
    "*ESE 255",
    "*STB?",
    "*SRE 16",
    "*WAI",
    "*TRG",
    "*TST?",
    ":SYST:ERR?",
    ":SYST:ERR:COUN?",
    ":STAT:PRES",
    ":OUTP ON",
    ":OUTP OFF",
    ":READ?",
    ":MEAS:CURR?",
    ":INIT",
    ":FETC?",
    ":TRAC:DATA?",
    ":ABOR",
    "\t",
    "\r",
    "\x00",
    "\xff",
    "\\",
]
TSP_SOUP = [
    "smua",
    "smub",
    "node[2]",
    "node[3]",
    "node[4]",
    "node[9]",
    "localnode",
    ".",
    "source",
    "measure",
    "levelv",
    "leveli",
    "limiti",
    "limitv",
    "output",
    "func",
    "OUTPUT_ON",
    "OUTPUT_OFF",
    "nplc",
    "i()",
    "v()",
    "iv()",
    "reset()",
    "nvbuffer1",
    "readings",
    "clear()",
    "channel",
    "close",
    "open",
    "exclusiveclose",
    "getclose",
    '("1A01")',
    '("allslots")',
    '("1A01,1B02")',
    '("slot1")',
    "print(",
    "print",
    "(",
    ")",
    "=",
    "==",
    " ",
    ",",
    ";",
    "1",
    "0",
    "-1",
    "0.5",
    "1e9",
    "-1e-9",
    "1e400",
    "0/0",
    "nil",
    "true",
    "false",
    "'x'",
    '"y"',
    "[[z]]",
    "{",
    "}",
    "[",
    "]",
    "..",
    "#",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "local",
    "x",
    "y",
    "function",
    "return",
    "end",
    "if",
    "then",
    "else",
    "for",
    "i",
    "do",
    "in",
    "pairs",
    "ipairs",
    "tostring",
    "tonumber",
    "type",
    "select",
    "error",
    "assert",
    "pcall",
    "string",
    "table",
    "math",
    "rep",
    "format",
    "find",
    "gsub",
    "concat",
    "unpack",
    "errorqueue",
    "errorqueue.next()",
    "errorqueue.count",
    "errorqueue.clear()",
    "format.data",
    "format.REAL32",
    "format.ASCII",
    "format.asciiprecision",
    "printbuffer",
    "printnumber",
    "SweepVLinMeasureI(smua, 0, 1, 0, 10)",
    "SweepVListMeasureI(smua, {0, 0.1}, 0, 2)",
    "PulseVMeasureI(smua, 0, 1, 1e-3, 1e-3, 5)",
    "printbuffer(1, 10, smua.nvbuffer1.readings)",
    "delay(0.01)",
    "timer.reset()",
    "timer.measure.t()",
    "waitcomplete()",
    "tsplink.state",
    "display",
    "beeper",
    "loadscript s",
    "loadandrunscript",
    "endscript",
    "s()",
    "*IDN?",
    "*RST",
    "*CLS",
    "*OPC?",
    "--",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\xff",
    "os",
    "io",
    "require",
    "debug",
    "load",
    "_G",
    "python",
    "_state",
    "_instrument",
]


def soup(tokens: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens), max_size=14).map("".join)


def _parse(pattern: str, at: int = 0) -> tuple[list, int]:
    """A command pattern as nested parts: text, or a list for [optional] parts."""
    parts: list = []
    text = ""
    while at < len(pattern):
        char = pattern[at]
        if char == "[":
            if text:
                parts.append(text)
                text = ""
            inner, at = _parse(pattern, at + 1)
            parts.append(inner)
        elif char == "]":
            break
        else:
            text += char
        at += 1
    if text:
        parts.append(text)
    return parts, at


def _mnemonic(word: str, draw) -> str:
    """A mnemonic in its long or short form, in any case, with a suffix."""
    short = "".join(c for c in word if not c.islower())
    form = draw(st.sampled_from([word, short, word.upper(), short.lower(), word[:2]]))
    return form + draw(st.sampled_from(["", "", "1", "2", "0", "99"]))


@st.composite
def headers(draw, patterns: list[str]) -> str:
    parts, _ = _parse(draw(st.sampled_from(patterns)))

    def expand(items: list) -> str:
        out = ""
        for item in items:
            if isinstance(item, list):
                if draw(st.booleans()):
                    out += expand(item)
            else:
                out += re.sub(r"[A-Za-z]+", lambda m: _mnemonic(m.group(0), draw), item)
        return out

    header = expand(parts)
    params = draw(st.lists(st.sampled_from(SCPI_PARAMS), max_size=3))
    return header + (" " + ",".join(params) if params else "")


def scpi_messages(instrument) -> st.SearchStrategy[str]:
    patterns = [
        c.pattern for c in [*instrument.commands(), *instrument.builtin_commands()]
    ]
    unit = st.one_of(headers(patterns), soup(SCPI_SOUP), RAW)
    return st.one_of(unit, st.lists(unit, min_size=2, max_size=4).map(";".join))


def tsp_messages() -> st.SearchStrategy[str]:
    return st.one_of(soup(TSP_SOUP), RAW)


def well_formed(reply: object) -> bool:
    if not isinstance(reply, str):
        return False
    return reply.startswith("#0") or "\n" not in reply


class FrontEnd:
    """One simulated instrument and the messages sent to it."""

    def __init__(self, bench_file: str, resource: str) -> None:
        self.bench = Bench.from_file(BENCHES / bench_file)
        self.instrument = self.bench.resource(resource)
        self.sent = 0

    def send(self, message: str) -> list[str]:
        self.instrument.write(message)
        self.sent += 1
        replies = []
        while (reply := self.instrument.read()) is not None:
            assert well_formed(reply), repr(reply)[:200]
            replies.append(reply)
            assert len(replies) < 10_000
        return replies

    def still_serving(self, tsp: bool) -> None:
        if tsp:
            self.send("endscript")  # ends a script a message may have begun to load
        self.instrument.clear()
        assert self.send("*IDN?") == [self.instrument.identity]


def fuzz(
    front: FrontEnd,
    messages: st.SearchStrategy[str],
    tsp: bool,
    examples: int,
    per_example: int,
    derandomize: bool,
) -> int:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    @given(st.lists(messages, min_size=per_example // 2, max_size=per_example))
    def run(batch: list[str]) -> None:
        for message in batch:
            front.send(message)
        front.still_serving(tsp)

    run()
    return front.sent


SCPI_FRONTS = [
    ("k2450-sim.yaml", "GPIB0::18::INSTR"),
    ("k2400-sim.yaml", None),
    ("b2902a-sim.yaml", None),
]


def scpi_front(bench_file: str, resource: str | None) -> FrontEnd:
    if resource is None:
        bench = Bench.from_file(BENCHES / bench_file)
        resource = next(
            r for r in bench.resources() if not hasattr(bench.resource(r), "runtime")
        )
    return FrontEnd(bench_file, resource)


@pytest.mark.parametrize(("bench_file", "resource"), SCPI_FRONTS)
def test_the_scpi_front_end_survives_fuzzing(bench_file, resource):
    front = scpi_front(bench_file, resource)
    sent = fuzz(
        front,
        scpi_messages(front.instrument),
        tsp=False,
        examples=150,
        per_example=12,
        derandomize=True,
    )
    assert sent >= 150


def test_the_tsp_front_end_survives_fuzzing():
    front = FrontEnd("demo.yaml", "GPIB0::26::INSTR")
    sent = fuzz(
        front, tsp_messages(), tsp=True, examples=150, per_example=12, derandomize=True
    )
    assert sent >= 150


@pytest.mark.slow
def test_the_scpi_front_end_survives_a_long_fuzzing():
    sent = 0
    for bench_file, resource in SCPI_FRONTS:
        front = scpi_front(bench_file, resource)
        sent += fuzz(
            front,
            scpi_messages(front.instrument),
            tsp=False,
            examples=800,
            per_example=60,
            derandomize=False,
        )
    print(f"SCPI front end: {sent} messages")
    assert sent >= SLOW_MESSAGES


@pytest.mark.slow
def test_the_tsp_front_end_survives_a_long_fuzzing():
    front = FrontEnd("demo.yaml", "GPIB0::26::INSTR")
    sent = fuzz(
        front,
        tsp_messages(),
        tsp=True,
        examples=2400,
        per_example=60,
        derandomize=False,
    )
    print(f"TSP front end: {sent} messages")
    assert sent >= SLOW_MESSAGES
