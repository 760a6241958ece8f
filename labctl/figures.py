"""Figures of merit of a device, extracted from the points characterizations store.

Each function takes the points of one run (dicts keyed by the procedure's
data columns, as :func:`labctl.storage.run_points` returns them) and returns
its figures in SI units. The procedures put them in their summaries, the
datasheet (:mod:`labctl.report`) draws and tabulates them, and the preset fit
(:mod:`labctl.fit`) starts from them.

How each figure is defined:

* **on/off ratio** (I-V loop): conductance at the lowest |V| of the positive
  return branch (after SET) over that at the lowest |V| of the last branch
  (after RESET), the last cycle;
* **SET / RESET threshold** (I-V loop): the voltage of the steepest rise of
  the log chord conductance ``I / V`` on the positive up branch, of its
  steepest fall on the negative one;
* **nonlinearity** (pulse response): ``P / A`` of the fit
  ``G(p) = G_lim + (G_0 - G_lim) (1 - f)^p``, ``A = -1 / ln(1 - f)`` the pulses
  to saturate and ``P`` the pulses of the curve (0 for a linear response);
* **cycle-to-cycle variation** (pulse response): the median over the pulses of
  the curves of the relative standard deviation, across cycles, of the
  conductance after that many pulses;
* **levels** (multilevel): the most programmed levels whose reads, at every
  time read, do not overlap those of the level below;
* **retention** (retention): the time after which the written levels have
  lost 10 % of their conductance, from a power law fitted to the loss in log
  time, s;
* **endurance** (endurance): the last cycle count at which the on/off ratio
  was still at least the run's failure ratio;
* **device-to-device variation** (variability): relative standard deviation
  of the SET-state conductance over the cells mapped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import least_squares

Points = Sequence[dict[str, Any]]


def column(points: Points, name: str) -> np.ndarray:
    """One data column of a run's points as floats (NaN where missing)."""
    return np.array(
        [np.nan if p.get(name) is None else p[name] for p in points], dtype=float
    )


# I-V loop


def iv_branches(voltage: np.ndarray) -> list[slice]:
    """The four branches of each cycle of a bipolar sweep: up to the top, back
    to 0, down to the bottom, back to 0 (by the turning points)."""
    branches = []
    start = 0
    for k in range(1, len(voltage) - 1):
        turning = (voltage[k] - voltage[k - 1]) * (voltage[k + 1] - voltage[k]) < 0
        at_zero = voltage[k] == 0 and voltage[k - 1] != 0
        if turning or at_zero:
            branches.append(slice(start, k + 1))
            start = k
    branches.append(slice(start, len(voltage)))
    return branches


def iv_figures(points: Points) -> dict[str, float]:
    """On/off ratio and SET and RESET thresholds of an I-V loop run."""
    cycle = column(points, "Cycle")
    last = cycle == np.nanmax(cycle)
    voltage = column(points, "Voltage (V)")[last]
    current = column(points, "Current (A)")[last]
    up, back, down, ret = _four(iv_branches(voltage))

    def low_conductance(part: slice) -> float:
        v, i = voltage[part], current[part]
        useful = np.abs(v) > 0
        k = np.argmin(np.abs(v[useful]))
        return float(i[useful][k] / v[useful][k])

    g_on, g_off = low_conductance(back), low_conductance(ret)
    return {
        "on_off": g_on / g_off,
        "g_on_s": g_on,
        "g_off_s": g_off,
        "v_set_v": _steepest(voltage[up], current[up], rising=True),
        "v_reset_v": _steepest(voltage[down], current[down], rising=False),
    }


def _four(branches: list[slice]) -> tuple[slice, slice, slice, slice]:
    if len(branches) < 4:
        raise ValueError("an I-V loop needs a positive and a negative branch")
    return branches[0], branches[1], branches[2], branches[3]


def _steepest(v: np.ndarray, i: np.ndarray, rising: bool) -> float:
    """The voltage of the steepest change of the log chord conductance
    (``I / V``, which the I-V nonlinearity alone changes slowly) along a
    branch, V."""
    off_zero = v != 0
    v, i = v[off_zero], i[off_zero]
    conductance = np.log(np.maximum(np.abs(i / v), 1e-15))
    change = np.diff(conductance) / np.abs(np.diff(v))
    k = int(np.argmax(change) if rising else np.argmin(change))
    return float(v[k + 1])


# Pulse response


def fit_curve(pulses: np.ndarray, g_s: np.ndarray) -> tuple[float, float, float]:
    """Fit ``G(p) = G_lim + (G_0 - G_lim) (1 - f)^p`` to a pulse curve.

    Returns ``(G_0, G_lim, f)``: the start and limit conductances, S, and the
    fraction of the remaining way each pulse moves.
    """
    g0, g_end = float(g_s[0]), float(g_s[-1])
    scale = max(abs(g_end - g0), 1e-12)

    def residual(x: np.ndarray) -> np.ndarray:
        start, limit, log_f = x
        f = 1.0 / (1.0 + math.exp(-log_f))
        return (limit + (start - limit) * (1 - f) ** pulses - g_s) / scale

    guess = [g0, g_end + 0.1 * (g_end - g0), math.log(0.05 / 0.95)]
    fit = least_squares(residual, guess, method="lm")
    start, limit, log_f = fit.x
    return float(start), float(limit), 1.0 / (1.0 + math.exp(-log_f))


def pulse_curves(
    points: Points,
) -> dict[tuple[float, float], list[tuple[np.ndarray, np.ndarray]]]:
    """The curves of a pulse-response run by (amplitude V, width s): a list,
    one per cycle, of (pulses, conductance S)."""
    keys = list(
        zip(
            column(points, "Cycle"),
            column(points, "Amplitude (V)"),
            column(points, "Width (s)"),
            strict=True,
        )
    )
    pulses, g = column(points, "Pulse"), column(points, "Conductance (S)")
    curves: dict[tuple[float, float], list[tuple[np.ndarray, np.ndarray]]] = {}
    for key in dict.fromkeys(keys):
        mine = np.array([k == key for k in keys])
        _, amplitude, width = key
        curves.setdefault((amplitude, width), []).append((pulses[mine], g[mine]))
    return curves


def pulse_figures(points: Points) -> dict[str, float]:
    """Nonlinearity of potentiation and depression and cycle-to-cycle variation,
    from the curves of the largest SET and RESET amplitudes."""
    curves = pulse_curves(points)
    figures: dict[str, float] = {}
    for name, pick in (("set", max), ("reset", min)):
        amplitudes = [a for a, _ in curves if (a > 0) == (name == "set")]
        if not amplitudes:
            continue
        key = next(k for k in curves if k[0] == pick(amplitudes))
        fits = [fit_curve(p, g) for p, g in curves[key]]
        length = float(np.mean([p.max() for p, _ in curves[key]]))
        fraction = float(np.median([f for *_, f in fits]))
        figures[f"nonlinearity_{name}"] = length * -math.log1p(-fraction)
        figures[f"pulses_to_saturate_{name}"] = -1.0 / math.log1p(-fraction)
        figures[f"g_limit_{name}_s"] = float(np.median([lim for _, lim, _ in fits]))
        figures[f"c2c_{name}"] = _cycle_spread(curves[key])
    spreads = [figures[k] for k in ("c2c_set", "c2c_reset") if k in figures]
    if spreads:
        figures["c2c"] = float(np.mean(spreads))
    return figures


def _cycle_spread(curves: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Median over pulses 1..P of the relative spread across cycles."""
    length = min(len(g) for _, g in curves)
    if len(curves) < 2:
        return math.nan
    stack = np.stack([g[:length] for _, g in curves])[:, 1:]
    return float(np.mean(stack.std(axis=0, ddof=1) / stack.mean(axis=0)))


# Multilevel


def multilevel_figures(points: Points) -> dict[str, float]:
    """Distinguishable levels: at every time read, each level's reads lie above
    all reads of the level counted below it."""
    level, time_s = column(points, "Level"), column(points, "Time (s)")
    g = column(points, "Conductance (S)")
    tried = int(np.unique(level).size)
    counts = []
    for t in np.unique(time_s):
        at = time_s == t
        ranges = sorted(
            (float(np.min(g[at & (level == k)])), float(np.max(g[at & (level == k)])))
            for k in np.unique(level[at])
        )
        counted, top = 0, -math.inf
        for low, high in ranges:
            if low > top:
                counted += 1
                top = high
        counts.append(counted)
    return {
        "levels": float(min(counts)),
        "levels_tried": float(tried),
        "hold_s": float(np.max(time_s)),
    }


# Retention


def retention_figures(points: Points) -> dict[str, float]:
    """Retention: when the written levels have lost 10 % of their conductance.

    The mean relative loss ``1 - G(t) / G(t_first)`` of the levels is fitted
    with ``a t^b`` over the times where it stands out of the noise.
    """
    time_s, g = column(points, "Time (s)"), column(points, "Conductance (S)")
    level = column(points, "Level")
    first = time_s == np.min(time_s)
    losses = []
    for k in np.unique(level):
        mine = level == k
        losses.append(1 - g[mine] / float(np.mean(g[mine & first])))
    times = np.unique(time_s)
    mean_loss = np.array(
        [
            np.mean(
                [
                    loss[time_s[level == k] == t].mean()
                    for k, loss in zip(np.unique(level), losses, strict=True)
                ]
            )
            for t in times
        ]
    )
    figures = {"measured_s": float(times.max()), "loss_at_end": float(mean_loss[-1])}
    usable = (mean_loss > 0.2 * max(float(mean_loss.max()), 1e-12)) & (
        times > times.min()
    )
    if usable.sum() >= 2 and mean_loss[-1] > 0:
        slope, offset = np.polyfit(np.log(times[usable]), np.log(mean_loss[usable]), 1)
        if slope > 0:
            figures["retention_s"] = float(math.exp((math.log(0.1) - offset) / slope))
            figures["loss_exponent"] = float(slope)
    figures.setdefault("retention_s", math.inf)
    return figures


# Endurance


def endurance_figures(points: Points, fail_ratio: float) -> dict[str, float]:
    """The cycles the cell lasted (on/off at least `fail_ratio`), the first
    failing count and the window at the start and the end."""
    cycles, ratio = column(points, "Cycle"), column(points, "Ratio")
    on, off = column(points, "On (S)"), column(points, "Off (S)")
    good = ratio >= fail_ratio
    failing = np.flatnonzero(~good)
    last_good = cycles[: failing[0]] if failing.size else cycles
    return {
        "endurance_cycles": float(last_good.max()) if last_good.size else 0.0,
        "failed_at_cycles": float(cycles[failing[0]]) if failing.size else math.inf,
        "window_start_s": float(on[0] - off[0]),
        "window_end_s": float(on[-1] - off[-1]),
        "on_off_start": float(ratio[0]),
    }


# Read disturb


def disturb_figures(points: Points) -> dict[str, Any]:
    """Per read voltage, the relative drift per read; and the lowest read
    voltage whose drift stands clear of the noise of the reference reads."""
    voltage, reads = column(points, "Read voltage (V)"), column(points, "Reads")
    g = column(points, "Conductance (S)")
    drifts: dict[float, float] = {}
    noise: list[float] = []
    for v in np.unique(voltage):
        mine = voltage == v
        slope, offset = np.polyfit(reads[mine], g[mine], 1)
        drifts[float(v)] = float(slope / offset)
        residual = g[mine] - (offset + slope * reads[mine])
        noise.append(float(residual.std() / offset / max(reads[mine].max(), 1)))
    floor = 5 * float(np.median(noise))
    disturbing = [v for v, d in sorted(drifts.items()) if abs(d) > floor and v > 0]
    return {
        "drift_per_read": drifts,
        "disturb_from_v": disturbing[0] if disturbing else math.inf,
    }


# Variability


def variability_figures(points: Points) -> dict[str, float]:
    """Device-to-device spread of the SET and RESET states over the mapped cells."""
    on, off = column(points, "On (S)"), column(points, "Off (S)")
    return {
        "d2d_on": float(np.std(on, ddof=1) / np.mean(on)),
        "d2d_off": float(np.std(off, ddof=1) / np.mean(off)),
        "g_on_median_s": float(np.median(on)),
        "g_off_median_s": float(np.median(off)),
        "on_off_median": float(np.median(on / off)),
        "cells": float(on.size),
    }


# Forming


def forming_figures(points: Points) -> dict[str, float]:
    """Forming voltage of each cell: the first level at which it reached its
    compliance; their mean, lowest and highest, V."""
    row, col = column(points, "Row"), column(points, "Column")
    voltage, limited = column(points, "Voltage (V)"), column(points, "Compliance")
    forming = []
    for r, c in dict.fromkeys(zip(row.tolist(), col.tolist(), strict=True)):
        mine = (row == r) & (col == c) & (limited > 0)
        if mine.any():
            forming.append(float(voltage[mine][0]))
    if not forming:
        return {"cells_formed": 0.0}
    return {
        "cells_formed": float(len(forming)),
        "v_forming_v": float(np.mean(forming)),
        "v_forming_min_v": float(np.min(forming)),
        "v_forming_max_v": float(np.max(forming)),
    }
