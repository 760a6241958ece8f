"""Simulated Keithley 707B / 708B switching matrix with 7174A cards, in TSP.

Each 7174A card is 8 rows (A..H) by 12 columns; crosspoint ``1A01`` is slot
1, row A, column 1. The ``channel`` object closes and opens crosspoints from
channel lists: quoted, comma- or semicolon-separated names, ranges from low
to high (``1A01:1A05``), ``slotN`` and ``allslots`` (the last two only where
the manual allows them: opening, resetting, querying). A list with a bad entry
queues error -224 and changes nothing.

A pattern (``channel.pattern.setimage(list, name)``) names a set of
crosspoints; the name then stands for them in any channel list.

The relay state goes to the bench after every change, and each switching
phase charges the relay operate time (:attr:`simulator.bench.Timing.
relay_operate_s`, an unverified figure) plus the longest extra delay set
with ``channel.setdelay`` on the crosspoints that moved.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from simulator.tsp import ILLEGAL_PARAMETER, LuaObject, TspInstrument, format_number

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.k707b")

REVISION = "1.8.1"
"""Firmware revision in the identity (unverified)."""

ROWS = "ABCDEFGH"
COLUMNS = 12

LIST_CACHE_SIZE = 1024
"""Parsed channel lists kept, by text."""

_SEPARATORS = re.compile(r"[,;]")

PATTERN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,18}$")
"""A pattern name: a letter, then letters, digits or ``_``, 19 characters at
most (the length is unverified)."""


class ChannelListError(ValueError):
    """A channel list the matrix does not accept."""


class Channel(LuaObject):
    """The ``channel`` object of the 707B."""

    OFF = 0
    BREAK_BEFORE_MAKE = 1
    MAKE_BEFORE_BREAK = 2

    _lua_public = frozenset(
        {
            "close", "open", "exclusiveclose", "exclusiveslotclose", "getclose",
            "reset", "connectrule", "setdelay", "getdelay", "createspecifier",
            "pattern", "OFF", "BREAK_BEFORE_MAKE", "MAKE_BEFORE_BREAK",
        }
    )  # fmt: skip
    _lua_settable = frozenset({"connectrule"})
    _lua_static = _lua_public - _lua_settable

    def __init__(self, matrix: K707B) -> None:
        self._matrix = matrix
        self._connectrule = self.BREAK_BEFORE_MAKE
        self.pattern = Pattern(matrix)

    def __repr__(self) -> str:
        return "channel"

    @property
    def connectrule(self) -> int:
        """Switching order: 0 off, 1 break before make, 2 make before break."""
        return self._connectrule

    @connectrule.setter
    def connectrule(self, value: object) -> None:
        if value not in (0, 1, 2) or isinstance(value, bool):
            self._matrix.out_of_range("channel.connectrule", value, "0, 1 or 2")
            return
        self._connectrule = int(value)  # type: ignore[call-overload]

    def close(self, channels: object) -> None:
        """Close the listed crosspoints, keeping the others as they are."""
        mask = self._matrix.parse(channels, "close", slots=False)
        if mask is not None:
            self._matrix.switch(self._matrix.closed_mask | mask)

    def open(self, channels: object) -> None:
        """Open the listed crosspoints (``slotN`` and ``allslots`` allowed)."""
        mask = self._matrix.parse(channels, "open", slots=True)
        if mask is not None:
            self._matrix.switch(self._matrix.closed_mask & ~mask)

    def exclusiveclose(self, channels: object) -> None:
        """Close exactly the listed crosspoints; ``""`` opens every one."""
        mask = self._matrix.parse(channels, "exclusiveclose", slots=False)
        if mask is not None:
            self._matrix.switch(mask, self._connectrule)

    def exclusiveslotclose(self, channels: object) -> None:
        """Close the listed crosspoints, opening the others of their slots only."""
        matrix = self._matrix
        mask = matrix.parse(channels, "exclusiveslotclose", slots=False)
        if mask is not None:
            slots = matrix.slots_of(mask)
            matrix.switch((matrix.closed_mask & ~slots) | mask, self._connectrule)

    def getclose(self, channels: object) -> str | None:
        """The closed crosspoints among those listed, ``;``-separated, or nil."""
        mask = self._matrix.parse(channels, "getclose", slots=True)
        if mask is None:
            return None
        names = self._matrix.names_of(self._matrix.closed_mask & mask)
        return ";".join(names) if names else None

    def reset(self, channels: object) -> None:
        """Open the listed crosspoints and clear their delays."""
        matrix = self._matrix
        mask = matrix.parse(channels, "reset", slots=True)
        if mask is not None:
            matrix.set_delays(mask, 0.0)
            matrix.switch(matrix.closed_mask & ~mask)

    def setdelay(self, channels: object, delay_s: object) -> None:
        """Set an extra settling delay of the listed crosspoints, s."""
        matrix = self._matrix
        if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)):
            raise TypeError(f"channel.setdelay: {delay_s!r} is not a time in seconds")
        if delay_s < 0:
            matrix.out_of_range("channel.setdelay", delay_s, ">= 0 s")
            return
        mask = matrix.parse(channels, "setdelay", slots=True)
        if mask is not None:
            matrix.set_delays(mask, float(delay_s))

    def createspecifier(self, slot: object, row: object, column: object) -> str | None:
        """The name of one crosspoint, ``"1A01"``; the row as a letter or 1..8."""
        matrix = self._matrix
        row_n = _whole(row)
        if row_n is not None and 1 <= row_n <= len(ROWS):
            row = ROWS[row_n - 1]
        slot_n, column_n = _whole(slot), _whole(column)
        name = ""
        if slot_n is not None and column_n is not None:
            name = f"{slot_n}{str(row).upper()}{column_n:02d}"
        if not matrix.is_crosspoint(name):
            matrix.queue_error(
                ILLEGAL_PARAMETER,
                f"Illegal parameter value: channel.createspecifier({slot}, {row}, "
                f"{column}) is not a crosspoint of this matrix",
            )
            return None
        return name

    def getdelay(self, channels: object) -> str | None:
        """The delays of the listed crosspoints, s, comma-separated."""
        matrix = self._matrix
        mask = matrix.parse(channels, "getdelay", slots=True)
        if mask is None:
            return None
        return ",".join(
            format_number(matrix.delays_s[i], matrix.ascii_precision)
            for i in matrix.indices_of(mask)
        )


class Pattern(LuaObject):
    """The ``channel.pattern`` object: named sets of crosspoints."""

    _lua_public = frozenset({"setimage", "getimage", "delete", "snapshot", "catalog"})
    _lua_static = _lua_public

    def __init__(self, matrix: K707B) -> None:
        self._matrix = matrix

    def __repr__(self) -> str:
        return "channel.pattern"

    def setimage(self, channels: object, name: object) -> None:
        """Name the crosspoints of a list (a pattern may hold other patterns)."""
        matrix = self._matrix
        if matrix.check_pattern_name(name, "setimage"):
            mask = matrix.parse(channels, "pattern.setimage", slots=False)
            if mask is not None:
                matrix.set_pattern(str(name), mask)

    def snapshot(self, name: object) -> None:
        """Name the crosspoints closed now."""
        matrix = self._matrix
        if matrix.check_pattern_name(name, "snapshot"):
            matrix.set_pattern(str(name), matrix.closed_mask)

    def getimage(self, name: object) -> str | None:
        """The crosspoints of a pattern, sorted and comma-separated."""
        matrix = self._matrix
        mask = matrix.patterns.get(str(name).upper()) if isinstance(name, str) else None
        if mask is None:
            matrix.queue_error(
                ILLEGAL_PARAMETER,
                "Illegal parameter value: channel.pattern.getimage: "
                f"no pattern {name!r}",
            )
            return None
        return ",".join(matrix.names_of(mask[1]))

    def delete(self, name: object) -> None:
        """Forget a pattern."""
        matrix = self._matrix
        if not (isinstance(name, str) and matrix.delete_pattern(name)):
            matrix.queue_error(
                ILLEGAL_PARAMETER,
                f"Illegal parameter value: channel.pattern.delete: no pattern {name!r}",
            )

    def catalog(self) -> object:
        """An iterator over the pattern names, for ``for name in ... do``."""
        names = iter([shown for shown, _ in self._matrix.patterns.values()])

        def next_name(*_: object) -> str | None:
            return next(names, None)

        return next_name


def _whole(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value == int(value) and value >= 0 else None


class K707B(TspInstrument):
    """A simulated Keithley 707B or 708B with 7174A cards.

    Parameters
    ----------
    name : str
        Station name of the instrument (``"matrix"``).
    model : str
        ``"707B"`` or ``"708B"``.
    bench : Bench
        The bench it works on.
    cards : dict of int to str
        The installed cards by slot.
    node : int
        TSP-Link node number.

    Attributes
    ----------
    coordinates : list of (int, str, int)
        ``(slot, row, column)`` of every crosspoint, by index.
    closed_mask : int
        Bit ``i`` set when crosspoint ``i`` is closed.
    """

    def __init__(
        self, name: str, model: str, bench: Bench, cards: dict[int, str], node: int = 1
    ) -> None:
        super().__init__(name, model, bench, REVISION, log, node)
        self.coordinates = [
            (slot, row, column)
            for slot in sorted(cards)
            for row in ROWS
            for column in range(1, COLUMNS + 1)
        ]
        self.names = [f"{s}{r}{c:02d}" for s, r, c in self.coordinates]
        self._index = {name: i for i, name in enumerate(self.names)}
        self._bits = {name: 1 << i for i, name in enumerate(self.names)}
        self._slot_masks: dict[int, int] = {}
        for i, (slot, _, _) in enumerate(self.coordinates):
            self._slot_masks[slot] = self._slot_masks.get(slot, 0) | 1 << i
        self._all_mask = (1 << len(self.names)) - 1
        self._lists: dict[tuple[str, bool], int | str] = {}
        self.closed_mask = 0
        self.delays_s = [0.0] * len(self.names)
        self._delayed = False
        #: Patterns by upper-case name: (the name as given, crosspoint mask).
        self.patterns: dict[str, tuple[str, int]] = {}
        self.channel = Channel(self)

    def node_objects(self) -> dict[str, object]:
        return {"channel": self.channel}

    def reset(self) -> None:
        """Open every crosspoint, clear the delays, break before make."""
        super().reset()
        self.set_delays(self._all_mask, 0.0)
        self.patterns.clear()
        self._lists.clear()
        self.channel._connectrule = Channel.BREAK_BEFORE_MAKE
        self.switch(0)

    # Channel lists.

    def parse(self, channels: object, command: str, slots: bool) -> int | None:
        """The crosspoints of a channel list as a mask, or None after an error.

        Parameters
        ----------
        channels : str
            The list, as the Lua code gave it.
        command : str
            The command it is for, in the error message.
        slots : bool
            Whether ``slotN`` and ``allslots`` are allowed.
        """
        if not isinstance(channels, str):
            raise TypeError(f"channel.{command}: {channels!r} is not a channel list")
        key = (channels, slots)
        parsed = self._lists.get(key)
        if parsed is None:
            try:
                parsed = self._parse(channels, slots)
            except ChannelListError as exc:
                parsed = str(exc)
            if len(self._lists) >= LIST_CACHE_SIZE:
                self._lists.clear()
            self._lists[key] = parsed
        if isinstance(parsed, str):
            self.queue_error(
                ILLEGAL_PARAMETER,
                f"Illegal parameter value: channel.{command}: {parsed}",
            )
            return None
        return parsed

    def _parse(self, text: str, slots: bool) -> int:
        bits = self._bits
        mask = 0
        try:
            # The usual list: upper-case names joined by commas alone.
            for word in text.split(","):
                mask |= bits[word]
            return mask
        except KeyError:
            mask = 0
        for token in _SEPARATORS.split(text):
            word = token.strip().upper()
            if word:
                mask |= self._token_mask(word, slots)
        return mask

    def is_crosspoint(self, name: str) -> bool:
        """Whether `name` is a crosspoint of this matrix (``"1A01"``)."""
        return name in self._index

    # Patterns.

    def check_pattern_name(self, name: object, command: str) -> bool:
        """Whether `name` can name a pattern; queues -224 when not."""
        if isinstance(name, str) and PATTERN_NAME.match(name):
            word = name.upper()
            reserved = word == "ALLSLOTS" or word.startswith("SLOT")
            if not (reserved or self.is_crosspoint(word)):
                return True
        self.queue_error(
            ILLEGAL_PARAMETER,
            f"Illegal parameter value: channel.pattern.{command}: {name!r} cannot "
            "name a pattern (a letter, then letters, digits or _, not a channel name)",
        )
        return False

    def set_pattern(self, name: str, mask: int) -> None:
        self.patterns[name.upper()] = (name, mask)
        self._lists.clear()  # lists naming it read differently now

    def delete_pattern(self, name: str) -> bool:
        found = self.patterns.pop(name.upper(), None) is not None
        self._lists.clear()
        return found

    def _token_mask(self, word: str, slots: bool) -> int:
        pattern = self.patterns.get(word)
        if pattern is not None:
            return pattern[1]
        if word == "ALLSLOTS" or word.startswith("SLOT"):
            if not slots:
                raise ChannelListError(f"'{word.lower()}' is not allowed here")
            if word == "ALLSLOTS":
                return self._all_mask
            mask = self._slot_masks.get(int(word[4:])) if word[4:].isdigit() else None
            if mask is None:
                raise ChannelListError(f"'{word.lower()}' has no card")
            return mask
        if ":" in word:
            low, _, high = word.partition(":")
            first, last = self._one(low), self._one(high)
            if first > last:
                raise ChannelListError(f"range '{word}' does not run from low to high")
            return ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)
        return 1 << self._one(word)

    def _one(self, name: str) -> int:
        index = self._index.get(name.strip())
        if index is None:
            raise ChannelListError(f"'{name}' is not a crosspoint of this matrix")
        return index

    def indices_of(self, mask: int) -> list[int]:
        """The crosspoint indices of a mask, lowest first."""
        indices = []
        while mask:
            low = mask & -mask
            indices.append(low.bit_length() - 1)
            mask ^= low
        return indices

    def names_of(self, mask: int) -> list[str]:
        """The crosspoint names of a mask, sorted."""
        names = self.names
        return [names[i] for i in self.indices_of(mask)]

    def slots_of(self, mask: int) -> int:
        """The mask of every crosspoint in the slots that `mask` touches."""
        return sum(m for m in self._slot_masks.values() if m & mask)

    def set_delays(self, mask: int, delay_s: float) -> None:
        """Set the extra settling delay of the crosspoints of a mask, s."""
        for index in self.indices_of(mask):
            self.delays_s[index] = delay_s
        self._delayed = any(self.delays_s)

    def closed_names(self) -> list[str]:
        """The closed crosspoints, sorted."""
        return self.names_of(self.closed_mask)

    # Switching.

    def switch(self, target: int, rule: int = Channel.OFF) -> None:
        """Move the relays to `target`, in the order the connect rule asks.

        Each phase that moves a relay charges the operate time and the
        longest delay of the crosspoints it moved.
        """
        present = self.closed_mask
        if target == present:
            return
        if rule == Channel.BREAK_BEFORE_MAKE:
            phases = [present & target, target]
        elif rule == Channel.MAKE_BEFORE_BREAK:
            phases = [present | target, target]
        else:
            phases = [target]
        for state in phases:
            moved = state ^ self.closed_mask
            if not moved:
                continue
            self.closed_mask = state
            self.bench.set_relays(self.name, state)
            self.bench.advance(self._settling_s(moved))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: closed %s", self.name, ";".join(self.closed_names()))

    def _settling_s(self, moved: int) -> float:
        operate_s = self.bench.timing.relay_operate_s
        if not self._delayed:
            return operate_s
        return operate_s + max(self.delays_s[i] for i in self.indices_of(moved))
