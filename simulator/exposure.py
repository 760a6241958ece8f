"""What reached the chip: the highest voltage every line and cell has seen.

The bench notes each configuration its sources and relays put on the chip
(the pattern of closed relays and every source's level) and works out the
nets and voltages only when asked, so that recording costs the hot paths one
append. A net that no source or ground holds floats somewhere between the
lowest and the highest fixed level (0 V included); it is counted at
whichever end is worse, so the figures are upper bounds there and exact
where every line is held.

A current source is counted anywhere within its voltage limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from simulator.bench import _Nets
    from simulator.device import CellArray

FOLD_AT = 200_000
"""Configurations kept unsummed before the bench folds them into the maxima."""

_FOLD_CHUNK = 256
"""Configurations folded in one set of array operations."""


class Exposure:
    """The highest |V| across every cell and on every line of a bench's chip.

    Parameters
    ----------
    arrays : dict of str to CellArray
        The chip's arrays.
    channels : sequence of str
        The SMU channels whose levels each noted configuration lists, in order.
    nets_of : callable
        The nets of a pattern of closed relays (the bench's own).

    Attributes
    ----------
    max_limit_a : float
        The highest current limit of an output that was on, A.
    """

    def __init__(
        self,
        arrays: dict[str, CellArray],
        channels: Sequence[str],
        nets_of: Callable[[int], _Nets],
    ) -> None:
        self._arrays = {name: a.shape for name, a in arrays.items()}
        self.channels = list(channels)
        self.max_limit_a = 0.0
        self._nets_of = nets_of
        #: The configurations noted and not yet folded: their relay patterns,
        #: and their sources' levels one after the other, :attr:`channels` per
        #: configuration. The bench appends to both directly (the cheapest
        #: record there is) and calls :meth:`fold` once they hold
        #: :data:`FOLD_AT`.
        self.relays: list[int] = []
        self.levels: list[Any] = []
        self._cells = {name: np.zeros(shape) for name, shape in self._arrays.items()}
        self._rows = {name: np.zeros(shape[0]) for name, shape in self._arrays.items()}
        self._cols = {name: np.zeros(shape[1]) for name, shape in self._arrays.items()}

    def note(self, relays: int, levels: tuple[Any, ...]) -> None:
        """Record one configuration: the closed wired relays (a mask) and
        the sources' levels.

        ``levels`` has one entry per channel of :attr:`channels`: None for an
        output that is off, the level in V for a voltage source, and for a
        current source a complex number whose imaginary part is its voltage
        limit.
        """
        self.relays.append(relays)
        self.levels += levels
        if len(self.relays) >= FOLD_AT:
            self.fold()

    # Views.

    def cell_max_v(self, array: str) -> np.ndarray:
        """Per cell of an array, the highest |V| across it, V (rows, cols)."""
        self.fold()
        return self._cells[array].copy()

    def line_max_v(self, array: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row and per column line of an array, the highest |V| on it, V."""
        self.fold()
        return self._rows[array].copy(), self._cols[array].copy()

    def max_cell_v(self) -> float:
        """The highest |V| any cell saw, V."""
        self.fold()
        return max((float(c.max()) for c in self._cells.values()), default=0.0)

    def max_line_v(self) -> float:
        """The highest |V| any chip line saw, V."""
        self.fold()
        lines = [*self._rows.values(), *self._cols.values()]
        return max((float(v.max()) for v in lines if v.size), default=0.0)

    def cells_above(self, limit_v: float) -> list[tuple[str, int, int, float]]:
        """Every cell that saw more than ``limit_v``: (array, row, col, V)."""
        self.fold()
        found = []
        for name, cells in self._cells.items():
            for r, c in zip(*np.nonzero(cells > limit_v), strict=True):
                found.append((name, int(r), int(c), float(cells[r, c])))
        return found

    # Folding.

    def fold(self) -> None:
        """Fold the pending configurations into the maxima.

        Every distinct (relay pattern, levels) is folded once, all of them
        in a few array operations: per configuration the bounds of every
        net, then of every line, then of every cell across its two lines.
        """
        relays, levels = self.relays[:], self.levels[:]
        self.relays.clear()
        self.levels.clear()
        width = len(self.channels)
        if not relays or not width:
            return
        configs = list(
            dict.fromkeys(
                (pattern, tuple(levels[k * width : (k + 1) * width]))
                for k, pattern in enumerate(relays)
            )
        )
        patterns = list(dict.fromkeys(pattern for pattern, _ in configs))
        nets = [self._nets_of(pattern) for pattern in patterns]
        which = {pattern: k for k, pattern in enumerate(patterns)}
        for start in range(0, len(configs), _FOLD_CHUNK):
            self._fold_configs(configs[start : start + _FOLD_CHUNK], nets, which)

    def _fold_configs(
        self,
        configs: list[tuple[int, tuple[Any, ...]]],
        nets: list[_Nets],
        which: dict[int, int],
    ) -> None:
        count, width = len(configs), len(self.channels)
        n_nets = max(n.n_nets for n in nets) + 1  # a spare net for "none"
        spare = n_nets - 1
        # Each channel's net in each configuration, and the range of its level
        # (a current source's is its voltage limit, the imaginary part).
        chosen = np.array([which[pattern] for pattern, _ in configs], dtype=np.intp)
        channel_nets = np.array(
            [[n.channel_net.get(ch, -1) for ch in self.channels] for n in nets],
            dtype=np.intp,
        )[chosen]
        grounds = np.array([n.ground_net for n in nets], dtype=np.intp)[chosen]
        grounds[grounds < 0] = spare
        values = np.array(
            [
                [math.nan if v is None else v for v in snapshot]
                for _, snapshot in configs
            ],
            dtype=complex,
        )
        limited = values.imag != 0
        lo = np.where(limited, -values.imag, values.real)
        hi = np.where(limited, values.imag, values.real)
        unused = np.isnan(values.real) | (channel_nets < 0)
        net_of = np.where(unused, spare, channel_nets)
        lo[unused], hi[unused] = math.inf, -math.inf
        low = np.full((count, n_nets), math.inf)
        high = np.full((count, n_nets), -math.inf)
        rows_k = np.repeat(np.arange(count), width)
        np.minimum.at(low, (rows_k, net_of.reshape(-1)), lo.reshape(-1))
        np.maximum.at(high, (rows_k, net_of.reshape(-1)), hi.reshape(-1))
        grounded = np.flatnonzero(grounds != spare)
        low[grounded, grounds[grounded]] = np.minimum(
            low[grounded, grounds[grounded]], 0.0
        )
        high[grounded, grounds[grounded]] = np.maximum(
            high[grounded, grounds[grounded]], 0.0
        )
        low[:, spare], high[:, spare] = math.inf, -math.inf
        # A net no source holds floats between the lowest and highest level.
        held = np.isfinite(low)
        floor = np.minimum(np.where(held, low, 0.0).min(axis=1), 0.0)
        ceiling = np.maximum(np.where(held, high, 0.0).max(axis=1), 0.0)
        low = np.where(held, low, floor[:, None])
        high = np.where(held, high, ceiling[:, None])
        for a, name in enumerate(self._arrays):
            line_rows = np.array([nets[which[p]].lines[a][0] for p, _ in configs])
            line_cols = np.array([nets[which[p]].lines[a][1] for p, _ in configs])
            lo_r = np.take_along_axis(low, line_rows, axis=1)
            hi_r = np.take_along_axis(high, line_rows, axis=1)
            lo_c = np.take_along_axis(low, line_cols, axis=1)
            hi_c = np.take_along_axis(high, line_cols, axis=1)
            across = np.maximum(
                hi_r[:, :, None] - lo_c[:, None, :], hi_c[:, None, :] - lo_r[:, :, None]
            ).max(axis=0)
            np.maximum(self._cells[name], across, out=self._cells[name])
            np.maximum(
                self._rows[name],
                np.maximum(np.abs(hi_r), np.abs(lo_r)).max(axis=0),
                out=self._rows[name],
            )
            np.maximum(
                self._cols[name],
                np.maximum(np.abs(hi_c), np.abs(lo_c)).max(axis=0),
                out=self._cols[name],
            )
