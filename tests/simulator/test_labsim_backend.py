"""The @labsim pyvisa backend: resources, messages, timeouts, attributes, speed."""

import struct
import time
from pathlib import Path

import pytest
import pyvisa
from pymeasure.adapters import VISAAdapter

from simulator.bench import bench_for, forget

DEMO = Path(__file__).resolve().parents[2] / "data" / "benches" / "demo.yaml"
LIBRARY = f"{DEMO}@labsim"
MASTER = "GPIB0::26::INSTR"


@pytest.fixture
def rm():
    forget(DEMO)
    manager = pyvisa.ResourceManager(LIBRARY)
    yield manager
    manager.close()
    forget(DEMO)


@pytest.fixture
def smu(rm):
    resource = rm.open_resource(
        MASTER, read_termination="\n", write_termination="\n", timeout=500
    )
    yield resource
    resource.close()


def test_list_resources_names_the_station_resources(rm):
    assert rm.list_resources() == (MASTER,)
    assert rm.list_resources("TCPIP?*") == ()


def test_a_query_answers(smu):
    assert smu.query("*IDN?").startswith("Keithley Instruments Inc., Model 2636B,")


def test_an_unknown_resource_is_not_found(rm):
    with pytest.raises(pyvisa.VisaIOError) as error:
        rm.open_resource("GPIB0::5::INSTR")
    assert (
        error.value.error_code == pyvisa.constants.StatusCode.error_resource_not_found
    )


def test_a_failed_query_times_out_in_bench_time_only(smu):
    bench = bench_for(DEMO)
    smu.timeout = 60_000  # a real wait would be unmistakable
    before_s, started = bench.now_s, time.perf_counter()
    with pytest.raises(pyvisa.VisaIOError) as error:
        smu.query("print(1")
    assert error.value.error_code == pyvisa.constants.StatusCode.error_timeout
    assert time.perf_counter() - started < 30
    assert bench.now_s - before_s >= 60
    assert smu.query("print(errorqueue.next())").startswith("-2.85000e+02\t")
    assert smu.query("print(2)") == "2.00000e+00"


def test_each_message_charges_the_bus_latency(smu):
    bench = bench_for(DEMO)
    before_s = bench.now_s
    smu.write_raw(b"x = 1\ny = 2\n\nz = 3")
    assert bench.now_s - before_s == pytest.approx(3 * bench.timing.bus_latency_s)
    assert smu.query("print(x + y + z)") == "6.00000e+00"


def test_attributes_pyvisa_uses(smu):
    smu.timeout = 1234
    assert smu.timeout == 1234
    assert smu.get_visa_attribute(pyvisa.constants.ResourceAttribute.termchar) == 10
    assert smu.get_visa_attribute(pyvisa.constants.ResourceAttribute.termchar_enabled)
    assert smu.send_end is True
    assert smu.resource_name == MASTER
    assert smu.primary_address == 26


def test_clear_drops_pending_replies(smu):
    smu.write("print(1)")
    smu.clear()
    smu.write("print(2)")
    assert smu.read() == "2.00000e+00"


def test_reads_of_a_few_bytes_at_a_time(smu):
    smu.write("print('abcdef')")
    assert smu.read_bytes(3) == b"abc"
    assert smu.read_bytes(4) == b"def\n"


def test_a_binary_buffer_reads_back(smu):
    smu.write(
        "SweepVListMeasureI(smua, {0.125, 0.25}, 0, 2) format.data = format.REAL32 "
        "printbuffer(1, 2, smua.nvbuffer1.sourcevalues)"
    )
    raw = smu.read_bytes(2 + 8 + 1)
    assert raw[:2] == b"#0" and raw[-1:] == b"\n"
    assert struct.unpack("<2f", raw[2:10]) == (0.125, 0.25)


def test_two_resource_managers_share_one_bench(rm, smu):
    other = pyvisa.ResourceManager(LIBRARY).open_resource(
        MASTER, read_termination="\n", write_termination="\n"
    )
    smu.write("shared = 42")
    assert other.query("print(shared)") == "4.20000e+01"
    other.close()


def test_pymeasure_visa_adapter(rm):
    adapter = VISAAdapter(
        MASTER, visa_library=LIBRARY, read_termination="\n", write_termination="\n"
    )
    adapter.write("print(localnode.model)")
    assert adapter.read() == "2636B"
    adapter.close()


def test_a_bench_file_that_cannot_be_used_fails_at_once(tmp_path):
    bad = tmp_path / "bench.yaml"
    bad.write_text("colour: blue\n")
    with pytest.raises(ValueError, match="colour"):
        pyvisa.ResourceManager(f"{bad}@labsim")


def target_messages():
    """The engine's read step: levels, a 72-crosspoint pattern, four currents."""
    messages = []
    for selected in range(64):
        channels = []
        for r in range(64):
            slot, column = divmod(r, 12)
            bus = "A" if r == selected else "B"
            channels.append(f"{slot + 1}{bus}{column + 1:02d}")
        channels += [f"6{'CDEFHHHH'[c]}{c + 5:02d}" for c in range(8)]
        messages.append(
            "smua.source.levelv = 0 smub.source.levelv = 0 "
            f'node[4].channel.exclusiveclose("{",".join(channels)}") '
            "smua.source.levelv = 0.2 smub.source.levelv = -0.2 "
            "print(node[2].smua.measure.i(), node[2].smub.measure.i(), "
            "node[3].smua.measure.i(), node[3].smub.measure.i())"
        )
    return messages


def test_round_trip_of_an_engine_read_step(smu):
    smu.write(
        "for n = 1, 3 do for _, ch in ipairs({node[n].smua, node[n].smub}) do "
        "ch.source.limiti = 1e-2 ch.source.output = 1 end end"
    )
    messages = target_messages()
    for message in messages:  # warm the chunk, list and net caches
        smu.write(message)
        currents = [float(f) for f in smu.read().split("\t")]
    assert len(currents) == 4 and all(c > 0 for c in currents)
