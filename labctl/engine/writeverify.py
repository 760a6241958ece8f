"""Write-verify: program each cell of an array to a target conductance.

Cells are addressed one at a time with the V/2 scheme: the selected row on
the drive channel, the selected column on a sense channel at 0 V, every other
line on the bias channel. During a pulse of amplitude V the bias channel
sits at V/2, so half-selected cells see at most V/2 (below the switching
thresholds); during the verify read it sits at 0 V, so the sense channel
measures the selected cell alone.

The adaptive algorithm reads the cell, predicts from the saturating pulse
response how many identical pulses reach the target (SET pulses upward,
RESET pulses downward), applies that train, reads again, and updates its
estimate of the cell's response from what the train did. A cell that does
not move is reported stuck; a cell that does not reach its tolerance within
``max_rounds`` is reported unconverged. No cell is looped on forever.

:class:`FixedStepWriteVerify` is the baseline it is measured against
(``bench/writeverify.py``): identical small pulses of one fixed amplitude per
polarity, one pulse per verify read, under the same tolerance and round limit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from labctl.rig import Rig

log = logging.getLogger("labctl.engine")


@dataclass(frozen=True)
class WriteVerifyConfig:
    """Pulses and tolerances of write-verify, in SI units.

    The ``*_threshold_v``, ``*_exponent``, ``*_rate_per_s`` and window fields
    are the chip's nominal device figures (its preset): the starting guess of
    each cell's response, which the algorithm then learns cell by cell.
    """

    tolerance: float = 0.02  # relative error a programmed cell must be within
    # A cell is left once a reading is within (1 - verify_margin) of the
    # tolerance: the verify read's own noise then rarely hides a cell outside.
    verify_margin: float = 0.25
    set_voltage_v: float = 1.2  # largest SET amplitude
    reset_voltage_v: float = -1.1  # largest RESET amplitude
    width_s: float = 10e-6
    gap_s: float = 10e-6
    read_voltage_v: float = 0.2
    max_rounds: int = 12
    max_train: int = 32
    g_min_s: float = 0.25e-6
    g_max_s: float = 100e-6
    set_threshold_v: float = 0.8
    reset_threshold_v: float = -0.7
    set_exponent: float = 2.0
    reset_exponent: float = 3.0
    set_rate_per_s: float = 2.0e4
    reset_rate_per_s: float = 4.47e4
    limit_a: float = 1e-3
    read_nplc: float = 1.0
    #: Run the loop on the instrument where the station allows it
    #: (:meth:`labctl.rig.Rig.write_verify_on_instrument`), a row of cells
    #: per message; elsewhere, and as the fallback, over the bus.
    on_instrument: bool = False

    @classmethod
    def for_preset(cls, preset: str, **changes: float) -> WriteVerifyConfig:
        """Nominal device figures from the chip's device preset file."""
        from simulator.device import DevicePreset

        p = DevicePreset.load(preset)
        return cls(
            g_min_s=p.g_min_s, g_max_s=p.g_max_s,
            set_threshold_v=p.v_set_v, reset_threshold_v=p.v_reset_v,
            set_exponent=p.alpha_set, reset_exponent=p.alpha_reset,
            set_rate_per_s=p.rate_set_per_s, reset_rate_per_s=p.rate_reset_per_s,
            **changes,
        )


@dataclass
class _Response:
    """One polarity's pulse response: fraction of the way to its limit per pulse.

    f(V) = 1 - exp(-gain · (V / V_th - 1)^exponent), with ``gain`` learned.
    """

    threshold_v: float
    exponent: float
    gain: float
    limit_v: float
    learned: bool = False  # whether ``gain`` comes from the cell's own trains

    def fraction(self, level_v: float) -> float:
        over = max(level_v / self.threshold_v - 1, 0.0)
        return 1 - math.exp(-self.gain * over**self.exponent)

    def level_for(self, fraction: float) -> float:
        """The amplitude whose pulses move ``fraction`` of the way each."""
        fraction = min(fraction, self.fraction(self.limit_v))
        over = (-math.log(1 - fraction) / self.gain) ** (1 / self.exponent)
        level = self.threshold_v * (1 + over)
        low = 1.02 * self.threshold_v
        return max(level, low) if self.threshold_v > 0 else min(level, low)

    def learn(self, level_v: float, seen_fraction: float) -> None:
        over = max(level_v / self.threshold_v - 1, 1e-9) ** self.exponent
        seen_gain = -math.log(1 - seen_fraction) / over
        blended = math.sqrt(self.gain * seen_gain)  # geometric: gains span decades
        self.gain = min(max(blended, 0.05 * self.gain), 20 * self.gain)
        self.learned = True


@dataclass
class CellLog:
    """What programming one cell took."""

    row: int
    col: int
    target_s: float
    final_s: float
    pulses: int
    rounds: int
    converged: bool
    stuck: bool

    @property
    def error(self) -> float:
        return (self.final_s - self.target_s) / self.target_s


class WriteVerify:
    """Programs target maps into one array of the station's chip."""

    def __init__(self, rig: Rig, array: str, config: WriteVerifyConfig) -> None:
        self.rig = rig
        self.config = config
        roles = rig.station.roles
        self.drive = rig.smu(roles.drive)
        self.bias = rig.smu(roles.bias)
        self.sense = rig.smu(roles.sense[0])
        self.drive_bus = rig.bus_of(roles.drive)
        self.bias_bus = rig.bus_of(roles.bias)
        self.sense_bus = rig.bus_of(roles.sense[0])
        self.lines = rig.lines(array)
        #: The last conductance each cell was read at in this write-verify, S
        #: (NaN: not read yet). A cell read before starts from that reading.
        self.verified_s = np.full((self.lines.n_rows, self.lines.n_cols), np.nan)
        #: Each cell's SET and RESET gains as learned by its last programming
        #: (NaN: not learned yet); a cell programmed again starts from them.
        self.learned_gain = np.full((2, self.lines.n_rows, self.lines.n_cols), np.nan)
        for level in (config.set_voltage_v, config.reset_voltage_v):
            rig.guard.check_level(roles.drive, level, "pulse level")
        rig.guard.check_level(roles.drive, config.read_voltage_v, "read level")

    def prepare(self) -> None:
        """Limits set, levels at 0 V, bias and sense outputs on."""
        cfg = self.config
        # The bias and sense channels carry the half-selected cells' currents
        # too: they get the chip's full compliance, so that they hold their
        # levels and the selected cell alone sees the pulse.
        limits = {self.drive: cfg.limit_a}
        wide = self.rig.limits.max_compliance_a
        with self.rig.batch():
            for ch in (self.drive, self.bias, self.sense):
                ch.output_enabled = False
                ch.source_voltage = 0.0
                ch.current_limit = limits.get(ch, wide)
            # The pulse trains' own readings are not used: integrate as
            # briefly as the instrument allows.
            self.drive.nplc = max(0.001, self.drive.nplc_range[0])
            self.sense.nplc = cfg.read_nplc
            self.bias.output_enabled = True
            self.sense.output_enabled = True

    def program(
        self,
        targets_s: np.ndarray,
        on_cell: Callable[[CellLog], None] | None = None,
        done: np.ndarray | None = None,
    ) -> list[CellLog]:
        """Program every cell of ``targets_s`` (rows × cols of the wired lines)
        but those ``done`` marks True (programmed before, left as they are)."""
        rows, cols = targets_s.shape
        if rows > self.lines.n_rows or cols > self.lines.n_cols:
            raise ValueError(
                f"targets of {rows}x{cols} do not fit the {self.lines.n_rows}x"
                f"{self.lines.n_cols} wired lines of {self.lines.array}"
            )
        self.prepare()
        logs: list[CellLog] = []
        cells = [(r, c) for r, c in self._order(rows, cols)
                 if done is None or not done[r, c]]
        if self.config.on_instrument and cells:
            cells = self._program_on_instrument(cells, targets_s, logs, on_cell)
        for r, c in cells:
            self.rig.check_stop()
            entry = self._program_cell(r, c, float(targets_s[r, c]))
            logs.append(entry)
            if on_cell is not None:
                on_cell(entry)
        return logs

    def _program_on_instrument(
        self,
        cells: list[tuple[int, int]],
        targets_s: np.ndarray,
        logs: list[CellLog],
        on_cell: Callable[[CellLog], None] | None,
    ) -> list[tuple[int, int]]:
        """Program the cells a row at a time on the instrument; the cells
        left for the bus (all of them where the station cannot)."""
        from labctl.onboard import CellRequest

        self._select(*cells[0])  # every line on the V/2 buses
        rows = [[cell for cell in cells if cell[0] == r]
                for r in dict.fromkeys(r for r, _ in cells)]
        for k, row in enumerate(rows):
            self.rig.check_stop()
            requests = []
            for r, c in row:
                reading = float(self.verified_s[r, c])
                up, down = self.learned_gain[:, r, c].tolist()
                requests.append(CellRequest(
                    r, c, float(targets_s[r, c]),
                    reading if reading == reading else None,
                    up if up == up else None, down if down == down else None,
                ))
            outcomes = self.rig.write_verify_on_instrument(
                self.lines.array, requests, self.config)
            if outcomes is None:
                return [cell for rest in rows[k:] for cell in rest]
            for request, out in zip(requests, outcomes, strict=True):
                r, c = out.row, out.col
                for gain, learned in enumerate((out.set_gain, out.reset_gain)):
                    if learned is not None:
                        self.learned_gain[gain, r, c] = learned
                converged = self._finish(r, c, request.target_s, out.final_s,
                                         out.stuck)
                entry = CellLog(r, c, request.target_s, out.final_s, out.pulses,
                                out.rounds, converged, out.stuck)
                logs.append(entry)
                if on_cell is not None:
                    on_cell(entry)
        return []

    @staticmethod
    def _order(rows: int, cols: int) -> Iterator[tuple[int, int]]:
        # Row-major, snaking, so consecutive cells share a line.
        for r in range(rows):
            span = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
            for c in span:
                yield r, c

    def _select(self, r: int, c: int) -> None:
        with self.rig.batch():
            self.drive.source_voltage = 0.0
            self.bias.source_voltage = 0.0
            self.lines.select(r, c, self.drive_bus, self.sense_bus,
                              self.bias_bus, self.bias_bus)

    def read(self) -> float:
        """Conductance of the selected cell at the read voltage."""
        cfg = self.config
        with self.rig.batch():
            self.bias.source_voltage = 0.0
            self.drive.source_voltage = cfg.read_voltage_v
            self.drive.output_enabled = True
            current = -self.sense.measure_current()
        # The drive stays at the read level: whatever comes next (pulses or a
        # new selection) sets it to 0 V first, in the same message.
        return current / cfg.read_voltage_v

    def pulses(self, count: int, level_v: float) -> None:
        cfg = self.config
        with self.rig.batch():
            self.drive.source_voltage = 0.0
            self.bias.source_voltage = level_v / 2
            self.drive.apply_pulses(level_v, cfg.width_s, 0.0, cfg.gap_s, count)

    def _responses(self, r: int, c: int) -> tuple[_Response, _Response]:
        """A cell's SET and RESET responses: as learned before, else nominal."""
        cfg = self.config
        up_gain, down_gain = self.learned_gain[:, r, c].tolist()
        up = _Response(cfg.set_threshold_v, cfg.set_exponent,
                       cfg.set_rate_per_s * cfg.width_s, cfg.set_voltage_v,
                       learned=up_gain == up_gain)
        down = _Response(cfg.reset_threshold_v, cfg.reset_exponent,
                         cfg.reset_rate_per_s * cfg.width_s, cfg.reset_voltage_v,
                         learned=down_gain == down_gain)
        if up.learned:
            up.gain = up_gain
        if down.learned:
            down.gain = down_gain
        return up, down

    def _first_reading(self, r: int, c: int) -> tuple[float, bool]:
        """A cell's present conductance, S, and whether it is selected now.

        A cell this write-verify read before starts from that reading and is
        selected with its first train; one never read is selected and read
        in one message.
        """
        g = float(self.verified_s[r, c])
        if g == g:
            return g, False
        with self.rig.batch():
            self._select(r, c)
            return self.read(), True

    def _finish(self, r: int, c: int, target: float, g: float, stuck: bool) -> bool:
        """Keep the cell's last reading; log it if it missed; True if converged."""
        self.verified_s[r, c] = g
        converged = abs(g - target) <= self.config.tolerance * target
        if not converged:
            log.info("%s cell (%d, %d): %.2f µS, target %.2f µS%s",
                     self.lines.array, r, c, g * 1e6, target * 1e6,
                     " (stuck)" if stuck else " (not converged)")
        return converged

    def _program_cell(self, r: int, c: int, target: float) -> CellLog:
        cfg = self.config
        g, selected = self._first_reading(r, c)
        up, down = self._responses(r, c)
        pulses = rounds = still = 0
        stuck = False
        accept = cfg.tolerance * (1 - cfg.verify_margin) * target
        while abs(g - target) > accept and rounds < cfg.max_rounds:
            rounds += 1
            setting = g < target
            response, limit = (up, cfg.g_max_s) if setting else (down, cfg.g_min_s)
            level, n = _plan(g, target, limit, response, cfg)
            before = g
            with self.rig.batch():  # the train and its verify read: one message
                if not selected:
                    self._select(r, c)
                    selected = True
                self.pulses(n, level)
                g = self.read()
            pulses += n
            seen = _seen_fraction(before, g, limit, n)
            if seen is not None:
                response.learn(level, seen)
            still = still + 1 if abs(g - before) < 0.1 * cfg.tolerance * target else 0
            if still >= 3 and n == cfg.max_train and level == response.limit_v:
                stuck = True
                break
        for k, response in enumerate((up, down)):
            if response.learned:
                self.learned_gain[k, r, c] = response.gain
        converged = self._finish(r, c, target, g, stuck)
        return CellLog(r, c, target, g, pulses, rounds, converged, stuck)


class FixedStepWriteVerify(WriteVerify):
    """The baseline write-verify: one small pulse of fixed amplitude per read.

    Each round is one pulse and one verify read: a SET pulse while the cell
    is below its target, a RESET pulse while above. Both amplitudes are fixed
    for the whole run, chosen from the chip's nominal response so that one
    pulse moves ``step_fraction`` of the way to the end of the window; small
    enough that a step near the lowest targets stays inside the tolerance
    band, at the price of many pulses toward high targets. Tolerance, verify
    margin and round limit are the config's, as for the adaptive one.
    """

    def __init__(self, rig: Rig, array: str, config: WriteVerifyConfig,
                 step_fraction: float = 0.004) -> None:
        super().__init__(rig, array, config)
        if not 0 < step_fraction < 1:
            raise ValueError(f"step_fraction: {step_fraction} must be in (0, 1)")
        up, down = self._responses(0, 0)  # nothing learned yet: the nominal ones
        self.set_level_v = up.level_for(step_fraction)
        self.reset_level_v = down.level_for(step_fraction)

    def _program_cell(self, r: int, c: int, target: float) -> CellLog:
        cfg = self.config
        g, selected = self._first_reading(r, c)
        rounds = 0
        accept = cfg.tolerance * (1 - cfg.verify_margin) * target
        while abs(g - target) > accept and rounds < cfg.max_rounds:
            rounds += 1
            level = self.set_level_v if g < target else self.reset_level_v
            with self.rig.batch():
                if not selected:
                    self._select(r, c)
                    selected = True
                self.pulses(1, level)
                g = self.read()
        converged = self._finish(r, c, target, g, False)
        return CellLog(r, c, target, g, rounds, rounds, converged, False)



def _plan(g: float, target: float, limit: float, response: _Response,
          cfg: WriteVerifyConfig) -> tuple[float, int]:
    """Amplitude and pulse count of the next train.

    The train aims at a share of the remaining error: 80 % while the cell's
    response is still the nominal guess, then 95 % while far and all of it
    once close. The count is the fewest pulses (1, 2, 4, …)
    whose amplitude stays within the largest allowed, and the amplitude is
    the one the cell's learned response says moves the aim in that count.
    """
    span = abs(limit - g)
    err = abs(target - g)
    if span <= 0 or err >= span:
        return response.limit_v, cfg.max_train
    if not response.learned:
        share = 0.8
    else:
        share = 0.95 if err > 3 * cfg.tolerance * target else 1.0
    aim = share * err / span
    largest = response.fraction(response.limit_v)
    n = 1
    while n < cfg.max_train and 1 - (1 - aim) ** (1 / n) > largest:
        n *= 2
    n = min(n, cfg.max_train)
    level = response.level_for(1 - (1 - aim) ** (1 / n))
    return level, n


def _seen_fraction(before: float, after: float, limit: float, n: int) -> float | None:
    """The per-pulse fraction a train of n pulses showed, if it moved the right way."""
    ratio = (limit - after) / (limit - before)
    if not 0 < ratio < 1:
        return None
    return 1 - ratio ** (1 / n)




@dataclass(frozen=True)
class Responses:
    """Many cells' pulse responses for the next train, one polarity each.

    The same response as :class:`_Response`, one element per cell: a SET
    response for a cell below its target, a RESET response above it.
    """

    threshold_v: np.ndarray
    exponent: np.ndarray
    gain: np.ndarray
    limit_v: np.ndarray
    learned: np.ndarray  # bool


def plan_trains(g: np.ndarray, target: np.ndarray, limit: np.ndarray,
                response: Responses,
                cfg: WriteVerifyConfig) -> tuple[np.ndarray, np.ndarray]:
    """The next train of many cells at once: :func:`_plan` on arrays.

    Returns the amplitude (V) and the pulse count of each cell's train; a
    test holds it equal to :func:`_plan` cell by cell.
    """
    r = response
    span = np.abs(limit - g)
    err = np.abs(target - g)
    share = np.where(~r.learned, 0.8,
                     np.where(err > 3 * cfg.tolerance * target, 0.95, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        aim = np.clip(share * err / span, 0.0, 1.0 - 1e-15)
    largest = _fractions(r, r.limit_v)
    # the fewest pulses 1, 2, 4, … whose per-pulse share stays within reach
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.log1p(-aim) / np.log1p(-largest)
    n = np.exp2(np.ceil(np.log2(np.maximum(need, 1.0))))
    n = np.minimum(n, cfg.max_train).astype(np.int64)
    per_pulse = -np.expm1(np.log1p(-aim) / n)
    fraction = np.minimum(per_pulse, largest)
    over = (-np.log1p(-fraction) / r.gain) ** (1 / r.exponent)
    level = r.threshold_v * (1 + over)
    low = 1.02 * r.threshold_v
    level = np.where(r.threshold_v > 0, np.maximum(level, low), np.minimum(level, low))
    beyond = (span <= 0) | (err >= span)
    return np.where(beyond, r.limit_v, level), np.where(beyond, cfg.max_train, n)


def learn_gains(response: Responses, level_v: np.ndarray, before: np.ndarray,
                after: np.ndarray, limit: np.ndarray,
                n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gains trains taught many cells: :meth:`_Response.learn` on arrays.

    Returns the new gain of each cell and whether its train moved it the
    right way (only those cells learn).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (limit - after) / (limit - before)
    moved = (ratio > 0) & (ratio < 1)
    seen = -np.expm1(np.log(np.where(moved, ratio, 0.5)) / n)
    r = response
    over = np.maximum(level_v / r.threshold_v - 1, 1e-9) ** r.exponent
    seen_gain = -np.log1p(-seen) / over
    blended = np.sqrt(r.gain * seen_gain)
    gain = np.clip(blended, 0.05 * r.gain, 20 * r.gain)
    return np.where(moved, gain, r.gain), moved


def _fractions(response: Responses, level_v: np.ndarray) -> np.ndarray:
    over = np.maximum(level_v / response.threshold_v - 1, 0.0)
    return -np.expm1(-response.gain * over**response.exponent)
