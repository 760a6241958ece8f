"""Robustness sweep: fidelity of the chip against its non-idealities.

Runs ``labctl infer``'s engine bench-direct on layer 0 of all-MiniLM-L6-v2
(the first sentences of the committed sixteen), changing one thing at a time
from the defaults: write-verify tolerance, read noise (the preset's
``read_sigma``), ADC bits of the read chain, the bench's stuck fraction and
the time the programmed tiles rest before use (the device's retention). For
each point it prints the attention output's and the layer output's cosine
similarity to float64 and the attention maps' top-1 agreement, writes the
table as CSV and plots it as a PNG.

    python bench/fidelity.py [--count N] [--placement P] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from labctl.engine.placement import Placement  # noqa: E402
from labctl.engine.readout import ReadChainConfig  # noqa: E402
from labctl.extract import load_model  # noqa: E402
from labctl.infer import InferConfig, infer  # noqa: E402
from labctl.workload import load_extract  # noqa: E402

SWEEPS = {
    "tolerance": [0.005, 0.01, 0.02, 0.05, 0.1],
    "read_sigma": [0.001, 0.003, 0.01, 0.03],
    "adc_bits": [6, 8, 10, 12],
    "stuck_fraction": [0.0, 0.01, 0.03, 0.1],
    "drift_s": [0.0, 1e4, 1e6, 1e7],
}
QUICK = {name: [values[0], values[-1]] for name, values in SWEEPS.items()}


def point(base: InferConfig, name: str, value: float) -> InferConfig:
    """The base run with one non-ideality changed."""
    if name == "tolerance":
        return replace(base, tolerance=value)
    if name == "read_sigma":
        return replace(base, bench={**base.bench, "device": {"read_sigma": value}})
    if name == "adc_bits":
        return replace(base, chain=ReadChainConfig(adc_bits=int(value)))
    if name == "stuck_fraction":
        return replace(base, bench={**base.bench, "stuck_fraction": value})
    if name == "drift_s":
        return replace(base, drift_s=value)
    raise ValueError(f"no sweep {name!r}")


def sweep(count: int, placement: str, sweeps: dict[str, list[float]]) -> list[dict]:
    model = load_model()
    sentences = load_extract().sentences[:count]
    base = InferConfig(layers=1, placement=Placement.preset(placement),
                       sentences=tuple(sentences))
    rows = []
    for name, values in sweeps.items():
        for value in values:
            report = infer(point(base, name, value), model)
            layer = report.layers[0]
            rows.append({"parameter": name, "value": value,
                         "attention_cosine": layer.attention_cosine_mean,
                         "attention_cosine_min": layer.attention_cosine_min,
                         "top1": layer.top1_agreement,
                         "hidden_cosine": layer.hidden_cosine_mean,
                         "wall_s": report.wall_s})
            print(f"{name:>15} {value:>10g}  attention cos "
                  f"{layer.attention_cosine_mean:.4f} (min "
                  f"{layer.attention_cosine_min:.4f})  top-1 {layer.top1_agreement:.3f}"
                  f"  hidden cos {layer.hidden_cosine_mean:.5f}", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    names = list(dict.fromkeys(r["parameter"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2))
    for ax, name in zip(axes, names, strict=True):
        part = [r for r in rows if r["parameter"] == name]
        x = [r["value"] for r in part]
        ax.plot(x, [r["attention_cosine"] for r in part], "o-", label="attention out")
        ax.plot(x, [r["hidden_cosine"] for r in part], "s--", label="layer out")
        if name in ("read_sigma", "drift_s", "tolerance") and min(x) > 0:
            ax.set_xscale("log")
        elif name == "drift_s":
            ax.set_xscale("symlog", linthresh=1e3)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cosine to float64")
    axes[0].legend(fontsize=8)
    fig.suptitle("layer 0 of all-MiniLM-L6-v2 on the simulated chip")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4, help="sentences")
    parser.add_argument("--placement", default="projections",
                        help="all, static, projections (default) or host")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true",
                        help="only the two ends of each sweep")
    args = parser.parse_args()
    rows = sweep(args.count, args.placement, QUICK if args.quick else SWEEPS)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "fidelity.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "fidelity.png")
    print(f"wrote {args.out / 'fidelity.csv'} and {args.out / 'fidelity.png'}")


if __name__ == "__main__":
    main()
