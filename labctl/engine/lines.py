"""Which bus every wired line of an array is on, moved by the fewest relays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labctl.rig import Rig

Bus = str | None  # a matrix row letter, or None for a floating line
FLOATING = -1  # the code of a line on no bus


class ArrayLines:
    """The relay state of one array's lines, changed by deltas.

    Get it from :meth:`labctl.rig.Rig.lines`, which keeps one per array, so
    that every procedure and engine step sees the same relay state.

    Each change opens the relays that must open before it closes new ones,
    so a line is never on two buses at once (no bus-to-bus short). The
    guard checks that the switching is cold. Buses can be given by letter
    (:meth:`set`) or, in hot loops, by code, an index into :attr:`buses`
    with :data:`FLOATING` for none (:meth:`set_codes`).
    """

    def __init__(self, rig: Rig, array: str) -> None:
        self.rig = rig
        self.array = array
        self.row_pins, self.col_pins = rig.array_pins(array)
        self.buses = sorted(rig.station.wiring.buses)
        self._code = {bus: k for k, bus in enumerate(self.buses)}
        pins = self.row_pins + self.col_pins
        # _xp[line][code]: the crosspoint joining that line to that bus
        self._xp = [[rig.crosspoint(pin, bus) for bus in self.buses] for pin in pins]
        self._now = np.full(len(pins), FLOATING, dtype=np.int64)

    @property
    def n_rows(self) -> int:
        return len(self.row_pins)

    @property
    def n_cols(self) -> int:
        return len(self.col_pins)

    @property
    def row_bus(self) -> list[Bus]:
        return [self._name(c) for c in self._now[: self.n_rows]]

    @property
    def col_bus(self) -> list[Bus]:
        return [self._name(c) for c in self._now[self.n_rows :]]

    def code(self, bus: Bus) -> int:
        """The code of a bus letter (None: floating)."""
        return FLOATING if bus is None else self._code[bus]

    def _name(self, code: int) -> Bus:
        return None if code == FLOATING else self.buses[code]

    def codes(self) -> list[int]:
        """The bus code of every line, rows then columns (:data:`FLOATING`: none)."""
        return self._now.tolist()

    def crosspoints(self, codes: Sequence[int]) -> list[list[str]]:
        """Per line, rows then columns, the crosspoints joining it to the
        buses of ``codes``, in that order."""
        return [[xps[code] for code in codes] for xps in self._xp]

    def switched_elsewhere(self, codes: Sequence[int]) -> None:
        """Record lines moved by something other than :meth:`set_codes` (a
        program run on the instrument): their bus codes, rows then columns."""
        self._now[:] = codes

    def clear(self) -> None:
        """Open every relay of the matrix."""
        self.rig.matrix.open_all()
        self.forget()

    def forget(self) -> None:
        """Record every line as floating (after the matrix opened all relays)."""
        self._now[:] = FLOATING

    def set(self, row_bus: Sequence[Bus] | None = None,
            col_bus: Sequence[Bus] | None = None) -> None:
        """Put rows and columns on the given buses (None: leave unchanged)."""
        rows = None if row_bus is None else [self.code(b) for b in row_bus]
        cols = None if col_bus is None else [self.code(b) for b in col_bus]
        self.set_codes(rows, cols)

    def set_codes(self, rows: Sequence[int] | np.ndarray | None = None,
                  cols: Sequence[int] | np.ndarray | None = None) -> None:
        """As :meth:`set`, with buses given by code."""
        now = self._now
        moves = []  # (line, present code, wanted code) of every line that moves
        for offset, codes, size in ((0, rows, self.n_rows),
                                    (self.n_rows, cols, self.n_cols)):
            if codes is None:
                continue
            codes = np.asarray(codes, dtype=np.int64)
            if codes.shape != (size,):
                raise ValueError(f"{self.array}: {codes.size} buses given for "
                                 f"{size} lines")
            present = now[offset : offset + size]
            moved = np.flatnonzero(codes != present)
            if moved.size:
                moves += zip((moved + offset).tolist(), present[moved].tolist(),
                             codes[moved].tolist())
        if not moves:
            return
        xp = self._xp
        leaving = [(line, old) for line, old, _ in moves if old != FLOATING]
        joining = [(line, new) for line, _, new in moves if new != FLOATING]
        if leaving:
            self.rig.matrix.open([xp[line][old] for line, old in leaving])
            for line, _ in leaving:
                now[line] = FLOATING
        if joining:
            self.rig.matrix.close([xp[line][new] for line, new in joining])
            for line, new in joining:
                now[line] = new

    def select(self, row: int, col: int, row_bus: str, col_bus: str,
               other_rows: Bus, other_cols: Bus) -> None:
        """One cell selected: its row and column on buses, the others as given."""
        rows = np.full(self.n_rows, self.code(other_rows))
        cols = np.full(self.n_cols, self.code(other_cols))
        rows[row] = self.code(row_bus)
        cols[col] = self.code(col_bus)
        self.set_codes(rows, cols)
