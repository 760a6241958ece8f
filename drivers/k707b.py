"""Keithley 707B / 708B switching matrix with 7174A cards, driven in TSP.

:class:`Keithley707B` satisfies :class:`drivers.interfaces.SwitchMatrix`. A
crosspoint is named ``"{slot}{row}{column:02d}"`` (``"3C07"``: slot 3, row C,
column 7); every name is checked before anything is sent, and a list of
crosspoints goes to the instrument as one quoted, comma-separated string.

A matrix on TSP-Link behind another instrument is driven by the same class,
``Keithley707B(None, node=4, connection=master.connection)``; its commands are
sent as ``node[4].channel...``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from pymeasure.adapters import Adapter

from drivers.tsp import TspConnection, TspInstrument

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

#: Card slots by mainframe model.
SLOTS = {"707B": 6, "708B": 1}

#: Rows and columns of a 7174A card.
CARD_ROWS = "ABCDEFGH"
CARD_COLUMNS = 12

_CROSSPOINT = re.compile(r"^(?P<slot>\d)(?P<row>[A-Z])(?P<column>\d\d)$")
_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,18}$")


class Keithley707B(TspInstrument):
    """Keithley 707B (six slots) or 708B (one slot) switching matrix.

    Parameters
    ----------
    adapter : Adapter, str, int or None
        The adapter or VISA resource; None for a node reached through
        `connection`.
    name : str
        The instrument's name in logs and messages.
    model : str
        ``"707B"`` or ``"708B"``.
    node : int, optional
        TSP-Link node number when reached through a master.
    connection : TspConnection, optional
        The master's connection to share.
    **kwargs
        Passed to pymeasure's ``VISAAdapter`` when `adapter` is a resource.
    """

    def __init__(
        self,
        adapter: Adapter | str | int | None,
        name: str = "Keithley 707B",
        model: str = "707B",
        node: int | None = None,
        connection: TspConnection | None = None,
        **kwargs: Any,
    ) -> None:
        if model not in SLOTS:
            raise ValueError(f"unknown matrix model {model!r}: choose 707B or 708B")
        self.model = model
        self.slots = SLOTS[model]
        self._checked: set[str] = set()
        super().__init__(adapter, name, node=node, connection=connection, **kwargs)
        self._switch = self._switcher()

    def check_crosspoint(self, crosspoint: str) -> str:
        """Return `crosspoint` if it names a relay of this matrix.

        Raises
        ------
        ValueError
            If it is not ``"{slot}{row}{column:02d}"`` with a slot of this
            mainframe, a row A..H and a column 01..12.
        """
        if crosspoint in self._checked:
            return crosspoint
        match = _CROSSPOINT.match(crosspoint) if isinstance(crosspoint, str) else None
        if match is None:
            raise ValueError(
                f"{crosspoint!r} is not a crosspoint: use slot, row, two-digit "
                "column, for example '1A01'"
            )
        slot, row, column = int(match["slot"]), match["row"], int(match["column"])
        if not 1 <= slot <= self.slots:
            raise ValueError(
                f"{crosspoint}: slot {slot} does not exist on a {self.model} "
                f"(slots 1..{self.slots})"
            )
        if row not in CARD_ROWS:
            raise ValueError(f"{crosspoint}: row {row} is not one of A..H")
        if not 1 <= column <= CARD_COLUMNS:
            raise ValueError(f"{crosspoint}: column {column} is not within 1..12")
        self._checked.add(crosspoint)
        return crosspoint

    def channel_list(self, channels: Iterable[str]) -> str:
        """Check crosspoints and join them into a TSP channel list (``1A01,1B02``).

        Raises
        ------
        TypeError
            If `channels` is a single string rather than a collection of them.
        ValueError
            If a crosspoint is not valid (see :meth:`check_crosspoint`).
        """
        if isinstance(channels, str):
            raise TypeError(f"give a list of crosspoints, not the string {channels!r}")
        channels = list(channels)
        checked = self._checked  # one attribute read: lists can be long
        for channel in channels:
            if channel not in checked:
                self.check_crosspoint(channel)
        return ",".join(channels)

    def close(self, channels: Iterable[str]) -> None:
        """Close the relays of `channels`, leaving others as they are.

        Sends ``channel.close("1A01,1B02")``; nothing for an empty list.
        """
        self._switch("close", channels)

    def open(self, channels: Iterable[str]) -> None:
        """Open the relays of `channels`, leaving others as they are.

        Sends ``channel.open("1A01,1B02")``; nothing for an empty list.
        """
        self._switch("open", channels)

    def _switcher(self) -> Callable[[str, Iterable[str]], None]:
        """``channel.<verb>(list)`` with what it needs bound once.

        Relays switch many times a second in an analog multiply, and every
        attribute read on a pymeasure instrument passes through its checks:
        the hot path reads none.
        """
        checked, check = self._checked, self.check_crosspoint
        write = self.connection.write
        head = f"{self.node_prefix}channel."

        def switch(verb: str, channels: Iterable[str]) -> None:
            if isinstance(channels, str):
                raise TypeError(
                    f"give a list of crosspoints, not the string {channels!r}"
                )
            channels = list(channels)
            for channel in channels:
                if channel not in checked:
                    check(channel)
            if channels:
                write(f'{head}{verb}("{",".join(channels)}")')

        return switch

    def exclusive_close(self, channels: Iterable[str]) -> None:
        """Close the relays of `channels` and open every other one.

        Sends ``channel.exclusiveclose("1A01,1B02")``; an empty list opens all.
        """
        listed = self.channel_list(channels)
        self.write(f'{{node}}channel.exclusiveclose("{listed}")')

    def open_all(self) -> None:
        """Open every relay of every slot (``channel.open("allslots")``)."""
        self.write('{node}channel.open("allslots")')

    def define_pattern(self, name: str, channels: Iterable[str]) -> None:
        """Name a set of crosspoints (``channel.pattern.setimage``).

        Raises
        ------
        ValueError
            If `name` is not a letter then up to 18 letters, digits or ``_``,
            or reads as a crosspoint, ``slotN`` or ``allslots``; or a
            crosspoint is not valid.
        """
        name = self._pattern_name(name)
        listed = self.channel_list(channels)
        self.write(f'{{node}}channel.pattern.setimage("{listed}", "{name}")')

    def apply_pattern(self, name: str) -> None:
        """Close exactly the crosspoints of a pattern, opening every other one."""
        name = self._pattern_name(name)
        self.write(f'{{node}}channel.exclusiveclose("{name}")')

    def pattern_channels(self, name: str) -> list[str]:
        """The crosspoints of a pattern, sorted (``channel.pattern.getimage``)."""
        name = self._pattern_name(name)
        reply = self.ask(f'print({{node}}channel.pattern.getimage("{name}"))').strip()
        if reply in ("", "nil"):
            return []
        return [channel.strip() for channel in reply.split(",") if channel.strip()]

    def delete_pattern(self, name: str) -> None:
        """Forget a pattern (``channel.pattern.delete``)."""
        name = self._pattern_name(name)
        self.write(f'{{node}}channel.pattern.delete("{name}")')

    def _pattern_name(self, name: str) -> str:
        if not (isinstance(name, str) and _PATTERN.match(name)):
            raise ValueError(
                f"{name!r} cannot name a pattern: use a letter, then up to 18 "
                "letters, digits or _"
            )
        upper = name.upper()
        if _CROSSPOINT.match(upper) or upper == "ALLSLOTS" or upper.startswith("SLOT"):
            raise ValueError(f"{name!r} cannot name a pattern: it reads as a channel")
        return name

    def closed_channels(self) -> list[str]:
        """Read which relays are closed, sorted (``channel.getclose("allslots")``).

        Returns
        -------
        list of str
            The closed crosspoints, ``[]`` when none is closed.
        """
        reply = self.ask('print({node}channel.getclose("allslots"))').strip()
        if reply == "nil":
            return []
        return [channel.strip() for channel in reply.split(";") if channel.strip()]

    def shutdown(self) -> None:
        """Open every relay at once, dropping writes queued in a batch."""
        self.write_urgent('{node}channel.open("allslots")')
        log.info("%s: all relays open", self.name)
        super().shutdown()
