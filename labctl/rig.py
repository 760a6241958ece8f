"""A station opened for a run: its instruments behind the safety guard.

The rig opens every instrument a station file names (directly on its VISA
resource, or as a TSP-Link node through its master's connection), puts the
guard in front of them, knows the wiring (which matrix crosspoint joins which
bus to which chip pin) and ends safe: :meth:`Rig.safe_shutdown` turns every
output off, checks it is off, and opens every relay, whatever happened before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pymeasure.adapters import VISAAdapter

from drivers.b2900 import KeysightB2900
from drivers.k707b import Keithley707B
from drivers.k2400 import Keithley2400
from drivers.k2450 import Keithley2450
from drivers.k2600 import Keithley2600, Keithley2600Channel, current_reader
from labctl.safety import Guard, GuardedChannel, GuardedMatrix
from labctl.station import (
    GROUND,
    MATRIX_MODELS,
    TSP_SMU_MODELS,
    Station,
    parse_pin,
    resolve_library,
)

log = logging.getLogger("labctl.run")

VISA_TIMEOUT_MS = 10_000


class RunAborted(Exception):
    """The run was asked to stop (Ctrl-C, SIGTERM) and stops here."""


class InstrumentError(RuntimeError):
    """An instrument that cannot be opened or does not answer, in one line."""


class Rig:
    """The instruments, wiring and guard of one station, opened."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.limits = station.limits
        #: Why the run should stop at its next point (set by a signal), or None.
        self.stop_requested: str | None = None
        self.drivers: dict[str, Any] = {}
        self._adapters: list[Any] = []
        try:
            self._open_instruments()
        except BaseException:
            self._close_adapters()
            raise
        # One entry per TSP connection: a TSP-Link group shares its master's.
        self._links = list({id(d.connection): d.connection for d in self.drivers.values()
                            if hasattr(d, "connection")}.values())
        bus_of = {end: row for row, end in station.wiring.buses.items() if end != GROUND}
        self.guard = Guard(station.limits, bus_of, self._keep_order)
        self.channels = {}
        for name in bus_of:
            channel = self._driver_channel(name)
            self.channels[name] = GuardedChannel(
                name, channel, self.guard, getattr(channel, "connection", channel))
        matrix_name = station.wiring.matrix
        matrix = self.drivers[matrix_name]
        self.matrix = GuardedMatrix(matrix_name, matrix, self.guard,
                                    getattr(matrix, "connection", matrix))
        self._pins = station.pin_channels()
        self._lines: dict[str, Any] = {}
        self._readers: dict[tuple[str, ...], Readings] = {}

    # Opening

    def _open_instruments(self) -> None:
        specs = self.station.instruments
        masters = [n for n, s in specs.items() if s.via is None]
        for name in masters:
            spec = specs[name]
            library = resolve_library(self.station, name)
            try:
                adapter = VISAAdapter(
                    spec.resource,
                    visa_library=library,
                    read_termination="\n",
                    write_termination="\n",
                    timeout=VISA_TIMEOUT_MS,
                )
            except Exception as exc:
                raise InstrumentError(
                    f"{name} ({spec.resource} via {library}): cannot open: "
                    f"{_reason(exc)}"
                ) from None
            self._adapters.append(adapter)
            tsp = {"node": spec.node} if _is_tsp(spec.model) else {}
            self.drivers[name] = _driver_class(spec.model)(
                adapter, name=name, model=spec.model, **tsp
            )
        for name, spec in specs.items():
            if spec.via is None:
                continue
            master = self.drivers[spec.via]
            self.drivers[name] = _driver_class(spec.model)(
                master.adapter,
                name=name,
                model=spec.model,
                node=spec.node,
                connection=master.connection,
            )
        log.info("opened %d instruments of station %s", len(self.drivers), self.station.name)

    def _driver_channel(self, channel: str) -> Any:
        inst, _, ch = channel.partition(".")
        return getattr(self.drivers[inst], ch)

    def identities(self) -> dict[str, dict[str, str]]:
        """Each instrument's identity; the first that does not answer raises."""
        out = {}
        for name, drv in self.drivers.items():
            try:
                out[name] = drv.identity()
            except Exception as exc:
                raise InstrumentError(f"{name}: no identity: {_reason(exc)}") from None
        return out

    def _keep_order(self, link: Any) -> None:
        """Before an action on ``link``, send what other connections hold.

        Inside :meth:`batch` each TSP connection holds its writes; an action on
        another instrument must not overtake them (a level raised before the
        relays it follows have switched would switch them hot).
        """
        for conn in self._links:
            if conn is not link:
                conn.flush()

    def check_stop(self) -> None:
        """Raise :class:`RunAborted` if the run was asked to stop."""
        if self.stop_requested is not None:
            raise RunAborted(self.stop_requested)

    # Wiring

    def smu(self, channel: str) -> GuardedChannel:
        try:
            return self.channels[channel]
        except KeyError:
            raise KeyError(f"{channel} is not an SMU channel wired on this station") from None

    def bus_of(self, channel: str) -> str:
        return self.station.bus_of(channel)

    @property
    def ground_bus(self) -> str:
        return self.station.ground_bus

    def crosspoint(self, pin: str, bus: str) -> str:
        """The matrix channel that joins ``bus`` (a row letter) to ``pin``."""
        try:
            slot, column = self._pins[pin]
        except KeyError:
            raise KeyError(f"pin {pin} is not wired to the matrix") from None
        return f"{slot}{bus}{column:02d}"

    def array_pins(self, array: str) -> tuple[list[str], list[str]]:
        """The wired row pins and column pins of an array, in line order."""
        rows: dict[int, str] = {}
        cols: dict[int, str] = {}
        for pin in self._pins:
            name, kind, index = parse_pin(pin)
            if name == array:
                (rows if kind == "row" else cols)[index] = pin
        if not rows or not cols:
            raise KeyError(f"array {array} has no wired rows or columns on this station")
        return [rows[i] for i in sorted(rows)], [cols[j] for j in sorted(cols)]

    def lines(self, array: str) -> Any:
        """The one record of which bus each wired line of ``array`` is on."""
        from labctl.engine.lines import ArrayLines

        if array not in self._lines:
            self._lines[array] = ArrayLines(self, array)
        return self._lines[array]

    def array_shape(self, array: str) -> tuple[int, int]:
        chip = self.station.chip_spec
        assert chip is not None
        spec = chip.arrays[array]
        return spec.rows, spec.cols

    def check_wiring(self, level_v: float = 0.05, floor_a: float = 1e-9) -> list[str]:
        """Show that every bus reaches the channel the station file says.

        For each bus, one cell of the first wired array is put between the
        drive channel and that bus, the drive sources ``level_v`` (far below
        switching), and the channel on the bus must see the cell's current
        (the drive channel's own bus is checked against the first sense
        channel, the ground bus by the drive channel's current). Returns the
        problems found; relays and outputs end as they began: open and off.
        """
        roles = self.station.roles
        chip = self.station.chip_spec
        array = next(iter(chip.arrays)) if chip else None
        if array is None:
            return ["the station's chip has no arrays"]
        lines = self.lines(array)
        drive = self.smu(roles.drive)
        drive_bus = self.bus_of(roles.drive)
        problems = []
        for bus, end in sorted(self.station.wiring.buses.items()):
            if end == roles.drive:  # seen by the first sense channel
                meter = self.smu(roles.sense[0])
                col_bus = self.bus_of(roles.sense[0])
            else:  # the channel on this bus, or the drive for the ground bus
                meter = drive if end == GROUND else self.smu(end)
                col_bus = bus
            for ch in {drive, meter}:
                ch.current_limit = 1e-3
                ch.source_voltage = 0.0
                ch.output_enabled = True
            lines.select(0, 0, drive_bus, col_bus, None, None)
            drive.source_voltage = level_v
            current = abs(meter.measure_current())
            drive.source_voltage = 0.0
            lines.clear()
            if current < floor_a:
                problems.append(
                    f"bus {bus} ({end}): {meter.name} saw {current:.3g} A through "
                    f"cell (0, 0) of {array} at {level_v} V; check that cable"
                )
        self.safe_shutdown()
        return problems

    # Traffic

    def batch(self) -> Any:
        """Send the settings made inside as few bus messages as possible."""
        if len(self._links) == 1:
            return self._links[0].batch()
        return self._batch_all()

    @contextlib.contextmanager
    def _batch_all(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for conn in self._links:
                stack.enter_context(conn.batch())
            yield

    def measure_currents(self, channels: Sequence[GuardedChannel]) -> np.ndarray:
        """Read several channels at one instant: one query per TSP connection,
        one per channel of any other instrument."""
        return self.readings(channels)()

    def readings(self, channels: Sequence[GuardedChannel]) -> Readings:
        """A :class:`Readings` of these channels, built once and kept."""
        key = tuple(ch.name for ch in channels)
        if key not in self._readers:
            self._readers[key] = Readings(channels)
        return self._readers[key]

    def predicted_bench_s(self) -> float | None:
        """The simulated bench's clock: what the run would take on real instruments."""
        lib = resolve_library(self.station, next(iter(self.station.instruments)))
        if not lib.endswith("@labsim"):
            return None
        from simulator.bench import bench_for

        return float(bench_for(lib.rpartition("@")[0]).now_s)

    # Ending

    def safe_shutdown(self, reason: str | None = None) -> list[str]:
        """Outputs off (checked), then every relay open. Never raises.

        ``reason`` names the fault that ended the run, if any: the safe end is
        then logged at WARNING, an orderly one at INFO. Returns the problems
        met, each logged at WARNING.
        """
        problems: list[str] = []
        for name, channel in self.channels.items():
            try:
                channel.force_off()
                if channel.driver.output_enabled:
                    problems.append(f"{name}: output still reports on after turning it off")
            except Exception as exc:  # noqa: BLE001 - a safe end must go on
                problems.append(f"{name}: could not turn the output off: {exc}")
        try:
            self.matrix.force_open_all()
            for lines in self._lines.values():
                lines.forget()
            left = self.matrix.closed_channels()
            if left:
                problems.append(f"{self.matrix.name}: relays still closed: {';'.join(left)}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{self.matrix.name}: could not open the relays: {exc}")
        for problem in problems:
            log.warning("safe end: %s", problem)
        if not problems:
            level = logging.WARNING if reason else logging.INFO
            log.log(level, "safe end%s: outputs off and relays open on %s",
                    f" after {reason}" if reason else "", self.station.name)
        return problems

    def close(self) -> None:
        self.safe_shutdown()
        self._close_adapters()

    def _close_adapters(self) -> None:
        for adapter in self._adapters:
            with contextlib.suppress(Exception):
                adapter.close()
        self._adapters.clear()


class Readings:
    """Current readings of a fixed set of channels, taken now or queued.

    TSP channels are read with one query per connection. :meth:`queue` adds
    a reading to the pending batch and :meth:`collect` returns the queued
    readings, so several readings with settings between them take one bus
    message; a channel of another instrument is read at once when queued.
    """

    def __init__(self, channels: Sequence[GuardedChannel]) -> None:
        groups: dict[int, list[int]] = {}
        self._single: list[tuple[int, GuardedChannel]] = []
        for k, ch in enumerate(channels):
            if isinstance(ch.driver, Keithley2600Channel):
                groups.setdefault(id(ch.driver.connection), []).append(k)
            else:
                self._single.append((k, ch))
        self._batched = [
            (ks, current_reader([channels[k].driver for k in ks])) for ks in groups.values()
        ]
        self._count = len(channels)
        self._held: list[list[float]] = []

    def __call__(self) -> np.ndarray:
        out = np.empty(self._count)
        for ks, reader in self._batched:
            out[ks] = reader()
        for k, ch in self._single:
            out[k] = ch.measure_current()
        return out

    def queue(self) -> None:
        for _, reader in self._batched:
            reader.queue()
        if self._single:
            self._held.append([ch.measure_current() for _, ch in self._single])

    def collect(self, readings: int) -> np.ndarray:
        """The last ``readings`` queued readings, (readings, channels)."""
        out = np.empty((readings, self._count))
        for ks, reader in self._batched:
            out[:, ks] = reader.collect(readings)
        if self._single:
            held, self._held = self._held[-readings:], []
            out[:, [k for k, _ in self._single]] = np.array(held)
        return out


def _reason(exc: Exception) -> str:
    text = getattr(exc, "description", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _is_tsp(model: str) -> bool:
    return model in TSP_SMU_MODELS or model in MATRIX_MODELS


def _driver_class(model: str) -> type:
    if model in MATRIX_MODELS:
        return Keithley707B
    if model in TSP_SMU_MODELS:
        return Keithley2600
    return {"2450": Keithley2450, "2400": Keithley2400}.get(model, KeysightB2900)
