"""Applying the registry to a running broker through $CONTROL: only the difference, and only by the admin."""

from __future__ import annotations

import json

import pytest

from broker.control import plan
from broker.dynsec import CONTROL_TOPIC, desired_state
from broker.errors import BrokerError
from broker.passwords import hash_password
from broker.probe import ConnackCode, try_login
from protocol.identity import ADMIN_ACCOUNT
from protocol.topics import GateTopics, TopicKind, all_sites_filter
from tests.waiting import wait_until

NOT_AUTHORIZED = 0x87


def broker_view(state) -> tuple[list[dict], list[dict]]:
    """``listClients``/``listRoles`` as the plugin would answer them for ``state``."""
    clients = [
        {k: v for k, v in spec.entry().items() if k not in ("password", "salt", "iterations")}
        for spec in state.clients.values()
    ]
    roles = [{"rolename": name, "acls": acls} for name, acls in state.roles.items()]
    return clients, roles


@pytest.fixture
def registry() -> dict[str, dict]:
    return {
        "gate.s.g1": {"role": "gate", "site": "s", "gate": "g1", "hash": hash_password("g1-password-123")},
        "console.main": {"role": "console", "name": "main", "hash": hash_password("console-password-1")},
    }


ADMIN_HASH = hash_password("admin-password-12")


def test_an_empty_broker_gets_roles_then_clients(registry):
    state = desired_state(registry, ADMIN_HASH)
    passwords = {"gate.s.g1": "g1-password-123", "console.main": "console-password-1"}
    commands, pending = plan(state, [], [], passwords)
    kinds = [command["command"] for command in commands]
    assert kinds == ["createRole"] * 3 + ["createClient"] * (1 + 24), "roles first; the admin is pending"
    assert pending == [ADMIN_ACCOUNT], "no password at hand for it: it is in the file the broker started from"
    created = {command["username"]: command for command in commands if command["command"] == "createClient"}
    assert all(command["clientid"] == name for name, command in created.items())
    assert created["console.main.w15"]["password"] == "console-password-1"


def test_what_the_broker_already_holds_is_left_alone(registry):
    state = desired_state(registry, ADMIN_HASH)
    assert plan(state, *broker_view(state), {}) == ([], [])


def test_only_the_difference_is_sent(registry):
    before = desired_state(registry, ADMIN_HASH)
    clients, roles = broker_view(before)
    registry["gate.s.g2"] = {
        "role": "gate",
        "site": "s",
        "gate": "g2",
        "hash": hash_password("g2-password-123"),
    }
    registry["gate.s.g1"]["hash"] = hash_password("g1-rotated-12345")
    del registry["console.main"]
    clients.append({"username": "intruder", "clientid": "intruder", "roles": []})
    roles.append(
        {"rolename": "everything", "acls": [{"acltype": "subscribePattern", "topic": "#", "allow": True}]}
    )
    after = desired_state(registry, ADMIN_HASH)
    commands, pending = plan(after, clients, roles, {"gate.s.g2": "g2-password-123"})
    described = [(c["command"], c.get("username") or c.get("rolename")) for c in commands]
    assert described[0] == ("createRole", "gate.s.g2")
    assert ("createClient", "gate.s.g2") in described
    assert ("deleteClient", "intruder") in described and ("deleteRole", "everything") in described
    assert ("deleteRole", "console") in described
    assert (
        sum(1 for kind, name in described if kind == "deleteClient" and name.startswith("console.main")) == 24
    )
    assert pending == ["gate.s.g1"], "rotated, but its new password is not at hand"
    assert all(name != "gate.s.g1" for _, name in described), "and it is not touched (that would kick it)"
    assert described.index(("deleteRole", "console")) > max(
        i for i, (kind, _) in enumerate(described) if kind == "deleteClient"
    )


def test_a_client_that_lost_its_binding_gets_it_back(registry):
    state = desired_state(registry, ADMIN_HASH)
    clients, roles = broker_view(state)
    for client in clients:
        if client["username"] == "gate.s.g1":
            del client["clientid"]
    commands, _ = plan(state, clients, roles, {})
    assert commands == [{"command": "modifyClient", "username": "gate.s.g1", "clientid": "gate.s.g1"}]


def test_the_admin_is_never_changed_through_its_own_session(registry):
    state = desired_state(registry, ADMIN_HASH)
    clients, roles = broker_view(state)
    for client in clients:
        if client["username"] == ADMIN_ACCOUNT:
            client["roles"] = []
    commands, pending = plan(state, clients, roles, {ADMIN_ACCOUNT: "admin-password-12"})
    assert commands == [] and pending == [ADMIN_ACCOUNT]


# -- against a running broker ------------------------------------------------------------


def test_adding_a_gate_leaves_everyone_else_connected(broker, unique_name, mqtt_client_factory):
    clients = {gate: mqtt_client_factory(broker.add_gate(unique_name, gate)) for gate in ("g1", "g2")}
    console = mqtt_client_factory(broker.add_console())
    creds = broker.add_gate(unique_name, "g3")
    assert try_login(broker.host, broker.port, creds.username, creds.password) is ConnackCode.ACCEPTED
    assert broker.reload().changes == [], "nothing left to apply"
    assert [c.disconnects for c in (*clients.values(), console)] == [0, 0, 0]


def test_a_new_password_ends_the_old_ones_session(broker, unique_name, mqtt_client_factory):
    old = broker.add_gate(unique_name, "g1")
    client = mqtt_client_factory(old)
    new = broker.add_gate(unique_name, "g1")
    assert wait_until(lambda: client.disconnects >= 1), "still logged in with the old password"
    assert try_login(broker.host, broker.port, old.username, old.password) is ConnackCode.NOT_AUTHORIZED
    assert try_login(broker.host, broker.port, new.username, new.password) is ConnackCode.ACCEPTED


def test_removing_a_console_disconnects_every_connection_of_it(broker, mqtt_client_factory):
    creds = broker.add_console("main")
    connections = [
        mqtt_client_factory(creds),
        mqtt_client_factory(creds, "w3"),
        mqtt_client_factory(creds, "web"),
    ]
    broker.remove(creds.username)
    assert wait_until(lambda: all(c.disconnects >= 1 for c in connections))
    for name in ("console.main", "console.main.w3", "console.main.web"):
        assert try_login(broker.host, broker.port, name, creds.password) is ConnackCode.NOT_AUTHORIZED


def test_a_rotation_without_its_secret_waits_for_the_next_start(broker, unique_name):
    old = broker.add_gate(unique_name, "g1")
    new = broker.provisioning.add_gate(unique_name, "g1")  # as another host's provisioning would
    broker.provisioning.secret_path(new.username).unlink()  # and the secret went to the gate
    with pytest.raises(BrokerError, match=f"no password at hand for: {new.username}"):
        broker.reload()
    assert try_login(broker.host, broker.port, old.username, old.password) is ConnackCode.ACCEPTED
    broker.restart()  # the plugin's file is rendered from the registry before every start
    assert try_login(broker.host, broker.port, new.username, new.password) is ConnackCode.ACCEPTED
    assert try_login(broker.host, broker.port, old.username, old.password) is ConnackCode.NOT_AUTHORIZED


def test_only_the_admin_may_send_control_commands(broker, unique_name, mqtt_client_factory):
    """A gate or the console publishing to $CONTROL is refused, and nothing changes."""
    gate = mqtt_client_factory(broker.add_gate(unique_name, "g1"))
    console = mqtt_client_factory(broker.add_console())
    create = {"commands": [{"command": "createClient", "username": "mallory", "password": "mallory-1234"}]}
    for client in (gate, console):
        assert client.publish(CONTROL_TOPIC, json.dumps(create)).value == NOT_AUTHORIZED
        assert client.subscribe(f"{CONTROL_TOPIC}/response").value == NOT_AUTHORIZED
    assert try_login(broker.host, broker.port, "mallory", "mallory-1234") is ConnackCode.NOT_AUTHORIZED
    assert broker.reload().changes == []


def test_a_denied_subscription_is_refused_outright(broker, unique_name, mqtt_client_factory):
    """Unlike the old acl_file (which granted any filter and delivered nothing), the plugin says no at SUBACK."""
    gate = mqtt_client_factory(broker.add_gate(unique_name, "g1"))
    assert gate.subscribe(GateTopics(unique_name, "g2").command).value == NOT_AUTHORIZED
    assert gate.subscribe(all_sites_filter(TopicKind.EVENT)).value == NOT_AUTHORIZED
    assert not gate.subscribe(GateTopics(unique_name, "g1").command).is_failure
