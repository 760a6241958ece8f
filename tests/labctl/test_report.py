"""The datasheet and the preset fit, on the simulated bench."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from labctl import plots, report, runner, storage
from labctl.cli import app
from labctl.station import load_station
from simulator.device import DevicePreset
from tests.conftest import write_bench

cli = CliRunner()


@pytest.fixture(scope="module")
def datasheet(tmp_path_factory):
    """A fresh chip characterized through the command line; its sheet."""
    folder = tmp_path_factory.mktemp("datasheet")
    station = write_bench(folder / "bench", formed={"A0": False})
    db = f"sqlite:///{folder / 'runs.sqlite'}"
    out = folder / "sheet.png"
    made = cli.invoke(
        app,
        ["report", "datasheet", "--station", str(station), "--db", db, "-o", str(out)],
    )
    assert made.exit_code == 0, made.output
    sheet = report.collect(storage.connect(db), "PVK-demo")
    return sheet, out, made.output, db


def test_the_datasheet_is_one_page_of_png_and_pdf(datasheet):
    sheet, out, output, _ = datasheet
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = out.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Count 1" in pdf  # one page
    assert set(sheet.runs) == set(report.PLAN)
    for item in report.PUBLISHED:
        assert item.label in output


def test_the_datasheet_figures_lie_inside_the_published_ranges(datasheet):
    sheet, *_ = datasheet
    outside = {
        item.key: sheet.figures[item.key]
        for item in report.PUBLISHED
        if not item.holds(sheet.figures[item.key])
    }
    assert outside == {}
    # The fresh chip was formed first, at the preset's forming voltage.
    assert sheet.figures["cells_formed"] == 64
    assert 1.3 < sheet.figures["v_forming_v"] < 1.8
    assert 0.6 < sheet.figures["disturb_from_v"] < 0.8


def test_a_datasheet_from_stored_runs_needs_every_characterization(datasheet, tmp_path):
    *_, db = datasheet
    again = cli.invoke(
        app,
        [
            "report",
            "datasheet",
            "PVK-demo",
            "--db",
            db,
            "-o",
            str(tmp_path / "again.png"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.pdf").is_file()
    empty = cli.invoke(
        app,
        [
            "report",
            "datasheet",
            "PVK-demo",
            "--db",
            f"sqlite:///{tmp_path / 'empty.sqlite'}",
        ],
    )
    assert empty.exit_code == 2
    assert "no finished forming" in empty.output


def test_each_characterization_run_plots_as_a_device_paper_shows_it(
    datasheet, tmp_path
):
    sheet, *_, db = datasheet
    engine = storage.connect(db)
    scales = {}
    for name, run_id in sheet.runs.items():
        out = tmp_path / f"{name}.png"
        made = cli.invoke(app, ["plot", str(run_id), "-o", str(out), "--db", db])
        assert made.exit_code == 0, made.output
        assert out.read_bytes()[:4] == b"\x89PNG"
        figure = plots.figure_for(engine, storage.get_run(engine, run_id))
        ax = figure.axes[0]
        scales[name] = (ax.get_xscale(), ax.get_yscale())
        assert ax.lines or ax.images or ax.patches, f"{name}: nothing drawn"
    assert scales["retention"] == ("log", "linear")
    assert scales["endurance"] == ("log", "log")
    assert scales["forming"][1] == scales["iv_sweep"][1] == "log"
    # The endurance plot draws the stored on and off conductances.
    run = storage.get_run(engine, sheet.runs["endurance"])
    endurance = plots.figure_for(engine, run)
    on = [p["On (S)"] for p in sheet.points["endurance"]]
    np.testing.assert_allclose(endurance.axes[0].lines[0].get_ydata(), on)


# The preset fit


KNOWN = {
    "v_set_v": 0.72,
    "rate_set_per_s": 3.0e4,
    "alpha_set": 2.5,
    "v_reset_v": -0.62,
    "rate_reset_per_s": 2.0e4,
    "alpha_reset": 2.2,
    "g_max_s": 1.2e-4,
    "g_min_s": 4.0e-7,
    "iv_v0_v": 0.35,
    "rectification_ratio": 3.0,
}
"""A device unlike the perovskite preset, to generate data from."""

TOLERANCE = {
    "v_set_v": 0.05,
    "v_reset_v": 0.05,
    "g_max_s": 0.03,
    "g_min_s": 0.15,
    "alpha_set": 0.15,
    "alpha_reset": 0.15,
    "rate_set_per_s": 0.3,
    "rate_reset_per_s": 0.3,
    "iv_v0_v": 0.1,
    "rectification_ratio": 0.2,
}
"""Relative tolerance of each recovered field."""


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """An I-V loop and pulse curves of a known device, as run CSVs."""
    folder = tmp_path_factory.mktemp("fit")
    # One cell is the device: no spread from cell to cell.
    station_path = write_bench(folder / "bench", device={**KNOWN, "d2d_sigma": 0.0})
    station = load_station(station_path)
    engine = storage.connect(f"sqlite:///{folder / 'runs.sqlite'}")
    paths = []
    for name, params in (
        ("iv_sweep", {"cycles": "2"}),
        (
            "pulse_response",
            {
                "col": "1",
                "pulses": "40",
                "cycles": "2",
                "set_voltages": "0.95,1.1,1.25",
                "reset_voltages": "-0.9,-1.05,-1.2",
            },
        ),
    ):
        proc = runner.build_procedure(name, params, station)
        outcome = runner.run(proc, station, engine)
        assert outcome.status == "finished", outcome.message
        paths.append(outcome.csv_path)
    return folder, paths


def test_the_fit_recovers_the_device_the_data_came_from(measured):
    folder, paths = measured
    out = folder / "fitted.yaml"
    done = cli.invoke(app, ["sim", "fit", *map(str, paths), "-o", str(out)])
    assert done.exit_code == 0, done.output
    fitted = DevicePreset.load(out)
    for name, value in KNOWN.items():
        assert getattr(fitted, name) == pytest.approx(value, rel=TOLERANCE[name]), name
    # Fields the data do not reach keep the base preset's values.
    base = DevicePreset.load("perovskite")
    assert fitted.retention_tau_s == base.retention_tau_s
    assert fitted.c2c_sigma == base.c2c_sigma
    text = out.read_text()
    assert "# fitted" in text and "labctl sim fit" in text
    assert yaml.safe_load(text)["v_set_v"] == fitted.v_set_v


def test_the_fit_refuses_data_it_cannot_use(measured, tmp_path):
    _, paths = measured
    odd = tmp_path / "odd.csv"
    odd.write_text("A,B\n1,2\n")
    refused = cli.invoke(app, ["sim", "fit", str(odd), "-o", str(tmp_path / "x.yaml")])
    assert refused.exit_code == 2
    assert "neither an I-V loop" in refused.output
    no_pulses = cli.invoke(
        app, ["sim", "fit", str(paths[0]), "-o", str(tmp_path / "x.yaml")]
    )
    assert no_pulses.exit_code == 2
    assert "pulse response" in no_pulses.output
