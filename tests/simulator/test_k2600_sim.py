"""Simulated 2600B: models, source and measure objects, buffers, factory scripts."""

import struct
from pathlib import Path

import numpy as np
import pytest

from labctl.station import InstrumentSpec
from simulator.bench import Bench
from simulator.instruments import make_instrument
from simulator.instruments.k2600 import OVERFLOW, RATINGS
from tests.simulator.tsp_talk import ask

DEMO = Path(__file__).resolve().parents[2] / "data" / "benches" / "demo.yaml"


@pytest.fixture
def bench():
    return Bench.from_file(DEMO)


@pytest.fixture
def smu(bench):
    return bench.resource("GPIB0::26::INSTR")


def number(instrument, expression):
    return float(ask(instrument, f"print({expression})")[0])


def numbers(reply):
    return [float(field) for field in reply.split(", ")]


def error_codes(instrument):
    codes = []
    while (code := number(instrument, "(errorqueue.next())")) != 0:
        codes.append(int(code))
    return codes


def connect_row0_to_ground(instrument):
    """smu1.smua on line A0.R0, column A0.C0 on ground: a load of 8 cells."""
    ask(instrument, 'node[4].channel.exclusiveclose("1A01,6H05")')


def extra_smu(bench, model):
    spec = InstrumentSpec(model=model, resource="GPIB0::9::INSTR")
    return make_instrument("extra", spec, bench)


# Models


@pytest.mark.parametrize(
    "model, limitv, limiti",
    [("2601B", 40, 1), ("2602B", 40, 1), ("2612B", 20, 0.1), ("2636B", 20, 0.1)],
)
def test_limits_after_reset_follow_the_model(bench, model, limitv, limiti):
    smu = extra_smu(bench, model)
    assert number(smu, "smua.source.limitv") == limitv
    assert number(smu, "smua.source.limiti") == limiti
    assert f"Model {model}," in ask(smu, "*IDN?")[0]


@pytest.mark.parametrize("model", ["2601B", "2611B", "2635B"])
def test_single_channel_models_have_no_smub(bench, model):
    assert ask(extra_smu(bench, model), "print(smub)") == ["nil"]


def test_every_model_has_ratings():
    assert set(RATINGS) == {
        "2601B", "2602B", "2604B", "2611B", "2612B", "2614B",
        "2634B", "2635B", "2636B",
    }  # fmt: skip


def test_current_limit_range_differs_between_families(bench):
    smu_263x = extra_smu(bench, "2636B")
    ask(smu_263x, "smua.source.limiti = 1e-10")
    assert number(smu_263x, "smua.source.limiti") == 1e-10
    spec = InstrumentSpec(model="2602B", resource="GPIB0::8::INSTR")
    smu_260x = make_instrument("other", spec, bench)
    ask(smu_260x, "smua.source.limiti = 1e-10")
    assert number(smu_260x, "smua.source.limiti") == 1.0
    assert error_codes(smu_260x) == [-222]


# Source


def test_source_settings_read_back(smu):
    ask(
        smu,
        "smua.source.func = smua.OUTPUT_DCVOLTS smua.source.levelv = 0.25 "
        "smua.source.limiti = 1e-3 smua.source.output = smua.OUTPUT_ON",
    )
    reply = ask(
        smu,
        "print(smua.source.func, smua.source.levelv, smua.source.limiti, "
        "smua.source.output)",
    )
    assert reply == ["1.00000e+00\t2.50000e-01\t1.00000e-03\t1.00000e+00"]


def test_out_of_range_settings_queue_222_and_keep_the_value(smu):
    ask(smu, "smua.source.levelv = 1 smua.source.levelv = 500 x = 5")
    assert number(smu, "smua.source.levelv") == 1
    assert number(smu, "x") == 5
    ask(smu, "smua.measure.nplc = 30 smua.source.limiti = 2 smua.source.func = 7")
    assert error_codes(smu) == [-222, -222, -222, -222]
    assert number(smu, "smua.measure.nplc") == 1


def test_a_fixed_range_limits_the_level(smu):
    ask(smu, "smua.source.rangev = 2 smua.source.levelv = 5")
    assert number(smu, "smua.source.autorangev") == 0
    assert number(smu, "smua.source.levelv") == 0
    assert error_codes(smu) == [-222]


def test_levels_and_outputs_reach_the_bench(smu, bench):
    ask(smu, "smub.source.levelv = -0.3 smub.source.output = 1")
    state = bench.source("smu1.smub")
    assert (state.level_v, state.output) == (-0.3, True)
    assert bench.outputs_on() == ["smu1.smub"]


def test_compliance_is_reported_when_the_load_takes_more_than_the_limit(smu):
    connect_row0_to_ground(smu)
    ask(smu, "smua.source.limiti = 1e-7 smua.source.levelv = 1 smua.source.output = 1")
    assert ask(smu, "print(smua.source.compliance)") == ["true"]
    assert number(smu, "status.measurement.instrument.smua.condition") == 2
    assert abs(number(smu, "smua.measure.i()")) == pytest.approx(1e-7, rel=1e-3)
    assert number(smu, "smua.measure.v()") < 0.1


def test_no_compliance_below_the_limit(smu):
    connect_row0_to_ground(smu)
    ask(
        smu, "smua.source.limiti = 1e-2 smua.source.levelv = 0.1 smua.source.output = 1"
    )
    assert ask(smu, "print(smua.source.compliance)") == ["false"]
    assert number(smu, "status.measurement.instrument.smua.condition") == 0


def test_a_current_source_into_an_open_circuit_is_at_its_voltage_limit(smu):
    ask(
        smu,
        "smua.source.func = smua.OUTPUT_DCAMPS smua.source.leveli = 1e-6 "
        "smua.source.limitv = 2 smua.source.output = 1",
    )
    assert number(smu, "smua.measure.v()") == 2
    assert number(smu, "status.measurement.instrument.smua.condition") == 1


def test_smu_reset_restores_defaults_and_turns_the_output_off(smu, bench):
    ask(smu, "smua.source.levelv = 1 smua.source.output = 1 smua.measure.nplc = 5")
    ask(smu, "smua.reset()")
    assert bench.outputs_on() == []
    assert number(smu, "smua.source.levelv") == 0
    assert number(smu, "smua.measure.nplc") == 1


# Measure


def test_a_reading_charges_integration_time_and_overhead(smu, bench):
    ask(smu, "smua.measure.nplc = 6")
    before = bench.now_s
    smu.runtime.execute("x = smua.measure.i()")
    assert bench.now_s - before == pytest.approx(
        6 / 60 + bench.timing.measure_overhead_s
    )


def test_line_frequency_sets_the_integration_time(smu, bench):
    ask(smu, "localnode.linefreq = 50 smua.measure.nplc = 5")
    before = bench.now_s
    smu.runtime.execute("x = smua.measure.i()")
    assert bench.now_s - before == pytest.approx(0.1 + bench.timing.measure_overhead_s)


def test_iv_returns_current_first(smu):
    connect_row0_to_ground(smu)
    ask(smu, "smua.source.levelv = 0.1 smua.source.output = 1")
    current, voltage = (
        float(f) for f in ask(smu, "print(smua.measure.iv())")[0].split("\t")
    )
    assert voltage == pytest.approx(0.1)
    assert 1e-7 < current < 1e-4


def test_count_readings_go_to_the_buffer(smu):
    ask(smu, "smua.measure.count = 4 smua.measure.i(smua.nvbuffer1)")
    assert number(smu, "smua.nvbuffer1.n") == 4
    assert ask(smu, "print(smua.nvbuffer1.readings[5])") == ["nil"]
    ask(smu, "smua.measure.count = 2 smua.measure.i(smua.nvbuffer1)")
    assert number(smu, "smua.nvbuffer1.n") == 2
    ask(smu, "smua.nvbuffer1.appendmode = 1 smua.measure.i(smua.nvbuffer1)")
    assert number(smu, "smua.nvbuffer1.n") == 4
    ask(smu, "smua.nvbuffer1.clear()")
    assert number(smu, "smua.nvbuffer1.n") == 0


def test_a_fixed_measure_range_overflows(smu):
    connect_row0_to_ground(smu)
    ask(smu, "smua.source.levelv = 1 smua.source.output = 1 smua.measure.rangei = 1e-9")
    assert number(smu, "smua.measure.i()") == pytest.approx(OVERFLOW)


# printbuffer


def fill_buffer(smu, levels):
    values = ", ".join(str(v) for v in levels)
    ask(smu, f"SweepVListMeasureI(smua, {{{values}}}, 0, {len(levels)})")


def test_printbuffer_separates_with_comma_space_and_clamps(smu):
    fill_buffer(smu, [0.1, 0.2, 0.3])
    (reply,) = ask(smu, "printbuffer(0, 10, smua.nvbuffer1.sourcevalues)")
    assert reply == "1.00000e-01, 2.00000e-01, 3.00000e-01"
    (reply,) = ask(smu, "printbuffer(2, 2, smua.nvbuffer1.sourcevalues)")
    assert reply == "2.00000e-01"


def test_printbuffer_interleaves_columns(smu):
    fill_buffer(smu, [0.1, 0.2])
    (reply,) = ask(
        smu,
        "printbuffer(1, 2, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.sourcevalues)",
    )
    assert numbers(reply) == [0.1, 0.1, 0.2, 0.2]


def test_printbuffer_real32_is_a_binary_block(smu):
    fill_buffer(smu, [0.1, 0.2, 0.3])
    (reply,) = ask(
        smu,
        "format.data = format.REAL32 printbuffer(1, 3, smua.nvbuffer1.sourcevalues)",
    )
    raw = reply.encode("latin-1")
    assert raw[:2] == b"#0" and len(raw) == 2 + 12
    assert struct.unpack("<3f", raw[2:]) == pytest.approx([0.1, 0.2, 0.3])


def test_printbuffer_real64(smu):
    fill_buffer(smu, [0.1])
    (reply,) = ask(
        smu,
        "format.data = format.REAL64 printbuffer(1, 1, smua.nvbuffer1.sourcevalues)",
    )
    assert struct.unpack("<d", reply.encode("latin-1")[2:]) == (0.1,)


# Factory scripts


def test_linear_voltage_sweep(smu, bench):
    connect_row0_to_ground(smu)
    before = bench.now_s
    ask(smu, "smua.measure.nplc = 1 SweepVLinMeasureI(smua, 0, 0.2, 0.01, 5)")
    assert number(smu, "smua.nvbuffer1.n") == 5
    levels = numbers(ask(smu, "printbuffer(1, 5, smua.nvbuffer1.sourcevalues)")[0])
    assert levels == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    currents = numbers(ask(smu, "printbuffer(1, 5, smua.nvbuffer1.readings)")[0])
    slope = np.polyfit(levels, currents, 1)[0]
    assert slope == pytest.approx(currents[-1] / 0.2, rel=0.02)
    assert bench.outputs_on() == []
    step_s = 0.01 + 1 / 60 + bench.timing.measure_overhead_s
    assert bench.now_s - before == pytest.approx(5 * step_s, rel=0.05)


def test_list_voltage_sweep_uses_the_first_points(smu):
    ask(smu, "SweepVListMeasureI(smua, {0.3, -0.1, 0.2}, 0, 2)")
    (reply,) = ask(smu, "printbuffer(1, 9, smua.nvbuffer1.sourcevalues)")
    assert numbers(reply) == [0.3, -0.1]


def test_current_sweeps_read_voltage(smu):
    connect_row0_to_ground(smu)
    ask(smu, "SweepILinMeasureV(smua, 1e-7, 3e-7, 0, 3)")
    volts = numbers(ask(smu, "printbuffer(1, 3, smua.nvbuffer1.readings)")[0])
    assert volts[1] == pytest.approx(2 * volts[0], rel=0.02)
    ask(smu, "SweepIListMeasureV(smua, {2e-7}, 0, 1)")
    assert number(smu, "smua.nvbuffer1.readings[1]") == pytest.approx(
        volts[1], rel=0.02
    )


def test_pulses_measure_at_the_end_of_each_pulse(smu, bench):
    connect_row0_to_ground(smu)
    before = bench.now_s
    ask(smu, "smua.measure.nplc = 0.01 PulseVMeasureI(smua, 0, 0.2, 1e-3, 2e-3, 4)")
    assert number(smu, "smua.nvbuffer1.n") == 4
    currents = numbers(ask(smu, "printbuffer(1, 4, smua.nvbuffer1.readings)")[0])
    assert min(currents) > 1e-7
    assert bench.outputs_on() == []
    assert bench.now_s - before >= 4 * 3e-3


def test_a_sweep_beyond_the_range_queues_an_error_and_does_nothing(smu):
    ask(smu, "SweepVListMeasureI(smua, {1, 500}, 0, 2)")
    assert error_codes(smu) == [-222]
    assert number(smu, "smua.nvbuffer1.n") == 0


def test_a_factory_script_needs_an_smu(smu):
    ask(smu, "SweepVLinMeasureI(42, 0, 1, 0, 3)")
    assert error_codes(smu) == [-286]


def test_factory_scripts_work_on_a_node(smu, bench):
    ask(smu, "SweepVLinMeasureI(node[2].smub, 0, 0.1, 0, 3)")
    assert number(smu, "node[2].smub.nvbuffer1.n") == 3
    assert bench.source("smu2.smub").output is False
