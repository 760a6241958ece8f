"""Safe ends: outputs off and relays open before a run is finalized, whatever
ends it (an error, Ctrl-C twice, SIGTERM, a lost connection, an instrument
that stops answering)."""

from __future__ import annotations

import itertools
import os
import signal

import pytest

from labctl import runner, storage
from labctl.rig import RunAborted
from labctl.safety import GuardedChannel
from labctl.station import load_station
from procedures.base import LabProcedure
from simulator.bench import bench_for


class Holding(LabProcedure):
    """Holds a cell at 0.2 V and reads it; ``signals`` are sent at given steps."""

    NAME = "holding"
    DATA_COLUMNS = ["Step", "Current (A)"]

    def __init__(self, signals=None, heeds_stop=True, raises=None, **kwargs):
        super().__init__(**kwargs)
        self.signals = signals or {}
        self.heeds_stop = heeds_stop
        self.raises = raises

    def startup(self):
        rig = self.rig
        roles = rig.station.roles
        self.drive, self.sense = rig.smu(roles.drive), rig.smu(roles.sense[0])
        for ch in (self.drive, self.sense):
            ch.current_limit = 1e-3
            ch.source_voltage = 0.0
            ch.output_enabled = True
        rig.lines("A0").select(
            0,
            0,
            rig.bus_of(roles.drive),
            rig.bus_of(roles.sense[0]),
            rig.ground_bus,
            rig.ground_bus,
        )
        self.drive.source_voltage = 0.2

    def execute(self):
        for step in itertools.count():
            self.emit(
                "results", {"Step": step, "Current (A)": self.sense.measure_current()}
            )
            if step in self.signals:
                os.kill(os.getpid(), self.signals[step])
            if step == 3 and self.raises is not None:
                raise self.raises
            if self.heeds_stop and self.should_stop():
                return
            if step > 50:
                raise AssertionError("the procedure was never stopped")


def bench_of(station):
    return bench_for(str(station.path.parent / "bench.yaml"))


def run(station, db_url, proc):
    engine = storage.connect(db_url)
    outcome = runner.run(proc, station, engine)
    return outcome, storage.run_points(engine, outcome.run_id)


def assert_safe(station):
    bench = bench_of(station)
    assert bench.outputs_on() == []
    assert bench.closed_relays() == []


def test_a_second_ctrl_c_stops_a_procedure_that_ignores_the_first(
    station_path, db_url, monkeypatch
):
    station = load_station(station_path)
    force_off = GuardedChannel.force_off

    def interrupted_force_off(self):  # a third Ctrl-C in the middle of the safe end
        os.kill(os.getpid(), signal.SIGINT)
        force_off(self)

    monkeypatch.setattr(GuardedChannel, "force_off", interrupted_force_off)
    proc = Holding(signals={2: signal.SIGINT, 4: signal.SIGINT}, heeds_stop=False)
    outcome, points = run(station, db_url, proc)
    assert outcome.status == "aborted"
    assert outcome.message == "stopped by SIGINT"
    assert [p["Step"] for p in points] == [0, 1, 2, 3, 4]
    assert_safe(station)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_stops_at_the_next_point(station_path, db_url):
    station = load_station(station_path)
    outcome, points = run(station, db_url, Holding(signals={1: signal.SIGTERM}))
    assert (outcome.status, outcome.message) == ("aborted", "stopped by SIGTERM")
    assert len(points) == 2
    assert_safe(station)


def test_a_second_signal_while_the_run_ends_interrupts_nothing(station_path):
    station = load_station(station_path)
    from labctl.rig import Rig

    rig = Rig(station)
    try:
        with runner._stop_on_signals(rig, Holding()):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # outside the procedure: noted only
            os.kill(os.getpid(), signal.SIGTERM)
        assert rig.stop_requested == "stopped by SIGINT"
    finally:
        rig.close()


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (KeyboardInterrupt(), "aborted", "stopped by Ctrl-C"),
        (RunAborted("stopped by the operator"), "aborted", "stopped by the operator"),
        (ZeroDivisionError("no cells"), "failed", "ZeroDivisionError: no cells"),
    ],
)
def test_any_exception_ends_safe_and_is_recorded(
    station_path, db_url, error, status, message
):
    station = load_station(station_path)
    outcome, points = run(station, db_url, Holding(raises=error))
    assert (outcome.status, outcome.message) == (status, message)
    assert len(points) == 4
    assert_safe(station)
    stored = storage.get_run(storage.connect(db_url), outcome.run_id)
    assert (stored.status, stored.message) == (status, message)


def test_a_lost_connection_is_opened_again_for_the_safe_end(
    station_path, db_url, caplog
):
    station = load_station(station_path)
    bench_of(station).faults.add("smu1", "drop", after=40)
    outcome, points = run(station, db_url, Holding())
    assert outcome.status == "failed"
    assert "VI_ERROR_CONN_LOST" in outcome.message
    assert "safe end" not in outcome.message  # everything was turned off and checked
    assert points
    assert_safe(station)
    assert any("opening smu1 again" in r.getMessage() for r in caplog.records)


def test_an_instrument_that_stops_answering_is_turned_off_and_reported(
    station_path, db_url
):
    station = load_station(station_path)
    bench_of(station).faults.add("smu1", "timeout", after=40, times=1000)
    outcome, points = run(station, db_url, Holding())
    assert outcome.status == "failed"
    assert outcome.message.startswith("VisaIOError: VI_ERROR_TMO")
    assert "safe end: smu1.smua: output turned off but not confirmed" in outcome.message
    assert points
    assert_safe(station)  # the writes still arrive: outputs off, relays open


def test_a_connection_opened_again_starts_with_no_stale_replies(station_path):
    # A drop in the middle of the first of two replies leaves the second in
    # the instrument's output queue; the safe end's own queries must not
    # read it as theirs.
    from labctl.rig import Rig

    station = load_station(station_path)
    rig = Rig(station)
    try:
        hardware = rig._hardware()
        adapter = hardware.adapters["smu1"]
        bench_of(station).faults.add("smu1", "drop")
        adapter.write("print(1) print(2)")
        with pytest.raises(Exception, match="CONN_LOST"):
            adapter.read()
        hardware.reconnect("smu1")
        hardware.adapters["smu1"].write("print(3)")
        assert hardware.adapters["smu1"].read().strip() == "3.00000e+00"
    finally:
        rig.close()


def test_an_instrument_that_lost_its_settings_never_turns_on_at_its_default_limit(
    station_path,
):
    # A power cycle puts the 2636B's limits back to their defaults (0.1 A)
    # without the guard knowing; every turn-on and pulse train sends the
    # limit again, so none reaches the chip at the default.
    from labctl.rig import Rig

    station = load_station(station_path)
    bench = bench_of(station)
    rig = Rig(station)
    try:
        drive = rig.smu(station.roles.drive)
        drive.current_limit = 1e-4
        drive.output_enabled = True
        bench.instruments["smu1"].power_cycle()
        drive.output_enabled = True
        assert bench.source("smu1.smua").limit_a == pytest.approx(1e-4)
        bench.instruments["smu1"].power_cycle()
        drive.apply_pulses(0.5, 1e-5, 0.0, 1e-5, 1)
        assert bench.exposure.max_limit_a == pytest.approx(1e-4)
    finally:
        rig.close()
