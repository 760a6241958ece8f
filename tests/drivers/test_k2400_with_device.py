"""Read-only checks of a real 2400; run with LABCTL_HW_2400=<VISA address>.

Nothing here changes a source level, a limit or an output state.
"""

import os

import pytest

from drivers.k2400 import RATINGS, Keithley2400

ADDRESS = os.environ.get("LABCTL_HW_2400")

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not ADDRESS, reason="set LABCTL_HW_2400 to a VISA address"),
]


@pytest.fixture(scope="module")
def smu():
    probe = Keithley2400(ADDRESS, name="hw2400", model=next(iter(RATINGS)))
    model = probe.identity()["model"]
    assert model in RATINGS, f"not a 2400: {model}"
    yield Keithley2400(probe.adapter, name="hw2400", model=model)
    probe.adapter.close()


def test_identity(smu):
    info = smu.identity()
    assert info["model"] == smu.model
    assert info["serial"]
    assert info["firmware"]


def test_channels_read_back_within_the_ratings(smu):
    for channel in smu.channels.values():
        assert channel.source_function in ("voltage", "current")
        assert isinstance(channel.output_enabled, bool)
        assert isinstance(channel.compliance, bool)
        assert isinstance(channel.current_autorange, bool)
        assert isinstance(channel.four_wire, bool)
        for prop, limit in channel.limits.items():
            value = getattr(channel, prop)
            assert limit.low <= value <= limit.high, prop


def test_error_queue_drains(smu):
    smu.check_errors()
    assert smu.check_errors() == []
