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
* :meth:`ArrayCircuit.read_operator` finds the exact linear map from the
  sources' voltages to the column currents, so that each read of the same
  conductances (an analog multiply) is a matrix product.
"""

from __future__ import annotations

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
    def layout(self) -> _Layout:
        """The nodes and elements of the circuit (made on first use)."""
        if self._layout is None:
            self._layout = _Layout(self)
        return self._layout

    # Linear cells.

    def factor(self, g_s: np.ndarray) -> FactoredArray:
        """Prepare the solution of one conductance state ``(R, C)``, S."""
        g_s = self._conductances(g_s)
        if (
            self.ideal
            and (self.row_ends != FLOATING).all()
            and (self.col_ends != FLOATING).all()
        ):
            return _DirectArray(self, g_s)
        return _SparseArray(self, g_s)

    def solve(
        self, g_s: np.ndarray, row_v: np.ndarray, col_v: float | np.ndarray = 0.0
    ) -> ArraySolution:
        """Solve one conductance state for one vector ``(R,)`` or a batch ``(B, R)``."""
        return self.factor(g_s).solve(row_v, col_v)

    def read_operator(self, g_s: np.ndarray) -> ReadOperator:
        """The exact map from line voltages to column currents of ``g_s``, S.

        With resistive columns sensed at their last row only, it is found by
        one sweep over the rows (:func:`_swept_operator`); otherwise by
        solving a unit voltage on each line.
        """
        g_s = self._conductances(g_s)
        if self._sweepable():
            return _swept_operator(self, g_s)
        factored = self.factor(g_s)
        units = np.eye(self.rows + self.cols)
        currents_a = factored.solve(units[:, : self.rows], units[:, self.rows :])
        return ReadOperator(
            currents_a.col_current_a[: self.rows],
            currents_a.col_current_a[self.rows :],
        )

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
