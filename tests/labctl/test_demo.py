"""The main job end to end through the command line, on a fresh simulated bench."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from labctl import storage
from labctl.cli import app


@pytest.mark.timeout(1200)  # programs all 73 728 cells of the head
def test_demo_runs_every_step_and_the_head_matches_float64(station_path, db_url):
    result = CliRunner().invoke(
        app, ["demo", "--station", str(station_path), "--db", db_url, "--sentences", "2"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for step in ("station ok", "demo summary", "cells within tolerance",
                 "predicted duration on a real bench"):
        assert step in result.output
    engine = storage.connect(db_url)
    runs = {r.procedure: r for r in storage.list_runs(engine)}
    assert set(runs) == {"iv_sweep", "read_map", "attention_head"}
    assert all(r.status == "finished" for r in runs.values())
    head = runs["attention_head"].summary
    assert head["sentences"] == 2
    assert head["cosine_mean"] >= 0.98
    assert head["programming"]["cells"] == 73728
    assert head["placement"]["q, k, v projections"].startswith("chip")
    assert len(storage.run_results(engine, runs["attention_head"].id)) == 2
