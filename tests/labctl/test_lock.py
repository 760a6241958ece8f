"""One bench, one run: a second rig on instruments in use is refused, naming
the run that holds them; a crashed or killed holder holds nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from labctl import runner, storage
from labctl.lock import InstrumentBusy, lock_key
from labctl.rig import Rig
from labctl.station import load_station
from tests.conftest import REPO, write_bench

HOLDER = textwrap.dedent("""
    import sys
    from labctl.rig import Rig
    from labctl.station import load_station

    rig = Rig(load_station(sys.argv[1]))
    rig.note_run(77)
    print("ready", flush=True)
    sys.stdin.readline()
    rig.close()
    print("closed", flush=True)
""")


@pytest.fixture(autouse=True)
def lock_folder(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(folder))
    return folder


@pytest.fixture
def holder(station_path):
    """Another process holding the station's instruments (run 77)."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(station_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == "ready"
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_second_rig_in_the_same_process_is_refused(station_path):
    station = load_station(station_path)
    first = Rig(station)
    try:
        first.note_run(5)
        with pytest.raises(InstrumentBusy) as info:
            Rig(station)
    finally:
        first.close()
    message = str(info.value)
    assert message.startswith(
        "smu1 (GPIB0::26::INSTR) is in use by run 5 of station "
        f"demo-sim (pid {os.getpid()} on "
    )
    assert "\n" not in message
    Rig(station).close()  # free again once the first is closed


def test_a_run_in_another_process_holds_the_bench(station_path, holder, db_url):
    station = load_station(station_path)
    with pytest.raises(InstrumentBusy, match=f"in use by run 77 .*pid {holder.pid} on"):
        Rig(station)
    proc = runner.build_procedure("read_map", {}, station)
    with pytest.raises(InstrumentBusy):
        runner.run(proc, station, storage.connect(db_url))
    assert storage.list_runs(storage.connect(db_url)) == []  # refused before its row
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "closed"
    holder.wait()
    Rig(station).close()


def test_a_killed_holder_holds_nothing(station_path, holder):
    station = load_station(station_path)
    with pytest.raises(InstrumentBusy):
        Rig(station)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    rig = Rig(station)  # the operating system released the killed process's lock
    rig.close()


def test_two_benches_do_not_share_locks(tmp_path):
    one = Rig(load_station(write_bench(tmp_path / "one")))
    try:
        Rig(load_station(write_bench(tmp_path / "two"))).close()
    finally:
        one.close()


def test_a_real_instrument_is_one_whatever_library_reaches_it(tmp_path):
    assert lock_key("GPIB::26", "@py") == lock_key("GPIB0::26::INSTR", "@ivi")
    assert lock_key("GPIB0::26::INSTR", "@py") != lock_key("GPIB0::27::INSTR", "@py")
    a = lock_key("GPIB0::26::INSTR", f"{tmp_path / 'a.yaml'}@labsim")
    b = lock_key("GPIB0::26::INSTR", f"{tmp_path / 'b.yaml'}@labsim")
    assert a != b


def test_a_rig_that_cannot_open_releases_what_it_locked(tmp_path, station_path):
    import yaml

    station = yaml.safe_load(station_path.read_text())
    station["instruments"]["smu1"]["resource"] = "GPIB0::9::INSTR"  # not on the bench
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(station))
    from labctl.rig import InstrumentError

    with pytest.raises(InstrumentError, match="smu1 .*cannot open"):
        Rig(load_station(broken))
    Rig(load_station(station_path)).close()
