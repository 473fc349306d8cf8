"""Broker users: one account per gate, one per console, each with a random password and a fenced ACL.

The registry ``users.json`` is the single source of truth.  The dynamic-security
plugin's file is rendered from it on every change (and before every start), so the two
can never drift apart or keep a user that was removed; a running broker is brought in
line through the plugin's control topic by :mod:`broker.control`.  Each new password is
also written once to ``credentials/<account>.secret`` (0600) for the installer to copy
to the device; the registry keeps only its hash.

Layout of ``state_dir``::

    users.json                   registry (0600): accounts and the admin's password hash
    admin.secret                 the broker administrator's password (0600), for broker.control
    credentials/<account>.secret plaintext password for installing on the device (0600, dir 0700)
    .provision.lock              serialises provisioning runs

and the plugin's file, where ``mosquitto.conf`` says (``plugin_opt_config_file``; the
data folder, because the plugin rewrites it after each change and must be able to).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.config import DYNSEC_FILE, configured_dynsec_file
from broker.dynsec import DynsecState, desired_state
from broker.errors import ProvisioningError, ProvisioningReason, UnknownUserError
from broker.files import write_atomic
from broker.passwords import check_password, hash_password, new_password, verify_password
from protocol.errors import ProtocolError
from protocol.homeassistant import DEFAULT_DISCOVERY_PREFIX, validate_prefix
from protocol.identity import (
    ADMIN_ACCOUNT,
    IdentityError,
    console_identity,
    gate_identity,
    homeassistant_identity,
    parse_identity,
)

REGISTRY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Credentials:
    """A broker login.  ``repr`` shows the username only, so logging one leaks nothing."""

    username: str
    password: str = field(repr=False)
    tls_ca: Path | None = None
    """With a client certificate (``tls_cert``, CN = ``username``, and its ``tls_key``) the
    broker's TLS listener takes the login from the certificate; the password remains for
    the loopback listener."""
    tls_cert: Path | None = None
    tls_key: Path | None = None


def gate_username(site: str, gate: str) -> str:
    return gate_identity(site, gate)


def console_username(name: str = "console") -> str:
    return console_identity(name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry as the broker should hold it, read under the provisioning lock.

    ``passwords`` maps each account whose password is at hand (its secret file still
    matches the registry's hash) to that password: the plugin accepts new passwords only
    in plaintext, so an account rotated while the broker was away can be applied live
    only if its secret is still here.
    """

    state: DynsecState
    passwords: dict[str, str] = field(repr=False)
    admin: Credentials


@dataclass(slots=True)
class _Registry:
    users: dict[str, dict[str, Any]]
    admin_hash: str | None


class Provisioning:
    """Adds and removes broker users in ``state_dir``.  Safe against a concurrent CLI run (file lock)."""

    def __init__(self, state_dir: Path, *, dynsec_path: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self._dynsec_path = dynsec_path

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "users.json"

    @property
    def dynsec_path(self) -> Path:
        """The plugin's file: where this folder's ``mosquitto.conf`` points, else beside the registry."""
        if self._dynsec_path is not None:
            return self._dynsec_path
        return configured_dynsec_file(self.state_dir / "mosquitto.conf") or self.state_dir / DYNSEC_FILE

    @property
    def admin_path(self) -> Path:
        return self.state_dir / "admin.secret"

    @property
    def credentials_dir(self) -> Path:
        return self.state_dir / "credentials"

    def secret_path(self, username: str) -> Path:
        return self.credentials_dir / f"{username}.secret"

    # -- public operations ----------------------------------------------------------

    def add_gate(self, site: str, gate: str, password: str | None = None) -> Credentials:
        """Create the gate's account, or give an existing one a new password."""
        username = gate_username(site, gate)
        return self._add(username, {"role": "gate", "site": site, "gate": gate}, password)

    def add_gates(self, site: str, gates: list[str]) -> list[Credentials]:
        """Create many gates' accounts in one locked write (a district provisioning a fleet).

        :meth:`add_gate` rewrites the registry and the plugin's file for each gate, which
        for a thousand gates is a thousand rewrites of a file that grows to a thousand
        entries; here both are written once.
        """
        made: list[Credentials] = []
        with self._locked() as registry:
            for gate in gates:
                username = gate_username(site, gate)
                password = new_password()
                registry.users[username] = {
                    "role": "gate",
                    "site": site,
                    "gate": gate,
                    "hash": hash_password(password),
                }
                self._write_secret(username, password)
                made.append(Credentials(username, password))
            self._write_all(registry)
        return made

    def add_console(self, name: str = "console", password: str | None = None) -> Credentials:
        """Create a console's account (all its connections), or give it a new password."""
        username = console_username(name)
        return self._add(username, {"role": "console", "name": name}, password)

    def add_homeassistant(
        self,
        site: str,
        name: str = "homeassistant",
        *,
        discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
        password: str | None = None,
    ) -> Credentials:
        """Create a site's Home Assistant account (docs/homeassistant.md), or give it a new password."""
        username = homeassistant_identity(site, name)
        entry = {
            "role": "homeassistant",
            "site": site,
            "name": name,
            "discovery_prefix": validate_prefix(discovery_prefix),
        }
        return self._add(username, entry, password)

    def remove(self, username: str) -> None:
        """Delete the account, its role and its secret file.  Raises UnknownUserError if absent."""
        with self._locked() as registry:
            if username not in registry.users:
                raise UnknownUserError(username)
            del registry.users[username]
            self._write_all(registry)
            with contextlib.suppress(FileNotFoundError):
                self.secret_path(username).unlink()

    def users(self) -> list[str]:
        return sorted(self._load().users)

    def sync(self) -> None:
        """Write the plugin's file from the registry (creating the admin on first use).

        The plugin reads its file only when mosquitto starts, so the launcher calls this
        before every start, and a unit that starts mosquitto itself runs ``gatepost
        broker sync`` first (docs/broker.md).
        """
        with self._locked() as registry:
            self._write_all(registry)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Hold the lock while the caller applies the registry to a running broker.

        Applying under the lock keeps two provisioning runs from applying in the wrong
        order, and from logging in as the admin at once (the second would end the first's
        session: one user name, one client id).
        """
        with self._locked() as registry:
            if self._ensure_admin(registry):
                self._write_all(registry)
            assert registry.admin_hash is not None
            passwords: dict[str, str] = {}
            for account, entry in registry.users.items():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    secret = self.secret_path(account).read_text(encoding="utf-8").strip()
                    if verify_password(secret, entry["hash"]):
                        passwords[account] = secret
            admin = Credentials(ADMIN_ACCOUNT, self.admin_path.read_text(encoding="utf-8").strip())
            passwords[ADMIN_ACCOUNT] = admin.password
            yield Snapshot(desired_state(registry.users, registry.admin_hash), passwords, admin)

    # -- internals ------------------------------------------------------------------

    def _add(self, username: str, entry: dict[str, Any], password: str | None) -> Credentials:
        password = new_password() if password is None else check_password(password)
        entry = {**entry, "hash": hash_password(password)}
        with self._locked() as registry:
            registry.users[username] = entry
            self._write_secret(username, password)
            self._write_all(registry)
        return Credentials(username, password)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Registry]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".provision.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._load()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> _Registry:
        try:
            raw = self.registry_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Registry({}, None)
        try:
            doc = json.loads(raw)
            users = doc["users"]
            if doc.get("version") != REGISTRY_VERSION or not isinstance(users, dict):
                raise ValueError("unexpected version or shape")
            for username, entry in users.items():
                if entry.get("role") not in ("gate", "console", "homeassistant") or not str(
                    entry.get("hash", "")
                ).startswith("$7$"):
                    raise ValueError(f"bad entry for {username!r}")
                if parse_identity(username).connection is not None:
                    raise ValueError(f"{username!r} is a connection, not an account")
                if entry["role"] == "homeassistant":
                    validate_prefix(entry.get("discovery_prefix", DEFAULT_DISCOVERY_PREFIX))
            admin = doc.get("admin")
            admin_hash = admin.get("hash") if isinstance(admin, dict) else None
            if admin_hash is not None and not str(admin_hash).startswith("$7$"):
                raise ValueError("bad admin entry")
            return _Registry(users, admin_hash)
        except (ValueError, KeyError, TypeError, AttributeError, IdentityError, ProtocolError) as exc:
            raise ProvisioningError(
                ProvisioningReason.CORRUPT_REGISTRY, f"{self.registry_path}: {exc}"
            ) from None

    def _ensure_admin(self, registry: _Registry) -> bool:
        """Give the registry an admin hash matching ``admin.secret`` (0600), making a password
        when there is none; True if the registry changed and must be written.

        A registry written before the plugin (version 1 without ``admin``) gains one here.
        A new admin password reaches a running broker only at its next start, since the
        broker still holds the old one.
        """
        try:
            secret: str | None = self.admin_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            secret = None
        if secret and registry.admin_hash is not None and verify_password(secret, registry.admin_hash):
            return False
        if secret is None or len(secret) < 12:
            secret = new_password()
            write_atomic(self.admin_path, secret, mode=0o600)
        registry.admin_hash = hash_password(secret)
        return True

    def _write_all(self, registry: _Registry) -> None:
        """Registry first: if we die between files, the next sync rebuilds the plugin's file from it."""
        self._ensure_admin(registry)
        assert registry.admin_hash is not None
        self._write_registry(registry)
        path = self.dynsec_path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, desired_state(registry.users, registry.admin_hash).render(), mode=0o640)

    def _write_registry(self, registry: _Registry) -> None:
        doc: dict[str, Any] = {"version": REGISTRY_VERSION}
        if registry.admin_hash is not None:
            doc["admin"] = {"username": ADMIN_ACCOUNT, "hash": registry.admin_hash}
        doc["users"] = dict(sorted(registry.users.items()))
        write_atomic(self.registry_path, json.dumps(doc, indent=2) + "\n", mode=0o600)

    def _write_secret(self, username: str, password: str) -> None:
        self.credentials_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.credentials_dir, 0o700)
        write_atomic(self.secret_path(username), password, mode=0o600)
