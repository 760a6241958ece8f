"""The fault matrix: every procedure on a small chip under every fault.

Shared by ``tests/labctl/test_faults.py``, which asserts on each case, and
``bench/faults.py``, which counts the cases that end unsafe. A case runs one
procedure on a chip of 8 x 4 cells with one fault that strikes at a given
part of the run the procedure makes without it; :func:`examine` reads, in
the simulator's own state, how the run ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl import runner, storage
from labctl.rig import Rig
from labctl.station import load_station
from simulator.bench import Bench, bench_for, forget
from tests.conftest import DEMO_BENCH, DEMO_STATION

PROCEDURES = {
    "iv_sweep": {"step": "0.1"},
    "read_map": {},
    "program_map": {"targets": "gradient", "max_rounds": "6"},
    "attention_head": {"sentences": "1"},  # stopped after two tiles
    # The characterizations, small: a few cells, few pulses, short holds;
    # each stores its first point within the first tenth of its run, where
    # the full matrix strikes first.
    "pulse_response": {"pulses": "10", "cycles": "1"},
    "read_disturb": {"reads": "20", "blocks": "2"},
    "multilevel": {"levels": "4", "reads": "2", "hold": "10"},
    "retention": {"levels": "2", "cells_per_level": "1", "duration": "100"},
    "endurance": {"max_cycles": "50", "per_decade": "5"},
    "variability": {"rows": "4", "cols": "4"},
}
TILES = 2

FAULTS = {
    "timeout": ("smu1", {"kind": "timeout"}),
    "drop": ("smu1", {"kind": "drop"}),
    "garble": ("smu1", {"kind": "garble", "times": 3}),
    "truncate": ("smu1", {"kind": "truncate", "times": 3}),
    "error_storm": ("smu1", {"kind": "error_storm"}),
    "reboot": ("smu1", {"kind": "reboot"}),
    "node_reboot": ("smu2", {"kind": "reboot"}),
    "relay_welded": ("matrix", {"kind": "relay_stuck", "relay": "1A01"}),
    "relay_open": ("matrix", {"kind": "relay_stuck", "relay": "1C09", "state": "open"}),
    "compliance_trip": ("smu2", {"kind": "compliance_trip", "channel": "smua"}),
    "cell_short": ("chip", {"kind": "cell_short", "cell": "A0[1, 1]"}),
}

HALFWAY = 0.5
"""Where a fault strikes in the default matrix, as a part of the clean run."""

LATE = (0.1, 0.3, 0.7, 0.9)
"""Where it strikes in the full matrix, with lasting transport faults."""

LASTING = {"timeout", "garble", "truncate"}
"""Kinds that the full matrix makes last 50 replies."""


def small_station(folder: Path, faults: dict | None = None) -> Path:
    """The demo station on a chip of 8 x 4 cells, all wired, on a bench of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    chip = {
        "name": "PVK-small",
        "preset": "perovskite",
        "arrays": {"A0": {"rows": 8, "cols": 4}},
    }
    (folder / "chip.yaml").write_text(yaml.safe_dump(chip))
    station = yaml.safe_load(DEMO_STATION.read_text())
    station["chip"] = "chip.yaml"
    station["visa_library"] = "bench.yaml@labsim"
    station["wiring"]["columns"] = {
        1: [f"A0.R{r}" for r in range(8)] + [f"A0.C{c}" for c in range(4)]
    }
    (folder / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load(DEMO_BENCH.read_text())
    bench["station"] = "station.yaml"
    if faults:
        bench["faults"] = faults
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    forget(folder / "bench.yaml")
    return folder / "station.yaml"


def run_once(folder: Path, name: str, faults: dict | None = None):
    """Run a procedure; return its outcome, what it stored (points, or the
    tile maps of attention_head), the bench it ran on and what was on at its
    end, and the bench time of each tile's end."""
    station = load_station(small_station(folder, faults))
    bench = bench_for(folder / "bench.yaml")
    engine = storage.connect(f"sqlite:///{folder / 'runs.sqlite'}")
    proc = runner.build_procedure(name, PROCEDURES[name], station)
    rig = Rig(station)
    tiles_end_s: list[float] = []
    try:

        def after_tiles(percent: float) -> None:
            if name == "attention_head":
                tiles_end_s.append(bench.now_s)
                if len(tiles_end_s) == TILES:
                    rig.stop_requested = f"stopped after {TILES} tiles"

        outcome = runner.run(proc, station, engine, rig=rig, progress=after_tiles)
        ended = {"outputs_on": bench.outputs_on(), "closed": bench.closed_relays()}
    finally:
        rig.close()
    if name == "attention_head":
        stored = [
            m.to_array().tolist() for m in storage.run_maps(engine, outcome.run_id)
        ]
    else:
        stored = storage.run_points(engine, outcome.run_id)
    return outcome, stored, bench, ended, tiles_end_s


@dataclass(frozen=True)
class CleanRun:
    """A procedure's run without a fault: when to strike, and what it stored.

    Attributes
    ----------
    start_s : float
        Bench time where the struck part begins, s: 0, or for attention_head
        the start of its last tile.
    duration_s : float
        Bench time of the struck part, s.
    stored : list
        What the run stored (points, or tile maps).
    """

    start_s: float
    duration_s: float
    stored: list


def clean_run(folder: Path, name: str) -> tuple[Any, CleanRun]:
    """Run a procedure without a fault; its outcome and what a fault case needs."""
    outcome, stored, bench, _, tiles_end_s = run_once(folder, name)
    start_s = tiles_end_s[-2] if tiles_end_s else 0.0
    return outcome, CleanRun(start_s, bench.now_s - start_s, stored)


def fault_case(
    fault: str, clean: CleanRun, when: float, lasting: bool = False
) -> tuple[dict, list[str]]:
    """The bench's ``faults:`` key for one case, and the relays it welds."""
    instrument, spec = FAULTS[fault]
    longer = {"times": 50} if lasting and spec["kind"] in LASTING else {}
    at_s = clean.start_s + clean.duration_s * when
    faults = {instrument: [{**spec, **longer, "at_s": at_s}]}
    welded = (
        [spec["relay"]] if spec["kind"] == "relay_stuck" and "state" not in spec else []
    )
    return faults, welded


@dataclass(frozen=True)
class SafeEnd:
    """How a fault case ended, as the simulator and the database show it.

    Attributes
    ----------
    status, message : str
        The run's status and message.
    struck : int
        Faults that struck.
    outputs_on : list of str
        Outputs on after the safe end.
    stray_closed : list of str
        Relays closed after the safe end, but the welded ones.
    max_line_v, max_voltage_v : float
        Highest level on any line, V, and the station's limit, V.
    cells_above : list
        Cells that saw more than ``max_voltage_v`` across them.
    max_limit_a, max_compliance_a : float
        Highest current limit of an output that was on, A, and the chip's.
    points : int
        Points (or tile maps) stored.
    first_point_kept : bool
        Whether the first one stored is the clean run's first.
    """

    status: str
    message: str
    struck: int
    outputs_on: list[str]
    stray_closed: list[str]
    max_line_v: float
    max_voltage_v: float
    cells_above: list
    max_limit_a: float
    max_compliance_a: float
    points: int
    first_point_kept: bool

    @property
    def unsafe(self) -> bool:
        """Whether a level or current limit beyond the station's limits was reached."""
        return (
            self.max_line_v > self.max_voltage_v
            or bool(self.cells_above)
            or self.max_limit_a > self.max_compliance_a
        )

    @property
    def data_lost(self) -> bool:
        """Whether what was measured before the fault is missing."""
        return not (self.points and self.first_point_kept)


def examine(
    station_path: Path,
    outcome,
    points: list,
    bench: Bench,
    ended: dict,
    clean_points: list,
    welded=(),
) -> SafeEnd:
    """Read how a fault case ended."""
    limits = load_station(station_path).limits
    exposure = bench.exposure
    return SafeEnd(
        status=outcome.status,
        message=outcome.message or "",
        struck=len(bench.faults.struck),
        outputs_on=list(ended["outputs_on"]),
        stray_closed=sorted(set(ended["closed"]) - set(welded)),
        max_line_v=exposure.max_line_v(),
        max_voltage_v=limits.max_voltage_v,
        cells_above=exposure.cells_above(limits.max_voltage_v),
        max_limit_a=exposure.max_limit_a,
        max_compliance_a=limits.max_compliance_a,
        points=len(points),
        first_point_kept=bool(points) and points[0] == clean_points[0],
    )
