"""Measurement procedures, one module per family, by command-line name."""

from procedures.attention_head import AttentionHead
from procedures.base import LabProcedure
from procedures.endurance import Endurance
from procedures.forming import Forming
from procedures.iv_sweep import IVSweep
from procedures.multilevel import Multilevel
from procedures.program_map import ProgramMap
from procedures.pulse_response import PulseResponse
from procedures.read_disturb import ReadDisturb
from procedures.read_map import ReadMap
from procedures.retention import Retention
from procedures.variability import Variability

#: The device characterizations, in the order a datasheet runs them.
CHARACTERIZATIONS: tuple[type[LabProcedure], ...] = (
    Forming, Variability, IVSweep, PulseResponse, ReadDisturb, Multilevel, Retention,
    Endurance,
)

PROCEDURES: dict[str, type[LabProcedure]] = {
    cls.NAME: cls
    for cls in (IVSweep, ReadMap, ProgramMap, AttentionHead, *CHARACTERIZATIONS)
}

__all__ = ["CHARACTERIZATIONS", "PROCEDURES", "LabProcedure"]
