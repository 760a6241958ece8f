"""Write-verify run on the instrument: one message per row of cells, guarded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl import onboard
from labctl.engine.writeverify import WriteVerify, WriteVerifyConfig
from labctl.rig import Rig
from labctl.safety import SafetyError
from labctl.station import load_station
from simulator.bench import bench_for
from tests.conftest import write_bench

ROOT = Path(__file__).resolve().parents[2]
ROWS, COLS = 8, 8


def programmed(station_path: Path, on_instrument: bool, **changes):
    """Program ROWS x COLS cells of A0; the logs, the bench and its messages."""
    station = load_station(station_path)
    bench = bench_for(station.visa_library.rpartition("@")[0])
    config = WriteVerifyConfig.for_preset("perovskite", on_instrument=on_instrument,
                                          **changes)
    targets = np.random.default_rng(5).uniform(15e-6, 85e-6, (ROWS, COLS))
    rig = Rig(station)
    try:
        writer = WriteVerify(rig, "A0", config)
        before = bench._epoch
        logs = writer.program(targets)
        messages = bench._epoch - before
        # The guard knows what the program left closed: the bus path goes on.
        assert rig.guard.closed == set(bench.closed_relays())
        writer.program(targets * 0.9)
    finally:
        rig.close()
    return logs, targets, bench, messages


def test_the_program_reaches_the_targets_in_a_message_per_row(tmp_path):
    on, targets, bench, messages = programmed(write_bench(tmp_path / "on"), True)
    off, _, _, bus_messages = programmed(write_bench(tmp_path / "off"), False)
    assert messages <= ROWS + 4 < bus_messages / 10
    assert all(log.converged for log in on)
    # The same algorithm: as many pulses, cell for cell, within noise.
    pulses_on = np.mean([log.pulses for log in on])
    pulses_off = np.mean([log.pulses for log in off])
    assert pulses_on == pytest.approx(pulses_off, rel=0.25)
    assert bench.hot_switch_count == 0
    assert bench.max_abs_line_voltage_v <= 1.2 + 1e-12
    assert bench.outputs_on() == [] and bench.closed_relays() == []


def test_a_level_beyond_the_chip_limit_is_refused_before_anything_is_sent(tmp_path):
    station_path = write_bench(tmp_path / "b")
    station = load_station(station_path)
    bench = bench_for(station.visa_library.rpartition("@")[0])
    rig = Rig(station)
    try:
        writer = WriteVerify(rig, "A0", WriteVerifyConfig(on_instrument=True))
        writer.prepare()
        writer._select(0, 0)
        events = len(bench.events)
        bad = replace(writer.config, set_voltage_v=2.5)
        request = onboard.CellRequest(0, 0, 50e-6)
        with pytest.raises(SafetyError, match="program level 2.5 V exceeds the chip"):
            rig.write_verify_on_instrument("A0", [request], bad)
        assert len(bench.events) == events
    finally:
        rig.close()


def test_under_a_cell_budget_cells_are_programmed_over_the_bus(tmp_path):
    station_path = write_bench(tmp_path / "b")
    station = yaml.safe_load(station_path.read_text())
    station["limits"]["max_cell_charge_c"] = 1.0
    station_path.write_text(yaml.safe_dump(station, sort_keys=False))
    on, *_, messages = programmed(station_path, True)
    assert messages > 10 * ROWS
    assert all(log.converged for log in on)


def test_a_station_without_a_tsp_link_drive_programs_over_the_bus(tmp_path):
    station = yaml.safe_load((ROOT / "data/stations/k2450-sim.yaml").read_text())
    station["chip"] = str((ROOT / "data/stations" / station["chip"]).resolve())
    station["visa_library"] = f"{tmp_path / 'bench.yaml'}@labsim"
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load((ROOT / "data/benches/k2450-sim.yaml").read_text())
    bench["station"] = str(tmp_path / "station.yaml")
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    # The 2450's shortest pulse is 50 µs.
    logs, *_, messages = programmed(tmp_path / "station.yaml", True, width_s=1e-4,
                                    gap_s=1e-4)
    assert messages > 10 * ROWS
    assert np.mean([log.converged for log in logs]) > 0.9


# The message and its reply.


def test_the_program_is_one_message_without_comments():
    text = onboard.program_text()
    assert "\n" not in text and "--" not in text
    assert "#" not in text  # no length operator: the 2600B's Lua is 5.0
    assert text.startswith(f"function {onboard.NAME}(")


def test_a_call_takes_numbers_and_known_names_only():
    cells = [onboard.CellRequest(0, 1, 5e-5, None, 0.3, None)]
    call = onboard.call_text(["smua", "smub", "node[2].smua", "node[4].channel"],
                             [["1A01", "1B01", "1C01"], ["6A05", "6B05", "6C05"]],
                             [0, 2], 1, cells, [0.02, 0.0])
    assert call.startswith(f"{onboard.NAME}(smua, smub, node[2].smua, node[4].channel,")
    assert "{0,1,5e-05,-1.0,0.3,-1.0,0,0}" in call
    with pytest.raises(ValueError, match="not a TSP object"):
        onboard.call_text(["os.exit()", "smub", "smua", "channel"], [], [], 0, cells, [])
    with pytest.raises(ValueError, match="not a crosspoint"):
        onboard.call_text(["smua", "smub", "smua", "channel"], [['1A01") os.exit("']],
                          [0], 1, cells, [])
    with pytest.raises(ValueError, match="not a finite number"):
        onboard.call_text(["smua", "smub", "smua", "channel"], [["1A01"]], [0], 1,
                          [onboard.CellRequest(0, 0, float("nan"))], [])


def test_a_reply_is_read_whole_or_refused():
    outcomes, buses = onboard.parse_reply(
        "0 1 5.1e-05 12 3 0 0.25 -1;0 2 1e-06 96 12 1 -1 -1|1,2,3", 2
    )
    assert buses == [1, 2, 3]
    assert outcomes[0] == onboard.CellOutcome(0, 1, 5.1e-05, 12, 3, False, 0.25, None)
    assert outcomes[1].stuck and outcomes[1].set_gain is None
    unreadable, _ = onboard.parse_reply("0 1 -nan 3 1 0 -1 -1|0", 1)
    assert unreadable[0].final_s != unreadable[0].final_s  # an overflow: NaN
    with pytest.raises(ValueError, match="1 outcomes for 2 cells"):
        onboard.parse_reply("0 1 5e-05 1 1 0 -1 -1|0", 2)
    with pytest.raises(ValueError, match="no line state"):
        onboard.parse_reply("0 1 5e-05 1 1 0 -1 -1", 1)
    with pytest.raises(ValueError, match="malformed outcome"):
        onboard.parse_reply("0 1 5e-05|0", 1)
