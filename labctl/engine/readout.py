"""The read chain of the column currents, and its calibration per column.

A product chip reads its columns through a transimpedance stage and an ADC,
not through one SMU per column. :class:`ReadChain` models that chain on the
host, applied to the currents the sense channels measured: each column's
current goes through its own transimpedance stage (a gain within
``gain_sigma`` of nominal and an offset within ``offset_sigma`` of full scale,
drawn once per column, as resistor tolerance and amplifier offset are) and is
converted by an ADC of ``adc_bits`` bits, signed, that clips at full scale.
The full scale is chosen from the array's largest current: the current a
column of the programmed tile carries with every input at full scale and of
the sign of its weight, times ``headroom``.

:class:`ColumnCalibration` is measured after programming: reference input
patterns (each input on with a random sign) are run on the chip and each
column's reading is fitted to the current the target conductances would give,
``expected ≈ gain · measured + offset``, by least squares. Applying the fit to
every later reading of that column removes the chain's gain and offset and
the column's aggregate programming error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReadChainConfig:
    """The transimpedance stage and ADC of every column, and the calibration.

    Attributes
    ----------
    adc_bits : int
        Bits of the signed ADC (0: no ADC, the sense channel's reading as it is).
    headroom : float
        Full scale over the tile's largest column current, dimensionless.
    gain_sigma : float
        Relative spread of each column's transimpedance gain, dimensionless.
    offset_sigma : float
        Spread of each column's offset, as a fraction of full scale.
    conversion_s : float
        Integration and conversion time of one reading, s: the time the
        cells conduct per reading on a chip with this read chain.
    calibrate : bool
        Measure a per-column gain and offset fit after programming each tile.
    calibration_patterns : int
        Reference input patterns measured for the fit.
    recalibrate_after_s : float
        Drift compensation: the reference patterns are read again, and the
        fit made anew, before a tile is read once its cells have aged this
        long (bench time, s) since the last fit (``inf``: never).
    seed : int
        Seed of the columns' gains and offsets and the patterns.
    """

    adc_bits: int = 10
    headroom: float = 1.0
    gain_sigma: float = 0.01
    offset_sigma: float = 0.002
    conversion_s: float = 100e-9
    calibrate: bool = True
    calibration_patterns: int = 24
    recalibrate_after_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.adc_bits <= 24:
            raise ValueError(f"adc_bits: {self.adc_bits} must be in 0..24")
        if not self.headroom > 0:
            raise ValueError(f"headroom: {self.headroom} must be > 0")
        if self.calibrate and self.calibration_patterns < 3:
            raise ValueError("calibration_patterns: the fit needs at least 3")
        if not self.recalibrate_after_s > 0:
            raise ValueError(f"recalibrate_after_s: {self.recalibrate_after_s} must "
                             "be > 0")


class ReadChain:
    """The read chain of one array's columns (gains and offsets drawn once).

    ``array`` numbers the arrays of a chip of many: each has its own chain.
    """

    def __init__(self, config: ReadChainConfig, n_cols: int, array: int = 0) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, n_cols, array])
        self.gain = 1.0 + config.gain_sigma * rng.standard_normal(n_cols)
        self._offset = config.offset_sigma * rng.standard_normal(n_cols)
        self.full_scale_a = np.inf

    def set_full_scale(self, targets_s: np.ndarray, read_voltage_v: float) -> float:
        """Full scale of the tile about to be read, A, from its target map."""
        diff = np.abs(targets_s[0::2] - targets_s[1::2]).sum(axis=0)
        largest = read_voltage_v * float(diff.max()) if diff.size else 0.0
        self.full_scale_a = self.config.headroom * max(largest, 1e-12)
        return self.full_scale_a

    def convert(self, current_a: np.ndarray, cols: slice | list[int]) -> np.ndarray:
        """What the chain reads for currents of columns ``cols``, A, ``(..., cols)``."""
        fs = self.full_scale_a
        out = current_a * self.gain[cols] + self._offset[cols] * fs
        bits = self.config.adc_bits
        if bits == 0 or not np.isfinite(fs):
            return out
        half = 2 ** (bits - 1)
        lsb = fs / half
        return np.clip(np.rint(out / lsb), -half, half - 1) * lsb


@dataclass(frozen=True)
class ColumnCalibration:
    """Per-column linear fit of readings to the currents the targets give."""

    gain: np.ndarray
    offset_a: np.ndarray

    @classmethod
    def fit(cls, measured_a: np.ndarray, expected_a: np.ndarray) -> ColumnCalibration:
        """Least-squares ``expected ≈ gain · measured + offset`` per column.

        Parameters
        ----------
        measured_a, expected_a : numpy.ndarray
            ``(patterns, cols)`` readings and target currents, A.
        """
        m_mean = measured_a.mean(axis=0)
        e_mean = expected_a.mean(axis=0)
        dm = measured_a - m_mean
        spread = (dm * dm).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(spread > 0, (dm * (expected_a - e_mean)).sum(axis=0)
                            / spread, 1.0)
        return cls(gain, e_mean - gain * m_mean)

    def apply(self, current_a: np.ndarray, cols: slice | list[int]) -> np.ndarray:
        """Corrected readings of columns ``cols``, A."""
        return current_a * self.gain[cols] + self.offset_a[cols]


def calibration_patterns(config: ReadChainConfig, n_inputs: int,
                         tile_index: int) -> np.ndarray:
    """Reference inputs of a tile's calibration: every input on, random signs.

    Returns ``(patterns, n_inputs)`` of ±1.
    """
    rng = np.random.default_rng([config.seed, 1, tile_index])
    return rng.choice([-1.0, 1.0], size=(config.calibration_patterns, n_inputs))


def expected_currents(patterns: np.ndarray, targets_s: np.ndarray,
                      read_voltage_v: float) -> np.ndarray:
    """The column currents the target map gives for ±1 patterns, A."""
    diff = targets_s[0::2] - targets_s[1::2]  # (inputs, cols)
    return read_voltage_v * patterns @ diff
