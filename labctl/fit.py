"""Fit a device preset to measured I-V loops and pulse responses.

The data are run CSVs as the procedures write them: ``iv_sweep`` (columns
``Cycle``, ``Voltage (V)``, ``Current (A)``, ``Compliance``) and
``pulse_response`` (``Cycle``, ``Amplitude (V)``, ``Width (s)``, ``Pulse``,
``Conductance (S)``). What is fitted, in order, each step by
:func:`scipy.optimize.least_squares`:

1. the pulse curves of each polarity, together: one limit conductance per
   polarity (``g_max_s`` from SET, ``g_min_s`` from RESET) and per curve its
   start and the fraction ``f`` of the remaining way each pulse moves;
2. the I-V of the written state, where the loop does not switch: below the
   SET threshold on the way back from the top (``ohmic_limit_v``,
   ``iv_v0_v``) and above the RESET threshold on the way down
   (``rectification_ratio``, at the base preset's ``rectification_at_v``);
3. the switching: thresholds, rates and exponents of both polarities at
   once, from the pulse curves (``-ln(1 - f) / width = rate (V / V_th - 1)^alpha``
   at each amplitude) and from the I-V loop, simulated point by point with
   the fitted cell (``iv_point_s`` per point) against the measured currents.

Every other field (noise, variation, forming, retention, endurance, ...)
keeps the base preset's value. With one amplitude per polarity the
exponents keep the base preset's values too: only amplitude dependence
tells an exponent from a rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from procedures.base import ParameterError
from simulator.device import PRESET_DIR, DevicePreset, current_per_siemens

IV_COLUMNS = {"Cycle", "Voltage (V)", "Current (A)", "Compliance"}
PULSE_COLUMNS = {"Cycle", "Amplitude (V)", "Width (s)", "Pulse", "Conductance (S)"}

IV_POINT_S = 0.0178
"""Time each I-V point holds its level, s: a 1-PLC reading at 60 Hz and one
GPIB message, as an I-V point on the demo station takes."""

#: The fields the fit sets; the others come from the base preset.
FITTED = (
    "g_min_s",
    "g_max_s",
    "ohmic_limit_v",
    "iv_v0_v",
    "rectification_ratio",
    "v_set_v",
    "v_reset_v",
    "rate_set_per_s",
    "rate_reset_per_s",
    "alpha_set",
    "alpha_reset",
)


class FitError(ParameterError):
    """Data a preset cannot be fitted to, in one line."""


@dataclass
class Measured:
    """The data of a fit: I-V loops and pulse curves."""

    iv: list[pd.DataFrame]
    curves: list[pd.DataFrame]


def read_runs(paths: Sequence[Path]) -> Measured:
    """Read run CSVs, each an I-V loop or a pulse response (by its columns)."""
    measured = Measured([], [])
    for path in paths:
        try:
            frame = pd.read_csv(path, comment="#")
        except (OSError, ValueError) as exc:
            raise FitError(f"{path}: cannot read the data: {exc}") from None
        columns = set(frame.columns)
        if IV_COLUMNS <= columns:
            measured.iv.append(frame)
        elif PULSE_COLUMNS <= columns:
            measured.curves.append(frame)
        else:
            raise FitError(
                f"{path}: neither an I-V loop ({', '.join(sorted(IV_COLUMNS))}) nor a "
                f"pulse response ({', '.join(sorted(PULSE_COLUMNS))})"
            )
    if not measured.curves:
        raise FitError("the fit needs at least one pulse response (pulse_response run)")
    return measured


def fit_preset(
    paths: Sequence[Path],
    base: str | Path = "perovskite",
    iv_point_s: float = IV_POINT_S,
) -> tuple[DevicePreset, dict[str, Any]]:
    """A preset fitted to run CSVs, and what the fit saw.

    Returns the preset (the base preset with the fitted fields replaced) and
    a report: per fitted field its value, and the fit residuals.
    """
    measured = read_runs(paths)
    preset = DevicePreset.load(base)
    curves = _curves(measured.curves)
    preset, limits = _fit_limits(preset, curves)
    if measured.iv:
        preset = _fit_iv_shape(preset, measured.iv)
    preset, residual = _fit_switching(preset, curves, measured.iv, iv_point_s)
    report = {name: getattr(preset, name) for name in FITTED}
    report.update(
        {
            "curves": len(curves),
            "loops": len(measured.iv),
            "limit_residual": limits,
            "switching_residual": residual,
        }
    )
    return preset, report


# Step 1: the pulse curves


@dataclass
class _Curve:
    amplitude_v: float
    width_s: float
    pulses: np.ndarray
    g_s: np.ndarray
    fraction: float = math.nan


def _curves(frames: list[pd.DataFrame]) -> list[_Curve]:
    curves = []
    for frame in frames:
        for (_, amplitude, width), part in frame.groupby(
            ["Cycle", "Amplitude (V)", "Width (s)"], sort=False
        ):
            part = part.sort_values("Pulse")
            curves.append(
                _Curve(
                    float(amplitude),
                    float(width),
                    part["Pulse"].to_numpy(float),
                    part["Conductance (S)"].to_numpy(float),
                )
            )
    return curves


def _fit_limits(
    preset: DevicePreset, curves: list[_Curve]
) -> tuple[DevicePreset, float]:
    """One limit per polarity, one start and fraction per curve."""
    changes = {}
    worst = 0.0
    for setting, name in ((True, "g_max_s"), (False, "g_min_s")):
        mine = [c for c in curves if (c.amplitude_v > 0) == setting]
        if not mine:
            continue
        # Residuals relative to each reading: the saturated end counts as much
        # as the steep start.
        scale = max(float(np.ptp(np.concatenate([c.g_s for c in mine]))), 1e-12)
        end = max if setting else min
        guess = [math.log(max(end(float(c.g_s[-1]) for c in mine), 1e-12))]
        for c in mine:
            guess += [float(c.g_s[0]) / scale, _logit(0.05)]

        def residual(
            x: np.ndarray, mine: list[_Curve] = mine, scale: float = scale
        ) -> np.ndarray:
            limit = math.exp(x[0])
            parts = []
            for k, c in enumerate(mine):
                start, f = x[1 + 2 * k] * scale, _expit(x[2 + 2 * k])
                model = limit + (start - limit) * (1 - f) ** c.pulses
                parts.append((model - c.g_s) / np.maximum(np.abs(c.g_s), 1e-3 * scale))
            return np.concatenate(parts)

        fit = least_squares(residual, guess, x_scale="jac")
        changes[name] = math.exp(fit.x[0])
        for k, c in enumerate(mine):
            c.fraction = _expit(fit.x[2 + 2 * k])
        worst = max(worst, float(np.sqrt(np.mean(fit.fun**2))))
    return replace(preset, **changes), worst


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Step 2: the I-V of a written state


def _fit_iv_shape(preset: DevicePreset, loops: list[pd.DataFrame]) -> DevicePreset:
    """Ohmic region and sinh from the return branch from the top, rectification
    from the negative branch above RESET, both at the written (SET) state."""
    from labctl.figures import iv_figures

    forward_v, forward_u, reverse_v, reverse_u = [], [], [], []
    for loop in loops:
        seen = iv_figures(loop.to_dict("records"))
        reset_v = max(preset.v_reset_v, seen["v_reset_v"])
        for v, i, limited in _written_branches(loop, reset_v):
            g = _lowest_conductance(v, i)
            keep = limited == 0
            if v[keep].mean() > 0:
                forward_v.append(v[keep])
                forward_u.append(i[keep] / g)
            else:
                reverse_v.append(v[keep])
                reverse_u.append(i[keep] / g)
    if not forward_v:
        return preset
    v, u = np.concatenate(forward_v), np.concatenate(forward_u)

    def forward(x: np.ndarray) -> np.ndarray:
        trial = replace(preset, ohmic_limit_v=x[0], iv_v0_v=x[1])
        return (np.asarray(current_per_siemens(trial, v)) - u) / np.maximum(
            np.abs(u), 1e-3
        )

    low = [preset.read_voltage_v, 0.02]
    high = [preset.rectification_at_v * 0.99, 5.0]
    start = [min(max(preset.ohmic_limit_v, low[0]), high[0]), preset.iv_v0_v]
    shape = least_squares(forward, start, bounds=(low, high)).x
    preset = replace(preset, ohmic_limit_v=float(shape[0]), iv_v0_v=float(shape[1]))
    if not reverse_v:
        return preset
    v, u = np.concatenate(reverse_v), np.concatenate(reverse_u)
    if not (np.abs(v) > preset.ohmic_limit_v).any():
        return preset

    def reverse(x: np.ndarray) -> np.ndarray:
        trial = replace(preset, rectification_ratio=math.exp(x[0]))
        return (np.asarray(current_per_siemens(trial, v)) - u) / np.maximum(
            np.abs(u), 1e-3
        )

    ratio = least_squares(
        reverse, [math.log(preset.rectification_ratio)], bounds=([0.0], [math.log(1e6)])
    ).x
    return replace(preset, rectification_ratio=float(math.exp(ratio[0])))


def _written_branches(
    loop: pd.DataFrame, reset_v: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The parts of each cycle at the written state, with their compliance
    flags: back from the top (the SET saturated on the way up), and down from
    0 above the RESET threshold `reset_v` (with a margin)."""
    from labctl.figures import iv_branches

    parts = []
    for _, cycle in loop.groupby("Cycle", sort=False):
        v = cycle["Voltage (V)"].to_numpy(float)
        i = cycle["Current (A)"].to_numpy(float)
        limited = cycle["Compliance"].to_numpy(float)
        branches = iv_branches(v)
        if len(branches) < 3:
            continue
        back, down = branches[1], branches[2]
        quiet_up = v[back] > 0
        quiet_down = (v[down] < 0) & (v[down] > 0.9 * reset_v)
        for part, quiet in ((back, quiet_up), (down, quiet_down)):
            if quiet.sum() >= 3:
                parts.append((v[part][quiet], i[part][quiet], limited[part][quiet]))
    return parts


def _lowest_conductance(v: np.ndarray, i: np.ndarray) -> float:
    k = int(np.argmin(np.abs(v)))
    return float(i[k] / v[k])


# Step 3: the switching


_SWITCHING = (
    "v_set_v",
    "rate_set_per_s",
    "alpha_set",
    "v_reset_v",
    "rate_reset_per_s",
    "alpha_reset",
)


def _fit_switching(
    preset: DevicePreset,
    curves: list[_Curve],
    loops: list[pd.DataFrame],
    point_s: float,
) -> tuple[DevicePreset, float]:
    """Thresholds, rates and exponents, from the curves' fractions and the loops."""
    amplitudes = {c.amplitude_v for c in curves}
    free_alpha = {
        "alpha_set": len({a for a in amplitudes if a > 0}) > 1,
        "alpha_reset": len({a for a in amplitudes if a < 0}) > 1,
    }
    names = [n for n in _SWITCHING if free_alpha.get(n, True)]
    bounds = _switching_bounds(preset)
    low = [math.log(bounds[n][0]) for n in names]
    high = [math.log(bounds[n][1]) for n in names]
    start = [
        min(max(math.log(abs(getattr(preset, n))), lo + 1e-9), hi - 1e-9)
        for n, lo, hi in zip(names, low, high, strict=True)
    ]
    weight = math.sqrt(max(len(curves), 1) / max(sum(len(loop) for loop in loops), 1))

    def trial(x: np.ndarray) -> DevicePreset:
        return replace(
            preset, **{n: _from_free(n, v) for n, v in zip(names, x, strict=True)}
        )

    def residual(x: np.ndarray) -> np.ndarray:
        p = trial(x)
        parts = [_pulse_residual(p, curves)]
        parts += [weight * _iv_residual(p, loop, point_s) for loop in loops]
        return np.concatenate(parts)

    fit = least_squares(residual, start, bounds=(low, high), x_scale="jac")
    return trial(fit.x), float(np.sqrt(np.mean(fit.fun**2)))


def _switching_bounds(p: DevicePreset) -> dict[str, tuple[float, float]]:
    """Sizes the switching fields may take: thresholds between the read
    voltage and the forming voltage, rates and exponents within decades."""
    threshold = (
        1.05 * max(p.read_voltage_v, p.ohmic_limit_v / 2),
        0.99 * p.v_forming_v,
    )
    return {
        "v_set_v": threshold,
        "v_reset_v": threshold,
        "rate_set_per_s": (1e-3, 1e12),
        "rate_reset_per_s": (1e-3, 1e12),
        "alpha_set": (0.2, 10.0),
        "alpha_reset": (0.2, 10.0),
    }


def _from_free(name: str, x: float) -> float:
    """A switching field from the fit's coordinate, the log of its size."""
    value = math.exp(x)
    return -value if name == "v_reset_v" else value


def _pulse_residual(p: DevicePreset, curves: list[_Curve]) -> np.ndarray:
    """log of each curve's rate, measured against the model's."""
    out = []
    for c in curves:
        measured = -math.log1p(-min(c.fraction, 1 - 1e-12)) / c.width_s
        if c.amplitude_v > 0:
            threshold, rate, alpha = p.v_set_v, p.rate_set_per_s, p.alpha_set
        else:
            threshold, rate, alpha = p.v_reset_v, p.rate_reset_per_s, p.alpha_reset
        over = c.amplitude_v / threshold - 1
        model = rate * over**alpha if over > 0 else 1e-30
        out.append(math.log(measured) - math.log(model))
    return np.array(out)


def _iv_residual(p: DevicePreset, loop: pd.DataFrame, point_s: float) -> np.ndarray:
    """log |I| of the loop simulated point by point against the measured, at
    the points not held at the compliance."""
    v = loop["Voltage (V)"].to_numpy(float)
    measured = loop["Current (A)"].to_numpy(float)
    keep = (loop["Compliance"].to_numpy(float) == 0) & (np.abs(v) > 0)
    simulated = simulate_loop(p, v, point_s, _first_state(p, v, measured))
    return np.log(np.abs(simulated[keep]) + 1e-15) - np.log(
        np.abs(measured[keep]) + 1e-15
    )


def _first_state(p: DevicePreset, v: np.ndarray, i: np.ndarray) -> float:
    """The state before a loop, from its first reading off 0 V."""
    k = int(np.flatnonzero(np.abs(v) > 0)[0])
    g = i[k] / float(current_per_siemens(p, float(v[k])))
    return min(max((g - p.g_min_s) / (p.g_max_s - p.g_min_s), 0.0), 1.0)


def simulate_loop(
    p: DevicePreset, v: np.ndarray, point_s: float, w: float
) -> np.ndarray:
    """The current of a noise-free cell of preset `p` at each level of a DC
    sweep, each held `point_s` and read at its end, from state `w`, A."""
    currents = np.empty(len(v))
    window = p.g_max_s - p.g_min_s
    for k, level in enumerate(v.tolist()):
        if level > p.v_set_v:
            rate = p.rate_set_per_s * (level / p.v_set_v - 1) ** p.alpha_set
            w = 1 - (1 - w) * math.exp(-rate * point_s)
        elif level < p.v_reset_v:
            rate = p.rate_reset_per_s * (level / p.v_reset_v - 1) ** p.alpha_reset
            w = w * math.exp(-rate * point_s)
        currents[k] = (p.g_min_s + window * w) * current_per_siemens(p, level)
    return currents


# Writing


def write_preset(
    preset: DevicePreset,
    path: Path,
    sources: Sequence[Path],
    base: str | Path,
    report: dict[str, Any],
) -> None:
    """Write a preset file: every field with its unit, the fitted ones marked."""
    data = ", ".join(str(source) for source in sources)
    lines = [
        f"# Device preset fitted by labctl sim fit to {data}",
        f"# on the base preset {base}: the fields marked 'fitted' come from the data,",
        "# the others from the base preset. Every value is in SI units.",
        f"# Residuals: pulse curves {report['limit_residual']:.3g} (relative), "
        f"switching {report['switching_residual']:.3g} (log).",
        "",
    ]
    base_text = _base_comments(base)
    for field in fields(preset):
        value = getattr(preset, field.name)
        note = (
            "fitted"
            if field.name in FITTED
            else base_text.get(field.name, "base preset")
        )
        lines.append(f"# {note}")
        lines.append(f"{field.name}: {_yaml_number(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _base_comments(base: str | Path) -> dict[str, str]:
    """The unit comment of each field in the base preset file (its last comment
    line before the field)."""
    text = Path(base if "/" in str(base) else PRESET_DIR / f"{base}.yaml").read_text()
    comments: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line.startswith("#"):
            last = line.lstrip("# ").strip()
        elif ":" in line and not line.startswith(" "):
            comments[line.split(":")[0]] = (
                f"base preset: {last}" if last else "base preset"
            )
            last = ""
    return comments


def _yaml_number(value: float) -> str:
    """A float that reads back exactly and as a float in YAML 1.1 (a decimal point)."""
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text
