"""Every procedure under every fault ends safe, as the simulator itself sees it.

Each case runs one procedure on a small chip (8 x 4 cells) with one fault
that strikes halfway through the run the procedure makes without it. After
the run's safe end the simulator must show every output off, every contact
open (but a welded one), no level above the station's limits on any line or
across any cell, no current limit above the chip's, and the points measured
before the fault in the database.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from labctl.station import ConfigError
from simulator.bench import Bench, bench_for
from tests.conftest import DEMO_BENCH
from tests.labctl.fault_matrix import (
    FAULTS,
    HALFWAY,
    LATE,
    PROCEDURES,
    clean_run,
    examine,
    fault_case,
    run_once,
    small_station,
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Each procedure's run without a fault: when to strike, and what it stored."""
    runs = {}
    for name in PROCEDURES:
        outcome, runs[name] = clean_run(tmp_path_factory.mktemp(name), name)
        assert outcome.status in ("finished", "aborted"), outcome.message
    return runs


def check_safe_end(
    station_path: Path, outcome, points, bench: Bench, ended, before, welded=()
):
    end = examine(station_path, outcome, points, bench, ended, before.stored, welded)
    assert end.status in ("finished", "failed", "aborted")
    if end.status == "failed":
        assert end.message
    assert end.struck, "the fault never struck"
    assert end.outputs_on == []
    assert end.stray_closed == []
    assert end.max_line_v <= end.max_voltage_v
    assert end.cells_above == []
    assert end.max_limit_a <= end.max_compliance_a
    assert end.points, "what was measured before the fault is lost"
    assert end.first_point_kept


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", PROCEDURES)
def test_a_fault_halfway_ends_safe(tmp_path, clean, name, fault):
    faults, welded = fault_case(fault, clean[name], HALFWAY)
    outcome, points, bench, ended, _ = run_once(tmp_path, name, faults)
    check_safe_end(
        tmp_path / "station.yaml", outcome, points, bench, ended, clean[name], welded
    )


def test_a_cell_shorted_early_in_programming_ends_safe(tmp_path, clean):
    # The short meets write pulses far past the cells' ohmic region while
    # the sources sit at their current limits: the solve must stay finite
    # and the instruments' outputs and relays must end as they report.
    before = clean["program_map"]
    faults, welded = fault_case("cell_short", before, LATE[0])
    outcome, points, bench, ended, _ = run_once(tmp_path, "program_map", faults)
    check_safe_end(
        tmp_path / "station.yaml", outcome, points, bench, ended, before, welded
    )


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "when"), list(itertools.product(FAULTS, LATE)))
@pytest.mark.parametrize("name", PROCEDURES)
def test_a_fault_at_any_point_ends_safe(tmp_path, clean, name, fault, when):
    faults, welded = fault_case(fault, clean[name], when, lasting=True)
    outcome, points, bench, ended, _ = run_once(tmp_path, name, faults)
    check_safe_end(
        tmp_path / "station.yaml", outcome, points, bench, ended, clean[name], welded
    )


# The faults key of a bench file.


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ("[1, 2]", "faults: expected a mapping"),
        ("{smu9: []}", "faults.smu9: no instrument 'smu9'"),
        ("{smu1: {kind: timeout}}", "faults.smu1: expected a list"),
        ("{smu1: [timeout]}", "faults.smu1.0: expected a mapping"),
        ("{smu1: [{kind: melt}]}", "faults.smu1.0.kind: 'melt' not allowed"),
        ("{smu1: [{kind: timeout, colour: red}]}", "faults.smu1.0.colour: unknown key"),
        (
            "{smu1: [{kind: timeout, after: -1}]}",
            "faults.smu1.0.after: -1 is not an integer",
        ),
        (
            "{smu1: [{kind: drop, at_s: soon}]}",
            "faults.smu1.0.at_s: 'soon' is not a time",
        ),
        (
            "{smu2: [{kind: timeout}]}",
            "faults.smu2.0.kind: a timeout needs an instrument "
            "with its own resource; smu2 is reached via smu1",
        ),
        ("{smu1: [{kind: relay_stuck, relay: 1A01}]}", "needs a switch matrix"),
        ("{matrix: [{kind: relay_stuck}]}", "faults.matrix.0.relay: required"),
        ("{matrix: [{kind: relay_stuck, relay: 9Z99}]}", "'9Z99' is not a crosspoint"),
        ("{matrix: [{kind: relay_stuck, relay: 1A01, state: ajar}]}", "state: 'ajar'"),
        (
            "{smu2: [{kind: compliance_trip, channel: smuc}]}",
            "channel(s) smua, smub, not",
        ),
        ("{chip: [{kind: cell_short}]}", "faults.chip.0.cell: required"),
        ("{chip: [{kind: cell_short, cell: 'A0[9, 0]'}]}", "outside array A0 of 8 x 4"),
        ("{chip: [{kind: cell_short, cell: 'B7[0, 0]'}]}", "no array 'B7'"),
        ("{chip: [{kind: reboot}]}", "a fault of the chip is a cell_short"),
        (
            "{chip: [{kind: cell_short, cell: 'A0[0, 0]', conductance_s: 0}]}",
            "conductance_s: 0 is not a number > 0",
        ),
    ],
)
def test_a_bad_faults_key_is_one_line_naming_file_and_key(tmp_path, faults, expected):
    small_station(tmp_path)
    path = tmp_path / "bench.yaml"
    path.write_text(path.read_text() + f"faults: {faults}\n")
    with pytest.raises(ConfigError) as info:
        Bench.from_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_faults_added_by_api_strike_once_at_their_count(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    bench.faults.add("smu1", "timeout", after=2)
    assert smu.query("print(1)") == "1.00000e+00"  # message 1
    smu.write("x = 2")  # message 2
    with pytest.raises(pyvisa.VisaIOError, match="VI_ERROR_TMO"):
        smu.query("print(x)")  # message 3: its reply is lost
    assert smu.query("print(x)") == "2.00000e+00"
    assert [f.kind for f in bench.faults.struck] == ["timeout"]


def test_a_dropped_connection_fails_until_opened_again(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    smu.write("smua.source.limiti = 1e-3 smua.source.output = 1")
    bench.faults.add("smu1", "drop")
    for _ in range(2):
        with pytest.raises(pyvisa.VisaIOError, match="VI_ERROR_CONN_LOST"):
            smu.query("print(1)")
    assert bench.outputs_on() == ["smu1.smua"]  # the instrument kept its state
    smu.close()
    again = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    assert again.query("print(smua.source.output)") == "1.00000e+00"


def test_a_reboot_forgets_every_setting_and_script(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    smu.write(
        "smua.source.limiti = 1e-3 smua.source.levelv = 0.1 smua.source.output = 1"
    )
    smu.write("kept = 5")
    bench.faults.add("smu1", "reboot")
    smu.write("print('lost while booting')")
    assert bench.outputs_on() == []
    assert smu.query("print(kept, smua.source.limiti)") == "nil\t1.00000e-01"


def test_a_welded_relay_stays_closed_while_the_matrix_reports_it_open(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    bench.faults.add("matrix", "relay_stuck", relay="1B02")
    smu.write('node[4].channel.close("1A01")')
    assert bench.closed_relays() == ["1A01", "1B02"]
    smu.write('node[4].channel.open("allslots")')
    assert bench.closed_relays() == ["1B02"]
    assert smu.query('print(node[4].channel.getclose("allslots"))') == "nil"


def test_the_exposure_records_what_crossed_each_cell(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    # row 2 on smu1.smua (bus A, matrix column 3), every other line on ground (bus H)
    grounded = ",".join(f"1H{col:02d}" for col in range(1, 13) if col != 3)
    smu.write(f'node[4].channel.close("1A03,{grounded}")')
    smu.write(
        "smua.source.limiti = 1e-3 smua.source.levelv = 0.7 smua.source.output = 1"
    )
    smu.write("smua.source.levelv = 0.2")
    cells = bench.exposure.cell_max_v("A0")
    assert cells[2] == pytest.approx([0.7] * 4)
    assert cells.sum() == pytest.approx(4 * 0.7)
    rows, cols = bench.exposure.line_max_v("A0")
    assert rows[2] == pytest.approx(0.7) and rows.sum() == pytest.approx(0.7)
    assert not cols.any()
    assert [cell[:3] for cell in bench.exposure.cells_above(0.5)] == [
        ("A0", 2, c) for c in range(4)
    ]


def test_a_floating_line_is_counted_at_its_worst(tmp_path):
    import pyvisa

    small_station(tmp_path)
    rm = pyvisa.ResourceManager(f"{tmp_path / 'bench.yaml'}@labsim")
    smu = rm.open_resource("GPIB0::26::INSTR", read_termination="\n")
    bench = bench_for(tmp_path / "bench.yaml")
    smu.write(
        'node[4].channel.close("1A03,1H12")'
    )  # row 2 and column 3, the rest floats
    smu.write(
        "smua.source.limiti = 1e-3 smua.source.levelv = -0.4 smua.source.output = 1"
    )
    cells = bench.exposure.cell_max_v("A0")
    assert cells.max() == pytest.approx(0.4)
    assert cells.min() == pytest.approx(0.4)  # a floating line may sit at either end


def test_a_fault_without_a_kind_and_a_bad_fault_by_api_name_their_key(tmp_path):
    from simulator.faults import FaultError

    small_station(tmp_path)
    path = tmp_path / "bench.yaml"
    path.write_text(path.read_text() + "faults: {smu1: [{after: 3}]}\n")
    with pytest.raises(ConfigError, match=r"faults\.smu1\.0\.kind: required key"):
        Bench.from_file(path)
    bench = Bench.from_file(DEMO_BENCH)
    with pytest.raises(FaultError, match=r"^faults\.matrix\.relay: '1Z01' is not a"):
        bench.faults.add("matrix", "relay_stuck", relay="1Z01")
    with pytest.raises(FaultError, match=r"^faults\.smu7: no instrument 'smu7'"):
        bench.faults.add("smu7", "reboot")
    assert not bench.faults.armed
