"""Faults injected into the simulated bench: what goes wrong on a real one.

A bench file lists them per instrument under ``faults:``, or a test adds
them with :meth:`Faults.add`::

    faults:
      smu1:
        - {kind: timeout, after: 120}        # the reply after 120 messages is lost
        - {kind: drop, at_s: 2.5}            # the connection drops at 2.5 s
      matrix:
        - {kind: relay_stuck, relay: 1A01, state: closed}
      smu2:
        - {kind: compliance_trip, channel: smua, after: 40}
      chip:
        - {kind: cell_short, cell: "A0[3, 2]", at_s: 1.0}

Each fault strikes once: on the first message to its instrument's connection
after ``after`` messages (0 by default) and at or after bench time ``at_s``
(if given). Messages are counted per connection: a TSP-Link node counts its
master's. Faults of the ``chip`` count every message.

Kinds, and the keys each takes besides ``kind``, ``after`` and ``at_s``:

``timeout`` (``times``, 1)
    The next ``times`` replies are lost; the client's reads time out.
``drop``
    The connection drops in the middle of the next reply: that read and
    everything after it on the session fails with ``VI_ERROR_CONN_LOST``.
    The instrument keeps its state; opening the resource again gives a
    working session.
``garble`` (``times``, 1)
    The next ``times`` replies arrive with bits flipped in some bytes.
``truncate`` (``times``, 1)
    The next ``times`` replies arrive cut to half their length.
``error_storm`` (``times``, 120)
    The instrument queues ``times`` errors at once; its queue overflows.
``reboot`` (``times``, 1)
    The instrument power-cycles: outputs off, settings at their defaults,
    relays open, scripts and variables gone, queues empty; the next
    ``times`` messages to its connection are lost while it boots (for a
    TSP-Link node, only its state is lost).
``relay_stuck`` (``relay``, required; ``state``, ``closed``)
    A matrix crosspoint welds closed, or never closes again (``open``). The
    matrix still reports the state it was told.
``compliance_trip`` (``channel``, the SMU's first; ``times``, 0)
    The channel reads as held at its current limit, as a load beyond the
    chip would make it, for ``times`` readings (0: from then on).
``cell_short`` (``cell``, required, ``"A0[3, 2]"``; ``conductance_s``, 0.1)
    A cell shorts: it conducts ``conductance_s`` and no longer switches.

Transport faults (``timeout``, ``drop``, ``garble``, ``truncate``) need an
instrument with its own VISA resource. They act in the ``@labsim`` pyvisa
backend and on a bench served over TCP (:mod:`simulator.server`, each
connection a session), which are also where every fault's trigger is
counted.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labctl.station import MATRIX_MODELS, ConfigError, smu_channels
from simulator.scpi import PON

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.faults")

CHIP = "chip"
"""The key under ``faults:`` for faults of the chip itself."""

TRANSPORT_KINDS = ("timeout", "drop", "garble", "truncate")
KINDS = (
    *TRANSPORT_KINDS,
    "error_storm",
    "reboot",
    "relay_stuck",
    "compliance_trip",
    "cell_short",
)

_COMMON = ("kind", "after", "at_s")
_KEYS = {
    "timeout": ("times",),
    "drop": (),
    "garble": ("times",),
    "truncate": ("times",),
    "error_storm": ("times",),
    "reboot": ("times",),
    "relay_stuck": ("relay", "state"),
    "compliance_trip": ("channel", "times"),
    "cell_short": ("cell", "conductance_s"),
}
_DEFAULT_TIMES = {"error_storm": 120, "compliance_trip": 0}
_CELL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]\s*$")

STORM_CODE = -363
"""Error code an error storm queues (an input buffer overrun)."""


class FaultError(ValueError):
    """A fault that cannot be injected, in one line naming its key.

    ``field`` is the key at fault within the fault's entry (``".relay"``, or
    ``""`` for the instrument itself).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Fault:
    """One fault, as given and checked."""

    kind: str
    instrument: str
    after: int = 0
    at_s: float | None = None
    times: int = 1
    relay: str | None = None
    state: str = "closed"
    channel: str | None = None
    cell: tuple[str, int, int] | None = None
    conductance_s: float = 0.1
    connection: str | None = None  # the instrument whose messages trigger it
    struck_at_s: float | None = None


class Link:
    """What a transport does with a message or a reply, as :class:`Faults` says."""

    SEND = 0
    LOST = 1  # the message or reply does not arrive
    CUT = 2  # the connection is gone


class Faults:
    """The faults of one bench and the state they leave.

    Attributes
    ----------
    armed : bool
        Whether any fault was added: transports look at nothing else when
        it is False.
    struck : list of Fault
        The faults that struck, in order, with their bench time.
    stuck : bool
        Whether a relay is stuck.
    tripped : dict of str to int
        The channels held at their limit, with the readings left (-1: all).
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.armed = False
        self.struck: list[Fault] = []
        self.stuck = False
        self.tripped: dict[str, int] = {}
        self._waiting: list[Fault] = []
        self._counts: dict[str, int] = {}
        self._total = 0
        self._lost_replies: dict[str, int] = {}
        self._garbled: dict[str, int] = {}
        self._truncated: dict[str, int] = {}
        self._booting: dict[str, int] = {}
        self._dropping: set[str] = set()
        self._dead: set[int] = set()
        self._stuck_closed = 0
        self._stuck_open = 0
        self._rng = np.random.default_rng(bench.seed + 7919)

    # Adding faults.

    def load(self, spec: Any, path: Path | None = None) -> None:
        """Add the faults of a bench file's ``faults:`` key (None: none).

        Raises
        ------
        labctl.station.ConfigError
            One line naming the file and the key.
        """
        if spec is None:
            return
        where = f"{path}: " if path else ""
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"{where}faults: expected a mapping of instrument "
                "names to lists of faults"
            )
        for instrument, entries in spec.items():
            key = f"faults.{instrument}"
            specs = self.bench.station.instruments
            if instrument != CHIP and instrument not in specs:
                raise ConfigError(
                    f"{where}{key}: no instrument '{instrument}' on the "
                    f"station; faults name one of {', '.join([*specs, CHIP])}"
                )
            if not isinstance(entries, list):
                raise ConfigError(f"{where}{key}: expected a list of faults")
            for index, entry in enumerate(entries):
                if not isinstance(entry, Mapping):
                    raise ConfigError(
                        f"{where}{key}.{index}: expected a mapping with at least 'kind'"
                    )
                if "kind" not in entry:
                    raise ConfigError(
                        f"{where}{key}.{index}.kind: required key is missing"
                    )
                fields = {str(k): v for k, v in entry.items()}
                try:
                    self._waiting.append(self._check(str(instrument), **fields))
                except FaultError as exc:
                    raise ConfigError(
                        f"{where}{key}.{index}{exc.field}: {exc.message}"
                    ) from None
                self.armed = True

    def add(self, instrument: str, kind: str, **fields: Any) -> Fault:
        """Add a fault of ``instrument`` (or of ``"chip"``).

        Raises
        ------
        FaultError
            One line naming the key at fault.
        """
        try:
            fault = self._check(instrument, kind, **fields)
        except FaultError as exc:
            raise FaultError(f"faults.{instrument}{exc.field}", exc.message) from None
        self._waiting.append(fault)
        self.armed = True
        log.info("fault added: %s %s", instrument, kind)
        return fault

    def clear(self) -> None:
        """Remove every fault and the state they left; a stuck contact follows
        the matrix again at its next switching."""
        self.__init__(self.bench)  # type: ignore[misc]

    def _check(self, instrument: str, kind: str, **fields: Any) -> Fault:
        station = self.bench.station
        specs = station.instruments
        if instrument != CHIP and instrument not in specs:
            known = ", ".join([*specs, CHIP])
            raise FaultError(
                "",
                f"no instrument '{instrument}' on the station; "
                f"faults name one of {known}",
            )
        if kind not in KINDS:
            raise FaultError(
                ".kind", f"'{kind}' not allowed; allowed: {', '.join(KINDS)}"
            )
        allowed = _COMMON + _KEYS[kind]
        for name in fields:
            if name not in allowed:
                raise FaultError(
                    f".{name}", f"unknown key for {kind}; allowed: {', '.join(allowed)}"
                )
        fault = Fault(kind, instrument, times=_DEFAULT_TIMES.get(kind, 1))
        fault.after = _count(fields.get("after", 0), "after", minimum=0)
        if fields.get("at_s") is not None:
            fault.at_s = _time(fields["at_s"], "at_s")
        if "times" in fields:
            fault.times = _count(
                fields["times"], "times", minimum=0 if kind == "compliance_trip" else 1
            )
        if instrument == CHIP:
            if kind != "cell_short":
                raise FaultError(
                    ".kind", f"a fault of the chip is a cell_short, not {kind}"
                )
        else:
            spec = specs[instrument]
            fault.connection = spec.via or instrument
            if kind in TRANSPORT_KINDS and spec.via is not None:
                raise FaultError(
                    ".kind",
                    f"a {kind} needs an instrument with its own "
                    f"resource; {instrument} is reached via {spec.via}",
                )
        getattr(self, f"_check_{kind}", lambda fault, fields: None)(fault, fields)
        return fault

    def _check_relay_stuck(self, fault: Fault, fields: dict[str, Any]) -> None:
        spec = self.bench.station.instruments[fault.instrument]
        if spec.model not in MATRIX_MODELS:
            raise FaultError(
                ".kind",
                f"a relay_stuck needs a switch matrix; "
                f"{fault.instrument} is a {spec.model}",
            )
        relay = fields.get("relay")
        if relay is None:
            raise FaultError(
                ".relay", "required for relay_stuck (a crosspoint, '1A01')"
            )
        names = self.bench.instruments[fault.instrument].names  # type: ignore[attr-defined]
        if str(relay).upper() not in names:
            raise FaultError(
                ".relay", f"'{relay}' is not a crosspoint of {fault.instrument}"
            )
        fault.relay = str(relay).upper()
        state = fields.get("state", "closed")
        if state not in ("closed", "open"):
            raise FaultError(".state", f"'{state}' not allowed; allowed: closed, open")
        fault.state = state

    def _check_compliance_trip(self, fault: Fault, fields: dict[str, Any]) -> None:
        spec = self.bench.station.instruments[fault.instrument]
        if spec.model in MATRIX_MODELS:
            raise FaultError(
                ".kind",
                f"a compliance_trip needs an SMU; {fault.instrument} is a {spec.model}",
            )
        channels = smu_channels(spec.model)
        channel = fields.get("channel", channels[0])
        if channel not in channels:
            raise FaultError(
                ".channel",
                f"a {spec.model} has channel(s) {', '.join(channels)}, not '{channel}'",
            )
        fault.channel = f"{fault.instrument}.{channel}"

    def _check_cell_short(self, fault: Fault, fields: dict[str, Any]) -> None:
        cell = fields.get("cell")
        match = _CELL.match(cell) if isinstance(cell, str) else None
        if match is None:
            raise FaultError(".cell", "required for cell_short, as '<array>[row, col]'")
        array, row, col = match[1], int(match[2]), int(match[3])
        arrays = self.bench.arrays
        if array not in arrays:
            raise FaultError(
                ".cell", f"no array '{array}' on the chip; arrays: {', '.join(arrays)}"
            )
        rows, cols = arrays[array].shape
        if row >= rows or col >= cols:
            raise FaultError(
                ".cell", f"{cell} is outside array {array} of {rows} x {cols}"
            )
        fault.cell = (array, row, col)
        if "conductance_s" in fields:
            fault.conductance_s = _positive(fields["conductance_s"], "conductance_s")

    # Hooks of the transports.

    def on_write(self, session: int, instrument: Any) -> int:
        """Before a message goes to a resource's instrument: a :class:`Link` value."""
        if session in self._dead:
            return Link.CUT
        name = instrument.name
        self._counts[name] = self._counts.get(name, 0) + 1
        self._total += 1
        if self._waiting:
            self._strike_due(name)
        booting = self._booting.get(name, 0)
        if booting:
            self._booting[name] = booting - 1
            return Link.LOST
        return Link.SEND

    def on_reply(
        self, session: int, instrument: Any, reply: str | None
    ) -> tuple[str | None, int]:
        """A reply on its way from a resource's instrument: what arrives, and
        a :class:`Link` value."""
        if session in self._dead:
            return None, Link.CUT
        name = instrument.name
        if name in self._dropping:
            self._dropping.discard(name)
            self._dead.add(session)
            log.warning("%s: connection dropped in the middle of a reply", name)
            return None, Link.CUT
        if reply is None:
            return None, Link.SEND
        if self._take(self._lost_replies, name):
            return None, Link.LOST
        if self._take(self._garbled, name):
            reply = self._garble(reply)
        if self._take(self._truncated, name):
            reply = reply[: len(reply) // 2]
        return reply, Link.SEND

    @staticmethod
    def _take(counters: dict[str, int], name: str) -> bool:
        left = counters.get(name, 0)
        if left:
            counters[name] = left - 1
        return bool(left)

    def _garble(self, reply: str) -> str:
        data = bytearray(reply.encode("latin-1"))
        if not data:
            return reply
        for at in self._rng.choice(
            len(data), size=max(1, len(data) // 4), replace=True
        ):
            flipped = data[at] ^ (1 << int(self._rng.integers(0, 7)))
            data[at] = flipped if flipped not in (0x0A, 0x0D) else 0x3F
        return data.decode("latin-1")

    # Hooks of the bench.

    def contacts(self, closed_mask: int) -> int:
        """The contacts closed when the matrix is told ``closed_mask``."""
        return (closed_mask | self._stuck_closed) & ~self._stuck_open

    def trip(
        self, channel: str, voltage_v: float, current_a: float
    ) -> tuple[float, float, bool]:
        """A reading of a tripped channel: held at its current limit."""
        left = self.tripped[channel]
        if left == 1:
            del self.tripped[channel]
        elif left > 1:
            self.tripped[channel] = left - 1
        limit_a = self.bench.source(channel).limit_a
        return voltage_v, math.copysign(limit_a, current_a or 1.0), True

    # Striking.

    def _strike_due(self, connection: str) -> None:
        now = self.bench.now_s
        due = [
            f
            for f in self._waiting
            if f.connection in (connection, None)
            and (self._total if f.connection is None else self._counts[connection])
            > f.after
            and (f.at_s is None or now >= f.at_s)
        ]
        for fault in due:
            self._waiting.remove(fault)
            fault.struck_at_s = now
            self.struck.append(fault)
            log.warning("fault: %s %s at %.6g s", fault.instrument, fault.kind, now)
            getattr(self, f"_strike_{fault.kind}")(fault)

    def _strike_timeout(self, fault: Fault) -> None:
        name = fault.instrument
        self._lost_replies[name] = self._lost_replies.get(name, 0) + fault.times

    def _strike_drop(self, fault: Fault) -> None:
        self._dropping.add(fault.instrument)

    def _strike_garble(self, fault: Fault) -> None:
        name = fault.instrument
        self._garbled[name] = self._garbled.get(name, 0) + fault.times

    def _strike_truncate(self, fault: Fault) -> None:
        name = fault.instrument
        self._truncated[name] = self._truncated.get(name, 0) + fault.times

    def _strike_error_storm(self, fault: Fault) -> None:
        instrument = self.bench.instruments[fault.instrument]
        for _ in range(fault.times):
            instrument.queue_error(STORM_CODE, "Input buffer overrun")

    def _strike_reboot(self, fault: Fault) -> None:
        instrument: Any = self.bench.instruments[fault.instrument]
        power_cycle = getattr(instrument, "power_cycle", None)
        if callable(power_cycle):
            power_cycle()
        else:  # a SCPI instrument: *RST, empty queues, the power-on bit
            instrument.reset()
            instrument.errors.clear()
            instrument.clear()
            instrument.event_status |= PON
        if fault.connection == fault.instrument:
            self._booting[fault.instrument] = fault.times

    def _strike_relay_stuck(self, fault: Fault) -> None:
        matrix: Any = self.bench.instruments[fault.instrument]
        bit = 1 << matrix.names.index(fault.relay)
        if fault.state == "closed":
            self._stuck_closed |= bit
        else:
            self._stuck_open |= bit
        self.stuck = True
        self.bench.set_relays(matrix.name, matrix.closed_mask)

    def _strike_compliance_trip(self, fault: Fault) -> None:
        assert fault.channel is not None
        self.tripped[fault.channel] = fault.times or -1

    def _strike_cell_short(self, fault: Fault) -> None:
        assert fault.cell is not None
        array, row, col = fault.cell
        bench = self.bench
        # Putting the cells in the state they are in lets the time before pass first.
        bench.set_cell_state(array, bench.arrays[array].state)
        bench.arrays[array].short(row, col, fault.conductance_s)
        bench.cells_changed()


def _count(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultError(f".{key}", f"{value!r} is not an integer >= {minimum}")
    return value


def _time(value: Any, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise FaultError(f".{key}", f"{value!r} is not a time >= 0 s")
    return float(value)


def _positive(value: Any, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise FaultError(f".{key}", f"{value!r} is not a number > 0")
    return float(value)
