"""The dynamic-security plugin's view of the registry: clients bound to client ids, one role each.

mosquitto's ``password_file`` and ``acl_file`` cannot say "this password logs in only with
this client id", so with them one gate's password could connect under the console's id
and take over its session.  The dynamic-security plugin can: a client entry with
``clientid`` set authenticates only when the connecting client id equals it
(plugins/dynamic-security/auth.c ``dynsec_auth__basic_auth_callback``), and a refused
login leaves the real client connected.  Its ACL check also sees ``$share/<group>/…``
filters whole (src/security.c ``acl__check_dollar`` lets them through to the plugin), so
only a role with a ``$share`` rule can join a share group.

This module turns ``users.json`` into the plugin's state, for the file the plugin reads
at start and for :mod:`broker.control`, which applies it to a running broker:

* every connection of every account (:func:`protocol.identity.account_connections`) is one
  plugin client whose user name and ``clientid`` are the connection's id and whose
  password is its account's;
* one role per gate (its fenced subtree), one ``console`` role, one per Home Assistant
  account (its site's discovery and state topics, its command topic), one for the admin;
* every ``defaultACLAccess`` is false: what no role grants is refused.

The file format is the plugin's own (plugins/dynamic-security/clients.c, roles.c,
plugin.c ``dynsec__general_config_load``; https://mosquitto.org/documentation/dynamic-security/).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.acl import (
    Access,
    Rule,
    console_homeassistant_rules,
    console_rules,
    dynsec_acls,
    gate_rules,
    homeassistant_rules,
)
from protocol.homeassistant import DEFAULT_DISCOVERY_PREFIX
from protocol.identity import ADMIN_ACCOUNT, account_connections, parse_identity

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
CONSOLE_ROLE = "console"
ADMIN_ROLE = ADMIN_ACCOUNT
MARK_PREFIX = "gatepost registry "
"""Each client's ``textdescription`` names the registry hash its password came from.

The plugin never reveals a password hash, and hashes the passwords it is sent with a salt
of its own, so this mark is how :mod:`broker.control` tells a client that already holds
the registry's password from one whose password was rotated while the broker was away."""


def gate_role(site: str, gate: str) -> str:
    return f"gate.{site}.{gate}"


def admin_rules() -> list[Rule]:
    """The admin sends commands to the plugin and reads its answers, nothing else."""
    return [Rule(Access.WRITE, CONTROL_TOPIC), Rule(Access.READ, RESPONSE_TOPIC)]


def password_fields(encoded: str) -> dict[str, Any]:
    """A ``$7$<iterations>$<salt>$<hash>`` registry hash as the plugin's ``password``, ``salt``
    and ``iterations``: the same PBKDF2-HMAC-SHA512 with a 12-byte salt
    (plugins/dynamic-security/auth.c ``dynsec_auth__pw_hash``), so no password is needed."""
    _, kind, iterations, salt, digest = encoded.split("$")
    if kind != "7":
        raise ValueError(f"not a $7$ hash: {encoded[:4]!r}")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def mark(encoded: str) -> str:
    return MARK_PREFIX + hashlib.sha256(encoded.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One plugin client: a connection of an account."""

    username: str
    account: str
    role: str
    hash: str = field(repr=False)

    @property
    def mark(self) -> str:
        return mark(self.hash)

    def entry(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "clientid": self.username,
            "textdescription": self.mark,
            "roles": [{"rolename": self.role, "priority": -1}],
            **password_fields(self.hash),
        }


@dataclass(frozen=True, slots=True)
class DynsecState:
    """What the plugin should hold: roles (name to ACL list) and clients (user name to spec)."""

    roles: dict[str, list[dict[str, Any]]]
    clients: dict[str, ClientSpec]

    def document(self) -> dict[str, Any]:
        return {
            "defaultACLAccess": {
                "publishClientSend": False,
                "publishClientReceive": False,
                "subscribe": False,
                "unsubscribe": False,
            },
            "clients": [self.clients[name].entry() for name in sorted(self.clients)],
            "groups": [],
            "roles": [{"rolename": name, "acls": self.roles[name]} for name in sorted(self.roles)],
        }

    def render(self) -> str:
        return json.dumps(self.document(), indent=2) + "\n"


def desired_state(users: Mapping[str, Mapping[str, Any]], admin_hash: str) -> DynsecState:
    """The plugin state for the registry's ``users`` and the admin's password hash."""
    roles: dict[str, list[dict[str, Any]]] = {ADMIN_ROLE: dynsec_acls(admin_rules())}
    clients = {ADMIN_ACCOUNT: ClientSpec(ADMIN_ACCOUNT, ADMIN_ACCOUNT, ADMIN_ROLE, admin_hash)}
    # Every console may publish discovery under each prefix a Home Assistant account reads.
    prefixes = {DEFAULT_DISCOVERY_PREFIX} | {
        entry.get("discovery_prefix", DEFAULT_DISCOVERY_PREFIX)
        for entry in users.values()
        if entry["role"] == "homeassistant"
    }
    for account, entry in users.items():
        if entry["role"] == "gate":
            role = gate_role(entry["site"], entry["gate"])
            roles[role] = dynsec_acls(gate_rules(entry["site"], entry["gate"]))
        elif entry["role"] == "homeassistant":
            role = account  # one role each: the site and prefix differ
            roles[role] = dynsec_acls(
                homeassistant_rules(entry["site"], entry.get("discovery_prefix", DEFAULT_DISCOVERY_PREFIX))
            )
        else:
            role = CONSOLE_ROLE
            roles[role] = dynsec_acls([*console_rules(), *console_homeassistant_rules(prefixes)])
        parse_identity(account)  # a registry entry that is not one of our names never reaches the broker
        for username in account_connections(account):
            clients[username] = ClientSpec(username, account, role, entry["hash"])
    return DynsecState(roles, clients)
