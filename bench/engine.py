"""Benchmark: the attention engine's two hot loops on the simulated bench.

Programs one tile of the demo head's projections by write-verify and runs
every token of the committed sentences through it by the analog MAC, through
pyvisa, the drivers and the simulated instruments, and prints the wall time
per programmed cell and per MAC round beside the bench time the real
instruments would take.

    python bench/engine.py [--tiles N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.mapping import DifferentialMapping
from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract
from simulator.bench import bench_for

REPO = Path(__file__).resolve().parents[1]


def fresh_station(folder: Path) -> Path:
    """The demo station on a bench of its own (the demo bench file, copied)."""
    station = yaml.safe_load((REPO / "data/stations/demo.yaml").read_text())
    station["chip"] = str(REPO / "data/chips/pvk-demo.yaml")
    station["visa_library"] = f"{folder / 'bench.yaml'}@labsim"
    (folder / "station.yaml").write_text(yaml.safe_dump(station))
    bench = yaml.safe_load((REPO / "data/benches/demo.yaml").read_text())
    bench["station"] = str(folder / "station.yaml")
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench))
    return folder / "station.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp())
    station = load_station(fresh_station(folder))
    bench = bench_for(str(folder / "bench.yaml"))
    extract = load_extract()
    w = extract.head_weights(0)
    mapping = DifferentialMapping(np.vstack([w.wq, w.wk, w.wv]), 15e-6, 85e-6)
    tiles = mapping.tiles(64, 8)[: args.tiles]
    x = extract.all_tokens()
    rig = Rig(station)
    try:
        writer = WriteVerify(rig, "A0", WriteVerifyConfig())
        mac = AnalogMac(rig, "A0", MacConfig())
        prog_s = mac_s = prog_bench_s = mac_bench_s = 0.0
        cells = []
        for tile in tiles:
            t0, b0 = time.perf_counter(), bench.now_s
            cells += writer.program(tile.targets_s)
            t1, b1 = time.perf_counter(), bench.now_s
            mac.run(x[:, tile.inputs], tile.outputs.stop - tile.outputs.start)
            t2, b2 = time.perf_counter(), bench.now_s
            prog_s += t1 - t0
            mac_s += t2 - t1
            prog_bench_s += b1 - b0
            mac_bench_s += b2 - b1
    finally:
        rig.close()
    n = len(cells)
    print(f"write-verify: {n} cells, {prog_s / n * 1e3:.3f} ms wall per cell, "
          f"{np.mean([c.pulses for c in cells]):.1f} pulses and "
          f"{np.mean([c.rounds for c in cells]):.2f} rounds per cell, "
          f"{np.mean([c.converged for c in cells]) * 100:.1f} % within tolerance; "
          f"bench time {prog_bench_s / n * 1e3:.1f} ms per cell")
    print(f"analog MAC: {mac.rounds} bit-plane rounds in {mac.messages} bus messages, "
          f"{mac_s / mac.rounds * 1e6:.0f} us wall per round; bench time "
          f"{mac_bench_s / mac.rounds * 1e3:.2f} ms per round")
    per_head_s = 144 / len(tiles) * (prog_s + mac_s)
    print(f"a whole head (144 tiles) would take about {per_head_s:.0f} s of wall time")


if __name__ == "__main__":
    main()
