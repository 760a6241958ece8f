"""Read-only checks of a real 707B / 708B; run with LABCTL_HW_707B=<VISA address>.

Nothing here opens or closes a relay.
"""

import os

import pytest

from drivers.k707b import SLOTS, Keithley707B

ADDRESS = os.environ.get("LABCTL_HW_707B")

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not ADDRESS, reason="set LABCTL_HW_707B to a VISA address"),
]


@pytest.fixture(scope="module")
def matrix():
    probe = Keithley707B(ADDRESS, name="hw707b")
    model = probe.identity()["model"]
    assert model in SLOTS, f"not a 707B or 708B: {model}"
    yield Keithley707B(None, name="hw707b", model=model, connection=probe.connection)
    probe.adapter.close()


def test_identity(matrix):
    info = matrix.identity()
    assert info["model"] == matrix.model
    assert info["serial"]
    assert info["firmware"]


def test_closed_channels_are_crosspoints(matrix):
    for crosspoint in matrix.closed_channels():
        assert matrix.check_crosspoint(crosspoint) == crosspoint


def test_error_queue_drains(matrix):
    matrix.check_errors()
    assert matrix.check_errors() == []


def test_a_pattern_round_trips_without_switching(matrix):
    # Defining, reading and deleting a pattern moves no relay.
    before = matrix.closed_channels()
    matrix.define_pattern("labctl_probe", ["1A01", "1B02"])
    assert matrix.pattern_channels("labctl_probe") == ["1A01", "1B02"]
    matrix.delete_pattern("labctl_probe")
    assert matrix.closed_channels() == before
    assert matrix.check_errors() == []
