"""Which bus every wired line of an array is on, moved by the fewest relays."""

from __future__ import annotations

from collections.abc import Sequence

from labctl.rig import Rig

Bus = str | None  # a matrix row letter, or None for a floating line


class ArrayLines:
    """The relay state of one array's lines, changed by deltas.

    Get it from :meth:`labctl.rig.Rig.lines`, which keeps one per array, so
    that every procedure and engine step sees the same relay state.

    Each change opens the relays that must open before it closes new ones,
    so a line is never on two buses at once (no bus-to-bus short). The
    guard checks that the switching is cold.
    """

    def __init__(self, rig: Rig, array: str) -> None:
        self.rig = rig
        self.array = array
        self.row_pins, self.col_pins = rig.array_pins(array)
        self.row_bus: list[Bus] = [None] * len(self.row_pins)
        self.col_bus: list[Bus] = [None] * len(self.col_pins)
        buses = set(rig.station.wiring.buses)
        self._xp = {
            (pin, bus): rig.crosspoint(pin, bus)
            for pin in self.row_pins + self.col_pins
            for bus in buses
        }

    @property
    def n_rows(self) -> int:
        return len(self.row_pins)

    @property
    def n_cols(self) -> int:
        return len(self.col_pins)

    def clear(self) -> None:
        """Open every relay of the matrix."""
        self.rig.matrix.open_all()
        self.forget()

    def forget(self) -> None:
        """Record every line as floating (after the matrix opened all relays)."""
        self.row_bus = [None] * self.n_rows
        self.col_bus = [None] * self.n_cols

    def set(self, row_bus: Sequence[Bus] | None = None,
            col_bus: Sequence[Bus] | None = None) -> None:
        """Put rows and columns on the given buses (None: leave unchanged)."""
        opens: list[str] = []
        closes: list[str] = []
        if row_bus is not None:
            self._delta(self.row_pins, self.row_bus, row_bus, opens, closes)
        if col_bus is not None:
            self._delta(self.col_pins, self.col_bus, col_bus, opens, closes)
        if opens:
            self.rig.matrix.open(opens)
        if closes:
            self.rig.matrix.close(closes)

    def _delta(self, pins: list[str], now: list[Bus], want: Sequence[Bus],
               opens: list[str], closes: list[str]) -> None:
        if len(want) != len(now):
            raise ValueError(f"{self.array}: {len(want)} buses given for {len(now)} lines")
        xp = self._xp
        for k, (old, new) in enumerate(zip(now, want, strict=True)):
            if old == new:
                continue
            if old is not None:
                opens.append(xp[pins[k], old])
            if new is not None:
                closes.append(xp[pins[k], new])
            now[k] = new

    def select(self, row: int, col: int, row_bus: str, col_bus: str,
               other_rows: Bus, other_cols: Bus) -> None:
        """One cell selected: its row and column on buses, the others as given."""
        rows = [other_rows] * self.n_rows
        cols = [other_cols] * self.n_cols
        rows[row] = row_bus
        cols[col] = col_bus
        self.set(rows, cols)
