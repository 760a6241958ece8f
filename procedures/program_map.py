"""Write-verify of a target conductance map into an array.

The targets come from a ``.npy`` file (siemens, rows × columns of the wired
lines) or from a named pattern between ``g_low`` and ``g_high``:
``checkerboard``, ``gradient`` or ``random``. Each cell's programming log
(pulses, rounds, final conductance, error, converged, stuck) is one point,
and goes to the cell's history. A resumed run programs only the cells its run
has not stored, toward the targets it stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pymeasure.experiment import (
    BooleanParameter,
    FloatParameter,
    IntegerParameter,
    Parameter,
)

from labctl.engine.writeverify import CellLog, WriteVerify, WriteVerifyConfig
from labctl.station import Station
from labctl.storage import CellProgrammed
from procedures.base import LabProcedure, ParameterError

PATTERNS = ("checkerboard", "gradient", "random")


class ProgramMap(LabProcedure):
    """Write-verify of a target conductance map into an array."""

    NAME = "program_map"

    array = Parameter("Array", default="A0")
    targets = Parameter("Targets (pattern or .npy file)", default="gradient")
    g_low = FloatParameter("Low target", units="S", minimum=1e-9, maximum=1, default=20e-6)
    g_high = FloatParameter("High target", units="S", minimum=1e-9, maximum=1, default=80e-6)
    tolerance = FloatParameter("Relative tolerance", minimum=1e-4, maximum=0.5, default=0.02)
    set_voltage = FloatParameter("SET pulse", units="V", minimum=0, maximum=210, default=1.2)
    reset_voltage = FloatParameter("RESET pulse", units="V", minimum=-210, maximum=0,
                                   default=-1.1)
    pulse_width = FloatParameter("Pulse width", units="s", minimum=1e-7, maximum=1,
                                 default=10e-6)
    read_voltage = FloatParameter("Read voltage", units="V", minimum=1e-3, maximum=210,
                                  default=0.2)
    max_rounds = IntegerParameter("Rounds per cell", minimum=1, maximum=1000, default=12)
    # Where the station allows it (2600B channels and the matrix on one
    # TSP-Link network) the write-verify loop runs on the instrument, a row
    # of cells per message.
    on_instrument = BooleanParameter("Write-verify on the instrument", default=True)
    seed = IntegerParameter("Seed of the random pattern", minimum=0, default=0)

    DATA_COLUMNS = ["Row", "Column", "Target (S)", "Conductance (S)", "Error",
                    "Pulses", "Rounds", "Converged", "Stuck"]

    #: Cells an earlier part of the run programmed.
    stored: list[CellLog] = []
    resumed = False

    def check(self, station: Station) -> None:
        self.check_levels(station, pulses=("set_voltage", "reset_voltage"),
                          reads=("read_voltage",))
        self.require(self.g_low < self.g_high, "program_map: g_low must be below g_high")
        self.check_cell(station, self.array)
        rows, cols = station.wired_lines(self.array)
        self.planned = self.target_map(rows, cols)

    def target_map(self, rows: int, cols: int) -> np.ndarray:
        """The targets, S: a named pattern, or a checked .npy file."""
        if self.targets == "checkerboard":
            board = (np.add.outer(np.arange(rows), np.arange(cols)) % 2).astype(float)
        elif self.targets == "gradient":
            board = np.add.outer(np.arange(rows) / max(rows - 1, 1),
                                 np.arange(cols) / max(cols - 1, 1)) / 2
        elif self.targets == "random":
            board = np.random.default_rng(self.seed).random((rows, cols))
        else:
            return self._load_targets(rows, cols)
        return self.g_low + board * (self.g_high - self.g_low)

    def _load_targets(self, rows: int, cols: int) -> np.ndarray:
        where = f"program_map: targets = {self.targets!r}"
        path = Path(self.targets)
        if not path.is_file():
            raise ParameterError(f"{where} is neither a pattern ({', '.join(PATTERNS)}) "
                                 "nor an existing .npy file")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            raise ParameterError(f"{where}: not a .npy array file") from None
        if not isinstance(loaded, np.ndarray) or loaded.dtype.kind not in "fiu":
            raise ParameterError(f"{where}: not a .npy array of numbers")
        if loaded.shape != (rows, cols):
            raise ParameterError(f"{where}: holds a {loaded.shape} map; the wired lines "
                                 f"of {self.array} are {rows} x {cols}")
        targets = loaded.astype(float)
        window = (self.g_low, self.g_high)
        if not np.all(np.isfinite(targets)) or targets.min() < window[0] * 0.999 \
                or targets.max() > window[1] * 1.001:
            raise ParameterError(
                f"{where}: targets must be finite and within g_low..g_high "
                f"({window[0]:g}..{window[1]:g} S); the file spans "
                f"{np.nanmin(targets):g}..{np.nanmax(targets):g} S")
        return targets

    def startup(self) -> None:
        config = WriteVerifyConfig.for_preset(
            self.rig.station.chip_spec.preset,
            tolerance=self.tolerance, set_voltage_v=self.set_voltage,
            reset_voltage_v=self.reset_voltage, width_s=self.pulse_width,
            gap_s=self.pulse_width, read_voltage_v=self.read_voltage,
            max_rounds=self.max_rounds, on_instrument=self.on_instrument,
        )
        self.writer = WriteVerify(self.rig, self.array, config)

    def resume_from(self, points: list[dict[str, Any]], maps: dict[str, Any]) -> None:
        if "target" in maps:
            self.planned = maps["target"]
        self.stored = [cell_log(p) for p in points]
        self.resumed = True

    def execute(self) -> None:
        targets = self.planned
        if not self.resumed:
            self.sink.add_map(self.array, "target", targets, None)
        final = np.full(targets.shape, np.nan)
        done = np.zeros(targets.shape, dtype=bool)
        for entry in self.stored:
            final[entry.row, entry.col] = entry.final_s
            done[entry.row, entry.col] = True
        total = targets.size

        def on_cell(entry: CellLog) -> None:
            final[entry.row, entry.col] = entry.final_s
            self.sink.add_cells([programmed(self.array, entry)])
            self.emit("results", {
                "Row": entry.row, "Column": entry.col, "Target (S)": entry.target_s,
                "Conductance (S)": entry.final_s, "Error": entry.error,
                "Pulses": entry.pulses, "Rounds": entry.rounds,
                "Converged": int(entry.converged), "Stuck": int(entry.stuck),
            })
            self.progress(int(np.isfinite(final).sum()), total)

        logs = self.writer.program(targets, on_cell=on_cell, done=done)
        self.sink.add_map(self.array, "programmed", final, self.read_voltage)
        self.summary.update(summarize(self.stored + logs))


def cell_log(point: dict[str, Any]) -> CellLog:
    """A cell's programming log from its stored point."""
    return CellLog(point["Row"], point["Column"], point["Target (S)"],
                   point["Conductance (S)"], point["Pulses"], point["Rounds"],
                   bool(point["Converged"]), bool(point["Stuck"]))


def programmed(array: str, entry: CellLog) -> CellProgrammed:
    """What write-verify did to a cell, for its history."""
    return CellProgrammed(array, entry.row, entry.col, entry.target_s, entry.final_s,
                          entry.pulses, entry.rounds, entry.converged, entry.stuck)


def summarize(logs: list[CellLog]) -> dict[str, float]:
    """Cells, pulses and convergence of a list of cell logs."""
    if not logs:
        return {"cells": 0}
    errors = np.array([abs(e.error) for e in logs])
    return {
        "cells": len(logs),
        "pulses": int(sum(e.pulses for e in logs)),
        "mean_pulses_per_cell": float(np.mean([e.pulses for e in logs])),
        "converged_fraction": float(np.mean([e.converged for e in logs])),
        "stuck_cells": int(sum(e.stuck for e in logs)),
        "median_abs_error": float(np.median(errors)),
    }
