"""The analog MAC's fidelity comes from the simulated chip and follows its physics."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.mapping import DifferentialMapping
from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract
from tests.conftest import write_bench


def tile_cosine(folder, **bench) -> float:
    """Program one tile of the head's query weights and multiply real tokens on it."""
    extract = load_extract()
    w = extract.head_weights(0)
    mapping = DifferentialMapping(np.vstack([w.wq, w.wk, w.wv]), 15e-6, 85e-6)
    tile = mapping.tiles(64, 8)[0]
    x = np.vstack([extract.hidden_states(i) for i in range(3)])[:, tile.inputs]
    reference = x @ mapping.weights[tile.outputs, tile.inputs].T
    rig = Rig(load_station(write_bench(folder, **bench)))
    try:
        WriteVerify(rig, "A0", WriteVerifyConfig()).program(tile.targets_s)
        chip = AnalogMac(rig, "A0", MacConfig()).run(x, 8) / mapping.scale_s
    finally:
        rig.close()
    cos = np.sum(chip * reference, 1) / (
        np.linalg.norm(chip, axis=1) * np.linalg.norm(reference, axis=1))
    return float(cos.mean())


@pytest.fixture(scope="module")
def default_cosine(tmp_path_factory) -> float:
    return tile_cosine(tmp_path_factory.mktemp("default"))


def test_programmed_tile_multiplies_real_tokens_faithfully(default_cosine):
    assert default_cosine > 0.995


def test_more_read_noise_lowers_fidelity(tmp_path, default_cosine):
    noisy = tile_cosine(tmp_path, device={"read_sigma": 0.1})
    assert noisy < default_cosine - 0.005


def test_write_verify_absorbs_cycle_to_cycle_noise(tmp_path, default_cosine):
    # Noisier switching costs pulses, not fidelity: each cell is verified.
    assert tile_cosine(tmp_path, device={"c2c_sigma": 0.2}) > 0.995


def test_stuck_cells_lower_fidelity(tmp_path, default_cosine):
    stuck = tile_cosine(tmp_path, stuck_fraction=0.15)
    assert stuck < default_cosine - 0.02


def second_tile_rounds(folder, forget: bool) -> float:
    """Mean write-verify rounds per cell of the second of two tiles on one array."""
    w = load_extract().head_weights(0)
    mapping = DifferentialMapping(np.vstack([w.wq, w.wk, w.wv]), 15e-6, 85e-6)
    first, second = mapping.tiles(64, 8)[:2]
    rig = Rig(load_station(write_bench(folder)))
    try:
        writer = WriteVerify(rig, "A0", WriteVerifyConfig())
        writer.program(first.targets_s[:16])
        assert np.isfinite(writer.learned_gain[:, :16]).any()
        if forget:
            writer.learned_gain[:] = np.nan
        cells = writer.program(second.targets_s[:16])
    finally:
        rig.close()
    assert np.mean([c.converged for c in cells]) > 0.99
    return float(np.mean([c.rounds for c in cells]))


def test_cells_programmed_again_start_from_their_learned_response(tmp_path):
    # The same bench twice (same seed): only the memory of each cell differs.
    remembered = second_tile_rounds(tmp_path / "remembered", forget=False)
    forgotten = second_tile_rounds(tmp_path / "forgotten", forget=True)
    assert remembered < 0.93 * forgotten
