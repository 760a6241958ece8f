"""Simulated Keithley 2400 SourceMeter, in its classic SCPI command set.

The one output ``smu`` sources voltage or current on the bench. Readings are
sent as the elements of ``:FORM:ELEM`` (by default ``VOLT,CURR,RES,TIME,STAT``,
always in that order): a measured function gives its reading, the sourced
quantity its programmed level, any other element ``+9.910000E+37``, and the
status word carries the compliance, function and terminal bits.

``:INIT`` and ``:READ?`` run the trigger model: arm count times trigger
count points, each the trigger delay, the source step (fixed, sweep or list
mode), the source delay and the measurement, all charged to the bench clock.
In fixed mode the source delay is left out while the source stays as it was
at the last reading and the output stays on (``:SOUR:CLE:AUTO OFF``), as the
manual's timing of a static source has it.
Readings go to the ``:TRAC`` buffer while its feed control is ``NEXT``; a full
buffer sets bit 9 of the measurement event register, which shows in
``*STB?`` after ``:STAT:MEAS:ENAB 512`` (and as MSS after ``*SRE 1``).

``docs/simulator.md`` lists what is simulated and what is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    Staircase,
    extend_list,
    out_of_range,
    setting,
    source_list_commands,
    statistic,
)
from simulator.scpi import (
    ILLEGAL_PARAMETER_VALUE,
    UNDEFINED_HEADER,
    WORD,
    Boolean,
    Choice,
    Command,
    EventRegister,
    ListOf,
    Number,
    Raw,
    ScpiError,
    Token,
    error_reply_classic,
    nr3_formatter,
    quote,
)

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.k2400")

IDENTITY = (
    "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1248014,C30   Mar 17 2006 09:29:29/A02  /K/J"
)
"""The ``*IDN?`` reply."""

RATING = SmuRating(
    v_ranges_v=(0.2, 2.0, 20.0, 200.0),
    i_ranges_a=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0),
    i_source_ranges_a=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0),
    r_ranges_ohm=(20.0, 200.0, 2e3, 2e4, 2e5, 2e6, 2e7, 2e8),
    headroom=1.05,
)
"""Ranges of the 2400: 200 mV to 200 V, 1 µA to 1 A, 20 ohm to 200 Mohm."""

READBACK = 1.05
"""Ranges read back at this factor times their nominal value."""

DEFAULT_LIMIT_A = 1.05e-4
"""``:SENS:CURR:PROT`` after reset, A."""

DEFAULT_LIMIT_V = 21.0
"""``:SENS:VOLT:PROT`` after reset, V."""

DEFAULT_SOURCE_DELAY_S = 0.001
"""``:SOUR:DEL`` after reset, s (also charged while the delay is auto)."""

MIN_LIMIT_A = 1e-9
"""Smallest current compliance, A."""

MIN_LIMIT_V = 2e-4
"""Smallest voltage compliance, V."""

MAX_POINTS = 2500
"""Most sweep points, list points, buffer readings and arm times trigger count."""

LIST_VALUES_PER_COMMAND = 100
"""Most values one ``:SOUR:LIST`` command carries."""

MAX_DELAY_S = 999.9999
"""Longest source and trigger delay, s."""

STORAGE_ACTIVE = 800
OUTPUT_OFF = 803

ERRORS = {
    -222: "Parameter data out of range",
    STORAGE_ACTIVE: "Illegal with storage active",
    OUTPUT_OFF: "Not permitted with OUTPUT off",
}

# Status word bits [manual].
STAT_OVERFLOW = 1 << 0
STAT_FILTER = 1 << 1
STAT_FRONT = 1 << 2
STAT_COMPLIANCE = 1 << 3
STAT_V_MEASURE = 1 << 11
STAT_I_MEASURE = 1 << 12
STAT_R_MEASURE = 1 << 13
STAT_V_SOURCE = 1 << 14
STAT_I_SOURCE = 1 << 15
STAT_REMOTE_SENSE = 1 << 22

# Measurement event register bits.
READING_AVAILABLE = 1 << 6
READING_OVERFLOW = 1 << 7
BUFFER_AVAILABLE = 1 << 8
BUFFER_FULL = 1 << 9
COMPLIANCE = 1 << 14

ELEMENT_ORDER = ("VOLT", "CURR", "RES", "TIME", "STAT")
"""The elements a reading may carry, in the order they are sent."""

FUNCTIONS = ("VOLT:DC", "CURR:DC", "RES")
"""The measure functions, in the order ``:SENS:FUNC?`` lists them."""

_FUNCTION_CHOICE = "VOLTage[:DC]|CURRent[:DC]|RESistance"
_WAITING_ARM = ("MAN", "BUS", "TLIN", "NST", "PST", "BST")


@dataclass
class Reading:
    """One reading of the 2400: every element, already coded.

    Attributes
    ----------
    voltage, current, resistance : float
        The elements (V, A, ohm), ``9.91e37`` when not measured, ``9.9e37``
        on overflow.
    time_s : float
        Time stamp, s since the time stamp was zeroed.
    status : int
        The status word.
    """

    voltage: float
    current: float
    resistance: float
    time_s: float
    status: int

    def element(self, name: str, time_s: float | None = None) -> float:
        """The value of one element (``VOLT``, ``CURR``, ...)."""
        if name == "VOLT":
            return self.voltage
        if name == "CURR":
            return self.current
        if name == "RES":
            return self.resistance
        if name == "TIME":
            return self.time_s if time_s is None else time_s
        return float(self.status)


class K2400(SimulatedSmu):
    """A simulated Keithley 2400.

    Parameters
    ----------
    name : str
        The instrument's name in the station file (``"smu2"``).
    model : str
        ``"2400"``.
    bench : Bench
        The bench it works on.
    """

    def __init__(self, name: str, model: str, bench: Bench) -> None:
        if model != "2400":
            raise ValueError(f"{name}: {model} is not a 2400")
        super().__init__(
            name,
            model,
            bench,
            IDENTITY,
            number_format=nr3_formatter(),
            error_format=error_reply_classic,
            error_messages=ERRORS,
            suffix_ranges={"CALCulate": range(1, 4)},
        )
        self.smu = SmuChannel(self, "smu", RATING)
        headroom = RATING.headroom
        self.ranging = {
            "VOLT:DC": Ranging(RATING.v_ranges_v, headroom, 20.0),
            "CURR:DC": Ranging(RATING.i_ranges_a, headroom, 1e-4),
            "RES": Ranging(RATING.r_ranges_ohm, headroom, 2e5),
        }
        self.measurement = self.add_register(EventRegister("measurement", 0))
        self.questionable = self.add_register(EventRegister("questionable", 3))
        self.operation = self.add_register(EventRegister("operation", 7))
        self.staircase = Staircase(MAX_POINTS, MAX_POINTS)
        # The buffer settings are kept by *RST, as on the instrument.
        self.buffer: list[Reading] = []
        self.buffer_points = 100
        self.feed = "SENS"
        self.feed_control = "NEV"
        self.timestamp_format = "ABS"
        self.reset()

    # Settings.

    def reset(self) -> None:
        """``*RST``: the defaults the manual lists; the buffer is kept."""
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
        for ranging in self.ranging.values():
            ranging.reset()
        self.sense_on = {"CURR:DC"}
        self.concurrent = True
        self.nplc = 1.0
        self.resistance_mode = "MAN"
        self.offset_compensated = False
        self.filter_on = False
        self.filter_control = "REP"
        self.filter_count = 10
        self.autozero = True
        self.remote_sense = False
        self.terminals = "FRON"
        self.off_mode = "NORM"
        self.auto_clear = False
        self.auto_clear_mode = "ALW"
        self.source_delay_s = DEFAULT_SOURCE_DELAY_S
        self.source_delay_auto = True
        self.ovp_v = 210.0
        self.mode = {True: "FIX", False: "FIX"}
        self.staircase.reset()
        self.sweep_ranging = "BEST"
        self.compliance_abort = "NEV"
        self.source_list: dict[bool, list[float]] = {True: [], False: []}
        self.arm_count = 1
        self.arm_source = "IMM"
        self.arm_timer_s = 0.1
        self.trigger_count = 1
        self.trigger_delay_s = 0.0
        self.trigger_source = "IMM"
        self.lines: dict[str, object] = {
            f"{layer}:{key}": value
            for layer in ("ARM", "TRIG")
            for key, value in (
                ("DIR", "ACC"),
                ("ILIN", 1),
                ("OLIN", 2),
                ("OUTP", "NONE"),
            )
        }
        self.elements = set(ELEMENT_ORDER)
        self.latest: list[Reading] = []
        self.armed = False
        self.statistic_kind = "MEAN"
        self.display_on = True
        self.beeper_on = True
        self.line_frequency_auto = False

    def commands(self) -> list[Command]:
        return [
            *self._source_commands(),
            *self._sense_commands(),
            *self._trigger_commands(),
            *self._buffer_commands(),
            *self._system_commands(),
            *self.measurement.commands(":STATus:MEASurement"),
            *self.questionable.commands(":STATus:QUEStionable"),
            *self.operation.commands(":STATus:OPERation"),
        ]

    def _source_commands(self) -> list[Command]:
        me = _owner(self)

        def stairs(*_: object) -> Staircase:
            return self.staircase

        commands = [
            Command(
                ":SOURce[1]:FUNCtion[:MODE]",
                set=lambda _, f: self.smu.set_source(volts=f == "VOLT"),
                query=lambda _: "VOLT" if self.smu.volts else "CURR",
                params=[Choice("VOLTage|CURRent")],
            ),
            Command(
                ":SOURce[1]:DELay",
                set=lambda _, s: self._set_source_delay(s),
                query=lambda _: self.source_delay_s,
                params=[Number(0.0, MAX_DELAY_S, default=DEFAULT_SOURCE_DELAY_S)],
            ),
            setting(":SOURce[1]:DELay:AUTO", me, "source_delay_auto", Boolean()),
            Command(
                ":SOURce[1]:CLEar[:IMMediate]",
                set=lambda _: self.smu.set_source(output=False),
            ),
            setting(":SOURce[1]:CLEar:AUTO", me, "auto_clear", Boolean()),
            setting(
                ":SOURce[1]:CLEar:AUTO:MODE",
                me,
                "auto_clear_mode",
                Choice("ALWays|TCOunt"),
            ),
            setting(
                ":SOURce[1]:SWEep:POINts",
                stairs,
                "points",
                Number(2, MAX_POINTS, integer=True, default=MAX_POINTS),
            ),
            setting(
                ":SOURce[1]:SWEep:SPACing",
                stairs,
                "spacing",
                Choice("LINear|LOGarithmic"),
            ),
            setting(
                ":SOURce[1]:SWEep:DIRection", stairs, "direction", Choice("UP|DOWn")
            ),
            setting(
                ":SOURce[1]:SWEep:RANGing",
                me,
                "sweep_ranging",
                Choice("BEST|AUTO|FIXed"),
            ),
            setting(
                ":SOURce[1]:SWEep:CABort",
                me,
                "compliance_abort",
                Choice("NEVer|EARLy|LATE"),
            ),
            Command(
                ":SOURce[1]:VOLTage:PROTection[:LEVel]",
                set=lambda _, v: setattr(self, "ovp_v", v),
                query=lambda _: self.ovp_v,
                params=[Number(20.0, 210.0, default=210.0)],
            ),
            Command(
                ":OUTPut[1][:STATe]",
                set=lambda _, on: self.smu.set_source(output=on),
                query=lambda _: self.smu.output,
                params=[Boolean()],
            ),
            setting(
                ":OUTPut[1]:SMODe",
                me,
                "off_mode",
                Choice("HIMPedance|NORMal|ZERO|GUARd"),
            ),
        ]
        for volts, node, top in (
            (True, "VOLTage", RATING.max_voltage_v),
            (False, "CURRent", RATING.max_current_a),
        ):
            commands += self._function_source_commands(volts, node, top)
        return commands

    def _function_source_commands(
        self, volts: bool, node: str, top: float
    ) -> list[Command]:
        head = f":SOURce[1]:{node}"
        ranging = self.smu.source_ranging(volts)
        level = Number(-top, top, default=0.0)
        return [
            Command(
                f"{head}[:LEVel][:IMMediate][:AMPLitude]",
                set=lambda _, x: self.smu.program_level(volts, x),
                query=lambda _: self.smu.level(volts),
                params=[level],
            ),
            Command(
                f"{head}:RANGe",
                set=lambda _, x: ranging.select(x, f"{self.smu.key} source range"),
                query=lambda _: ranging.range * READBACK,
                params=[Number(-top, top, default=top)],
            ),
            Command(
                f"{head}:RANGe:AUTO",
                set=lambda _, on: setattr(ranging, "auto", on),
                query=lambda _: ranging.auto,
                params=[Boolean()],
            ),
            Command(
                f"{head}:MODE",
                set=lambda _, m: self.mode.__setitem__(volts, m),
                query=lambda _: self.mode[volts],
                params=[Choice("FIXed|SWEep|LIST")],
            ),
            *Staircase.commands(head, lambda *_: self.staircase, volts, top),
            *source_list_commands(
                ":SOURce[1]", node, lambda _: self.source_list,
                lambda _, xs, append: self._load_list(volts, xs, append),
                volts, Number(-top, top),
            ),
        ]

    def _sense_commands(self) -> list[Command]:
        me = _owner(self)
        function = Choice(_FUNCTION_CHOICE, quoted=True)
        commands = [
            setting("[:SENSe[1]]:FUNCtion:CONCurrent", me, "concurrent", Boolean()),
            Command(
                "[:SENSe[1]]:FUNCtion[:ON]",
                set=lambda _, names: self._functions_on(names),
                query=lambda _: self._functions_reply(),
                params=[ListOf(function)],
            ),
            Command(
                "[:SENSe[1]]:FUNCtion:OFF",
                set=lambda _, names: self.sense_on.difference_update(names),
                query=lambda _: self._functions_reply(off=True),
                params=[ListOf(function)],
            ),
            Command(
                "[:SENSe[1]]:FUNCtion[:ON]:ALL",
                set=lambda _: self._all_functions(),
            ),
            Command(
                "[:SENSe[1]]:FUNCtion:OFF:ALL",
                set=lambda _: self.sense_on.clear(),
            ),
            Command(
                "[:SENSe[1]]:FUNCtion[:ON]:COUNt?",
                query=lambda _: len(self.sense_on),
            ),
            Command(
                "[:SENSe[1]]:FUNCtion:STATe?",
                query=lambda _, name: name in self.sense_on,
                query_params=[function],
            ),
            setting(
                "[:SENSe[1]]:RESistance:MODE", me, "resistance_mode",
                Choice("MANual|AUTO"),
            ),
            setting(
                "[:SENSe[1]]:RESistance:OCOMpensated", me, "offset_compensated",
                Boolean(),
            ),
            setting("[:SENSe[1]]:AVERage[:STATe]", me, "filter_on", Boolean()),
            setting(
                "[:SENSe[1]]:AVERage:TCONtrol", me, "filter_control",
                Choice("REPeat|MOVing"),
            ),
            setting(
                "[:SENSe[1]]:AVERage:COUNt", me, "filter_count",
                Number(1, 100, integer=True, default=10),
            ),
        ]  # fmt: skip
        nodes = (
            ("VOLT:DC", "VOLTage[:DC]", RATING.max_voltage_v),
            ("CURR:DC", "CURRent[:DC]", RATING.max_current_a),
            ("RES", "RESistance", RATING.r_ranges_ohm[-1] * READBACK),
        )
        for name, node, top in nodes:
            commands += self._function_commands(name, f"[:SENSe[1]]:{node}", top)
        commands += self._protection_commands()
        return commands

    def _function_commands(self, name: str, head: str, top: float) -> list[Command]:
        ranging = self.ranging[name]
        what = f"{self.smu.key} {name} range"
        low = 0.0 if name == "RES" else -top
        return [
            Command(
                f"{head}:RANGe[:UPPer]",
                set=lambda _, x: ranging.select(x, what),
                query=lambda _: ranging.range * READBACK,
                params=[Number(low, top, default=ranging.default * READBACK)],
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
                query=lambda _: ranging.low_limit * READBACK,
                params=[Number(low, top, default=ranging.ranges[0] * READBACK)],
            ),
            Command(
                f"{head}:NPLCycles",
                set=lambda _, n: setattr(self, "nplc", n),
                query=lambda _: self.nplc,
                params=[Number(0.01, 10.0, default=1.0)],
            ),
        ]

    def _protection_commands(self) -> list[Command]:
        return [
            Command(
                "[:SENSe[1]]:CURRent[:DC]:PROTection[:LEVel]",
                set=lambda _, a: self._set_limit(False, a),
                query=lambda _: self.smu.state.limit_a,
                params=[Number(-RATING.max_current_a, RATING.max_current_a,
                               default=DEFAULT_LIMIT_A)],
            ),
            Command(
                "[:SENSe[1]]:VOLTage[:DC]:PROTection[:LEVel]",
                set=lambda _, v: self._set_limit(True, v),
                query=lambda _: self.smu.state.limit_v,
                params=[Number(-RATING.max_voltage_v, RATING.max_voltage_v,
                               default=DEFAULT_LIMIT_V)],
            ),
            Command(
                "[:SENSe[1]]:CURRent[:DC]:PROTection:TRIPped?",
                query=lambda _: self.smu.volts and self.smu.compliance,
            ),
            Command(
                "[:SENSe[1]]:VOLTage[:DC]:PROTection:TRIPped?",
                query=lambda _: not self.smu.volts and self.smu.compliance,
            ),
            Command(
                "[:SENSe[1]]:CURRent[:DC]:PROTection:RSYNchronize",
                set=lambda _, on: None,
                query=lambda _: False,
                params=[Boolean()],
            ),
        ]  # fmt: skip

    def _trigger_commands(self) -> list[Command]:
        me = _owner(self)
        arm = ":ARM[:SEQuence[1]][:LAYer[1]]"
        trig = ":TRIGger[:SEQuence[1]]"
        count = Number(1, MAX_POINTS, integer=True, default=1)
        line = Number(1, 4, integer=True, default=1)
        return [
            Command(":INITiate[:IMMediate]", set=self._initiate),
            Command(":ABORt", set=self._abort),
            Command(
                f"{arm}:COUNt",
                set=lambda *a: self._set_counts(a[-1], self.trigger_count),
                query=lambda *_: self.arm_count,
                params=[count],
            ),
            setting(
                f"{arm}:SOURce", me, "arm_source",
                Choice("IMMediate|TIMer|MANual|BUS|TLINk|NSTest|PSTest|BSTest"),
            ),
            setting(
                f"{arm}:TIMer", me, "arm_timer_s",
                Number(0.001, 99_999.99, default=0.1),
            ),
            *self._line_commands("ARM", f"{arm}[:TCONfigure]", line,
                                 Choice("TENTer|TEXit|NONE")),
            Command(
                f"{trig}:COUNt",
                set=lambda *a: self._set_counts(self.arm_count, a[-1]),
                query=lambda *_: self.trigger_count,
                params=[count],
            ),
            setting(
                f"{trig}:DELay", me, "trigger_delay_s",
                Number(0.0, MAX_DELAY_S, default=0.0),
            ),
            setting(f"{trig}:SOURce", me, "trigger_source", Choice("IMMediate|TLINk")),
            *self._line_commands("TRIG", f"{trig}[:TCONfigure]", line,
                                 Choice("SOURce|DELay|SENSe|NONE")),
            Command(":TRIGger:CLEar", set=lambda: None),
        ]  # fmt: skip

    def _line_commands(
        self, layer: str, head: str, line: Number, output: Choice
    ) -> list[Command]:
        def entry(key: str, pattern: str, param: object) -> Command:
            return Command(
                pattern,
                set=lambda *a: self.lines.__setitem__(f"{layer}:{key}", a[-1]),
                query=lambda *_: self.lines[f"{layer}:{key}"],
                params=[param],  # type: ignore[list-item]
            )

        return [
            entry("DIR", f"{head}:DIRection", Choice("ACCeptor|SOURce")),
            entry("ILIN", f"{head}:ILINe", line),
            entry("OLIN", f"{head}:OLINe", line),
            entry("OUTP", f"{head}:OUTPut", output),
        ]

    def _buffer_commands(self) -> list[Command]:
        commands = []
        for root in (":TRACe", ":DATA"):
            commands += [
                Command(f"{root}:DATA?", query=self._trace_data),
                Command(f"{root}:CLEar", set=self._clear_buffer),
                Command(
                    f"{root}:POINts",
                    set=self._set_buffer_points,
                    query=lambda: self.buffer_points,
                    params=[Number(1, MAX_POINTS, integer=True, default=100)],
                ),
                Command(f"{root}:POINts:ACTual?", query=lambda: len(self.buffer)),
                Command(
                    f"{root}:FEED",
                    set=self._set_feed,
                    query=lambda: self.feed,
                    params=[Raw()],
                ),
                Command(
                    f"{root}:FEED:CONTrol",
                    set=self._set_feed_control,
                    query=lambda: self.feed_control,
                    params=[Choice("NEVer|NEXT")],
                ),
                Command(
                    f"{root}:TSTamp:FORMat",
                    set=lambda f: setattr(self, "timestamp_format", f),
                    query=lambda: self.timestamp_format,
                    params=[Choice("ABSolute|DELTa")],
                ),
            ]
        commands += [
            Command(
                ":CALCulate#:FORMat",
                set=lambda n, kind: self._set_statistic(n, kind),
                query=lambda n: self._statistic_kind(n),
                params=[Choice("MEAN|SDEViation|MAXimum|MINimum|PKPK")],
            ),
            Command(":CALCulate#:DATA?", query=self._statistics),
        ]
        return commands

    def _system_commands(self) -> list[Command]:
        me = _owner(self)
        element = Choice("VOLTage|CURRent|RESistance|TIME|STATus")
        return [
            Command(":READ?", query=self._read),
            Command(":FETCh?", query=self._fetch),
            Command(":MEASure?", query=lambda: self._measure(None)),
            *[
                Command(f":MEASure:{node}?", query=lambda f=name: self._measure(f))
                for name, node in (
                    ("VOLT:DC", "VOLTage[:DC]"),
                    ("CURR:DC", "CURRent[:DC]"),
                    ("RES", "RESistance"),
                )
            ],
            *[
                Command(f":CONFigure:{node}", set=lambda f=name: self._configure(f))
                for name, node in (
                    ("VOLT:DC", "VOLTage[:DC]"),
                    ("CURR:DC", "CURRent[:DC]"),
                    ("RES", "RESistance"),
                )
            ],
            Command(":CONFigure?", query=lambda: self._functions_reply()),
            Command(
                ":FORMat:ELEMents[:SENSe[1]]",
                set=lambda *a: setattr(self, "elements", set(a[-1])),
                query=lambda *_: ",".join(
                    e for e in ELEMENT_ORDER if e in self.elements
                ),
                params=[ListOf(element)],
            ),
            Command(
                ":FORMat[:DATA]",
                set=lambda kind, bits: None,
                query=lambda: "ASC",
                params=[Choice("ASCii"), Raw(omitted=None)],
            ),
            Command(
                ":FORMat:BORDer",
                set=lambda kind: None,
                query=lambda: "SWAP",
                params=[Choice("NORMal|SWAPped")],
            ),
            setting(":SYSTem:RSENse", me, "remote_sense", Boolean()),
            Command(
                ":SYSTem:AZERo[:STATe]",
                set=self._set_autozero,
                query=lambda: self.autozero,
                params=[OnOffOnce()],
            ),
            Command(
                ":SYSTem:LFRequency",
                set=self.set_line_frequency,
                query=lambda: int(self.line_frequency_hz),
                params=[Number(50, 60, integer=True, default=60)],
            ),
            setting(":SYSTem:LFRequency:AUTO", me, "line_frequency_auto", Boolean()),
            Command(":SYSTem:TIME?", query=lambda: self.elapsed_s),
            Command(":SYSTem:TIME:RESet", set=self.zero_time),
            Command(
                ":SYSTem:BEEPer[:IMMediate]",
                set=lambda f, t: log.debug("%s: beep %g Hz %g s", self.name, f, t),
                params=[Number(65, 2e6), Number(0, 7.9)],
            ),
            setting(":SYSTem:BEEPer:STATe", me, "beeper_on", Boolean()),
            Command(":SYSTem:PRESet", set=self.reset),
            Command(":SYSTem:KEY", set=lambda key: None, params=[Number(1, 31)]),
            Command(":SYSTem:LOCal", set=lambda: None),
            Command(":SYSTem:REMote", set=lambda: None),
            Command(
                ":STATus:QUEue[:NEXT]?",
                query=lambda: self.error_format(self.errors.pop()),
            ),
            Command(":STATus:QUEue:CLEar", set=self.errors.clear),
            Command(
                ":STATus:QUEue:ENABle",
                set=lambda *tokens: None,
                params=[ListOf(Raw(), min_count=0)],
            ),
            setting(":ROUTe:TERMinals", me, "terminals", Choice("FRONt|REAR")),
            setting(":DISPlay:ENABle", me, "display_on", Boolean()),
        ]

    # Source settings.

    def _set_source_delay(self, seconds: float) -> None:
        self.source_delay_s = seconds
        self.source_delay_auto = False

    def _set_limit(self, volts: bool, value: float) -> None:
        magnitude = abs(value)
        floor = MIN_LIMIT_V if volts else MIN_LIMIT_A
        if magnitude < floor:
            unit = "V" if volts else "A"
            raise out_of_range("compliance", value, f"|x| >= {floor:g} {unit}")
        self.smu.set_source(**{"limit_v" if volts else "limit_a": magnitude})

    def _load_list(self, volts: bool, values: tuple[float, ...], append: bool) -> None:
        self.source_list[volts] = extend_list(
            self.source_list[volts], values, append, MAX_POINTS, LIST_VALUES_PER_COMMAND
        )

    # Sense settings.

    def _functions_on(self, names: tuple[str, ...]) -> None:
        if not self.concurrent:
            if len(names) > 1:
                raise ScpiError(
                    SETTINGS_CONFLICT,
                    "one function at a time with concurrent OFF",
                )
            self.sense_on = set(names)
            return
        self.sense_on.update(names)

    def _all_functions(self) -> None:
        self.concurrent = True
        self.sense_on = set(FUNCTIONS)

    def _functions_reply(self, off: bool = False) -> str:
        names = [f for f in FUNCTIONS if (f in self.sense_on) != off]
        return ",".join(quote(name) for name in names)

    def _configure(self, function: str) -> None:
        self.concurrent = False
        self.sense_on = {function}
        self.ranging[function].auto = True

    def _set_autozero(self, state: bool | str) -> None:
        if state != "ONCE":
            self.autozero = bool(state)

    # Trigger model.

    def _set_counts(self, arm: int, trigger: int) -> None:
        if arm * trigger > MAX_POINTS:
            raise ScpiError(
                SETTINGS_CONFLICT,
                f"arm count {arm} times trigger count {trigger} exceeds {MAX_POINTS}",
            )
        self.arm_count, self.trigger_count = arm, trigger

    def _initiate(self) -> None:
        if self.armed:
            raise ScpiError(-213)
        self._check_output()
        if self.arm_source in _WAITING_ARM:
            self.armed = True
            return
        self.latest = self._run_model()

    def _abort(self) -> None:
        self.armed = False

    def trigger(self) -> None:
        """``*TRG``: a bus trigger starts a model armed on the bus."""
        if self.armed and self.arm_source == "BUS":
            self.armed = False
            self._check_output()
            self.latest = self._run_model()

    def _check_output(self) -> None:
        if self.smu.output:
            return
        if not self.auto_clear:
            raise ScpiError(OUTPUT_OFF)
        self.smu.set_source(output=True)

    def _sweep_levels(self) -> list[float] | None:
        volts = self.smu.volts
        mode = self.mode[volts]
        if mode == "FIX":
            return None
        if mode == "LIST":
            if not self.source_list[volts]:
                raise ScpiError(SETTINGS_CONFLICT, "the source list is empty")
            return self.source_list[volts]
        return self.staircase.levels(volts)

    def _run_model(self) -> list[Reading]:
        """Run arm count times trigger count points; return their readings."""
        smu = self.smu
        volts = smu.volts
        levels = self._sweep_levels()
        if levels is not None:
            for level in levels:
                smu.check_level(volts, level)
        key = "level_v" if volts else "level_a"
        fixed = smu.level(volts)
        delay_s = (
            DEFAULT_SOURCE_DELAY_S if self.source_delay_auto else self.source_delay_s
        )
        readings: list[Reading] = []
        try:
            for arm in range(self.arm_count):
                if arm and self.arm_source == "TIM":
                    self.wait_s(self.arm_timer_s)
                for point in range(self.trigger_count):
                    self.wait_s(self.trigger_delay_s)
                    if levels is not None:
                        smu.set_source(**{key: levels[point % len(levels)]})
                    if levels is not None or self.auto_clear or not smu.settled:
                        self.wait_s(delay_s)
                    reading = self._take()
                    readings.append(reading)
                    self._store(reading)
                    if self.compliance_abort != "NEV" and (
                        reading.status & STAT_COMPLIANCE
                    ):
                        return readings
        finally:
            if levels is not None:
                smu.set_source(**{key: fixed})
            if self.auto_clear:
                smu.set_source(output=False)
        return readings

    # Readings.

    def _take(self) -> Reading:
        """One reading of every enabled function, with the source's elements."""
        on = self.sense_on
        need_v = "VOLT:DC" in on or "RES" in on
        need_i = "CURR:DC" in on or "RES" in on
        conversions = max(1, int(need_v) + int(need_i))
        repeats = self.filter_count if self.filter_on else 1
        samples = [
            self.smu.sample(self.nplc * conversions)
            for _ in range(repeats if self.filter_control == "REP" else 1)
        ]
        voltage_v = sum(s.voltage_v for s in samples) / len(samples)
        current_a = sum(s.current_a for s in samples) / len(samples)
        limited = samples[-1].limited
        status = self._status(limited)
        voltage = self._element("VOLT:DC", voltage_v, True)
        current = self._element("CURR:DC", current_a, False)
        resistance = NOT_MEASURED
        if "RES" in on:
            resistance = voltage_v / current_a if current_a else OVERFLOW
            status |= STAT_R_MEASURE
        if OVERFLOW in (voltage, current):
            status |= STAT_OVERFLOW
            self.measurement.signal(READING_OVERFLOW)
        self.measurement.signal(READING_AVAILABLE | (COMPLIANCE if limited else 0))
        return Reading(voltage, current, resistance, self.elapsed_s, status)

    def _element(self, function: str, value: float, volts: bool) -> float:
        if function in self.sense_on:
            ranging = self.ranging[function]
            self.charge_autorange(ranging.follow(value))
            return value if ranging.holds(value) else OVERFLOW
        if self.smu.volts == volts:
            return self.smu.level(volts)
        return NOT_MEASURED

    def _status(self, limited: bool) -> int:
        on = self.sense_on
        status = STAT_FRONT if self.terminals == "FRON" else 0
        if limited:
            status |= STAT_COMPLIANCE
        if self.filter_on:
            status |= STAT_FILTER
        if "VOLT:DC" in on:
            status |= STAT_V_MEASURE
        if "CURR:DC" in on:
            status |= STAT_I_MEASURE
        status |= STAT_V_SOURCE if self.smu.volts else STAT_I_SOURCE
        if self.remote_sense:
            status |= STAT_REMOTE_SENSE
        return status

    def _format(
        self, readings: Sequence[Reading], times: Sequence[float] | None = None
    ) -> list[float]:
        names = [e for e in ELEMENT_ORDER if e in self.elements]
        values: list[float] = []
        for index, reading in enumerate(readings):
            time_s = None if times is None else times[index]
            values += [reading.element(name, time_s) for name in names]
        return values

    def _read(self) -> list[float]:
        if self.armed:
            raise ScpiError(-214)
        self._check_output()
        if self.arm_source in _WAITING_ARM:
            raise ScpiError(-214)
        self.latest = self._run_model()
        return self._format(self.latest)

    def _fetch(self) -> list[float]:
        if not self.latest:
            raise ScpiError(DATA_STALE, "no readings to fetch")
        return self._format(self.latest)

    def _measure(self, function: str | None) -> list[float]:
        if function is not None:
            self._configure(function)
        if not self.smu.output:
            self.smu.set_source(output=True)
        return self._read()

    # The buffer.

    def _store(self, reading: Reading) -> None:
        if self.feed_control != "NEXT" or self.feed != "SENS":
            return
        self.buffer.append(reading)
        self.measurement.set_bits(BUFFER_AVAILABLE)
        if len(self.buffer) >= self.buffer_points:
            self.feed_control = "NEV"
            self.measurement.set_bits(BUFFER_FULL)

    def _storage_active(self) -> None:
        if self.feed_control == "NEXT":
            raise ScpiError(STORAGE_ACTIVE)

    def _clear_buffer(self) -> None:
        self._storage_active()
        self.buffer = []
        self.measurement.clear_bits(BUFFER_AVAILABLE | BUFFER_FULL)

    def _set_buffer_points(self, points: int) -> None:
        self._storage_active()
        self.buffer_points = points

    def _set_feed(self, token: Token) -> None:
        self._storage_active()
        word = str(token.value).upper() if token.kind == WORD else ""
        feeds = {
            "SENS": "SENS", "SENSE": "SENS", "SENS1": "SENS", "SENSE1": "SENS",
            "CALC": "CALC1", "CALCULATE": "CALC1", "CALC1": "CALC1",
            "CALCULATE1": "CALC1", "CALC2": "CALC2", "CALCULATE2": "CALC2",
        }  # fmt: skip
        if word not in feeds:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        self.feed = feeds[word]

    def _set_feed_control(self, control: str) -> None:
        if control == "NEXT" and len(self.buffer) >= self.buffer_points:
            self.buffer = []
            self.measurement.clear_bits(BUFFER_AVAILABLE | BUFFER_FULL)
        self.feed_control = control

    def _trace_data(self) -> list[float]:
        if not self.buffer:
            raise ScpiError(DATA_STALE, "the buffer is empty")
        return self._format(self.buffer, self._buffer_times())

    def _buffer_times(self) -> list[float]:
        stamps = [r.time_s for r in self.buffer]
        if self.timestamp_format == "DELT":
            return [0.0] + [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        return [s - stamps[0] for s in stamps]

    def _set_statistic(self, block: int, kind: str) -> None:
        self._statistics_block(block)
        self.statistic_kind = kind

    def _statistic_kind(self, block: int) -> str:
        self._statistics_block(block)
        return self.statistic_kind

    @staticmethod
    def _statistics_block(block: int) -> None:
        # CALC1 (math) and CALC2 (limit tests) are not simulated.
        if block != 3:
            raise ScpiError(UNDEFINED_HEADER)

    def _statistics(self, block: int) -> list[float]:
        self._statistics_block(block)
        if not self.buffer:
            raise ScpiError(DATA_STALE, "the buffer is empty")
        values = []
        for name in ("VOLT", "CURR", "RES"):
            if name not in self.elements:
                continue
            data = [r.element(name) for r in self.buffer]
            if all(abs(x) >= OVERFLOW for x in data):
                values.append(NOT_MEASURED)
            else:
                values.append(statistic(data, self.statistic_kind))
        return values


def _owner(instrument: K2400) -> Callable[..., K2400]:
    """The owner of the instrument-wide settings, whatever the header's suffixes."""
    return lambda *_: instrument
