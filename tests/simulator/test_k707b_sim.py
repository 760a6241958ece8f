"""Simulated 707B: channel lists, closing and opening, getclose, delays, timing."""

from pathlib import Path

import pytest

from simulator.bench import Bench
from tests.simulator.tsp_talk import ask

DEMO = Path(__file__).resolve().parents[2] / "data" / "benches" / "demo.yaml"


@pytest.fixture
def bench():
    return Bench.from_file(DEMO)


@pytest.fixture
def master(bench):
    return bench.resource("GPIB0::26::INSTR")


@pytest.fixture
def matrix(bench):
    """The 707B itself, driven directly (as node 4 runs it)."""
    return bench.instruments["matrix"]


def closed(matrix):
    return ask(matrix, 'print(channel.getclose("allslots"))')[0]


def error_codes(instrument):
    codes = []
    while True:
        code = float(ask(instrument, "print(errorqueue.next())")[0].split("\t")[0])
        if code == 0:
            return codes
        codes.append(int(code))


def test_identity(matrix):
    assert ask(matrix, "*IDN?")[0].startswith("Keithley Instruments Inc., Model 707B,")


def test_nothing_closed_prints_nil(matrix):
    assert closed(matrix) == "nil"


def test_getclose_is_sorted_and_semicolon_separated(matrix):
    ask(matrix, 'channel.close("3C07,1A01") channel.close("2H12")')
    assert closed(matrix) == "1A01;2H12;3C07"


def test_lists_take_semicolons_spaces_and_ranges(matrix):
    ask(matrix, 'channel.close("1A01:1A03; 1B05")')
    assert closed(matrix) == "1A01;1A02;1A03;1B05"


def test_getclose_only_reports_the_listed_channels(matrix):
    ask(matrix, 'channel.close("1A01,2A01")')
    assert ask(matrix, 'print(channel.getclose("slot2"))') == ["2A01"]
    assert ask(matrix, 'print(channel.getclose("1A02"))') == ["nil"]


def test_open_takes_slots_and_allslots(matrix):
    ask(matrix, 'channel.close("1A01,2A01,3A01")')
    ask(matrix, 'channel.open("slot2")')
    assert closed(matrix) == "1A01;3A01"
    ask(matrix, 'channel.open("allslots")')
    assert closed(matrix) == "nil"


def test_exclusiveclose_opens_every_other_channel(matrix):
    ask(matrix, 'channel.close("1A01,1A02")')
    ask(matrix, 'channel.exclusiveclose("1A02,4D04")')
    assert closed(matrix) == "1A02;4D04"
    ask(matrix, 'channel.exclusiveclose("")')
    assert closed(matrix) == "nil"


def test_exclusiveslotclose_keeps_other_slots(matrix):
    ask(matrix, 'channel.close("1A01,2A01")')
    ask(matrix, 'channel.exclusiveslotclose("1B02")')
    assert closed(matrix) == "1B02;2A01"


@pytest.mark.parametrize(
    "listed",
    ["1A01,1Z01", "1A01,7A01", "1A01,1A13", "1A01,allslots", "1A01,slot1", "1A05:1A01"],
)
def test_a_bad_entry_closes_nothing(matrix, listed):
    ask(matrix, 'channel.close("2A01")')
    ask(matrix, f'channel.close("{listed}")')
    assert closed(matrix) == "2A01"
    assert error_codes(matrix) == [-224]


def test_a_bad_exclusiveclose_changes_nothing(matrix):
    ask(matrix, 'channel.close("2A01")')
    ask(matrix, 'channel.exclusiveclose("1A01,9A01")')
    assert closed(matrix) == "2A01"
    assert error_codes(matrix) == [-224]


def test_a_list_that_is_not_a_string_is_a_runtime_error(matrix):
    ask(matrix, "channel.close(5)")
    assert error_codes(matrix) == [-286]


def test_the_master_drives_the_matrix_as_node_4(master, bench):
    ask(master, 'node[4].channel.exclusiveclose("1A01,6H05")')
    assert ask(master, 'print(node[4].channel.getclose("allslots"))') == ["1A01;6H05"]
    assert bench.closed_relays() == ["1A01", "6H05"]


def test_relays_charge_their_operate_time(matrix, bench):
    operate_s = bench.timing.relay_operate_s
    before = bench.now_s
    ask(matrix, 'channel.close("1A01")')
    assert bench.now_s - before == pytest.approx(operate_s)
    before = bench.now_s
    ask(matrix, 'channel.exclusiveclose("1A02")')  # break, then make
    assert bench.now_s - before == pytest.approx(2 * operate_s)
    before = bench.now_s
    ask(matrix, 'channel.close("1A02")')  # already closed: nothing moves
    assert bench.now_s == before


def test_connect_rule_off_switches_in_one_step(matrix, bench):
    ask(matrix, 'channel.close("1A01") channel.connectrule = channel.OFF')
    before = bench.now_s
    ask(matrix, 'channel.exclusiveclose("1A02")')
    assert bench.now_s - before == pytest.approx(bench.timing.relay_operate_s)
    assert ask(matrix, "print(channel.connectrule)") == ["0.00000e+00"]


def test_channel_delays_add_to_the_operate_time(matrix, bench):
    ask(matrix, 'channel.setdelay("1A01", 0.01)')
    assert ask(matrix, 'print(channel.getdelay("1A01,1A02"))') == [
        "1.00000e-02,0.00000e+00"
    ]
    before = bench.now_s
    ask(matrix, 'channel.close("1A01")')
    assert bench.now_s - before == pytest.approx(bench.timing.relay_operate_s + 0.01)
    ask(matrix, 'channel.reset("allslots")')
    assert closed(matrix) == "nil"
    assert ask(matrix, 'print(channel.getdelay("1A01"))') == ["0.00000e+00"]


def test_reset_opens_everything(matrix):
    ask(matrix, 'channel.close("1A01,2B02") reset()')
    assert closed(matrix) == "nil"


def test_a_plain_comma_list_closes_what_the_same_list_spelled_loosely_does(bench):
    names = [
        f"{slot}{row}{column:02d}"
        for slot in (1, 3, 6)
        for row in "AH"
        for column in (1, 5, 12)
    ]
    plain = bench.instruments["matrix"]
    ask(plain, f'channel.close("{",".join(names)}")')
    loose = Bench.from_file(DEMO).instruments["matrix"]
    ask(loose, f'channel.close(" {" ; ".join(n.lower() for n in names)} ")')
    assert closed(plain) == closed(loose) == ";".join(sorted(names))


def test_a_pattern_stands_for_its_crosspoints_in_every_list(matrix):
    ask(matrix, 'channel.pattern.setimage("1A01,2B03:2B05", "Row_A")')
    image = ask(matrix, 'print(channel.pattern.getimage("row_a"))')
    assert image == ["1A01,2B03,2B04,2B05"]
    ask(matrix, 'channel.close("3C07") channel.close("Row_A")')
    assert closed(matrix) == "1A01;2B03;2B04;2B05;3C07"
    ask(matrix, 'channel.exclusiveclose("row_a,1H12")')
    assert closed(matrix) == "1A01;1H12;2B03;2B04;2B05"
    ask(matrix, 'channel.open("ROW_A")')
    assert closed(matrix) == "1H12"
    assert error_codes(matrix) == []


def test_a_snapshot_is_the_closed_state_and_survives_later_switching(matrix):
    ask(matrix, 'channel.close("1A01,6H12") channel.pattern.snapshot("before")')
    ask(matrix, 'channel.exclusiveclose("2C02")')
    ask(matrix, 'channel.exclusiveclose("before")')
    assert closed(matrix) == "1A01;6H12"


def test_catalog_iterates_the_names_as_given(matrix):
    ask(matrix, 'channel.pattern.setimage("1A01", "first") '
                'channel.pattern.setimage("1A02", "Second")')
    assert ask(matrix, "for name in channel.pattern.catalog() do print(name) end") == [
        "first", "Second"]


@pytest.mark.parametrize("name", ["1A01", "slot2", "allslots", "9lives", "has space",
                                  "a" * 20, ""])
def test_a_pattern_cannot_take_a_channel_name_or_a_malformed_one(matrix, name):
    ask(matrix, f'channel.pattern.setimage("1A01", "{name}")')
    assert error_codes(matrix) == [-224]
    assert ask(matrix, "for n in channel.pattern.catalog() do print(n) end") == []


def test_a_deleted_or_unknown_pattern_is_an_error_and_switches_nothing(matrix):
    ask(matrix, 'channel.pattern.setimage("1A01", "gone")')
    ask(matrix, 'channel.pattern.delete("gone")')
    ask(matrix, 'channel.close("gone")')
    ask(matrix, 'channel.pattern.delete("never")')
    assert closed(matrix) == "nil"
    assert error_codes(matrix) == [-224, -224]


def test_reset_forgets_patterns(matrix):
    ask(matrix, 'channel.pattern.setimage("1A01", "kept") reset()')
    ask(matrix, 'channel.close("kept")')
    assert error_codes(matrix) == [-224]


@pytest.mark.parametrize(("args", "name"), [("1, 'C', 7", "1C07"), ("6, 8, 12", "6H12"),
                                           ("2, 'a', 1", "2A01")])
def test_createspecifier_names_a_crosspoint(matrix, args, name):
    assert ask(matrix, f"print(channel.createspecifier({args}))") == [name]


@pytest.mark.parametrize("args", ["7, 'A', 1", "1, 'J', 1", "1, 9, 1", "1, 'A', 13",
                                  "1.5, 'A', 1"])
def test_createspecifier_refuses_what_the_matrix_has_not(matrix, args):
    ask(matrix, f"x = channel.createspecifier({args})")
    assert error_codes(matrix) == [-224]
