"""Measurement procedures, one module per family, by command-line name."""

from procedures.attention_head import AttentionHead
from procedures.base import LabProcedure
from procedures.iv_sweep import IVSweep
from procedures.program_map import ProgramMap
from procedures.read_map import ReadMap

PROCEDURES: dict[str, type[LabProcedure]] = {
    cls.NAME: cls for cls in (IVSweep, ReadMap, ProgramMap, AttentionHead)
}

__all__ = ["PROCEDURES", "LabProcedure"]
