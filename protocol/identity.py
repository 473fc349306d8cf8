"""Who each MQTT connection is: one naming rule for user names and client ids, used by every part.

The broker binds each credential to its client id (mosquitto's dynamic-security plugin
refuses a login whose client id differs from the one its client entry names), so that
a stolen password cannot take over another client's session.  For that to hold, the
user name a process logs in with and the client id it connects as must be one string,
and every part must derive it the same way.  This module is that one place: the broker
provisions exactly the connections named here, and :func:`protocol.mqtt.make_client`
connects only as ``endpoint.username``.

An *account* is what an operator provisions and what holds one password:

* ``gate.<site>.<gate>``: one gate, one connection (the account itself).
* ``console.<name>``: one console, several connections, each its own user name with the
  account's password: ``console.<name>`` (ingest worker 0, which also owns statuses),
  ``console.<name>.w1`` … ``.w15`` (further ingest workers), and one each for
  :class:`ConsoleConnection`.
* ``homeassistant.<site>.<name>``: a site's Home Assistant instance, one connection (the
  account itself).  It reads what the console publishes for it and writes only its
  command topic (broker/acl.py, docs/homeassistant.md); never a gate's.

Site, gate and console names follow :func:`protocol.topics.validate_name` (no dots), so a
user name splits into its parts unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import ProtocolError, Rejection
from protocol.topics import validate_name

SEPARATOR = "."


class Role(StrEnum):
    GATE = "gate"
    CONSOLE = "console"
    ADMIN = "broker"
    """The broker's own administrator: gatepost's provisioning, talking to the dynamic-security plugin."""
    HOMEASSISTANT = "homeassistant"
    """A site's Home Assistant: reads the console's discovery and state topics, asks the console for commands."""


class ConsoleConnection(StrEnum):
    """A console's connections other than its ingest workers; the value is the user name's last part."""

    COMMANDS = "commands"
    """Sends commands to gates and reads their responses (console.commands)."""
    CARDS = "cards"
    """Publishes the site's door-card list and thumbnails (console.card_sync)."""
    PUBLISH = "publish"
    """``gatepost console publish-passes``: the signed trust bundle and revocation list."""
    WEB = "web"
    """The web console's own publishes (a revocation list after a pass is revoked)."""
    WATCH = "watch"
    """A read-only observer (the demo waits on the console's retained status through it)."""
    HEALTH = "health"
    """Reads every gate's retained health message for the web console (console.health)."""
    HOMEASSISTANT = "homeassistant"
    """Publishes Home Assistant discovery and states, and reads Home Assistant's commands
    (console.homeassistant); the console, never Home Assistant, then commands the gate."""
    DUTY = "duty"
    """Publishes each gate's retained duty sheet: who is rostered there, and their PIN hashes (console.duty_sheets)."""


MAX_INGEST_WORKERS = 16
"""Ingest workers a console may run: connections ``console.<name>`` and ``.w1`` … ``.w15``.

It was 64 while any client id would do.  Now each possible worker must exist beforehand
as its own broker client bound to its own client id, so the number is a provisioning
decision: every console account is 16 + 8 dynamic-security clients, each a login the
broker keeps in memory and in its file.  16 is still beyond what a console host can use:
a worker is a process that wants a core of its own, and the measured gain is 1.68× for
two workers on two cores with PostgreSQL, none on SQLite (docs/BENCHMARKS.md)."""

ADMIN_ACCOUNT = f"{Role.ADMIN.value}{SEPARATOR}admin"
"""The broker administrator's user name and client id (``broker.admin``)."""


class IdentityReason(StrEnum):
    """Why a user name or connection was refused.  Stable strings: they appear in logs."""

    NOT_AN_ACCOUNT = "not_an_account"
    UNKNOWN_CONNECTION = "unknown_connection"


class IdentityError(Rejection[IdentityReason], ValueError):
    """A user name that follows no gatepost naming rule, or a connection an account does not have."""


@dataclass(frozen=True, slots=True)
class Identity:
    """One connection's user name (= client id), split into what it says."""

    role: Role
    site: str | None = None
    gate: str | None = None
    name: str | None = None
    connection: str | None = None
    """``None`` for the account's own connection; else the last part (``w3``, ``commands``, …)."""

    @property
    def account(self) -> str:
        if self.role is Role.GATE:
            return gate_identity(self.site or "", self.gate or "")
        if self.role is Role.HOMEASSISTANT:
            return homeassistant_identity(self.site or "", self.name or "")
        if self.role is Role.CONSOLE:
            return console_identity(self.name or "")
        return ADMIN_ACCOUNT

    @property
    def client_id(self) -> str:
        """The user name and the client id: the same string, always."""
        return self.account if self.connection is None else f"{self.account}{SEPARATOR}{self.connection}"


def gate_identity(site: str, gate: str) -> str:
    return SEPARATOR.join((Role.GATE.value, validate_name(site, "site"), validate_name(gate, "gate")))


def homeassistant_identity(site: str, name: str = "homeassistant") -> str:
    """A site's Home Assistant account; the site is in the name, since its ACL is that site's."""
    return SEPARATOR.join(
        (Role.HOMEASSISTANT.value, validate_name(site, "site"), validate_name(name, "Home Assistant name"))
    )


def console_identity(name: str = "console") -> str:
    return SEPARATOR.join((Role.CONSOLE.value, validate_name(name, "console name")))


def ingest_connection(index: int) -> str | None:
    """The connection of ingest worker ``index``: worker 0 is the account itself, so the
    session (and queue) of a console that ran one process carries over to a pool."""
    if not 0 <= index < MAX_INGEST_WORKERS:
        raise IdentityError(
            IdentityReason.UNKNOWN_CONNECTION, f"ingest worker {index} is not 0..{MAX_INGEST_WORKERS - 1}"
        )
    return None if index == 0 else f"w{index}"


def console_connections() -> list[str | None]:
    """Every connection a console account has, ``None`` being the account's own."""
    workers = [ingest_connection(index) for index in range(MAX_INGEST_WORKERS)]
    return [*workers, *(connection.value for connection in ConsoleConnection)]


def account_connections(account: str) -> list[str]:
    """The user names (= client ids) the broker provisions for ``account``."""
    identity = parse_identity(account)
    if identity.connection is not None:
        raise IdentityError(IdentityReason.NOT_AN_ACCOUNT, f"{account!r} is a connection, not an account")
    if identity.role is Role.CONSOLE:
        return [
            Identity(Role.CONSOLE, name=identity.name, connection=c).client_id for c in console_connections()
        ]
    return [account]


def console_certificates(username: str, workers: int) -> list[str]:
    """The connection names a console with ``workers`` ingest workers needs certificates for:
    its first ``workers`` workers and every :class:`ConsoleConnection`, nothing more, so a
    copied key is good for no connection the console does not run."""
    account = parse_identity(username).account
    if not 1 <= workers <= MAX_INGEST_WORKERS:
        raise IdentityError(
            IdentityReason.UNKNOWN_CONNECTION, f"{workers} ingest workers is not 1..{MAX_INGEST_WORKERS}"
        )
    connections = [ingest_connection(i) for i in range(workers)] + [c.value for c in ConsoleConnection]
    return [account if c is None else f"{account}{SEPARATOR}{c}" for c in connections]


def connection_id(username: str, connection: str | None) -> str:
    """The user name of ``connection`` of the account ``username`` belongs to.

    ``username`` may be the account or any of its connections; a gate has no connection
    but its own, and a console only those of :func:`console_connections`.
    """
    identity = parse_identity(username)
    if connection not in _allowed(identity.role):
        raise IdentityError(
            IdentityReason.UNKNOWN_CONNECTION,
            f"{identity.account!r} has no connection {connection!r}",
        )
    return Identity(identity.role, identity.site, identity.gate, identity.name, connection).client_id


def parse_identity(username: str) -> Identity:
    """Split a user name into role, names and connection; :class:`IdentityError` if it is not one of ours."""
    parts = username.split(SEPARATOR) if isinstance(username, str) else []
    try:
        if username == ADMIN_ACCOUNT:
            return Identity(Role.ADMIN)
        if len(parts) == 3 and parts[0] == Role.GATE.value:
            return Identity(Role.GATE, site=validate_name(parts[1]), gate=validate_name(parts[2]))
        if len(parts) == 3 and parts[0] == Role.HOMEASSISTANT.value:
            return Identity(Role.HOMEASSISTANT, site=validate_name(parts[1]), name=validate_name(parts[2]))
        if len(parts) in (2, 3) and parts[0] == Role.CONSOLE.value:
            connection = parts[2] if len(parts) == 3 else None
            if connection not in _allowed(Role.CONSOLE):
                raise IdentityError(
                    IdentityReason.UNKNOWN_CONNECTION,
                    f"{username!r}: consoles have no connection {connection!r}",
                )
            return Identity(Role.CONSOLE, name=validate_name(parts[1]), connection=connection)
    except ProtocolError:
        pass
    raise IdentityError(
        IdentityReason.NOT_AN_ACCOUNT,
        f"{str(username)[:80]!r} is not gate.<site>.<gate>, console.<name>[.<connection>],"
        f" homeassistant.<site>.<name> or {ADMIN_ACCOUNT}",
    )


def _allowed(role: Role) -> list[str | None]:
    return console_connections() if role is Role.CONSOLE else [None]
