"""Bipolar DC I–V sweep of one cell under a compliance.

The selected row is on the drive channel, the selected column on a sense
channel at 0 V, the other rows on ground and the other columns on the bias
channel, which follows V/2. Cells of the selected row see V/2 and every other
cell at most V/2 in magnitude, below the switching thresholds, while the sense
channel measures the selected cell's current alone.

The sweep goes 0 → ``v_max`` → 0 → ``v_min`` → 0 for each cycle: a SET on
the positive branch and a RESET on the negative one show as a hysteresis loop.

A resumed sweep goes on at the level after the last one stored, straight from
0 V (the levels in between are not swept again).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from labctl.station import Station
from labctl.storage import CellSwept
from procedures.base import LabProcedure


class IVSweep(LabProcedure):
    """Bipolar DC I–V sweep of one cell under a compliance."""

    NAME = "iv_sweep"

    array = Parameter("Array", default="A0")
    row = IntegerParameter("Row", minimum=0, maximum=4095, default=0)
    col = IntegerParameter("Column", minimum=0, maximum=4095, default=0)
    v_max = FloatParameter("Maximum voltage", units="V", minimum=0, maximum=210, default=1.2)
    v_min = FloatParameter("Minimum voltage", units="V", minimum=-210, maximum=0, default=-1.2)
    step = FloatParameter("Voltage step", units="V", minimum=1e-4, maximum=10, default=0.02)
    compliance = FloatParameter("Compliance", units="A", minimum=1e-9, maximum=1.5, default=2e-4)
    cycles = IntegerParameter("Cycles", minimum=1, maximum=1000, default=1)

    DATA_COLUMNS = ["Cycle", "Voltage (V)", "Current (A)", "Compliance"]

    #: Points of the sweep an earlier part of the run stored.
    points_stored = 0

    def check(self, station: Station) -> None:
        limits = station.limits
        for name in ("v_max", "v_min"):
            self.check_level(name, getattr(self, name), limits.max_voltage_v, "max_voltage_v")
        self.check_cell(station, self.array, self.row, self.col)
        self.require(
            self.compliance <= limits.max_compliance_a,
            f"iv_sweep: compliance = {self.compliance:g} A exceeds the chip's "
            f"max_compliance_a of {limits.max_compliance_a:g} A",
        )

    def levels(self) -> np.ndarray:
        """One cycle's levels: 0 → v_max → 0 → v_min → 0."""

        def leg(a: float, b: float) -> np.ndarray:
            n = max(1, int(round(abs(b - a) / self.step)))
            return np.linspace(a, b, n + 1)[1:]

        return np.concatenate([
            [0.0], leg(0, self.v_max), leg(self.v_max, 0),
            leg(0, self.v_min), leg(self.v_min, 0),
        ])

    def startup(self) -> None:
        rig = self.rig
        roles = rig.station.roles
        self.drive = rig.smu(roles.drive)
        self.bias = rig.smu(roles.bias)
        self.sense = rig.smu(roles.sense[0])
        lines = rig.lines(self.array)
        limit = rig.limits.max_compliance_a
        with rig.batch():
            for ch, lim in ((self.drive, limit), (self.bias, limit),
                            (self.sense, self.compliance)):
                ch.output_enabled = False
                ch.source_voltage = 0.0
                ch.current_limit = lim
            lines.select(self.row, self.col, rig.bus_of(roles.drive),
                         rig.bus_of(roles.sense[0]), rig.ground_bus,
                         rig.bus_of(roles.bias))
            for ch in (self.drive, self.bias, self.sense):
                ch.output_enabled = True

    def resume_from(self, points: list[dict[str, Any]], maps: dict[str, Any]) -> None:
        self.points_stored = len(points)

    def execute(self) -> None:
        levels = self.levels()
        plan = [(cycle, float(level))
                for cycle in range(self.cycles) for level in levels]
        start = done = self.points_stored
        peak_a = 0.0
        try:
            for cycle, level in plan[start:]:
                with self.rig.batch():
                    self.drive.source_voltage = level
                    self.bias.source_voltage = level / 2
                    current = -self.sense.measure_current()
                tripped = abs(current) >= 0.999 * self.compliance
                self.emit("results", {
                    "Cycle": cycle, "Voltage (V)": level,
                    "Current (A)": current, "Compliance": int(tripped),
                })
                done += 1
                peak_a = max(peak_a, abs(current))
                self.progress(done, len(plan))
                if self.should_stop():
                    return
        finally:
            self._record_cycles(start, done, len(levels), peak_a)
        self.summary.update(self._figures(levels))

    def _record_cycles(self, start: int, done: int, per_cycle: int,
                       peak_a: float) -> None:
        """The cell's history: the cycles this part of the run completed."""
        if done == start:
            return
        self.sink.add_cells([CellSwept(
            self.array, self.row, self.col, done // per_cycle - start // per_cycle,
            {"points": done - start, "v_max": self.v_max, "v_min": self.v_min,
             "compliance_a": self.compliance, "peak_current_a": peak_a},
        )])

    def _figures(self, levels: np.ndarray) -> dict[str, float]:
        return {"points": int(self.cycles * len(levels))}
