"""Instrument drivers on pymeasure's Instrument / Channel machinery.

One module per instrument family (:mod:`drivers.k2600`, :mod:`drivers.k707b`),
the shared TSP transport (:mod:`drivers.tsp`) and the interfaces procedures
use (:mod:`drivers.interfaces`).
"""
