"""Simulated Keithley 2600B System SourceMeter (2601B ... 2636B), in TSP.

The instrument holds ``smua`` (and ``smub`` on two-channel models) with their
``source``, ``measure`` and ``nvbuffer1`` / ``nvbuffer2`` objects, the
globals ``format``, ``status``, ``printbuffer``, ``printnumber``, and the
factory sweep and pulse functions. Levels, limits and outputs go to the bench;
every reading is a :meth:`simulator.bench.Bench.measure` of the bench's
circuit and charges integration time (``nplc / linefreq``) plus an overhead
to the bench clock.

A setting outside the model's range queues error -222 ("Parameter data out
of range") and leaves the value unchanged; the rest of the message runs.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.tsp import (
    LuaObject,
    TspInstrument,
    format_number,
    iterate_lua_values,
    python_object,
)

if TYPE_CHECKING:
    from simulator.bench import Bench

log = logging.getLogger("simulator.k2600")

REVISION = "3.2.2"
"""Firmware revision in the identity."""

OVERFLOW = 9.91e37
"""Reading of a measurement beyond a fixed measure range."""

NPLC_RANGE = (0.001, 25.0)
"""Accepted integration times, power-line cycles."""

MAX_COUNT = 60_000
"""Largest ``measure.count`` and sweep length."""

RANGE_HEADROOM = 1.01
"""A level may exceed its source range by this factor."""


@dataclass(frozen=True)
class SmuRating:
    """The channels and ranges of one 2600B model, from its manual.

    Attributes
    ----------
    channels : tuple of str
        ``("smua",)`` or ``("smua", "smub")``.
    v_ranges_v, i_ranges_a : tuple of float
        Source and measure ranges, V and A, lowest first.
    limitv_v, limiti_a : float
        Voltage and current limits after reset, V and A.
    limiti_min_a, limiti_max_a : float
        The range of the current limit, A.
    """

    channels: tuple[str, ...]
    v_ranges_v: tuple[float, ...]
    i_ranges_a: tuple[float, ...]
    limitv_v: float
    limiti_a: float
    limiti_min_a: float
    limiti_max_a: float


_DECADES_100NA = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
_260X = dict(
    v_ranges_v=(0.1, 1.0, 6.0, 40.0),
    i_ranges_a=(*_DECADES_100NA, 3.0),
    limitv_v=40.0,
    limiti_a=1.0,
    limiti_min_a=1e-8,
    limiti_max_a=3.0,
)
_261X = dict(
    v_ranges_v=(0.2, 2.0, 20.0, 200.0),
    i_ranges_a=(*_DECADES_100NA, 1.5),
    limitv_v=20.0,
    limiti_a=0.1,
    limiti_min_a=1e-8,
    limiti_max_a=3.0,
)
_263X = dict(
    v_ranges_v=(0.2, 2.0, 20.0, 200.0),
    i_ranges_a=(1e-9, 1e-8, *_DECADES_100NA, 1.5),
    limitv_v=20.0,
    limiti_a=0.1,
    limiti_min_a=1e-10,
    limiti_max_a=1.5,
)
_ONE, _TWO = ("smua",), ("smua", "smub")

RATINGS: dict[str, SmuRating] = {
    "2601B": SmuRating(_ONE, **_260X),  # type: ignore[arg-type]
    "2602B": SmuRating(_TWO, **_260X),  # type: ignore[arg-type]
    "2604B": SmuRating(_TWO, **_260X),  # type: ignore[arg-type]
    "2611B": SmuRating(_ONE, **_261X),  # type: ignore[arg-type]
    "2612B": SmuRating(_TWO, **_261X),  # type: ignore[arg-type]
    "2614B": SmuRating(_TWO, **_261X),  # type: ignore[arg-type]
    "2634B": SmuRating(_TWO, **_263X),  # type: ignore[arg-type]
    "2635B": SmuRating(_ONE, **_263X),  # type: ignore[arg-type]
    "2636B": SmuRating(_TWO, **_263X),  # type: ignore[arg-type]
}
"""Ratings of every 2600B model, by model number."""


def _number(value: object, setting: str) -> float:
    """A Lua number as a float; anything else is a runtime error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{setting}: {value!r} is not a number")
    return float(value)


def _integer(value: object, setting: str) -> int:
    number = _number(value, setting)
    if not number.is_integer():
        raise TypeError(f"{setting}: {value!r} is not a whole number")
    return int(number)


def _range_for(value: float, ranges: tuple[float, ...]) -> float | None:
    """The lowest range that holds `value`, or None."""
    magnitude = abs(value)
    for top in ranges:
        if magnitude <= top * (1 + 1e-9):
            return top
    return None


class _Column:
    """One column of a reading buffer, ``readings[i]`` with i from 1."""

    __slots__ = ("values",)

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def __getitem__(self, index: object) -> float | None:
        if isinstance(index, float) and index.is_integer():
            index = int(index)
        if isinstance(index, int) and not isinstance(index, bool):
            if 1 <= index <= len(self.values):
                return self.values[index - 1]
            return None
        raise TypeError(f"buffer index {index!r} is not a number")

    def __len__(self) -> int:
        return len(self.values)


class NvBuffer(LuaObject):
    """A reading buffer, ``smua.nvbuffer1`` or ``smua.nvbuffer2``."""

    _lua_public = frozenset(
        {
            "n", "readings", "sourcevalues", "timestamps", "clear", "capacity",
            "appendmode", "collectsourcevalues", "collecttimestamps",
            "basetimestamp",
        }
    )  # fmt: skip
    _lua_settable = frozenset(
        {"appendmode", "collectsourcevalues", "collecttimestamps"}
    )
    _lua_static = frozenset(
        {"readings", "sourcevalues", "timestamps", "clear", "capacity"}
    )
    capacity = MAX_COUNT

    def __init__(self) -> None:
        self.readings = _Column([])
        self.sourcevalues = _Column([])
        self.timestamps = _Column([])
        self.appendmode = 0
        self.collectsourcevalues = 0
        self.collecttimestamps = 1
        self.basetimestamp = 0.0

    @property
    def n(self) -> int:
        """Number of readings stored."""
        return len(self.readings.values)

    def clear(self) -> None:
        """Empty the buffer."""
        for column in (self.readings, self.sourcevalues, self.timestamps):
            column.values.clear()

    def append(self, reading: float, source_value: float, time_s: float) -> None:
        """Store one reading with its source value and time."""
        if not self.readings.values:
            self.basetimestamp = time_s
        self.readings.values.append(reading)
        self.sourcevalues.values.append(source_value)
        self.timestamps.values.append(time_s - self.basetimestamp)

    def extend(
        self, readings: list[float], source_value: float, times_s: list[float]
    ) -> None:
        """Store readings taken at one source value, with their times."""
        if not readings:
            return
        if not self.readings.values:
            self.basetimestamp = times_s[0]
        base = self.basetimestamp
        self.readings.values.extend(readings)
        self.sourcevalues.values.extend([source_value] * len(readings))
        self.timestamps.values.extend([time_s - base for time_s in times_s])


class Source(LuaObject):
    """``smuX.source``: function, levels, limits, ranges and the output."""

    _lua_public = frozenset(
        {
            "func", "levelv", "leveli", "limitv", "limiti", "rangev", "rangei",
            "autorangev", "autorangei", "lowrangev", "lowrangei", "output",
            "compliance", "delay", "offmode",
        }
    )  # fmt: skip
    _lua_settable = _lua_public - {"compliance"}

    def __init__(self, smu: Smu) -> None:
        self._smu = smu
        self._bench = smu.bench
        self._key = smu.key
        self._state = smu.state
        self.reset()

    def reset(self) -> None:
        """Defaults after ``reset()``."""
        rating = self._smu.rating
        self._rangev = rating.v_ranges_v[0]
        self._rangei = rating.i_ranges_a[0]
        self._autorangev = 1
        self._autorangei = 1
        self.lowrangev = rating.v_ranges_v[0]
        self.lowrangei = rating.i_ranges_a[0]
        self._output = 0
        self._delay = -1.0
        self._offmode = 0
        self._bench.set_source(
            self._key,
            output=False,
            volts=True,
            level_v=0.0,
            level_a=0.0,
            limit_v=rating.limitv_v,
            limit_a=rating.limiti_a,
        )

    def _error(self, setting: str, value: object, allowed: str) -> None:
        self._smu.instrument.out_of_range(
            f"{self._smu.name}.source.{setting}", value, allowed
        )

    @property
    def func(self) -> int:
        """Source function: 1 DC volts, 0 DC amps."""
        return 1 if self._state.volts else 0

    @func.setter
    def func(self, value: object) -> None:
        code = _integer(value, "source.func")
        if code not in (0, 1):
            self._error("func", value, "0 or 1")
            return
        self._bench.set_source(self._key, volts=code == 1)

    @property
    def levelv(self) -> float:
        """Voltage level, V."""
        return self._state.level_v

    @levelv.setter
    def levelv(self, value: object) -> None:
        level = value if type(value) is float else _number(value, "source.levelv")
        top = self._top_v()
        if abs(level) > top * RANGE_HEADROOM:
            self._error("levelv", value, f"|V| <= {top * RANGE_HEADROOM:g} V")
            return
        if self._autorangev:
            ranges = self._smu.rating.v_ranges_v
            self._rangev = max(_range_for(level, ranges) or top, self.lowrangev)
        self._bench.set_source(self._key, level_v=level)

    def _top_v(self) -> float:
        """The highest voltage level the present range takes (before headroom), V."""
        return self._smu.rating.v_ranges_v[-1] if self._autorangev else self._rangev

    def takes_levelv(self, level_v: float) -> bool:
        """Whether setting `level_v` would be accepted (no error queued)."""
        return abs(level_v) <= self._top_v() * RANGE_HEADROOM

    @property
    def leveli(self) -> float:
        """Current level, A."""
        return self._state.level_a

    @leveli.setter
    def leveli(self, value: object) -> None:
        level = _number(value, "source.leveli")
        ranges = self._smu.rating.i_ranges_a
        top = ranges[-1] if self._autorangei else self._rangei
        if abs(level) > top * RANGE_HEADROOM:
            self._error("leveli", value, f"|I| <= {top * RANGE_HEADROOM:g} A")
            return
        if self._autorangei:
            self._rangei = max(_range_for(level, ranges) or top, self.lowrangei)
        self._bench.set_source(self._key, level_a=level)

    @property
    def limitv(self) -> float:
        """Voltage limit (compliance of the current source), V."""
        return self._state.limit_v

    @limitv.setter
    def limitv(self, value: object) -> None:
        limit = _number(value, "source.limitv")
        top = self._smu.rating.v_ranges_v[-1]
        if not 0 < limit <= top:
            self._error("limitv", value, f"0 < V <= {top:g} V")
            return
        self._bench.set_source(self._key, limit_v=limit)

    @property
    def limiti(self) -> float:
        """Current limit (compliance of the voltage source), A."""
        return self._state.limit_a

    @limiti.setter
    def limiti(self, value: object) -> None:
        limit = _number(value, "source.limiti")
        low, high = self._smu.rating.limiti_min_a, self._smu.rating.limiti_max_a
        if not low <= limit <= high:
            self._error("limiti", value, f"{low:g} A <= I <= {high:g} A")
            return
        self._bench.set_source(self._key, limit_a=limit)

    def _set_range(
        self, which: str, value: object, ranges: tuple[float, ...]
    ) -> float | None:
        top = _range_for(_number(value, f"source.{which}"), ranges)
        if top is None:
            self._error(which, value, f"up to {ranges[-1]:g}")
        return top

    @property
    def rangev(self) -> float:
        """Voltage source range, V (setting one turns autorange off)."""
        return self._rangev

    @rangev.setter
    def rangev(self, value: object) -> None:
        top = self._set_range("rangev", value, self._smu.rating.v_ranges_v)
        if top is not None:
            self._rangev, self._autorangev = top, 0

    @property
    def rangei(self) -> float:
        """Current source range, A (setting one turns autorange off)."""
        return self._rangei

    @rangei.setter
    def rangei(self, value: object) -> None:
        top = self._set_range("rangei", value, self._smu.rating.i_ranges_a)
        if top is not None:
            self._rangei, self._autorangei = top, 0

    @property
    def autorangev(self) -> int:
        """Voltage source autorange: 1 on, 0 off."""
        return self._autorangev

    @autorangev.setter
    def autorangev(self, value: object) -> None:
        self._autorangev = self._switch("autorangev", value, self._autorangev)

    @property
    def autorangei(self) -> int:
        """Current source autorange: 1 on, 0 off."""
        return self._autorangei

    @autorangei.setter
    def autorangei(self, value: object) -> None:
        self._autorangei = self._switch("autorangei", value, self._autorangei)

    def _switch(self, setting: str, value: object, present: int) -> int:
        code = _integer(value, f"source.{setting}")
        if code not in (0, 1):
            self._error(setting, value, "0 or 1")
            return present
        return code

    @property
    def output(self) -> int:
        """Output state: 1 on, 0 off, 2 off in high impedance."""
        return self._output

    @output.setter
    def output(self, value: object) -> None:
        code = _integer(value, "source.output")
        if code not in (0, 1, 2):
            self._error("output", value, "0, 1 or 2")
            return
        self._output = code
        self._bench.set_source(self._key, output=code == 1)

    @property
    def compliance(self) -> bool:
        """Whether the source is held at its limit (read-only)."""
        return self._bench.compliance(self._key)

    @property
    def delay(self) -> float:
        """Source delay after a level change in a sweep, s (-1 auto, 0 off)."""
        return self._delay

    @delay.setter
    def delay(self, value: object) -> None:
        delay = _number(value, "source.delay")
        if delay < 0 and delay != -1:
            self._error("delay", value, "-1 (auto), 0 or a time in s")
            return
        self._delay = delay

    @property
    def offmode(self) -> int:
        """Output-off mode: 0 normal, 1 high impedance, 2 zero (all open here)."""
        return self._offmode

    @offmode.setter
    def offmode(self, value: object) -> None:
        code = _integer(value, "source.offmode")
        if code not in (0, 1, 2):
            self._error("offmode", value, "0, 1 or 2")
            return
        self._offmode = code

    def delay_s(self) -> float:
        """The source delay charged at each sweep point, s (auto counts as 0)."""
        return max(self._delay, 0.0)

    def set_level(self, level: float) -> None:
        """Set the level of the present function, as a sweep does."""
        if self._state.volts:
            self.levelv = level
        else:
            self.leveli = level


class Measure(LuaObject):
    """``smuX.measure``: integration, ranges and the reading functions."""

    _lua_public = frozenset(
        {
            "nplc", "count", "autozero", "rangei", "rangev", "autorangei",
            "autorangev", "lowrangei", "lowrangev", "delay", "i", "v", "iv",
            "r", "p",
        }
    )  # fmt: skip
    _lua_settable = _lua_public - {"i", "v", "iv", "r", "p"}
    _lua_static = frozenset({"i", "v", "iv", "r", "p"})

    def __init__(self, smu: Smu) -> None:
        self._smu = smu
        self._bench = smu.bench
        self._key = smu.key
        self.reset()

    def reset(self) -> None:
        """Defaults after ``reset()``."""
        rating = self._smu.rating
        self._nplc = 1.0
        self._count = 1
        self._autozero = 2
        self._rangei = rating.i_ranges_a[0]
        self._rangev = rating.v_ranges_v[0]
        self._autorangei = 1
        self._autorangev = 1
        self.lowrangei = rating.i_ranges_a[0]
        self.lowrangev = rating.v_ranges_v[0]
        self._delay = -1.0

    def _error(self, setting: str, value: object, allowed: str) -> None:
        self._smu.instrument.out_of_range(
            f"{self._smu.name}.measure.{setting}", value, allowed
        )

    @property
    def nplc(self) -> float:
        """Integration time, power-line cycles (0.001 to 25)."""
        return self._nplc

    @nplc.setter
    def nplc(self, value: object) -> None:
        nplc = _number(value, "measure.nplc")
        low, high = NPLC_RANGE
        if not low <= nplc <= high:
            self._error("nplc", value, f"{low:g} to {high:g}")
            return
        self._nplc = nplc

    @property
    def count(self) -> int:
        """Readings per measurement call (1 to 60000)."""
        return self._count

    @count.setter
    def count(self, value: object) -> None:
        count = _integer(value, "measure.count")
        if not 1 <= count <= MAX_COUNT:
            self._error("count", value, f"1 to {MAX_COUNT}")
            return
        self._count = count

    @property
    def autozero(self) -> int:
        """Autozero: 0 off, 1 once, 2 auto (no effect on timing here)."""
        return self._autozero

    @autozero.setter
    def autozero(self, value: object) -> None:
        code = _integer(value, "measure.autozero")
        if code not in (0, 1, 2):
            self._error("autozero", value, "0, 1 or 2")
            return
        self._autozero = code

    @property
    def rangei(self) -> float:
        """Current measure range, A (setting one turns autorange off)."""
        return self._rangei

    @rangei.setter
    def rangei(self, value: object) -> None:
        ranges = self._smu.rating.i_ranges_a
        top = _range_for(_number(value, "measure.rangei"), ranges)
        if top is None:
            self._error("rangei", value, f"up to {ranges[-1]:g} A")
            return
        self._rangei, self._autorangei = top, 0

    @property
    def rangev(self) -> float:
        """Voltage measure range, V (setting one turns autorange off)."""
        return self._rangev

    @rangev.setter
    def rangev(self, value: object) -> None:
        ranges = self._smu.rating.v_ranges_v
        top = _range_for(_number(value, "measure.rangev"), ranges)
        if top is None:
            self._error("rangev", value, f"up to {ranges[-1]:g} V")
            return
        self._rangev, self._autorangev = top, 0

    @property
    def autorangei(self) -> int:
        """Current measure autorange: 1 on, 0 off, 2 follow the limit."""
        return self._autorangei

    @autorangei.setter
    def autorangei(self, value: object) -> None:
        code = _integer(value, "measure.autorangei")
        if code not in (0, 1, 2):
            self._error("autorangei", value, "0, 1 or 2")
            return
        self._autorangei = code

    @property
    def autorangev(self) -> int:
        """Voltage measure autorange: 1 on, 0 off."""
        return self._autorangev

    @autorangev.setter
    def autorangev(self, value: object) -> None:
        code = _integer(value, "measure.autorangev")
        if code not in (0, 1):
            self._error("autorangev", value, "0 or 1")
            return
        self._autorangev = code

    @property
    def delay(self) -> float:
        """Delay before each reading, s (-1 auto, counted as 0 here)."""
        return self._delay

    @delay.setter
    def delay(self, value: object) -> None:
        delay = _number(value, "measure.delay")
        if delay < 0 and delay != -1:
            self._error("delay", value, "-1 (auto), 0 or a time in s")
            return
        self._delay = delay

    def reading_time_s(self) -> float:
        """Bench time one reading takes: delay, integration and overhead, s."""
        instrument = self._smu.instrument
        return (
            max(self._delay, 0.0)
            + self._nplc / instrument.line_frequency_hz
            + self._bench.timing.measure_overhead_s
        )

    # Readings.

    def i(self, buffer: NvBuffer | None = None) -> float:
        """Measure current, A; also stored in `buffer` when given."""
        if buffer is None and self._count == 1:
            # The common single reading, kept short: it is most of the traffic.
            self._bench.advance(self.reading_time_s())
            return self.ranged(self._bench.measure(self._key)[1])
        return self._take((buffer,), "i")[0]

    def ranged(self, current_a: float) -> float:
        """A current reading as the measure range shows it (overflow beyond it)."""
        if not self._autorangei and abs(current_a) > self._rangei * RANGE_HEADROOM:
            return OVERFLOW
        return current_a

    def v(self, buffer: NvBuffer | None = None) -> float:
        """Measure voltage, V; also stored in `buffer` when given."""
        return self._take((buffer,), "v")[0]

    def iv(
        self, ibuffer: NvBuffer | None = None, vbuffer: NvBuffer | None = None
    ) -> tuple[float, float]:
        """Measure current and voltage, current first."""
        current, voltage = self._take((ibuffer, vbuffer), "iv")
        return current, voltage

    def r(self, buffer: NvBuffer | None = None) -> float:
        """Measure resistance, ohm (voltage over current)."""
        return self._take((buffer,), "r")[0]

    def p(self, buffer: NvBuffer | None = None) -> float:
        """Measure power, W (voltage times current)."""
        return self._take((buffer,), "p")[0]

    def _take(
        self, buffers: tuple[NvBuffer | None, ...], kind: str
    ) -> tuple[float, ...]:
        buffers = tuple(python_object(b) for b in buffers)
        stores = [b for b in buffers if b is not None]
        for buffer in stores:
            if not isinstance(buffer, NvBuffer):
                raise TypeError(f"measure.{kind}: {buffer!r} is not a reading buffer")
            if not buffer.appendmode:
                buffer.clear()
        dt_s = self.reading_time_s()
        values: tuple[float, ...] = ()
        for _ in range(self._count):
            self._bench.advance(dt_s)
            values = self.read_now(kind)
            self._store(buffers, values)
        return values

    def read_now(self, kind: str) -> tuple[float, ...]:
        """One reading of the present state, without charging time."""
        voltage_v, current_a, _ = self._bench.measure(self._key)
        current_a = self.ranged(current_a)
        if kind == "i":
            return (current_a,)
        if kind == "v":
            return (voltage_v,)
        if kind == "iv":
            return (current_a, voltage_v)
        if kind == "r":
            return (voltage_v / current_a if current_a else OVERFLOW,)
        return (voltage_v * current_a,)

    def _store(
        self, buffers: tuple[NvBuffer | None, ...], values: tuple[float, ...]
    ) -> None:
        state = self._smu.state
        now_s = self._bench.now_s
        for buffer, value in zip(buffers, values, strict=True):
            if buffer is not None:
                buffer.append(value, state.level, now_s)


class Smu(LuaObject):
    """One SMU channel, ``smua`` or ``smub``."""

    OUTPUT_DCAMPS = 0
    OUTPUT_DCVOLTS = 1
    OUTPUT_OFF = 0
    OUTPUT_ON = 1
    OUTPUT_HIGH_Z = 2
    OUTPUT_NORMAL = 0
    OUTPUT_ZERO = 2
    AUTORANGE_OFF = 0
    AUTORANGE_ON = 1
    AUTORANGE_FOLLOW_LIMIT = 2
    AUTOZERO_OFF = 0
    AUTOZERO_ONCE = 1
    AUTOZERO_AUTO = 2
    DELAY_OFF = 0
    DELAY_AUTO = -1
    SENSE_LOCAL = 0
    SENSE_REMOTE = 1
    SENSE_CALA = 3
    ENABLE = 1
    DISABLE = 0

    _CONSTANTS = frozenset(
        {
            "OUTPUT_DCAMPS", "OUTPUT_DCVOLTS", "OUTPUT_OFF", "OUTPUT_ON",
            "OUTPUT_HIGH_Z", "OUTPUT_NORMAL", "OUTPUT_ZERO", "AUTORANGE_OFF",
            "AUTORANGE_ON", "AUTORANGE_FOLLOW_LIMIT", "AUTOZERO_OFF",
            "AUTOZERO_ONCE", "AUTOZERO_AUTO", "DELAY_OFF", "DELAY_AUTO",
            "SENSE_LOCAL", "SENSE_REMOTE", "SENSE_CALA", "ENABLE", "DISABLE",
        }
    )  # fmt: skip
    _lua_public = _CONSTANTS | {
        "source", "measure", "nvbuffer1", "nvbuffer2", "reset", "sense",
    }  # fmt: skip
    _lua_settable = frozenset({"sense"})
    _lua_static = _CONSTANTS | {"source", "measure", "nvbuffer1", "nvbuffer2", "reset"}

    def __init__(self, instrument: K2600, name: str) -> None:
        self.instrument = instrument
        self.name = name
        self.bench = instrument.bench
        self.rating = instrument.rating
        self.key = f"{instrument.name}.{name}"
        self.state = self.bench.register_source(self.key)
        self.sense = 0
        self.nvbuffer1 = NvBuffer()
        self.nvbuffer2 = NvBuffer()
        self.source = Source(self)
        self.measure = Measure(self)

    def reset(self) -> None:
        """``smuX.reset()``: defaults, output off, buffers cleared."""
        self.source.reset()
        self.measure.reset()
        self.sense = 0
        self.nvbuffer1.clear()
        self.nvbuffer2.clear()

    def __repr__(self) -> str:
        return self.name

    # Factory scripts: sweeps and pulses into nvbuffer1.

    def sweep(self, volts: bool, levels: list[float], settle_s: float) -> None:
        """Source each level in turn and measure after `settle_s` at each.

        The source function is set, ``nvbuffer1`` cleared, the output turned
        on for the sweep and off at its end; the readings (current for a
        voltage sweep, voltage for a current sweep) go to ``nvbuffer1`` with
        their source values.
        """
        if not self._sweep_fits(volts, levels):
            return
        source, measure = self.source, self.measure
        self.bench.set_source(self.key, volts=volts)
        self.nvbuffer1.clear()
        source.set_level(levels[0])
        source.output = self.OUTPUT_ON
        kind = "i" if volts else "v"
        reading_s = measure.reading_time_s()
        for level in levels:
            source.set_level(level)
            self.bench.advance(source.delay_s() + settle_s + reading_s)
            self.nvbuffer1.append(measure.read_now(kind)[0], level, self.bench.now_s)
        source.output = self.OUTPUT_OFF

    def pulse(
        self, bias_v: float, level_v: float, on_s: float, off_s: float, points: int
    ) -> None:
        """Voltage pulses: `level_v` for `on_s`, `bias_v` for `off_s`, `points` times.

        The current is measured at the end of each pulse into ``nvbuffer1``.
        A reading longer than the pulse finishes at the bias level, so the
        cells see the pulse level for exactly `on_s`. The bench takes the
        whole train in one step when it can (:meth:`simulator.bench.Bench.
        pulse_train`), else pulse by pulse; both leave it in the same state.
        """
        if not self._sweep_fits(True, [bias_v, level_v]):
            return
        source, measure = self.source, self.measure
        self.bench.set_source(self.key, volts=True)
        self.nvbuffer1.clear()
        source.levelv = bias_v
        source.output = self.OUTPUT_ON
        gap_s = max(measure.reading_time_s() - on_s, 0.0) + off_s
        train = None
        fits = source.takes_levelv(level_v) and source.takes_levelv(bias_v)
        if fits and self.state.level_v == bias_v:
            train = self.bench.pulse_train(self.key, level_v, on_s, gap_s, points)
        if train is not None:
            currents_a, times_s = train
            readings = [measure.ranged(current_a) for current_a in currents_a]
            self.nvbuffer1.extend(readings, level_v, times_s)
        else:
            for _ in range(points):
                source.levelv = level_v
                self.bench.advance(on_s)
                current_a = measure.read_now("i")[0]
                self.nvbuffer1.append(current_a, level_v, self.bench.now_s)
                source.levelv = bias_v
                self.bench.advance(gap_s)
        source.output = self.OUTPUT_OFF

    def _sweep_fits(self, volts: bool, levels: list[float]) -> bool:
        ranges = self.rating.v_ranges_v if volts else self.rating.i_ranges_a
        top = ranges[-1] * RANGE_HEADROOM
        worst = max(abs(level) for level in levels)
        if worst > top:
            unit = "V" if volts else "A"
            self.instrument.out_of_range(
                f"{self.name} sweep level", worst, f"<= {top:g} {unit}"
            )
            return False
        return True


class Format(LuaObject):
    """The ``format`` object: how ``printbuffer`` and ``printnumber`` send numbers."""

    ASCII = 1
    SREAL = 2
    REAL32 = 2
    REAL = 3
    REAL64 = 3
    DREAL = 3
    NORMAL = 0
    BIGENDIAN = 0
    NETWORK = 0
    SWAPPED = 1
    LITTLEENDIAN = 1

    _lua_public = frozenset(
        {
            "data", "asciiprecision", "byteorder", "ASCII", "SREAL", "REAL32",
            "REAL", "REAL64", "DREAL", "NORMAL", "BIGENDIAN", "NETWORK",
            "SWAPPED", "LITTLEENDIAN",
        }
    )  # fmt: skip
    _lua_settable = frozenset({"data", "asciiprecision", "byteorder"})
    _lua_static = _lua_public - _lua_settable

    def __init__(self, instrument: K2600) -> None:
        self._instrument = instrument
        self.reset()

    def reset(self) -> None:
        """Defaults after ``reset()``: ASCII, 6 digits, little-endian."""
        self._data = self.ASCII
        self._byteorder = self.SWAPPED
        self._instrument.ascii_precision = 6

    @property
    def data(self) -> int:
        """Data format: 1 ASCII, 2 REAL32, 3 REAL64."""
        return self._data

    @data.setter
    def data(self, value: object) -> None:
        code = _integer(value, "format.data")
        if code not in (1, 2, 3):
            self._instrument.out_of_range("format.data", value, "1, 2 or 3")
            return
        self._data = code

    @property
    def asciiprecision(self) -> int:
        """Significant digits of printed numbers (1 to 16)."""
        return self._instrument.ascii_precision

    @asciiprecision.setter
    def asciiprecision(self, value: object) -> None:
        digits = _integer(value, "format.asciiprecision")
        if not 1 <= digits <= 16:
            self._instrument.out_of_range("format.asciiprecision", value, "1 to 16")
            return
        self._instrument.ascii_precision = digits

    @property
    def byteorder(self) -> int:
        """Byte order of binary formats: 0 big-endian, 1 little-endian."""
        return self._byteorder

    @byteorder.setter
    def byteorder(self, value: object) -> None:
        code = _integer(value, "format.byteorder")
        if code not in (0, 1):
            self._instrument.out_of_range("format.byteorder", value, "0 or 1")
            return
        self._byteorder = code

    def render(self, values: list[float]) -> str:
        """Numbers as the present format sends them (binary as latin-1 text)."""
        if self._data == self.ASCII:
            precision = self._instrument.ascii_precision
            return ", ".join([format_number(v, precision) for v in values])
        order = "<" if self._byteorder == self.SWAPPED else ">"
        kind = "f" if self._data == self.REAL32 else "d"
        packed = struct.pack(f"{order}{len(values)}{kind}", *values)
        return "#0" + packed.decode("latin-1")


class _Condition(LuaObject):
    _lua_public = frozenset({"condition"})

    def __init__(self, smu: Smu) -> None:
        self._smu = smu

    @property
    def condition(self) -> int:
        """Bit 0: at the voltage limit; bit 1: at the current limit."""
        smu = self._smu
        if not smu.source.compliance:
            return 0
        return 2 if smu.state.volts else 1


class _Group(LuaObject):
    """A node of the ``status`` tree holding named children."""

    def __init__(self, **children: object) -> None:
        self._lua_public = frozenset(children) | {"condition", "reset"}  # type: ignore[misc]
        self._lua_static = frozenset(children) | {"reset"}  # type: ignore[misc]
        self.__dict__.update(children)
        self.condition = 0

    def reset(self) -> None:
        """Clear the status registers (nothing to clear here)."""


class K2600(TspInstrument):
    """A simulated Keithley 2600B.

    Parameters
    ----------
    name : str
        Station name of the instrument (``"smu1"``).
    model : str
        ``"2601B"`` ... ``"2636B"``.
    bench : Bench
        The bench it works on.
    node : int
        TSP-Link node number.
    """

    def __init__(self, name: str, model: str, bench: Bench, node: int = 1) -> None:
        if model not in RATINGS:
            raise ValueError(f"{name}: {model} is not a 2600B model")
        super().__init__(name, model, bench, REVISION, log, node)
        self.rating = RATINGS[model]
        self.smus = {channel: Smu(self, channel) for channel in self.rating.channels}
        self.format = Format(self)
        channels = {channel: _Condition(smu) for channel, smu in self.smus.items()}
        self.status = _Group(measurement=_Group(instrument=_Group(**channels)))

    def node_objects(self) -> dict[str, object]:
        return dict(self.smus)

    def instrument_globals(self) -> dict[str, object]:
        return {
            "format": self.format,
            "status": self.status,
            "printbuffer": self.printbuffer,
            "printnumber": self.printnumber,
            "SweepVLinMeasureI": self.sweep_v_lin_measure_i,
            "SweepVLogMeasureI": self.sweep_v_log_measure_i,
            "SweepVListMeasureI": self.sweep_v_list_measure_i,
            "SweepILinMeasureV": self.sweep_i_lin_measure_v,
            "SweepILogMeasureV": self.sweep_i_log_measure_v,
            "SweepIListMeasureV": self.sweep_i_list_measure_v,
            "PulseVMeasureI": self.pulse_v_measure_i,
        }

    def reset(self) -> None:
        super().reset()
        self.format.reset()
        for smu in self.smus.values():
            smu.reset()

    # Printing.

    def printbuffer(self, start: object, end: object, *columns: object) -> None:
        """``printbuffer(start, end, buf.readings, ...)``: one reply.

        Indices are clamped to the readings stored; several columns are
        interleaved reading by reading.
        """
        if not columns or not all(isinstance(c, _Column) for c in columns):
            raise TypeError("printbuffer: give buffer columns such as buf.readings")
        stored = min(len(c) for c in columns)  # type: ignore[arg-type]
        first = max(1, _integer(start, "printbuffer start"))
        last = min(stored, _integer(end, "printbuffer end"))
        values = [
            column.values[index]  # type: ignore[attr-defined]
            for index in range(first - 1, last)
            for column in columns
        ]
        self.reply(self.format.render(values))

    def printnumber(self, *values: object) -> None:
        """``printnumber(a, b, ...)``: numbers in the present format."""
        self.reply(self.format.render([_number(v, "printnumber") for v in values]))

    # Factory sweep and pulse functions.

    def sweep_v_lin_measure_i(
        self, smu: Any, startv: object, stopv: object, stime: object, points: object
    ) -> None:
        """``SweepVLinMeasureI``: linear voltage staircase, current readings."""
        levels = _linear(startv, stopv, points)
        _as_smu(smu).sweep(True, levels, _settle(stime))

    def sweep_v_log_measure_i(
        self, smu: Any, startv: object, stopv: object, stime: object, points: object
    ) -> None:
        """``SweepVLogMeasureI``: logarithmic voltage staircase, current readings."""
        levels = _logarithmic(startv, stopv, points)
        _as_smu(smu).sweep(True, levels, _settle(stime))

    def sweep_v_list_measure_i(
        self, smu: Any, vlist: Any, stime: object, points: object
    ) -> None:
        """``SweepVListMeasureI``: voltages from a list, current readings."""
        levels = _listed(vlist, points)
        _as_smu(smu).sweep(True, levels, _settle(stime))

    def sweep_i_lin_measure_v(
        self, smu: Any, starti: object, stopi: object, stime: object, points: object
    ) -> None:
        """``SweepILinMeasureV``: linear current staircase, voltage readings."""
        levels = _linear(starti, stopi, points)
        _as_smu(smu).sweep(False, levels, _settle(stime))

    def sweep_i_log_measure_v(
        self, smu: Any, starti: object, stopi: object, stime: object, points: object
    ) -> None:
        """``SweepILogMeasureV``: logarithmic current staircase, voltage readings."""
        levels = _logarithmic(starti, stopi, points)
        _as_smu(smu).sweep(False, levels, _settle(stime))

    def sweep_i_list_measure_v(
        self, smu: Any, ilist: Any, stime: object, points: object
    ) -> None:
        """``SweepIListMeasureV``: currents from a list, voltage readings."""
        levels = _listed(ilist, points)
        _as_smu(smu).sweep(False, levels, _settle(stime))

    def pulse_v_measure_i(
        self,
        smu: Any,
        bias: object,
        level: object,
        ton: object,
        toff: object,
        points: object,
    ) -> None:
        """``PulseVMeasureI``: voltage pulses, current at the end of each."""
        on_s, off_s = _settle(ton), _settle(toff)
        _as_smu(smu).pulse(
            _number(bias, "bias"), _number(level, "level"), on_s, off_s, _points(points)
        )


def _as_smu(smu: Any) -> Smu:
    smu = python_object(smu)
    if not isinstance(smu, Smu):
        raise TypeError(f"{smu!r} is not an SMU channel (smua or smub)")
    return smu


def _points(points: object) -> int:
    count = _integer(points, "points")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"points: {count} must be 1 to {MAX_COUNT}")
    return count


def _settle(seconds: object) -> float:
    value = _number(seconds, "time")
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"time {value} s must be >= 0")
    return value


def _linear(start: object, stop: object, points: object) -> list[float]:
    count = _points(points)
    values = np.linspace(_number(start, "start"), _number(stop, "stop"), count)
    return [float(v) for v in values]


def _logarithmic(start: object, stop: object, points: object) -> list[float]:
    low, high = _number(start, "start"), _number(stop, "stop")
    if low == 0 or high == 0 or (low > 0) != (high > 0):
        raise ValueError("a logarithmic sweep needs start and stop of one sign, not 0")
    return [float(v) for v in np.geomspace(low, high, _points(points))]


def _listed(values: Any, points: object) -> list[float]:
    count = _points(points)
    try:
        available = len(values)
    except TypeError:
        raise TypeError("the sweep list is not a Lua table of numbers") from None
    if count > available:
        raise ValueError(f"points: {count} exceeds the {available} values of the list")
    return [_number(v, "sweep list value") for v in iterate_lua_values(values, count)]
