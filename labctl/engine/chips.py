"""The chips an encoder's operations run on, and the ledger of what they cost.

Two chips implement :class:`labctl.engine.placement.Chip`: :class:`RigChip`
programs and multiplies through a station's instruments (write-verify and
the analog MAC over pyvisa, the drivers and the switch matrix), and
:class:`labctl.engine.direct.DirectArray` acts on a simulated bench's arrays
directly. Both keep a :class:`Ledger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.readout import ReadChainConfig
from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.rig import Rig

SENSE_CHANNELS = 4
"""Columns read at once by the demo station's sense channels."""


@dataclass
class OperatorTally:
    """What one kind of operator cell took: counts, bench time and energy.

    ``setup_*`` is the cells' preparation, once per run: forming (under its
    compliance), and the ranging and calibration readings. Energies are the
    cells' own ``V · I · t``, J.
    """

    cells_formed: int = 0  # cells whose current reached the forming compliance
    values: int = 0  # results computed: one exponential, or one activation
    reads: int = 0  # readings of the cells for those values
    rounds: int = 0  # readings of the sense channels those took
    clipped: int = 0  # inputs beyond the read window, read at its edge
    setup_reads: int = 0  # ranging and calibration readings
    forming_s: float = 0.0  # bench time of the forming ramps' steps, cell after cell
    setup_j: float = 0.0
    read_bench_j: float = 0.0  # with the bench's integration time
    read_chain_j: float = 0.0  # with the read chain's conversion time


@dataclass
class Ledger:
    """What the analog operations on one array took: counts and energy.

    Energies are the cells' own dissipation, ``V · I · t`` summed over every
    cell with a voltage across it (``V² · G · t`` for an ohmic cell), in J:
    ``*_bench_j`` with the bench's integration times (the SMUs'),
    ``*_chain_j`` with the read chain's conversion time. ``exponential``
    and ``activation`` are the operator cells' (:mod:`labctl.engine.operators`).
    """

    cells_programmed: int = 0
    pulses: int = 0
    trains: int = 0  # write-verify rounds summed over cells (a bus message each)
    verify_reads: int = 0
    mac_rounds: int = 0  # bit-plane readings of a column group
    calibration_rounds: int = 0  # readings of calibration patterns
    recalibrations: int = 0  # reference patterns read again after drift
    half_select_exposed: int = 0  # cells with a threshold under half a pulse
    mac_vectors: int = 0
    macs: int = 0  # multiply-accumulates done in the analog domain
    pulse_j: float = 0.0
    verify_read_bench_j: float = 0.0
    mac_bench_j: float = 0.0
    mac_chain_j: float = 0.0
    exponential: OperatorTally = field(default_factory=OperatorTally)
    activation: OperatorTally = field(default_factory=OperatorTally)
    per_operation: dict[str, int] = field(default_factory=dict)  # macs by operation
    cells_by_operation: dict[str, int] = field(default_factory=dict)

    def count(self, operation: str, macs: int) -> None:
        """Add multiply-accumulates to an operation's tally."""
        self.per_operation[operation] = self.per_operation.get(operation, 0) + macs


class RigChip:
    """Tiles programmed and multiplied on through a station's instruments.

    The instruments reach the demo chip's weight array only, none of whose
    cells is formed as an exponential or an activation cell: the softmax's
    exponentials and the GELU of a run on this chip are computed on the host
    (:attr:`unavailable`).
    """

    unavailable = {
        "softmax": "the instruments reach only the demo chip's weight array; no "
                   "cell of it is formed as an exponential cell",
        "activation": "the instruments reach only the demo chip's weight array; "
                      "no cell of it is formed as an activation cell, and one "
                      "rectifying cell is not the model's GELU",
    }

    def __init__(self, rig: Rig, array: str, write: WriteVerifyConfig,
                 mac: MacConfig, chain: ReadChainConfig | None = None) -> None:
        self.writer = WriteVerify(rig, array, write)
        self.mac = AnalogMac(rig, array, mac, chain)
        lines = self.writer.lines
        self.tile_rows = lines.n_rows - lines.n_rows % 2
        self.tile_cols = lines.n_cols
        self.ledger = Ledger()
        self._tiles = 0

    def program(self, targets_s: np.ndarray, operation: str = "") -> None:
        logs = self.writer.program(targets_s)
        ledger = self.ledger
        ledger.cells_programmed += len(logs)
        ledger.pulses += sum(e.pulses for e in logs)
        ledger.trains += sum(e.rounds for e in logs)
        if operation:
            by_op = ledger.cells_by_operation
            by_op[operation] = by_op.get(operation, 0) + len(logs)
        self._tiles += 1
        rounds = self.mac.rounds
        self.mac.calibrate(targets_s, self._tiles)
        ledger.calibration_rounds += self.mac.rounds - rounds

    def multiply(self, x: np.ndarray, n_cols: int, operation: str = "") -> np.ndarray:
        rounds = self.mac.rounds
        out = self.mac.run(x, n_cols)
        self._count(x.shape[0], x.shape[1], n_cols, rounds, operation)
        return out

    def fixed(self, n_in: int, n_cols: int, vectors: int,
              operation: str = "") -> np.ndarray:
        rounds = self.mac.rounds
        out = self.mac.fixed(n_in, n_cols, vectors)
        self._count(vectors, n_in, n_cols, rounds, operation)
        return out

    def _count(self, vectors: int, n_in: int, n_cols: int, rounds_before: int,
               operation: str) -> None:
        ledger = self.ledger
        ledger.mac_vectors += vectors
        ledger.mac_rounds += self.mac.rounds - rounds_before
        macs = vectors * n_in * n_cols
        ledger.macs += macs
        if operation:
            ledger.count(operation, macs)
