"""DC nodal analysis of one crossbar array with resistive lines.

An array of ``rows x cols`` cells sits between row lines and column lines.
Each line is a chain of segments, one between each pair of neighbouring
cells (``r_row_ohm`` on rows, ``r_col_ohm`` on columns); with a segment of
0 Ω a line is an ideal wire, one node. A line meets the outside at its ends:
the start of a row is at column 0, its end at the last column; the start of
a column is at row 0, its end at the last row. Each connected end reaches
the line's source through the source resistance (rows) or the sense
resistance (columns); a line with no connected end floats. Every source
holds a voltage: a drive level, 0 V for a grounded line or a sense
amplifier's virtual ground.

The unknowns are the voltages of the line nodes that no source holds. Each
two-terminal element (segment, end resistance, cell) stamps its conductance
on the nodal matrix; the sources' voltages go to the right-hand side. Every
unknown node has a leak of :data:`~simulator.circuit.LEAK_S` to 0 V, so that
a floating line with no path to a source stays solvable.

* :meth:`ArrayCircuit.factor` factors the matrix of one conductance state
  once (a sparse LU, :func:`scipy.sparse.linalg.splu`) and solves any batch
  of source voltages with it. Two exact fast paths skip the sparse system:
  with ideal wires and ideal ends (every resistance 0) and every line driven,
  the currents are ``V @ G`` directly; with floating lines, the unknowns are
  only the floating lines.
* :meth:`ArrayCircuit.solve_nonlinear` solves cells whose current is a
  nonlinear function of their voltage by Newton iteration.
* :meth:`ArrayCircuit.column_currents` is one read from scratch: the column
  currents of one conductance state for a vector or a batch, without
  building more than that read needs. With every segment and end resistive,
  a few vectors go by conjugate gradients on the column lines with the row
  lines eliminated exactly (:func:`_line_iteration`, to a residual of
  :data:`CG_RTOL`), a batch by Schur complements of tiles, nested dissection
  of the array (:class:`_TiledArray`, exact).
* :meth:`ArrayCircuit.read_operator` finds the exact linear map from the
  sources' voltages to the column currents, so that each read of the same
  conductances (an analog multiply) is a matrix product; for a resistive
  circuit by the tiles, for a unit voltage on each line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from simulator.circuit import LEAK_S

FLOATING = 0
"""A line with no end connected to its source."""

START = 1
"""A line driven (or sensed) at its start: column 0 of a row, row 0 of a column."""

END = 2
"""A line driven (or sensed) at its end: a row's last column, a column's last row."""

BOTH = START | END
"""A line driven from both ends by one source."""

NEWTON_ITERATIONS = 50
"""Newton iterations at most before :class:`ConvergenceError`."""

NEWTON_RTOL = 1e-10
"""Newton stops when no node moves by more than this part of the drive span."""

FEW_VECTORS = 8
"""Reads of fewer vectors than this go by conjugate gradients, more by tiles."""

CG_RTOL = 1e-12
"""Conjugate gradients stop when each residual is this part of its first."""

CG_ITERATIONS = 200
"""Conjugate gradient steps at most before the tiled solve takes over."""

SKELETON_LINES = 128
"""Tiles spanning at least this many rows plus columns are joined one by one."""

NARROW_INTERFACE = 4
"""Tiles joined across at most this many nodes are stacked last, entry by entry."""


class ConvergenceError(RuntimeError):
    """Newton iteration of a nonlinear array that did not converge."""


class CellCurrent(Protocol):
    """Current of every cell as a function of its voltage (row minus column)."""

    def current_a(self, v: np.ndarray) -> np.ndarray:
        """Current from row to column of each cell at voltages ``v`` (..., R, C), A."""
        ...

    def conductance_s(self, v: np.ndarray) -> np.ndarray:
        """Derivative of :meth:`current_a` at ``v`` (..., R, C), S."""
        ...


@dataclass(frozen=True)
class SinhCells:
    """Cells with ``I = G * V0 * sinh(V / V0)``: ohmic at low voltage, steeper above.

    ``g_s`` (R, C) is each cell's low-voltage conductance, S; ``v0_v`` the
    voltage scale of the nonlinearity, V.
    """

    g_s: np.ndarray
    v0_v: float

    def current_a(self, v: np.ndarray) -> np.ndarray:
        return self.g_s * self.v0_v * np.sinh(v / self.v0_v)

    def conductance_s(self, v: np.ndarray) -> np.ndarray:
        return self.g_s * np.cosh(v / self.v0_v)


@dataclass(frozen=True)
class ArraySolution:
    """Voltages and currents of an array for each vector of a batch.

    A solution of one vector has no batch axis.

    Attributes
    ----------
    row_line_v, col_line_v : numpy.ndarray
        ``(..., R, C)`` voltage of the row line and of the column line at
        each cell, V.
    row_current_a : numpy.ndarray
        ``(..., R)`` current each row's source drives into the array, A.
    col_current_a : numpy.ndarray
        ``(..., C)`` current leaving the array at each column's ends into its
        source or sense amplifier, A. With ideal lines and every column at
        0 V it is ``row_v @ G``.
    """

    row_line_v: np.ndarray
    col_line_v: np.ndarray
    row_current_a: np.ndarray
    col_current_a: np.ndarray

    @property
    def cell_v(self) -> np.ndarray:
        """``(..., R, C)`` voltage across each cell, row minus column, V."""
        return self.row_line_v - self.col_line_v


@dataclass(frozen=True)
class ReadOperator:
    """The exact linear map from line voltages to column currents.

    ``col_current_a = row_v @ from_rows_s + col_v @ from_cols_s``, for one
    vector or a batch; the same column currents as :class:`ArraySolution`.

    Attributes
    ----------
    from_rows_s : numpy.ndarray
        ``(R, C)`` column current per volt on each row, S.
    from_cols_s : numpy.ndarray
        ``(C, C)`` column current per volt on each column's source, S.
    """

    from_rows_s: np.ndarray
    from_cols_s: np.ndarray

    def column_currents(
        self, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """Column currents, A, for row voltages ``(R,)`` or ``(B, R)``, V."""
        currents_a = np.asarray(row_v, dtype=float) @ self.from_rows_s
        col_v = np.asarray(col_v, dtype=float)
        if col_v.any():
            currents_a = (
                currents_a + np.broadcast_to(col_v, currents_a.shape) @ self.from_cols_s
            )
        return currents_a


class ArrayCircuit:
    """The circuit of one crossbar array: its lines, segments and ends.

    Parameters
    ----------
    rows, cols : int
        Lines of the array.
    r_row_ohm, r_col_ohm : float
        Resistance of each segment of a row (column) line between
        neighbouring cells, Ω; 0 for an ideal wire.
    source_ohm : float
        Resistance between each connected end of a row and the row's
        source, Ω.
    sense_ohm : float
        Resistance between each connected end of a column and its source or
        sense amplifier, Ω.
    row_ends, col_ends : int or array of int
        Per line (or one for all), which ends are connected: :data:`START`,
        :data:`END`, :data:`BOTH` or :data:`FLOATING`. By default rows are
        driven at column 0 and columns sensed at the last row.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        *,
        r_row_ohm: float = 0.0,
        r_col_ohm: float = 0.0,
        source_ohm: float = 0.0,
        sense_ohm: float = 0.0,
        row_ends: int | np.ndarray = START,
        col_ends: int | np.ndarray = END,
    ) -> None:
        if rows < 1 or cols < 1:
            raise ValueError(
                f"an array needs at least one row and column, not {rows} x {cols}"
            )
        for name, ohm in (
            ("r_row_ohm", r_row_ohm),
            ("r_col_ohm", r_col_ohm),
            ("source_ohm", source_ohm),
            ("sense_ohm", sense_ohm),
        ):
            if not (np.isfinite(ohm) and ohm >= 0):
                raise ValueError(f"{name} = {ohm!r}: must be a finite resistance >= 0")
        self.rows, self.cols = rows, cols
        self.r_row_ohm, self.r_col_ohm = float(r_row_ohm), float(r_col_ohm)
        self.source_ohm, self.sense_ohm = float(source_ohm), float(sense_ohm)
        self.row_ends = _ends(row_ends, rows, "row_ends")
        self.col_ends = _ends(col_ends, cols, "col_ends")
        self._layout: _Layout | None = None

    @property
    def ideal(self) -> bool:
        """Whether every line is an ideal wire reaching its source ideally."""
        return not (
            self.r_row_ohm or self.r_col_ohm or self.source_ohm or self.sense_ohm
        )

    @property
    def resistive(self) -> bool:
        """Whether every segment and every end has resistance (the fast reads' case)."""
        return bool(
            self.r_row_ohm and self.r_col_ohm and self.source_ohm and self.sense_ohm
        )

    @functools.cached_property
    def end_conductances(self) -> _EndConductances:
        """Conductance from each line end to its source (resistive ends), S."""
        return _EndConductances.of(self)

    @property
    def layout(self) -> _Layout:
        """The nodes and elements of the circuit (made on first use)."""
        if self._layout is None:
            self._layout = _Layout(self)
        return self._layout

    # Linear cells.

    def factor(self, g_s: np.ndarray) -> FactoredArray:
        """Prepare the solution of one conductance state ``(R, C)``, S."""
        g_s = self._conductances(g_s)
        if self.ideal and self._driven():
            return _DirectArray(self, g_s)
        return _SparseArray(self, g_s)

    def solve(
        self, g_s: np.ndarray, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> ArraySolution:
        """Solve one conductance state for one vector ``(R,)`` or a batch ``(B, R)``."""
        return self.factor(g_s).solve(row_v, col_v)

    def column_currents(
        self, g_s: np.ndarray, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """Column currents of ``g_s`` for one vector ``(R,)`` or a batch ``(B, R)``, A.

        One read from scratch, the currents of :meth:`solve`; nothing is
        kept between calls. A resistive circuit (:attr:`resistive`) with
        every line driven reads fewer than :data:`FEW_VECTORS` vectors by
        conjugate gradients on the lines (:func:`_line_iteration`, to a
        residual of :data:`CG_RTOL`); a larger batch, a floating line or an
        iteration that stalls goes by Schur complements of tiles
        (:class:`_TiledArray`, exact). Other circuits are solved by
        :meth:`solve`.
        """
        g_s = self._conductances(g_s)
        if not self.resistive:
            return self.solve(g_s, row_v, col_v).col_current_a
        fixed_v, squeeze = self._fixed_voltages(row_v, col_v)
        rows_v, cols_v = fixed_v[: self.rows].T, fixed_v[self.rows :].T
        currents_a = None
        if len(rows_v) < FEW_VECTORS and self._driven():
            currents_a = _line_iteration(self, g_s, rows_v, cols_v)
        if currents_a is None:
            currents_a = _TiledArray(self, g_s).currents(rows_v, cols_v)[1]
        return currents_a[0] if squeeze else currents_a

    def read_operator(self, g_s: np.ndarray) -> ReadOperator:
        """The exact map from line voltages to column currents of ``g_s``, S.

        A resistive circuit's is solved by tiles (:class:`_TiledArray`) for
        a unit voltage on each line; with ideal rows and resistive columns
        sensed at their last row only, it is found by one sweep over the
        rows (:func:`_swept_operator`); otherwise by solving a unit voltage
        on each line.
        """
        g_s = self._conductances(g_s)
        if self._sweepable() and not self.resistive:
            return _swept_operator(self, g_s)
        units = np.eye(self.rows + self.cols)
        rows_v, cols_v = units[:, : self.rows], units[:, self.rows :]
        if self.resistive:
            currents_a = _TiledArray(self, g_s).currents(rows_v, cols_v)[1]
        else:
            currents_a = self.factor(g_s).solve(rows_v, cols_v).col_current_a
        return ReadOperator(currents_a[: self.rows], currents_a[self.rows :])

    # Nonlinear cells.

    def solve_nonlinear(
        self,
        cells: CellCurrent,
        row_v: np.ndarray,
        col_v: float | np.ndarray = 0.0,
        *,
        max_iterations: int = NEWTON_ITERATIONS,
        rtol: float = NEWTON_RTOL,
    ) -> ArraySolution:
        """Solve nonlinear cells by Newton iteration, vector by vector.

        Each vector starts from the linear solution at the cells'
        conductance at 0 V; each Newton step is halved until the current
        residual falls. It has converged when no node moves by more than
        ``rtol`` times the span of the sources' voltages (or 1 V, when
        larger).

        Raises
        ------
        ConvergenceError
            After ``max_iterations`` steps without converging, naming the
            vector, the last step and the largest current residual.
        """
        layout = self.layout
        fixed_v, squeeze = self._fixed_voltages(row_v, col_v)
        nodes_v = np.empty((layout.n_nodes, fixed_v.shape[1]))
        nodes_v[layout.n_free :] = fixed_v
        for k in range(fixed_v.shape[1]):
            if layout.n_free:
                nodes_v[: layout.n_free, k] = _newton(
                    layout, cells, fixed_v[:, k], k, max_iterations, rtol
                )
        cell_v = (layout.cell_incidence @ nodes_v).T.reshape(-1, self.rows, self.cols)
        cell_a = cells.current_a(cell_v).reshape(len(cell_v), -1).T
        return layout.solution(
            nodes_v, layout.element_currents(nodes_v, cell_a), squeeze
        )

    # Helpers.

    def _conductances(self, g_s: np.ndarray) -> np.ndarray:
        g_s = np.asarray(g_s, dtype=float)
        if g_s.shape != (self.rows, self.cols):
            raise ValueError(
                f"cell conductances have shape {g_s.shape}, the array "
                f"({self.rows}, {self.cols})"
            )
        return g_s

    def _fixed_voltages(
        self, row_v: np.ndarray, col_v: float | np.ndarray
    ) -> tuple[np.ndarray, bool]:
        """Every source's voltage, ``(R + C, B)``, and whether one vector was given."""
        row_v = np.asarray(row_v, dtype=float)
        col_v = np.asarray(col_v, dtype=float)
        squeeze = row_v.ndim == 1 and col_v.ndim <= 1
        batch = max(
            len(row_v) if row_v.ndim == 2 else 1, len(col_v) if col_v.ndim == 2 else 1
        )
        rows_v = np.broadcast_to(row_v, (batch, self.rows))
        cols_v = np.broadcast_to(col_v, (batch, self.cols))
        return np.concatenate([rows_v, cols_v], axis=1).T, squeeze

    def _driven(self) -> bool:
        """Whether every line reaches its source (no floating line)."""
        return bool(
            (self.row_ends != FLOATING).all() and (self.col_ends != FLOATING).all()
        )

    def _sweepable(self) -> bool:
        """Whether :func:`_swept_operator` applies to this circuit."""
        return (
            self.r_col_ohm > 0
            and self.sense_ohm > 0
            and not (self.col_ends & START).any()
            and (self.r_row_ohm == 0 or self.source_ohm > 0)
        )


class FactoredArray(Protocol):
    """One conductance state of an array, ready to solve batches."""

    def solve(
        self, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> ArraySolution:
        """Solve for row voltages ``(R,)`` or ``(B, R)`` and column voltages, V."""
        ...


class _DirectArray:
    """Ideal wires, ideal ends, every line driven: nothing to solve."""

    def __init__(self, circuit: ArrayCircuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        self.g_s = g_s
        self.row_sum_s = g_s.sum(axis=1)
        self.col_sum_s = g_s.sum(axis=0)

    def solve(
        self, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> ArraySolution:
        fixed_v, squeeze = self.circuit._fixed_voltages(row_v, col_v)
        rows_v, cols_v = fixed_v[: self.circuit.rows].T, fixed_v[self.circuit.rows :].T
        row_line_v = np.broadcast_to(rows_v[:, :, None], (len(rows_v), *self.g_s.shape))
        col_line_v = np.broadcast_to(cols_v[:, None, :], row_line_v.shape)
        row_a = rows_v * self.row_sum_s - cols_v @ self.g_s.T
        col_a = rows_v @ self.g_s - cols_v * self.col_sum_s
        if squeeze:
            return ArraySolution(row_line_v[0], col_line_v[0], row_a[0], col_a[0])
        return ArraySolution(row_line_v, col_line_v, row_a, col_a)


class _SparseArray:
    """The nodal system of one conductance state, factored once."""

    def __init__(self, circuit: ArrayCircuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        self.layout = circuit.layout
        self.g_s = self.layout.element_conductances(g_s)
        self.lu = self.layout.factor(self.g_s) if self.layout.n_free else None

    def solve(
        self, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> ArraySolution:
        layout = self.layout
        fixed_v, squeeze = self.circuit._fixed_voltages(row_v, col_v)
        nodes_v = np.empty((layout.n_nodes, fixed_v.shape[1]))
        nodes_v[layout.n_free :] = fixed_v
        if self.lu is not None:
            feed_a = layout.fixed_feed(self.g_s, fixed_v)
            nodes_v[: layout.n_free] = self.lu.solve(np.asfortranarray(feed_a))
        element_a = self.g_s[:, None] * (layout.incidence @ nodes_v)
        return layout.solution(nodes_v, element_a, squeeze)


class _Layout:
    """Nodes and two-terminal elements of an array circuit.

    Nodes are numbered with the unknown ones first (``n_free``), then one
    per line source (rows, then columns). A line end that reaches its source
    through 0 Ω is the source's node. Elements are the segments, the end
    resistances, then the cells in row-major order.
    """

    def __init__(self, circuit: ArrayCircuit) -> None:
        rows, cols = circuit.rows, circuit.cols
        n_cells = rows * cols
        cells = np.arange(n_cells).reshape(rows, cols)
        row_node = (
            cells
            if circuit.r_row_ohm
            else np.repeat(np.arange(rows), cols).reshape(rows, cols)
        )
        n_row_nodes = n_cells if circuit.r_row_ohm else rows
        col_node = n_row_nodes + (
            cells if circuit.r_col_ohm else np.tile(np.arange(cols), (rows, 1))
        )
        n_line_nodes = n_row_nodes + (n_cells if circuit.r_col_ohm else cols)
        source = n_line_nodes + np.arange(rows + cols)
        label = np.arange(n_line_nodes + rows + cols)

        a, b, g = [], [], []
        for ohm, left, right in (
            (circuit.r_row_ohm, row_node[:, :-1], row_node[:, 1:]),
            (circuit.r_col_ohm, col_node[:-1, :], col_node[1:, :]),
        ):
            if ohm:
                a.append(left.ravel())
                b.append(right.ravel())
                g.append(np.full(left.size, 1.0 / ohm))
        for ohm, ends, first, last, sources in (
            (
                circuit.source_ohm,
                circuit.row_ends,
                row_node[:, 0],
                row_node[:, -1],
                source[:rows],
            ),
            (
                circuit.sense_ohm,
                circuit.col_ends,
                col_node[0, :],
                col_node[-1, :],
                source[rows:],
            ),
        ):
            for bit, nodes in ((START, first), (END, last)):
                on = (ends & bit).astype(bool)
                if ohm:
                    a.append(nodes[on])
                    b.append(sources[on])
                    g.append(np.full(int(on.sum()), 1.0 / ohm))
                else:
                    label[nodes[on]] = sources[on]
        self.n_linear = sum(len(x) for x in g)
        self.linear_g_s = np.concatenate([*g, np.empty(0)])
        a.append(row_node.ravel())
        b.append(col_node.ravel())
        a_node = label[np.concatenate(a)]
        b_node = label[np.concatenate(b)]

        # Number the unknown nodes (line nodes still in use) first.
        in_use = np.zeros(len(label), dtype=bool)
        in_use[a_node] = in_use[b_node] = True
        free = np.flatnonzero(in_use[:n_line_nodes])
        self.n_free = len(free)
        self.n_nodes = self.n_free + rows + cols
        number = np.full(len(label), -1)
        number[free] = np.arange(self.n_free)
        number[source] = self.n_free + np.arange(rows + cols)
        self.a, self.b = number[a_node], number[b_node]
        self.row_at = number[label[row_node.ravel()]]
        self.col_at = number[label[col_node.ravel()]]

        n_elements = len(self.a)
        ones = np.ones(n_elements)
        self.incidence = scipy.sparse.csr_matrix(
            (
                np.concatenate([ones, -ones]),
                (np.tile(np.arange(n_elements), 2), np.concatenate([self.a, self.b])),
            ),
            shape=(n_elements, self.n_nodes),
        )
        self.cell_incidence = self.incidence[self.n_linear :]
        self.transposed = self.incidence.T.tocsr()
        self.shape = (rows, cols)
        self._free_pairs = (self.a < self.n_free) & (self.b < self.n_free)

    def element_conductances(self, g_s: np.ndarray) -> np.ndarray:
        """Every element's conductance, the cells' from ``g_s`` ``(R, C)``, S."""
        return np.concatenate([self.linear_g_s, g_s.ravel()])

    def matrix(self, element_g_s: np.ndarray) -> scipy.sparse.csc_matrix:
        """The nodal matrix over the unknown nodes, with their leaks, S."""
        n, a, b, both = self.n_free, self.a, self.b, self._free_pairs
        on_a, on_b = a < n, b < n
        rows = np.concatenate([a[both], b[both], a[on_a], b[on_b], np.arange(n)])
        cols = np.concatenate([b[both], a[both], a[on_a], b[on_b], np.arange(n)])
        values = np.concatenate([
            -element_g_s[both], -element_g_s[both],
            element_g_s[on_a], element_g_s[on_b], np.full(n, LEAK_S),
        ])  # fmt: skip
        return scipy.sparse.csc_matrix((values, (rows, cols)), shape=(n, n))

    def factor(self, element_g_s: np.ndarray) -> scipy.sparse.linalg.SuperLU:
        """Sparse LU of the nodal matrix.

        The matrix is symmetric and diagonally dominant, so the diagonal is
        taken as pivot and the ordering is chosen on its symmetric pattern.
        """
        return scipy.sparse.linalg.splu(
            self.matrix(element_g_s),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )

    def fixed_feed(self, element_g_s: np.ndarray, fixed_v: np.ndarray) -> np.ndarray:
        """Current the sources push into each unknown node at 0 V there, A."""
        nodes_v = np.zeros((self.n_nodes, fixed_v.shape[1]))
        nodes_v[self.n_free :] = fixed_v
        element_a = element_g_s[:, None] * (self.incidence @ nodes_v)
        return -(self.transposed @ element_a)[: self.n_free]

    def element_currents(self, nodes_v: np.ndarray, cell_a: np.ndarray) -> np.ndarray:
        """Current through every element, linear ones then the cells', A."""
        linear_v = self.incidence[: self.n_linear] @ nodes_v
        return np.concatenate([self.linear_g_s[:, None] * linear_v, cell_a])

    def outflow(self, element_a: np.ndarray) -> np.ndarray:
        """Current leaving each node through the elements, A."""
        return self.transposed @ element_a

    def solution(
        self, nodes_v: np.ndarray, element_a: np.ndarray, squeeze: bool
    ) -> ArraySolution:
        """Line voltages and source currents from every node's voltage."""
        rows, cols = self.shape
        source_a = self.outflow(element_a)[self.n_free :]
        batch = nodes_v.shape[1]
        row_line_v = nodes_v[self.row_at].T.reshape(batch, rows, cols)
        col_line_v = nodes_v[self.col_at].T.reshape(batch, rows, cols)
        row_a, col_a = source_a[:rows].T, -source_a[rows:].T
        if squeeze:
            return ArraySolution(row_line_v[0], col_line_v[0], row_a[0], col_a[0])
        return ArraySolution(row_line_v, col_line_v, row_a, col_a)


def _ends(ends: int | np.ndarray, count: int, name: str) -> np.ndarray:
    ends = np.broadcast_to(np.asarray(ends), (count,)).astype(np.intp)
    if ((ends < FLOATING) | (ends > BOTH)).any():
        raise ValueError(f"{name}: each line's ends are FLOATING, START, END or BOTH")
    return ends


def _newton(
    layout: _Layout,
    cells: CellCurrent,
    fixed_v: np.ndarray,
    vector: int,
    max_iterations: int,
    rtol: float,
) -> np.ndarray:
    """The unknown node voltages of one vector, V."""
    n = layout.n_free
    nodes_v = np.concatenate([np.zeros(n), fixed_v])
    rows, cols = layout.shape

    def cell_voltages(v: np.ndarray) -> np.ndarray:
        return (layout.cell_incidence @ v).reshape(rows, cols)

    def residual(v: np.ndarray) -> np.ndarray:
        cell_a = cells.current_a(cell_voltages(v)).reshape(-1, 1)
        element_a = layout.element_currents(v[:, None], cell_a)
        return layout.outflow(element_a)[:n, 0] + LEAK_S * v[:n]

    def step(v: np.ndarray) -> np.ndarray:
        jacobian = layout.element_conductances(cells.conductance_s(cell_voltages(v)))
        return layout.factor(jacobian).solve(-residual(v))

    linear_s = layout.element_conductances(cells.conductance_s(np.zeros((rows, cols))))
    feed_a = layout.fixed_feed(linear_s, fixed_v[:, None])[:, 0]
    nodes_v[:n] = layout.factor(linear_s).solve(feed_a)
    tolerance_v = rtol * max(float(np.ptp(np.append(fixed_v, 0.0))), 1.0)
    for _ in range(max_iterations):
        delta_v = step(nodes_v)
        moved_v = float(np.abs(delta_v).max())
        if moved_v <= tolerance_v:
            nodes_v[:n] += delta_v
            return nodes_v[:n]
        nodes_v[:n] = _halved_until_better(nodes_v, delta_v, residual)
    worst_a = float(np.abs(residual(nodes_v)).max())
    raise ConvergenceError(
        f"Newton iteration of vector {vector} did not converge in "
        f"{max_iterations} iterations: last step {moved_v:.3g} V "
        f"(tolerance {tolerance_v:.3g} V), largest current residual {worst_a:.3g} A"
    )


def _halved_until_better(
    nodes_v: np.ndarray,
    delta_v: np.ndarray,
    residual: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Unknown voltages after the longest step delta / 2**k lowering the residual."""
    n = len(delta_v)
    before = float(np.abs(residual(nodes_v)).max())
    trial = nodes_v.copy()
    scale = 1.0
    for _ in range(30):
        trial[:n] = nodes_v[:n] + scale * delta_v
        if float(np.abs(residual(trial)).max()) < before:
            break
        scale /= 2
    return trial[:n]


def _swept_operator(circuit: ArrayCircuit, g_s: np.ndarray) -> ReadOperator:
    """The read operator by block elimination of the columns, row by row.

    Eliminating each row line's nodes leaves, on the column nodes of row
    ``i``, a dense block ``P_i = D_i - D_i (T_i + D_i)^-1 D_i`` (``T_i`` the
    row's chain with its ends, ``D_i`` its cells' conductances) and a feed
    ``p_i`` per volt on the row. The column segments join the rows' blocks
    into a block-tridiagonal system, eliminated from row 0 down, carrying
    how the last row's column nodes depend on each row's voltage. The sense
    resistances at the last row then give the column currents. Cost: a
    dense ``C x C`` inverse per row; no sparse fill.
    """
    rows, cols = circuit.rows, circuit.cols
    g_col_s = 1.0 / circuit.r_col_ohm
    sense_s = np.where(circuit.col_ends & END, 1.0 / circuit.sense_ohm, 0.0)
    feed = np.zeros((cols, rows))  # column-node feed per volt on each row
    inverse = np.zeros((cols, cols))
    for i in range(rows):
        block, feed[:, i] = _row_block(circuit, g_s[i], i)
        neighbours = (i > 0) + (i < rows - 1)
        diagonal = g_col_s * neighbours + LEAK_S + (sense_s if i == rows - 1 else 0.0)
        block[np.diag_indices(cols)] += diagonal
        if i > 0:
            block -= g_col_s**2 * inverse
            feed[:, :i] = g_col_s * (inverse @ feed[:, :i])
        inverse = _spd_inverse(block)
    from_rows_s = (feed.T @ inverse) * sense_s
    from_cols_s = sense_s[:, None] * inverse * sense_s - np.diag(sense_s)
    return ReadOperator(from_rows_s, from_cols_s)


def _row_block(
    circuit: ArrayCircuit, g_row_s: np.ndarray, row: int
) -> tuple[np.ndarray, np.ndarray]:
    """What row ``row``'s line leaves on its column nodes once eliminated.

    Returns the block ``P`` (C, C), S, and the current ``p`` (C,) the row's
    source feeds into the column nodes per volt, A/V.
    """
    cols = len(g_row_s)
    ends = int(circuit.row_ends[row])
    start_s = 1.0 / circuit.source_ohm if ends & START and circuit.source_ohm else 0.0
    end_s = 1.0 / circuit.source_ohm if ends & END and circuit.source_ohm else 0.0
    if not circuit.r_row_ohm or cols == 1:
        # One node: the cells' conductances in parallel with the ends'.
        if ends and not circuit.source_ohm:
            return np.diag(g_row_s), g_row_s.copy()
        total_s = g_row_s.sum() + start_s + end_s + LEAK_S
        block = np.diag(g_row_s) - np.outer(g_row_s, g_row_s) / total_s
        return block, g_row_s * (start_s + end_s) / total_s
    g_seg_s = 1.0 / circuit.r_row_ohm
    banded = np.zeros((2, cols))
    banded[0, 1:] = -g_seg_s
    banded[1] = g_row_s + LEAK_S
    banded[1, :-1] += g_seg_s
    banded[1, 1:] += g_seg_s
    banded[1, 0] += start_s
    banded[1, -1] += end_s
    # response[k, j]: voltage at node k of the row per ampere into node j, times g_j.
    response = scipy.linalg.solveh_banded(banded, np.diag(g_row_s))
    block = np.diag(g_row_s) - g_row_s[:, None] * response
    return block, start_s * response[0] + end_s * response[-1]


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, by Cholesky."""
    factor, info = scipy.linalg.lapack.dpotrf(matrix, lower=False, clean=False)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=False)
    if info != 0:
        raise np.linalg.LinAlgError(
            f"array block is not positive definite (LAPACK info {info})"
        )
    return np.triu(inverse) + np.triu(inverse, 1).T


# One read from scratch: conjugate gradients on the lines.


@dataclass(frozen=True)
class _EndConductances:
    """Conductance from each line end to its source, S; 0 where the end is open."""

    row_start_s: np.ndarray
    row_end_s: np.ndarray
    col_start_s: np.ndarray
    col_end_s: np.ndarray

    @classmethod
    def of(cls, circuit: ArrayCircuit) -> _EndConductances:
        source_s, sense_s = 1.0 / circuit.source_ohm, 1.0 / circuit.sense_ohm
        return cls(
            np.where(circuit.row_ends & START, source_s, 0.0),
            np.where(circuit.row_ends & END, source_s, 0.0),
            np.where(circuit.col_ends & START, sense_s, 0.0),
            np.where(circuit.col_ends & END, sense_s, 0.0),
        )


class _LineChains:
    """Parallel resistive lines, each a chain of nodes, with their cells to 0 V.

    ``g_s`` is ``(lines, length)``: the cells along each line. Each node has
    its cell, its segments of ``link_s`` and the leak; the first and last
    nodes their end conductances. The lines are one tridiagonal system,
    factored once (LAPACK ``pttrf``).
    """

    def __init__(
        self, g_s: np.ndarray, link_s: float, start_s: np.ndarray, end_s: np.ndarray
    ) -> None:
        lines, length = g_s.shape
        diagonal_s = g_s + (LEAK_S + 2 * link_s)
        diagonal_s[:, 0] += start_s - link_s
        diagonal_s[:, -1] += end_s - link_s
        # LAPACK's wrapper wants one link even for a single node.
        links_s = np.full(max(lines * length - 1, 1), -link_s)
        links_s[length - 1 :: length] = 0.0  # no segment from one line to the next
        d, e, info = scipy.linalg.lapack.dpttrf(diagonal_s.ravel(), links_s)
        if info:
            raise np.linalg.LinAlgError(
                f"line chain is not positive definite (LAPACK info {info})"
            )
        self.factor = d, e
        self.start_s, self.end_s = start_s, end_s
        self.shape = g_s.shape

    def feed(self, source_v: np.ndarray) -> np.ndarray:
        """Current the ends push into the nodes, ``(B, lines * length)``, A."""
        feed_a = np.zeros((len(source_v), *self.shape))
        feed_a[:, :, 0] = self.start_s * source_v
        feed_a[:, :, -1] += self.end_s * source_v
        return feed_a.reshape(len(source_v), -1)

    def voltages(self, feed_a: np.ndarray, scratch: bool = False) -> np.ndarray:
        """Node voltages for injected currents ``(B, lines * length)``, V.

        With ``scratch`` the solve may overwrite ``feed_a``.
        """
        nodes_v, _ = scipy.linalg.lapack.dpttrs(
            *self.factor, feed_a.T, overwrite_b=scratch
        )
        return nodes_v.T


def _line_iteration(
    circuit: ArrayCircuit, g_s: np.ndarray, rows_v: np.ndarray, cols_v: np.ndarray
) -> np.ndarray | None:
    """Column currents ``(B, C)`` by conjugate gradients, A; None if they stall.

    The row lines are eliminated exactly: for column-line voltages ``w``
    the row lines settle at ``T_R^-1 (f_R + G w)`` (``T_R`` their chains
    with the cells, ``G`` the cells' conductances, ``f_R`` what the row
    sources feed). What remains is the Schur complement
    ``T_C - G T_R^-1 G`` on the column lines, symmetric and positive
    definite, solved by conjugate gradients preconditioned with the column
    chains ``T_C``. Both chains are tridiagonal, so a step costs two line
    solves. With little line resistance the preconditioned system is well
    conditioned and a few steps reach :data:`CG_RTOL` (4 for 64 x 64 cells
    with ``r G_max = 1e-4``, 12 for 512 x 512, where ``r G N^2`` is 14); a
    floating line would leave it nearly singular, so the caller keeps those
    circuits from it.

    A column's current is what its ends take plus its residual: by
    Kirchhoff's law on the line that is the sum of its cells' currents,
    which the remaining error of ``w`` perturbs least.
    """
    rows, cols = g_s.shape
    batch, nodes = len(rows_v), rows * cols
    ends = circuit.end_conductances
    row_lines = _LineChains(
        g_s, 1.0 / circuit.r_row_ohm, ends.row_start_s, ends.row_end_s
    )
    col_lines = _LineChains(
        g_s.T, 1.0 / circuit.r_col_ohm, ends.col_start_s, ends.col_end_s
    )
    cell_s = g_s.T.ravel()  # vectors are column-major: column lines are contiguous

    def column_major(x: np.ndarray) -> np.ndarray:
        return x.reshape(batch, rows, cols).transpose(0, 2, 1).reshape(batch, nodes)

    def row_major(x: np.ndarray) -> np.ndarray:
        return x.reshape(batch, cols, rows).transpose(0, 2, 1).reshape(batch, nodes)

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.vecdot(x, y)[:, None]

    tiny = np.finfo(float).tiny  # a zero vector's steps are 0 / tiny
    row_feed_v = row_lines.voltages(row_lines.feed(rows_v), scratch=True)
    residual_a = col_lines.feed(cols_v) + cell_s * column_major(row_feed_v)
    col_line_v = np.zeros((batch, nodes))
    goal = CG_RTOL**2 * dot(residual_a, residual_a)
    step = col_lines.voltages(residual_a)
    held_a = residual_a.copy()  # T_C @ step
    along = dot(residual_a, step)
    for _ in range(CG_ITERATIONS):
        rows_v_step = row_lines.voltages(row_major(cell_s * step), scratch=True)
        taken_a = held_a - cell_s * column_major(rows_v_step)
        length = along / np.maximum(dot(step, taken_a), tiny)
        col_line_v += length * step
        residual_a -= length * taken_a
        if (dot(residual_a, residual_a) <= goal).all():
            break
        preconditioned = col_lines.voltages(residual_a)
        along, previous = dot(residual_a, preconditioned), along
        turn = along / np.maximum(previous, tiny)
        step = preconditioned + turn * step
        held_a = residual_a + turn * held_a
    else:
        return None
    # What the cells deliver to a column: what its ends take, plus its residual.
    ends_v = col_line_v.reshape(batch, cols, rows)[:, :, [0, -1]] - cols_v[:, :, None]
    delivered_a = residual_a.reshape(batch, cols, rows).sum(axis=2)
    return (
        ends.col_start_s * ends_v[:, :, 0]
        + ends.col_end_s * ends_v[:, :, 1]
        + delivered_a
    )


# Many reads from scratch, and the read operator: Schur complements of tiles.


@dataclass
class _TileGroup:
    """The tiles of one shape at one depth of the bisection.

    ``halves`` gives, for the next depth, the shape of each tile's first
    (left or upper) and second half and where their groups list them,
    ``across`` whether the tile is cut between columns; a single cell has
    no halves.
    """

    origins: np.ndarray
    halves: tuple[tuple[int, int], int, tuple[int, int], int] | None = None
    across: bool = True


@functools.lru_cache(maxsize=16)
def _bisection(rows: int, cols: int) -> list[dict[tuple[int, int], _TileGroup]]:
    """Tiles by depth: the array, its halves, theirs, ... down to single cells.

    Each tile is cut across its longer side. Tiles of one shape at one depth
    are cut alike, so each depth has a few shapes, each a stack of tiles.
    The tree depends on the shape alone and is kept (not to be changed).
    """
    depths = [{(rows, cols): _TileGroup(np.zeros((1, 2), dtype=np.intp))}]
    while True:
        parts: dict[tuple[int, int], list[np.ndarray]] = {}
        for (h, w), group in depths[-1].items():
            if h == w == 1:
                continue
            group.across = w >= h
            if group.across:
                first, second, offset = (h, w // 2), (h, w - w // 2), (0, w // 2)
            else:
                first, second, offset = (h // 2, w), (h - h // 2, w), (h // 2, 0)
            at_first = sum(len(o) for o in parts.setdefault(first, []))
            parts[first].append(group.origins)
            at_second = sum(len(o) for o in parts.setdefault(second, []))
            parts[second].append(group.origins + np.array(offset))
            group.halves = first, at_first, second, at_second
        if not parts:
            return depths
        depths.append({s: _TileGroup(np.concatenate(o)) for s, o in parts.items()})


def _port_blocks(shape: tuple[int, int]) -> tuple[slice, slice, slice, slice]:
    """A tile's ports in order: left, top, right, bottom."""
    h, w = shape
    return (
        slice(0, h),
        slice(h, h + w),
        slice(h + w, 2 * h + w),
        slice(2 * h + w, 2 * (h + w)),
    )


@dataclass(frozen=True)
class _MergePlan:
    """How two tiles' ports become their union's.

    ``*_runs`` pair a range of one half's ports with the range they take in
    the union; ``*_shared`` is the half's side on the interface, the nodes
    eliminated.
    """

    ports: int
    shared: int
    first_runs: tuple[tuple[slice, slice], ...]
    second_runs: tuple[tuple[slice, slice], ...]
    first_shared: slice
    second_shared: slice


@functools.lru_cache(maxsize=256)
def _merge_plan(
    first: tuple[int, int], second: tuple[int, int], across: bool
) -> _MergePlan:
    """The plan for joining tiles of shapes ``first`` and ``second``.

    ``across``: side by side, the first's right side is the second's left;
    otherwise one above the other, the first's bottom is the second's top.
    """
    if across:
        h, w = first[0], first[1] + second[1]
    else:
        h, w = first[0] + second[0], first[1]
    left, top, right, bottom = _port_blocks((h, w))
    to_first: tuple[slice | None, ...]
    to_second: tuple[slice | None, ...]
    if across:
        split_top = top.start + first[1]
        split_bottom = bottom.start + first[1]
        to_first = (left, slice(top.start, split_top), None,
                    slice(bottom.start, split_bottom))  # fmt: skip
        to_second = (None, slice(split_top, top.stop), right,
                     slice(split_bottom, bottom.stop))  # fmt: skip
    else:
        split_left = first[0]
        split_right = right.start + first[0]
        to_first = (slice(0, split_left), top,
                    slice(right.start, split_right), None)  # fmt: skip
        to_second = (slice(split_left, left.stop), None,
                     slice(split_right, right.stop), bottom)  # fmt: skip
    first_shared = _port_blocks(first)[to_first.index(None)]
    return _MergePlan(
        2 * (h + w),
        first_shared.stop - first_shared.start,
        _runs(first, to_first),
        _runs(second, to_second),
        first_shared,
        _port_blocks(second)[to_second.index(None)],
    )


def _runs(
    shape: tuple[int, int], targets: tuple[slice | None, ...]
) -> tuple[tuple[slice, slice], ...]:
    """A half's kept sides, each with its place in the union, neighbours joined."""
    runs: list[tuple[slice, slice]] = []
    for source, target in zip(_port_blocks(shape), targets, strict=True):
        if target is None:
            continue
        if (
            runs
            and runs[-1][0].stop == source.start
            and runs[-1][1].stop == target.start
        ):
            source = slice(runs[-1][0].start, source.stop)
            target = slice(runs[-1][1].start, target.stop)
            runs.pop()
        runs.append((source, target))
    return tuple(runs)


def _cell_tiles(
    origins: np.ndarray, g_s: np.ndarray, right_s: np.ndarray, below_s: np.ndarray
) -> np.ndarray:
    """Single-cell tiles, stack last ``(4, 4, N)``: ports row, column, right, below.

    The right (below) port is the next cell's row (column) node, or the
    line's end source past the last cell; ``right_s`` (``below_s``) is the
    segment or end conductance to it.
    """
    i, j = origins.T
    cell_s, r_s, b_s = g_s[i, j], right_s[i, j], below_s[i, j]
    tiles = np.zeros((4, 4, len(i)))
    tiles[0, 0] = cell_s + r_s + LEAK_S
    tiles[1, 1] = cell_s + b_s + LEAK_S
    tiles[2, 2], tiles[3, 3] = r_s, b_s
    tiles[0, 1] = tiles[1, 0] = -cell_s
    tiles[0, 2] = tiles[2, 0] = -r_s
    tiles[1, 3] = tiles[3, 1] = -b_s
    return tiles


def _merge_stacked(
    first: np.ndarray, second: np.ndarray, plan: _MergePlan
) -> np.ndarray:
    """Schur complements of pairs of tiles, stacks first ``(N, P, P)``.

    With ``E`` the interface block and ``K`` its coupling to the kept ports,
    the union is the halves' kept blocks less ``K^T E^-1 K``.
    """
    shared = _shared_rows(first, second, plan, last=False)
    coupling = shared[:, :, plan.shared :]
    reduced = np.linalg.inv(shared[:, :, : plan.shared]) @ coupling
    union = np.matmul(coupling.transpose(0, 2, 1), reduced)
    np.negative(union, out=union)
    _add_kept(union, first, second, plan, last=False)
    return union


def _merge_narrow(
    first: np.ndarray, second: np.ndarray, plan: _MergePlan
) -> np.ndarray:
    """:func:`_merge_stacked` for many small tiles, stacks last ``(P, P, N)``.

    Each matrix entry is a vector over the stack, so the operations run over
    whole stacks at once: cheaper than a dense product per tile while the
    interface has at most :data:`NARROW_INTERFACE` nodes. The interface is
    eliminated one node at a time (Cholesky by outer products).
    """
    m = plan.shared
    shared = _shared_rows(first, second, plan, last=True)
    product = np.empty(shared.shape[1:])
    for t in range(m):
        # Row t over the remaining nodes, divided by the pivot's square root.
        row = shared[t, t:]
        row /= np.sqrt(row[0])
        for u in range(1, m - t):
            scaled = np.multiply(row[u], row[u:], out=product[: len(row) - u])
            shared[t + u, t + u :] -= scaled
    reduced = shared[:, m:]
    union = np.einsum("tpn,tqn->pqn", reduced, reduced)
    np.negative(union, out=union)
    _add_kept(union, first, second, plan, last=True)
    return union


def _shared_rows(
    first: np.ndarray, second: np.ndarray, plan: _MergePlan, last: bool
) -> np.ndarray:
    """The rows of the shared nodes: the interface block, then the kept ports.

    ``(m, m + P, N)`` stacked last (``last``) or ``(N, m, m + P)`` first, as
    the halves are.
    """
    lead = () if last else (slice(None),)
    m, n = plan.shared, first.shape[-1 if last else 0]
    shared = np.empty((m, m + plan.ports, n) if last else (n, m, m + plan.ports))
    interface = slice(0, m)
    np.add(
        first[(*lead, plan.first_shared, plan.first_shared)],
        second[(*lead, plan.second_shared, plan.second_shared)],
        out=shared[(*lead, slice(None), interface)],
    )
    for tiles, runs, rows in (
        (first, plan.first_runs, plan.first_shared),
        (second, plan.second_runs, plan.second_shared),
    ):
        for source, target in runs:
            columns = slice(m + target.start, m + target.stop)
            shared[(*lead, slice(None), columns)] = tiles[(*lead, rows, source)]
    return shared


def _add_kept(
    union: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    plan: _MergePlan,
    last: bool,
) -> None:
    """Add each half's block among its kept ports to the union."""
    lead = () if last else (slice(None),)
    for tiles, runs in ((first, plan.first_runs), (second, plan.second_runs)):
        for source_x, target_x in runs:
            for source_y, target_y in runs:
                union[(*lead, target_x, target_y)] += tiles[(*lead, source_x, source_y)]


def _stacked_tiles(
    tree: list[dict[tuple[int, int], _TileGroup]],
    top: int,
    g_s: np.ndarray,
    right_s: np.ndarray,
    below_s: np.ndarray,
) -> dict[tuple[int, int], np.ndarray]:
    """Schur complements of the tiles at depth ``top``, ``(N, P, P)`` per shape.

    Built from single cells upwards, one stack per shape and depth. Tiles
    joined across an interface of at most :data:`NARROW_INTERFACE` nodes
    keep the stack last (:func:`_merge_narrow`); larger ones stack first
    for the dense products (:func:`_merge_stacked`).
    """
    done: dict[tuple[int, int], _Stack] = {}
    for depth in range(len(tree) - 1, top - 1, -1):
        below, done = done, {}
        for shape, group in tree[depth].items():
            if group.halves is None:
                done[shape] = _Stack(
                    _cell_tiles(group.origins, g_s, right_s, below_s), True
                )
                continue
            first, at_first, second, at_second = group.halves
            n = len(group.origins)
            plan = _merge_plan(first, second, group.across)
            if plan.shared <= NARROW_INTERFACE:
                union = _merge_narrow(
                    below[first].stacked(True)[..., at_first : at_first + n],
                    below[second].stacked(True)[..., at_second : at_second + n],
                    plan,
                )
                done[shape] = _Stack(union, True)
            else:
                union = _merge_stacked(
                    below[first].stacked(False)[at_first : at_first + n],
                    below[second].stacked(False)[at_second : at_second + n],
                    plan,
                )
                done[shape] = _Stack(union, False)
    return {shape: stack.stacked(False) for shape, stack in done.items()}


class _Stack:
    """Tiles of one shape, stacked last ``(P, P, N)`` or first ``(N, P, P)``.

    Each layout is made once, when a merge first asks for it.
    """

    def __init__(self, tiles: np.ndarray, last: bool) -> None:
        self.layouts = {last: tiles}

    def stacked(self, last: bool) -> np.ndarray:
        if last not in self.layouts:
            turn = (1, 2, 0) if last else (2, 0, 1)
            self.layouts[last] = np.ascontiguousarray(
                self.layouts[not last].transpose(turn)
            )
        return self.layouts[last]


@dataclass(frozen=True)
class _Part:
    """Skeleton tiles joined so far, on the ports they have left.

    ``nodes`` numbers the ports among the skeleton's nodes; ``matrix_s`` is
    the tiles' Schur complement onto them, S; ``feed_a`` ``(P, B)`` the
    current the sources push into them, A.
    """

    nodes: np.ndarray
    matrix_s: np.ndarray
    feed_a: np.ndarray

    def without(self, out: np.ndarray, done: list[_Elimination]) -> _Part:
        """This part with the ports marked ``out`` eliminated."""
        keep = ~out
        return _eliminate(
            self.nodes[keep],
            self.nodes[out],
            self.matrix_s[np.ix_(keep, keep)],
            self.matrix_s[np.ix_(out, keep)],
            self.matrix_s[np.ix_(out, out)],
            self.feed_a[keep],
            self.feed_a[out],
            done,
        )


@dataclass(frozen=True)
class _Elimination:
    """One Cholesky elimination of skeleton nodes, kept to recover them.

    ``x_e = L^-T (f - X x_k)`` for the eliminated nodes ``e`` from the kept
    ones ``k``.
    """

    kept: np.ndarray
    eliminated: np.ndarray
    factor: np.ndarray
    reduced: np.ndarray
    reduced_feed: np.ndarray

    def recover(self, nodes_v: np.ndarray) -> None:
        """Fill in the eliminated nodes' voltages from the kept ones', V."""
        feed_a = self.reduced_feed - self.reduced @ nodes_v[self.kept]
        nodes_v[self.eliminated] = _lower_solve(self.factor, feed_a, transposed=True)


def _lower_solve(
    factor: np.ndarray, b: np.ndarray, transposed: bool = False
) -> np.ndarray:
    """``L^-1 b`` (or ``L^-T b``) for a lower triangular ``L`` (LAPACK ``trtrs``)."""
    if not b.size:
        return np.zeros(b.shape)
    x, _ = scipy.linalg.lapack.dtrtrs(factor, b, lower=True, trans=int(transposed))
    return x


def _eliminate(
    kept: np.ndarray,
    out: np.ndarray,
    kept_s: np.ndarray,
    coupling_s: np.ndarray,
    out_s: np.ndarray,
    kept_a: np.ndarray,
    out_a: np.ndarray,
    done: list[_Elimination],
) -> _Part:
    """The part left on nodes ``kept`` once nodes ``out`` are eliminated.

    ``kept_s``, ``coupling_s`` (out x kept) and ``out_s`` are the blocks of
    the nodal matrix, S; ``kept_a`` and ``out_a`` the feeds, A. The
    elimination is appended to ``done``.
    """
    factor, info = scipy.linalg.lapack.dpotrf(out_s, lower=True, clean=True)
    if info:
        raise np.linalg.LinAlgError(
            f"array skeleton is not positive definite (LAPACK info {info})"
        )
    reduced, reduced_a = (_lower_solve(factor, x) for x in (coupling_s, out_a))
    done.append(_Elimination(kept, out, factor, reduced, reduced_a))
    return _Part(kept, kept_s - reduced.T @ reduced, kept_a - reduced.T @ reduced_a)


def _join(first: _Part, second: _Part, done: list[_Elimination]) -> _Part:
    """Two neighbouring parts as one, the nodes they share eliminated."""
    shared, in_first, in_second = np.intersect1d(
        first.nodes, second.nodes, assume_unique=True, return_indices=True
    )
    alone_first = np.setdiff1d(np.arange(len(first.nodes)), in_first)
    alone_second = np.setdiff1d(np.arange(len(second.nodes)), in_second)
    kept_s = scipy.linalg.block_diag(
        first.matrix_s[np.ix_(alone_first, alone_first)],
        second.matrix_s[np.ix_(alone_second, alone_second)],
    )
    coupling_s = np.hstack([
        first.matrix_s[np.ix_(in_first, alone_first)],
        second.matrix_s[np.ix_(in_second, alone_second)],
    ])  # fmt: skip
    return _eliminate(
        np.concatenate([first.nodes[alone_first], second.nodes[alone_second]]),
        shared,
        kept_s,
        coupling_s,
        first.matrix_s[np.ix_(in_first, in_first)]
        + second.matrix_s[np.ix_(in_second, in_second)],
        np.vstack([first.feed_a[alone_first], second.feed_a[alone_second]]),
        first.feed_a[in_first] + second.feed_a[in_second],
        done,
    )


@dataclass(frozen=True)
class _SkeletonTile:
    """A tile of the skeleton: where it is, its Schur complement, its ports.

    ``ports`` numbers each port as :meth:`_TiledArray.ports` does; ``free``
    marks those that are array nodes, not end sources.
    """

    origin: tuple[int, int]
    shape: tuple[int, int]
    matrix_s: np.ndarray
    ports: np.ndarray
    free: np.ndarray


class _TiledArray:
    """One conductance state of a resistive array, as Schur complements of tiles.

    A tile of cells ``[i0, i1) x [j0, j1)`` holds its cells, its row and
    column nodes and the segments from each to the next node along its
    line, the one leaving the tile included. Its ports are its first
    column's row nodes (left), its first row's column nodes (top) and the
    nodes its leaving segments reach (right, below): the next tiles' left
    and top ports or, past the array's last column (row), the lines' end
    sources. Its Schur complement onto its ports is the tile as its
    neighbours see it.

    The array is bisected down to single cells (:func:`_bisection`); going
    back up, each pair of halves is joined by eliminating the ports they
    share, all tiles of one shape at once (:func:`_stacked_tiles`). From the
    depth where tiles span :data:`SKELETON_LINES` rows plus columns up, the
    tiles form the skeleton, solved for given source voltages by joining
    them one by one, each port on the array's edge eliminated as soon as its
    tile is reached (:meth:`currents`). Each elimination is a direct
    factorization of a symmetric positive definite block, so the answer is
    exact up to rounding; the work is that of nested dissection, of order
    ``N^3`` for ``N x N`` cells.
    """

    def __init__(self, circuit: ArrayCircuit, g_s: np.ndarray) -> None:
        rows, cols = g_s.shape
        self.shape = rows, cols
        self.sources_from = 2 * rows * cols  # port numbers of the end sources
        self.ends = circuit.end_conductances
        right_s = np.full((rows, cols), 1.0 / circuit.r_row_ohm)
        right_s[:, -1] = self.ends.row_end_s
        below_s = np.full((rows, cols), 1.0 / circuit.r_col_ohm)
        below_s[-1] = self.ends.col_end_s
        self.tree = _bisection(rows, cols)
        self.top = _skeleton_depth(self.tree)
        stacks = _stacked_tiles(self.tree, self.top, g_s, right_s, below_s)
        self.skeleton = [
            self._skeleton_tile(tuple(origin), shape, stack[k])
            for shape, stack in stacks.items()
            for k, origin in enumerate(self.tree[self.top][shape].origins)
        ]

    def currents(
        self, rows_v: np.ndarray, cols_v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source currents of the rows ``(B, R)`` and columns ``(B, C)``, A.

        ``rows_v`` ``(B, R)`` and ``cols_v`` ``(B, C)`` are the sources'
        voltages, V.
        """
        rows, cols = self.shape
        sources_v = np.concatenate([rows_v, cols_v], axis=1).T
        nodes = np.unique(np.concatenate([t.ports[t.free] for t in self.skeleton]))
        nodes_v = self._skeleton_voltages(nodes, sources_v)

        row_a = np.zeros((rows, len(rows_v)))
        col_a = np.zeros((cols, len(rows_v)))
        for tile in self.skeleton:
            ports_v = np.empty((len(tile.ports), len(rows_v)))
            ports_v[tile.free] = nodes_v[np.searchsorted(nodes, tile.ports[tile.free])]
            ports_v[~tile.free] = sources_v[tile.ports[~tile.free] - self.sources_from]
            self._edge_currents(tile, ports_v, sources_v, row_a, col_a)
        return row_a.T, col_a.T

    def _skeleton_voltages(
        self, nodes: np.ndarray, sources_v: np.ndarray
    ) -> np.ndarray:
        """Voltages ``(len(nodes), B)`` of the skeleton's nodes, V.

        The tiles are joined up the bisection to the whole array, every
        node eliminated on the way; going back, each elimination recovers
        its nodes from those it kept.
        """
        done: list[_Elimination] = []
        parts: dict[tuple[int, int], list[_Part]] = {}
        for tile in self.skeleton:
            part = self._condensed(tile, nodes, sources_v, done)
            parts.setdefault(tile.shape, []).append(part)
        for depth in range(self.top - 1, -1, -1):
            joined: dict[tuple[int, int], list[_Part]] = {}
            for shape, group in self.tree[depth].items():
                assert group.halves is not None  # cells lie below the skeleton
                first, at_first, second, at_second = group.halves
                joined[shape] = [
                    _join(
                        parts[first][at_first + k], parts[second][at_second + k], done
                    )
                    for k in range(len(group.origins))
                ]
            parts = joined
        nodes_v = np.zeros((len(nodes), sources_v.shape[1]))
        for elimination in reversed(done):
            elimination.recover(nodes_v)
        return nodes_v

    def ports(self, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
        """Numbers of a tile's ports: the array's nodes, then its end sources.

        Row node ``(i, j)`` is ``i C + j``, column node ``(i, j)`` is
        ``R C + i C + j``; from :attr:`sources_from` (``2 R C``) on come the
        rows' end sources, then the columns'.
        """
        rows, cols = self.shape
        (i0, j0), (h, w) = origin, shape
        lines, along = np.arange(i0, i0 + h), np.arange(j0, j0 + w)
        n = rows * cols
        right = lines * cols + j0 + w if j0 + w < cols else 2 * n + lines
        below = n + (i0 + h) * cols + along if i0 + h < rows else 2 * n + rows + along
        return np.concatenate([lines * cols + j0, n + i0 * cols + along, right, below])

    def _skeleton_tile(
        self, origin: tuple[int, int], shape: tuple[int, int], matrix_s: np.ndarray
    ) -> _SkeletonTile:
        """The skeleton tile at ``origin`` with Schur complement ``matrix_s``."""
        ports = self.ports(origin, shape)
        return _SkeletonTile(origin, shape, matrix_s, ports, ports < self.sources_from)

    def _condensed(
        self,
        tile: _SkeletonTile,
        nodes: np.ndarray,
        sources_v: np.ndarray,
        done: list[_Elimination],
    ) -> _Part:
        """A skeleton tile on its free ports, its ports on the array's edge gone.

        The end sources past the last column and row hold known voltages:
        they feed the tile. The first column's row nodes and the first
        row's column nodes reach the lines' start sources; no other tile
        has them, so they are eliminated at once.
        """
        rows = self.shape[0]
        (i0, j0), (h, w) = tile.origin, tile.shape
        free, fixed = tile.free, ~tile.free
        matrix_s = tile.matrix_s[np.ix_(free, free)]
        fixed_v = sources_v[tile.ports[fixed] - self.sources_from]
        feed_a = -tile.matrix_s[np.ix_(free, fixed)] @ fixed_v
        out = np.zeros(len(matrix_s), dtype=bool)
        for on_edge, at, start_s, source_v in (
            (j0 == 0, np.arange(h), self.ends.row_start_s[i0 : i0 + h],
             sources_v[i0 : i0 + h]),
            (i0 == 0, h + np.arange(w), self.ends.col_start_s[j0 : j0 + w],
             sources_v[rows + j0 : rows + j0 + w]),
        ):  # fmt: skip
            if on_edge:
                matrix_s[at, at] += start_s
                feed_a[at] += start_s[:, None] * source_v
                out[at] = True
        part = _Part(np.searchsorted(nodes, tile.ports[free]), matrix_s, feed_a)
        return part.without(out, done) if out.any() else part

    def _edge_currents(
        self,
        tile: _SkeletonTile,
        ports_v: np.ndarray,
        sources_v: np.ndarray,
        row_a: np.ndarray,
        col_a: np.ndarray,
    ) -> None:
        """Add what a tile on the array's edge takes from the sources there, A."""
        rows, cols = self.shape
        (i0, j0), (h, w) = tile.origin, tile.shape
        lines, along = slice(i0, i0 + h), slice(j0, j0 + w)
        left, top, right, below = _port_blocks(tile.shape)
        if j0 + w == cols:  # into the array from the rows' end sources
            row_a[lines] += tile.matrix_s[right] @ ports_v
        if i0 + h == rows:
            col_a[along] -= tile.matrix_s[below] @ ports_v
        if j0 == 0:
            start_s = self.ends.row_start_s[lines, None]
            row_a[lines] += start_s * (sources_v[lines] - ports_v[left])
        if i0 == 0:
            start_s = self.ends.col_start_s[along, None]
            col_a[along] += start_s * (
                ports_v[top] - sources_v[rows + j0 : rows + j0 + w]
            )


def _skeleton_depth(tree: list[dict[tuple[int, int], _TileGroup]]) -> int:
    """The depth of the skeleton's tiles.

    The deepest whose tiles, and those above, all span
    :data:`SKELETON_LINES` rows plus columns, and above which no tile is a
    single cell; 0, the whole array, if no deeper one is.
    """
    depth = 0
    while (
        depth + 1 < len(tree)
        and all(group.halves is not None for group in tree[depth].values())
        and all(sum(shape) >= SKELETON_LINES for shape in tree[depth + 1])
    ):
        depth += 1
    return depth
