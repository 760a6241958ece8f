"""Write-verify: the array form of the plan, and the fixed-step baseline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.engine.writeverify import (
    Responses,
    WriteVerifyConfig,
    _plan,
    _Response,
    _seen_fraction,
    learn_gains,
    plan_trains,
)

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "writeverify.py"


def cells(seed: int, n: int = 400) -> dict[str, np.ndarray]:
    """Many cells' states, targets and responses, both polarities."""
    cfg = WriteVerifyConfig()
    rng = np.random.default_rng(seed)
    g = rng.uniform(10.5e-6, 99e-6, n)
    target = rng.uniform(11e-6, 95e-6, n)
    setting = g < target
    return {
        "g": g, "target": target, "setting": setting,
        "limit": np.where(setting, cfg.g_max_s, cfg.g_min_s),
        "threshold": np.where(setting, cfg.set_threshold_v, cfg.reset_threshold_v),
        "exponent": np.where(setting, cfg.set_exponent, cfg.reset_exponent),
        "gain": rng.uniform(0.02, 2.0, n),
        "limit_v": np.where(setting, cfg.set_voltage_v, cfg.reset_voltage_v),
        "learned": rng.random(n) < 0.5,
    }


def responses(c: dict[str, np.ndarray]) -> Responses:
    return Responses(c["threshold"], c["exponent"], c["gain"], c["limit_v"],
                     c["learned"])


def scalar(c: dict[str, np.ndarray], k: int) -> _Response:
    return _Response(float(c["threshold"][k]), float(c["exponent"][k]),
                     float(c["gain"][k]), float(c["limit_v"][k]), bool(c["learned"][k]))


def test_the_array_plan_is_the_cell_by_cell_plan():
    cfg = WriteVerifyConfig()
    c = cells(1)
    level, n = plan_trains(c["g"], c["target"], c["limit"], responses(c), cfg)
    for k in range(len(c["g"])):
        want_level, want_n = _plan(float(c["g"][k]), float(c["target"][k]),
                                   float(c["limit"][k]), scalar(c, k), cfg)
        assert n[k] == want_n
        assert level[k] == pytest.approx(want_level, rel=1e-9)


def test_the_array_learning_is_the_cell_by_cell_learning():
    cfg = WriteVerifyConfig()
    c = cells(2)
    level, n = plan_trains(c["g"], c["target"], c["limit"], responses(c), cfg)
    rng = np.random.default_rng(3)
    # some trains move the right way, some overshoot, some do nothing
    after = c["g"] + (c["target"] - c["g"]) * rng.uniform(-0.2, 1.5, c["g"].size)
    gain, moved = learn_gains(responses(c), level, c["g"], after, c["limit"], n)
    for k in range(len(c["g"])):
        response = scalar(c, k)
        seen = _seen_fraction(float(c["g"][k]), float(after[k]), float(c["limit"][k]),
                              int(n[k]))
        assert moved[k] == (seen is not None)
        if seen is not None:
            response.learn(float(level[k]), seen)
        assert gain[k] == pytest.approx(response.gain, rel=1e-9)


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("writeverify_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        return module.compare(tiles=1, rows=4)
    finally:
        del sys.modules[spec.name]


def test_adaptive_needs_at_most_half_the_pulses_of_fixed_step(benchmark):
    adaptive, fixed = benchmark
    assert adaptive.cells == fixed.cells == 32
    assert adaptive.mean_pulses <= 0.5 * fixed.mean_pulses


def test_adaptive_cells_end_within_two_percent(benchmark):
    adaptive, _ = benchmark
    assert adaptive.within >= 31 / 32
    assert adaptive.mean_rounds < 5
