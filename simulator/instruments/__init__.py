"""Simulated instruments that answer the commands of their manuals.

Each takes one message with ``write(message)`` and hands back replies with
``read()`` (None when nothing waits). :func:`make_instrument` builds the one a
station entry names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labctl.station import MATRIX_MODELS, InstrumentSpec
from simulator.instruments.k707b import K707B
from simulator.instruments.k2600 import K2600

if TYPE_CHECKING:
    from simulator.bench import Bench
    from simulator.tsp import TspInstrument


def make_instrument(name: str, spec: InstrumentSpec, bench: Bench) -> TspInstrument:
    """The simulated instrument of one station entry.

    A master (an instrument with its own resource) is TSP-Link node 1 unless
    its entry names a node.
    """
    node = spec.node or 1
    if spec.model in MATRIX_MODELS:
        return K707B(name, spec.model, bench, dict(spec.cards or {}), node)
    return K2600(name, spec.model, bench, node)


__all__ = ["K2600", "K707B", "make_instrument"]
