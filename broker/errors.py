"""What can go wrong in the broker part, each error also the builtin it resembles."""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import GatepostError, Rejection


class BrokerError(GatepostError, RuntimeError):
    """mosquitto would not start, died, or did not take a reload in time.

    The message carries the tail of mosquitto's own log, because that is where the
    actual cause (a port in use, an unreadable password file) is written.
    """


class ProvisioningReason(StrEnum):
    """Why a provisioning request was refused.  Stable strings: the CLI prints them."""

    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    CORRUPT_REGISTRY = "corrupt_registry"


class ProvisioningError(Rejection[ProvisioningReason], ValueError):
    """A user could not be added or removed; ``reason`` says which rule was broken."""


class UnknownUserError(ProvisioningError, LookupError):
    """The username is not in the registry, so there is nothing to remove."""

    def __init__(self, username: str) -> None:
        super().__init__(ProvisioningReason.UNKNOWN_USER, f"no user {username!r}")
        self.username = username
