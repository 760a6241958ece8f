"""Simulated B2900: channels, limits, spot and triggered measurements, pulses."""

import re
from pathlib import Path

import pytest
import yaml

from labctl.station import InstrumentSpec
from simulator.bench import Bench
from simulator.instruments import make_instrument
from tests.simulator.scpi_talk import ask, errors, numbers, silent

BENCH = Path(__file__).resolve().parents[2] / "data" / "benches" / "b2902a-sim.yaml"
SMU = "GPIB0::23::INSTR"
MASTER = "GPIB0::26::INSTR"
NR3 = r"[+-]\d\.\d{6}E[+-]\d\d"
APERTURE_S = 1 / 60
OVERHEAD_S = 1e-4


@pytest.fixture
def bench():
    return Bench.from_file(BENCH)


@pytest.fixture
def smu(bench):
    return bench.resource(SMU)


@pytest.fixture
def row_load(bench):
    """Channel 1 on row A0.R0, the row's eight columns on ground; returns sum(G)."""
    bench.resource(MASTER).write('node[4].channel.exclusiveclose("1A01,6H05:6H12")')
    return float(bench.arrays["A0"].conductance_s[0].sum())


def other_model(bench, model):
    spec = InstrumentSpec(model=model, resource="GPIB0::9::INSTR")
    return make_instrument("extra", spec, bench)


@pytest.mark.parametrize("model", ["B2901A", "B2902A", "B2912A"])
def test_identity_follows_the_model(bench, model):
    smu = other_model(bench, model)
    assert (
        ask(smu, "*IDN?") == f"Keysight Technologies,{model},MY51143745,3.4.2011.5100"
    )


def test_the_b2901a_has_one_channel(bench):
    smu = other_model(bench, "B2901A")
    assert silent(smu, ":SOUR2:VOLT 1", -114)
    assert silent(smu, ":MEAS? (@2)", -224)
    assert ask(smu, ":SOUR1:VOLT?") == "+0.000000E+00"


def test_the_b2912a_has_a_10_na_range(bench, smu):
    smu.write(":SENS:CURR:RANG 1e-8")
    assert ask(smu, ":SENS:CURR:RANG?") == "+1.000000E-07"
    b2912a = other_model(bench, "B2912A")
    b2912a.write(":SENS2:CURR:RANG 1e-8")
    assert ask(b2912a, ":SENS2:CURR:RANG?") == "+1.000000E-08"


RESET = [
    (":SOUR:FUNC:MODE?", "VOLT"),
    (":SOUR2:FUNC:MODE?", "VOLT"),
    (":SOUR:FUNC:SHAP?", "DC"),
    (":SOUR:VOLT:MODE?", "FIX"),
    (":SOUR:VOLT?", "+0.000000E+00"),
    (":SENS:CURR:PROT?", "+1.000000E-04"),
    (":SENS2:VOLT:PROT?", "+2.000000E+00"),
    (":SENS:CURR:NPLC?", "+1.000000E+00"),
    (":SENS:CURR:APER?", "+1.666667E-02"),
    (":SENS:CURR:RANG:AUTO?", "1"),
    (":SENS:FUNC?", '"VOLT","CURR"'),
    (":OUTP?;:OUTP2?", "0;0"),
    (":OUTP:ON:AUTO?;:OUTP:OFF:AUTO?", "1;0"),
    (":TRIG:SOUR?;:TRIG:COUN?;:ARM:COUN?", "AINT;1;1"),
    (":FORM:ELEM:SENS?", "VOLT,CURR,RES,TIME,STAT,SOUR"),
]


def test_reset_defaults(smu):
    smu.write(":SOUR:VOLT 2;:SENS2:CURR:PROT 0.01;:OUTP ON;:SOUR:FUNC:SHAP PULS;*RST")
    for query, reply in RESET:
        assert ask(smu, query) == reply, query


def test_errors_are_in_keysight_form(smu):
    assert ask(smu, ":SYST:ERR?") == '+0,"No error"'
    assert silent(smu, ":SOUR:VOLTS 1", -113)
    smu.write(":SOUR:VOLT 300")
    assert errors(smu) == ['-222,"Data out of range"']


def test_min_max_def(smu):
    assert ask(smu, ":SOUR:VOLT? MAX;:SOUR:VOLT? MIN") == "+2.100000E+02;-2.100000E+02"
    smu.write(":SENS:CURR:PROT MAX;:SENS2:CURR:PROT MIN")
    assert ask(smu, ":SENS:CURR:PROT?;:SENS2:CURR:PROT?") == (
        "+3.030000E+00;+1.000000E-09"
    )
    smu.write(":SENS:CURR:PROT DEF")
    assert ask(smu, ":SENS:CURR:PROT?") == "+1.000000E-04"


def test_channels_are_independent(smu):
    smu.write(":SOUR2:VOLT 0.5;:SENS2:CURR:PROT 2e-3;:SOUR2:FUNC:MODE CURR")
    assert ask(smu, ":SOUR1:VOLT?;:SOUR2:VOLT?") == "+0.000000E+00;+5.000000E-01"
    assert ask(smu, ":SENS:CURR:PROT?;:SENS2:CURR:PROT?") == (
        "+1.000000E-04;+2.000000E-03"
    )
    assert ask(smu, ":SOUR1:FUNC:MODE?;:SOUR2:FUNC:MODE?") == "VOLT;CURR"


def test_aperture_and_nplc_are_one_setting(smu):
    smu.write(":SENS:CURR:APER 1e-3")
    assert ask(smu, ":SENS:CURR:NPLC?") == "+6.000000E-02"
    smu.write(":SENS:VOLT:NPLC 0.6")
    assert ask(smu, ":SENS:CURR:APER?") == "+1.000000E-02"
    assert silent(smu, ":SENS:CURR:APER 3", -222)


# Spot measurements


def test_a_spot_measurement_turns_the_output_on(smu):
    reply = ask(smu, ":MEAS? (@1,2)")
    assert re.fullmatch(",".join([NR3] * 12), reply)
    assert ask(smu, ":OUTP1?;:OUTP2?") == "1;1"
    smu.write("*RST;:OUTP:ON:AUTO OFF")
    smu.write(":MEAS:CURR? (@1)")
    smu.read()
    assert ask(smu, ":OUTP1?") == "0"


def test_a_measured_current_is_the_current_the_cells_draw(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:SENS:CURR:PROT 1e-3;:OUTP ON")
    assert float(ask(smu, ":MEAS:CURR? (@1)")) == pytest.approx(0.1 * row_load, 0.02)
    assert ask(smu, ":SENS:CURR:PROT:TRIP?") == "0"


def test_a_tripped_limit_is_the_current_the_cells_draw(smu, row_load):
    limit_a = 0.5 * 0.2 * row_load
    smu.write(f":SOUR:VOLT 0.2;:SENS:CURR:PROT {limit_a};:OUTP ON")
    voltage, current, _, _, status, source = numbers(ask(smu, ":MEAS? (@1)"))
    assert current == pytest.approx(limit_a, rel=1e-3)
    assert voltage < 0.2 and source == 0.2
    assert int(status) & 8
    assert ask(smu, ":SENS:CURR:PROT:TRIP?") == "1"


def test_sense_elements_come_in_fixed_order(smu):
    smu.write(":FORM:ELEM:SENS SOUR,CURR")
    assert ask(smu, ":FORM:ELEM:SENS?") == "CURR,SOUR"
    smu.write(":SOUR:VOLT 0.3")
    assert numbers(ask(smu, ":MEAS? (@1)"))[1] == 0.3
    smu.write(':SENS:FUNC:OFF "CURR"')
    assert ask(smu, ":MEAS:CURR? (@1)") == "+9.910000E+37"


def test_fetch_before_any_measurement_is_230(smu):
    assert silent(smu, ":FETC:ARR:CURR? (@1)", -230)


# The trigger model


def test_the_driver_list_sweep(smu, bench, row_load):
    message = (
        ':SOUR1:FUNC:MODE VOLT;:SOUR1:FUNC:SHAP DC;:SENS1:FUNC "CURR";'
        ":SOUR1:VOLT:MODE LIST;:SOUR1:LIST:VOLT 0.05,0.1,0.15;:TRIG1:SOUR AINT;"
        ":TRIG1:COUN 3;:TRIG1:TRAN:DEL 0;:TRIG1:ACQ:DEL 0.002;:OUTP1 ON;"
        ":INIT (@1);*WAI;:OUTP1 OFF;:FETC:ARR:CURR? (@1)"
    )
    before = bench.now_s
    currents = numbers(ask(smu, message))
    assert currents == pytest.approx([v * row_load for v in (0.05, 0.1, 0.15)], 0.02)
    assert bench.now_s - before == pytest.approx(3 * (0.002 + APERTURE_S + OVERHEAD_S))
    assert numbers(ask(smu, ":FETC:ARR:SOUR? (@1)")) == [0.05, 0.1, 0.15]
    assert ask(smu, ":SOUR1:VOLT?;:OUTP1?") == "+0.000000E+00;0"


def test_init_turns_the_output_on_by_itself(smu):
    smu.write(":SOUR:VOLT 0.2;:INIT")
    assert ask(smu, ":OUTP?") == "1"
    assert ask(smu, ":FETC:SOUR? (@1)") == "+2.000000E-01"


def test_a_sweep_of_points_double_stair_and_log(smu):
    smu.write(
        ":SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP 1;:SOUR:SWE:POIN 3;:SOUR:VOLT:MODE SWE"
    )
    smu.write(":TRIG:COUN 3;:INIT")
    assert numbers(ask(smu, ":FETC:ARR:SOUR?")) == [0.0, 0.5, 1.0]
    assert ask(smu, ":SOUR:VOLT:STEP?") == "+5.000000E-01"
    smu.write(":SOUR:SWE:STA DOUB;:TRIG:COUN 6;:INIT")
    assert numbers(ask(smu, ":FETC:ARR:SOUR?")) == [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]
    smu.write(":SOUR:SWE:STA SING;:SOUR:VOLT:STAR 0.01;:SOUR:SWE:SPAC LOG;:TRIG:COUN 3")
    assert numbers(ask(smu, ":READ:ARR:SOUR? (@1)")) == pytest.approx([0.01, 0.1, 1])


def test_trigger_all_sets_both_layers(smu):
    smu.write(":TRIG2:ALL:COUN 4;:TRIG2:ACQ:DEL 0.01")
    assert ask(smu, ":TRIG2:TRAN:COUN?;:TRIG2:ACQ:COUN?") == "4;4"
    assert ask(smu, ":TRIG2:ACQ:DEL?;:TRIG2:TRAN:DEL?") == (
        "+1.000000E-02;+0.000000E+00"
    )
    assert silent(smu, ":TRIG:SOUR INT9", -224)
    smu.write(":TRIG:SOUR INT1")
    assert ask(smu, ":TRIG:SOUR?") == "INT1"


def test_a_timer_trigger_spaces_the_points(smu, bench):
    smu.write(":TRIG:SOUR TIM;:TRIG:TIM 0.1;:TRIG:COUN 4")
    before = bench.now_s
    smu.write(":INIT")
    assert bench.now_s - before == pytest.approx(0.4)
    times = numbers(ask(smu, ":FETC:ARR:TIME?"))
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(
        [0.1, 0.1, 0.1]
    )


def test_two_channels_run_side_by_side(smu, bench):
    smu.write(":TRIG1:COUN 5;:TRIG2:COUN 5")
    before = bench.now_s
    smu.write(":INIT (@1,2)")
    assert bench.now_s - before == pytest.approx(5 * (APERTURE_S + OVERHEAD_S))
    assert len(numbers(ask(smu, ":FETC:ARR:CURR? (@1,2)"))) == 10


def test_pulses_go_from_the_base_to_the_peak_for_the_width(smu, bench, row_load):
    smu.write(
        ":SENS:CURR:NPLC 0.01;:SENS:CURR:PROT 1e-3;:SOUR:FUNC:SHAP PULS;"
        ":SOUR:VOLT 0.05;:SOUR:VOLT:TRIG 0.2;:SOUR:PULS:DEL 0.002;"
        ":SOUR:PULS:WIDT 0.001;:TRIG:COUN 3;:OUTP ON"
    )
    aperture_s = 0.01 / 60
    smu.write(f":TRIG:ACQ:DEL {0.003 - aperture_s}")
    start = bench.now_s
    smu.write(":INIT")
    changes = [(t - start, level) for t, channel, level in bench.events
               if channel == "smu2.ch1" and t > start]  # fmt: skip
    levels = [level for _, level in changes]
    assert levels == [0.2, 0.05] * 3
    rises = [t for t, level in changes if level == 0.2]
    falls = [t for t, level in changes if level == 0.05]
    assert rises[0] == pytest.approx(0.002)
    assert [f - r for r, f in zip(rises, falls, strict=True)] == pytest.approx(
        [0.001] * 3
    )
    currents = numbers(ask(smu, ":FETC:ARR:CURR?"))
    assert currents == pytest.approx([0.2 * row_load] * 3, rel=0.02)
    assert ask(smu, ":SOUR:VOLT?") == "+5.000000E-02"


def test_pulse_width_limits(smu):
    assert silent(smu, ":SOUR:PULS:WIDT 1e-5", -222)
    smu.write(":SOUR:PULS:WIDT MAX")
    assert ask(smu, ":SOUR:PULS:WIDT?") == "+1.000000E+05"


def test_lists_hold_2500_points(smu):
    smu.write(":SOUR:LIST:VOLT " + ",".join(["0.1"] * 2500))
    assert ask(smu, ":SOUR:LIST:VOLT:POIN?") == "2500"
    assert silent(smu, ":SOUR:LIST:VOLT:APP 0.2", -223)


def test_station_files_name_this_bench():
    station = yaml.safe_load(
        (BENCH.parents[1] / "stations" / "b2902a-sim.yaml").read_text()
    )
    assert station["instruments"]["smu2"]["resource"] == SMU
