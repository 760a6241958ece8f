"""Protocol tests of the Keithley 707B / 708B driver: exact messages and replies."""

from contextlib import contextmanager

import pytest
from pymeasure.test import expected_protocol

from drivers.interfaces import SwitchMatrix
from drivers.k707b import Keithley707B
from drivers.k2600 import Keithley2600

# (node or None, the prefix its commands carry)
PLACES = [(None, ""), (4, "node[4].")]
PLACE_IDS = ["direct", "node4"]


@contextmanager
def matrix_at(pairs, place, model="707B"):
    """Yield the matrix directly on the adapter, or as node N behind a 2636B."""
    node, _ = place
    if node is None:
        with expected_protocol(Keithley707B, pairs, model=model) as matrix:
            yield matrix
    else:
        with expected_protocol(Keithley2600, pairs, name="smu1") as master:
            yield Keithley707B(
                None,
                name="matrix",
                model=model,
                node=node,
                connection=master.connection,
            )


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_close(place):
    pairs = [(f'{place[1]}channel.close("1A01,1B02,6H12")', None)]
    with matrix_at(pairs, place) as matrix:
        matrix.close(["1A01", "1B02", "6H12"])


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_open(place):
    pairs = [(f'{place[1]}channel.open("3C07")', None)]
    with matrix_at(pairs, place) as matrix:
        matrix.open(["3C07"])


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_exclusive_close(place):
    pairs = [(f'{place[1]}channel.exclusiveclose("1A01,1B02")', None)]
    with matrix_at(pairs, place) as matrix:
        matrix.exclusive_close(iter(["1A01", "1B02"]))


def test_exclusive_close_of_nothing_opens_all():
    with matrix_at([('channel.exclusiveclose("")', None)], PLACES[0]) as matrix:
        matrix.exclusive_close([])


def test_close_and_open_of_nothing_send_nothing():
    with matrix_at([], PLACES[0]) as matrix:
        matrix.close([])
        matrix.open(())


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_open_all(place):
    with matrix_at([(f'{place[1]}channel.open("allslots")', None)], place) as matrix:
        matrix.open_all()


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize(
    "reply, closed",
    [("1A01;1C03", ["1A01", "1C03"]), ("nil", []), ("2B05", ["2B05"])],
)
def test_closed_channels(place, reply, closed):
    pairs = [(f'print({place[1]}channel.getclose("allslots"))', reply)]
    with matrix_at(pairs, place) as matrix:
        assert matrix.closed_channels() == closed


@pytest.mark.parametrize(
    "model, crosspoint, error",
    [
        ("707B", "7A01", "slot 7 does not exist on a 707B"),
        ("707B", "0A01", "slot 0 does not exist"),
        ("708B", "2A01", "slot 2 does not exist on a 708B"),
        ("707B", "1J01", "row J is not one of A..H"),
        ("707B", "1A13", "column 13 is not within 1..12"),
        ("707B", "1A00", "column 0 is not within 1..12"),
        ("707B", "1A1", "not a crosspoint"),
        ("707B", "1a01", "not a crosspoint"),
        ("707B", "allslots", "not a crosspoint"),
        ("707B", 101, "not a crosspoint"),
    ],
)
def test_bad_crosspoints_raise_and_send_nothing(model, crosspoint, error):
    with matrix_at([], PLACES[0], model=model) as matrix:
        for method in (matrix.close, matrix.open, matrix.exclusive_close):
            with pytest.raises(ValueError, match=error):
                method(["1A01", crosspoint])


def test_a_bare_string_is_refused():
    with matrix_at([], PLACES[0]) as matrix:
        with pytest.raises(TypeError, match="list of crosspoints"):
            matrix.close("1A01")


def test_708b_has_one_slot():
    with matrix_at([('channel.close("1H12")', None)], PLACES[0], "708B") as matrix:
        assert matrix.slots == 1
        matrix.close(["1H12"])


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown matrix model '706'"):
        Keithley707B(None, model="706")


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_reset(place):
    with matrix_at([(f"{place[1]}reset()", None)], place) as matrix:
        matrix.reset()


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_shutdown_opens_every_relay(place):
    with matrix_at([(f'{place[1]}channel.open("allslots")', None)], place) as matrix:
        matrix.shutdown()
        assert matrix.isShutdown


def test_shutdown_in_a_batch_drops_queued_closures():
    with matrix_at([('channel.open("allslots")', None)], PLACES[0]) as matrix:
        with matrix.connection.batch():
            matrix.close(["1A01"])
            matrix.shutdown()


def test_identity_direct():
    idn = "Keithley Instruments Inc., Model 707B, 1234567, 1.6.0"
    with matrix_at([("*IDN?", idn)], PLACES[0]) as matrix:
        assert matrix.identity() == {
            "manufacturer": "Keithley Instruments Inc.",
            "model": "707B",
            "serial": "1234567",
            "firmware": "1.6.0",
        }


def test_identity_node():
    query = "print(node[4].model, node[4].serialno, node[4].revision)"
    with matrix_at([(query, "707B\t1234567\t1.6.0")], PLACES[1]) as matrix:
        assert matrix.identity()["model"] == "707B"


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_error_queue(place):
    prefix = place[1]
    pairs = [
        (f"{prefix}errorqueue.clear()", None),
        (f"print({prefix}errorqueue.count)", "1.00000e+00"),
        (
            f"print({prefix}errorqueue.next())",
            "1.11500e+03\tParameter error\t2.00000e+00\t4.00000e+00",
        ),
    ]
    with matrix_at(pairs, place) as matrix:
        matrix.clear_errors()
        [error] = matrix.check_errors()
        assert (error.code, error.node) == (1115, 4)


def test_matrix_and_smu_settings_in_one_message():
    message = (
        'node[4].channel.exclusiveclose("1A01,2B03") smua.source.levelv = 0.1 '
        'print(node[4].channel.getclose("allslots"))'
    )
    with expected_protocol(Keithley2600, [(message, "1A01;2B03")]) as smu:
        matrix = Keithley707B(None, node=4, connection=smu.connection)
        with smu.connection.batch():
            matrix.exclusive_close(["1A01", "2B03"])
            smu.smua.source_voltage = 0.1
            assert matrix.closed_channels() == ["1A01", "2B03"]


def test_matrix_satisfies_the_switch_matrix_interface():
    with matrix_at([], PLACES[0]) as matrix:
        assert isinstance(matrix, SwitchMatrix)


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_patterns_are_defined_applied_read_and_deleted(place):
    node = place[1]
    pairs = [
        (f'{node}channel.pattern.setimage("1A01,6H12", "row_a")', None),
        (f'{node}channel.exclusiveclose("row_a")', None),
        (f'print({node}channel.pattern.getimage("row_a"))', "1A01,6H12"),
        (f'{node}channel.pattern.delete("row_a")', None),
    ]
    with matrix_at(pairs, place) as matrix:
        matrix.define_pattern("row_a", ["1A01", "6H12"])
        matrix.apply_pattern("row_a")
        assert matrix.pattern_channels("row_a") == ["1A01", "6H12"]
        matrix.delete_pattern("row_a")


@pytest.mark.parametrize(
    "name", ["1A01", "slot3", "ALLSLOTS", "9lives", "a b", "x" * 20, 'q"uote', ""]
)
def test_a_bad_pattern_name_is_refused_before_sending(name):
    with matrix_at([], PLACES[0]) as matrix:
        with pytest.raises(ValueError, match="cannot name a pattern"):
            matrix.define_pattern(name, ["1A01"])


def test_a_pattern_of_bad_crosspoints_is_refused_before_sending():
    with matrix_at([], PLACES[0]) as matrix:
        with pytest.raises(ValueError, match="slot 7"):
            matrix.define_pattern("ok", ["7A01"])
