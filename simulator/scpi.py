"""SCPI engine: the command language of every simulated SCPI instrument.

A simulated instrument (the 2450, the 2400, the B2900) declares its commands
as a table of :class:`Command` entries whose header patterns are written in
the manuals' notation::

    Command(
        ":SOURce[1]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
        set=self.set_voltage,
        query=self.voltage,
        params=[Number(-210.0, 210.0, default=0.0)],
    )

and subclasses :class:`ScpiInstrument`, which parses each message as IEEE
488.2 and SCPI say: long and short mnemonics in any case, optional nodes,
numeric suffixes, compound messages with the header path rules, the common
``*`` commands with the status registers, and an error queue. A bad command
gets no reply, only a queued error, so a query that failed times out on the
client as it does on a real instrument.

``docs/scpi.md`` describes how to declare an instrument and the choices made
where the standards leave freedom.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from numbers import Integral, Real
from typing import Any, NamedTuple

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# Error codes the engine itself raises, named for handlers that raise them too.
COMMAND_ERROR = -100
SYNTAX_ERROR = -102
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
SUFFIX_OUT_OF_RANGE = -114
NUMERIC_DATA_ERROR = -120
SUFFIX_NOT_ALLOWED = -138
INVALID_STRING_DATA = -151
EXECUTION_ERROR = -200
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
ILLEGAL_PARAMETER_VALUE = -224
QUEUE_OVERFLOW = -350
QUERY_INTERRUPTED = -410
QUERY_UNTERMINATED = -420

#: The SCPI standard error messages, by code.
STANDARD_ERRORS: Mapping[int, str] = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -105: "GET not allowed",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -110: "Command header error",
    -111: "Header separator error",
    -112: "Program mnemonic too long",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -121: "Invalid character in number",
    -123: "Exponent too large",
    -124: "Too many digits",
    -128: "Numeric data not allowed",
    -130: "Suffix error",
    -131: "Invalid suffix",
    -134: "Suffix too long",
    -138: "Suffix not allowed",
    -140: "Character data error",
    -141: "Invalid character data",
    -144: "Character data too long",
    -148: "Character data not allowed",
    -150: "String data error",
    -151: "Invalid string data",
    -158: "String data not allowed",
    -160: "Block data error",
    -161: "Invalid block data",
    -168: "Block data not allowed",
    -170: "Expression error",
    -171: "Invalid expression",
    -178: "Expression data not allowed",
    -200: "Execution error",
    -201: "Invalid while in local",
    -203: "Command protected",
    -210: "Trigger error",
    -211: "Trigger ignored",
    -213: "Init ignored",
    -214: "Trigger deadlock",
    -220: "Parameter error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -225: "Out of memory",
    -230: "Data corrupt or stale",
    -240: "Hardware error",
    -241: "Hardware missing",
    -300: "Device-specific error",
    -310: "System error",
    -311: "Memory error",
    -313: "Calibration memory lost",
    -314: "Save/recall memory lost",
    -315: "Configuration memory lost",
    -330: "Self-test failed",
    -350: "Queue overflow",
    -360: "Communication error",
    -363: "Input buffer overrun",
    -400: "Query error",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
    -430: "Query DEADLOCKED",
    -440: "Query UNTERMINATED after indefinite response",
}

# Standard event status register bits (IEEE 488.2).
OPC = 1
QYE = 4
DDE = 8
EXE = 16
CME = 32
URQ = 64
PON = 128

# Status byte bits built into the engine; bits 0, 1, 3 and 7 are the
# instrument's (see EventRegister).
EAV = 4
MAV = 16
ESB = 32
MSS = 64

#: Numeric suffixes a node accepts when the instrument names no range for it.
DEFAULT_SUFFIX_RANGE = range(1, 2)

#: Distinct header texts whose resolution is kept before the cache starts over.
HEADER_CACHE_SIZE = 4096

#: Errors the queue of an instrument holds unless it asks for another size.
ERROR_QUEUE_SIZE = 10


class ScpiError(Exception):
    """An error a command reports; the engine queues it and stops the message.

    Parameters
    ----------
    code : int
        The error number: a standard SCPI code (negative) or one of the
        instrument's own (positive, for example the 2400's +803).
    message : str, optional
        The text queued with the code. Without it the instrument's table
        (the standard messages and the instrument's own) supplies the text.
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        text = self.message or STANDARD_ERRORS.get(self.code, "")
        return f"{self.code}, {text}"


# Program data.

NUMBER = "number"
WORD = "word"
STRING = "string"
CHANNELS = "channels"


class Token(NamedTuple):
    """One parsed element of a command's program data.

    Attributes
    ----------
    kind : str
        :data:`NUMBER` (``value`` an int or float), :data:`WORD` (character
        data, ``value`` in upper case), :data:`STRING` (quoted, ``value`` the
        text between the quotes with doubled quotes undone) or
        :data:`CHANNELS` (``value`` a tuple of ``(first, last)`` ranges).
    value : object
        The element's value.
    """

    kind: str
    value: Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks a parameter that must be given (the default of every ``omitted``).
REQUIRED: Any = _Required()


class Param:
    """Base of the parameter specifications of a command.

    Parameters
    ----------
    omitted : object
        The value the handler gets when the parameter is left out of the
        command; :data:`REQUIRED` (the default) makes leaving it out error
        -109 "Missing parameter".
    """

    def __init__(self, *, omitted: Any = REQUIRED) -> None:
        self.omitted = omitted

    def convert(self, token: Token) -> Any:
        """Turn one element of program data into the handler's value.

        Raises
        ------
        ScpiError
            If the element is of the wrong type or value.
        """
        raise NotImplementedError


_LIMIT_WORDS = {
    "MIN": "min",
    "MINIMUM": "min",
    "MAX": "max",
    "MAXIMUM": "max",
    "DEF": "default",
    "DEFAULT": "default",
}


class Number(Param):
    """A decimal number (NR1, NR2 or NR3) within a closed range.

    ``MINimum``, ``MAXimum`` and ``DEFault`` stand for `low`, `high` and
    `default`. A value outside ``[low, high]`` is error -222 "Data out of
    range"; it is never clipped.

    Parameters
    ----------
    low, high : float
        The smallest and largest accepted values, in the command's unit.
    default : float, optional
        The value of ``DEFault``; without it ``DEF`` is error -224.
    integer : bool
        Whether the parameter is NR1: the value is rounded to the nearest
        integer (halves away from zero) as IEEE 488.2 asks, and the handler
        gets an int. Non-decimal ``#H``, ``#Q`` and ``#B`` numbers are
        accepted for any number.
    omitted : object
        The value when left out (see :class:`Param`).
    """

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        default: float | None = None,
        integer: bool = False,
        omitted: Any = REQUIRED,
    ) -> None:
        super().__init__(omitted=omitted)
        if not low <= high:
            raise ValueError(f"empty range: low {low} is above high {high}")
        self.integer = integer
        self.low = self._kind(low)
        self.high = self._kind(high)
        self.default = None if default is None else self._kind(default)

    def _kind(self, value: float) -> float:
        # An NR1 parameter's limits are ints so that they reply as NR1.
        if self.integer and math.isfinite(value):
            return int(value)
        return float(value)

    def limit(self, word: str) -> float:
        """The value of ``min``, ``max`` or ``default``.

        Raises
        ------
        ScpiError
            -224 for ``default`` when the number has none.
        """
        if word == "min":
            return self.low
        if word == "max":
            return self.high
        if self.default is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        return self.default

    def convert(self, token: Token) -> float:
        """Check a number's range, or give the value of MIN, MAX or DEF."""
        kind, value = token
        if kind == WORD:
            word = _LIMIT_WORDS.get(value)
            if word is None:
                raise ScpiError(DATA_TYPE_ERROR)
            return self.limit(word)
        if kind != NUMBER:
            raise ScpiError(DATA_TYPE_ERROR)
        if self.integer:
            value = _round_half_away(value)
        if not self.low <= value <= self.high:
            raise ScpiError(DATA_OUT_OF_RANGE)
        return value if self.integer else float(value)


def _round_half_away(value: float) -> int:
    magnitude = math.floor(abs(value) + 0.5)
    return -magnitude if value < 0 else magnitude


class Boolean(Param):
    """A boolean: ``ON`` / ``OFF`` or a number (zero after rounding is off).

    Parameters
    ----------
    omitted : object
        The value when left out (see :class:`Param`).
    """

    def convert(self, token: Token) -> bool:
        """Give True for ON or a number that does not round to 0."""
        kind, value = token
        if kind == WORD:
            if value == "ON":
                return True
            if value == "OFF":
                return False
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        if kind == NUMBER:
            return _round_half_away(value) != 0
        raise ScpiError(DATA_TYPE_ERROR)


class Choice(Param):
    """One of a set of names, each in manual notation (``VOLTage|CURRent``).

    A name is accepted in its long or short form in any case, and may have
    several levels with optional ones, like a header (``CURRent[:DC]``). The
    handler gets the name's short form in upper case with every level
    (``"VOLT"``, ``"CURR:DC"``). A name not in the set is error -224.

    Parameters
    ----------
    *options : str
        The names, each alone or several joined by ``|``.
    quoted : bool
        Whether the name is sent as a quoted string (the 2450's
        ``:SENS:FUNC "CURR"``) instead of as character data. The other form
        is error -104.
    omitted : object
        The value when left out (see :class:`Param`).
    """

    def __init__(self, *options: str, quoted: bool = False, omitted: Any = REQUIRED):
        super().__init__(omitted=omitted)
        self.quoted = quoted
        self.spellings: dict[str, str] = {}
        for group in options:
            for option in group.split("|"):
                self._add(option.strip())
        if not self.spellings:
            raise ValueError("a choice needs at least one option")

    def _add(self, option: str) -> None:
        items = _parse_pattern(
            option if option.startswith(("[", ":")) else ":" + option
        )
        canonical = ":".join(node.short for node in _all_nodes(items))
        for path in _expand(items):
            for spelling in _spellings(path):
                known = self.spellings.setdefault(spelling, canonical)
                if known != canonical:
                    raise ValueError(
                        f"{option!r} and {known!r} share the name {spelling!r}"
                    )

    @property
    def names(self) -> list[str]:
        """The canonical names, in declaration order."""
        return list(dict.fromkeys(self.spellings.values()))

    def convert(self, token: Token) -> str:
        """Give the canonical short form of the name sent."""
        kind, value = token
        if kind != (STRING if self.quoted else WORD):
            raise ScpiError(DATA_TYPE_ERROR)
        name = self.spellings.get(value.upper())
        if name is None:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE)
        return name


class String(Param):
    """A quoted string, in ``'`` or ``"``; the handler gets the text inside.

    Parameters
    ----------
    omitted : object
        The value when left out (see :class:`Param`).
    """

    def convert(self, token: Token) -> str:
        """Give the text between the quotes."""
        if token.kind != STRING:
            raise ScpiError(DATA_TYPE_ERROR)
        return str(token.value)


class ChannelList(Param):
    """A channel list such as ``(@1)``, ``(@1,2)`` or ``(@1:3)``.

    The handler gets a tuple of channel numbers in the order sent; a range
    ``(@3:1)`` runs downward. A channel outside ``[low, high]`` is error -224.

    Parameters
    ----------
    low, high : int
        The first and last channel number of the instrument.
    omitted : object
        The value when left out (see :class:`Param`).
    """

    def __init__(self, low: int = 1, high: int = 1, *, omitted: Any = REQUIRED):
        super().__init__(omitted=omitted)
        self.low = low
        self.high = high

    def convert(self, token: Token) -> tuple[int, ...]:
        """Give the channels of the list, ranges expanded."""
        if token.kind != CHANNELS:
            raise ScpiError(DATA_TYPE_ERROR)
        channels: list[int] = []
        for first, last in token.value:
            if not (self.low <= first <= self.high and self.low <= last <= self.high):
                raise ScpiError(ILLEGAL_PARAMETER_VALUE)
            step = 1 if last >= first else -1
            channels.extend(range(first, last + step, step))
        return tuple(channels)


class Raw(Param):
    """Any element of program data; the handler gets the :class:`Token`."""

    def convert(self, token: Token) -> Token:
        """Give the token itself."""
        return token


class ListOf(Param):
    """Every remaining parameter, each of one kind: ``a,b,c,...``.

    It must be a command's last parameter. The handler gets a tuple.

    Parameters
    ----------
    item : Param
        The specification each element follows, for example a
        :class:`Number` for ``:SOUR:LIST:VOLT a,b,...`` or :class:`Raw` for
        arbitrary trailing parameters.
    min_count : int
        Fewer elements are error -109 "Missing parameter".
    max_count : int, optional
        More elements are error -108 "Parameter not allowed".
    """

    def __init__(
        self, item: Param, *, min_count: int = 1, max_count: int | None = None
    ):
        super().__init__()
        self.item = item
        self.min_count = min_count
        self.max_count = max_count

    def convert_all(self, tokens: Sequence[Token]) -> tuple[Any, ...]:
        """Convert every remaining token."""
        if len(tokens) < self.min_count:
            raise ScpiError(MISSING_PARAMETER)
        if self.max_count is not None and len(tokens) > self.max_count:
            raise ScpiError(PARAMETER_NOT_ALLOWED)
        convert = self.item.convert
        return tuple([convert(token) for token in tokens])

    def convert(self, token: Token) -> Any:
        """Convert one element (a list is converted by :meth:`convert_all`)."""
        return self.item.convert(token)


_ELEMENT = re.compile(
    r"""\s*(?:
        (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:\s*[eE]\s*[+-]?\d+)?)
      | (?P<word>[A-Za-z][A-Za-z0-9_]*)
      | "(?P<dq>(?:[^"]|"")*)"
      | '(?P<sq>(?:[^']|'')*)'
      | \(@(?P<channels>[^)]*)\)
      | \#(?P<base>[HhQqBb])(?P<digits>[0-9A-Fa-f]+)
    )\s*(?P<end>,|$)""",
    re.VERBOSE,
)
_NUMBER_WITH_SUFFIX = re.compile(
    r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*[A-Za-z]"
)
_CHANNEL_RANGE = re.compile(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?")
_BASES = {"H": 16, "Q": 8, "B": 2}


def parse_data(text: str) -> list[Token]:
    """Parse the program data of one command (the text after its header).

    Parameters
    ----------
    text : str
        Comma-separated elements: numbers, character data, quoted strings,
        channel lists and ``#H``/``#Q``/``#B`` numbers.

    Returns
    -------
    list of Token
        One token per element, in order.

    Raises
    ------
    ScpiError
        -102 for a malformed element or an empty one between commas, -120
        for a malformed number, -138 for a number with a unit suffix, -151
        for an unterminated string.
    """
    tokens: list[Token] = []
    position, length = 0, len(text)
    while True:
        match = _ELEMENT.match(text, position)
        if match is None:
            raise ScpiError(_data_error(text, position))
        tokens.append(_token(match))
        position = match.end()
        if match.group("end") != ",":
            return tokens
        if position >= length:
            raise ScpiError(SYNTAX_ERROR)


def _token(match: re.Match[str]) -> Token:
    groups = match.groupdict()
    if groups["number"] is not None:
        return Token(NUMBER, _decimal(groups["number"]))
    if groups["word"] is not None:
        return Token(WORD, groups["word"].upper())
    if groups["dq"] is not None:
        return Token(STRING, groups["dq"].replace('""', '"'))
    if groups["sq"] is not None:
        return Token(STRING, groups["sq"].replace("''", "'"))
    if groups["channels"] is not None:
        return Token(CHANNELS, _channel_ranges(groups["channels"]))
    return Token(NUMBER, _non_decimal(groups["base"], groups["digits"]))


def _decimal(text: str) -> float:
    value = float("".join(text.split()))
    if math.isinf(value):
        raise ScpiError(NUMERIC_DATA_ERROR)
    return value


def _non_decimal(base: str, digits: str) -> int:
    try:
        return int(digits, _BASES[base.upper()])
    except ValueError:
        raise ScpiError(NUMERIC_DATA_ERROR) from None


def _channel_ranges(text: str) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for item in text.split(","):
        match = _CHANNEL_RANGE.fullmatch(item)
        if match is None:
            raise ScpiError(SYNTAX_ERROR)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        ranges.append((first, last))
    return tuple(ranges)


def _data_error(text: str, position: int) -> int:
    rest = text[position:].lstrip()
    if rest[:1] in ("'", '"'):
        return INVALID_STRING_DATA
    if _NUMBER_WITH_SUFFIX.match(rest):
        return SUFFIX_NOT_ALLOWED
    if rest[:1] in ("+", "-", ".") or rest[:1].isdigit():
        return NUMERIC_DATA_ERROR
    return SYNTAX_ERROR


# Header patterns.


@dataclass(frozen=True)
class _PatternNode:
    short: str
    long: str
    suffix_default: int | None  # None: the node takes no numeric suffix


@dataclass(frozen=True)
class _Optional:
    items: tuple[_PatternNode | _Optional, ...]


_PatternItem = _PatternNode | _Optional
_MNEMONIC_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9_]*?)(#|\[\d+\])?(?=[:\[\]?]|$)")


def _parse_pattern(pattern: str) -> tuple[_PatternItem, ...]:
    """Parse ``:A[:B[2]]:C#`` into nodes and optional groups."""
    items, position = _parse_items(pattern, 0, closing=False)
    if position != len(pattern):
        raise ValueError(f"bad header pattern {pattern!r} at {position}")
    return items


def _parse_items(
    pattern: str, position: int, *, closing: bool
) -> tuple[tuple[_PatternItem, ...], int]:
    items: list[_PatternItem] = []
    while position < len(pattern):
        char = pattern[position]
        if char == "]" and closing:
            return tuple(items), position + 1
        if char == "[":
            group, position = _parse_items(pattern, position + 1, closing=True)
            if not group:
                raise ValueError(f"empty optional group in {pattern!r}")
            items.append(_Optional(group))
            continue
        if char == ":":
            position += 1
        elif items:
            raise ValueError(f"bad header pattern {pattern!r} at {position}")
        node, position = _parse_node(pattern, position)
        items.append(node)
    if closing:
        raise ValueError(f"unclosed '[' in {pattern!r}")
    return tuple(items), position


def _parse_node(pattern: str, position: int) -> tuple[_PatternNode, int]:
    match = _MNEMONIC_TEXT.match(pattern, position)
    if match is None:
        raise ValueError(f"bad mnemonic in {pattern!r} at {position}")
    text, suffix = match.groups()
    if text[-1].isdigit():
        raise ValueError(
            f"mnemonic {text!r} in {pattern!r} ends in a digit: write "
            "its numeric suffix as '#' or '[n]'"
        )
    short = re.match(r"[A-Z0-9_]*", text)
    assert short is not None
    if not short.group():
        raise ValueError(
            f"mnemonic {text!r} in {pattern!r} has no upper-case short form"
        )
    default = None
    if suffix == "#":
        default = 1
    elif suffix:
        default = int(suffix[1:-1])
    return _PatternNode(short.group(), text.upper(), default), match.end()


def _expand(items: Sequence[_PatternItem]) -> list[tuple[_PatternNode, ...]]:
    """Every node sequence a pattern allows, optional groups in or out."""
    paths: list[tuple[_PatternNode, ...]] = [()]
    for item in items:
        if isinstance(item, _PatternNode):
            paths = [path + (item,) for path in paths]
        else:
            inner = _expand(item.items)
            paths = [path + extra for path in paths for extra in [(), *inner]]
    return paths


def _all_nodes(items: Sequence[_PatternItem]) -> list[_PatternNode]:
    nodes: list[_PatternNode] = []
    for item in items:
        if isinstance(item, _PatternNode):
            nodes.append(item)
        else:
            nodes.extend(_all_nodes(item.items))
    return nodes


def _spellings(path: Sequence[_PatternNode]) -> list[str]:
    """Every upper-case spelling of a node sequence, short and long forms mixed."""
    spellings = [""]
    for node in path:
        forms = {node.short, node.long}
        spellings = [
            f"{head}:{form}" if head else form for head in spellings for form in forms
        ]
    return spellings


# Commands and the command tree.

Handler = Callable[..., Any]
ReplyFormat = Callable[[Any], str]


@dataclass(frozen=True)
class Command:
    """One command of an instrument: a header pattern and its handlers.

    Parameters
    ----------
    pattern : str
        The header in manual notation: ``":SOURce[1]:VOLTage[:LEVel]"``,
        ``":SENSe#:CURRent[:DC]:PROTection[:LEVel]"``, ``"*IDN?"``. Upper
        case marks the short form; ``[...]`` an optional node; ``#`` or
        ``[n]`` after a mnemonic a numeric suffix (default 1, or n); a
        trailing ``?`` a query-only command.
    set : callable, optional
        Called for the command form as ``set(*suffixes, *values)``:
        `suffixes` are the numeric suffix of every node of the pattern that
        takes one, in pattern order (the default where the node or its
        suffix was left out), `values` one per parameter of `params`.
    query : callable, optional
        Called for the query form as ``query(*suffixes, *values)`` with the
        values of `query_params`; returns the reply (see
        :meth:`ScpiInstrument.format_reply`).
    params : sequence of Param
        The parameters of the command form.
    query_params : sequence of Param, optional
        The parameters of the query form. Left out, a command whose `params`
        are one :class:`Number` answers ``?`` followed by ``MIN``, ``MAX``
        or ``DEF`` with that limit itself, and its query takes no other
        parameter.
    reply : callable, optional
        Formats the query's return value, instead of the instrument's rules.
    """

    pattern: str
    set: Handler | None = None
    query: Handler | None = None
    params: Sequence[Param] = ()
    query_params: Sequence[Param] | None = None
    reply: ReplyFormat | None = None
    limits: Number | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        query_only = self.pattern.endswith("?")
        if query_only and (self.set is not None or self.query is None):
            raise ValueError(f"{self.pattern}: a query-only command has only a query")
        if self.set is None and self.query is None:
            raise ValueError(
                f"{self.pattern}: a command needs a set or a query handler"
            )
        for params in (self.params, self.query_params or ()):
            for param in params[:-1]:
                if isinstance(param, ListOf):
                    raise ValueError(
                        f"{self.pattern}: ListOf must be the last parameter"
                    )
        if self.query_params is None:
            automatic = len(self.params) == 1 and isinstance(self.params[0], Number)
            if automatic:
                object.__setattr__(self, "limits", self.params[0])
                object.__setattr__(self, "query_params", (_LimitWord(),))
            else:
                object.__setattr__(self, "query_params", ())
        else:
            object.__setattr__(self, "query_params", tuple(self.query_params))

    @property
    def is_common(self) -> bool:
        """Whether this is an IEEE 488.2 common command (``*IDN?``)."""
        return self.pattern.startswith("*")


class _LimitWord(Param):
    """The optional MIN / MAX / DEF of a number's query."""

    def __init__(self) -> None:
        super().__init__(omitted=None)

    def convert(self, token: Token) -> str:
        word = _LIMIT_WORDS.get(token.value) if token.kind == WORD else None
        if word is None:
            raise ScpiError(
                ILLEGAL_PARAMETER_VALUE if token.kind == WORD else DATA_TYPE_ERROR
            )
        return word


class _TreeNode:
    __slots__ = ("short", "long", "suffixes", "children", "leaf")

    def __init__(self, short: str, long: str, suffixes: range | None) -> None:
        self.short = short
        self.long = long
        self.suffixes = suffixes
        self.children: dict[str, _TreeNode] = {}
        self.leaf: _Leaf | None = None


@dataclass(frozen=True)
class _Leaf:
    command: Command
    slots: tuple[int | None, ...]  # per depth: the handler's suffix position
    defaults: tuple[int, ...]  # the pattern's suffix defaults, in order
    builtin: bool


class Resolved(NamedTuple):
    """A header resolved to its command.

    Attributes
    ----------
    command : Command
        The command the header names.
    suffixes : tuple of int
        The numeric suffixes for its handlers, in pattern order.
    """

    command: Command
    suffixes: tuple[int, ...]


_HEADER_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z][A-Za-z0-9_]*)*")
_SPLIT_SUFFIX = re.compile(r"(.*?[^0-9])([0-9]*)")


class CommandTree:
    """The header tree of an instrument's commands, with a resolution cache.

    Parameters
    ----------
    commands : iterable of Command
        Every command that is not a common command.
    suffix_ranges : mapping of str to range, optional
        The numeric suffixes each mnemonic accepts, keyed by the mnemonic in
        either form (``{"SOURce": range(1, 3)}``). A node whose mnemonic is
        not listed accepts only :data:`DEFAULT_SUFFIX_RANGE` (``1``).
    builtin : iterable of Command
        Commands of the engine; a command of `commands` with the same header
        replaces one of them.

    Raises
    ------
    ValueError
        If two commands claim the same header, two mnemonics of one level
        share a spelling, or one node is declared with and without a suffix.
    """

    def __init__(
        self,
        commands: Iterable[Command],
        suffix_ranges: Mapping[str, range] | None = None,
        builtin: Iterable[Command] = (),
    ) -> None:
        self._ranges = {
            _short_form(name): suffixes
            for name, suffixes in (suffix_ranges or {}).items()
        }
        self._root = _TreeNode("", "", None)
        self._cache: dict[str, Resolved | int] = {}
        for command in builtin:
            self._insert(command, builtin=True)
        for command in commands:
            self._insert(command, builtin=False)

    def _insert(self, command: Command, *, builtin: bool) -> None:
        pattern = command.pattern.removesuffix("?")
        items = _parse_pattern(pattern)
        nodes = _all_nodes(items)
        positions = {id(node): n for n, node in enumerate(_with_suffix(nodes))}
        defaults = tuple(
            node.suffix_default for node in nodes if node.suffix_default is not None
        )
        for path in _expand(items):
            target = self._root
            slots: list[int | None] = []
            for node in path:
                target = self._child(target, node, command.pattern)
                slots.append(positions.get(id(node)))
            self._set_leaf(target, _Leaf(command, tuple(slots), defaults, builtin))

    def _child(self, parent: _TreeNode, node: _PatternNode, pattern: str) -> _TreeNode:
        suffixes = None
        if node.suffix_default is not None:
            suffixes = self._ranges.get(node.short, DEFAULT_SUFFIX_RANGE)
            if node.suffix_default not in suffixes:
                raise ValueError(
                    f"{pattern}: default suffix {node.suffix_default} of "
                    f"{node.long} is outside {suffixes}"
                )
        child = parent.children.get(node.short)
        if child is None:
            child = _TreeNode(node.short, node.long, suffixes)
        if (child.short, child.long) != (node.short, node.long):
            raise ValueError(f"{pattern}: {node.long} clashes with {child.long}")
        if child.suffixes != suffixes:
            raise ValueError(
                f"{pattern}: {node.long} is declared with and without a numeric suffix"
            )
        for spelling in (node.short, node.long):
            known = parent.children.setdefault(spelling, child)
            if known is not child:
                raise ValueError(f"{pattern}: {node.long} clashes with {known.long}")
        return child

    @staticmethod
    def _set_leaf(target: _TreeNode, leaf: _Leaf) -> None:
        present = target.leaf
        if present is not None and not present.builtin:
            if present.command is leaf.command:
                return
            first, second = present.command.pattern, leaf.command.pattern
            raise ValueError(f"{first} and {second} name the same header")
        target.leaf = leaf

    def resolve(self, header: str) -> Resolved:
        """Find the command an absolute header names.

        Parameters
        ----------
        header : str
            The header without its leading ``:`` and without ``?``, for
            example ``"sour2:volt:lev"``.

        Returns
        -------
        Resolved
            The command and its numeric suffixes. Results (errors too) are
            cached by the exact header text.

        Raises
        ------
        ScpiError
            -102 for a malformed header, -113 for one that names no command,
            -114 for a numeric suffix the node does not accept.
        """
        found = self._cache.get(header)
        if found is None:
            found = self._walk(header)
            if len(self._cache) >= HEADER_CACHE_SIZE:
                self._cache.clear()
            self._cache[header] = found
        if isinstance(found, int):
            raise ScpiError(found)
        return found

    def _walk(self, header: str) -> Resolved | int:
        if _HEADER_TEXT.fullmatch(header) is None:
            return SYNTAX_ERROR
        node = self._root
        values: list[int | None] = []
        for mnemonic in header.split(":"):
            name, digits = _split_mnemonic(mnemonic)
            child = node.children.get(name)
            if child is None:
                return UNDEFINED_HEADER
            if child.suffixes is None:
                if digits:
                    return SUFFIX_OUT_OF_RANGE
                values.append(None)
            else:
                value = int(digits) if digits else None
                if value is not None and value not in child.suffixes:
                    return SUFFIX_OUT_OF_RANGE
                values.append(value)
            node = child
        leaf = node.leaf
        if leaf is None:
            return UNDEFINED_HEADER
        suffixes = list(leaf.defaults)
        for slot, value in zip(leaf.slots, values, strict=True):
            if slot is not None and value is not None:
                suffixes[slot] = value
        return Resolved(leaf.command, tuple(suffixes))


def _with_suffix(nodes: Sequence[_PatternNode]) -> list[_PatternNode]:
    return [node for node in nodes if node.suffix_default is not None]


def _split_mnemonic(mnemonic: str) -> tuple[str, str]:
    match = _SPLIT_SUFFIX.fullmatch(mnemonic)
    assert match is not None  # a valid header mnemonic starts with a letter
    return match.group(1).upper(), match.group(2)


def _short_form(name: str) -> str:
    return _parse_node(name, 0)[0].short


# Replies.

NumberFormat = Callable[[float], str]


def _not_finite(value: float) -> str | None:
    # SCPI's conventions: NaN is 9.91E37, infinities are +/-9.9E37.
    if math.isnan(value):
        return "9.91E+37"
    if math.isinf(value):
        return "9.9E+37" if value > 0 else "-9.9E+37"
    return None


def format_shortest(value: float) -> str:
    """Format a number as the shortest text that reads back exactly.

    ``1e-07``, ``0.0001``, ``21.0``; NaN as ``9.91E+37`` and infinities as
    ``9.9E+37`` / ``-9.9E+37`` (the SCPI conventions).
    """
    return _not_finite(value) or repr(float(value))


def nr3_formatter(digits: int = 6, *, plus_sign: bool = True) -> NumberFormat:
    """Make an NR3 formatter with a fixed number of decimals.

    Parameters
    ----------
    digits : int
        Decimals of the mantissa.
    plus_sign : bool
        Whether positive numbers carry a ``+``.

    Returns
    -------
    callable
        ``nr3_formatter()(1e-4)`` gives ``"+1.000000E-04"`` (the 2400's
        replies), ``nr3_formatter(plus_sign=False)(1e-4)`` gives
        ``"1.000000E-04"``.
    """
    spec = f"{'+' if plus_sign else ''}.{digits}E"

    def format_nr3(value: float) -> str:
        return _not_finite(value) or format(value, spec)

    return format_nr3


def format_nr1(value: int) -> str:
    """Format an integer as NR1: ``42``, ``-3``."""
    return str(int(value))


def format_bool(value: bool) -> str:
    """Format a boolean as SCPI replies it: ``1`` or ``0``."""
    return "1" if value else "0"


def quote(text: str) -> str:
    """Quote a string reply: ``CURR:DC`` becomes ``"CURR:DC"``, ``"`` doubled."""
    return '"' + text.replace('"', '""') + '"'


@dataclass(frozen=True)
class ErrorEntry:
    """One entry of an error queue.

    Attributes
    ----------
    code : int
        The error number; 0 for the empty queue's ``No error``.
    message : str
        The error's text.
    time_s : float
        When it was queued, seconds since the Unix epoch in the instrument's
        clock (:meth:`ScpiInstrument.clock_s`).
    """

    code: int
    message: str
    time_s: float = 0.0


ErrorFormat = Callable[[ErrorEntry], str]

NO_ERROR = ErrorEntry(0, "No error")


def error_reply_classic(entry: ErrorEntry) -> str:
    """Format an error as classic SCPI does: ``-113,"Undefined header"``."""
    return f"{entry.code},{quote(entry.message)}"


def error_reply_2450(entry: ErrorEntry) -> str:
    """Format an error as the 2450 does: ``code,"message;severity;date time"``.

    The empty queue reads ``0,"No error;0;0 0"``; an error has severity 1
    and the time it was queued, ``2024/05/26 14:00:14.871``.
    """
    if entry.code == 0:
        return '0,"No error;0;0 0"'
    stamp = datetime.fromtimestamp(entry.time_s, UTC)
    when = stamp.strftime("%Y/%m/%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"
    return f"{entry.code},{quote(f'{entry.message};1;{when}')}"


def error_reply_keysight(entry: ErrorEntry) -> str:
    """Format an error as Keysight does: ``+0,"No error"``, ``-113,"..."``."""
    return f"{entry.code:+d},{quote(entry.message)}"


class ErrorQueue:
    """A bounded first-in first-out error queue.

    When it is full a new error replaces the newest entry with -350 "Queue
    overflow", as SCPI asks; the older entries are kept.

    Parameters
    ----------
    size : int
        The most entries it holds (at least 2).
    """

    def __init__(self, size: int = ERROR_QUEUE_SIZE) -> None:
        if size < 2:
            raise ValueError(f"an error queue holds at least 2 entries, not {size}")
        self.size = size
        self._entries: deque[ErrorEntry] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, entry: ErrorEntry) -> None:
        """Add an entry, or mark an overflow when the queue is full."""
        if len(self._entries) < self.size:
            self._entries.append(entry)
        elif self._entries[-1].code != QUEUE_OVERFLOW:
            message = STANDARD_ERRORS[QUEUE_OVERFLOW]
            self._entries[-1] = ErrorEntry(QUEUE_OVERFLOW, message, entry.time_s)

    def pop(self) -> ErrorEntry:
        """Remove and return the oldest entry, or :data:`NO_ERROR`."""
        if self._entries:
            return self._entries.popleft()
        return NO_ERROR

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def entries(self) -> list[ErrorEntry]:
        """A copy of the waiting entries, oldest first."""
        return list(self._entries)


# Status registers.


class EventRegister:
    """An SCPI event register (operation, questionable, measurement, ...).

    A condition register follows the instrument's state; its transitions
    chosen by the positive and negative transition filters latch into the
    event register, which is read and cleared by its query and by ``*CLS``.
    The enabled event bits are summarized into one bit of the status byte.

    Parameters
    ----------
    name : str
        What the register reports, for logs (``"measurement"``).
    summary_bit : int
        The status byte bit it sets (0 for the 2400's measurement summary,
        3 for questionable, 7 for operation).
    width : int
        Bits of the register (16 for SCPI).

    Attributes
    ----------
    condition, event, enable, positive, negative : int
        The condition, event and enable registers and the transition
        filters; after a preset all positive transitions latch.
    """

    def __init__(self, name: str, summary_bit: int, *, width: int = 16) -> None:
        if not 0 <= summary_bit <= 7 or summary_bit in (2, 4, 5, 6):
            raise ValueError(
                f"status byte bit {summary_bit} is not free for a register"
            )
        self.name = name
        self.summary_mask = 1 << summary_bit
        self.mask = (1 << width) - 1
        self.condition = 0
        self.event = 0
        self.enable = 0
        self.positive = self.mask
        self.negative = 0

    @property
    def summary(self) -> bool:
        """Whether an enabled event is latched."""
        return bool(self.event & self.enable)

    def update(self, condition: int) -> None:
        """Set the condition register; its filtered transitions latch as events."""
        rising = condition & ~self.condition
        falling = self.condition & ~condition
        self.event |= (rising & self.positive) | (falling & self.negative)
        self.condition = condition & self.mask

    def set_bits(self, bits: int) -> None:
        """Set condition bits (a rising edge latches the event)."""
        self.update(self.condition | bits)

    def clear_bits(self, bits: int) -> None:
        """Clear condition bits."""
        self.update(self.condition & ~bits)

    def signal(self, bits: int) -> None:
        """Latch events that have no lasting condition."""
        self.event |= bits & self.mask

    def read_event(self) -> int:
        """Return the event register and clear it."""
        event, self.event = self.event, 0
        return event

    def clear(self) -> None:
        """Clear the event register (``*CLS``)."""
        self.event = 0

    def preset(self) -> None:
        """``:STATus:PRESet``: no bit enabled, positive transitions only."""
        self.enable = 0
        self.positive = self.mask
        self.negative = 0

    def commands(self, prefix: str) -> list[Command]:
        """The SCPI commands of this register under `prefix`.

        Parameters
        ----------
        prefix : str
            The register's node, for example ``":STATus:MEASurement"``.

        Returns
        -------
        list of Command
            ``[:EVENt]?``, ``:ENABle``, ``:CONDition?``, ``:PTRansition``
            and ``:NTRansition``.
        """
        bits = Number(0, self.mask, integer=True)

        def setter(name: str) -> Handler:
            return lambda value: setattr(self, name, value)

        def getter(name: str) -> Handler:
            return lambda: getattr(self, name)

        return [
            Command(f"{prefix}[:EVENt]?", query=self.read_event),
            Command(f"{prefix}:CONDition?", query=getter("condition")),
            *[
                Command(
                    f"{prefix}:{node}",
                    set=setter(name),
                    query=getter(name),
                    params=[bits],
                )
                for node, name in (
                    ("ENABle", "enable"),
                    ("PTRansition", "positive"),
                    ("NTRansition", "negative"),
                )
            ],
        ]


# Instruments.


def _split_program(text: str) -> list[list[str]]:
    """Split input into program messages (LF) and their units (``;``).

    Separators inside quoted strings do not count.
    """
    if '"' not in text and "'" not in text:
        return [message.split(";") for message in text.split("\n")]
    messages: list[list[str]] = []
    units: list[str] = []
    start, quote_char = 0, ""
    for position, char in enumerate(text):
        if quote_char:
            if char == quote_char:
                quote_char = ""
        elif char in "\"'":
            quote_char = char
        elif char == ";":
            units.append(text[start:position])
            start = position + 1
        elif char == "\n":
            units.append(text[start:position])
            messages.append(units)
            units, start = [], position + 1
    units.append(text[start:])
    messages.append(units)
    return messages


_COMMON_HEADER = re.compile(r"\*[A-Za-z][A-Za-z0-9_]*\??")


class ScpiInstrument:
    """Base of the simulated SCPI instruments: the parser and status model.

    A subclass lists its commands in :meth:`commands` and overrides the hooks
    of the common commands it needs (:meth:`reset`, :meth:`trigger`,
    :meth:`self_test`, :meth:`clock_s`).

    Parameters
    ----------
    name : str
        The instrument's name, for logs (``"smu2"``).
    identity : str
        The ``*IDN?`` reply.
    number_format : callable
        Formats float replies (:func:`format_shortest` by default; the 2400
        uses ``nr3_formatter()``).
    error_format : callable
        Formats ``:SYSTem:ERRor[:NEXT]?`` replies
        (:func:`error_reply_classic`, :func:`error_reply_2450`,
        :func:`error_reply_keysight`).
    error_messages : mapping of int to str, optional
        The instrument's own error codes and texts, which may also replace
        standard texts.
    error_queue_size : int
        Entries the error queue holds.
    suffix_ranges : mapping of str to range, optional
        The numeric suffixes each mnemonic accepts (see :class:`CommandTree`).

    Notes
    -----
    ``write`` takes one message (a trailing LF is its terminator; further LFs
    separate messages); ``read`` returns the reply without its LF, or None
    when nothing waits, and then the client times out. The power-on bit PON
    of the standard event status register is set when the instrument is made.
    """

    def __init__(
        self,
        name: str,
        identity: str,
        *,
        number_format: NumberFormat = format_shortest,
        error_format: ErrorFormat = error_reply_classic,
        error_messages: Mapping[int, str] | None = None,
        error_queue_size: int = ERROR_QUEUE_SIZE,
        suffix_ranges: Mapping[str, range] | None = None,
    ) -> None:
        self.name = name
        self.identity = identity
        self.number_format = number_format
        self.error_format = error_format
        self.error_messages = {**STANDARD_ERRORS, **(error_messages or {})}
        self.errors = ErrorQueue(error_queue_size)
        self.suffix_ranges = dict(suffix_ranges or {})
        self.event_status = PON
        self.event_enable = 0
        self.service_enable = 0
        self.registers: list[EventRegister] = []
        self._output: deque[str] = deque()
        self._replies: list[str] = []
        self._tree: CommandTree | None = None
        self._common: dict[str, Command] | None = None

    # Declaration.

    def commands(self) -> Iterable[Command]:
        """The instrument's own commands; a subclass returns its table."""
        return ()

    def builtin_commands(self) -> list[Command]:
        """The commands every instrument of the engine answers.

        The IEEE 488.2 common commands, ``:SYSTem:ERRor[:NEXT]?``,
        ``:SYSTem:ERRor:COUNt?`` and ``:STATus:PRESet``; an instrument's own
        command of the same header replaces one of them.
        """
        byte = Number(0, 255, integer=True)
        return [
            Command("*IDN?", query=lambda: self.identity),
            Command("*RST", set=self.reset),
            Command("*CLS", set=self.clear_status),
            Command("*OPC", set=self.operation_complete, query=lambda: 1),
            Command("*WAI", set=self.wait),
            Command("*ESR?", query=self.read_event_status),
            Command(
                "*ESE",
                set=self._set_event_enable,
                query=lambda: self.event_enable,
                params=[byte],
            ),
            Command("*STB?", query=self.status_byte),
            Command(
                "*SRE",
                set=self._set_service_enable,
                query=lambda: self.service_enable,
                params=[byte],
            ),
            Command("*TRG", set=self.trigger),
            Command("*TST?", query=self.self_test),
            Command(
                ":SYSTem:ERRor[:NEXT]?",
                query=lambda: self.error_format(self.errors.pop()),
            ),
            Command(":SYSTem:ERRor:COUNt?", query=lambda: len(self.errors)),
            Command(":STATus:PRESet", set=self.preset_status),
        ]

    def add_register(self, register: EventRegister) -> EventRegister:
        """Add an event register to the status model and return it.

        Its summary bit joins the status byte and ``*CLS`` clears it. Add
        its commands with ``register.commands(":STATus:<name>")`` in
        :meth:`commands`.
        """
        self.registers.append(register)
        return register

    @property
    def command_tree(self) -> CommandTree:
        """The header tree, built from the declarations on first use."""
        if self._tree is None:
            self._build()
        assert self._tree is not None
        return self._tree

    def _build(self) -> None:
        builtin = self.builtin_commands()
        own = list(self.commands())
        common: dict[str, Command] = {}
        for command in [*builtin, *own]:
            if command.is_common:
                common[command.pattern.removesuffix("?").upper()] = command
        self._common = common
        self._tree = CommandTree(
            [c for c in own if not c.is_common],
            self.suffix_ranges,
            [c for c in builtin if not c.is_common],
        )

    # Messages.

    def write(self, message: str) -> None:
        """Take input from the controller: one or more program messages."""
        log.debug("%s <- %r", self.name, message)
        tree = self.command_tree
        for units in _split_program(message.removesuffix("\n")):
            if len(units) == 1 and not units[0].strip():
                continue
            if self._output:
                self._output.clear()
                self.queue_error(QUERY_INTERRUPTED)
            self._execute(units, tree)

    def read(self) -> str | None:
        """The reply waiting in the output queue (without LF), or None."""
        if self._output:
            reply = self._output.popleft()
            log.debug("%s -> %r", self.name, reply)
            return reply
        return None

    def clear(self) -> None:
        """Device clear: drop the reply waiting; the status is kept."""
        self._output.clear()

    def _execute(self, units: list[str], tree: CommandTree) -> None:
        replies = self._replies = []
        path = ""
        try:
            for unit in units:
                words = unit.split(None, 1)
                if not words:
                    continue
                header = words[0]
                data = words[1] if len(words) > 1 else ""
                if header[0] == "*":
                    self._run_common(header, data)
                    continue
                absolute = header[1:] if header[0] == ":" else path + header
                if not absolute:  # a colon alone
                    raise ScpiError(SYNTAX_ERROR)
                query = absolute[-1] == "?"
                key = absolute[:-1] if query else absolute
                command, suffixes = tree.resolve(key)
                path = key[: key.rfind(":") + 1]
                self._run(command, suffixes, query, data)
        except ScpiError as error:
            self.queue_error(error.code, error.message)
        finally:
            self._replies = []
            if replies:
                self._output.append(";".join(replies))

    def _run_common(self, header: str, data: str) -> None:
        if _COMMON_HEADER.fullmatch(header) is None:
            raise ScpiError(SYNTAX_ERROR)
        name = header.upper()
        query = name[-1] == "?"
        assert self._common is not None
        command = self._common.get(name[:-1] if query else name)
        if command is None:
            raise ScpiError(UNDEFINED_HEADER)
        self._run(command, (), query, data)

    def _run(
        self, command: Command, suffixes: tuple[int, ...], query: bool, data: str
    ) -> None:
        tokens = parse_data(data) if data else []
        if not query:
            if command.set is None:
                raise ScpiError(UNDEFINED_HEADER)
            command.set(*suffixes, *_convert(command.params, tokens))
            return
        if command.query is None:
            raise ScpiError(UNDEFINED_HEADER)
        values = _convert(command.query_params or (), tokens)
        if command.limits is not None:
            if values[0] is not None:
                self._replies.append(self.format_reply(command.limits.limit(values[0])))
                return
            values = []
        value = command.query(*suffixes, *values)
        if command.reply is not None:
            self._replies.append(command.reply(value))
        else:
            self._replies.append(self.format_reply(value))

    def format_reply(self, value: Any) -> str:
        """Format a query's return value.

        A str is sent as it is, a bool as ``1``/``0``, an integer as NR1, a
        real number by :attr:`number_format`, and a list or tuple as its
        elements so formatted, joined by commas.
        """
        kind = value.__class__
        if kind is float:
            return self.number_format(value)
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, Integral):
            return str(int(value))
        if isinstance(value, Real):
            return self.number_format(float(value))
        if isinstance(value, (list, tuple)):
            return ",".join([self.format_reply(item) for item in value])
        raise TypeError(f"{self.name}: cannot format the reply {value!r}")

    # Errors.

    def queue_error(self, code: int, message: str | None = None) -> None:
        """Queue an error and set its bit of the standard event status register.

        Parameters
        ----------
        code : int
            The error number.
        message : str, optional
            The text; without it the instrument's table gives it.
        """
        text = message or self.error_messages.get(code) or "Unknown error"
        log.debug("%s: error %d, %s", self.name, code, text)
        self.errors.push(ErrorEntry(code, text, self.clock_s()))
        self.event_status |= self.error_event_bit(code)

    def error_event_bit(self, code: int) -> int:
        """The standard event status bit an error sets.

        CME for -1xx, EXE for -2xx, DDE for -3xx and for the instrument's own
        positive codes, QYE for -4xx.
        """
        if -199 <= code <= -100:
            return CME
        if -299 <= code <= -200:
            return EXE
        if -399 <= code <= -300 or code > 0:
            return DDE
        if -499 <= code <= -400:
            return QYE
        return 0

    # Status.

    def status_byte(self) -> int:
        """The status byte, with MSS (bit 6) summarizing the enabled bits."""
        status = 0
        for register in self.registers:
            if register.summary:
                status |= register.summary_mask
        if len(self.errors):
            status |= EAV
        if self._output or self._replies:
            status |= MAV
        if self.event_status & self.event_enable:
            status |= ESB
        if status & self.service_enable & ~MSS:
            status |= MSS
        return status

    def read_event_status(self) -> int:
        """``*ESR?``: return the standard event status register and clear it."""
        status, self.event_status = self.event_status, 0
        return status

    def clear_status(self) -> None:
        """``*CLS``: clear the error queue and every event register."""
        self.errors.clear()
        self.event_status = 0
        for register in self.registers:
            register.clear()

    def preset_status(self) -> None:
        """``:STATus:PRESet``: preset the enable and filters of every register."""
        for register in self.registers:
            register.preset()

    def _set_event_enable(self, value: int) -> None:
        self.event_enable = value

    def _set_service_enable(self, value: int) -> None:
        self.service_enable = value & ~MSS

    # Hooks of the common commands.

    def reset(self) -> None:
        """``*RST``: return the settings to their defaults (status is kept)."""

    def operation_complete(self) -> None:
        """``*OPC``: set OPC; every operation has finished when a message ends."""
        self.event_status |= OPC

    def wait(self) -> None:
        """``*WAI``: nothing to wait for; operations finish within their message."""

    def trigger(self) -> None:
        """``*TRG``: a bus trigger; an instrument that takes one overrides this."""

    def self_test(self) -> int:
        """``*TST?``: the self-test result, 0 for passed."""
        return 0

    def clock_s(self) -> float:
        """The time stamped on queued errors, seconds since the Unix epoch."""
        return 0.0


def _convert(params: Sequence[Param], tokens: Sequence[Token]) -> list[Any]:
    """The handler's values for the tokens of one command."""
    values: list[Any] = []
    count = len(tokens)
    for index, param in enumerate(params):
        if isinstance(param, ListOf):
            values.append(param.convert_all(tokens[index:]))
            return values
        if index < count:
            values.append(param.convert(tokens[index]))
        elif param.omitted is REQUIRED:
            raise ScpiError(MISSING_PARAMETER)
        else:
            values.append(param.omitted)
    if count > len(params):
        raise ScpiError(PARAMETER_NOT_ALLOWED)
    return values
