"""Keithley 2600B System SourceMeter (2601B to 2636B), driven in TSP.

Each SMU channel (``smua``, ``smub``) is a :class:`Keithley2600Channel` that
satisfies :class:`drivers.interfaces.SourceMeasureChannel`. Levels and limits
are checked against the model's ratings and never clipped; values are sent in
a form that round-trips exactly (a 100 nA limit is ``1e-07``). Sweeps and pulse
trains run the instrument's factory scripts and read ``smuX.nvbuffer1`` back
in the same bus message.

A 2600B on TSP-Link behind another instrument is driven by the same class,
``Keithley2600(None, node=2, connection=master.connection)``; its commands are
sent as ``node[2].smua...``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pymeasure.adapters import Adapter
from pymeasure.instruments import Channel

from drivers._format import (
    RangeLimit,
    format_number,
    strict_choice_named,
    strict_range_named,
)
from drivers.tsp import (
    TspConnection,
    TspInstrument,
    parse_bool,
    parse_buffer,
    parse_number,
    parse_values,
)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SmuRatings:
    """What one 2600B model can source and limit, per channel.

    Attributes
    ----------
    channels : tuple of str
        The SMU channels of the model.
    max_voltage_v : float
        Largest source voltage and voltage limit, V.
    max_current_a : float
        Largest source current and current limit, A.
    min_current_limit_a : float
        Smallest current limit (``limiti``), A.
    min_voltage_limit_v : float
        Smallest voltage limit (``limitv``), V.
    """

    channels: tuple[str, ...]
    max_voltage_v: float
    max_current_a: float
    min_current_limit_a: float
    min_voltage_limit_v: float


_ONE = ("smua",)
_TWO = ("smua", "smub")
_260X = {"max_voltage_v": 40.0, "max_current_a": 3.0, "min_current_limit_a": 10e-9}
_261X = {"max_voltage_v": 200.0, "max_current_a": 3.0, "min_current_limit_a": 10e-9}
_263X = {"max_voltage_v": 200.0, "max_current_a": 1.5, "min_current_limit_a": 100e-12}

#: Ratings by model. The smallest voltage limits (10 mV on 260x, 20 mV on the
#: 200 V models) are the reference manual's ``limitv`` minimums.
RATINGS: dict[str, SmuRatings] = {
    "2601B": SmuRatings(_ONE, **_260X, min_voltage_limit_v=10e-3),
    "2602B": SmuRatings(_TWO, **_260X, min_voltage_limit_v=10e-3),
    "2604B": SmuRatings(_TWO, **_260X, min_voltage_limit_v=10e-3),
    "2611B": SmuRatings(_ONE, **_261X, min_voltage_limit_v=20e-3),
    "2612B": SmuRatings(_TWO, **_261X, min_voltage_limit_v=20e-3),
    "2614B": SmuRatings(_TWO, **_261X, min_voltage_limit_v=20e-3),
    "2634B": SmuRatings(_TWO, **_263X, min_voltage_limit_v=20e-3),
    "2635B": SmuRatings(_ONE, **_263X, min_voltage_limit_v=20e-3),
    "2636B": SmuRatings(_TWO, **_263X, min_voltage_limit_v=20e-3),
}

NPLC_RANGE = (0.001, 25.0)

_FUNCTION_CODES = {"voltage": "{ch}.OUTPUT_DCVOLTS", "current": "{ch}.OUTPUT_DCAMPS"}


def _function_command(function: str) -> str:
    return _FUNCTION_CODES[function]


def _function_name(text: str) -> str:
    code = parse_number(text)
    if code == 1:
        return "voltage"
    if code == 0:
        return "current"
    raise ValueError(f"unknown source function code {text!r}")


def _output_command(enabled: bool) -> str:
    return "{ch}.OUTPUT_ON" if enabled else "{ch}.OUTPUT_OFF"


def _level(attribute: str, docs: str, unit: str, family: tuple[float, float]) -> Any:
    """Make a numeric ``{ch}.<attribute>`` control whose limits each channel binds.

    The class-level validator spans the whole 2600B family; every channel
    replaces it with its model's range (see :attr:`Keithley2600Channel.limits`).
    """
    control = Channel.control(
        f"print({{ch}}.{attribute})",
        f"{{ch}}.{attribute} = %s",
        docs,
        validator=strict_range_named(*family, unit, attribute),
        set_process=format_number,
        cast=str,
        get_process=parse_number,
        dynamic=True,
    )
    control.__doc__ = docs  # without the "(dynamic)" pymeasure appends
    return control


class Keithley2600Channel(Channel):
    """One SMU channel of a 2600B, ``smua`` or ``smub``.

    Commands use the ``{ch}`` placeholder, replaced by the channel's TSP
    object including the node prefix (``smua`` or ``node[2].smua``).
    """

    source_function = Channel.control(
        "print({ch}.source.func)",
        "{ch}.source.func = %s",
        """Control the source function, ``"voltage"`` or ``"current"`` (str).""",
        validator=strict_choice_named(("voltage", "current"), "source function"),
        set_process=_function_command,
        cast=str,
        get_process=_function_name,
    )

    source_voltage = _level(
        "source.levelv",
        """Control the DC source voltage in V (float; ±40 V on 260x models,
        ±200 V on 261x and 263x models).""",
        "V",
        (-200.0, 200.0),
    )

    source_current = _level(
        "source.leveli",
        """Control the DC source current in A (float; ±3 A on 260x and 261x
        models, ±1.5 A on 263x models).""",
        "A",
        (-3.0, 3.0),
    )

    current_limit = _level(
        "source.limiti",
        """Control the current limit (compliance) in A (float; 10 nA to 3 A on
        260x and 261x models, 100 pA to 1.5 A on 263x models).""",
        "A",
        (100e-12, 3.0),
    )

    voltage_limit = _level(
        "source.limitv",
        """Control the voltage limit (compliance) in V (float; 10 mV to 40 V on
        260x models, 20 mV to 200 V on 261x and 263x models).""",
        "V",
        (10e-3, 200.0),
    )

    nplc = _level(
        "measure.nplc",
        """Control the integration time in power-line cycles (float, 0.001 to
        25).""",
        "PLC",
        NPLC_RANGE,
    )

    output_enabled = Channel.control(
        "print({ch}.source.output)",
        "{ch}.source.output = %s",
        """Control whether the output is on (bool).""",
        validator=strict_choice_named((True, False), "output state"),
        set_process=_output_command,
        cast=str,
        get_process=parse_bool,
    )

    compliance = Channel.measurement(
        "print({ch}.source.compliance)",
        """Measure whether the source is held at its limit (bool).""",
        cast=str,
        get_process=parse_bool,
    )

    parent: Keithley2600

    def __init__(self, parent: Keithley2600, id: str, **kwargs: Any) -> None:
        super().__init__(parent, id, **kwargs)
        self._limits = self._model_limits(parent.ratings)
        for prop, limit in self._limits.items():
            setattr(self, f"{prop}_validator", limit)
        self._levelv_command = self.insert_id("{ch}.source.levelv = ")
        self._tsp = self.tsp_object
        self._levelv_check = self._limits["source_voltage"]

    def set_voltage_level(self, level_v: float) -> None:
        """Set the DC source voltage in V, as :attr:`source_voltage` does.

        Sends the same command through the same range check, without the
        property machinery: for loops that set many thousands of levels.
        """
        self.level_writer()(level_v)

    def level_writer(self) -> Callable[[float], None]:
        """A function that sets the DC source voltage in V, as
        :meth:`set_voltage_level` does, with everything it needs bound once."""
        write = self.connection.write
        command = self._levelv_command
        check = self._levelv_check

        def set_level(level_v: float) -> None:
            write(command + format_number(check(level_v)))

        return set_level

    def _model_limits(self, ratings: SmuRatings) -> dict[str, RangeLimit]:
        volts, amps = ratings.max_voltage_v, ratings.max_current_a
        bounds = {
            "source_voltage": ("source.levelv", -volts, volts, "V"),
            "source_current": ("source.leveli", -amps, amps, "A"),
            "current_limit": ("source.limiti", ratings.min_current_limit_a, amps, "A"),
            "voltage_limit": ("source.limitv", ratings.min_voltage_limit_v, volts, "V"),
            "nplc": ("measure.nplc", *NPLC_RANGE, "PLC"),
        }
        return {
            prop: strict_range_named(low, high, unit, self.insert_id(f"{{ch}}.{attr}"))
            for prop, (attr, low, high, unit) in bounds.items()
        }

    @property
    def limits(self) -> dict[str, RangeLimit]:
        """The accepted range of each numeric property, by property name."""
        return dict(self._limits)

    @property
    def name(self) -> str:
        """The channel's name, ``"<instrument name>.<channel>"`` (``"smu1.smua"``)."""
        return f"{self.parent.name}.{self.id}"

    @property
    def tsp_object(self) -> str:
        """The channel's TSP object, ``"smua"`` or ``"node[2].smua"``."""
        return f"{self.parent.node_prefix}{self.id}"

    @property
    def nplc_range(self) -> tuple[float, float]:
        """The shortest and longest integration this channel takes, PLC."""
        limit = self._limits["nplc"]
        return limit.low, limit.high

    @property
    def connection(self) -> TspConnection:
        """The connection this channel's instrument talks through."""
        return self.parent.connection

    def insert_id(self, command: str) -> str:
        """Replace ``{ch}`` with :attr:`tsp_object` and ``{node}`` with the prefix.

        Plain replacement, so Lua table braces in a command stay as they are.
        """
        return self.parent.insert_node(command.replace("{ch}", self.tsp_object))

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Send a query (``{ch}`` replaced) and return its reply."""
        return self.parent.ask(self.insert_id(command), query_delay)

    def measure_current(self) -> float:
        """Measure one current reading in A (``print(smuX.measure.i())``)."""
        return parse_number(self.ask("print({ch}.measure.i())"))

    def measure_voltage(self) -> float:
        """Measure one voltage reading in V (``print(smuX.measure.v())``)."""
        return parse_number(self.ask("print({ch}.measure.v())"))

    def sweep_voltage(
        self, levels_v: Sequence[float], settle_s: float
    ) -> npt.NDArray[np.float64]:
        """Source each voltage in turn and measure the current at each.

        Runs the factory script ``SweepVListMeasureI`` and reads
        ``smuX.nvbuffer1`` back, all in one bus message. The current limit in
        force applies at every level.

        Parameters
        ----------
        levels_v : sequence of float
            The voltages to source, V, within the model's source range.
        settle_s : float
            Time to wait at each level before measuring, s (0 or more).

        Returns
        -------
        numpy.ndarray
            The current measured at each level, A.

        Notes
        -----
        The reply comes only when the sweep has ended, so the adapter's VISA
        timeout must be longer than the whole sweep.
        """
        levels = [self._limits["source_voltage"](level) for level in levels_v]
        if not levels:
            raise ValueError(f"{self.name}: a sweep needs at least one level")
        settle = _duration_s(settle_s, "settle time")
        table = "{" + ", ".join(format_number(level) for level in levels) + "}"
        return self._run_into_buffer(
            f"SweepVListMeasureI({{ch}}, {table}, {format_number(settle)}, "
            f"{len(levels)})",
            len(levels),
        )

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> npt.NDArray[np.float64]:
        """Apply voltage pulses and measure the current at the end of each.

        Runs the factory script ``PulseVMeasureI`` (bias for `off_s`, then
        `level_v` for `width_s`, `count` times) and reads ``smuX.nvbuffer1``
        back, all in one bus message.

        Parameters
        ----------
        level_v : float
            Pulse level, V.
        width_s : float
            Pulse width, s (above 0).
        bias_v : float
            Level between pulses, V.
        off_s : float
            Time at the bias level before each pulse, s (0 or more).
        count : int
            Number of pulses (1 or more).

        Returns
        -------
        numpy.ndarray
            The current at the end of each pulse, A.

        Notes
        -----
        The reply comes only when the train has ended, so the adapter's VISA
        timeout must be longer than ``count * (width_s + off_s)``.
        """
        call = self._pulse_call(level_v, width_s, bias_v, off_s, count)
        return self._run_into_buffer(call, count)

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Apply the pulses of :meth:`pulse_train` without reading them back.

        Only writes, so inside a batch the train and what follows it (a
        verify read, say) travel as one bus message.
        """
        self.pulse_writer()(level_v, width_s, bias_v, off_s, count)

    def pulse_writer(self) -> Callable[[float, float, float, float, int], None]:
        """A function that does :meth:`apply_pulses`, with what it needs bound once."""
        write = self.connection.write
        clear = self.insert_id("{ch}.nvbuffer1.clear() ")
        call = self._pulse_call

        def apply(level_v: float, width_s: float, bias_v: float, off_s: float,
                  count: int) -> None:
            write(clear + call(level_v, width_s, bias_v, off_s, count))

        return apply

    def current_getter(self) -> Callable[[], float]:
        """A function that does :meth:`measure_current`, with its query built once."""
        reader = CurrentReader([self])
        return lambda: float(reader()[0])

    def output_writer(self) -> Callable[[bool], None]:
        """A function that sets :attr:`output_enabled`, with what it needs bound once."""
        write = self.connection.write
        on = self.insert_id("{ch}.source.output = {ch}.OUTPUT_ON")
        off = self.insert_id("{ch}.source.output = {ch}.OUTPUT_OFF")

        def set_output(enabled: bool) -> None:
            write(on if enabled else off)

        return set_output

    def _pulse_call(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> str:
        """``PulseVMeasureI(...)`` for this channel, its values checked."""
        level = self._limits["source_voltage"](level_v)
        bias = self._limits["source_voltage"](bias_v)
        width = _duration_s(width_s, "pulse width")
        if width == 0:
            raise ValueError(f"{self.name}: the pulse width must be above 0 s")
        off = _duration_s(off_s, "off time")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{self.name}: pulse count {count!r} must be 1 or more")
        values = ", ".join(format_number(v) for v in (bias, level, width, off))
        return f"PulseVMeasureI({self._tsp}, {values}, {count})"

    def _run_into_buffer(self, script_call: str, count: int) -> npt.NDArray[np.float64]:
        with self.connection.batch():
            self.write("{ch}.nvbuffer1.clear()")
            self.write(script_call)
            reply = self.ask(f"printbuffer(1, {count}, {{ch}}.nvbuffer1.readings)")
        return parse_buffer(reply, count)

    def reset(self) -> None:
        """Reset this channel to its defaults (``smuX.reset()``)."""
        self.write("{ch}.reset()")

    def turn_off(self) -> None:
        """Turn the output off at once, dropping writes queued in a batch."""
        off = self.insert_id("{ch}.source.output = {ch}.OUTPUT_OFF")
        self.connection.write_urgent(off)


class Keithley2600(TspInstrument):
    """Keithley 2600B System SourceMeter, 2601B to 2636B, in TSP.

    Parameters
    ----------
    adapter : Adapter, str, int or None
        The adapter or VISA resource; None for a node reached through
        `connection`.
    name : str
        The instrument's name, used in channel names (``"smu1.smua"``).
    model : str
        The model, ``"2601B"`` ... ``"2636B"``; sets the channels and ratings.
    node : int, optional
        TSP-Link node number when reached through a master.
    connection : TspConnection, optional
        The master's connection to share.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    smua: Keithley2600Channel
    smub: Keithley2600Channel

    def __init__(
        self,
        adapter: Adapter | str | int | None,
        name: str = "Keithley 2600B",
        model: str = "2636B",
        node: int | None = None,
        connection: TspConnection | None = None,
        **kwargs: Any,
    ) -> None:
        if model not in RATINGS:
            raise ValueError(
                f"unknown 2600B model {model!r}: choose one of {', '.join(RATINGS)}"
            )
        self.model = model
        self.ratings = RATINGS[model]
        super().__init__(adapter, name, node=node, connection=connection, **kwargs)
        for channel in self.ratings.channels:
            self.add_child(Keithley2600Channel, channel, attr_name=channel)

    def shutdown(self) -> None:
        """Turn every output off at once, dropping writes queued in a batch.

        Every channel is tried even if turning another one off fails; the
        first failure is raised afterwards.
        """
        failures: list[Exception] = []
        for channel in self.ratings.channels:
            try:
                getattr(self, channel).turn_off()
            except Exception as error:  # the other output must still go off
                log.error("%s: could not turn %s off: %s", self.name, channel, error)
                failures.append(error)
        super().shutdown()
        if failures:
            raise failures[0]
        log.info("%s: outputs off", self.name)


def measure_currents(
    channels: Sequence[Keithley2600Channel],
) -> npt.NDArray[np.float64]:
    """Measure the current of several channels with one query.

    Sends ``print(smua.measure.i(), node[2].smua.measure.i(), ...)``.

    Parameters
    ----------
    channels : sequence of Keithley2600Channel
        Channels that share one :class:`~drivers.tsp.TspConnection`.

    Returns
    -------
    numpy.ndarray
        One current per channel, A, in the order given.

    Raises
    ------
    ValueError
        If the channels do not share a connection or a reply is not a number.
    """
    if not channels:
        return np.empty(0, dtype=np.float64)
    return current_reader(channels)()


class CurrentReader:
    """Reads the currents of several channels of one connection, one query each.

    Built once for loops that read the same channels many thousands of
    times. Calling it queries and returns the currents; :meth:`queue` puts
    the query in the connection's pending batch and :meth:`collect` reads the
    replies of the queued queries, so that several readings with settings
    between them travel in one bus message.
    """

    def __init__(self, channels: Sequence[Keithley2600Channel]) -> None:
        connection = channels[0].connection
        strangers = [ch.name for ch in channels if ch.connection is not connection]
        if strangers:
            raise ValueError(
                f"{', '.join(strangers)} not on the connection of {channels[0].name}"
            )
        self._query = (
            "print(" + ", ".join(f"{ch.tsp_object}.measure.i()" for ch in channels) + ")"
        )
        self._connection = connection
        self._count = len(channels)

    def __call__(self) -> npt.NDArray[np.float64]:
        return self._parse(self._connection.ask(self._query))

    def queue(self) -> None:
        """Queue one reading of every channel (send it with the batch)."""
        self._connection.write(self._query)

    def collect(self, readings: int) -> npt.NDArray[np.float64]:
        """The replies of ``readings`` queued readings, (readings, channels)."""
        rows = [self._parse(self._connection.read()) for _ in range(readings)]
        return np.array(rows, dtype=np.float64).reshape(readings, self._count)

    def _parse(self, reply: str) -> npt.NDArray[np.float64]:
        values = parse_values(reply)
        if len(values) != self._count or not all(isinstance(v, float) for v in values):
            raise ValueError(f"expected {self._count} currents, got {values!r}")
        return np.array(values, dtype=np.float64)


def current_reader(channels: Sequence[Keithley2600Channel]) -> CurrentReader:
    """A :class:`CurrentReader` for these channels (at least one)."""
    if not channels:
        raise ValueError("a current reader needs at least one channel")
    return CurrentReader(channels)


def _duration_s(value: float, what: str) -> float:
    return strict_range_named(0.0, math.inf, "s", what)(value)
