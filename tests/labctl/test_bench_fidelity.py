"""labctl bench fidelity: the robustness sweep, its table and its plot."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.extract import cached_wheel
from labctl.fidelity import QUICK, SWEEPS, choose, point
from labctl.infer import InferConfig


@pytest.fixture(scope="module")
def model_available():
    if cached_wheel() is None:
        pytest.skip("the all-MiniLM-L6-v2 wheel is not available: set "
                    "LABCTL_MINILM_WHEEL or run `labctl model fetch`")
    pytest.importorskip("safetensors")


def test_each_point_changes_one_non_ideality_of_the_base_run():
    base = InferConfig(bench={"device": {"c2c_sigma": 0.02}})
    noisy = point(base, "read_sigma", 0.03)
    assert noisy.bench["device"] == {"c2c_sigma": 0.02, "read_sigma": 0.03}
    coarse = point(base, "adc_bits", 6)
    assert coarse.chain is not None and coarse.chain.adc_bits == 6
    assert coarse.chain.gain_sigma == base.chain.gain_sigma
    assert point(base, "stuck_fraction", 0.1).bench["stuck_fraction"] == 0.1
    with pytest.raises(ValueError, match="no sweep 'noise'"):
        point(base, "noise", 1.0)
    assert choose(None, full=True) == SWEEPS
    assert choose(["adc_bits"], full=False) == {"adc_bits": QUICK["adc_bits"]}
    with pytest.raises(ValueError, match="the sweeps are"):
        choose(["noise"], full=False)


def test_the_command_prints_the_table_and_writes_the_plot(tmp_path, model_available):
    png, table = tmp_path / "plots" / "fidelity.png", tmp_path / "fidelity.csv"
    result = CliRunner().invoke(app, [
        "bench", "fidelity", "-o", str(png), "--count", "1",
        "--sweep", "adc_bits", "--sweep", "read_sigma", "--csv", str(table)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "layer 0 fidelity against float64" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.open()))
    assert [(r["parameter"], float(r["value"])) for r in rows] == [
        ("adc_bits", 6.0), ("adc_bits", 12.0), ("read_sigma", 0.001),
        ("read_sigma", 0.03)]
    cosine = {(r["parameter"], float(r["value"])): float(r["attention_cosine"])
              for r in rows}
    # the chip's non-idealities show: fewer bits and more noise read worse
    assert cosine["adc_bits", 6.0] < cosine["adc_bits", 12.0]
    assert cosine["read_sigma", 0.03] < cosine["read_sigma", 0.001]
    assert cosine["adc_bits", 12.0] > 0.999


def test_an_unknown_sweep_is_one_line_and_exit_code_2(tmp_path):
    result = CliRunner().invoke(app, ["bench", "fidelity", "-o",
                                      str(tmp_path / "f.png"), "--sweep", "noise"])
    assert result.exit_code == 2
    assert "no sweep 'noise'" in result.output
    assert not (tmp_path / "f.png").exists()
