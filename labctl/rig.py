"""A station opened for a run: its instruments behind the safety guard.

The rig opens every instrument a station file names (directly on its VISA
resource, or as a TSP-Link node through its master's connection), puts the
guard in front of them, knows the wiring (which matrix crosspoint joins which
bus to which chip pin) and ends safe: :meth:`Rig.safe_shutdown` turns every
output off, checks it is off, and opens every relay, whatever happened before.
A connection lost on the way is opened again for the safe end.

The opened drivers, adapters and connections live in a :class:`_Hardware`
that only this module reaches: a procedure holding the rig sees guarded
channels, the guarded matrix and functions bound to the drivers, never a
driver itself (see docs/safety.md for what Python cannot prevent). While a
rig is open it holds a lock on every instrument connection it opened
(:mod:`labctl.lock`); a second rig on the same instruments is refused with a
message naming the run that holds them.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from pymeasure.adapters import VISAAdapter

from drivers.b2900 import KeysightB2900
from drivers.k707b import Keithley707B
from drivers.k2400 import Keithley2400
from drivers.k2450 import Keithley2450
from drivers.k2600 import Keithley2600, Keithley2600Channel, current_reader
from labctl.lock import InstrumentBusy, StationLock
from labctl.safety import Guard, GuardedChannel, GuardedMatrix, channel_port
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
        hardware = _Hardware(station)
        self._key = id(self)
        _HARDWARE[self._key] = hardware
        weakref.finalize(self, _release, self._key)
        bus_of = {end: row for row, end in station.wiring.buses.items() if end != GROUND}
        lines_at = {place: parse_pin(pin) for pin, place in station.pin_channels().items()}
        # A fresh array is formed at levels its cells' mode will not take.
        modes = (
            {name: spec.mode for name, spec in station.chip_spec.arrays.items()
             if spec.formed}
            if station.chip_spec else {}
        )
        self.guard = Guard(station.limits, bus_of, hardware.order_keeper(), lines_at,
                           modes)
        self.channels = {
            name: GuardedChannel(name, channel_port(hardware.channel(name)), self.guard,
                                 hardware.token_of(name.partition(".")[0]))
            for name in bus_of
        }
        matrix_name = station.wiring.matrix
        self.matrix = GuardedMatrix(matrix_name, hardware.drivers[matrix_name], self.guard,
                                    hardware.token_of(matrix_name))
        self._batch = hardware.batch_context()
        self._pins = station.pin_channels()
        self._lines: dict[str, Any] = {}
        self._readers: dict[tuple[str, ...], Readings] = {}
        #: Masters the write-verify program was defined on.
        self._onboard_loaded: set[str] = set()

    def _hardware(self) -> _Hardware:
        hardware = _HARDWARE.get(self._key)
        if hardware is None:
            raise InstrumentError(f"{self.station.name}: the rig is closed")
        return hardware

    def identities(self) -> dict[str, dict[str, str]]:
        """Each instrument's identity; the first that does not answer raises."""
        return self._hardware().identities()

    def note_run(self, run_id: int) -> None:
        """Name the run that holds this rig's instruments in their locks."""
        self._hardware().lock.note_run(run_id)

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
        """Send the settings made inside as few bus messages as possible.

        If the block raises, the writes it held and did not send are dropped.
        """
        return self._batch

    def measure_currents(self, channels: Sequence[GuardedChannel]) -> np.ndarray:
        """Read several channels at one instant: one query per TSP connection,
        one per channel of any other instrument."""
        return self.readings(channels)()

    def readings(self, channels: Sequence[GuardedChannel]) -> Readings:
        """A :class:`Readings` of these channels, built once and kept."""
        key = tuple(ch.name for ch in channels)
        if key not in self._readers:
            hardware = self._hardware()
            self._readers[key] = Readings(channels, [hardware.channel(k) for k in key])
        return self._readers[key]

    def predicted_bench_s(self) -> float | None:
        """The simulated bench's clock: what the run would take on real instruments."""
        lib = resolve_library(self.station, next(iter(self.station.instruments)))
        if not lib.endswith("@labsim"):
            return None
        from simulator.bench import bench_for

        return float(bench_for(lib.rpartition("@")[0]).now_s)

    # Programs run on the instrument

    def write_verify_on_instrument(
        self, array: str, cells: Sequence[Any], config: Any
    ) -> list[Any] | None:
        """Program cells by write-verify in one message, run on the instrument.

        ``cells`` are :class:`labctl.onboard.CellRequest`; ``config`` a
        :class:`labctl.engine.writeverify.WriteVerifyConfig`. The station's
        drive, bias and first sense channels must be 2600B channels and its
        matrix a 707B/708B, all on one TSP-Link network, with the array's
        lines on the drive, bias and sense buses only; otherwise, or under a
        per-cell budget, this returns None and nothing is sent. The guard
        checks every level the program may source before it is sent
        (:meth:`labctl.safety.Guard.check_program`). Returns one
        :class:`labctl.onboard.CellOutcome` per cell.
        """
        from labctl import onboard

        plan = self._onboard_plan()
        if plan is None or self.guard.budgeted or not cells:
            return None
        master, objects, (drive, bias, sense) = plan
        lines = self.lines(array)
        code_of = {lines.code(self.bus_of(ch)): k + 1
                   for k, ch in enumerate((drive, bias, sense))}
        now = [code_of.get(code, -1) if code >= 0 else 0 for code in lines.codes()]
        if -1 in now:
            return None  # a line on another bus: let the bus path move it
        order = [lines.code(self.bus_of(ch)) for ch in (drive, bias, sense)]
        crosspoints = lines.crosspoints(order)
        reset_v, set_v = config.reset_voltage_v, config.set_voltage_v
        self.guard.check_program(
            {drive: (set_v, reset_v, config.read_voltage_v, 0.0),
             bias: (set_v / 2, reset_v / 2, 0.0)},
            [array], switched=(drive, bias),
        )
        settings = (
            config.tolerance, config.verify_margin, set_v, reset_v, config.width_s,
            config.gap_s, config.read_voltage_v, config.max_rounds, config.max_train,
            config.g_min_s, config.g_max_s, config.set_threshold_v,
            config.reset_threshold_v, config.set_exponent, config.reset_exponent,
            config.set_rate_per_s * config.width_s,
            config.reset_rate_per_s * config.width_s,
        )
        call = onboard.call_text(objects, crosspoints, now, lines.n_rows, cells,
                                 settings)
        hardware = self._hardware()
        driver = hardware.drivers[master]
        if self.guard.order is not None:
            self.guard.order(hardware.token_of(master))
        if master not in self._onboard_loaded:
            driver.write(onboard.program_text())
            self._onboard_loaded.add(master)
        reply = driver.ask(call)
        outcomes, final = onboard.parse_reply(reply, len(cells))
        # What the program left: the drive and bias at 0 V, the drive on if
        # it read a cell, the lines on the buses it reports.
        for channel in (drive, bias):
            self.guard.state(channel).level_v = 0.0
        if any(c.reading_s is None for c in cells) or any(o.rounds for o in outcomes):
            self.guard.state(drive).on = True  # a verify read turned it on
        mine = {xp for xps in crosspoints for xp in xps}
        self.guard.closed.difference_update(mine)
        self.guard.closed.update(crosspoints[line][bus - 1]
                                 for line, bus in enumerate(final) if bus)
        self.guard.reached()
        back = {k + 1: code for k, code in enumerate(order)}
        lines.switched_elsewhere([back.get(bus, -1) for bus in final])
        return outcomes

    def _onboard_plan(self) -> tuple[str, list[str], tuple[str, str, str]] | None:
        """The master and the TSP objects of an instrument-run program, or None."""
        station = self.station
        roles = station.roles
        channels = (roles.drive, roles.bias, roles.sense[0])
        names = [ch.partition(".")[0] for ch in channels] + [station.wiring.matrix]
        specs = station.instruments
        if any(specs[n].model not in TSP_SMU_MODELS for n in names[:3]):
            return None
        if specs[names[3]].model not in MATRIX_MODELS:
            return None
        hardware = self._hardware()
        masters = {hardware.master_of(n) for n in names}
        if len(masters) != 1:
            return None
        master = masters.pop()
        objects = [hardware.channel(ch).tsp_object for ch in channels]
        objects.append(f"{hardware.drivers[names[3]].node_prefix}channel")
        return master, objects, channels

    # Ending

    def safe_shutdown(self, reason: str | None = None) -> list[str]:
        """Outputs off (checked), then every relay open. Never raises.

        A connection that fails on the way is opened again once and the step
        repeated. ``reason`` names the fault that ended the run, if any: the
        safe end is then logged at WARNING, an orderly one at INFO. Returns
        the problems met, each logged at WARNING.
        """
        problems: list[str] = []
        reopened: set[str] = set()
        self._onboard_loaded.clear()  # an instrument may have lost it
        for name, channel in self.channels.items():
            instrument = name.partition(".")[0]
            try:
                self._again(channel.force_off, instrument, reopened)
            except Exception as exc:  # noqa: BLE001 - a safe end must go on
                problems.append(f"{name}: could not turn the output off: {_reason(exc)}")
                continue
            try:
                if self._again(channel.output_reported, instrument, reopened):
                    problems.append(f"{name}: output still reports on after turning it off")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{name}: output turned off but not confirmed: "
                                f"{_reason(exc)}")
        matrix = self.matrix
        try:
            self._again(matrix.force_open_all, matrix.name, reopened)
            for lines in self._lines.values():
                lines.forget()
            left = self._again(matrix.closed_channels, matrix.name, reopened)
            if left:
                problems.append(f"{matrix.name}: relays still closed: {';'.join(left)}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{matrix.name}: could not open the relays: {_reason(exc)}")
        for problem in problems:
            log.warning("safe end: %s", problem)
        if not problems:
            level = logging.WARNING if reason else logging.INFO
            log.log(level, "safe end%s: outputs off and relays open on %s",
                    f" after {reason}" if reason else "", self.station.name)
        return problems

    def _again(self, step: Callable[[], Any], instrument: str, reopened: set[str]) -> Any:
        """Do a step of the safe end; if it fails, open the instrument's
        connection again (once per safe end) and repeat it."""
        try:
            return step()
        except Exception as exc:
            hardware = self._hardware()
            master = hardware.master_of(instrument)
            if master in reopened:
                raise
            reopened.add(master)
            log.warning("safe end: %s failed (%s); opening %s again", instrument,
                        _reason(exc), master)
            hardware.reconnect(master)
            return step()

    def close(self) -> None:
        """End safe, close every connection and release the instruments' locks."""
        if self._key not in _HARDWARE:
            return
        try:
            self.safe_shutdown()
        finally:
            _release(self._key)


class _Hardware:
    """The opened drivers, adapters and connections of a station, and its lock.

    Only :mod:`labctl.rig` reaches it: the rig finds it by key in a module
    registry, and hands out functions bound to its drivers, never a driver.
    """

    def __init__(self, station: Station) -> None:
        self.station = station
        self.drivers: dict[str, Any] = {}
        self.adapters: dict[str, Any] = {}
        specs = station.instruments
        self.lock = StationLock(station.name, {
            name: (spec.resource, resolve_library(station, name))
            for name, spec in specs.items() if spec.resource is not None
        })
        self.lock.acquire()
        try:
            self._open_instruments()
        except BaseException:
            self.close()
            raise

    def _open_instruments(self) -> None:
        specs = self.station.instruments
        for name, spec in specs.items():
            if spec.via is not None:
                continue
            adapter = self.adapters[name] = self._open_adapter(name)
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

    def _open_adapter(self, name: str) -> Any:
        spec = self.station.instruments[name]
        library = resolve_library(self.station, name)
        try:
            return VISAAdapter(
                spec.resource,
                visa_library=library,
                read_termination="\n",
                write_termination="\n",
                timeout=VISA_TIMEOUT_MS,
            )
        except Exception as exc:
            raise InstrumentError(
                f"{name} ({spec.resource} via {library}): cannot open: {_reason(exc)}"
            ) from None

    def master_of(self, instrument: str) -> str:
        """The instrument whose connection reaches ``instrument``."""
        return self.station.instruments[instrument].via or instrument

    def links(self) -> list[Any]:
        """One entry per TSP connection: a TSP-Link group shares its master's."""
        return list({id(d.connection): d.connection for d in self.drivers.values()
                     if hasattr(d, "connection")}.values())

    def token_of(self, instrument: str) -> int:
        """The connection an instrument talks through, as the guard knows it."""
        driver = self.drivers[instrument]
        return id(getattr(driver, "connection", driver))

    def channel(self, name: str) -> Any:
        inst, _, ch = name.partition(".")
        return getattr(self.drivers[inst], ch)

    def order_keeper(self) -> Callable[[int], None] | None:
        """The guard's ``order``: before an action on one connection, send
        what the other connections hold.

        Inside :meth:`Rig.batch` each TSP connection holds its writes; an
        action on another instrument must not overtake them (a level raised
        before the relays it follows have switched would switch them hot).
        """
        flushes = [(id(conn), conn.flush) for conn in self.links()]
        tokens = {self.token_of(name) for name in self.drivers}
        if len(flushes) == 1 and tokens == {flushes[0][0]}:
            return None  # one connection: nothing can overtake

        def keep_order(token: int) -> None:
            for conn_token, flush in flushes:
                if conn_token != token:
                    flush()

        return keep_order

    def batch_context(self) -> Any:
        """The context of :meth:`Rig.batch`, made once: entering it opens a
        batch on every TSP connection, leaving it sends or drops what they
        held. The connections' batches stay in its closures."""
        links = self.links()
        if len(links) == 1:
            make: Callable[[], Any] = links[0].batch
        else:
            make = lambda: _all_batches(links)  # noqa: E731
        held: list[Any] = []

        def enter(_context: Any) -> None:
            inner = make()
            inner.__enter__()
            held.append(inner)

        def leave(_context: Any, kind: Any, error: Any, trace: Any) -> None:
            held.pop().__exit__(kind, error, trace)

        batch = type("RigBatch", (), {"__slots__": (), "__enter__": enter,
                                      "__exit__": leave})
        return batch()

    def identities(self) -> dict[str, dict[str, str]]:
        out = {}
        for name, drv in self.drivers.items():
            try:
                out[name] = drv.identity()
            except Exception as exc:
                raise InstrumentError(f"{name}: no identity: {_reason(exc)}") from None
        return out

    def reconnect(self, master: str) -> None:
        """Open a master's VISA resource again and put every driver on it."""
        old = self.adapters.pop(master, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        adapter = self.adapters[master] = self._open_adapter(master)
        # A device clear empties the instrument's input and output queues:
        # replies left from before the loss must not answer later queries.
        with contextlib.suppress(Exception):
            adapter.connection.clear()
        for name, driver in self.drivers.items():
            if self.master_of(name) == master:
                driver.adapter = adapter
                connection = getattr(driver, "connection", None)
                if connection is not None:
                    connection.adapter = adapter

    def close(self) -> None:
        for adapter in self.adapters.values():
            with contextlib.suppress(Exception):
                adapter.close()
        self.adapters.clear()
        self.lock.release()


_HARDWARE: dict[int, _Hardware] = {}
"""The hardware of every open rig, by the rig's key."""


def _release(key: int) -> None:
    hardware = _HARDWARE.pop(key, None)
    if hardware is not None:
        hardware.close()


@contextlib.contextmanager
def _all_batches(links: Sequence[Any]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for conn in links:
            stack.enter_context(conn.batch())
        yield


class Readings:
    """Current readings of a fixed set of channels, taken now or queued.

    TSP channels are read with one query per connection. :meth:`queue` adds
    a reading to the pending batch and :meth:`collect` returns the queued
    readings, so several readings with settings between them take one bus
    message; a channel of another instrument is read at once when queued.
    """

    def __init__(self, channels: Sequence[GuardedChannel], drivers: Sequence[Any]) -> None:
        groups: dict[int, list[int]] = {}
        self._single: list[tuple[int, GuardedChannel]] = []
        for k, (ch, driver) in enumerate(zip(channels, drivers, strict=True)):
            if isinstance(driver, Keithley2600Channel):
                groups.setdefault(id(driver.connection), []).append(k)
            else:
                self._single.append((k, ch))
        self._batched = [
            (ks, *_reader_calls(current_reader([drivers[k] for k in ks])))
            for ks in groups.values()
        ]
        self._count = len(channels)
        self._held: list[list[float]] = []

    def __call__(self) -> np.ndarray:
        out = np.empty(self._count)
        for ks, read, _, _ in self._batched:
            out[ks] = read()
        for k, ch in self._single:
            out[k] = ch.measure_current()
        return out

    def queue(self) -> None:
        for _, _, queue, _ in self._batched:
            queue()
        if self._single:
            self._held.append([ch.measure_current() for _, ch in self._single])

    def collect(self, readings: int) -> np.ndarray:
        """The last ``readings`` queued readings, (readings, channels)."""
        out = np.empty((readings, self._count))
        for ks, _, _, collect in self._batched:
            out[:, ks] = collect(readings)
        if self._single:
            held, self._held = self._held[-readings:], []
            out[:, [k for k, _ in self._single]] = np.array(held)
        return out


def _reader_calls(reader: Any) -> tuple[Callable[[], Any], Callable[[], None],
                                        Callable[[int], Any]]:
    """A current reader's read, queue and collect, in closures."""
    return (lambda: reader(), lambda: reader.queue(),
            lambda readings: reader.collect(readings))


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


__all__ = ["InstrumentBusy", "InstrumentError", "Readings", "Rig", "RunAborted"]
