"""Loading a benchmark script of ``bench/`` as a module, for its tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


@contextmanager
def benchmark_module(script: str) -> Iterator[ModuleType]:
    """``bench/<script>.py`` as a module while the block runs."""
    spec = importlib.util.spec_from_file_location(f"{script}_benchmark",
                                                  BENCH / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
