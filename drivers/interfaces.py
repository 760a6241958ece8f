"""The two interfaces procedures use, so that they do not depend on a model.

A procedure asks for a :class:`SourceMeasureChannel` and a
:class:`SwitchMatrix`; any driver with these members fits, whichever
instrument it drives. Both protocols are runtime-checkable: ``isinstance``
looks the members up without reading any property, so no command is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

# typing_extensions checks members statically (as Python 3.12+ does); the
# 3.11 typing.Protocol would read every property and so query the instrument.
from typing_extensions import Protocol, runtime_checkable


@runtime_checkable
class SourceMeasureChannel(Protocol):
    """One output of a source-measure unit, sourcing voltage and measuring current."""

    @property
    def name(self) -> str:
        """The channel's name, ``"<instrument>.<channel>"`` (``"smu1.smua"``)."""
        ...

    #: DC source level, V.
    source_voltage: float
    #: Current limit (compliance), A.
    current_limit: float
    #: Whether the output is on.
    output_enabled: bool
    #: Integration time, power-line cycles.
    nplc: float

    def measure_current(self) -> float:
        """Measure one current reading, A."""
        ...

    def sweep_voltage(
        self, levels_v: Sequence[float], settle_s: float
    ) -> npt.NDArray[np.float64]:
        """Source each level in turn (V) and return the current at each (A)."""
        ...

    def pulse_train(
        self, level_v: float, width_s: float, bias_v: float, off_s: float, count: int
    ) -> npt.NDArray[np.float64]:
        """Apply `count` pulses and return the current at each pulse's end (A)."""
        ...


@runtime_checkable
class SwitchMatrix(Protocol):
    """A relay matrix joining buses (rows) to pins (columns) at crosspoints."""

    def close(self, channels: Iterable[str]) -> None:
        """Close the relays of `channels`, leaving others as they are."""
        ...

    def open(self, channels: Iterable[str]) -> None:
        """Open the relays of `channels`, leaving others as they are."""
        ...

    def exclusive_close(self, channels: Iterable[str]) -> None:
        """Close the relays of `channels` and open every other one."""
        ...

    def open_all(self) -> None:
        """Open every relay."""
        ...

    def closed_channels(self) -> list[str]:
        """Return the closed crosspoints, sorted."""
        ...
