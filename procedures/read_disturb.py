"""Read disturb: what repeated reads at a voltage do to a written cell.

For each read voltage the cell is written to ``target`` (write-verify), read
once at the normal read voltage, then read ``reads`` times at the read
voltage under test in ``blocks`` blocks, each followed by a read at the
normal read voltage. The normal reads, against the stress reads done, show
the drift per read: nil below the device's read-disturb voltage, a creep
toward SET (positive) or RESET (negative) above it.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from labctl.figures import disturb_figures
from labctl.station import Station
from procedures.characterize import CellCharacterization, level_map, parse_levels


class ReadDisturb(CellCharacterization):
    """Drift of a written cell under repeated reads at several voltages."""

    NAME = "read_disturb"

    row = IntegerParameter("Row", minimum=0, maximum=4095, default=0)
    col = IntegerParameter("Column", minimum=0, maximum=4095, default=0)
    read_voltages = Parameter(
        "Read levels under test, V, comma-separated", default="0.1,0.3,0.5,0.6,0.7,0.75"
    )
    reads = IntegerParameter("Reads per level", minimum=1, maximum=10**7, default=200)
    blocks = IntegerParameter(
        "Normal reads per level", minimum=1, maximum=10000, default=5
    )
    target = FloatParameter(
        "Written state", units="S", minimum=1e-9, maximum=1, default=50e-6
    )
    tolerance = FloatParameter(
        "Relative tolerance", minimum=1e-4, maximum=0.5, default=0.01
    )
    read_voltage = FloatParameter(
        "Normal read voltage", units="V", minimum=1e-3, maximum=210, default=0.1
    )

    DATA_COLUMNS = ["Read voltage (V)", "Reads", "Conductance (S)"]

    def check(self, station: Station) -> None:
        limits = station.limits
        self.levels = parse_levels(self, "read_voltages", self.read_voltages)
        for level in self.levels:
            self.require(level > 0, "read_disturb: read levels must be > 0 V")
            self.check_level("read level", level, limits.max_voltage_v, "max_voltage_v")
        self.check_levels(station, reads=("read_voltage",))
        self.check_cell(station, self.array, self.row, self.col)

    def execute(self) -> None:
        access = self.access
        shape = (access.lines.n_rows, access.lines.n_cols)
        targets, skip = level_map(shape, [(self.row, self.col)], [self.target])
        per_block = np.diff(np.linspace(0, self.reads, self.blocks + 1).round()).astype(
            int
        )
        points = []
        for k, level in enumerate(self.levels):
            access.program(targets, done=skip)
            access.select(self.row, self.col)
            done = 0
            points.append(self._point(level, done, access.read()))
            for count in per_block.tolist():
                if count:
                    access.reads_at(level, count)
                done += count
                points.append(self._point(level, done, access.read()))
            self.progress(k + 1, len(self.levels))
            if self.should_stop():
                return
        access.idle()
        figures = disturb_figures(points)
        self.summary.update(
            {
                "disturb_from_v": figures["disturb_from_v"],
                "drift_per_read": {
                    f"{v:g}": d for v, d in figures["drift_per_read"].items()
                },
            }
        )

    def _point(self, level: float, reads: int, g: float) -> dict[str, float]:
        point = {"Read voltage (V)": level, "Reads": reads, "Conductance (S)": g}
        self.emit("results", point)
        return point
