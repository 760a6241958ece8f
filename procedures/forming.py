"""Forming of fresh cells; the current limit used chooses their operator mode.

Each cell in turn: a read at the read voltage first (a cell that already
conducts is left alone, reported formed before); then the drive ramps up in
steps, its row on the drive channel and its column on the sense channel,
which holds the forming compliance. The other rows are grounded and the
other columns follow the drive at V/2, so the sense channel sees the cell
alone (the I-V sweep's wiring). The ramp stops at the first level where the
cell's current reaches the compliance: the cell has formed. It is read again
at once and after a hold, which tells a volatile cell (its conductance decays)
from a non-volatile one.

The compliance chooses the mode as the chip's device preset says
(``form_volatile_below_a`` and the bands above it): a non-volatile analog
weight, a volatile cell, an activation cell or an exponential cell. Cells
formed earlier see -V/2 on their lines while another cell forms; at a forming
voltage beyond twice their RESET threshold they are RESET.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from labctl.station import Station
from labctl.storage import CellFormed
from procedures.base import LabProcedure
from procedures.characterize import block, wait_s
from simulator.device import MODES, DevicePreset


class Forming(LabProcedure):
    """Forming of fresh cells; the compliance chooses the operator mode."""

    NAME = "forming"

    array = Parameter("Array", default="A0")
    first_row = IntegerParameter("First row", minimum=0, maximum=4095, default=0)
    cells = IntegerParameter("Cells (row by row)", minimum=1, maximum=65536, default=1)
    compliance = FloatParameter(
        "Forming compliance", units="A", minimum=1e-9, maximum=1.5, default=1e-4
    )
    v_max = FloatParameter(
        "Highest forming level", units="V", minimum=0.1, maximum=210, default=2.0
    )
    step = FloatParameter(
        "Level step", units="V", minimum=1e-3, maximum=1, default=0.05
    )
    read_voltage = FloatParameter(
        "Read voltage", units="V", minimum=1e-3, maximum=210, default=0.1
    )
    formed_above = FloatParameter(
        "Formed above", units="S", minimum=1e-12, maximum=1, default=1e-7
    )
    hold = FloatParameter(
        "Hold before the second read", units="s", minimum=0, maximum=1e6, default=1.0
    )

    DATA_COLUMNS = ["Row", "Column", "Voltage (V)", "Current (A)", "Compliance"]

    def check(self, station: Station) -> None:
        limits = station.limits
        self.check_level("v_max", self.v_max, limits.max_voltage_v, "max_voltage_v")
        self.check_level(
            "read_voltage",
            self.read_voltage,
            limits.max_read_voltage_v,
            "max_read_voltage_v",
        )
        self.require(
            self.compliance <= limits.max_compliance_a,
            f"forming: compliance = {self.compliance:g} A exceeds the chip's "
            f"max_compliance_a of {limits.max_compliance_a:g} A",
        )
        self.targets = block(self, station, self.array, self.first_row, self.cells)
        assert station.chip_spec is not None
        self.preset = DevicePreset.load(station.chip_spec.preset)

    def startup(self) -> None:
        rig = self.rig
        roles = rig.station.roles
        self.drive = rig.smu(roles.drive)
        self.bias = rig.smu(roles.bias)
        self.sense = rig.smu(roles.sense[0])
        self.lines = rig.lines(self.array)
        wide = rig.limits.max_compliance_a
        with rig.batch():
            for ch, limit_a in (
                (self.drive, wide),
                (self.bias, wide),
                (self.sense, self.compliance),
            ):
                ch.output_enabled = False
                ch.source_voltage = 0.0
                ch.current_limit = limit_a
                ch.output_enabled = True

    def execute(self) -> None:
        levels = np.arange(self.step, self.v_max + self.step / 2, self.step)
        outcomes = []
        for done, (row, col) in enumerate(self.targets):
            outcomes.append(self._form(row, col, levels))
            self.progress(done + 1, len(self.targets))
            if self.should_stop():
                break
        self.summary.update(self._summarize(outcomes))

    def _form(self, row: int, col: int, levels: np.ndarray) -> dict[str, object]:
        rig = self.rig
        roles = rig.station.roles
        with rig.batch():
            self._level(0.0)
            self.lines.select(
                row,
                col,
                rig.bus_of(roles.drive),
                rig.bus_of(roles.sense[0]),
                rig.ground_bus,
                rig.bus_of(roles.bias),
            )
        before_s = self._read()
        outcome: dict[str, object] = {"row": row, "col": col, "pristine_s": before_s}
        if before_s > self.formed_above:
            outcome["formed_before"] = True
            return outcome

        formed_v = None
        for level in levels.tolist():
            current = self._level(level)
            tripped = abs(current) >= 0.999 * self.compliance
            self.emit(
                "results",
                {
                    "Row": row,
                    "Column": col,
                    "Voltage (V)": level,
                    "Current (A)": current,
                    "Compliance": int(tripped),
                },
            )
            if tripped:
                formed_v = level
                break
        self._level(0.0)
        if formed_v is None:
            return outcome
        outcome.update({"forming_voltage_v": formed_v, "formed_s": self._read()})
        wait_s(rig, self.hold)
        outcome["held_s"] = self._read()
        self.sink.add_result(
            row * self.lines.n_cols + col, f"cell ({row}, {col})", outcome
        )
        # The cell's history: formed now, under this compliance, in the mode
        # the chip's preset gives that compliance.
        self.sink.add_cells([CellFormed(
            self.array, row, col, self.compliance,
            MODES[self.preset.mode_for(self.compliance)], float(outcome["formed_s"]),
            {"forming_voltage_v": formed_v, "held_s": outcome["held_s"],
             "hold_s": self.hold},
        )])
        return outcome

    def _level(self, level_v: float) -> float:
        """Drive at the level, bias at half of it; the cell's current, A."""
        with self.rig.batch():
            self.drive.source_voltage = level_v
            self.bias.source_voltage = level_v / 2
            return -self.sense.measure_current()

    def _read(self) -> float:
        """The selected cell's conductance at the read voltage, S."""
        with self.rig.batch():
            self.bias.source_voltage = 0.0
            self.drive.source_voltage = self.read_voltage
            current = -self.sense.measure_current()
            self.drive.source_voltage = 0.0
        return current / self.read_voltage

    def _summarize(self, outcomes: list[dict[str, object]]) -> dict[str, object]:
        formed = [o for o in outcomes if "forming_voltage_v" in o]
        kept = [
            float(o["held_s"]) / float(o["formed_s"])
            for o in formed  # type: ignore[arg-type]
            if float(o["formed_s"]) > 0
        ]  # type: ignore[arg-type]
        summary: dict[str, object] = {
            "cells": len(outcomes),
            "formed": len(formed),
            "formed_before": sum(1 for o in outcomes if o.get("formed_before")),
            "mode": MODES[self.preset.mode_for(self.compliance)],
            "compliance_a": self.compliance,
        }
        if formed:
            voltages = [float(o["forming_voltage_v"]) for o in formed]  # type: ignore[arg-type]
            summary.update(
                {
                    "v_forming_v": float(np.mean(voltages)),
                    "v_forming_min_v": min(voltages),
                    "v_forming_max_v": max(voltages),
                    "g_formed_median_s": float(
                        np.median([o["formed_s"] for o in formed])
                    ),
                    "kept_after_hold": float(np.median(kept)) if kept else None,
                }
            )
        return summary
