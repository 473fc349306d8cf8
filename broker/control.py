"""Bring a running broker in line with the registry, through the dynamic-security plugin's control topic.

The plugin reads its file only when mosquitto starts (mosquitto 2.0.11 has no reload for
it; SIGHUP does not reach it), so a gate added or removed while the broker runs is
applied by commands published to ``$CONTROL/dynamic-security/v1``; the plugin answers
on ``…/response`` and then rewrites its file itself
(https://mosquitto.org/documentation/dynamic-security/, plugins/dynamic-security/plugin.c).

gatepost's administrator is a plugin client like any other, ``broker.admin`` bound to
that client id, whose role may publish commands and read the answers and nothing else.
Its password is in the state folder (``admin.secret``, 0600).

:func:`plan` compares what the broker holds (``listClients``/``listRoles``) with the
registry and emits only the commands for the difference, because every client command
ends that client's connection (``mosquitto_kick_client_by_username`` in
plugins/dynamic-security/clients.c): an unchanged gate must stay connected.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from broker.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC, DynsecState
from broker.errors import BrokerError
from broker.provision import Provisioning
from protocol.identity import ADMIN_ACCOUNT
from protocol.mqtt import KEEPALIVE_S, BrokerEndpoint, connect_properties, make_client

_MISSING = ("Client not found", "Role not found", "Role does not exist")


class ControlError(BrokerError):
    """The broker answered, but refused the admin's login or a command, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What applying the registry changed, and which accounts it could not apply.

    ``pending`` accounts have a password the broker does not hold and gatepost no longer
    knows in plaintext (its secret file was removed); they take effect at the next start,
    when the plugin's file is rendered from the registry.
    """

    changes: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def _acl_set(acls: Any) -> frozenset[tuple[str, str, bool]]:
    return frozenset(
        (str(acl.get("acltype", "")).lower(), str(acl.get("topic", "")), bool(acl.get("allow", False)))
        for acl in acls or []
        if isinstance(acl, dict)
    )


def _role_names(client: Mapping[str, Any]) -> list[str]:
    return sorted(str(role.get("rolename")) for role in client.get("roles") or [] if isinstance(role, dict))


def plan(
    desired: DynsecState,
    clients: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    passwords: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The commands that turn the broker's ``clients`` and ``roles`` into ``desired``, and the
    accounts left pending for want of a password.

    Roles are created or changed first (a client may name only an existing role), clients
    next, deletions last.  Anything the broker holds that the registry does not is deleted:
    the registry is the single source of truth.
    """
    have_roles = {str(role.get("rolename")): role for role in roles}
    have_clients = {str(client.get("username")): client for client in clients}
    commands: list[dict[str, Any]] = []
    pending: set[str] = set()
    for name, acls in sorted(desired.roles.items()):
        if name not in have_roles:
            commands.append({"command": "createRole", "rolename": name, "acls": acls})
        elif _acl_set(have_roles[name].get("acls")) != _acl_set(acls):
            commands.append({"command": "modifyRole", "rolename": name, "acls": acls})
    for username, spec in sorted(desired.clients.items()):
        entry = spec.entry()
        have = have_clients.get(username)
        password = passwords.get(spec.account)
        if have is None:
            if password is None:
                pending.add(spec.account)
                continue
            commands.append(
                {
                    "command": "createClient",
                    "username": username,
                    "password": password,
                    "clientid": username,
                    "textdescription": spec.mark,
                    "roles": entry["roles"],
                }
            )
            continue
        change: dict[str, Any] = {}
        if have.get("textdescription") != spec.mark:
            if password is None:
                pending.add(spec.account)
                continue
            change.update(password=password, textdescription=spec.mark)
        if have.get("clientid") != username:
            change["clientid"] = username
        if _role_names(have) != [spec.role]:
            change["roles"] = entry["roles"]
        if change and username == ADMIN_ACCOUNT:  # a change would end the very session sending it
            pending.add(spec.account)
        elif change:
            commands.append({"command": "modifyClient", "username": username, **change})
    for username in sorted(set(have_clients) - set(desired.clients)):
        commands.append({"command": "deleteClient", "username": username})
    for name in sorted(set(have_roles) - set(desired.roles)):
        commands.append({"command": "deleteRole", "rolename": name})
    return commands, sorted(pending)


def describe(command: Mapping[str, Any]) -> str:
    """A command for a report or a log: never its password."""
    return f"{command['command']} {command.get('username') or command.get('rolename')}"


class DynsecControl:
    """One admin session: log in as ``broker.admin``, send commands, wait for their answers."""

    def __init__(self, host: str, port: int, password: str, *, timeout: float = 5.0) -> None:
        self.endpoint = BrokerEndpoint(host, port, ADMIN_ACCOUNT, password)
        self.timeout = timeout
        self._client = make_client(self.endpoint)
        self._lock = threading.Condition()
        self._connack: ReasonCode | None = None
        self._suback: list[ReasonCode] | None = None
        self._responses: dict[str, dict[str, Any]] = {}
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> DynsecControl:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Log in and subscribe to the answers.  OSError if nothing listens; ControlError if refused."""
        self._client.connect(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=KEEPALIVE_S,
            clean_start=True,
            properties=connect_properties(0),
        )
        self._client.loop_start()
        try:
            connack = self._wait(lambda: self._connack, "log in")
            if connack.is_failure:
                raise ControlError(f"the broker refused {ADMIN_ACCOUNT}: {connack}")
            self._client.subscribe(RESPONSE_TOPIC, qos=1)
            suback = self._wait(lambda: self._suback, "subscribe to its answers")
            if any(reason.is_failure for reason in suback):
                raise ControlError(f"the broker refused {ADMIN_ACCOUNT} its answers: {suback}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; return their answers in order.

        An answer with an ``error`` raises ControlError, except "not found" for a
        deletion (another run deleted it first: the state wanted is reached).
        """
        if not commands:
            return []
        tag = uuid.uuid4().hex
        tagged = [{**command, "correlationData": f"{tag}-{index}"} for index, command in enumerate(commands)]
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ControlError(f"could not send commands to the broker: {paho.error_string(info.rc)}")
        keys = [command["correlationData"] for command in tagged]
        self._wait(lambda: all(key in self._responses for key in keys) or None, "answer its commands")
        with self._lock:
            answers = [self._responses.pop(key) for key in keys]
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and not (command["command"].startswith("delete") and error in _MISSING):
                raise ControlError(f"the broker refused {describe(command)}: {error}")
        return answers

    def list_state(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every client and role the plugin holds, with roles, client ids, marks and ACLs."""
        clients, roles = self.execute(
            [{"command": "listClients", "verbose": True}, {"command": "listRoles", "verbose": True}]
        )
        return list(clients.get("data", {}).get("clients", [])), list(roles.get("data", {}).get("roles", []))

    def apply(self, desired: DynsecState, passwords: Mapping[str, str]) -> ApplyReport:
        clients, roles = self.list_state()
        commands, pending = plan(desired, clients, roles, passwords)
        self.execute(commands)
        return ApplyReport([describe(command) for command in commands], pending)

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        with self._lock:
            self._connack = reason
            self._lock.notify_all()
        if reason.is_failure:
            client.disconnect()  # otherwise paho retries a refused login for ever

    def _on_subscribe(
        self, _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        with self._lock:
            self._suback = list(reasons)
            self._lock.notify_all()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._lock:
            for response in responses if isinstance(responses, list) else []:
                key = response.get("correlationData") if isinstance(response, dict) else None
                if isinstance(key, str):
                    self._responses[key] = response
            self._lock.notify_all()

    def _wait(self, ready: Any, what: str) -> Any:
        with self._lock:
            value = self._lock.wait_for(ready, self.timeout)
        if value is None:
            raise ControlError(f"the broker did not let {ADMIN_ACCOUNT} {what} in {self.timeout} s")
        return value


def apply_registry(
    provisioning: Provisioning,
    host: str,
    port: int,
    *,
    passwords: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> ApplyReport:
    """Make the broker at ``host:port`` hold what the registry says, under the provisioning lock.

    ``passwords`` adds plaintexts the caller has (a password just made); others come from
    the secret files.  OSError if no broker listens there (it takes the registry up when
    it starts); ControlError if one answers but refuses.
    """
    with provisioning.snapshot() as snapshot:
        known = {**snapshot.passwords, **(passwords or {})}
        with DynsecControl(host, port, snapshot.admin.password, timeout=timeout) as control:
            return control.apply(snapshot.state, known)
