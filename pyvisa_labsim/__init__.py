"""The ``@labsim`` pyvisa backend: the simulated bench, in-process.

Opened as ``pyvisa.ResourceManager("<bench file>@labsim")``; pyvisa finds
this module by the name after ``@`` and uses :data:`WRAPPER_CLASS`.
"""

from pyvisa_labsim.highlevel import LabsimVisaLibrary

WRAPPER_CLASS = LabsimVisaLibrary

__all__ = ["WRAPPER_CLASS", "LabsimVisaLibrary"]
