"""The safety guard between procedures and drivers.

Procedures never hold a driver: they get guarded channels and a guarded
matrix from the rig. Every action is checked before anything is sent:

* a current limit is set before an output turns on;
* no level, pulse amplitude or bias exceeds the chip's ``max_voltage_v`` and
  no limit exceeds ``max_compliance_a``;
* relays switch only cold: no output wired to an affected matrix row may be
  live (on at a non-zero level). Outputs on at 0 V carry no current through
  the contacts, so the engine may keep sense channels on while it switches.

A refused action raises :class:`SafetyError` naming the rule and the
instrument; nothing reaches the instrument.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.station import Limits

log = logging.getLogger("labctl.safety")


class SafetyError(RuntimeError):
    """An action the guard refused; nothing was sent."""


@dataclass
class _ChannelState:
    limit_a: float | None = None
    level_v: float = 0.0
    on: bool = False

    @property
    def live(self) -> bool:
        return self.on and self.level_v != 0.0


class Guard:
    """Tracks what every output and relay is doing and refuses unsafe actions."""

    def __init__(self, limits: Limits, bus_of: dict[str, str],
                 order: Callable[[Any], None] | None = None) -> None:
        self.limits = limits
        self.bus_of = bus_of  # channel name -> matrix row it is wired to
        self.states = {name: _ChannelState() for name in bus_of}
        #: Called with an action's connection before it is sent, so that writes
        #: held for other connections go out first and the order is kept.
        self.order = order or (lambda link: None)

    def state(self, channel: str) -> _ChannelState:
        return self.states.setdefault(channel, _ChannelState())

    def check_limit(self, channel: str, limit_a: float) -> None:
        if not 0 < limit_a <= self.limits.max_compliance_a:
            self._refuse(
                "compliance",
                f"{channel}: current limit {limit_a:g} A is outside "
                f"(0, {self.limits.max_compliance_a:g}] A, the chip's max_compliance_a",
            )

    def check_level(self, channel: str, level_v: float, what: str = "level") -> None:
        if not np.isfinite(level_v) or abs(level_v) > self.limits.max_voltage_v:
            self._refuse(
                "max voltage",
                f"{channel}: {what} {level_v:g} V exceeds the chip's "
                f"max_voltage_v of {self.limits.max_voltage_v:g} V",
            )

    def check_enable(self, channel: str) -> None:
        if self.state(channel).limit_a is None:
            self._refuse(
                "limit before output",
                f"{channel}: output cannot turn on before its current limit is set",
            )

    def check_switch(self, rows: Iterable[str], action: str) -> None:
        rows = set(rows)
        live = [
            name
            for name, st in self.states.items()
            if st.live and self.bus_of.get(name) in rows
        ]
        if live:
            self._refuse(
                "no hot switching",
                f"matrix {action}: {', '.join(sorted(live))} live on row(s) "
                f"{', '.join(sorted(rows & {self.bus_of[n] for n in live}))}; "
                "set the level to 0 V or turn the output off first",
            )

    def _refuse(self, rule: str, message: str) -> None:
        log.warning("refused (%s): %s", rule, message)
        raise SafetyError(f"safety rule '{rule}': {message}")


class GuardedChannel:
    """A source-measure channel whose every action passes the guard first."""

    def __init__(self, name: str, channel: Any, guard: Guard, link: Any = None) -> None:
        self.name = name
        self._channel = channel
        self._guard = guard
        self._state = guard.state(name)
        self._link = link if link is not None else channel
        # A driver may offer lean senders for what hot loops do most.
        self._set_level = _lean(channel, "level_writer",
                                lambda level: setattr(channel, "source_voltage", level))
        self._set_output = _lean(channel, "output_writer",
                                 lambda on: setattr(channel, "output_enabled", on))
        self._get_current = _lean(channel, "current_getter",
                                  lambda: channel.measure_current())
        self._apply_pulses = _lean(channel, "pulse_writer",
                                   lambda *train: channel.apply_pulses(*train))

    @property
    def driver(self) -> Any:
        """The underlying driver channel, for read-only queries."""
        return self._channel

    @property
    def current_limit(self) -> float:
        return float(self._channel.current_limit)

    @current_limit.setter
    def current_limit(self, limit_a: float) -> None:
        self._guard.check_limit(self.name, limit_a)
        self._guard.order(self._link)
        self._channel.current_limit = limit_a
        self._guard.state(self.name).limit_a = limit_a

    @property
    def source_voltage(self) -> float:
        return self._guard.state(self.name).level_v

    @source_voltage.setter
    def source_voltage(self, level_v: float) -> None:
        self._guard.check_level(self.name, level_v)
        self._guard.order(self._link)
        self._set_level(level_v)
        self._state.level_v = float(level_v)

    @property
    def output_enabled(self) -> bool:
        return self._guard.state(self.name).on

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        if on:
            self._guard.check_enable(self.name)
        self._guard.order(self._link)
        self._set_output(bool(on))
        self._guard.state(self.name).on = bool(on)

    @property
    def nplc(self) -> float:
        return float(self._channel.nplc)

    @nplc.setter
    def nplc(self, value: float) -> None:
        self._guard.order(self._link)
        self._channel.nplc = value

    def measure_current(self) -> float:
        self._guard.order(self._link)
        return float(self._get_current())

    def sweep_voltage(self, levels_v: Sequence[float], settle_s: float) -> np.ndarray:
        levels = np.asarray(levels_v, dtype=float)
        if levels.size == 0:
            raise SafetyError(f"{self.name}: a sweep needs at least one level")
        self._guard.check_enable(self.name)
        self._guard.check_level(self.name, float(np.max(np.abs(levels))), "sweep level")
        self._guard.order(self._link)
        currents = self._channel.sweep_voltage(levels, settle_s)
        self._after_factory()
        return np.asarray(currents, dtype=float)

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> np.ndarray:
        self._guard.check_enable(self.name)
        self._guard.check_level(self.name, level_v, "pulse level")
        self._guard.check_level(self.name, bias_v, "pulse bias")
        self._guard.order(self._link)
        currents = self._channel.pulse_train(level_v, width_s, bias_v, off_s, count)
        self._after_factory()
        return np.asarray(currents, dtype=float)

    def apply_pulses(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> None:
        """Pulses as :meth:`pulse_train`, not read back (one message in a batch)."""
        self._guard.check_enable(self.name)
        self._guard.check_level(self.name, level_v, "pulse level")
        self._guard.check_level(self.name, bias_v, "pulse bias")
        self._guard.order(self._link)
        self._apply_pulses(level_v, width_s, bias_v, off_s, count)
        self._after_factory()

    def _after_factory(self) -> None:
        # The instrument's factory sweeps and pulse trains leave the output off.
        state = self._guard.state(self.name)
        state.on = False

    def force_off(self) -> None:
        """Turn the output off at once, past any batch, without checks (safe ends)."""
        self._guard.order(self._link)
        self._channel.turn_off()
        self._guard.state(self.name).on = False


def _lean(channel: Any, factory: str, fallback: Callable[..., Any]) -> Callable[..., Any]:
    make = getattr(channel, factory, None)
    return make() if callable(make) else fallback


class GuardedMatrix:
    """A switch matrix that only switches cold."""

    def __init__(self, name: str, matrix: Any, guard: Guard, link: Any = None) -> None:
        self.name = name
        self._matrix = matrix
        self._guard = guard
        self._link = link if link is not None else matrix

    @property
    def driver(self) -> Any:
        return self._matrix

    @staticmethod
    def _rows(channels: Iterable[str]) -> set[str]:
        return {ch[1] for ch in channels}

    def close(self, channels: Sequence[str]) -> None:
        self._guard.check_switch(self._rows(channels), "close")
        self._guard.order(self._link)
        self._matrix.close(channels)

    def open(self, channels: Sequence[str]) -> None:
        self._guard.check_switch(self._rows(channels), "open")
        self._guard.order(self._link)
        self._matrix.open(channels)

    def exclusive_close(self, channels: Sequence[str]) -> None:
        self._guard.check_switch(set("ABCDEFGH"), "exclusive close")
        self._guard.order(self._link)
        self._matrix.exclusive_close(channels)

    def open_all(self) -> None:
        self._guard.check_switch(set("ABCDEFGH"), "open all")
        self._guard.order(self._link)
        self._matrix.open_all()

    def closed_channels(self) -> list[str]:
        self._guard.order(self._link)
        return list(self._matrix.closed_channels())

    def force_open_all(self) -> None:
        """Open every relay at once, past any batch (safe ends, outputs off first)."""
        self._guard.order(self._link)
        self._matrix.shutdown()
