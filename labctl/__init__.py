"""labctl: hardware-in-the-loop control of perovskite memristor crossbar chips."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labctl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
