"""The bench clock: what each simulated instrument charges, pinned by hand.

Every expected duration below is worked out from the figures the test sets
(or the documented defaults) and the manuals' rules: one reading integrates
for NPLC / line frequency, then the SMU's overhead; a sweep point adds its
source and trigger delays; a relay phase settles; a message costs its
interface's latency.
"""

from pathlib import Path

import pytest
import pyvisa
import yaml

from simulator.bench import Bench, Timing, bench_for, forget

DATA = Path(__file__).resolve().parents[2] / "data"
BENCHES = DATA / "benches"

K2450, K2400, B2900, K2600 = (
    "GPIB0::18::INSTR",
    "GPIB0::24::INSTR",
    "GPIB0::23::INSTR",
    "GPIB0::26::INSTR",
)

#: Figures the tests set, so that each expected duration can be read off them.
OVERHEAD_S = 2e-4
RELAY_S = 5e-3
AUTORANGE_S = 4e-3


def make_bench(name: str, **timing: float) -> Bench:
    figures = {"measure_overhead_s": OVERHEAD_S, "relay_operate_s": RELAY_S}
    return Bench.from_file(BENCHES / f"{name}.yaml", timing={**figures, **timing})


def elapsed_s(bench: Bench, instrument, message: str) -> float:
    """Bench time one message takes, its replies read and dropped."""
    before = bench.now_s
    instrument.write(message)
    while instrument.read() is not None:
        pass
    return bench.now_s - before


def test_the_default_figures():
    assert Timing() == Timing(
        line_frequency_hz=60.0,
        measure_overhead_s=1e-4,
        relay_operate_s=3e-3,
        bus_latency_s=1e-3,
        usb_latency_s=5e-4,
        lan_latency_s=3e-4,
        autorange_s=0.0,
    )


# One reading: NPLC / line frequency plus the overhead.


def test_a_2450_reading_at_1_plc_on_a_60_hz_line():
    bench = make_bench("k2450-sim")
    smu = bench.resource(K2450)
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 60 + OVERHEAD_S)
    smu.write(":SENS:CURR:NPLC 6")
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(6 / 60 + OVERHEAD_S)


def test_a_reading_on_a_50_hz_line():
    bench = make_bench("k2450-sim", line_frequency_hz=50.0)
    smu = bench.resource(K2450)
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 50 + OVERHEAD_S)


def test_a_2400_reading_waits_the_source_delay_only_after_a_change():
    bench = make_bench("k2400-sim")
    smu = bench.resource(K2400)
    smu.write(":OUTP ON")
    # The output came on: the 1 ms source delay of reset (auto), then 1 PLC.
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1e-3 + 1 / 60 + OVERHEAD_S)
    # The same static source: no source delay.
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 60 + OVERHEAD_S)
    smu.write(":SOUR:VOLT 0.1;:SOUR:DEL 0.02")
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(0.02 + 1 / 60 + OVERHEAD_S)


def test_a_2400_reading_of_voltage_and_current_takes_two_integrations():
    bench = make_bench("k2400-sim")
    smu = bench.resource(K2400)
    smu.write(':SENS:FUNC "VOLT","CURR";:SENS:CURR:NPLC 0.5;:OUTP ON;:READ?')
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(2 * 0.5 / 60 + OVERHEAD_S)


def test_a_b2900_spot_reading_at_1_plc():
    bench = make_bench("b2902a-sim")
    smu = bench.resource(B2900)
    assert elapsed_s(bench, smu, ":MEAS:CURR? (@1)") == pytest.approx(
        1 / 60 + OVERHEAD_S
    )
    # Both channels at once: the longer aperture, once.
    smu.write(":SENS2:CURR:NPLC 3")
    assert elapsed_s(bench, smu, ":MEAS:CURR? (@1,2)") == pytest.approx(
        3 / 60 + OVERHEAD_S
    )


def test_a_2600_reading_at_1_plc():
    bench = make_bench("demo")
    smu = bench.resource(K2600)
    assert elapsed_s(bench, smu, "print(smua.measure.i())") == pytest.approx(
        1 / 60 + OVERHEAD_S
    )


# Sweeps: points x (delays + NPLC / line frequency + overhead).


@pytest.mark.parametrize("delay_s", [0.0, 0.005])
def test_a_2450_linear_sweep_of_100_points_with_a_source_delay(delay_s):
    bench = make_bench("k2450-sim")
    smu = bench.resource(K2450)
    smu.write(f":SOUR:VOLT:DEL {delay_s};:SOUR:SWE:VOLT:LIN 0,1,100,0")
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        100 * (delay_s + 1 / 60 + OVERHEAD_S)
    )


def test_a_2450_sweep_delay_adds_to_the_source_delay():
    bench = make_bench("k2450-sim")
    smu = bench.resource(K2450)
    smu.write(
        ":SENS:CURR:NPLC 0.1;:SOUR:VOLT:DEL 0.002;:SOUR:SWE:VOLT:LIN 0,1,100,0.003"
    )
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        100 * (0.002 + 0.003 + 0.1 / 60 + OVERHEAD_S)
    )


def test_a_2450_simple_loop_waits_the_source_delay_once():
    bench = make_bench("k2450-sim")
    smu = bench.resource(K2450)
    smu.write(':SOUR:VOLT:DEL 0.01;:SOUR:VOLT 0.1;:OUTP ON;:TRIG:LOAD "SimpleLoop",5')
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        0.01 + 5 * (1 / 60 + OVERHEAD_S)
    )


@pytest.mark.parametrize("delay_s", [0.0, 0.005])
def test_a_2400_linear_sweep_of_100_points_with_a_source_delay(delay_s):
    bench = make_bench("k2400-sim")
    smu = bench.resource(K2400)
    smu.write(
        f":SOUR:DEL {delay_s};:SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP 1;"
        ":SOUR:SWE:POIN 100;:SOUR:VOLT:MODE SWE;:TRIG:COUN 100;:OUTP ON"
    )
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        100 * (delay_s + 1 / 60 + OVERHEAD_S)
    )


def test_a_2400_sweep_after_reset_waits_the_1_ms_source_delay_at_each_point():
    bench = make_bench("k2400-sim")
    smu = bench.resource(K2400)
    smu.write(
        "*RST;:SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP 1;:SOUR:SWE:POIN 100;"
        ":SOUR:VOLT:MODE SWE;:TRIG:COUN 100;:OUTP ON"
    )
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        100 * (1e-3 + 1 / 60 + OVERHEAD_S)
    )


def test_a_2400_trigger_delay_comes_before_each_point():
    bench = make_bench("k2400-sim")
    smu = bench.resource(K2400)
    smu.write(
        ":SOUR:DEL 0.001;:TRIG:DEL 0.004;:SOUR:LIST:VOLT 0.1,0.2,0.3;"
        ":SOUR:VOLT:MODE LIST;:TRIG:COUN 3;:SENS:CURR:NPLC 0.1;:OUTP ON"
    )
    assert elapsed_s(bench, smu, ":INIT") == pytest.approx(
        3 * (0.004 + 0.001 + 0.1 / 60 + OVERHEAD_S)
    )


@pytest.mark.parametrize("delay_s", [0.0, 0.005])
def test_a_b2900_linear_sweep_of_100_points_with_an_acquire_delay(delay_s):
    bench = make_bench("b2902a-sim")
    smu = bench.resource(B2900)
    smu.write(
        ":SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP 1;:SOUR:SWE:POIN 100;"
        f":SOUR:VOLT:MODE SWE;:TRIG:COUN 100;:TRIG:ACQ:DEL {delay_s}"
    )
    assert elapsed_s(bench, smu, ":INIT (@1)") == pytest.approx(
        100 * (delay_s + 1 / 60 + OVERHEAD_S)
    )


@pytest.mark.parametrize("settle_s", [0.0, 0.005])
def test_a_2600_factory_linear_sweep_of_100_points(settle_s):
    bench = make_bench("demo")
    smu = bench.resource(K2600)
    assert elapsed_s(
        bench, smu, f"SweepVLinMeasureI(smua, 0, 1, {settle_s}, 100)"
    ) == pytest.approx(100 * (settle_s + 1 / 60 + OVERHEAD_S))


# Autorange: each range change costs the bench's autorange_s.


def test_a_2450_range_change_costs_the_autorange_time_once():
    bench = make_bench("k2450-sim", autorange_s=AUTORANGE_S)
    smu = bench.resource(K2450)
    # An open line reads about 0 A: autorange leaves the 100 uA range of reset.
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(
        1 / 60 + OVERHEAD_S + AUTORANGE_S
    )
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 60 + OVERHEAD_S)
    smu.write(":SENS:CURR:RANG 1e-4")
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 60 + OVERHEAD_S)


def test_a_2400_range_change_costs_the_autorange_time():
    bench = make_bench("k2400-sim", autorange_s=AUTORANGE_S)
    smu = bench.resource(K2400)
    smu.write(":OUTP ON")
    # The output came on (the 1 ms source delay), and the open line's 0 A
    # takes autorange down from the 100 uA range of reset.
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(
        1e-3 + 1 / 60 + OVERHEAD_S + AUTORANGE_S
    )
    assert elapsed_s(bench, smu, ":READ?") == pytest.approx(1 / 60 + OVERHEAD_S)


def test_a_b2900_range_change_costs_the_autorange_time():
    bench = make_bench("b2902a-sim", autorange_s=AUTORANGE_S)
    smu = bench.resource(B2900)
    assert elapsed_s(bench, smu, ":MEAS:CURR? (@1)") == pytest.approx(
        1 / 60 + OVERHEAD_S + AUTORANGE_S
    )
    assert elapsed_s(bench, smu, ":MEAS:CURR? (@1)") == pytest.approx(
        1 / 60 + OVERHEAD_S
    )


def test_a_b2900_range_change_delays_the_rest_of_its_run():
    bench = make_bench("b2902a-sim", autorange_s=AUTORANGE_S)
    smu = bench.resource(B2900)
    smu.write(":TRIG:COUN 3")
    # The first acquisition of an open line leaves the 100 uA range of reset.
    assert elapsed_s(bench, smu, ":INIT (@1)") == pytest.approx(
        3 * (1 / 60 + OVERHEAD_S) + AUTORANGE_S
    )


# Relays: each switching phase settles.


def test_a_relay_close_charges_the_settling_time():
    bench = make_bench("demo")
    matrix = bench.resource(K2600)
    assert elapsed_s(bench, matrix, 'node[4].channel.close("1A01")') == pytest.approx(
        RELAY_S
    )
    assert elapsed_s(bench, matrix, 'node[4].channel.close("1A01")') == 0.0
    # Break before make, both opening and closing: two phases.
    assert elapsed_s(
        bench, matrix, 'node[4].channel.exclusiveclose("1B02")'
    ) == pytest.approx(2 * RELAY_S)
    matrix.write('node[4].channel.setdelay("1C03", 0.02)')
    assert elapsed_s(bench, matrix, 'node[4].channel.close("1C03")') == pytest.approx(
        RELAY_S + 0.02
    )


# Messages: each charges its interface's latency.


def bench_file(folder: Path, resources: dict[str, str], **timing: float) -> Path:
    """The k2450-sim bench with other resource strings; returns the bench file."""
    station = yaml.safe_load((DATA / "stations" / "k2450-sim.yaml").read_text())
    station["chip"] = str((DATA / "chips" / "pvk-demo.yaml").resolve())
    for name, resource in resources.items():
        station["instruments"][name]["resource"] = resource
    (folder / "station.yaml").write_text(yaml.safe_dump(station))
    path = folder / "bench.yaml"
    data = {"station": str(folder / "station.yaml"), "timing": timing}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def interfaces(tmp_path):
    path = bench_file(
        tmp_path,
        {
            "smu1": "TCPIP0::192.168.1.26::inst0::INSTR",
            "smu2": "USB0::0x05E6::0x2450::04365704::INSTR",
        },
        bus_latency_s=2e-3,
        usb_latency_s=7e-4,
        lan_latency_s=4e-4,
    )
    manager = pyvisa.ResourceManager(f"{path}@labsim")
    yield manager, bench_for(path)
    manager.close()
    forget(path)


def messages_s(bench: Bench, resource, count: int, message: str) -> float:
    before = bench.now_s
    resource.write_raw("\n".join([message] * count).encode())
    return bench.now_s - before


def test_messages_over_usb_and_lan_charge_their_latencies(interfaces):
    manager, bench = interfaces
    usb = manager.open_resource("USB0::0x05E6::0x2450::04365704::INSTR")
    lan = manager.open_resource("TCPIP0::192.168.1.26::inst0::INSTR")
    assert messages_s(bench, usb, 7, "*CLS") == pytest.approx(7 * 7e-4)
    assert messages_s(bench, lan, 5, "x = 1") == pytest.approx(5 * 4e-4)


def test_messages_over_gpib_charge_the_bus_latency(tmp_path):
    path = bench_file(tmp_path, {}, bus_latency_s=2e-3)
    manager = pyvisa.ResourceManager(f"{path}@labsim")
    try:
        smu = manager.open_resource(K2450)
        assert messages_s(bench_for(path), smu, 10, "*CLS") == pytest.approx(10 * 2e-3)
    finally:
        manager.close()
        forget(path)


def test_a_query_is_one_message_and_its_reading(interfaces):
    manager, bench = interfaces
    usb = manager.open_resource(
        "USB0::0x05E6::0x2450::04365704::INSTR",
        read_termination="\n",
        write_termination="\n",
    )
    before = bench.now_s
    usb.query(":MEAS:CURR?")
    assert bench.now_s - before == pytest.approx(7e-4 + 1 / 60 + 1e-4)
