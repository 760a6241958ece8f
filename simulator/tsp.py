"""TSP runtime: Keithley Test Script Processor messages run as sandboxed Lua.

Every simulated TSP instrument owns one :class:`TspRuntime`, a Lua
interpreter (``lupa``, Lua 5.4 when available) whose global environment holds
only safe base functions and the instrument's own objects. Python objects
reach Lua through an attribute filter: an object answers only the names it
lists in ``_lua_public`` (read) and ``_lua_settable`` (write).

An object may also name in ``_lua_static`` the attributes whose values never
change (sub-objects, methods, constants). Lua then sees the object as a proxy
table holding those values, so the most used paths (``smua.source``,
``node[2].smua.measure.i``) cost one crossing into Python instead of one per
dot; every other name still goes through the filter.

A message is one line. ``loadscript [name]`` ... ``endscript`` collects the
lines between into a named script (a global that runs when called);
``loadandrunscript`` ... ``endscript`` runs them at once. The common commands
``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``*OPC``, ``*WAI`` and ``*TRG`` are
answered directly. Any other line is a Lua chunk. As on the instrument, a bad
message gets no reply: a Lua syntax error queues error -285, a runtime error
-286, and a query that failed times out on the client.

:class:`TspInstrument` is the base of the simulated 2600B and 707B: the
identity, the error queue, the output queue, ``localnode`` and, on a TSP-Link
master, the ``node[N]`` tables of the instruments linked to it.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

try:
    import lupa.lua54 as _lua
except ImportError:  # pragma: no cover - older lupa builds without Lua 5.4
    import lupa as _lua  # type: ignore[no-redef]

if TYPE_CHECKING:
    from simulator.bench import Bench

SYNTAX_ERROR = -285
"""Error code of a message that is not valid Lua."""

RUNTIME_ERROR = -286
"""Error code of a chunk that failed while running."""

QUEUE_OVERFLOW = -350
"""Error code that replaces the newest entry of a full error queue."""

PARAMETER_OUT_OF_RANGE = -222
"""Error code of a setting outside the instrument's range; the value is kept."""

ILLEGAL_PARAMETER = -224
"""Error code of a parameter the instrument does not accept (a bad channel)."""

SEVERITY_ERROR = 20
"""Severity reported with every error the simulated instruments queue."""

ERROR_QUEUE_SIZE = 100
"""Entries an error queue holds before it reports an overflow."""

INSTRUCTION_BUDGET = 50_000_000
"""Lua instructions one message may run before it is stopped (error -286)."""

HOOK_INTERVAL = 1_000_000
"""Lua instructions between two checks of the instruction budget."""

MEMORY_LIMIT_BYTES = 256 * 1024 * 1024
"""Memory one instrument's Lua state may allocate."""

HIGH_WATER_BYTES = 3 * MEMORY_LIMIT_BYTES // 4
"""Memory in use after a message above which the sandbox collects its
garbage and, if that is not enough, frees the variables messages made: the
interpreter keeps room to take the next message."""

HEADROOM_BYTES = 64 * 1024 * 1024
"""Memory the interpreter may take beyond :data:`MEMORY_LIMIT_BYTES` while
it frees a full sandbox."""

MESSAGE_LIMIT_CHARS = 1024 * 1024
"""The longest message (or loaded script) the simulated instrument takes; a
longer one is refused with error -363, an input buffer overrun."""

INPUT_OVERRUN = -363
"""Error code of a message longer than the instrument takes."""

PATTERN_STEPS = 100_000_000
"""Steps a Lua pattern may take at worst: a pattern with q quantifiers can take
(n + 1) ** (q + 1) on a string of n characters; beyond this it is refused."""

CHUNK_CACHE_SIZE = 512
"""Compiled chunks kept per instrument, by message text."""

SAFE_GLOBALS = (
    "tostring", "tonumber", "type", "pairs", "ipairs", "next", "select",
    "error", "assert",
)  # fmt: skip
"""Lua base functions copied into the sandbox as they are."""

SAFE_LIBRARIES = ("math", "string", "table")
"""Lua libraries copied (shallowly) into the sandbox."""

_LUA_PRELUDE = """
local sethook, error, pcall, setmetatable = debug.sethook, error, pcall, setmetatable
local pack, unpack, rawget = table.pack, table.unpack, rawget
local interval, abort, pattern_steps = ...
local budget = {ticks = 0, limit = 0, aborted = false}

-- Lua's pattern matcher backtracks in C, where no instruction hook can stop
-- it: a pattern that could take too many steps on its string is refused.
-- The string library is changed in place, so that ("x"):find(...) is checked too.
local gsub_raw, tostring, type = string.gsub, tostring, type
local function tame(name)
  local raw = string[name]
  string[name] = function(s, p, init, plain)
    if type(p) == "string" and not (name == "find" and plain) then
      local n = #tostring(s)
      local _, q = gsub_raw(p, "[%*%+%-%?]", "")
      if q > 0 and (n + 1) ^ (q + 1) > pattern_steps then
        error("pattern too complex for a string of " .. n .. " characters", 2)
      end
    end
    return raw(s, p, init, plain)
  end
end
for _, name in ipairs({"find", "match", "gmatch", "gsub"}) do tame(name) end
string.dump = nil

local function hook()
  local b = budget
  b.ticks = b.ticks + 1
  if b.ticks > b.limit then
    b.aborted = true
    error(abort, 0)
  end
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Runs one chunk under the instruction budget.
local function run(chunk, limit)
  budget.ticks = 0
  budget.limit = limit
  budget.aborted = false
  sethook(hook, "", interval)
  return chunk()
end

-- pcall that cannot swallow the end of the instruction budget.
local function safe_pcall(f, ...)
  local r = pack(pcall(f, ...))
  if budget.aborted then error(abort, 0) end
  return unpack(r, 1, r.n)
end

-- Accepts any attribute, call or assignment, for display and beeper.
local noop
noop = setmetatable({}, {
  __index = function() return noop end,
  __newindex = function() end,
  __call = function() end,
})

-- A table showing an object's fixed values, falling back to the object.
local function make_proxy(static, object, name)
  setmetatable(static, {__index = object})
  local meta = {__index = static, __newindex = object}
  meta.__tostring = function() return name end
  return setmetatable({}, meta)
end

local function make_script(fn, name)
  local call = {__call = function(_, ...) return fn(...) end}
  return setmetatable({name = name, run = fn}, call)
end

return run, safe_pcall, copy, noop, make_script, make_proxy
"""

_PROXIED = "__object"
_LOCATION = re.compile(r"^[^:\n]*:(\d+): ")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BUDGET_MESSAGE = "instruction budget exceeded"


class LuaObject:
    """Base of the Python objects TSP code may reach.

    A subclass lists the names Lua may read in ``_lua_public`` and the ones it
    may assign in ``_lua_settable``; every other name, and every name starting
    with ``_``, is refused. ``_lua_static`` (a subset of ``_lua_public``)
    lists the attributes whose values never change, which Lua reads from a
    proxy table without calling into Python.
    """

    _lua_public: ClassVar[frozenset[str]] = frozenset()
    _lua_settable: ClassVar[frozenset[str]] = frozenset()
    _lua_static: ClassVar[frozenset[str]] = frozenset()


def python_object(value: Any) -> Any:
    """The Python object behind a value from Lua (a proxy table or itself)."""
    if _lua.lua_type(value) == "table":
        inner = value[_PROXIED]
        if inner is not None:
            return inner
    return value


def _attribute_filter(obj: object, name: object, is_setting: bool) -> object:
    """Let Lua reach only the names an object declares."""
    try:
        allowed = obj._lua_settable if is_setting else obj._lua_public  # type: ignore[attr-defined]
    except AttributeError:
        raise AttributeError(f"'{name}' is not accessible") from None
    if name in allowed:
        return name
    if is_setting and name in getattr(obj, "_lua_public", ()):
        raise AttributeError(f"'{name}' is read-only")
    raise AttributeError(f"'{name}' does not exist")


def format_number(value: float, precision: int = 6) -> str:
    """Format a number the way TSP ``print`` does: ``4.00000e+00``.

    Parameters
    ----------
    value : float
        The number.
    precision : int
        Significant digits (``format.asciiprecision``, 6 by default).
    """
    return f"{value:.{precision - 1}e}"


class ErrorQueue(LuaObject):
    """An instrument's error queue, as ``errorqueue`` in TSP.

    Entries are ``(code, message, severity, node)``, oldest first.
    """

    _lua_public = frozenset({"count", "next", "clear"})
    _lua_static = frozenset({"next", "clear"})

    def __init__(self, log: logging.Logger, name: str) -> None:
        self._entries: deque[tuple[int, str, int, int]] = deque()
        self._log = log
        self._name = name

    @property
    def count(self) -> int:
        """Number of entries waiting."""
        return len(self._entries)

    def next(self) -> tuple[int, str, int, int]:
        """Remove and return the oldest entry, or the empty-queue entry."""
        if self._entries:
            return self._entries.popleft()
        return (0, "Queue Is Empty", 0, 0)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def push(self, code: int, message: str, node: int = 0) -> None:
        """Queue an error; a full queue keeps its size and reports an overflow."""
        self._log.debug("%s: error %d queued: %s", self._name, code, message)
        if len(self._entries) >= ERROR_QUEUE_SIZE:
            self._entries[-1] = (QUEUE_OVERFLOW, "Queue overflow", SEVERITY_ERROR, 0)
            return
        self._entries.append((code, message, SEVERITY_ERROR, node))

    def entries(self) -> list[tuple[int, str, int, int]]:
        """A copy of the waiting entries, for tests and logs."""
        return list(self._entries)


class TspRuntime:
    """One sandboxed Lua interpreter running an instrument's messages.

    Parameters
    ----------
    instrument : TspInstrument
        The instrument whose objects the sandbox holds and whose error and
        output queues the runtime fills.
    budget : int
        Lua instructions one message may run.
    """

    def __init__(self, instrument: TspInstrument, budget: int = INSTRUCTION_BUDGET):
        self._instrument = instrument
        self._ticks = max(1, budget // HOOK_INTERVAL)
        self._lua = _lua.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_attribute_filter,
            max_memory=MEMORY_LIMIT_BYTES,
        )
        lua_globals = self._lua.globals()
        self._load = lua_globals.load
        self._gc = lua_globals.collectgarbage
        prelude = self._lua.execute(
            _LUA_PRELUDE, HOOK_INTERVAL, _BUDGET_MESSAGE, PATTERN_STEPS
        )
        self._run, safe_pcall, copy, self.noop, self._make_script, self._proxy = prelude
        self.env = self._sandbox(lua_globals, safe_pcall, copy)
        self._builtins = set(self.env.keys())  # what a reclaim keeps
        self._proxies: dict[int, tuple[Any, object]] = {}
        self._chunks: OrderedDict[str, Any] = OrderedDict()
        self._script_name: str | None = None
        self._script_lines: list[str] | None = None
        self._script_runs = False

    def _sandbox(self, lua_globals: Any, safe_pcall: Any, copy: Any) -> Any:
        env = self._lua.table()
        for name in SAFE_GLOBALS:
            env[name] = lua_globals[name]
        for name in SAFE_LIBRARIES:
            env[name] = copy(lua_globals[name])
        env.string.dump = None
        env.pcall = safe_pcall
        env.unpack = env.table.unpack
        # Lua 5.0 names that TSP scripts written for the instruments use.
        env.table.getn = self._lua.eval("function(t) return #t end")
        env.math.pow = self._lua.eval("function(a, b) return a ^ b end")
        env.print = self.print
        env._G = env
        return env

    # Values the instrument puts into the sandbox.

    def define(self, name: str, value: object) -> None:
        """Put a global into the sandbox."""
        self.env[name] = self.lua_value(value)
        self._builtins.add(name)

    def table(self, mapping: dict[Any, Any]) -> Any:
        """A Lua table with the given keys and values (objects as Lua sees them)."""
        return self._lua.table_from({k: self.lua_value(v) for k, v in mapping.items()})

    def lua_value(self, value: object) -> Any:
        """What Lua sees of a Python value: a proxy table for an object with
        fixed attributes (made once per object), else the value itself."""
        static = getattr(value, "_lua_static", None)
        if not static:
            return value
        known = self._proxies.get(id(value))
        if known is not None:
            return known[0]
        fixed = {name: self.lua_value(getattr(value, name)) for name in static}
        fixed[_PROXIED] = value
        proxy = self._proxy(self._lua.table_from(fixed), value, repr(value))
        self._proxies[id(value)] = (proxy, value)  # the object stays alive
        return proxy

    # Output.

    def format_value(self, value: object) -> str:
        """Format one value as TSP ``print`` shows it."""
        if type(value) is float:
            return format_number(value, self._instrument.ascii_precision)
        if value is None:
            return "nil"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, (int, float)):
            return format_number(value, self._instrument.ascii_precision)
        if isinstance(value, str):
            return value
        return str(python_object(value))

    def print(self, *values: object) -> None:
        """TSP ``print``: one reply line, values separated by TAB; a line feed
        in the text ends a line, as it does on the bus."""
        text = "\t".join([self.format_value(v) for v in values])
        if "\n" in text:
            for line in text.split("\n"):
                self._instrument.reply(line)
            return
        self._instrument.reply(text)

    # Messages.

    def execute(self, message: str) -> None:
        """Run one message: a script line, a common command or a Lua chunk.

        A chunk that needs more than the state's :data:`MEMORY_LIMIT_BYTES`
        stops with error -286 (not enough memory). If the state stays above
        :data:`HIGH_WATER_BYTES` after a message, the sandbox collects its
        garbage and, if that is not enough, frees the scripts and variables
        made by messages (the instrument's own objects stay), so that the
        next message runs.
        """
        if len(message) > MESSAGE_LIMIT_CHARS:
            self._error(INPUT_OVERRUN, "Input buffer overrun: message too long")
            return
        try:
            line = message.rstrip("\r\n")
            if self._script_lines is not None:
                self._collect(line)
                return
            head = line.lstrip()
            if head.startswith("*"):
                if self._instrument.common_command(head.strip()):
                    return
            elif head.startswith(("loadscript", "loadandrunscript")):
                if self._begin_script(head):
                    return
            self._run_chunk(line)
        finally:
            if (self._lua.get_memory_used() or 0) > HIGH_WATER_BYTES:
                self._reclaim()

    def _reclaim(self) -> None:
        lua = self._lua
        lua.set_max_memory(MEMORY_LIMIT_BYTES + HEADROOM_BYTES)  # room to work in
        try:
            self._gc("collect")
            if (lua.get_memory_used() or 0) <= HIGH_WATER_BYTES:
                return
            dropped = [n for n in list(self.env.keys()) if n not in self._builtins]
            for name in dropped:
                self.env[name] = None
            self._chunks.clear()
            self._script_lines = self._script_name = None
            self._gc("collect")
            self._instrument.log.warning(
                "%s: Lua memory full: freed %d variables and scripts made by messages",
                self._instrument.name,
                len(dropped),
            )
        finally:
            lua.set_max_memory(MEMORY_LIMIT_BYTES)

    def _begin_script(self, head: str) -> bool:
        words = head.split()
        if words[0] not in ("loadscript", "loadandrunscript") or len(words) > 2:
            return False
        name = words[1] if len(words) == 2 else None
        if name is not None and not _IDENTIFIER.match(name):
            self._error(SYNTAX_ERROR, f"TSP Syntax error: bad script name '{name}'")
            return True
        self._script_name = name
        self._script_lines = []
        self._script_runs = words[0] == "loadandrunscript"
        return True

    def _collect(self, line: str) -> None:
        if line.strip() != "endscript":
            assert self._script_lines is not None
            self._script_lines.append(line)
            return
        text = "\n".join(self._script_lines or [])
        name, runs = self._script_name, self._script_runs
        self._script_lines, self._script_name = None, None
        if len(text) > MESSAGE_LIMIT_CHARS:
            self._error(INPUT_OVERRUN, "Input buffer overrun: script too long")
            return
        chunk = self._compile(text, name or "script")
        if chunk is None:
            return
        if name is not None:
            self.env[name] = self._make_script(chunk, name)
        if runs:
            self._call(chunk)

    def _run_chunk(self, text: str) -> None:
        chunks = self._chunks
        chunk = chunks.get(text)
        if chunk is None:
            chunk = self._compile(text, "TSP")
            if chunk is None:
                return
            chunks[text] = chunk
            if len(chunks) > CHUNK_CACHE_SIZE:
                chunks.popitem(last=False)
        else:
            chunks.move_to_end(text)
        self._call(chunk)

    def _compile(self, text: str, name: str) -> Any:
        try:
            loaded = self._load(text, "=" + name, "t", self.env)
        except UnicodeDecodeError:  # Lua's message cut a character of the text in two
            self._error(SYNTAX_ERROR, "TSP Syntax error: malformed characters")
            return None
        if isinstance(loaded, tuple):  # nil and the message
            self._error(SYNTAX_ERROR, f"TSP Syntax error{_located(str(loaded[1]))}")
            return None
        return loaded

    def _call(self, chunk: Any) -> None:
        try:
            self._run(chunk, self._ticks)
        except _lua.LuaMemoryError:
            self._error(RUNTIME_ERROR, "TSP Runtime error: not enough memory")
        except _lua.LuaError as exc:
            first = str(exc).split("\n", 1)[0]
            self._error(RUNTIME_ERROR, f"TSP Runtime error{_located(first)}")
        except Exception as exc:  # a Python error inside an instrument object
            self._error(RUNTIME_ERROR, f"TSP Runtime error: {exc}")

    def _error(self, code: int, message: str) -> None:
        self._instrument.queue_error(code, message)


def _located(problem: str) -> str:
    """Turn ``TSP:3: message`` into `` at line 3: message``."""
    match = _LOCATION.match(problem)
    if match:
        return f" at line {match.group(1)}: {problem[match.end() :]}"
    return f": {problem}"


class NodeView(LuaObject):
    """What ``localnode`` and ``node[N]`` show of one instrument."""

    _BASE_NAMES = frozenset(
        {
            "model", "serialno", "revision", "description", "linefreq",
            "errorqueue", "reset", "prompts", "prompts4882", "showerrors",
        }
    )  # fmt: skip
    _lua_settable = frozenset(
        {"linefreq", "description", "prompts", "prompts4882", "showerrors"}
    )

    def __init__(self, instrument: TspInstrument) -> None:
        self._instrument = instrument
        self._objects = instrument.node_objects()
        self._lua_public = self._BASE_NAMES | frozenset(self._objects)  # type: ignore[misc]
        self._lua_static = frozenset(self._objects) | {  # type: ignore[misc]
            "model", "serialno", "revision", "errorqueue", "reset",
        }  # fmt: skip
        self.description = f"{instrument.model} {instrument.name}"
        self.prompts = 0
        self.prompts4882 = 1
        self.showerrors = 0

    def __getattr__(self, name: str) -> Any:
        objects = self.__dict__.get("_objects", {})
        if name in objects:
            return objects[name]
        raise AttributeError(name)

    @property
    def model(self) -> str:
        """The model number, for example ``"2636B"``."""
        return self._instrument.model

    @property
    def serialno(self) -> str:
        """The serial number."""
        return self._instrument.serial

    @property
    def revision(self) -> str:
        """The firmware revision."""
        return self._instrument.revision

    @property
    def errorqueue(self) -> ErrorQueue:
        """The instrument's own error queue."""
        return self._instrument.errorqueue

    @property
    def linefreq(self) -> float:
        """The power line frequency, Hz (50 or 60)."""
        return self._instrument.line_frequency_hz

    @linefreq.setter
    def linefreq(self, value: float) -> None:
        if value not in (50, 60):
            self._instrument.out_of_range("localnode.linefreq", value, "50 or 60")
            return
        self._instrument.line_frequency_hz = float(value)

    def reset(self) -> None:
        """Reset this instrument only."""
        self._instrument.reset()

    def __repr__(self) -> str:
        return f"node[{self._instrument.node}]"


class TspLink(LuaObject):
    """The ``tsplink`` object of a TSP-Link master (always online)."""

    _lua_public = frozenset({"state", "node", "reset", "initialize"})

    def __init__(self, instrument: TspInstrument) -> None:
        self._instrument = instrument

    @property
    def state(self) -> str:
        """The link state, ``"online"``."""
        return "online"

    @property
    def node(self) -> int:
        """This instrument's node number."""
        return self._instrument.node

    def reset(self, expected: int | None = None) -> int:
        """Find the nodes again; returns how many there are."""
        return 1 + len(self._instrument.linked)

    initialize = reset


class Timer(LuaObject):
    """The ``timer`` object: seconds of bench time since its last reset."""

    _lua_public = frozenset({"reset", "measure"})
    _lua_static = _lua_public

    def __init__(self, instrument: TspInstrument) -> None:
        self._instrument = instrument
        self._start_s = 0.0
        self.measure = _TimerMeasure(self)

    def reset(self) -> None:
        """Start counting from now."""
        self._start_s = self._instrument.bench.now_s

    def elapsed_s(self) -> float:
        return self._instrument.bench.now_s - self._start_s


class _TimerMeasure(LuaObject):
    _lua_public = frozenset({"t"})
    _lua_static = _lua_public

    def __init__(self, timer: Timer) -> None:
        self._timer = timer

    def t(self) -> float:
        """Seconds since ``timer.reset()``."""
        return self._timer.elapsed_s()


class TspInstrument:
    """Base of the simulated TSP instruments.

    Parameters
    ----------
    name : str
        The instrument's name in the station file (``"smu1"``).
    model : str
        The model number (``"2636B"``, ``"707B"``).
    bench : Bench
        The bench whose clock and circuit the instrument works on.
    revision : str
        Firmware revision in the identity.
    log : logging.Logger
        Where the instrument's traffic goes, at DEBUG.
    node : int
        The instrument's TSP-Link node number (1 for a master).

    Notes
    -----
    ``write`` takes one message; ``read`` returns the oldest reply without
    its LF terminator, or None when nothing waits (the client then times
    out). Binary replies (``printbuffer`` in REAL32) are strings of latin-1
    characters, one per byte.
    """

    manufacturer = "Keithley Instruments Inc."

    def __init__(
        self,
        name: str,
        model: str,
        bench: Bench,
        revision: str,
        log: logging.Logger,
        node: int = 1,
    ) -> None:
        self.name = name
        self.model = model
        self.bench = bench
        self.revision = revision
        self.serial = str(4_000_000 + zlib.crc32(name.encode()) % 1_000_000)
        self.log = log
        self.node = node
        self.line_frequency_hz = bench.timing.line_frequency_hz
        self.ascii_precision = 6
        self.errorqueue = ErrorQueue(log, name)
        self.master: TspInstrument | None = None
        self.linked: dict[int, TspInstrument] = {}
        self.timer = Timer(self)
        self._replies: deque[str] = deque()
        self._talking = False
        self._runtime: TspRuntime | None = None
        self._view: NodeView | None = None

    # Identity and structure.

    @property
    def identity(self) -> str:
        """The ``*IDN?`` reply."""
        return (
            f"{self.manufacturer}, Model {self.model}, {self.serial}, {self.revision}"
        )

    @property
    def view(self) -> NodeView:
        """The instrument as ``localnode`` / ``node[N]`` shows it."""
        if self._view is None:
            self._view = NodeView(self)
        return self._view

    def node_objects(self) -> dict[str, object]:
        """The instrument's own objects (``smua``, ``channel``), by global name."""
        return {}

    def instrument_globals(self) -> dict[str, object]:
        """Globals only the local sandbox has (``printbuffer``, ``format``)."""
        return {}

    def link(self, node: TspInstrument) -> None:
        """Put another instrument on this master's TSP-Link."""
        if node.node in self.linked or node.node == self.node:
            raise ValueError(f"{self.name}: TSP-Link node {node.node} is taken")
        node.master = self
        self.linked[node.node] = node
        if self._runtime is not None:
            self._runtime.define("node", self._node_table(self._runtime))

    @property
    def runtime(self) -> TspRuntime:
        """The instrument's Lua sandbox, made on first use."""
        if self._runtime is None:
            self._runtime = self._make_runtime()
        return self._runtime

    def _make_runtime(self) -> TspRuntime:
        runtime = TspRuntime(self)
        objects: dict[str, object] = {
            **self.node_objects(),
            **self.instrument_globals(),
            "errorqueue": self.errorqueue,
            "localnode": self.view,
            "reset": self.reset_all,
            "delay": self.delay,
            "waitcomplete": _nothing,
            "opc": _nothing,
            "timer": self.timer,
            "tsplink": TspLink(self),
            "beeper": runtime.noop,
            "display": runtime.noop,
        }
        for name, value in objects.items():
            runtime.define(name, value)
        runtime.define("node", self._node_table(runtime))
        return runtime

    def _node_table(self, runtime: TspRuntime) -> Any:
        views: dict[int, NodeView] = {n: node.view for n, node in self.linked.items()}
        views[self.node] = self.view
        return runtime.table(views)

    # Messages.

    def write(self, message: str) -> None:
        """Take one message, as the instrument's command interface does."""
        self.log.debug("%s <- %r", self.name, message)
        self.bench.begin_message()
        self._talking = True
        try:
            self.runtime.execute(message)
        finally:
            self._talking = False

    def read(self) -> str | None:
        """The oldest waiting reply (without LF), or None."""
        if self._replies:
            return self._replies.popleft()
        return None

    def reply(self, text: str) -> None:
        """Queue one reply line."""
        self.log.debug("%s -> %r", self.name, text)
        self._replies.append(text)

    def clear(self) -> None:
        """Device clear: drop pending replies and any script being loaded."""
        self._replies.clear()

    def common_command(self, command: str) -> bool:
        """Answer an IEEE 488.2 common command; False if it is not one."""
        word = command.upper()
        if word == "*IDN?":
            self.reply(self.identity)
        elif word == "*RST":
            self.reset_all()
        elif word == "*CLS":
            self.errorqueue.clear()
        elif word == "*OPC?":
            self.reply("1")
        elif word in ("*OPC", "*WAI", "*TRG"):
            pass
        else:
            return False
        return True

    # Errors.

    def queue_error(self, code: int, message: str) -> None:
        """Queue an error.

        An error of a TSP-Link node that its master's code caused goes to the
        master's queue, with the node's number.
        """
        if self.master is not None and not self._talking:
            self.master.errorqueue.push(code, message, self.node)
        else:
            self.errorqueue.push(code, message, 0)

    def out_of_range(self, setting: str, value: object, allowed: str) -> None:
        """Queue the error of a setting outside its range (the value is kept)."""
        self.queue_error(
            PARAMETER_OUT_OF_RANGE,
            f"Parameter data out of range: {setting} = {value} (allowed {allowed})",
        )

    # Behaviour shared by every TSP instrument.

    def delay(self, seconds: float) -> None:
        """TSP ``delay(s)``: let bench time pass."""
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"delay: {seconds!r} is not a time in seconds")
        self.bench.advance(float(seconds))

    def reset(self) -> None:
        """Return this instrument's settings to their defaults."""
        self.ascii_precision = 6

    def reset_all(self) -> None:
        """TSP ``reset()``: this instrument and every node on its TSP-Link."""
        self.reset()
        for node in self.linked.values():
            node.reset()

    def power_cycle(self) -> None:
        """Come back as after power-on: settings at their defaults (outputs
        off, relays open), error and reply queues empty, and the scripts and
        variables of the Lua sandbox gone."""
        self.reset()
        self.errorqueue.clear()
        self._replies.clear()
        self._runtime = None
        self.log.warning("%s: power cycled", self.name)


def _nothing(*_: object) -> None:
    return None


def iterate_lua_values(table: Any, count: int | None = None) -> Iterable[Any]:
    """The values ``t[1]``, ``t[2]``, ... of a Lua list (the first `count`)."""
    if count is None:
        count = len(table)
    return (table[i] for i in range(1, count + 1))
