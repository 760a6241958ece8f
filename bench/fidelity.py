"""Robustness sweep: fidelity of the chip against its non-idealities.

Runs ``labctl infer``'s engine bench-direct on layer 0 of all-MiniLM-L6-v2
(the first sentences of the committed sixteen), changing one thing at a time
from the defaults: write-verify tolerance, read noise (the preset's
``read_sigma``), ADC bits of the read chain, the bench's stuck fraction and
the time the programmed tiles rest before use (the device's retention). For
each point it prints the attention output's and the layer output's cosine
similarity to float64 and the attention maps' top-1 agreement, writes the
table as CSV and plots it as a PNG. The sweep itself is
:mod:`labctl.fidelity`, which ``labctl bench fidelity`` runs too.

    python bench/fidelity.py [--count N] [--placement P] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.fidelity import QUICK, SWEEPS, describe, plot, sweep, write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4, help="sentences")
    parser.add_argument("--placement", default="projections",
                        help="all, static, projections (default), dynamic or host")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true",
                        help="only the two ends of each sweep")
    args = parser.parse_args()
    points = sweep(args.count, args.placement, QUICK if args.quick else SWEEPS,
                   on_point=lambda p: print(describe(p), flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(points, args.out / "fidelity.csv")
    plot(points, args.out / "fidelity.png",
         "layer 0 of all-MiniLM-L6-v2 on the simulated chip")
    print(f"wrote {args.out / 'fidelity.csv'} and {args.out / 'fidelity.png'}")


if __name__ == "__main__":
    main()
