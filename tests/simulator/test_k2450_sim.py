"""Simulated 2450 in SCPI mode: identity, settings, readings, buffers, sweeps."""

import re
from pathlib import Path

import pytest

from simulator.bench import Bench
from tests.simulator.scpi_talk import ask, errors, numbers, silent

BENCH = Path(__file__).resolve().parents[2] / "data" / "benches" / "k2450-sim.yaml"
SMU = "GPIB0::18::INSTR"
MASTER = "GPIB0::26::INSTR"
NUMBER = r"-?\d\.\d{6}E[+-]\d\d"


@pytest.fixture
def bench():
    return Bench.from_file(BENCH)


@pytest.fixture
def smu(bench):
    return bench.resource(SMU)


@pytest.fixture
def row_load(bench):
    """The 2450 on row A0.R0, the row's eight columns on ground; returns sum(G)."""
    master = bench.resource(MASTER)
    master.write('node[4].channel.exclusiveclose("1A01,6H05:6H12")')
    return float(bench.arrays["A0"].conductance_s[0].sum())


# Identity, reset and errors


def test_identity_and_language(smu):
    assert ask(smu, "*IDN?") == "KEITHLEY INSTRUMENTS,MODEL 2450,04365704,1.6.4c"
    assert ask(smu, "*LANG?") == "SCPI"


RESET = [
    (":SOUR:FUNC?", "VOLT"),
    (":SOUR:VOLT?", "0.000000E+00"),
    (":SOUR:VOLT:ILIM?", "1.050000E-04"),
    (":SOUR:CURR:VLIM?", "2.100000E+01"),
    (":SENS:FUNC?", '"CURR:DC"'),
    (":SENS:CURR:RANG?", "1.000000E-04"),
    (":SENS:CURR:RANG:AUTO?", "1"),
    (":SENS:CURR:RANG:AUTO:LLIM?", "1.000000E-08"),
    (":SENS:CURR:NPLC?", "1.000000E+00"),
    (":SENS:CURR:RSEN?", "0"),
    (":OUTP?", "0"),
    (":SOUR:VOLT:DEL:AUTO?", "1"),
    (":TRAC:POIN?", "100000"),
    (":TRAC:ACT?", "0"),
    (":SENS:COUN?", "1"),
    (":ROUT:TERM?", "FRON"),
]


def test_reset_defaults(smu):
    smu.write(":SOUR:VOLT 1;:SOUR:VOLT:ILIM 0.01;:SENS:FUNC 'VOLT';:OUTP ON;*RST")
    for query, reply in RESET:
        assert ask(smu, query) == reply, query


def test_an_unknown_header_gets_no_reply_and_queues_113_in_2450_form(smu):
    assert ask(smu, ":SYST:ERR?") == '0,"No error;0;0 0"'
    smu.write(":SOUR:VOLTS?")
    assert smu.read() is None
    entry = ask(smu, ":SYST:ERR?")
    assert re.fullmatch(
        r'-113,"Undefined header;1;\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}"', entry
    )


def test_the_2450_has_no_measurement_status_register(smu):
    assert silent(smu, ":STAT:MEAS:ENAB 512", -113)


@pytest.mark.parametrize(
    "message, code",
    [
        (":SOUR:VOLT 211", -222),
        (":SOUR:VOLT:ILIM 1.1", -222),
        (":SOUR:CURR:VLIM 0.01", -222),
        (":SENS:CURR:NPLC 11", -222),
        (":SENS:CURR:RANG 2", -222),
        (":SENS:FUNC CURR", -104),
        (':SENS:FUNC "TEMP"', -224),
        (":SOUR:FUNC RES", -224),
        (":OUTP MAYBE", -224),
        (":SOUR:VOLT 1 V", -138),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(smu, message, code):
    before = [ask(smu, q) for q, _ in RESET[:9]]
    assert silent(smu, message, code)
    assert [ask(smu, q) for q, _ in RESET[:9]] == before


def test_out_of_range_uses_the_2450_text(smu):
    smu.write(":SOUR:VOLT 300")
    assert errors(smu)[0].startswith('-222,"Parameter data out of range;1;')
    smu.write(":SOUR:VOLT:RANG 2;:SOUR:VOLT 5")
    assert errors(smu)[0].startswith(
        '-222,"Parameter data out of range: smu2.smu level 5 (allowed |x| <= 2.1 V);1;'
    )


def test_number_limits_answer_min_max_def(smu):
    assert ask(smu, ":SOUR:VOLT? MAX") == "2.100000E+02"
    assert ask(smu, ":SOUR:VOLT:ILIM? MIN") == "1.000000E-09"
    smu.write(":SOUR:VOLT:ILIM MAX;:SOUR:CURR:VLIM DEF")
    assert ask(smu, ":SOUR:VOLT:ILIM?;:SOUR:CURR:VLIM?") == "1.050000E+00;2.100000E+01"


def test_sense_function_is_quoted_and_answers_with_dc(smu):
    smu.write(':SENS:FUNC "VOLT"')
    assert ask(smu, ":SENS:FUNC?") == '"VOLT:DC"'
    smu.write(":SENS:FUNC 'curr'")
    assert ask(smu, ":SENSE:FUNCTION:ON?") == '"CURR:DC"'
    smu.write(':SENS:FUNC "RES"')
    assert ask(smu, ":SENS:FUNC?") == '"RES"'


def test_measure_range_selects_the_range_holding_the_value(smu):
    smu.write(":SENS:CURR:RANG 5e-7")
    assert ask(smu, ":SENS:CURR:RANG?;:SENS:CURR:RANG:AUTO?") == "1.000000E-06;0"
    smu.write(":SENS:CURR:RANG:AUTO ON;:SENS:VOLT:RANG 3")
    assert ask(smu, ":SENS:VOLT:RANG?") == "2.000000E+01"


def test_a_limit_below_a_tenth_of_a_percent_of_a_fixed_range_conflicts(smu):
    smu.write(":SOUR:VOLT:ILIM 1e-7")
    assert silent(smu, ":SENS:CURR:RANG 1", -221)
    assert ask(smu, ":SENS:CURR:RANG:AUTO?") == "1"
    smu.write(":SOUR:VOLT:ILIM 1e-3;:SENS:CURR:RANG 1")
    assert silent(smu, ":SOUR:VOLT:ILIM 1e-7", -221)
    assert ask(smu, ":SOUR:VOLT:ILIM?") == "1.000000E-03"


# Readings on the bench


def test_a_reading_is_the_current_the_cells_draw(smu, row_load):
    reply = ask(smu, ":SOUR:VOLT 0.1;:SOUR:VOLT:ILIM 1e-3;:OUTP ON;:MEAS:CURR?")
    assert re.fullmatch(NUMBER, reply)
    assert float(reply) == pytest.approx(0.1 * row_load, rel=0.02)


def test_a_tripped_limit_is_the_current_the_cells_draw(smu, row_load, bench):
    limit_a = 0.5 * 0.2 * row_load
    smu.write(f":SOUR:VOLT 0.2;:SOUR:VOLT:ILIM {limit_a};:OUTP ON")
    assert float(ask(smu, ":READ?")) == pytest.approx(limit_a, rel=1e-3)
    assert ask(smu, ":SOUR:VOLT:ILIM:TRIP?") == "1"
    reply = ask(smu, ':READ? "defbuffer1",READ,SOUR,SOURSTAT')
    current, voltage, status = numbers(reply)
    assert voltage < 0.2  # readback: the source left its level
    assert int(status) & 1
    assert bench.compliance("smu2.smu")


def test_a_current_source_trips_its_voltage_limit_on_an_open_line(smu):
    smu.write(":SOUR:FUNC CURR;:SOUR:CURR 1e-6;:SOUR:CURR:VLIM 2;:OUTP ON")
    voltage = numbers(ask(smu, ':MEAS:VOLT? "defbuffer1",READ'))[0]
    assert voltage == pytest.approx(2.0)
    assert ask(smu, ":SOUR:CURR:VLIM:TRIP?") == "1"


def test_a_fixed_range_too_low_reads_the_overflow_code(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:SOUR:VOLT:ILIM 1e-3;:OUTP ON;:SENS:CURR:RANG 1e-6")
    assert ask(smu, ":READ?") == "9.900000E+37"
    assert ask(smu, ':FETC? "defbuffer1",STAT') == "1"


def test_readings_with_the_output_off_measure_an_open_line(smu, row_load):
    assert abs(float(ask(smu, ":MEAS:CURR?"))) < 1e-9


def test_a_reading_charges_the_integration_time(smu, bench):
    smu.write(":SENS:CURR:NPLC 6")
    before = bench.now_s
    smu.write(":READ?")
    assert bench.now_s - before == pytest.approx(0.1 + bench.timing.measure_overhead_s)


def test_count_makes_several_readings_and_returns_the_last(smu, bench, row_load):
    smu.write(":SOUR:VOLT 0.1;:OUTP ON;:SENS:COUN 4;:SENS:CURR:NPLC 0.6")
    before = bench.now_s
    last = ask(smu, ":READ?")
    assert bench.now_s - before == pytest.approx(4 * (0.01 + 1e-4))
    assert ask(smu, ":TRAC:ACT?") == "4"
    assert ask(smu, ':TRAC:DATA? 4,4,"defbuffer1",READ') == last


def test_fetch_returns_the_last_reading_without_measuring(smu, bench, row_load):
    first = ask(smu, ":READ?")
    before = bench.now_s
    assert ask(smu, ":FETC?") == first
    assert bench.now_s == before


def test_a_repeating_filter_averages_and_takes_longer(smu, bench, row_load):
    smu.write(":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN 5;:SENS:CURR:AVER ON")
    before = bench.now_s
    smu.write(":SOUR:VOLT 0.1;:OUTP ON;:READ?")
    assert bench.now_s - before == pytest.approx(5 * (1 / 60 + 1e-4))


ELEMENT_FORMS = [
    ("READ", NUMBER),
    ("SOUR", NUMBER),
    ("REL", NUMBER),
    ("UNIT", "Amp DC"),
    ("SOURUNIT", "Volt DC"),
    ("DATE", r"\d\d/\d\d/\d{4}"),
    ("TIME", r"\d\d:\d\d:\d\d\.\d{9}"),
    ("TST", r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\.\d{9}"),
    ("SEC", r"\d{10}"),
    ("FRAC", NUMBER),
    ("STAT", r"\d+"),
    ("SOURSTAT", r"\d+"),
    ("FORM", r"[+-]\d+\.\d{4} [pnum]?A"),
]


@pytest.mark.parametrize("element, form", ELEMENT_FORMS)
def test_buffer_elements_have_their_forms(smu, row_load, element, form):
    smu.write(":SOUR:VOLT 0.1;:OUTP ON")
    assert re.fullmatch(form, ask(smu, f':READ? "defbuffer1",{element}'))


def test_elements_come_in_the_order_asked_and_may_repeat(smu, row_load):
    smu.write(":SOUR:VOLT 0.1;:OUTP ON")
    fields = ask(smu, ':READ? "defbuffer1",SOUR,READ,SOUR').split(",")
    assert fields[0] == fields[2] == "1.000000E-01"
    assert ask(smu, ':FETC? "defbuffer1",READ') == fields[1]


# Buffers


def test_user_buffers_are_made_used_and_deleted(smu, row_load):
    smu.write(':TRAC:MAKE "iv",20;:SOUR:VOLT 0.1;:OUTP ON')
    for _ in range(3):
        smu.write(':READ? "iv"')
        smu.read()
    assert ask(smu, ':TRAC:ACT? "iv";:TRAC:ACT?') == "3;0"
    assert ask(smu, ':TRAC:POIN? "iv"') == "20"
    reply = ask(smu, ':TRAC:DATA? 2,3,"iv",SOUR,READ')
    assert len(reply.split(",")) == 4
    smu.write(':TRAC:CLE "iv"')
    assert ask(smu, ':TRAC:ACT? "iv"') == "0"
    smu.write(':TRAC:DEL "iv"')
    assert silent(smu, ':TRAC:ACT? "iv"', -224)


@pytest.mark.parametrize(
    "message, code",
    [
        (':TRAC:MAKE "defbuffer1",100', 1115),
        (':TRAC:MAKE "small",5', -222),
        (':TRAC:MAKE "9lives",100', -224),
        (':TRAC:DEL "defbuffer2"', -224),
        (':TRAC:CLE "nothere"', -224),
        (':READ? "nothere"', -224),
        (":TRAC:DATA? 1,1", -222),
        (":TRAC:DATA?", -109),
    ],
)
def test_bad_buffer_requests_get_no_reply(smu, message, code):
    assert silent(smu, message, code)


def test_a_duplicate_buffer_name_is_event_1115(smu):
    smu.write(':TRAC:MAKE "mine",10;:TRAC:MAKE "mine",10')
    assert errors(smu)[0].startswith('1115,"Parameter error, buffer name already')


def test_a_full_buffer_keeps_the_newest_readings(smu, row_load):
    smu.write(':TRAC:MAKE "ring",10;:TRAC:FILL:MODE? "ring"')
    assert smu.read() == "CONT"
    smu.write(":SOUR:LIST:VOLT " + ",".join(f"{0.01 * k:g}" for k in range(1, 13)))
    smu.write(':SOUR:SWE:VOLT:LIST 1,0,1,OFF,"ring";:INIT')
    sources = numbers(ask(smu, ':TRAC:DATA? 1,10,"ring",SOUR'))
    assert sources[0] == pytest.approx(0.03) and sources[-1] == pytest.approx(0.12)


def test_buffer_statistics(smu, row_load):
    smu.write(":SOUR:LIST:VOLT 0.05,0.1,0.15;:SOUR:SWE:VOLT:LIST 1,0;:INIT")
    readings = numbers(ask(smu, ':TRAC:DATA? 1,3,"defbuffer1",READ'))
    average = float(ask(smu, ":TRAC:STAT:AVER?"))
    assert average == pytest.approx(sum(readings) / 3, rel=1e-6)
    assert float(ask(smu, ":TRAC:STAT:MAX?")) == pytest.approx(max(readings), rel=1e-6)
    assert float(ask(smu, ":TRAC:STAT:PK2PK?")) == pytest.approx(
        max(readings) - min(readings), rel=1e-5
    )
    smu.write(":TRAC:STAT:CLE")
    assert ask(smu, ":TRAC:STAT:AVER?") == "9.910000E+37"


# Sweeps and the trigger model


def test_the_driver_list_sweep_fills_defbuffer1(smu, bench, row_load):
    message = (
        ':SOUR:FUNC VOLT;:SENS:FUNC "CURR";:SOUR:LIST:VOLT 0.05,0.1,0.15;'
        ':SOUR:SWE:VOLT:LIST 1,0.001,1,OFF;:TRAC:CLE "defbuffer1";:OUTP ON;'
        ':INIT;*WAI;:OUTP OFF;:TRAC:DATA? 1,3,"defbuffer1",READ'
    )
    before = bench.now_s
    currents = numbers(ask(smu, message))
    assert currents == pytest.approx([v * row_load for v in (0.05, 0.1, 0.15)], 0.02)
    assert bench.now_s - before == pytest.approx(3 * (0.001 + 1 / 60 + 1e-4))
    assert bench.outputs_on() == []


def test_a_sweep_turns_the_output_on_and_leaves_it_at_the_last_level(smu, bench):
    smu.write(":SOUR:SWE:VOLT:LIN 0,1,5,0;:INIT")
    assert ask(smu, ":OUTP?;:SOUR:VOLT?") == "1;1.000000E+00"
    sources = numbers(ask(smu, ':TRAC:DATA? 1,5,"defbuffer1",SOUR'))
    assert sources == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(
    "sweep, levels",
    [
        (":SOUR:SWE:VOLT:LIN 0,0.2,3,0", [0, 0.1, 0.2]),
        (":SOUR:SWE:VOLT:LIN:STEP 0,0.3,0.1,0", [0, 0.1, 0.2, 0.3]),
        (":SOUR:SWE:VOLT:LOG 0.01,1,3,0", [0.01, 0.1, 1.0]),
        (":SOUR:SWE:VOLT:LIN 0,0.2,3,0,2", [0, 0.1, 0.2, 0, 0.1, 0.2]),
        (":SOUR:SWE:VOLT:LIN 0,0.2,3,0,1,BEST,ON,ON", [0, 0.1, 0.2, 0.2, 0.1, 0]),
        (":SOUR:LIST:VOLT 0.3,0.1;:SOUR:LIST:VOLT:APP 0.2;:SOUR:SWE:VOLT:LIST 2,0",
         [0.1, 0.2]),
    ],
)  # fmt: skip
def test_sweep_levels(smu, sweep, levels):
    smu.write(f"{sweep};:INIT")
    count = ask(smu, ":TRAC:ACT?")
    assert int(count) == len(levels)
    sources = numbers(ask(smu, f':TRAC:DATA? 1,{count},"defbuffer1",SOUR'))
    assert sources == pytest.approx(levels)


def test_a_sweep_delay_and_the_source_delay_add_up(smu, bench):
    smu.write(":SOUR:VOLT:DEL 0.01;:SOUR:SWE:VOLT:LIN 0,0.1,4,0.02")
    before = bench.now_s
    smu.write(":INIT")
    assert bench.now_s - before == pytest.approx(4 * (0.03 + 1 / 60 + 1e-4))


def test_fail_abort_stops_the_sweep_at_the_limit(smu, row_load):
    limit_a = 0.15 * row_load
    smu.write(f":SOUR:VOLT:ILIM {limit_a};:SOUR:SWE:VOLT:LIN 0.1,0.3,3,0;:INIT")
    assert ask(smu, ":TRAC:ACT?") == "2"
    smu.write(":TRAC:CLE;:SOUR:SWE:VOLT:LIN 0.1,0.3,3,0,1,BEST,OFF;:INIT")
    currents = numbers(ask(smu, ":TRAC:DATA? 1,3"))
    assert currents[1:] == pytest.approx([limit_a, limit_a], rel=1e-3)


@pytest.mark.parametrize(
    "message, code",
    [
        (":SOUR:SWE:VOLT:LIN 0,1,1", -222),
        (":SOUR:SWE:VOLT:LIN 0,1,5,-2", -222),
        (":SOUR:SWE:VOLT:LIN 0,1,5,0,0", -221),
        (":SOUR:SWE:VOLT:LIN 0,300,5", -222),
        (":SOUR:SWE:VOLT:LIST 1", -221),
        (":SOUR:SWE:VOLT:LOG -1,1,5", -221),
        (':SOUR:SWE:VOLT:LIN 0,1,5,0,1,BEST,ON,OFF,"nothere"', -224),
        (":SOUR:SWE:VOLT:LIN 0,1", -109),
    ],
)
def test_bad_sweeps_are_refused(smu, message, code):
    assert silent(smu, message, code)


def test_source_lists_take_100_values_per_command(smu):
    values = ",".join(["0.1"] * 100)
    smu.write(f":SOUR:LIST:VOLT {values};:SOUR:LIST:VOLT:APP {values}")
    assert ask(smu, ":SOUR:LIST:VOLT:POIN?") == "200"
    assert silent(smu, f":SOUR:LIST:VOLT {values},0.2", -223)


def test_a_simple_loop_reads_at_the_present_level(smu, bench, row_load):
    smu.write(':TRAC:MAKE "loop",10;:TRIG:LOAD "SimpleLoop",5,0.01,"loop"')
    smu.write(":SOUR:VOLT 0.1;:OUTP ON")
    before = bench.now_s
    smu.write(":INIT;*WAI")
    assert bench.now_s - before == pytest.approx(5 * (0.01 + 1 / 60 + 1e-4))
    currents = numbers(ask(smu, ':TRAC:DATA? 1,5,"loop"'))
    assert currents == pytest.approx([0.1 * row_load] * 5, rel=0.02)
    smu.write(':TRIG:LOAD "Empty";:INIT')
    assert ask(smu, ':TRAC:ACT? "loop"') == "5"
    assert silent(smu, ':TRIG:LOAD "DurationLoop",1', -224)


def test_common_commands(smu):
    assert ask(smu, "*OPC?") == "1"
    smu.write(":ABOR;*WAI;*CLS")
    assert ask(smu, "*ESR?") == "0"
