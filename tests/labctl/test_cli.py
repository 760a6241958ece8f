"""The command line on the simulated bench: runs, listings and one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.station import load_station
from simulator.bench import bench_for

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_station_check_prints_every_identity(station_path):
    result = invoke("station", "check", "--station", str(station_path))
    assert result.exit_code == 0, result.output
    for name in ("smu1", "smu2", "smu3", "matrix"):
        assert name in result.output
    assert "Model 2636B" not in result.output  # parsed, not echoed raw
    assert "station ok" in result.output


def test_run_then_list_and_show(station_path, db_url):
    result = invoke("run", "iv_sweep", "--station", str(station_path), "--db", db_url,
                    "--v_max", "1.0", "--step=0.05")
    assert result.exit_code == 0, result.output
    assert "run 1: finished" in result.output
    listing = invoke("runs", "list", "--db", db_url)
    assert "iv_sweep" in listing.output and "finished" in listing.output
    shown = invoke("runs", "show", "1", "--db", db_url)
    assert '"v_max": 1.0' in shown.output
    assert "points: 89" in shown.output  # 0, 20 up, 20 down, 24 down, 24 up
    assert "run-00001-iv_sweep.csv" in shown.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "iv_sweep", "--v_max", "9"), "exceeds the chip's max_voltage_v"),
        (("run", "iv_sweep", "--bogus", "1"), "unknown parameter 'bogus'"),
        (("run", "iv_sweep", "--v_max"), "--v_max needs a value"),
        (("run", "teleport"), "unknown procedure 'teleport'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output_on(station_path, db_url, args,
                                                       expected):
    result = invoke(*args, "--station", str(station_path), "--db", db_url)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0]
    station = load_station(station_path)
    bench = bench_for(str(station.path.parent / "bench.yaml"))
    assert bench.outputs_on() == []
    assert all(level == 0 for _, _, level in bench.events) or not bench.events


def test_malformed_station_file_is_one_line(tmp_path, db_url):
    bad = tmp_path / "station.yaml"
    bad.write_text("name: x\ninstruments: [\n")
    result = invoke("station", "check", "--station", str(bad))
    assert result.exit_code == 2
    assert str(bad) in result.output and len(result.output.strip().splitlines()) == 1


def test_show_unknown_run(db_url):
    result = invoke("runs", "show", "42", "--db", db_url)
    assert result.exit_code == 2 and "no run 42" in result.output
