"""Multilevel test: how many distinguishable, stable conductance states.

``levels`` targets spread evenly over ``g_low``..``g_high`` are written by
write-verify into as many cells (row by row from ``first_row``), one level
per cell. Each cell is then read ``reads`` times at once and again after
``hold`` (on the simulated bench's clock): a level counts when, at both
times, all its reads lie above those of the level counted below it.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter

from labctl.figures import multilevel_figures
from labctl.station import Station
from procedures.characterize import CellCharacterization, block, level_map


class Multilevel(CellCharacterization):
    """Distinguishable stable states: many levels written, read and read again."""

    NAME = "multilevel"

    first_row = IntegerParameter("First row", minimum=0, maximum=4095, default=0)
    levels = IntegerParameter("Levels", minimum=2, maximum=4096, default=32)
    g_low = FloatParameter(
        "Lowest level", units="S", minimum=1e-9, maximum=1, default=10e-6
    )
    g_high = FloatParameter(
        "Highest level", units="S", minimum=1e-9, maximum=1, default=85e-6
    )
    tolerance = FloatParameter(
        "Relative tolerance", minimum=1e-4, maximum=0.5, default=0.01
    )
    reads = IntegerParameter(
        "Reads per level and time", minimum=1, maximum=10000, default=8
    )
    hold = FloatParameter("Hold", units="s", minimum=0, maximum=1e8, default=1000.0)

    DATA_COLUMNS = [
        "Level",
        "Row",
        "Column",
        "Target (S)",
        "Time (s)",
        "Read",
        "Conductance (S)",
    ]

    def check(self, station: Station) -> None:
        self.check_levels(station, reads=("read_voltage",))
        self.require(self.g_low < self.g_high, "multilevel: g_low must be below g_high")
        self.cells = block(self, station, self.array, self.first_row, self.levels)

    def execute(self) -> None:
        targets = np.linspace(self.g_low, self.g_high, self.levels).tolist()
        shape = (self.access.lines.n_rows, self.access.lines.n_cols)
        target_map, skip = level_map(shape, self.cells, targets)
        logs = self.access.program(target_map, done=skip)
        points = []
        for time_s in (0.0, self.hold):
            self.access.wait(time_s)
            for level, ((row, col), target) in enumerate(
                zip(self.cells, targets, strict=True)
            ):
                self.access.select(row, col)
                for read, g in enumerate(
                    self.access.reads_at(self.read_voltage, self.reads).tolist()
                ):
                    point = {
                        "Level": level,
                        "Row": row,
                        "Column": col,
                        "Target (S)": target,
                        "Time (s)": time_s,
                        "Read": read,
                        "Conductance (S)": g,
                    }
                    points.append(point)
                    self.emit("results", point)
            self.progress(1 + (time_s > 0), 2)
            if self.should_stop():
                return
        self.summary.update(multilevel_figures(points))
        self.summary["converged"] = int(sum(entry.converged for entry in logs))
