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
import yaml

from labctl import runner, storage
from labctl.rig import Rig
from labctl.station import ConfigError, load_station
from simulator.bench import Bench, bench_for, forget
from tests.conftest import DEMO_BENCH, DEMO_STATION

PROCEDURES = {
    "iv_sweep": {"step": "0.1"},
    "read_map": {},
    "program_map": {"targets": "gradient", "max_rounds": "6"},
    "attention_head": {"sentences": "1"},  # stopped after two tiles
}
TILES = 2

FAULTS = {
    "timeout": ("smu1", {"kind": "timeout"}),
    "drop": ("smu1", {"kind": "drop"}),
    "garble": ("smu1", {"kind": "garble", "times": 3}),
    "truncate": ("smu1", {"kind": "truncate", "times": 3}),
    "error_storm": ("smu1", {"kind": "error_storm"}),
    "reboot": ("smu1", {"kind": "reboot"}),
    "node_reboot": ("smu2", {"kind": "reboot"}),
    "relay_welded": ("matrix", {"kind": "relay_stuck", "relay": "1A01"}),
    "relay_open": ("matrix", {"kind": "relay_stuck", "relay": "1C09", "state": "open"}),
    "compliance_trip": ("smu2", {"kind": "compliance_trip", "channel": "smua"}),
    "cell_short": ("chip", {"kind": "cell_short", "cell": "A0[1, 1]"}),
}


def small_station(folder: Path, faults: dict | None = None) -> Path:
    """The demo station on a chip of 8 x 4 cells, all wired, on a bench of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    chip = {
        "name": "PVK-small",
        "preset": "perovskite",
        "arrays": {"A0": {"rows": 8, "cols": 4}},
    }
    (folder / "chip.yaml").write_text(yaml.safe_dump(chip))
    station = yaml.safe_load(DEMO_STATION.read_text())
    station["chip"] = "chip.yaml"
    station["visa_library"] = "bench.yaml@labsim"
    station["wiring"]["columns"] = {
        1: [f"A0.R{r}" for r in range(8)] + [f"A0.C{c}" for c in range(4)]
    }
    (folder / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load(DEMO_BENCH.read_text())
    bench["station"] = "station.yaml"
    if faults:
        bench["faults"] = faults
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    forget(folder / "bench.yaml")
    return folder / "station.yaml"


def run_once(folder: Path, name: str, faults: dict | None = None):
    """Run a procedure; return its outcome, what it stored (points, or the
    tile maps of attention_head), the bench it ran on and what was on at its
    end, and the bench time of each tile's end."""
    station = load_station(small_station(folder, faults))
    bench = bench_for(folder / "bench.yaml")
    engine = storage.connect(f"sqlite:///{folder / 'runs.sqlite'}")
    proc = runner.build_procedure(name, PROCEDURES[name], station)
    rig = Rig(station)
    tiles_end_s: list[float] = []
    try:

        def after_tiles(percent: float) -> None:
            if name == "attention_head":
                tiles_end_s.append(bench.now_s)
                if len(tiles_end_s) == TILES:
                    rig.stop_requested = f"stopped after {TILES} tiles"

        outcome = runner.run(proc, station, engine, rig=rig, progress=after_tiles)
        ended = {"outputs_on": bench.outputs_on(), "closed": bench.closed_relays()}
    finally:
        rig.close()
    if name == "attention_head":
        stored = [
            m.to_array().tolist() for m in storage.run_maps(engine, outcome.run_id)
        ]
    else:
        stored = storage.run_points(engine, outcome.run_id)
    return outcome, stored, bench, ended, tiles_end_s


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Each procedure's run without a fault: when to strike, and what it stored."""
    runs = {}
    for name in PROCEDURES:
        outcome, stored, bench, _, tiles_end_s = run_once(
            tmp_path_factory.mktemp(name), name
        )
        assert outcome.status in ("finished", "aborted"), outcome.message
        # Halfway; for attention_head, halfway through its last tile.
        start_s = tiles_end_s[-2] if tiles_end_s else 0.0
        runs[name] = (start_s, bench.now_s - start_s, stored)
    return runs


def check_safe_end(
    station_path: Path, outcome, points, bench: Bench, ended, clean_points, welded=()
):
    limits = load_station(station_path).limits
    assert outcome.status in ("finished", "failed", "aborted")
    if outcome.status == "failed":
        assert outcome.message
    assert bench.faults.struck, "the fault never struck"
    assert ended["outputs_on"] == []
    assert set(ended["closed"]) <= set(welded)
    exposure = bench.exposure
    assert exposure.max_line_v() <= limits.max_voltage_v
    assert exposure.cells_above(limits.max_voltage_v) == []
    assert exposure.max_limit_a <= limits.max_compliance_a
    assert points, "what was measured before the fault is lost"
    assert points[0] == clean_points[0]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", PROCEDURES)
def test_a_fault_halfway_ends_safe(tmp_path, clean, name, fault):
    instrument, spec = FAULTS[fault]
    start_s, duration_s, clean_points = clean[name]
    faults = {instrument: [{**spec, "at_s": start_s + duration_s / 2}]}
    outcome, points, bench, ended, _ = run_once(tmp_path, name, faults)
    welded = (
        [spec["relay"]] if spec["kind"] == "relay_stuck" and "state" not in spec else []
    )
    check_safe_end(
        tmp_path / "station.yaml", outcome, points, bench, ended, clean_points, welded
    )


LATE = (0.1, 0.3, 0.7, 0.9)


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "when"), list(itertools.product(FAULTS, LATE)))
@pytest.mark.parametrize("name", PROCEDURES)
def test_a_fault_at_any_point_ends_safe(tmp_path, clean, name, fault, when):
    instrument, spec = FAULTS[fault]
    start_s, duration_s, clean_points = clean[name]
    lasting = {"times": 50} if spec["kind"] in ("timeout", "garble", "truncate") else {}
    faults = {instrument: [{**spec, **lasting, "at_s": start_s + duration_s * when}]}
    outcome, points, bench, ended, _ = run_once(tmp_path, name, faults)
    welded = (
        [spec["relay"]] if spec["kind"] == "relay_stuck" and "state" not in spec else []
    )
    check_safe_end(
        tmp_path / "station.yaml", outcome, points, bench, ended, clean_points, welded
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
