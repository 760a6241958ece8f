"""One attention head of a real transformer, its projections on the chip.

The query, key and value projections of one head (3 × 32 outputs of 384
inputs for all-MiniLM-L6-v2) are mapped to differential conductance pairs,
cut into tiles the size of the array lines the station reaches, and run tile
by tile: each tile is programmed by write-verify, then every token's input
slice is multiplied on it by the analog MAC, and the tile's partial sums are
added on the host. The biases, the scores q·kᵀ, the softmax and the weighted
sum of the values run on the host in this version; :data:`PLACEMENT` says so
and the run's summary repeats it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labctl.engine import reference
from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.mapping import DifferentialMapping, Tile
from labctl.engine.writeverify import CellLog, WriteVerify, WriteVerifyConfig
from labctl.rig import Rig
from labctl.workload import Extract

PLACEMENT = {
    "q, k, v projections": "chip (static MAC, bit-serial inputs)",
    "q, k, v biases": "host",
    "scores q·kᵀ": "host",
    "softmax": "host",
    "context softmax·v": "host",
}


@dataclass(frozen=True)
class HeadConfig:
    head: int = 0
    array: str = "A0"
    sentences: int | None = None  # the first N sentences; None for all
    g_low_s: float = 15e-6
    g_high_s: float = 85e-6
    write: WriteVerifyConfig = field(default_factory=WriteVerifyConfig)
    mac: MacConfig = field(default_factory=MacConfig)


@dataclass
class SentenceResult:
    index: int
    text: str
    cosine_context: np.ndarray  # per token
    cosine_qkv: np.ndarray  # (3,) mean per projection
    top1_agreement: float


@dataclass
class HeadResult:
    sentences: list[SentenceResult]
    cells: list[CellLog]
    tiles: int
    mac_rounds: int

    @property
    def token_cosines(self) -> np.ndarray:
        return np.concatenate([s.cosine_context for s in self.sentences])


class OnChipHead:
    """Programs and runs one head's projections on a station's array."""

    def __init__(self, rig: Rig, extract: Extract, config: HeadConfig) -> None:
        self.rig = rig
        self.extract = extract
        self.config = config
        self.weights = extract.head_weights(config.head)
        stacked = np.vstack([self.weights.wq, self.weights.wk, self.weights.wv])
        self.mapping = DifferentialMapping(stacked, config.g_low_s, config.g_high_s)
        self.writer = WriteVerify(rig, config.array, config.write)
        self.mac = AnalogMac(rig, config.array, config.mac)
        lines = self.writer.lines
        self.tiles = self.mapping.tiles(lines.n_rows - lines.n_rows % 2, lines.n_cols)
        count = len(extract.sentences) if config.sentences is None else config.sentences
        self.sentence_ids = list(range(min(count, len(extract.sentences))))

    def inputs(self) -> np.ndarray:
        return np.vstack([self.extract.hidden_states(i) for i in self.sentence_ids])

    def run(
        self,
        on_tile: Callable[[Tile, list[CellLog]], None] | None = None,
        on_cell: Callable[[CellLog], None] | None = None,
    ) -> tuple[np.ndarray, HeadResult]:
        """Program and multiply tile by tile; return the chip's q|k|v and results."""
        x = self.inputs()
        scale = self.mapping.scale_s
        out = np.zeros((x.shape[0], self.mapping.weights.shape[0]))
        cells: list[CellLog] = []
        for tile in self.tiles:
            logs = self.writer.program(tile.targets_s, on_cell=on_cell)
            cells.extend(logs)
            width = tile.outputs.stop - tile.outputs.start
            partial = self.mac.run(x[:, tile.inputs], width)
            out[:, tile.outputs] += partial / scale
            if on_tile is not None:
                on_tile(tile, logs)
        result = self.compare(out)
        result.cells = cells
        result.tiles = len(self.tiles)
        result.mac_rounds = self.mac.rounds
        return out, result

    def compare(self, qkv_chip: np.ndarray) -> HeadResult:
        """Finish the head on the host from the chip's projections; compare."""
        w = self.weights
        d = w.wq.shape[0]
        q_all = qkv_chip[:, :d] + w.bq
        k_all = qkv_chip[:, d : 2 * d] + w.bk
        v_all = qkv_chip[:, 2 * d :] + w.bv
        results = []
        start = 0
        for i in self.sentence_ids:
            x = self.extract.hidden_states(i)
            n = x.shape[0]
            sl = slice(start, start + n)
            start += n
            ref = reference.head_forward(x, w)
            chip = reference.head_forward(x, w, q=q_all[sl], k=k_all[sl], v=v_all[sl])
            qkv = np.array([
                reference.cosine_per_token(chip.q, ref.q).mean(),
                reference.cosine_per_token(chip.k, ref.k).mean(),
                reference.cosine_per_token(chip.v, ref.v).mean(),
            ])
            top1 = float(np.mean(chip.probs.argmax(1) == ref.probs.argmax(1)))
            results.append(SentenceResult(
                i, self.extract.sentences[i],
                reference.cosine_per_token(chip.context, ref.context), qkv, top1,
            ))
        return HeadResult(results, [], len(self.tiles), self.mac.rounds)
