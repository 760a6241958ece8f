"""The demo head's scores and context as dynamic MACs through the instruments."""

from __future__ import annotations

import numpy as np

from labctl.engine import reference
from labctl.engine.attention import HeadConfig, OnChipHead
from labctl.engine.mac import MacConfig
from labctl.rig import Rig
from labctl.station import load_station
from labctl.workload import load_extract


def test_scores_and_context_run_on_the_chip_when_asked(station_path):
    extract = load_extract()
    config = HeadConfig(sentences=1, scores_on_chip=True, context_on_chip=True,
                        mac=MacConfig(bits=6))
    assert config.placement()["scores q·kᵀ"].startswith("chip (dynamic MAC")
    rig = Rig(load_station(station_path))
    try:
        head = OnChipHead(rig, extract, config)
        w = head.weights
        x = head.inputs()
        exact = np.hstack([reference.project(x, w.wq, 0 * w.bq),
                           reference.project(x, w.wk, 0 * w.bk),
                           reference.project(x, w.wv, 0 * w.bv)])
        ops = head._dynamic_operations()
        result = head.compare(exact, ops)
    finally:
        rig.close()
    s = result.sentences[0]
    assert ops.chip.ledger.cells_by_operation["scores"] == 32 * 2 * 11
    assert ops.chip.ledger.cells_by_operation["context"] == 11 * 2 * 32
    assert s.cosine_context.min() > 0.99
    assert s.top1_agreement >= 10 / 11
    assert not np.allclose(s.attention_chip, s.attention_reference, atol=1e-9)
