"""Bench-direct: the simulated chip programmed and multiplied on without messages.

Through the instruments every pulse train and reading is a bus message to a
simulated SMU, which costs about a millisecond of wall time; the whole model
programs some 21 million cells and would take hours that way. Bench-direct
acts on the same bench objects the instruments act on, the arrays of a
:class:`simulator.bench.Bench` and their device physics, without the message
layer:

* **programming** runs the adaptive write-verify of
  :mod:`labctl.engine.writeverify` on every cell of a tile at once, in
  lockstep rounds (:func:`~labctl.engine.writeverify.plan_trains`, the same
  plan as cell by cell). A cell's train is applied by the array's own
  switching physics (``CellArray.switching_among`` and ``CellArray.repeat``,
  cycle-to-cycle and programming noise drawn from the bench's generator),
  and it is verified by the array's own noisy read plus the bench's thermal
  floor. The V/2 scheme keeps half-selected cells below their thresholds,
  so applying each cell's train as if it were selected alone is what the
  instruments do, minus the time; the few cells whose own threshold lies
  under half a pulse are counted in the ledger (``half_select_exposed``).
* **multiplying** drives each bit plane's rows at ±V with every column held
  at 0 V, as :mod:`labctl.engine.mac` does. Every line is then at a fixed
  potential: the circuit has no unknown node, and the circuit solver's
  column current is ``Σ_r G_rc V_r`` (``tests/labctl/test_engine_direct.py``
  checks it against :func:`simulator.circuit.solve`). Bench-direct evaluates
  that sum for all planes and tokens at once, from the array's present
  conductances; the read noise of each reading, independent per cell and
  reading, is drawn as its sum per column (a normal of the same variance).
  An array whose chip file gives its lines a resistance is read through the
  exact linear map of :meth:`simulator.array_solver.ArrayCircuit.read_operator`
  instead, the circuit the bench solves for such an array.

Nothing here advances the bench clock: the predicted bench time of a
bench-direct run comes from the costs the instruments were measured to
take (:mod:`labctl.infer`). :class:`DirectChip` gives the whole model the
arrays it needs, each of the bench array's design, a column of
exponential cells for the softmax and, when asked, a row of activation
cells for the GELU (:mod:`labctl.engine.operators`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.engine.chips import SENSE_CHANNELS, Ledger
from labctl.engine.mac import MacConfig
from labctl.engine.operators import (
    ActivationConfig,
    ActivationRow,
    ExponentialArray,
    ExponentialConfig,
)
from labctl.engine.placement import (
    GELU_CELLS_OFF,
    GELU_NOT_RECTIFIER,
    NO_EXPONENTIAL_CELLS,
)
from labctl.engine.readout import (
    ColumnCalibration,
    ReadChain,
    ReadChainConfig,
    calibration_patterns,
    expected_currents,
)
from labctl.engine.writeverify import (
    Responses,
    WriteVerifyConfig,
    learn_gains,
    plan_trains,
)
from simulator.array_solver import ArrayCircuit
from simulator.bench import Bench
from simulator.device import SINH, CellArray, current_per_siemens


@dataclass(frozen=True)
class Programmed:
    """The outcome of programming one tile, per cell, row-major."""

    targets_s: np.ndarray
    final_s: np.ndarray  # last verify reading
    pulses: np.ndarray
    rounds: np.ndarray
    converged: np.ndarray
    stuck: np.ndarray


class DirectArray:
    """One array of cells, programmed and read directly.

    Parameters
    ----------
    bench : Bench
        The simulated bench whose preset, generator, timing and thermal floor
        apply.
    cells : CellArray
        The array: one of ``bench.arrays`` (:meth:`on_bench`) or one more
        array of the same design (:class:`DirectChip`).
    name : str
        The array's name, for messages.
    write, mac : WriteVerifyConfig, MacConfig
        How cells are programmed and multiplied on.
    chain : ReadChainConfig, optional
        The columns' read chain; none: the readings as they are.
    ledger : Ledger, optional
        Where counts and energy go (a new one when not given).
    drift_s : float
        Time each programmed tile rests before it is used, s: the cells
        relax by the device's retention meanwhile.
    stream : int
        Numbers the array among its chip's: its read noise and read chain.
    line_ohm : float
        Resistance of each line segment, Ω (the chip file's
        ``line_resistance_ohm``); 0 for ideal lines.
    switching_rng : numpy.random.Generator, optional
        Source of the cycle-to-cycle and programming noise of the pulses;
        the bench's generator when not given.
    """

    unavailable = {"softmax": NO_EXPONENTIAL_CELLS, "activation": GELU_NOT_RECTIFIER}

    def __init__(self, bench: Bench, cells: CellArray, name: str,
                 write: WriteVerifyConfig, mac: MacConfig,
                 chain: ReadChainConfig | None = None, ledger: Ledger | None = None,
                 drift_s: float = 0.0, stream: int = 0,
                 line_ohm: float = 0.0,
                 switching_rng: np.random.Generator | None = None) -> None:
        self.bench = bench
        self.switching_rng = bench.rng if switching_rng is None else switching_rng
        self.cells = cells
        self.array = name
        self.write = write
        self.mac = mac
        self.chain = ReadChain(chain, cells.cols, stream) if chain else None
        self.calibration: ColumnCalibration | None = None
        self.ledger = ledger if ledger is not None else Ledger()
        self.rng = np.random.default_rng([bench.seed, 0xD1EC7, stream])
        self.verified_s = np.full(cells.shape, np.nan)
        self.learned_gain = np.full((2, *cells.shape), np.nan)
        self._tile_count = 0
        self._tile_targets_s = np.zeros((0, 0))
        self._calibrated_at_s = 0.0
        self.drift_s = drift_s
        preset = bench.preset
        self._mac_iv = (float(current_per_siemens(preset, mac.read_voltage_v)),
                        float(current_per_siemens(preset, -mac.read_voltage_v)))
        self._circuit = None
        if line_ohm > 0:
            self._circuit = ArrayCircuit(cells.rows, cells.cols, r_row_ohm=line_ohm,
                                         r_col_ohm=line_ohm, source_ohm=line_ohm,
                                         sense_ohm=line_ohm)
        self._operator: tuple[np.ndarray, np.ndarray] | None = None
        self._check_half_select()

    @classmethod
    def on_bench(cls, bench: Bench, array: str, write: WriteVerifyConfig,
                 mac: MacConfig, chain: ReadChainConfig | None = None,
                 drift_s: float = 0.0) -> DirectArray:
        """One of the bench's own arrays, by name."""
        return cls(bench, bench.arrays[array], array, write, mac, chain, None, drift_s,
                   line_ohm=_line_ohm(bench, array))

    @property
    def tile_rows(self) -> int:
        """Rows a tile may use: an even number, for the pairs."""
        return self.cells.rows - self.cells.rows % 2

    @property
    def tile_cols(self) -> int:
        return self.cells.cols

    def _check_half_select(self) -> None:
        """Count the cells that half of the largest pulse would change.

        Through the instruments such a cell creeps under its neighbours'
        pulses; bench-direct leaves it alone, so the ledger counts them.
        """
        cfg = self.write
        half = max(cfg.set_voltage_v, -cfg.reset_voltage_v) / 2
        if half < min(self.cells.lowest_set_v, -self.cells.highest_reset_v):
            return
        free = ~(self.cells.stuck_low | self.cells.stuck_high)
        low = (self.cells.v_set_cell_v < half) | (self.cells.v_reset_cell_v > -half)
        self.ledger.half_select_exposed += int((low & free).sum())

    # programming -------------------------------------------------------------

    def program(self, targets_s: np.ndarray, operation: str = "") -> Programmed:
        """Write-verify every cell of ``targets_s`` (top-left block of the array)."""
        cfg = self.write
        rows, cols = targets_s.shape
        flat = (np.arange(rows)[:, None] * self.cells.cols + np.arange(cols)).ravel()
        target = targets_s.ravel().astype(float)
        g = self.verified_s.reshape(-1)[flat].copy()
        unread = np.isnan(g)
        if unread.any():
            g[unread] = self._read(flat[unread])
        gains = self.learned_gain.reshape(2, -1)[:, flat].copy()
        pulses = np.zeros(flat.size, dtype=np.int64)
        rounds = np.zeros(flat.size, dtype=np.int64)
        still = np.zeros(flat.size, dtype=np.int64)
        stuck = np.zeros(flat.size, dtype=bool)
        accept = cfg.tolerance * (1 - cfg.verify_margin) * target
        active = np.abs(g - target) > accept
        for _ in range(cfg.max_rounds):
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            setting = g[a] < target[a]
            response = self._responses(setting, gains[:, a])
            limit = np.where(setting, cfg.g_max_s, cfg.g_min_s)
            level, n = plan_trains(g[a], target[a], limit, response, cfg)
            before = g[a]
            self._trains(flat[a], level, n)
            g[a] = self._read(flat[a])
            pulses[a] += n
            rounds[a] += 1
            gain, moved = learn_gains(response, level, before, g[a], limit, n)
            polarity = np.where(setting, 0, 1)
            gains[polarity[moved], a[moved]] = gain[moved]
            calm = np.abs(g[a] - before) < 0.1 * cfg.tolerance * target[a]
            still[a] = np.where(calm, still[a] + 1, 0)
            at_limit = (n == cfg.max_train) & (level == response.limit_v)
            stuck[a] = (still[a] >= 3) & at_limit
            active[a] = (np.abs(g[a] - target[a]) > accept[a]) & ~stuck[a]
        if self.drift_s > 0:
            self.cells.age_to(self.cells.time_s + self.drift_s)
        self.bench.cells_changed()

        self.verified_s.reshape(-1)[flat] = g
        self.learned_gain.reshape(2, -1)[:, flat] = gains
        ledger = self.ledger
        ledger.cells_programmed += flat.size
        if operation:
            by_op = ledger.cells_by_operation
            by_op[operation] = by_op.get(operation, 0) + flat.size
        ledger.pulses += int(pulses.sum())
        ledger.trains += int(rounds.sum())
        converged = np.abs(g - target) <= cfg.tolerance * target
        done = Programmed(targets_s, g.reshape(rows, cols), pulses.reshape(rows, cols),
                          rounds.reshape(rows, cols), converged.reshape(rows, cols),
                          stuck.reshape(rows, cols))
        self._after_programming(targets_s)
        return done

    def _responses(self, setting: np.ndarray, gains: np.ndarray) -> Responses:
        cfg = self.write
        rate = np.where(setting, cfg.set_rate_per_s, cfg.reset_rate_per_s)
        nominal = rate * cfg.width_s
        gain = np.where(setting, gains[0], gains[1])
        learned = ~np.isnan(gain)
        return Responses(
            threshold_v=np.where(setting, cfg.set_threshold_v, cfg.reset_threshold_v),
            exponent=np.where(setting, cfg.set_exponent, cfg.reset_exponent),
            gain=np.where(learned, gain, nominal),
            limit_v=np.where(setting, cfg.set_voltage_v, cfg.reset_voltage_v),
            learned=learned,
        )

    def _trains(self, cells: np.ndarray, level_v: np.ndarray, n: np.ndarray) -> None:
        """Each cell's train of ``n`` pulses at its level, by the array's physics."""
        cfg = self.write
        g_now = self.cells.present_conductance_s()
        self._pulse_energy(cells, level_v, n, g_now)
        order = np.argsort(cells, kind="stable")
        cells, level_v, n = cells[order], level_v[order], n[order]
        for count in np.unique(n):
            pick = n == count
            plan = self.cells.switching_among(cells[pick].tolist(),
                                              level_v[pick].tolist(), cfg.width_s)
            if plan is not None:
                noise = self.switching_rng.standard_normal((int(count), 2, plan.size))
                self.cells.repeat(plan, noise)

    def _pulse_energy(self, cells: np.ndarray, level_v: np.ndarray, n: np.ndarray,
                      g_s: np.ndarray) -> None:
        """Selected cell at V, its row's and column's other cells at V/2."""
        r, c = np.divmod(cells, self.cells.cols)
        g_sel = g_s.reshape(-1)[cells]
        half = g_s.sum(axis=1)[r] + g_s.sum(axis=0)[c] - 2 * g_sel
        preset = self.bench.preset
        family = self.cells.uniform_family
        family = SINH if family is None else family
        full_w = current_per_siemens(preset, level_v, family) * level_v  # W per S
        half_w = current_per_siemens(preset, level_v / 2, family) * level_v / 2
        per_pulse = (g_sel * full_w + half * half_w) * self.write.width_s
        self.ledger.pulse_j += float((per_pulse * n).sum())

    def _read(self, cells: np.ndarray) -> np.ndarray:
        """Verify reads: the array's noisy read plus the bench's current floor."""
        cfg = self.write
        g = self.cells.read_conductance().reshape(-1)[cells]
        floor = self.bench.preset.thermal_noise_a / cfg.read_voltage_v
        g = g + floor * self.rng.standard_normal(cells.size)
        # the read puts V on the selected row; its other cells see it too
        g_now = self.cells.present_conductance_s()
        row_s = g_now.sum(axis=1)[cells // self.cells.cols]
        t_s = cfg.read_nplc / self.bench.timing.line_frequency_hz
        self.ledger.verify_reads += cells.size
        energy = cfg.read_voltage_v**2 * row_s.sum() * t_s
        self.ledger.verify_read_bench_j += float(energy)
        return g

    # read chain and calibration ---------------------------------------------

    def _after_programming(self, targets_s: np.ndarray) -> None:
        self._tile_count += 1
        self._tile_targets_s = targets_s
        self._calibrate(targets_s)

    def _calibrate(self, targets_s: np.ndarray) -> None:
        """Read the reference patterns and fit the columns to them."""
        self.calibration = None
        if self.chain is None:
            return
        v = self.mac.read_voltage_v
        self.chain.set_full_scale(targets_s, v)
        if not self.chain.config.calibrate:
            return
        n_in, n_cols = targets_s.shape[0] // 2, targets_s.shape[1]
        patterns = calibration_patterns(self.chain.config, n_in, self._tile_count)
        measured = self._plane_readings(patterns[:, None, :], n_cols)[:, 0]
        self.ledger.calibration_rounds += len(patterns) * -(-n_cols // SENSE_CHANNELS)
        expected = expected_currents(patterns, targets_s, v)
        self.calibration = ColumnCalibration.fit(measured, expected)
        self._calibrated_at_s = self.cells.time_s

    def _recalibrate_if_due(self) -> None:
        """Drift compensation: read the reference patterns again when the
        tile has aged ``recalibrate_after_s`` since they were last read."""
        if self.calibration is None or self.chain is None:
            return
        aged_s = self.cells.time_s - self._calibrated_at_s
        if aged_s >= self.chain.config.recalibrate_after_s:
            self.ledger.recalibrations += 1
            self._calibrate(self._tile_targets_s)

    # multiplying ---------------------------------------------------------------

    def multiply(self, x: np.ndarray, n_cols: int, operation: str = "") -> np.ndarray:
        """Σ_i x_i (G⁺ − G⁻)_ij for every vector of ``x`` (T, n_in), in siemens.

        The bit-serial MAC of :class:`labctl.engine.mac.AnalogMac`, each input
        quantized per vector to ``bits`` magnitude bits and a sign.
        """
        self._recalibrate_if_due()
        bits = self.mac.bits
        levels = 2**bits - 1
        scale = np.max(np.abs(x), axis=1)
        scale[scale == 0] = 1.0
        mag = np.rint(np.abs(x) / scale[:, None] * levels).astype(np.int64)
        sign = np.sign(x)
        planes = np.stack([((mag >> b) & 1) * sign for b in range(bits)], axis=1)
        currents = self._plane_readings(planes, n_cols)  # (T, bits, cols)
        on = np.abs(planes).any(axis=2)  # planes that are read at all
        weights = np.where(on, 2.0 ** np.arange(bits), 0.0)
        acc = np.einsum("tb,tbc->tc", weights, currents) / self.mac.read_voltage_v
        self._count_mac(x.shape[0], int(on.sum()), x.shape[1], n_cols, operation)
        return acc * (scale / levels)[:, None]

    def fixed(self, n_in: int, n_cols: int, vectors: int,
              operation: str = "") -> np.ndarray:
        """Σ_i (G⁺ − G⁻)_ij of inputs fixed at 1, read once per vector, siemens."""
        self._recalibrate_if_due()
        ones = np.ones((vectors, 1, n_in))
        acc = self._plane_readings(ones, n_cols)[:, 0] / self.mac.read_voltage_v
        self._count_mac(vectors, vectors, n_in, n_cols, operation)
        return acc

    def _plane_readings(self, planes: np.ndarray, n_cols: int) -> np.ndarray:
        """Column currents, A, of input planes of ±1/0 ``(T, P, n_in)``: noisy,
        through the read chain and its calibration when there is one."""
        v = self.mac.read_voltage_v
        g = self.cells.present_conductance_s()
        n_in = planes.shape[2]
        positive, negative = (planes > 0) * 1.0, (planes < 0) * 1.0
        if self._circuit is None:
            g_plus = g[0 : 2 * n_in : 2, :n_cols]
            g_minus = g[1 : 2 * n_in : 2, :n_cols]
            # I/G of a cell at +V and at -V: the device's I-V (ohmic at a read)
            up, down = self._mac_iv
            current = (positive @ (g_plus * up + g_minus * down)
                       + negative @ (g_plus * down + g_minus * up))
        else:
            # resistive lines: G+ rows at ±V, G- rows at ∓V, the rest at 0 V
            per_volt = self._per_volt(g)[: 2 * n_in, :n_cols]
            current = v * ((positive - negative) @ (per_volt[0::2] - per_volt[1::2]))
        # per-cell read noise: each reading's sum per column, same variance
        sigma_s = self.cells.read_factors(np.ones(g.shape)) - 1.0
        var = (sigma_s[: 2 * n_in, :n_cols] * g[: 2 * n_in, :n_cols] * v) ** 2
        sigma = np.sqrt(np.abs(planes) @ (var[0::2] + var[1::2]))
        noise = sigma * self.rng.standard_normal(current.shape)
        floor_a = self.bench.preset.thermal_noise_a
        floor = floor_a * self.rng.standard_normal(current.shape)
        reading = current + noise + floor
        if self.chain is not None:
            reading = self.chain.convert(reading, slice(0, n_cols))
            if self.calibration is not None:
                reading = self.calibration.apply(reading, slice(0, n_cols))
        self._mac_energy(planes, g)
        return reading

    def _per_volt(self, g_s: np.ndarray) -> np.ndarray:
        """Column current per volt on each row, S, through the resistive lines
        (kept while the cells stay as they are)."""
        assert self._circuit is not None
        if self._operator is None or self._operator[0] is not g_s:
            self._operator = (g_s, self._circuit.read_operator(g_s).from_rows_s)
        return self._operator[1]

    def _mac_energy(self, planes: np.ndarray, g_s: np.ndarray) -> None:
        """Every row on a plane at ±V over all its cells, columns at 0 V."""
        v = self.mac.read_voltage_v
        n_in = planes.shape[2]
        row_s = g_s.sum(axis=1)[: 2 * n_in]
        pair_s = row_s[0::2] + row_s[1::2]
        conductance = float((np.abs(planes) @ pair_s).sum())  # S, summed over readings
        groups = -(-self.cells.cols // SENSE_CHANNELS)
        t_bench = self.mac.nplc / self.bench.timing.line_frequency_hz
        self.ledger.mac_bench_j += v**2 * conductance * t_bench * groups
        if self.chain is not None:
            t_chain = self.chain.config.conversion_s
            self.ledger.mac_chain_j += v**2 * conductance * t_chain

    def _count_mac(self, vectors: int, planes: int, n_in: int, n_cols: int,
                   operation: str) -> None:
        groups = -(-n_cols // SENSE_CHANNELS)
        ledger = self.ledger
        ledger.mac_vectors += vectors
        ledger.mac_rounds += planes * groups
        macs = vectors * n_in * n_cols
        ledger.macs += macs
        if operation:
            ledger.count(operation, macs)


def _line_ohm(bench: Bench, array: str) -> float:
    """The line segment resistance the bench's chip file gives an array, Ω."""
    chip = bench.station.chip_spec
    spec = chip.arrays.get(array) if chip is not None else None
    return float(getattr(spec, "line_resistance_ohm", 0.0) or 0.0)


DYNAMIC_OPERATIONS = ("scores", "context")
"""Operations whose operands are written at run time."""


class DirectChip:
    """Bench-direct chip for a whole model, arrays of the bench's own design.

    The demo chip has one 64 × 8 array; the whole model tiles into some
    41 000 tiles of that size, and writing them all into one array would
    cycle every cell far beyond its endurance. So each weight tile goes into
    an array of its own, as on a chip that holds the model: a new array of
    the bench array's size, device preset, stuck fraction and generator,
    written once and kept for the run. The operands written at run time (the
    keys and values of each sentence and head) go round a pool of
    ``dynamic_arrays`` arrays, the first the bench's own array, which they
    wear. A static array is dropped from memory once multiplied on (nothing
    reads it again in this run); its wear is kept.

    The softmax's exponentials are read from a column of exponential cells
    (:class:`~labctl.engine.operators.ExponentialArray`) and, when
    ``activation`` is given, the FFN's GELU from a row of activation cells
    (:class:`~labctl.engine.operators.ActivationRow`): each formed,
    programmed and calibrated the first time it is asked for, with the
    bench's preset and stuck fraction, read through the run's read chain.
    """

    def __init__(self, bench: Bench, write: WriteVerifyConfig, mac: MacConfig,
                 chain: ReadChainConfig | None = None, drift_s: float = 0.0,
                 array: str | None = None, dynamic_arrays: int = 16,
                 exponential: ExponentialConfig | None = None,
                 activation: ActivationConfig | None = None) -> None:
        self.bench = bench
        self.exponential = exponential or ExponentialConfig()
        self.activation = activation
        self.unavailable = {} if activation else {"activation": GELU_CELLS_OFF}
        self.exponential_cells: ExponentialArray | None = None
        self.activation_cells: ActivationRow | None = None
        self.design = array or next(iter(bench.arrays))
        own = bench.arrays[self.design]
        self.stuck_fraction = float((own.stuck_low | own.stuck_high).mean())
        self.ledger = Ledger()
        self._settings = (write, mac, chain, drift_s)
        self._streams = 0
        self.pool = [self._array(own, self.design)]
        self.pool += [self._array(self._new_cells(), f"{self.design}+dyn{k}")
                      for k in range(1, dynamic_arrays)]
        self._next = 0
        self.current = self.pool[0]
        self.static_wear = Wear()
        self.static_arrays = 0

    @property
    def tile_rows(self) -> int:
        return self.current.tile_rows

    @property
    def tile_cols(self) -> int:
        return self.current.tile_cols

    def _new_cells(self) -> CellArray:
        own = self.bench.arrays[self.design]
        self._streams += 1
        return CellArray(own.rows, own.cols, self.bench.preset, self.bench.rng,
                         self.stuck_fraction,
                         read_rng=np.random.default_rng([self.bench.seed, 0xA77,
                                                         self._streams]))

    def _array(self, cells: CellArray, name: str) -> DirectArray:
        write, mac, chain, drift_s = self._settings
        self._streams += 1
        return DirectArray(self.bench, cells, name, write, mac, chain, self.ledger,
                           drift_s, stream=self._streams,
                           line_ohm=_line_ohm(self.bench, self.design))

    def program(self, targets_s: np.ndarray, operation: str = "") -> Programmed:
        """Program a tile into the next pool array (run-time operands) or a new one."""
        if self.current not in self.pool:
            self.static_wear.add(self.current.cells)
        if operation in DYNAMIC_OPERATIONS:
            self.current = self.pool[self._next]
            self._next = (self._next + 1) % len(self.pool)
        else:
            self.static_arrays += 1
            self.current = self._array(self._new_cells(),
                                       f"{self.design}+w{self.static_arrays}")
        return self.current.program(targets_s, operation)

    def multiply(self, x: np.ndarray, n_cols: int, operation: str = "") -> np.ndarray:
        return self.current.multiply(x, n_cols, operation)

    def fixed(self, n_in: int, n_cols: int, vectors: int,
              operation: str = "") -> np.ndarray:
        return self.current.fixed(n_in, n_cols, vectors, operation)

    def exponentials(self, shifted: np.ndarray, operation: str = "") -> np.ndarray:
        """``exp`` of shifted scores (each ≤ 0), each one exponential cell's
        calibrated current."""
        if self.exponential_cells is None:
            _, mac, chain, _ = self._settings
            self.exponential_cells = ExponentialArray(
                self.bench, self.exponential, chain, self.ledger, mac.nplc,
                self.stuck_fraction)
        return self.exponential_cells.exponentials(shifted)

    def gelu(self, h: np.ndarray, operation: str = "") -> np.ndarray:
        """GELU of every element, each the sum of a row of activation cells'
        calibrated currents."""
        if self.activation is None:
            raise ValueError(f"activation cells: {GELU_CELLS_OFF}")
        if self.activation_cells is None:
            write, mac, chain, _ = self._settings
            # generators of their own: the other cells' draws stay as they were
            pulses = np.random.default_rng([self.bench.seed, 0xAC7, 3])

            def program(cells: CellArray, targets_s: np.ndarray) -> Programmed:
                row = DirectArray(self.bench, cells, "activation", write, mac, None,
                                  self.ledger, stream=0xAC7, switching_rng=pulses)
                return row.program(targets_s, "activation")

            self.activation_cells = ActivationRow(
                self.bench, self.activation, program, chain, self.ledger, mac.nplc,
                self.stuck_fraction)
        return self.activation_cells.gelu(h)

    def wear(self) -> dict[str, Wear]:
        """Wear of the weight arrays and of the run-time operand pool."""
        if self.current not in self.pool:
            self.static_wear.add(self.current.cells)
            self.current = self.pool[0]
        dynamic = Wear()
        for a in self.pool:
            dynamic.add(a.cells)
        return {"weights": self.static_wear, "run-time operands": dynamic}


@dataclass
class Wear:
    """Write cycles of some arrays' cells, against their endurance."""

    cells: int = 0
    switching_events: int = 0
    max_events: int = 0
    cycles: int = 0
    max_cycles: int = 0
    worn_out: int = 0  # cells failed at their endurance
    endurance_median: float = float("nan")

    def add(self, cells: CellArray) -> None:
        self.cells += cells.rows * cells.cols
        events = cells.switch_count
        self.switching_events += int(events.sum())
        self.max_events = max(self.max_events, int(events.max()))
        cycles = getattr(cells, "cycles", None)
        if cycles is not None:
            self.cycles += int(cycles.sum())
            self.max_cycles = max(self.max_cycles, int(cycles.max()))
            endurance = cells.endurance_cell
            self.worn_out += int((cycles >= endurance).sum())
            self.endurance_median = float(np.median(endurance))

    @property
    def mean_cycles(self) -> float:
        return self.cycles / self.cells if self.cells else 0.0
