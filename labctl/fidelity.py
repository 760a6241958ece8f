"""Robustness sweep: fidelity of the simulated chip against its non-idealities.

Runs :func:`labctl.infer.infer` bench-direct on layer 0 of all-MiniLM-L6-v2
(the first sentences of the committed sixteen), changing one thing at a time
from the defaults: write-verify tolerance, read noise (the preset's
``read_sigma``), ADC bits of the read chain, the bench's stuck fraction and
the time the programmed tiles rest before use (the device's retention).
Each point gives the attention output's and the layer output's cosine
similarity to float64 and the attention maps' top-1 agreement.

``labctl bench fidelity`` prints the table and plots it; ``python
bench/fidelity.py`` writes the table as CSV beside the plot.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from labctl.engine.placement import Placement
from labctl.engine.readout import ReadChainConfig
from labctl.extract import FullModel, load_model
from labctl.infer import InferConfig, infer
from labctl.workload import load_extract

SWEEPS = {
    "tolerance": [0.005, 0.01, 0.02, 0.05, 0.1],
    "read_sigma": [0.001, 0.003, 0.01, 0.03],
    "adc_bits": [6, 8, 10, 12],
    "stuck_fraction": [0.0, 0.01, 0.03, 0.1],
    "drift_s": [0.0, 1e4, 1e6, 1e7],
}
"""Every value of each non-ideality the full sweep takes."""

QUICK = {name: [values[0], values[-1]] for name, values in SWEEPS.items()}
"""The two ends of each sweep."""


@dataclass(frozen=True)
class FidelityPoint:
    """Layer 0's fidelity with one non-ideality changed."""

    parameter: str
    value: float
    attention_cosine: float  # mean over tokens
    attention_cosine_min: float
    top1: float  # attention maps: same most-attended key, per query and head
    hidden_cosine: float  # the layer's output, mean over tokens
    wall_s: float


def point(base: InferConfig, name: str, value: float) -> InferConfig:
    """The base run with one non-ideality changed."""
    if name == "tolerance":
        return replace(base, tolerance=value)
    if name == "read_sigma":
        device = {**base.bench.get("device", {}), "read_sigma": value}
        return replace(base, bench={**base.bench, "device": device})
    if name == "adc_bits":
        chain = base.chain or ReadChainConfig()
        return replace(base, chain=replace(chain, adc_bits=int(value)))
    if name == "stuck_fraction":
        return replace(base, bench={**base.bench, "stuck_fraction": value})
    if name == "drift_s":
        return replace(base, drift_s=value)
    raise ValueError(f"no sweep {name!r}; the sweeps are {', '.join(SWEEPS)}")


def choose(names: list[str] | None, full: bool) -> dict[str, list[float]]:
    """The sweeps to run: every value (``full``) or the two ends, of some or all."""
    table = SWEEPS if full else QUICK
    unknown = sorted(set(names or []) - set(table))
    if unknown:
        raise ValueError(f"no sweep {unknown[0]!r}; the sweeps are {', '.join(table)}")
    return {name: table[name] for name in names} if names else dict(table)


def sweep(count: int, placement: str, sweeps: dict[str, list[float]],
          model: FullModel | None = None,
          on_point: Callable[[FidelityPoint], None] | None = None
          ) -> list[FidelityPoint]:
    """Run layer 0 once per value of each sweep.

    Parameters
    ----------
    count : int
        Sentences, the first of the committed sixteen.
    placement : str
        A :meth:`Placement.preset` name.
    sweeps : dict
        Non-ideality name to the values it takes (:data:`SWEEPS`).
    model : FullModel, optional
        The model; the cached wheel's when not given.
    on_point : callable, optional
        Called with each point as soon as it is measured.
    """
    model = model or load_model()
    sentences = load_extract().sentences[:count]
    base = InferConfig(layers=1, placement=Placement.preset(placement),
                       sentences=tuple(sentences))
    points = []
    for name, values in sweeps.items():
        for value in values:
            report = infer(point(base, name, value), model)
            layer = report.layers[0]
            measured = FidelityPoint(name, value, layer.attention_cosine_mean,
                                     layer.attention_cosine_min,
                                     layer.top1_agreement, layer.hidden_cosine_mean,
                                     report.wall_s)
            points.append(measured)
            if on_point is not None:
                on_point(measured)
    return points


def write_csv(points: list[FidelityPoint], path: Path) -> None:
    """The sweep as a CSV table, one row a point."""
    names = list(FidelityPoint.__dataclass_fields__)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for p in points:  # a float's str round-trips
            writer.writerow([getattr(p, n) for n in names])


def plot(points: list[FidelityPoint], path: Path, title: str) -> None:
    """One panel per non-ideality: attention output and layer output cosine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(p.parameter for p in points))
    fig, axes = plt.subplots(1, len(names), figsize=(max(3.2 * len(names), 5.5), 3.4),
                             squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = [p for p in points if p.parameter == name]
        x = [p.value for p in part]
        ax.plot(x, [p.attention_cosine for p in part], "o-", label="attention out")
        ax.plot(x, [p.hidden_cosine for p in part], "s--", label="layer out")
        if name in ("read_sigma", "drift_s", "tolerance") and min(x) > 0:
            ax.set_xscale("log")
        elif name == "drift_s":
            ax.set_xscale("symlog", linthresh=1e3)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cosine to float64")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def describe(point: FidelityPoint) -> str:
    """One line of the sweep's table."""
    return (f"{point.parameter:>15} {point.value:>10g}  attention cos "
            f"{point.attention_cosine:.4f} (min {point.attention_cosine_min:.4f})  "
            f"top-1 {point.top1:.3f}  hidden cos {point.hidden_cosine:.5f}")
