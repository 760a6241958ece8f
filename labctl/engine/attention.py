"""One attention head of a real transformer, its projections on the chip.

The query, key and value projections of one head (3 × 32 outputs of 384
inputs for all-MiniLM-L6-v2) are mapped to differential conductance pairs,
cut into tiles the size of the array lines the station reaches, and run tile
by tile: each tile is programmed by write-verify, then every token's input
slice is multiplied on it by the analog MAC, and the tile's partial sums are
added on the host. The biases and the softmax run on the host; the scores
q·kᵀ and the weighted sum of the values run on the host by default or, as
the config asks, on the chip as dynamic MACs (each sentence's keys or values
written into the array, then multiplied on). :meth:`HeadConfig.placement`
says where each ran and the run's summary repeats it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labctl.engine import reference
from labctl.engine.chips import RigChip
from labctl.engine.mac import AnalogMac, MacConfig
from labctl.engine.mapping import DifferentialMapping, Tile
from labctl.engine.placement import ChipOperations, Placement
from labctl.engine.readout import ReadChainConfig
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
"""Where each operation of the head runs by default."""


@dataclass(frozen=True)
class HeadConfig:
    head: int = 0
    array: str = "A0"
    sentences: int | None = None  # the first N sentences; None for all
    g_low_s: float = 15e-6
    g_high_s: float = 85e-6
    write: WriteVerifyConfig = field(default_factory=WriteVerifyConfig)
    mac: MacConfig = field(default_factory=MacConfig)
    chain: ReadChainConfig | None = None  # the sense channels' readings as they are
    scores_on_chip: bool = False
    context_on_chip: bool = False

    def placement(self) -> dict[str, str]:
        """Where each operation of the head runs."""
        dynamic = "chip (dynamic MAC, operands written at run time)"
        return {**PLACEMENT,
                "scores q·kᵀ": dynamic if self.scores_on_chip else "host",
                "context softmax·v": dynamic if self.context_on_chip else "host"}


@dataclass
class SentenceResult:
    index: int
    text: str
    cosine_context: np.ndarray  # per token
    cosine_qkv: np.ndarray  # (3,) mean per projection
    top1_agreement: float
    attention_chip: np.ndarray  # (tokens, tokens): softmax over keys, per query
    attention_reference: np.ndarray  # the same in float64


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
        self.mac = AnalogMac(rig, config.array, config.mac, config.chain)
        lines = self.writer.lines
        self.tiles = self.mapping.tiles(lines.n_rows - lines.n_rows % 2, lines.n_cols)
        count = len(extract.sentences) if config.sentences is None else config.sentences
        self.sentence_ids = list(range(min(count, len(extract.sentences))))

    def inputs(self) -> np.ndarray:
        return np.vstack([self.extract.hidden_states(i) for i in self.sentence_ids])

    def run(
        self,
        on_tile: Callable[[Tile, list[CellLog], np.ndarray], None] | None = None,
        on_cell: Callable[[CellLog], None] | None = None,
        done: dict[int, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, HeadResult]:
        """Program and multiply tile by tile; return the chip's q|k|v and results.

        ``on_tile`` gets each tile, its cells' logs and its partial sums (the
        MAC's column readings of every token, ``(tokens, width)``). The tiles
        in ``done`` (by index, their partial sums as ``on_tile`` got them, from
        an earlier run) are neither programmed nor multiplied again.
        """
        x = self.inputs()
        scale = self.mapping.scale_s
        out = np.zeros((x.shape[0], self.mapping.weights.shape[0]))
        cells: list[CellLog] = []
        done = done or {}
        for tile in self.tiles:
            width = tile.outputs.stop - tile.outputs.start
            if tile.index in done:
                partial = done[tile.index]
                if partial.shape != (x.shape[0], width):
                    raise ValueError(f"tile {tile.index}: stored partial sums have "
                                     f"shape {partial.shape}, the run needs "
                                     f"{(x.shape[0], width)}")
                out[:, tile.outputs] += partial / scale
                continue
            logs = self.writer.program(tile.targets_s, on_cell=on_cell)
            cells.extend(logs)
            self.mac.calibrate(tile.targets_s, tile.index)
            partial = self.mac.run(x[:, tile.inputs], width)
            out[:, tile.outputs] += partial / scale
            if on_tile is not None:
                on_tile(tile, logs, partial)
        result = self.compare(out, self._dynamic_operations())
        result.cells = cells
        result.tiles = len(self.tiles)
        result.mac_rounds = self.mac.rounds
        return out, result

    def _dynamic_operations(self) -> ChipOperations | None:
        """The chip's scores and context, if the config puts either on it."""
        cfg = self.config
        if not (cfg.scores_on_chip or cfg.context_on_chip):
            return None
        place = Placement.preset("host").with_changes({
            "scores": "chip" if cfg.scores_on_chip else "host",
            "context": "chip" if cfg.context_on_chip else "host"})
        chip = RigChip(self.rig, cfg.array, cfg.write, cfg.mac, cfg.chain)
        return ChipOperations(chip, place)

    def compare(self, qkv_chip: np.ndarray,
                ops: ChipOperations | None = None) -> HeadResult:
        """Finish the head from the chip's projections, the scores and context
        on the host or through ``ops``; compare with float64."""
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
            chip = reference.head_forward(x, w, q=q_all[sl], k=k_all[sl], v=v_all[sl],
                                          ops=ops)
            qkv = np.array([
                reference.cosine_per_token(chip.q, ref.q).mean(),
                reference.cosine_per_token(chip.k, ref.k).mean(),
                reference.cosine_per_token(chip.v, ref.v).mean(),
            ])
            top1 = float(np.mean(chip.probs.argmax(1) == ref.probs.argmax(1)))
            results.append(SentenceResult(
                i, self.extract.sentences[i],
                reference.cosine_per_token(chip.context, ref.context), qkv, top1,
                chip.probs, ref.probs,
            ))
        return HeadResult(results, [], len(self.tiles), self.mac.rounds)
