"""SCPI pieces shared by the Keithley 2450, Keithley 2400 and Keysight B2900 drivers.

Replies are parsed strictly: a reply that is not a number raises, an
overflow reading (``+9.9e37``, ``9.91e37``, ``9.9E37``, ``-9.9e37``) becomes NaN
with a logged warning, and a buffer read back with another count of readings
than the trigger count raises. The error queue is drained with a cap, so
draining ends even when the instrument answers garbage.

:class:`ScpiInstrument` and :class:`ScpiSmuChannel` are the pymeasure bases of
the three drivers: model ratings, channel limits bound per model, identity,
error queue and a shutdown that turns every output off.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
from pymeasure.adapters import Adapter
from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.generic_types import SCPIMixin

from drivers._format import (
    RangeLimit,
    format_number,
    strict_choice_named,
    strict_range_named,
)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

#: Most entries read from an error queue in one :meth:`ScpiInstrument.check_errors`.
ERROR_DRAIN_LIMIT = 100

#: Readings at or beyond this magnitude are the instruments' overflow or
#: "not measured" codes (9.9e37 and 9.91e37), not currents.
OVERFLOW_READING = 9.9e37

#: Most values one ``:SOUR:LIST:VOLT`` or ``:SOUR:LIST:VOLT:APP`` command may
#: carry on the Keithley 2400 and 2450; longer lists are appended in groups.
LIST_VALUES_PER_COMMAND = 100

#: A measurement range holds readings up to this factor times its nominal value;
#: a range setting selects the lowest range that holds it.
RANGE_FULL_SCALE = 1.05

_ERROR_ENTRY = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$', re.DOTALL)


# Replies


def parse_number(text: str) -> float:
    """Parse a numeric SCPI reply such as ``+1.000000E-07``.

    Raises
    ------
    ValueError
        If the reply is not one number.
    """
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a number from the instrument, got {text!r}"
        ) from None


def parse_bool(text: str) -> bool:
    """Parse a boolean SCPI reply, ``0`` or ``1``.

    Raises
    ------
    ValueError
        If the reply is neither.
    """
    word = text.strip()
    if word in ("0", "1", "+0", "+1"):
        return word.endswith("1")
    raise ValueError(f"expected 0 or 1 from the instrument, got {text!r}")


def parse_reading(text: str, source: str = "instrument") -> float:
    """Parse one measured reading; an overflow reading becomes NaN.

    Parameters
    ----------
    text : str
        The reply, for example ``"1.234500E-06"`` or ``"+9.9E37"``.
    source : str
        What gave the reading (``"smu1.smu"``), named in the warning.

    Returns
    -------
    float
        The reading, or NaN for an overflow (a warning is logged).

    Raises
    ------
    ValueError
        If the reply is not a number.
    """
    return float(parse_readings(text, 1, source)[0])


def parse_readings(
    text: str, count: int | None = None, source: str = "instrument"
) -> npt.NDArray[np.float64]:
    """Parse comma-separated readings; overflow readings become NaN.

    Parameters
    ----------
    text : str
        The reply, for example ``"1.0E-06,2.0E-06,+9.9E37"``.
    count : int, optional
        The number of readings the trigger count asked for.
    source : str
        What gave the readings (``"smu1.smu"``), named in messages.

    Returns
    -------
    numpy.ndarray
        The readings in A or V, NaN where the instrument reported an overflow;
        one warning is logged per reply that held any.

    Raises
    ------
    ValueError
        If a field is not a number, or there are not `count` readings.
    """
    fields = [field for field in text.strip().split(",") if field.strip()]
    readings = np.array([parse_number(field) for field in fields], dtype=np.float64)
    if count is not None and readings.size != count:
        plural = "" if count == 1 else "s"
        raise ValueError(
            f"{source}: expected {count} reading{plural}, got {readings.size}"
        )
    overflow = np.abs(readings) >= OVERFLOW_READING
    if overflow.any():
        log.warning(
            "%s: %d of %d readings overflowed (%s); stored as NaN",
            source,
            int(overflow.sum()),
            readings.size,
            ", ".join(fields[i].strip() for i in np.flatnonzero(overflow)[:3]),
        )
        readings[overflow] = math.nan
    return readings


class ScpiError(NamedTuple):
    """One entry of a SCPI error queue (``:SYST:ERR?``)."""

    code: int
    message: str


def parse_error(text: str) -> ScpiError:
    """Parse a ``:SYST:ERR?`` reply, ``code,"message"``.

    The Keithley 2450 appends ``;severity;date time`` inside the quotes; it
    stays part of the message.

    Raises
    ------
    ValueError
        If the reply does not have that form.
    """
    match = _ERROR_ENTRY.match(text)
    if match is None:
        raise ValueError(f"not an error queue entry: {text!r}")
    return ScpiError(int(match.group(1)), match.group(2))


def parse_identity(text: str) -> dict[str, str]:
    """Parse an ``*IDN?`` reply into manufacturer, model, serial and firmware.

    ``KEITHLEY INSTRUMENTS,MODEL 2450,04365704,1.6.4c`` gives the model
    ``"2450"``: a leading ``MODEL`` is dropped.

    Raises
    ------
    ValueError
        If the reply does not have four comma-separated fields.
    """
    fields = [field.strip() for field in text.strip().split(",")]
    if len(fields) != 4:
        raise ValueError(f"unexpected *IDN? reply {text!r}")
    manufacturer, model, serial, firmware = fields
    if model.lower().startswith("model "):
        model = model[len("model ") :].strip()
    return {
        "manufacturer": manufacturer,
        "model": model,
        "serial": serial,
        "firmware": firmware,
    }


# Commands


def join_commands(commands: Sequence[str]) -> str:
    """Join commands into one compound message, ``":A 1;:B 2"``.

    Every command starts at the root (``:`` or ``*``), so none depends on the
    header path of the one before it.
    """
    return ";".join(commands)


def format_values(values: Sequence[float]) -> str:
    """Format numbers as a SCPI list, ``"0.1,-1e-07,1.23456789"``, losing no digit."""
    return ",".join(format_number(value) for value in values)


def list_commands(header: str, values: Sequence[float], per_command: int) -> list[str]:
    """Make the commands that load a source list, in groups of `per_command`.

    ``list_commands(":SOUR:LIST:VOLT", levels, 100)`` gives
    ``":SOUR:LIST:VOLT v1,...,v100"`` then ``":SOUR:LIST:VOLT:APP v101,..."``.
    """
    groups = [values[i : i + per_command] for i in range(0, len(values), per_command)]
    return [
        f"{header if i == 0 else header + ':APP'} {format_values(group)}"
        for i, group in enumerate(groups)
    ]


def on_off(enabled: bool) -> str:
    """Format a boolean setting as SCPI ``ON`` / ``OFF``."""
    return "ON" if enabled else "OFF"


def number_control(
    header: str, docs: str, unit: str, family: tuple[float, float]
) -> Any:
    """Make a numeric control ``<header>?`` / ``<header> <value>``.

    The class-level validator spans the whole instrument family; every channel
    replaces it with its model's range (see :attr:`ScpiSmuChannel.limits`).
    Values are sent without losing precision; a reply that is not exactly
    one number raises.
    """
    control = Channel.control(
        f"{header}?",
        f"{header} %s",
        docs,
        validator=strict_range_named(*family, unit, header),
        set_process=format_number,
        cast=str,
        get_process=parse_number,
        maxsplit=0,
        dynamic=True,
    )
    control.__doc__ = docs  # without the "(dynamic)" pymeasure appends
    control.header = header
    return control


def switch_control(header: str, docs: str, what: str) -> Any:
    """Make an on/off control: sends ``<header> ON|OFF``, reads ``0`` / ``1``."""
    return Channel.control(
        f"{header}?",
        f"{header} %s",
        docs,
        validator=strict_choice_named((True, False), what),
        set_process=on_off,
        cast=str,
        get_process=parse_bool,
        maxsplit=0,
    )


_FUNCTIONS = {"voltage": "VOLT", "current": "CURR"}


def _function_name(text: str) -> str:
    word = text.strip().strip('"').upper()
    for name, code in _FUNCTIONS.items():
        if word.startswith(code):
            return name
    raise ValueError(f"unknown source function {text!r}")


def function_control(header: str, docs: str) -> Any:
    """Make the source-function control: ``"voltage"`` or ``"current"``."""
    return Channel.control(
        f"{header}?",
        f"{header} %s",
        docs,
        validator=strict_choice_named(tuple(_FUNCTIONS), "source function"),
        set_process=_FUNCTIONS.__getitem__,
        cast=str,
        get_process=_function_name,
        maxsplit=0,
    )


def flag_measurement(query: str, docs: str) -> Any:
    """Make a read-only boolean property: sends `query`, reads ``0`` / ``1``."""
    return Channel.measurement(
        query, docs, cast=str, get_process=parse_bool, maxsplit=0
    )


# Ratings and channels


@dataclass(frozen=True)
class ScpiRatings:
    """What one SCPI source-measure model can source, limit and sweep, per channel.

    Attributes
    ----------
    channels : tuple of str
        The channel attribute names of the model (``("smu",)``, ``("ch1", "ch2")``).
    max_voltage_v : float
        Largest source voltage and voltage limit, V.
    max_current_a : float
        Largest DC source current and current limit, A.
    min_current_limit_a : float
        Smallest current limit, A.
    min_voltage_limit_v : float
        Smallest voltage limit, V.
    current_range_a : tuple of float
        Smallest and largest current measurement range, A.
    nplc : tuple of float
        Smallest and largest integration time, power-line cycles.
    max_list_points : int
        Most points of one source list (sweep or emulated pulse train).
    limit_floor_of_range : float or None
        With a fixed current range, the current limit must be at least this
        part of the range (0.001 on the 2450); None for a model without such
        a rule.
    """

    channels: tuple[str, ...]
    max_voltage_v: float
    max_current_a: float
    min_current_limit_a: float
    min_voltage_limit_v: float
    current_range_a: tuple[float, float]
    nplc: tuple[float, float]
    max_list_points: int
    limit_floor_of_range: float | None = None


class ScpiSmuChannel(Channel):
    """Base of the SCPI source-measure channels: limits per model and checks.

    A subclass declares its controls with :func:`number_control` and friends;
    the numeric ones listed in :attr:`LIMITED` get their model's range when
    the channel is made, named after the channel and the SCPI header
    (``"1.6 A is above the 1.05 A limit of smu1.smu :SOUR:VOLT:ILIM"``).

    On a model whose current limit must be a part of a fixed current range
    (:attr:`ScpiRatings.limit_floor_of_range`), setting the limit first reads
    whether the range is fixed and which it is, and setting the range first
    reads the limit; a pair that breaks the rule raises, naming the smallest
    limit the range allows, and nothing is sent.
    """

    #: Numeric properties whose range each channel binds from the ratings.
    LIMITED: ClassVar[tuple[str, ...]] = (
        "source_voltage",
        "source_current",
        "current_limit",
        "voltage_limit",
        "nplc",
        "current_range",
    )

    parent: ScpiInstrument

    def __init__(
        self, parent: ScpiInstrument, id: Any, label: str, **kwargs: Any
    ) -> None:
        super().__init__(parent, id, **kwargs)
        self.label = label
        self._limits = self._model_limits(parent.ratings)
        for prop, limit in self._limits.items():
            setattr(self, f"{prop}_validator", limit)
        floor = parent.ratings.limit_floor_of_range
        if floor is not None:
            self._bind_limit_floor(floor)

    @property
    def nplc_range(self) -> tuple[float, float]:
        """The shortest and longest integration this channel takes, PLC."""
        limit = self._limits["nplc"]
        return limit.low, limit.high

    def _model_limits(self, ratings: ScpiRatings) -> dict[str, RangeLimit]:
        volts, amps = ratings.max_voltage_v, ratings.max_current_a
        bounds = {
            "source_voltage": (-volts, volts, "V"),
            "source_current": (-amps, amps, "A"),
            "current_limit": (ratings.min_current_limit_a, amps, "A"),
            "voltage_limit": (ratings.min_voltage_limit_v, volts, "V"),
            "nplc": (*ratings.nplc, "PLC"),
            "current_range": (*ratings.current_range_a, "A"),
        }
        limits = {}
        for prop in self.LIMITED:
            low, high, unit = bounds[prop]
            header = self.insert_id(getattr(type(self), prop).header)
            limits[prop] = strict_range_named(low, high, unit, f"{self.name} {header}")
        return limits

    def _bind_limit_floor(self, floor: float) -> None:
        """Check the current limit and a fixed current range against each other."""
        model_limit = self._limits["current_limit"]
        model_range = self._limits["current_range"]
        range_header = type(self).current_range.header
        limit_header = type(self).current_limit.header

        def check_limit(value: Any, values: Any = ()) -> float:
            limit_a = model_limit(value)
            reply = self.ask(f"{range_header}:AUTO?;{range_header}?")
            fields = reply.split(";")
            if len(fields) != 2:
                raise ValueError(
                    f"{self.name}: expected the autorange state and the current "
                    f"range, got {reply!r}"
                )
            if not parse_bool(fields[0]):
                range_a = parse_number(fields[1])
                self._check_limit_floor(limit_a, range_a, floor, "the fixed")
            return limit_a

        def check_range(value: Any, values: Any = ()) -> float:
            range_a = model_range(value)
            limit_a = parse_number(self.ask(f"{limit_header}?"))
            selected_a = self._selected_range_a(range_a)
            self._check_limit_floor(limit_a, selected_a, floor, "a fixed")
            return range_a

        self.current_limit_validator = check_limit
        self.current_range_validator = check_range

    def _check_limit_floor(
        self, limit_a: float, range_a: float, floor: float, which: str
    ) -> None:
        lowest_a = float(f"{floor * range_a:.12g}")  # 1e-07, not 1.0000000000000001e-07
        if limit_a < lowest_a * (1 - 1e-9):
            header = self.insert_id(type(self).current_limit.header)
            raise ValueError(
                f"{_shown(limit_a)} A is below the {_shown(lowest_a)} A limit of "
                f"{self.name} {header} for {which} {_shown(range_a)} A current "
                f"range ({floor:.1%} of it)"
            )

    def _selected_range_a(self, value_a: float) -> float:
        """The current range a range setting of `value_a` selects, A."""
        low, high = self.parent.ratings.current_range_a
        decades = round(math.log10(high / low))
        for k in range(decades + 1):
            range_a = float(f"{low * 10**k:.6g}")
            if value_a <= range_a * RANGE_FULL_SCALE * (1 + 1e-12):
                return range_a
        return high

    @property
    def limits(self) -> dict[str, RangeLimit]:
        """The accepted range of each numeric property, by property name."""
        return dict(self._limits)

    @property
    def name(self) -> str:
        """The channel's name, ``"<instrument name>.<channel>"`` (``"smu1.smu"``)."""
        return f"{self.parent.name}.{self.label}"

    # Checks made before anything is sent

    def _check_levels(self, levels_v: Sequence[float]) -> list[float]:
        levels = [self._limits["source_voltage"](level) for level in levels_v]
        if not levels:
            raise ValueError(f"{self.name}: a sweep needs at least one level")
        self._check_points(len(levels))
        return levels

    def _check_points(self, points: int) -> None:
        high = self.parent.ratings.max_list_points
        strict_range_named(1, high, "points", f"the source list of {self.name}")(points)

    def _check_count(self, count: int) -> int:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{self.name}: pulse count {count!r} must be 1 or more")
        return count

    def _check_pulse(
        self, level_v: float, bias_v: float, count: int
    ) -> tuple[float, float, int]:
        level = self._limits["source_voltage"](level_v)
        bias = self._limits["source_voltage"](bias_v)
        return level, bias, self._check_count(count)

    def _emulated_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> tuple[list[float], int, float]:
        """Check a pulse train and lay it out as a source list whose points all
        last the pulse width.

        Each pulse is ``off_s / width_s`` points (to the nearest whole number,
        halves up) at the bias level followed by one point at the pulse level,
        so the time at bias is a whole number of point times (none when
        `off_s` is under half the width).

        Returns
        -------
        levels : list of float
            The source list, V.
        stride : int
            Points per pulse; the reading at each pulse's end is every
            `stride`-th one, starting at index ``stride - 1``.
        width : float
            The delay at each point, s.
        """
        level, bias, count = self._check_pulse(level_v, bias_v, count)
        width = self._point_delay(width_s, "pulse width")
        if width == 0:
            raise ValueError(f"{self.name}: the pulse width must be above 0 s")
        off = self._duration_s(off_s, 0.0, math.inf, "off time")
        bias_points = math.floor(off / width + 0.5)
        self._check_points(count * (bias_points + 1))
        pulse = [bias] * bias_points + [level]
        return pulse * count, bias_points + 1, width

    def _point_delay(self, value: float, what: str) -> float:
        # The delay range at each list point is the instrument's own.
        raise NotImplementedError(f"{type(self).__name__} has no list sweep delay")

    def _duration_s(self, value: float, low: float, high: float, what: str) -> float:
        return strict_range_named(low, high, "s", f"{what} of {self.name}")(value)

    def _readings(self, reply: str, count: int) -> npt.NDArray[np.float64]:
        return parse_readings(reply, count, self.name)


def _shown(value: float) -> str:
    """A value for a message, every digit kept: ``1e-07``, ``1.05``, ``1``."""
    text = format_number(value)
    return text.removesuffix(".0")


class ScpiInstrument(SCPIMixin, Instrument):
    """Base of the SCPI source-measure drivers: models, identity, errors, shutdown.

    Parameters
    ----------
    adapter : Adapter, str or int
        The adapter or VISA resource. For a resource, messages and replies end
        with LF unless other terminations are given.
    name : str
        The instrument's name, used in channel names (``"smu1.smu"``).
    model : str
        The model, a key of :attr:`RATINGS`; sets the channels and ratings.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    #: Ratings by model; set by each driver.
    RATINGS: ClassVar[dict[str, ScpiRatings]] = {}
    #: The family named in messages (``"2450"``, ``"B2900"``).
    FAMILY: ClassVar[str] = ""
    #: The channel class of the driver.
    CHANNEL: ClassVar[type[ScpiSmuChannel]] = ScpiSmuChannel

    def __init__(
        self, adapter: Adapter | str | int, name: str, model: str, **kwargs: Any
    ) -> None:
        if model not in self.RATINGS:
            raise ValueError(
                f"unknown {self.FAMILY} model {model!r}: "
                f"choose one of {', '.join(self.RATINGS)}"
            )
        self.model = model
        self.ratings = self.RATINGS[model]
        if isinstance(adapter, (str, int)):
            kwargs.setdefault("read_termination", "\n")
            kwargs.setdefault("write_termination", "\n")
        super().__init__(adapter, name, **kwargs)
        for label in self.ratings.channels:
            self.add_child(
                self.CHANNEL, self.channel_id(label), attr_name=label, label=label
            )

    @staticmethod
    def channel_id(label: str) -> Any:
        """The id a channel's commands use for ``{ch}``; the label by default."""
        return label

    def identity(self) -> dict[str, str]:
        """Read who the instrument is, from ``*IDN?``.

        Returns
        -------
        dict
            ``manufacturer``, ``model`` (``"2450"``, ``"B2902A"``), ``serial``
            and ``firmware``.

        Raises
        ------
        ValueError
            If the reply does not have that form.
        """
        return parse_identity(self.ask("*IDN?"))

    def check_errors(self) -> list[ScpiError]:
        """Read and log every entry of the error queue (``:SYST:ERR?``), emptying it.

        Reading stops at the ``0,"No error"`` entry, at a reply that does not
        parse (logged as a warning) or after :data:`ERROR_DRAIN_LIMIT` entries,
        so draining always ends.

        Returns
        -------
        list of ScpiError
            The entries read, oldest first.
        """
        errors: list[ScpiError] = []
        for _ in range(ERROR_DRAIN_LIMIT):
            reply = self.ask(":SYST:ERR?")
            try:
                error = parse_error(reply)
            except ValueError:
                log.warning("%s: unreadable error queue entry %r", self.name, reply)
                return errors
            if error.code == 0:
                return errors
            log.error("%s: error %d: %s", self.name, error.code, error.message)
            errors.append(error)
        log.warning(
            "%s: stopped reading the error queue after %d entries",
            self.name,
            ERROR_DRAIN_LIMIT,
        )
        return errors

    def shutdown(self) -> None:
        """Turn every output off at once.

        Every channel is tried even if turning another one off fails; the
        first failure is raised afterwards.
        """
        failures: list[Exception] = []
        for label in self.ratings.channels:
            try:
                getattr(self, label).turn_off()
            except Exception as error:  # the other output must still go off
                log.error("%s: could not turn %s off: %s", self.name, label, error)
                failures.append(error)
        super().shutdown()
        if failures:
            raise failures[0]
        log.info("%s: outputs off", self.name)
