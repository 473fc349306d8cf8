"""Provisioning files: registry, the plugin's file, secrets, their modes, and their agreement."""

from __future__ import annotations

import json
import stat
import threading

import pytest

from broker.acl import Access, Rule, console_rules, dynsec_acls, gate_rules
from broker.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC
from broker.errors import ProvisioningError, ProvisioningReason, UnknownUserError
from broker.passwords import verify_password
from broker.provision import Credentials, Provisioning, console_username, gate_username
from protocol.errors import ProtocolError, RejectReason
from protocol.identity import ADMIN_ACCOUNT, MAX_INGEST_WORKERS, account_connections


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plugin_doc(prov: Provisioning) -> dict:
    return json.loads(prov.dynsec_path.read_text())


def clients(prov: Provisioning) -> dict[str, dict]:
    return {client["username"]: client for client in plugin_doc(prov)["clients"]}


def roles(prov: Provisioning) -> dict[str, list[dict]]:
    return {role["rolename"]: role["acls"] for role in plugin_doc(prov)["roles"]}


def registry_hash(client: dict) -> str:
    """The plugin's password fields back in mosquitto's ``$7$`` form, to verify against."""
    return f"$7${client['iterations']}${client['salt']}${client['password']}"


def accounts(prov: Provisioning) -> set[str]:
    return set(clients(prov)) - {ADMIN_ACCOUNT}


def test_usernames():
    assert gate_username("longtan", "north") == "gate.longtan.north"
    assert console_username() == "console.console"
    assert console_username("backup") == "console.backup"


@pytest.mark.parametrize(
    ("site", "gate"), [("Longtan", "n"), ("a/b", "n"), ("s", "+"), ("s", "#"), ("s", ""), ("s", "$console")]
)
def test_bad_names_are_refused_before_anything_is_written(tmp_path, site, gate):
    prov = Provisioning(tmp_path)
    with pytest.raises(ProtocolError) as caught:
        prov.add_gate(site, gate)
    assert caught.value.reason is RejectReason.BAD_TOPIC
    assert prov.users() == []


def test_add_gate_writes_a_client_bound_to_its_id_with_its_role(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("longtan", "north")
    assert creds.username == "gate.longtan.north"
    assert len(creds.password) == 32
    assert prov.users() == ["gate.longtan.north"]

    client = clients(prov)["gate.longtan.north"]
    assert client["clientid"] == "gate.longtan.north", "the binding: this login, this client id only"
    assert [role["rolename"] for role in client["roles"]] == ["gate.longtan.north"]
    assert verify_password(creds.password, registry_hash(client))
    assert roles(prov)["gate.longtan.north"] == dynsec_acls(gate_rules("longtan", "north"))
    assert prov.secret_path(creds.username).read_text() == creds.password
    assert creds.password not in prov.registry_path.read_text()
    assert creds.password not in prov.dynsec_path.read_text()


def test_a_console_is_one_password_and_a_client_per_connection(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_console("main")
    connections = account_connections("console.main")
    assert len(connections) == MAX_INGEST_WORKERS + 8
    assert connections[:3] == ["console.main", "console.main.w1", "console.main.w2"]
    assert {"console.main.commands", "console.main.watch", "console.main.web", "console.main.health"} <= set(
        connections
    )
    found = clients(prov)
    assert accounts(prov) == set(connections)
    for name in connections:
        assert found[name]["clientid"] == name
        assert [role["rolename"] for role in found[name]["roles"]] == ["console"]
        assert verify_password(creds.password, registry_hash(found[name]))
    assert prov.users() == ["console.main"], "one account"


def test_default_access_is_deny_and_the_admin_may_only_control(tmp_path):
    prov = Provisioning(tmp_path)
    prov.sync()
    doc = plugin_doc(prov)
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": False,
    }
    admin = clients(prov)[ADMIN_ACCOUNT]
    assert admin["clientid"] == ADMIN_ACCOUNT
    assert verify_password(prov.admin_path.read_text(), registry_hash(admin))
    assert {(acl["acltype"], acl["topic"]) for acl in roles(prov)[ADMIN_ACCOUNT]} == {
        ("publishClientSend", CONTROL_TOPIC),
        ("subscribePattern", RESPONSE_TOPIC),
        ("unsubscribePattern", RESPONSE_TOPIC),
        ("publishClientReceive", RESPONSE_TOPIC),
    }


def test_file_modes(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_console()
    assert mode(prov.credentials_dir) == 0o700
    assert mode(prov.secret_path(creds.username)) == 0o600
    assert mode(prov.registry_path) == 0o600
    assert mode(prov.admin_path) == 0o600
    assert mode(prov.dynsec_path) == 0o640
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_gate_acl_is_exactly_its_own_subtree():
    rules = [(r.access.value, r.topic) for r in gate_rules("s1", "g1")]
    assert rules == [
        ("write", "gatepost/v1/s1/g1/event"),
        ("write", "gatepost/v1/s1/g1/status"),
        ("write", "gatepost/v1/s1/g1/response"),
        ("write", "gatepost/v1/s1/g1/health"),
        ("read", "gatepost/v1/s1/g1/command"),
        ("read", "gatepost/v1/s1/g1/ack"),
        ("read", "gatepost/v1/s1/$console/status"),
        ("read", "gatepost/v1/s1/$console/trust"),
        ("read", "gatepost/v1/s1/$console/revocation"),
        ("read", "gatepost/v1/s1/$console/cards/snapshot/+"),
        ("read", "gatepost/v1/s1/$console/cards/delta"),
        ("read", "gatepost/v1/s1/$console/photo/+"),
        ("read", "gatepost/v1/s1/g1/cards"),
        ("write", "gatepost/v1/s1/g1/cards_request"),
        ("read", "gatepost/v1/s1/g1/duty"),
    ]
    # Wildcards only where the gate reads what its site's console publishes to every gate,
    # and nothing under $share.
    wild = [(access, topic) for access, topic in rules if "+" in topic or "#" in topic]
    assert all(access == "read" and topic.startswith("gatepost/v1/s1/$console/") for access, topic in wild)
    assert not any(topic.startswith("$") for _, topic in rules)


def test_console_acl():
    assert [(r.access.value, r.topic) for r in console_rules()] == [
        ("read", "gatepost/v1/+/+/event"),
        ("subscribe", "$share/+/gatepost/v1/+/+/event"),
        ("read", "gatepost/v1/+/+/status"),
        ("read", "gatepost/v1/+/+/response"),
        ("read", "gatepost/v1/+/+/health"),
        ("write", "gatepost/v1/+/+/command"),
        ("write", "gatepost/v1/+/+/ack"),
        ("readwrite", "gatepost/v1/+/$console/status"),
        ("write", "gatepost/v1/+/$console/trust"),
        ("write", "gatepost/v1/+/$console/revocation"),
        ("write", "gatepost/v1/+/$console/cards/#"),
        ("write", "gatepost/v1/+/$console/photo/+"),
        ("write", "gatepost/v1/+/+/cards"),
        ("read", "gatepost/v1/+/+/cards_request"),
        ("write", "gatepost/v1/+/+/duty"),
    ]


def test_rules_become_plugin_acls():
    """read = subscribe + unsubscribe + receive; write = publish; subscribe alone grants no delivery."""

    def types(rule: Rule) -> set[str]:
        return {acl["acltype"] for acl in dynsec_acls([rule])}

    assert types(Rule(Access.READ, "a/b")) == {
        "subscribePattern",
        "unsubscribePattern",
        "publishClientReceive",
    }
    assert types(Rule(Access.WRITE, "a/b")) == {"publishClientSend"}
    assert types(Rule(Access.SUBSCRIBE, "$share/+/a/b")) == {"subscribePattern", "unsubscribePattern"}
    assert types(Rule(Access.READWRITE, "a/b")) == types(Rule(Access.READ, "a/b")) | {"publishClientSend"}
    assert all(acl["allow"] is True for acl in dynsec_acls(console_rules()))


def test_adding_again_rotates_the_password(tmp_path):
    prov = Provisioning(tmp_path)
    first = prov.add_gate("s", "g")
    second = prov.add_gate("s", "g")
    assert first.password != second.password
    assert prov.users() == ["gate.s.g"]
    encoded = registry_hash(clients(prov)["gate.s.g"])
    assert verify_password(second.password, encoded) and not verify_password(first.password, encoded)


def test_given_password_is_used(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("s", "g", password="a-chosen-password-1")
    assert creds.password == "a-chosen-password-1"
    assert verify_password("a-chosen-password-1", registry_hash(clients(prov)["gate.s.g"]))


def test_remove_drops_user_role_and_secret(tmp_path):
    prov = Provisioning(tmp_path)
    keep = prov.add_gate("s", "keep")
    gone = prov.add_gate("s", "gone")
    prov.remove(gone.username)
    assert prov.users() == [keep.username]
    assert accounts(prov) == {keep.username}
    assert set(roles(prov)) == {keep.username, ADMIN_ACCOUNT}
    assert not prov.secret_path(gone.username).exists()
    assert prov.secret_path(keep.username).exists()


def test_remove_unknown_user(tmp_path):
    prov = Provisioning(tmp_path)
    with pytest.raises(UnknownUserError) as caught:
        prov.remove("gate.s.nobody")
    assert isinstance(caught.value, LookupError)
    assert caught.value.reason is ProvisioningReason.UNKNOWN_USER


def test_sync_writes_a_fresh_broker_its_admin_only(tmp_path):
    prov = Provisioning(tmp_path / "new")
    prov.sync()
    assert set(clients(prov)) == {ADMIN_ACCOUNT}
    assert set(roles(prov)) == {ADMIN_ACCOUNT}
    assert prov.users() == []


def test_a_registry_from_before_the_plugin_gains_an_admin(tmp_path):
    """users.json version 1 as the password-file era wrote it: no admin entry, accounts kept."""
    old = Provisioning(tmp_path)
    creds = old.add_gate("s", "g")
    doc = json.loads(old.registry_path.read_text())
    del doc["admin"]
    old.registry_path.write_text(json.dumps(doc))
    old.admin_path.unlink()
    prov = Provisioning(tmp_path)
    prov.sync()
    assert json.loads(prov.registry_path.read_text())["admin"]["username"] == ADMIN_ACCOUNT
    assert verify_password(prov.admin_path.read_text(), registry_hash(clients(prov)[ADMIN_ACCOUNT]))
    assert verify_password(creds.password, registry_hash(clients(prov)["gate.s.g"]))


def test_the_plugin_file_is_rebuilt_from_the_registry(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("s", "g")
    doc = plugin_doc(prov)
    doc["clients"].append({"username": "intruder", "password": "x", "salt": "y", "iterations": 1})
    doc["roles"].append({"rolename": "all", "acls": [{"acltype": "subscribePattern", "topic": "#"}]})
    doc["defaultACLAccess"]["subscribe"] = True
    prov.dynsec_path.write_text(json.dumps(doc))
    prov.sync()
    assert accounts(prov) == {creds.username}
    assert "all" not in roles(prov)
    assert plugin_doc(prov)["defaultACLAccess"]["subscribe"] is False


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2, "users": {}}',
        '{"version": 1, "users": {"x": {"role": "admin", "hash": "$7$"}}}',
        '{"version": 1, "users": {"console.a.w1": {"role": "console", "name": "a", "hash": "$7$"}}}',
        '{"version": 1, "users": {"gate.s": {"role": "gate", "site": "s", "gate": "g", "hash": "$7$"}}}',
    ],
)
def test_corrupt_registry_is_a_typed_error(tmp_path, content):
    prov = Provisioning(tmp_path)
    prov.registry_path.write_text(content)
    with pytest.raises(ProvisioningError) as caught:
        prov.users()
    assert caught.value.reason is ProvisioningReason.CORRUPT_REGISTRY


def test_concurrent_adds_all_land(tmp_path):
    """Two CLI runs at once must not lose each other's user (the registry is locked)."""
    prov = Provisioning(tmp_path)
    gates = [f"g{i}" for i in range(12)]
    errors: list[BaseException] = []

    def add(gate: str) -> None:
        try:
            Provisioning(tmp_path).add_gate("s", gate)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(g,)) for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = sorted(f"gate.s.{g}" for g in gates)
    assert prov.users() == expected
    assert sorted(accounts(prov)) == expected
    assert sorted(json.loads(prov.registry_path.read_text())["users"]) == expected


def test_snapshot_knows_the_passwords_whose_secret_still_matches(tmp_path):
    prov = Provisioning(tmp_path)
    kept = prov.add_gate("s", "kept")
    prov.add_gate("s", "copied")
    prov.secret_path("gate.s.copied").unlink()  # the installer took it to the gate
    with prov.snapshot() as snapshot:
        assert snapshot.passwords["gate.s.kept"] == kept.password
        assert "gate.s.copied" not in snapshot.passwords
        assert snapshot.passwords[ADMIN_ACCOUNT] == snapshot.admin.password
        assert set(snapshot.state.clients) == {ADMIN_ACCOUNT, "gate.s.kept", "gate.s.copied"}


def test_credentials_repr_hides_the_password():
    creds = Credentials("gate.s.g", "hunter2-hunter2-hunter2")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    assert "gate.s.g" in repr(creds)
    with pytest.raises(AttributeError):
        creds.password = "x"  # type: ignore[misc]
