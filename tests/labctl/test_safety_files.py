"""Hostile station, chip and bench files: each gets one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.station import ConfigError, load_chip, load_station
from simulator.bench import Bench
from tests.conftest import DEMO_STATION, REPO

CHIP = REPO / "data" / "chips" / "pvk-demo.yaml"


def one_line(call, path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def demo_station() -> dict:
    station = yaml.safe_load(DEMO_STATION.read_text())
    station["chip"] = str(CHIP)
    return station


# Station files.


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: s["limits"].update(max_voltage_v=1.0e6),
            "limits.max_voltage_v: Input should be less than or equal to 210",
        ),
        (
            lambda s: s["limits"].update(max_voltage_v=float("nan")),
            "limits.max_voltage_v:",
        ),
        (
            lambda s: s["limits"].update(max_voltage_v=float("inf")),
            "limits.max_voltage_v:",
        ),
        (
            lambda s: s["limits"].update(max_compliance_a=-1.0e-3),
            "limits.max_compliance_a: Input should be greater than 0",
        ),
        (
            lambda s: s["limits"].update(max_compliance_a=50.0),
            "limits.max_compliance_a: Input should be less than or equal to 1.5",
        ),
        (
            lambda s: s["limits"].update(modes={"volatile": {"max_voltage_v": 5.0}}),
            "limits: modes.volatile.max_voltage_v must not exceed max_voltage_v",
        ),
        (
            lambda s: s["limits"].update(modes={"volatile": {"max_volts": 1.0}}),
            "limits.modes.volatile.max_volts: unknown key",
        ),
        (
            lambda s: s["limits"].update(max_voltage_v="2 V"),
            "limits.max_voltage_v: Input should be a valid number",
        ),
        (
            lambda s: s["limits"].update(max_read_voltage_v=5.0),
            "max_read_voltage_v must not exceed max_voltage_v",
        ),
        (
            lambda s: s["limits"].update(max_cell_charge_c=-1.0),
            "limits.max_cell_charge_c: Input should be greater than 0",
        ),
        (
            lambda s: s["limits"].update(max_cell_energy_j=1.0e9),
            "limits.max_cell_energy_j: Input should be less than or equal to 10",
        ),
        (
            lambda s: s["limits"].update(max_power_w=1.0),
            "limits.max_power_w: unknown key",
        ),
        (lambda s: s.update(limits=None), "limits: Input should be a valid dictionary"),
        (lambda s: s.pop("limits"), "limits: required key is missing"),
        (lambda s: s.pop("wiring"), "wiring: required key is missing"),
        (lambda s: s["wiring"].pop("buses"), "wiring.buses: required key is missing"),
        (
            lambda s: s["wiring"].update(columns={1: [None] * 12}),
            "wiring.columns: no chip pin is wired",
        ),
        (
            lambda s: s.update(instruments=[]),
            "instruments: Input should be a valid dictionary",
        ),
        (
            lambda s: s["instruments"]["smu2"].update(model=2636),
            "instruments.smu2.model: not allowed",
        ),
        (
            lambda s: s["instruments"]["smu2"].update(node="two"),
            "instruments.smu2.node: Input should be a valid integer",
        ),
        (
            lambda s: s["instruments"].update(
                smu4={"model": "2636B", "resource": "GPIB::26"}
            ),
            "instruments.smu4.resource: GPIB::26 is the instrument that smu1 names",
        ),
        (
            lambda s: s["wiring"]["columns"][2].__setitem__(0, "A0.R0"),
            "wiring.columns: pin A0.R0 is wired twice",
        ),
        (
            lambda s: s["wiring"]["buses"].update(G="smu9.smua"),
            "wiring.buses.G: 'smu9.smua' is not an SMU channel",
        ),
        (
            lambda s: s["roles"].update(sense=[]),
            "roles.sense: List should have at least 1 item",
        ),
        (lambda s: s.update(colour="red"), "colour: unknown key"),
    ],
)
def test_a_hostile_station_file(tmp_path, change, expected):
    station = demo_station()
    change(station)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(station))
    assert expected in one_line(load_station, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\n  bad: [\n", "line 2: mapping values are not allowed here"),
        ("- a\n- b\n", "expected a mapping of keys at the top level"),
        ("", "expected a mapping of keys at the top level"),
        ("name: x\nname: y\n", "line 2: key 'name' is given twice"),
        ("name: !!python/object:os.system echo\n", "line 1:"),
    ],
)
def test_a_station_file_that_is_not_yaml_of_keys(tmp_path, text, expected):
    path = tmp_path / "station.yaml"
    path.write_text(text)
    assert expected in one_line(load_station, path)


# Chip files.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: c\narrays: {A0: {rows: '8', cols: 8}}\n",
            "arrays.A0.rows: Input should be a valid integer",
        ),
        (
            "name: c\narrays: {A0: {rows: 8.5, cols: 8}}\n",
            "arrays.A0.rows: Input should be a valid integer",
        ),
        (
            "name: c\narrays: {A0: {rows: 0, cols: 8}}\n",
            "arrays.A0.rows: Input should be greater than or equal to 1",
        ),
        (
            "name: c\narrays: {A0: {rows: 100000, cols: 8}}\n",
            "arrays.A0.rows: Input should be less than or equal to 4096",
        ),
        ("name: c\narrays: {}\n", "arrays: a chip needs at least one array"),
        (
            "name: c\narrays: {'A 0': {rows: 8, cols: 8}}\n",
            "array name 'A 0' must be a letter",
        ),
        (
            "name: c\narrays: {A0: {rows: 8, cols: 8, depth: 2}}\n",
            "arrays.A0.depth: unknown key",
        ),
        (
            "name: c\narrays: {A0: {rows: 8, cols: 8, mode: softmax}}\n",
            "arrays.A0.mode: not allowed; allowed: 'analog', 'volatile', 'activation' or",
        ),
        ("arrays: {A0: {rows: 8, cols: 8}}\n", "name: required key is missing"),
        ("name: c\narrays: [A0]\n", "arrays: Input should be a valid dictionary"),
        (
            "name: [c]\narrays: {A0: {rows: 8, cols: 8}}\n",
            "name: Input should be a valid string",
        ),
        (
            "name: c\npreset: glass\narrays: {A0: {rows: 8, cols: 8}}\n",
            "preset: no device preset 'glass'",
        ),
        (
            "name: c\npath: /etc\narrays: {A0: {rows: 8, cols: 8}}\n",
            "path: unknown key",
        ),
        ("{{{", "line 1:"),
        (
            "name: c\narrays: {A0: {rows: 8, cols: 8}}\nname: d\n",
            "key 'name' is given twice",
        ),
    ],
)
def test_a_hostile_chip_file(tmp_path, text, expected):
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    assert expected in one_line(load_chip, path)


def test_a_station_names_the_chip_file_at_fault(tmp_path):
    (tmp_path / "chip.yaml").write_text("name: c\narrays: {}\n")
    station = demo_station()
    station["chip"] = "chip.yaml"
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(station))
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'chip.yaml'}: arrays: a chip"):
        load_station(path)


def test_wiring_to_pins_the_chip_lacks_is_refused(tmp_path):
    (tmp_path / "chip.yaml").write_text(
        "name: tiny\narrays: {A0: {rows: 4, cols: 4}}\n"
    )
    station = demo_station()
    station["chip"] = "chip.yaml"
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(station))
    assert "wiring.columns: pin A0.R4 does not exist on chip 'tiny'" in one_line(
        load_station, path
    )


# Bench files.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("station: [a]\n", "station: ['a'] is not the path of a station file"),
        ("seed: 1\n", "station: required key is missing"),
        ("station: none.yaml\n", "station: {folder}/none.yaml: cannot read"),
        ("station: {station}\nseed: -2\n", "seed: -2 is not an integer >= 0"),
        (
            "station: {station}\nstuck_fraction: .nan\n",
            "stuck_fraction: nan must be in [0, 1]",
        ),
        (
            "station: {station}\ndevice: [1]\n",
            "device: expected a mapping of preset fields",
        ),
        ("station: {station}\ndevice: {{colour: red}}\n", "unknown override 'colour'"),
        (
            "station: {station}\ntiming: {{bus_latency_s: .nan}}\n",
            "timing.bus_latency_s: nan must be a finite value",
        ),
        (
            "station: {station}\ntiming: 5\n",
            "timing: expected a mapping of timing figures",
        ),
        ("station: {station}\nfaults: [1]\n", "faults: expected a mapping"),
        ("station: {station}\nwiring: {{}}\n", "wiring: unknown key"),
        ("station: {station}\n  x: [\n", "line 2: mapping values are not allowed here"),
        ("station: {station}\nseed: 1\nseed: 2\n", "line 3: key 'seed' is given twice"),
    ],
)
def test_a_hostile_bench_file(tmp_path, text, expected):
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump(demo_station()))
    path = tmp_path / "bench.yaml"
    path.write_text(text.format(station=station))
    assert expected.format(folder=tmp_path) in one_line(Bench.from_file, path)


def test_a_bench_names_its_station_file_at_fault(tmp_path):
    station = demo_station()
    station["limits"]["max_voltage_v"] = -1.0
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station))
    path = tmp_path / "bench.yaml"
    path.write_text("station: station.yaml\n")
    message = one_line(Bench.from_file, path)
    assert message == (
        f"{path}: station: {tmp_path / 'station.yaml'}: "
        "limits.max_voltage_v: Input should be greater than 0"
    )
