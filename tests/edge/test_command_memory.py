"""The gate's memory of command ids (edge/commands.py): durable, and bounded by the command lifetime."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.commands import PRUNE_EVERY_S, ReplayMemory
from protocol.commands import MAX_COMMAND_LIFETIME, CommandError, CommandRejectReason

NOW = datetime.now(UTC)


def test_an_id_is_remembered_across_a_reopen(tmp_path: Path):
    memory = ReplayMemory(tmp_path / "m.db")
    command = uuid.uuid4().hex
    assert memory.record(command, NOW + timedelta(seconds=30), NOW)
    assert not memory.record(command, NOW + timedelta(seconds=30), NOW)
    memory.close()
    again = ReplayMemory(tmp_path / "m.db")
    assert again.seen(command) and len(again) == 1
    again.close()


def test_ids_are_forgotten_once_their_command_has_been_expired_for_a_lifetime(tmp_path: Path):
    memory = ReplayMemory(tmp_path / "m.db")
    old, recent = uuid.uuid4().hex, uuid.uuid4().hex
    memory.record(old, NOW - MAX_COMMAND_LIFETIME - timedelta(seconds=1), NOW)
    memory.record(recent, NOW - MAX_COMMAND_LIFETIME + timedelta(seconds=PRUNE_EVERY_S + 10), NOW)
    later = NOW + timedelta(seconds=PRUNE_EVERY_S)
    memory.record(uuid.uuid4().hex, later + timedelta(seconds=30), later)  # pruning happens as ids come in
    assert not memory.seen(old)  # a replay of it is refused as expired anyway
    assert memory.seen(recent)  # still inside the margin for a clock stepped back
    assert len(memory) == 2
    memory.close()


def test_a_full_memory_refuses_rather_than_forgets_live_ids(tmp_path: Path):
    memory = ReplayMemory(tmp_path / "m.db", limit=3)
    for _ in range(3):
        memory.record(uuid.uuid4().hex, NOW + timedelta(seconds=60), NOW)
    with pytest.raises(CommandError) as err:
        memory.record(uuid.uuid4().hex, NOW + timedelta(seconds=60), NOW)
    assert err.value.reason is CommandRejectReason.REPLAY_MEMORY
    memory.close()


def test_a_gate_without_a_bundle_yet_refuses_commands_as_unprovisioned_not_forged(tmp_path: Path):
    from nacl.signing import SigningKey

    from edge.commands import CommandVerifier
    from protocol.commands import ALARMING_REASONS, CommandBody, sign_command
    from protocol.passes import TrustStore

    trust = TrustStore(SigningKey.generate().verify_key, "s1")  # root pinned, no bundle received
    memory = ReplayMemory(tmp_path / "m.db")
    verifier = CommandVerifier(trust, memory, site="s1", gate="north")
    body = CommandBody(
        site="s1",
        gate="north",
        id=uuid.uuid4().hex,
        name="status",
        issued_at=NOW,
        expires_at=NOW + timedelta(seconds=30),
    )
    with pytest.raises(CommandError) as err:
        verifier.verify(sign_command(body, SigningKey.generate(), 2))
    assert err.value.reason is CommandRejectReason.NO_TRUST and err.value.reason not in ALARMING_REASONS
    assert len(memory) == 0
    memory.close()
