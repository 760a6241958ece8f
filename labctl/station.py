"""Station and chip files: what a run talks to, validated on load.

A station file names each instrument (model, VISA resource, VISA library or
the TSP-Link master that reaches it), the wiring from SMU channels through the
switch matrix to the chip's pins, the chip file, and the chip's safety limits.
A chip file names the chip's arrays and the device preset of its cells.

Any problem is reported as one :class:`ConfigError` line naming the file, the
key and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

TSP_SMU_MODELS = (
    "2601B", "2602B", "2604B", "2611B", "2612B", "2614B",
    "2634B", "2635B", "2636B",
)  # fmt: skip
SCPI_SMU_MODELS = ("2450", "2400", "B2901A", "B2902A", "B2912A")
SMU_MODELS = TSP_SMU_MODELS + SCPI_SMU_MODELS
MATRIX_MODELS = ("707B", "708B")


def smu_channels(model: str) -> tuple[str, ...]:
    """The channel names of an SMU model, as its driver and station files use them."""
    if model in ("2601B", "2611B", "2635B"):
        return ("smua",)
    if model in TSP_SMU_MODELS:
        return ("smua", "smub")
    if model in ("2450", "2400"):
        return ("smu",)
    if model == "B2901A":
        return ("ch1",)
    return ("ch1", "ch2")
CARD_MODELS = ("7174A",)
CARD_ROWS = "ABCDEFGH"
CARD_COLUMNS = 12
MATRIX_SLOTS = {"707B": 6, "708B": 1}
GROUND = "ground"

_ARRAY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIN = re.compile(r"^(?P<array>[A-Za-z_][A-Za-z0-9_]*)\.(?P<kind>[RC])(?P<index>\d+)$")


class ConfigError(ValueError):
    """A station, chip or bench file that cannot be used, in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


OPERATOR_MODES = ("analog", "volatile", "activation", "exponential")
"""The modes a cell is formed in: a non-volatile analog weight, a volatile
cell, an activation cell, an exponential (softmax) cell."""

OperatorMode = Literal["analog", "volatile", "activation", "exponential"]


class ModeLimits(_Strict):
    """Tighter limits for the cells of one operator mode (None: the chip's)."""

    max_voltage_v: Annotated[float, Field(strict=True, gt=0, le=210)] | None = None
    max_compliance_a: Annotated[float, Field(strict=True, gt=0, le=1.5)] | None = None


class Limits(_Strict):
    """The chip's safety limits; no level or compliance may exceed them."""

    max_voltage_v: Annotated[float, Field(strict=True, gt=0, le=210)]
    max_compliance_a: Annotated[float, Field(strict=True, gt=0, le=1.5)]
    max_read_voltage_v: Annotated[float, Field(strict=True, gt=0, le=210)]
    #: Charge that pulses may put through one cell in a rig's life, C (off when
    #: absent); the guard bounds a train by its channel's current limit.
    max_cell_charge_c: Annotated[float, Field(strict=True, gt=0, le=1.0)] | None = None
    #: Energy that pulses may put into one cell, J (off when absent).
    max_cell_energy_j: Annotated[float, Field(strict=True, gt=0, le=10.0)] | None = None
    #: Limits of the cells of an operator mode, tighter than the chip's: a
    #: line of an array whose cells are in that mode (the chip file's
    #: ``mode``) never sees more.
    modes: dict[OperatorMode, ModeLimits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _read_below_max(self) -> Limits:
        if self.max_read_voltage_v > self.max_voltage_v:
            raise ValueError("max_read_voltage_v must not exceed max_voltage_v")
        for mode, limits in self.modes.items():
            if (limits.max_voltage_v or 0.0) > self.max_voltage_v:
                raise ValueError(f"modes.{mode}.max_voltage_v must not exceed "
                                 "max_voltage_v")
            if (limits.max_compliance_a or 0.0) > self.max_compliance_a:
                raise ValueError(f"modes.{mode}.max_compliance_a must not exceed "
                                 "max_compliance_a")
        return self


class InstrumentSpec(_Strict):
    """One instrument of the station.

    An instrument has its own ``resource`` or is a TSP-Link ``node`` reached
    ``via`` another instrument's connection.
    """

    model: Literal[SMU_MODELS + MATRIX_MODELS]  # type: ignore[valid-type]
    resource: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model_as_text(cls, model: object) -> object:
        # An unquoted 2450 or 2400 in YAML is a number.
        return str(model) if isinstance(model, int) and not isinstance(model, bool) else model
    visa_library: str | None = None
    via: str | None = None
    node: Annotated[int, Field(ge=1, le=64)] | None = None
    cards: dict[int, Literal[CARD_MODELS]] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _reachable(self) -> InstrumentSpec:
        if (self.resource is None) == (self.via is None):
            raise ValueError("give either 'resource' or 'via' (a TSP-Link master)")
        if self.via is not None and self.node is None:
            raise ValueError("an instrument reached 'via' a master needs its 'node'")
        if (self.via is not None or self.node is not None) and self.model in SCPI_SMU_MODELS:
            raise ValueError(f"a {self.model} is not a TSP-Link instrument: give its 'resource'")
        if self.is_matrix:
            if not self.cards:
                raise ValueError("a switch matrix needs its 'cards' (slot: model)")
            slots = MATRIX_SLOTS[self.model]
            bad = [s for s in self.cards if not 1 <= s <= slots]
            if bad:
                raise ValueError(f"card slot {bad[0]} does not exist: {self.model} has slots 1..{slots}")
        elif self.cards:
            raise ValueError(f"'cards' is only for switch matrices, not a {self.model}")
        return self

    @property
    def is_matrix(self) -> bool:
        return self.model in MATRIX_MODELS


class Wiring(_Strict):
    """SMU channels on matrix rows (buses), chip pins on matrix columns."""

    matrix: str
    buses: dict[str, str]
    columns: dict[int, list[str | None]]

    @field_validator("buses")
    @classmethod
    def _bus_names(cls, buses: dict[str, str]) -> dict[str, str]:
        for row in buses:
            if row not in CARD_ROWS:
                raise ValueError(f"bus '{row}' is not a matrix row: rows are A..H")
        return buses

    @field_validator("columns")
    @classmethod
    def _pin_names(cls, columns: dict[int, list[str | None]]) -> dict[int, list[str | None]]:
        for slot, pins in columns.items():
            if len(pins) > CARD_COLUMNS:
                raise ValueError(f"slot {slot} lists {len(pins)} pins: a 7174A card has {CARD_COLUMNS} columns")
            for pin in pins:
                if pin is not None and not _PIN.match(pin):
                    raise ValueError(f"pin '{pin}' is not of the form <array>.R<row> or <array>.C<col>")
        return columns


class Roles(_Strict):
    """Which SMU channel does what, for procedures that do not say otherwise.

    ``drive`` sources the selected line; ``bias`` holds unselected lines
    (V/2 while writing, 0 V while reading) and the negative inputs of an
    analog multiply; ``sense`` channels hold lines at 0 V and measure them.
    """

    drive: str
    bias: str
    sense: Annotated[list[str], Field(min_length=1)]


class ArraySpec(_Strict):
    rows: Annotated[int, Field(strict=True, ge=1, le=4096)]
    cols: Annotated[int, Field(strict=True, ge=1, le=4096)]
    #: Resistance of each line segment, Ω: between neighbouring cells and
    #: between a line's pin and its first cell (0: ideal lines).
    line_resistance_ohm: Annotated[float, Field(strict=True, ge=0, le=1e6)] = 0.0
    #: Whether the array's cells come formed (false: fresh, to be formed first).
    formed: Annotated[bool, Field(strict=True)] = True
    #: The operator mode the array's cells are formed in; the station's
    #: ``limits.modes`` may hold tighter limits for it.
    mode: OperatorMode = "analog"


class Chip(_Strict):
    """A chip: named crossbar arrays of cells of one device preset."""

    name: str
    preset: str = "perovskite"
    arrays: dict[str, ArraySpec]
    path: Path | None = None

    @field_validator("arrays")
    @classmethod
    def _array_names(cls, arrays: dict[str, ArraySpec]) -> dict[str, ArraySpec]:
        if not arrays:
            raise ValueError("a chip needs at least one array")
        for name in arrays:
            if not _ARRAY.match(name):
                raise ValueError(f"array name '{name}' must be a letter or _ followed by "
                                 "letters, digits or _ (pins are named <array>.R<row>)")
        return arrays


class Station(_Strict):
    """A station file, validated, with its chip loaded."""

    name: str
    visa_library: str = "@py"
    chip: Path
    limits: Limits
    instruments: dict[str, InstrumentSpec]
    wiring: Wiring
    roles: Roles
    path: Path | None = None
    chip_spec: Chip | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Station:
        names = self.instruments
        for name, spec in names.items():
            if spec.via is not None:
                master = names.get(spec.via)
                if master is None:
                    raise ValueError(f"instruments.{name}.via: no instrument '{spec.via}'")
                if master.via is not None:
                    raise ValueError(f"instruments.{name}.via: '{spec.via}' is itself a node")
                if master.model in SCPI_SMU_MODELS:
                    raise ValueError(
                        f"instruments.{name}.via: a {master.model} is not a TSP-Link master"
                    )
        seen: dict[str, str] = {}
        for name, spec in names.items():
            if spec.resource:
                key = canonical_resource(spec.resource)
                if key in seen:
                    raise ValueError(
                        f"instruments.{name}.resource: {spec.resource} is the instrument "
                        f"that {seen[key]} names already"
                    )
                seen[key] = name
        nodes: dict[tuple[str, int], str] = {}
        for name, spec in names.items():
            link = (spec.via or name, spec.node or 1)
            if link in nodes:
                raise ValueError(
                    f"instruments.{name}.node: TSP-Link node {link[1]} of {link[0]} is "
                    f"{nodes[link]} already"
                )
            nodes[link] = name
        matrix = names.get(self.wiring.matrix)
        if matrix is None or not matrix.is_matrix:
            raise ValueError(f"wiring.matrix: '{self.wiring.matrix}' is not a switch matrix of this station")
        rows_of: dict[str, str] = {}
        for row, end in self.wiring.buses.items():
            self._check_bus_end(row, end)
            if end != GROUND and end in rows_of:
                raise ValueError(
                    f"wiring.buses.{row}: {end} is wired to row {rows_of[end]} already; "
                    "one channel drives one matrix row"
                )
            rows_of[end] = row
        for slot in self.wiring.columns:
            if slot not in (matrix.cards or {}):
                raise ValueError(f"wiring.columns: slot {slot} has no card in '{self.wiring.matrix}'")
        self._check_roles()
        pins = [p for ps in self.wiring.columns.values() for p in ps if p]
        if not pins:
            raise ValueError("wiring.columns: no chip pin is wired to the matrix")
        dup_pins = {p for p in pins if pins.count(p) > 1}
        if dup_pins:
            raise ValueError(f"wiring.columns: pin {sorted(dup_pins)[0]} is wired twice")
        return self

    def _check_roles(self) -> None:
        wired = set(self.wiring.buses.values())
        named = [("drive", self.roles.drive), ("bias", self.roles.bias)]
        named += [(f"sense.{i}", ch) for i, ch in enumerate(self.roles.sense)]
        for key, channel in named:
            if channel not in wired or channel == GROUND:
                raise ValueError(f"roles.{key}: '{channel}' is not an SMU channel wired to a bus")
        channels = [ch for _, ch in named]
        if len(set(channels)) != len(channels):
            raise ValueError("roles: a channel has two roles")
        if GROUND not in wired:
            raise ValueError(f"wiring.buses: no row is wired to '{GROUND}'")

    def _check_bus_end(self, row: str, end: str) -> None:
        if end == GROUND:
            return
        inst, _, channel = end.partition(".")
        spec = self.instruments.get(inst)
        if spec is None or spec.is_matrix:
            raise ValueError(
                f"wiring.buses.{row}: '{end}' is not an SMU channel of this station "
                f"(use <instrument>.<channel> or '{GROUND}')"
            )
        channels = smu_channels(spec.model)
        if channel not in channels:
            raise ValueError(
                f"wiring.buses.{row}: a {spec.model} has channel(s) "
                f"{', '.join(channels)}, not '{channel}'"
            )

    # Derived views used by the runner, the engine and the simulator.

    def pin_channels(self) -> dict[str, tuple[int, int]]:
        """Map each wired chip pin to its matrix (slot, column)."""
        return {
            pin: (slot, column)
            for slot, pins in self.wiring.columns.items()
            for column, pin in enumerate(pins, start=1)
            if pin
        }

    def bus_of(self, channel: str) -> str:
        """Matrix row that an SMU channel (``smu1.smua``) is wired to."""
        for row, end in self.wiring.buses.items():
            if end == channel:
                return row
        raise KeyError(f"{channel} is not wired to any matrix row")

    def wired_lines(self, array: str) -> tuple[int, int]:
        """How many rows and columns of an array the matrix reaches."""
        kinds = [parse_pin(p)[1] for p in self.pin_channels() if parse_pin(p)[0] == array]
        return kinds.count("row"), kinds.count("col")

    def wired_arrays(self) -> list[str]:
        return sorted({parse_pin(p)[0] for p in self.pin_channels()})

    @property
    def ground_bus(self) -> str:
        return self.bus_of(GROUND)

    def visa_library_of(self, name: str) -> str:
        spec = self.instruments[name]
        return spec.visa_library or self.visa_library


def canonical_resource(resource: str) -> str:
    """A resource name with the defaults VISA fills in, to compare two names.

    ``GPIB::26`` and ``GPIB0::26::INSTR`` name the same instrument.
    """
    parts = [p.upper() for p in resource.strip().split("::")]
    head = parts[0]
    board = re.fullmatch(r"([A-Z]+)(\d*)", head)
    if board:
        head = board[1] + (board[2] or "0")
    if len(parts) > 1 and parts[-1] not in ("INSTR", "SOCKET"):
        parts.append("INSTR")
    return "::".join([head, *parts[1:]])


def parse_pin(pin: str) -> tuple[str, str, int]:
    """Split ``A0.R12`` into ``("A0", "row", 12)``."""
    m = _PIN.match(pin)
    if not m:
        raise ValueError(f"pin '{pin}' is not of the form <array>.R<row> or <array>.C<col>")
    kind = "row" if m["kind"] == "R" else "col"
    return m["array"], kind, int(m["index"])


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, key: str | None = None) -> dict:
    """Read a YAML mapping, or raise a one-line ConfigError naming the file.

    ``key`` names the key of another file that pointed here, for the message.
    """
    via = f" (named by {key})" if key else ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}{via}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}{via}: not a text file") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}{via}: expected a mapping of keys at the top level")
    return data


def _one_line(path: Path, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a check across keys: its message names them
        return ConfigError(f"{path}: {msg}")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
        msg = f"not allowed; allowed: {err['ctx']['expected']}"
    return ConfigError(f"{path}: {key}: {msg}")


_LOADER_KEYS = ("path", "chip_spec")  # set by the loaders, never by a file


def _refuse_loader_keys(path: Path, data: dict) -> None:
    for key in _LOADER_KEYS:
        if key in data:
            raise ConfigError(f"{path}: {key}: unknown key")


def load_chip(path: str | Path, named_by: str | None = None) -> Chip:
    path = Path(path)
    data = read_yaml(path, named_by)
    _refuse_loader_keys(path, data)
    try:
        chip = Chip.model_validate(data)
    except ValidationError as exc:
        raise _one_line(path, exc) from None
    presets = Path(__file__).resolve().parent.parent / "data" / "presets"
    preset = Path(chip.preset)
    if not (preset.is_file() or (presets / f"{chip.preset}.yaml").is_file()):
        known = ", ".join(sorted(p.stem for p in presets.glob("*.yaml")))
        raise ConfigError(f"{path}: preset: no device preset '{chip.preset}'; known: {known}")
    return chip.model_copy(update={"path": path})


def load_station(path: str | Path) -> Station:
    """Load and validate a station file and the chip file it names."""
    path = Path(path)
    data = read_yaml(path)
    _refuse_loader_keys(path, data)
    try:
        station = Station.model_validate(data)
    except ValidationError as exc:
        raise _one_line(path, exc) from None
    chip_path = station.chip if station.chip.is_absolute() else path.parent / station.chip
    chip = load_chip(chip_path, named_by=f"the 'chip' key of {path}")
    _check_pins_exist(path, station, chip)
    return station.model_copy(update={"chip": chip_path, "chip_spec": chip, "path": path})


def _check_pins_exist(path: Path, station: Station, chip: Chip) -> None:
    for pin in station.pin_channels():
        array, kind, index = parse_pin(pin)
        spec = chip.arrays.get(array)
        size = None if spec is None else (spec.rows if kind == "row" else spec.cols)
        if size is None or index >= size:
            raise ConfigError(f"{path}: wiring.columns: pin {pin} does not exist on chip '{chip.name}'")


def resolve_library(station: Station, name: str) -> str:
    """The VISA library string for an instrument, with bench paths made absolute."""
    lib = station.visa_library_of(name)
    file, sep, backend = lib.rpartition("@")
    if sep and file and station.path is not None:
        bench = Path(file)
        if not bench.is_absolute():
            bench = (station.path.parent / bench).resolve()
        return f"{bench}@{backend}"
    return lib
