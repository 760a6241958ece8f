"""The read chain's ADC and the per-column calibration; per-column mapping."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.engine.mapping import DifferentialMapping
from labctl.engine.readout import ColumnCalibration, ReadChain, ReadChainConfig


def test_adc_codes_are_whole_steps_and_clip_at_full_scale():
    chain = ReadChain(ReadChainConfig(adc_bits=8, gain_sigma=0, offset_sigma=0), 4)
    targets = np.full((8, 4), 15e-6)
    targets[0::2] += 10e-6  # every pair 10 µS apart: 4 pairs, 40 µS per column
    full_scale = chain.set_full_scale(targets, 0.2)
    assert full_scale == pytest.approx(8e-6)
    lsb = full_scale / 128
    currents = np.array([[1.234e-6, -3.3e-6, 9e-6, -9e-6]])
    read = chain.convert(currents, slice(0, 4))
    np.testing.assert_allclose(read / lsb, np.rint(read / lsb), atol=1e-9)
    assert np.all(np.abs(read[0, :2] - currents[0, :2]) <= lsb / 2)
    assert read[0, 2] == pytest.approx(127 * lsb)  # clipped at the top code
    assert read[0, 3] == pytest.approx(-128 * lsb)


def test_more_adc_bits_read_closer():
    rng = np.random.default_rng(0)
    currents = rng.uniform(-4e-6, 4e-6, (200, 4))
    errors = []
    for bits in (6, 10):
        chain = ReadChain(ReadChainConfig(adc_bits=bits, gain_sigma=0,
                                          offset_sigma=0), 4)
        chain.full_scale_a = 5e-6
        errors.append(np.abs(chain.convert(currents, slice(0, 4)) - currents).max())
    assert errors[1] < errors[0] / 8


def test_calibration_undoes_each_column_gain_and_offset():
    rng = np.random.default_rng(1)
    expected = rng.normal(0, 1e-6, (24, 8))
    gain = rng.uniform(0.9, 1.1, 8)
    offset = rng.normal(0, 1e-8, 8)
    measured = (expected - offset) / gain
    fit = ColumnCalibration.fit(measured, expected)
    np.testing.assert_allclose(fit.gain, gain, rtol=1e-9)
    np.testing.assert_allclose(fit.offset_a, offset, atol=1e-18)
    np.testing.assert_allclose(fit.apply(measured, slice(0, 8)), expected, atol=1e-18)


def test_per_column_tiles_each_use_the_whole_window():
    w = np.random.default_rng(2).normal(size=(16, 40))
    w[3, 5] = 50.0  # an outlier squeezes only its own tile column
    m = DifferentialMapping(w, 15e-6, 85e-6, per_column=True)
    for tile in m.tiles(rows=64, cols=8):
        diff = tile.targets_s[0::2] - tile.targets_s[1::2]
        np.testing.assert_allclose(np.abs(diff).max(axis=0), 70e-6)
        np.testing.assert_allclose(diff / tile.scale_s, w[tile.outputs, tile.inputs].T)
