"""The ``@labsim`` VISA library: sessions to the simulated bench's instruments.

``pyvisa.ResourceManager("<bench file>@labsim")`` builds (once per process
and bench file) the :class:`simulator.bench.Bench` the file describes and
opens the resources its station names. Everything happens in-process and in
bench time: a message written charges the latency of the resource's interface
(GPIB, USB or LAN, :meth:`simulator.bench.Timing.message_latency_s`) to the
bench clock, and a read with no reply waiting charges the session's timeout
and fails at once with ``VI_ERROR_TMO`` instead of waiting in real time.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Protocol

from pyvisa import constants, rname
from pyvisa.constants import EventAttribute, StatusCode
from pyvisa.constants import ResourceAttribute as Attr
from pyvisa.highlevel import VisaLibraryBase
from pyvisa.typing import VISAEventContext, VISARMSession, VISASession

from simulator.bench import Bench, bench_for
from simulator.faults import Link

log = logging.getLogger("simulator.labsim")


class SimulatedInstrument(Protocol):
    """What a session needs of a simulated instrument (TSP or SCPI)."""

    name: str
    bench: Bench

    def write(self, message: str) -> None: ...

    def read(self) -> str | None: ...

    def clear(self) -> None: ...


DEFAULT_TIMEOUT_MS = 2000
"""Session timeout before the client sets one, ms."""

_READ_ONLY = frozenset(
    {
        Attr.resource_class,
        Attr.resource_name,
        Attr.interface_type,
        Attr.interface_number,
        Attr.resource_manufacturer_name,
        Attr.resource_spec_version,
        Attr.resource_impl_version,
        Attr.resource_lock_state,
        Attr.gpib_primary_address,
        Attr.gpib_secondary_address,
        Attr.tcpip_address,
        Attr.tcpip_port,
    }
)

_SUCCESS = StatusCode.success
_TERMCHAR_READ = StatusCode.success_termination_character_read
_MAX_COUNT_READ = StatusCode.success_max_count_read
_CONN_LOST = StatusCode.error_connection_lost


class _Session:
    """One open resource: its instrument, attributes, interface and unread bytes."""

    __slots__ = ("instrument", "attributes", "interface", "pending")

    def __init__(
        self,
        instrument: SimulatedInstrument,
        attributes: dict[int, Any],
        interface: str,
    ) -> None:
        self.instrument = instrument
        self.attributes = attributes
        self.interface = interface
        self.pending = bytearray()


class LabsimVisaLibrary(VisaLibraryBase):
    """A pyvisa backend whose instruments are the simulated bench's.

    The library path is the bench file (``"data/benches/demo.yaml"``).
    """

    @staticmethod
    def get_library_paths() -> tuple[()]:
        return ()

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        return {"backend": "labsim: the simulated bench of a bench file"}

    def _init(self) -> None:
        path = str(self.library_path.path or self.library_path)
        if not path or path == "unset":
            raise OSError(
                "the labsim backend needs a bench file: "
                "ResourceManager('<bench file>@labsim')"
            )
        self._bench_file = path
        bench_for(path)  # a bench file that cannot be used fails here, at once
        self._ids = itertools.count(1)
        self._sessions: dict[int, _Session | None] = {}

    def _new_id(self) -> int:
        return next(self._ids)

    @property
    def bench(self) -> Bench:
        """The bench of this library's bench file (the process's one)."""
        return bench_for(self._bench_file)

    # Resource manager.

    def open_default_resource_manager(self) -> tuple[VISARMSession, StatusCode]:
        session = VISARMSession(self._new_id())
        self._sessions[session] = None
        return session, self.handle_return_value(session, _SUCCESS)

    def list_resources(
        self, session: VISARMSession, query: str = "?*::INSTR"
    ) -> tuple[str, ...]:
        return rname.filter(self.bench.resources(), query)

    def open(
        self,
        session: VISARMSession,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[VISASession, StatusCode]:
        try:
            instrument = self.bench.resource(resource_name)
        except KeyError:
            return VISASession(0), self.handle_return_value(
                session, StatusCode.error_resource_not_found
            )
        new = VISASession(self._new_id())
        interface = rname.parse_resource_name(resource_name).interface_type
        self._sessions[new] = _Session(
            instrument, _attributes_of(resource_name), interface
        )
        log.debug("opened %s (%s) as session %d", resource_name, instrument.name, new)
        return new, self.handle_return_value(new, _SUCCESS)

    def close(
        self, session: VISASession | VISAEventContext | VISARMSession
    ) -> StatusCode:
        if session not in self._sessions:
            return self.handle_return_value(session, StatusCode.error_invalid_object)
        del self._sessions[session]
        return StatusCode.success

    # Messages.

    def write(self, session: VISASession, data: bytes) -> tuple[int, StatusCode]:
        opened = self._sessions.get(session)
        if opened is None:
            return 0, self.handle_return_value(session, StatusCode.error_invalid_object)
        instrument = opened.instrument
        bench = instrument.bench
        latency_s = bench.timing.message_latency_s(opened.interface)
        for message in data.decode("latin-1").split("\n"):
            message = message.rstrip("\r")
            if message:
                bench.advance(latency_s)
                if bench.faults.armed and (
                    link := bench.faults.on_write(session, instrument)
                ):
                    if link == Link.CUT:
                        return 0, self.handle_return_value(session, _CONN_LOST)
                    continue  # lost on the way
                instrument.write(message)
        return len(data), self.handle_return_value(session, _SUCCESS)

    def read(self, session: VISASession, count: int) -> tuple[bytes, StatusCode]:
        opened = self._sessions.get(session)
        if opened is None:
            return b"", self.handle_return_value(
                session, StatusCode.error_invalid_object
            )
        pending = opened.pending
        if not pending:
            reply = opened.instrument.read()
            faults = opened.instrument.bench.faults
            if faults.armed:
                reply, link = faults.on_reply(session, opened.instrument, reply)
                if link == Link.CUT:
                    return b"", self.handle_return_value(session, _CONN_LOST)
            if reply is None:
                return b"", self._time_out(session, opened)
            pending += reply.encode("latin-1")
            pending += b"\n"
        end, status = len(pending), _SUCCESS
        attributes = opened.attributes
        if attributes[Attr.termchar_enabled]:
            found = pending.find(attributes[Attr.termchar])
            if 0 <= found < count:
                end, status = found + 1, _TERMCHAR_READ
        if end > count:
            end, status = count, _MAX_COUNT_READ
        data = bytes(pending[:end])
        del pending[:end]
        return data, self.handle_return_value(session, status)

    def _time_out(self, session: VISASession, opened: _Session) -> StatusCode:
        timeout_ms = opened.attributes[Attr.timeout_value]
        if timeout_ms != constants.VI_TMO_INFINITE:
            opened.instrument.bench.advance(timeout_ms / 1000.0)
        log.debug("%s: read timed out: no reply waiting", opened.instrument.name)
        return self.handle_return_value(session, StatusCode.error_timeout)

    def clear(self, session: VISASession) -> StatusCode:
        opened = self._sessions.get(session)
        if opened is None:
            return self.handle_return_value(session, StatusCode.error_invalid_object)
        opened.pending.clear()
        opened.instrument.clear()
        return self.handle_return_value(session, _SUCCESS)

    def flush(
        self, session: VISASession, mask: constants.BufferOperation
    ) -> StatusCode:
        opened = self._sessions.get(session)
        if opened is None:
            return self.handle_return_value(session, StatusCode.error_invalid_object)
        if mask & constants.BufferOperation.discard_read_buffer:
            opened.pending.clear()
        return self.handle_return_value(session, _SUCCESS)

    def assert_trigger(
        self, session: VISASession, protocol: constants.TriggerProtocol
    ) -> StatusCode:
        opened = self._sessions.get(session)
        if opened is None:
            return self.handle_return_value(session, StatusCode.error_invalid_object)
        # A group execute trigger is the common command *TRG on either language.
        opened.instrument.write("*TRG")
        return self.handle_return_value(session, _SUCCESS)

    def read_stb(self, session: VISASession) -> tuple[int, StatusCode]:
        opened = self._sessions.get(session)
        if opened is None:
            return 0, self.handle_return_value(session, StatusCode.error_invalid_object)
        # A serial poll reads the status byte of a SCPI instrument (*STB?).
        status_byte = getattr(opened.instrument, "status_byte", None)
        value = status_byte() if callable(status_byte) else 0
        return value, self.handle_return_value(session, _SUCCESS)

    def gpib_control_ren(
        self, session: VISASession, mode: constants.RENLineOperation
    ) -> StatusCode:
        return self.handle_return_value(session, _SUCCESS)

    # Attributes.

    def get_attribute(
        self,
        session: VISASession | VISAEventContext | VISARMSession,
        attribute: Attr | EventAttribute,
    ) -> tuple[Any, StatusCode]:
        opened = self._sessions.get(session)
        if opened is None:
            return None, self.handle_return_value(
                session, StatusCode.error_invalid_object
            )
        try:
            value = opened.attributes[attribute]
        except KeyError:
            return None, self.handle_return_value(
                session, StatusCode.error_nonsupported_attribute
            )
        return value, self.handle_return_value(session, _SUCCESS)

    def set_attribute(
        self,
        session: VISASession | VISARMSession,
        attribute: Attr,
        attribute_state: Any,
    ) -> StatusCode:
        opened = self._sessions.get(session)
        if opened is None:
            return self.handle_return_value(session, StatusCode.error_invalid_object)
        if attribute in _READ_ONLY:
            return self.handle_return_value(
                session, StatusCode.error_attribute_read_only
            )
        if attribute not in opened.attributes:
            return self.handle_return_value(
                session, StatusCode.error_nonsupported_attribute
            )
        opened.attributes[attribute] = attribute_state
        return self.handle_return_value(session, _SUCCESS)

    # Events and locks: accepted, nothing to do in one process.

    def enable_event(
        self,
        session: VISASession,
        event_type: constants.EventType,
        mechanism: constants.EventMechanism,
        context: None = None,
    ) -> StatusCode:
        return self.handle_return_value(session, _SUCCESS)

    def disable_event(
        self,
        session: VISASession,
        event_type: constants.EventType,
        mechanism: constants.EventMechanism,
    ) -> StatusCode:
        return self.handle_return_value(session, _SUCCESS)

    def discard_events(
        self,
        session: VISASession,
        event_type: constants.EventType,
        mechanism: constants.EventMechanism,
    ) -> StatusCode:
        return self.handle_return_value(session, _SUCCESS)

    def lock(
        self,
        session: VISASession,
        lock_type: constants.Lock,
        timeout: int,
        requested_key: str | None = None,
    ) -> tuple[str, StatusCode]:
        return requested_key or "", self.handle_return_value(session, _SUCCESS)

    def unlock(self, session: VISASession) -> StatusCode:
        return self.handle_return_value(session, _SUCCESS)


def _attributes_of(resource_name: str) -> dict[int, Any]:
    """The VISA attributes of a new session, with their defaults."""
    parsed = rname.parse_resource_name(resource_name)
    attributes: dict[int, Any] = {
        Attr.timeout_value: DEFAULT_TIMEOUT_MS,
        Attr.termchar: ord("\n"),
        Attr.termchar_enabled: False,
        Attr.send_end_enabled: True,
        Attr.suppress_end_enabled: False,
        Attr.io_prot: constants.IOProtocol.normal,
        Attr.dma_allow_enabled: False,
        Attr.max_queue_length: 50,
        Attr.resource_class: parsed.resource_class,
        Attr.resource_name: str(parsed),
        Attr.interface_type: parsed.interface_type_const,
        Attr.interface_number: _board(parsed),
        Attr.resource_manufacturer_name: "labctl simulated bench",
        Attr.resource_spec_version: 0x00500800,
        Attr.resource_impl_version: 0x00010000,
        Attr.resource_lock_state: constants.AccessModes.no_lock,
    }
    if parsed.interface_type_const == constants.InterfaceType.gpib:
        secondary = getattr(parsed, "secondary_address", "") or ""
        attributes.update(
            {
                Attr.gpib_primary_address: int(parsed.primary_address),  # type: ignore[attr-defined]
                Attr.gpib_secondary_address: (
                    int(secondary) if secondary.isdigit() else constants.VI_NO_SEC_ADDR
                ),
                Attr.gpib_unadress_enable: False,
                Attr.gpib_readdress_enabled: True,
            }
        )
    elif parsed.interface_type_const == constants.InterfaceType.tcpip:
        attributes.update(
            {
                Attr.tcpip_address: getattr(parsed, "host_address", ""),
                Attr.tcpip_port: int(getattr(parsed, "port", 0) or 0),
                Attr.tcpip_nodelay: True,
                Attr.tcpip_keepalive: False,
            }
        )
    return attributes


def _board(parsed: Any) -> int:
    board = getattr(parsed, "board", 0)
    try:
        return int(board)
    except (TypeError, ValueError):
        return 0
