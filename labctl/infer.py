"""Inference of all-MiniLM-L6-v2 on the simulated chip, with what it cost.

:func:`infer` runs the first layers or all six on a simulated chip, each
operation where the run's :class:`~labctl.engine.placement.Placement` puts
it, beside the float64 reference of :mod:`labctl.engine.encoder`, and
reports per layer the attention output's cosine similarity and the attention
maps' top-1 agreement, then the sentence embeddings' cosine similarity and
the Spearman correlation of the sentence-pair similarities; with the energy
of the analog operations, a GPU estimate for the same multiply-accumulates,
the predicted bench time and the cells' wear. Every fidelity figure comes
from the simulated chip's device physics and circuit, through one of two
paths: the instruments, or bench-direct (:mod:`labctl.engine.direct`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import spearmanr

from labctl.engine.chips import Ledger, RigChip
from labctl.engine.direct import DirectChip, Wear
from labctl.engine.encoder import EncoderTrace, ModelWeights, embed, encode
from labctl.engine.mac import MacConfig
from labctl.engine.operators import ActivationConfig, ExponentialConfig
from labctl.engine.placement import ChipOperations, Placement
from labctl.engine.readout import ReadChainConfig
from labctl.engine.reference import cosine_per_token
from labctl.engine.writeverify import WriteVerifyConfig
from labctl.extract import FullModel, load_model
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract
from simulator.bench import Bench, bench_for, forget

REPO = Path(__file__).resolve().parent.parent
DEMO_STATION = REPO / "data" / "stations" / "demo.yaml"
DEMO_BENCH = REPO / "data" / "benches" / "demo.yaml"


def scratch_station(folder: Path, bench_file: Path = DEMO_BENCH,
                    **bench: Any) -> Path:
    """A station on a simulated bench of its own, written into ``folder``.

    The bench is a copy of ``bench_file`` (the demo bench by default) with
    the given keys replaced (``seed``, ``device``, ``stuck_fraction``); its
    station is a copy of the bench's station that opens this copy. Returns
    the station file, ready for :func:`labctl.station.load_station`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(Path(bench_file).read_text())
    source_station = (Path(bench_file).parent / data["station"]).resolve()
    station = yaml.safe_load(source_station.read_text())
    station["chip"] = str((source_station.parent / station["chip"]).resolve())
    station["visa_library"] = f"{folder / 'bench.yaml'}@labsim"
    station_path = folder / "station.yaml"
    station_path.write_text(yaml.safe_dump(station, sort_keys=False))
    data.update(bench)
    data["station"] = str(station_path)
    (folder / "bench.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return station_path


GPU_PJ_PER_MAC = 2.56
"""GPU energy per multiply-accumulate, pJ: an NVIDIA A100 SXM at its 400 W
board power and its 312 TFLOPS peak dense FP16 tensor throughput (the A100
datasheet), 2 FLOPs per MAC. A best case: full utilization, no memory
traffic; a 16-sentence batch of a small model runs far below peak."""

ENDURANCE_SOURCE = "the device preset's endurance_cycles (median of the cells')"


@dataclass(frozen=True)
class InferConfig:
    """What ``labctl infer`` runs and on what.

    Attributes
    ----------
    layers : int or None
        Layers run, from layer 0 (None: all six).
    placement : Placement
        Chip or host for each operation.
    path : str
        ``direct`` (bench-direct, :mod:`labctl.engine.direct`) or
        ``instruments`` (through pyvisa, the drivers and the simulated
        instruments, on the bench's own array).
    sentences : tuple of str, optional
        The sentences; the committed sixteen of the extract when None.
    bits : int
        Magnitude bits of the bit-serial MAC's inputs.
    chain : ReadChainConfig or None
        The columns' read chain and calibration; None reads the sense
        channels as they are.
    tolerance : float
        Write-verify tolerance, relative.
    bench_file : pathlib.Path
        The simulated bench.
    bench : dict
        Keys of the bench file replaced (``seed``, ``device``, ``stuck_fraction``).
    drift_s : float
        Time each tile rests after programming before it is used, s
        (bench-direct only).
    dynamic_arrays : int
        Arrays the run-time operands go round (bench-direct only).
    exponential : ExponentialConfig
        The exponential cells of the softmax (bench-direct only; the
        instruments' chip has none).
    activation : ActivationConfig or None
        The activation cells that sum to the FFN's GELU (bench-direct only);
        None leaves the GELU on the host.
    """

    layers: int | None = None
    placement: Placement = field(default_factory=Placement)
    path: str = "direct"
    sentences: tuple[str, ...] | None = None
    bits: int = 6
    chain: ReadChainConfig | None = field(default_factory=ReadChainConfig)
    tolerance: float = 0.02
    bench_file: Path = DEMO_BENCH
    bench: dict[str, Any] = field(default_factory=dict)
    drift_s: float = 0.0
    dynamic_arrays: int = 16
    exponential: ExponentialConfig = field(default_factory=ExponentialConfig)
    activation: ActivationConfig | None = None

    def __post_init__(self) -> None:
        if self.path not in ("direct", "instruments"):
            raise ValueError(f"path {self.path!r}: give direct or instruments")


@dataclass(frozen=True)
class LayerFigures:
    """Fidelity of one layer against the float64 reference."""

    layer: int
    attention_cosine_mean: float  # per token, the attention module's output
    attention_cosine_min: float
    top1_agreement: float  # attention maps: same most-attended key, per query and head
    hidden_cosine_mean: float  # the layer's output hidden states


@dataclass
class InferReport:
    """A run of ``labctl infer``: fidelity, cost, wear, and where it ran."""

    config: InferConfig
    path_text: str
    placement: dict[str, str]
    sentences: int
    tokens: int
    layers: list[LayerFigures]
    embedding_cosine_mean: float
    embedding_cosine_min: float
    spearman: float | None
    ledger: Ledger
    wear: dict[str, Wear]
    predicted_bench_s: float
    wall_s: float
    tiles: int
    device_energy_j: float | None = None  # the device model's own sum (instruments)

    @property
    def gpu_j(self) -> float:
        """The same multiply-accumulates on a GPU, J (:data:`GPU_PJ_PER_MAC`)."""
        return self.ledger.macs * GPU_PJ_PER_MAC * 1e-12

    def energy(self) -> dict[str, float]:
        """Energies of the analog operations, J."""
        led = self.ledger
        out = {
            "MAC, bench integration times": led.mac_bench_j,
            "MAC, read chain conversion time": led.mac_chain_j,
            "programming pulses": led.pulse_j,
            "programming verify reads": led.verify_read_bench_j,
            "GPU, same MACs": self.gpu_j,
        }
        for what, cells, tally in (("softmax exponentials", "exponential cells",
                                    led.exponential),
                                   ("GELU", "activation cells", led.activation)):
            if tally.values:
                out.update({
                    f"{what}, bench integration times": tally.read_bench_j,
                    f"{what}, read chain conversion time": tally.read_chain_j,
                    f"{cells}' forming, ranging and calibration (once)":
                        tally.setup_j,
                })
        if self.device_energy_j is not None:
            out["device model's own sum over every cell"] = self.device_energy_j
        return out


def sentences_and_inputs(model: FullModel, weights: ModelWeights,
                         sentences: tuple[str, ...] | None
                         ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The sentences, their layer-0 inputs and their offsets."""
    if sentences is None:
        extract = load_extract()
        texts = list(extract.sentences)
        ids = [extract.token_ids[extract.offsets[i]:extract.offsets[i + 1]]
               for i in range(len(texts))]
    else:
        texts = list(sentences)
        ids = model.tokenize(texts)
    inputs = np.vstack([embed(weights, i) for i in ids])
    offsets = np.cumsum([0, *[len(i) for i in ids]])
    return texts, inputs, offsets


def infer(config: InferConfig, model: FullModel | None = None) -> InferReport:
    """Run the model (or its first layers) on the simulated chip and report."""
    model = model or load_model()
    weights = ModelWeights.from_tensors(model.tensors, model.config)
    texts, inputs, offsets = sentences_and_inputs(model, weights, config.sentences)
    reference = encode(weights, inputs, offsets, config.layers)
    write = WriteVerifyConfig.for_preset(_preset_of(config), tolerance=config.tolerance)
    mac = MacConfig(bits=config.bits)
    started = time.perf_counter()
    if config.path == "direct":
        chip_run = _direct(config, weights, inputs, offsets, write, mac)
    else:
        chip_run = _instruments(config, weights, inputs, offsets, write, mac)
    trace, ops, ledger, wear, bench_s, device_j = chip_run
    wall_s = time.perf_counter() - started
    return _report(config, texts, trace, reference, ops, ledger, wear, bench_s,
                   wall_s, device_j)


def _preset_of(config: InferConfig) -> str:
    data = yaml.safe_load(Path(config.bench_file).read_text())
    station_file = (Path(config.bench_file).parent / data["station"]).resolve()
    station = yaml.safe_load(station_file.read_text())
    chip = yaml.safe_load((station_file.parent / station["chip"]).read_text())
    return chip["preset"]


def _direct(config: InferConfig, weights: ModelWeights, inputs: np.ndarray,
            offsets: np.ndarray, write: WriteVerifyConfig, mac: MacConfig) -> tuple:
    bench = Bench.from_file(config.bench_file, **config.bench)
    chip = DirectChip(bench, write, mac, config.chain, config.drift_s,
                      dynamic_arrays=config.dynamic_arrays,
                      exponential=config.exponential, activation=config.activation)
    ops = ChipOperations(chip, config.placement)
    trace = encode(weights, inputs, offsets, config.layers, ops)
    wear = chip.wear()
    led = chip.ledger
    operators = (led.exponential, led.activation)
    analog = led.macs or any(t.values for t in operators)
    message_s, round_s = probe_costs(config, write, mac) if analog else (0.0, 0.0)
    # one bus message per verify read: a cell's first, and each train's; an
    # operator cell's reading costs what one MAC round does, its forming ramp
    # the time its levels are held
    bench_s = (led.verify_reads * message_s
               + (led.mac_rounds + led.calibration_rounds) * round_s
               + sum((t.rounds + t.setup_reads) * round_s + t.forming_s
                     for t in operators))
    return trace, ops, led, wear, bench_s, None


def _instruments(config: InferConfig, weights: ModelWeights, inputs: np.ndarray,
                 offsets: np.ndarray, write: WriteVerifyConfig,
                 mac: MacConfig) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        station = load_station(scratch_station(Path(tmp), config.bench_file,
                                               **config.bench))
        bench = bench_for(Path(tmp) / "bench.yaml")
        rig = Rig(station)
        try:
            array = next(iter(bench.arrays))
            chip = RigChip(rig, array, write, mac, config.chain)
            ops = ChipOperations(chip, config.placement)
            trace = encode(weights, inputs, offsets, config.layers, ops)
        finally:
            rig.close()
            forget(Path(tmp) / "bench.yaml")
        wear = Wear()
        for cells in bench.arrays.values():
            wear.add(cells)
        device_j = sum(float(a.energy_j.sum()) for a in bench.arrays.values()
                       if hasattr(a, "energy_j"))
        return trace, ops, chip.ledger, {"array": wear}, bench.now_s, device_j


_PROBED: dict[str, tuple[float, float]] = {}


def probe_costs(config: InferConfig, write: WriteVerifyConfig,
                mac: MacConfig) -> tuple[float, float]:
    """Bench time of one write-verify message and of one MAC round, s.

    Measured through the instruments on a fresh copy of the run's bench: a
    few rows of a tile programmed, a few vectors multiplied on them; kept
    for the process, per bench and settings.
    """
    key = repr((str(config.bench_file), config.bench, write, mac))
    if key not in _PROBED:
        _PROBED[key] = _probe(config, write, mac)
    return _PROBED[key]


def _probe(config: InferConfig, write: WriteVerifyConfig,
           mac: MacConfig) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    targets = rng.uniform(write.g_min_s * 1.5, write.g_max_s * 0.85, (8, 8))
    x = rng.normal(size=(6, 4))
    with tempfile.TemporaryDirectory() as tmp:
        station = load_station(scratch_station(Path(tmp), config.bench_file,
                                               **config.bench))
        bench = bench_for(Path(tmp) / "bench.yaml")
        rig = Rig(station)
        try:
            chip = RigChip(rig, next(iter(bench.arrays)), write, mac)
            t0 = bench.now_s
            chip.program(targets)
            t1 = bench.now_s
            chip.multiply(x, 8)
            t2 = bench.now_s
        finally:
            rig.close()
            forget(Path(tmp) / "bench.yaml")
    led = chip.ledger  # fresh cells: each is read once, then once per train
    return (t1 - t0) / (led.cells_programmed + led.trains), (t2 - t1) / led.mac_rounds


def _report(config: InferConfig, texts: list[str], trace: EncoderTrace,
            reference: EncoderTrace, ops: ChipOperations, ledger: Ledger,
            wear: dict[str, Wear], bench_s: float, wall_s: float,
            device_j: float | None) -> InferReport:
    layers = []
    for k, (chip, ref) in enumerate(zip(trace.layers, reference.layers, strict=True)):
        cos = cosine_per_token(chip.attention, ref.attention)
        top1 = np.mean(np.concatenate([
            (c.argmax(axis=2) == r.argmax(axis=2)).ravel()
            for c, r in zip(chip.probs, ref.probs, strict=True)]))
        hidden = cosine_per_token(chip.hidden, ref.hidden)
        layers.append(LayerFigures(k, float(cos.mean()), float(cos.min()), float(top1),
                                   float(hidden.mean())))
    chip_e, ref_e = trace.embeddings(), reference.embeddings()
    emb = np.sum(chip_e * ref_e, axis=1)
    spearman = None
    if len(texts) >= 3:
        pairs = np.triu_indices(len(texts), 1)
        spearman = float(spearmanr((chip_e @ chip_e.T)[pairs],
                                   (ref_e @ ref_e.T)[pairs]).statistic)
    path_text = (
        "bench-direct: the simulated bench's device physics and circuit, "
        "without the message layer" if config.path == "direct" else
        "instruments: pyvisa, the drivers and the simulated instruments")
    return InferReport(config, path_text, ops.table(), len(texts),
                       int(trace.offsets[-1]), layers, float(emb.mean()),
                       float(emb.min()), spearman, ledger, wear, bench_s, wall_s,
                       ops.tiles, device_j)
