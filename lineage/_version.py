"""The installed distribution's version: imported by anything that records code identity."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "lineage-store"  # the name on the package index; the import package is lineage

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
