"""Cells of a memristor crossbar: bipolar threshold switching with noise.

Each cell has a state ``w`` in [0, 1] between its low and high conductance,
``G = g_min + (g_max - g_min) * w``, and conducts linearly (``I = G * V``).
A cell held above its SET threshold relaxes toward ``w = 1``, below its
(negative) RESET threshold toward ``w = 0``, at a rate that grows as a power
of the overdrive, as in the VTEAM family of models::

    r_set(v)   = rate_set_per_s   * (v / v_set_v   - 1) ** alpha_set
    r_reset(v) = rate_reset_per_s * (v / v_reset_v - 1) ** alpha_reset

Between the thresholds nothing changes. For ``P`` identical pulses of width
``dt`` from ``w = 0`` this gives the saturating pulse response

    G(P) = (g_max - g_min) * (1 - exp(-P / A)) + g_min,  A = 1 / (r(v) * dt),

with separate ``A`` for potentiation and depression. On top of it: cycle-to-
cycle and programming noise on every switching event, a device-to-device
spread of every cell's parameters, stuck cells and read noise.

The parameters of one kind of device form a :class:`DevicePreset`, kept in
``data/presets/<name>.yaml`` with the unit and source of every value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "data" / "presets"


@dataclass(frozen=True)
class DevicePreset:
    """The parameters of one kind of memristor cell, in SI units.

    Attributes
    ----------
    g_min_s : float
        Conductance of the fully RESET cell (``w = 0``), S.
    g_max_s : float
        Conductance of the fully SET cell (``w = 1``), S.
    v_set_v : float
        SET threshold, V (positive): above it the state rises toward 1.
    v_reset_v : float
        RESET threshold, V (negative): below it the state falls toward 0.
    rate_set_per_s : float
        SET rate at an overdrive ``v / v_set_v - 1`` of 1, 1/s.
    rate_reset_per_s : float
        RESET rate at an overdrive ``v / v_reset_v - 1`` of 1, 1/s.
    alpha_set : float
        Exponent of the SET rate's overdrive dependence, dimensionless.
    alpha_reset : float
        Exponent of the RESET rate's overdrive dependence, dimensionless.
    c2c_sigma : float
        Cycle-to-cycle noise: relative standard deviation of the state change
        of one switching event, dimensionless.
    prog_sigma : float
        Programming noise: standard deviation of the state after a switching
        event, as a fraction of the conductance window, dimensionless.
    d2d_sigma : float
        Device-to-device spread: log standard deviation of each cell's
        conductances, thresholds and rates about the preset's values,
        dimensionless.
    read_sigma : float
        Read noise: relative standard deviation of one conductance reading,
        dimensionless.
    thermal_noise_a : float
        Standard deviation of the current noise floor added to a measured
        current, A.
    read_voltage_v : float
        Read voltage, V; well inside both thresholds.
    initial_state : float
        Mean state of a formed cell before any programming, dimensionless.
    initial_state_sigma : float
        Standard deviation of the formed cells' state, dimensionless.
    """

    g_min_s: float
    g_max_s: float
    v_set_v: float
    v_reset_v: float
    rate_set_per_s: float
    rate_reset_per_s: float
    alpha_set: float
    alpha_reset: float
    c2c_sigma: float
    prog_sigma: float
    d2d_sigma: float
    read_sigma: float
    thermal_noise_a: float
    read_voltage_v: float
    initial_state: float
    initial_state_sigma: float

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, Real):
                text = isinstance(value, str)
                hint = " (YAML needs a decimal point: 2.0e-11)" if text else ""
                raise ValueError(f"{field.name}: {value!r} is not a number{hint}")
            object.__setattr__(self, field.name, float(value))
        self._check_ranges()

    def _check_ranges(self) -> None:
        rates = ("rate_set_per_s", "rate_reset_per_s", "alpha_set", "alpha_reset")
        for name in ("g_min_s", "v_set_v", "read_voltage_v", *rates):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be > 0")
        spreads = ("c2c_sigma", "prog_sigma", "d2d_sigma", "read_sigma")
        for name in (*spreads, "thermal_noise_a", "initial_state_sigma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 0")
        if not self.g_max_s > self.g_min_s:
            raise ValueError(
                f"g_max_s: {self.g_max_s} S must exceed g_min_s {self.g_min_s} S"
            )
        if not self.v_reset_v < 0:
            raise ValueError(f"v_reset_v: {self.v_reset_v} V must be < 0")
        if not self.read_voltage_v < min(self.v_set_v, -self.v_reset_v):
            raise ValueError(
                f"read_voltage_v: {self.read_voltage_v} V must stay inside the "
                f"thresholds {self.v_reset_v} V and {self.v_set_v} V"
            )
        if not 0 <= self.initial_state <= 1:
            raise ValueError(f"initial_state: {self.initial_state} must be in [0, 1]")

    @classmethod
    def load(cls, name_or_path: str | Path, **overrides: Any) -> DevicePreset:
        """Read a preset file, with some fields replaced.

        Parameters
        ----------
        name_or_path : str or Path
            A preset name (``"perovskite"`` reads
            ``data/presets/perovskite.yaml``) or the path of a preset file.
        **overrides
            Field values that replace the file's, e.g. ``c2c_sigma=0.02``.

        Returns
        -------
        DevicePreset

        Raises
        ------
        ValueError
            If the file is missing or unreadable, names an unknown key, lacks
            a field, or a value is out of range; the message names the file
            and the key.
        """
        path = _preset_path(name_or_path)
        data = _read_mapping(path)
        known = {field.name for field in fields(cls)}
        for origin, mapping in (("key", data), ("override", overrides)):
            unknown = sorted(set(mapping) - known)
            if unknown:
                raise ValueError(
                    f"{path}: unknown {origin} '{unknown[0]}'; the fields are "
                    f"{', '.join(sorted(known))}"
                )
        values = {**data, **overrides}
        missing = [name for name in sorted(known) if name not in values]
        if missing:
            raise ValueError(f"{path}: required key '{missing[0]}' is missing")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _preset_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".yaml"):
        path = Path(name_or_path)
    else:
        path = PRESET_DIR / f"{text}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(
            f"{path}: no such preset file (presets in {PRESET_DIR}: {', '.join(names)})"
        )
    return path


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the preset: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of field: value")
    return data


class Switching:
    """The cells that one held voltage switches, and how far: one event's plan.

    Made by :meth:`CellArray.switching`. The cells are listed in row-major
    order, the order in which an event draws their noise.

    Attributes
    ----------
    cells : list of int
        Flat (row-major) index of each switching cell.
    target : list of float
        State each cell moves toward: 1.0 (SET) or 0.0 (RESET).
    factor : list of float
        Fraction of the way to the target each cell moves, before noise:
        ``1 - exp(-rate * duration)``.
    """

    __slots__ = ("cells", "target", "factor")

    def __init__(
        self, cells: list[int], target: list[float], factor: list[float]
    ) -> None:
        self.cells = cells
        self.target = target
        self.factor = factor

    @property
    def size(self) -> int:
        """Number of switching cells."""
        return len(self.cells)


def _fraction(
    v: float, threshold_v: float, rate_per_s: float, alpha: float, duration_s: float
) -> float:
    """Fraction of the way to its limit a cell held at `v` moves, noise-free."""
    rate = rate_per_s * (v / threshold_v - 1.0) ** alpha
    return -math.expm1(-(rate * duration_s))


class CellArray:
    """The cells of one crossbar array, vectorized.

    Every cell draws its own conductances, thresholds and rates from the
    preset's device-to-device spread once, at construction, and starts formed
    in its low state. The generator is kept for the cycle-to-cycle and
    programming noise of later calls, so one seed reproduces a whole history.
    Read noise comes from its own generator when one is given, so that how
    often the cells are read does not change the noise their switching gets.

    Parameters
    ----------
    rows, cols : int
        Size of the array.
    preset : DevicePreset
        The kind of device.
    rng : numpy.random.Generator
        Source of every random draw of this array but the read noise.
    stuck_fraction : float
        Fraction of cells that never switch: half stuck in the low state
        (``w = 0``), half in the high state (``w = 1``).
    read_rng : numpy.random.Generator, optional
        Source of the read noise; `rng` when not given.

    Attributes
    ----------
    rows, cols : int
        Size of the array.
    preset : DevicePreset
        The kind of device.
    g_min_cell_s, g_max_cell_s : numpy.ndarray
        ``(rows, cols)`` each cell's own low and high conductance, S.
    v_set_cell_v, v_reset_cell_v : numpy.ndarray
        ``(rows, cols)`` each cell's own SET and RESET threshold, V.
    rate_set_cell_per_s, rate_reset_cell_per_s : numpy.ndarray
        ``(rows, cols)`` each cell's own SET and RESET rate, 1/s.
        The per-cell parameters are drawn once, at construction, and are
        read-only.
    switch_count : numpy.ndarray of int
        ``(rows, cols)`` number of switching events each cell has seen.
    stuck_low, stuck_high : numpy.ndarray of bool
        ``(rows, cols)`` cells stuck in the low or the high state.
    lowest_set_v, highest_reset_v : float
        The SET and RESET thresholds nearest to 0 V among the cells that can
        switch, V: no voltage between them changes a cell.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        preset: DevicePreset,
        rng: np.random.Generator,
        stuck_fraction: float = 0.0,
        read_rng: np.random.Generator | None = None,
    ) -> None:
        if rows < 1 or cols < 1:
            raise ValueError(f"array size {rows} x {cols}: both must be >= 1")
        if not 0 <= stuck_fraction <= 1:
            raise ValueError(f"stuck_fraction: {stuck_fraction} must be in [0, 1]")
        self.rows = rows
        self.cols = cols
        self.preset = preset
        self._rng = rng
        self._read_rng = rng if read_rng is None else read_rng
        self._sample_cells()
        self._window_s = self.g_max_cell_s - self.g_min_cell_s
        self._g: np.ndarray | None = None
        self._thresholds = np.stack(
            [
                self.v_set_cell_v.reshape(-1),
                self.v_reset_cell_v.reshape(-1),
                self.rate_set_cell_per_s.reshape(-1),
                self.rate_reset_cell_per_s.reshape(-1),
            ]
        )

        self._w = np.clip(
            preset.initial_state
            + preset.initial_state_sigma * rng.standard_normal(self.shape),
            0.0,
            1.0,
        )
        self.switch_count = np.zeros(self.shape, dtype=np.int64)
        self._choose_stuck(stuck_fraction)
        self._find_threshold_extremes()

    def _sample_cells(self) -> None:
        p = self.preset

        def spread(value: float) -> np.ndarray:
            factor = np.exp(p.d2d_sigma * self._rng.standard_normal(self.shape))
            return value * factor

        self.g_min_cell_s = spread(p.g_min_s)
        self.g_max_cell_s = spread(p.g_max_s)
        self.v_set_cell_v = spread(p.v_set_v)
        self.v_reset_cell_v = spread(p.v_reset_v)
        self.rate_set_cell_per_s = spread(p.rate_set_per_s)
        self.rate_reset_cell_per_s = spread(p.rate_reset_per_s)

    def _choose_stuck(self, stuck_fraction: float) -> None:
        n_cells = self.rows * self.cols
        n_stuck = round(stuck_fraction * n_cells)
        order = self._rng.permutation(n_cells)
        self.stuck_low = np.zeros(self.shape, dtype=bool)
        self.stuck_high = np.zeros(self.shape, dtype=bool)
        self.stuck_low.flat[order[: n_stuck // 2]] = True
        self.stuck_high.flat[order[n_stuck // 2 : n_stuck]] = True
        self._w[self.stuck_low] = 0.0
        self._w[self.stuck_high] = 1.0
        self._free = ~(self.stuck_low | self.stuck_high)
        self._free_flat = self._free.reshape(-1)

    def _find_threshold_extremes(self) -> None:
        # No voltage between the thresholds nearest to 0 V of the cells that
        # can switch changes anything.
        free = self._free
        self.lowest_set_v = float(self.v_set_cell_v.min(where=free, initial=np.inf))
        self.highest_reset_v = float(
            self.v_reset_cell_v.max(where=free, initial=-np.inf)
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Size of the array, ``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def state(self) -> np.ndarray:
        """Copy of every cell's state ``w`` in [0, 1], ``(rows, cols)``."""
        return self._w.copy()

    @property
    def conductance_s(self) -> np.ndarray:
        """Present small-signal conductance of every cell, S, without noise."""
        return self.present_conductance_s().copy()

    def present_conductance_s(self) -> np.ndarray:
        """The present noise-free conductances, S, shared: read, never change.

        Kept until the cells change, so that solving the circuit again under
        unchanged cells does not compute them again.
        """
        g = self._g
        if g is None:
            g = self._g = self.g_min_cell_s + self._window_s * self._w
            g.setflags(write=False)
        return g

    def conductance_of(self, cell: int, states: list[float]) -> list[float]:
        """Conductance, S, one cell (flat index) has in each of some states."""
        low = float(self.g_min_cell_s.reshape(-1)[cell])
        window = float(self._window_s.reshape(-1)[cell])
        return [low + window * w for w in states]

    def highest_conductance_s(self, cell: int) -> float:
        """The higher of a cell's low and high conductances, S (flat index)."""
        return max(
            float(self.g_min_cell_s.reshape(-1)[cell]),
            float(self.g_max_cell_s.reshape(-1)[cell]),
        )

    def read_conductance(self) -> np.ndarray:
        """Measure every cell's conductance once, with read noise.

        Returns
        -------
        numpy.ndarray
            ``(rows, cols)`` conductance, S: ``G * (1 + read_sigma * N(0, 1))``
            with an independent draw per cell and per call.
        """
        noise = self._read_rng.standard_normal(self.shape)
        return self.present_conductance_s() * self.read_factors(noise)

    def read_factors(self, noise: np.ndarray) -> np.ndarray:
        """What reading multiplies conductances by, for standard normal `noise`."""
        return 1.0 + self.preset.read_sigma * noise

    def set_state(self, w: float | np.ndarray) -> None:
        """Put the cells directly into state ``w``, as a test fixture does.

        Parameters
        ----------
        w : float or numpy.ndarray
            State in [0, 1], one value or ``(rows, cols)``. Stuck cells keep
            their state.
        """
        w = np.broadcast_to(np.asarray(w, dtype=float), self.shape)
        if not ((w >= 0) & (w <= 1)).all():
            raise ValueError("state must be in [0, 1]")
        self._w[self._free] = w[self._free]
        self._g = None

    def evolve(self, v_cell: np.ndarray, duration_s: float) -> None:
        """Let the cells switch under voltages held for a while.

        Each call with a cell beyond a threshold is one switching event for
        that cell: its change is drawn with cycle-to-cycle and programming
        noise once, so a pulse should be applied in one call.

        Parameters
        ----------
        v_cell : numpy.ndarray
            ``(rows, cols)`` voltage across every cell, V, row line minus
            column line; constant over the interval.
        duration_s : float
            How long the voltages are held, s.
        """
        plan = self.switching(v_cell, duration_s)
        if plan is not None:
            self.repeat(plan, self._rng.standard_normal((1, 2, plan.size)))

    def switching(self, v_cell: np.ndarray, duration_s: float) -> Switching | None:
        """The cells that voltages held for `duration_s` switch, or None.

        Parameters are those of :meth:`evolve`; nothing changes and nothing
        is drawn.
        """
        v = np.asarray(v_cell, dtype=float)
        if v.shape != self.shape:
            raise ValueError(f"v_cell has shape {v.shape}, the array {self.shape}")
        if duration_s < 0:
            raise ValueError(f"duration_s: {duration_s} s must be >= 0")
        if duration_s == 0:
            return None
        if v.max() <= self.lowest_set_v and v.min() >= self.highest_reset_v:
            return None
        flat = v.reshape(-1)
        cells = np.flatnonzero(
            (flat > self.lowest_set_v) | (flat < self.highest_reset_v)
        )
        return self.switching_among(cells.tolist(), flat[cells].tolist(), duration_s)

    def switching_among(
        self, cells: list[int], v: list[float], duration_s: float
    ) -> Switching | None:
        """Which of some cells their voltages switch, or None.

        Parameters
        ----------
        cells : list of int
            Flat (row-major) indices of the cells that might switch, in
            ascending order; the others are known to stay.
        v : list of float
            The voltage across each of them, V.
        duration_s : float
            How long the voltages are held, s.
        """
        if duration_s == 0:
            return None
        p = self.preset
        switching: list[int] = []
        targets: list[float] = []
        factors: list[float] = []
        table = self._thresholds[:, cells].T.tolist()
        free = self._free_flat[cells].tolist()
        # Few cells switch at once: one at a time is faster than numpy here.
        for cell, volts, (v_set, v_reset, rate_set, rate_reset), movable in zip(
            cells, v, table, free, strict=True
        ):
            if not movable:
                continue
            if volts > v_set:
                factor = _fraction(volts, v_set, rate_set, p.alpha_set, duration_s)
                targets.append(1.0)
            elif volts < v_reset:
                factor = _fraction(
                    volts, v_reset, rate_reset, p.alpha_reset, duration_s
                )
                targets.append(0.0)
            else:
                continue
            switching.append(cell)
            factors.append(factor)
        return Switching(switching, targets, factors) if switching else None

    def repeat(self, plan: Switching, noise: np.ndarray) -> list[list[float]]:
        """Apply one event of `plan` per row of `noise`, one after another.

        The same as as many :meth:`evolve` calls under the voltages that made
        `plan`, each with its row of `noise` as the draws.

        Parameters
        ----------
        plan : Switching
            The event, from :meth:`switching`.
        noise : numpy.ndarray
            ``(events, 2, plan.size)`` standard normal draws: per event, the
            cycle-to-cycle draws of the cells, then their programming draws.

        Returns
        -------
        list of list of float
            Per switching cell, its state after each event.
        """
        p = self.preset
        c2c, prog = p.c2c_sigma, p.prog_sigma
        flat = self._w.reshape(-1)
        counts = self.switch_count.reshape(-1)
        draws = noise.tolist()
        trajectories = []
        for k, (cell, target, factor) in enumerate(
            zip(plan.cells, plan.target, plan.factor, strict=True)
        ):
            w = float(flat[cell])
            trajectory = []
            for event in draws:
                change = (target - w) * factor * (1.0 + c2c * event[0][k])
                w = w + change + prog * event[1][k]
                w = w if w > 0.0 else 0.0  # clipped as numpy clips: max, then min
                w = w if w < 1.0 else 1.0
                trajectory.append(w)
            trajectories.append(trajectory)
            flat[cell] = w
            counts[cell] += len(draws)
        self._g = None
        return trajectories
