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

from collections.abc import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

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
    n_unknown = int(unknown.sum())
    index = np.full(len(net_v), -1)
    index[unknown] = np.arange(n_unknown)

    rows, cols, g = _cell_edges(arrays)
    diagonal_s = np.full(n_unknown, LEAK_S)
    rhs_a = inject_a[unknown].copy()

    # Each cell stamps onto both ends: its own conductance on an unknown
    # end's diagonal, and either a coupling to the other end (unknown) or a
    # current from it (driven).
    off_rows, off_cols, off_g = [], [], []
    for here, there in ((rows, cols), (cols, rows)):
        i, j = index[here], index[there]
        mine = i >= 0
        diagonal_s += np.bincount(i[mine], g[mine], n_unknown)
        coupled = mine & (j >= 0)
        off_rows.append(i[coupled])
        off_cols.append(j[coupled])
        off_g.append(-g[coupled])
        fed = mine & (j < 0)
        rhs_a += np.bincount(i[fed], g[fed] * net_v[there[fed]], n_unknown)

    diag = np.arange(n_unknown)
    matrix_rows = np.concatenate([diag, *off_rows])
    matrix_cols = np.concatenate([diag, *off_cols])
    matrix_s = np.concatenate([diagonal_s, *off_g])
    return _linear_solve(matrix_rows, matrix_cols, matrix_s, rhs_a, n_unknown)


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
