"""Where each operation of the encoder runs: on the chip or on the host.

:class:`Placement` names a place for every operation of a layer; a run's
placement is one of its options and its report repeats :meth:`Placement.table`.
:class:`ChipOperations` carries out the operations of
:mod:`labctl.engine.encoder` that the placement puts on the chip, on any
:class:`Chip` (the instruments, :class:`RigChip`, or bench-direct,
:class:`labctl.engine.direct.DirectArray`), and the others on the host.

On the chip:

* **static MAC** (the projections, the attention output, the FFN's two dense
  layers): the weights are mapped to differential pairs, a scale per tile
  column, cut into tiles of the array's lines, and each tile is programmed
  by write-verify and multiplied on by the bit-serial MAC; the partial sums
  of a column of tiles are added on the host. A bias is a pair of extra rows
  whose input is fixed at 1, read in a round of its own, or added on the host.
* **dynamic MAC** (scores q·kᵀ and context softmax·v): the operand computed
  at run time (each sentence's and head's keys, or values) is written into
  cells the same way, then the other operand is multiplied on it. The
  operands go into ordinary analog cells by write-verify (a volatile cell
  decays with a 20 ms time constant, far less than a tile's write-verify
  takes on this station); every pulse counts toward the cells' wear.
* **softmax exponentials** (exponential cells): on a chip that has them
  (bench-direct, :class:`labctl.engine.direct.DirectChip`), each score,
  shifted on the host so that its row's largest is 0, is encoded as a read
  voltage across an exponential cell and its exponential is the cell's
  calibrated current (:mod:`labctl.engine.operators`). The instruments'
  demo chip has no cell formed as an exponential cell, so there the
  exponentials run on the host. The normalization (each exponential over
  its row's sum) is on the host in every case.
* **activation**: an activation cell rectifies, and the model's GELU is not
  a rectifier (it dips to −0.17 near −0.75; a ReLU in its place ruins the
  embeddings). A bench-direct chip given an
  :class:`~labctl.engine.operators.ActivationConfig` sums a row of
  activation cells with offset knees into a fitted GELU
  (:class:`~labctl.engine.operators.ActivationRow`); every other chip, and
  a bench-direct one by default, leaves the GELU on the host.

:meth:`ChipOperations.table` says where each operation ran and why an
operation asked for on the chip ran on the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Protocol, cast

import numpy as np

from labctl.engine.encoder import HOST, Linear
from labctl.engine.mapping import DifferentialMapping

CHIP = "chip"
HOST_PLACE = "host"

GELU_NOT_RECTIFIER = (
    "an activation cell rectifies (G·V forward, G·V/1000 reverse, its knee at "
    "0 V); the model's GELU dips to -0.17 near -0.75, which no one cell's "
    "monotone I-V follows, and no cell of this chip is formed as an "
    "activation cell")
"""Why the GELU runs on the host on a chip without activation cells."""

GELU_CELLS_OFF = (
    "an activation cell rectifies and the model's GELU is not a rectifier; a "
    "sum of activation cells with offset knees approximates it, off unless "
    "asked for (labctl infer --gelu-cells)")
"""Why the GELU runs on the host of a bench-direct chip by default."""

UNAVAILABLE = {"activation": GELU_NOT_RECTIFIER}
"""Operations no chip runs as the model needs unless it says, and why."""

NO_EXPONENTIAL_CELLS = "no cell of this chip is formed as an exponential cell"
"""Why the softmax's exponentials run on the host on a chip without them."""

DENSE_KIND = {
    "query": "projections", "key": "projections", "value": "projections",
    "output": "output", "intermediate": "ffn", "ffn_output": "ffn",
}
"""The placement field that governs each dense layer of a layer."""


@dataclass(frozen=True)
class Placement:
    """Chip or host for each operation of an encoder layer.

    Attributes
    ----------
    projections : str
        The q, k and v projections (static MAC).
    scores : str
        q·kᵀ of each sentence and head (dynamic MAC).
    softmax : str
        The exponentials of the softmax (exponential cells); normalized on
        the host.
    context : str
        softmax·v (dynamic MAC).
    output : str
        The attention output projection (static MAC).
    ffn : str
        The FFN's two dense layers (static MAC).
    activation : str
        The FFN's GELU (activation cells).
    biases : str
        Every dense layer's bias on the chip as extra rows, or on the host.
    """

    projections: str = CHIP
    scores: str = CHIP
    softmax: str = CHIP
    context: str = CHIP
    output: str = CHIP
    ffn: str = CHIP
    activation: str = CHIP
    biases: str = CHIP

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) not in (CHIP, HOST_PLACE):
                raise ValueError(f"placement {f.name}: {getattr(self, f.name)!r}; "
                                 f"give {CHIP} or {HOST_PLACE}")

    @classmethod
    def preset(cls, name: str) -> Placement:
        """A named placement: ``all`` (everything the chip can), ``static``
        (every weight matrix on the chip, the rest on the host),
        ``projections`` (the q, k, v projections only), ``dynamic`` (what
        attention computes at run time: the scores, the softmax's
        exponentials and the context) or ``host``."""
        host = {f.name: HOST_PLACE for f in fields(cls)}
        if name == "all":
            return cls()
        if name == "static":
            return cls(**{**host, "projections": CHIP, "output": CHIP, "ffn": CHIP,
                          "biases": CHIP})
        if name == "projections":
            return cls(**{**host, "projections": CHIP})
        if name == "dynamic":
            return cls(**{**host, "scores": CHIP, "softmax": CHIP, "context": CHIP})
        if name == "host":
            return cls(**host)
        raise ValueError(f"placement {name!r}: give all, static, projections, "
                         "dynamic or host")

    def with_changes(self, changes: dict[str, str]) -> Placement:
        """This placement with some operations moved (``{"softmax": "host"}``)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"no operation {unknown[0]!r}; the operations are "
                             f"{', '.join(sorted(known))}")
        return replace(self, **changes)

    def runs_on_chip(self, operation: str,
                     unavailable: Mapping[str, str] | None = None) -> bool:
        """Whether ``operation`` runs on the chip (asked for, and possible).

        ``unavailable`` names what the chip cannot run and why
        (:data:`UNAVAILABLE` when not given).
        """
        unavailable = UNAVAILABLE if unavailable is None else unavailable
        return getattr(self, operation) == CHIP and operation not in unavailable

    def table(self, unavailable: Mapping[str, str] | None = None) -> dict[str, str]:
        """Where each operation ran, in words, with the reason of any fallback.

        ``unavailable`` is as for :meth:`runs_on_chip`; a chip's own is
        :meth:`ChipOperations.table`.
        """
        unavailable = UNAVAILABLE if unavailable is None else unavailable
        words = {
            "projections": "q, k, v projections",
            "scores": "scores q·kᵀ",
            "softmax": "softmax exponentials",
            "context": "context softmax·v",
            "output": "attention output projection",
            "ffn": "FFN dense layers",
            "activation": "FFN activation (GELU)",
            "biases": "biases",
        }
        how = {
            "projections": "static MAC", "output": "static MAC", "ffn": "static MAC",
            "scores": "dynamic MAC, operands written at run time",
            "context": "dynamic MAC, operands written at run time",
            "biases": "extra rows, input fixed at 1",
            "softmax": "exponential cells, one cell's current per score; "
                       "normalized on the host",
            "activation": "activation cells, rectifiers with offset knees fitted "
                          "to GELU, their currents summed on the host",
        }
        out = {}
        for f in fields(self):
            name = f.name
            if self.runs_on_chip(name, unavailable):
                out[words[name]] = f"chip ({how[name]})"
            elif getattr(self, name) == CHIP:
                out[words[name]] = f"host ({unavailable[name]})"
            else:
                out[words[name]] = "host"
        out["softmax normalization, residuals, LayerNorms, pooling"] = "host"
        return out


class Chip(Protocol):
    """An array that tiles are programmed into and multiplied on.

    ``unavailable`` names the operations this chip cannot run and why; a
    chip that runs the softmax's exponentials and the GELU has the methods
    of :class:`OperatorChip`.
    """

    tile_rows: int
    tile_cols: int
    unavailable: Mapping[str, str]

    def program(self, targets_s: np.ndarray, operation: str) -> None:
        """Write-verify a tile of targets into the array's top-left block."""
        ...

    def multiply(self, x: np.ndarray, n_cols: int, operation: str) -> np.ndarray:
        """Σ_i x_i (G⁺ − G⁻)_ij of the programmed tile, siemens, ``(T, n_cols)``."""
        ...

    def fixed(self, n_in: int, n_cols: int, vectors: int,
              operation: str) -> np.ndarray:
        """The same with every input fixed at 1, one reading per vector."""
        ...


class OperatorChip(Chip, Protocol):
    """A chip with operator cells: exponential cells, activation cells."""

    def exponentials(self, shifted: np.ndarray, operation: str) -> np.ndarray:
        """``exp`` of scores shifted so that each row's largest is 0, each the
        calibrated current of one exponential cell."""
        ...

    def gelu(self, h: np.ndarray, operation: str) -> np.ndarray:
        """GELU of every element, from activation cells' currents."""
        ...


@dataclass(frozen=True)
class MappingConfig:
    """How operands become conductances."""

    g_low_s: float = 15e-6
    g_high_s: float = 85e-6


class ChipOperations:
    """The encoder's operations on a chip as a placement says, the rest on the host."""

    def __init__(self, chip: Chip, placement: Placement,
                 mapping: MappingConfig | None = None) -> None:
        self.chip = chip
        self.placement = placement
        self.mapping = mapping or MappingConfig()
        self.tiles = 0
        self.unavailable = dict(chip.unavailable)

    def runs_on_chip(self, operation: str) -> bool:
        """Whether ``operation`` runs on this chip (asked for, and possible)."""
        return self.placement.runs_on_chip(operation, self.unavailable)

    def table(self) -> dict[str, str]:
        """Where each operation ran on this chip, with the reason of any fallback."""
        return self.placement.table(self.unavailable)

    def linear(self, x: np.ndarray, dense: Linear) -> np.ndarray:
        kind = DENSE_KIND[dense.name.rpartition(".")[2]]
        if not self.runs_on_chip(kind):
            return HOST.linear(x, dense)
        on_chip_bias = self.runs_on_chip("biases")
        y = self.matmul(x, dense.weight, dense.name,
                        dense.bias if on_chip_bias else None)
        return y if on_chip_bias else y + dense.bias

    def scores(self, q: np.ndarray, k: np.ndarray, where: str) -> np.ndarray:
        if not self.runs_on_chip("scores"):
            return HOST.scores(q, k, where)
        return self.matmul(q, k, "scores")  # keys written as the weights

    def exponentials(self, shifted: np.ndarray, where: str) -> np.ndarray:
        if not self.runs_on_chip("softmax"):
            return HOST.exponentials(shifted, where)
        return cast(OperatorChip, self.chip).exponentials(shifted, "softmax")

    def context(self, probs: np.ndarray, v: np.ndarray, where: str) -> np.ndarray:
        if not self.runs_on_chip("context"):
            return HOST.context(probs, v, where)
        return self.matmul(probs, v.T, "context")  # values written as the weights

    def gelu(self, h: np.ndarray, where: str) -> np.ndarray:
        if not self.runs_on_chip("activation"):
            return HOST.gelu(h, where)
        return cast(OperatorChip, self.chip).gelu(h, "activation")

    def matmul(self, x: np.ndarray, w: np.ndarray, operation: str,
               bias: np.ndarray | None = None) -> np.ndarray:
        """``x @ w.T (+ bias)`` on the chip, tile by tile; partial sums on the host."""
        chip, m = self.chip, self.mapping
        mapping = DifferentialMapping(w, m.g_low_s, m.g_high_s, per_column=True)
        y = np.zeros((x.shape[0], w.shape[0]))
        for tile in mapping.tiles(chip.tile_rows, chip.tile_cols):
            chip.program(tile.targets_s, operation)
            width = tile.outputs.stop - tile.outputs.start
            part = chip.multiply(x[:, tile.inputs], width, operation)
            y[:, tile.outputs] += part / tile.scale_s
            self.tiles += 1
        if bias is not None:
            y += self._bias(bias, x.shape[0], operation)
        return y

    def _bias(self, bias: np.ndarray, vectors: int, operation: str) -> np.ndarray:
        """A bias as one pair of rows per column, input fixed at 1."""
        chip, m = self.chip, self.mapping
        mapping = DifferentialMapping(bias[:, None], m.g_low_s, m.g_high_s,
                                      per_column=True)
        out = np.zeros((vectors, bias.size))
        for tile in mapping.tiles(2, chip.tile_cols):
            chip.program(tile.targets_s, operation)
            width = tile.outputs.stop - tile.outputs.start
            read = chip.fixed(1, width, vectors, operation)
            out[:, tile.outputs] = read / tile.scale_s
            self.tiles += 1
        return out
