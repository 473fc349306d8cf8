"""One naming rule for user names and client ids, and a client that cannot break it."""

from __future__ import annotations

import pytest

from protocol.identity import (
    ADMIN_ACCOUNT,
    MAX_INGEST_WORKERS,
    ConsoleConnection,
    IdentityError,
    IdentityReason,
    Role,
    account_connections,
    connection_id,
    console_identity,
    gate_identity,
    ingest_connection,
    parse_identity,
)
from protocol.mqtt import BrokerEndpoint, make_client


def test_accounts_and_their_connections():
    assert gate_identity("longtan", "north") == "gate.longtan.north"
    assert console_identity("main") == "console.main"
    assert account_connections("gate.longtan.north") == ["gate.longtan.north"]
    console = account_connections("console.main")
    assert console[0] == "console.main", "ingest worker 0 is the account itself"
    assert console[1:MAX_INGEST_WORKERS] == [f"console.main.w{i}" for i in range(1, MAX_INGEST_WORKERS)]
    assert console[MAX_INGEST_WORKERS:] == [f"console.main.{c.value}" for c in ConsoleConnection]
    assert len(set(console)) == len(console) == 24


def test_parse_splits_every_name_it_makes():
    for name in [*account_connections("console.main"), "gate.s.g", ADMIN_ACCOUNT]:
        assert parse_identity(name).client_id == name
    identity = parse_identity("console.main.w3")
    assert (identity.role, identity.name, identity.connection, identity.account) == (
        Role.CONSOLE,
        "main",
        "w3",
        "console.main",
    )
    gate = parse_identity("gate.longtan.north")
    assert (gate.role, gate.site, gate.gate, gate.connection) == (Role.GATE, "longtan", "north", None)


@pytest.mark.parametrize(
    "name",
    [
        "gate.s",
        "gate.s.g.x",
        "gate.S.g",
        "console",
        "console.main.w16",
        "console.main.w0",
        "console.main.other",
        "console.a.b.c",
        "gate-s-g",
        "console-console",
        "",
        "broker.root",
    ],
)
def test_anything_else_is_refused(name):
    with pytest.raises(IdentityError) as caught:
        parse_identity(name)
    assert isinstance(caught.value, ValueError)


def test_connections_derive_from_the_account_of_any_of_them():
    assert connection_id("console.main", ConsoleConnection.WEB) == "console.main.web"
    assert connection_id("console.main.web", ConsoleConnection.COMMANDS) == "console.main.commands"
    assert connection_id("console.main.w5", None) == "console.main"
    assert connection_id("console.main", ingest_connection(7)) == "console.main.w7"
    assert connection_id("gate.s.g", None) == "gate.s.g"
    with pytest.raises(IdentityError) as caught:
        connection_id("gate.s.g", ConsoleConnection.WATCH)
    assert caught.value.reason is IdentityReason.UNKNOWN_CONNECTION
    with pytest.raises(IdentityError):
        ingest_connection(MAX_INGEST_WORKERS)


def test_a_client_connects_only_as_its_user_name():
    endpoint = BrokerEndpoint("127.0.0.1", 1883, "console.main", "a-password-1234")
    assert make_client(endpoint)._client_id == b"console.main"
    commands = endpoint.for_connection(ConsoleConnection.COMMANDS)
    assert (commands.username, commands.client_id, commands.password) == (
        "console.main.commands",
        "console.main.commands",
        "a-password-1234",
    )
    assert make_client(commands)._client_id == b"console.main.commands"
    with pytest.raises(TypeError):
        make_client(endpoint, "any-other-id")  # type: ignore[misc]
    nobody = BrokerEndpoint("127.0.0.1", 1883)
    assert nobody.for_connection(ConsoleConnection.WEB) is nobody, "anonymous stays anonymous"
    anonymous = make_client(BrokerEndpoint("127.0.0.1", 1883))
    assert anonymous._client_id.startswith(b"anonymous-")
