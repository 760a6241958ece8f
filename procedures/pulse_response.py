"""Potentiation and depression curves: a cell's conductance pulse by pulse.

For each SET amplitude the cell is first brought to its low state (twice the
curve's pulses at the strongest RESET amplitude), then read after each of
``pulses`` identical SET pulses; each RESET amplitude likewise from the high
state. ``cycles`` repeats the whole, for the cycle-to-cycle variation. The
cell is reached by the V/2 scheme (see :mod:`procedures.characterize`); each
pulse and the read after it are one bus message.

Several amplitudes (``--set_voltages 1.0,1.2,1.4``) show the amplitude
dependence, a longer or shorter ``pulse_width`` the width dependence; the
preset fit (``labctl sim fit``) uses both.
"""

from __future__ import annotations

from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from labctl.figures import pulse_figures
from labctl.station import Station
from procedures.characterize import CellCharacterization, parse_levels


class PulseResponse(CellCharacterization):
    """Potentiation and depression curves under identical pulses."""

    NAME = "pulse_response"

    row = IntegerParameter("Row", minimum=0, maximum=4095, default=0)
    col = IntegerParameter("Column", minimum=0, maximum=4095, default=0)
    set_voltages = Parameter("SET pulse levels, V, comma-separated", default="1.2")
    reset_voltages = Parameter("RESET pulse levels, V, comma-separated", default="-1.1")
    pulse_width = FloatParameter(
        "Pulse width", units="s", minimum=1e-7, maximum=1, default=10e-6
    )
    pulses = IntegerParameter("Pulses per curve", minimum=1, maximum=10000, default=40)
    cycles = IntegerParameter("Cycles", minimum=1, maximum=1000, default=3)

    DATA_COLUMNS = ["Cycle", "Amplitude (V)", "Width (s)", "Pulse", "Conductance (S)"]

    def check(self, station: Station) -> None:
        limits = station.limits
        self.set_levels = parse_levels(self, "set_voltages", self.set_voltages)
        self.reset_levels = parse_levels(self, "reset_voltages", self.reset_voltages)
        self.require(
            min(self.set_levels) > 0, "pulse_response: SET levels must be > 0 V"
        )
        self.require(
            max(self.reset_levels) < 0, "pulse_response: RESET levels must be < 0 V"
        )
        for level in (*self.set_levels, *self.reset_levels):
            self.check_level(
                "pulse level", level, limits.max_voltage_v, "max_voltage_v"
            )
        self.check_levels(station, reads=("read_voltage",))
        self.check_cell(station, self.array, self.row, self.col)

    def startup(self) -> None:
        super().startup()
        self.access.prepare()
        self.points: list[dict[str, float]] = []

    def execute(self) -> None:
        access = self.access
        access.select(self.row, self.col)
        curves = [(level, min(self.reset_levels)) for level in self.set_levels]
        curves += [(level, max(self.set_levels)) for level in self.reset_levels]
        total = self.cycles * len(curves) * (self.pulses + 1)
        done = 0
        for cycle in range(self.cycles):
            for level, opposite in curves:
                # From the opposite end of the window, then pulse by pulse.
                access.pulse(opposite, 2 * self.pulses, self.pulse_width)
                g = access.read()
                self._point(cycle, level, 0, g)
                for pulse in range(1, self.pulses + 1):
                    g = access.pulse_read(level, 1, self.pulse_width)
                    self._point(cycle, level, pulse, g)
                done += self.pulses + 1
                self.progress(done, total)
                if self.should_stop():
                    return
        self.summary.update(pulse_figures(self.points))

    def _point(self, cycle: int, level: float, pulse: int, g: float) -> None:
        point = {
            "Cycle": cycle,
            "Amplitude (V)": level,
            "Width (s)": self.pulse_width,
            "Pulse": pulse,
            "Conductance (S)": g,
        }
        self.points.append(point)
        self.emit("results", point)
