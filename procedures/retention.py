"""Retention: written levels read at times spread in log time.

``levels`` targets spread over ``g_low``..``g_high`` are written by
write-verify, each into ``cells_per_level`` cells (row by row from
``first_row``). Every cell is then read at times from ``first`` to
``duration`` after the writing, ``per_decade`` times per decade, with every
level at 0 V in between. On the simulated bench the waits run on its clock,
so a 1e4 s test takes seconds.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter

from labctl.figures import retention_figures
from labctl.station import Station
from procedures.characterize import CellCharacterization, block, level_map, log_times


class Retention(CellCharacterization):
    """Written levels read at times spread in log time."""

    NAME = "retention"

    first_row = IntegerParameter("First row", minimum=0, maximum=4095, default=0)
    levels = IntegerParameter("Levels", minimum=1, maximum=1024, default=4)
    cells_per_level = IntegerParameter(
        "Cells per level", minimum=1, maximum=1024, default=2
    )
    g_low = FloatParameter(
        "Lowest level", units="S", minimum=1e-9, maximum=1, default=20e-6
    )
    g_high = FloatParameter(
        "Highest level", units="S", minimum=1e-9, maximum=1, default=80e-6
    )
    tolerance = FloatParameter(
        "Relative tolerance", minimum=1e-4, maximum=0.5, default=0.01
    )
    first = FloatParameter(
        "First read after writing", units="s", minimum=1e-3, maximum=1e8, default=1.0
    )
    duration = FloatParameter(
        "Last read after writing", units="s", minimum=1e-3, maximum=1e9, default=1e4
    )
    per_decade = IntegerParameter("Reads per decade", minimum=1, maximum=100, default=3)

    DATA_COLUMNS = [
        "Level",
        "Row",
        "Column",
        "Target (S)",
        "Time (s)",
        "Conductance (S)",
    ]

    def check(self, station: Station) -> None:
        self.check_levels(station, reads=("read_voltage",))
        self.require(
            self.g_low <= self.g_high, "retention: g_low must not exceed g_high"
        )
        self.require(
            self.first < self.duration, "retention: first must come before duration"
        )
        count = self.levels * self.cells_per_level
        self.cells = block(self, station, self.array, self.first_row, count)

    def execute(self) -> None:
        targets = np.repeat(
            np.linspace(self.g_low, self.g_high, self.levels), self.cells_per_level
        ).tolist()
        shape = (self.access.lines.n_rows, self.access.lines.n_cols)
        target_map, skip = level_map(shape, self.cells, targets)
        self.access.program(target_map, done=skip)
        times = log_times(self.first, self.duration, self.per_decade)
        points = []
        elapsed = 0.0
        for k, time_s in enumerate(times.tolist()):
            self.access.wait(time_s - elapsed)
            elapsed = time_s
            for cell, ((row, col), target) in enumerate(
                zip(self.cells, targets, strict=True)
            ):
                point = {
                    "Level": cell // self.cells_per_level,
                    "Row": row,
                    "Column": col,
                    "Target (S)": target,
                    "Time (s)": time_s,
                    "Conductance (S)": self.access.read_cell(row, col),
                }
                points.append(point)
                self.emit("results", point)
            self.progress(k + 1, len(times))
            if self.should_stop():
                return
        self.access.idle()
        self.summary.update(retention_figures(points))
