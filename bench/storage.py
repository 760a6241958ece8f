"""Benchmark: what storing a point costs, and how fast a large run loads.

1. Storing: a ``read_map`` run on a chip with one 64 × 64 array stores N
   points, each with the read of its cell, through
   :meth:`labctl.storage.RunRecorder.write`, the call the runner makes.
   Two ways the runner commits them are timed: one transaction per point (a
   point that comes more than :data:`labctl.runner.COMMIT_INTERVAL_S` after
   the last commit, as from real instruments) and one transaction per
   ``COMMIT_INTERVAL_S / MEASUREMENT_S`` points (points 1 ms apart, batched
   as the runner batches them). The cost per point is printed in µs and as
   a part of a 1 ms measurement; the goal is under 10 %.
2. Loading: a run of a million points is written in bulk, then loaded into
   pandas by :func:`labctl.storage.run_frame`, what ``labctl runs export``
   reads; the goal is under 2 s. The frame's rows are counted.

Both run on SQLite (a file in a temporary folder) and, when
``LABCTL_TEST_POSTGRES_URL`` names a server whose user may create databases,
on PostgreSQL, in a database made for the benchmark and dropped after it.

    python bench/storage.py [--points N] [--load-points N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from labctl import storage
from labctl.runner import COMMIT_INTERVAL_S
from procedures.read_map import ReadMap

POINTS = 2000
"""Points stored one by one."""

LOAD_POINTS = 1_000_000
"""Points of the run loaded into pandas."""

MEASUREMENT_S = 1e-3
"""Duration of one measurement the storage cost is compared with, s."""

STORE_GOAL = 0.10
"""Largest storage cost, as a part of one measurement."""

LOAD_GOAL_S = 2.0
"""Longest load of the large run into pandas, s."""

BULK_POINTS = 10_000
"""Points per transaction while the large run is written."""

ARRAY = "A0"
SIDE = 64
"""Rows and columns of the benchmark chip's one array."""

CHIP_SPEC = {"preset": "bench", "arrays": {ARRAY: {"rows": SIDE, "cols": SIDE}}}
READ_VOLTAGE_V = 0.2


@dataclass(frozen=True)
class StoreFigures:
    """Storing points as the runner does, with one commit every ``batch``."""

    batch: int
    points: int
    stored: int  # points the database holds afterwards
    wall_s: float

    @property
    def per_point_us(self) -> float:
        return self.wall_s / self.points * 1e6

    @property
    def part_of_measurement(self) -> float:
        return self.wall_s / self.points / MEASUREMENT_S


@dataclass(frozen=True)
class LoadFigures:
    """Loading a run into pandas."""

    points: int
    rows: int  # rows of the frame
    write_s: float
    load_s: float


@dataclass(frozen=True)
class Figures:
    database: str
    stores: list[StoreFigures]
    load: LoadFigures


def start_run(engine: Engine) -> storage.RunRecorder:
    return storage.RunRecorder.start(
        engine, procedure=ReadMap.NAME, parameters={"array": ARRAY},
        station_name="bench", station_snapshot={"chip_spec": CHIP_SPEC},
        chip_name="bench-chip", software_version="bench")


def read(seq: int) -> tuple[dict[str, float], storage.CellRead]:
    """Point ``seq`` of a read map and the read of its cell."""
    row, col = divmod(seq % (SIDE * SIDE), SIDE)
    conductance_s = 1e-5 + 1e-9 * seq
    current_a = conductance_s * READ_VOLTAGE_V
    point = {"Row": row, "Column": col, "Current (A)": current_a,
             "Conductance (S)": conductance_s}
    return point, storage.CellRead(ARRAY, row, col, conductance_s)


def store(engine: Engine, points: int, batch: int) -> StoreFigures:
    """Store ``points`` points with their cells, committing every ``batch``."""
    recorder = start_run(engine)
    reads = [read(seq) for seq in range(points)]
    began = time.perf_counter()
    for first in range(0, points, batch):
        chunk = reads[first:first + batch]
        recorder.write([p for p, _ in chunk], [c for _, c in chunk])
    wall_s = time.perf_counter() - began
    recorder.finish("finished")
    stored = storage.point_counts(engine, [recorder.run_id])[recorder.run_id]
    return StoreFigures(batch, points, stored, wall_s)


def load(engine: Engine, points: int) -> LoadFigures:
    """Write a run of ``points`` points in bulk, then time loading it."""
    recorder = start_run(engine)
    began = time.perf_counter()
    for first in range(0, points, BULK_POINTS):
        recorder.write([read(seq)[0] for seq in
                        range(first, min(first + BULK_POINTS, points))])
    write_s = time.perf_counter() - began
    recorder.finish("finished")

    began = time.perf_counter()
    frame = storage.run_frame(engine, recorder.run_id, ReadMap.DATA_COLUMNS)
    load_s = time.perf_counter() - began
    return LoadFigures(points, len(frame), write_s, load_s)


def measure(database: str, url: str, points: int, load_points: int) -> Figures:
    engine = storage.connect(url)
    try:
        batched = max(1, round(COMMIT_INTERVAL_S / MEASUREMENT_S))
        stores = [store(engine, points, 1), store(engine, points, batched)]
        return Figures(database, stores, load(engine, load_points))
    finally:
        engine.dispose()


def run(points: int = POINTS, load_points: int = LOAD_POINTS,
        postgres_url: str | None = None) -> list[Figures]:
    """The figures on SQLite, then on PostgreSQL if a server URL is given."""
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.sqlite'}"
        figures.append(measure("SQLite", url, points, load_points))
    if postgres_url:
        with storage.throwaway_database(postgres_url, "labctl_bench") as url:
            figures.append(measure("PostgreSQL", url, points, load_points))
    return figures


def report(figures: list[Figures]) -> str:
    """The figures as two tables: storing, then loading."""
    lines = [f"{'database':<12}{'commit':<18}{'points':>8}{'per point':>12}"
             f"{'of 1 ms':>9}{'goal':>7}"]
    for f in figures:
        for s in f.stores:
            commit = "each point" if s.batch == 1 else f"every {s.batch} points"
            met = "met" if s.part_of_measurement < STORE_GOAL else "MISSED"
            lines.append(f"{f.database:<12}{commit:<18}{s.stored:>8}"
                         f"{s.per_point_us:>9.0f} us{s.part_of_measurement:>9.1%}"
                         f"{met:>7}")
    lines += ["", f"{'database':<12}{'points':>10}{'rows':>10}{'write s':>9}"
                  f"{'load s':>8}{'goal':>7}"]
    for f in figures:
        ld = f.load
        met = "met" if ld.load_s < LOAD_GOAL_S and ld.rows == ld.points else "MISSED"
        lines.append(f"{f.database:<12}{ld.points:>10}{ld.rows:>10}"
                     f"{ld.write_s:>9.1f}{ld.load_s:>8.2f}{met:>7}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=POINTS)
    parser.add_argument("--load-points", type=int, default=LOAD_POINTS)
    args = parser.parse_args()
    postgres_url = os.environ.get("LABCTL_TEST_POSTGRES_URL")
    figures = run(args.points, args.load_points, postgres_url)
    print(f"storing {args.points} read_map points with their cells; goal under "
          f"{STORE_GOAL:.0%} of a {MEASUREMENT_S * 1e3:g} ms measurement")
    print(f"loading a run into pandas by run_frame; goal under {LOAD_GOAL_S:g} s")
    print(report(figures))
    if not postgres_url:
        print("PostgreSQL skipped: set LABCTL_TEST_POSTGRES_URL to a server URL "
              "whose user may create databases")


if __name__ == "__main__":
    main()
