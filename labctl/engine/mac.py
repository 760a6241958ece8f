"""Analog multiply-accumulate on a programmed array, bit-serial in its inputs.

The station has two sources for inputs (drive at ``+v``, bias at ``−v``), a
ground bus and a few sense channels holding columns at 0 V. An input vector
is quantized to ``bits`` magnitude bits and a sign per element; for each bit
plane the matrix puts the rows of the inputs whose bit is set on the drive or
bias bus (by the sign, and the opposite one for the G⁻ row of the pair), the
others on ground. Each sense channel then reads one column's current, the sum
over the array's cells: the analog MAC of that bit plane. The host adds the
planes with their weights 2^b. Columns not being sensed are grounded, so every
line sits at a fixed potential and no sneak path adds to a column's current.

With a read chain (:mod:`labctl.engine.readout`) each reading goes through
the column's modelled transimpedance stage and ADC, and through the column's
calibration once :meth:`AnalogMac.calibrate` measured one. Inputs fixed at 1
(a bias's rows) are read in a round of their own: :meth:`AnalogMac.fixed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labctl.engine.readout import (
    ColumnCalibration,
    ReadChain,
    ReadChainConfig,
    calibration_patterns,
    expected_currents,
)
from labctl.rig import Rig


@dataclass(frozen=True)
class MacConfig:
    bits: int = 5  # magnitude bits of an input; the sign is the polarity
    read_voltage_v: float = 0.2
    limit_a: float = 5e-3
    nplc: float = 0.1  # integration of each sense reading, power-line cycles


class AnalogMac:
    """Bit-serial vector-matrix products on one array through the matrix."""

    def __init__(self, rig: Rig, array: str, config: MacConfig,
                 chain: ReadChainConfig | None = None) -> None:
        self.rig = rig
        self.config = config
        roles = rig.station.roles
        self.plus = rig.smu(roles.drive)
        self.minus = rig.smu(roles.bias)
        self.sense = [rig.smu(ch) for ch in roles.sense]
        self.plus_bus = rig.bus_of(roles.drive)
        self.minus_bus = rig.bus_of(roles.bias)
        self.sense_bus = [rig.bus_of(ch) for ch in roles.sense]
        self.ground = rig.ground_bus
        self.lines = rig.lines(array)
        rig.guard.check_level(roles.drive, config.read_voltage_v, "read level")
        self.messages = 0  # bus messages of multiply rounds
        self.rounds = 0  # bit-plane rounds (readings of the sense channels)
        self.chain = ReadChain(chain, self.lines.n_cols) if chain else None
        self.calibration: ColumnCalibration | None = None

    def prepare(self) -> None:
        with self.rig.batch():
            for ch in (self.plus, self.minus, *self.sense):
                ch.output_enabled = False
                ch.source_voltage = 0.0
                ch.current_limit = self.config.limit_a
            for ch in self.sense:
                ch.nplc = self.config.nplc
            for ch in (self.plus, self.minus, *self.sense):
                ch.output_enabled = True

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-vector scale, integer magnitudes and signs of inputs (T, n)."""
        levels = 2**self.config.bits - 1
        scale = np.max(np.abs(x), axis=1)
        scale[scale == 0] = 1.0
        mag = np.rint(np.abs(x) / scale[:, None] * levels).astype(np.int64)
        return scale / levels, mag, np.sign(x)

    def run(
        self,
        x: np.ndarray,
        n_cols: int,
        on_vector: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Σ_i x_i (G⁺ − G⁻)_ij for every vector of ``x`` (T, n_in), in siemens.

        Rows 2i and 2i+1 of the array hold input i's pair; the first
        ``n_cols`` columns are outputs.
        """
        t_count, n_in = x.shape
        if 2 * n_in > self.lines.n_rows or n_cols > self.lines.n_cols:
            raise ValueError(f"{n_in} inputs x {n_cols} outputs do not fit the array lines")
        v = self.config.read_voltage_v
        step, mag, sign = self.quantize(x)
        groups = [
            list(range(j0, min(j0 + len(self.sense), n_cols)))
            for j0 in range(0, n_cols, len(self.sense))
        ]
        acc = np.zeros((t_count, n_cols))
        self.prepare()
        for cols in groups:
            self._sense_columns(cols)
            readings = self.rig.readings(self.sense[: len(cols)])
            for t in range(t_count):
                self.rig.check_stop()
                planes = self._planes(mag[t], sign[t])
                if planes:
                    currents = self._rounds(planes, readings, v)
                    if self.chain is not None:
                        currents = self._read_out(currents, cols)
                    weights = np.array([2.0**b for b, _ in planes])
                    acc[t, cols] += weights @ currents / v
                if on_vector is not None:
                    on_vector(t)
        return acc * step[:, None]

    def fixed(self, n_in: int, n_cols: int, vectors: int) -> np.ndarray:
        """Σ_i (G⁺ − G⁻)_ij of the first ``n_in`` inputs all at 1, in siemens.

        One round per vector, every pair's G⁺ row at +V and G⁻ row at −V:
        the rows of a bias. Returns ``(vectors, n_cols)``.
        """
        ones = np.ones((vectors, n_in))
        return self._patterns(ones, n_cols) / self.config.read_voltage_v

    def calibrate(self, targets_s: np.ndarray, tile_index: int) -> None:
        """Set the read chain's full scale for a programmed tile and fit each
        column's gain and offset on reference patterns (if configured)."""
        if self.chain is None:
            return
        self.calibration = None
        v = self.config.read_voltage_v
        self.chain.set_full_scale(targets_s, v)
        if not self.chain.config.calibrate:
            return
        n_in, n_cols = targets_s.shape[0] // 2, targets_s.shape[1]
        patterns = calibration_patterns(self.chain.config, n_in, tile_index)
        measured = self._patterns(patterns, n_cols)
        self.calibration = ColumnCalibration.fit(
            measured, expected_currents(patterns, targets_s, v))

    def _patterns(self, patterns: np.ndarray, n_cols: int) -> np.ndarray:
        """Column currents, A, of ±1 input patterns, one round each."""
        v = self.config.read_voltage_v
        out = np.zeros((len(patterns), n_cols))
        self.prepare()
        for j0 in range(0, n_cols, len(self.sense)):
            cols = list(range(j0, min(j0 + len(self.sense), n_cols)))
            self._sense_columns(cols)
            readings = self.rig.readings(self.sense[: len(cols)])
            for k, pattern in enumerate(patterns):
                self.rig.check_stop()
                planes = self._planes(np.abs(pattern).astype(np.int64), pattern)
                currents = self._rounds(planes, readings, v)
                if self.chain is not None:
                    currents = self._read_out(currents, cols)
                out[k, cols] = currents[0]
        return out

    def _read_out(self, currents: np.ndarray, cols: list[int]) -> np.ndarray:
        chain = self.chain
        assert chain is not None
        currents = chain.convert(currents, cols)
        if self.calibration is not None:
            currents = self.calibration.apply(currents, cols)
        return currents

    def _sense_columns(self, cols: list[int]) -> None:
        buses = [self.ground] * self.lines.n_cols
        for k, j in enumerate(cols):
            buses[j] = self.sense_bus[k]
        with self.rig.batch():
            self.plus.source_voltage = 0.0
            self.minus.source_voltage = 0.0
            self.lines.set(col_bus=buses)

    def _planes(self, mag: np.ndarray, sign: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The row bus codes of every bit plane that has a bit set."""
        lines = self.lines
        plus, minus = lines.code(self.plus_bus), lines.code(self.minus_bus)
        ground = lines.code(self.ground)
        n = mag.size
        positive = sign > 0
        g_plus = np.where(positive, plus, minus)  # the G+ row of each pair
        g_minus = np.where(positive, minus, plus)
        planes = []
        for b in range(self.config.bits):
            on = ((mag >> b) & 1).astype(bool)
            if not on.any():
                continue
            rows = np.full(lines.n_rows, ground, dtype=np.int64)
            rows[0 : 2 * n : 2] = np.where(on, g_plus, ground)
            rows[1 : 2 * n : 2] = np.where(on, g_minus, ground)
            planes.append((b, rows))
        return planes

    def _rounds(self, planes: list[tuple[int, np.ndarray]], readings: object,
                v: float) -> np.ndarray:
        """Every bit plane of one vector in one bus message; (planes, columns)."""
        with self.rig.batch():
            for _, rows in planes:
                self.plus.source_voltage = 0.0
                self.minus.source_voltage = 0.0
                self.lines.set_codes(rows=rows)
                self.plus.source_voltage = v
                self.minus.source_voltage = -v
                readings.queue()  # type: ignore[attr-defined]
        self.messages += 1
        self.rounds += len(planes)
        # A sense channel sinks the column's current: it reads negative.
        return -readings.collect(len(planes))  # type: ignore[attr-defined]
