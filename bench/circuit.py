"""Benchmark: the array solver's analog multiply against badcrossbar.

For square arrays of 64, 128, 256 and 512 lines with line resistance (cells
uniform in 10–100 µS, each line segment r = 1e-4 / G_max = 1 Ω), every row
driven at column 0 and every column sensed at 0 V at its last row, it times
one read of one input vector and of a batch of 64 (column currents from row
voltages), and checks the currents against an exact solve: a direct sparse
LU solve of the full nodal system (``ArrayCircuit.factor``). The circuit is
the one badcrossbar solves: a segment of r between each line's source (or
sense amplifier) and its first cell, and one between neighbouring cells.

What is timed for us: ``factor`` is ``ArrayCircuit.read_operator`` (the exact
map from row voltages to column currents, found once per conductance
state); ``1 vector`` and ``64 vectors`` are each read with it, the best of a
few repeats. badcrossbar solves from scratch on each call (its outputs
only), as its users call it. The last ratio counts our factor time too.

badcrossbar (a public exact nodal solver) is compared only when it is
importable, in an environment of the benchmark's own, never the project's::

    python -m venv --system-site-packages /tmp/circuit-bench
    /tmp/circuit-bench/bin/pip install --no-deps badcrossbar sigfig pathvalidate scipy
    /tmp/circuit-bench/bin/python bench/circuit.py [--sizes 64 128 256 512]

(or ``pip install --no-deps --target DIR badcrossbar sigfig pathvalidate``
and ``PYTHONPATH=DIR python bench/circuit.py``). Its plotting part needs
cairo and is not used. Without it the benchmark prints our figures alone and
says that badcrossbar is missing.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # The development machine's two cores are shared: BLAS threads that spin
    # against other processes make small dense products slower, not faster.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from simulator.array_solver import ArrayCircuit  # noqa: E402

SIZES = (64, 128, 256, 512)
"""Rows (= columns) of each benchmarked array."""

BATCH = 64
"""Input vectors of a batch."""

G_MIN_S, G_MAX_S = 10e-6, 100e-6
"""Range of the cells' conductances, S."""

SEGMENT_OHM = 1e-4 / G_MAX_S
"""Resistance of each line segment, Ω: r * G_max = 1e-4."""

READ_V = 0.2
"""Largest input voltage, V: a read level."""

EXACT_VECTORS = 8
"""Vectors checked against the exact solve at 512 lines (all below)."""

# Published figures: badcrossbar's (one vector, 64 vectors) and CrossSim's
# iterative solver's, s.
PUBLISHED_BADCROSSBAR_S = {64: (0.07, 0.84), 128: (0.38, 2.7), 256: (1.6, 9.1)}
CROSSSIM_ONE_AT_64_S = 0.6e-3
CROSSSIM_BATCH_AT_256_S = 25.0


@dataclass(frozen=True)
class Figures:
    """One array size: times, s, and largest errors, relative to the largest current."""

    size: int
    factor_s: float
    one_s: float
    batch_s: float
    exact_factor_s: float
    error: float
    checked: int
    theirs_one_s: float | None = None
    theirs_batch_s: float | None = None
    theirs_error: float | None = None


def bench_circuit(size: int) -> ArrayCircuit:
    """The benchmarked circuit: badcrossbar's, in our terms."""
    return ArrayCircuit(
        size,
        size,
        r_row_ohm=SEGMENT_OHM,
        r_col_ohm=SEGMENT_OHM,
        source_ohm=SEGMENT_OHM,
        sense_ohm=SEGMENT_OHM,
    )


def best_time(work: Callable[[], Any], repeats: int) -> float:
    """The shortest of `repeats` runs of `work`, s."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def relative_error(actual: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(actual - exact).max() / np.abs(exact).max())


def measure(
    size: int, batch: int = BATCH, badcrossbar: ModuleType | None = None
) -> Figures:
    """Time and check one array size (badcrossbar too, when given)."""
    rng = np.random.default_rng(size)
    g_s = rng.uniform(G_MIN_S, G_MAX_S, (size, size))
    row_v = rng.uniform(0.0, READ_V, (batch, size))
    circuit = bench_circuit(size)

    start = time.perf_counter()
    operator = circuit.read_operator(g_s)
    factor_s = time.perf_counter() - start
    repeats = 20 if size <= 128 else 5
    one_s = best_time(lambda: operator.column_currents(row_v[0]), repeats)
    batch_s = best_time(lambda: operator.column_currents(row_v), repeats)
    ours_a = operator.column_currents(row_v)

    checked = batch if size < 512 else min(batch, EXACT_VECTORS)
    start = time.perf_counter()
    exact = circuit.factor(g_s)
    exact_factor_s = time.perf_counter() - start
    exact_a = exact.solve(row_v[:checked]).col_current_a
    figures = Figures(
        size, factor_s, one_s, batch_s, exact_factor_s,
        relative_error(ours_a[:checked], exact_a), checked,
    )  # fmt: skip
    if badcrossbar is None:
        return figures

    resistances = 1.0 / g_s
    start = time.perf_counter()
    badcrossbar_solve(badcrossbar, row_v[:1], resistances)
    theirs_one_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs_a = badcrossbar_solve(badcrossbar, row_v, resistances)
    theirs_batch_s = time.perf_counter() - start
    return replace(
        figures,
        theirs_one_s=theirs_one_s,
        theirs_batch_s=theirs_batch_s,
        theirs_error=relative_error(theirs_a[:checked], exact_a),
    )


def badcrossbar_solve(
    badcrossbar: ModuleType, row_v: np.ndarray, resistances: np.ndarray
) -> np.ndarray:
    """badcrossbar's output currents, ``(B, C)``, A, for row voltages ``(B, R)``."""
    solution = badcrossbar.compute(
        row_v.T, resistances, r_i=SEGMENT_OHM, node_voltages=False, all_currents=False
    )
    return np.asarray(solution.currents.output).reshape(len(row_v), -1)


def load_badcrossbar() -> ModuleType | None:
    """badcrossbar, quiet, or None when it is not installed here."""
    with warnings.catch_warnings(record=True):
        # It warns that its plotting part cannot find cairo.
        try:
            import badcrossbar
        except ImportError:
            return None
    # It logs every step at INFO on the root logger's stdout handler.
    logging.getLogger("badcrossbar").setLevel(logging.WARNING)
    return badcrossbar


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def ratio(theirs: float | None, ours: float) -> str:
    return "—" if theirs is None else f"{theirs / ours:,.0f}×"


def report(figures: list[Figures]) -> str:
    """The table of figures, then how they compare with the goals."""
    lines = [
        "| size | factor | 1 vector | 64 vectors | exact LU factor | error vs exact "
        "| badcrossbar 1 | badcrossbar 64 | its error | ratio 1 | ratio 64 "
        "| ratio 64 with factor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        theirs_error = "—" if f.theirs_error is None else f"{f.theirs_error:.1e}"
        with_factor = ratio(f.theirs_batch_s, f.factor_s + f.batch_s)
        lines.append(
            f"| {f.size}² | {duration(f.factor_s)} | {duration(f.one_s)} "
            f"| {duration(f.batch_s)} | {duration(f.exact_factor_s)} "
            f"| {f.error:.1e} ({f.checked} vectors) | {duration(f.theirs_one_s)} "
            f"| {duration(f.theirs_batch_s)} | {theirs_error} "
            f"| {ratio(f.theirs_one_s, f.one_s)} "
            f"| {ratio(f.theirs_batch_s, f.batch_s)} "
            f"| {with_factor} |"
        )
    lines.append("")
    by_size = {f.size: f for f in figures}
    if 64 in by_size:
        one_s = by_size[64].one_s
        lines.append(
            f"64², one vector: {duration(one_s)} against CrossSim's "
            f"{duration(CROSSSIM_ONE_AT_64_S)} ({CROSSSIM_ONE_AT_64_S / one_s:,.0f}×)"
        )
    if 256 in by_size:
        batch_s = by_size[256].batch_s
        total_s = batch_s + by_size[256].factor_s
        lines.append(
            f"256², 64 vectors: {duration(batch_s)} ({duration(total_s)} with the "
            f"factor) against CrossSim's {CROSSSIM_BATCH_AT_256_S:g} s "
            f"({CROSSSIM_BATCH_AT_256_S / batch_s:,.0f}×, "
            f"{CROSSSIM_BATCH_AT_256_S / total_s:,.0f}× with the factor)"
        )
    for f in figures:
        published = PUBLISHED_BADCROSSBAR_S.get(f.size)
        if published:
            lines.append(
                f"{f.size}², badcrossbar's published {published[0]:g} s and "
                f"{published[1]:g} s: {published[0] / f.one_s:,.0f}× and "
                f"{published[1] / f.batch_s:,.0f}×"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    badcrossbar = load_badcrossbar()
    print(
        f"crossbar reads: G in {G_MIN_S * 1e6:g}–{G_MAX_S * 1e6:g} µS, "
        f"r = {SEGMENT_OHM:g} Ω per segment (r·G_max = 1e-4), "
        f"inputs 0–{READ_V:g} V, batch of {BATCH}"
    )
    if badcrossbar is None:
        print("badcrossbar is missing here: our figures only (see the docstring)")
    figures = []
    for size in args.sizes:
        figures.append(measure(size, BATCH, badcrossbar))
        print(f"  {size}² done", flush=True)
    print(report(figures))


if __name__ == "__main__":
    main()
