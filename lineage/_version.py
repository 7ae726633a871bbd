"""The installed distribution's version: imported by anything that records code identity."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lineage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
