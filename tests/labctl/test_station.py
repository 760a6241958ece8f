"""Station files: the demo loads; every kind of bad file gets one clear line."""

from pathlib import Path

import pytest
import yaml

from labctl.station import ConfigError, load_station, parse_pin

DEMO = Path(__file__).resolve().parents[2] / "data" / "stations" / "demo.yaml"


def demo_data() -> dict:
    return yaml.safe_load(DEMO.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "chip.yaml").write_text(
        "name: T\npreset: perovskite\narrays: {A0: {rows: 64, cols: 8}}\n"
    )
    data = {**data, "chip": "chip.yaml"}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_station_loads_with_its_chip():
    station = load_station(DEMO)
    assert station.chip_spec.arrays["A0"].rows == 64
    assert len(station.pin_channels()) == 72
    assert station.bus_of("smu2.smua") == "C"
    assert station.ground_bus == "H"


def edit(data: dict, dotted: str, value) -> dict:
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("limits.max_voltage_v", -1, "limits.max_voltage_v: Input should be greater than 0"),
        ("limits.max_voltage_v", "high", "limits.max_voltage_v: Input should be a valid number"),
        ("limits.bogus", 1, "limits.bogus: unknown key"),
        ("limits.max_compliance_a", KeyError, "limits.max_compliance_a: required key is missing"),
        ("instruments.smu1.model", "2400X", "instruments.smu1.model: not allowed"),
        ("instruments.smu2.via", "nobody", "instruments.smu2.via: no instrument 'nobody'"),
        ("wiring.buses.A", "smu9.smua", "wiring.buses.A: 'smu9.smua' is not an SMU channel"),
        ("wiring.buses.Z", "smu1.smua", "bus 'Z' is not a matrix row"),
        ("wiring.columns.7", ["A0.R0"], "slot 7"),
        ("wiring.columns.1", ["A0.R99"], "pin A0.R99 does not exist"),
        ("wiring.columns.2", ["A0.R0"], "pin A0.R0 is wired twice"),
        ("roles.drive", "smu1.smux", "roles.drive"),
        ("wiring.matrix", "smu1", "wiring.matrix: 'smu1' is not a switch matrix"),
    ],
)
def test_bad_station_gives_one_line_naming_file_and_key(tmp_path, key, value, expected):
    path = write(tmp_path, edit(demo_data(), key, value))
    with pytest.raises(ConfigError) as info:
        load_station(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_duplicate_resource_is_refused(tmp_path):
    data = demo_data()
    data["instruments"]["smu2"] = {"model": "2636B", "resource": "GPIB0::26::INSTR"}
    with pytest.raises(ConfigError, match="instruments.smu2.resource: GPIB0::26::INSTR is the instrument that smu1"):
        load_station(write(tmp_path, data))


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nlimits: {max_voltage_v: 1\n  bad: [\n")
    with pytest.raises(ConfigError, match=r"s.yaml: line \d+"):
        load_station(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_station(tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_station(path)


def test_parse_pin():
    assert parse_pin("A0.R12") == ("A0", "row", 12)
    assert parse_pin("B_1.C3") == ("B_1", "col", 3)
    with pytest.raises(ValueError):
        parse_pin("A0-R1")


def test_one_channel_on_two_rows_is_refused(tmp_path):
    data = demo_data()
    data["wiring"]["buses"]["G"] = "smu1.smua"
    with pytest.raises(ConfigError, match="wiring.buses.G: smu1.smua is wired to row A"):
        load_station(write(tmp_path, data))


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    text = DEMO.read_text().replace(
        "  max_voltage_v: 2.0", "  max_voltage_v: 2.0\n  max_voltage_v: 150.0")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"s.yaml: line 9: key 'max_voltage_v' is given twice"):
        load_station(path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ConfigError, match="not a text file"):
        load_station(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["instruments"].update(
            smu4={"model": "2450", "resource": "GPIB0::5::INSTR"},
            smu5={"model": "2636B", "via": "smu4", "node": 5}),
         "a 2450 is not a TSP-Link master"),
        (lambda d: d["instruments"]["smu1"].update(node=2), "TSP-Link node 2 of smu1"),
        (lambda d: d["instruments"].update(
            smu4={"model": "2636B", "resource": "GPIB::26"}),
         "GPIB::26 is the instrument that smu1 names already"),
        (lambda d: d["limits"].update(max_voltage_v=True), "max_voltage_v"),
        (lambda d: d.update(path="/elsewhere"), "path: unknown key"),
        (lambda d: d["instruments"].update(
            smu4={"model": 2450, "via": "smu1", "node": 5}),
         "a 2450 is not a TSP-Link instrument"),
    ],
)
def test_station_consistency(tmp_path, change, expected):
    data = demo_data()
    change(data)
    with pytest.raises(ConfigError, match=expected):
        load_station(write(tmp_path, data))


def test_unknown_preset_is_refused_with_the_known_ones(tmp_path):
    path = write(tmp_path, demo_data())
    (tmp_path / "chip.yaml").write_text("name: T\npreset: graphene\narrays: {A0: {rows: 64, cols: 8}}\n")
    with pytest.raises(ConfigError, match="no device preset 'graphene'; known: hfo2, perovskite"):
        load_station(path)


def test_missing_chip_file_names_the_key(tmp_path):
    data = demo_data()
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({**data, "chip": "absent.yaml"}))
    with pytest.raises(ConfigError, match="named by the 'chip' key of"):
        load_station(path)
