"""Array circuit with resistive lines: a dense reference, hand-solved cases, Newton."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.optimize import brentq

from labctl.station import ConfigError, load_chip
from simulator import array_solver
from simulator.array_solver import (
    BOTH,
    END,
    FEW_VECTORS,
    FLOATING,
    START,
    ArrayCircuit,
    ConvergenceError,
    SinhCells,
    _line_iteration,
    _TiledArray,
)
from simulator.bench import Bench
from simulator.circuit import LEAK_S, cell_voltages, solve, solve_lines

ROOT = Path(__file__).resolve().parents[2]


def dense_reference(circuit, g, row_v, col_v):
    """Every node of the circuit, one dense nodal matrix, numpy.linalg.solve.

    Nodes are named ("row", i, j) and ("col", i, j) at each cell and
    ("source", k) for each line's source (rows, then columns). A resistance
    of 0 joins its two nodes into one. Nodes joined to a source are known;
    every other node has the leak to 0 V.
    """
    rows, cols = g.shape
    parent = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            node = parent[node]
        return node

    def join(x, y):
        x, y = find(x), find(y)
        if x != y:
            # A source stays its group's name.
            if x[0] == "source":
                parent[y] = x
            else:
                parent[x] = y

    resistors = []

    def resistor(x, y, ohm):
        if ohm == 0:
            join(x, y)
        else:
            resistors.append((x, y, 1.0 / ohm))

    for i in range(rows):
        for j in range(cols):
            resistors.append((("row", i, j), ("col", i, j), g[i, j]))
            if j + 1 < cols:
                resistor(("row", i, j), ("row", i, j + 1), circuit.r_row_ohm)
            if i + 1 < rows:
                resistor(("col", i, j), ("col", i + 1, j), circuit.r_col_ohm)
    for i in range(rows):
        if circuit.row_ends[i] & START:
            resistor(("row", i, 0), ("source", i), circuit.source_ohm)
        if circuit.row_ends[i] & END:
            resistor(("row", i, cols - 1), ("source", i), circuit.source_ohm)
    for j in range(cols):
        if circuit.col_ends[j] & START:
            resistor(("col", 0, j), ("source", rows + j), circuit.sense_ohm)
        if circuit.col_ends[j] & END:
            resistor(("col", rows - 1, j), ("source", rows + j), circuit.sense_ohm)

    names = sorted(
        {find(n) for x, y, _ in resistors for n in (x, y)}
        | {find(("source", k)) for k in range(rows + cols)}
    )
    number = {name: k for k, name in enumerate(names)}
    n = len(names)
    laplacian = np.zeros((n, n))
    for x, y, conductance in resistors:
        a, b = number[find(x)], number[find(y)]
        laplacian[a, a] += conductance
        laplacian[b, b] += conductance
        laplacian[a, b] -= conductance
        laplacian[b, a] -= conductance
    levels = np.concatenate([row_v, col_v])
    known = np.array([name[0] == "source" for name in names])
    v = np.zeros(n)
    for name, k in number.items():
        if name[0] == "source":
            v[k] = levels[name[1]]
    free = ~known
    system = laplacian[np.ix_(free, free)] + LEAK_S * np.eye(free.sum())
    v[free] = np.linalg.solve(system, -laplacian[np.ix_(free, known)] @ v[known])
    into = laplacian @ v
    source_a = np.array([into[number[find(("source", k))]] for k in range(rows + cols)])
    # A source joined to another (a line driven twice) has no current of its own.
    row_line_v = np.array(
        [[v[number[find(("row", i, j))]] for j in range(cols)] for i in range(rows)]
    )
    col_line_v = np.array(
        [[v[number[find(("col", i, j))]] for j in range(cols)] for i in range(rows)]
    )
    return row_line_v, col_line_v, source_a[:rows], -source_a[rows:]


def assert_close(actual, expected, rel):
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(actual - expected)) <= rel * scale


def random_case(rng, rows, cols, resistive=True):
    """A random array: conductances, segment and end resistances, drive pattern.

    Each resistance is 0 with probability 1/4 when not `resistive`; the
    ends of each line are drawn from all four kinds, floating included, with
    at least one line driven.
    """

    def ohm():
        if not resistive and rng.random() < 0.25:
            return 0.0
        return float(rng.uniform(0.5, 50.0))

    row_ends = rng.integers(FLOATING, BOTH + 1, rows)
    col_ends = rng.integers(FLOATING, BOTH + 1, cols)
    row_ends[0] = max(row_ends[0], START)
    circuit = ArrayCircuit(
        rows,
        cols,
        r_row_ohm=ohm(),
        r_col_ohm=ohm(),
        source_ohm=ohm(),
        sense_ohm=ohm(),
        row_ends=row_ends,
        col_ends=col_ends,
    )
    g = rng.uniform(10e-6, 100e-6, (rows, cols))
    return circuit, g


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (5, 3), (4, 4), (6, 7), (8, 8)])
@pytest.mark.parametrize("resistive", [True, False])
def test_random_arrays_match_the_dense_reference(size, resistive):
    rng = np.random.default_rng([*size, resistive])
    for _ in range(6):
        circuit, g = random_case(rng, *size, resistive=resistive)
        row_v = rng.uniform(-1.0, 1.0, (3, size[0]))
        col_v = rng.uniform(-1.0, 1.0, (3, size[1]))
        solution = circuit.solve(g, row_v, col_v)
        for k in range(3):
            expected = dense_reference(circuit, g, row_v[k], col_v[k])
            got = (
                solution.row_line_v[k],
                solution.col_line_v[k],
                solution.row_current_a[k],
                solution.col_current_a[k],
            )
            for actual, reference in zip(got, expected, strict=True):
                assert_close(actual, reference, rel=1e-9)


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (6, 1), (5, 7), (8, 8)])
def test_the_read_operator_gives_the_solved_column_currents(size):
    rng = np.random.default_rng(size[0] * 10 + size[1])
    for _ in range(5):
        circuit, g = random_case(rng, *size, resistive=rng.random() < 0.7)
        row_v = rng.uniform(-1.0, 1.0, (4, size[0]))
        col_v = rng.uniform(-1.0, 1.0, (4, size[1]))
        expected = circuit.solve(g, row_v, col_v).col_current_a
        operator = circuit.read_operator(g)
        assert_close(operator.column_currents(row_v, col_v), expected, rel=1e-9)
        assert_close(
            operator.column_currents(row_v[0], col_v[0]), expected[0], rel=1e-9
        )


def test_the_row_sweep_serves_columns_sensed_at_their_last_row():
    # Ideal row wires: not a case for the tiles, one for the sweep.
    rng = np.random.default_rng(7)
    g = rng.uniform(10e-6, 100e-6, (6, 5))
    circuit = ArrayCircuit(
        6, 5, r_row_ohm=0.0, r_col_ohm=3.0, source_ohm=1.0, sense_ohm=4.0,
        row_ends=[START, END, BOTH, FLOATING, START, START],
        col_ends=[END, END, FLOATING, END, END],
    )  # fmt: skip
    assert circuit._sweepable() and not circuit.resistive
    row_v = rng.uniform(-1.0, 1.0, (3, 6))
    expected = dense_reference(circuit, g, row_v[1], np.zeros(5))[3]
    currents_a = circuit.read_operator(g).column_currents(row_v)
    assert_close(currents_a[1], expected, rel=1e-9)
    assert currents_a[1][2] == 0.0  # a floating column delivers nothing


# One read from scratch: conjugate gradients for a few vectors, tiles for more.


def resistive_case(rng, rows, cols, floating=True):
    """A random array with every segment and end resistive.

    With ``floating`` each line's ends are drawn from all four kinds, the
    first row and the last column driven; otherwise every line is driven at
    its start, its end or both.
    """
    low = FLOATING if floating else START
    row_ends = rng.integers(low, BOTH + 1, rows)
    col_ends = rng.integers(low, BOTH + 1, cols)
    row_ends[0] = max(row_ends[0], START)
    col_ends[-1] = max(col_ends[-1], START)
    ohm = rng.uniform(0.5, 50.0, 4)
    circuit = ArrayCircuit(
        rows, cols, r_row_ohm=ohm[0], r_col_ohm=ohm[1], source_ohm=ohm[2],
        sense_ohm=ohm[3], row_ends=row_ends, col_ends=col_ends,
    )  # fmt: skip
    return circuit, rng.uniform(10e-6, 100e-6, (rows, cols))


def reference_currents(circuit, g, row_v, col_v):
    """Row and column currents ``(B, R)``, ``(B, C)`` of the dense reference."""
    solved = [
        dense_reference(circuit, g, r, c) for r, c in zip(row_v, col_v, strict=True)
    ]
    return np.array([s[2] for s in solved]), np.array([s[3] for s in solved])


SHAPES = [(1, 1), (1, 7), (7, 1), (2, 9), (5, 4), (8, 8), (11, 6)]


@pytest.mark.parametrize("size", SHAPES)
def test_conjugate_gradients_match_the_dense_reference(size):
    rng = np.random.default_rng([*size, 1])
    for _ in range(4):
        circuit, g = resistive_case(rng, *size, floating=False)
        row_v = rng.uniform(-1.0, 1.0, (3, size[0]))
        col_v = rng.uniform(-1.0, 1.0, (3, size[1]))
        col_a = _line_iteration(circuit, g, row_v, col_v)
        assert col_a is not None
        assert_close(col_a, reference_currents(circuit, g, row_v, col_v)[1], 1e-9)


@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("floating", [True, False])
def test_tiles_match_the_dense_reference(size, floating):
    rng = np.random.default_rng([*size, floating, 2])
    for _ in range(4):
        circuit, g = resistive_case(rng, *size, floating=floating)
        row_v = rng.uniform(-1.0, 1.0, (3, size[0]))
        col_v = rng.uniform(-1.0, 1.0, (3, size[1]))
        row_a, col_a = _TiledArray(circuit, g).currents(row_v, col_v)
        expected_row_a, expected_col_a = reference_currents(circuit, g, row_v, col_v)
        assert_close(col_a, expected_col_a, 1e-9)
        assert_close(row_a, expected_row_a, 1e-9)


@pytest.mark.parametrize("skeleton_lines", [2, 8, 1000])
def test_tiles_agree_whichever_depth_the_skeleton_starts(monkeypatch, skeleton_lines):
    # From many small skeleton tiles to none (the stacks reach the array).
    monkeypatch.setattr(array_solver, "SKELETON_LINES", skeleton_lines)
    rng = np.random.default_rng(skeleton_lines)
    circuit, g = resistive_case(rng, 13, 21)
    row_v = rng.uniform(-1.0, 1.0, (2, 13))
    col_v = rng.uniform(-1.0, 1.0, (2, 21))
    tiled = _TiledArray(circuit, g)
    assert (tiled.top > 0) == (skeleton_lines < 1000)
    col_a = tiled.currents(row_v, col_v)[1]
    assert_close(col_a, reference_currents(circuit, g, row_v, col_v)[1], 1e-9)


@pytest.mark.parametrize("vectors", [1, 3, FEW_VECTORS, 2 * FEW_VECTORS])
@pytest.mark.parametrize("floating", [True, False])
def test_column_currents_are_the_solved_ones_for_any_batch(vectors, floating):
    rng = np.random.default_rng([vectors, floating])
    for _ in range(3):
        circuit, g = resistive_case(rng, 9, 7, floating=floating)
        row_v = rng.uniform(-1.0, 1.0, (vectors, 9))
        col_v = rng.uniform(-1.0, 1.0, (vectors, 7))
        expected = circuit.solve(g, row_v, col_v).col_current_a
        assert_close(circuit.column_currents(g, row_v, col_v), expected, 1e-9)
        one = circuit.column_currents(g, row_v[0], col_v[0])
        assert one.shape == (7,)
        assert_close(one, expected[0], 1e-9)


def test_column_currents_of_other_circuits_are_solved():
    rng = np.random.default_rng(14)
    for circuit, g in (random_case(rng, 6, 5, resistive=False) for _ in range(8)):
        row_v = rng.uniform(-1.0, 1.0, (2, 6))
        expected = circuit.solve(g, row_v).col_current_a
        assert_close(circuit.column_currents(g, row_v), expected, 1e-12)


def test_a_floating_line_or_a_stalled_iteration_leaves_the_read_to_the_tiles(
    monkeypatch,
):
    rng = np.random.default_rng(15)
    circuit, g = resistive_case(rng, 6, 6, floating=False)
    row_v = rng.uniform(0.0, 0.2, 6)
    expected = circuit.solve(g, row_v).col_current_a
    monkeypatch.setattr(array_solver, "CG_ITERATIONS", 0)
    assert _line_iteration(circuit, g, row_v[None], np.zeros((1, 6))) is None
    assert_close(circuit.column_currents(g, row_v), expected, 1e-9)

    def unused(*args):
        raise AssertionError("a floating line is not for conjugate gradients")

    monkeypatch.setattr(array_solver, "_line_iteration", unused)
    floating = ArrayCircuit(
        6, 6, r_row_ohm=2.0, r_col_ohm=2.0, source_ohm=2.0, sense_ohm=2.0,
        col_ends=[END, END, FLOATING, END, END, END],
    )  # fmt: skip
    expected = floating.solve(g, row_v).col_current_a
    assert_close(floating.column_currents(g, row_v), expected, 1e-9)


def test_ideal_wires_with_every_line_driven_give_v_times_g():
    rng = np.random.default_rng(8)
    g = rng.uniform(10e-6, 100e-6, (8, 6))
    row_v = rng.uniform(0.0, 0.2, (5, 8))
    solution = ArrayCircuit(8, 6).solve(g, row_v)
    np.testing.assert_allclose(solution.col_current_a, row_v @ g, rtol=1e-13)
    np.testing.assert_allclose(
        solution.row_current_a, row_v * g.sum(axis=1), rtol=1e-13
    )
    np.testing.assert_array_equal(
        solution.cell_v[2], np.repeat(row_v[2][:, None], 6, axis=1)
    )


def test_one_vector_has_no_batch_axis_and_a_batch_is_its_vectors():
    rng = np.random.default_rng(9)
    circuit, g = random_case(rng, 5, 4)
    row_v = rng.uniform(-1.0, 1.0, (3, 5))
    batch = circuit.solve(g, row_v)
    for k in range(3):
        one = circuit.solve(g, row_v[k])
        assert one.cell_v.shape == (5, 4)
        assert_close(one.col_current_a, batch.col_current_a[k], rel=1e-12)


def test_a_single_cell_in_series_with_its_source_and_sense_resistances():
    # Source, cell and sense amplifier in series: I = V / (Rs + 1/G + Rsense).
    g_s, source_ohm, sense_ohm, v = 40e-6, 2e3, 3e3, 0.5
    circuit = ArrayCircuit(1, 1, source_ohm=source_ohm, sense_ohm=sense_ohm)
    solution = circuit.solve(np.array([[g_s]]), np.array([v]))
    current_a = v / (source_ohm + 1 / g_s + sense_ohm)
    assert solution.col_current_a[0] == pytest.approx(current_a, rel=1e-12)
    assert solution.row_current_a[0] == pytest.approx(current_a, rel=1e-9)
    assert solution.cell_v[0, 0] == pytest.approx(current_a / g_s, rel=1e-12)


def test_two_by_two_sneak_path_through_the_three_unselected_cells():
    # Row 0 driven at V, column 0 sensed at 0 V, row 1 and column 1 floating,
    # ideal wires. Besides G11 (row 0, column 0), current runs row 0 -> G12
    # -> column 1 -> G22 -> row 1 -> G21 -> column 0: three cells in series,
    # 1 / (1/G12 + 1/G22 + 1/G21) = G12 G21 G22 / (G12 G21 + G12 G22 + G21 G22).
    # So I = V (G11 + G12 G21 G22 / (G12 G21 + G12 G22 + G21 G22)).
    g11, g12, g21, g22 = 50e-6, 20e-6, 70e-6, 35e-6
    v = 0.3
    circuit = ArrayCircuit(2, 2, row_ends=[START, FLOATING], col_ends=[END, FLOATING])
    solution = circuit.solve(np.array([[g11, g12], [g21, g22]]), np.array([v, 0.0]))
    sneak_s = g12 * g21 * g22 / (g12 * g21 + g12 * g22 + g21 * g22)
    # The leaks of the two floating lines take at most 2 * LEAK_S * V.
    leak_a = 2 * LEAK_S * v
    assert solution.col_current_a[0] == pytest.approx(v * (g11 + sneak_s), abs=leak_a)
    assert solution.col_current_a[0] != pytest.approx(v * g11, rel=0.1)
    assert solution.col_current_a[1] == 0.0
    # The sneak current sets the floating lines: column 1 at V - I_sneak/G12.
    assert solution.col_line_v[0, 1] == pytest.approx(v - v * sneak_s / g12, rel=1e-9)


def test_a_single_row_with_line_resistance_is_a_ladder():
    # One row of N cells, segments r between them, driven ideally at column 0;
    # every column ideal and at 0 V. From the far end, the admittance seen
    # into the row at cell j is Y_j = G_j + 1 / (r + 1 / Y_{j+1}), with
    # Y_{N-1} = G_{N-1}; the source delivers V * Y_0. Going out, the current
    # into segment j is (the current into cell j's node) - G_j v_j, and the
    # node after it is lower by r times that.
    g = np.array([80e-6, 30e-6, 60e-6, 45e-6])
    r, v = 500.0, 0.4
    admittance_s = [g[-1]]
    for g_j in g[-2::-1]:
        admittance_s.insert(0, g_j + 1 / (r + 1 / admittance_s[0]))
    node_v = [v]
    into_a = v * admittance_s[0]
    for j in range(len(g) - 1):
        into_a -= g[j] * node_v[j]
        node_v.append(node_v[j] - r * into_a)

    circuit = ArrayCircuit(1, 4, r_row_ohm=r)
    solution = circuit.solve(g[None, :], np.array([v]))
    assert solution.row_current_a[0] == pytest.approx(v * admittance_s[0], rel=1e-12)
    np.testing.assert_allclose(solution.row_line_v[0], node_v, rtol=1e-9)
    np.testing.assert_allclose(solution.col_current_a, g * np.array(node_v), rtol=1e-9)
    assert np.all(np.diff(solution.row_line_v[0]) < 0)


def test_newton_matches_a_bracketed_root_of_one_cell_and_a_resistor():
    # I = G V0 sinh(Vc / V0) through the cell equals (V - Vc) / R through the
    # resistor: one equation in Vc, bracketed in [0, V].
    g_s, v0_v, series_ohm, v = 50e-6, 0.2, 5e3, 1.0
    root_v = brentq(
        lambda vc: g_s * v0_v * np.sinh(vc / v0_v) - (v - vc) / series_ohm,
        0.0, v, xtol=1e-15,
    )  # fmt: skip
    cells = SinhCells(np.array([[g_s]]), v0_v)
    solution = ArrayCircuit(1, 1, source_ohm=series_ohm).solve_nonlinear(cells, [v])
    assert solution.cell_v[0, 0] == pytest.approx(root_v, rel=1e-10)
    assert solution.col_current_a[0] == pytest.approx(
        (v - root_v) / series_ohm, rel=1e-9
    )
    # The nonlinearity matters here: the ohmic answer is far off.
    assert root_v < v / (1 + g_s * series_ohm) * 0.9


def test_newton_on_an_array_satisfies_kirchhoff_and_is_linear_at_small_signal():
    rng = np.random.default_rng(10)
    g = rng.uniform(10e-6, 100e-6, (6, 6))
    circuit = ArrayCircuit(
        6, 6, r_row_ohm=200.0, r_col_ohm=300.0, source_ohm=1e3, sense_ohm=1e3,
        row_ends=[START, BOTH, FLOATING, END, START, START],
    )  # fmt: skip
    row_v = rng.uniform(-1.0, 1.0, (2, 6))
    solution = circuit.solve_nonlinear(SinhCells(g, 0.25), row_v)
    cell_a = SinhCells(g, 0.25).current_a(solution.cell_v)
    # Each column's cells deliver what leaves at its end (floating rows leak only).
    np.testing.assert_allclose(solution.col_current_a, cell_a.sum(axis=1), rtol=1e-8)
    np.testing.assert_allclose(
        solution.row_current_a, cell_a.sum(axis=2), rtol=1e-8, atol=1e-15
    )

    small = circuit.solve_nonlinear(SinhCells(g, 1e3), row_v * 1e-3)
    linear = circuit.solve(g, row_v * 1e-3)
    assert_close(small.col_current_a, linear.col_current_a, rel=1e-9)


def test_newton_that_cannot_converge_says_so():
    g = np.full((3, 3), 80e-6)
    circuit = ArrayCircuit(3, 3, r_row_ohm=100.0, r_col_ohm=100.0, source_ohm=1e3)
    with pytest.raises(ConvergenceError, match="did not converge in 2 iterations"):
        circuit.solve_nonlinear(SinhCells(g, 0.1), np.ones(3), max_iterations=2)


def write_scheme(fraction, rows=8, cols=8, v=1.0):
    """Row and column levels of the V/2 (fraction 2) or V/3 (fraction 3) scheme.

    The selected row is at V and the selected column at 0; the other rows at
    V/2 or V/3, the other columns at V/2 or 2V/3.
    """

    def levels(row, col):
        row_v = np.full(rows, v / fraction)
        col_v = np.full(cols, v / 2 if fraction == 2 else 2 * v / 3)
        row_v[row], col_v[col] = v, 0.0
        return row_v, col_v

    return levels


def ideal_scheme_voltages(fraction, row, col, rows=8, cols=8, v=1.0):
    """Each cell's voltage with ideal lines: V selected, V/2 or V/3 half-selected."""
    expected = np.full((rows, cols), 0.0 if fraction == 2 else -v / 3)
    expected[row, :] = v / fraction
    expected[:, col] = v / fraction
    expected[row, col] = v
    return expected


@pytest.mark.parametrize("fraction", [2, 3])
def test_write_schemes_put_v_on_the_selected_cell_and_a_fraction_on_the_others(
    fraction,
):
    rng = np.random.default_rng(fraction)
    g = rng.uniform(10e-6, 100e-6, (8, 8))
    levels = write_scheme(fraction)
    ideal = ArrayCircuit(8, 8, col_ends=BOTH)
    solution = ideal.solve(g, *levels(3, 5))
    np.testing.assert_allclose(
        solution.cell_v, ideal_scheme_voltages(fraction, 3, 5), atol=1e-15
    )

    # With line resistance every cell is off by at most the drops along its
    # row and its column: each line's current through all of its resistance.
    resistive = ArrayCircuit(
        8, 8, r_row_ohm=20.0, r_col_ohm=20.0, source_ohm=50.0, sense_ohm=50.0
    )
    near, far = (7, 0), (0, 7)  # rows are driven at column 0, columns at row 7
    selected_v = {}
    for cell in (near, far):
        solution = resistive.solve(g, *levels(*cell))
        row_drop_v = np.abs(solution.row_current_a).max() * (50.0 + 7 * 20.0)
        col_drop_v = np.abs(solution.col_current_a).max() * (50.0 + 7 * 20.0)
        error_v = np.abs(solution.cell_v - ideal_scheme_voltages(fraction, *cell))
        assert error_v.max() <= row_drop_v + col_drop_v
        assert error_v.max() > 0
        half = np.zeros((8, 8), dtype=bool)
        half[cell[0], :] = half[:, cell[1]] = True
        half[cell] = False
        assert (
            np.abs(solution.cell_v[half] - 1.0 / fraction).max()
            <= row_drop_v + col_drop_v
        )
        selected_v[cell] = solution.cell_v[cell]
    assert selected_v[far] < selected_v[near] < 1.0


def test_bad_circuits_and_conductances_are_refused():
    with pytest.raises(ValueError, match="r_row_ohm"):
        ArrayCircuit(2, 2, r_row_ohm=-1.0)
    with pytest.raises(ValueError, match="row_ends"):
        ArrayCircuit(2, 2, row_ends=4)
    with pytest.raises(ValueError, match="shape"):
        ArrayCircuit(2, 3).solve(np.ones((3, 2)), np.zeros(2))


# The bench's circuit: nets of lines, with resistive lines on some arrays.


def test_nets_with_resistive_lines_solve_as_the_array_circuit():
    rng = np.random.default_rng(11)
    g = rng.uniform(10e-6, 100e-6, (4, 3))
    ohm = 25.0
    # Each line on a net of its own: rows 0 and 2 driven, row 1 fed 1 µA,
    # row 3 floating; columns 0 and 1 at 0 V, column 2 at 0.1 V.
    fixed_v = np.array([0.4, np.nan, -0.2, np.nan, 0.0, 0.0, 0.1])
    inject_a = np.array([0.0, 1e-6, 0.0, 0.0, 0.0, 0.0, 0.0])
    array = (g, np.arange(4), 4 + np.arange(3))
    net_v, source_i, (cell_v,) = solve_lines([array], [ohm], 7, fixed_v, inject_a)

    # The same circuit with the fed row's net as a free node: a current
    # source needs the dense reference's general form, so check Kirchhoff's
    # law and the driven rows against the array circuit at the solved levels.
    circuit = ArrayCircuit(
        4, 3, r_row_ohm=ohm, r_col_ohm=ohm, source_ohm=ohm, sense_ohm=ohm,
        row_ends=[START, START, START, FLOATING],
    )  # fmt: skip
    expected = circuit.solve(g, net_v[:4], net_v[4:])
    assert_close(cell_v, expected.cell_v, rel=1e-9)
    assert_close(source_i[4:], -expected.col_current_a, rel=1e-9)
    assert source_i[[0, 2]] == pytest.approx(expected.row_current_a[[0, 2]], rel=1e-9)
    assert expected.row_current_a[1] == pytest.approx(1e-6, rel=1e-6)
    assert source_i[[1, 3]].tolist() == [0.0, 0.0]


def test_nets_with_ideal_lines_solve_as_before():
    rng = np.random.default_rng(12)
    g = rng.uniform(10e-6, 100e-6, (5, 4))
    array = (g, np.array([0, 1, 1, 2, 3]), np.array([4, 5, 6, 4]))
    fixed_v = np.array([0.3, np.nan, 0.1, np.nan, 0.0, np.nan, -0.2])
    inject_a = np.array([0.0, 0.0, 0.0, 2e-6, 0.0, 0.0, 0.0])
    net_v, source_i, (cell_v,) = solve_lines([array], [0.0], 7, fixed_v, inject_a)
    ref_v, ref_i = solve([array], 7, fixed_v, inject_a)
    np.testing.assert_array_equal(net_v, ref_v)
    assert_close(source_i, ref_i, rel=1e-14)
    np.testing.assert_array_equal(cell_v, cell_voltages(ref_v, *array[1:]))


def resistive_bench(tmp_path, line_ohm):
    """The demo bench on a copy of the demo chip with resistive lines, noise-free."""
    chip = yaml.safe_load((ROOT / "data/chips/pvk-demo.yaml").read_text())
    chip["arrays"]["A0"]["line_resistance_ohm"] = line_ohm
    (tmp_path / "chip.yaml").write_text(yaml.safe_dump(chip))
    station = yaml.safe_load((ROOT / "data/stations/demo.yaml").read_text())
    station["chip"] = str(tmp_path / "chip.yaml")
    station["visa_library"] = f"{tmp_path / 'bench.yaml'}@labsim"
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station))
    bench = yaml.safe_load((ROOT / "data/benches/demo.yaml").read_text())
    bench["station"] = str(tmp_path / "station.yaml")
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(bench))
    return Bench.from_file(
        tmp_path / "bench.yaml", device={"read_sigma": 0.0, "thermal_noise_a": 0.0}
    )


def test_the_bench_reads_through_resistive_lines(tmp_path):
    # Row 5 on smu1.smua at 0.1 V, column 3 on smu2.smua at 0 V, every other
    # line on ground (demo wiring: row r on slot r // 12 + 1, column r % 12 + 1;
    # column c on slot 6, column c + 5; bus A smu1.smua, C smu2.smua, H ground).
    i, j, v, ohm = 5, 3, 0.1, 100.0
    bench = resistive_bench(tmp_path, ohm)
    bench.set_cell_state("A0", np.random.default_rng(13).uniform(0.0, 1.0, (64, 8)))
    g = bench.arrays["A0"].conductance_s
    smu = bench.resource("GPIB0::26::INSTR")
    relays = [
        f"{r // 12 + 1}{'A' if r == i else 'H'}{r % 12 + 1:02d}" for r in range(64)
    ]
    relays += [f"6{'C' if c == j else 'H'}{c + 5:02d}" for c in range(8)]
    for message in (
        f'node[4].channel.exclusiveclose("{",".join(relays)}")',
        "smua.source.limiti = 1e-2 node[2].smua.source.limiti = 1e-2",
        f"smua.source.levelv = {v} smua.source.output = 1",
        "node[2].smua.source.levelv = 0 node[2].smua.source.output = 1",
        "print(smua.measure.i(), node[2].smua.measure.i())",
    ):
        smu.write(message)
    drive_a, sense_a = (float(x) for x in smu.read().split("\t"))

    circuit = ArrayCircuit(
        64, 8, r_row_ohm=ohm, r_col_ohm=ohm, source_ohm=ohm, sense_ohm=ohm
    )
    row_v = np.where(np.arange(64) == i, v, 0.0)
    expected = circuit.solve(g, row_v)
    # The instrument prints six significant digits.
    assert sense_a == pytest.approx(-expected.col_current_a[j], rel=1e-5)
    assert drive_a == pytest.approx(expected.row_current_a[i], rel=1e-5)
    # The lines take their share: less than G * V reaches the sense channel.
    assert -sense_a < 0.99 * g[i, j] * v


def test_a_chip_file_refuses_a_negative_line_resistance(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text(
        "name: c\narrays:\n  A0: {rows: 2, cols: 2, line_resistance_ohm: -1.0}\n"
    )
    with pytest.raises(ConfigError, match="line_resistance_ohm"):
        load_chip(path)
