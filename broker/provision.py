"""Broker users: one per gate, one per console, each with a random password and a fenced ACL.

The registry ``users.json`` is the single source of truth; ``passwd`` and ``acl`` are
rebuilt from it on every change, so they can never drift apart or keep a user that was
removed.  Each new password is also written once to ``credentials/<username>.secret``
(0600) for the installer to copy to the gate; the registry keeps only its hash.

Layout of ``state_dir``::

    users.json                 registry (0600)
    passwd                     mosquitto password_file (0640)
    acl                        mosquitto acl_file (0640)
    credentials/<user>.secret  plaintext password for installing on the device (0600, dir 0700)
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

from broker.acl import Rule, console_rules, gate_rules, render_acl
from broker.errors import ProvisioningError, ProvisioningReason, UnknownUserError
from broker.files import write_atomic
from broker.passwords import check_password, hash_password, new_password
from protocol.topics import validate_name

REGISTRY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Credentials:
    """A broker login.  ``repr`` shows the username only, so logging one leaks nothing."""

    username: str
    password: str = field(repr=False)


def gate_username(site: str, gate: str) -> str:
    return f"gate.{validate_name(site, 'site')}.{validate_name(gate, 'gate')}"


def console_username(name: str = "console") -> str:
    return f"console.{validate_name(name, 'console name')}"


class Provisioning:
    """Adds and removes broker users in ``state_dir``.  Safe against a concurrent CLI run (file lock)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "users.json"

    @property
    def passwd_path(self) -> Path:
        return self.state_dir / "passwd"

    @property
    def acl_path(self) -> Path:
        return self.state_dir / "acl"

    @property
    def credentials_dir(self) -> Path:
        return self.state_dir / "credentials"

    def secret_path(self, username: str) -> Path:
        return self.credentials_dir / f"{username}.secret"

    # -- public operations ----------------------------------------------------------

    def add_gate(self, site: str, gate: str, password: str | None = None) -> Credentials:
        """Create the gate's user, or give an existing one a new password (like ``mosquitto_passwd -b``)."""
        username = gate_username(site, gate)
        return self._add(username, {"role": "gate", "site": site, "gate": gate}, password)

    def add_console(self, name: str = "console", password: str | None = None) -> Credentials:
        username = console_username(name)
        return self._add(username, {"role": "console", "name": name}, password)

    def remove(self, username: str) -> None:
        """Delete the user, its ACL and its secret file.  Raises UnknownUserError if absent."""
        with self._locked() as users:
            if username not in users:
                raise UnknownUserError(username)
            del users[username]
            self._write_all(users)
            with contextlib.suppress(FileNotFoundError):
                self.secret_path(username).unlink()

    def users(self) -> list[str]:
        return sorted(self._load())

    def sync(self) -> None:
        """Write ``passwd`` and ``acl`` from the registry (empty ones if there is none yet).

        mosquitto refuses to start without its password and ACL files, so the launcher
        calls this before every start.
        """
        with self._locked() as users:
            self._write_all(users)

    # -- internals ------------------------------------------------------------------

    def _add(self, username: str, entry: dict[str, Any], password: str | None) -> Credentials:
        password = new_password() if password is None else check_password(password)
        entry = {**entry, "hash": hash_password(password)}
        with self._locked() as users:
            users[username] = entry
            self._write_secret(username, password)
            self._write_all(users)
        return Credentials(username, password)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".provision.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._load()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.registry_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            users = doc["users"]
            if doc.get("version") != REGISTRY_VERSION or not isinstance(users, dict):
                raise ValueError("unexpected version or shape")
            for username, entry in users.items():
                if entry.get("role") not in ("gate", "console") or not str(entry.get("hash", "")).startswith(
                    "$7$"
                ):
                    raise ValueError(f"bad entry for {username!r}")
            return users
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProvisioningError(
                ProvisioningReason.CORRUPT_REGISTRY, f"{self.registry_path}: {exc}"
            ) from None

    def _rules(self, entry: dict[str, Any]) -> list[Rule]:
        if entry["role"] == "gate":
            return gate_rules(entry["site"], entry["gate"])
        return console_rules()

    def _write_all(self, users: dict[str, dict[str, Any]]) -> None:
        """Registry first: if we die between files, the next sync rebuilds passwd and acl from it."""
        ordered = sorted(users.items())
        write_atomic(
            self.registry_path,
            json.dumps({"version": REGISTRY_VERSION, "users": dict(ordered)}, indent=2) + "\n",
            mode=0o600,
        )
        write_atomic(
            self.passwd_path, "".join(f"{name}:{entry['hash']}\n" for name, entry in ordered), mode=0o640
        )
        write_atomic(
            self.acl_path, render_acl((name, self._rules(entry)) for name, entry in ordered), mode=0o640
        )

    def _write_secret(self, username: str, password: str) -> None:
        self.credentials_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.credentials_dir, 0o700)
        write_atomic(self.secret_path(username), password, mode=0o600)
