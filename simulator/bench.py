"""The simulated bench: one chip, its wiring and every simulated instrument.

A :class:`Bench` is built from a bench file (``data/benches/*.yaml``). It
holds the chip (one :class:`~simulator.device.CellArray` per array of the
chip file), the wiring of the station file (SMU channels and ground on the
switch matrix's rows, chip pins on its columns), one simulated instrument per
station instrument, and the virtual clock :attr:`Bench.now_s`.

The circuit follows the instruments' state. A closed crosspoint
``{slot}{row}{col:02d}`` joins bus ``row`` to the chip pin on ``(slot, col)``;
lines and buses tied together form nets. A net whose SMU channel has its
output on is driven at the channel's level (a voltage, or a current in the
current-source function or in compliance), a net on the ``ground`` bus is at
0 V, and any other net floats. An SMU whose output is off is an open circuit
(high impedance) here: it neither drives nor loads its net, and reads the
net's voltage. Two sources on one net (two channels, or a channel and ground)
are a short: both report compliance and the bench logs a warning.

Time passes only when an instrument charges it (:meth:`Bench.advance`).
While a source is on, the cells evolve under the noise-free voltages the
sources and relays put across them; the evolution is applied lazily, in one
step per unchanged configuration, just before the configuration changes or a
measurement needs the cells' state. Before it uses the cells the bench ages
them to its clock (retention, volatile decay), and it notes every voltage it
holds across them for their charge and energy.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labctl.station import (
    GROUND,
    ConfigError,
    Station,
    load_station,
    parse_pin,
    read_yaml,
)
from simulator.circuit import cell_voltages, solve, solve_lines
from simulator.device import (
    ANALOG,
    MODES,
    SINH,
    CellArray,
    DevicePreset,
    Switching,
    current_per_siemens,
)
from simulator.exposure import FOLD_AT, Exposure
from simulator.faults import Faults

if TYPE_CHECKING:
    from simulator.instruments.k707b import K707B
    from simulator.tsp import TspInstrument

log = logging.getLogger("simulator.bench")

BENCH_KEYS = (
    "station", "seed", "device", "stuck_fraction", "timing", "faults", "formed",
)  # fmt: skip
"""The keys a bench file may hold."""

COMPLIANCE_ROUNDS = 4
"""Solves at most per reading while sources enter or leave compliance."""

NEWTON_ROUNDS = 40
"""Newton steps at most for cells beyond their ohmic region in a nodal solve."""

NEWTON_TOLERANCE_V = 1e-9
"""Net voltage change below which a Newton solve has converged, V."""

NEWTON_STEP_V = 0.25
"""Largest change of a net voltage in one Newton step, V."""

NET_CACHE_SIZE = 256
"""Relay patterns whose net structure is kept."""

EVENT_LIMIT = 100_000
"""Level events kept in :attr:`Bench.events` (the oldest are dropped)."""

READ_NOISE_BOUND = 40.0
"""Standard deviations that no draw of the read noise reaches.

numpy's normal generator, fed 53-bit uniforms, never returns more than about
13.7 in magnitude; a pulse train takes its fast path only when even a reading
this many standard deviations off keeps every source inside its limit.
"""

_NOISE_BLOCK = 4096
_NO_CELLS = np.empty(0, dtype=np.intp)
_LIMIT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Timing:
    """Durations the simulated instruments charge to the bench clock.

    Figures marked unverified are plausible values, not taken from a manual;
    a bench file may replace any of them under ``timing:``.

    Attributes
    ----------
    line_frequency_hz : float
        Power line frequency of every instrument after reset, Hz; one NPLC
        lasts ``1 / line_frequency_hz``.
    measure_overhead_s : float
        Time an SMU spends per reading besides integration, s (unverified).
    relay_operate_s : float
        Operate (settling) time of a 7174A relay switching phase, s
        (unverified).
    bus_latency_s : float
        Time one message takes over GPIB, and over any interface without a
        figure of its own, charged by the transport, s (unverified).
    usb_latency_s : float
        Time one message takes over USB (a ``USB`` resource), s (unverified).
    lan_latency_s : float
        Time one message takes over LAN (a ``TCPIP`` resource), s
        (unverified).
    autorange_s : float
        Time a reading loses each time the measure autorange of a SCPI SMU
        changes range, s (unverified; 0 unless a bench file sets it).
    """

    line_frequency_hz: float = 60.0
    measure_overhead_s: float = 1.0e-4
    relay_operate_s: float = 3.0e-3
    bus_latency_s: float = 1.0e-3
    usb_latency_s: float = 5.0e-4
    lan_latency_s: float = 3.0e-4
    autorange_s: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field.name}: {value!r} is not a number")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{field.name}: {value} must be a finite value >= 0")
            object.__setattr__(self, field.name, float(value))
        if self.line_frequency_hz not in (50.0, 60.0):
            raise ValueError(
                f"line_frequency_hz: {self.line_frequency_hz} must be 50 or 60"
            )

    def message_latency_s(self, interface: str) -> float:
        """The time one message takes over an interface, s.

        Parameters
        ----------
        interface : str
            The interface of a VISA resource string, ``"GPIB"``, ``"USB"``,
            ``"TCPIP"`` (as in ``TCPIP0::...``); any other takes the GPIB
            figure.
        """
        if interface == "USB":
            return self.usb_latency_s
        if interface == "TCPIP":
            return self.lan_latency_s
        return self.bus_latency_s


class SourceState:
    """What one SMU channel puts on its bus.

    Attributes
    ----------
    channel : str
        ``"<instrument>.<smua|smub>"``.
    output : bool
        Whether the output is on.
    volts : bool
        True for the voltage-source function, False for current source.
    level_v, level_a : float
        Programmed voltage (V) and current (A) levels.
    limit_v, limit_a : float
        Voltage (V) and current (A) limits (compliance).
    """

    __slots__ = (
        "channel",
        "output",
        "volts",
        "level_v",
        "level_a",
        "limit_v",
        "limit_a",
    )

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.output = False
        self.volts = True
        self.level_v = 0.0
        self.level_a = 0.0
        self.limit_v = 20.0
        self.limit_a = 0.1

    @property
    def level(self) -> float:
        """The programmed level of the present function, V or A."""
        return self.level_v if self.volts else self.level_a

    def at_level_v(self, level_v: float) -> SourceState:
        """A copy of this state with another voltage level."""
        copy = SourceState(self.channel)
        for name in self.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.level_v = level_v
        return copy


class _Nets:
    """Net structure of one relay pattern."""

    __slots__ = ("n_nets", "lines", "channel_net", "ground_net", "_pairs", "_on_net")

    def __init__(
        self,
        n_nets: int,
        lines: list[tuple[np.ndarray, np.ndarray]],
        channel_net: dict[str, int],
        ground_net: int,
    ) -> None:
        self.n_nets = n_nets
        self.lines = lines
        self.channel_net = channel_net
        self.ground_net = ground_net
        self._pairs: list[_CellPairs] | None = None
        self._on_net: dict[int, list[_NetCells]] = {}

    def pairs(self) -> list[_CellPairs]:
        """Per array, its cells grouped by the nets of their row and column."""
        if self._pairs is None:
            self._pairs = [
                _CellPairs(rows, cols, self.n_nets) for rows, cols in self.lines
            ]
        return self._pairs

    def on_net(self, net: int) -> list[_NetCells]:
        """Per array, the cells that carry a net's current."""
        found = self._on_net.get(net)
        if found is None:
            found = self._on_net[net] = [
                _NetCells(pairs, net) for pairs in self.pairs()
            ]
        return found


class _NetCells:
    """The cells of one array that carry a net's current.

    A cell whose row and column are both on the net carries nothing and is
    left out.

    Attributes
    ----------
    cells : numpy.ndarray of int
        Their flat indices, group after group.
    groups : list of (int, int)
        The (row net, column net) of each group, in that order.
    sizes : list of int
        The number of cells of each group.
    position : dict of int to int
        Where each cell is in ``cells``.
    """

    __slots__ = ("net", "cells", "groups", "sizes", "position")

    def __init__(self, pairs: _CellPairs, net: int) -> None:
        self.net = net
        self.groups = [pair for pair in pairs.present if net in pair]
        chosen = [pairs.cells(*pair) for pair in self.groups]
        self.cells = np.concatenate(chosen) if chosen else _NO_CELLS
        self.sizes = [c.size for c in chosen]
        self.position = {cell: k for k, cell in enumerate(self.cells.tolist())}

    def weights(
        self,
        levels: list[float],
        per_siemens: Callable[[float], float] | None = None,
    ) -> list[float]:
        """Per cell, the current it adds to the net per siemens, A/S.

        A cell adds g * u(row voltage - column voltage) to its row's net and
        takes as much from its column's; u is `per_siemens`, or the voltage
        itself (ohmic cells).
        """
        net = self.net
        weights: list[float] = []
        for (a, b), size in zip(self.groups, self.sizes, strict=True):
            volts = levels[a] - levels[b]
            current = volts if per_siemens is None else per_siemens(volts)
            weights += [current if a == net else -current] * size
        return weights


class _CellPairs:
    """The cells of one array grouped by the pair (row net, column net).

    Under a linear drive every cell of a group holds the same voltage.

    Attributes
    ----------
    codes : numpy.ndarray
        Each cell's group code, ``row net * n_nets + column net``, flat.
    n_codes : int
        Number of codes, ``n_nets ** 2``.
    present : list of (int, int)
        The groups that carry current: every row net with every column net
        other than itself.
    """

    __slots__ = ("codes", "n_codes", "present", "_rows", "_cols", "_cells")

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_nets: int) -> None:
        self.codes = (rows[:, None] * n_nets + cols[None, :]).reshape(-1)
        self.n_codes = n_nets * n_nets
        self._rows, self._cols = rows.tolist(), cols.tolist()
        row_nets, col_nets = sorted(set(self._rows)), sorted(set(self._cols))
        self.present = [(a, b) for a in row_nets for b in col_nets if a != b]
        self._cells: dict[tuple[int, int], np.ndarray] = {}

    def cells(self, row_net: int, col_net: int) -> np.ndarray:
        """The cells of one group, flat indices in row-major order."""
        cells = self._cells.get((row_net, col_net))
        if cells is None:
            width = len(self._cols)
            cols = [c for c, net in enumerate(self._cols) if net == col_net]
            flat = [
                r * width + c
                for r, net in enumerate(self._rows)
                if net == row_net
                for c in cols
            ]
            cells = self._cells[(row_net, col_net)] = np.array(flat, dtype=np.intp)
        return cells


class _Drive:
    """The sources of one configuration, per net.

    ``levels`` holds each net's fixed voltage (NaN for a net no voltage
    holds) and ``inject`` the current fed into it. ``linear`` when every net
    is held at a voltage (by a voltage source or ground): the cells' voltages
    then follow from the levels alone, and every current is linear in the
    cells' conductances. The arrays the solver takes are made on first use.
    """

    __slots__ = (
        "nets", "states", "levels", "inject", "singles", "shorts", "span_v",
        "fed", "linear", "_arrays",
    )  # fmt: skip

    def __init__(self, nets: _Nets, states: dict[str, SourceState]) -> None:
        self.nets = nets
        self.states = states
        self.levels: list[float] = []
        self.inject: list[float] = []
        self.singles: list[tuple[int, SourceState]] = []
        self.shorts: dict[str, tuple[float, float]] = {}
        self.span_v = 0.0
        self.fed = False
        self.linear = False
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _made(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            fixed_v = np.array(self.levels)
            net_v = (
                fixed_v if self.linear else np.where(np.isnan(fixed_v), 0.0, fixed_v)
            )
            self._arrays = (fixed_v, np.array(self.inject), net_v)
        return self._arrays

    @property
    def fixed_v(self) -> np.ndarray:
        """Per net, its fixed voltage, V, or NaN."""
        return self._made()[0]

    @property
    def inject_a(self) -> np.ndarray:
        """Per net, the current a current source feeds into it, A."""
        return self._made()[1]

    @property
    def net_v(self) -> np.ndarray:
        """Per net, its fixed voltage, V, or 0."""
        return self._made()[2]


class _Solution:
    """Every channel's (voltage, current, compliance) for one set of cells."""

    __slots__ = ("results", "net_v", "cell_v", "version", "epoch", "time_s", "taken")

    def __init__(
        self,
        results: dict[str, tuple[float, float, bool]],
        net_v: np.ndarray,
        version: int,
        epoch: int,
    ) -> None:
        self.results = results
        self.net_v = net_v
        #: Per array the cells' voltages, V, when lines are resistive (else None).
        self.cell_v: list[np.ndarray] | None = None
        self.version = version
        self.epoch = epoch
        self.time_s = 0.0
        self.taken: set[str] = set()


class Bench:
    """The simulated whole: chip, wiring, instruments and the virtual clock.

    Build it with :meth:`from_file`. Instruments change it through
    :meth:`set_source`, :meth:`set_relays`, :meth:`advance` and
    :meth:`measure`; tests read it through :attr:`arrays`,
    :meth:`outputs_on`, :meth:`closed_relays`, :attr:`events` and
    :attr:`max_abs_line_voltage_v`.

    Parameters
    ----------
    station : Station
        The station, loaded with its chip.
    preset : DevicePreset
        The device preset of every cell, with the bench's overrides.
    seed : int
        Seed of every random draw of the bench.
    stuck_fraction : float
        Fraction of cells stuck at their low or high state.
    timing : Timing
        Durations the instruments charge.
    path : Path, optional
        The bench file, for messages.
    formed : dict of str to bool, optional
        Per array, whether its cells start formed; an array not named takes
        its chip file's ``formed`` (formed unless it says otherwise).

    Attributes
    ----------
    now_s : float
        The virtual clock, s since the bench was built: the predicted
        duration of everything done on it.
    arrays : dict of str to CellArray
        The chip's arrays by name.
    instruments : dict of str to TspInstrument
        The simulated instruments by station name.
    max_abs_line_voltage_v : float
        Highest |V| any chip line saw while driven, V.
    events : collections.deque of (float, str, float)
        ``(time_s, channel, level)`` each time an output turns on or changes
        level while on (V, or A in the current-source function); the last
        :data:`EVENT_LIMIT`.
    hot_switch_count : int
        Relay operations made while a source was on at a non-zero level.
    simultaneous_window_s : float
        Readings of different channels taken within one message, with no
        change in between and within this span of bench time, share one
        solve and one read-noise sample of the cells, s.
    """

    def __init__(
        self,
        station: Station,
        preset: DevicePreset,
        seed: int = 0,
        stuck_fraction: float = 0.0,
        timing: Timing | None = None,
        path: Path | None = None,
        formed: dict[str, bool] | None = None,
    ) -> None:
        self.station = station
        self.preset = preset
        self.seed = seed
        self.timing = timing or Timing()
        self.path = path
        self._formed = formed or {}
        self.rng = np.random.default_rng(seed)
        self._noise_rng, self._read_rng = self.rng.spawn(2)
        self.now_s = 0.0
        self.max_abs_line_voltage_v = 0.0
        self.events: deque[tuple[float, str, float]] = deque(maxlen=EVENT_LIMIT)
        self.hot_switch_count = 0
        self.simultaneous_window_s = 0.25

        self.arrays = self._build_chip(stuck_fraction)
        self._sources: dict[str, SourceState] = {}
        self._build_lines()
        self._reset_state()
        self.instruments = self._build_instruments()
        self._build_relay_table()
        self._source_list = list(self._sources.values())
        self._source_index = {key: k for k, key in enumerate(self._sources)}
        #: Per source, what the exposure notes of it: None (off), its level
        #: (V), or its voltage limit as an imaginary number (a current source).
        #: Every change of the chip's configuration appends its relays and
        #: levels to the exposure's lists; :meth:`Exposure.fold` sums them.
        self._levels: list[Any] = [None] * len(self._source_list)
        #: Every configuration the chip saw, for checks of what reached it.
        self.exposure = Exposure(self.arrays, list(self._sources), self._nets_of)
        self._noted_relays = self.exposure.relays
        self._noted_levels = self.exposure.levels
        #: The faults injected into this bench (none unless a file or test adds them).
        self.faults = Faults(self)
        self._resources = {
            spec.resource: self.instruments[name]
            for name, spec in station.instruments.items()
            if spec.resource
        }

    # Construction.

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Bench:
        """Build the bench a bench file describes.

        Parameters
        ----------
        path : str or Path
            The bench file. Its ``station:`` is relative to the file.
        **overrides
            Values that replace the file's keys (``seed``, ``device``,
            ``stuck_fraction``, ``timing``, ``station``, ``formed``).

        Raises
        ------
        labctl.station.ConfigError
            One line naming the file and the key, for an unknown key, a bad
            value, or a station, chip or preset that cannot be loaded.
        """
        path = Path(path)
        data = read_yaml(path)
        for origin, mapping in (("", data), (" (override)", overrides)):
            unknown = sorted(set(mapping) - set(BENCH_KEYS))
            if unknown:
                raise ConfigError(
                    f"{path}: {unknown[0]}{origin}: unknown key; "
                    f"allowed: {', '.join(BENCH_KEYS)}"
                )
        data = {**data, **overrides}
        station = _load_bench_station(path, data.get("station"))
        seed = _bench_seed(path, data.get("seed", 0))
        stuck = _bench_fraction(path, data.get("stuck_fraction", 0.0))
        preset = _bench_preset(path, station, data.get("device") or {})
        timing = _bench_timing(path, data.get("timing") or {})
        formed = _bench_formed(path, station, data.get("formed") or {})
        bench = cls(station, preset, seed, stuck, timing, path, formed)
        bench.faults.load(data.get("faults"), path)
        return bench

    def _build_chip(self, stuck_fraction: float) -> dict[str, CellArray]:
        """The chip's arrays; those that come formed are in their chip file's mode."""
        chip = self.station.chip_spec
        assert chip is not None
        arrays = {}
        for name, spec in chip.arrays.items():
            cells = arrays[name] = CellArray(
                spec.rows,
                spec.cols,
                self.preset,
                self.rng,
                stuck_fraction,
                read_rng=self._read_rng,
                formed=self._formed.get(name, spec.formed),
            )
            if spec.mode != MODES[ANALOG]:
                cells.start_in_mode(MODES.index(spec.mode))
        return arrays

    def _build_lines(self) -> None:
        """Number every chip line; find the span of voltage no cell reacts to."""
        self._line_offset: dict[str, int] = {}
        offset = 0
        for name, array in self.arrays.items():
            self._line_offset[name] = offset
            offset += array.rows + array.cols
        self._n_lines = offset
        chip = self.station.chip_spec
        assert chip is not None
        ohms = [spec.line_resistance_ohm for spec in chip.arrays.values()]
        #: Per array its lines' segment resistance, Ω; None when every line is ideal.
        self._line_ohm = ohms if any(ohms) else None
        self._line_cell_v: list[np.ndarray] | None = None  # of the last solve
        self._find_safe_span()
        #: The bench time from which some array is due to be aged, s.
        self._age_due_s = 0.0

    def _find_safe_span(self) -> None:
        """The span of source levels below every voltage at which a cell changes."""
        self._safe_span_v = min(
            min(array.lowest_set_v, -array.highest_reset_v)
            for array in self.arrays.values()
        )

    def _line_of_pin(self, pin: str) -> int:
        array, kind, index = parse_pin(pin)
        offset = self._line_offset[array]
        return offset + (index if kind == "row" else self.arrays[array].rows + index)

    def _build_instruments(self) -> dict[str, TspInstrument]:
        from simulator.instruments import make_instrument

        instruments = {
            name: make_instrument(name, spec, self)
            for name, spec in self.station.instruments.items()
        }
        for name, spec in self.station.instruments.items():
            if spec.via is not None:
                instruments[spec.via].link(instruments[name])
        return instruments

    def _build_relay_table(self) -> None:
        """Map each crosspoint of the wiring matrix to (bus end, chip line)."""
        wiring = self.station.wiring
        self._matrix: K707B = self.instruments[wiring.matrix]  # type: ignore[assignment]
        ends = sorted({end for end in wiring.buses.values()})
        self._end_index = {end: i for i, end in enumerate(ends)}
        self._ends = ends
        pins = self.station.pin_channels()
        line_at = {place: self._line_of_pin(pin) for pin, place in pins.items()}
        table: list[tuple[int, int] | None] = []
        wired_mask = 0
        for index, (slot, row, column) in enumerate(self._matrix.coordinates):
            end = wiring.buses.get(row)
            line = line_at.get((slot, column))
            if end is None or line is None:
                table.append(None)
                continue
            table.append((self._end_index[end], line))
            wired_mask |= 1 << index
        self._relay_table = table
        self._wired_mask = wired_mask
        self._mask_bytes = (len(table) + 7) // 8
        self._byte_relays: dict[int, tuple[tuple[int, int], ...]] = {}

    def _reset_state(self) -> None:
        self._closed_mask = 0
        self._wired_closed = 0
        self._config_version = 0
        self._state_version = 0
        self._epoch = 0
        self._pending_s = 0.0
        self._quiet = True
        self._live: set[str] = set()
        self._nets_cache: OrderedDict[int, _Nets] = OrderedDict()
        self._drive_cache: tuple[int, _Drive] | None = None
        self._still_cache: _Solution | None = None
        self._reading: _Solution | None = None
        self._noise = self._noise_rng.standard_normal(_NOISE_BLOCK)
        self._noise_at = 0
        self._shorted: frozenset[tuple[str, ...]] = frozenset()

    # Registry of sources and resources.

    def register_source(self, channel: str) -> SourceState:
        """Create the source state of an SMU channel (``"smu1.smua"``)."""
        if channel in self._sources:
            raise ValueError(f"SMU channel {channel} is registered twice")
        state = SourceState(channel)
        self._sources[channel] = state
        return state

    def resource(self, name: str) -> TspInstrument:
        """The simulated instrument answering a VISA resource string.

        Raises
        ------
        KeyError
            If no instrument of the station has that resource.
        """
        instrument = self._resources.get(name)
        if instrument is not None:
            return instrument
        wanted = _canonical_resource(name)
        for resource, instrument in self._resources.items():
            if _canonical_resource(resource) == wanted:
                return instrument
        raise KeyError(f"no instrument at {name} on the bench {self.path}")

    def resources(self) -> list[str]:
        """The VISA resource strings of the bench's instruments."""
        return list(self._resources)

    # Views for tests, logs and safety checks.

    def outputs_on(self) -> list[str]:
        """The SMU channels whose output is on."""
        return [key for key, state in self._sources.items() if state.output]

    def closed_relays(self) -> list[str]:
        """The closed contacts of the wiring matrix, sorted (``"1A01"``).

        They are the crosspoints the matrix was told to close, unless a
        fault keeps a relay stuck (the matrix still reports what it was told).
        """
        return self._matrix.names_of(self._closed_mask)

    def source(self, channel: str) -> SourceState:
        """The present source state of an SMU channel (read it, do not change it)."""
        return self._sources[channel]

    def set_cell_state(self, array: str, w: float | np.ndarray) -> None:
        """Put an array's cells into state ``w`` (see ``CellArray.set_state``)."""
        self._settle()
        cells = self.arrays[array]
        cells.time_s = self.now_s
        cells.set_state(w)
        self.cells_changed()

    def cells_changed(self) -> None:
        """Tell the bench that cells were changed from outside it."""
        self._state_version += 1
        self._find_safe_span()
        self._age_due_s = min(array.age_due_s for array in self.arrays.values())

    def cell_energy(self, array: str) -> tuple[np.ndarray, np.ndarray]:
        """The charge (C) and energy (J) every cell of an array has taken so far.

        Everything applied up to the present bench time counts: each pulse,
        reading and DC level, from the voltage across each cell, its current
        and the time it was held. Two ``(rows, cols)`` arrays.
        """
        self._settle()
        cells = self.arrays[array]
        return cells.charge_c, cells.energy_j

    # The clock.

    def begin_message(self) -> None:
        """Mark the start of one message to an instrument.

        Readings of different channels within one message share a solve.
        """
        self._epoch += 1

    def advance(self, dt_s: float) -> None:
        """Let `dt_s` seconds of bench time pass under the present configuration."""
        if dt_s < 0:
            raise ValueError(f"time cannot run backwards: dt_s = {dt_s}")
        self.now_s += dt_s
        if not self._quiet:
            self._pending_s += dt_s

    # Changes made by the instruments.

    def set_source(self, channel: str, **changes: Any) -> None:
        """Change an SMU channel's source state (fields of :class:`SourceState`)."""
        state = self._sources[channel]
        if not (state.output or changes.get("output")):
            for name, value in changes.items():
                setattr(state, name, value)
            return
        failure = self._settle_before_change()
        changed = False
        for name, value in changes.items():
            if getattr(state, name) != value:
                setattr(state, name, value)
                changed = True
        if changed:
            self._config_changed()
            self._update_live(state)
            # What the exposure notes: this source's entry, and the new
            # configuration if anything on the chip is live.
            self._levels[self._source_index[channel]] = (
                (state.level_v if state.volts else complex(0.0, state.limit_v))
                if state.output
                else None
            )
            if not self._quiet:
                self._noted_relays.append(self._wired_closed)
                self._noted_levels += self._levels
            if state.output and state.limit_a > self.exposure.max_limit_a:
                self.exposure.max_limit_a = state.limit_a
        else:
            # The same configuration: the circuit is unchanged, but a reading
            # after this setting is a reading of its own.
            self._state_version += 1
        if state.output:
            self.events.append((self.now_s, channel, state.level))
            if state.volts and state.level_v:
                self._record_level(state)
        if failure is not None:
            raise failure

    def set_relays(self, matrix: str, closed_mask: int) -> None:
        """Set which crosspoints of a matrix are closed (one bit per crosspoint)."""
        if self.faults.stuck:
            closed_mask = self.faults.contacts(closed_mask)
        if matrix != self._matrix.name or closed_mask == self._closed_mask:
            return
        failure = None
        if not self._quiet:
            failure = self._settle_before_change()
            self.hot_switch_count += 1
            log.debug("relays switched with a source on at %.6g s", self.now_s)
        self._closed_mask = closed_mask
        wired = closed_mask & self._wired_mask
        if wired != self._wired_closed:
            self._wired_closed = wired
            self._config_changed()
            for channel in self._live:
                self._record_level(self._sources[channel])
            if not self._quiet:
                self._noted_relays.append(self._wired_closed)
                self._noted_levels += self._levels
        if failure is not None:
            raise failure

    def _settle_before_change(self) -> Exception | None:
        """Settle the time under the configuration about to change; what
        failed, if it did.

        The change is made whatever happens here: an instrument that was
        told to turn its output off or open a relay has done so, and the
        chip must see it. The caller raises the failure once it has.
        """
        try:
            self._settle()
        except Exception as exc:  # noqa: BLE001 - raised again after the change
            log.error(
                "bench: settling before a change failed at %.6g s: %s", self.now_s, exc
            )
            return exc
        return None

    def _expose(self, pulsed: SourceState | None = None) -> None:
        """Note the configuration on the chip now (one source at a pulse level)."""
        self._noted_relays.append(self._wired_closed)
        self._noted_levels += self._levels
        if pulsed is not None:
            at = self._source_index[pulsed.channel] - len(self._levels)
            self._noted_levels[at] = pulsed.level_v
        if len(self._noted_relays) >= FOLD_AT:
            self.exposure.fold()

    def _config_changed(self) -> None:
        self._config_version += 1
        self._state_version += 1

    def _update_live(self, state: SourceState) -> None:
        live = self._live
        if state.output and (state.level_v if state.volts else state.level_a):
            live.add(state.channel)
        else:
            live.discard(state.channel)
        self._quiet = not live

    def _record_level(self, state: SourceState) -> None:
        level = abs(state.level_v)
        if (
            state.volts
            and level > self.max_abs_line_voltage_v
            and self._nets().channel_net.get(state.channel, -1) >= 0
        ):
            self.max_abs_line_voltage_v = level

    # Measurements.

    def measure(self, channel: str) -> tuple[float, float, bool]:
        """One reading of an SMU channel, with read and thermal noise.

        Parameters
        ----------
        channel : str
            ``"<instrument>.<smua|smub>"``.

        Returns
        -------
        voltage_v : float
            The channel's output voltage (its net's voltage), V.
        current_a : float
            The current the channel delivers into its net, A, with one sample
            of the preset's thermal noise.
        in_compliance : bool
            Whether the channel is held at its limit (or shorted).
        """
        reading = self._reading
        if (
            reading is None
            or reading.version != self._state_version
            or reading.epoch != self._epoch
            or channel in reading.taken
            or self.now_s - reading.time_s > self.simultaneous_window_s
        ):
            self._drive()  # the reading needs it: settling finds it made
            self._settle()
            if len(self._noted_relays) >= FOLD_AT:
                self.exposure.fold()
            reading = self._solution(noisy=True)
            reading.time_s = self.now_s
            self._reading = reading
        reading.taken.add(channel)
        voltage_v, current_a, limited = reading.results[channel]
        if self.faults.tripped and channel in self.faults.tripped:
            return self.faults.trip(channel, voltage_v, current_a)
        return voltage_v, current_a + self._thermal_noise_a(), limited

    def compliance(self, channel: str) -> bool:
        """Whether an SMU channel is at its limit now (noise-free)."""
        self._settle()
        if channel in self.faults.tripped:
            return True
        return self._still().results[channel][2]

    def _thermal_noise_a(self) -> float:
        at = self._noise_at
        if at == _NOISE_BLOCK:
            self._noise = self._noise_rng.standard_normal(_NOISE_BLOCK)
            at = 0
        self._noise_at = at + 1
        return float(self._noise[at]) * self.preset.thermal_noise_a

    def _thermal_noises_a(self, count: int) -> list[float]:
        """The next `count` samples of the thermal noise, A, at once."""
        scale = self.preset.thermal_noise_a
        samples: list[float] = []
        while len(samples) < count:
            at = self._noise_at
            if at == _NOISE_BLOCK:
                self._noise = self._noise_rng.standard_normal(_NOISE_BLOCK)
                at = 0
            take = min(count - len(samples), _NOISE_BLOCK - at)
            samples += [float(x) * scale for x in self._noise[at : at + take].tolist()]
            self._noise_at = at + take
        return samples

    # Pulse trains.

    def pulse_train(
        self, channel: str, level_v: float, on_s: float, gap_s: float, count: int
    ) -> tuple[list[float], list[float]] | None:
        """Pulse a voltage source `count` times from its present level, at once.

        Each pulse holds `level_v` for `on_s`, reads the channel's current at
        its end and goes back to the present level for `gap_s`. The bench
        ends as setting the level, :meth:`advance`, :meth:`measure` and
        setting the level back, pulse by pulse, would leave it: the same
        clock, events, records and cells, with the same switching noise.

        It applies when every net is held at a voltage both at the pulse
        level and between pulses, no cell switches between pulses, no cell
        forms, the cells are not due to be aged (:meth:`CellArray.age_to`)
        before the train ends, and no source can reach its
        limit however the pulsed cells switch and whatever the read noise
        (:data:`READ_NOISE_BOUND`). A reading then depends on the cells on
        the channel's net alone, and only their read noise is drawn.

        Returns
        -------
        tuple of (list of float, list of float) or None
            The channel's current at the end of each pulse, A, with read and
            thermal noise, and the bench time of each reading, s; None when
            the train has to be run pulse by pulse.
        """
        state = self._sources[channel]
        if not (state.output and state.volts) or channel in self.faults.tripped:
            return None
        if self._line_ohm is not None:
            return None  # the one-step path sums cells per net: ideal lines only
        self._settle()
        bias = self._drive()
        pulsed = state.at_level_v(level_v)
        pulse = self._build_drive(bias.nets, {**self._sources, channel: pulsed})
        if bias.shorts or not (bias.linear and pulse.linear):
            return None
        others_live = bool(self._live - {channel})
        bias_live = others_live or state.level_v != 0
        if any(self._plans(bias, gap_s, bias_live)):
            return None
        plans = self._plans(pulse, on_s, others_live or level_v != 0)
        if any(plan is not None and plan.forming for plan in plans):
            return None
        end_s = self.now_s + count * (on_s + gap_s)
        if any(
            array.decaying or array.age_due_s <= end_s for array in self.arrays.values()
        ):
            return None  # the cells relax during the train: pulse by pulse
        if not self._cannot_limit(pulse, plans):
            return None
        if bias_live and (bias.fed or bias.span_v >= self._safe_span_v):
            # Between pulses the cells see the noise-free solution: it must
            # hold every source at its level too.
            if not self._cannot_limit(bias, plans):
                return None

        # Every pulse and gap but the last gap (left pending) at the cells'
        # conductances before the train; the switching cells' change is added.
        self._note_energy(pulse, count * on_s)
        if bias_live:
            self._note_energy(bias, (count - 1) * gap_s)
        currents_a = self._train_readings(pulse, channel, plans, count, on_s, gap_s)
        times_s = list(itertools.accumulate([self.now_s, *([on_s, gap_s] * count)]))
        self.events.extend(
            zip(
                times_s[:-1],
                itertools.repeat(channel),
                itertools.cycle((level_v, state.level_v)),
            )
        )
        self.now_s = times_s[-1]
        self._pending_s = gap_s if bias_live else 0.0
        for applied in (pulsed, state):
            if applied.level_v:
                self._record_level(applied)
        self._config_changed()
        self._drive_cache = (self._config_version, bias)
        self._expose(pulsed)
        self._expose()
        return currents_a, times_s[1::2]

    def _plans(
        self, drive: _Drive, duration_s: float, live: bool
    ) -> list[Switching | None]:
        """Per array, the cells that `duration_s` under a linear drive switches."""
        if not live or (not drive.fed and drive.span_v < self._safe_span_v):
            return [None] * len(self.arrays)
        levels = drive.levels
        plans: list[Switching | None] = []
        for array, pairs in zip(self.arrays.values(), drive.nets.pairs(), strict=True):
            low, high = array.highest_reset_v, array.lowest_set_v
            beyond = []
            for row, col in pairs.present:
                v = levels[row] - levels[col]
                if v > high or v < low:
                    beyond.append((pairs.cells(row, col).tolist(), v))
            if not beyond:
                plans.append(None)
                continue
            among = sorted((cell, v) for cells, v in beyond for cell in cells)
            plans.append(
                array.switching_among(
                    [c for c, _ in among], [v for _, v in among], duration_s
                )
            )
        return plans

    def _cannot_limit(self, drive: _Drive, plans: list[Switching | None]) -> bool:
        """Whether no source of a linear drive can reach its current limit.

        The cells of `plans` are counted at the higher of their two
        conductances, every cell at its read noise's farthest reach and at
        the largest current any I-V family of the array has at its voltage.
        """
        levels = drive.levels
        n_nets = drive.nets.n_nets
        reach_a = [0.0] * n_nets
        for array, pairs, plan in zip(
            self.arrays.values(), drive.nets.pairs(), plans, strict=True
        ):
            g = array.present_conductance_s().reshape(-1)
            sums_s = np.bincount(pairs.codes, g, pairs.n_codes).tolist()
            if plan is not None:
                codes = pairs.codes
                for cell in plan.cells:
                    sums_s[codes[cell]] += array.highest_conductance_s(cell) - float(
                        g[cell]
                    )
            per_siemens = array.reach_per_siemens(
                [levels[row] - levels[col] for row, col in pairs.present]
            )
            for (row, col), volts in zip(pairs.present, per_siemens, strict=True):
                current_a = volts * sums_s[row * n_nets + col]
                reach_a[row] += current_a
                reach_a[col] += current_a
        # The last factor covers the rounding of the sums.
        sigma = max(array.read_sigma_max for array in self.arrays.values())
        reach = 1.0 + READ_NOISE_BOUND * sigma + 1e-9
        return all(
            reach_a[net] * reach <= state.limit_a for net, state in drive.singles
        )

    def _train_readings(
        self,
        pulse: _Drive,
        channel: str,
        plans: list[Switching | None],
        count: int,
        on_s: float,
        gap_s: float,
    ) -> list[float]:
        """Switch the cells of `plans` `count` times, reading after each time.

        Each event holds the pulse for `on_s`, `gap_s` apart. Returns the
        channel's current after each switching event, A, with read and
        thermal noise.
        """
        sizes = [0 if plan is None else plan.size for plan in plans]
        switch_noise = self.rng.standard_normal((count, 2 * sum(sizes)))
        # The cells count as written at the end of the last pulse.
        last_pulse_s = self.now_s + count * on_s + (count - 1) * gap_s
        net = pulse.nets.channel_net.get(channel, -1)
        on_net = pulse.nets.on_net(net) if net >= 0 else [None] * len(plans)
        parts = []
        start = 0
        for array, plan, size, carrying in zip(
            self.arrays.values(), plans, sizes, on_net, strict=True
        ):
            moved: dict[int, list[float]] = {}
            if plan is not None:
                noise = switch_noise[:, 2 * start : 2 * (start + size)]
                array.time_s = last_pulse_s
                states = array.repeat(plan, noise.reshape(count, 2, size), on_s)
                start += size
                if carrying is not None:
                    # The switched cells on the net read as they are after each event.
                    for cell, trajectory in zip(plan.cells, states, strict=True):
                        at = carrying.position.get(cell)
                        if at is not None:
                            moved[at] = array.conductance_of(cell, trajectory)
            if carrying is not None and carrying.cells.size:
                g = array.present_conductance_s().reshape(-1)[carrying.cells].tolist()
                conductances = [
                    moved.get(at) or [g_s] * count for at, g_s in enumerate(g)
                ]
                weights = _current_weights(array, carrying, pulse)
                parts.append((array, conductances, weights, carrying.cells))
        currents_a = self._thermal_noises_a(count)
        if parts:
            total = sum(len(weights) for _, _, weights, _ in parts)
            read_noise = self._read_rng.standard_normal((total, count))
            start = 0
            for array, conductances, weights, cells in parts:
                # The read noise of each cell at each event, as a factor.
                factors = array.read_factors(
                    read_noise[start : start + len(weights)], cells
                ).tolist()
                start += len(weights)
                for weight, g_s, factor in zip(
                    weights, conductances, factors, strict=True
                ):
                    for k in range(count):
                        currents_a[k] += weight * (g_s[k] * factor[k])
        if any(plans):
            self.cells_changed()
        return currents_a

    # The circuit.

    def _nets_of(self, wired_closed: int) -> _Nets:
        """The nets of a pattern of closed wired relays, made if not cached."""
        found = self._nets_cache.get(wired_closed)
        return found if found is not None else self._build_nets(wired_closed)

    def _nets(self) -> _Nets:
        key = self._wired_closed
        cache = self._nets_cache
        nets = cache.get(key)
        if nets is None:
            nets = cache[key] = self._build_nets(key)
            if len(cache) > NET_CACHE_SIZE:
                cache.popitem(last=False)
        return nets

    def _build_nets(self, wired_closed: int) -> _Nets:
        """Group lines and bus ends tied by closed relays into nets.

        The nets that hold a bus are numbered in the order of their first
        closed crosspoint, the floating lines after them in line order.
        """
        closed = self._closed_relays(wired_closed)
        end_group, line_group = self._bus_groups(closed) or self._tied_groups(closed)
        n_nets = len(set(end_group) - {-1})
        for line, group in enumerate(line_group):
            if group < 0:
                line_group[line] = n_nets
                n_nets += 1
        line_net = np.array(line_group, dtype=np.intp)

        lines_of = []
        for name, array in self.arrays.items():
            start = self._line_offset[name]
            rows = line_net[start : start + array.rows]
            cols = line_net[start + array.rows : start + array.rows + array.cols]
            lines_of.append((rows, cols))
        end_net = dict(zip(self._ends, end_group, strict=True))
        ground_net = end_net.pop(GROUND, -1)
        return _Nets(n_nets, lines_of, end_net, ground_net)

    def _closed_relays(self, wired_closed: int) -> list[tuple[int, int]]:
        """The (bus end, chip line) of every closed wired crosspoint, in order."""
        known = self._byte_relays
        closed: list[tuple[int, int]] = []
        for at, value in enumerate(wired_closed.to_bytes(self._mask_bytes, "little")):
            if value:
                key = at << 8 | value
                relays = known.get(key)
                if relays is None:
                    indices = [8 * at + bit for bit in range(8) if value >> bit & 1]
                    relays = known[key] = tuple(self._relay_table[i] for i in indices)  # type: ignore[misc]
                closed += relays
        return closed

    def _bus_groups(
        self, closed: list[tuple[int, int]]
    ) -> tuple[list[int], list[int]] | None:
        """Groups when each line is on one bus at most, else None.

        Every bus with a closed relay is then a group of its own. Returns
        each end's group and each line's (-1 for none).
        """
        line_end = [-1] * self._n_lines
        end_group = [-1] * len(self._ends)
        groups = 0
        for end, line in closed:
            present = line_end[line]
            if present != end:
                if present >= 0:
                    return None
                line_end[line] = end
                if end_group[end] < 0:
                    end_group[end] = groups
                    groups += 1
        return end_group, [end_group[end] if end >= 0 else -1 for end in line_end]

    def _tied_groups(
        self, closed: list[tuple[int, int]]
    ) -> tuple[list[int], list[int]]:
        """Groups of bus ends and lines when some line is on several buses.

        Returns each end's group (-1 for none) and each line's (-1 for a
        floating line).
        """
        parent = list(range(len(self._ends)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        line_end: dict[int, int] = {}
        for end, line in closed:
            other = line_end.setdefault(line, end)
            if other != end:
                parent[find(other)] = find(end)

        group_of: dict[int, int] = {}
        line_group = [-1] * self._n_lines
        for line, end in line_end.items():
            line_group[line] = group_of.setdefault(find(end), len(group_of))
        end_group = [group_of.get(find(i), -1) for i in range(len(self._ends))]
        return end_group, line_group

    def _drive(self) -> _Drive:
        cached = self._drive_cache
        if cached is not None and cached[0] == self._config_version:
            return cached[1]
        drive = self._build_drive(self._nets(), self._sources)
        self._drive_cache = (self._config_version, drive)
        return drive

    def _build_drive(self, nets: _Nets, states: dict[str, SourceState]) -> _Drive:
        """The drive of every net by the sources in `states`."""
        drive = _Drive(nets, states)
        channel_net = nets.channel_net
        on_net: dict[int, list[SourceState]] = {}
        for state in states.values():
            if state.output:
                net = channel_net.get(state.channel, -1)
                if net >= 0:
                    on_net.setdefault(net, []).append(state)
        if nets.ground_net >= 0:
            on_net.setdefault(nets.ground_net, [])

        fixed_v = [math.nan] * nets.n_nets
        inject_a = [0.0] * nets.n_nets
        shorted = []
        for net, on in on_net.items():
            grounded = net == nets.ground_net
            if len(on) + grounded > 1:
                fixed_v[net] = self._short(drive, on, grounded)
                shorted.append(tuple(s.channel for s in on) + (GROUND,) * grounded)
            elif grounded:
                fixed_v[net] = 0.0
            else:
                state = on[0]
                drive.singles.append((net, state))
                if state.volts:
                    fixed_v[net] = state.level_v
                else:
                    inject_a[net] = state.level_a
                    drive.fed = True
        if shorted or self._shorted:
            self._warn_shorts(frozenset(shorted))

        levels = [v for v in fixed_v if v == v]  # NaN is the only value != itself
        if levels:
            drive.span_v = max(max(levels), 0.0) - min(min(levels), 0.0)
        drive.levels = fixed_v
        drive.inject = inject_a
        drive.linear = not drive.fed and len(levels) == nets.n_nets
        return drive

    @staticmethod
    def _short(drive: _Drive, states: list[SourceState], grounded: bool) -> float:
        """Voltage of a shorted net; each source on it is held at its limit."""
        levels = [s.level_v for s in states if s.volts]
        net_v = 0.0 if grounded or not levels else sum(levels) / len(levels)
        for state in states:
            if state.volts:
                current = state.limit_a if state.level_v >= net_v else -state.limit_a
                drive.shorts[state.channel] = (net_v, current)
            else:
                drive.shorts[state.channel] = (net_v, state.level_a)
        return net_v

    def _warn_shorts(self, shorted: frozenset[tuple[str, ...]]) -> None:
        for group in shorted - self._shorted:
            log.warning(
                "short circuit: %s on one net at %.6g s; each source held at its limit",
                " and ".join(group),
                self.now_s,
            )
        self._shorted = shorted

    def _still(self) -> _Solution:
        """The noise-free solution of the present state (cached)."""
        still = self._still_cache
        if still is None or still.version != self._state_version:
            still = self._still_cache = self._solution(noisy=False)
        return still

    def _solution(self, noisy: bool) -> _Solution:
        drive = self._drive()
        if self._quiet or not (drive.singles or drive.shorts):
            # Every source is at 0 (or none reaches the chip): nothing flows.
            net_v = drive.net_v
            currents, fed = [0.0] * drive.nets.n_nets, drive.inject
            limited: set[int] = set()
            line_cell_v = None  # nothing flows: the cells see the nets' levels
        else:
            if noisy:
                conductances = [a.read_conductance() for a in self.arrays.values()]
            else:
                conductances = [a.present_conductance_s() for a in self.arrays.values()]
            net_v, currents, fed, limited = self._solve(drive, conductances)
            line_cell_v = self._line_cell_v
        results = self._results(drive, net_v.tolist(), currents, fed, limited)
        solution = _Solution(results, net_v, self._state_version, self._epoch)
        solution.cell_v = line_cell_v
        return solution

    def _solve(
        self, drive: _Drive, conductances: list[np.ndarray]
    ) -> tuple[np.ndarray, list[float], list[float], set[int]]:
        """Solve the circuit, moving sources into and out of compliance.

        Returns the net voltages, V, and per net the current its voltage
        source delivers and the current fed into it, A, finally used, and
        the nets whose source is held at its limit.
        """
        nets = drive.nets
        fixed_v, inject_a = drive.fixed_v, drive.inject_a
        fed = drive.inject
        limited: set[int] = set()
        for _ in range(COMPLIANCE_ROUNDS):
            if drive.linear and fixed_v is drive.fixed_v and self._line_ohm is None:
                # Every net at a fixed voltage: only the currents to find.
                net_v = drive.net_v
                currents = self._linear_currents(drive, conductances)
            else:
                net_v, source_i = self._solve_nodal(
                    nets, conductances, fixed_v, inject_a, drive
                )
                currents = source_i.tolist()
            moves = _compliance_moves(
                drive.singles, net_v.tolist(), currents, fed, limited
            )
            if not moves:
                break
            if fixed_v is drive.fixed_v:
                fixed_v, inject_a = fixed_v.copy(), inject_a.copy()
            for net, fixed, inject in moves:
                fixed_v[net], inject_a[net] = fixed, inject
                limited.symmetric_difference_update((net,))
            fed = inject_a.tolist()
        self._record_fed(drive, net_v, limited)
        return net_v, currents, fed, limited

    def _solve_nodal(
        self,
        nets: _Nets,
        conductances: list[np.ndarray],
        fixed_v: np.ndarray,
        inject_a: np.ndarray,
        drive: _Drive,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nodal solution with the cells' I-V; Newton steps beyond the ohmic region.

        Each step stands every cell in for its tangent at its present voltage:
        its slope as a conductance and the rest of its current as a current
        source between its lines' nets. No net of a passive chip goes beyond
        the largest voltage of `drive`'s sources: the steps are kept inside it,
        and a step the tangents cannot give (a singular system, as under a
        shorted cell far past its ohmic region) ends the iteration where it
        is, so that a solve never fails.
        """
        cells = list(self.arrays.values())
        lines = nets.lines
        arrays = [(g, r, c) for g, (r, c) in zip(conductances, lines, strict=True)]
        if self._line_ohm is not None:
            return self._solve_lines(cells, arrays, nets, fixed_v, inject_a, drive)
        net_v, source_i = solve(arrays, nets.n_nets, fixed_v, inject_a)
        span_v = max(float(net_v.max()), 0.0) - min(float(net_v.min()), 0.0)
        if all(array.ohmic_at(span_v) for array in cells):
            return net_v, source_i
        driven = ~np.isnan(fixed_v)
        bound_v = _voltage_bound(drive)
        net_v = np.clip(net_v, -bound_v, bound_v)
        for _ in range(NEWTON_ROUNDS):
            tangents = []
            fed_a = inject_a.copy()
            for array, g, (rows, cols) in zip(cells, conductances, lines, strict=True):
                v = cell_voltages(net_v, rows, cols)
                current_a, slope_s = array.tangent(v, g)
                rest_a = current_a - slope_s * v
                fed_a -= np.bincount(rows, rest_a.sum(axis=1), nets.n_nets)
                fed_a += np.bincount(cols, rest_a.sum(axis=0), nets.n_nets)
                tangents.append((slope_s, rows, cols))
            try:
                stepped_v, _ = solve(tangents, nets.n_nets, fixed_v, fed_a)
            except np.linalg.LinAlgError:
                log.debug(
                    "Newton step singular at %.6g s; kept the last iterate", self.now_s
                )
                break
            step_v = np.clip(stepped_v - net_v, -NEWTON_STEP_V, NEWTON_STEP_V)
            if not np.isfinite(step_v).all():
                break
            step_v = np.clip(net_v + step_v, -bound_v, bound_v) - net_v
            net_v = net_v + step_v
            if float(np.abs(step_v).max()) < NEWTON_TOLERANCE_V:
                break
        outflow_a = np.zeros(nets.n_nets)
        for array, g, (rows, cols) in zip(cells, conductances, lines, strict=True):
            current_a = g * array.current_per_siemens(cell_voltages(net_v, rows, cols))
            outflow_a += np.bincount(rows, current_a.sum(axis=1), nets.n_nets)
            outflow_a -= np.bincount(cols, current_a.sum(axis=0), nets.n_nets)
        return net_v, np.where(driven, outflow_a - inject_a, 0.0)

    def _solve_lines(
        self,
        cells: list[CellArray],
        arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        nets: _Nets,
        fixed_v: np.ndarray,
        inject_a: np.ndarray,
        drive: _Drive,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The nodal solution with resistive lines, every line node solved.

        Cells beyond their ohmic region take Newton steps as in
        :meth:`_solve_nodal`, each cell at its tangent; the steps are taken
        on the cells' voltages (what the tangents depend on), each kept
        within :data:`NEWTON_STEP_V`, until none moves more than
        :data:`NEWTON_TOLERANCE_V`.
        """
        line_ohm, n_nets = self._line_ohm, nets.n_nets
        assert line_ohm is not None
        net_v, source_i, cell_v = solve_lines(arrays, line_ohm, n_nets, fixed_v, inject_a)
        span_v = max(float(net_v.max()), 0.0) - min(float(net_v.min()), 0.0)
        if not all(array.ohmic_at(span_v) for array in cells):
            bound_v = 2 * _voltage_bound(drive)  # a cell spans two nets
            cell_v = [np.clip(v, -bound_v, bound_v) for v in cell_v]
            for _ in range(NEWTON_ROUNDS):
                tangents, rests = [], []
                for array, (g, rows, cols), v in zip(cells, arrays, cell_v, strict=True):
                    current_a, slope_s = array.tangent(v, g)
                    tangents.append((slope_s, rows, cols))
                    rests.append(current_a - slope_s * v)
                try:
                    net_v, source_i, stepped_v = solve_lines(
                        tangents, line_ohm, n_nets, fixed_v, inject_a, rests
                    )
                except np.linalg.LinAlgError:
                    break
                moved = 0.0
                for k, (v, new_v) in enumerate(zip(cell_v, stepped_v, strict=True)):
                    step_v = np.clip(new_v - v, -NEWTON_STEP_V, NEWTON_STEP_V)
                    if not np.isfinite(step_v).all():
                        step_v = np.zeros_like(v)
                    cell_v[k] = v + step_v
                    moved = max(moved, float(np.abs(step_v).max(initial=0.0)))
                if moved < NEWTON_TOLERANCE_V:
                    break
        self._line_cell_v = cell_v
        return net_v, source_i

    def _linear_currents(
        self, drive: _Drive, conductances: list[np.ndarray]
    ) -> list[float]:
        """Per net, the current it sends into the cells under a linear drive, A."""
        levels = drive.levels
        n_nets = drive.nets.n_nets
        currents_a = [0.0] * n_nets
        for array, g, pairs in zip(
            self.arrays.values(), conductances, drive.nets.pairs(), strict=True
        ):
            sums_s = np.bincount(pairs.codes, g.reshape(-1), pairs.n_codes).tolist()
            ohmic_v = array.ohmic_limit_v if array.uniform_family == SINH else -1.0
            beyond = []
            for row, col in pairs.present:
                volts = levels[row] - levels[col]
                if -ohmic_v <= volts <= ohmic_v:
                    current_a = volts * sums_s[row * n_nets + col]
                    currents_a[row] += current_a
                    currents_a[col] -= current_a
                else:
                    beyond.append((row, col, volts))
            if beyond:
                for (row, col, _), current_a in zip(
                    beyond, array.group_currents(g, pairs.codes, n_nets, beyond),
                    strict=True,
                ):
                    currents_a[row] += current_a
                    currents_a[col] -= current_a
        return currents_a

    def _record_fed(self, drive: _Drive, net_v: np.ndarray, limited: set[int]) -> None:
        fed = [net for net, state in drive.singles if not state.volts or net in limited]
        if fed:
            level = float(np.abs(net_v[fed]).max())
            if level > self.max_abs_line_voltage_v:
                self.max_abs_line_voltage_v = level

    def _results(
        self,
        drive: _Drive,
        net_v: list[float],
        source_i: list[float],
        inject_a: list[float],
        limited: set[int],
    ) -> dict[str, tuple[float, float, bool]]:
        channel_net = drive.nets.channel_net
        results: dict[str, tuple[float, float, bool]] = {}
        for key, state in drive.states.items():
            net = channel_net.get(key, -1)
            if not state.output:
                results[key] = (net_v[net] if net >= 0 else 0.0, 0.0, False)
            elif key in drive.shorts:
                voltage_v, current_a = drive.shorts[key]
                results[key] = (voltage_v, current_a, True)
            elif net < 0:
                results[key] = _open_circuit(state)
            elif net in limited:
                # A voltage source held at its current limit feeds a current;
                # a current source held at its voltage limit drives a voltage.
                current = inject_a[net] if state.volts else source_i[net]
                results[key] = (net_v[net], current, True)
            elif state.volts:
                results[key] = (state.level_v, source_i[net], False)
            else:
                results[key] = (net_v[net], state.level_a, False)
        return results

    def _settle(self) -> None:
        """Age the cells to the clock, then apply the time not yet applied:
        its charge and energy, and the cells' evolution under it."""
        if self.now_s >= self._age_due_s:
            self._age()
        duration_s = self._pending_s
        if duration_s == 0.0:
            return
        self._pending_s = 0.0
        drive = self._drive()
        self._note_energy(drive, duration_s)
        if not drive.fed and drive.span_v < self._safe_span_v:
            return
        still = self._still()
        for k, (array, (rows, cols)) in enumerate(
            zip(self.arrays.values(), drive.nets.lines, strict=True)
        ):
            if still.cell_v is None:
                v = cell_voltages(still.net_v, rows, cols)
            else:
                v = still.cell_v[k]
            limit_a = _cell_limits(drive, rows, cols) if array.forming_due(v) else None
            array.time_s = self.now_s
            array.evolve(v, duration_s, limit_a)
        self.cells_changed()

    def _age(self) -> None:
        """Age every array to the clock (see ``CellArray.age_to``)."""
        aged = False
        for array in self.arrays.values():
            aged = array.age_to(self.now_s) or aged
        if aged:
            self.cells_changed()
        self._age_due_s = min(array.age_due_s for array in self.arrays.values())

    def _note_energy(self, drive: _Drive, duration_s: float) -> None:
        """Note a drive held for a while, for the charge and energy of the cells."""
        if duration_s <= 0.0 or not (drive.singles or drive.shorts):
            return
        if drive.linear and self._line_ohm is None:
            nets = drive.nets
            for array, cells, (rows, cols) in zip(
                self.arrays.values(), nets.pairs(), nets.lines, strict=True
            ):
                array.expose(rows, cols, cells.codes, drive.levels, duration_s)
            return
        still = self._still()
        for k, (array, (rows, cols)) in enumerate(
            zip(self.arrays.values(), drive.nets.lines, strict=True)
        ):
            # With resistive lines the cells see their own nodes' voltages.
            v = still.cell_v[k] if still.cell_v is not None else cell_voltages(
                still.net_v, rows, cols
            )
            array.expose_voltages(v, duration_s)


def _compliance_moves(
    singles: list[tuple[int, SourceState]],
    net_v: list[float],
    source_i: list[float],
    inject_a: list[float],
    limited: set[int],
) -> list[tuple[int, float, float]]:
    """Sources entering or leaving compliance: (net, fixed_v, inject_a)."""
    moves = []
    for net, state in singles:
        if state.volts:
            if net in limited:
                # Held at its current limit: released once the net would
                # need more than the programmed voltage.
                direction = 1.0 if inject_a[net] > 0 else -1.0
                if (net_v[net] - state.level_v) * direction > 0:
                    moves.append((net, state.level_v, 0.0))
            elif abs(source_i[net]) > state.limit_a * (1 + _LIMIT_TOLERANCE):
                moves.append(
                    (net, math.nan, math.copysign(state.limit_a, source_i[net]))
                )
        elif net in limited:
            # Held at its voltage limit: released once the load takes less
            # than the programmed current.
            if abs(source_i[net]) < abs(state.level_a):
                moves.append((net, math.nan, state.level_a))
        elif abs(net_v[net]) > state.limit_v * (1 + _LIMIT_TOLERANCE):
            moves.append((net, math.copysign(state.limit_v, net_v[net]), 0.0))
    return moves


def _voltage_bound(drive: _Drive) -> float:
    """The largest |V| any net can reach under this drive, V: that of a
    voltage source's level or a current source's voltage limit."""
    bound = max((abs(v) for v in drive.levels if v == v), default=0.0)
    for _, state in drive.singles:
        bound = max(bound, abs(state.level_v) if state.volts else abs(state.limit_v))
    return bound


def _cell_limits(drive: _Drive, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per cell, the tightest current limit of the sources on its two lines, A."""
    limit_a = np.full(drive.nets.n_nets, np.inf)
    for net, state in drive.singles:
        limit_a[net] = state.limit_a if state.volts else abs(state.level_a)
    return np.minimum(limit_a[rows][:, None], limit_a[cols][None, :])


def _current_weights(
    array: CellArray, carrying: _NetCells, drive: _Drive
) -> list[float]:
    """Per cell carrying a net's current, what it adds to the net per siemens, A/S."""
    levels = drive.levels
    if array.ohmic_at(drive.span_v):  # no cell beyond the ohmic region
        return carrying.weights(levels)
    preset = array.preset
    by_family = {}
    for kind in array.families:
        per_siemens = partial(current_per_siemens, preset, family=kind)
        by_family[kind] = carrying.weights(levels, per_siemens)
    if len(by_family) == 1:
        return by_family[array.families[0]]
    family = array.family.reshape(-1)[carrying.cells].tolist()
    return [by_family[kind][k] for k, kind in enumerate(family)]


def _open_circuit(state: SourceState) -> tuple[float, float, bool]:
    """Reading of a channel that is on but reaches no chip line."""
    if state.volts:
        return (state.level_v, 0.0, False)
    if state.level_a == 0:
        return (0.0, 0.0, False)
    return (math.copysign(state.limit_v, state.level_a), 0.0, True)


# Reading a bench file.


def _load_bench_station(path: Path, station: Any) -> Station:
    if station is None:
        raise ConfigError(f"{path}: station: required key is missing (a station file)")
    if not isinstance(station, (str, Path)):
        raise ConfigError(
            f"{path}: station: {station!r} is not the path of a station file"
        )
    station_path = Path(station)
    if not station_path.is_absolute():
        station_path = path.parent / station_path
    try:
        return load_station(station_path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: station: {exc}") from None


def _bench_seed(path: Path, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{path}: seed: {seed!r} is not an integer >= 0")
    return seed


def _bench_fraction(path: Path, fraction: Any) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ConfigError(f"{path}: stuck_fraction: {fraction!r} is not a number")
    if not 0 <= fraction <= 1:
        raise ConfigError(f"{path}: stuck_fraction: {fraction} must be in [0, 1]")
    return float(fraction)


def _bench_preset(path: Path, station: Station, device: Any) -> DevicePreset:
    if not isinstance(device, dict):
        raise ConfigError(f"{path}: device: expected a mapping of preset fields")
    assert station.chip_spec is not None
    try:
        return DevicePreset.load(station.chip_spec.preset, **device)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: device: {exc}") from None


def _bench_formed(path: Path, station: Station, formed: Any) -> dict[str, bool]:
    if not isinstance(formed, dict):
        raise ConfigError(f"{path}: formed: expected a mapping of array: true or false")
    assert station.chip_spec is not None
    for name, value in formed.items():
        if name not in station.chip_spec.arrays:
            raise ConfigError(
                f"{path}: formed.{name}: no such array; the chip has "
                f"{', '.join(station.chip_spec.arrays)}"
            )
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: formed.{name}: {value!r} is not true or false")
    return dict(formed)


def _bench_timing(path: Path, timing: Any) -> Timing:
    if not isinstance(timing, dict):
        raise ConfigError(f"{path}: timing: expected a mapping of timing figures")
    known = {field.name for field in fields(Timing)}
    unknown = sorted(set(timing) - known)
    if unknown:
        raise ConfigError(
            f"{path}: timing.{unknown[0]}: unknown key; "
            f"allowed: {', '.join(sorted(known))}"
        )
    try:
        return replace(Timing(), **timing)
    except ValueError as exc:
        raise ConfigError(f"{path}: timing.{exc}") from None


def _canonical_resource(name: str) -> str:
    from pyvisa import rname

    try:
        return str(rname.parse_resource_name(name))
    except rname.InvalidResourceName:
        return name


# One bench per bench file and process.

_BENCHES: dict[Path, Bench] = {}
_BENCHES_LOCK = threading.Lock()


def bench_for(path: str | Path) -> Bench:
    """The process's bench for a bench file, built on first use.

    Every caller naming the same file (after resolving the path) gets the
    same bench, so instruments opened through several resource managers share
    one chip and one clock.
    """
    key = Path(path).resolve()
    with _BENCHES_LOCK:
        bench = _BENCHES.get(key)
        if bench is None:
            bench = _BENCHES[key] = Bench.from_file(key)
            log.info("bench %s built (seed %d)", key, bench.seed)
        return bench


def forget(path: str | Path) -> None:
    """Drop the process's bench for a bench file; the next use builds it anew."""
    with _BENCHES_LOCK:
        _BENCHES.pop(Path(path).resolve(), None)
