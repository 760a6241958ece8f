"""Pieces shared by the simulated SCPI source-measure units.

The Keithley 2450 and 2400 and the Keysight B2900 are
:class:`~simulator.scpi.ScpiInstrument` subclasses built on
:class:`SimulatedSmu`, which joins the SCPI engine to the bench: every message
starts a bench message (readings of one message share a solve), errors are
stamped with the instrument's clock, and time is charged to the bench clock.

An output is a :class:`SmuChannel`: its source state lives on the bench
(:class:`simulator.bench.SourceState`), its measure settings here. A reading
charges the integration time (``nplc / line frequency`` plus the bench's
``measure_overhead_s``) and is taken at the end of that window, as on the
simulated 2600B. Each instrument adds what its manual puts around a reading:
source and trigger delays, and ``autorange_s`` when the measure autorange
changes range (:meth:`SimulatedSmu.charge_autorange`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from simulator.scpi import (
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    NUMBER,
    REQUIRED,
    WORD,
    Command,
    ListOf,
    Number,
    Param,
    ScpiError,
    ScpiInstrument,
    Token,
)

if TYPE_CHECKING:
    from simulator.bench import Bench, SourceState

CLOCK_EPOCH_S = datetime(2025, 1, 6, 9, 0, 0, tzinfo=UTC).timestamp()
"""The instruments' real-time clock at bench time 0, s since the Unix epoch."""

NOT_MEASURED = 9.91e37
"""The SCPI code of an element that was not measured (NaN)."""

OVERFLOW = 9.9e37
"""The reading of a measurement beyond a fixed measure range."""

SETTINGS_CONFLICT = -221
"""Error of a setting that contradicts another one."""

DATA_STALE = -230
"""Error of a fetch with no readings to fetch."""

TOO_MUCH_DATA = -223
"""Error of a list longer than the instrument takes."""


def range_for(value: float, ranges: Sequence[float], headroom: float) -> float | None:
    """The lowest range that holds `value` (up to `headroom` times it), or None."""
    magnitude = abs(value)
    for top in ranges:
        if magnitude <= top * headroom * (1 + 1e-12):
            return top
    return None


def out_of_range(what: str, value: float, allowed: str) -> ScpiError:
    """Error -222 naming the setting, the value and what is allowed."""
    return ScpiError(DATA_OUT_OF_RANGE, f"{what} {value:g} (allowed {allowed})")


class Sample(NamedTuple):
    """One reading of an output taken from the bench.

    Attributes
    ----------
    voltage_v : float
        The output's voltage, V.
    current_a : float
        The current the output delivers, A (with thermal noise).
    limited : bool
        Whether the source is held at its limit (in compliance).
    time_s : float
        Bench time at the end of the reading, s.
    """

    voltage_v: float
    current_a: float
    limited: bool
    time_s: float


@dataclass(frozen=True)
class SmuRating:
    """Ranges and maxima of one output of a model, from its manual.

    Attributes
    ----------
    v_ranges_v : tuple of float
        Voltage source and measure ranges, V, lowest first.
    i_ranges_a : tuple of float
        Current measure ranges, A, lowest first.
    i_source_ranges_a : tuple of float
        Current source ranges, A, lowest first.
    r_ranges_ohm : tuple of float
        Resistance ranges, ohm, lowest first.
    headroom : float
        A range holds up to this factor times its nominal value.
    """

    v_ranges_v: tuple[float, ...]
    i_ranges_a: tuple[float, ...]
    i_source_ranges_a: tuple[float, ...]
    r_ranges_ohm: tuple[float, ...]
    headroom: float

    @property
    def max_voltage_v(self) -> float:
        """The largest voltage level, V."""
        return self.v_ranges_v[-1] * self.headroom

    @property
    def max_current_a(self) -> float:
        """The largest current level, A."""
        return self.i_source_ranges_a[-1] * self.headroom


class Ranging:
    """A range with its autorange switch (a source or a measure range).

    Parameters
    ----------
    ranges : sequence of float
        The nominal ranges, lowest first.
    headroom : float
        A range holds up to this factor times its nominal value.
    default : float
        The range after reset.
    """

    def __init__(self, ranges: Sequence[float], headroom: float, default: float):
        self.ranges = tuple(ranges)
        self.headroom = headroom
        self.default = default
        self.low_limit = self.ranges[0]
        self.range = default
        self.auto = True

    def reset(self) -> None:
        """Back to the default range, autorange on."""
        self.range = self.default
        self.auto = True
        self.low_limit = self.ranges[0]

    def select(self, value: float, what: str) -> None:
        """Choose the lowest range holding `value` and turn autorange off.

        Raises
        ------
        ScpiError
            -222 when no range holds it.
        """
        top = range_for(value, self.ranges, self.headroom)
        if top is None:
            raise out_of_range(what, value, f"up to {self.ranges[-1]:g}")
        self.range = top
        self.auto = False

    def set_low_limit(self, value: float, what: str) -> None:
        """Set the lowest range autorange may choose."""
        top = range_for(value, self.ranges, self.headroom)
        if top is None:
            raise out_of_range(what, value, f"up to {self.ranges[-1]:g}")
        self.low_limit = top
        if self.auto and self.range < top:
            self.range = top

    @property
    def top(self) -> float:
        """The largest value the present range holds."""
        return self.range * self.headroom

    def follow(self, value: float) -> bool:
        """In autorange, go to the lowest range holding `value` (not below the low
        limit); return whether the range changed."""
        if not self.auto:
            return False
        top = range_for(value, self.ranges, self.headroom) or self.ranges[-1]
        chosen = max(top, self.low_limit)
        changed = chosen != self.range
        self.range = chosen
        return changed

    def holds(self, value: float) -> bool:
        """Whether `value` is within the present range (always, in autorange)."""
        if self.auto:
            return abs(value) <= self.ranges[-1] * self.headroom * (1 + 1e-12)
        return abs(value) <= self.top * (1 + 1e-12)


class SmuChannel:
    """One output of a simulated SCPI SMU, wired to the bench.

    The source function, levels, limits and output state are the bench's
    :class:`~simulator.bench.SourceState` of the channel; the instrument keeps
    the ranges and measure settings.

    Parameters
    ----------
    instrument : SimulatedSmu
        The instrument the output belongs to.
    label : str
        The channel name the station uses (``"smu"``, ``"ch1"``).
    rating : SmuRating
        The output's ranges.
    """

    def __init__(self, instrument: SimulatedSmu, label: str, rating: SmuRating):
        self.instrument = instrument
        self.bench: Bench = instrument.bench
        self.label = label
        self.rating = rating
        self.key = f"{instrument.name}.{label}"
        self.state: SourceState = self.bench.register_source(self.key)
        headroom = rating.headroom
        self.v_source = Ranging(rating.v_ranges_v, headroom, rating.v_ranges_v[0])
        self.i_source = Ranging(
            rating.i_source_ranges_a, headroom, rating.i_source_ranges_a[0]
        )
        self._read_at: tuple[bool, bool, float] | None = None

    # Source.

    def set_source(self, **changes: Any) -> None:
        """Change the bench's source state of this output."""
        self.bench.set_source(self.key, **changes)

    @property
    def volts(self) -> bool:
        """Whether the output sources voltage (else current)."""
        return self.state.volts

    @property
    def output(self) -> bool:
        """Whether the output is on."""
        return self.state.output

    def source_ranging(self, volts: bool) -> Ranging:
        """The source range of the voltage or current function."""
        return self.v_source if volts else self.i_source

    def check_level(self, volts: bool, level: float) -> None:
        """Refuse a level the source range (or the model) cannot give.

        Raises
        ------
        ScpiError
            -222 naming the limit.
        """
        ranging = self.source_ranging(volts)
        if not ranging.holds(level):
            unit = "V" if volts else "A"
            top = ranging.ranges[-1] * ranging.headroom if ranging.auto else ranging.top
            raise out_of_range(f"{self.key} level", level, f"|x| <= {top:g} {unit}")

    def program_level(self, volts: bool, level: float) -> None:
        """Set the DC level of the voltage or current function (checked)."""
        self.check_level(volts, level)
        ranging = self.source_ranging(volts)
        ranging.follow(level)
        self.set_source(**{"level_v" if volts else "level_a": level})

    def level(self, volts: bool | None = None) -> float:
        """The programmed level of a function (the present one by default)."""
        volts = self.state.volts if volts is None else volts
        return self.state.level_v if volts else self.state.level_a

    @property
    def settled(self) -> bool:
        """Whether the output, function and level are those of the last reading.

        A source that changed since then settles for its source delay before
        the next reading; an unchanged one does not.
        """
        return self._source_now() == self._read_at

    def _source_now(self) -> tuple[bool, bool, float]:
        state = self.state
        return state.output, state.volts, state.level

    # Measurement.

    def reading_time_s(self, nplc: float) -> float:
        """Bench time one reading takes: integration and overhead, s."""
        return nplc / self.instrument.line_frequency_hz + (
            self.bench.timing.measure_overhead_s
        )

    def sample(self, nplc: float) -> Sample:
        """Integrate for `nplc` power-line cycles and read the bench at the end."""
        self.bench.advance(self.reading_time_s(nplc))
        return self.read_now()

    def read_now(self) -> Sample:
        """A reading of the present state, without charging time."""
        voltage_v, current_a, limited = self.bench.measure(self.key)
        self._read_at = self._source_now()
        return Sample(voltage_v, current_a, limited, self.bench.now_s)

    @property
    def compliance(self) -> bool:
        """Whether the source is held at its limit now."""
        return self.bench.compliance(self.key)


class SimulatedSmu(ScpiInstrument):
    """Base of the simulated SCPI source-measure units.

    Parameters
    ----------
    name : str
        The instrument's name in the station file (``"smu2"``).
    model : str
        The model number (``"2450"``, ``"B2902A"``).
    bench : Bench
        The bench whose clock and circuit it works on.
    identity : str
        The ``*IDN?`` reply.
    **options
        Passed to :class:`~simulator.scpi.ScpiInstrument` (formats, error
        texts, suffix ranges).
    """

    def __init__(
        self, name: str, model: str, bench: Bench, identity: str, **options: Any
    ) -> None:
        super().__init__(name, identity, **options)
        self.model = model
        self.bench = bench
        self.line_frequency_hz = bench.timing.line_frequency_hz
        self.time_zero_s = bench.now_s

    def write(self, message: str) -> None:
        """Take input from the controller; readings in it share one bench solve."""
        self.bench.begin_message()
        super().write(message)

    def clock_s(self) -> float:
        """The instrument's real-time clock, s since the Unix epoch."""
        return CLOCK_EPOCH_S + self.bench.now_s

    def queue_error(self, code: int, message: str | None = None) -> None:
        """Queue an error; a detail given with it follows the code's text.

        ``ScpiError(-222, "nplc 30 (allowed 0.01 to 10)")`` is queued as
        ``Parameter data out of range: nplc 30 (allowed 0.01 to 10)`` on the
        2400, with ``Data out of range`` on the B2900.
        """
        text = self.error_messages.get(code, "Unknown error")
        super().queue_error(code, f"{text}: {message}" if message else text)

    def wait_s(self, seconds: float) -> None:
        """Let bench time pass (a delay of the instrument)."""
        if seconds > 0:
            self.bench.advance(seconds)

    def charge_autorange(self, changed: bool) -> None:
        """Charge the bench's ``autorange_s`` when autorange changed a range."""
        if changed:
            self.wait_s(self.bench.timing.autorange_s)

    @property
    def elapsed_s(self) -> float:
        """Time stamps: s since power-on or the last :meth:`zero_time`."""
        return self.bench.now_s - self.time_zero_s

    def zero_time(self) -> None:
        """Start the time stamps again from 0."""
        self.time_zero_s = self.bench.now_s

    def set_line_frequency(self, hertz: int) -> None:
        """``:SYST:LFR``: 50 or 60 Hz, the unit of the integration time."""
        if hertz not in (50, 60):
            raise out_of_range("line frequency", hertz, "50 or 60 Hz")
        self.line_frequency_hz = float(hertz)


# Command declarations.


def setting(
    pattern: str,
    owner: Callable[..., Any],
    name: str,
    param: Param,
    *,
    reply: Callable[[Any], str] | None = None,
) -> Command:
    """A command that sets and reads one attribute of a settings object.

    Parameters
    ----------
    pattern : str
        The header pattern.
    owner : callable
        Called with the header's numeric suffixes, returns the object.
    name : str
        The attribute; a property setter may check the value and raise
        :class:`~simulator.scpi.ScpiError`.
    param : Param
        The parameter of the command form.
    reply : callable, optional
        Formats the query's value.
    """

    def put(*args: Any) -> None:
        setattr(owner(*args[:-1]), name, args[-1])

    def get(*suffixes: Any) -> Any:
        return getattr(owner(*suffixes), name)

    return Command(pattern, set=put, query=get, params=[param], reply=reply)


class Words(Param):
    """Character data from a fixed set of words, each given in full.

    For names that end in a digit (``INT1``, ``EXT2``), which a
    :class:`~simulator.scpi.Choice` cannot hold. The handler gets the word in
    upper case; another word is error -224, other data -104.

    Parameters
    ----------
    *words : str
        The accepted words.
    omitted : object
        The value when left out (see :class:`~simulator.scpi.Param`).
    """

    def __init__(self, *words: str, omitted: Any = REQUIRED) -> None:
        super().__init__(omitted=omitted)
        self.words = frozenset(word.upper() for word in words)

    def convert(self, token: Token) -> str:
        """Give the word in upper case."""
        if token.kind != WORD:
            raise ScpiError(DATA_TYPE_ERROR)
        if token.value not in self.words:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        return str(token.value)


class OnOffOnce(Param):
    """A switch that also takes ``ONCE`` (autozero): True, False or ``"ONCE"``."""

    def convert(self, token: Token) -> bool | str:
        """Give True, False or ``"ONCE"``."""
        kind, value = token
        if kind == WORD and value == "ONCE":
            return "ONCE"
        if kind == WORD and value in ("ON", "OFF"):
            return value == "ON"
        if kind == NUMBER:
            return round(value) != 0
        raise ScpiError(ILLEGAL_PARAMETER_VALUE)


# Source lists and sweeps.


def source_list_commands(
    head: str,
    node: str,
    lists: Callable[[Any], dict[bool, list[float]]],
    load: Callable[[Any, tuple[float, ...], bool], None],
    volts: bool,
    level: Param,
) -> list[Command]:
    """``<head>:LIST:<node>``, ``:APPend`` and ``:POINts?`` of one function.

    Parameters
    ----------
    head : str
        The source subsystem's header, ``":SOURce[1]"`` or ``":SOURce#"``.
    node : str
        ``"VOLTage"`` or ``"CURRent"``.
    lists : callable
        The source lists (keyed True for voltage) a command's context owns.
    load : callable
        ``load(context, values, append)`` stores values in that list.
    volts : bool
        Whether these are the voltage function's commands.
    level : Param
        The parameter one level is read with (its range).
    """
    return [
        Command(
            f"{head}:LIST:{node}",
            set=lambda c, xs: load(c, xs, False),
            query=lambda c: tuple(lists(c)[volts]),
            params=[ListOf(level)],
        ),
        Command(
            f"{head}:LIST:{node}:APPend",
            set=lambda c, xs: load(c, xs, True),
            params=[ListOf(level)],
        ),
        Command(
            f"{head}:LIST:{node}:POINts?",
            query=lambda c: len(lists(c)[volts]),
        ),
    ]


def extend_list(
    present: Sequence[float],
    values: Sequence[float],
    append: bool,
    total: int,
    per_command: int | None = None,
) -> list[float]:
    """A source list after ``:SOUR:LIST:<function>`` or its ``:APPend``.

    Parameters
    ----------
    present : sequence of float
        The list before the command.
    values : sequence of float
        The values the command carries.
    append : bool
        Whether they go after the present ones (else they replace them).
    total : int
        Most points of a list.
    per_command : int, optional
        Most values one command may carry.

    Raises
    ------
    ScpiError
        -223 when a limit is passed; the list is then left as it was.
    """
    if per_command is not None and len(values) > per_command:
        raise ScpiError(
            TOO_MUCH_DATA,
            f"{len(values)} values in one command (at most {per_command})",
        )
    kept = list(present) if append else []
    if len(kept) + len(values) > total:
        raise ScpiError(TOO_MUCH_DATA, f"a list holds {total} points")
    return [*kept, *values]


class Staircase:
    """The sweep mode's start, stop and points, for voltage and current.

    Start and stop belong to each function (keyed True for voltage); the
    points, the spacing and the direction are shared, as on the instruments.
    Center, span and step are views of start, stop and points.

    Parameters
    ----------
    points : int
        The points after reset.
    max_points : int
        Most points of a sweep.
    """

    def __init__(self, points: int, max_points: int) -> None:
        self.default_points = points
        self.max_points = max_points
        self.reset()

    def reset(self) -> None:
        """Start and stop 0, the default points, linear, upward."""
        self.start = {True: 0.0, False: 0.0}
        self.stop = {True: 0.0, False: 0.0}
        self.points = self.default_points
        self.spacing = "LIN"
        self.direction = "UP"

    def center(self, volts: bool) -> float:
        """Midpoint of start and stop."""
        return (self.start[volts] + self.stop[volts]) / 2

    def span(self, volts: bool) -> float:
        """Stop minus start."""
        return self.stop[volts] - self.start[volts]

    def step(self, volts: bool) -> float:
        """The step between points (0 for a single point)."""
        return self.span(volts) / (self.points - 1) if self.points > 1 else 0.0

    def set_center(self, volts: bool, center: float) -> None:
        """Move start and stop, keeping the span."""
        self._place(volts, center, self.span(volts))

    def set_span(self, volts: bool, span: float) -> None:
        """Move start and stop, keeping the center."""
        self._place(volts, self.center(volts), span)

    def _place(self, volts: bool, center: float, span: float) -> None:
        self.start[volts] = center - span / 2
        self.stop[volts] = center + span / 2

    def set_step(self, volts: bool, step: float) -> None:
        """Set the points that give `step` between start and stop.

        Raises
        ------
        ScpiError
            -222 for a step of 0 or one giving too few or too many points.
        """
        if step == 0:
            raise out_of_range("sweep step", step, "not 0")
        points = step_points(self.start[volts], self.stop[volts], step)
        if not 2 <= points <= self.max_points:
            raise out_of_range("sweep points", points, f"2 to {self.max_points}")
        self.points = points

    def levels(self, volts: bool) -> list[float]:
        """The levels of the sweep, in order."""
        start, stop = self.start[volts], self.stop[volts]
        if self.spacing == "LOG":
            levels = log_levels(start, stop, self.points)
        else:
            levels = linear_levels(start, stop, self.points)
        return levels[::-1] if self.direction.startswith("DOW") else levels

    @staticmethod
    def commands(
        head: str,
        owner: Callable[..., Staircase],
        volts: bool,
        top: float,
    ) -> list[Command]:
        """``<head>:STARt``, ``:STOP``, ``:CENTer``, ``:SPAN``, ``:STEP``.

        Parameters
        ----------
        head : str
            The function's node, ``":SOURce[1]:VOLTage"``.
        owner : callable
            Called with the header's suffixes, returns the staircase.
        volts : bool
            The function: True for voltage.
        top : float
            The largest level.
        """
        level = Number(-top, top, default=0.0)
        width = Number(-2 * top, 2 * top, default=0.0)

        def command(
            node: str, put: Callable[..., Any], get: Callable[..., Any], param: Number
        ) -> Command:
            return Command(
                f"{head}:{node}",
                set=lambda *a: put(owner(*a[:-1]), a[-1]),
                query=lambda *a: get(owner(*a)),
                params=[param],
            )

        return [
            command(
                "STARt",
                lambda s, x: s.start.__setitem__(volts, x),
                lambda s: s.start[volts],
                level,
            ),
            command(
                "STOP",
                lambda s, x: s.stop.__setitem__(volts, x),
                lambda s: s.stop[volts],
                level,
            ),
            command(
                "CENTer",
                lambda s, x: s.set_center(volts, x),
                lambda s: s.center(volts),
                level,
            ),
            command(
                "SPAN",
                lambda s, x: s.set_span(volts, x),
                lambda s: s.span(volts),
                width,
            ),
            command(
                "STEP",
                lambda s, x: s.set_step(volts, x),
                lambda s: s.step(volts),
                width,
            ),
        ]


# Levels of sweeps.


def linear_levels(start: float, stop: float, points: int) -> list[float]:
    """``points`` levels evenly spaced from `start` to `stop`."""
    return [float(v) for v in np.linspace(start, stop, points)]


def log_levels(
    start: float, stop: float, points: int, asymptote: float = 0.0
) -> list[float]:
    """``points`` levels spaced evenly in log(level - asymptote).

    Raises
    ------
    ScpiError
        -221 when start and stop are not of one sign, away from the asymptote.
    """
    low, high = start - asymptote, stop - asymptote
    if low == 0 or high == 0 or (low > 0) != (high > 0):
        raise ScpiError(
            SETTINGS_CONFLICT,
            "a log sweep needs start and stop on one side of the asymptote",
        )
    return [float(v) + asymptote for v in np.geomspace(low, high, points)]


def step_points(start: float, stop: float, step: float) -> int:
    """The points of a linear sweep from `start` to `stop` in steps of `step`."""
    if step == 0:
        return 1
    return int(math.floor(abs(stop - start) / abs(step) + 1e-9)) + 1


def statistic(values: Sequence[float], kind: str) -> float:
    """Mean, standard deviation, minimum, maximum or peak-to-peak of `values`.

    Parameters
    ----------
    kind : str
        ``"MEAN"``, ``"SDEV"``, ``"MIN"``, ``"MAX"`` or ``"PKPK"``.
    """
    data = np.asarray(values, dtype=float)
    if kind == "MEAN":
        return float(data.mean())
    if kind == "SDEV":
        return float(data.std(ddof=1)) if data.size > 1 else 0.0
    if kind == "MIN":
        return float(data.min())
    if kind == "MAX":
        return float(data.max())
    return float(data.max() - data.min())
