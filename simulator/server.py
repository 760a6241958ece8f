"""The simulated bench over TCP: each instrument on a port, as a LAN instrument.

A :class:`BenchServer` puts every instrument of a bench that has its own
resource in the station file on a TCP port of its own (TSP-Link nodes stay
behind their master, reached with ``node[N]`` as on the bench). A client
reaches it as it reaches a LAN instrument's raw socket, with pyvisa-py::

    server = BenchServer(bench_for("data/benches/demo.yaml")).start()
    port = server.ports["GPIB0::26::INSTR"]
    rm = pyvisa.ResourceManager("@py")
    smu = rm.open_resource(f"TCPIP0::127.0.0.1::{port}::SOCKET",
                           read_termination="\\n", write_termination="\\n")

Messages end with LF (a CR before it is dropped) and so do replies. A
message is handed to the instrument whole, however the client's bytes were
split or joined on the way; each one charges the LAN message latency to the bench
clock, and its replies are sent at once, to the client that sent it. A
message that gets no reply (a setting, or a query that failed) sends
nothing, so a failed query times out on the client, in real time: the bench
clock does not count that wait, as it does on the ``@labsim`` backend.

The bench's faults (:mod:`simulator.faults`) act on the served connections
as on ``@labsim`` sessions, each connection a session: a lost message is
never run, a lost reply is not sent, garbled and truncated replies arrive
so, and a connection dropped in the middle of a reply sends half of it and
is closed.

Several clients may be connected at once, to one instrument or to several;
their messages are handled one at a time, each whole, in the order they
arrive. A client that leaves in the middle of a message loses that message
(it is never run); one that leaves before its replies are read loses them.

The server runs one asyncio event loop, in a thread of its own
(:meth:`BenchServer.start`) or in the calling thread until SIGINT or SIGTERM
(:meth:`BenchServer.run`, what ``labctl sim serve`` does). The bench is not
thread-safe: the server touches it only while holding
:attr:`BenchServer.lock`, and code of the same process that touches the bench
while the server runs must hold that lock too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import signal
import socket
import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from simulator.faults import Link

if TYPE_CHECKING:
    from pyvisa_labsim.highlevel import SimulatedInstrument
    from simulator.bench import Bench

log = logging.getLogger("simulator.server")

LOOPBACK = "127.0.0.1"
"""The address the server listens on unless told otherwise."""

MESSAGE_LIMIT_BYTES = 1 << 20
"""The longest message a client may send; a longer one closes its connection."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop :meth:`BenchServer.run`."""

_WILDCARDS = ("", "0.0.0.0")

_FIRST_SESSION = 1 << 40
"""The faults' session number of the first connection, far from those of
``@labsim`` sessions on the same bench."""


@dataclass(frozen=True)
class Endpoint:
    """One instrument as the server offers it.

    Attributes
    ----------
    name : str
        The instrument's name in the station file.
    model : str
        Its model (``"2636B"``, ``"2450"``, ...).
    resource : str
        Its VISA resource in the station file (``"GPIB0::26::INSTR"``).
    host : str
        The address clients give to reach the server.
    port : int
        The TCP port the instrument answers on.
    """

    name: str
    model: str
    resource: str
    host: str
    port: int

    @property
    def tcp_resource(self) -> str:
        """The VISA resource a client opens (``TCPIP0::host::port::SOCKET``)."""
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"


class BenchServer:
    """The instruments of one bench, each on a TCP port of its own.

    Parameters
    ----------
    bench : Bench
        The bench to serve.
    host : str
        The IPv4 address or host name to listen on; ``"0.0.0.0"`` listens on
        every interface. Anything but a loopback address lets other machines
        drive the bench, and is logged as a warning.
    port : int
        The first port: the instruments take consecutive ports from it, in
        the station file's order. 0 gives each a free port the system picks.

    Attributes
    ----------
    bench : Bench
        The bench served.
    lock : threading.Lock
        Held while the server touches the bench.
    endpoints : list of Endpoint
        The instruments served, in the station file's order; filled by
        :meth:`open`.

    Raises
    ------
    ValueError
        If the ports asked for are not all within 1 to 65535.
    """

    def __init__(self, bench: Bench, host: str = LOOPBACK, port: int = 0) -> None:
        self.bench = bench
        self.host = host
        self.lock = threading.Lock()
        self.endpoints: list[Endpoint] = []
        self._served = [
            (name, spec) for name, spec in bench.station.instruments.items()
            if spec.resource
        ]  # fmt: skip
        _check_ports(port, len(self._served))
        self._first_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._stop = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._sessions = itertools.count(_FIRST_SESSION)

    @property
    def ports(self) -> dict[str, int]:
        """The port of each instrument, by its resource in the station file."""
        return {endpoint.resource: endpoint.port for endpoint in self.endpoints}

    # Opening, serving, closing.

    def open(self) -> list[Endpoint]:
        """Listen on every instrument's port; connections wait until served.

        Raises
        ------
        OSError
            If a port cannot be had (in use, not permitted, unknown host);
            the ports already opened are closed again.
        """
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._listen())
        except BaseException:
            loop.run_until_complete(self._shut())
            loop.close()
            self._loop = None
            self.endpoints.clear()
            raise
        return self.endpoints

    def start(self) -> BenchServer:
        """Serve in a thread of its own until :meth:`close`; returns the server."""
        if self._loop is None:
            self.open()
        self._thread = threading.Thread(
            target=self._serve_then_close, name="bench-server", daemon=True
        )
        self._thread.start()
        return self

    def run(self) -> None:
        """Serve in this (the main) thread until SIGINT or SIGTERM, then close."""
        if self._loop is None:
            self.open()
        loop = self._loop
        assert loop is not None
        for stop_signal in STOP_SIGNALS:
            loop.add_signal_handler(stop_signal, self._stop.set)
        self._serve_then_close()

    def close(self) -> None:
        """Stop a server started with :meth:`start`: every connection and port.

        A server opened and never served is closed at once. Closing twice
        does nothing.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self._thread is None:
            loop.run_until_complete(self._shut())
            loop.close()
            return
        loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve_then_close(self) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(self._shut())
        finally:
            loop.close()
            log.info("bench %s: server closed", self.bench.path)

    async def _listen(self) -> None:
        client_host = socket.gethostname() if self.host in _WILDCARDS else self.host
        for offset, (name, spec) in enumerate(self._served):
            port = self._first_port + offset if self._first_port else 0
            listening = _listening_socket(self.host, port, name)
            talk = partial(self._talk, name, self.bench.instruments[name])
            self._servers.append(
                await asyncio.start_server(
                    talk, sock=listening, limit=MESSAGE_LIMIT_BYTES
                )
            )
            address, port = listening.getsockname()[:2]
            if offset == 0 and not ipaddress.ip_address(address).is_loopback:
                log.warning(
                    "listening on %s: other machines can reach the simulated "
                    "bench and drive its instruments",
                    self.host or "every interface",
                )
            assert spec.resource is not None
            endpoint = Endpoint(name, spec.model, spec.resource, client_host, port)
            self.endpoints.append(endpoint)
            log.info("%s (%s): %s", name, spec.resource, endpoint.tcp_resource)

    async def _shut(self) -> None:
        for server in self._servers:
            server.close()
        # Closing a connection ends its conversation as if the client had left
        # (cancelling it would be reported as an error by asyncio 3.11).
        for writer in self._clients.values():
            writer.close()
        await asyncio.gather(*self._clients, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # One client.

    async def _talk(
        self,
        name: str,
        instrument: SimulatedInstrument,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Answer one client's messages until it leaves."""
        talk = asyncio.current_task()
        assert talk is not None
        self._clients[talk] = writer
        host, port = writer.get_extra_info("peername")[:2]
        client = f"{host}:{port}"
        log.info("%s: client %s connected", name, client)
        try:
            await self._converse(name, client, instrument, reader, writer)
        except ConnectionError as exc:
            log.info("%s: connection to client %s lost: %s", name, client, exc)
        except Exception:
            log.exception(
                "%s: a message of client %s failed; disconnected", name, client
            )
        finally:
            writer.close()
            del self._clients[talk]
            log.info("%s: client %s disconnected", name, client)

    async def _converse(
        self,
        name: str,
        client: str,
        instrument: SimulatedInstrument,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        session = next(self._sessions)
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the limit
                log.warning(
                    "%s: client %s sent a message longer than %d bytes; disconnected",
                    name,
                    client,
                    MESSAGE_LIMIT_BYTES,
                )
                return
            if not line.endswith(b"\n"):
                if line:
                    log.info(
                        "%s: client %s left in the middle of a message; "
                        "%d bytes dropped",
                        name,
                        client,
                        len(line),
                    )
                return
            replies, cut = self._answer(instrument, line, session)
            if replies:
                writer.write(replies)
                await writer.drain()
            elif not cut:
                _acknowledge_at_once(writer)
            if cut:
                log.warning("%s: connection to client %s dropped by a fault",
                            name, client)
                return

    def _answer(
        self, instrument: SimulatedInstrument, line: bytes, session: int
    ) -> tuple[bytes, bool]:
        """Hand one message to the instrument: its replies, each ending in
        LF, and whether a fault cut the connection."""
        message = line.decode("latin-1").rstrip("\r\n")
        if not message:
            return b"", False
        bench = self.bench
        with self.lock:
            bench.advance(bench.timing.message_latency_s("TCPIP"))
            faults = bench.faults
            if faults.armed:
                link = faults.on_write(session, instrument)
                if link != Link.SEND:
                    return b"", link == Link.CUT
            instrument.write(message)
            sent = []
            for reply in iter(instrument.read, None):
                if faults.armed:
                    arrived, link = faults.on_reply(session, instrument, reply)
                    if link == Link.CUT:
                        half = reply.encode("latin-1")[: len(reply) // 2]
                        return b"".join(sent) + half, True
                    if arrived is None:
                        continue
                    reply = arrived
                sent.append(reply.encode("latin-1") + b"\n")
        return b"".join(sent), False


def _check_ports(first_port: int, count: int) -> None:
    if first_port == 0:
        return
    last_port = first_port + count - 1
    if not (1 <= first_port and last_port <= 65535):
        raise ValueError(
            f"ports {first_port} to {last_port} for {count} instruments: "
            "each must be within 1 to 65535 (or give port 0 for free ports)"
        )


def _listening_socket(host: str, port: int, name: str) -> socket.socket:
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen on {host or 'every interface'} port {port} for {name}: "
            f"{exc.strerror}",
        ) from exc


def _acknowledge_at_once(writer: asyncio.StreamWriter) -> None:
    """Send the TCP acknowledgement of what was read now, not after a delay.

    A client with Nagle's algorithm on (pyvisa-py's sockets) holds a message
    back until the one before is acknowledged; a message without a reply
    would otherwise wait for the delayed acknowledgement (some 40 ms on
    Linux, where this can be asked for).
    """
    quick_ack = getattr(socket, "TCP_QUICKACK", None)
    connection = writer.get_extra_info("socket")
    if quick_ack is not None and connection is not None:
        with contextlib.suppress(OSError):  # the client may be gone already
            connection.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)
