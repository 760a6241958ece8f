"""Keithley 2450 SourceMeter, driven in its native SCPI command set.

The single channel ``smu`` is a :class:`Keithley2450Channel` that satisfies
:class:`drivers.interfaces.SourceMeasureChannel`. Levels and limits are checked
against the 2450's ratings and never clipped; values are sent in a form that
round-trips exactly (a 100 nA limit is ``1e-07``).

A sweep is one bus message: the source list (``:SOUR:LIST:VOLT``, appended in
groups of 100), ``:SOUR:SWE:VOLT:LIST``, ``:INIT``, ``*WAI``, the source
level put back and the buffer read ``:TRAC:DATA? 1,N,"defbuffer1",READ``. The
2450 leaves its source at the last level of a sweep; the driver puts back the
level it found (a pulse train leaves the bias level), so that turning the
output on again never applies a sweep or pulse level. The 2450 has no pulse
mode, so a pulse train is emulated by such a list sweep (see
:meth:`Keithley2450Channel.pulse_train`).

With a fixed current range the current limit must be at least 0.1 % of the
range; setting either checks it against the other, read from the
instrument, and raises before sending a pair that breaks the rule.

The instrument must be in SCPI mode (``*LANG SCPI``, then a power cycle).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pymeasure.adapters import Adapter

from drivers._format import format_number
from drivers.scpi import (
    LIST_VALUES_PER_COMMAND,
    ScpiInstrument,
    ScpiRatings,
    ScpiSmuChannel,
    flag_measurement,
    function_control,
    join_commands,
    list_commands,
    number_control,
    parse_reading,
    switch_control,
)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

#: Ratings by model. Source levels, the current-limit ceiling, the current
#: ranges and NPLC are the reference manual's command ranges. The limit floors
#: (1 nA, 20 mV) are assumed, and the source list of 2500 points loaded in
#: groups of 100 is that of the 2461, a sister model of the same series.
RATINGS: dict[str, ScpiRatings] = {
    "2450": ScpiRatings(
        channels=("smu",),
        max_voltage_v=210.0,
        max_current_a=1.05,
        min_current_limit_a=1e-9,
        min_voltage_limit_v=0.02,
        current_range_a=(1e-8, 1.0),
        nplc=(0.01, 10.0),
        max_list_points=2500,
        limit_floor_of_range=1e-3,
    ),
}

#: Shortest non-zero delay of a ``:SOUR:SWE:VOLT:LIST`` sweep, s (0 is no delay).
MIN_SWEEP_DELAY_S = 50e-6
#: Longest delay of a ``:SOUR:SWE:VOLT:LIST`` sweep, s.
MAX_SWEEP_DELAY_S = 10_000.0

BUFFER = '"defbuffer1"'


class Keithley2450Channel(ScpiSmuChannel):
    """The source-measure channel ``smu`` of a 2450."""

    source_function = function_control(
        ":SOUR:FUNC",
        """Control the source function, ``"voltage"`` or ``"current"`` (str).""",
    )

    source_voltage = number_control(
        ":SOUR:VOLT",
        """Control the DC source voltage in V (float, -210 to 210 V).""",
        "V",
        (-210.0, 210.0),
    )

    source_current = number_control(
        ":SOUR:CURR",
        """Control the DC source current in A (float, -1.05 to 1.05 A).""",
        "A",
        (-1.05, 1.05),
    )

    current_limit = number_control(
        ":SOUR:VOLT:ILIM",
        """Control the current limit (compliance) of the voltage source in A
        (float, 1 nA to 1.05 A; 105 mA above 21 V; at least 0.1 % of a fixed
        current range).""",
        "A",
        (1e-9, 1.05),
    )

    voltage_limit = number_control(
        ":SOUR:CURR:VLIM",
        """Control the voltage limit (compliance) of the current source in V
        (float, 20 mV to 210 V).""",
        "V",
        (0.02, 210.0),
    )

    nplc = number_control(
        ":SENS:CURR:NPLC",
        """Control the current integration time in power-line cycles (float,
        0.01 to 10).""",
        "PLC",
        (0.01, 10.0),
    )

    current_range = number_control(
        ":SENS:CURR:RANG",
        """Control the current measurement range in A (float, 10 nA to 1 A;
        the current limit must be at least 0.1 % of it).""",
        "A",
        (1e-8, 1.0),
    )

    current_autorange = switch_control(
        ":SENS:CURR:RANG:AUTO",
        """Control whether the current measurement range is chosen
        automatically (bool).""",
        "autorange state",
    )

    four_wire = switch_control(
        ":SENS:CURR:RSEN",
        """Control whether the current is measured with remote (4-wire) sense
        (bool).""",
        "sense state",
    )

    output_enabled = switch_control(
        ":OUTP",
        """Control whether the output is on (bool).""",
        "output state",
    )

    compliance = flag_measurement(
        ":SOUR:VOLT:ILIM:TRIP?",
        """Measure whether the voltage source is held at its current limit
        (bool).""",
    )

    def measure_current(self) -> float:
        """Measure one current reading in A (``:MEAS:CURR?``).

        An overflow reading is returned as NaN, with a warning logged.
        """
        return parse_reading(self.ask(":MEAS:CURR?"), self.name)

    def sweep_voltage(
        self, levels_v: Sequence[float], settle_s: float
    ) -> npt.NDArray[np.float64]:
        """Source each voltage in turn and measure the current at each.

        The source level is read first (``:SOUR:VOLT?``); then one message
        loads the list, runs it, puts the level back and reads ``defbuffer1``::

            :SOUR:FUNC VOLT;:SENS:FUNC "CURR";:SOUR:LIST:VOLT v1,...;
            :SOUR:SWE:VOLT:LIST 1,<settle>,1,OFF;:TRAC:CLE "defbuffer1";
            :OUTP ON;:INIT;*WAI;:OUTP OFF;:SOUR:VOLT <level before>;
            :TRAC:DATA? 1,N,"defbuffer1",READ

        The sweep runs to its end even where the current limit is reached, and
        leaves the output off at the level it found.

        Parameters
        ----------
        levels_v : sequence of float
            The voltages to source, V (-210 to 210 V, 1 to 2500 levels).
        settle_s : float
            Sweep delay at each level before measuring, s: 0, or 50 µs to
            10000 s. The source delay in force (``:SOUR:VOLT:DEL``,
            automatic by default) adds to it.

        Returns
        -------
        numpy.ndarray
            The current measured at each level, A; NaN for an overflow.

        Raises
        ------
        ValueError
            If a level or the delay is out of range (nothing is sent), or the
            buffer does not hold one reading per level.

        Notes
        -----
        The reply comes only when the sweep has ended, so the adapter's VISA
        timeout must be longer than the whole sweep.
        """
        levels = self._check_levels(levels_v)
        delay = self._point_delay(settle_s, "settle time")
        return self._sweep(levels, delay, self.source_voltage)

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> npt.NDArray[np.float64]:
        """Apply voltage pulses and measure the current at the end of each.

        The 2450 has no pulse mode: this is an emulation by a list sweep in
        which every point lasts the sweep delay `width_s` plus one measurement
        (see `nplc`). Each pulse is ``off_s / width_s`` points (to the nearest
        whole number, halves up) at `bias_v` followed by one point at
        `level_v`, so the off time is a whole number of point times. The
        whole train is one message, as in :meth:`sweep_voltage` but leaving
        the source at `bias_v` (``:SOUR:VOLT <bias>``) with the output off,
        and only the reading at each pulse's end is returned.

        Parameters
        ----------
        level_v : float
            Pulse level, V (-210 to 210 V).
        width_s : float
            Pulse width, s: 50 µs to 10000 s.
        bias_v : float
            Level between pulses, V (-210 to 210 V).
        off_s : float
            Time at the bias level before each pulse, s (0 or more).
        count : int
            Number of pulses (1 or more); the list holds at most 2500 points.

        Returns
        -------
        numpy.ndarray
            The current at the end of each pulse, A; NaN for an overflow.

        Raises
        ------
        ValueError
            If an argument is out of range (nothing is sent), or the buffer
            does not hold one reading per list point.
        """
        levels, stride, width = self._emulated_pulses(
            level_v, width_s, bias_v, off_s, count
        )
        return self._sweep(levels, width, bias_v)[stride - 1 :: stride]

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Apply the pulses of :meth:`pulse_train` without reading them back.

        One message, ending with ``*WAI;:OUTP OFF;:SOUR:VOLT <bias>``: the
        instrument takes the next command only when the train has ended.
        """
        levels, _, width = self._emulated_pulses(level_v, width_s, bias_v, off_s, count)
        self.write(join_commands(self._run_commands(levels, width, bias_v)))

    def turn_off(self) -> None:
        """Stop any running sweep and turn the output off (``:ABOR;:OUTP OFF``)."""
        self.write(":ABOR;:OUTP OFF")

    def _sweep(
        self, levels: list[float], delay: float, rest_v: float
    ) -> npt.NDArray[np.float64]:
        count = len(levels)
        read = f":TRAC:DATA? 1,{count},{BUFFER},READ"
        commands = [*self._run_commands(levels, delay, rest_v), read]
        return self._readings(self.ask(join_commands(commands)), count)

    def _run_commands(
        self, levels: list[float], delay: float, rest_v: float
    ) -> list[str]:
        return [
            ":SOUR:FUNC VOLT",
            ':SENS:FUNC "CURR"',
            *list_commands(":SOUR:LIST:VOLT", levels, LIST_VALUES_PER_COMMAND),
            # failAbort OFF: reaching the limit must not cut the buffer short.
            f":SOUR:SWE:VOLT:LIST 1,{format_number(delay)},1,OFF",
            f":TRAC:CLE {BUFFER}",
            ":OUTP ON",
            ":INIT",
            "*WAI",
            ":OUTP OFF",
            # The sweep leaves the source at its last level: put the rest back.
            f":SOUR:VOLT {format_number(rest_v)}",
        ]

    def _point_delay(self, value: float, what: str) -> float:
        delay = self._duration_s(value, 0.0, MAX_SWEEP_DELAY_S, what)
        if delay != 0:
            self._duration_s(delay, MIN_SWEEP_DELAY_S, MAX_SWEEP_DELAY_S, what)
        return delay


class Keithley2450(ScpiInstrument):
    """Keithley 2450 SourceMeter in SCPI mode.

    Parameters
    ----------
    adapter : Adapter, str or int
        The adapter or VISA resource (messages and replies end with LF).
    name : str
        The instrument's name, used in the channel name (``"smu1.smu"``).
    model : str
        The model, ``"2450"``.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    RATINGS = RATINGS
    FAMILY = "2450"
    CHANNEL = Keithley2450Channel

    smu: Keithley2450Channel

    def __init__(
        self,
        adapter: Adapter | str | int,
        name: str = "Keithley 2450",
        model: str = "2450",
        **kwargs: Any,
    ) -> None:
        super().__init__(adapter, name, model, **kwargs)
