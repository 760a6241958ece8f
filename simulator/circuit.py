"""DC solution of crossbar arrays wired into a network of nets.

A net is a set of lines tied together by closed relays, an ideal wire. Each
cell of an array joins the net of its row line to the net of its column line
through its conductance. A net is driven by a voltage source, fed by a
current source, or left floating (a current source of 0 A).

When every net that touches a cell is voltage-driven, cell voltages follow
directly and the source currents are sums over the cells. Otherwise nodal
analysis solves for the nets that are not driven; each of them has a leak of
:data:`LEAK_S` to 0 V so that an island of floating lines, cut off from every
source, stays solvable (it settles at 0 V). The leak takes at most
``LEAK_S * |V|`` from a net, far below any measurable current.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

if TYPE_CHECKING:
    from simulator.array_solver import _Layout

LEAK_S = 1e-15
"""Conductance from every net that is not driven to 0 V, S."""

DENSE_MAX_UNKNOWNS = 300
"""Largest number of unknown net voltages solved with a dense matrix."""

ArrayNets = tuple[np.ndarray, np.ndarray, np.ndarray]


def solve(
    arrays: Sequence[ArrayNets],
    n_nets: int,
    fixed_v: np.ndarray,
    inject_a: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Find every net's voltage and every voltage source's current.

    Parameters
    ----------
    arrays : sequence of (g, row_net, col_net)
        Per array: cell conductances ``g`` ``(R, C)``, S; the net index of
        every row line ``row_net`` ``(R,)`` and column line ``col_net``
        ``(C,)``, ints in ``[0, n_nets)``.
    n_nets : int
        Number of nets.
    fixed_v : numpy.ndarray
        ``(n_nets,)`` voltage of each voltage-driven net, V; NaN for a net
        that is not voltage-driven.
    inject_a : numpy.ndarray
        ``(n_nets,)`` current a current source pushes into each net that is
        not voltage-driven, A (0 for a floating net). A current pushed into
        a voltage-driven net is taken up by its voltage source.

    Returns
    -------
    net_v : numpy.ndarray
        ``(n_nets,)`` voltage of every net, V. A net that touches no cell and
        is not driven is at 0 V.
    source_i : numpy.ndarray
        ``(n_nets,)`` current each voltage source delivers into its net, A,
        positive out of the source into the net; 0 for nets that are not
        voltage-driven.

    Notes
    -----
    A current source feeding an island with no cell path to any voltage
    source sees only the leak, so its net settles at ``inject_a / LEAK_S``;
    the source's own voltage limit is the caller's to apply.
    """
    fixed_v = _per_net(fixed_v, n_nets, "fixed_v")
    inject_a = _per_net(inject_a, n_nets, "inject_a")
    driven = ~np.isnan(fixed_v)
    net_v = np.where(driven, fixed_v, 0.0)

    unknown = _touched(arrays, n_nets) & ~driven
    if unknown.any():
        net_v[unknown] = _solve_unknown(arrays, net_v, inject_a, unknown)

    outflow_a = _cell_outflow(arrays, net_v, n_nets)
    source_i = np.where(driven, outflow_a - inject_a, 0.0)
    return net_v, source_i


def cell_voltages(
    net_v: np.ndarray, row_net: np.ndarray, col_net: np.ndarray
) -> np.ndarray:
    """Voltage across every cell of an array, V.

    Parameters
    ----------
    net_v : numpy.ndarray
        ``(n_nets,)`` net voltages, V, as :func:`solve` returns them.
    row_net, col_net : numpy.ndarray
        ``(R,)`` and ``(C,)`` net index of every row and column line.

    Returns
    -------
    numpy.ndarray
        ``(R, C)`` voltage of each cell's row line minus its column line, V.
    """
    return net_v[row_net][:, None] - net_v[col_net][None, :]


def _per_net(values: np.ndarray, n_nets: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.shape != (n_nets,):
        raise ValueError(f"{name} has shape {values.shape}, expected ({n_nets},)")
    return values


def _touched(arrays: Sequence[ArrayNets], n_nets: int) -> np.ndarray:
    touched = np.zeros(n_nets, dtype=bool)
    for g, row_net, col_net in arrays:
        if g.shape != (len(row_net), len(col_net)):
            raise ValueError(
                f"cell conductances have shape {g.shape}, the lines "
                f"({len(row_net)}, {len(col_net)})"
            )
        for lines in (row_net, col_net):
            # bincount rejects negative indices; a longer count means one
            # index is too large.
            count = np.bincount(lines, minlength=n_nets)
            if len(count) > n_nets:
                raise ValueError(f"a line's net index is outside [0, {n_nets})")
            touched |= count > 0
    return touched


def _cell_outflow(
    arrays: Sequence[ArrayNets], net_v: np.ndarray, n_nets: int
) -> np.ndarray:
    """Current leaving each net through the cells, A."""
    outflow_a = np.zeros(n_nets)
    for g, row_net, col_net in arrays:
        cell_a = g * cell_voltages(net_v, row_net, col_net)
        outflow_a += np.bincount(row_net, cell_a.sum(axis=1), n_nets)
        outflow_a -= np.bincount(col_net, cell_a.sum(axis=0), n_nets)
    return outflow_a


def _solve_unknown(
    arrays: Sequence[ArrayNets],
    net_v: np.ndarray,
    inject_a: np.ndarray,
    unknown: np.ndarray,
) -> np.ndarray:
    """Nodal analysis over the nets that touch cells and are not driven.

    ``net_v`` holds the driven nets' voltages and 0 elsewhere.
    """
    rows, cols, g = _cell_edges(arrays)
    return _solve_elements(rows, cols, g, net_v, inject_a, unknown)


def _cell_edges(
    arrays: Sequence[ArrayNets],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell as (row net, column net, conductance), flattened.

    A cell whose two lines share one net carries no current and is left out.
    """
    rows, cols, g = [], [], []
    for g_cells, row_net, col_net in arrays:
        r = np.broadcast_to(row_net[:, None], g_cells.shape).ravel()
        c = np.broadcast_to(col_net[None, :], g_cells.shape).ravel()
        joined = r != c
        rows.append(r[joined])
        cols.append(c[joined])
        g.append(np.asarray(g_cells, dtype=float).ravel()[joined])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(g)


def _linear_solve(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    rhs: np.ndarray,
    n: int,
) -> np.ndarray:
    """Solve the system given as summed (row, col, value) entries."""
    if n <= DENSE_MAX_UNKNOWNS:
        matrix = np.bincount(rows * n + cols, values, n * n).reshape(n, n)
        return np.linalg.solve(matrix, rhs)
    matrix = scipy.sparse.csc_matrix((values, (rows, cols)), shape=(n, n))
    return scipy.sparse.linalg.spsolve(matrix, rhs)


def solve_lines(
    arrays: Sequence[ArrayNets],
    line_ohm: Sequence[float],
    n_nets: int,
    fixed_v: np.ndarray,
    inject_a: np.ndarray,
    rest_a: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """:func:`solve` with resistive lines on the arrays whose ``line_ohm`` > 0.

    Each line of such an array is a chain of segments of ``line_ohm``, one
    between neighbouring cells and one between its pin and its first cell;
    a row's pin is at column 0, a column's at its last row (the circuit of
    :class:`~simulator.array_solver.ArrayCircuit` with source and sense
    resistances of one segment). The pin joins the line's net. An array
    with ``line_ohm`` 0 has ideal lines, as in :func:`solve`.

    ``rest_a`` gives, per array, ``(R, C)`` currents of sources in parallel
    with the cells, from each cell's row end to its column end: with the
    cells' slopes as conductances, one Newton step of nonlinear cells.

    Returns
    -------
    net_v, source_i : numpy.ndarray
        As :func:`solve` returns them.
    cell_v : list of numpy.ndarray
        Per array, ``(R, C)`` the voltage across each cell, V.
    """
    fixed_v = _per_net(fixed_v, n_nets, "fixed_v")
    inject_a = _per_net(inject_a, n_nets, "inject_a")
    _touched(arrays, n_nets)  # checks the shapes and net indices
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    g: list[np.ndarray] = []
    ends: list[tuple[np.ndarray, np.ndarray] | None] = []
    cell_ends: list[tuple[np.ndarray, np.ndarray]] = []
    n_nodes = n_nets
    for (g_cells, row_net, col_net), ohm in zip(arrays, line_ohm, strict=True):
        rows, cols = g_cells.shape
        if not ohm:
            edges = _cell_edges([(g_cells, row_net, col_net)])
            for part, values in zip((a, b, g), edges, strict=True):
                part.append(values)
            ends.append(None)
            cell_ends.append((
                np.broadcast_to(row_net[:, None], g_cells.shape).ravel(),
                np.broadcast_to(col_net[None, :], g_cells.shape).ravel(),
            ))
            continue
        layout = _resistive_layout(rows, cols, ohm)
        # The array's own unknown nodes come after the nets; its sources are
        # the nets of its lines.
        node = np.concatenate([n_nodes + np.arange(layout.n_free), row_net, col_net])
        n_nodes += layout.n_free
        a.append(node[layout.a])
        b.append(node[layout.b])
        g.append(layout.element_conductances(np.asarray(g_cells, dtype=float)))
        ends.append((node[layout.row_at], node[layout.col_at]))
        cell_ends.append(ends[-1])
    a_all, b_all, g_all = np.concatenate(a), np.concatenate(b), np.concatenate(g)

    driven = np.zeros(n_nodes, dtype=bool)
    driven[:n_nets] = ~np.isnan(fixed_v)
    node_v = np.zeros(n_nodes)
    node_v[:n_nets] = np.where(driven[:n_nets], fixed_v, 0.0)
    feed_a = np.zeros(n_nodes)
    feed_a[:n_nets] = inject_a
    # Each cell's parallel source takes its current out of the row end.
    rest_out_a = np.zeros(n_nodes)
    if rest_a is not None:
        for (row_at, col_at), rest in zip(cell_ends, rest_a, strict=True):
            flat = np.asarray(rest, dtype=float).ravel()
            rest_out_a += np.bincount(row_at, flat, n_nodes)
            rest_out_a -= np.bincount(col_at, flat, n_nodes)
        feed_a -= rest_out_a
    touched = np.zeros(n_nodes, dtype=bool)
    touched[a_all] = touched[b_all] = True
    unknown = touched & ~driven
    if unknown.any():
        node_v[unknown] = _solve_elements(a_all, b_all, g_all, node_v, feed_a, unknown)

    element_a = g_all * (node_v[a_all] - node_v[b_all])
    outflow_a = (
        np.bincount(a_all, element_a, n_nodes)
        - np.bincount(b_all, element_a, n_nodes)
        + rest_out_a
    )
    net_v = node_v[:n_nets]
    source_i = np.where(driven[:n_nets], outflow_a[:n_nets] - inject_a, 0.0)
    cell_v = [
        cell_voltages(net_v, row_net, col_net)
        if at is None
        else (node_v[at[0]] - node_v[at[1]]).reshape(g_cells.shape)
        for (g_cells, row_net, col_net), at in zip(arrays, ends, strict=True)
    ]
    return net_v, source_i, cell_v


@functools.lru_cache(maxsize=16)
def _resistive_layout(rows: int, cols: int, line_ohm: float) -> _Layout:
    """The nodes and elements of an array whose lines have segments of `line_ohm`."""
    # Imported here: the array solver builds on this module's LEAK_S.
    from simulator.array_solver import ArrayCircuit

    return ArrayCircuit(
        rows,
        cols,
        r_row_ohm=line_ohm,
        r_col_ohm=line_ohm,
        source_ohm=line_ohm,
        sense_ohm=line_ohm,
    ).layout


def _solve_elements(
    a: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
    node_v: np.ndarray,
    feed_a: np.ndarray,
    unknown: np.ndarray,
) -> np.ndarray:
    """Nodal analysis of two-terminal elements over the `unknown` nodes.

    ``node_v`` holds the known nodes' voltages and 0 elsewhere; ``feed_a``
    the current pushed into each node. Each unknown node has the leak.
    """
    n_unknown = int(unknown.sum())
    index = np.full(len(node_v), -1)
    index[unknown] = np.arange(n_unknown)
    diagonal_s = np.full(n_unknown, LEAK_S)
    rhs_a = feed_a[unknown].copy()

    # Each element stamps onto both ends: its own conductance on an unknown
    # end's diagonal, and either a coupling to the other end (unknown) or a
    # current from it (known).
    off_rows, off_cols, off_g = [], [], []
    for here, there in ((a, b), (b, a)):
        i, j = index[here], index[there]
        mine = i >= 0
        diagonal_s += np.bincount(i[mine], g[mine], n_unknown)
        coupled = mine & (j >= 0)
        off_rows.append(i[coupled])
        off_cols.append(j[coupled])
        off_g.append(-g[coupled])
        fed = mine & (j < 0)
        rhs_a += np.bincount(i[fed], g[fed] * node_v[there[fed]], n_unknown)
    diag = np.arange(n_unknown)
    return _linear_solve(
        np.concatenate([diag, *off_rows]),
        np.concatenate([diag, *off_cols]),
        np.concatenate([diagonal_s, *off_g]),
        rhs_a,
        n_unknown,
    )
