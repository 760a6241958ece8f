"""What the device characterizations share: reaching one cell, waiting, levels.

Every characterization but forming (which takes the I-V sweep's wiring, see
:mod:`procedures.forming`) reaches its cells as write-verify does (the V/2
scheme): the selected row on the drive channel, the selected column on the
first sense channel at 0 V, every other line on the bias channel. During a
pulse of amplitude V the bias sits at V/2, so half-selected cells see at most
V/2; during a read it sits at 0 V, so the sense channel measures the selected
cell alone. :class:`CellAccess` adds to write-verify's own reads, trains and
programming what the characterizations need besides: pulses of any amplitude
and width, reads at any level, and waits.

Waits run on the simulated bench's clock (a 1e4 s retention test takes
seconds) and in real time on real instruments. A bench served over TCP
(``labctl sim serve``) is reached as real instruments are: its waits run in
real time too.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from pymeasure.experiment import FloatParameter, Parameter

from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.station import Station, resolve_library
from procedures.base import LabProcedure, ParameterError

if TYPE_CHECKING:
    from labctl.rig import Rig
    from simulator.bench import Bench

#: Longest real-time sleep between checks for a stop request, s.
WAIT_STEP_S = 0.5


class CellAccess(WriteVerify):
    """One cell of an array at a time, for characterization.

    Parameters
    ----------
    rig : Rig
        The open station.
    array : str
        The array.
    read_voltage_v : float
        Read voltage, V.
    tolerance : float
        Relative tolerance of :meth:`program` (write-verify).
    """

    def __init__(
        self, rig: Rig, array: str, read_voltage_v: float, tolerance: float = 0.02
    ) -> None:
        chip = rig.station.chip_spec
        assert chip is not None
        # The drive may carry the whole selected row at the strongest pulses.
        config = WriteVerifyConfig.for_preset(
            chip.preset,
            read_voltage_v=read_voltage_v,
            tolerance=tolerance,
            limit_a=rig.limits.max_compliance_a,
        )
        super().__init__(rig, array, config)

    def select(self, row: int, col: int) -> None:
        """Put one cell between the drive and the sense channel (levels at 0 V)."""
        self._select(row, col)

    def read_cell(self, row: int, col: int) -> float:
        """Select a cell and read its conductance, S, in one message."""
        with self.rig.batch():
            self.select(row, col)
            return self.read()

    def pulse(self, level_v: float, count: int, width_s: float) -> None:
        """`count` pulses of `level_v` (V) and `width_s` (s), as far apart, on
        the selected cell; the bias at half the level meanwhile."""
        programming = self.config
        self.config = replace(programming, width_s=width_s, gap_s=width_s)
        try:
            self.pulses(count, level_v)
        finally:
            self.config = programming

    def pulse_read(self, level_v: float, count: int, width_s: float) -> float:
        """:meth:`pulse`, then the cell's conductance, S, in one message."""
        with self.rig.batch():
            self.pulse(level_v, count, width_s)
            return self.read()

    def reads_at(self, level_v: float, count: int) -> np.ndarray:
        """`count` readings of the selected cell at `level_v`, as conductance
        (I / V, S), in one message; the bias at 0 V."""
        readings = self.rig.readings([self.sense])
        with self.rig.batch():
            self.bias.source_voltage = 0.0
            self.drive.source_voltage = level_v
            self.drive.output_enabled = True
            for _ in range(count):
                readings.queue()
            currents = readings.collect(count)[:, 0]
        return -currents / level_v

    def idle(self) -> None:
        """Every level at 0 V: nothing across the chip while time passes."""
        with self.rig.batch():
            self.drive.source_voltage = 0.0
            self.bias.source_voltage = 0.0

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass with every level at 0 V (see :func:`wait_s`)."""
        self.idle()
        wait_s(self.rig, seconds)


class CellCharacterization(LabProcedure):
    """A characterization that reaches its cells through a :class:`CellAccess`:
    the array, the read voltage, and the access made at startup."""

    array = Parameter("Array", default="A0")
    read_voltage = FloatParameter(
        "Read voltage", units="V", minimum=1e-3, maximum=210, default=0.1
    )
    #: Relative tolerance of the access's write-verify; a parameter of the
    #: characterizations that program cells to levels.
    tolerance: float = 0.02

    def startup(self) -> None:
        self.access = CellAccess(
            self.rig, self.array, self.read_voltage, tolerance=self.tolerance
        )


def simulated_bench(rig: Rig) -> Bench | None:
    """The simulated bench behind a station opened in this process, or None."""
    station = rig.station
    library = resolve_library(station, next(iter(station.instruments)))
    path, _, backend = library.rpartition("@")
    if backend != "labsim" or not path:
        return None
    from simulator.bench import bench_for

    return bench_for(path)


def wait_s(rig: Rig, seconds: float) -> None:
    """Let time pass: on the simulated bench its clock moves at once; on real
    instruments the wait is real, and a stop request ends it early."""
    bench = simulated_bench(rig)
    if bench is not None:
        bench.advance(seconds)
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        rig.check_stop()
        time.sleep(min(left, WAIT_STEP_S))


def parse_levels(proc: LabProcedure, name: str, text: str) -> list[float]:
    """A comma-separated list of levels, V, from a text parameter."""
    try:
        levels = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ParameterError(
            f"{proc.NAME}: {name} = {text!r}: give levels in V "
            "separated by commas (1.0,1.2)"
        ) from None
    if not levels or not all(np.isfinite(levels)):
        raise ParameterError(
            f"{proc.NAME}: {name} = {text!r}: give at least one finite level in V"
        )
    return levels


def log_times(first_s: float, last_s: float, per_decade: int) -> np.ndarray:
    """Times from `first_s` to `last_s`, evenly spread in log time, s."""
    decades = np.log10(last_s / first_s)
    count = max(2, int(round(decades * per_decade)) + 1)
    return np.geomspace(first_s, last_s, count)


def block(
    proc: LabProcedure, station: Station, array: str, first_row: int, count: int
) -> list[tuple[int, int]]:
    """`count` wired cells of an array, row by row from `first_row`; checked."""
    proc.check_cell(station, array, first_row)
    rows, cols = station.wired_lines(array)
    available = (rows - first_row) * cols
    proc.require(
        count <= available,
        f"{proc.NAME}: {count} cells from row {first_row} do not fit the "
        f"{rows} x {cols} wired lines of {array} ({available} cells)",
    )
    return [(first_row + k // cols, k % cols) for k in range(count)]


def level_map(
    shape: tuple[int, int], cells: list[tuple[int, int]], targets_s: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Targets of some cells as write-verify takes them: a map of the block's
    rows (S), and the mask of the cells to leave alone."""
    rows = max(r for r, _ in cells) + 1
    targets = np.full((rows, shape[1]), np.nan)
    for (r, c), target in zip(cells, targets_s, strict=True):
        targets[r, c] = target
    return np.nan_to_num(targets, nan=1.0), np.isnan(targets)
