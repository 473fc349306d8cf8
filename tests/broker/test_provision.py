"""Provisioning files: registry, passwd, acl and secrets, their modes, and their agreement."""

from __future__ import annotations

import json
import stat
import threading

import pytest

from broker.acl import console_rules, gate_rules
from broker.errors import ProvisioningError, ProvisioningReason, UnknownUserError
from broker.passwords import verify_password
from broker.provision import Credentials, Provisioning, console_username, gate_username
from protocol.errors import ProtocolError, RejectReason


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def passwd_entries(prov: Provisioning) -> dict[str, str]:
    return dict(line.split(":", 1) for line in prov.passwd_path.read_text().splitlines())


def acl_blocks(prov: Provisioning) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in prov.acl_path.read_text().splitlines():
        if line.startswith("user "):
            current = blocks.setdefault(line[5:], [])
        elif line.startswith("topic "):
            assert current is not None, f"rule outside a user block: {line}"
            current.append(line)
    return blocks


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


def test_add_gate_writes_hash_acl_and_secret(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("longtan", "north")
    assert creds.username == "gate.longtan.north"
    assert len(creds.password) == 32
    assert prov.users() == ["gate.longtan.north"]

    assert verify_password(creds.password, passwd_entries(prov)["gate.longtan.north"])
    assert acl_blocks(prov) == {"gate.longtan.north": [r.line() for r in gate_rules("longtan", "north")]}
    assert prov.secret_path(creds.username).read_text() == creds.password
    assert creds.password not in prov.registry_path.read_text()
    assert creds.password not in prov.passwd_path.read_text()


def test_file_modes(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_console()
    assert mode(prov.credentials_dir) == 0o700
    assert mode(prov.secret_path(creds.username)) == 0o600
    assert mode(prov.registry_path) == 0o600
    assert mode(prov.passwd_path) == 0o640
    assert mode(prov.acl_path) == 0o640
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_gate_acl_is_exactly_its_own_subtree(tmp_path):
    lines = [r.line() for r in gate_rules("s1", "g1")]
    assert lines == [
        "topic write gatepost/v1/s1/g1/event",
        "topic write gatepost/v1/s1/g1/status",
        "topic write gatepost/v1/s1/g1/response",
        "topic write gatepost/v1/s1/g1/health",
        "topic read gatepost/v1/s1/g1/command",
        "topic read gatepost/v1/s1/g1/ack",
        "topic read gatepost/v1/s1/$console/status",
        "topic read gatepost/v1/s1/$console/trust",
        "topic read gatepost/v1/s1/$console/revocation",
        "topic read gatepost/v1/s1/$console/cards/snapshot/+",
        "topic read gatepost/v1/s1/$console/cards/delta",
        "topic read gatepost/v1/s1/$console/photo/+",
        "topic read gatepost/v1/s1/g1/cards",
        "topic write gatepost/v1/s1/g1/cards_request",
    ]
    # Wildcards only where the gate reads what its site's console publishes to every gate.
    wild = [line for line in lines if "+" in line or "#" in line]
    assert all(line.startswith("topic read gatepost/v1/s1/$console/") for line in wild)


def test_console_acl():
    assert [r.line() for r in console_rules()] == [
        "topic read gatepost/v1/+/+/event",
        "topic read gatepost/v1/+/+/status",
        "topic read gatepost/v1/+/+/response",
        "topic read gatepost/v1/+/+/health",
        "topic write gatepost/v1/+/+/command",
        "topic write gatepost/v1/+/+/ack",
        "topic readwrite gatepost/v1/+/$console/status",
        "topic write gatepost/v1/+/$console/trust",
        "topic write gatepost/v1/+/$console/revocation",
        "topic write gatepost/v1/+/$console/cards/#",
        "topic write gatepost/v1/+/$console/photo/+",
        "topic write gatepost/v1/+/+/cards",
        "topic read gatepost/v1/+/+/cards_request",
    ]


def test_adding_again_rotates_the_password(tmp_path):
    prov = Provisioning(tmp_path)
    first = prov.add_gate("s", "g")
    second = prov.add_gate("s", "g")
    assert first.password != second.password
    assert prov.users() == ["gate.s.g"]
    encoded = passwd_entries(prov)["gate.s.g"]
    assert verify_password(second.password, encoded) and not verify_password(first.password, encoded)


def test_given_password_is_used(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("s", "g", password="a-chosen-password-1")
    assert creds.password == "a-chosen-password-1"
    assert verify_password("a-chosen-password-1", passwd_entries(prov)["gate.s.g"])


def test_remove_drops_user_acl_and_secret(tmp_path):
    prov = Provisioning(tmp_path)
    keep = prov.add_gate("s", "keep")
    gone = prov.add_gate("s", "gone")
    prov.remove(gone.username)
    assert prov.users() == [keep.username]
    assert set(passwd_entries(prov)) == {keep.username}
    assert set(acl_blocks(prov)) == {keep.username}
    assert not prov.secret_path(gone.username).exists()
    assert prov.secret_path(keep.username).exists()


def test_remove_unknown_user(tmp_path):
    prov = Provisioning(tmp_path)
    with pytest.raises(UnknownUserError) as caught:
        prov.remove("gate.s.nobody")
    assert isinstance(caught.value, LookupError)
    assert caught.value.reason is ProvisioningReason.UNKNOWN_USER


def test_sync_creates_empty_files_for_a_fresh_broker(tmp_path):
    prov = Provisioning(tmp_path / "new")
    prov.sync()
    assert prov.passwd_path.read_text() == ""
    assert acl_blocks(prov) == {}


def test_files_are_rebuilt_from_the_registry(tmp_path):
    prov = Provisioning(tmp_path)
    creds = prov.add_gate("s", "g")
    prov.passwd_path.write_text("intruder:$7$101$AAAA$BBBB\n")
    prov.acl_path.write_text("topic readwrite #\n")
    prov.sync()
    assert set(passwd_entries(prov)) == {creds.username}
    assert "topic readwrite #" not in prov.acl_path.read_text()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2, "users": {}}',
        '{"version": 1, "users": {"x": {"role": "admin", "hash": "$7$"}}}',
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
    assert sorted(passwd_entries(prov)) == expected
    assert sorted(acl_blocks(prov)) == expected
    assert sorted(json.loads(prov.registry_path.read_text())["users"]) == expected


def test_credentials_repr_hides_the_password():
    creds = Credentials("gate.s.g", "hunter2-hunter2-hunter2")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    assert "gate.s.g" in repr(creds)
    with pytest.raises(AttributeError):
        creds.password = "x"  # type: ignore[misc]
