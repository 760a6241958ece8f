"""Weights to differential conductance pairs, tiled over an array.

A weight matrix ``w`` (outputs × inputs) is stored as conductances on rows:
input ``i`` owns two rows, ``2i`` holding G⁺ and ``2i+1`` holding G⁻, and
output ``j`` is a column. Driving row ``2i`` at ``+v·x_i`` and row ``2i+1``
at ``−v·x_i`` makes column ``j`` carry ``v · Σ_i x_i (G⁺_ij − G⁻_ij)``, the
signed multiply-accumulate, as one current.

Each pair keeps one cell at ``g_low_s`` and raises the other by
``|w| · scale``: ``w = (G⁺ − G⁻) / scale`` with ``scale = (g_high_s −
g_low_s) / max|w|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One array-sized block of the conductance target matrix."""

    index: int
    inputs: slice  # input indices of the weight matrix
    outputs: slice  # output indices
    targets_s: np.ndarray  # (2 * n_inputs, n_outputs) conductance targets


@dataclass(frozen=True)
class DifferentialMapping:
    """A weight matrix as differential conductance pairs.

    Parameters
    ----------
    weights : (n_out, n_in) array
    g_low_s, g_high_s : conductance of a zero weight's cells and of the
        largest weight's raised cell, in siemens.
    """

    weights: np.ndarray
    g_low_s: float
    g_high_s: float

    @property
    def scale_s(self) -> float:
        """Siemens per unit weight."""
        peak = float(np.max(np.abs(self.weights)))
        return (self.g_high_s - self.g_low_s) / peak if peak > 0 else 0.0

    def targets(self) -> np.ndarray:
        """Conductance targets (2 · n_in, n_out): rows 2i are G⁺, 2i+1 are G⁻."""
        w = self.weights.T  # (n_in, n_out)
        raise_s = np.abs(w) * self.scale_s
        g_plus = self.g_low_s + np.where(w > 0, raise_s, 0.0)
        g_minus = self.g_low_s + np.where(w < 0, raise_s, 0.0)
        out = np.empty((2 * w.shape[0], w.shape[1]))
        out[0::2] = g_plus
        out[1::2] = g_minus
        return out

    def weights_from(self, conductance_s: np.ndarray) -> np.ndarray:
        """The weights (n_out, n_in) that a map of conductances represents."""
        diff = conductance_s[0::2] - conductance_s[1::2]
        return (diff / self.scale_s).T

    def tiles(self, rows: int, cols: int) -> list[Tile]:
        """Cut the targets into blocks of ``rows`` array rows × ``cols`` columns."""
        if rows % 2:
            raise ValueError(f"a tile needs an even number of rows for pairs, not {rows}")
        n_out, n_in = self.weights.shape
        per_tile = rows // 2
        targets = self.targets()
        tiles = []
        for i0 in range(0, n_in, per_tile):
            for j0 in range(0, n_out, cols):
                inputs = slice(i0, min(i0 + per_tile, n_in))
                outputs = slice(j0, min(j0 + cols, n_out))
                block = targets[2 * inputs.start : 2 * inputs.stop, outputs]
                tiles.append(Tile(len(tiles), inputs, outputs, block))
        return tiles
