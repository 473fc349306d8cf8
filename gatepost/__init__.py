"""gatepost: edge software for checkpoint hardware.  See README.md."""

from importlib import metadata

try:
    __version__ = metadata.version("gatepost")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
