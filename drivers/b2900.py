"""Keysight (Agilent) B2901A, B2902A and B2912A Precision Source/Measure Units.

Each channel (``ch1``, and ``ch2`` on the two-channel models) is a
:class:`KeysightB2900Channel` that satisfies
:class:`drivers.interfaces.SourceMeasureChannel`. Commands name the channel in
their headers (``:SOUR2:VOLT``) or in a channel list (``:INIT (@2)``). Levels
and limits are checked against the model's ratings and never clipped; values
are sent in a form that round-trips exactly (a 100 nA limit is ``1e-07``).

A sweep is one bus message: a list sweep (``:SOUR:VOLT:MODE LIST``,
``:SOUR:LIST:VOLT``, ``:TRIG:COUN N``), ``:INIT``, ``*WAI`` and
``:FETC:ARR:CURR?``. Pulse trains use the instrument's pulse mode
(``:SOUR:FUNC:SHAP PULS``). After either, whatever happened, one message
puts back what it changed (:data:`REST`): outside its sweeps and pulse trains
the driver keeps each channel as reset leaves it, a DC source in fixed mode
with one trigger and no acquire delay, so that a later ``:INIT`` neither
replays a list nor applies a pulse level.

With ``:OUTP:ON:AUTO`` at its default (ON), ``:INIT`` turns the output on by
itself, and a spot measurement (``:MEAS:CURR?``) may do the same.
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
    ScpiInstrument,
    ScpiRatings,
    ScpiSmuChannel,
    flag_measurement,
    format_values,
    function_control,
    join_commands,
    number_control,
    parse_number,
    parse_reading,
    switch_control,
)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

_ONE = ("ch1",)
_TWO = ("ch1", "ch2")
_COMMON: dict[str, Any] = {
    "max_voltage_v": 210.0,
    "max_current_a": 3.03,
    "min_current_limit_a": 1e-9,
    "min_voltage_limit_v": 0.02,
    # Aperture 8 µs to 2 s, whatever the line frequency (50 or 60 Hz).
    "nplc": (4.8e-4, 100.0),
    "max_list_points": 2500,
}

#: Ratings by model. Currents are the DC ratings (3.03 A); the 10.5 A pulsed
#: rating is not offered, because one limit serves both DC and pulses. The
#: lowest current range is 100 nA on the B2901A/B2902A, 10 nA on the B2912A.
#: Newer firmware takes 100000 list points; 2500 works on every unit.
RATINGS: dict[str, ScpiRatings] = {
    "B2901A": ScpiRatings(_ONE, current_range_a=(1e-7, 3.0), **_COMMON),
    "B2902A": ScpiRatings(_TWO, current_range_a=(1e-7, 3.0), **_COMMON),
    "B2912A": ScpiRatings(_TWO, current_range_a=(1e-8, 3.0), **_COMMON),
}

#: Pulse width (``:SOUR:PULS:WIDT``), s.
PULSE_WIDTH_S = (50e-6, 100_000.0)
#: Pulse delay (``:SOUR:PULS:DEL``) and trigger delays, s.
MAX_DELAY_S = 100.0

#: What a sweep or a pulse train changes, put back as reset leaves it.
REST = (
    ":SOUR{ch}:FUNC:SHAP DC",
    ":SOUR{ch}:VOLT:MODE FIX",
    ":TRIG{ch}:COUN 1",
    ":TRIG{ch}:ACQ:DEL 0",
)


class KeysightB2900Channel(ScpiSmuChannel):
    """One channel of a B2900, ``ch1`` or ``ch2``; ``{ch}`` is its number."""

    source_function = function_control(
        ":SOUR{ch}:FUNC:MODE",
        """Control the source function, ``"voltage"`` or ``"current"`` (str).""",
    )

    source_voltage = number_control(
        ":SOUR{ch}:VOLT",
        """Control the DC source voltage in V (float, -210 to 210 V).""",
        "V",
        (-210.0, 210.0),
    )

    source_current = number_control(
        ":SOUR{ch}:CURR",
        """Control the DC source current in A (float, -3.03 to 3.03 A).""",
        "A",
        (-3.03, 3.03),
    )

    current_limit = number_control(
        ":SENS{ch}:CURR:PROT",
        """Control the current limit (compliance) in A (float, 1 nA to
        3.03 A).""",
        "A",
        (1e-9, 3.03),
    )

    voltage_limit = number_control(
        ":SENS{ch}:VOLT:PROT",
        """Control the voltage limit (compliance) in V (float, 20 mV to
        210 V).""",
        "V",
        (0.02, 210.0),
    )

    nplc = number_control(
        ":SENS{ch}:CURR:NPLC",
        """Control the current integration time in power-line cycles (float,
        0.00048 to 100).""",
        "PLC",
        (4.8e-4, 100.0),
    )

    current_range = number_control(
        ":SENS{ch}:CURR:RANG",
        """Control the current measurement range in A (float, 100 nA to 3 A on
        the B2901A and B2902A, 10 nA to 3 A on the B2912A).""",
        "A",
        (1e-8, 3.0),
    )

    current_autorange = switch_control(
        ":SENS{ch}:CURR:RANG:AUTO",
        """Control whether the current measurement range is chosen
        automatically (bool).""",
        "autorange state",
    )

    four_wire = switch_control(
        ":SENS{ch}:REM",
        """Control whether remote (4-wire) sense is used (bool).""",
        "sense state",
    )

    output_enabled = switch_control(
        ":OUTP{ch}",
        """Control whether the output is on (bool).""",
        "output state",
    )

    compliance = flag_measurement(
        ":SENS{ch}:CURR:PROT:TRIP?",
        """Measure whether the source is held at its current limit (bool).""",
    )

    def measure_current(self) -> float:
        """Measure one current reading in A (``:MEAS:CURR? (@n)``).

        An overflow reading is returned as NaN, with a warning logged.
        """
        return parse_reading(self.ask(":MEAS:CURR? (@{ch})"), self.name)

    def sweep_voltage(
        self, levels_v: Sequence[float], settle_s: float
    ) -> npt.NDArray[np.float64]:
        """Source each voltage in turn and measure the current at each.

        One message loads the list, runs it and fetches the currents::

            :SOUR1:FUNC:MODE VOLT;:SOUR1:FUNC:SHAP DC;:SENS1:FUNC "CURR";
            :SOUR1:VOLT:MODE LIST;:SOUR1:LIST:VOLT v1,...;:TRIG1:SOUR AINT;
            :TRIG1:COUN N;:TRIG1:TRAN:DEL 0;:TRIG1:ACQ:DEL <settle>;
            :OUTP1 ON;:INIT (@1);*WAI;:OUTP1 OFF;:FETC:ARR:CURR? (@1)

        then, whatever happened,
        ``:SOUR1:FUNC:SHAP DC;:SOUR1:VOLT:MODE FIX;:TRIG1:COUN 1;:TRIG1:ACQ:DEL 0``.
        The sweep leaves the output off at the level it found.

        Parameters
        ----------
        levels_v : sequence of float
            The voltages to source, V (-210 to 210 V, 1 to 2500 levels).
        settle_s : float
            Time from each source step to the start of its measurement, s
            (0 to 100 s).

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
        settle = self._duration_s(settle_s, 0.0, MAX_DELAY_S, "settle time")
        commands = [
            ":SOUR{ch}:FUNC:MODE VOLT",
            ":SOUR{ch}:FUNC:SHAP DC",
            ':SENS{ch}:FUNC "CURR"',
            ":SOUR{ch}:VOLT:MODE LIST",
            f":SOUR{{ch}}:LIST:VOLT {format_values(levels)}",
            *self._trigger_commands(len(levels), settle),
            *self._run_commands(),
            ":FETC:ARR:CURR? (@{ch})",
        ]
        try:
            reply = self.ask(join_commands(commands))
        finally:
            self.write(join_commands(REST))
        return self._readings(reply, len(levels))

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> npt.NDArray[np.float64]:
        """Apply voltage pulses and measure the current at the end of each.

        Uses the pulse mode: after each trigger the output stays at `bias_v`
        for the pulse delay `off_s`, then goes to `level_v` for `width_s`.
        The measurement aperture is read first (``:SENS1:CURR:APER?``) so
        that each measurement ends with its pulse; then one message runs the
        train and fetches the currents::

            :SOUR1:FUNC:MODE VOLT;:SENS1:FUNC "CURR";:SOUR1:FUNC:SHAP PULS;
            :SOUR1:VOLT:MODE FIX;:SOUR1:VOLT <bias>;:SOUR1:VOLT:TRIG <level>;
            :SOUR1:PULS:DEL <off>;:SOUR1:PULS:WIDT <width>;:TRIG1:SOUR AINT;
            :TRIG1:COUN <count>;:TRIG1:TRAN:DEL 0;
            :TRIG1:ACQ:DEL <off + width - aperture>;
            :OUTP1 ON;:INIT (@1);*WAI;:OUTP1 OFF;:FETC:ARR:CURR? (@1)

        and, whatever happened, ``:SOUR1:FUNC:SHAP DC;:SOUR1:VOLT:MODE FIX;
        :TRIG1:COUN 1;:TRIG1:ACQ:DEL 0;:SOUR1:VOLT:TRIG <bias>`` puts the
        source back to DC with its triggered level at the bias. The source
        level is left at `bias_v`, the output off.

        Parameters
        ----------
        level_v : float
            Pulse level, V (-210 to 210 V).
        width_s : float
            Pulse width, s (50 µs to 100000 s); it must hold the measurement
            aperture set by `nplc`.
        bias_v : float
            Level between pulses, V (-210 to 210 V).
        off_s : float
            Time at the bias level before each pulse, s (0 to 100 s); the
            instrument's trigger cycle adds a little to it.
        count : int
            Number of pulses (1 to 2500).

        Returns
        -------
        numpy.ndarray
            The current at the end of each pulse, A; NaN for an overflow.

        Raises
        ------
        ValueError
            If an argument is out of range (nothing is sent), if the aperture
            does not fit in the pulse, or if the reply does not hold one
            reading per pulse.
        """
        level, bias, width, off, count = self._check_train(
            level_v, width_s, bias_v, off_s, count
        )
        aperture = parse_number(self.ask(":SENS{ch}:CURR:APER?"))
        if aperture > width:
            raise ValueError(
                f"{self.name}: the {format_number(aperture)} s measurement aperture "
                f"does not fit in the {format_number(width)} s pulse; lower nplc"
            )
        acquire = self._duration_s(
            off + width - aperture, 0.0, MAX_DELAY_S, "measurement delay"
        )
        commands = self._pulse_commands(level, bias, width, off, count, acquire)
        try:
            reply = self.ask(join_commands([*commands, ":FETC:ARR:CURR? (@{ch})"]))
        finally:
            self.write(join_commands(self._pulse_rest(bias)))
        return self._readings(reply, count)

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Apply the pulses of :meth:`pulse_train` without reading them back.

        One message, ending ``*WAI;:OUTP1 OFF`` and the commands that put
        the source back to DC (as :meth:`pulse_train` does): the instrument
        takes the next command only when the train has ended. The aperture is
        not read, so each (unread) measurement starts with its pulse; an
        aperture longer than the pulse lengthens the off time.
        """
        level, bias, width, off, count = self._check_train(
            level_v, width_s, bias_v, off_s, count
        )
        commands = self._pulse_commands(level, bias, width, off, count, off)
        self.write(join_commands([*commands, *self._pulse_rest(bias)]))

    def turn_off(self) -> None:
        """Stop any running sweep and turn the output off
        (``:ABOR (@n);:OUTPn OFF``)."""
        self.write(":ABOR (@{ch});:OUTP{ch} OFF")

    def _check_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> tuple[float, float, float, float, int]:
        level, bias, count = self._check_pulse(level_v, bias_v, count)
        width = self._duration_s(width_s, *PULSE_WIDTH_S, "pulse width")
        off = self._duration_s(off_s, 0.0, MAX_DELAY_S, "off time")
        self._check_points(count)
        return level, bias, width, off, count

    def _pulse_commands(
        self,
        level: float,
        bias: float,
        width: float,
        off: float,
        count: int,
        acquire_s: float,
    ) -> list[str]:
        return [
            ":SOUR{ch}:FUNC:MODE VOLT",
            ':SENS{ch}:FUNC "CURR"',
            ":SOUR{ch}:FUNC:SHAP PULS",
            ":SOUR{ch}:VOLT:MODE FIX",
            f":SOUR{{ch}}:VOLT {format_number(bias)}",
            f":SOUR{{ch}}:VOLT:TRIG {format_number(level)}",
            f":SOUR{{ch}}:PULS:DEL {format_number(off)}",
            f":SOUR{{ch}}:PULS:WIDT {format_number(width)}",
            *self._trigger_commands(count, acquire_s),
            *self._run_commands(),
        ]

    @staticmethod
    def _trigger_commands(count: int, acquire_s: float) -> list[str]:
        # Source and measurement triggers start together; the measurement
        # waits acquire_s, so that it falls after the settling (or pulse).
        return [
            ":TRIG{ch}:SOUR AINT",
            f":TRIG{{ch}}:COUN {count}",
            ":TRIG{ch}:TRAN:DEL 0",
            f":TRIG{{ch}}:ACQ:DEL {format_number(acquire_s)}",
        ]

    @staticmethod
    def _run_commands() -> list[str]:
        return [":OUTP{ch} ON", ":INIT (@{ch})", "*WAI", ":OUTP{ch} OFF"]

    @staticmethod
    def _pulse_rest(bias: float) -> list[str]:
        # The triggered level held the pulse level: the next :INIT would apply it.
        return [*REST, f":SOUR{{ch}}:VOLT:TRIG {format_number(bias)}"]


class KeysightB2900(ScpiInstrument):
    """Keysight B2901A, B2902A or B2912A Precision Source/Measure Unit.

    Parameters
    ----------
    adapter : Adapter, str or int
        The adapter or VISA resource (messages and replies end with LF).
    name : str
        The instrument's name, used in channel names (``"smu3.ch1"``).
    model : str
        The model, ``"B2901A"``, ``"B2902A"`` or ``"B2912A"``; sets the
        channels and ratings.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    RATINGS = RATINGS
    FAMILY = "B2900"
    CHANNEL = KeysightB2900Channel

    ch1: KeysightB2900Channel
    ch2: KeysightB2900Channel

    def __init__(
        self,
        adapter: Adapter | str | int,
        name: str = "Keysight B2900",
        model: str = "B2902A",
        **kwargs: Any,
    ) -> None:
        super().__init__(adapter, name, model, **kwargs)

    @staticmethod
    def channel_id(label: str) -> int:
        """The channel number of ``"ch1"`` / ``"ch2"``, used in headers and lists."""
        return int(label.removeprefix("ch"))
