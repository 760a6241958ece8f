"""Device-to-device variability map: every cell of a block, fully SET and RESET.

Each cell of the ``rows`` x ``cols`` block from the array's first line gets a
SET train and is read (on), then a RESET train and is read (off), through the
V/2 scheme. The maps of on and off conductances are stored with the run; the
spread of the on state over the cells is the device-to-device variation.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter

from labctl.figures import variability_figures
from labctl.station import Station
from labctl.storage import CellRead
from procedures.characterize import CellCharacterization


class Variability(CellCharacterization):
    """Map of SET and RESET conductances over a block of cells."""

    NAME = "variability"

    rows = IntegerParameter("Rows", minimum=1, maximum=4096, default=8)
    cols = IntegerParameter("Columns", minimum=1, maximum=4096, default=8)
    set_voltage = FloatParameter(
        "SET pulse", units="V", minimum=0, maximum=210, default=1.25
    )
    reset_voltage = FloatParameter(
        "RESET pulse", units="V", minimum=-210, maximum=0, default=-1.2
    )
    set_pulses = IntegerParameter("SET pulses", minimum=1, maximum=10000, default=150)
    reset_pulses = IntegerParameter(
        "RESET pulses", minimum=1, maximum=10000, default=100
    )
    pulse_width = FloatParameter(
        "Pulse width", units="s", minimum=1e-7, maximum=1, default=10e-6
    )

    DATA_COLUMNS = ["Row", "Column", "On (S)", "Off (S)"]

    def check(self, station: Station) -> None:
        self.check_levels(station, pulses=("set_voltage", "reset_voltage"),
                          reads=("read_voltage",))
        self.check_cell(station, self.array, self.rows - 1, self.cols - 1)

    def startup(self) -> None:
        super().startup()
        self.access.prepare()

    def execute(self) -> None:
        access = self.access
        on_map = np.full((self.rows, self.cols), np.nan)
        off_map = np.full((self.rows, self.cols), np.nan)
        points = []
        try:
            for k, (row, col) in enumerate(self._cells()):
                access.select(row, col)
                on = access.pulse_read(
                    self.set_voltage, self.set_pulses, self.pulse_width
                )
                off = access.pulse_read(
                    self.reset_voltage, self.reset_pulses, self.pulse_width
                )
                on_map[row, col], off_map[row, col] = on, off
                self.sink.add_cells([CellRead(self.array, row, col, off)])
                point = {"Row": row, "Column": col, "On (S)": on, "Off (S)": off}
                points.append(point)
                self.emit("results", point)
                self.progress(k + 1, self.rows * self.cols)
                if self.should_stop():
                    return
        finally:  # a stopped map keeps the cells it read
            self.sink.add_map(self.array, "on", on_map, self.read_voltage)
            self.sink.add_map(self.array, "off", off_map, self.read_voltage)
        self.summary.update(variability_figures(points))

    def _cells(self) -> list[tuple[int, int]]:
        """The block's cells, row by row."""
        return [(r, c) for r in range(self.rows) for c in range(self.cols)]
