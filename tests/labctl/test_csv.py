"""Every run's CSV is pymeasure's format: Results.load reads it back, with
text holding commas and quotes, values given with units, and arrays."""

import json

import numpy as np
import pytest
from pymeasure.experiment import FloatParameter, Parameter, Results
from pymeasure.units import ureg

from labctl import runner, storage
from labctl.station import load_station
from procedures.base import LabProcedure


class Probe(LabProcedure):
    """Probe columns of every kind."""

    NAME = "probe"
    note = Parameter("Note", default="cells 1, 2 and 3")
    level = FloatParameter("Level", units="V", default=0.25)
    DATA_COLUMNS = ["Label", "Current (A)", "Trace (A)", "Count", "Flag"]


POINTS = [
    {"Label": 'cell "A", row 3 # first', "Current (A)": ureg.Quantity("2.5 mA"),
     "Trace (A)": np.array([1e-6, 2.5e-6, -3e-7]), "Count": np.int64(3), "Flag": True},
    {"Label": "plain", "Current (A)": 1.2345678901234567e-05,
     "Trace (A)": [0.1, 0.2], "Count": 4, "Flag": False},
    {"Label": "missing values", "Current (A)": None},
]


def test_text_units_and_arrays_survive_results_load(tmp_path):
    path = tmp_path / "probe.csv"
    log = runner.CsvLog(Probe(), path)
    log.append(POINTS[:1])
    log.append(POINTS[1:])
    log.close()

    loaded = Results.load(str(path), procedure_class=Probe)
    assert loaded.procedure.note == "cells 1, 2 and 3"
    assert loaded.procedure.level == 0.25
    data = loaded.data
    assert list(data.columns) == Probe.DATA_COLUMNS
    assert list(data["Label"]) == [p["Label"] for p in POINTS]
    assert data["Current (A)"][0] == pytest.approx(2.5e-3, rel=1e-15)
    assert data["Current (A)"][1] == pytest.approx(1.2345678901234567e-05, rel=1e-15)
    assert np.isnan(data["Current (A)"][2])
    assert json.loads(data["Trace (A)"][0]) == [1e-6, 2.5e-6, -3e-7]
    assert json.loads(data["Trace (A)"][1]) == [0.1, 0.2]
    assert list(data["Count"][:2]) == [3, 4]
    assert list(data["Flag"][:2]) == [1, 0]


def test_rewriting_keeps_the_header_and_replaces_the_lines(tmp_path):
    path = tmp_path / "probe.csv"
    runner.CsvLog(Probe(), path).close()
    path.write_text(path.read_text() + "half a line,")  # left by a killed run
    runner.CsvLog(Probe(), path, POINTS[1:2]).close()
    data = Results.load(str(path), procedure_class=Probe).data
    assert list(data["Label"]) == ["plain"]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(("name", "params"), [("iv_sweep", {"step": "0.1"}),
                                              ("read_map", {})])
def test_a_run_csv_loads_with_the_run_parameters_and_points(name, params, station_path,
                                                           db_url):
    station = load_station(station_path)
    proc = runner.build_procedure(name, params, station)
    engine = storage.connect(db_url)
    outcome = runner.run(proc, station, engine)
    loaded = Results.load(str(outcome.csv_path))
    assert type(loaded.procedure).__name__ == type(proc).__name__
    assert loaded.procedure.parameter_values() == proc.parameter_values()
    stored = storage.run_frame(engine, outcome.run_id, proc.DATA_COLUMNS)
    assert len(loaded.data) == len(stored) > 0
    for column in proc.DATA_COLUMNS:
        np.testing.assert_allclose(loaded.data[column].to_numpy(float),
                                   stored[column].to_numpy(float), rtol=1e-15)
