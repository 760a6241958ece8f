"""Endurance: SET/RESET cycles until the window closes.

Each cycle is a SET train then a RESET train on one cell (the V/2 scheme).
At checkpoints spread in log cycles (``per_decade`` per decade) the cycle is
read: the conductance after its SET train (on) and after its RESET train
(off). The run stops at the first checkpoint whose on/off ratio is below
``fail_ratio``, or at ``max_cycles``. Between checkpoints up to ``batch``
cycles travel in one bus message.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter

from labctl.figures import endurance_figures
from labctl.station import Station
from procedures.characterize import CellCharacterization, log_times


class Endurance(CellCharacterization):
    """SET/RESET cycling of one cell until its window closes."""

    NAME = "endurance"

    row = IntegerParameter("Row", minimum=0, maximum=4095, default=0)
    col = IntegerParameter("Column", minimum=0, maximum=4095, default=0)
    set_voltage = FloatParameter(
        "SET pulse", units="V", minimum=0, maximum=210, default=1.25
    )
    reset_voltage = FloatParameter(
        "RESET pulse", units="V", minimum=-210, maximum=0, default=-1.2
    )
    set_pulses = IntegerParameter(
        "SET pulses per cycle", minimum=1, maximum=10000, default=50
    )
    reset_pulses = IntegerParameter(
        "RESET pulses per cycle", minimum=1, maximum=10000, default=100
    )
    pulse_width = FloatParameter(
        "Pulse width", units="s", minimum=1e-7, maximum=1, default=10e-6
    )
    max_cycles = IntegerParameter(
        "Most cycles", minimum=1, maximum=10**9, default=100000
    )
    per_decade = IntegerParameter(
        "Checkpoints per decade", minimum=1, maximum=1000, default=10
    )
    fail_ratio = FloatParameter(
        "Failure below on/off", minimum=1.0, maximum=1e9, default=2.0
    )
    batch = IntegerParameter(
        "Cycles per message", minimum=1, maximum=10000, default=100
    )

    DATA_COLUMNS = ["Cycle", "On (S)", "Off (S)", "Ratio"]

    def check(self, station: Station) -> None:
        self.check_levels(station, pulses=("set_voltage", "reset_voltage"),
                          reads=("read_voltage",))
        self.check_cell(station, self.array, self.row, self.col)

    def startup(self) -> None:
        super().startup()
        self.access.prepare()

    def execute(self) -> None:
        access = self.access
        access.select(self.row, self.col)
        checkpoints = np.unique(np.rint(log_times(1, self.max_cycles, self.per_decade)))
        points = []
        done = 0
        for checkpoint in checkpoints.astype(int).tolist():
            self._cycle(checkpoint - 1 - done)
            on = access.pulse_read(self.set_voltage, self.set_pulses, self.pulse_width)
            off = access.pulse_read(
                self.reset_voltage, self.reset_pulses, self.pulse_width
            )
            done = checkpoint
            point = {
                "Cycle": checkpoint,
                "On (S)": on,
                "Off (S)": off,
                "Ratio": on / off if off > 0 else np.inf,
            }
            points.append(point)
            self.emit("results", point)
            self.progress(done, self.max_cycles)
            if point["Ratio"] < self.fail_ratio or self.should_stop():
                break
        self.summary.update(endurance_figures(points, self.fail_ratio))

    def _cycle(self, count: int) -> None:
        """`count` cycles, not read, `batch` to a message."""
        while count > 0:
            now = min(count, self.batch)
            with self.rig.batch():
                for _ in range(now):
                    self.access.pulse(
                        self.set_voltage, self.set_pulses, self.pulse_width
                    )
                    self.access.pulse(
                        self.reset_voltage, self.reset_pulses, self.pulse_width
                    )
            count -= now
            self.rig.check_stop()
