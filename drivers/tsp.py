"""TSP transport shared by the Keithley TSP instruments.

Every instrument on one TSP-Link system is reached through the master's
VISA resource. :class:`TspConnection` wraps that adapter once; every driver on
the system (the master's and each node's) talks through the same connection,
so their messages stay in order and a :meth:`TspConnection.batch` can collect
commands of several instruments into one bus message.

:class:`TspInstrument` is the pymeasure base of the TSP drivers. It works
directly on an adapter (it makes its own connection) or as a TSP-Link node
(``node=N`` and the master's ``connection``). Commands name the instrument's
objects through the ``{node}`` placeholder, which becomes ``""`` on the master
and ``"node[N]."`` on a node; channel commands use ``{ch}`` the same way.

TSP replies are Lua ``print`` output: numbers such as ``4.00000e+00``, several
values separated by TAB, ``nil`` for nothing and ``true`` / ``false``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from pymeasure.adapters import Adapter
from pymeasure.instruments import Instrument

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

#: Most entries read from an error queue in one :meth:`TspInstrument.check_errors`.
ERROR_DRAIN_LIMIT = 100

#: Node numbers a TSP-Link system can hold.
NODE_RANGE = range(1, 65)

TspValue = float | bool | str | None


class TspConnection:
    """One message stream to a TSP instrument or TSP-Link system.

    Parameters
    ----------
    adapter : pymeasure.adapters.Adapter
        The open adapter, usually a ``VISAAdapter`` of the TSP-Link master.

    Notes
    -----
    The connection is not safe to share between threads: a query is a write
    followed by a read, and another thread's message must not come between.
    """

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self._pending: list[str] = []
        self._depth = 0
        self._flushes = 0

    @property
    def batching(self) -> bool:
        """Whether writes are being collected by :meth:`batch`."""
        return self._depth > 0

    def write(self, message: str) -> None:
        """Send a message, or queue it while a batch is open."""
        if self._depth:
            self._pending.append(message)
        else:
            self._send(message)

    def read(self) -> str:
        """Send any queued writes, then read one reply."""
        self.flush()
        return str(self.adapter.read())

    def ask(self, message: str) -> str:
        """Send a query and return its reply.

        Inside a batch the query travels in the same message as the writes
        queued before it, for example ``"smua.source.levelv = 0.1
        print(smua.measure.i())"``.
        """
        self.write(message)
        return self.read()

    def flush(self) -> None:
        """Send the queued writes now, joined by single spaces into one message."""
        if not self._pending:
            return
        message = " ".join(self._pending)
        self._pending.clear()
        self._flushes += 1
        self._send(message)

    def write_urgent(self, message: str) -> None:
        """Drop every queued write and send `message` at once.

        For shutting outputs down: a queued command (an output turned on, a
        pulse train) must not run after the shutdown that was meant to end it.
        """
        if self._pending:
            log.warning(
                "dropped %d queued TSP writes to send %r first: %s",
                len(self._pending),
                message,
                " ".join(self._pending),
            )
            self._pending.clear()
            self._flushes += 1
        self._send(message)

    def batch(self) -> _Batch:
        """Collect writes and send them as one message at the end of the block.

        A read inside the block sends the writes queued so far first, in the
        same message as the query. Nested batches join the outermost one. If
        the block raises, the writes it queued and that were not yet sent are
        dropped, so a half-made configuration never reaches the instrument.
        Use as ``with connection.batch(): ...``; the block gets this connection.
        """
        return _Batch(self)

    def _drop_since(self, mark: int, flushes: int) -> None:
        # After a flush inside the block, all that is queued was queued by it.
        start = mark if flushes == self._flushes else 0
        dropped = self._pending[start:]
        del self._pending[start:]
        if dropped:
            log.warning(
                "dropped %d unsent TSP writes after an error in a batch: %s",
                len(dropped),
                " ".join(dropped),
            )

    def _send(self, message: str) -> None:
        log.debug("TSP send %r", message)
        self.adapter.write(message)


class _Batch:
    """The context of :meth:`TspConnection.batch` (a class: it is entered in
    hot loops, where a generator-based context manager costs more)."""

    __slots__ = ("_conn", "_mark", "_flushes")

    def __init__(self, connection: TspConnection) -> None:
        self._conn = connection

    def __enter__(self) -> TspConnection:
        conn = self._conn
        self._mark, self._flushes = len(conn._pending), conn._flushes
        conn._depth += 1
        return conn

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        conn = self._conn
        conn._depth -= 1
        if kind is not None:
            conn._drop_since(self._mark, self._flushes)
        elif not conn._depth:
            conn.flush()


class TspError(NamedTuple):
    """One entry of a TSP error queue."""

    code: int
    message: str
    severity: int
    node: int


def parse_value(text: str) -> TspValue:
    """Parse one printed TSP value.

    Returns
    -------
    float, bool, str or None
        ``nil`` gives None, ``true`` / ``false`` a bool, a number a float and
        anything else the text itself.
    """
    word = text.strip()
    if word == "nil":
        return None
    if word in ("true", "false"):
        return word == "true"
    try:
        return float(word)
    except ValueError:
        return word


def parse_values(text: str) -> list[TspValue]:
    """Parse the TAB-separated values of one ``print(a, b, ...)`` reply."""
    return [parse_value(field) for field in text.strip("\r\n").split("\t")]


def parse_number(text: str) -> float:
    """Parse a printed TSP number such as ``4.00000e+00``.

    Raises
    ------
    ValueError
        If the reply is not a number (``nil`` included).
    """
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, float):
        raise ValueError(f"expected a number from the instrument, got {text!r}")
    return value


def parse_bool(text: str) -> bool:
    """Parse a printed TSP boolean: ``true`` / ``false`` or the numbers 1 / 0.

    Raises
    ------
    ValueError
        If the reply is neither.
    """
    value = parse_value(text)
    if isinstance(value, bool):
        return value
    if value in (0.0, 1.0):
        return value == 1.0
    raise ValueError(f"expected true/false or 1/0 from the instrument, got {text!r}")


def parse_buffer(text: str, count: int | None = None) -> npt.NDArray[np.float64]:
    """Parse a ``printbuffer`` reply (comma-space separated) into an array.

    Parameters
    ----------
    text : str
        The reply, for example ``"4.07205e-05, 4.10966e-05"``.
    count : int, optional
        The number of readings expected.

    Raises
    ------
    ValueError
        If a field is not a number, or there are not `count` of them.
    """
    fields = [field for field in text.strip().split(",") if field.strip()]
    readings = np.array([parse_number(field) for field in fields], dtype=np.float64)
    if count is not None and readings.size != count:
        raise ValueError(f"expected {count} buffer readings, got {readings.size}")
    return readings


def parse_error(text: str) -> TspError:
    """Parse an ``errorqueue.next()`` reply: code, message, severity, node.

    Raises
    ------
    ValueError
        If the reply does not have that form.
    """
    fields = text.strip("\r\n").split("\t")
    if len(fields) < 4:
        raise ValueError(f"not an error queue entry: {text!r}")
    code, severity, node = (
        parse_number(field) for field in (fields[0], fields[-2], fields[-1])
    )
    message = "\t".join(fields[1:-2])
    return TspError(int(code), message, int(severity), int(node))


class TspInstrument(Instrument):
    """Base of the TSP drivers: a pymeasure Instrument on a :class:`TspConnection`.

    Parameters
    ----------
    adapter : Adapter, str, int or None
        The adapter or VISA resource of the instrument (or of the TSP-Link
        master that reaches it). May be None when `connection` is given.
    name : str
        The instrument's name in logs and messages, for example ``"smu2"``.
    node : int, optional
        The TSP-Link node number (1..64) when the instrument is reached
        through a master; its commands are then prefixed ``node[N].``.
    connection : TspConnection, optional
        The master's connection to share. Without it the instrument makes its
        own on `adapter`.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    #: Maker's name reported by :meth:`identity` for a node, which does not print it.
    manufacturer = "Keithley Instruments Inc."

    connection: TspConnection
    node: int | None

    def __init__(
        self,
        adapter: Adapter | str | int | None,
        name: str,
        node: int | None = None,
        connection: TspConnection | None = None,
        **kwargs: Any,
    ) -> None:
        if node is not None and (type(node) is not int or node not in NODE_RANGE):
            raise ValueError(f"TSP-Link node {node!r} does not exist: use 1..64")
        if connection is None:
            if adapter is None:
                raise ValueError(f"{name}: give an adapter or a shared connection")
            # TSP messages and replies end with LF on every interface.
            kwargs.setdefault("read_termination", "\n")
            kwargs.setdefault("write_termination", "\n")
            super().__init__(adapter, name, includeSCPI=False, **kwargs)
            connection = TspConnection(self.adapter)
        else:
            if adapter is not None and adapter is not connection.adapter:
                raise ValueError(
                    f"{name}: the adapter is not the one of the shared connection"
                )
            super().__init__(connection.adapter, name, includeSCPI=False, **kwargs)
        self.connection = connection
        self.node = node

    @property
    def node_prefix(self) -> str:
        """The prefix of this instrument's TSP objects: ``""`` or ``"node[N]."``."""
        return "" if self.node is None else f"node[{self.node}]."

    def insert_node(self, command: str) -> str:
        """Replace the ``{node}`` placeholder of a command with :attr:`node_prefix`."""
        return command.replace("{node}", self.node_prefix)

    def write(self, command: str, **kwargs: Any) -> None:
        """Write a TSP command (``{node}`` replaced) through the connection."""
        _no_adapter_options(kwargs)
        self.connection.write(self.insert_node(command))

    def read(self, **kwargs: Any) -> str:
        """Read one reply, after sending any writes queued in a batch."""
        _no_adapter_options(kwargs)
        return self.connection.read()

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Send a query (``{node}`` replaced) and return its reply.

        Parameters
        ----------
        command : str
            The TSP query, usually ``print(...)``.
        query_delay : float, optional
            Seconds to wait between sending the query and reading.
        """
        self.write(command)
        self.connection.flush()
        self.wait_for(query_delay)
        return self.read()

    def write_urgent(self, command: str) -> None:
        """Send a command at once, dropping writes queued in a batch."""
        self.connection.write_urgent(self.insert_node(command))

    @property
    def id(self) -> str:
        """Get the identification: the ``*IDN?`` reply, or a node's model,
        serial number and firmware revision in the same form (str)."""
        if self.node is None:
            return self.ask("*IDN?").strip()
        info = self.identity()
        model = f"Model {info['model']}"
        return ", ".join(
            (info["manufacturer"], model, info["serial"], info["firmware"])
        )

    def identity(self) -> dict[str, str]:
        """Read who the instrument is.

        Returns
        -------
        dict
            ``manufacturer``, ``model`` (``"2636B"``), ``serial`` and
            ``firmware``, from ``*IDN?`` for a directly connected instrument or
            from ``print(node[N].model, node[N].serialno, node[N].revision)``
            for a TSP-Link node.

        Raises
        ------
        ValueError
            If the reply does not have that form.
        """
        if self.node is None:
            manufacturer, model, serial, firmware = self._idn_fields()
        else:
            manufacturer = self.manufacturer
            model, serial, firmware = self._node_fields()
        return {
            "manufacturer": manufacturer,
            "model": model,
            "serial": serial,
            "firmware": firmware,
        }

    def _idn_fields(self) -> list[str]:
        reply = self.ask("*IDN?")
        fields = [field.strip() for field in reply.strip().split(",")]
        if len(fields) != 4:
            raise ValueError(f"{self.name}: unexpected *IDN? reply {reply!r}")
        if fields[1].lower().startswith("model "):
            fields[1] = fields[1][len("model ") :].strip()
        return fields

    def _node_fields(self) -> list[str]:
        reply = self.ask("print({node}model, {node}serialno, {node}revision)")
        fields = [field.strip() for field in reply.strip("\r\n").split("\t")]
        if len(fields) != 3:
            raise ValueError(f"{self.name}: unexpected node identity {reply!r}")
        return fields

    def reset(self) -> None:
        """Reset the instrument to its defaults (``reset()``)."""
        self.write("{node}reset()")

    def clear_errors(self) -> None:
        """Empty the error queue without reading it (``errorqueue.clear()``)."""
        self.write("{node}errorqueue.clear()")

    def check_errors(self) -> list[TspError]:
        """Read and log every entry of the error queue, emptying it.

        At most :data:`ERROR_DRAIN_LIMIT` entries are read, so draining ends
        even when the instrument reports a count that makes no sense.

        Returns
        -------
        list of TspError
            The entries read, oldest first.
        """
        errors: list[TspError] = []
        queued = self._error_count()
        for _ in range(min(queued, ERROR_DRAIN_LIMIT)):
            reply = self.ask("print({node}errorqueue.next())")
            try:
                error = parse_error(reply)
            except ValueError:
                log.warning("%s: unreadable error queue entry %r", self.name, reply)
                return errors
            if error.code == 0:
                return errors
            log.error(
                "%s: error %d on node %d: %s (severity %d)",
                self.name,
                error.code,
                error.node,
                error.message,
                error.severity,
            )
            errors.append(error)
        if queued > ERROR_DRAIN_LIMIT:
            log.warning(
                "%s: stopped reading the error queue after %d entries",
                self.name,
                ERROR_DRAIN_LIMIT,
            )
        return errors

    def _error_count(self) -> int:
        reply = self.ask("print({node}errorqueue.count)")
        value = parse_value(reply)
        if (
            isinstance(value, float)
            and math.isfinite(value)
            and value >= 0
            and value.is_integer()
        ):
            return int(value)
        log.warning("%s: unreadable error count %r", self.name, reply)
        return ERROR_DRAIN_LIMIT + 1


def _no_adapter_options(kwargs: dict[str, Any]) -> None:
    # Writes may be queued in a batch, where per-call adapter options cannot apply.
    if kwargs:
        raise TypeError(f"TSP drivers take no adapter options: {sorted(kwargs)}")
