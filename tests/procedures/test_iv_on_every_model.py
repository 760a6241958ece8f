"""One I–V sweep procedure, unchanged, on stations of every SMU family.

The same chip (same bench seed) is swept through a station whose drive channel
is a 2636B channel (the demo station), a 2450, a 2400 or a B2902A channel, and
through one whose sense channel is the 2450; the curves agree within the noise
of the cells and of the readings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl import runner, storage
from labctl.station import load_station
from simulator.bench import bench_for

DATA = Path(__file__).resolve().parents[2] / "data"
STATIONS = {
    "2636B": "demo",
    "2450": "k2450-sim",
    "2400": "k2400-sim",
    "B2902A": "b2902a-sim",
}


def copy_station(name: str, folder: Path, roles: dict | None = None) -> Path:
    """A station file and its bench file on a fresh bench of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    source = DATA / "stations" / f"{name}.yaml"
    station = yaml.safe_load(source.read_text())
    station["chip"] = str((source.parent / station["chip"]).resolve())
    station["visa_library"] = f"{folder / 'bench.yaml'}@labsim"
    if roles:
        station["roles"].update(roles)
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load((DATA / "benches" / f"{name}.yaml").read_text())
    bench["station"] = str(path)
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    return path


def sweep(station_path: Path, db_url: str) -> tuple[np.ndarray, np.ndarray]:
    station = load_station(station_path)
    procedure = runner.build_procedure("iv_sweep", {}, station)
    outcome = runner.run(procedure, station, storage.connect(db_url))
    assert outcome.status == "finished", outcome.message
    points = storage.run_points(storage.connect(db_url), outcome.run_id)
    bench = bench_for(station_path.parent / "bench.yaml")
    assert bench.outputs_on() == [] and bench.closed_relays() == []
    voltage = np.array([p["Voltage (V)"] for p in points])
    current = np.array([p["Current (A)"] for p in points])
    return voltage, current


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iv")
    return {
        model: sweep(copy_station(name, folder / name), f"sqlite:///{folder}/{name}.db")
        for model, name in STATIONS.items()
    }


def hysteresis(voltage: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """SET gain at +0.2 V and RESET loss at -0.2 V, as in the demo test."""
    peak, trough = int(np.argmax(voltage)), int(np.argmin(voltage))
    up = np.argmin(np.abs(voltage[:peak] - 0.2))
    down = peak + np.argmin(np.abs(voltage[peak:trough] - 0.2))
    before = peak + np.argmin(np.abs(voltage[peak:trough] + 0.2))
    after = trough + np.argmin(np.abs(voltage[trough:] + 0.2))
    return current[down] / current[up], abs(current[after] / current[before])


@pytest.mark.parametrize("model", ["2450", "2400", "B2902A"])
def test_the_curve_matches_the_2636b_curve(curves, model):
    reference_v, reference_i = curves["2636B"]
    voltage, current = curves[model]
    np.testing.assert_array_equal(voltage, reference_v)
    scale = np.maximum(np.abs(reference_i), 1e-7)
    deviation = np.abs(current - reference_i) / scale
    # Readings agree to the read noise; only the points where the cell is
    # switching differ more, as each station spends a little more time per point
    # (most on the way down to the deep RESET state).
    assert np.median(deviation) < 0.02
    assert np.max(deviation) < 0.4


@pytest.mark.parametrize("model", list(STATIONS))
def test_every_station_shows_set_and_reset(curves, model):
    set_gain, reset_loss = hysteresis(*curves[model])
    assert set_gain > 2
    assert reset_loss < 0.7


def test_a_scpi_sense_channel_reads_the_level_just_set(curves, tmp_path):
    # The 2450 measures while the drive and bias levels go through the 2636B's
    # batched TSP connection: the batch must send them before the reading.
    path = copy_station(
        "k2450-sim",
        tmp_path / "sense",
        roles={"drive": "smu1.smua", "sense": ["smu2.smu"]},
    )
    voltage, current = sweep(path, f"sqlite:///{tmp_path}/sense.db")
    reference_v, reference_i = curves["2636B"]
    np.testing.assert_array_equal(voltage, reference_v)
    deviation = np.abs(current - reference_i) / np.maximum(np.abs(reference_i), 1e-7)
    assert np.median(deviation) < 0.02
    assert np.max(deviation) < 0.25
