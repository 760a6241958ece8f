"""The base of every labctl procedure.

A labctl procedure is a pymeasure :class:`~pymeasure.experiment.Procedure`:
its Parameters, ``DATA_COLUMNS``, ``emit`` and ``should_stop`` work with
pymeasure's own tools. The runner gives it ``self.rig`` (the station's
instruments behind the safety guard) and ``self.sink`` (where maps, results
and what the run did to cells are stored, beyond the data columns) before
``startup``. A procedure that can be continued after a stop overrides
:meth:`LabProcedure.resume_from`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pymeasure.experiment import Procedure

from labctl.station import Station

if TYPE_CHECKING:
    from labctl.rig import Rig
    from labctl.storage import CellWrite


class ParameterError(ValueError):
    """A procedure parameter that cannot be used, in one line."""


class Sink(Protocol):
    def add_map(
        self, array: str, kind: str, values_s: np.ndarray, read_voltage_v: float | None
    ) -> None: ...

    def add_result(self, item: int, label: str, metrics: dict[str, Any]) -> None: ...

    def add_cells(self, cells: Sequence[CellWrite]) -> None:
        """Cells read, programmed or swept; stored with the next point."""


class _NullSink:
    def add_map(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_result(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_cells(self, *args: Any, **kwargs: Any) -> None:
        pass


class LabProcedure(Procedure):
    """A procedure run on a station's rig."""

    #: Name on the command line (``labctl run NAME``).
    NAME = ""

    rig: Rig
    sink: Sink = _NullSink()
    summary: dict[str, Any]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary = {}

    def check(self, station: Station) -> None:
        """Refuse what the station and chip do not allow, before anything opens.

        Subclasses add their own checks; raise :class:`ParameterError`.
        """

    #: The tighter limit of the operator mode of the procedure's array, V,
    #: and its key, as :meth:`note_mode_limit` found it; None for none.
    mode_limit: tuple[float, str] | None = None

    def note_mode_limit(self, station: Station) -> None:
        """Find the limit of the procedure's array's operator mode, if the
        station gives one (``limits.modes``) and the array comes formed:
        every level :meth:`check_level` checks is held under it too."""
        chip, array = station.chip_spec, getattr(self, "array", None)
        if chip is None or array not in chip.arrays or not chip.arrays[array].formed:
            return
        mode = chip.arrays[array].mode
        tighter = station.limits.modes.get(mode)
        if tighter is not None and tighter.max_voltage_v is not None:
            self.mode_limit = (tighter.max_voltage_v,
                               f"modes.{mode}.max_voltage_v (array {array})")

    def check_level(self, name: str, level_v: float, limit_v: float, what: str) -> None:
        self.require(abs(level_v) <= limit_v,
                     f"{self.NAME}: {name} = {level_v:g} V exceeds the chip's {what} "
                     f"of {limit_v:g} V")
        if self.mode_limit is not None:
            mode_v, key = self.mode_limit
            self.require(abs(level_v) <= mode_v,
                         f"{self.NAME}: {name} = {level_v:g} V exceeds the chip's "
                         f"{key} of {mode_v:g} V")

    def check_levels(self, station: Station, pulses: tuple[str, ...] = (),
                     reads: tuple[str, ...] = ()) -> None:
        """Named level parameters within the chip's limits: ``pulses`` under
        its ``max_voltage_v``, ``reads`` under its ``max_read_voltage_v``."""
        limits = station.limits
        for name in pulses:
            self.check_level(name, getattr(self, name), limits.max_voltage_v,
                             "max_voltage_v")
        for name in reads:
            self.check_level(name, getattr(self, name), limits.max_read_voltage_v,
                             "max_read_voltage_v")

    def check_cell(self, station: Station, array: str, row: int | None = None,
                   col: int | None = None) -> None:
        """The array exists and (row, col) is one of its wired lines."""
        rows, cols = station.wired_lines(array)
        self.require(rows > 0 and cols > 0,
                     f"{self.NAME}: array = {array!r}: the station reaches no lines of "
                     f"it; wired arrays: {', '.join(station.wired_arrays())}")
        if row is not None:
            self.require(row < rows, f"{self.NAME}: row = {row}: array {array} has "
                         f"{rows} wired rows (0..{rows - 1})")
        if col is not None:
            self.require(col < cols, f"{self.NAME}: col = {col}: array {array} has "
                         f"{cols} wired columns (0..{cols - 1})")

    def resume_from(self, points: list[dict[str, Any]],
                    maps: dict[str, np.ndarray]) -> None:
        """Take up a run after the points it stored, to measure only the rest.

        ``maps`` holds the run's stored maps by kind (the last of each kind).
        Called after :meth:`check`, before ``startup``.
        """
        raise ParameterError(f"{self.NAME} runs cannot be resumed; start a new run")

    def progress(self, done: int, total: int) -> None:
        self.emit("progress", 100.0 * done / max(total, 1))

    @staticmethod
    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ParameterError(message)
