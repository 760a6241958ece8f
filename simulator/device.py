"""Cells of a memristor crossbar: a calibrated halide-perovskite cell model.

Each cell has a state ``w`` in [0, 1] between its low and high conductance,
``G = g_min + (g_max - g_min) * w``, its conductance at the read voltage.
A cell held above its SET threshold relaxes toward ``w = 1``, below its
(negative) RESET threshold toward ``w = 0``, at a rate that grows as a power
of the overdrive, as in the VTEAM family of models::

    r_set(v)   = rate_set_per_s   * (v / v_set_v   - 1) ** alpha_set
    r_reset(v) = rate_reset_per_s * (v / v_reset_v - 1) ** alpha_reset

For ``P`` identical pulses of width ``dt`` from ``w = 0`` this gives the
saturating pulse response

    G(P) = (g_max - g_min) * (1 - exp(-P / A)) + g_min,  A = 1 / (r(v) * dt),

with separate ``A`` for potentiation and depression, set by the pulses'
amplitude and width.

Around it, every figure docs/presets.md lists:

* **forming**: a fresh cell conducts ``g_pristine_s`` and does not switch
  until it has spent ``forming_time_s`` above its forming voltage; the
  current limit it forms under chooses its operator mode (non-volatile
  analog weight, volatile cell, activation cell, exponential cell) and how
  far it is SET;
* **noise**: cycle-to-cycle noise on the change of each switching event,
  programming noise that grows with the conductance, a device-to-device
  spread of every cell's parameters, stuck cells, and read noise with a
  white part and a 1/f part that grows with the time since the cell was
  written;
* **read disturb**: beyond ``read_disturb_v`` (but inside the thresholds) a
  cell creeps toward SET or RESET, without programming noise;
* **retention**: a written analog cell relaxes toward ``retention_state`` as
  a stretched exponential of the time since it was written; a volatile cell
  decays toward 0 with ``volatile_tau_s``. The bench applies it by its clock
  (:meth:`CellArray.age_to`);
* **endurance**: every SET followed by a RESET is a cycle; the window
  narrows with the cycles and the cell fails stuck at its endurance;
* **I-V**: ohmic up to ``ohmic_limit_v``, then growing as a sinh, with the
  reverse branch suppressed (self-rectification); activation cells rectify
  strongly and exponential cells follow ``V0 * (exp(V / V0) - 1)``. The
  circuit sees the cells through their chord conductance at the applied
  voltage (:meth:`CellArray.current_per_siemens`), so a read inside the
  ohmic region is exactly ``G * V``;
* **energy**: the charge and energy every cell takes, from V, I and t of
  everything applied to it (:attr:`CellArray.energy_j`).

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

MODES = ("analog", "volatile", "activation", "exponential")
"""The operator modes a cell can be formed into, by code (0 to 3)."""
ANALOG, VOLATILE, ACTIVATION, EXPONENTIAL = range(4)

#: An interval noted by nets: row nets, column nets, pair codes, the nets'
#: voltages (V), its duration (s) and the conductances then (S).
_Noted = tuple[np.ndarray, np.ndarray, np.ndarray, list[float], float, np.ndarray]

SINH, RECTIFIER, EXPONENTIAL_IV = range(3)
"""The I-V families: analog and volatile cells, activation cells, exponential."""
_FAMILY_OF_MODE = np.array([SINH, SINH, RECTIFIER, EXPONENTIAL_IV])

SINH_CEILING = 300.0
"""Largest argument of the sinh I-V; beyond it the current stops growing."""

AGE_TOLERANCE = 3e-4
"""Largest change of state, as a fraction of the window, that relaxation may
build up before the cells are aged again: far below any read noise."""

EXPOSURE_BATCH = 256
"""Intervals of applied voltages kept before their charge and energy are summed."""

_RETENTION_LEVEL = 0.1
"""Fraction of the written state's distance from the rest level whose loss
defines :meth:`DevicePreset.retention_time_s`."""


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
        event at ``w = 0``, as a fraction of the conductance window,
        dimensionless.
    prog_sigma_growth : float
        Growth of the programming noise with the state:
        ``sigma(w) = prog_sigma * (1 + prog_sigma_growth * w)``, dimensionless.
    d2d_sigma : float
        Device-to-device spread: log standard deviation of each cell's
        conductances, thresholds and rates about the preset's values,
        dimensionless.
    read_sigma : float
        White read noise: relative standard deviation of one conductance
        reading, dimensionless.
    read_flicker_q : float
        1/f read noise: a reading's relative standard deviation gains
        ``read_flicker_q * sqrt(ln((t + t_r) / (2 t_r)))``, t the time since
        the cell was written, dimensionless.
    read_flicker_time_s : float
        The read time ``t_r`` of the 1/f term, s.
    thermal_noise_a : float
        Standard deviation of the current noise floor added to a measured
        current, A.
    read_voltage_v : float
        Read voltage, V; well inside both thresholds and the ohmic region.
    read_disturb_v : float
        Above this |V| (and inside the thresholds) a held cell creeps toward
        SET (V > 0) or RESET (V < 0), V.
    read_disturb_rate_per_s : float
        Creep rate at an overdrive ``|v| / read_disturb_v - 1`` of 1, 1/s;
        0 for none.
    initial_state : float
        Mean state of a formed cell before any programming, dimensionless.
    initial_state_sigma : float
        Standard deviation of the formed cells' state, dimensionless.
    g_pristine_s : float
        Conductance of a cell that is not formed yet, S.
    v_forming_v : float
        Forming voltage, V (above ``v_set_v``).
    forming_time_s : float
        Time a fresh cell must spend above its forming voltage to form, s.
    form_volatile_below_a : float
        A cell formed under a current limit below this is volatile, A.
    form_activation_from_a : float
        A cell formed under a current limit from this one up is an
        activation cell, A; between the two it is an analog weight.
    form_exponential_from_a : float
        A cell formed under a current limit from this one up is an
        exponential cell, A.
    volatile_tau_s : float
        Time constant of the decay of a volatile cell toward ``w = 0``, s.
    retention_tau_s : float
        Time constant of the stretched-exponential relaxation of a written
        analog cell, s.
    retention_beta : float
        Stretch exponent of that relaxation, in (0, 1], dimensionless.
    retention_state : float
        State the written cells relax toward, dimensionless.
    endurance_cycles : float
        Median SET/RESET cycles a cell lasts before it fails stuck,
        dimensionless.
    endurance_sigma : float
        Log standard deviation of the cells' endurance, dimensionless.
    wear_window_loss : float
        Fraction of its window a cell has lost when it reaches its endurance
        (the window narrows in proportion to the cycles), dimensionless.
    ohmic_limit_v : float
        Up to this |V| a cell is ohmic, ``I = G * V``, V.
    iv_v0_v : float
        Beyond the ohmic region ``I = G * (V_o + V0 * sinh((|V| - V_o) / V0))``
        with this ``V0``, V.
    rectification_ratio : float
        Forward over reverse current at ``rectification_at_v``, dimensionless
        (1: symmetric).
    rectification_at_v : float
        The |V| at which ``rectification_ratio`` is given, V (beyond
        ``ohmic_limit_v``).
    activation_rectification : float
        Forward over reverse current of an activation cell at any |V|,
        dimensionless.
    exponential_v0_v : float
        ``V0`` of an exponential cell, ``I = G * V0 * (exp(V / V0) - 1)``, V.
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
    prog_sigma_growth: float
    d2d_sigma: float
    read_sigma: float
    read_flicker_q: float
    read_flicker_time_s: float
    thermal_noise_a: float
    read_voltage_v: float
    read_disturb_v: float
    read_disturb_rate_per_s: float
    initial_state: float
    initial_state_sigma: float
    g_pristine_s: float
    v_forming_v: float
    forming_time_s: float
    form_volatile_below_a: float
    form_activation_from_a: float
    form_exponential_from_a: float
    volatile_tau_s: float
    retention_tau_s: float
    retention_beta: float
    retention_state: float
    endurance_cycles: float
    endurance_sigma: float
    wear_window_loss: float
    ohmic_limit_v: float
    iv_v0_v: float
    rectification_ratio: float
    rectification_at_v: float
    activation_rectification: float
    exponential_v0_v: float

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
        positive = (
            "g_min_s", "v_set_v", "read_voltage_v", "rate_set_per_s",
            "rate_reset_per_s", "alpha_set", "alpha_reset", "read_flicker_time_s",
            "read_disturb_v", "g_pristine_s", "forming_time_s",
            "form_volatile_below_a", "volatile_tau_s", "retention_tau_s",
            "retention_beta", "endurance_cycles", "ohmic_limit_v", "iv_v0_v",
            "exponential_v0_v",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be > 0")
        spreads = (
            "c2c_sigma", "prog_sigma", "prog_sigma_growth", "d2d_sigma", "read_sigma",
            "read_flicker_q", "thermal_noise_a", "initial_state_sigma",
            "read_disturb_rate_per_s", "endurance_sigma",
        )  # fmt: skip
        for name in spreads:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 0")
        self._check_order("g_min_s", "g_max_s", "S")
        if not self.v_reset_v < 0:
            raise ValueError(f"v_reset_v: {self.v_reset_v} V must be < 0")
        if not self.read_voltage_v < min(self.v_set_v, -self.v_reset_v):
            raise ValueError(
                f"read_voltage_v: {self.read_voltage_v} V must stay inside the "
                f"thresholds {self.v_reset_v} V and {self.v_set_v} V"
            )
        if not self.read_voltage_v <= self.ohmic_limit_v:
            raise ValueError(
                f"read_voltage_v: {self.read_voltage_v} V must lie in the ohmic "
                f"region (ohmic_limit_v {self.ohmic_limit_v} V)"
            )
        self._check_order("v_set_v", "v_forming_v", "V")
        self._check_order("form_volatile_below_a", "form_activation_from_a", "A")
        self._check_order("form_activation_from_a", "form_exponential_from_a", "A")
        self._check_order("ohmic_limit_v", "rectification_at_v", "V")
        for name in ("initial_state", "retention_state"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be in [0, 1]")
        if not self.retention_beta <= 1:
            raise ValueError(f"retention_beta: {self.retention_beta} must be <= 1")
        if not 0 <= self.wear_window_loss < 1:
            raise ValueError(
                f"wear_window_loss: {self.wear_window_loss} must be in [0, 1)"
            )
        for name in ("rectification_ratio", "activation_rectification"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 1")

    def _check_order(self, low: str, high: str, unit: str) -> None:
        if not getattr(self, high) > getattr(self, low):
            raise ValueError(
                f"{high}: {getattr(self, high)} {unit} must exceed {low} "
                f"{getattr(self, low)} {unit}"
            )

    def mode_for(self, compliance_a: float) -> int:
        """The operator mode (code into :data:`MODES`) a forming current limit gives."""
        if compliance_a < self.form_volatile_below_a:
            return VOLATILE
        if compliance_a >= self.form_exponential_from_a:
            return EXPONENTIAL
        if compliance_a >= self.form_activation_from_a:
            return ACTIVATION
        return ANALOG

    def retention_time_s(self) -> float:
        """Time after which a written analog cell has lost 10 % of its
        distance from the rest level, s (from the relaxation's closed form)."""
        loss = -math.log1p(-_RETENTION_LEVEL)
        return self.retention_tau_s * loss ** (1.0 / self.retention_beta)

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


def current_per_siemens(preset: DevicePreset, v: Any, family: int = SINH) -> Any:
    """The current a cell of 1 S conductance carries at a voltage, A/S.

    Parameters
    ----------
    preset : DevicePreset
        The kind of device.
    v : float or array_like
        Voltage across the cell, V (row line minus column line).
    family : int
        The I-V family: :data:`SINH` (analog and volatile cells),
        :data:`RECTIFIER` (activation cells) or :data:`EXPONENTIAL_IV`.

    Returns
    -------
    float or numpy.ndarray
        ``I / G`` at each voltage, V (a float for a float): ``v`` itself
        inside the ohmic region of the sinh family.
    """
    # One formula for floats (few groups of cells, math) and arrays (numpy).
    fn: Any = math if isinstance(v, float) else np
    if fn is np:
        v = np.asarray(v, dtype=float)
    # Past SINH_CEILING the growth stops: far beyond any real level, it only
    # keeps a solver's trial steps (a shorted cell, say) finite.
    least = min if fn is math else np.minimum
    if family == EXPONENTIAL_IV:
        v0 = preset.exponential_v0_v
        return v0 * fn.expm1(least(v / v0, SINH_CEILING))
    ohmic, v0 = preset.ohmic_limit_v, preset.iv_v0_v
    size = abs(v)
    past = size - ohmic
    beyond = (past + abs(past)) / 2  # how far past the ohmic region, or 0
    ratio = least(beyond / v0, SINH_CEILING)
    magnitude = size + v0 * fn.sinh(ratio) - beyond
    if family == RECTIFIER:
        reverse = preset.activation_rectification
    else:
        # The reverse branch falls behind by the ratio's power of how far past
        # the ohmic region it is, so the ratio holds at rectification_at_v;
        # it stops at the same ceiling as the forward branch.
        span = preset.rectification_at_v - ohmic
        reverse = preset.rectification_ratio ** (ratio * v0 / span)
    forward = v >= 0
    return magnitude * forward - magnitude / reverse * (1 - forward)


class Switching:
    """The cells that one held voltage changes, and how far: one event's plan.

    Made by :meth:`CellArray.switching`. The cells are listed in row-major
    order, the order in which an event draws their noise.

    Attributes
    ----------
    cells : list of int
        Flat (row-major) index of each changing cell.
    target : list of float
        State each cell moves toward: 1.0 (SET) or 0.0 (RESET).
    factor : list of float
        Fraction of the way to the target each cell moves, before noise:
        ``1 - exp(-rate * duration)``.
    volts : list of float
        The voltage across each cell, V.
    counted : list of bool
        Per cell, True for a switching event (beyond a threshold: it gets
        programming noise and counts toward wear), False for a read-disturb
        creep.
    forming : bool
        Whether the voltages also form a fresh cell: the event must then be
        applied by :meth:`CellArray.evolve`, not repeated.
    """

    __slots__ = ("cells", "target", "factor", "volts", "counted", "forming")

    def __init__(
        self,
        cells: list[int],
        target: list[float],
        factor: list[float],
        volts: list[float] | None = None,
        counted: list[bool] | None = None,
        forming: bool = False,
    ) -> None:
        self.cells = cells
        self.target = target
        self.factor = factor
        self.volts = volts if volts is not None else [math.nan] * len(cells)
        self.counted = counted if counted is not None else [True] * len(cells)
        self.forming = forming

    @property
    def size(self) -> int:
        """Number of changing cells."""
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
    preset's device-to-device spread once, at construction. The generator is
    kept for the cycle-to-cycle and programming noise of later calls, so one
    seed reproduces a whole history. Read noise comes from its own generator
    when one is given, so that how often the cells are read does not change
    the noise their switching gets. The cells' forming voltage and endurance
    come from a generator spawned from `rng`, so that they do not shift the
    draws of the other parameters.

    The array keeps time as the bench tells it (:meth:`age_to`); a cell's
    relaxation and 1/f noise run from the moment it was last written. Alone,
    without a clock, the array stays at time 0 and nothing relaxes.

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
    formed : bool
        Whether the cells start formed (analog weights in their formed low
        state) or fresh (pristine, to be formed).

    Attributes
    ----------
    rows, cols : int
        Size of the array.
    preset : DevicePreset
        The kind of device.
    g_min_cell_s, g_max_cell_s : numpy.ndarray
        ``(rows, cols)`` each cell's low and high conductance, S: drawn at
        construction, then narrowed by wear.
    v_set_cell_v, v_reset_cell_v : numpy.ndarray
        ``(rows, cols)`` each cell's own SET and RESET threshold, V.
    rate_set_cell_per_s, rate_reset_cell_per_s : numpy.ndarray
        ``(rows, cols)`` each cell's own SET and RESET rate, 1/s.
    v_forming_cell_v : numpy.ndarray
        ``(rows, cols)`` each cell's own forming voltage, V.
    endurance_cell : numpy.ndarray
        ``(rows, cols)`` the cycles each cell lasts.
        The thresholds, rates, forming voltages and endurance are drawn once
        and are read-only.
    switch_count : numpy.ndarray of int
        ``(rows, cols)`` number of switching events each cell has seen.
    cycles : numpy.ndarray of int
        ``(rows, cols)`` SET/RESET cycles (a SET followed by a RESET) of each
        cell.
    formed : numpy.ndarray of bool
        ``(rows, cols)`` whether each cell is formed.
    mode : numpy.ndarray of int
        ``(rows, cols)`` operator mode of each cell, a code into
        :data:`MODES` (analog for cells not formed yet).
    stuck_low, stuck_high : numpy.ndarray of bool
        ``(rows, cols)`` cells stuck in the low or the high state.
    lowest_set_v, highest_reset_v : float
        The voltages nearest to 0 V at which some cell changes (a SET, RESET,
        forming or read-disturb threshold of a cell that can change), V: no
        voltage between them changes a cell.
    time_s : float
        The bench time the array was last told, s.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        preset: DevicePreset,
        rng: np.random.Generator,
        stuck_fraction: float = 0.0,
        read_rng: np.random.Generator | None = None,
        formed: bool = True,
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
        self._sample_life(rng.spawn(1)[0], formed)
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

    def _sample_life(self, rng: np.random.Generator, formed: bool) -> None:
        """Forming voltages, endurance, and the state of time, wear and energy."""
        p = self.preset
        self.v_forming_cell_v = p.v_forming_v * np.exp(
            p.d2d_sigma * rng.standard_normal(self.shape)
        )
        self.endurance_cell = p.endurance_cycles * np.exp(
            p.endurance_sigma * rng.standard_normal(self.shape)
        )
        self._g_min_made_s = self.g_min_cell_s.copy()
        self._window_made_s = self._window_s.copy()
        self.formed = np.full(self.shape, formed)
        self.mode = np.zeros(self.shape, dtype=np.int8)
        self._form_time_s = np.zeros(self.shape)
        self.cycles = np.zeros(self.shape, dtype=np.int64)
        self._last_target = np.zeros(self.rows * self.cols, dtype=np.int8)
        self.time_s = 0.0
        self._w_written = self._w.copy()
        self._t_written_s = np.zeros(self.shape)
        self._age_due_s = 0.0
        self._read_sigma: float | np.ndarray = p.read_sigma
        self.read_sigma_max = p.read_sigma
        self._charge_c = np.zeros(self.shape)
        self._energy_j = np.zeros(self.shape)
        #: Intervals noted by nets, not summed yet.
        self._exposure: list[_Noted] = []
        #: Intervals noted by cell voltages: (v_cell, s, conductances).
        self._exposure_cells: list[tuple[np.ndarray, float, np.ndarray]] = []
        #: Cells (flat) whose conductance changed since the first of them.
        self._changed: set[int] = set()
        self._modes_changed()

    def start_in_mode(self, mode: int) -> None:
        """Put the formed cells in an operator mode (one of :data:`MODES`, by
        index): cells that came formed so from the fab."""
        self.mode[self.formed] = mode
        self._modes_changed()
        self._find_threshold_extremes()
        self._g = None

    def _modes_changed(self) -> None:
        """Keep the views that follow forming, failures and modes up to date."""
        self._movable_flat = (self._free & self.formed).reshape(-1)
        self.unformed_any = not bool(self.formed.all())
        self.family = _FAMILY_OF_MODE[self.mode]
        #: Per cell (flat) its row, and the row of its I-V family in families.
        self._row_of_cell = np.repeat(np.arange(self.rows), self.cols)
        #: The I-V families the cells have.
        self.families = np.unique(self.family).tolist()
        #: The I-V family of every cell when they share one, else None.
        self.uniform_family: int | None = (
            self.families[0] if len(self.families) == 1 else None
        )
        self._volatile = self._free & self.formed & (self.mode == VOLATILE)
        self._volatile_any = bool(self._volatile.any())
        self._family_flat = self._family_rows(self.family.reshape(-1))

    def _find_threshold_extremes(self) -> None:
        # No voltage between the thresholds nearest to 0 V of the cells that
        # can change changes anything.
        p = self.preset
        movable = self._movable_flat.reshape(self.shape)
        low = float(self.v_set_cell_v.min(where=movable, initial=np.inf))
        high = float(self.v_reset_cell_v.max(where=movable, initial=-np.inf))
        if p.read_disturb_rate_per_s > 0 and movable.any():
            low = min(low, p.read_disturb_v)
            high = max(high, -p.read_disturb_v)
        fresh = self._free & ~self.formed
        low = min(low, float(self.v_forming_cell_v.min(where=fresh, initial=np.inf)))
        self.lowest_set_v = low
        self.highest_reset_v = high

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
        """Present conductance of every cell at the read voltage, S, without noise."""
        return self.present_conductance_s().copy()

    @property
    def ohmic_limit_v(self) -> float:
        """The |V| up to which every cell of the sinh family is ohmic, V."""
        return self.preset.ohmic_limit_v

    @property
    def age_due_s(self) -> float:
        """The bench time from which :meth:`age_to` evaluates the relaxation, s."""
        return self._age_due_s

    @property
    def decaying(self) -> bool:
        """Whether some volatile cell is still decaying noticeably."""
        return self._volatile_any and self._volatile_alive()

    def present_conductance_s(self) -> np.ndarray:
        """The present noise-free conductances, S, shared: read, never change.

        Kept until the cells change, so that solving the circuit again under
        unchanged cells does not compute them again.
        """
        g = self._g
        if g is None:
            g = self.g_min_cell_s + self._window_s * self._w
            if self.unformed_any:
                g[~self.formed] = self.preset.g_pristine_s
            g.setflags(write=False)
            self._g = g
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

    # The I-V of the cells.

    def current_per_siemens(self, v: Any, family: int | None = None) -> np.ndarray:
        """``I / G`` at voltages `v`, A/S, for one I-V family or per cell.

        With `family` None, `v` is ``(..., rows, cols)`` and each cell takes
        its own family; otherwise every voltage takes that family.
        """
        if family is not None:
            return current_per_siemens(self.preset, v, family)
        uniform = self.uniform_family
        if uniform is not None:
            return current_per_siemens(self.preset, v, uniform)
        out = np.empty(np.broadcast_shapes(np.shape(v), self.shape))
        v = np.broadcast_to(np.asarray(v, dtype=float), out.shape)
        for kind in (SINH, RECTIFIER, EXPONENTIAL_IV):
            cells = self.family == kind
            if cells.any():
                out[..., cells] = current_per_siemens(self.preset, v[..., cells], kind)
        return out

    def ohmic_at(self, v_max: float) -> bool:
        """Whether every cell conducts ``G * V`` at every |V| up to `v_max`."""
        return self.uniform_family == SINH and v_max <= self.preset.ohmic_limit_v

    def reach_per_siemens(self, v: list[float]) -> list[float]:
        """The largest |I / G| any of the array's I-V families has at each
        voltage of `v`, A/S (``|v|`` itself in the ohmic region)."""
        p = self.preset
        ohmic_v = p.ohmic_limit_v if self.uniform_family == SINH else -1.0
        return [
            abs(volts) if -ohmic_v <= volts <= ohmic_v
            else max(abs(current_per_siemens(p, volts, kind)) for kind in self.families)
            for volts in v
        ]

    def group_currents(
        self,
        g: np.ndarray,
        codes: np.ndarray,
        n_nets: int,
        groups: list[tuple[int, int, float]],
    ) -> list[float]:
        """Currents of groups of cells that share a voltage, A.

        Parameters
        ----------
        g : numpy.ndarray
            ``(rows, cols)`` conductances, S.
        codes : numpy.ndarray
            Each cell's group code, ``row net * n_nets + column net``, flat.
        n_nets : int
            Number of nets.
        groups : list of (int, int, float)
            Each group's row net, column net and voltage, V.
        """
        flat = g.reshape(-1)
        wanted = [row * n_nets + col for row, col, _ in groups]
        volts = np.array([v for *_, v in groups])
        total = np.zeros(len(groups))
        for kind in self.families:
            weights = flat if len(self.families) == 1 else flat * (
                self.family.reshape(-1) == kind
            )
            sums_s = np.bincount(codes, weights, n_nets * n_nets)[wanted]
            total += sums_s * current_per_siemens(self.preset, volts, kind)
        return total.tolist()

    def tangent(
        self, v_cell: np.ndarray, g: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every cell's current (A) and its slope dI/dV (S) at its voltage."""
        step_v = 1e-6
        current_a = g * self.current_per_siemens(v_cell)
        above = self.current_per_siemens(v_cell + step_v)
        below = self.current_per_siemens(v_cell - step_v)
        return current_a, g * (above - below) / (2 * step_v)

    # Reading.

    def read_conductance(self) -> np.ndarray:
        """Measure every cell's conductance once, with read noise.

        Returns
        -------
        numpy.ndarray
            ``(rows, cols)`` conductance, S: ``G * (1 + sigma * N(0, 1))``
            with an independent draw per cell and per call; ``sigma`` is the
            white read noise with the 1/f part of each cell's age.
        """
        noise = self._read_rng.standard_normal(self.shape)
        return self.present_conductance_s() * self.read_factors(noise)

    def read_factors(
        self, noise: np.ndarray, cells: np.ndarray | None = None
    ) -> np.ndarray:
        """What reading multiplies conductances by, for standard normal `noise`.

        Parameters
        ----------
        noise : numpy.ndarray
            ``(rows, cols)``, or ``(len(cells), ...)`` for some cells.
        cells : numpy.ndarray of int, optional
            The flat indices of the cells `noise` is for (its first axis).
        """
        sigma = self._read_sigma
        if isinstance(sigma, np.ndarray):
            if cells is not None:
                sigma = sigma.reshape(-1)[cells]
                sigma = sigma.reshape(sigma.shape + (1,) * (noise.ndim - 1))
        return 1.0 + sigma * noise

    # Time.

    def age_to(self, now_s: float) -> bool:
        """Let the cells relax up to bench time `now_s`; True if they changed.

        Written analog cells relax toward the rest state as a stretched
        exponential of the time since they were written, volatile cells decay
        with their time constant. The closed form is evaluated only once the
        change it may have built up since the last evaluation could reach
        :data:`AGE_TOLERANCE` of the window.
        """
        self.time_s = now_s
        if now_s < self._age_due_s:
            return False
        self._changing()
        p = self.preset
        age = np.maximum(now_s - self._t_written_s, 0.0)
        rest = p.retention_state
        relaxed = rest + (self._w_written - rest) * np.exp(
            -((age / p.retention_tau_s) ** p.retention_beta)
        )
        volatile = self._volatile
        if volatile.any():
            relaxed[volatile] = self._w_written[volatile] * np.exp(
                -age[volatile] / p.volatile_tau_s
            )
        relaxing = self._free & self.formed
        np.copyto(self._w, relaxed, where=relaxing)
        self._g = None
        if p.read_flicker_q > 0:
            t_r = p.read_flicker_time_s
            flicker = np.log(np.maximum((age + t_r) / (2 * t_r), 1.0))
            self._read_sigma = np.sqrt(p.read_sigma**2 + p.read_flicker_q**2 * flicker)
            self.read_sigma_max = float(self._read_sigma.max())
        step_s = p.retention_tau_s * AGE_TOLERANCE ** (1.0 / p.retention_beta)
        if volatile.any() and self._volatile_alive():
            step_s = min(step_s, AGE_TOLERANCE * p.volatile_tau_s)
        self._age_due_s = now_s + step_s
        return True

    def _volatile_alive(self) -> bool:
        age = self.time_s - self._t_written_s[self._volatile]
        tau_s = self.preset.volatile_tau_s
        left = self._w_written[self._volatile] * np.exp(-age / tau_s)
        return bool((left > AGE_TOLERANCE).any())

    def _written(self, cells: Any) -> None:
        """Cells just written: their relaxation and 1/f noise start again now."""
        if len(cells) > 8:
            self._w_written.reshape(-1)[cells] = self._w.reshape(-1)[cells]
            self._t_written_s.reshape(-1)[cells] = self.time_s
            volatile = bool(self._volatile.reshape(-1)[cells].any())
        else:  # the few cells a pulse switches: faster one by one
            w, w_written = self._w.reshape(-1), self._w_written.reshape(-1)
            t_written = self._t_written_s.reshape(-1)
            for cell in cells:
                w_written[cell] = w[cell]
                t_written[cell] = self.time_s
            volatile = self._volatile_any and bool(
                self._volatile.reshape(-1)[cells].any()
            )
        if volatile:
            self._age_due_s = self.time_s

    # Energy.

    def expose(
        self,
        row_net: np.ndarray,
        col_net: np.ndarray,
        codes: np.ndarray,
        net_v: list[float],
        duration_s: float,
    ) -> None:
        """Note voltages held across the cells, for their charge and energy.

        Parameters
        ----------
        row_net, col_net : numpy.ndarray
            The net of every row and of every column line.
        codes : numpy.ndarray
            Each cell's ``row net * n_nets + column net``, flat.
        net_v : list of float
            Every net's voltage, V (``n_nets`` of them).
        duration_s : float
            How long they were held, s.
        """
        if not any(net_v):
            return  # every line at 0 V
        g = self.present_conductance_s()  # kept: it is replaced, never changed
        noted = self._exposure
        if noted:
            last = noted[-1]
            if last[2] is codes and last[3] is net_v and last[5] is g:
                noted[-1] = (row_net, col_net, codes, net_v, last[4] + duration_s, g)
                return  # the same again
        noted.append((row_net, col_net, codes, net_v, duration_s, g))
        if len(noted) >= EXPOSURE_BATCH:
            self._account()

    def expose_voltages(self, v_cell: np.ndarray, duration_s: float) -> None:
        """As :meth:`expose`, with the voltage across every cell given, V."""
        self._exposure_cells.append((v_cell, duration_s, self.present_conductance_s()))
        if len(self._exposure_cells) >= EXPOSURE_BATCH:
            self._account()

    def _changing(self, cells: Any = None) -> None:
        """Before conductances change: the cells (flat) that will, or all (None)."""
        if cells is None:
            self._account()
        elif self._exposure:
            self._changed.update(cells)

    def _account(self) -> None:
        """Sum the noted intervals into every cell's charge and energy, each
        at the conductances the cells had when it was noted.

        Intervals noted by nets are summed at the present conductances; the
        few cells whose conductance changed since get the difference,
        interval by interval. An interval whose column lines share one
        voltage (every read and analog multiply) is summed per row; any other
        per pair of nets, then spread to the cells by their pairs.
        """
        if self._exposure:
            by_nets: dict[int, list[_Noted]] = {}
            for entry in self._exposure:
                by_nets.setdefault(len(entry[3]), []).append(entry)
            for entries in by_nets.values():
                self._account_nets(entries)
            self._exposure = []
            self._changed.clear()
        if self._exposure_cells:
            v = np.stack([v_cell.reshape(-1) for v_cell, _, _ in self._exposure_cells])
            times_s = np.array([duration for _, duration, _ in self._exposure_cells])
            g = np.stack([g.reshape(-1) for _, _, g in self._exposure_cells])
            doses = self._doses(v, times_s)
            mine = self._family_rows(self.family.reshape(-1))
            cells = np.arange(self.rows * self.cols)
            totals = (self._charge_c, self._energy_j)
            for total, dose in zip(totals, doses, strict=True):
                total += (g * dose[mine, :, cells].T).sum(axis=0).reshape(self.shape)
            self._exposure_cells = []

    def _account_nets(self, entries: list[_Noted]) -> None:
        """Sum intervals noted by nets, all with the same number of nets."""
        # The patterns of nets the intervals share, each stacked once.
        patterns: dict[int, int] = {}
        kept: list[_Noted] = []
        for entry in entries:
            if patterns.setdefault(id(entry[2]), len(patterns)) == len(kept):
                kept.append(entry)
        order = np.array([patterns[id(entry[2])] for entry in entries])
        cols_of = np.stack([entry[1] for entry in kept])

        levels = np.array([entry[3] for entry in entries])
        times_s = np.array([entry[4] for entry in entries])
        col_v = np.take_along_axis(levels, cols_of[order], 1)
        even = (col_v == col_v[:, :1]).all(axis=1)
        family, flat_rows = self._family_flat, self._row_of_cell
        main = np.zeros((2, self.rows * self.cols))
        at_changed = []  # per group: its intervals and their doses at changed cells
        changed = np.fromiter(self._changed, dtype=np.intp, count=len(self._changed))

        if even.any():  # each cell at its row's voltage less the columns'
            picked = np.flatnonzero(even)
            rows = np.stack([entry[0] for entry in kept])[order[picked]]
            row_v = np.take_along_axis(levels[picked], rows, 1) - col_v[picked, :1]
            doses = self._doses(row_v, times_s[picked])  # (2, F, E, rows)
            main += doses.sum(axis=2)[:, family, flat_rows]
            span = np.arange(len(picked))[None, :]
            at_changed.append((picked, doses[:, family[changed][:, None], span,
                                             flat_rows[changed][:, None]]))
        if not even.all():  # each cell at its pair of nets' voltage difference
            picked = np.flatnonzero(~even)
            pair_v = levels[picked][:, :, None] - levels[picked][:, None, :]
            doses = self._doses(pair_v.reshape(len(picked), -1), times_s[picked])
            # (2, F, E, pairs): summed per pattern first, then spread to the cells
            summed = np.zeros(doses.shape[:2] + (len(kept),) + doses.shape[3:])
            np.add.at(summed, (slice(None), slice(None), order[picked]), doses)
            codes_of = np.stack([entry[2] for entry in kept])
            per_cell = np.take_along_axis(summed, codes_of[None, None], axis=3)
            main += per_cell.sum(axis=2)[:, family, np.arange(family.size)]
            codes = codes_of[:, changed][order[picked]]
            span = np.arange(len(picked))[:, None]
            at_changed.append((picked, np.moveaxis(
                doses[:, family[changed][None, :], span, codes], 1, 2)))

        g = self.present_conductance_s().reshape(-1)
        self._charge_c += (g * main[0]).reshape(self.shape)
        self._energy_j += (g * main[1]).reshape(self.shape)
        if not changed.size:
            return
        # The conductances the changed cells had, per set of conductances noted.
        sets: dict[int, int] = {}
        which = np.array([sets.setdefault(id(e[5]), len(sets)) for e in entries])
        firsts = {sets[id(entry[5])]: entry[5] for entry in entries}
        had = np.stack([firsts[k].reshape(-1)[changed] for k in range(len(sets))])
        for picked, doses in at_changed:
            # (2, changed, intervals): what the changed cells took per siemens
            was = had[which[picked]].T
            extra = ((was - g[changed, None]) * doses).sum(axis=2)
            self._charge_c.reshape(-1)[changed] += extra[0]
            self._energy_j.reshape(-1)[changed] += extra[1]

    def _family_rows(self, family: np.ndarray) -> np.ndarray:
        """Per cell, the row of its I-V family in :attr:`families`."""
        if len(self.families) == 1:
            return np.zeros(family.shape, dtype=np.intp)
        return np.searchsorted(self.families, family)

    def _doses(self, v: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """Charge and energy per siemens of intervals of voltages `v`.

        `v` is ``(intervals, n)``; returns ``(2, families, intervals, n)``:
        per I-V family of the array, each interval's ``t |I / G|`` (index 0)
        and ``t V I / G`` (index 1).
        """
        ohmic = self.ohmic_at(float(np.abs(v).max()))
        u = np.stack([
            v if ohmic else current_per_siemens(self.preset, v, kind)
            for kind in self.families
        ])
        times = times_s[None, :, None]
        return np.stack([times * np.abs(u), times * u * v[None]])

    @property
    def charge_c(self) -> np.ndarray:
        """Charge that has passed through every cell, C, ``(rows, cols)``."""
        self._account()
        return self._charge_c.copy()

    @property
    def energy_j(self) -> np.ndarray:
        """Energy every cell has taken, J, ``(rows, cols)``."""
        self._account()
        return self._energy_j.copy()

    # Changes.

    def set_state(self, w: float | np.ndarray) -> None:
        """Put the cells directly into state ``w``, as a test fixture does.

        Parameters
        ----------
        w : float or numpy.ndarray
            State in [0, 1], one value or ``(rows, cols)``. Stuck cells keep
            their state; the others count as written now.
        """
        w = np.broadcast_to(np.asarray(w, dtype=float), self.shape)
        if not ((w >= 0) & (w <= 1)).all():
            raise ValueError("state must be in [0, 1]")
        self._changing()
        self._w[self._free] = w[self._free]
        self._written(np.flatnonzero(self._free))
        self._g = None

    def short(self, row: int, col: int, conductance_s: float) -> None:
        """Make one cell a short: it conducts ``conductance_s``, never switches."""
        self._changing([row * self.cols + col])
        self.g_max_cell_s[row, col] = conductance_s
        self._window_s[row, col] = conductance_s - self.g_min_cell_s[row, col]
        self._w[row, col] = 1.0
        self.formed[row, col] = True
        self.stuck_low[row, col] = False
        self.stuck_high[row, col] = True
        self._free[row, col] = False
        self._modes_changed()
        self._find_threshold_extremes()
        self._g = None

    def forming_due(self, v_cell: np.ndarray) -> bool:
        """Whether voltages `v_cell` reach the forming voltage of a fresh cell."""
        if not self.unformed_any:
            return False
        fresh = self._free & ~self.formed
        return bool((np.asarray(v_cell) > self.v_forming_cell_v)[fresh].any())

    def evolve(
        self, v_cell: np.ndarray, duration_s: float, limit_a: Any = None
    ) -> None:
        """Let the cells switch under voltages held for a while.

        Each call with a cell beyond a threshold is one switching event for
        that cell: its change is drawn with cycle-to-cycle and programming
        noise once, so a pulse should be applied in one call. A fresh cell
        held above its forming voltage long enough forms at the end of the
        call.

        Parameters
        ----------
        v_cell : numpy.ndarray
            ``(rows, cols)`` voltage across every cell, V, row line minus
            column line; constant over the interval.
        duration_s : float
            How long the voltages are held, s.
        limit_a : float or numpy.ndarray, optional
            The current limit each cell is held under (the tightest limit of
            the sources on its lines), A; it chooses the mode of a cell that
            forms. None: no limit.
        """
        plan = self.switching(v_cell, duration_s)
        if plan is not None:
            self.repeat(plan, self._rng.standard_normal((1, 2, plan.size)))
            if plan.forming:
                self._form(np.asarray(v_cell, dtype=float), duration_s, limit_a)

    def _form(self, v: np.ndarray, duration_s: float, limit_a: Any) -> None:
        """Fresh cells above their forming voltage: count the time, form them."""
        p = self.preset
        fresh = self._free & ~self.formed
        above = fresh & (v > self.v_forming_cell_v)
        self._form_time_s[above] += duration_s
        forming = above & (self._form_time_s >= p.forming_time_s)
        if not forming.any():
            return
        self._changing()
        limits = np.broadcast_to(
            np.inf if limit_a is None else np.asarray(limit_a, dtype=float), self.shape
        )
        for cell in np.flatnonzero(forming).tolist():
            r, c = divmod(cell, self.cols)
            compliance_a = float(limits[r, c])
            self.mode[r, c] = p.mode_for(compliance_a)
            # The filament grows until the current reaches the limit.
            family = _FAMILY_OF_MODE[self.mode[r, c]]
            per_siemens = float(current_per_siemens(p, v[r, c], family))
            g_formed = compliance_a / per_siemens
            low, window = self.g_min_cell_s[r, c], self._window_s[r, c]
            self._w[r, c] = min(max((g_formed - low) / window, 0.0), 1.0)
        self.formed |= forming
        self._modes_changed()
        self._find_threshold_extremes()
        self._written(np.flatnonzero(forming))
        self._g = None

    def switching(self, v_cell: np.ndarray, duration_s: float) -> Switching | None:
        """The cells that voltages held for `duration_s` change, or None.

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
        """Which of some cells their voltages change, or None.

        Parameters
        ----------
        cells : list of int
            Flat (row-major) indices of the cells that might change, in
            ascending order; the others are known to stay.
        v : list of float
            The voltage across each of them, V.
        duration_s : float
            How long the voltages are held, s.
        """
        if duration_s == 0:
            return None
        p = self.preset
        disturb_v = p.read_disturb_v if p.read_disturb_rate_per_s > 0 else math.inf
        disturb_rate = p.read_disturb_rate_per_s
        changing: list[int] = []
        targets: list[float] = []
        factors: list[float] = []
        volts_of: list[float] = []
        counted: list[bool] = []
        table = self._thresholds[:, cells].T.tolist()
        movable = self._movable_flat[cells].tolist()
        # Few cells change at once: one at a time is faster than numpy here.
        for cell, volts, (v_set, v_reset, rate_set, rate_reset), can in zip(
            cells, v, table, movable, strict=True
        ):
            if not can:
                continue
            if volts > v_set:
                factor = _fraction(volts, v_set, rate_set, p.alpha_set, duration_s)
                targets.append(1.0)
                counted.append(True)
            elif volts < v_reset:
                factor = _fraction(
                    volts, v_reset, rate_reset, p.alpha_reset, duration_s
                )
                targets.append(0.0)
                counted.append(True)
            elif volts > disturb_v or volts < -disturb_v:
                factor = _fraction(abs(volts), disturb_v, disturb_rate, 1.0, duration_s)
                targets.append(1.0 if volts > 0 else 0.0)
                counted.append(False)
            else:
                continue
            changing.append(cell)
            factors.append(factor)
            volts_of.append(volts)
        forming = self.unformed_any and self._forms_among(cells, v)
        if not (changing or forming):
            return None
        return Switching(changing, targets, factors, volts_of, counted, forming)

    def _forms_among(self, cells: list[int], v: list[float]) -> bool:
        fresh = (self._free & ~self.formed).reshape(-1)[cells]
        forming_v = self.v_forming_cell_v.reshape(-1)[cells]
        return bool((fresh & (np.asarray(v) > forming_v)).any())

    def repeat(
        self, plan: Switching, noise: np.ndarray, pulse_s: float = 0.0
    ) -> list[list[float]]:
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
        pulse_s : float
            How long each event holds its voltages, s, when the caller noted
            all of them at the cells' conductances before the first (see
            :meth:`expose`): the charge and energy the changing cells take
            as they change is then added. 0 when each event was noted at the
            conductances before it.

        Returns
        -------
        list of list of float
            Per changing cell, its state after each event.
        """
        self._changing(plan.cells)
        if pulse_s > 0:
            starts_s = self.present_conductance_s().reshape(-1)[plan.cells].tolist()
        p = self.preset
        c2c, prog = p.c2c_sigma, p.prog_sigma
        growth = prog * p.prog_sigma_growth
        flat = self._w.reshape(-1)
        counts = self.switch_count.reshape(-1)
        draws = noise.tolist()
        trajectories = []
        for k, (cell, target, factor, counted) in enumerate(
            zip(plan.cells, plan.target, plan.factor, plan.counted, strict=True)
        ):
            w = float(flat[cell])
            trajectory = []
            for event in draws:
                w = w + (target - w) * factor * (1.0 + c2c * event[0][k])
                if counted:
                    w = w + (prog + growth * w) * event[1][k]
                w = w if w > 0.0 else 0.0  # clipped as numpy clips: max, then min
                w = w if w < 1.0 else 1.0
                trajectory.append(w)
                if counted and len(trajectory) == 1:
                    # The first event of a RESET after a SET completes a cycle.
                    flat[cell] = w
                    if self._count_cycle(cell, target):
                        w = float(flat[cell])
                        trajectory[0] = w
                        break
            applied = len(trajectory)
            trajectory += [w] * (len(draws) - applied)
            trajectories.append(trajectory)
            flat[cell] = w
            if counted:
                counts[cell] += applied
        if plan.cells:
            self._written(plan.cells)
        if pulse_s > 0 and len(draws) > 1:
            self._account_train(plan, starts_s, trajectories, pulse_s)
        self._g = None
        return trajectories

    def _account_train(
        self,
        plan: Switching,
        starts_s: list[float],
        trajectories: list[list[float]],
        pulse_s: float,
    ) -> None:
        """Charge and energy of changing cells beyond their conductance before
        a train (`starts_s`, S): pulse k is taken at the state after pulse k - 1."""
        for cell, volts, start_s, trajectory in zip(
            plan.cells, plan.volts, starts_s, trajectories, strict=True
        ):
            during = self.conductance_of(cell, trajectory[:-1])
            extra_s = sum(during) - start_s * len(during)
            family = int(self.family.reshape(-1)[cell])
            per_siemens = float(current_per_siemens(self.preset, volts, family))
            self._charge_c.reshape(-1)[cell] += extra_s * abs(per_siemens) * pulse_s
            self._energy_j.reshape(-1)[cell] += extra_s * per_siemens * volts * pulse_s

    def _count_cycle(self, cell: int, target: float) -> bool:
        """A SET followed by a RESET is one cycle: the window narrows, and at
        its endurance the cell fails stuck. True if it failed."""
        direction = 1 if target == 1.0 else -1
        last = self._last_target[cell]
        self._last_target[cell] = direction
        if not (direction < 0 < last):
            return False
        cycles = self.cycles.reshape(-1)
        cycles[cell] += 1
        r, c = divmod(cell, self.cols)
        if cycles[cell] >= self.endurance_cell[r, c]:
            self._fail(r, c)
            return True
        loss = self.preset.wear_window_loss * cycles[cell] / self.endurance_cell[r, c]
        window = self._window_made_s[r, c]
        self.g_min_cell_s[r, c] = self._g_min_made_s[r, c] + window * loss / 2
        self._window_s[r, c] = window * (1 - loss)
        self.g_max_cell_s[r, c] = self.g_min_cell_s[r, c] + self._window_s[r, c]
        return False

    def _fail(self, r: int, c: int) -> None:
        """A worn-out cell sticks at the state it is nearer to."""
        high = self._w[r, c] >= 0.5
        self._w[r, c] = 1.0 if high else 0.0
        (self.stuck_high if high else self.stuck_low)[r, c] = True
        self._free[r, c] = False
        self._modes_changed()
        self._find_threshold_extremes()

