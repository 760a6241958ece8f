"""Keithley 2400 SourceMeter, driven in its classic SCPI command set.

The single channel ``smu`` is a :class:`Keithley2400Channel` that satisfies
:class:`drivers.interfaces.SourceMeasureChannel`. Levels and limits are checked
against the 2400's ratings and never clipped; values are sent in a form that
round-trips exactly (a 100 nA compliance is ``1e-07``).

Readings come back as the elements of ``:FORM:ELEM``; the driver sets it to
``CURR`` in the same message as every read, so each point is one value.

A sweep is a list sweep (``:SOUR:VOLT:MODE LIST``, ``:SOUR:LIST:VOLT`` in
groups of 100, ``:TRIG:COUN N``, ``:SOUR:DEL``) read with one ``:READ?``,
followed by one message that turns the output off and puts back what the
sweep changed: fixed source mode, one reading per ``:READ?`` and the
automatic source delay of reset. Outside its sweeps the driver keeps the
source delay automatic, so a sweep's settle time never lengthens the readings
after it. The 2400 has no pulse mode, so a pulse train is emulated by such a
list sweep (see :meth:`Keithley2400Channel.pulse_train`).
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

#: Ratings by model. Source levels and the compliance ceiling are ±210 V and
#: 1.05 A; current ranges run from 1 µA to 1 A (1.05 A full scale); the
#: compliance floors (1 nA, 0.2 mV) are 0.1 % of the lowest ranges.
RATINGS: dict[str, ScpiRatings] = {
    "2400": ScpiRatings(
        channels=("smu",),
        max_voltage_v=210.0,
        max_current_a=1.05,
        min_current_limit_a=1e-9,
        min_voltage_limit_v=2e-4,
        current_range_a=(1e-6, 1.05),
        nplc=(0.01, 10.0),
        max_list_points=2500,
    ),
}

#: Longest source delay (``:SOUR:DEL``), s.
MAX_SOURCE_DELAY_S = 999.9999

#: Ends every list sweep: output off, source back to a fixed level, one
#: reading per ``:READ?`` again, and the source delay automatic again.
_END_OF_LIST = (":OUTP OFF", ":SOUR:VOLT:MODE FIX", ":TRIG:COUN 1", ":SOUR:DEL:AUTO ON")


class Keithley2400Channel(ScpiSmuChannel):
    """The source-measure channel ``smu`` of a 2400."""

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
        ":SENS:CURR:PROT",
        """Control the current compliance in A (float, 1 nA to 1.05 A; 105 mA
        above 21 V).""",
        "A",
        (1e-9, 1.05),
    )

    voltage_limit = number_control(
        ":SENS:VOLT:PROT",
        """Control the voltage compliance in V (float, 0.2 mV to 210 V).""",
        "V",
        (2e-4, 210.0),
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
        """Control the current measurement range in A (float, 1 µA to 1.05 A;
        reads back at 1.05 times the nominal range).""",
        "A",
        (1e-6, 1.05),
    )

    current_autorange = switch_control(
        ":SENS:CURR:RANG:AUTO",
        """Control whether the current measurement range is chosen
        automatically (bool).""",
        "autorange state",
    )

    four_wire = switch_control(
        ":SYST:RSEN",
        """Control whether remote (4-wire) sense is used (bool).""",
        "sense state",
    )

    output_enabled = switch_control(
        ":OUTP",
        """Control whether the output is on (bool).""",
        "output state",
    )

    compliance = flag_measurement(
        ":SENS:CURR:PROT:TRIP?",
        """Measure whether the source is held at its current compliance
        (bool).""",
    )

    def measure_current(self) -> float:
        """Measure one current reading in A (``:FORM:ELEM CURR;:READ?``).

        The output must be on: the 2400 refuses ``:READ?`` with the output off
        (error +803) and sends no reply. An overflow reading is returned as
        NaN, with a warning logged.
        """
        return parse_reading(self.ask(":FORM:ELEM CURR;:READ?"), self.name)

    def sweep_voltage(
        self, levels_v: Sequence[float], settle_s: float
    ) -> npt.NDArray[np.float64]:
        """Source each voltage in turn and measure the current at each.

        Two messages: the list sweep and its reading::

            :SOUR:FUNC VOLT;:SENS:FUNC "CURR";:FORM:ELEM CURR;
            :SOUR:VOLT:MODE LIST;:SOUR:LIST:VOLT v1,...;:SOUR:DEL <settle>;
            :ARM:COUN 1;:TRIG:COUN N;:OUTP ON;:READ?

        then, whatever happened,
        ``:OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1;:SOUR:DEL:AUTO ON``.

        Parameters
        ----------
        levels_v : sequence of float
            The voltages to source, V (-210 to 210 V, 1 to 2500 levels).
        settle_s : float
            Source delay at each level before measuring, s (0 to 999.9999 s);
            the source delay is automatic again afterwards.

        Returns
        -------
        numpy.ndarray
            The current measured at each level, A; NaN for an overflow.

        Raises
        ------
        ValueError
            If a level or the delay is out of range (nothing is sent), or the
            reply does not hold one reading per level.

        Notes
        -----
        The reply comes only when the sweep has ended, so the adapter's VISA
        timeout must be longer than the whole sweep.
        """
        levels = self._check_levels(levels_v)
        delay = self._point_delay(settle_s, "settle time")
        return self._sweep(levels, delay)

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> npt.NDArray[np.float64]:
        """Apply voltage pulses and measure the current at the end of each.

        The 2400 has no pulse mode: this is an emulation by a list sweep in
        which every point lasts the source delay `width_s` plus one
        measurement (see `nplc`). Each pulse is ``off_s / width_s`` points
        (to the nearest whole number, halves up) at `bias_v` followed by one
        point at `level_v`, so the off time is a whole number of point times.
        The messages are those of :meth:`sweep_voltage`; only the reading at
        each pulse's end is returned.

        Parameters
        ----------
        level_v : float
            Pulse level, V (-210 to 210 V).
        width_s : float
            Pulse width, s (above 0, up to 999.9999 s).
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
            If an argument is out of range (nothing is sent), or the reply
            does not hold one reading per list point.
        """
        levels, stride, width = self._emulated_pulses(
            level_v, width_s, bias_v, off_s, count
        )
        return self._sweep(levels, width)[stride - 1 :: stride]

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Apply the pulses of :meth:`pulse_train` without reading them back.

        One message, the list run by ``:INIT;*WAI`` and ended as a sweep is
        (the source delay automatic again): the instrument takes the next
        command only when the train has ended.
        """
        levels, _, width = self._emulated_pulses(level_v, width_s, bias_v, off_s, count)
        commands = [*self._list_commands(levels, width), ":INIT", "*WAI"]
        self.write(join_commands([*commands, *_END_OF_LIST]))

    def turn_off(self) -> None:
        """Stop any running sweep and turn the output off (``:ABOR;:OUTP OFF``)."""
        self.write(":ABOR;:OUTP OFF")

    def _sweep(self, levels: list[float], delay: float) -> npt.NDArray[np.float64]:
        try:
            reply = self.ask(
                join_commands([*self._list_commands(levels, delay), ":READ?"])
            )
        finally:
            self.write(join_commands(_END_OF_LIST))
        return self._readings(reply, len(levels))

    def _list_commands(self, levels: list[float], delay: float) -> list[str]:
        return [
            ":SOUR:FUNC VOLT",
            ':SENS:FUNC "CURR"',
            ":FORM:ELEM CURR",
            ":SOUR:VOLT:MODE LIST",
            *list_commands(":SOUR:LIST:VOLT", levels, LIST_VALUES_PER_COMMAND),
            f":SOUR:DEL {format_number(delay)}",
            # Readings per :READ? are arm count times trigger count.
            ":ARM:COUN 1",
            f":TRIG:COUN {len(levels)}",
            ":OUTP ON",
        ]

    def _point_delay(self, value: float, what: str) -> float:
        return self._duration_s(value, 0.0, MAX_SOURCE_DELAY_S, what)


class Keithley2400(ScpiInstrument):
    """Keithley 2400 SourceMeter.

    Parameters
    ----------
    adapter : Adapter, str or int
        The adapter or VISA resource (messages and replies end with LF).
    name : str
        The instrument's name, used in the channel name (``"smu1.smu"``).
    model : str
        The model, ``"2400"``.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    RATINGS = RATINGS
    FAMILY = "2400"
    CHANNEL = Keithley2400Channel

    smu: Keithley2400Channel

    def __init__(
        self,
        adapter: Adapter | str | int,
        name: str = "Keithley 2400",
        model: str = "2400",
        **kwargs: Any,
    ) -> None:
        super().__init__(adapter, name, model, **kwargs)
