"""The bench over TCP: ports, pyvisa-py sessions, framing, clients, the command."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pyvisa
import yaml
from typer.testing import CliRunner

from labctl.cli import app
from simulator.bench import Bench
from simulator.server import MESSAGE_LIMIT_BYTES, BenchServer

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).resolve().parents[2] / "data"
TIMEOUT_S = 5.0
SMU = "GPIB0::26::INSTR"
SCPI_SMU = "GPIB0::18::INSTR"
MATRIX = "GPIB0::16::INSTR"


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory) -> Path:
    """A bench whose 707B has a resource of its own and whose 2636B has a node.

    The station of ``k2450-sim`` with the matrix moved off TSP-Link and a
    second 2636B linked to the first as node 2.
    """
    folder = tmp_path_factory.mktemp("served")
    station = yaml.safe_load((DATA / "stations" / "k2450-sim.yaml").read_text())
    station["chip"] = str((DATA / "stations" / station["chip"]).resolve())
    station["visa_library"] = str(folder / "bench.yaml") + "@labsim"
    matrix = station["instruments"].pop("matrix")
    del matrix["via"], matrix["node"]
    station["instruments"]["smu3"] = {"model": "2636B", "via": "smu1", "node": 2}
    station["instruments"]["matrix"] = {**matrix, "resource": MATRIX}
    (folder / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load((DATA / "benches" / "k2450-sim.yaml").read_text())
    bench["station"] = str(folder / "station.yaml")
    (folder / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    return folder / "bench.yaml"


@pytest.fixture
def server(bench_file):
    with BenchServer(Bench.from_file(bench_file)) as running:
        yield running


@pytest.fixture(scope="module")
def rm():
    manager = pyvisa.ResourceManager("@py")
    yield manager
    manager.close()


def session(rm, server, resource=SMU):
    """A pyvisa-py session to one served instrument, LF both ways."""
    return rm.open_resource(
        f"TCPIP0::127.0.0.1::{server.ports[resource]}::SOCKET",
        read_termination="\n",
        write_termination="\n",
        timeout=int(TIMEOUT_S * 1000),
    )


def raw(server, resource=SMU, **options) -> socket.socket:
    """A plain socket to one served instrument, bytes exactly as sent."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(TIMEOUT_S)
    for option, value in options.items():
        client.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(("127.0.0.1", server.ports[resource]))
    return client


def read_lines(client: socket.socket, count: int) -> list[bytes]:
    """The next `count` reply lines, LF included."""
    received = b""
    while received.count(b"\n") < count:
        chunk = client.recv(4096)
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    lines = received.splitlines(keepends=True)
    assert len(lines) == count, f"more than {count} lines: {received!r}"
    return lines


def wait_for_log(caplog, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no log record with {text!r}"
        time.sleep(0.01)


def bound_run(count: int) -> list[socket.socket]:
    """Sockets listening on `count` consecutive free loopback ports."""
    for _ in range(50):
        run = [socket.create_server(("127.0.0.1", 0))]
        base = run[0].getsockname()[1]
        try:
            for port in range(base + 1, base + count):
                run.append(socket.create_server(("127.0.0.1", port)))
        except (OSError, OverflowError):
            for taken in run:
                taken.close()
            continue
        return run
    pytest.skip(f"no {count} consecutive free ports")


# Ports.


def test_each_instrument_with_a_resource_has_a_port_in_station_order(server):
    assert [e.name for e in server.endpoints] == ["smu1", "smu2", "matrix"]
    assert [e.model for e in server.endpoints] == ["2636B", "2450", "707B"]
    assert list(server.ports) == [SMU, SCPI_SMU, MATRIX]
    assert len(set(server.ports.values())) == 3 and 0 not in server.ports.values()
    first = server.endpoints[0]
    assert first.tcp_resource == f"TCPIP0::127.0.0.1::{first.port}::SOCKET"


def test_ports_from_a_base_are_consecutive(bench_file):
    run = bound_run(3)
    base = run[0].getsockname()[1]
    for taken in run:
        taken.close()
    with BenchServer(Bench.from_file(bench_file), port=base) as served:
        assert list(served.ports.values()) == [base, base + 1, base + 2]


def test_a_port_in_use_fails_and_frees_the_ports_it_took(bench_file):
    run = bound_run(3)
    base = run[0].getsockname()[1]
    run[0].close()
    run[1].close()
    server = BenchServer(Bench.from_file(bench_file), port=base)
    with pytest.raises(OSError, match=f"port {base + 2} for matrix"):
        server.open()
    run[2].close()
    for port in (base, base + 1):
        socket.create_server(("127.0.0.1", port)).close()


def test_ports_beyond_65535_are_refused(bench_file):
    with pytest.raises(ValueError, match="ports 65534 to 65536"):
        BenchServer(Bench.from_file(bench_file), port=65534)


def test_close_ends_the_connections_and_frees_the_ports(bench_file):
    served = BenchServer(Bench.from_file(bench_file)).start()
    client = raw(served)
    client.sendall(b"print(1)\n")
    assert read_lines(client, 1) == [b"1.00000e+00\n"]
    served.close()
    assert client.recv(4096) == b""
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.ports[SMU]), timeout=TIMEOUT_S)
    served.close()  # a second close does nothing


# Talking to the instruments with pyvisa-py.


@pytest.mark.parametrize(
    ("resource", "identity"),
    [
        (SMU, r"Keithley Instruments Inc., Model 2636B, \d+, 3\.2\.2"),
        (SCPI_SMU, r"KEITHLEY INSTRUMENTS,MODEL 2450,04365704,1\.6\.4c"),
        (MATRIX, r"Keithley Instruments Inc., Model 707B, \d+, 1\.8\.1"),
    ],
)
def test_each_instrument_answers_its_identity(rm, server, resource, identity):
    instrument = session(rm, server, resource)
    assert re.fullmatch(identity, instrument.query("*IDN?"))
    instrument.close()


def test_a_tsp_command_round_trip_on_the_2636b(rm, server):
    smu = session(rm, server)
    smu.write("smua.source.levelv = 0.25")
    assert smu.query("print(smua.source.levelv)") == "2.50000e-01"
    assert smu.query("print(node[2].model)") == "2636B"  # a node, via its master
    with server.lock:
        assert server.bench.source("smu1.smua").level_v == 0.25
    smu.close()


def test_a_scpi_command_round_trip_on_the_2450(rm, server):
    smu = session(rm, server, SCPI_SMU)
    smu.write(":SOUR:VOLT 0.125")
    assert float(smu.query(":SOUR:VOLT?")) == 0.125
    assert smu.query(":SYST:ERR?") == '0,"No error;0;0 0"'
    smu.close()


def test_707b_close_and_getclose(rm, server):
    matrix = session(rm, server, MATRIX)
    matrix.write('channel.close("1H05,1A01")')
    assert matrix.query('print(channel.getclose("allslots"))') == "1A01;1H05"
    with server.lock:
        assert server.bench.closed_relays() == ["1A01", "1H05"]
    matrix.write('channel.open("allslots")')
    assert matrix.query('print(channel.getclose("allslots"))') == "nil"
    matrix.close()


def test_binary_replies_arrive_byte_for_byte(rm, server):
    smu = session(rm, server)
    smu.write("format.data = format.REAL32 x = {1.5, -2.25}")
    smu.write_raw(b"printnumber(x[1], x[2])\n")
    assert smu.read_raw() == b"#0" + struct.pack("<2f", 1.5, -2.25) + b"\n"
    smu.close()


def test_a_query_without_a_reply_sends_nothing(server):
    client = raw(server)
    client.sendall(b"print(1\nprint(2)\n")  # a syntax error, then a query
    assert read_lines(client, 1) == [b"2.00000e+00\n"]
    client.sendall(b"print(errorqueue.next())\n")
    assert read_lines(client, 1)[0].startswith(b"-2.85000e+02\t")
    client.close()


# Framing.


def test_a_message_split_in_pieces_is_one_message(server):
    client = raw(server)
    for piece in (b"print(4", b"0 +", b" 2)", b"\n"):
        client.sendall(piece)
    assert read_lines(client, 1) == [b"4.20000e+01\n"]
    client.sendall(b"print(errorqueue.count)\n")
    assert read_lines(client, 1) == [b"0.00000e+00\n"]
    client.close()


def test_two_messages_in_one_send_each_charge_the_bus(server):
    bench = server.bench
    client = raw(server)
    with server.lock:
        before_s = bench.now_s
    client.sendall(b"x = 40\nprint(x + 2)\n\nprint(x)\n")
    assert read_lines(client, 2) == [b"4.20000e+01\n", b"4.00000e+01\n"]
    with server.lock:
        assert bench.now_s - before_s == pytest.approx(3 * bench.timing.lan_latency_s)
    client.close()


# Clients.


def test_clients_one_after_the_other_share_the_instrument(rm, server):
    first = session(rm, server)
    first.write("x = 7")
    assert first.query("print(x)") == "7.00000e+00"
    first.close()
    second = session(rm, server)
    assert second.query("print(x)") == "7.00000e+00"
    second.close()


def test_clients_at_once_each_get_their_own_replies(rm, server):
    first, second = session(rm, server), session(rm, server)
    first.write("print(1)")
    second.write("print(2)")
    assert second.read() == "2.00000e+00"
    assert first.read() == "1.00000e+00"
    first.close()
    second.close()


def test_a_client_gone_in_the_middle_of_a_message_loses_it(rm, server, caplog):
    caplog.set_level(logging.INFO, logger="simulator.server")
    client = raw(server)
    client.sendall(b"x = 99")
    client.close()
    wait_for_log(caplog, "left in the middle of a message")
    smu = session(rm, server)
    assert smu.query("print(x)") == "nil"
    assert smu.query("print(errorqueue.count)") == "0.00000e+00"
    smu.close()


def test_a_client_gone_in_the_middle_of_a_reply_leaves_the_server_serving(
    rm, server, caplog
):
    caplog.set_level(logging.INFO, logger="simulator.server")
    # A small receive window keeps most of the 8 MB reply on the server's side.
    client = raw(server, SO_RCVBUF=4096)
    client.sendall(b'for i = 1, 8 do print(string.rep("x", 1048576)) end\n')
    assert client.recv(16).startswith(b"x")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, not an orderly end
    wait_for_log(caplog, "connection to client")
    smu = session(rm, server)
    assert smu.query("print(1)") == "1.00000e+00"
    smu.close()


# Faults on the served connections.


def test_a_garbled_then_a_lost_reply_then_a_clean_one(server):
    server.bench.faults.add("smu1", "garble")
    client = raw(server)
    client.sendall(b'print("abcdefghijklmnop")\n')
    garbled = read_lines(client, 1)[0]
    assert garbled != b"abcdefghijklmnop\n" and len(garbled) == 17
    server.bench.faults.add("smu1", "timeout")
    client.sendall(b"print(2)\n")
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(64)  # the reply never comes
    client.settimeout(TIMEOUT_S)
    client.sendall(b"print(3)\n")
    assert read_lines(client, 1) == [b"3.00000e+00\n"]
    client.close()


def test_a_truncated_reply_arrives_cut_to_half(rm, server):
    server.bench.faults.add("smu1", "truncate")
    smu = session(rm, server)
    assert smu.query('print("abcdefgh")') == "abcd"
    assert smu.query('print("abcdefgh")') == "abcdefgh"
    smu.close()


def test_a_dropped_connection_ends_mid_reply_and_the_next_one_serves(
    rm, server, caplog
):
    caplog.set_level(logging.WARNING, logger="simulator.server")
    server.bench.faults.add("smu1", "drop")
    client = raw(server)
    client.sendall(b'print("abcdefgh")\n')
    received = b""
    while chunk := client.recv(64):
        received += chunk
    assert received == b"abcd"  # half the reply, then the end
    client.close()
    assert any("dropped by a fault" in r.getMessage() for r in caplog.records)
    smu = session(rm, server)
    assert smu.query("print(1)") == "1.00000e+00"
    smu.close()


def test_messages_lost_while_an_instrument_reboots_are_never_run(rm, server):
    smu = session(rm, server)
    smu.write("smua.source.levelv = 0.25")
    assert smu.query("print(smua.source.levelv)") == "2.50000e-01"  # all served
    server.bench.faults.add("smu1", "reboot", times=1)
    smu.write("smua.source.levelv = 0.5")  # lost while it boots
    assert smu.query("print(smua.source.levelv)") == "0.00000e+00"
    smu.close()


def test_a_message_over_the_limit_ends_its_connection_only(rm, server, caplog):
    caplog.set_level(logging.INFO, logger="simulator.server")
    client = raw(server)
    with contextlib.suppress(OSError):  # the server may close while we send
        client.sendall(b"x" * (MESSAGE_LIMIT_BYTES + 2))
        assert client.recv(4096) == b""
    client.close()
    wait_for_log(caplog, "longer than")
    smu = session(rm, server)
    assert smu.query("print(errorqueue.count)") == "0.00000e+00"
    smu.close()


@pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="delayed acknowledgement kept"
)
def test_writes_without_replies_are_not_held_back(rm, server):
    # pyvisa-py leaves Nagle's algorithm on: without an immediate
    # acknowledgement, each write after a write waits some 40 ms.
    smu = session(rm, server)
    started = time.perf_counter()
    for _ in range(10):
        smu.write("x = 1")
        smu.write("y = 2")
        assert smu.query("print(x + y)") == "3.00000e+00"
    assert time.perf_counter() - started < 0.3
    smu.close()


# The command.


def _labctl() -> str:
    found = shutil.which("labctl", path=os.path.dirname(sys.executable))
    return found or shutil.which("labctl") or pytest.skip("no labctl command")


def _lines_of(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"]
)
def test_the_command_serves_until_a_signal(rm, bench_file, stop_signal):
    command = subprocess.Popen(
        [_labctl(), "sim", "serve", str(bench_file), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        reading = threading.Thread(
            target=_lines_of, args=(command.stdout, lines), daemon=True
        )
        reading.start()
        served = {}
        while (line := lines.get(timeout=30)) and not line.startswith("serving"):
            found = re.search(
                r"(GPIB0::\d+::INSTR).*(TCPIP0::127\.0\.0\.1::\d+::SOCKET)", line
            )
            if found:
                served[found[1]] = found[2]
        assert list(served) == [SMU, SCPI_SMU, MATRIX]
        for resource, identity in ((SMU, "Model 2636B"), (MATRIX, "Model 707B")):
            instrument = rm.open_resource(
                served[resource],
                read_termination="\n",
                write_termination="\n",
                timeout=int(TIMEOUT_S * 1000),
            )
            assert identity in instrument.query("*IDN?")
            instrument.close()
        command.send_signal(stop_signal)
        assert command.wait(timeout=30) == 0
        rest = []
        while (line := lines.get(timeout=30)) is not None:
            rest.append(line)
        assert "server closed\n" in rest
        assert command.stderr.read() == ""
    finally:
        command.kill()
        command.wait()


def test_the_command_reports_a_bad_bench_file_in_one_line(tmp_path):
    bad = tmp_path / "bench.yaml"
    bad.write_text("station: nowhere.yaml\nseed: -1\n")
    result = CliRunner().invoke(app, ["sim", "serve", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(bad.parent) in lines[0]


def test_the_command_reports_ports_out_of_range_in_one_line(bench_file):
    arguments = ["sim", "serve", str(bench_file), "--port", "65535"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ports 65535 to 65537" in lines[0]
