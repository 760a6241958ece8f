"""Simulated Keithley 2450 SourceMeter in its native SCPI command set.

The one output ``smu`` sources voltage or current on the bench and measures
the function ``:SENS:FUNC`` names. Readings go to reading buffers
(``defbuffer1``, ``defbuffer2`` and those ``:TRAC:MAKE`` makes) and are sent
with the buffer elements asked for (``READ``, ``SOUR``, ``REL``, ...).
Sweeps (``:SOUR:SWE:<function>:LIN``, ``:LIN:STEP``, ``:LIST``, ``:LOG``)
and ``:TRIG:LOAD "SimpleLoop"`` build the trigger model that ``:INIT`` runs,
charging every source delay and integration to the bench clock. Outside a
sweep, a reading after the source changed (level, function or output) waits
the source delay first.

``docs/simulator.md`` lists what is simulated and what is not.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from simulator.instruments._smu import (
    DATA_STALE,
    NOT_MEASURED,
    OVERFLOW,
    SETTINGS_CONFLICT,
    OnOffOnce,
    Ranging,
    SimulatedSmu,
    SmuChannel,
    SmuRating,
    extend_list,
    linear_levels,
    log_levels,
    out_of_range,
    setting,
    source_list_commands,
    statistic,
    step_points,
)
from simulator.scpi import (
    ILLEGAL_PARAMETER_VALUE,
    NUMBER,
    STRING,
    Boolean,
    Choice,
    Command,
    EventRegister,
    ListOf,
    Number,
    Raw,
    ScpiError,
    String,
    Token,
    error_reply_2450,
    nr3_formatter,
    quote,
)

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.k2450")

IDENTITY = "KEITHLEY INSTRUMENTS,MODEL 2450,04365704,1.6.4c"
"""The ``*IDN?`` reply."""

RATING = SmuRating(
    v_ranges_v=(0.02, 0.2, 2.0, 20.0, 200.0),
    i_ranges_a=(1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0),
    i_source_ranges_a=(1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0),
    r_ranges_ohm=(20.0, 200.0, 2e3, 2e4, 2e5, 2e6, 2e7, 2e8),
    headroom=1.05,
)
"""Ranges of the 2450: 20 mV to 200 V, 10 nA to 1 A, 20 ohm to 200 Mohm."""

DEFAULT_LIMIT_A = 1.05e-4
"""Current limit after reset, A."""

DEFAULT_LIMIT_V = 21.0
"""Voltage limit after reset, V."""

LIMIT_A = (1e-9, 1.05)
"""Range of ``:SOUR:VOLT:ILIM``, A."""

LIMIT_V = (0.02, 210.0)
"""Range of ``:SOUR:CURR:VLIM``, V."""

MIN_LIMIT_OF_RANGE = 1e-3
"""With a fixed current range the current limit must exceed this part of it."""

NPLC = (0.01, 10.0)
"""Integration time range, power-line cycles."""

DEFAULT_BUFFERS = ("defbuffer1", "defbuffer2")
"""The reading buffers that always exist."""

DEFAULT_BUFFER_SIZE = 100_000
"""Capacity of a default buffer after reset, readings."""

MIN_BUFFER_SIZE = 10
"""Smallest capacity of a buffer, readings."""

MAX_BUFFER_SIZE = 11_000_000
"""Largest capacity of a buffer, readings."""

LIST_VALUES_PER_COMMAND = 100
"""Most values one ``:SOUR:LIST:<function>`` command carries."""

MAX_LIST_POINTS = 2500
"""Most points of a source list."""

MAX_SWEEP_POINTS = 1_000_000
"""Most points of a linear or log sweep."""

MAX_SWEEP_COUNT = 268_435_455
"""Most repetitions of a sweep."""

MAX_DELAY_S = 10_000.0
"""Longest source or sweep delay, s."""

BUFFER_EXISTS = 1115
"""Event of ``:TRAC:MAKE`` with a name already in use (from the 2461)."""

ERRORS = {
    -222: "Parameter data out of range",
    BUFFER_EXISTS: "Parameter error, buffer name already exists",
}

ELEMENTS = (
    "DATE|FORMatted|FRACtional|READing|RELative|SEConds|SOURce|SOURFORMatted"
    "|SOURSTATus|SOURUNIT|STATus|TIME|TSTamp|UNIT"
)
"""The buffer elements ``:READ?``, ``:FETC?`` and ``:TRAC:DATA?`` send."""

MAX_ELEMENTS = 14
"""Most elements in one request."""

# Bits of the STATus element and the SOURSTATus element (unverified layout).
STATUS_QUESTIONABLE = 0x01
STATUS_REAR_TERMINALS = 0x08
SOURCE_STATUS_LIMIT = 0x01
SOURCE_STATUS_READBACK = 0x02

_UNITS = {"CURR:DC": "Amp DC", "VOLT:DC": "Volt DC", "RES": "Ohm"}
_SYMBOLS = {"CURR:DC": "A", "VOLT:DC": "V", "RES": "Ohm"}
_PREFIXES = (
    (1e-12, "p"),
    (1e-9, "n"),
    (1e-6, "u"),
    (1e-3, "m"),
    (1.0, ""),
    (1e3, "k"),
    (1e6, "M"),
)


@dataclass
class Entry:
    """One reading in a buffer.

    Attributes
    ----------
    reading : float
        The reading of the measure function (A, V or ohm), or the overflow code.
    source : float
        The source value: the measured one with readback on, else the
        programmed level.
    time_s : float
        When the reading ended, s since the Unix epoch (instrument clock).
    function : str
        The measure function, ``"CURR:DC"``, ``"VOLT:DC"`` or ``"RES"``.
    source_function : str
        ``"VOLT:DC"`` or ``"CURR:DC"``.
    status, source_status : int
        The STATus and SOURSTATus bits.
    limited : bool
        Whether the source was at its limit.
    """

    reading: float
    source: float
    time_s: float
    function: str
    source_function: str
    status: int
    source_status: int
    limited: bool


class ReadingBuffer:
    """A reading buffer of the 2450.

    Parameters
    ----------
    name : str
        The buffer's name.
    size : int
        Capacity, readings.
    style : str
        ``STAN``, ``FULL``, ``WRIT`` or ``FULLWRIT``.
    """

    def __init__(self, name: str, size: int, style: str = "STAN") -> None:
        self.name = name
        self.style = style
        self.continuous = True
        self.size = size
        self.entries: deque[Entry] = deque(maxlen=size)
        self.statistics_from = 0

    def resize(self, size: int) -> None:
        """Change the capacity; the buffer is cleared."""
        self.size = size
        self.entries = deque(maxlen=size)
        self.statistics_from = 0

    def clear(self) -> None:
        """Drop every reading."""
        self.entries.clear()
        self.statistics_from = 0

    def append(self, entry: Entry) -> None:
        """Store a reading; a full buffer drops its oldest (fill mode CONT)
        or keeps what it holds (ONCE)."""
        if not self.continuous and len(self.entries) == self.size:
            return
        if len(self.entries) == self.size and self.statistics_from:
            self.statistics_from -= 1
        self.entries.append(entry)

    def readings(self) -> list[float]:
        """The readings the statistics use (those since the last clear)."""
        return [e.reading for e in list(self.entries)[self.statistics_from :]]


class MeasureFunction:
    """The settings of one measure function: range, integration, sense, filter.

    Parameters
    ----------
    name : str
        ``"CURR:DC"``, ``"VOLT:DC"`` or ``"RES"``.
    ranges : sequence of float
        Its measure ranges, lowest first.
    default_range : float
        The range after reset.
    """

    def __init__(self, name: str, ranges: Sequence[float], default_range: float):
        self.name = name
        self.ranging = Ranging(ranges, RATING.headroom, default_range)
        self.reset()

    def reset(self) -> None:
        """Defaults after ``*RST``."""
        self.ranging.reset()
        self.upper_limit = self.ranging.ranges[-1]
        self.nplc = 1.0
        self.remote = False
        self.autozero = True
        self.offset_compensated = False
        self.filter_on = False
        self.filter_count = 10
        self.filter_control = "REP"
        self.window: deque[float] = deque(maxlen=self.filter_count)


@dataclass
class SweepModel:
    """The trigger model a ``:SOUR:SWE`` command builds."""

    volts: bool
    levels: list[float]
    delay_s: float
    count: int
    fail_abort: bool
    buffer: str


@dataclass
class LoopModel:
    """The ``SimpleLoop`` trigger model: readings at the present source level."""

    count: int
    delay_s: float
    buffer: str


class K2450(SimulatedSmu):
    """A simulated Keithley 2450 in SCPI mode.

    Parameters
    ----------
    name : str
        The instrument's name in the station file (``"smu2"``).
    model : str
        ``"2450"``.
    bench : Bench
        The bench it works on.
    """

    def __init__(self, name: str, model: str, bench: Bench) -> None:
        if model != "2450":
            raise ValueError(f"{name}: {model} is not a 2450")
        super().__init__(
            name,
            model,
            bench,
            IDENTITY,
            number_format=nr3_formatter(plus_sign=False),
            error_format=error_reply_2450,
            error_messages=ERRORS,
        )
        self.smu = SmuChannel(self, "smu", RATING)
        self.functions = {
            "CURR:DC": MeasureFunction("CURR:DC", RATING.i_ranges_a, 1e-4),
            "VOLT:DC": MeasureFunction("VOLT:DC", RATING.v_ranges_v, 20.0),
            "RES": MeasureFunction("RES", RATING.r_ranges_ohm, 2e5),
        }
        self.operation = self.add_register(EventRegister("operation", 7))
        self.questionable = self.add_register(EventRegister("questionable", 3))
        self.language = "SCPI"
        self.reset()

    # Settings.

    def reset(self) -> None:
        """``*RST``: defaults, output off, user buffers deleted."""
        self.smu.set_source(
            output=False,
            volts=True,
            level_v=0.0,
            level_a=0.0,
            limit_v=DEFAULT_LIMIT_V,
            limit_a=DEFAULT_LIMIT_A,
        )
        self.smu.v_source.reset()
        self.smu.i_source.reset()
        for function in self.functions.values():
            function.reset()
        self.sense_function = "CURR:DC"
        self.count = 1
        self.delay_s = {True: 0.0, False: 0.0}
        self.delay_auto = {True: True, False: True}
        self.readback = {True: True, False: True}
        self.off_mode = {True: "NORM", False: "NORM"}
        self.source_list: dict[bool, list[float]] = {True: [], False: []}
        self.trigger_model: SweepModel | LoopModel | None = None
        self.terminals = "FRON"
        self.precision = 0
        self.number_format = nr3_formatter(plus_sign=False)
        self.buffers = {
            name: ReadingBuffer(name, DEFAULT_BUFFER_SIZE) for name in DEFAULT_BUFFERS
        }

    def commands(self) -> list[Command]:
        return [
            Command(
                ":SOURce[1]:FUNCtion[:MODE]",
                set=lambda _, f: self.smu.set_source(volts=f == "VOLT"),
                query=lambda _: "VOLT" if self.smu.volts else "CURR",
                params=[Choice("VOLTage|CURRent")],
            ),
            Command(
                ":SOURce[1]:VOLTage:ILIMit[:LEVel]",
                set=lambda _, a: self._set_current_limit(a),
                query=lambda _: self.smu.state.limit_a,
                params=[Number(*LIMIT_A, default=DEFAULT_LIMIT_A)],
            ),
            Command(
                ":SOURce[1]:VOLTage:ILIMit[:LEVel]:TRIPped?",
                query=lambda _: self.smu.volts and self.smu.compliance,
            ),
            Command(
                ":SOURce[1]:CURRent:VLIMit[:LEVel]",
                set=lambda _, v: self.smu.set_source(limit_v=v),
                query=lambda _: self.smu.state.limit_v,
                params=[Number(*LIMIT_V, default=DEFAULT_LIMIT_V)],
            ),
            Command(
                ":SOURce[1]:CURRent:VLIMit[:LEVel]:TRIPped?",
                query=lambda _: not self.smu.volts and self.smu.compliance,
            ),
            setting(
                "[:SENSe[1]]:FUNCtion[:ON]",
                lambda _: self,
                "sense_function",
                Choice("CURRent[:DC]|VOLTage[:DC]|RESistance", quoted=True),
                reply=quote,
            ),
            setting(
                "[:SENSe[1]]:COUNt",
                lambda _: self,
                "count",
                Number(1, 300_000, integer=True, default=1),
            ),
            Command(
                ":OUTPut[1][:STATe]",
                set=lambda _, on: self.smu.set_source(output=on),
                query=lambda _: self.smu.output,
                params=[Boolean()],
            ),
            *self._source_commands(True, "VOLTage", RATING.max_voltage_v),
            *self._source_commands(False, "CURRent", RATING.max_current_a),
            *self._sense_commands("CURR:DC", "CURRent[:DC]"),
            *self._sense_commands("VOLT:DC", "VOLTage[:DC]"),
            *self._sense_commands("RES", "RESistance"),
            setting(
                "[:SENSe[1]]:RESistance:OCOMpensated",
                lambda _: self.functions["RES"],
                "offset_compensated",
                Boolean(),
            ),
            *self._reading_commands(),
            *self._buffer_commands(),
            Command(
                ":TRIGger:LOAD",
                set=self._load,
                params=[String(), ListOf(Raw(), min_count=0)],
            ),
            Command(":INITiate[:IMMediate]", set=self._initiate),
            Command(":ABORt", set=lambda: None),
            Command(
                ":SYSTem:BEEPer[:IMMediate]",
                set=lambda f, t: log.debug("%s: beep %g Hz %g s", self.name, f, t),
                params=[Number(20, 8000), Number(0.001, 100)],
            ),
            Command(":SYSTem:LFRequency?", query=lambda: int(self.line_frequency_hz)),
            Command(":SYSTem:ERRor:CLEar", set=self.errors.clear),
            Command(
                "*LANG",
                set=self._set_language,
                query=lambda: self.language,
                params=[Raw()],
            ),
            setting(
                ":ROUTe:TERMinals", lambda: self, "terminals", Choice("FRONt|REAR")
            ),
            Command(
                ":FORMat:ASCii:PRECision",
                set=self._set_precision,
                query=lambda: self.precision,
                params=[Number(0, 16, integer=True, default=0)],
            ),
            Command(
                ":FORMat[:DATA]",
                set=lambda _: None,
                query=lambda: "ASC",
                params=[Choice("ASCii")],
            ),
            Command(":STATus:CLEar", set=self.clear_status),
            *self.operation.commands(":STATus:OPERation"),
            *self.questionable.commands(":STATus:QUEStionable"),
        ]

    def _source_commands(self, volts: bool, node: str, top: float) -> list[Command]:
        source = f":SOURce[1]:{node}"
        ranging = self.smu.source_ranging(volts)
        return [
            Command(
                f"{source}[:LEVel][:IMMediate][:AMPLitude]",
                set=lambda _, x: self.smu.program_level(volts, x),
                query=lambda _: self.smu.level(volts),
                params=[Number(-top, top, default=0.0)],
            ),
            Command(
                f"{source}:RANGe",
                set=lambda _, x: ranging.select(x, f"{self.smu.key} source range"),
                query=lambda _: ranging.range,
                params=[Number(-top, top, default=ranging.default)],
            ),
            Command(
                f"{source}:RANGe:AUTO",
                set=lambda _, on: setattr(ranging, "auto", on),
                query=lambda _: ranging.auto,
                params=[Boolean()],
            ),
            Command(
                f"{source}:DELay",
                set=lambda _, s: self._set_delay(volts, s),
                query=lambda _: self.delay_s[volts],
                params=[Number(0.0, MAX_DELAY_S, default=0.0)],
            ),
            Command(
                f"{source}:DELay:AUTO",
                set=lambda _, on: self.delay_auto.__setitem__(volts, on),
                query=lambda _: self.delay_auto[volts],
                params=[Boolean()],
            ),
            Command(
                f"{source}:READ:BACK",
                set=lambda _, on: self.readback.__setitem__(volts, on),
                query=lambda _: self.readback[volts],
                params=[Boolean()],
            ),
            Command(
                f":OUTPut[1]:{node}:SMODe",
                set=lambda _, mode: self.off_mode.__setitem__(volts, mode),
                query=lambda _: self.off_mode[volts],
                params=[Choice("HIMPedance|NORMal|ZERO|GUARd")],
            ),
            *source_list_commands(
                ":SOURce[1]", node, lambda _: self.source_list,
                lambda _, xs, append: self._load_list(volts, xs, append),
                volts, Number(-top, top),
            ),
            *self._sweep_commands(volts, f":SOURce[1]:SWEep:{node}", top),
        ]

    def _sweep_commands(self, volts: bool, head: str, top: float) -> list[Command]:
        level = Number(-top, top)
        tail = [
            Number(-1.0, MAX_DELAY_S, omitted=-1.0),
            Number(0, MAX_SWEEP_COUNT, integer=True, omitted=1),
            Choice("AUTO|BEST|FIXed", omitted="BEST"),
            Boolean(omitted=True),
            Boolean(omitted=False),
            String(omitted=DEFAULT_BUFFERS[0]),
        ]
        points = Number(2, MAX_SWEEP_POINTS, integer=True)
        return [
            Command(
                f"{head}:LINear",
                set=lambda _, a, b, n, *rest: self._sweep(
                    volts, linear_levels(a, b, n), *rest
                ),
                params=[level, level, points, *tail],
            ),
            Command(
                f"{head}:LINear:STEP",
                set=lambda _, a, b, step, *rest: self._sweep(
                    volts, self._step_levels(a, b, step), *rest
                ),
                params=[level, level, Number(0.0, 2 * top), *tail],
            ),
            Command(
                f"{head}:LIST",
                set=lambda _, first, delay, count, abort, buf: self._sweep(
                    volts,
                    self._listed(volts, first),
                    delay,
                    count,
                    "FIX",
                    abort,
                    False,
                    buf,
                ),
                params=[
                    Number(1, MAX_LIST_POINTS, integer=True),
                    tail[0],
                    tail[1],
                    tail[3],
                    tail[5],
                ],
            ),
            Command(
                f"{head}:LOG",
                set=lambda _, a, b, n, delay, count, kind, abort, dual, buf, asym: (
                    self._sweep(
                        volts,
                        log_levels(a, b, n, asym),
                        delay,
                        count,
                        kind,
                        abort,
                        dual,
                        buf,
                    )
                ),
                params=[level, level, points, *tail, Number(-top, top, omitted=0.0)],
            ),
        ]

    def _sense_commands(self, name: str, node: str) -> list[Command]:
        function = self.functions[name]
        ranging = function.ranging
        what = f"{self.smu.key} {name} range"
        head = f"[:SENSe[1]]:{node}"
        top = ranging.ranges[-1]

        def owner(*_: object) -> MeasureFunction:
            return function

        return [
            Command(
                f"{head}:RANGe[:UPPer]",
                set=lambda _, x: self._set_range(function, x),
                query=lambda _: ranging.range,
                params=[
                    Number(
                        -top * RATING.headroom,
                        top * RATING.headroom,
                        default=ranging.default,
                    )
                ],
            ),
            Command(
                f"{head}:RANGe:AUTO",
                set=lambda _, on: setattr(ranging, "auto", on),
                query=lambda _: ranging.auto,
                params=[Boolean()],
            ),
            Command(
                f"{head}:RANGe:AUTO:LLIMit",
                set=lambda _, x: ranging.set_low_limit(x, what),
                query=lambda _: ranging.low_limit,
                params=[Number(ranging.ranges[0], top, default=ranging.ranges[0])],
            ),
            setting(
                f"{head}:RANGe:AUTO:ULIMit",
                owner,
                "upper_limit",
                Number(ranging.ranges[0], top, default=top),
            ),
            setting(f"{head}:NPLCycles", owner, "nplc", Number(*NPLC, default=1.0)),
            setting(f"{head}:RSENse", owner, "remote", Boolean()),
            Command(
                f"{head}:AZERo[:STATe]",
                set=lambda _, on: self._set_autozero(function, on),
                query=lambda _: function.autozero,
                params=[OnOffOnce()],
            ),
            setting(f"{head}:AVERage[:STATe]", owner, "filter_on", Boolean()),
            Command(
                f"{head}:AVERage:COUNt",
                set=lambda _, n: self._set_filter_count(function, n),
                query=lambda _: function.filter_count,
                params=[Number(1, 100, integer=True, default=10)],
            ),
            setting(
                f"{head}:AVERage:TCONtrol",
                owner,
                "filter_control",
                Choice("REPeat|MOVing"),
            ),
        ]

    def _reading_commands(self) -> list[Command]:
        request = [
            String(omitted=DEFAULT_BUFFERS[0]),
            ListOf(Choice(ELEMENTS), min_count=0, max_count=MAX_ELEMENTS),
        ]
        measures = [
            (":MEASure?", None),
            (":MEASure:CURRent[:DC]?", "CURR:DC"),
            (":MEASure:VOLTage[:DC]?", "VOLT:DC"),
            (":MEASure:RESistance?", "RES"),
        ]
        return [
            Command(":READ?", query=self._read, query_params=request),
            Command(":FETCh?", query=self._fetch, query_params=request),
            *[
                Command(
                    pattern,
                    query=lambda buf, elements, f=function: self._measure(
                        f, buf, elements
                    ),
                    query_params=request,
                )
                for pattern, function in measures
            ],
        ]

    def _buffer_commands(self) -> list[Command]:
        name = String(omitted=DEFAULT_BUFFERS[0])
        statistics = [
            ("AVERage", "MEAN"),
            ("MAXimum", "MAX"),
            ("MINimum", "MIN"),
            ("PK2Pk", "PKPK"),
            ("STDDev", "SDEV"),
        ]
        return [
            Command(
                ":TRACe:MAKE",
                set=self._make_buffer,
                params=[
                    String(),
                    Number(1, MAX_BUFFER_SIZE, integer=True),
                    Choice("STANdard|FULL|WRITable|FULLWRITable", omitted="STAN"),
                ],
            ),
            Command(":TRACe:DELete", set=self._delete_buffer, params=[String()]),
            Command(
                ":TRACe:CLEar", set=lambda b: self._buffer(b).clear(), params=[name]
            ),
            Command(
                ":TRACe:POINts",
                set=self._resize_buffer,
                query=lambda b: self._buffer(b).size,
                params=[Number(1, MAX_BUFFER_SIZE, integer=True), name],
                query_params=[name],
            ),
            Command(
                ":TRACe:ACTual?",
                query=lambda b: len(self._buffer(b).entries),
                query_params=[name],
            ),
            Command(
                ":TRACe:ACTual:STARt?",
                query=lambda b: 1 if self._buffer(b).entries else 0,
                query_params=[name],
            ),
            Command(
                ":TRACe:ACTual:END?",
                query=lambda b: len(self._buffer(b).entries),
                query_params=[name],
            ),
            Command(
                ":TRACe:DATA?",
                query=self._trace_data,
                query_params=[
                    Number(1, math.inf, integer=True),
                    Number(1, math.inf, integer=True),
                    name,
                    ListOf(Choice(ELEMENTS), min_count=0, max_count=MAX_ELEMENTS),
                ],
            ),
            Command(":TRACe:TRIGger", set=self._trace_trigger, params=[name]),
            Command(
                ":TRACe:FILL:MODE",
                set=lambda mode, b: setattr(
                    self._buffer(b), "continuous", mode == "CONT"
                ),
                query=lambda b: "CONT" if self._buffer(b).continuous else "ONCE",
                params=[Choice("CONTinuous|ONCE"), name],
                query_params=[name],
            ),
            *[
                Command(
                    f":TRACe:STATistics:{node}?",
                    query=lambda b, k=kind: self._statistic(b, k),
                    query_params=[name],
                )
                for node, kind in statistics
            ],
            Command(
                ":TRACe:STATistics:CLEar",
                set=self._clear_statistics,
                params=[name],
            ),
        ]

    # Source.

    def _set_current_limit(self, limit_a: float) -> None:
        current = self.functions["CURR:DC"].ranging
        if not current.auto and limit_a < _limit_floor_a(current.range):
            raise ScpiError(
                SETTINGS_CONFLICT,
                f"a {limit_a:g} A limit is below 0.1 % of the "
                f"fixed {current.range:g} A range",
            )
        self.smu.set_source(limit_a=limit_a)

    def _set_range(self, function: MeasureFunction, value: float) -> None:
        ranging = function.ranging
        if function.name == "CURR:DC":
            before = (ranging.range, ranging.auto)
            ranging.select(value, f"{self.smu.key} current range")
            limit_a = self.smu.state.limit_a
            if limit_a < _limit_floor_a(ranging.range):
                ranging.range, ranging.auto = before
                raise ScpiError(
                    SETTINGS_CONFLICT,
                    f"the {limit_a:g} A limit is below 0.1 % of the {value:g} A range",
                )
            return
        ranging.select(value, f"{self.smu.key} {function.name} range")

    def _set_delay(self, volts: bool, seconds: float) -> None:
        self.delay_s[volts] = seconds
        self.delay_auto[volts] = False

    def source_delay_s(self, volts: bool) -> float:
        """The source delay charged after each level change, s (auto counts as 0)."""
        return 0.0 if self.delay_auto[volts] else self.delay_s[volts]

    def _settle_source(self) -> None:
        """Wait the source delay before a reading if the source changed since the
        last one (outside sweeps, whose every point waits it)."""
        smu = self.smu
        if smu.output and not smu.settled:
            self.wait_s(self.source_delay_s(smu.volts))

    def _load_list(self, volts: bool, values: tuple[float, ...], append: bool) -> None:
        self.source_list[volts] = extend_list(
            self.source_list[volts],
            values,
            append,
            MAX_LIST_POINTS,
            LIST_VALUES_PER_COMMAND,
        )

    def _set_autozero(self, function: MeasureFunction, on: bool | str) -> None:
        if on != "ONCE":
            function.autozero = bool(on)

    def _set_filter_count(self, function: MeasureFunction, count: int) -> None:
        function.filter_count = count
        function.window = deque(maxlen=count)

    # Sweeps and the trigger model.

    def _step_levels(self, start: float, stop: float, step: float) -> list[float]:
        if step <= 0:
            raise out_of_range("sweep step", step, "above 0")
        points = step_points(start, stop, step)
        if points < 2 or points > MAX_SWEEP_POINTS:
            raise out_of_range("sweep points", points, f"2 to {MAX_SWEEP_POINTS}")
        sign = 1.0 if stop >= start else -1.0
        return [start + sign * k * step for k in range(points)]

    def _listed(self, volts: bool, first: int) -> list[float]:
        values = self.source_list[volts]
        if first > len(values):
            raise ScpiError(
                SETTINGS_CONFLICT,
                f"the source list has {len(values)} points, "
                f"the sweep starts at {first}",
            )
        return values[first - 1 :]

    def _sweep(
        self,
        volts: bool,
        levels: list[float],
        delay_s: float,
        count: int,
        range_type: str,
        fail_abort: bool,
        dual: bool,
        buffer: str,
    ) -> None:
        if delay_s < 0 and delay_s != -1:
            raise out_of_range("sweep delay", delay_s, "-1 (auto), 0 or a time")
        if count == 0:
            raise ScpiError(
                SETTINGS_CONFLICT,
                "an infinite sweep count is not simulated",
            )
        self._buffer(buffer)
        ranging = self.smu.source_ranging(volts)
        for level in levels:
            if range_type == "FIX" and not ranging.auto and not ranging.holds(level):
                raise out_of_range("sweep level", level, f"|x| <= {ranging.top:g}")
        if dual:
            levels = [*levels, *reversed(levels)]
        self.trigger_model = SweepModel(
            volts, levels, delay_s, count, fail_abort, buffer
        )

    def _load(self, template: str, arguments: tuple[Token, ...]) -> None:
        name = template.strip()
        if name.upper() == "EMPTY":
            self.trigger_model = None
            return
        if name.upper() != "SIMPLELOOP":
            raise ScpiError(
                ILLEGAL_PARAMETER_VALUE,
                f"trigger model {name!r} is not simulated",
            )
        count, delay_s, buffer = self._loop_arguments(arguments)
        self._buffer(buffer)
        self.trigger_model = LoopModel(count, delay_s, buffer)

    @staticmethod
    def _loop_arguments(arguments: tuple[Token, ...]) -> tuple[int, float, str]:
        kinds = [token.kind for token in arguments]
        if not arguments or len(arguments) > 3 or kinds[0] != NUMBER:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        count = int(arguments[0].value)
        if not 1 <= count <= MAX_SWEEP_COUNT:
            raise out_of_range("SimpleLoop count", count, f"1 to {MAX_SWEEP_COUNT}")
        delay_s = 0.0
        buffer = DEFAULT_BUFFERS[0]
        if len(arguments) > 1:
            if kinds[1] != NUMBER or not 0 <= arguments[1].value <= MAX_DELAY_S:
                raise ScpiError(ILLEGAL_PARAMETER_VALUE)
            delay_s = float(arguments[1].value)
        if len(arguments) > 2:
            if kinds[2] != STRING:
                raise ScpiError(ILLEGAL_PARAMETER_VALUE)
            buffer = str(arguments[2].value)
        return count, delay_s, buffer

    def _initiate(self) -> None:
        model = self.trigger_model
        if model is None:
            return
        buffer = self._buffer(model.buffer)
        if isinstance(model, LoopModel):
            for _ in range(model.count):
                self.wait_s(model.delay_s)
                self._settle_source()
                buffer.append(self._take())
            return
        self._run_sweep(model, buffer)

    def _run_sweep(self, model: SweepModel, buffer: ReadingBuffer) -> None:
        smu = self.smu
        key = "level_v" if model.volts else "level_a"
        smu.set_source(volts=model.volts)
        if not smu.output:
            smu.set_source(output=True)
        delay_s = max(model.delay_s, 0.0) + self.source_delay_s(model.volts)
        for _ in range(model.count):
            for level in model.levels:
                smu.source_ranging(model.volts).follow(level)
                smu.set_source(**{key: level})
                self.wait_s(delay_s)
                entry = self._take()
                buffer.append(entry)
                if model.fail_abort and entry.limited:
                    log.debug("%s: sweep aborted at its limit", self.name)
                    return

    # Readings.

    def _take(self) -> Entry:
        """One reading of the measure function, with its filter and range."""
        function = self.functions[self.sense_function]
        repeats = (
            function.filter_count
            if function.filter_on and function.filter_control == "REP"
            else 1
        )
        samples = [self.smu.sample(function.nplc) for _ in range(repeats)]
        voltage_v = sum(s.voltage_v for s in samples) / repeats
        current_a = sum(s.current_a for s in samples) / repeats
        limited = samples[-1].limited
        value = self._value(function.name, voltage_v, current_a)
        if function.filter_on and function.filter_control == "MOV":
            function.window.append(value)
            value = sum(function.window) / len(function.window)
        self.charge_autorange(function.ranging.follow(value))
        status = STATUS_REAR_TERMINALS if self.terminals == "REAR" else 0
        if not function.ranging.holds(value):
            value = OVERFLOW
            status |= STATUS_QUESTIONABLE
        return self._entry(value, voltage_v, current_a, limited, status)

    @staticmethod
    def _value(function: str, voltage_v: float, current_a: float) -> float:
        if function == "CURR:DC":
            return current_a
        if function == "VOLT:DC":
            return voltage_v
        return voltage_v / current_a if current_a else OVERFLOW

    def _entry(
        self,
        value: float,
        voltage_v: float,
        current_a: float,
        limited: bool,
        status: int,
    ) -> Entry:
        smu = self.smu
        volts = smu.volts
        readback = self.readback[volts]
        if readback:
            source = voltage_v if volts else current_a
        else:
            source = smu.level(volts)
        source_status = (SOURCE_STATUS_LIMIT if limited else 0) | (
            SOURCE_STATUS_READBACK if readback else 0
        )
        return Entry(
            reading=value,
            source=source,
            time_s=self.clock_s(),
            function=self.sense_function,
            source_function="VOLT:DC" if volts else "CURR:DC",
            status=status,
            source_status=source_status,
            limited=limited,
        )

    def _read(self, buffer: str, elements: tuple[str, ...]) -> str:
        store = self._buffer(buffer)
        entries = []
        for _ in range(self.count):
            self._settle_source()
            entry = self._take()
            store.append(entry)
            entries.append(entry)
        return self._format(store, entries[-1:], elements)

    def _measure(
        self, function: str | None, buffer: str, elements: tuple[str, ...]
    ) -> str:
        self._buffer(buffer)
        if function is not None:
            self.sense_function = function
        return self._read(buffer, elements)

    def _fetch(self, buffer: str, elements: tuple[str, ...]) -> str:
        store = self._buffer(buffer)
        if not store.entries:
            raise ScpiError(DATA_STALE, f"{buffer} is empty")
        return self._format(store, [store.entries[-1]], elements)

    def _trace_trigger(self, buffer: str) -> None:
        store = self._buffer(buffer)
        self._settle_source()
        store.append(self._take())

    def _trace_data(
        self, start: int, end: int, buffer: str, elements: tuple[str, ...]
    ) -> str:
        store = self._buffer(buffer)
        stored = len(store.entries)
        if start > end or end > stored:
            raise out_of_range(
                f"{buffer} index", end if start <= end else start, f"1 to {stored}"
            )
        entries = list(store.entries)[start - 1 : end]
        return self._format(store, entries, elements)

    def _format(
        self, buffer: ReadingBuffer, entries: Sequence[Entry], elements: Sequence[str]
    ) -> str:
        names = elements or ("READ",)
        first_s = buffer.entries[0].time_s if buffer.entries else 0.0
        return ",".join(
            [self._element(entry, name, first_s) for entry in entries for name in names]
        )

    def _element(self, entry: Entry, name: str, first_s: float) -> str:
        number = self.number_format
        stamp = datetime.fromtimestamp(entry.time_s, UTC)
        if name == "READ":
            return number(entry.reading)
        if name == "SOUR":
            return number(entry.source)
        if name == "REL":
            return number(entry.time_s - first_s)
        if name == "SEC":
            return str(int(entry.time_s))
        if name == "FRAC":
            return number(entry.time_s - int(entry.time_s))
        if name == "DATE":
            return stamp.strftime("%m/%d/%Y")
        if name == "TIME":
            return _time_of_day(entry.time_s)
        if name == "TST":
            return f"{stamp.strftime('%m/%d/%Y')} {_time_of_day(entry.time_s)}"
        if name == "FORM":
            return _front_panel(entry.reading, _SYMBOLS[entry.function])
        if name == "SOURFORM":
            return _front_panel(entry.source, _SYMBOLS[entry.source_function])
        if name == "UNIT":
            return _UNITS[entry.function]
        if name == "SOURUNIT":
            return _UNITS[entry.source_function]
        if name == "STAT":
            return str(entry.status)
        return str(entry.source_status)

    def _statistic(self, buffer: str, kind: str) -> float:
        readings = self._buffer(buffer).readings()
        if not readings:
            return NOT_MEASURED
        return statistic(readings, kind)

    def _clear_statistics(self, buffer: str) -> None:
        store = self._buffer(buffer)
        store.statistics_from = len(store.entries)

    # Buffers.

    def _buffer(self, name: str) -> ReadingBuffer:
        buffer = self.buffers.get(name)
        if buffer is None:
            raise ScpiError(
                ILLEGAL_PARAMETER_VALUE,
                f"no reading buffer named {name!r}",
            )
        return buffer

    def _make_buffer(self, name: str, size: int, style: str) -> None:
        if name in self.buffers:
            raise ScpiError(BUFFER_EXISTS)
        if size < MIN_BUFFER_SIZE:
            raise out_of_range("buffer size", size, f"{MIN_BUFFER_SIZE} or more")
        if not name or not (name[0].isalpha() and name.replace("_", "a").isalnum()):
            raise ScpiError(
                ILLEGAL_PARAMETER_VALUE,
                f"{name!r} is not a buffer name",
            )
        self.buffers[name] = ReadingBuffer(name, size, style)

    def _delete_buffer(self, name: str) -> None:
        self._buffer(name)
        if name in DEFAULT_BUFFERS:
            raise ScpiError(
                ILLEGAL_PARAMETER_VALUE,
                f"{name} cannot be deleted",
            )
        del self.buffers[name]

    def _resize_buffer(self, size: int, name: str) -> None:
        buffer = self._buffer(name)
        if size < MIN_BUFFER_SIZE:
            raise out_of_range("buffer size", size, f"{MIN_BUFFER_SIZE} or more")
        buffer.resize(size)

    # System.

    def _set_language(self, token: Token) -> None:
        word = str(token.value).upper()
        if token.kind == NUMBER or word not in ("SCPI", "TSP", "SCPI2400"):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        # The new command set takes effect at the next power cycle, which the
        # simulation never makes.
        self.language = word

    def _set_precision(self, digits: int) -> None:
        self.precision = digits
        decimals = 6 if digits == 0 else max(digits - 1, 0)
        self.number_format = nr3_formatter(decimals, plus_sign=False)


def _limit_floor_a(range_a: float) -> float:
    """The lowest current limit a fixed current range takes, A.

    0.1 % of 100 uA is 1e-07 A, although the product rounds just above it.
    """
    return MIN_LIMIT_OF_RANGE * range_a * (1 - 1e-9)


def _time_of_day(time_s: float) -> str:
    stamp = datetime.fromtimestamp(time_s, UTC)
    fraction = f"{time_s - math.floor(time_s):.9f}"[2:]
    return f"{stamp.strftime('%H:%M:%S')}.{fraction}"


def _front_panel(value: float, symbol: str) -> str:
    if abs(value) >= OVERFLOW:
        return "Overflow"
    scale, prefix = 1.0, ""
    for factor, name in _PREFIXES:
        if abs(value) >= factor:
            scale, prefix = factor, name
    if value == 0:
        scale, prefix = 1.0, ""
    return f"{value / scale:+.4f} {prefix}{symbol}"
