"""Weights to differential conductance pairs, tiled over an array.

A weight matrix ``w`` (outputs × inputs) is stored as conductances on rows:
input ``i`` owns two rows, ``2i`` holding G⁺ and ``2i+1`` holding G⁻, and
output ``j`` is a column. Driving row ``2i`` at ``+v·x_i`` and row ``2i+1``
at ``−v·x_i`` makes column ``j`` carry ``v · Σ_i x_i (G⁺_ij − G⁻_ij)``, the
signed multiply-accumulate, as one current.

Each pair keeps one cell at ``g_low_s`` and raises the other by
``|w| · scale``: ``w = (G⁺ − G⁻) / scale`` with ``scale = (g_high_s −
g_low_s) / max|w|``.

With ``per_column`` the scale is chosen per tile and output column from that
block's own largest weight, and each tile carries its columns' scales: the
host divides every column's partial sum by its own. A few outlier weights
(a trained model's largest weight can be a hundred times its typical one)
then squeeze only their own column of their own tile into a small part of
the conductance window, not the whole matrix.
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
    scale_s: np.ndarray  # (n_outputs,) siemens per unit weight of each column


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
    per_column: bool = False

    @property
    def scale_s(self) -> float:
        """Siemens per unit weight of the whole matrix."""
        return self._scale(np.max(np.abs(self.weights)))

    def _scale(self, peak: np.ndarray | float) -> np.ndarray | float:
        peak = np.asarray(peak, dtype=float)
        window = self.g_high_s - self.g_low_s
        with np.errstate(divide="ignore"):
            scale = np.where(peak > 0, window / peak, window)
        return float(scale) if scale.ndim == 0 else scale

    def targets(self) -> np.ndarray:
        """Conductance targets (2 · n_in, n_out): rows 2i are G⁺, 2i+1 are G⁻."""
        return self._pairs(self.weights.T, self.scale_s)

    def _pairs(self, w: np.ndarray, scale_s: np.ndarray | float) -> np.ndarray:
        """Targets of a block ``w`` (n_in, n_out) at the given scale(s)."""
        raise_s = np.abs(w) * scale_s
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
        w_t = self.weights.T
        tiles = []
        for i0 in range(0, n_in, per_tile):
            for j0 in range(0, n_out, cols):
                inputs = slice(i0, min(i0 + per_tile, n_in))
                outputs = slice(j0, min(j0 + cols, n_out))
                block = w_t[inputs, outputs]
                if self.per_column:
                    scale = self._scale(np.max(np.abs(block), axis=0))
                else:
                    scale = np.full(block.shape[1], self.scale_s)
                tiles.append(Tile(len(tiles), inputs, outputs,
                                  self._pairs(block, scale), scale))
        return tiles
