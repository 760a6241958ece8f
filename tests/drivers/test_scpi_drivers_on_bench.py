"""Our 2450, 2400 and B2900 drivers against the simulated instruments, through pyvisa.

Each driver talks to its simulated instrument through
``pyvisa.ResourceManager("<bench file>@labsim")``, as it would talk to the
real one; the currents it reads are those of the cells the matrix connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pyvisa
import yaml
from pymeasure.adapters import VISAAdapter

from drivers.b2900 import KeysightB2900
from drivers.k2400 import Keithley2400
from drivers.k2450 import Keithley2450
from drivers.scpi import ScpiError
from simulator.bench import bench_for, forget
from simulator.device import current_per_siemens

BENCHES = Path(__file__).resolve().parents[2] / "data" / "benches"
MASTER = "GPIB0::26::INSTR"
ROW_TO_GROUND = "1{bus}01,6H05:6H12"  # row A0.R0 on the bus, its columns on ground


@dataclass(frozen=True)
class Case:
    bench: str
    resource: str
    driver: type
    model: str
    channel: str
    bus: str

    @property
    def path(self) -> Path:
        return BENCHES / f"{self.bench}.yaml"

    @property
    def key(self) -> str:
        return f"smu2.{self.channel}"


CASES = [
    Case("k2450-sim", "GPIB0::18::INSTR", Keithley2450, "2450", "smu", "A"),
    Case("k2400-sim", "GPIB0::24::INSTR", Keithley2400, "2400", "smu", "A"),
    Case("b2902a-sim", "GPIB0::23::INSTR", KeysightB2900, "B2902A", "ch1", "A"),
    Case("b2902a-sim", "GPIB0::23::INSTR", KeysightB2900, "B2902A", "ch2", "B"),
]
IDS = [f"{case.model}-{case.channel}" for case in CASES]


def open_driver(case: Case, library: str):
    adapter = VISAAdapter(
        case.resource,
        visa_library=library,
        read_termination="\n",
        write_termination="\n",
        timeout=600_000,
    )
    return case.driver(adapter, name="smu2", model=case.model)


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    forget(request.param.path)
    yield request.param
    forget(request.param.path)


@pytest.fixture
def driver(case):
    instrument = open_driver(case, f"{case.path}@labsim")
    yield instrument
    instrument.adapter.close()


@pytest.fixture
def channel(driver, case):
    return getattr(driver, case.channel)


@pytest.fixture
def bench(case):
    return bench_for(case.path)


@pytest.fixture
def row_load(bench, case):
    """The channel on row A0.R0, the row's columns grounded; returns sum(G) in S."""
    bench.resource(MASTER).write(
        f'node[4].channel.exclusiveclose("{ROW_TO_GROUND.format(bus=case.bus)}")'
    )
    return float(bench.arrays["A0"].conductance_s[0].sum())


def test_the_bench_is_reached_through_a_pyvisa_resource_manager(case):
    manager = pyvisa.ResourceManager(f"{case.path}@labsim")
    try:
        assert case.resource in manager.list_resources()
        resource = manager.open_resource(
            case.resource, read_termination="\n", write_termination="\n"
        )
        assert case.model in resource.query("*IDN?")
        resource.close()
    finally:
        manager.close()


def test_identity_and_an_empty_error_queue(driver, case):
    assert driver.identity()["model"] == case.model
    assert driver.check_errors() == []


def test_an_error_is_read_back_and_drained(driver):
    driver.write(":SOUR:BOGUS 1")
    errors = driver.check_errors()
    assert [e.code for e in errors] == [-113]
    assert isinstance(errors[0], ScpiError)
    assert "Undefined header" in errors[0].message
    assert driver.check_errors() == []


SETTINGS = [
    ("source_function", "current"),
    ("source_function", "voltage"),
    ("source_voltage", 1.23456789),
    ("source_voltage", -0.5),
    ("source_current", 1e-7),
    ("current_limit", 1.5e-4),
    ("current_limit", 1e-7),
    ("voltage_limit", 3.5),
    ("nplc", 0.1),
    ("four_wire", True),
    ("four_wire", False),
    ("current_autorange", False),
    ("current_autorange", True),
    ("output_enabled", True),
    ("output_enabled", False),
]


def test_every_setting_reads_back(channel, driver):
    for prop, value in SETTINGS:
        setattr(channel, prop, value)
        assert getattr(channel, prop) == pytest.approx(value), prop
    assert driver.check_errors() == []


def test_current_range_reads_back_as_the_model_reports_it(channel, case, driver):
    channel.current_limit = 1e-3
    channel.current_range = 1e-3
    assert channel.current_range == pytest.approx(
        1.05e-3 if case.model == "2400" else 1e-3
    )
    assert channel.current_autorange is False
    assert driver.check_errors() == []


def test_measure_current_reads_the_cells(channel, row_load):
    channel.current_limit = 1e-3
    channel.source_voltage = 0.1
    channel.output_enabled = True
    assert channel.measure_current() == pytest.approx(0.1 * row_load, rel=0.02)
    assert channel.compliance is False


def test_a_tripped_limit_reads_the_limit(channel, row_load, bench, case):
    limit_a = 0.5 * 0.2 * row_load
    channel.current_limit = limit_a
    channel.source_voltage = 0.2
    channel.output_enabled = True
    assert channel.measure_current() == pytest.approx(limit_a, rel=1e-3)
    assert channel.compliance is True
    assert bench.compliance(case.key)


def test_sweep_voltage_returns_one_current_per_level(channel, row_load, bench, case):
    channel.current_limit = 1e-3
    levels = np.linspace(0.02, 0.2, 10)
    before = bench.now_s
    currents = channel.sweep_voltage(levels, 0.002)
    np.testing.assert_allclose(currents, levels * row_load, rtol=0.02)
    assert bench.now_s - before > 10 * (0.002 + 1 / 60)
    assert case.key not in bench.outputs_on()
    assert channel.output_enabled is False


def test_a_long_sweep_is_loaded_in_pieces(channel, row_load, driver):
    channel.current_limit = 1e-3
    channel.nplc = 0.01
    levels = np.linspace(0.0, 0.2, 250)
    currents = channel.sweep_voltage(levels, 0.0)
    np.testing.assert_allclose(currents[1:], levels[1:] * row_load, rtol=0.05)
    assert driver.check_errors() == []


def test_pulse_train_switches_the_cells_and_reads_each_pulse(channel, row_load, bench):
    channel.current_limit = 1e-2
    channel.nplc = 0.01
    g_before = bench.arrays["A0"].conductance_s[0].copy()
    currents = channel.pulse_train(1.2, 1e-3, 0.0, 2e-3, 5)
    g_after = bench.arrays["A0"].conductance_s[0]
    assert currents.shape == (5,)
    assert np.all(g_after > g_before)
    assert currents[-1] > currents[0] > 1.2 * g_before.sum()
    # At 1.2 V, past the ohmic region, each cell carries G times the I-V's
    # current per siemens there.
    per_siemens = float(current_per_siemens(bench.preset, 1.2))
    assert currents[-1] == pytest.approx(per_siemens * g_after.sum(), rel=0.05)
    assert channel.output_enabled is False


def test_applied_pulses_switch_the_cells_without_a_reply(
    channel, row_load, bench, driver
):
    channel.current_limit = 1e-2
    channel.nplc = 0.01
    g_before = bench.arrays["A0"].conductance_s[0].sum()
    before = bench.now_s
    channel.apply_pulses(1.2, 1e-3, 0.0, 1e-3, 4)
    assert bench.now_s - before >= 4 * 2e-3
    assert bench.arrays["A0"].conductance_s[0].sum() > g_before
    assert driver.check_errors() == []


#: Settings a sweep or a pulse train changes for itself, by model.
PUT_BACK = {
    "2450": (":SOUR:VOLT?",),
    "2400": (":SOUR:DEL:AUTO?", ":SOUR:VOLT:MODE?", ":TRIG:COUN?", ":SOUR:VOLT?"),
    "B2902A": (
        ":SOUR{ch}:FUNC:SHAP?",
        ":SOUR{ch}:VOLT:MODE?",
        ":TRIG{ch}:COUN?",
        ":TRIG{ch}:ACQ:DEL?",
        ":SOUR{ch}:VOLT:TRIG?",
        ":SOUR{ch}:VOLT?",
    ),
}


def test_sweeps_and_pulses_put_back_what_they_change(channel, case, row_load):
    channel.current_limit = 1e-2
    channel.nplc = 0.01
    channel.source_voltage = 0.1
    query = ";".join(PUT_BACK[case.model])
    before = channel.ask(query)
    channel.sweep_voltage([0.05, 0.2], 0.002)
    assert channel.ask(query) == before
    channel.pulse_train(0.3, 1e-3, 0.1, 1e-3, 2)
    assert channel.ask(query) == before
    channel.apply_pulses(0.3, 1e-3, 0.1, 1e-3, 2)
    assert channel.ask(query) == before


def test_shutdown_turns_every_output_off(driver, channel, bench):
    channel.current_limit = 1e-3
    channel.output_enabled = True
    assert bench.outputs_on()
    driver.shutdown()
    assert not [key for key in bench.outputs_on() if key.startswith("smu2.")]


# Model-specific behaviour the drivers meet.


@pytest.fixture
def k2400():
    case = CASES[1]
    forget(case.path)
    instrument = open_driver(case, f"{case.path}@labsim")
    instrument.adapter.connection.timeout = 200
    yield instrument, bench_for(case.path)
    instrument.adapter.close()
    forget(case.path)


def test_the_2400_refuses_a_reading_with_the_output_off(k2400):
    driver, bench = k2400
    before = bench.now_s
    with pytest.raises(pyvisa.VisaIOError):
        driver.smu.measure_current()
    assert bench.now_s - before >= 0.2  # the client waited its timeout
    assert [e.code for e in driver.check_errors()] == [803]


def test_the_2450_limit_below_a_tenth_of_a_percent_of_a_fixed_range_is_not_sent():
    case = CASES[0]
    forget(case.path)
    driver = open_driver(case, f"{case.path}@labsim")
    try:
        with pytest.raises(ValueError, match="below the 0.001 A limit"):
            driver.smu.current_range = 1.0  # the default 105 uA limit is too low
        assert driver.smu.current_autorange is True
        driver.smu.current_limit = 2e-3
        driver.smu.current_range = 1.0
        assert driver.smu.current_range == 1.0
        with pytest.raises(ValueError, match="1e-06 A is below the 0.001 A limit"):
            driver.smu.current_limit = 1e-6
        assert driver.smu.current_limit == 2e-3
        driver.smu.current_autorange = True
        driver.smu.current_limit = 1e-6
        assert driver.check_errors() == []
    finally:
        driver.adapter.close()
        forget(case.path)


def test_the_b2900_pulse_train_needs_the_aperture_inside_the_pulse():
    case = CASES[2]
    forget(case.path)
    driver = open_driver(case, f"{case.path}@labsim")
    try:
        with pytest.raises(ValueError, match="aperture"):
            driver.ch1.pulse_train(0.5, 1e-3, 0.0, 1e-3, 3)  # 1 PLC is 16.7 ms
        driver.ch1.nplc = 0.05
        assert driver.ch1.pulse_train(0.1, 1e-3, 0.0, 1e-3, 3).shape == (3,)
    finally:
        driver.adapter.close()
        forget(case.path)


def test_a_b2912a_takes_its_lowest_range(tmp_path):
    station = yaml.safe_load(
        (BENCHES.parent / "stations" / "b2902a-sim.yaml").read_text()
    )
    station["instruments"]["smu2"]["model"] = "B2912A"
    station["chip"] = str((BENCHES.parent / "chips" / "pvk-demo.yaml").resolve())
    station["visa_library"] = str(tmp_path / "bench.yaml") + "@labsim"
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station))
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(yaml.safe_dump({"station": str(tmp_path / "station.yaml")}))
    case = Case("b2912a", "GPIB0::23::INSTR", KeysightB2900, "B2912A", "ch2", "B")
    driver = open_driver(case, f"{bench_file}@labsim")
    try:
        assert driver.identity()["model"] == "B2912A"
        driver.ch2.current_range = 1e-8
        assert driver.ch2.current_range == 1e-8
        assert driver.check_errors() == []
    finally:
        driver.adapter.close()
        forget(bench_file)


def test_a_visa_trigger_and_a_serial_poll_reach_a_scpi_instrument():
    case = CASES[1]
    forget(case.path)
    manager = pyvisa.ResourceManager(f"{case.path}@labsim")
    try:
        smu = manager.open_resource(
            case.resource, read_termination="\n", write_termination="\n"
        )
        smu.write(":STAT:MEAS:ENAB 512;*SRE 1;:TRAC:POIN 2;:TRAC:FEED:CONT NEXT")
        smu.write(":ARM:SOUR BUS;:TRIG:COUN 2;:OUTP ON;:INIT")
        assert smu.read_stb() == 0
        smu.assert_trigger()
        assert smu.read_stb() == 65
        assert smu.query(":TRAC:POIN:ACT?") == "2"
        smu.close()
    finally:
        manager.close()
        forget(case.path)
