"""A procedure cannot reach a raw driver through the objects the rig gives it.

The walk follows what a procedure can reach without digging into Python's
internals: attributes (``dir``, ``vars``, ``__dict__``, slots, properties),
items of containers, what a bound method or a ``functools.partial`` is bound
to, a function's defaults, and what the rig's public methods return. It does
not open closure cells or frames; the last test shows that such digging does
reach a driver, as docs/safety.md says.
"""

from __future__ import annotations

import functools
import types
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import BaseModel
from pymeasure.adapters import Adapter
from pymeasure.instruments import Channel, Instrument
from pyvisa.highlevel import VisaLibraryBase
from pyvisa.resources import Resource

from drivers.k2600 import CurrentReader
from drivers.tsp import TspConnection
from labctl import runner
from labctl.rig import Rig
from labctl.station import load_station
from tests.conftest import REPO

RAW = (
    Instrument,
    Channel,
    Adapter,
    TspConnection,
    CurrentReader,
    Resource,
    VisaLibraryBase,
)
LEAVES = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    type,
    types.ModuleType,
    types.CodeType,
    Path,
)


def station_on_fresh_bench(tmp_path: Path, name: str) -> Path:
    station = yaml.safe_load((REPO / f"data/stations/{name}.yaml").read_text())
    station["chip"] = str(REPO / "data/chips/pvk-demo.yaml")
    station["visa_library"] = f"{tmp_path / 'bench.yaml'}@labsim"
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(station, sort_keys=False))
    bench = yaml.safe_load((REPO / f"data/benches/{name}.yaml").read_text())
    bench["station"] = str(tmp_path / "station.yaml")
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(bench, sort_keys=False))
    return tmp_path / "station.yaml"


def neighbours(obj: object) -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
            yield f"<key {key!r}>", key
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for k, item in enumerate(obj):
            yield f"[{k}]", item
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for k, item in enumerate(obj.flat):
                yield f".flat[{k}]", item
        return
    if isinstance(obj, weakref.ref):
        yield "()", obj()
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
        return
    if isinstance(obj, types.FunctionType):
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        yield ".__dict__", obj.__dict__
        return
    if isinstance(obj, types.BuiltinFunctionType | types.MethodWrapperType):
        yield ".__self__", getattr(obj, "__self__", None)
        return
    yield ".__dict__", getattr(obj, "__dict__", None)
    for name in dir(obj):
        if name.startswith("__") and name not in ("__dict__", "__weakref__"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property that cannot be read now
            continue
        yield f".{name}", value


def raw_reachable(**roots: object) -> list[str]:
    """Paths from the roots to every raw driver, adapter or connection."""
    found: list[str] = []
    seen: set[int] = set()
    stack = list(roots.items())
    keep = []  # keep what getattr made alive, so that ids stay unique
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, LEAVES) or id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        if isinstance(obj, RAW):
            found.append(f"{path}: {type(obj).__name__}")
            continue
        if isinstance(obj, BaseModel) or type(obj).__module__.startswith(
            ("logging", "sqlalchemy")
        ):
            continue  # the station file and loggers hold no instrument
        stack.extend((path + step, value) for step, value in neighbours(obj))
    return found


@pytest.mark.parametrize("station_name", ["demo", "k2450-sim"])
@pytest.mark.parametrize("procedure", ["program_map", "read_map", "iv_sweep"])
def test_a_procedure_reaches_no_raw_driver(tmp_path, station_name, procedure):
    station = load_station(station_on_fresh_bench(tmp_path, station_name))
    proc = runner.build_procedure(procedure, {}, station)
    rig = Rig(station)
    try:
        proc.rig = rig
        proc.startup()
        roles = station.roles
        channels = [rig.smu(ch) for ch in (roles.drive, *roles.sense)]
        found = raw_reachable(
            proc=proc,
            rig=rig,
            batch=rig.batch(),
            lines=rig.lines("A0"),
            readings=rig.readings(channels),
            guard=rig.guard,
            matrix=rig.matrix,
            vars_of_rig=vars(rig),
            channels=rig.channels,
        )
    finally:
        rig.close()
    assert found == []


def test_the_rig_has_no_public_way_to_a_driver(tmp_path):
    station = load_station(station_on_fresh_bench(tmp_path, "demo"))
    rig = Rig(station)
    try:
        for name in ("drivers", "driver", "adapters", "connection", "instruments"):
            assert not hasattr(rig, name)
        channel = rig.smu(station.roles.drive)
        for name in ("driver", "_channel", "channel", "adapter", "connection"):
            assert not hasattr(channel, name)
        assert not hasattr(rig.matrix, "driver")
        with rig.batch() as held:
            assert held is None  # not the connection
    finally:
        rig.close()


def test_the_walk_finds_a_driver_left_in_reach(tmp_path):
    station = load_station(station_on_fresh_bench(tmp_path, "demo"))
    rig = Rig(station)
    try:
        rig.smu(station.roles.drive).spare = {
            "kept": [rig._hardware().channel("smu2.smua")]
        }
        found = raw_reachable(rig=rig)
    finally:
        rig.close()
    assert len(found) == 1
    assert found[0].endswith("['kept'][0]: Keithley2600Channel")


def test_digging_into_closures_does_reach_a_driver(tmp_path):
    """What Python cannot prevent, and docs/safety.md says so."""
    station = load_station(station_on_fresh_bench(tmp_path, "demo"))
    rig = Rig(station)
    try:
        port = rig.smu(station.roles.drive)._port
        cells = [c.cell_contents for c in port.get_limit.__closure__]
        assert any(isinstance(c, Channel) for c in cells)
    finally:
        rig.close()
