"""Benchmark: the procedures under every fault on the simulated bench.

Runs the fault matrix of ``tests/labctl/test_faults.py`` (every procedure but
forming, which needs a fresh chip, on a chip of 8 x 4 cells, each fault
striking halfway through the procedure's clean run; with ``--full``, at a tenth, three tenths, seven tenths and nine
tenths of it, transport faults lasting 50 replies) and counts, per fault and
in total, in the simulator's own state:

* runs, and faults that struck;
* unsafe: runs in which a line or a cell saw more than ``max_voltage_v``, or
  an output was on with a current limit above ``max_compliance_a``;
* points lost: runs whose database lacks what was measured before the fault;
* outputs on: runs that ended with an output on;
* relays closed: runs that ended with a relay closed (but a welded one);
* errors: cases that raised instead of ending with a run's outcome.

Every count but runs and faults struck must be 0; the exit status is 1 if
one is not, and each such case is listed.

    python bench/faults.py [--full]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the matrix lives beside the tests

from tests.labctl.fault_matrix import (  # noqa: E402
    FAULTS,
    HALFWAY,
    LATE,
    PROCEDURES,
    CleanRun,
    clean_run,
    examine,
    fault_case,
    run_once,
)

MUST_BE_ZERO = ("unsafe", "points_lost", "outputs_on", "relays_closed", "errors")


@dataclass
class Counts:
    """The counts of one fault kind, or of all."""

    runs: int = 0
    struck: int = 0
    unsafe: int = 0
    points_lost: int = 0
    outputs_on: int = 0
    relays_closed: int = 0
    errors: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def bad(self) -> int:
        """The sum of the counts that must be 0."""
        return sum(getattr(self, name) for name in MUST_BE_ZERO)


@dataclass
class Matrix:
    """What a matrix run found: counts per fault kind, and each failing case."""

    per_fault: dict[str, Counts] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def total(self) -> Counts:
        total = Counts()
        for counts in self.per_fault.values():
            total.add(counts)
        return total


def run_case(
    folder: Path, name: str, fault: str, clean: CleanRun, when: float, lasting: bool
) -> tuple[Counts, str]:
    """One procedure under one fault: its counts and, if it ended unsafe, why."""
    faults, welded = fault_case(fault, clean, when, lasting)
    try:
        outcome, points, bench, ended, _ = run_once(folder, name, faults)
        end = examine(
            folder / "station.yaml", outcome, points, bench, ended, clean.stored, welded
        )
    except Exception as error:  # a case that raises is counted, not fatal
        return Counts(runs=1, errors=1), f"{type(error).__name__}: {error}"
    counts = Counts(
        runs=1,
        struck=end.struck,
        unsafe=int(end.unsafe),
        points_lost=int(end.data_lost),
        outputs_on=int(bool(end.outputs_on)),
        relays_closed=int(bool(end.stray_closed)),
    )
    why = [
        f"{label} {value}"
        for label, value in [
            ("max line", f"{end.max_line_v:g} V" if end.unsafe else ""),
            ("cells above limit", len(end.cells_above) or ""),
            ("points stored", end.points if end.data_lost else ""),
            ("first point kept", end.first_point_kept if end.data_lost else ""),
            ("outputs on", ",".join(end.outputs_on)),
            ("relays closed", ",".join(end.stray_closed)),
        ]
        if value != ""
    ]
    detail = f"{'; '.join(why)} (run {end.status}: {end.message})" if why else ""
    return counts, detail


def run(
    procedures: Iterable[str] = PROCEDURES,
    faults: Iterable[str] = FAULTS,
    full: bool = False,
) -> Matrix:
    """Run the matrix, each case on a bench of its own."""
    procedures, faults = list(procedures), list(faults)
    whens = LATE if full else (HALFWAY,)
    matrix = Matrix({fault: Counts() for fault in faults})
    start_s = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in procedures:
            outcome, clean = clean_run(folder / name / "clean", name)
            if outcome.status not in ("finished", "aborted"):
                raise RuntimeError(f"{name} fails without a fault: {outcome.message}")
            for fault, when in itertools.product(faults, whens):
                case = f"{name} x {fault} at {when:g}"
                counts, detail = run_case(
                    folder / name / f"{fault}-{when:g}", name, fault, clean, when, full
                )
                matrix.per_fault[fault].add(counts)
                if counts.bad:
                    matrix.failures.append(f"{case}: {detail}")
    matrix.wall_s = time.perf_counter() - start_s
    return matrix


def report(matrix: Matrix) -> str:
    """The counts as a table, one row per fault kind and a total."""
    columns = ["runs", "struck", *MUST_BE_ZERO]
    heads = ["runs", "struck", "unsafe", "pts lost", "outs on", "relays", "errors"]
    lines = [f"{'fault':<17}" + "".join(f"{h:>9}" for h in heads)]
    rows = [*matrix.per_fault.items(), ("total", matrix.total)]
    for label, counts in rows:
        values = "".join(f"{getattr(counts, c):>9}" for c in columns)
        lines.append(f"{label:<17}{values}")
    lines.append(f"wall time {matrix.wall_s:.1f} s")
    lines.extend(f"FAIL {failure}" for failure in matrix.failures)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="strike at four points, lasting faults"
    )
    args = parser.parse_args()
    matrix = run(full=args.full)
    where = "at 0.1, 0.3, 0.7, 0.9 of" if args.full else "halfway through"
    print(f"{len(PROCEDURES)} procedures x {len(FAULTS)} faults, {where} each run")
    print(report(matrix))
    return 1 if matrix.total.bad else 0


if __name__ == "__main__":
    sys.exit(main())
