"""The attention engine: one transformer attention head run on the crossbar.

Weights are mapped to conductance pairs, programmed and run on the chip; every
run is compared with the float64 host computation of
:mod:`labctl.engine.reference`.
"""
