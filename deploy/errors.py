"""What stops an installation before or while it changes the machine."""

from __future__ import annotations

from protocol.errors import GatepostError


class InstallError(GatepostError, RuntimeError):
    """The installation cannot go on as asked; the message says what to do."""
