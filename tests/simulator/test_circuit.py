"""Array circuit: closed forms, Kirchhoff's laws and an independent solve."""

import numpy as np
import pytest

from simulator.circuit import DENSE_MAX_UNKNOWNS, LEAK_S, cell_voltages, solve

NAN = np.nan


def kirchhoff(arrays, n_nets, fixed_v, inject_a):
    """Reference: full nodal system over all nets, sources eliminated.

    Every cell stamps the Laplacian of all nets; each net that is not
    voltage-driven has the solver's leak to 0 V. The known voltages are moved
    to the right-hand side, the rest solved densely, and each source's
    current is what its net sends into the cells less what is injected.
    """
    laplacian = np.zeros((n_nets, n_nets))
    for g, row_net, col_net in arrays:
        a = np.repeat(row_net, len(col_net))
        b = np.tile(col_net, len(row_net))
        g = g.ravel()
        np.add.at(laplacian, (a, a), g)
        np.add.at(laplacian, (b, b), g)
        np.add.at(laplacian, (a, b), -g)
        np.add.at(laplacian, (b, a), -g)
    known = ~np.isnan(fixed_v)
    free = ~known
    v = np.where(known, fixed_v, 0.0)
    system = laplacian[np.ix_(free, free)] + LEAK_S * np.eye(free.sum())
    rhs = inject_a[free] - laplacian[np.ix_(free, known)] @ v[known]
    v[free] = np.linalg.solve(system, rhs)
    source_i = np.where(known, laplacian @ v - inject_a, 0.0)
    return v, source_i


def assert_close(actual, expected, rel):
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(actual - expected)) <= rel * scale


def test_single_cell_obeys_ohms_law():
    g = np.array([[42e-6]])
    net_v, source_i = solve(
        [(g, np.array([0]), np.array([1]))],
        2,
        np.array([0.3, 0.0]),
        np.zeros(2),
    )
    assert net_v.tolist() == [0.3, 0.0]
    assert source_i[0] == pytest.approx(42e-6 * 0.3, rel=1e-15)
    assert source_i[1] == pytest.approx(-42e-6 * 0.3, rel=1e-15)


def two_by_two():
    """Cells G1 (R0-C0), G2 (R0-C1), G3 (R1-C0), G4 (R1-C1); nets R0 R1 C0 C1."""
    g1, g2, g3, g4 = 50e-6, 20e-6, 70e-6, 35e-6
    g = np.array([[g1, g2], [g3, g4]])
    return (g, np.array([0, 1]), np.array([2, 3])), (g1, g2, g3, g4)


def test_sneak_path_with_unselected_lines_floating():
    array, (g1, g2, g3, g4) = two_by_two()
    v = 0.2
    net_v, source_i = solve([array], 4, np.array([v, NAN, 0.0, NAN]), np.zeros(4))

    # With R1 and C1 floating, G2, G4 and G3 form one series path from R0 to
    # C0, in parallel with the selected cell G1.
    g_sneak = 1.0 / (1.0 / g2 + 1.0 / g4 + 1.0 / g3)
    sensed = -source_i[2]
    leak_bound = 2 * LEAK_S * v
    assert sensed == pytest.approx((g1 + g_sneak) * v, rel=1e-12, abs=leak_bound)
    assert source_i[0] == pytest.approx(sensed, rel=1e-12, abs=leak_bound)
    assert net_v[3] == pytest.approx(v * (1 - g_sneak / g2), abs=1e-9 * v)
    assert net_v[1] == pytest.approx(v * g_sneak / g3, abs=1e-9 * v)
    assert source_i[[1, 3]].tolist() == [0.0, 0.0]


def test_grounded_unselected_lines_remove_the_sneak_current():
    array, (g1, _, _, _) = two_by_two()
    v = 0.2
    _, source_i = solve([array], 4, np.array([v, 0.0, 0.0, 0.0]), np.zeros(4))
    assert -source_i[2] == g1 * v


def mixed_network(rng):
    """An 8 x 8 and a 3 x 5 array on 16 nets of every kind.

    Rows 6 and 7 of the 8 x 8 share net 6; its columns 3 and 4 share net 10.
    Nets 0, 3, 7, 9, 12 and 15 are driven, 1 and 10 fed by current sources,
    the others float; nets 14 and 15 touch no cell. A current pushed into
    driven net 0 is taken up by its voltage source.
    """
    big = (
        rng.uniform(10e-6, 100e-6, (8, 8)),
        np.array([0, 1, 2, 3, 4, 5, 6, 6]),
        np.array([7, 8, 9, 10, 10, 11, 12, 13]),
    )
    small = (
        rng.uniform(10e-6, 100e-6, (3, 5)),
        np.array([2, 4, 13]),
        np.array([0, 8, 9, 11, 12]),
    )
    fixed_v = np.full(16, NAN)
    driven = [0, 3, 7, 9, 12, 15]
    fixed_v[driven] = rng.uniform(-1.0, 1.0, len(driven))
    fixed_v[12] = 0.0
    inject_a = np.zeros(16)
    inject_a[[0, 1, 10]] = [0.5e-6, 2e-6, -1.5e-6]
    return [big, small], 16, fixed_v, inject_a


def test_mixed_network_matches_an_independent_kirchhoff_solve():
    network = mixed_network(np.random.default_rng(3))
    net_v, source_i = solve(*network)
    ref_v, ref_i = kirchhoff(*network)
    assert_close(net_v, ref_v, rel=1e-9)
    assert_close(source_i, ref_i, rel=1e-9)
    assert net_v[14] == 0.0
    assert source_i[15] == 0.0


def test_large_network_takes_the_sparse_path_and_agrees():
    rng = np.random.default_rng(4)
    rows, cols = 200, 150
    assert rows + cols - 3 > DENSE_MAX_UNKNOWNS
    g = rng.uniform(10e-6, 100e-6, (rows, cols))
    array = (g, np.arange(rows), np.arange(rows, rows + cols))
    n_nets = rows + cols
    fixed_v = np.full(n_nets, NAN)
    fixed_v[[0, 1, rows]] = [0.5, -0.3, 0.0]
    inject_a = np.zeros(n_nets)
    inject_a[10] = 1e-6
    net_v, source_i = solve([array], n_nets, fixed_v, inject_a)
    ref_v, ref_i = kirchhoff([array], n_nets, fixed_v, inject_a)
    assert_close(net_v, ref_v, rel=1e-9)
    assert_close(source_i, ref_i, rel=1e-9)


def test_currents_are_conserved_up_to_the_leak():
    network = mixed_network(np.random.default_rng(5))
    arrays, n_nets, fixed_v, inject_a = network
    net_v, source_i = solve(*network)
    floating = np.isnan(fixed_v)
    into_network = source_i.sum() + inject_a.sum()
    assert abs(into_network) <= LEAK_S * np.abs(net_v[floating]).sum() + 1e-18


def test_two_lines_tied_to_one_net():
    g = np.array([[30e-6, 40e-6], [60e-6, 10e-6]])
    v = 0.1
    # Both rows on driven net 0, column 0 grounded (net 1), column 1 floating.
    _, source_i = solve(
        [(g, np.array([0, 0]), np.array([1, 2]))],
        3,
        np.array([v, 0.0, NAN]),
        np.zeros(3),
    )
    assert source_i[0] == pytest.approx((30e-6 + 60e-6) * v, abs=2 * LEAK_S * v)
    assert source_i[1] == pytest.approx(-source_i[0], abs=2 * LEAK_S * v)


def test_a_cell_whose_lines_share_a_net_carries_no_current():
    g = np.array([[30e-6, 40e-6], [60e-6, 10e-6]])
    # Row 1 and column 1 are tied to one floating net: cell (1, 1) is shorted.
    network = ([(g, np.array([0, 2]), np.array([1, 2]))], 3)
    fixed_v = np.array([0.1, 0.0, NAN])
    net_v, source_i = solve(*network, fixed_v, np.zeros(3))
    ref_v, ref_i = kirchhoff(*network, fixed_v, np.zeros(3))
    assert_close(net_v, ref_v, rel=1e-12)
    assert_close(source_i, ref_i, rel=1e-12)
    assert cell_voltages(net_v, np.array([0, 2]), np.array([1, 2]))[1, 1] == 0.0


def test_a_floating_island_settles_at_zero():
    driven = (np.array([[20e-6]]), np.array([0]), np.array([1]))
    island = (np.full((2, 2), 50e-6), np.array([2, 3]), np.array([4, 5]))
    fixed_v = np.array([0.2, 0.0, NAN, NAN, NAN, NAN])
    net_v, source_i = solve([driven, island], 6, fixed_v, np.zeros(6))
    assert net_v[2:].tolist() == [0.0] * 4
    assert source_i[0] == 20e-6 * 0.2


def test_nets_touching_no_cell():
    g = np.array([[20e-6]])
    fixed_v = np.array([0.2, 0.0, NAN, 0.7])
    net_v, source_i = solve(
        [(g, np.array([0]), np.array([1]))], 4, fixed_v, np.zeros(4)
    )
    assert net_v[2:].tolist() == [0.0, 0.7]
    assert source_i[2:].tolist() == [0.0, 0.0]


def test_cell_voltages_are_row_minus_column():
    net_v = np.array([1.0, 0.25, -0.5])
    v = cell_voltages(net_v, np.array([0, 2]), np.array([1, 1, 0]))
    assert v.tolist() == [[0.75, 0.75, 0.0], [-0.75, -0.75, -1.5]]


def test_bad_net_index_is_rejected():
    g = np.array([[20e-6]])
    with pytest.raises(ValueError, match="outside"):
        solve([(g, np.array([0]), np.array([5]))], 2, np.zeros(2), np.zeros(2))
