"""pymeasure's own Keithley drivers, unmodified, against the simulated instruments.

``Keithley2400``, ``Keithley2450`` and ``Keithley2600`` from
``pymeasure.instruments.keithley`` run their documented workflows (apply a
voltage or a current, set the compliance, measure, use the buffer) through
each transport of the simulated bench: the ``@labsim`` backend, and pyvisa-py
over TCP to the bench's server as to a LAN instrument. Where a stock driver
sends something the real instrument would refuse, or reads a reply wrongly,
the test says so and checks what the simulated instrument does about it.

The stock drivers pause with ``time.sleep`` while ramping; here a pause lets
bench time pass instead, so a ramp costs no real time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymeasure.adapters import VISAAdapter
from pymeasure.instruments.keithley import Keithley2400, Keithley2450, Keithley2600
from pymeasure.instruments.keithley import buffer as keithley_buffer

from simulator.bench import Bench, bench_for, forget
from simulator.server import BenchServer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

BENCHES = Path(__file__).resolve().parents[2] / "data" / "benches"
MASTER = "GPIB0::26::INSTR"


class BenchProbe:
    """What a test reads of the bench, once the bench has handled every message.

    Over TCP a write returns before the server has handled it; the probe
    first asks ``*OPC?`` on the driver's connection (both languages answer
    it), so the bench has handled everything sent before it is read, and
    reads it under the server's lock.
    """

    def __init__(
        self, bench: Bench, lock: threading.Lock, settle: Callable[[], object]
    ) -> None:
        self._bench = bench
        self._lock = lock
        self._settle = settle

    @property
    def now_s(self) -> float:
        """The bench clock, s."""
        self._settle()
        with self._lock:
            return self._bench.now_s

    def outputs_on(self) -> list[str]:
        """The SMU channels whose output is on."""
        self._settle()
        with self._lock:
            return self._bench.outputs_on()

    def pause(self, duration_s: float) -> None:
        """Let bench time pass after what was sent has been handled, for time.sleep."""
        self._settle()
        with self._lock:
            self._bench.advance(duration_s)


@pytest.fixture(params=["labsim", "tcp"])
def transport(request) -> str:
    """How the drivers reach the bench: the @labsim backend or TCP."""
    return request.param


def driven(
    driver: type, bench_name: str, resource: str, transport: str, monkeypatch
) -> Iterator[tuple[Any, BenchProbe, float]]:
    """A stock driver on one simulated instrument; row A0.R0 on bus A, columns
    grounded.

    Yields the driver, a probe of the bench and the row's total conductance (S).
    """
    path = BENCHES / f"{bench_name}.yaml"
    forget(path)
    bench = bench_for(path)
    bench.resource(MASTER).write('node[4].channel.exclusiveclose("1A01,6H05:6H12")')
    load = float(bench.arrays["A0"].conductance_s[0].sum())
    with contextlib.ExitStack() as stack:
        stack.callback(forget, path)
        if transport == "tcp":
            server = stack.enter_context(BenchServer(bench))
            adapter = VISAAdapter(
                f"TCPIP0::127.0.0.1::{server.ports[resource]}::SOCKET",
                visa_library="@py",
                read_termination="\n",
                write_termination="\n",
                timeout=2000,
            )
            probe = BenchProbe(
                bench, server.lock, lambda: adapter.connection.query("*OPC?")
            )
        else:
            adapter = VISAAdapter(
                resource,
                visa_library=f"{path}@labsim",
                read_termination="\n",
                write_termination="\n",
                timeout=2000,
            )
            probe = BenchProbe(bench, threading.Lock(), lambda: None)
        stack.callback(adapter.close)
        monkeypatch.setattr(time, "sleep", probe.pause)
        monkeypatch.setattr(keithley_buffer, "sleep", probe.pause)
        yield driver(adapter), probe, load


@pytest.fixture
def k2400(transport, monkeypatch):
    yield from driven(
        Keithley2400, "k2400-sim", "GPIB0::24::INSTR", transport, monkeypatch
    )


@pytest.fixture
def k2450(transport, monkeypatch):
    yield from driven(
        Keithley2450, "k2450-sim", "GPIB0::18::INSTR", transport, monkeypatch
    )


@pytest.fixture
def k2600(transport, monkeypatch):
    yield from driven(Keithley2600, "demo", MASTER, transport, monkeypatch)


# Keithley2400


def test_2400_sources_a_voltage_and_measures_the_cells(k2400):
    smu, bench, load = k2400
    smu.reset()
    smu.source_mode = "voltage"
    smu.compliance_current = 1e-3
    smu.source_voltage = 0.1
    smu.enable_source()
    assert smu.source_enabled is True
    assert smu.current == pytest.approx(0.1 * load, rel=0.02)
    assert smu.voltage == pytest.approx(0.1)
    assert smu.resistance == pytest.approx(1 / load, rel=0.02)
    reading = smu.measure_all()
    assert reading["current"] == pytest.approx(0.1 * load, rel=0.02)
    assert reading["status"] & (1 << 3) == 0
    assert smu.check_errors() == []


def test_2400_compliance_holds_the_current_the_cells_draw(k2400):
    smu, bench, load = k2400
    limit_a = 0.5 * 0.2 * load
    smu.apply_voltage(compliance_current=limit_a)
    smu.source_voltage = 0.2
    smu.enable_source()
    reading = smu.measure_all()
    assert reading["current"] == pytest.approx(limit_a, rel=1e-3)
    assert reading["status"] & (1 << 3)
    assert smu.check_errors() == []


def test_2400_sources_a_current_as_its_docstring_shows(k2400):
    smu, bench, load = k2400
    smu.reset()
    smu.source_mode = "current"
    smu.compliance_voltage = 2
    smu.source_enabled = True
    smu.ramp_to_current(5e-6, steps=5)
    assert smu.source_current == pytest.approx(5e-6)
    assert smu.voltage == pytest.approx(5e-6 / load, rel=0.02)
    assert smu.check_errors() == []


def test_2400_buffer_fills_and_reports_full_in_the_status_byte(k2400):
    smu, bench, load = k2400
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.1
    smu.enable_source()
    smu.config_buffer(points=5, delay=0.01)
    assert smu.is_buffer_full() is False
    smu.start_buffer()
    smu.wait_for_buffer(timeout=1, interval=0.01)
    assert smu.is_buffer_full() is True
    data = smu.buffer_data
    assert data.shape == (25,)
    assert data[1::5] == pytest.approx([0.1 * load] * 5, rel=0.02)
    assert smu.mean_current == pytest.approx(data[1::5].mean(), rel=1e-5)
    assert smu.max_current == pytest.approx(data[1::5].max(), rel=1e-5)
    assert smu.mean_voltage == pytest.approx(0.1)
    assert smu.std_current >= 0
    smu.reset_buffer()
    smu.disable_buffer()
    assert smu.check_errors() == []


def test_2400_bus_trigger_starts_the_armed_buffer(k2400):
    smu, bench, load = k2400
    smu.apply_voltage(compliance_current=1e-3)
    smu.enable_source()
    smu.trigger_on_bus()
    smu.config_buffer(points=3)
    smu.start_buffer()
    assert smu.is_buffer_full() is False
    smu.trigger()
    assert smu.is_buffer_full() is True
    assert smu.trigger_count == 3 and smu.arm_count == 1
    smu.sample_continuously()
    assert smu.check_errors() == []


def test_2400_settings_read_back(k2400):
    smu, bench, load = k2400
    settings = [
        ("source_delay", 0.01),
        ("source_delay_auto_enabled", True),
        ("auto_zero_enabled", False),
        ("output_off_state", "disconnected"),
        ("auto_output_off_enabled", True),
        ("filter_enabled", True),
        ("repeat_filter_enabled", False),
        ("filter_count", 5),
        ("current_range_auto_enabled", False),
        ("current_nplc", 0.5),
        ("voltage_nplc", 2),
        ("resistance_mode_auto_enabled", False),
        ("trigger_delay", 0.25),
        ("arm_timer", 0.5),
        ("arm_source", "timer"),
        ("trigger_source", "trigger_link"),
        ("trigger_output_event", "sense"),
        ("arm_output_event", "trigger_exit"),
        ("trigger_input_line", 2),
        ("arm_output_line", 3),
        ("display_enabled", False),
        ("wires", 4),
        ("line_frequency", 50),
        ("line_frequency_auto_enabled", True),
        ("front_terminals_enabled", False),
    ]
    for name, value in settings:
        setattr(smu, name, value)
        assert getattr(smu, name) == value, name
    assert smu.check_errors() == []


def test_2400_ranges_read_back_at_105_percent(k2400):
    smu, bench, load = k2400
    smu.current_range = 1e-3
    smu.voltage_range = 2
    smu.source_voltage_range = 20
    assert smu.current_range == pytest.approx(1.05e-3)
    assert smu.voltage_range == pytest.approx(2.1)
    assert smu.source_voltage_range == pytest.approx(21)
    assert smu.check_errors() == []


def test_2400_g_formatting_rounds_a_value_to_six_digits(k2400):
    # The stock driver formats with %g: 1.23456789e-4 A is sent as 1.23457e-04.
    smu, bench, load = k2400
    smu.compliance_current = 1.23456789e-4
    assert smu.compliance_current == 1.23457e-4


def test_2400_shutdown_ramps_to_zero_and_turns_the_output_off(k2400):
    smu, bench, load = k2400
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.2
    smu.enable_source()
    before = bench.now_s
    smu.shutdown()
    assert smu.source_voltage == 0
    assert bench.outputs_on() == []
    assert bench.now_s - before >= 30 * 20e-3
    assert smu.check_errors() == []


# Keithley2450 in its native SCPI command set


def test_2450_sources_a_voltage_and_measures_the_cells(k2450):
    smu, bench, load = k2450
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.1
    smu.enable_source()
    assert smu.source_enabled is True
    smu.measure_current(nplc=1)
    assert smu.current == pytest.approx(0.1 * load, rel=0.02)
    smu.measure_voltage()
    assert smu.voltage == pytest.approx(0.1)
    smu.measure_resistance()
    assert smu.resistance == pytest.approx(1 / load, rel=0.02)
    assert smu.check_errors() == []


def test_2450_compliance_holds_the_current_the_cells_draw(k2450):
    smu, bench, load = k2450
    limit_a = 0.5 * 0.2 * load
    smu.apply_voltage(compliance_current=limit_a)
    smu.source_voltage = 0.2
    smu.enable_source()
    smu.measure_current()
    assert smu.current == pytest.approx(limit_a, rel=1e-3)
    assert smu.ask(":SOUR:VOLT:ILIM:TRIP?") == "1"


def test_2450_sources_a_current_as_its_docstring_shows(k2450):
    smu, bench, load = k2450
    smu.apply_current()
    smu.source_current_range = 10e-3
    smu.compliance_voltage = 10
    smu.source_current = 0
    smu.enable_source()
    smu.measure_voltage()
    smu.ramp_to_current(5e-6)
    assert smu.voltage == pytest.approx(5e-6 / load, rel=0.02)
    smu.shutdown()
    assert bench.outputs_on() == []
    assert smu.check_errors() == []


def test_2450_settings_read_back(k2450):
    smu, bench, load = k2450
    smu.measure_current(auto_range=False, current=1e-3)
    assert smu.current_range == pytest.approx(1e-3)
    settings = [
        ("current_nplc", 0.5),
        ("voltage_nplc", 2),
        ("wires", 4),
        ("current_filter_type", "MOV"),
        ("current_filter_count", 20),
        ("voltage_filter_type", "REP"),
        ("buffer_points", 500),
        ("source_voltage_delay", 0.05),
        ("source_current_delay_auto", True),
        ("current_output_off_state", "HIMP"),
        ("voltage_output_off_state", "ZERO"),
        ("source_voltage_range", 20),
    ]
    for name, value in settings:
        setattr(smu, name, value)
        assert getattr(smu, name) == value, name
    smu.current_filter_state = "ON"
    assert smu.current_filter_state == 1  # the 2450 answers 1, not ON
    smu.beep(1000, 0.1)
    smu.use_rear_terminals()
    smu.use_front_terminals()
    smu.trigger()
    assert smu.check_errors() == []


def test_2450_reset_puts_a_colon_before_a_common_command(k2450):
    # reset() sends "*RST;:stat:pres;:*CLS;": IEEE 488.2 has no ":*CLS", and
    # the simulated 2450 refuses it (-102) after *RST and :STAT:PRES ran.
    smu, bench, load = k2450
    smu.source_voltage = 1
    smu.reset()
    assert smu.source_voltage == 0
    assert [int(code) for code, _ in smu.check_errors()] == [-102]


def test_2450_config_buffer_sends_2400_commands_the_native_2450_lacks(k2450):
    # config_buffer() sends :STAT:MEAS:ENAB 512 and :TRAC:FEED SENSE, commands
    # of the 2400 (the stock driver's own docstring says its buffer calls need
    # the 2450's 2400 emulation); the native 2450 answers -113 to each.
    smu, bench, load = k2450
    smu.write(":SYST:ERR:CLE")
    smu.config_buffer(points=5)  # reads and logs the errors itself
    smu.write(":STAT:MEAS:ENAB 512;:TRAC:FEED SENSE")
    assert [int(code) for code, _ in smu.check_errors()] == [-113]
    smu.start_buffer()
    assert smu.is_buffer_full() is False


def test_2450_statistics_are_one_number_per_buffer(k2450):
    # The native :TRAC:STAT:AVER? answers the mean of the buffer's readings;
    # the stock mean_voltage / mean_current index a three-element list.
    smu, bench, load = k2450
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.1
    smu.enable_source()
    smu.measure_current()
    readings = [smu.current for _ in range(3)]
    assert smu.means == pytest.approx(sum(readings) / 3, rel=1e-5)
    with pytest.raises(TypeError):
        smu.mean_current  # noqa: B018
    assert smu.maximums == pytest.approx(max(readings), rel=1e-5)


# Keithley2600 (TSP) on the 2636B


def test_2600_sources_a_voltage_and_measures_the_cells(k2600):
    smu, bench, load = k2600
    channel = smu.ChA
    channel.apply_voltage(compliance_current=1e-3)
    channel.source_voltage = 0.1
    channel.source_output = "ON"
    channel.measure_current(nplc=1)
    assert channel.current == pytest.approx(0.1 * load, rel=0.02)
    assert channel.voltage == pytest.approx(0.1)
    assert channel.resistance == pytest.approx(1 / load, rel=0.02)
    assert channel.source_mode == "voltage"
    assert channel.compliance_current == pytest.approx(1e-3)
    assert smu.check_errors() == []


def test_2600_compliance_holds_the_current_the_cells_draw(k2600):
    smu, bench, load = k2600
    channel = smu.ChA
    limit_a = 1e-5  # exact in the stock "%f" form, below the 0.2 V load current
    assert 0.2 * load > 1.5 * limit_a
    channel.apply_voltage(compliance_current=limit_a)
    channel.source_voltage = 0.2
    channel.source_output = "ON"
    assert channel.current == pytest.approx(limit_a, rel=1e-3)
    assert smu.ask("print(smua.source.compliance)") == "true"


def test_2600_sources_a_current_and_shuts_down(k2600):
    smu, bench, load = k2600
    channel = smu.ChA
    channel.apply_current(compliance_voltage=2)
    channel.source_output = "ON"
    channel.ramp_to_current(5e-6, steps=5, pause=0.01)
    channel.measure_voltage()
    assert channel.voltage == pytest.approx(5e-6 / load, rel=0.02)
    channel.wires_mode = "4"
    assert channel.wires_mode == "4"
    channel.shutdown()
    assert channel.source_output == "OFF"
    assert bench.outputs_on() == []
    assert smu.check_errors() == []


def test_2600_f_formatting_sends_a_100_na_limit_as_zero(k2600):
    # compliance_current uses "%f": 1e-7 A is sent as 0.000000, which the
    # 2636B refuses (-222), keeping the limit it had.
    smu, bench, load = k2600
    channel = smu.ChA
    channel.compliance_current = 1e-3
    channel.compliance_current = 1e-7
    assert channel.compliance_current == pytest.approx(1e-3)
    assert [code for code, _ in smu.check_errors()] == [-222]


def test_2600_nplc_control_maps_through_its_range(k2600):
    # measure_nplc declares map_values over its range [0.001, 25] as if it
    # were a table of values: setting sends the value's index (25 sends 1,
    # any other value raises) and reading maps the reply back (1 reads 25).
    smu, bench, load = k2600
    channel = smu.ChA
    with pytest.raises(ValueError):
        channel.measure_nplc = 10
    channel.measure_nplc = 25
    assert smu.ask("print(smua.measure.nplc)") == "1.00000e+00"
    assert channel.measure_nplc == 25
    channel.measure_nplc = 0.001  # sends index 0: NPLC 0 is out of range
    assert [code for code, _ in smu.check_errors()] == [-222]
