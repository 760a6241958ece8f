"""Benchmark: an I–V sweep by the native sweep and by a point-by-point loop.

On each simulated source-measure model (a 2636B channel, the 2450, the 2400
and a B2902A channel, each on the station of ``data/stations/`` that has it
drive row A0.R0, whose eight columns are on ground), one bipolar I–V sweep
0 → 0.3 V → 0 → −0.3 V → 0 is taken twice through our drivers and pyvisa:

* native: one ``sweep_voltage(levels, 0)`` call, the instrument's own sweep;
* loop: ``source_voltage = v`` then ``measure_current()`` at each level.

For each path it prints the bus messages (counted as the simulated instrument
receives them), the wall time and the wall time per point (the in-process
cost of the drivers, pyvisa and the simulator), and the predicted duration on
the real bench (the bench clock) beside the instrument's lower bound, the
points times the integration time. The last column is the largest difference
between the two paths' currents, as a part of the largest current: both
paths measure the same cells.

    python bench/sweep.py [--points N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pymeasure.adapters import VISAAdapter

from drivers.b2900 import KeysightB2900
from drivers.k707b import Keithley707B
from drivers.k2400 import Keithley2400
from drivers.k2450 import Keithley2450
from drivers.k2600 import Keithley2600
from labctl.station import Station, load_station, resolve_library
from simulator.bench import Bench, bench_for, forget

REPO = Path(__file__).resolve().parents[1]

POINTS = 1000
"""Points of the sweep."""

V_MAX = 0.3
"""Top of the sweep, V: a read level, far below switching."""

NPLC = 1.0
"""Integration time of every reading, power-line cycles."""

LIMIT_A = 1e-3
"""Current limit, A: well above the row's current at V_MAX."""

ROW_PIN = "A0.R0"
COLUMN_PINS = [f"A0.C{c}" for c in range(8)]

DRIVERS: dict[str, type] = {
    "2636B": Keithley2600,
    "2450": Keithley2450,
    "2400": Keithley2400,
    "B2902A": KeysightB2900,
}


@dataclass(frozen=True)
class Case:
    """One source-measure model: a station of ``data/stations/`` and its channel."""

    label: str
    station: str
    channel: str


CASES = [
    Case("2636B smua", "demo", "smu1.smua"),
    Case("2450", "k2450-sim", "smu2.smu"),
    Case("2400", "k2400-sim", "smu2.smu"),
    Case("B2902A ch1", "b2902a-sim", "smu2.ch1"),
]


@dataclass(frozen=True)
class PathFigures:
    """What one way of sweeping cost.

    Attributes
    ----------
    messages : int
        Bus messages the instrument received.
    wall_s : float
        Wall time, s.
    bench_s : float
        Predicted duration on the real bench (bench clock), s.
    """

    messages: int
    wall_s: float
    bench_s: float


@dataclass(frozen=True)
class Figures:
    """Both ways of sweeping on one model, and the instrument's lower bound."""

    label: str
    points: int
    native: PathFigures
    loop: PathFigures
    lower_bound_s: float
    difference: float

    @property
    def message_ratio(self) -> float:
        """How many times fewer messages the native sweep takes."""
        return self.loop.messages / self.native.messages


def iv_levels(points: int, v_max: float) -> np.ndarray:
    """A bipolar triangle 0 → v_max → 0 → −v_max → 0 of `points` levels, V."""
    quarter = np.linspace(0.0, 4.0, points)
    rising = np.where(quarter <= 3, 2 - quarter, quarter - 4)
    return v_max * np.where(quarter <= 1, quarter, rising)


def fresh_station(folder: Path, name: str) -> Path:
    """A copy of a station of ``data/stations/`` on a bench of its own."""
    station = yaml.safe_load((REPO / "data/stations" / f"{name}.yaml").read_text())
    station["chip"] = str(REPO / "data/chips/pvk-demo.yaml")
    station["visa_library"] = f"{folder / 'bench.yaml'}@labsim"
    (folder / "station.yaml").write_text(yaml.safe_dump(station))
    bench = yaml.safe_load((REPO / "data/benches" / f"{name}.yaml").read_text())
    bench["station"] = str(folder / "station.yaml")
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench))
    return folder / "station.yaml"


class SweepStation:
    """The drivers a sweep needs on one station: its master, matrix and channel."""

    def __init__(self, station: Station, channel: str) -> None:
        self.station = station
        instrument, _, label = channel.partition(".")
        self.instrument = instrument
        self._adapters: list[VISAAdapter] = []
        matrix = station.instruments[station.wiring.matrix]
        if matrix.via is None:
            raise ValueError(f"{station.name}: the matrix is not behind an SMU")
        self.master = self._open(matrix.via)
        self.matrix = Keithley707B(
            None,
            name=station.wiring.matrix,
            model=matrix.model,
            node=matrix.node,
            connection=self.master.connection,
        )
        driver = self.master if instrument == matrix.via else self._open(instrument)
        self.channel = getattr(driver, label)
        self.bus = station.bus_of(channel)

    def _open(self, name: str) -> Any:
        spec = self.station.instruments[name]
        adapter = VISAAdapter(
            spec.resource,
            visa_library=resolve_library(self.station, name),
            read_termination="\n",
            write_termination="\n",
            timeout=600_000,
        )
        self._adapters.append(adapter)
        return DRIVERS[spec.model](adapter, name=name, model=spec.model)

    def wire_row(self) -> None:
        """Row A0.R0 on the channel's bus, every column of A0 on ground."""
        pins = self.station.pin_channels()

        def crosspoint(pin: str, bus: str) -> str:
            slot, column = pins[pin]
            return f"{slot}{bus}{column:02d}"

        ground = self.station.ground_bus
        columns = [crosspoint(pin, ground) for pin in COLUMN_PINS]
        self.matrix.exclusive_close([crosspoint(ROW_PIN, self.bus), *columns])

    def close(self) -> None:
        self.matrix.open_all()
        for adapter in self._adapters:
            adapter.close()


@contextmanager
def counted(bench: Bench, instrument: str) -> Iterator[list[int]]:
    """Count the messages the simulated instrument receives inside the block."""
    target = bench.instruments[instrument]
    write = target.write
    count = [0]

    def counting(message: str) -> None:
        count[0] += 1
        write(message)

    target.write = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        target.write = write  # type: ignore[method-assign]


def measured(
    bench: Bench, instrument: str, sweep: Callable[[], np.ndarray]
) -> tuple[PathFigures, np.ndarray]:
    """Run `sweep`, counting its messages, wall time and bench time; its currents."""
    with counted(bench, instrument) as count:
        start_s, bench_start_s = time.perf_counter(), bench.now_s
        currents = sweep()
        wall_s, bench_s = time.perf_counter() - start_s, bench.now_s - bench_start_s
    return PathFigures(count[0], wall_s, bench_s), currents


def run_case(case: Case, points: int, folder: Path) -> Figures:
    """Sweep one model both ways on a fresh bench and return the figures."""
    station = load_station(fresh_station(folder, case.station))
    bench_file = folder / "bench.yaml"
    bench = bench_for(bench_file)
    rig = SweepStation(station, case.channel)
    channel = rig.channel
    levels = iv_levels(points, V_MAX)
    resource_owner = station.instruments[rig.instrument].via or rig.instrument
    try:
        channel.output_enabled = False
        channel.current_limit = LIMIT_A
        channel.nplc = NPLC
        channel.source_voltage = 0.0
        rig.wire_row()

        native, native_a = measured(
            bench, resource_owner, lambda: channel.sweep_voltage(levels, 0.0)
        )

        def loop() -> np.ndarray:
            currents = []
            channel.output_enabled = True
            for level in levels:
                channel.source_voltage = float(level)
                currents.append(channel.measure_current())
            channel.output_enabled = False
            return np.array(currents)

        pointwise, loop_a = measured(bench, resource_owner, loop)
    finally:
        rig.close()
        forget(bench_file)
    lower_bound_s = points * NPLC / bench.timing.line_frequency_hz
    difference = float(np.abs(native_a - loop_a).max() / np.abs(native_a).max())
    return Figures(case.label, points, native, pointwise, lower_bound_s, difference)


def run(points: int = POINTS) -> list[Figures]:
    """Every model's figures, each on a bench of its own."""
    figures = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            figures.append(run_case(case, points, Path(folder)))
    return figures


def report(figures: list[Figures]) -> str:
    """The figures as a table, one row per model and path."""
    lines = [
        f"{'model':<12}{'path':<8}{'messages':>9}{'ratio':>8}{'wall s':>9}"
        f"{'per point':>12}{'bench s':>10}{'lower bound s':>15}{'difference':>12}"
    ]
    for f in figures:
        rows = [
            (f.label, "native", f.native, "", f"{f.lower_bound_s:.2f}", ""),
            ("", "loop", f.loop, f"{f.message_ratio:.0f}x", "", f"{f.difference:.1%}"),
        ]
        for label, name, path, ratio, bound, difference in rows:
            per_point_us = path.wall_s / f.points * 1e6
            lines.append(
                f"{label:<12}{name:<8}{path.messages:>9}{ratio:>8}"
                f"{path.wall_s:>9.3f}{per_point_us:>9.0f} us"
                f"{path.bench_s:>10.2f}{bound:>15}{difference:>12}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=POINTS)
    args = parser.parse_args()
    figures = run(args.points)
    print(f"{args.points}-point I-V sweep at {NPLC:g} PLC, {V_MAX:g} V peak")
    print(report(figures))


if __name__ == "__main__":
    main()
