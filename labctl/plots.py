"""Figures of stored runs, one kind per procedure.

Built on matplotlib's object interface with the Agg renderer, so they need no
display and leave pyplot's state alone:

* ``iv_sweep``: log |I| against V, one curve per cycle, arrows along each leg
  in the sweep's direction, points at compliance marked;
* ``read_map``: the conductance map in µS with its colour bar;
* ``program_map``: target and programmed maps in µS on one colour scale, and
  write-verify's convergence: the fraction of cells within tolerance against
  the pulses each took;
* ``attention_head``: one sentence's attention map on the chip beside the
  float64 reference (runs stored before maps were kept show the per-token
  cosine similarity instead);
* the characterizations, with the panels of the datasheet
  (:mod:`labctl.report`): ``forming`` log |I| against V per cell;
  ``pulse_response`` conductance against pulse number, potentiation and
  depression; ``multilevel`` every level's conductance when written and
  after the hold; ``retention`` conductance against log time; ``endurance``
  on and off conductance against cycles, both axes log; ``read_disturb``
  the drift of a cell against reads, per read voltage; ``variability`` the
  SET-state map and the spread of on and off conductances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from labctl import storage

MICRO = 1e6  # S → µS
#: Currents below this (A) are drawn at it on the log axis: a reading of 0 A.
FLOOR_A = 1e-15


class PlotError(ValueError):
    """A run that has nothing to plot, in one line."""


def figure_for(engine: Engine, run: storage.Run, item: int = 0) -> Figure:
    """The figure of a stored run, by its procedure."""
    try:
        draw = _DRAWERS[run.procedure]
    except KeyError:
        raise PlotError(f"run {run.id}: no plot for procedure "
                        f"{run.procedure!r}") from None
    figure = Figure(figsize=(7.5, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure, engine, run, item)
    return figure


def _title(run: storage.Run, what: str) -> str:
    where = run.chip_name or run.station_name
    return f"run {run.id} {run.procedure} on {where}: {what}"


def _frame(engine: Engine, run: storage.Run) -> Any:
    frame = storage.run_frame(engine, run.id)
    if frame.empty:
        raise PlotError(f"run {run.id} ({run.status}) stored no points")
    return frame


# I–V ---------------------------------------------------------------------------


def draw_iv(figure: Figure, engine: Engine, run: storage.Run, _item: int) -> None:
    frame = _frame(engine, run)
    ax = figure.add_subplot()
    for cycle, points in frame.groupby("Cycle", sort=True):
        v = points["Voltage (V)"].to_numpy(float)
        i = np.maximum(np.abs(points["Current (A)"].to_numpy(float)), FLOOR_A)
        (line,) = ax.semilogy(v, i, marker=".", markersize=3, label=f"cycle {cycle}")
        _direction_arrows(ax, v, i, line.get_color())
        tripped = points["Compliance"].to_numpy(float) > 0
        if tripped.any():
            ax.plot(v[tripped], i[tripped], "x", color=line.get_color(),
                    label=f"at compliance (cycle {cycle})")
    p = run.parameters
    ax.set_xlabel("Voltage (V)")
    ax.set_ylabel("|Current| (A)")
    ax.set_title(_title(run, f"cell ({p.get('row')}, {p.get('col')}) of "
                             f"{p.get('array')}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def _direction_arrows(ax: Axes, v: np.ndarray, i: np.ndarray, color: str) -> None:
    """One arrow halfway along each leg (0 → V_max, V_max → 0, …), pointing
    the way the sweep went."""
    steps = np.sign(np.diff(v))
    side = np.sign(v[:-1] + v[1:])  # which side of 0 V each step lies on
    turns = np.flatnonzero((steps[1:] != steps[:-1]) | (side[1:] != side[:-1])) + 1
    for leg in np.split(np.arange(len(v) - 1), turns):
        if leg.size == 0 or steps[leg[0]] == 0:
            continue
        k = leg[leg.size // 2]
        ax.annotate("", xy=(v[k + 1], i[k + 1]), xytext=(v[k], i[k]),
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.5,
                                "mutation_scale": 16})


# Maps --------------------------------------------------------------------------


def _last_map(engine: Engine, run: storage.Run,
              kind: str) -> storage.ConductanceMap | None:
    maps = [m for m in storage.run_maps(engine, run.id) if m.kind == kind]
    return maps[-1] if maps else None


def _map_from_points(engine: Engine, run: storage.Run) -> np.ndarray:
    """A map of the cells a run's points hold (NaN elsewhere)."""
    frame = _frame(engine, run)
    rows, cols = frame["Row"].to_numpy(int), frame["Column"].to_numpy(int)
    values = np.full((rows.max() + 1, cols.max() + 1), np.nan)
    values[rows, cols] = frame["Conductance (S)"].to_numpy(float)
    return values


def _heatmap(figure: Figure, ax: Axes, values_s: np.ndarray, title: str,
             limits_us: tuple[float, float] | None = None) -> None:
    shown = values_s * MICRO
    low, high = limits_us or (np.nanmin(shown), np.nanmax(shown))
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="viridis",
                      vmin=low, vmax=high)
    ax.set_xlabel("Column")
    ax.set_ylabel("Row")
    ax.set_title(title, fontsize="medium")
    figure.colorbar(image, ax=ax, label="Conductance (µS)")


def draw_read_map(figure: Figure, engine: Engine, run: storage.Run, _item: int) -> None:
    stored = _last_map(engine, run, "read")
    values = stored.to_array() if stored is not None else _map_from_points(engine, run)
    ax = figure.add_subplot()
    at = f" at {stored.read_voltage_v:g} V" if stored and stored.read_voltage_v else ""
    _heatmap(figure, ax, values, _title(run, f"{run.parameters.get('array')}{at}"))


def draw_program_map(figure: Figure, engine: Engine, run: storage.Run,
                     _item: int) -> None:
    frame = _frame(engine, run)
    target = _last_map(engine, run, "target")
    programmed = _last_map(engine, run, "programmed")
    final = programmed.to_array() if programmed else _map_from_points(engine, run)
    goal = target.to_array() if target else final
    shown = np.concatenate([goal.ravel(), final.ravel()]) * MICRO
    limits = (float(np.nanmin(shown)), float(np.nanmax(shown)))
    figure.set_size_inches(12, 4.5)
    left, middle, right = figure.subplots(1, 3)
    _heatmap(figure, left, goal, "target", limits)
    _heatmap(figure, middle, final, "programmed", limits)
    _convergence(right, frame, run.parameters.get("tolerance"))
    figure.suptitle(_title(run, f"write-verify of {run.parameters.get('array')}"))


def _convergence(ax: Axes, frame: Any, tolerance: float | None) -> None:
    """The fraction of cells within tolerance after at most N pulses each."""
    pulses = frame["Pulses"].to_numpy(float)
    converged = frame["Converged"].to_numpy(float) > 0
    reach = np.sort(pulses[converged])
    cells = len(frame)
    ax.step(np.concatenate([[0], reach]), np.arange(reach.size + 1) / cells,
            where="post", color="tab:blue")
    ax.axhline(converged.mean(), color="tab:gray", ls="--", lw=1,
               label=f"{converged.mean() * 100:.1f} % of {cells} cells converged")
    ax.set_xlabel("Pulses per cell")
    ax.set_ylabel("Cells within tolerance (fraction)")
    ax.set_ylim(0, 1.02)
    within = f"within {tolerance * 100:g} %" if tolerance else "within tolerance"
    ax.set_title(f"convergence ({within})", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, alpha=0.3)


# Attention -------------------------------------------------------------------------


def draw_attention(figure: Figure, engine: Engine, run: storage.Run, item: int) -> None:
    results = {r.item: r for r in storage.run_results(engine, run.id)}
    result = results.get(item)
    if result is None and results:
        raise PlotError(f"run {run.id}: no sentence {item}; stored: "
                        f"{', '.join(map(str, sorted(results)))}")
    if result is None or "attention_chip" not in result.metrics:
        _token_cosines(figure, engine, run)
        return
    chip = np.array(result.metrics["attention_chip"], dtype=float)
    reference = np.array(result.metrics["attention_reference"], dtype=float)
    figure.set_size_inches(11, 5)
    left, right = figure.subplots(1, 2)
    for ax, probs, name in ((left, chip, "on the chip"), (right, reference, "float64")):
        image = ax.imshow(probs, vmin=0, vmax=max(chip.max(), reference.max()),
                          cmap="magma", interpolation="nearest")
        ax.set_xlabel("Key token")
        ax.set_ylabel("Query token")
        ax.set_title(name, fontsize="medium")
    figure.colorbar(image, ax=[left, right], label="Attention weight")
    label = result.label if len(result.label) <= 60 else result.label[:57] + "…"
    figure.suptitle(_title(run, f"head {run.parameters.get('head')}, sentence {item}: "
                                f"“{label}”"))


def _token_cosines(figure: Figure, engine: Engine, run: storage.Run) -> None:
    frame = _frame(engine, run)
    ax = figure.add_subplot()
    ax.plot(np.arange(len(frame)), frame["Cosine"].to_numpy(float), ".")
    ax.set_xlabel("Token (all sentences)")
    ax.set_ylabel("Cosine similarity to float64")
    ax.set_title(_title(run, "head output per token"))
    ax.grid(True, alpha=0.3)


# Characterizations -------------------------------------------------------------


def draw_characterization(
    figure: Figure, engine: Engine, run: storage.Run, _item: int
) -> None:
    """A characterization run drawn with its panels of the datasheet."""
    from labctl import figures as fig
    from labctl import report

    name = run.procedure
    points = storage.run_points(engine, run.id)
    if not points:
        raise PlotError(f"run {run.id} ({run.status}) stored no points")
    sheet = report.Datasheet(chip=run.chip_name or "", station=run.station_name)
    sheet.runs[name], sheet.points[name] = run.id, points
    sheet.summaries[name] = run.summary or {}
    if name == "multilevel":
        sheet.figures = fig.multilevel_figures(points)
    panels = report.PANELS[name]
    for ax, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels,
                         strict=True):
        panel(ax, sheet)
        if not ax.images:
            ax.grid(True, alpha=0.3)
    figure.suptitle(_title(run, f"{len(points)} points"))


_DRAWERS: dict[str, Callable[[Figure, Engine, storage.Run, int], None]] = {
    "iv_sweep": draw_iv,
    "read_map": draw_read_map,
    "program_map": draw_program_map,
    "attention_head": draw_attention,
    "forming": draw_characterization,
    "pulse_response": draw_characterization,
    "multilevel": draw_characterization,
    "retention": draw_characterization,
    "endurance": draw_characterization,
    "read_disturb": draw_characterization,
    "variability": draw_characterization,
}
