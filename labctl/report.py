"""The device datasheet: a chip's characterizations on one page.

:func:`characterize` runs the characterizations a datasheet needs on a
station's chip (each one a stored run, like any other), :func:`collect`
reads the latest finished run of each from the database, and :func:`draw`
puts the plots a device paper shows and a table of the extracted figures,
each beside the range published for halide-perovskite memristors
(:data:`PUBLISHED`, from the project's reference figures), on one page, PNG
and PDF (matplotlib, Agg).

The cells the datasheet uses, on an array of at least 8 x 8 wired lines:
rows 0-7 are formed (a fresh array) or left alone (one that conducts);
rows 0-3 are mapped; cells (0, 0), (0, 1), (0, 2) and (0, 3) take the I-V
loop, the pulse curves, the read-disturb test and the endurance cycling (it
wears the cell out: it is last); row 1 the retention levels; rows 4-7 the
multilevel test.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from labctl import figures as fig
from labctl import storage
from labctl.station import Station
from procedures.base import ParameterError

log = logging.getLogger("labctl.report")


@dataclass(frozen=True)
class Published:
    """A figure of merit and the range the literature gives for it.

    Figures in ``%`` are fractions (0.05 is 5 %).
    """

    key: str
    label: str
    unit: str
    low: float
    high: float
    source: str

    def holds(self, value: float) -> bool:
        """Whether a measured value lies in the published range."""
        return self.low <= value <= self.high

    def range_text(self) -> str:
        """The range as a table shows it: ``0.1 - 1 V``, ``1 % - 5 %``."""
        if self.unit == "%":
            return f"{number(self.low, '%')} - {number(self.high, '%')}"
        return f"{self.low:.3g} - {number(self.high, self.unit)}"


PUBLISHED = (
    Published(
        "on_off", "On/off ratio", "", 1e2, 1e5, "devices.md range; (PrPyr)[PbI3] > 1e5"
    ),
    Published(
        "v_set_v", "SET threshold", "V", 0.1, 1.0, "devices.md: switching 0.1-1 V"
    ),
    Published(
        "v_reset_abs_v",
        "RESET threshold |V|",
        "V",
        0.1,
        1.0,
        "devices.md: switching 0.1-1 V",
    ),
    Published(
        "levels",
        "Distinguishable levels",
        "",
        32,
        139,
        "2025 device: 32 > 1000 s; 64x64: 139",
    ),
    Published(
        "nonlinearity_set",
        "Nonlinearity, potentiation",
        "",
        0.3,
        4.0,
        "devices.md: nonlinearity 0.3-4",
    ),
    Published(
        "nonlinearity_reset",
        "Nonlinearity, depression",
        "",
        0.3,
        4.0,
        "devices.md: nonlinearity 0.3-4",
    ),
    Published(
        "retention_s",
        "Retention, 10 % loss",
        "s",
        1e3,
        1e6,
        "devices.md; (PrPyr)[PbI3] 1e5 s",
    ),
    Published(
        "endurance_cycles",
        "Endurance",
        "cycles",
        1e3,
        4e5,
        "devices.md; (PrPyr)[PbI3] 2000",
    ),
    Published(
        "d2d_on", "Device-to-device variation", "%", 0.0, 0.05, "64x64 crossbar: < 5 %"
    ),
    Published(
        "c2c",
        "Cycle-to-cycle variation",
        "%",
        0.01,
        0.05,
        "devices.md; 64x64 crossbar < 1.5 %",
    ),
)
"""The figures a datasheet checks, with their published ranges and sources."""

#: The characterizations of a datasheet and their parameters (see the module).
PLAN: dict[str, dict[str, Any]] = {
    "forming": {"first_row": 0, "cells": 64, "compliance": 1e-4, "step": 0.05},
    "variability": {"rows": 4, "cols": 8},
    "iv_sweep": {"row": 0, "col": 0, "cycles": 2},
    "pulse_response": {"row": 0, "col": 1, "pulses": 40, "cycles": 3},
    "read_disturb": {"row": 0, "col": 2, "reads": 300, "blocks": 3},
    "multilevel": {"first_row": 4, "levels": 32, "reads": 6, "hold": 1000.0},
    "retention": {"first_row": 1, "levels": 4, "cells_per_level": 2, "duration": 1e4},
    "endurance": {"row": 0, "col": 3, "max_cycles": 20000, "per_decade": 20},
}


class ReportError(ParameterError):
    """A datasheet that cannot be made, in one line."""


@dataclass
class Datasheet:
    """The runs of one chip's datasheet and what they show."""

    chip: str
    station: str
    runs: dict[str, int] = field(default_factory=dict)
    points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


# Runs


def characterize(
    station: Station,
    engine: Engine,
    again: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[int]:
    """Run the datasheet's characterizations on the station's chip.

    Those with a finished run on the chip already are left out unless
    `again`. Returns the new runs' ids; a run that does not finish raises.
    """
    from labctl import runner
    from labctl.rig import Rig

    chip = chip_name(station)
    wanted = [name for name in PLAN if again or _latest(engine, chip, name) is None]
    procedures = [runner.build_procedure(name, PLAN[name], station) for name in wanted]
    run_ids = []
    if not procedures:
        return run_ids
    rig = Rig(station)
    try:
        for name, proc in zip(wanted, procedures, strict=True):
            if progress is not None:
                progress(name)
            outcome = runner.run(proc, station, engine, rig=rig)
            if outcome.status != "finished":
                raise ReportError(
                    f"{name}: run {outcome.run_id} {outcome.status}"
                    + (f" ({outcome.message})" if outcome.message else "")
                )
            log.info("datasheet of %s: %s is run %d", chip, name, outcome.run_id)
            run_ids.append(outcome.run_id)
    finally:
        rig.close()
    return run_ids


def collect(engine: Engine, chip: str) -> Datasheet:
    """The latest finished run of each characterization of a chip, and its figures.

    Raises
    ------
    ReportError
        If a characterization has no finished run on the chip.
    """
    missing = [name for name in PLAN if _latest(engine, chip, name) is None]
    if missing:
        raise ReportError(
            f"chip {chip}: no finished {', '.join(missing)} run; give --station to "
            "run them"
        )
    sheet = Datasheet(chip=chip, station="")
    for name in PLAN:
        run = _latest(engine, chip, name)
        assert run is not None
        sheet.runs[name] = run.id
        sheet.station = run.station_name
        sheet.points[name] = storage.run_points(engine, run.id)
        sheet.summaries[name] = run.summary or {}
    sheet.figures = extract(sheet)
    return sheet


def _latest(engine: Engine, chip: str, procedure: str) -> storage.Run | None:
    runs = storage.list_runs(
        engine, 1, chip=chip, procedure=procedure, status="finished"
    )
    return runs[0] if runs else None


def chip_name(station: Station) -> str:
    """The name of the station's chip."""
    if station.chip_spec is None:
        raise ReportError(f"{station.name}: the station names no chip")
    return station.chip_spec.name


def extract(sheet: Datasheet) -> dict[str, float]:
    """Every figure of the datasheet, from the runs' points."""
    points = sheet.points
    figures: dict[str, float] = {}
    figures.update(fig.iv_figures(points["iv_sweep"]))
    figures["v_reset_abs_v"] = abs(figures["v_reset_v"])
    figures.update(fig.pulse_figures(points["pulse_response"]))
    figures.update(fig.multilevel_figures(points["multilevel"]))
    figures.update(fig.retention_figures(points["retention"]))
    fail_ratio = float(PLAN["endurance"].get("fail_ratio", 2.0))
    figures.update(fig.endurance_figures(points["endurance"], fail_ratio))
    figures.update(fig.variability_figures(points["variability"]))
    figures.update(fig.forming_figures(points["forming"]))
    disturb = fig.disturb_figures(points["read_disturb"])
    figures["disturb_from_v"] = disturb["disturb_from_v"]
    return figures


# The page


def draw(sheet: Datasheet, path: Path) -> list[Path]:
    """Draw the datasheet; write it as PNG and PDF beside each other.

    Returns the files written (`path` with the suffixes ``.png`` and ``.pdf``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    page = plt.figure(figsize=(8.27, 11.69))  # A4
    grid = page.add_gridspec(
        5,
        3,
        height_ratios=[1, 1, 1, 0.3, 1.3],
        hspace=0.55,
        wspace=0.38,
        left=0.08,
        right=0.97,
        top=0.94,
        bottom=0.02,
    )
    page.suptitle(
        f"Device datasheet: chip {sheet.chip} (station {sheet.station})",
        fontsize=12,
        fontweight="bold",
    )
    panels = (
        _forming,
        _iv,
        _pulses,
        _multilevel,
        _retention,
        _endurance,
        _variability_map,
        _variability_spread,
        _disturb,
    )
    for k, panel in enumerate(panels):
        ax = page.add_subplot(grid[k // 3, k % 3])
        panel(ax, sheet)
        ax.tick_params(labelsize=7)
        ax.title.set_fontsize(8)
        ax.xaxis.label.set_fontsize(7)
        ax.yaxis.label.set_fontsize(7)
    _runs_note(page.add_subplot(grid[3, :]), sheet)
    _table(page.add_subplot(grid[4, :]), sheet)
    written = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        page.savefig(target, dpi=150)
        written.append(target)
    plt.close(page)
    return written


def _forming(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["forming"]
    compliance_a = sheet.summaries["forming"].get("compliance_a", math.nan)
    ax.set_title(f"Forming (compliance {compliance_a:.3g} A)")
    cells = list(dict.fromkeys((p["Row"], p["Column"]) for p in points))[:6]
    for cell in cells:
        mine = [p for p in points if (p["Row"], p["Column"]) == cell]
        ax.semilogy(
            [p["Voltage (V)"] for p in mine],
            [max(abs(p["Current (A)"]), 1e-12) for p in mine],
            lw=0.8,
        )
    if not cells:
        ax.text(
            0.5,
            0.5,
            "cells came formed",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
        )
    ax.set_xlabel("V (V)")
    ax.set_ylabel("|I| (A)")


def _iv(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["iv_sweep"]
    v = fig.column(points, "Voltage (V)")
    i = np.abs(fig.column(points, "Current (A)"))
    ax.semilogy(v, np.maximum(i, 1e-12), lw=0.8)
    ax.set_title("DC I-V hysteresis")
    ax.set_xlabel("V (V)")
    ax.set_ylabel("|I| (A)")


def _pulses(ax: Any, sheet: Datasheet) -> None:
    curves = fig.pulse_curves(sheet.points["pulse_response"])
    offset = 0.0
    for (amplitude, _), runs in curves.items():
        for pulses, g in runs:
            color = "tab:red" if amplitude > 0 else "tab:blue"
            ax.plot(pulses + offset, g * 1e6, ".", ms=1.5, color=color)
        offset += max(p.max() for p, _ in runs) + 1
    ax.set_title("Potentiation (red) / depression (blue)")
    ax.set_xlabel("pulse")
    ax.set_ylabel("G (µS)")


def _multilevel(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["multilevel"]
    times = sorted({p["Time (s)"] for p in points})
    for t, marker in zip(times, ("o", "x"), strict=False):
        mine = [p for p in points if p["Time (s)"] == t]
        ax.plot(
            [p["Level"] for p in mine],
            [p["Conductance (S)"] * 1e6 for p in mine],
            marker,
            ms=2,
            label=f"{t:g} s",
            alpha=0.7,
        )
    ax.legend(fontsize=6)
    ax.set_title(f"Multilevel: {sheet.figures['levels']:.0f} distinguishable")
    ax.set_xlabel("level")
    ax.set_ylabel("G (µS)")


def _retention(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["retention"]
    for level in sorted({p["Level"] for p in points}):
        for cell in sorted(
            {(p["Row"], p["Column"]) for p in points if p["Level"] == level}
        ):
            mine = [p for p in points if (p["Row"], p["Column"]) == cell]
            ax.semilogx(
                [p["Time (s)"] for p in mine],
                [p["Conductance (S)"] * 1e6 for p in mine],
                ".-",
                lw=0.6,
                ms=2,
            )
    ax.set_title("Retention")
    ax.set_xlabel("t after writing (s)")
    ax.set_ylabel("G (µS)")


def _endurance(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["endurance"]
    cycles = fig.column(points, "Cycle")
    ax.loglog(cycles, fig.column(points, "On (S)"), ".-", ms=2, lw=0.6, label="on")
    ax.loglog(cycles, fig.column(points, "Off (S)"), ".-", ms=2, lw=0.6, label="off")
    ax.legend(fontsize=6)
    ax.set_title("Endurance")
    ax.set_xlabel("cycles")
    ax.set_ylabel("G (S)")


def _variability_map(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["variability"]
    rows = int(max(p["Row"] for p in points)) + 1
    cols = int(max(p["Column"] for p in points)) + 1
    on = np.full((rows, cols), np.nan)
    for p in points:
        on[int(p["Row"]), int(p["Column"])] = p["On (S)"] * 1e6
    image = ax.imshow(on, cmap="viridis", aspect="auto")
    ax.figure.colorbar(image, ax=ax, fraction=0.05).ax.tick_params(labelsize=6)
    ax.set_title("SET-state map (µS)")
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def _variability_spread(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["variability"]
    for name, color in (("On (S)", "tab:red"), ("Off (S)", "tab:blue")):
        ax.hist(
            np.log10(fig.column(points, name)),
            bins=15,
            color=color,
            alpha=0.7,
            label=name.split()[0],
        )
    ax.legend(fontsize=6)
    ax.set_title("Device-to-device spread")
    ax.set_xlabel("log10 G (S)")
    ax.set_ylabel("cells")


def _disturb(ax: Any, sheet: Datasheet) -> None:
    points = sheet.points["read_disturb"]
    for level in sorted({p["Read voltage (V)"] for p in points}):
        mine = [p for p in points if p["Read voltage (V)"] == level]
        g0 = mine[0]["Conductance (S)"]
        ax.plot(
            [p["Reads"] for p in mine],
            [(p["Conductance (S)"] / g0 - 1) * 100 for p in mine],
            ".-",
            ms=2,
            lw=0.6,
            label=f"{level:g} V",
        )
    ax.legend(fontsize=5, ncol=2)
    ax.set_title("Read disturb")
    ax.set_xlabel("reads")
    ax.set_ylabel("ΔG (%)")


#: Each characterization's panels, as ``labctl plot`` draws its runs.
PANELS: dict[str, tuple[Callable[[Any, Datasheet], None], ...]] = {
    "forming": (_forming,),
    "iv_sweep": (_iv,),
    "pulse_response": (_pulses,),
    "multilevel": (_multilevel,),
    "retention": (_retention,),
    "endurance": (_endurance,),
    "variability": (_variability_map, _variability_spread),
    "read_disturb": (_disturb,),
}


def _table(ax: Any, sheet: Datasheet) -> None:
    ax.axis("off")
    rows = []
    for item in PUBLISHED:
        value = sheet.figures.get(item.key, math.nan)
        rows.append(
            [
                item.label,
                number(value, item.unit),
                item.range_text(),
                "yes" if item.holds(value) else "no",
                item.source,
            ]
        )
    extra = (
        ("Forming voltage", "v_forming_v", "V"),
        ("Read disturb from", "disturb_from_v", "V"),
    )
    for label, key, unit in extra:
        rows.append([label, number(sheet.figures.get(key, math.nan), unit), "", "", ""])
    table = ax.table(
        cellText=rows,
        colLabels=["figure", "measured", "published", "inside", "source"],
        loc="center",
        cellLoc="left",
        colLoc="left",
        colWidths=[0.25, 0.14, 0.2, 0.07, 0.34],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.scale(1, 1.2)


def _runs_note(ax: Any, sheet: Datasheet) -> None:
    ax.axis("off")
    runs = ", ".join(f"{name} {run_id}" for name, run_id in sheet.runs.items())
    figures = sheet.figures
    lines = [
        f"Runs: {runs}",
        f"LRS {figures['g_on_s'] * 1e6:.3g} µS and HRS "
        f"{figures['g_off_s'] * 1e6:.3g} µS at the read voltage; SET-state map median "
        f"{figures['g_on_median_s'] * 1e6:.3g} µS.",
        f"Retention read for {figures['measured_s']:.3g} s "
        f"({figures['loss_at_end'] * 100:.2g} % lost), extrapolated to 10 %; "
        f"multilevel states held {figures['hold_s']:.3g} s.",
    ]
    ax.text(
        0.0,
        1.0,
        "\n".join(lines),
        fontsize=7,
        va="top",
        linespacing=1.6,
        transform=ax.transAxes,
    )


def number(value: float, unit: str) -> str:
    """A figure as the table shows it: 3 digits and its unit."""
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "not reached"
    if unit == "%":
        return f"{value * 100:.3g} %"
    return f"{value:.3g} {unit}".strip()
