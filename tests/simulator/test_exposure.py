"""The record of what reached the chip: the folded maxima match a plain count."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract
from simulator.bench import bench_for
from tests.conftest import write_bench


def plain_maxima(exposure, relays, levels, nets_of):
    """Per array, the highest |V| across each cell, one configuration at a time."""
    width = len(exposure.channels)
    cells = {name: np.zeros(shape) for name, shape in exposure._arrays.items()}
    for k, pattern in enumerate(relays):
        nets = nets_of(pattern)
        low = [math.inf] * nets.n_nets
        high = [-math.inf] * nets.n_nets
        if nets.ground_net >= 0:
            low[nets.ground_net] = high[nets.ground_net] = 0.0
        for j, channel in enumerate(exposure.channels):
            level = levels[k * width + j]
            net = nets.channel_net.get(channel, -1)
            if level is None or net < 0:
                continue
            lo, hi = (
                (-level.imag, level.imag)
                if isinstance(level, complex)
                else (level,) * 2
            )
            low[net], high[net] = min(low[net], lo), max(high[net], hi)
        held = [v != math.inf for v in low]
        floor = min([0.0] + [v for v, h in zip(low, held, strict=True) if h])
        ceiling = max([0.0] + [v for v, h in zip(high, held, strict=True) if h])
        low = [v if h else floor for v, h in zip(low, held, strict=True)]
        high = [v if h else ceiling for v, h in zip(high, held, strict=True)]
        for name, (rows, cols) in zip(exposure._arrays, nets.lines, strict=True):
            for r, rn in enumerate(rows):
                for c, cn in enumerate(cols):
                    v = max(high[rn] - low[cn], high[cn] - low[rn])
                    cells[name][r, c] = max(cells[name][r, c], v)
    return cells


def test_folded_maxima_match_a_plain_count_over_programming_and_multiplying():
    folder = Path(tempfile.mkdtemp())
    station = load_station(write_bench(folder))
    bench = bench_for(str(folder / "bench.yaml"))
    rig = Rig(station)
    try:
        targets = np.linspace(20e-6, 80e-6, 16).reshape(2, 8)
        WriteVerify(rig, "A0", WriteVerifyConfig()).program(targets)
        x = load_extract().all_tokens()[:3, :32]
        AnalogMac(rig, "A0", MacConfig()).run(x, 8)
    finally:
        rig.close()
    exposure = bench.exposure
    relays, levels = list(exposure.relays), list(exposure.levels)
    assert len(relays) > 100
    expected = plain_maxima(exposure, relays, levels, bench._nets_of)
    np.testing.assert_allclose(exposure.cell_max_v("A0"), expected["A0"], atol=1e-12)
    # Pulses reached the programmed cells; reads alone reached the others.
    assert exposure.cell_max_v("A0")[:2].max() > 0.8
