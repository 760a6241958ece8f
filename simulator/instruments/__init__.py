"""Simulated instruments that answer the commands of their manuals.

Each takes one message with ``write(message)`` and hands back replies with
``read()`` (None when nothing waits). :func:`make_instrument` builds the one a
station entry names: the TSP 2600B and 707B/708B, and the SCPI 2450, 2400 and
B2900.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from labctl.station import MATRIX_MODELS, InstrumentSpec
from simulator.instruments.b2900 import B2900
from simulator.instruments.k707b import K707B
from simulator.instruments.k2400 import K2400
from simulator.instruments.k2450 import K2450
from simulator.instruments.k2600 import K2600

if TYPE_CHECKING:
    from simulator.bench import Bench
    from simulator.instruments._smu import SimulatedSmu
    from simulator.tsp import TspInstrument

SCPI_CLASSES: dict[str, Callable[[str, str, Bench], SimulatedSmu]] = {
    "2450": K2450,
    "2400": K2400,
    "B2901A": B2900,
    "B2902A": B2900,
    "B2912A": B2900,
}
"""The simulated SCPI instrument of each SCPI model."""


def make_instrument(
    name: str, spec: InstrumentSpec, bench: Bench
) -> TspInstrument | SimulatedSmu:
    """The simulated instrument of one station entry.

    A TSP master (an instrument with its own resource) is TSP-Link node 1
    unless its entry names a node.
    """
    if spec.model in SCPI_CLASSES:
        return SCPI_CLASSES[spec.model](name, spec.model, bench)
    node = spec.node or 1
    if spec.model in MATRIX_MODELS:
        return K707B(name, spec.model, bench, dict(spec.cards or {}), node)
    return K2600(name, spec.model, bench, node)


__all__ = ["B2900", "K2400", "K2450", "K2600", "K707B", "make_instrument"]
