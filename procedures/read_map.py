"""Conductance map of an array at a read voltage well below switching.

Each cell in turn: its row on the drive channel at ``read_voltage``, its
column on a sense channel at 0 V. The other lines are grounded (the sense
channel then measures the selected cell alone) or left floating (sneak paths
through unselected cells add to the reading, as on a bare passive array).
A resumed map reads only the cells its run has not stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymeasure.experiment import FloatParameter, ListParameter, Parameter

from labctl.station import Station
from labctl.storage import CellRead
from procedures.base import LabProcedure


class ReadMap(LabProcedure):
    """Conductance map of an array at a read voltage below switching."""

    NAME = "read_map"

    array = Parameter("Array", default="A0")
    read_voltage = FloatParameter("Read voltage", units="V", minimum=1e-3, maximum=210,
                                  default=0.2)
    unselected = ListParameter("Unselected lines", choices=["grounded", "floating"],
                               default="grounded")
    compliance = FloatParameter("Compliance", units="A", minimum=1e-9, maximum=1.5,
                                default=1e-3)

    DATA_COLUMNS = ["Row", "Column", "Current (A)", "Conductance (S)"]

    #: Conductances (S) an earlier part of the run stored, by (row, column).
    stored: dict[tuple[int, int], float] = {}

    def check(self, station: Station) -> None:
        limits = station.limits
        self.check_level("read_voltage", self.read_voltage, limits.max_read_voltage_v,
                         "max_read_voltage_v")
        self.check_cell(station, self.array)
        self.require(
            self.compliance <= limits.max_compliance_a,
            f"read_map: compliance = {self.compliance:g} A exceeds the chip's "
            f"max_compliance_a of {limits.max_compliance_a:g} A",
        )

    def startup(self) -> None:
        rig = self.rig
        roles = rig.station.roles
        self.drive = rig.smu(roles.drive)
        self.sense = rig.smu(roles.sense[0])
        self.lines = rig.lines(self.array)
        with rig.batch():
            for ch in (self.drive, self.sense):
                ch.output_enabled = False
                ch.source_voltage = 0.0
                ch.current_limit = self.compliance
                ch.output_enabled = True

    def resume_from(self, points: list[dict[str, Any]], maps: dict[str, Any]) -> None:
        self.stored = {
            (p["Row"], p["Column"]): np.nan if p["Conductance (S)"] is None
            else p["Conductance (S)"] for p in points
        }

    def execute(self) -> None:
        rig = self.rig
        roles = rig.station.roles
        drive_bus, sense_bus = rig.bus_of(roles.drive), rig.bus_of(roles.sense[0])
        other = rig.ground_bus if self.unselected == "grounded" else None
        rows, cols = self.lines.n_rows, self.lines.n_cols
        conductance = np.full((rows, cols), np.nan)
        for (r, c), g in self.stored.items():
            conductance[r, c] = g
        try:
            self._scan(conductance, drive_bus, sense_bus, other)
        finally:  # a stopped or failed map keeps the cells it read
            self._store(conductance)

    def _scan(self, conductance: np.ndarray, drive_bus: str, sense_bus: str,
              other: str | None) -> None:
        rig = self.rig
        rows, cols = conductance.shape
        for r in range(rows):
            for c in range(cols):
                if (r, c) in self.stored:
                    continue
                with rig.batch():
                    self.drive.source_voltage = 0.0
                    self.lines.select(r, c, drive_bus, sense_bus, other, other)
                    self.drive.source_voltage = self.read_voltage
                    current = -self.sense.measure_current()
                g = conductance[r, c] = current / self.read_voltage
                self.sink.add_cells([CellRead(self.array, r, c, g)])
                self.emit("results", {"Row": r, "Column": c, "Current (A)": current,
                                      "Conductance (S)": g})
                self.progress(r * cols + c + 1, rows * cols)
                if self.should_stop():
                    return
        self.drive.source_voltage = 0.0

    def _store(self, conductance: np.ndarray) -> None:
        self.map_s = conductance
        self.sink.add_map(self.array, "read", conductance, self.read_voltage)
        done = conductance[np.isfinite(conductance)]
        if done.size:
            self.summary.update({
                "cells": int(done.size), "mean_s": float(done.mean()),
                "min_s": float(done.min()), "max_s": float(done.max()),
                "unselected": self.unselected,
            })
