"""Simulated 2400: five-element readings, status word, sweeps, trigger model, buffer."""

import re
from pathlib import Path

import pytest

from simulator.bench import Bench
from tests.simulator.scpi_talk import ask, errors, numbers, silent

BENCH = Path(__file__).resolve().parents[2] / "data" / "benches" / "k2400-sim.yaml"
SMU = "GPIB0::24::INSTR"
MASTER = "GPIB0::26::INSTR"
NR3 = r"[+-]\d\.\d{6}E[+-]\d\d"
NOT_MEASURED = "+9.910000E+37"
FRONT, COMPLIANCE, V_MEAS, I_MEAS, R_MEAS = 1 << 2, 1 << 3, 1 << 11, 1 << 12, 1 << 13
V_SOURCE, I_SOURCE, REMOTE_SENSE, OVERFLOW = 1 << 14, 1 << 15, 1 << 22, 1 << 0


@pytest.fixture
def bench():
    return Bench.from_file(BENCH)


@pytest.fixture
def smu(bench):
    return bench.resource(SMU)


@pytest.fixture
def row_load(bench):
    """The 2400 on row A0.R0, the row's eight columns on ground; returns sum(G)."""
    bench.resource(MASTER).write('node[4].channel.exclusiveclose("1A01,6H05:6H12")')
    return float(bench.arrays["A0"].conductance_s[0].sum())


def test_identity(smu):
    assert ask(smu, "*IDN?") == (
        "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1248014,"
        "C30   Mar 17 2006 09:29:29/A02  /K/J"
    )


RESET = [
    (":SENS:CURR:PROT?", "+1.050000E-04"),
    (":SENS:VOLT:PROT?", "+2.100000E+01"),
    (":SENS:CURR:NPLC?", "+1.000000E+00"),
    (":SENS:VOLT:NPLC?", "+1.000000E+00"),
    (":SOUR:FUNC?", "VOLT"),
    (":SOUR:VOLT?", "+0.000000E+00"),
    (":SOUR:DEL?", "+1.000000E-03"),
    (":SOUR:DEL:AUTO?", "1"),
    (":OUTP?", "0"),
    (":ROUT:TERM?", "FRON"),
    (":SYST:AZER?", "1"),
    (":SENS:CURR:RANG?", "+1.050000E-04"),
    (":SENS:VOLT:RANG?", "+2.100000E+01"),
    (":SOUR:VOLT:RANG?", "+2.100000E-01"),
    (":SOUR:VOLT:MODE?", "FIX"),
    (":SOUR:SWE:POIN?", "2500"),
    (":FORM:ELEM?", "VOLT,CURR,RES,TIME,STAT"),
    (":SENS:FUNC?", '"CURR:DC"'),
    (":SENS:FUNC:CONC?", "1"),
    (":TRIG:COUN?;:ARM:COUN?", "1;1"),
    (":TRIG:DEL?", "+0.000000E+00"),
    (":ARM:SOUR?;:TRIG:SOUR?", "IMM;IMM"),
]


def test_reset_defaults(smu):
    smu.write(":SOUR:VOLT 1;:SENS:CURR:PROT 0.01;:SOUR:DEL 0.5;:OUTP ON;*RST")
    for query, reply in RESET:
        assert ask(smu, query) == reply, query


def test_ranges_read_back_at_105_percent(smu):
    smu.write(":SENS:CURR:RANG 5e-4;:SOUR:VOLT:RANG 3;:SENS:CURR:RANG:AUTO?")
    assert smu.read() == "0"
    assert ask(smu, ":SENS:CURR:RANG?;:SOUR:VOLT:RANG?") == (
        "+1.050000E-03;+2.100000E+01"
    )
    smu.write(":SENS:CURR:RANG 1.05e-6")
    assert ask(smu, ":SENS:CURR:RANG?") == "+1.050000E-06"


def test_errors_are_in_classic_form(smu):
    assert ask(smu, ":SYST:ERR?") == '0,"No error"'
    assert silent(smu, ":SOUR:VOLTS 1", -113)
    smu.write(":SENS:CURR:NPLC 20")
    assert errors(smu) == ['-222,"Parameter data out of range"']


def test_read_with_the_output_off_is_803_and_no_reply(smu):
    smu.write(":READ?")
    assert smu.read() is None
    assert errors(smu) == ['803,"Not permitted with OUTPUT off"']
    assert silent(smu, ":INIT", 803)


def test_measure_turns_the_output_on(smu):
    reply = ask(smu, ":MEAS?")
    assert len(reply.split(",")) == 5
    assert ask(smu, ":OUTP?") == "1"


def test_a_reading_has_five_elements_in_fixed_order(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:SENS:CURR:PROT 1e-3;:OUTP ON")
    reply = ask(smu, ":READ?")
    assert re.fullmatch(",".join([NR3] * 5), reply)
    voltage, current, resistance, time_s, status = numbers(reply)
    assert voltage == 0.1  # the sourced voltage, not measured
    assert current == pytest.approx(0.1 * row_load, rel=0.02)
    assert reply.split(",")[2] == NOT_MEASURED
    assert time_s > 0
    assert int(status) == FRONT | I_MEAS | V_SOURCE
    smu.write(":FORM:ELEM STAT,CURR")
    assert ask(smu, ":FORM:ELEM?") == "CURR,STAT"
    assert len(ask(smu, ":READ?").split(",")) == 2


def test_measured_functions_fill_their_elements(smu, row_load):
    smu.write(':SOUR:VOLT 0.1;:OUTP ON;:SENS:FUNC "VOLT","RES"')
    assert ask(smu, ":SENS:FUNC?") == '"VOLT:DC","CURR:DC","RES"'
    voltage, current, resistance, _, status = numbers(ask(smu, ":READ?"))
    assert resistance == pytest.approx(voltage / current)
    assert resistance == pytest.approx(1 / row_load, rel=0.02)
    assert int(status) & (V_MEAS | I_MEAS | R_MEAS) == V_MEAS | I_MEAS | R_MEAS
    smu.write(':SENS:FUNC:OFF "RES"')
    assert numbers(ask(smu, ":READ?"))[2] == 9.91e37


def test_measure_of_one_function_turns_concurrent_off(smu, row_load):
    reply = ask(smu, ":MEAS:VOLT?")
    assert ask(smu, ":SENS:FUNC?;:SENS:FUNC:CONC?") == '"VOLT:DC";0'
    assert reply.split(",")[1] == NOT_MEASURED
    assert silent(smu, ':SENS:FUNC "CURR","RES"', -221)
    smu.write(":SENS:FUNC:ALL")
    assert ask(smu, ":SENS:FUNC:COUN?") == "3"


def test_compliance_sets_status_bit_3_at_the_current_the_cells_draw(smu, row_load):
    limit_a = 0.5 * 0.2 * row_load
    smu.write(f":SOUR:VOLT 0.2;:SENS:CURR:PROT {limit_a};:OUTP ON")
    _, current, _, _, status = numbers(ask(smu, ":READ?"))
    assert current == pytest.approx(limit_a, rel=1e-3)
    assert int(status) & COMPLIANCE
    assert ask(smu, ":SENS:CURR:PROT:TRIP?") == "1"


def test_a_negative_compliance_is_its_magnitude(smu):
    smu.write(":SENS:CURR:PROT -2e-3")
    assert ask(smu, ":SENS:CURR:PROT?") == "+2.000000E-03"
    assert silent(smu, ":SENS:CURR:PROT 0", -222)


def test_a_current_source_reaches_its_voltage_compliance_on_an_open_line(smu):
    smu.write(":SOUR:FUNC CURR;:SOUR:CURR 1e-6;:SENS:VOLT:PROT 1.5;:OUTP ON")
    voltage, current, _, _, status = numbers(ask(smu, ":MEAS:VOLT?"))
    assert voltage == pytest.approx(1.5)
    assert current == 1e-6
    assert int(status) & (COMPLIANCE | I_SOURCE) == COMPLIANCE | I_SOURCE
    assert ask(smu, ":SENS:VOLT:PROT:TRIP?") == "1"


def test_a_fixed_range_too_low_overflows(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:SENS:CURR:PROT 1e-3;:OUTP ON;:SENS:CURR:RANG 1e-6")
    fields = ask(smu, ":READ?").split(",")
    assert fields[1] == "+9.900000E+37"
    assert int(float(fields[4])) & OVERFLOW


def test_remote_sense_and_rear_terminals_show_in_the_status(smu):
    smu.write(":SYST:RSEN ON;:ROUT:TERM REAR;:OUTP ON")
    status = int(numbers(ask(smu, ":READ?"))[4])
    assert status & REMOTE_SENSE and not status & FRONT


# Sweeps and the trigger model


def test_a_list_sweep_reads_every_point(smu, bench, row_load):
    smu.write(":SOUR:VOLT:MODE LIST;:SOUR:LIST:VOLT 0.05,0.1,0.15;:SOUR:DEL 0.01")
    smu.write(":TRIG:COUN 3;:FORM:ELEM VOLT,CURR;:OUTP ON")
    before = bench.now_s
    values = numbers(ask(smu, ":READ?"))
    assert values[0::2] == [0.05, 0.1, 0.15]
    assert values[1::2] == pytest.approx([v * row_load for v in values[0::2]], 0.02)
    assert bench.now_s - before == pytest.approx(3 * (0.01 + 1 / 60 + 1e-4))
    assert ask(smu, ":SOUR:VOLT?") == "+0.000000E+00"


def test_a_linear_sweep_follows_start_stop_and_points(smu):
    smu.write(
        ":SOUR:VOLT:STAR 0;:SOUR:VOLT:STOP 1;:SOUR:SWE:POIN 5;:SOUR:VOLT:MODE SWE"
    )
    assert ask(smu, ":SOUR:VOLT:STEP?") == "+2.500000E-01"
    smu.write(":SOUR:VOLT:STEP 0.5")
    assert ask(smu, ":SOUR:SWE:POIN?") == "3"
    smu.write(":TRIG:COUN 3;:FORM:ELEM VOLT;:OUTP ON")
    assert numbers(ask(smu, ":READ?")) == [0.0, 0.5, 1.0]
    smu.write(":SOUR:SWE:DIR DOWN")
    assert numbers(ask(smu, ":READ?")) == [1.0, 0.5, 0.0]


def test_a_log_sweep(smu):
    smu.write(":SOUR:VOLT:STAR 0.01;:SOUR:VOLT:STOP 1;:SOUR:SWE:POIN 3")
    smu.write(":SOUR:SWE:SPAC LOG;:SOUR:VOLT:MODE SWE;:TRIG:COUN 3;:FORM:ELEM VOLT")
    smu.write(":OUTP ON")
    assert numbers(ask(smu, ":READ?")) == pytest.approx([0.01, 0.1, 1.0])


def test_arm_count_repeats_the_sweep(smu):
    smu.write(":SOUR:VOLT:MODE LIST;:SOUR:LIST:VOLT 0.1,0.2;:TRIG:COUN 2;:ARM:COUN 2")
    smu.write(":FORM:ELEM VOLT;:OUTP ON")
    assert numbers(ask(smu, ":READ?")) == [0.1, 0.2, 0.1, 0.2]


@pytest.mark.parametrize(
    "message, code",
    [
        (":SOUR:SWE:POIN 2501", -222),
        (":SOUR:LIST:VOLT " + ",".join(["0.1"] * 101), -223),
        (":TRIG:COUN 2000;:ARM:COUN 2", -221),
        (":TRIG:COUN 2501", -222),
        (":SOUR:DEL 1000", -222),
        (":SOUR:VOLT:MODE LIST;:OUTP ON;:READ?", -221),
    ],
)
def test_bad_trigger_settings_are_refused(smu, message, code):
    assert silent(smu, message, code)


def test_the_driver_list_sweep_and_its_end(smu, row_load):
    smu.write(
        ':SOUR:FUNC VOLT;:SENS:FUNC "CURR";:FORM:ELEM CURR;:SOUR:VOLT:MODE LIST;'
        ":SOUR:LIST:VOLT 0.1,0.2;:SOUR:DEL 0.001;:ARM:COUN 1;:TRIG:COUN 2;:OUTP ON;"
        ":READ?"
    )
    assert numbers(smu.read()) == pytest.approx([0.1 * row_load, 0.2 * row_load], 0.02)
    smu.write(":OUTP OFF;:SOUR:VOLT:MODE FIX;:TRIG:COUN 1")
    assert errors(smu) == []


def test_auto_output_off_turns_the_output_on_for_a_reading_only(smu, bench):
    smu.write(":SOUR:CLE:AUTO ON;:SOUR:VOLT 0.1")
    assert len(ask(smu, ":READ?").split(",")) == 5
    assert ask(smu, ":OUTP?") == "0"


def test_a_bus_arm_waits_for_a_trigger(smu, bench):
    smu.write(":ARM:SOUR BUS;:TRIG:COUN 2;:OUTP ON;:INIT")
    assert silent(smu, ":FETC?", -230)
    smu.write("*TRG")
    assert len(ask(smu, ":FETC?").split(",")) == 10
    assert silent(smu, ":READ?", -214)


# The buffer and the status byte


def fill_buffer(smu, points):
    smu.write(f":TRAC:CLE;:TRAC:POIN {points};:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT")
    smu.write(f":TRIG:COUN {points};:OUTP ON;:INIT")


def test_buffer_full_shows_in_the_status_byte_only_when_enabled(smu):
    fill_buffer(smu, 3)
    assert ask(smu, ":TRAC:POIN:ACT?;:TRAC:FEED:CONT?") == "3;NEV"
    assert ask(smu, "*STB?") == "0"
    smu.write(":STAT:MEAS:ENAB 512")
    assert ask(smu, "*STB?") == "1"
    smu.write("*SRE 1")
    assert ask(smu, "*STB?") == "65"
    assert int(ask(smu, ":STAT:MEAS?")) & 512
    assert ask(smu, "*STB?") == "0"


def test_the_buffer_sends_its_readings_with_relative_times(smu):
    fill_buffer(smu, 3)
    values = numbers(ask(smu, ":TRAC:DATA?"))
    assert len(values) == 15
    assert values[3] == 0.0 and values[8] > 0
    smu.write(":TRAC:TST:FORM DELT")
    assert numbers(ask(smu, ":TRAC:DATA?"))[13] == pytest.approx(values[13] - values[8])


def test_the_buffer_refuses_changes_while_storing(smu):
    smu.write(":TRAC:POIN 10;:TRAC:FEED:CONT NEXT")
    assert silent(smu, ":TRAC:CLE", 800)
    assert errors(smu) == []
    smu.write(":TRAC:POIN 5")
    assert errors(smu) == ['800,"Illegal with storage active"']


def test_statistics_of_the_buffer(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:SENS:CURR:PROT 1e-3")
    fill_buffer(smu, 4)
    currents = numbers(ask(smu, ":TRAC:DATA?"))[1::5]
    smu.write(":CALC3:FORM MEAN")
    mean = numbers(ask(smu, ":CALC3:DATA?"))
    assert mean[0] == 0.1
    assert mean[1] == pytest.approx(sum(currents) / 4, rel=1e-6)
    assert mean[2] == 9.91e37
    smu.write(":CALC3:FORM MAX")
    assert numbers(ask(smu, ":CALC3:DATA?"))[1] == pytest.approx(max(currents))
    assert silent(smu, ":CALC2:FORM MEAN", -113)
