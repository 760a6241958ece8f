"""Benchmark: adaptive write-verify against the fixed-step baseline.

Both algorithms program the same targets (the first tiles of the demo head's
query, key and value projections) into the same simulated array: two fresh
benches from the demo bench file, same seed, default perovskite preset, each
driven through pyvisa, the drivers and the simulated instruments. Both work
to the same tolerance (2 %) under the same round limit. For each it prints
the mean pulses per cell, the fraction of cells whose true conductance (the
bench's cells, without read noise) ends within 2 % of its target, and the
bench time per cell; then the ratio of the pulses.

    python bench/writeverify.py [--tiles N] [--rows R] [--max-rounds M]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.engine.mapping import DifferentialMapping
from labctl.engine.writeverify import (
    FixedStepWriteVerify,
    WriteVerify,
    WriteVerifyConfig,
)
from labctl.infer import scratch_station
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract
from simulator.bench import bench_for, forget

MAX_ROUNDS = 600
"""Round limit of both algorithms: room for the baseline's one pulse a round."""

WITHIN = 0.02
"""A cell counts as programmed when its true conductance is this close, relative."""


@dataclass(frozen=True)
class Figures:
    """What programming the targets took with one algorithm."""

    name: str
    cells: int
    mean_pulses: float
    mean_rounds: float
    within: float  # fraction of cells within WITHIN of target, true conductance
    bench_s_per_cell: float
    wall_s_per_cell: float


def targets(tiles: int, rows: int | None) -> list[np.ndarray]:
    """The target maps of the demo head's first tiles, optionally their first rows."""
    w = load_extract().head_weights(0)
    mapping = DifferentialMapping(np.vstack([w.wq, w.wk, w.wv]), 15e-6, 85e-6)
    return [t.targets_s[:rows] for t in mapping.tiles(64, 8)[:tiles]]


def program(name: str, maps: list[np.ndarray], max_rounds: int,
            folder: Path) -> Figures:
    """Program the maps one after another on a fresh demo bench."""
    station = load_station(scratch_station(folder))
    bench = bench_for(folder / "bench.yaml")
    config = WriteVerifyConfig(max_rounds=max_rounds)
    rig = Rig(station)
    pulses, rounds, within = [], [], []
    started, bench_start = time.perf_counter(), bench.now_s
    try:
        kind = WriteVerify if name == "adaptive" else FixedStepWriteVerify
        writer = kind(rig, "A0", config)
        for targets_s in maps:
            logs = writer.program(targets_s)
            true_s = bench.arrays["A0"].conductance_s
            pulses += [e.pulses for e in logs]
            rounds += [e.rounds for e in logs]
            within += [abs(true_s[e.row, e.col] - e.target_s) <= WITHIN * e.target_s
                       for e in logs]
    finally:
        rig.close()
        forget(folder / "bench.yaml")
    n = len(pulses)
    return Figures(name, n, float(np.mean(pulses)), float(np.mean(rounds)),
                   float(np.mean(within)), (bench.now_s - bench_start) / n,
                   (time.perf_counter() - started) / n)


def compare(tiles: int = 2, rows: int | None = None,
            max_rounds: int = MAX_ROUNDS) -> tuple[Figures, Figures]:
    """Adaptive and fixed-step figures on the same targets and bench seed."""
    maps = targets(tiles, rows)
    with tempfile.TemporaryDirectory() as tmp:
        adaptive = program("adaptive", maps, max_rounds, Path(tmp) / "adaptive")
        fixed = program("fixed-step", maps, max_rounds, Path(tmp) / "fixed")
    return adaptive, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--rows", type=int, default=None,
                        help="program only the first ROWS rows of each tile")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS)
    args = parser.parse_args()
    adaptive, fixed = compare(args.tiles, args.rows, args.max_rounds)
    print(f"{adaptive.cells} cells per algorithm ({args.tiles} tiles of the demo "
          f"head), perovskite preset, tolerance 2 %, round limit {args.max_rounds}")
    print(f"{'algorithm':<11} {'pulses/cell':>11} {'rounds/cell':>11} "
          f"{'within 2 %':>10} {'bench/cell':>10} {'wall/cell':>9}")
    for f in (adaptive, fixed):
        print(f"{f.name:<11} {f.mean_pulses:>11.2f} {f.mean_rounds:>11.2f} "
              f"{f.within * 100:>9.2f}% {f.bench_s_per_cell * 1e3:>8.1f}ms "
              f"{f.wall_s_per_cell * 1e3:>7.2f}ms")
    print(f"pulse ratio adaptive / fixed-step: "
          f"{adaptive.mean_pulses / fixed.mean_pulses:.3f}")


if __name__ == "__main__":
    main()
