"""The safety guard between procedures and drivers.

Procedures never hold a driver: they get guarded channels and a guarded
matrix from the rig. Every action is checked before anything is sent:

* a current limit is set before an output turns on;
* no level, pulse amplitude or bias exceeds the chip's ``max_voltage_v`` and
  no limit exceeds ``max_compliance_a``;
* relays switch only cold: no output wired to an affected matrix row may be
  live (on at a non-zero level). Outputs on at 0 V carry no current through
  the contacts, so the engine may keep sense channels on while it switches;
* with a per-cell budget in the station's limits (``max_cell_charge_c``,
  ``max_cell_energy_j``), no pulse train may bring a cell past it;
* with limits for an operator mode (``limits.modes``), no channel whose bus
  reaches a line of an array of that mode (the chip file's ``mode``) may
  source a level or hold a current limit beyond them, nor may a relay put
  such a line on a bus whose channel is set beyond them.

A refused action raises :class:`SafetyError` naming the rule, the instrument
channel and the cells it reaches; nothing reaches the instrument.

The guarded objects keep their drivers only inside closures: no attribute of
theirs, public or private, is a driver, an adapter or a connection, and no
method returns one. Python cannot stop code that digs through closure cells
or the garbage collector, nor code that imports a driver and opens the
instrument itself; the guard protects the supported API, not against such
code (see docs/safety.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.station import Limits

log = logging.getLogger("labctl.safety")

ALL_ROWS = frozenset("ABCDEFGH")
"""Every row (bus) of a switch matrix card."""

Cell = tuple[str, int, int]  # (array, row, column)
Line = tuple[str, str, int]  # (array, "row" | "col", index)


class SafetyError(RuntimeError):
    """An action the guard refused; nothing was sent."""


@dataclass(slots=True)
class _ChannelState:
    limit_a: float | None = None
    level_v: float = 0.0
    on: bool = False
    #: The largest |level| the cells its bus reaches allow, V (the chip's
    #: max_voltage_v unless a mode's limit is tighter).
    max_v: float = float("inf")

    @property
    def live(self) -> bool:
        return self.on and self.level_v != 0.0


@dataclass
class _Budget:
    """What pulses have put through each cell so far (upper bounds)."""

    charge_c: dict[Cell, float] = field(default_factory=dict)
    energy_j: dict[Cell, float] = field(default_factory=dict)


class Guard:
    """Tracks what every output and relay is doing and refuses unsafe actions.

    Parameters
    ----------
    limits : Limits
        The chip's limits from the station file.
    bus_of : dict of str to str
        Each SMU channel's matrix row (``{"smu1.smua": "A"}``).
    order : callable, optional
        Called with an action's connection token before it is sent, so that
        writes held for other connections go out first and the order is kept
        (None: the rig has one connection).
    lines_at : dict of (int, int) to (str, str, int), optional
        The chip line on each matrix (slot, column): ``(array, "row" or
        "col", index)``. Without it refusals name no cells.
    array_modes : dict of str to str, optional
        Each array's operator mode (``{"S0": "exponential"}``); an array not
        named holds analog cells.
    """

    def __init__(
        self,
        limits: Limits,
        bus_of: dict[str, str],
        order: Callable[[int], None] | None = None,
        lines_at: dict[tuple[int, int], Line] | None = None,
        array_modes: dict[str, str] | None = None,
    ) -> None:
        self.limits = limits
        self.bus_of = bus_of  # channel name -> matrix row it is wired to
        self.states = {
            name: _ChannelState(max_v=limits.max_voltage_v) for name in bus_of
        }
        #: Per array with a mode of tighter limits: (mode, max V, max A).
        self.array_limits: dict[str, tuple[str, float, float]] = {}
        for array, mode in (array_modes or {}).items():
            tighter = limits.modes.get(mode)  # type: ignore[call-overload]
            if tighter is not None:
                self.array_limits[array] = (
                    mode,
                    tighter.max_voltage_v or limits.max_voltage_v,
                    tighter.max_compliance_a or limits.max_compliance_a,
                )
        #: None when every action goes through one connection: nothing to keep.
        self.order = order
        self.lines_at = lines_at or {}
        #: The crosspoints closed through the guarded matrix (``"1A01"``).
        self.closed: set[str] = set()
        self.budget = _Budget()
        self.budgeted = (
            limits.max_cell_charge_c is not None or limits.max_cell_energy_j is not None
        )

    def state(self, channel: str) -> _ChannelState:
        return self.states.setdefault(
            channel, _ChannelState(max_v=self.limits.max_voltage_v)
        )

    # The rules.

    def check_limit(self, channel: str, limit_a: float) -> None:
        if not 0 < limit_a <= self.limits.max_compliance_a:
            self._refuse(
                "compliance", channel,
                f"current limit {limit_a:g} A is outside "
                f"(0, {self.limits.max_compliance_a:g}] A, the chip's max_compliance_a",
            )  # fmt: skip
        if self.array_limits:
            self._check_modes(channel, self._bus_arrays(channel), limit_a=limit_a)

    def check_level(self, channel: str, level_v: float, what: str = "level") -> None:
        limit_v = self.limits.max_voltage_v
        if not -limit_v <= level_v <= limit_v:  # NaN fails both comparisons
            self._refuse(
                "max voltage", channel,
                f"{what} {level_v:g} V exceeds the chip's "
                f"max_voltage_v of {self.limits.max_voltage_v:g} V",
            )  # fmt: skip
        if self.array_limits:
            self._check_modes(channel, self._bus_arrays(channel), level_v, what=what)

    def check_enable(self, channel: str) -> None:
        if self.state(channel).limit_a is None:
            self._refuse(
                "limit before output", channel,
                "output cannot turn on before its current limit is set",
            )  # fmt: skip

    # Operator modes' limits.

    def _bus_arrays(
        self, channel: str, closed: Iterable[str] | None = None
    ) -> set[str]:
        """The arrays of tighter limits with a line on the channel's bus."""
        bus = self.bus_of.get(channel)
        arrays = set()
        for xp in self.closed if closed is None else closed:
            if xp[-3:-2] == bus and (line := self._line_of(xp)) is not None:
                if line[0] in self.array_limits:
                    arrays.add(line[0])
        return arrays

    def _check_modes(
        self,
        channel: str,
        arrays: set[str],
        level_v: float | None = None,
        limit_a: float | None = None,
        what: str = "level",
        action: str = "",
    ) -> None:
        """Refuse a level or limit beyond the mode limits of these arrays."""
        for array in sorted(arrays):
            mode, max_v, max_a = self.array_limits[array]
            key = f"limits.modes.{mode}"
            if level_v is not None and not -max_v <= level_v <= max_v:
                self._refuse(
                    "mode limit", channel,
                    f"{action}{what} {level_v:g} V exceeds {key}.max_voltage_v of "
                    f"{max_v:g} V for the {mode} cells of array {array}",
                )  # fmt: skip
            if limit_a is not None and limit_a > max_a:
                self._refuse(
                    "mode limit", channel,
                    f"{action}current limit {limit_a:g} A exceeds "
                    f"{key}.max_compliance_a of {max_a:g} A for the {mode} cells of "
                    f"array {array}",
                )  # fmt: skip

    def check_reach(self, closed_after: set[str], action: str) -> None:
        """Refuse a switching that would put a line of an array of tighter
        limits on a bus whose channel is set beyond them."""
        if not self.array_limits:
            return
        for name, st in self.states.items():
            arrays = self._bus_arrays(name, closed_after)
            self._check_modes(name, arrays, st.level_v, st.limit_a,
                              action=f"matrix {action}: ")

    def check_program(
        self,
        levels: dict[str, Sequence[float]],
        arrays: Iterable[str],
        switched: Sequence[str],
    ) -> None:
        """Refuse an instrument-run program before it is sent.

        ``levels`` holds, per channel the program drives, every level it may
        source; ``arrays`` the arrays whose lines it switches, ``switched``
        the channels it brings to 0 V before each switching. Every channel
        must have its limit set, every level must pass :meth:`check_level`
        and the modes' limits of ``arrays``, no other channel may be live
        (the program switches relays), and no cell budget may be in force:
        the guard cannot count the program's pulses one by one.
        """
        arrays = {a for a in arrays if a in self.array_limits}
        for channel, values in levels.items():
            self.check_enable(channel)
            st = self.state(channel)
            for level in values:
                self.check_level(channel, level, "program level")
            if arrays:
                self._check_modes(channel, arrays, max(values, key=abs),
                                  st.limit_a, what="program level")
        live = sorted(
            name for name, st in self.states.items()
            if st.live and name not in switched
        )
        if live:
            self._refuse(
                "no hot switching", ", ".join(live),
                "an instrument-run program switches relays while this output "
                "is live; set it to 0 V or turn it off first",
            )  # fmt: skip
        if self.budgeted:
            self._refuse(
                "cell charge budget", ", ".join(levels),
                "an instrument-run program cannot be held to a per-cell budget; "
                "program through the bus instead",
            )  # fmt: skip

    def reached(self) -> None:
        """Note, per channel, the largest level the lines now on its bus allow."""
        if not self.array_limits:
            return
        for name, st in self.states.items():
            st.max_v = min(
                [self.limits.max_voltage_v]
                + [self.array_limits[a][1] for a in self._bus_arrays(name)]
            )

    def check_switch(
        self, rows: Iterable[str], action: str, crosspoints: Sequence[str] = ()
    ) -> None:
        rows = set(rows)
        bus_of = self.bus_of
        live = [  # st.live, spelled out: this runs at every switching
            name
            for name, st in self.states.items()
            if st.on and st.level_v != 0.0 and bus_of.get(name) in rows
        ]
        if live:
            live_rows = rows & {self.bus_of[n] for n in live}
            moved = [xp for xp in crosspoints if xp[-3:-2] in live_rows]
            lines = self._describe_lines(moved) if crosspoints else "every line"
            self._refuse(
                "no hot switching",
                ", ".join(sorted(live)),
                f"matrix {action} of {lines}: live on row(s) "
                f"{', '.join(sorted(live_rows))}; "
                "set the level to 0 V or turn the output off first",
            )

    def check_pulses(
        self, channel: str, level_v: float, width_s: float, count: int
    ) -> None:
        """Refuse a pulse train that would take a cell past its budget.

        Each cell between a line on the channel's bus and a line held at
        0 V (ground, or an output on at 0 V) takes the whole pulse. Its
        current cannot exceed the channel's current limit, so a train adds
        at most ``limit_a * width_s * count`` coulombs and ``|level_v|``
        times that in joules to each such cell. Cells whose other line is
        held at another level (half-selected cells) are not counted.
        """
        limits = self.limits
        limit_a = self.state(channel).limit_a or 0.0
        charge_c = limit_a * max(width_s, 0.0) * max(count, 0)
        energy_j = abs(level_v) * charge_c
        budget = self.budget
        cells = self._full_level_cells(channel)
        for cell in cells:
            if limits.max_cell_charge_c is not None:
                total = budget.charge_c.get(cell, 0.0) + charge_c
                if total > limits.max_cell_charge_c:
                    self._refuse_budget(
                        channel,
                        cell,
                        "charge",
                        total,
                        "C",
                        limits.max_cell_charge_c,
                        level_v,
                        width_s,
                        count,
                    )
            if limits.max_cell_energy_j is not None:
                total = budget.energy_j.get(cell, 0.0) + energy_j
                if total > limits.max_cell_energy_j:
                    self._refuse_budget(
                        channel,
                        cell,
                        "energy",
                        total,
                        "J",
                        limits.max_cell_energy_j,
                        level_v,
                        width_s,
                        count,
                    )
        for cell in cells:
            budget.charge_c[cell] = budget.charge_c.get(cell, 0.0) + charge_c
            budget.energy_j[cell] = budget.energy_j.get(cell, 0.0) + energy_j

    def _refuse_budget(
        self,
        channel: str,
        cell: Cell,
        kind: str,
        total: float,
        unit: str,
        allowed: float,
        level_v: float,
        width_s: float,
        count: int,
    ) -> None:
        key = "max_cell_charge_c" if kind == "charge" else "max_cell_energy_j"
        self._refuse(
            f"cell {kind} budget",
            channel,
            f"{count} pulse(s) of {width_s:g} s at {level_v:g} V would bring cell "
            f"{_cell_name(cell)} to {total:.3g} {unit} (bound from the current limit), "
            f"above the station's {key} of {allowed:g} {unit}",
            cells=[cell],
        )

    def _refuse(
        self, rule: str, channel: str, message: str, cells: Sequence[Cell] | None = None
    ) -> None:
        where = self._describe_cells(channel, cells)
        text = f"safety rule '{rule}': {channel}: {message} ({where})"
        log.warning("refused: %s", text)
        raise SafetyError(text)

    # What the relays join.

    def lines_on(self, bus: str) -> list[Line]:
        """The chip lines the closed crosspoints put on a matrix row."""
        return sorted(
            line for xp in self.closed
            if xp[-3:-2] == bus and (line := self._line_of(xp)) is not None
        )  # fmt: skip

    def cells_reached(self, channel: str) -> list[Cell]:
        """The cells between a line on the channel's bus and a line on another bus."""
        return self._cells(channel, lambda bus: True)

    def _full_level_cells(self, channel: str) -> list[Cell]:
        driven = set(self.bus_of.values())
        held = {
            self.bus_of[name]
            for name, st in self.states.items()
            if name in self.bus_of and st.on and st.level_v == 0.0 and name != channel
        }

        def at_zero(bus: str) -> bool:
            return bus in held or bus not in driven  # a row no SMU drives is ground

        return self._cells(channel, at_zero)

    def _cells(self, channel: str, other_ok: Callable[[str], bool]) -> list[Cell]:
        bus = self.bus_of.get(channel)
        if bus is None:
            return []
        mine: list[Line] = []
        others: list[tuple[Line, str]] = []
        for xp in self.closed:
            line = self._line_of(xp)
            if line is None:
                continue
            row = xp[-3:-2]
            if row == bus:
                mine.append(line)
            elif other_ok(row):
                others.append((line, row))
        cells = set()
        for array, kind, index in mine:
            for (other_array, other_kind, other_index), _ in others:
                if other_array == array and other_kind != kind:
                    r, c = (
                        (index, other_index) if kind == "row" else (other_index, index)
                    )
                    cells.add((array, r, c))
        return sorted(cells)

    def _line_of(self, crosspoint: str) -> Line | None:
        try:
            slot, column = int(crosspoint[:-3]), int(crosspoint[-2:])
        except ValueError:
            return None
        return self.lines_at.get((slot, column))

    def _describe_cells(self, channel: str, cells: Sequence[Cell] | None) -> str:
        if not self.lines_at:
            return "cells unknown: no wiring given to the guard"
        if cells is None:
            names = [n.strip() for n in channel.split(",")]
            cells = sorted({c for n in names for c in self.cells_reached(n)})
        if cells:
            shown = ", ".join(_cell_name(c) for c in cells[:3])
            more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
            return f"cell{'s' if len(cells) > 1 else ''} {shown}{more}"
        buses = [
            self.bus_of[n.strip()]
            for n in channel.split(",")
            if n.strip() in self.bus_of
        ]
        lines = [line for bus in buses for line in self.lines_on(bus)]
        if lines:
            return f"reaching lines {_lines_text(lines)} but no cell yet"
        return "reaching no cell: its bus has no closed relay"

    def _describe_lines(self, crosspoints: Sequence[str]) -> str:
        lines = sorted({ln for xp in crosspoints if (ln := self._line_of(xp))})
        if not lines:
            return ", ".join(crosspoints) or "no crosspoint"
        return (
            f"{', '.join(crosspoints[:3])}{' ...' if len(crosspoints) > 3 else ''}"
            f" (cells of line {_lines_text(lines)})"
        )


def _cell_name(cell: Cell) -> str:
    array, row, col = cell
    return f"{array} ({row}, {col})"


def _lines_text(lines: Sequence[Line]) -> str:
    names = [f"{a}.{'R' if k == 'row' else 'C'}{i}" for a, k, i in lines]
    return ", ".join(names[:4]) + (
        f" and {len(names) - 4} more" if len(names) > 4 else ""
    )


@dataclass(frozen=True, slots=True)
class ChannelPort:
    """The sends a guarded channel makes, each a function bound to its driver.

    Built by :func:`channel_port`; holds functions only, never the driver.
    """

    set_limit: Callable[[float], None]
    get_limit: Callable[[], float]
    set_level: Callable[[float], None]
    set_output: Callable[[bool], None]
    get_output: Callable[[], bool]
    read_current: Callable[[], float]
    set_nplc: Callable[[float], None]
    get_nplc: Callable[[], float]
    nplc_range: Callable[[], tuple[float, float]]
    sweep: Callable[[np.ndarray, float], Any]
    pulse_train: Callable[[float, float, float, float, int], Any]
    apply_pulses: Callable[[float, float, float, float, int], None]
    turn_off: Callable[[], None]


def channel_port(channel: Any) -> ChannelPort:
    """The port of a driver channel: its sends bound once, lean where it offers."""

    def set_limit(limit_a: float) -> None:
        channel.current_limit = limit_a

    def set_nplc(value: float) -> None:
        channel.nplc = value

    return ChannelPort(
        set_limit=set_limit,
        get_limit=lambda: float(channel.current_limit),
        set_level=_lean(
            channel,
            "level_writer",
            lambda level: setattr(channel, "source_voltage", level),
        ),
        set_output=_lean(
            channel, "output_writer", lambda on: setattr(channel, "output_enabled", on)
        ),
        get_output=lambda: bool(channel.output_enabled),
        read_current=_lean(
            channel, "current_getter", lambda: channel.measure_current()
        ),
        set_nplc=set_nplc,
        get_nplc=lambda: float(channel.nplc),
        nplc_range=lambda: tuple(channel.nplc_range),
        sweep=lambda levels, settle: channel.sweep_voltage(levels, settle),
        pulse_train=lambda *train: channel.pulse_train(*train),
        apply_pulses=_lean(
            channel, "pulse_writer", lambda *train: channel.apply_pulses(*train)
        ),
        turn_off=lambda: channel.turn_off(),
    )


def _lean(
    channel: Any, factory: str, fallback: Callable[..., Any]
) -> Callable[..., Any]:
    make = getattr(channel, factory, None)
    if not callable(make):
        return fallback
    send = make()
    # A bound method would show its driver through __self__: keep it in a closure.
    return (lambda *args: send(*args)) if hasattr(send, "__self__") else send


class GuardedChannel:
    """A source-measure channel whose every action passes the guard first.

    Parameters
    ----------
    name : str
        ``"<instrument>.<channel>"`` as the station file names it.
    channel : driver channel or ChannelPort
        The driver channel (kept only in the port's closures) or its port.
    guard : Guard
        The guard of the rig.
    token : int, optional
        The connection the channel talks through, as the guard's ``order``
        knows it.
    """

    def __init__(self, name: str, channel: Any, guard: Guard, token: int = 0) -> None:
        self.name = name
        port = channel if isinstance(channel, ChannelPort) else channel_port(channel)
        self._port = port
        self._guard = guard
        self._order = guard.order
        self._state = guard.state(name)
        self._token = token
        # Bound once: the sends hot loops make most.
        self._set_level = port.set_level
        self._set_output = port.set_output
        self._get_current = port.read_current
        self._apply_pulses = port.apply_pulses

    def _keep_order(self) -> None:
        if self._order is not None:
            self._order(self._token)

    @property
    def current_limit(self) -> float:
        """Control the current limit (compliance) in A, within the chip's limit."""
        return self._port.get_limit()

    @current_limit.setter
    def current_limit(self, limit_a: float) -> None:
        self._guard.check_limit(self.name, limit_a)
        self._keep_order()
        self._port.set_limit(limit_a)
        self._state.limit_a = limit_a

    @property
    def source_voltage(self) -> float:
        """Control the DC source level in V, within the chip's max_voltage_v."""
        return self._state.level_v

    @source_voltage.setter
    def source_voltage(self, level_v: float) -> None:
        limit_v = self._state.max_v
        if not -limit_v <= level_v <= limit_v:  # the guard's rule, inline: hot path
            self._guard.check_level(self.name, level_v)
        if self._order is not None:
            self._order(self._token)
        self._set_level(level_v)
        self._state.level_v = float(level_v)

    @property
    def output_enabled(self) -> bool:
        """Control the output (True on), as the guard last set it."""
        return self._state.on

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        state = self._state
        if on and (state.limit_a is None or abs(state.level_v) > state.max_v):
            self._guard.check_enable(self.name)
            self._guard.check_level(self.name, state.level_v)
        if self._order is not None:
            self._order(self._token)
        if on:
            # The limit goes with every turn-on: an instrument that lost its
            # settings (a power cycle) must not turn on at its default limit.
            self._port.set_limit(state.limit_a)
        self._set_output(bool(on))
        self._state.on = bool(on)

    def output_reported(self) -> bool:
        """Ask the instrument whether the output is on (not what the guard set)."""
        self._keep_order()
        return self._port.get_output()

    @property
    def nplc(self) -> float:
        """Control the integration time in power-line cycles."""
        return self._port.get_nplc()

    @nplc.setter
    def nplc(self, value: float) -> None:
        self._keep_order()
        self._port.set_nplc(value)

    @property
    def nplc_range(self) -> tuple[float, float]:
        """The shortest and longest integration the instrument takes, PLC."""
        return self._port.nplc_range()

    def measure_current(self) -> float:
        """Measure one current reading in A."""
        if self._order is not None:
            self._order(self._token)
        return float(self._get_current())

    def sweep_voltage(self, levels_v: Sequence[float], settle_s: float) -> np.ndarray:
        """Source each level in turn (V) and return the current at each (A)."""
        levels = np.asarray(levels_v, dtype=float)
        if levels.size == 0:
            self._guard._refuse(
                "sweep levels", self.name, "a sweep needs at least one level"
            )
        self._guard.check_enable(self.name)
        self._guard.check_level(self.name, float(np.max(np.abs(levels))), "sweep level")
        self._keep_order()
        currents = self._port.sweep(levels, settle_s)
        self._after_factory()
        return np.asarray(currents, dtype=float)

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> np.ndarray:
        """Apply ``count`` pulses (V, s); return the current at the end of each (A)."""
        self._check_train(level_v, width_s, bias_v, count)
        self._keep_order()
        currents = self._port.pulse_train(level_v, width_s, bias_v, off_s, count)
        self._after_factory()
        return np.asarray(currents, dtype=float)

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Pulses as :meth:`pulse_train`, not read back (one message in a batch)."""
        limit_v = self._state.max_v
        if (
            self._state.limit_a is None
            or not -limit_v <= level_v <= limit_v
            or not -limit_v <= bias_v <= limit_v
            or self._guard.budgeted
        ):  # the guard's rules, inline where they pass: a hot path
            self._check_train(level_v, width_s, bias_v, count)
        if self._order is not None:
            self._order(self._token)
        self._port.set_limit(self._state.limit_a)  # the factory turns it on
        self._apply_pulses(level_v, width_s, bias_v, off_s, count)
        self._state.on = False  # as _after_factory

    def _check_train(
        self, level_v: float, width_s: float, bias_v: float, count: int
    ) -> None:
        guard = self._guard
        guard.check_enable(self.name)
        guard.check_level(self.name, level_v, "pulse level")
        guard.check_level(self.name, bias_v, "pulse bias")
        if guard.budgeted:
            guard.check_pulses(self.name, level_v, width_s, count)

    def _after_factory(self) -> None:
        # The instrument's factory sweeps and pulse trains leave the output off.
        self._state.on = False

    def force_off(self) -> None:
        """Turn the output off at once, past any batch, without checks (safe ends)."""
        self._keep_order()
        self._port.turn_off()
        self._state.on = False


@dataclass(frozen=True, slots=True)
class MatrixPort:
    """The sends a guarded matrix makes, each a function bound to its driver."""

    close: Callable[[Sequence[str]], None]
    open: Callable[[Sequence[str]], None]
    exclusive_close: Callable[[Sequence[str]], None]
    open_all: Callable[[], None]
    closed_channels: Callable[[], Sequence[str]]
    force_open_all: Callable[[], None]


def matrix_port(matrix: Any) -> MatrixPort:
    """The port of a switch matrix driver."""
    return MatrixPort(
        close=lambda channels: matrix.close(channels),
        open=lambda channels: matrix.open(channels),
        exclusive_close=lambda channels: matrix.exclusive_close(channels),
        open_all=lambda: matrix.open_all(),
        closed_channels=lambda: matrix.closed_channels(),
        force_open_all=lambda: matrix.shutdown(),
    )


class GuardedMatrix:
    """A switch matrix that only switches cold, and tells the guard what it closed."""

    def __init__(self, name: str, matrix: Any, guard: Guard, token: int = 0) -> None:
        self.name = name
        self._port = matrix if isinstance(matrix, MatrixPort) else matrix_port(matrix)
        self._guard = guard
        self._order = guard.order
        self._closed = guard.closed
        self._token = token

    def _keep_order(self) -> None:
        if self._order is not None:
            self._order(self._token)

    def close(self, channels: Sequence[str]) -> None:
        """Close crosspoints (``"1A01"``), keeping the others as they are."""
        guard = self._guard
        guard.check_switch({ch[-3:-2] for ch in channels}, "close", channels)
        if guard.array_limits:
            guard.check_reach(self._closed | set(channels), "close")
        if self._order is not None:
            self._order(self._token)
        self._port.close(channels)
        self._closed.update(channels)
        guard.reached()

    def open(self, channels: Sequence[str]) -> None:
        """Open crosspoints, keeping the others as they are."""
        self._guard.check_switch({ch[-3:-2] for ch in channels}, "open", channels)
        if self._order is not None:
            self._order(self._token)
        self._port.open(channels)
        self._closed.difference_update(channels)
        self._guard.reached()

    def exclusive_close(self, channels: Sequence[str]) -> None:
        """Close exactly these crosspoints, opening every other."""
        guard = self._guard
        guard.check_switch(ALL_ROWS, "exclusive close")
        if guard.array_limits:
            guard.check_reach(set(channels), "exclusive close")
        self._keep_order()
        self._port.exclusive_close(channels)
        self._closed.clear()
        self._closed.update(channels)
        guard.reached()

    def open_all(self) -> None:
        """Open every crosspoint."""
        self._guard.check_switch(ALL_ROWS, "open all")
        self._keep_order()
        self._port.open_all()
        self._closed.clear()
        self._guard.reached()

    def closed_channels(self) -> list[str]:
        """Ask the matrix which crosspoints are closed."""
        self._keep_order()
        return list(self._port.closed_channels())

    def force_open_all(self) -> None:
        """Open every relay at once, past any batch (safe ends, outputs off first)."""
        self._keep_order()
        self._port.force_open_all()
        self._closed.clear()
        self._guard.reached()
