"""Write-verify run on the instrument: a TSP program on the TSP-Link master.

Where the drive, bias and sense channels are 2600B channels and the matrix
is a 707B/708B, all on one TSP-Link network, the whole loop of
:mod:`labctl.engine.writeverify` for a group of cells (selecting each cell
with the V/2 scheme, its pulse trains, its verify reads, learning its
response, stopping when it is within tolerance, stuck or out of rounds) runs
as one Lua call on the master. The bus carries one message out and one
reply back per group, not one message per train.

The program is :data:`WRITE_VERIFY`, the same adaptive algorithm as
:class:`~labctl.engine.writeverify.WriteVerify` (its ``_plan``, its learned
gains, its stuck rule), written in Lua. It is sent once per connection as a
function definition and called with numbers only: a procedure cannot hand
the instrument code of its own. :meth:`labctl.rig.Rig.write_verify_on_instrument`
checks every level and limit of a call against the safety guard first; the
program itself switches relays only with the drive and bias at 0 V, keeps
every pulse between the largest RESET and SET amplitudes it was given, and
leaves both channels at 0 V with the last cell selected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

NAME = "labctl_wv"
"""The global Lua function the program defines on the instrument."""

# Kept free of "--" comments: it is sent as one message, lines joined by
# spaces; and of the length operator, which the 2600B's Lua (5.0) lacks. Lines are numbered 1..R+C (rows first); a line's bus is 0 when it
# floats, else 1 (drive), 2 (bias) or 3 (sense); xp[line][bus] is the
# crosspoint joining them.
WRITE_VERIFY = """
function labctl_wv(drive, bias, sense, sw, xp, now, nrows, ncols, ncells, cells, cfg)
  local tol, margin, vset, vreset = cfg[1], cfg[2], cfg[3], cfg[4]
  local width, gap, vread, max_rounds = cfg[5], cfg[6], cfg[7], cfg[8]
  local max_train, gmin, gmax = cfg[9], cfg[10], cfg[11]
  local exp, log, abs, sqrt = math.exp, math.log, math.abs, math.sqrt
  local min, max = math.min, math.max
  local function fraction(resp, level)
    local over = max(level / resp.thr - 1, 0)
    return 1 - exp(-resp.gain * over ^ resp.expo)
  end
  local function level_for(resp, fr)
    fr = min(fr, fraction(resp, resp.limit))
    local over = (-log(1 - fr) / resp.gain) ^ (1 / resp.expo)
    local level = resp.thr * (1 + over)
    local low = 1.02 * resp.thr
    if resp.thr > 0 then return max(level, low) end
    return min(level, low)
  end
  local function learn(resp, level, seen)
    local over = max(level / resp.thr - 1, 1e-9) ^ resp.expo
    local seen_gain = -log(1 - seen) / over
    local blended = sqrt(resp.gain * seen_gain)
    resp.gain = min(max(blended, 0.05 * resp.gain), 20 * resp.gain)
    resp.learned = true
  end
  local function plan(g, target, limit, resp)
    local span, err = abs(limit - g), abs(target - g)
    if span <= 0 or err >= span then return resp.limit, max_train end
    local share = 0.8
    if resp.learned then
      if err > 3 * tol * target then share = 0.95 else share = 1.0 end
    end
    local aim = share * err / span
    local largest = fraction(resp, resp.limit)
    local n = 1
    while n < max_train and 1 - (1 - aim) ^ (1 / n) > largest do n = n * 2 end
    n = min(n, max_train)
    return level_for(resp, 1 - (1 - aim) ^ (1 / n)), n
  end
  local function select(r, c)
    drive.source.levelv = 0
    bias.source.levelv = 0
    local leave, join, nleave, njoin = {}, {}, 0, 0
    for line = 1, nrows + ncols do
      local want = 2
      if line == r + 1 then want = 1 elseif line == nrows + c + 1 then want = 3 end
      local was = now[line]
      if was ~= want then
        if was ~= 0 then
          nleave = nleave + 1
          leave[nleave] = xp[line][was]
        end
        njoin = njoin + 1
        join[njoin] = xp[line][want]
        now[line] = want
      end
    end
    if nleave > 0 then sw.open(table.concat(leave, ",")) end
    if njoin > 0 then sw.close(table.concat(join, ",")) end
  end
  local function read()
    bias.source.levelv = 0
    drive.source.levelv = vread
    drive.source.output = 1
    return -sense.measure.i() / vread
  end
  local function pulses(n, level)
    level = min(max(level, vreset), vset)
    drive.source.levelv = 0
    bias.source.levelv = level / 2
    drive.nvbuffer1.clear()
    PulseVMeasureI(drive, 0, level, width, gap, n)
    return level
  end
  local out = {}
  for k = 1, 8 * ncells, 8 do
    local r, c, target, g = cells[k], cells[k + 1], cells[k + 2], cells[k + 3]
    local up = {thr = cfg[12], expo = cfg[14], gain = cfg[16], limit = vset}
    local down = {thr = cfg[13], expo = cfg[15], gain = cfg[17], limit = vreset}
    up.learned, down.learned = false, false
    if cells[k + 4] > 0 then up.gain = cells[k + 4] up.learned = true end
    if cells[k + 5] > 0 then down.gain = cells[k + 5] down.learned = true end
    local selected = cells[k + 6] > 0
    if g < 0 then
      if not selected then select(r, c) selected = true end
      g = read()
    end
    local count, rounds, still, stuck = 0, 0, 0, false
    local accept = tol * (1 - margin) * target
    while abs(g - target) > accept and rounds < max_rounds do
      rounds = rounds + 1
      local resp, limit = down, gmin
      if g < target then resp, limit = up, gmax end
      local level, n = plan(g, target, limit, resp)
      local before = g
      if not selected then select(r, c) selected = true end
      level = pulses(n, level)
      g = read()
      count = count + n
      local ratio = (limit - g) / (limit - before)
      if ratio > 0 and ratio < 1 then learn(resp, level, 1 - ratio ^ (1 / n)) end
      if abs(g - before) < 0.1 * tol * target then still = still + 1 else still = 0 end
      if still >= 3 and n == max_train and level == resp.limit then
        stuck = true
        break
      end
    end
    local ug, dg = -1, -1
    if up.learned then ug = up.gain end
    if down.learned then dg = down.gain end
    local s = 0
    if stuck then s = 1 end
    out[(k + 7) / 8] = string.format("%d %d %.10g %d %d %d %.10g %.10g",
                                     r, c, g, count, rounds, s, ug, dg)
  end
  drive.source.levelv = 0
  bias.source.levelv = 0
  print(table.concat(out, ";") .. "|" .. table.concat(now, ","))
end
"""


def program_text() -> str:
    """:data:`WRITE_VERIFY` as one message: its lines joined by spaces."""
    return " ".join(line.strip() for line in WRITE_VERIFY.strip().splitlines())


@dataclass(frozen=True)
class CellRequest:
    """One cell to program: where, to what, and what is known of it.

    ``reading_s`` is its last verify reading (None: read it first);
    ``set_gain`` and ``reset_gain`` its learned response gains (None: the
    nominal one); ``selected`` whether it is the cell selected now.
    """

    row: int
    col: int
    target_s: float
    reading_s: float | None = None
    set_gain: float | None = None
    reset_gain: float | None = None
    selected: bool = False


@dataclass(frozen=True)
class CellOutcome:
    """What the program reports of one cell."""

    row: int
    col: int
    final_s: float
    pulses: int
    rounds: int
    stuck: bool
    set_gain: float | None
    reset_gain: float | None


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(float(value))


def call_text(
    objects: Sequence[str],
    crosspoints: Sequence[Sequence[str]],
    buses: Sequence[int],
    n_rows: int,
    cells: Sequence[CellRequest],
    config: Sequence[float],
) -> str:
    """The call of the program for a group of cells.

    ``objects`` names the drive, bias and sense channels and the matrix's
    channel object (``"smua"``, ``"smub"``, ``"node[2].smua"``,
    ``"node[4].channel"``); ``crosspoints[line]`` the crosspoints joining
    each line to the drive, bias and sense buses; ``buses`` the bus each
    line is on now (0 for none).
    """
    for name in objects:
        if not _TSP_OBJECT.match(name):
            raise ValueError(f"not a TSP object: {name!r}")
    for line in crosspoints:
        for xp in line:
            if not _CROSSPOINT.match(xp):
                raise ValueError(f"not a crosspoint: {xp!r}")
    xp = "{" + ",".join("{" + ",".join(f'"{x}"' for x in line) + "}"
                        for line in crosspoints) + "}"
    now = "{" + ",".join(str(int(b)) for b in buses) + "}"
    flat = []
    for cell in cells:
        flat += [
            str(int(cell.row)), str(int(cell.col)), _number(cell.target_s),
            _number(-1.0 if cell.reading_s is None else cell.reading_s),
            _number(cell.set_gain or -1.0), _number(cell.reset_gain or -1.0),
            "1" if cell.selected else "0", "0",
        ]
    n_cols = len(crosspoints) - n_rows
    args = ", ".join([
        *objects, xp, now, str(int(n_rows)), str(int(n_cols)), str(len(cells)),
        "{" + ",".join(flat) + "}",
        "{" + ",".join(_number(v) for v in config) + "}",
    ])
    return f"{NAME}({args})"


_TSP_OBJECT = re.compile(r"^(node\[\d{1,2}\]\.)?(smua|smub|channel)$")
_CROSSPOINT = re.compile(r"^\d{1,2}[A-H]\d{2}$")


def parse_reply(reply: str, count: int) -> tuple[list[CellOutcome], list[int]]:
    """The program's reply: one outcome per cell, in the order asked, and
    the bus each line is left on (0 for none).

    Raises
    ------
    ValueError
        If the reply does not hold ``count`` well-formed outcomes.
    """
    head, bar, tail = reply.strip().partition("|")
    if not bar:
        raise ValueError(f"write-verify program: no line state in {reply[:80]!r}")
    try:
        buses = [int(b) for b in tail.split(",")]
    except ValueError:
        raise ValueError(f"write-verify program: malformed line state {tail[:80]!r}"
                         ) from None
    parts = [p for p in head.split(";") if p]
    if len(parts) != count:
        raise ValueError(f"write-verify program: {len(parts)} outcomes for "
                         f"{count} cells in {reply[:80]!r}")
    outcomes = []
    for part in parts:
        fields = part.split()
        if len(fields) != 8:
            raise ValueError(f"write-verify program: malformed outcome {part!r}")
        r, c, g, n, rounds, stuck = fields[:6]
        set_gain, reset_gain = (float(x) for x in fields[6:])
        outcomes.append(CellOutcome(
            int(r), int(c), float(g), int(n), int(rounds), stuck == "1",
            set_gain if set_gain > 0 else None, reset_gain if reset_gain > 0 else None,
        ))
    return outcomes, buses
