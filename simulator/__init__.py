"""The simulated bench: device physics, array circuit, instruments, transports.

``simulator.bench.Bench.from_file(path)`` builds the bench a bench file
describes; ``pyvisa.ResourceManager("<bench file>@labsim")`` opens its
instruments through pyvisa. docs/simulator.md describes what is simulated.
"""
