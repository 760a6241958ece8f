"""Weights as differential pairs, tiled."""

import numpy as np
import pytest

from labctl.engine.mapping import DifferentialMapping


def test_pairs_represent_the_weights_exactly():
    w = np.random.default_rng(0).normal(size=(5, 7))
    m = DifferentialMapping(w, 15e-6, 85e-6)
    g = m.targets()
    assert g.shape == (14, 5)
    assert g.min() == pytest.approx(15e-6)
    assert g.max() == pytest.approx(85e-6)
    np.testing.assert_allclose(m.weights_from(g), w, rtol=1e-12)
    # one cell of each pair stays at the zero-weight conductance
    assert np.all(np.minimum(g[0::2], g[1::2]) == pytest.approx(15e-6))


def test_tiles_cover_every_target_once():
    w = np.random.default_rng(1).normal(size=(20, 70))
    m = DifferentialMapping(w, 15e-6, 85e-6)
    tiles = m.tiles(rows=64, cols=8)
    covered = np.zeros_like(m.targets(), dtype=int)
    for t in tiles:
        covered[2 * t.inputs.start : 2 * t.inputs.stop, t.outputs] += 1
        np.testing.assert_array_equal(
            t.targets_s, m.targets()[2 * t.inputs.start : 2 * t.inputs.stop, t.outputs])
    assert np.all(covered == 1)
    assert len(tiles) == 3 * 3


def test_odd_tile_rows_refused():
    with pytest.raises(ValueError, match="even"):
        DifferentialMapping(np.ones((2, 2)), 1e-5, 1e-4).tiles(rows=7, cols=2)
