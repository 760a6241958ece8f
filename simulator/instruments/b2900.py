"""Simulated Keysight B2901A, B2902A and B2912A Precision Source/Measure Units.

Commands name a channel in their header (``:SOUR2:VOLT``, ``:SENS2:CURR:PROT``,
``:OUTP2``, ``:TRIG2:COUN``) or in a channel list (``:INIT (@1,2)``,
``:MEAS? (@1,2)``, ``:FETC:ARR:CURR? (@1)``); the B2901A has channel 1 only.

``:INIT`` runs each listed channel's trigger model on one time line: for every
trigger the transient (the next level of the fixed, sweep or list mode, or a
pulse from the base level to that level after the pulse delay) starts after
the transient delay, and the acquisition (one reading, taken at the end of the
measurement aperture) after the acquire delay; the next trigger comes when
both have ended (``AINT``) or after the trigger timer (``TIM``). Channels
started together run side by side on the bench. With ``:OUTP:ON:AUTO`` on
(the default) ``:INIT`` turns an output that is off on. An acquisition whose
measure autorange changes range delays the rest of its channel's run by the
bench's ``autorange_s``.

``docs/simulator.md`` lists what is simulated and what is not.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.instruments._smu import (
    DATA_STALE,
    NOT_MEASURED,
    OVERFLOW,
    Ranging,
    SimulatedSmu,
    SmuChannel,
    SmuRating,
    Staircase,
    Words,
    extend_list,
    out_of_range,
    setting,
    source_list_commands,
)
from simulator.scpi import (
    Boolean,
    ChannelList,
    Choice,
    Command,
    EventRegister,
    ListOf,
    Number,
    Raw,
    ScpiError,
    error_reply_keysight,
    nr3_formatter,
    quote,
)

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.b2900")

SERIAL = "MY51143745"
FIRMWARE = "3.4.2011.5100"

MODELS = ("B2901A", "B2902A", "B2912A")
"""The models this class simulates."""

_DECADES = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 1.5, 3.0)
RATINGS = {
    "B2901A": SmuRating((0.2, 2.0, 20.0, 200.0), _DECADES, _DECADES, (), 1.05),
    "B2902A": SmuRating((0.2, 2.0, 20.0, 200.0), _DECADES, _DECADES, (), 1.05),
    "B2912A": SmuRating(
        (0.2, 2.0, 20.0, 200.0), (1e-8, *_DECADES), (1e-8, *_DECADES), (), 1.05
    ),
}
"""Ranges by model: 200 mV to 200 V; 100 nA (10 nA on the B2912A) to 3 A."""

MAX_VOLTAGE_V = 210.0
"""Largest voltage level and limit, V."""

MAX_CURRENT_A = 3.03
"""Largest DC current level and limit, A."""

DEFAULT_LIMIT_A = 1e-4
"""``:SENS:CURR:PROT`` after reset, A."""

DEFAULT_LIMIT_V = 2.0
"""``:SENS:VOLT:PROT`` after reset, V."""

MIN_LIMIT_A = 1e-9
"""Smallest current limit, A."""

MIN_LIMIT_V = 0.02
"""Smallest voltage limit, V."""

APERTURE_S = (8e-6, 2.0)
"""Measurement aperture range, s."""

DEFAULT_NPLC = 1.0
"""Integration time after reset, power-line cycles (unverified)."""

MAX_POINTS = 2500
"""Most sweep and list points."""

MAX_COUNT = 100_000
"""Largest trigger and arm count."""

MAX_DELAY_S = 100.0
"""Longest trigger and arm delay, s."""

PULSE_WIDTH_S = (5e-5, 100_000.0)
"""Pulse width range, s."""

MAX_PULSE_DELAY_S = 99_999.9
"""Longest pulse delay, s."""

DEFAULT_PULSE_WIDTH_S = 1e-4
"""Pulse width after reset, s (unverified)."""

TRIGGER_SOURCES = ("AINT", "BUS", "TIM", "TIMER", "INT1", "INT2", "LAN") + tuple(
    f"EXT{n}" for n in range(1, 15)
)

ELEMENT_ORDER = ("VOLT", "CURR", "RES", "TIME", "STAT", "SOUR")
"""The sense elements, in the order they are sent."""

FUNCTIONS = ("VOLT", "CURR", "RES")
"""The measure functions, in the order ``:SENS:FUNC?`` lists them."""

# Status element bits (unverified layout).
STATUS_OVERFLOW = 1 << 0
STATUS_CURRENT_LIMIT = 1 << 3
STATUS_VOLTAGE_LIMIT = 1 << 4

_FUNCTION_CHOICE = "VOLTage[:DC]|CURRent[:DC]|RESistance"


@dataclass
class Result:
    """One acquisition of a channel: every sense element, already coded."""

    voltage: float
    current: float
    resistance: float
    time_s: float
    status: int
    source: float

    def element(self, name: str) -> float:
        """The value of one element (``VOLT``, ``CURR``, ...)."""
        return {
            "VOLT": self.voltage,
            "CURR": self.current,
            "RES": self.resistance,
            "TIME": self.time_s,
            "STAT": float(self.status),
            "SOUR": self.source,
        }[name]


class Layer:
    """The settings of one trigger or arm layer, for transient or acquire."""

    def __init__(self) -> None:
        self.count = 1
        self.delay_s = 0.0
        self.source = "AINT"
        self.timer_s = 1e-5


class B2900Channel(SmuChannel):
    """One channel of a B2900: its source modes, sense settings and results."""

    def __init__(self, instrument: B2900, number: int, rating: SmuRating) -> None:
        super().__init__(instrument, f"ch{number}", rating)
        self.number = number
        headroom = rating.headroom
        self.ranging = {
            "CURR": Ranging(rating.i_ranges_a, headroom, 1e-4),
            "VOLT": Ranging(rating.v_ranges_v, headroom, 2.0),
        }
        self.results: list[Result] = []
        self.staircase = Staircase(1, MAX_POINTS)
        self.reset()

    def reset(self) -> None:
        """Defaults after ``*RST``."""
        self.set_source(
            output=False,
            volts=True,
            level_v=0.0,
            level_a=0.0,
            limit_v=DEFAULT_LIMIT_V,
            limit_a=DEFAULT_LIMIT_A,
        )
        self.v_source.reset()
        self.i_source.reset()
        for ranging in self.ranging.values():
            ranging.reset()
        self.shape = "DC"
        self.continuous = False
        self.mode = {True: "FIX", False: "FIX"}
        self.triggered = {True: 0.0, False: 0.0}
        self.source_list: dict[bool, list[float]] = {True: [], False: []}
        self.staircase.reset()
        self.stair = "SING"
        self.sweep_ranging = "BEST"
        self.pulse_delay_s = 0.0
        self.pulse_width_s = DEFAULT_PULSE_WIDTH_S
        self.functions = {"VOLT", "CURR"}
        self.nplc = DEFAULT_NPLC
        self.aperture_auto = False
        self.remote = False
        self.resistance_mode = "MAN"
        self.offset_compensated = False
        self.on_auto = True
        self.off_auto = False
        self.off_mode = "ZERO"
        self.low = "GRO"
        self.protection = False
        self.filter_on = False
        self.trigger = {"TRAN": Layer(), "ACQ": Layer()}
        self.arm = {"TRAN": Layer(), "ACQ": Layer()}
        self.results = []
        self.autoranged = False

    # Source.

    def set_level(self, volts: bool, level: float) -> None:
        """``:SOUR:VOLT``: the DC level now, and the triggered level too."""
        self.program_level(volts, level)
        self.triggered[volts] = level

    def set_triggered(self, volts: bool, level: float) -> None:
        """``:SOUR:VOLT:TRIG``: the level of the next transient in fixed mode."""
        self.check_level(volts, level)
        self.triggered[volts] = level

    def levels(self) -> list[float]:
        """The levels of successive transients in the present source mode."""
        volts = self.volts
        mode = self.mode[volts]
        if mode == "FIX":
            return [self.triggered[volts]]
        if mode == "LIST":
            if not self.source_list[volts]:
                raise ScpiError(-221, "the source list is empty")
            return list(self.source_list[volts])
        levels = self.staircase.levels(volts)
        if self.stair == "DOUB":
            levels = [*levels, *reversed(levels)]
        return levels

    # Measurement.

    @property
    def aperture_s(self) -> float:
        """The measurement aperture, s."""
        return self.nplc / self.instrument.line_frequency_hz

    def set_aperture(self, seconds: float) -> None:
        """Set the aperture (the integration time follows)."""
        self.nplc = seconds * self.instrument.line_frequency_hz
        self.aperture_auto = False

    def set_nplc(self, nplc: float) -> None:
        """Set the integration time, checked against the aperture range."""
        seconds = nplc / self.instrument.line_frequency_hz
        low, high = APERTURE_S
        if not low * (1 - 1e-9) <= seconds <= high * (1 + 1e-9):
            raise out_of_range("NPLC", nplc, f"an aperture of {low:g} to {high:g} s")
        self.nplc = nplc
        self.aperture_auto = False

    def result(self) -> Result:
        """One acquisition of the bench's present state, coded as the elements.

        :attr:`autoranged` tells whether it changed a measure range.
        """
        self.autoranged = False
        sample = self.read_now()
        volts = self.volts
        status = 0
        if sample.limited:
            status |= STATUS_CURRENT_LIMIT if volts else STATUS_VOLTAGE_LIMIT
        voltage = self._element("VOLT", sample.voltage_v)
        current = self._element("CURR", sample.current_a)
        if OVERFLOW in (voltage, current):
            status |= STATUS_OVERFLOW
        resistance = NOT_MEASURED
        if "RES" in self.functions:
            resistance = (
                sample.voltage_v / sample.current_a if sample.current_a else OVERFLOW
            )
        return Result(
            voltage,
            current,
            resistance,
            sample.time_s - self.instrument.time_zero_s,
            status,
            self.level(volts),
        )

    def _element(self, function: str, value: float) -> float:
        if function not in self.functions:
            return NOT_MEASURED
        ranging = self.ranging[function]
        if ranging.follow(value):
            self.autoranged = True
        return value if ranging.holds(value) else OVERFLOW


class B2900(SimulatedSmu):
    """A simulated Keysight B2901A, B2902A or B2912A.

    Parameters
    ----------
    name : str
        The instrument's name in the station file (``"smu3"``).
    model : str
        ``"B2901A"``, ``"B2902A"`` or ``"B2912A"``.
    bench : Bench
        The bench it works on.
    """

    def __init__(self, name: str, model: str, bench: Bench) -> None:
        if model not in MODELS:
            raise ValueError(f"{name}: {model} is not a B2900 model")
        count = 1 if model == "B2901A" else 2
        channels = range(1, count + 1)
        super().__init__(
            name,
            model,
            bench,
            f"Keysight Technologies,{model},{SERIAL},{FIRMWARE}",
            number_format=nr3_formatter(),
            error_format=error_reply_keysight,
            suffix_ranges={
                name: channels
                for name in ("SOURce", "SENSe", "OUTPut", "TRIGger", "ARM")
            },
        )
        rating = RATINGS[model]
        self.channels = {n: B2900Channel(self, n, rating) for n in channels}
        self.operation = self.add_register(EventRegister("operation", 7))
        self.questionable = self.add_register(EventRegister("questionable", 3))
        self.reset()

    def channel(self, number: int) -> B2900Channel:
        """Channel `number` (1 or 2)."""
        return self.channels[number]

    # Settings.

    def reset(self) -> None:
        """``*RST``: every channel to its defaults, outputs off."""
        for channel in self.channels.values():
            channel.reset()
        self.elements = set(ELEMENT_ORDER)
        self.beeper_on = True

    def commands(self) -> list[Command]:
        last = len(self.channels)
        channels = ChannelList(1, last, omitted=(1,))
        return [
            *self._source_commands(),
            *self._sense_commands(),
            *self._output_commands(),
            *self._trigger_commands(channels),
            *self._reading_commands(channels),
            Command(
                ":FORMat:ELEMents:SENSe",
                set=lambda names: setattr(self, "elements", set(names)),
                query=lambda: ",".join(e for e in ELEMENT_ORDER if e in self.elements),
                params=[
                    ListOf(Choice("VOLTage|CURRent|RESistance|TIME|STATus|SOURce"))
                ],
            ),
            Command(
                ":FORMat[:DATA]",
                set=lambda kind, bits: None,
                query=lambda: "ASC",
                params=[Choice("ASCii"), Raw(omitted=None)],
            ),
            Command(
                ":SYSTem:LFRequency",
                set=self.set_line_frequency,
                query=lambda: int(self.line_frequency_hz),
                params=[Number(50, 60, integer=True, default=50)],
            ),
            Command(
                ":SYSTem:BEEPer[:IMMediate]",
                set=lambda f, t: log.debug("%s: beep %g Hz %g s", self.name, f, t),
                params=[Number(55, 6640), Number(0.05, 12.75)],
            ),
            setting(":SYSTem:BEEPer:STATe", lambda: self, "beeper_on", Boolean()),
            Command(":SYSTem:ERRor:ALL?", query=self._all_errors),
            Command(":SYSTem:ERRor:CODE[:NEXT]?", query=lambda: self.errors.pop().code),
            Command(":SYSTem:TIME:TIMer:COUNt:RESet", set=self.zero_time),
            *self.operation.commands(":STATus:OPERation"),
            *self.questionable.commands(":STATus:QUEStionable"),
        ]

    def _source_commands(self) -> list[Command]:
        ch = self.channel

        def stairs(c: int) -> Staircase:
            return ch(c).staircase

        commands = [
            Command(
                ":SOURce#:FUNCtion[:MODE]",
                set=lambda c, f: ch(c).set_source(volts=f == "VOLT"),
                query=lambda c: "VOLT" if ch(c).volts else "CURR",
                params=[Choice("VOLTage|CURRent")],
            ),
            setting(":SOURce#:FUNCtion:SHAPe", ch, "shape", Choice("PULSe|DC")),
            setting(
                ":SOURce#:FUNCtion:TRIGgered:CONTinuous", ch, "continuous", Boolean()
            ),
            setting(
                ":SOURce#:SWEep:POINts",
                stairs,
                "points",
                Number(1, MAX_POINTS, integer=True, default=1),
            ),
            setting(
                ":SOURce#:SWEep:SPACing",
                stairs,
                "spacing",
                Choice("LINear|LOGarithmic"),
            ),
            setting(":SOURce#:SWEep:DIRection", stairs, "direction", Choice("UP|DOWN")),
            setting(":SOURce#:SWEep:STAir", ch, "stair", Choice("SINGle|DOUBle")),
            setting(
                ":SOURce#:SWEep:RANGing", ch, "sweep_ranging", Choice("BEST|AUTO|FIXed")
            ),
            setting(
                ":SOURce#:PULSe:DELay",
                ch,
                "pulse_delay_s",
                Number(0.0, MAX_PULSE_DELAY_S, default=0.0),
            ),
            setting(
                ":SOURce#:PULSe:WIDTh",
                ch,
                "pulse_width_s",
                Number(*PULSE_WIDTH_S, default=DEFAULT_PULSE_WIDTH_S),
            ),
        ]
        for volts, node, top in (
            (True, "VOLTage", MAX_VOLTAGE_V),
            (False, "CURRent", MAX_CURRENT_A),
        ):
            commands += self._level_commands(volts, node, top)
        return commands

    def _level_commands(self, volts: bool, node: str, top: float) -> list[Command]:
        ch = self.channel
        head = f":SOURce#:{node}"
        level = Number(-top, top, default=0.0)

        def ranging(c: int) -> Ranging:
            return ch(c).source_ranging(volts)

        return [
            Command(
                f"{head}[:LEVel][:IMMediate][:AMPLitude]",
                set=lambda c, x: ch(c).set_level(volts, x),
                query=lambda c: ch(c).level(volts),
                params=[level],
            ),
            Command(
                f"{head}[:LEVel]:TRIGgered[:AMPLitude]",
                set=lambda c, x: ch(c).set_triggered(volts, x),
                query=lambda c: ch(c).triggered[volts],
                params=[level],
            ),
            Command(
                f"{head}:MODE",
                set=lambda c, m: ch(c).mode.__setitem__(volts, m),
                query=lambda c: ch(c).mode[volts],
                params=[Choice("FIXed|SWEep|LIST")],
            ),
            Command(
                f"{head}:RANGe",
                set=lambda c, x: ranging(c).select(x, f"ch{c} source range"),
                query=lambda c: ranging(c).range,
                params=[Number(-top, top, default=top)],
            ),
            Command(
                f"{head}:RANGe:AUTO",
                set=lambda c, on: setattr(ranging(c), "auto", on),
                query=lambda c: ranging(c).auto,
                params=[Boolean()],
            ),
            *Staircase.commands(head, lambda c: ch(c).staircase, volts, top),
            *source_list_commands(
                ":SOURce#", node, lambda c: ch(c).source_list,
                lambda c, xs, append: self._load_list(ch(c), volts, xs, append),
                volts, level,
            ),
        ]

    def _sense_commands(self) -> list[Command]:
        ch = self.channel
        function = Choice(_FUNCTION_CHOICE, quoted=True)
        lf = self.line_frequency_hz
        nplc = Number(APERTURE_S[0] * lf, APERTURE_S[1] * lf, default=DEFAULT_NPLC)
        commands = [
            Command(
                ":SENSe#:FUNCtion[:ON]",
                set=lambda c, names: ch(c).functions.update(_plain(names)),
                query=lambda c: self._functions_reply(ch(c)),
                params=[ListOf(function)],
            ),
            Command(
                ":SENSe#:FUNCtion:OFF",
                set=lambda c, names: ch(c).functions.difference_update(_plain(names)),
                query=lambda c: self._functions_reply(ch(c), off=True),
                params=[ListOf(function)],
            ),
            Command(
                ":SENSe#:FUNCtion[:ON]:ALL",
                set=lambda c: ch(c).functions.update(FUNCTIONS),
            ),
            Command(":SENSe#:FUNCtion:OFF:ALL", set=lambda c: ch(c).functions.clear()),
            Command(
                ":SENSe#:FUNCtion[:ON]:COUNt?", query=lambda c: len(ch(c).functions)
            ),
            Command(
                ":SENSe#:FUNCtion:STATe?",
                query=lambda c, name: _plain((name,))[0] in ch(c).functions,
                query_params=[function],
            ),
            setting(":SENSe#:REMote", ch, "remote", Boolean()),
            setting(
                ":SENSe#:RESistance:MODE", ch, "resistance_mode", Choice("MANual|AUTO")
            ),
            setting(
                ":SENSe#:RESistance:OCOMpensated", ch, "offset_compensated", Boolean()
            ),
            Command(
                ":SENSe#:CURRent[:DC]:PROTection[:LEVel]",
                set=lambda c, a: ch(c).set_source(limit_a=a),
                query=lambda c: ch(c).state.limit_a,
                params=[Number(MIN_LIMIT_A, MAX_CURRENT_A, default=DEFAULT_LIMIT_A)],
            ),
            Command(
                ":SENSe#:VOLTage[:DC]:PROTection[:LEVel]",
                set=lambda c, v: ch(c).set_source(limit_v=v),
                query=lambda c: ch(c).state.limit_v,
                params=[Number(MIN_LIMIT_V, MAX_VOLTAGE_V, default=DEFAULT_LIMIT_V)],
            ),
            Command(
                ":SENSe#:CURRent[:DC]:PROTection:TRIPped?",
                query=lambda c: ch(c).volts and ch(c).compliance,
            ),
            Command(
                ":SENSe#:VOLTage[:DC]:PROTection:TRIPped?",
                query=lambda c: not ch(c).volts and ch(c).compliance,
            ),
        ]
        for name, node in (
            ("CURR", "CURRent[:DC]"),
            ("VOLT", "VOLTage[:DC]"),
            ("RES", "RESistance"),
        ):
            head = f":SENSe#:{node}"
            commands += [
                Command(
                    f"{head}:NPLCycles",
                    set=lambda c, n: ch(c).set_nplc(n),
                    query=lambda c: ch(c).nplc,
                    params=[nplc],
                ),
                Command(
                    f"{head}:NPLCycles:AUTO",
                    set=lambda c, on: setattr(ch(c), "aperture_auto", on),
                    query=lambda c: ch(c).aperture_auto,
                    params=[Boolean()],
                ),
                Command(
                    f"{head}:APERture",
                    set=lambda c, s: ch(c).set_aperture(s),
                    query=lambda c: ch(c).aperture_s,
                    params=[Number(*APERTURE_S, default=DEFAULT_NPLC / lf)],
                ),
                Command(
                    f"{head}:APERture:AUTO",
                    set=lambda c, on: setattr(ch(c), "aperture_auto", on),
                    query=lambda c: ch(c).aperture_auto,
                    params=[Boolean()],
                ),
            ]
            if name != "RES":
                commands += self._range_commands(name, head)
        return commands

    def _range_commands(self, name: str, head: str) -> list[Command]:
        ch = self.channel
        top = MAX_CURRENT_A if name == "CURR" else MAX_VOLTAGE_V

        def ranging(c: int) -> Ranging:
            return ch(c).ranging[name]

        return [
            Command(
                f"{head}:RANGe[:UPPer]",
                set=lambda c, x: ranging(c).select(x, f"ch{c} {name} range"),
                query=lambda c: ranging(c).range,
                params=[Number(-top, top, default=top)],
            ),
            Command(
                f"{head}:RANGe:AUTO",
                set=lambda c, on: setattr(ranging(c), "auto", on),
                query=lambda c: ranging(c).auto,
                params=[Boolean()],
            ),
            Command(
                f"{head}:RANGe:AUTO:LLIMit",
                set=lambda c, x: ranging(c).set_low_limit(x, f"ch{c} {name} range"),
                query=lambda c: ranging(c).low_limit,
                params=[Number(-top, top, default=0.0)],
            ),
        ]

    def _output_commands(self) -> list[Command]:
        ch = self.channel
        return [
            Command(
                ":OUTPut#[:STATe]",
                set=lambda c, on: ch(c).set_source(output=on),
                query=lambda c: ch(c).output,
                params=[Boolean()],
            ),
            setting(":OUTPut#:ON:AUTO", ch, "on_auto", Boolean()),
            setting(":OUTPut#:OFF:AUTO", ch, "off_auto", Boolean()),
            setting(":OUTPut#:OFF:MODE", ch, "off_mode", Choice("ZERO|HIZ|NORMal")),
            setting(":OUTPut#:LOW", ch, "low", Choice("GROund|FLOat")),
            setting(":OUTPut#:PROTection[:STATe]", ch, "protection", Boolean()),
            setting(":OUTPut#:FILTer[:LPASs][:STATe]", ch, "filter_on", Boolean()),
        ]

    def _trigger_commands(self, channels: ChannelList) -> list[Command]:
        commands = [
            Command(
                ":INITiate[:IMMediate][:ALL]",
                set=lambda chs: self._initiate(chs, ("TRAN", "ACQ")),
                params=[channels],
            ),
            Command(
                ":INITiate[:IMMediate]:ACQuire",
                set=lambda chs: self._initiate(chs, ("ACQ",)),
                params=[channels],
            ),
            Command(
                ":INITiate[:IMMediate]:TRANsient",
                set=lambda chs: self._initiate(chs, ("TRAN",)),
                params=[channels],
            ),
            *[
                Command(pattern, set=lambda chs: None, params=[channels])
                for pattern in (":ABORt[:ALL]", ":ABORt:ACQuire", ":ABORt:TRANsient")
            ],
            Command(":IDLE[:ALL]?", query=lambda chs: 1, query_params=[channels]),
        ]
        for layer in ("TRIGger", "ARM"):
            commands += self._layer_commands(layer)
        return commands

    def _layer_commands(self, layer: str) -> list[Command]:
        ch = self.channel

        def layers(c: int, which: str) -> list[Layer]:
            table = ch(c).trigger if layer == "TRIGger" else ch(c).arm
            return list(table.values()) if which == "ALL" else [table[which]]

        def entry(which: str, node: str, name: str, param: Any) -> Command:
            head = f":{layer}#[:ALL]" if which == "ALL" else f":{layer}#:{node}"

            def put(c: int, value: Any) -> None:
                for target in layers(c, which):
                    setattr(target, name, value)

            return Command(
                f"{head}:{_LAYER_NODES[name]}",
                set=put,
                query=lambda c: getattr(layers(c, which)[0], name),
                params=[param],
            )

        params = {
            "count": Number(1, MAX_COUNT, integer=True, default=1),
            "delay_s": Number(0.0, MAX_DELAY_S, default=0.0),
            "source": Words(*TRIGGER_SOURCES),
            "timer_s": Number(1e-5, 1e5, default=1e-5),
        }
        return [
            entry(which, node, name, param)
            for which, node in (
                ("ALL", ""),
                ("TRAN", "TRANsient"),
                ("ACQ", "ACQuire"),
            )
            for name, param in params.items()
        ]

    def _reading_commands(self, channels: ChannelList) -> list[Command]:
        names = [
            (None, ""),
            ("VOLT", ":VOLTage[:DC]"),
            ("CURR", ":CURRent[:DC]"),
            ("RES", ":RESistance"),
        ]
        arrays = [*names, ("TIME", ":TIME"), ("STAT", ":STATus"), ("SOUR", ":SOURce")]
        commands = [
            Command(
                f":MEASure{node}?",
                query=lambda chs, e=element: self._measure(chs, e),
                query_params=[channels],
            )
            for element, node in names
        ]
        for read in (False, True):
            root = ":READ" if read else ":FETCh"
            commands += [
                Command(
                    f"{root}[:SCALar]{node}?",
                    query=lambda chs, e=element, r=read: self._fetch(chs, e, r, False),
                    query_params=[channels],
                )
                for element, node in arrays
            ]
            commands += [
                Command(
                    f"{root}:ARRay{node}?",
                    query=lambda chs, e=element, r=read: self._fetch(chs, e, r, True),
                    query_params=[channels],
                )
                for element, node in arrays
            ]
        return commands

    # Source settings.

    @staticmethod
    def _load_list(
        channel: B2900Channel, volts: bool, values: tuple[float, ...], append: bool
    ) -> None:
        channel.source_list[volts] = extend_list(
            channel.source_list[volts], values, append, MAX_POINTS
        )

    @staticmethod
    def _functions_reply(channel: B2900Channel, off: bool = False) -> str:
        names = [f for f in FUNCTIONS if (f in channel.functions) != off]
        return ",".join(quote(name) for name in names)

    def _all_errors(self) -> str:
        entries = []
        while len(self.errors):
            entries.append(self.error_format(self.errors.pop()))
        return ",".join(entries) or self.error_format(self.errors.pop())

    # The trigger model.

    def _initiate(self, numbers: tuple[int, ...], actions: tuple[str, ...]) -> None:
        chosen = [self.channel(n) for n in dict.fromkeys(numbers)]
        for channel in chosen:
            if "TRAN" in actions:
                levels = channel.levels()
                for level in levels:
                    channel.check_level(channel.volts, level)
            channel.results = []
        bases = {channel.number: channel.level() for channel in chosen}
        for channel in chosen:
            if channel.on_auto and not channel.output:
                channel.set_source(output=True)
        events: list[tuple[float, int, int, str, float]] = []
        for channel in chosen:
            self._schedule(channel, actions, events)
        self._play(events)
        for channel in chosen:
            self._finish(channel, actions, bases[channel.number])

    def _schedule(
        self,
        channel: B2900Channel,
        actions: tuple[str, ...],
        events: list[tuple[float, int, int, str, float]],
    ) -> None:
        """Lay out one channel's transients and acquisitions from now on."""
        start_s = self.bench.now_s
        levels = channel.levels() if "TRAN" in actions else []
        base = channel.level(channel.volts)
        pulsed = channel.shape == "PULS"
        aperture_s = channel.aperture_s
        overhead_s = self.bench.timing.measure_overhead_s
        tran, acq = channel.trigger["TRAN"], channel.trigger["ACQ"]
        arm_tran, arm_acq = channel.arm["TRAN"], channel.arm["ACQ"]
        arms = max(arm_tran.count if "TRAN" in actions else 0,
                   arm_acq.count if "ACQ" in actions else 0)  # fmt: skip
        points = max(tran.count if "TRAN" in actions else 0,
                     acq.count if "ACQ" in actions else 0)  # fmt: skip
        number = channel.number
        at = start_s
        index = 0
        for arm in range(arms):
            at += max(arm_tran.delay_s, arm_acq.delay_s)
            for point in range(points):
                busy = 0.0
                if "TRAN" in actions and point < tran.count and arm < arm_tran.count:
                    level = levels[index % len(levels)]
                    index += 1
                    step_at = at + tran.delay_s
                    if pulsed:
                        rise = step_at + channel.pulse_delay_s
                        fall = rise + channel.pulse_width_s
                        events.append((_tick(rise), 1, number, "level", level))
                        events.append((_tick(fall), 1, number, "level", base))
                        busy = fall - at
                    else:
                        events.append((_tick(step_at), 1, number, "level", level))
                        busy = tran.delay_s
                if "ACQ" in actions and point < acq.count and arm < arm_acq.count:
                    taken = at + acq.delay_s + aperture_s
                    # A reading ending as the level changes reads the level before.
                    events.append((_tick(taken), 0, number, "measure", 0.0))
                    busy = max(busy, acq.delay_s + aperture_s + overhead_s)
                period = busy
                if tran.source.startswith("TIM"):
                    period = max(period, tran.timer_s)
                at += period
        events.append((_tick(at), 2, number, "end", 0.0))

    def _play(self, events: list[tuple[float, int, int, str, float]]) -> None:
        """Run the events of every channel in time order on the bench."""
        heapq.heapify(events)
        bench = self.bench
        while events:
            time_s, _, number, action, value = heapq.heappop(events)
            if time_s > bench.now_s:
                bench.advance(time_s - bench.now_s)
            channel = self.channel(number)
            if action == "level":
                key = "level_v" if channel.volts else "level_a"
                channel.source_ranging(channel.volts).follow(value)
                channel.set_source(**{key: value})
            elif action == "measure":
                channel.results.append(channel.result())
                if channel.autoranged:
                    self._delay_channel(events, number)

    def _delay_channel(
        self, events: list[tuple[float, int, int, str, float]], number: int
    ) -> None:
        """Move the rest of one channel's run later by the autorange time."""
        lost_s = self.bench.timing.autorange_s
        if lost_s == 0:
            return
        events[:] = [
            (_tick(event[0] + lost_s), *event[1:]) if event[2] == number else event
            for event in events
        ]
        heapq.heapify(events)

    def _finish(
        self, channel: B2900Channel, actions: tuple[str, ...], base: float
    ) -> None:
        """After a run: a fixed DC level stays, a sweep or pulses end at the base."""
        volts = channel.volts
        if "TRAN" in actions:
            if channel.mode[volts] == "FIX" and channel.shape == "DC":
                channel.set_level(volts, channel.triggered[volts])
            elif channel.level(volts) != base:
                channel.set_source(**{"level_v" if volts else "level_a": base})
        if channel.off_auto:
            channel.set_source(output=False)

    # Readings.

    def _measure(self, numbers: tuple[int, ...], element: str | None) -> list[float]:
        chosen = [self.channel(n) for n in dict.fromkeys(numbers)]
        for channel in chosen:
            if channel.on_auto and not channel.output:
                channel.set_source(output=True)
        longest_s = max(channel.aperture_s for channel in chosen)
        self.wait_s(longest_s + self.bench.timing.measure_overhead_s)
        for channel in chosen:
            channel.results = [channel.result()]
        self.charge_autorange(any(channel.autoranged for channel in chosen))
        for channel in chosen:
            if channel.off_auto:
                channel.set_source(output=False)
        return self._values(chosen, element, array=False)

    def _fetch(
        self, numbers: tuple[int, ...], element: str | None, read: bool, array: bool
    ) -> list[float]:
        if read:
            self._initiate(numbers, ("TRAN", "ACQ"))
        chosen = [self.channel(n) for n in dict.fromkeys(numbers)]
        for channel in chosen:
            if not channel.results:
                raise ScpiError(
                    DATA_STALE,
                    f"no readings on channel {channel.number}",
                )
        return self._values(chosen, element, array)

    def _values(
        self, chosen: list[B2900Channel], element: str | None, array: bool
    ) -> list[float]:
        names = (
            [element]
            if element is not None
            else [e for e in ELEMENT_ORDER if e in self.elements]
        )
        values: list[float] = []
        for channel in chosen:
            results = channel.results if array else channel.results[-1:]
            for result in results:
                values += [result.element(name) for name in names]
        return values


_LAYER_NODES = {
    "count": "COUNt",
    "delay_s": "DELay",
    "source": "SOURce",
    "timer_s": "TIMer",
}


def _tick(time_s: float) -> float:
    """A time on the picosecond grid, so that equal times compare equal."""
    return round(time_s, 12)


def _plain(names: tuple[str, ...]) -> tuple[str, ...]:
    """``VOLT:DC`` as the B2900 names it, ``VOLT``."""
    return tuple(name.split(":")[0] for name in names)
