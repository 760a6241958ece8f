"""One attention head of all-MiniLM-L6-v2 with its projections on the chip.

Programs the head's query, key and value projections tile by tile into the
array by write-verify, multiplies every token of the committed sentences on
the chip, finishes the head (its scores and context on the host, or on the
chip as dynamic MACs when asked), and compares it with the same head in
float64. One point per token; one inference result per sentence, with
its attention map on the chip and in float64. Each cell's history gets one
programming entry for the run: the pulses of all its tiles, the last target.
Each tile's programmed conductances and partial sums are stored as it is
done, so that a stopped run resumes at the first tile it had not finished.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymeasure.experiment import (
    BooleanParameter,
    FloatParameter,
    IntegerParameter,
    ListParameter,
    Parameter,
)

from labctl.engine.attention import HeadConfig, OnChipHead
from labctl.engine.mac import MacConfig
from labctl.engine.readout import ReadChainConfig
from labctl.engine.writeverify import CellLog, WriteVerifyConfig
from labctl.station import Station
from labctl.storage import CellProgrammed
from labctl.workload import load_extract
from procedures.base import LabProcedure
from procedures.program_map import summarize

PARTIAL = "partial-"
"""Kind of the map that holds a tile's partial sums (``partial-<tile>``): the
MAC's column readings of every token, ``(tokens, outputs)``, what a resumed
run takes instead of that tile."""


class AttentionHead(LabProcedure):
    """One attention head of all-MiniLM-L6-v2, projections on the chip."""

    NAME = "attention_head"

    array = Parameter("Array", default="A0")
    head = IntegerParameter("Head", minimum=0, maximum=11, default=0)
    sentences = IntegerParameter("Sentences (0 for all)", minimum=0, maximum=10_000, default=0)
    bits = IntegerParameter("Input bits", minimum=1, maximum=12, default=5)
    tolerance = FloatParameter("Write-verify tolerance", minimum=1e-4, maximum=0.5,
                               default=0.02)
    read_voltage = FloatParameter("Read voltage", units="V", minimum=1e-3, maximum=210,
                                  default=0.2)
    set_voltage = FloatParameter("Largest SET pulse", units="V", minimum=0, maximum=210,
                                 default=1.2)
    reset_voltage = FloatParameter("Largest RESET pulse", units="V", minimum=-210,
                                   maximum=0, default=-1.1)
    g_low = FloatParameter("Zero-weight conductance", units="S", minimum=1e-9,
                           maximum=1, default=15e-6)
    g_high = FloatParameter("Largest-weight conductance", units="S", minimum=1e-9,
                            maximum=1, default=85e-6)
    # The head is judged end to end by its output: a cell is done once its
    # reading is within the tolerance (program_map keeps a margin).
    verify_margin = FloatParameter("Verify margin (part of the tolerance)", minimum=0,
                                   maximum=0.9, default=0.0)
    # Where the station allows it (2600B channels and the matrix on one
    # TSP-Link network) the write-verify loop runs on the instrument, a row
    # of cells per message.
    on_instrument = BooleanParameter("Write-verify on the instrument", default=True)
    adc_bits = IntegerParameter("Read chain ADC bits (0 for none)",
                                minimum=0, maximum=24, default=0)
    scores = ListParameter("Scores q·kᵀ", choices=["host", "chip"], default="host")
    context = ListParameter("Context softmax·v", choices=["host", "chip"],
                            default="host")

    DATA_COLUMNS = ["Sentence", "Token", "Cosine", "Cosine q", "Cosine k", "Cosine v"]

    def check(self, station: Station) -> None:
        self.check_levels(station, reads=("read_voltage",))
        self.check_levels(station, pulses=("set_voltage", "reset_voltage"))
        self.require(self.g_low < self.g_high, "attention_head: g_low must be below g_high")
        self.check_cell(station, self.array)
        available = len(load_extract().sentences)
        self.require(self.sentences <= available,
                     f"attention_head: sentences = {self.sentences}: the extract holds "
                     f"{available} (0 for all)")

    def config(self) -> HeadConfig:
        return HeadConfig(
            head=self.head, array=self.array,
            sentences=self.sentences or None,
            g_low_s=self.g_low, g_high_s=self.g_high,
            write=WriteVerifyConfig.for_preset(self.rig.station.chip_spec.preset,
                                               tolerance=self.tolerance,
                                               read_voltage_v=self.read_voltage,
                                               set_voltage_v=self.set_voltage,
                                               reset_voltage_v=self.reset_voltage,
                                               verify_margin=self.verify_margin,
                                               on_instrument=self.on_instrument),
            mac=MacConfig(bits=self.bits, read_voltage_v=self.read_voltage),
            chain=ReadChainConfig(adc_bits=self.adc_bits) if self.adc_bits else None,
            scores_on_chip=self.scores == "chip",
            context_on_chip=self.context == "chip",
        )

    def resume_from(self, points: list[dict[str, Any]],
                    maps: dict[str, np.ndarray]) -> None:
        # A tile is done once its partial sums are stored: its programming
        # and multiplying are not repeated.
        self.done_tiles = {
            int(kind.removeprefix(PARTIAL)): values
            for kind, values in maps.items() if kind.startswith(PARTIAL)
        }

    def startup(self) -> None:
        self.engine = OnChipHead(self.rig, load_extract(), self.config())

    def execute(self) -> None:
        engine = self.engine
        total = len(engine.tiles)
        resumed = getattr(self, "done_tiles", {})
        done = [len(resumed)]
        tally = _CellTally()

        def on_tile(tile, logs, partial) -> None:
            done[0] += 1
            tally.add(logs)
            programmed = np.array([e.final_s for e in logs]).reshape(tile.targets_s.shape)
            self.sink.add_map(self.array, f"tile-{tile.index}", programmed,
                              self.read_voltage, flush=False)
            self.sink.add_map(self.array, f"{PARTIAL}{tile.index}", partial, None)
            self.progress(done[0], total)

        try:
            _, result = engine.run(on_tile=on_tile, done=resumed)
        finally:
            self.sink.add_cells(tally.entries(self.array))
        for s in result.sentences:
            for t, cos in enumerate(s.cosine_context):
                self.emit("results", {
                    "Sentence": s.index, "Token": t, "Cosine": float(cos),
                    "Cosine q": float(s.cosine_qkv[0]), "Cosine k": float(s.cosine_qkv[1]),
                    "Cosine v": float(s.cosine_qkv[2]),
                })
            self.sink.add_result(s.index, s.text, {
                "cosine_mean": float(s.cosine_context.mean()),
                "cosine_min": float(s.cosine_context.min()),
                "cosine_qkv": s.cosine_qkv.tolist(),
                "top1_agreement": s.top1_agreement,
                "attention_chip": s.attention_chip,
                "attention_reference": s.attention_reference,
            })
        cos = result.token_cosines
        self.summary.update({
            "head": self.head, "tokens": int(cos.size),
            "sentences": len(result.sentences),
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "top1_agreement": float(np.mean([s.top1_agreement for s in result.sentences])),
            "tiles": result.tiles, "tiles_resumed": len(resumed),
            "mac_rounds": result.mac_rounds,
            "placement": engine.config.placement(),
            "programming": summarize(result.cells),
        })


class _CellTally:
    """Each cell's write-verify over the tiles of a run: the last entry, and
    the pulses, rounds and passes of all."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, int], CellLog] = {}
        self.sums: dict[tuple[int, int], list[int]] = {}

    def add(self, logs: list[CellLog]) -> None:
        for e in logs:
            key = (e.row, e.col)
            self.last[key] = e
            sums = self.sums.setdefault(key, [0, 0, 0, 0])
            sums[0] += e.pulses
            sums[1] += e.rounds
            sums[2] += 1
            sums[3] |= e.stuck

    def entries(self, array: str) -> list[CellProgrammed]:
        entries = []
        for (r, c), e in self.last.items():
            pulses, rounds, writes, stuck = self.sums[r, c]
            entries.append(CellProgrammed(array, r, c, e.target_s, e.final_s, pulses,
                                          rounds, e.converged, bool(stuck), writes))
        return entries
