"""Shared fixtures: fresh simulated benches built from the demo station."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_STATION = REPO / "data" / "stations" / "demo.yaml"
DEMO_BENCH = REPO / "data" / "benches" / "demo.yaml"


def write_bench(folder: Path, **bench: object) -> Path:
    """A copy of the demo station on its own simulated bench; returns the station.

    Keyword arguments override the demo bench file's keys (``seed``,
    ``device``, ``stuck_fraction``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    station = yaml.safe_load(DEMO_STATION.read_text())
    station["chip"] = str((DEMO_STATION.parent / station["chip"]).resolve())
    station["visa_library"] = str(folder / "bench.yaml") + "@labsim"
    station_path = folder / "station.yaml"
    station_path.write_text(yaml.safe_dump(station, sort_keys=False))
    data = yaml.safe_load(DEMO_BENCH.read_text())
    data.update(bench)
    data["station"] = str(station_path)
    (folder / "bench.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return station_path


@pytest.fixture
def station_path(tmp_path: Path) -> Path:
    """The demo station on a fresh simulated bench of its own."""
    return write_bench(tmp_path / "bench")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.sqlite'}"
