"""Operator cells: the softmax's exponentials and a GELU, from the cells' I-V.

The compliance a fresh cell forms under chooses its operator mode (the
device preset's bands). Two kinds of operator cells serve the encoder,
made and read on a simulated bench's device physics (bench-direct):

* :class:`ExponentialArray`, a column of **exponential cells** on one sense
  stage, ``I = G · V0 · (exp(V / V0) − 1)``, for the softmax's exponentials.
  A shifted score ``x ≤ 0`` (each row's largest subtracted on the host) is
  encoded as ``V = top_v + x · V0``; scores below ``(floor_v − top_v) / V0``
  are read at ``floor_v`` (counted as clipped). The cell's row is driven at
  V, every other row held at 0 V, where an exponential cell carries no
  current, and the column held at 0 V by the sense stage, so the stage reads
  that cell alone. Scores go round the usable cells in order.
* :class:`ActivationRow`, a row of **activation cells** for the FFN's GELU.
  An activation cell rectifies (``G · V`` forward, ``G · V / 1000`` reverse,
  sinh-like beyond the ohmic region), which a GELU is not: GELU dips to
  −0.17 near −0.75. A sum of rectifiers with their knees at different
  inputs is: the row is driven at ``α · x`` and column ``k``'s sense stage
  holds it at ``α · t_k``, so cell ``k`` carries ``G_k · f(α (x − t_k))``, a
  rectifier with its knee at ``t_k``. The knees and the slopes are fitted
  once to GELU over ``±fit_range`` through the preset's own rectifier I-V
  (:func:`design_gelu`); each slope's size is programmed into its cell's
  conductance by write-verify and its sign is the column's: the host adds
  or subtracts the calibrated column currents, scaled back to the input's
  units, and adds the fit's constant. Inputs beyond ``±input_range`` are
  driven at the window's edge (counted as clipped).

For both: every fresh cell is ramped in steps up to the chip's
``max_voltage_v`` under its compliance, as the forming procedure
(:mod:`procedures.forming`) ramps a cell, through the array's own forming
(``CellArray.evolve`` with the compliance as its current limit, which
chooses the mode); a cell's ramp stops at the first level where its current
reaches the compliance. The cells ramp in lockstep, each as if selected
alone (the ±V/2 that half-selected cells see through the instruments is
left out; the calibration that follows measures the state they are in).
After forming the cells are calibrated: a reading is fitted per cell (or
column) to what its voltage should give, ``expected ≈ gain · reading +
offset`` (:class:`~labctl.engine.readout.ColumnCalibration`), which takes
up each cell's own conductance and the sense stage's gain and offset. The
fits use the preset's I-V (``exponential_v0_v``, ``ohmic_limit_v``,
``iv_v0_v``, ``activation_rectification``), which the device model gives
every cell alike.

Every reading is the cells' current with their own read noise (white, and
1/f from their age), the bench's thermal floor, and the sense stage and ADC
of the run's read chain. The voltages the cells see stay inside the chip's
``max_read_voltage_v`` on every line and inside every threshold of the
cells (checked), so reading changes no cell. Counts and energy (``V · I ·
t`` of the cells, with the bench's integration time and with the read
chain's conversion time) go into the chip's
:class:`~labctl.engine.chips.Ledger`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from labctl.engine.chips import SENSE_CHANNELS, Ledger, OperatorTally
from labctl.engine.encoder import gelu
from labctl.engine.readout import ColumnCalibration, ReadChain, ReadChainConfig
from simulator.bench import Bench
from simulator.device import RECTIFIER, CellArray, DevicePreset, current_per_siemens

TRIP = 0.999
"""Fraction of the compliance at which a cell counts as formed (the forming
procedure's criterion)."""


# forming and limits ----------------------------------------------------------


def form_cells(cells: CellArray, compliance_a: float, bench: Bench, step_v: float,
               tally: OperatorTally) -> np.ndarray:
    """Ramp every fresh cell under the compliance until its current reaches it.

    Returns each cell's forming level, V, flat; NaN for a cell that did not
    form up to the chip's ``max_voltage_v``.
    """
    limits = bench.station.limits
    levels = np.arange(step_v, limits.max_voltage_v + step_v / 2, step_v)
    hold_s = 1.0 / bench.timing.line_frequency_hz  # one 1-PLC reading a level
    forming_v = np.full(cells.rows * cells.cols, np.nan)
    pending = np.ones(cells.shape, dtype=bool)
    for level in levels.tolist():
        v = np.where(pending, level, 0.0)
        cells.evolve(v, hold_s, compliance_a)
        current = cells.present_conductance_s() * cells.current_per_siemens(v)
        drawn = np.minimum(current, compliance_a)
        tally.setup_j += float((v * drawn).sum()) * hold_s
        tally.forming_s += hold_s * int(pending.sum())
        tripped = pending & (current >= TRIP * compliance_a)
        forming_v[tripped.reshape(-1)] = level
        pending &= ~tripped
        if not pending.any():
            break
    tally.cells_formed += int(np.isfinite(forming_v).sum())
    return forming_v


def band_compliance(chosen: float | None, low_a: float, high_a: float, mode: str,
                    bench: Bench) -> float:
    """A forming compliance in ``[low_a, high_a)``, A, within the chip's limit.

    None chooses ``1.3 · low_a`` when the band has an end, else ``2 · low_a``.
    """
    limit = bench.station.limits.max_compliance_a
    default = 1.3 * low_a if np.isfinite(high_a) else 2.0 * low_a
    compliance = default if chosen is None else chosen
    if not low_a <= compliance < high_a:
        raise ValueError(f"{mode} cells: compliance {compliance} A is outside the "
                         f"preset's {mode} band from {low_a} A to {high_a} A")
    if compliance > limit:
        raise ValueError(f"{mode} cells: compliance {compliance} A exceeds the "
                         f"chip's max_compliance_a of {limit} A")
    return compliance


def check_line(name: str, volts: float, bench: Bench, mode: str) -> None:
    """A line's read level must stay within the chip's ``max_read_voltage_v``."""
    limit = bench.station.limits.max_read_voltage_v
    if abs(volts) > limit:
        raise ValueError(f"{mode} cells: {name} {volts} V exceeds the chip's "
                         f"max_read_voltage_v of {limit} V")


def check_cells(low_v: float, high_v: float, preset: DevicePreset,
                cells: CellArray | None, mode: str) -> None:
    """Cell voltages from ``low_v`` to ``high_v`` must change no cell: inside
    the preset's thresholds and read-disturb level, and, once formed, inside
    every threshold of the array's own cells."""
    high, low = preset.v_set_v, preset.v_reset_v
    if preset.read_disturb_rate_per_s > 0:
        high, low = min(high, preset.read_disturb_v), max(low, -preset.read_disturb_v)
    if cells is not None:
        high, low = min(high, cells.lowest_set_v), max(low, cells.highest_reset_v)
    if not (low < low_v and high_v < high):
        raise ValueError(f"{mode} cells: reads from {low_v:.4g} V to {high_v:.4g} V "
                         f"must stay inside {low:.4g} V to {high:.4g} V, the "
                         "cells' thresholds and read-disturb level")


def _count_reads(tally: OperatorTally, reads: int, columns: int) -> None:
    tally.reads += reads
    tally.rounds += reads * -(-columns // SENSE_CHANNELS)


def _account_energy(tally: OperatorTally, power_w: float, bench_s: float,
                    chain: ReadChain | None, setup: bool) -> None:
    """Readings' ``V · I`` summed over the cells, W, times the reading times."""
    if setup:
        tally.setup_j += power_w * bench_s
        return
    tally.read_bench_j += power_w * bench_s
    if chain is not None:
        tally.read_chain_j += power_w * chain.config.conversion_s


# exponential cells -------------------------------------------------------------


@dataclass(frozen=True)
class ExponentialConfig:
    """How the exponential cells are formed, calibrated and read.

    Attributes
    ----------
    rows : int
        Cells of the column (each on a row of its own).
    compliance_a : float, optional
        Forming compliance, A; must lie in the preset's exponential band and
        within the chip's ``max_compliance_a``. None: twice the band's start.
    forming_step_v : float
        Step of the forming ramp, V.
    top_v : float, optional
        Read voltage of a score of 0 (each row's largest), V. None: the
        chip's ``max_read_voltage_v``.
    floor_v : float, optional
        Lowest read voltage, V; lower scores are read there. None: ``-top_v``.
    calibration_levels : int
        Voltages each cell is read at for its calibration.
    headroom : float
        ADC full scale over the largest current of the ranging read.
    """

    rows: int = 64
    compliance_a: float | None = None
    forming_step_v: float = 0.05
    top_v: float | None = None
    floor_v: float | None = None
    calibration_levels: int = 16
    headroom: float = 1.05

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"rows: {self.rows} must be >= 1")
        if not self.forming_step_v > 0:
            raise ValueError(f"forming_step_v: {self.forming_step_v} V must be > 0")
        if self.calibration_levels < 3:
            raise ValueError("calibration_levels: the fit needs at least 3")
        if not self.headroom >= 1:
            raise ValueError(f"headroom: {self.headroom} must be >= 1")


@dataclass(frozen=True)
class ReadWindow:
    """The read voltages of an exponential column, checked against the limits."""

    top_v: float
    floor_v: float
    v0_v: float

    @property
    def lowest_score(self) -> float:
        """The lowest shifted score read at its own voltage."""
        return (self.floor_v - self.top_v) / self.v0_v

    def voltages(self, shifted: np.ndarray) -> tuple[np.ndarray, int]:
        """Read voltages of shifted scores, V, and how many were clipped."""
        if shifted.size and float(shifted.max()) > 0:
            raise ValueError(f"shifted score {float(shifted.max()):.6g} > 0: "
                             "subtract each row's largest first")
        volts = self.top_v + shifted * self.v0_v
        low = volts < self.floor_v
        return np.where(low, self.floor_v, volts), int(low.sum())


def read_window(config: ExponentialConfig, bench: Bench) -> ReadWindow:
    """The read voltages, after the chip's limits and the preset's thresholds."""
    preset, limits = bench.preset, bench.station.limits
    top = limits.max_read_voltage_v if config.top_v is None else config.top_v
    floor = -top if config.floor_v is None else config.floor_v
    if not top > floor:
        raise ValueError(f"exponential cells: top_v {top} V must exceed "
                         f"floor_v {floor} V")
    check_line("top_v", top, bench, "exponential")
    check_line("floor_v", floor, bench, "exponential")
    check_cells(floor, top, preset, None, "exponential")
    return ReadWindow(top, floor, preset.exponential_v0_v)


class ExponentialArray:
    """A column of exponential cells on one sense stage, formed and calibrated.

    Parameters
    ----------
    bench : Bench
        The simulated bench whose preset, limits, timing and thermal floor
        apply.
    config : ExponentialConfig
        How the cells are formed, calibrated and read.
    chain : ReadChainConfig, optional
        The sense stage and ADC; none: the currents as they are.
    ledger : Ledger
        Where the cells' readings and energy go (``ledger.exponential``).
    read_nplc : float
        Integration of a reading on the bench's instruments, power-line
        cycles (the bench-time energy figure).
    stuck_fraction : float
        Fraction of cells that never form.
    stream : int
        Numbers this column among a chip's: its cells, noise and stage.
    """

    def __init__(self, bench: Bench, config: ExponentialConfig,
                 chain: ReadChainConfig | None, ledger: Ledger,
                 read_nplc: float, stuck_fraction: float = 0.0,
                 stream: int = 0) -> None:
        self.bench = bench
        self.config = config
        self.tally = ledger.exponential
        self.window = read_window(config, bench)
        preset = bench.preset
        self.compliance_a = band_compliance(
            config.compliance_a, preset.form_exponential_from_a, np.inf,
            "exponential", bench)
        seeds = [bench.seed, 0xE4B, stream]
        self.cells = CellArray(config.rows, 1, preset,
                               np.random.default_rng([*seeds, 0]), stuck_fraction,
                               read_rng=np.random.default_rng([*seeds, 1]),
                               formed=False)
        self.rng = np.random.default_rng([*seeds, 2])
        self.chain = ReadChain(chain, 1, 0x0E + stream) if chain else None
        self._bench_s = read_nplc / bench.timing.line_frequency_hz
        self.forming_v = form_cells(self.cells, self.compliance_a, bench,
                                    config.forming_step_v, self.tally)
        check_cells(self.window.floor_v, self.window.top_v, preset, self.cells,
                    "exponential")
        self.usable = np.flatnonzero(np.isfinite(self.forming_v))
        if self.usable.size == 0:
            raise ValueError("exponential cells: no cell formed under "
                             f"{self.compliance_a} A up to the chip's max_voltage_v")
        self.calibration = self._calibrate()
        self._next = 0

    def _calibrate(self) -> ColumnCalibration:
        """Full scale from a ranging read, then a per-cell fit over the range."""
        w, usable = self.window, self.usable
        if self.chain is not None:
            top = np.full(usable.size, w.top_v)
            ranging = self._read(usable, top, setup=True, convert=False)
            largest = float(np.abs(ranging).max())
            self.chain.full_scale_a = self.config.headroom * max(largest, 1e-12)
        scores = np.linspace(w.lowest_score, 0.0, self.config.calibration_levels)
        volts = w.top_v + scores * w.v0_v
        cells = np.tile(usable, scores.size)
        measured = self._read(cells, np.repeat(volts, usable.size), setup=True)
        expected = np.repeat(np.exp(scores), usable.size)
        shape = (scores.size, usable.size)
        fit = ColumnCalibration.fit(measured.reshape(shape), expected.reshape(shape))
        gain = np.full(self.config.rows, np.nan)
        offset = np.full(self.config.rows, np.nan)
        gain[usable], offset[usable] = fit.gain, fit.offset_a
        return ColumnCalibration(gain, offset)

    def exponentials(self, shifted: np.ndarray) -> np.ndarray:
        """``exp`` of shifted scores (each ≤ 0), each read from one cell."""
        x = np.asarray(shifted, dtype=float)
        volts, clipped = self.window.voltages(x.reshape(-1))
        order = (self._next + np.arange(volts.size)) % self.usable.size
        self._next = int((self._next + volts.size) % self.usable.size)
        cells = self.usable[order]
        reading = self._read(cells, volts, setup=False)
        fit = self.calibration
        values = fit.gain[cells] * reading + fit.offset_a[cells]
        self.tally.values += volts.size
        self.tally.clipped += clipped
        return values.reshape(x.shape)

    def _read(self, cells: np.ndarray, volts: np.ndarray, setup: bool,
              convert: bool = True) -> np.ndarray:
        """What the sense stage reads of each cell at its voltage, A; without
        ``convert``, the current before the stage and its ADC (a ranging read)."""
        preset = self.bench.preset
        g = self.cells.present_conductance_s()[cells, 0]
        family = self.cells.family[cells, 0]
        per_siemens = np.empty(volts.shape)
        for kind in np.unique(family).tolist():
            mine = family == kind
            per_siemens[mine] = current_per_siemens(preset, volts[mine], kind)
        current = g * per_siemens
        noise = self.rng.standard_normal((2, cells.size))
        reading = (current * self.cells.read_factors(noise[0], cells)
                   + preset.thermal_noise_a * noise[1])
        if convert and self.chain is not None:
            reading = self.chain.convert(reading[:, None], slice(0, 1))[:, 0]
        if setup:
            self.tally.setup_reads += volts.size
        else:
            _count_reads(self.tally, volts.size, 1)
        _account_energy(self.tally, float((volts * current).sum()), self._bench_s,
                        self.chain, setup)
        return reading


# activation cells ------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationConfig:
    """How the activation cells are formed, programmed, calibrated and read.

    Attributes
    ----------
    knots : int
        Activation cells of the row: rectifiers summed into the GELU.
    input_range : float
        Largest |input| driven at its own voltage (the drive's ``top_v``);
        beyond it the input is driven at the window's edge.
    fit_range : float
        The GELU is fitted over ``±fit_range``.
    top_v : float, optional
        The row's drive at ``input_range``, V. None: the chip's
        ``max_read_voltage_v``.
    compliance_a : float, optional
        Forming compliance, A, in the preset's activation band. None: 1.3
        times the band's start.
    forming_step_v : float
        Step of the forming ramp, V.
    g_high_s : float
        Conductance the largest slope is programmed to, S.
    g_low_s : float
        Lowest conductance a slope may need, S; fewer knots when one would.
    dac_bits : int
        Bits of the drive's and the column potentials' DACs over ±top_v.
    calibration_inputs : int
        Inputs each column is read at for its calibration.
    headroom : float
        ADC full scale over the largest current the programmed row can carry.
    """

    knots: int = 8
    input_range: float = 16.0
    fit_range: float = 6.0
    top_v: float | None = None
    compliance_a: float | None = None
    forming_step_v: float = 0.05
    g_high_s: float = 85e-6
    g_low_s: float = 5e-6
    dac_bits: int = 12
    calibration_inputs: int = 32
    headroom: float = 1.05

    def __post_init__(self) -> None:
        if not 2 <= self.knots <= 64:
            raise ValueError(f"knots: {self.knots} must be in 2..64")
        if not 0 < self.fit_range <= self.input_range:
            raise ValueError(f"fit_range: {self.fit_range} must be in "
                             f"(0, input_range {self.input_range}]")
        if not 0 < self.g_low_s < self.g_high_s:
            raise ValueError("g_low_s and g_high_s: need 0 < g_low_s < g_high_s")
        if not 4 <= self.dac_bits <= 24:
            raise ValueError(f"dac_bits: {self.dac_bits} must be in 4..24")
        if self.calibration_inputs < 3:
            raise ValueError("calibration_inputs: the fit needs at least 3")
        if not self.headroom >= 1:
            raise ValueError(f"headroom: {self.headroom} must be >= 1")


@dataclass(frozen=True, eq=False)
class GeluDesign:
    """A GELU as a sum of rectifier cells: ``c + Σ_k s_k f(α (x − t_k)) / α``.

    ``f`` is the preset's rectifier I-V per siemens; ``rms_error`` and
    ``max_error`` are the noise-free sum's against GELU over the fit range.
    """

    knots: np.ndarray
    slopes: np.ndarray
    constant: float
    volts_per_unit: float
    rms_error: float
    max_error: float

    def basis(self, preset: DevicePreset, x: np.ndarray) -> np.ndarray:
        """Each cell's rectified input, in the input's units, ``(..., knots)``."""
        a = self.volts_per_unit
        v = a * (np.asarray(x)[..., None] - self.knots)
        return current_per_siemens(preset, v, RECTIFIER) / a

    def value(self, preset: DevicePreset, x: np.ndarray) -> np.ndarray:
        """What the noise-free cells sum to."""
        return self.constant + self.basis(preset, x) @ self.slopes


def _fit_slopes(preset: DevicePreset, knots: np.ndarray, volts_per_unit: float,
                grid: np.ndarray) -> GeluDesign:
    """Least-squares slopes and constant for fixed knees."""
    partial = GeluDesign(knots, np.zeros(knots.size), 0.0, volts_per_unit, 0, 0)
    design = np.column_stack([np.ones(grid.size), partial.basis(preset, grid)])
    target = gelu(grid)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    err = design @ coef - target
    return GeluDesign(knots, coef[1:], float(coef[0]), volts_per_unit,
                      float(np.sqrt(np.mean(err * err))), float(np.abs(err).max()))


_DESIGNS: dict[tuple[float, ...], GeluDesign] = {}


def design_gelu(preset: DevicePreset, knots: int, fit_range: float,
                volts_per_unit: float) -> GeluDesign:
    """Knees and slopes of ``knots`` rectifier cells fitted to GELU.

    The knees are placed to minimize the mean squared error over a uniform
    grid on ``±fit_range`` (Nelder-Mead from evenly spread knees, each
    step's slopes by least squares), through the preset's rectifier I-V;
    kept for the process, per I-V and settings.
    """
    key = (preset.ohmic_limit_v, preset.iv_v0_v, preset.activation_rectification,
           knots, fit_range, volts_per_unit)
    if key not in _DESIGNS:
        coarse = np.linspace(-fit_range, fit_range, 481)

        def loss(t: np.ndarray) -> float:
            return _fit_slopes(preset, np.sort(t), volts_per_unit, coarse).rms_error

        best = minimize(loss, np.linspace(-2.5, 1.5, knots), method="Nelder-Mead",
                        options={"maxiter": 200 * knots, "xatol": 1e-4,
                                 "fatol": 1e-9})
        fine = np.linspace(-fit_range, fit_range, 1201)
        _DESIGNS[key] = _fit_slopes(preset, np.sort(best.x), volts_per_unit, fine)
    return _DESIGNS[key]


Program = Callable[[CellArray, np.ndarray], object]
"""Write-verify of target conductances (S) into the top-left block of cells."""


class ActivationRow:
    """A row of activation cells whose rectified currents sum to a GELU.

    Parameters are those of :class:`ExponentialArray` (``ledger``'s
    ``activation`` tally is the one counted), with ``program`` the
    write-verify that puts each slope's size into its cell (bench-direct:
    :meth:`labctl.engine.direct.DirectArray.program` on the row's cells).
    """

    def __init__(self, bench: Bench, config: ActivationConfig, program: Program,
                 chain: ReadChainConfig | None, ledger: Ledger, read_nplc: float,
                 stuck_fraction: float = 0.0, stream: int = 0) -> None:
        self.bench = bench
        self.config = config
        self.tally = ledger.activation
        preset = bench.preset
        self.top_v = (bench.station.limits.max_read_voltage_v
                      if config.top_v is None else config.top_v)
        check_line("top_v", self.top_v, bench, "activation")
        self.alpha = self.top_v / config.input_range
        self.compliance_a = band_compliance(
            config.compliance_a, preset.form_activation_from_a,
            preset.form_exponential_from_a, "activation", bench)
        self.design = design_gelu(preset, config.knots, config.fit_range, self.alpha)

        seeds = [bench.seed, 0xAC7, stream]
        self.cells = CellArray(1, config.knots, preset,
                               np.random.default_rng([*seeds, 0]), stuck_fraction,
                               read_rng=np.random.default_rng([*seeds, 1]),
                               formed=False)
        self.rng = np.random.default_rng([*seeds, 2])
        self._bench_s = read_nplc / bench.timing.line_frequency_hz
        forming_v = form_cells(self.cells, self.compliance_a, bench,
                               config.forming_step_v, self.tally)
        self._use(np.isfinite(forming_v))

        targets = self.cells.conductance_s  # cells that did not form stay as they are
        targets[0, self.usable] = self.target_s
        self.programmed = program(self.cells, targets)
        self.chain = ReadChain(chain, config.knots, 0xAC + stream) if chain else None
        self._check_window()
        self.calibration = self._calibrate()

    # design on the cells that formed -------------------------------------------

    def _use(self, formed: np.ndarray) -> None:
        """Fit the slopes on the knees of the cells that formed; program their sizes."""
        cfg, preset = self.config, self.bench.preset
        usable = np.flatnonzero(formed)
        if usable.size < 2:
            raise ValueError(f"activation cells: {usable.size} of {cfg.knots} formed "
                             f"under {self.compliance_a} A; the GELU needs 2 or more")
        grid = np.linspace(-cfg.fit_range, cfg.fit_range, 1201)
        knots = self.design.knots
        while True:  # a slope too small to program drops its knee
            if usable.size < knots.size:
                self.design = _fit_slopes(preset, knots[usable], self.alpha, grid)
            size = np.abs(self.design.slopes)
            self.scale_s = cfg.g_high_s / float(size.max())  # S per unit of slope
            weak = size * self.scale_s < cfg.g_low_s
            if not weak.any() or usable.size <= 2:
                break
            usable = usable[~weak]
        self.usable = usable
        self.target_s = size * self.scale_s
        self.sign = np.sign(self.design.slopes)
        step = 2 * self.top_v / 2**cfg.dac_bits
        self.column_v = np.rint(self.alpha * self.design.knots / step) * step

    def _check_window(self) -> None:
        """Every line within the read limit, every cell inside its thresholds."""
        for k, volts in enumerate(self.column_v.tolist()):
            check_line(f"column {k} potential", volts, self.bench, "activation")
        low = -self.top_v - float(self.column_v.max())
        high = self.top_v - float(self.column_v.min())
        check_cells(low, high, self.bench.preset, self.cells, "activation")

    # calibration and reading -------------------------------------------------------

    def _calibrate(self) -> ColumnCalibration:
        """Full scale from the programmed targets, then a fit per column."""
        preset = self.bench.preset
        if self.chain is not None:
            headroom_v = self.top_v - self.column_v
            per = current_per_siemens(preset, headroom_v, RECTIFIER)
            largest = float((self.target_s * per).max())
            self.chain.full_scale_a = self.config.headroom * largest
        x = np.linspace(-self.config.input_range, self.config.input_range,
                        self.config.calibration_inputs)
        drive_v, _ = self._drive(x)
        measured = self._read(drive_v, setup=True)
        cell_v = drive_v[:, None] - self.column_v
        expected = self.target_s * current_per_siemens(preset, cell_v, RECTIFIER)
        return ColumnCalibration.fit(measured, expected)

    def _drive(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The row's DAC level for each input, V, and how many were clipped."""
        step = 2 * self.top_v / 2**self.config.dac_bits
        volts = self.alpha * x
        edge = np.abs(volts) > self.top_v
        volts = np.clip(volts, -self.top_v, self.top_v)
        return np.rint(volts / step) * step, int(edge.sum())

    def gelu(self, h: np.ndarray) -> np.ndarray:
        """The GELU of every element of ``h``, one reading of the row each."""
        x = np.asarray(h, dtype=float)
        drive_v, clipped = self._drive(x.reshape(-1))
        reading = self._read(drive_v, setup=False)
        rectified = self.calibration.apply(reading, slice(None)) / self.alpha
        out = self.design.constant + rectified @ (self.sign / self.scale_s)
        self.tally.values += drive_v.size
        self.tally.clipped += clipped
        return out.reshape(x.shape)

    def _read(self, drive_v: np.ndarray, setup: bool) -> np.ndarray:
        """The row driven at each level, every usable column read, A ``(n, k)``."""
        preset, cols = self.bench.preset, self.usable
        g = self.cells.present_conductance_s()[0, cols]
        family = self.cells.family[0, cols]
        cell_v = drive_v[:, None] - self.column_v
        per_siemens = np.empty(cell_v.shape)
        for kind in np.unique(family).tolist():
            mine = family == kind
            per_siemens[:, mine] = current_per_siemens(preset, cell_v[:, mine], kind)
        current = g * per_siemens
        noise = self.rng.standard_normal((2, cols.size, drive_v.size))
        factors = self.cells.read_factors(noise[0], cols).T
        reading = current * factors + preset.thermal_noise_a * noise[1].T
        if self.chain is not None:
            reading = self.chain.convert(reading, list(cols))
        if setup:
            self.tally.setup_reads += drive_v.size
        else:
            _count_reads(self.tally, drive_v.size, cols.size)
        _account_energy(self.tally, float((cell_v * current).sum()), self._bench_s,
                        self.chain, setup)
        return reading
