"""Benchmark: one read of the array from its conductances, against badcrossbar.

For square arrays of 64, 128, 256 and 512 lines with line resistance (cells
uniform in 10–100 µS, each line segment r = 1e-4 / G_max = 1 Ω), every row
driven at column 0 and every column sensed at 0 V at its last row, it times
the column currents of one input vector and of a batch of 64, each solved
from the conductances: ``ArrayCircuit.column_currents``, which builds
whatever it needs on each call (conjugate gradients on the lines for a few
vectors, Schur complements of tiles for more), as badcrossbar solves from
scratch on each call (its outputs only). Both are timed in the same run,
taking turns, each the best of the same few repeats (quick ones after an
untimed run, as in a loop of reads), and both answers are checked against
an exact solve: a direct sparse LU solve of the full nodal system
(``ArrayCircuit.factor``). The circuit is the one badcrossbar solves: a
segment of r between each line's source (or sense amplifier) and its first
cell, and one between neighbouring cells.

A second table gives the read operator (``ArrayCircuit.read_operator``, the
exact map from row voltages to column currents): the time to build it from
the conductances, then each read of 1 or 64 vectors with it, for reads of
one conductance state many times over. Last come the goals: each read from
the conductances :data:`GOAL_RATIO` times faster than badcrossbar's at
every size, and the published figures of CrossSim's iterative solver
(0.6 ms for one vector at 64 lines, 25 s for 64 vectors at 256).

badcrossbar (a public exact nodal solver) is compared only when it is
importable, in an environment of the benchmark's own, never the project's::

    python -m venv --system-site-packages /tmp/circuit-bench
    /tmp/circuit-bench/bin/pip install --no-deps badcrossbar sigfig pathvalidate scipy
    /tmp/circuit-bench/bin/python bench/circuit.py [--sizes 64 128 256 512]

(or ``pip install --no-deps --target DIR badcrossbar sigfig pathvalidate``
and ``PYTHONPATH=DIR python bench/circuit.py``). Its plotting part needs
cairo and is not used. Without it the benchmark prints our figures alone and
says that badcrossbar is missing. At 512 lines each badcrossbar repeat takes
about half a minute, the exact LU solve about as long.
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

GOAL_RATIO = 10.0
"""How many times faster than badcrossbar each of our reads is to be."""

WARM_BELOW_S = 0.1
"""A timed work quicker than this, s, is run once untimed before each run."""

# Published figures: badcrossbar's (one vector, 64 vectors) and CrossSim's
# iterative solver's, s.
PUBLISHED_BADCROSSBAR_S = {64: (0.07, 0.84), 128: (0.38, 2.7), 256: (1.6, 9.1)}
CROSSSIM_ONE_AT_64_S = 0.6e-3
CROSSSIM_BATCH_AT_256_S = 25.0


@dataclass(frozen=True)
class Figures:
    """One array size: times, s, and largest errors against the exact solve.

    Errors are relative to the largest exact current, over the ``checked``
    vectors. ``one_s`` and ``batch_s`` are our reads from the conductances;
    ``operator_s`` builds the read operator, ``read_one_s`` and
    ``read_batch_s`` read with it.
    """

    size: int
    one_s: float
    batch_s: float
    one_error: float
    batch_error: float
    checked: int
    exact_s: float
    operator_s: float
    read_one_s: float
    read_batch_s: float
    operator_error: float
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


def best_times(works: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Any]:
    """Each work's shortest time of `repeats` runs, s, and what it returned.

    The works take turns, so that a spell of load on the shared machine
    falls on all of them alike. A work that took less than
    :data:`WARM_BELOW_S` runs once more untimed before it is timed again, so
    that its own data are in the caches, as in a loop of reads, not the
    previous work's.
    """
    times: dict[str, list[float]] = {name: [] for name in works}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, work in works.items():
            if times[name] and times[name][-1] < WARM_BELOW_S:
                work()
            start = time.perf_counter()
            results[name] = work()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), results[name]) for name in works}


def relative_error(actual: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(actual - exact).max() / np.abs(exact).max())


def repeats_for(size: int) -> int:
    """Repeats of each timed read: fewer as badcrossbar's take longer."""
    return 20 if size <= 64 else 10 if size <= 128 else 3 if size <= 256 else 2


def measure(
    size: int, batch: int = BATCH, badcrossbar: ModuleType | None = None
) -> Figures:
    """Time and check one array size (badcrossbar too, when given)."""
    rng = np.random.default_rng(size)
    g_s = rng.uniform(G_MIN_S, G_MAX_S, (size, size))
    row_v = rng.uniform(0.0, READ_V, (batch, size))
    circuit = bench_circuit(size)

    works: dict[str, Callable[[], Any]] = {
        "one": lambda: circuit.column_currents(g_s, row_v[0]),
        "batch": lambda: circuit.column_currents(g_s, row_v),
    }
    if badcrossbar is not None:
        resistances = 1.0 / g_s
        works["theirs one"] = lambda: badcrossbar_solve(
            badcrossbar, row_v[:1], resistances
        )
        works["theirs batch"] = lambda: badcrossbar_solve(
            badcrossbar, row_v, resistances
        )
    timed = best_times(works, repeats_for(size))

    start = time.perf_counter()
    operator = circuit.read_operator(g_s)
    operator_s = time.perf_counter() - start
    reads = best_times(
        {
            "one": lambda: operator.column_currents(row_v[0]),
            "batch": lambda: operator.column_currents(row_v),
        },
        20,
    )

    checked = batch if size < 512 else min(batch, EXACT_VECTORS)
    start = time.perf_counter()
    exact_a = circuit.factor(g_s).solve(row_v[:checked]).col_current_a
    exact_s = time.perf_counter() - start
    (one_s, one_a), (batch_s, batch_a) = timed["one"], timed["batch"]
    figures = Figures(
        size, one_s, batch_s,
        relative_error(one_a, exact_a[0]),
        relative_error(batch_a[:checked], exact_a),
        checked, exact_s, operator_s, reads["one"][0], reads["batch"][0],
        relative_error(reads["batch"][1][:checked], exact_a),
    )  # fmt: skip
    if badcrossbar is None:
        return figures
    theirs_a = timed["theirs batch"][1]
    return replace(
        figures,
        theirs_one_s=timed["theirs one"][0],
        theirs_batch_s=timed["theirs batch"][0],
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
    """The tables of figures, then how they compare with the goals."""
    lines = [
        "Reads from the conductances (ours: build and solve on each call):",
        "",
        "| size | ours, 1 vector | badcrossbar, 1 | ratio | ours, 64 vectors "
        "| badcrossbar, 64 | ratio | our error 1 / 64 | its error | exact LU solve |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        theirs_error = "—" if f.theirs_error is None else f"{f.theirs_error:.1e}"
        lines.append(
            f"| {f.size}² | {duration(f.one_s)} | {duration(f.theirs_one_s)} "
            f"| {ratio(f.theirs_one_s, f.one_s)} | {duration(f.batch_s)} "
            f"| {duration(f.theirs_batch_s)} | {ratio(f.theirs_batch_s, f.batch_s)} "
            f"| {f.one_error:.1e} / {f.batch_error:.1e} ({f.checked} vectors) "
            f"| {theirs_error} | {duration(f.exact_s)} |"
        )
    lines += [
        "",
        "The read operator (built once per conductance state, then each read):",
        "",
        "| size | build | 1 read | 64 reads | error |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in figures:
        lines.append(
            f"| {f.size}² | {duration(f.operator_s)} | {duration(f.read_one_s)} "
            f"| {duration(f.read_batch_s)} | {f.operator_error:.1e} |"
        )
    lines.append("")
    lines += goals(figures)
    return "\n".join(lines)


def goals(figures: list[Figures]) -> list[str]:
    """How our reads from the conductances compare with the goals."""
    lines = []
    compared = [f for f in figures if f.theirs_one_s is not None]
    if compared:
        worst = min(
            (min(f.theirs_one_s / f.one_s, f.theirs_batch_s / f.batch_s), f.size)
            for f in compared
            if f.theirs_one_s is not None and f.theirs_batch_s is not None
        )
        verdict = "met" if worst[0] >= GOAL_RATIO else "NOT met"
        lines.append(
            f"{GOAL_RATIO:g}× faster than badcrossbar at every size: {verdict} "
            f"(lowest ratio {worst[0]:,.0f}× at {worst[1]}²)"
        )
    worst_error = max(max(f.one_error, f.batch_error) for f in figures)
    lines.append(f"largest error against the exact solve: {worst_error:.1e}")
    by_size = {f.size: f for f in figures}
    if 64 in by_size:
        one_s = by_size[64].one_s
        lines.append(
            f"64², one vector: {duration(one_s)} against CrossSim's "
            f"{duration(CROSSSIM_ONE_AT_64_S)} ({CROSSSIM_ONE_AT_64_S / one_s:,.1f}×)"
        )
    if 256 in by_size:
        batch_s = by_size[256].batch_s
        lines.append(
            f"256², 64 vectors: {duration(batch_s)} against CrossSim's "
            f"{CROSSSIM_BATCH_AT_256_S:g} s ({CROSSSIM_BATCH_AT_256_S / batch_s:,.0f}×)"
        )
    for f in figures:
        published = PUBLISHED_BADCROSSBAR_S.get(f.size)
        if published:
            lines.append(
                f"{f.size}², badcrossbar's published {published[0]:g} s and "
                f"{published[1]:g} s: {published[0] / f.one_s:,.0f}× and "
                f"{published[1] / f.batch_s:,.0f}×"
            )
    return lines


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
