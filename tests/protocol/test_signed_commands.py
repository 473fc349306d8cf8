"""The signed command format (protocol/commands.py) and its checks, without a network.

What a gate relies on: the signature covers every field of the body, the key must be a
command key of the bundle and inside its window, the target must be this gate, and any
bytes at all end in a typed :class:`CommandError` — never another exception.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.commands import (
    MAX_COMMAND_LIFETIME,
    CommandBody,
    CommandError,
    CommandRejectReason,
    check_fresh,
    open_command,
    sign_command,
)
from protocol.passes import TrustStore, new_bundle, rotate, seal_bundle
from protocol.passes.trust import TrustBundle, rotate_command_key

NOW = datetime.now(UTC)
ROOT = SigningKey.generate()
ISSUER = SigningKey.generate()
COMMANDS = SigningKey.generate()


def _bundle() -> tuple[TrustBundle, int, int]:
    bundle = new_bundle(site="north-site", site_id=1, now=NOW - timedelta(days=1))
    bundle, issuing_kid = rotate(
        bundle, ISSUER, now=NOW - timedelta(days=1), lifetime=timedelta(days=30), grace=timedelta(0)
    )
    bundle, command_kid = rotate_command_key(
        bundle, COMMANDS, now=NOW - timedelta(days=1), lifetime=timedelta(days=2), grace=timedelta(0)
    )
    return bundle, issuing_kid, command_kid


BUNDLE, ISSUING_KID, COMMAND_KID = _bundle()


@pytest.fixture
def trust() -> TrustStore:
    store = TrustStore(ROOT.verify_key, "north-site")
    assert store.apply(seal_bundle(BUNDLE, ROOT)).applied
    return store


def body(**changes: object) -> CommandBody:
    fields: dict[str, object] = {
        "site": "north-site",
        "gate": "north",
        "id": uuid.uuid4().hex,
        "name": "unlock",
        "args": {"seconds": 3},
        "issued_at": NOW,
        "expires_at": NOW + timedelta(seconds=30),
        "operator": "ana",
    }
    fields.update(changes)
    return CommandBody(**fields)  # type: ignore[arg-type]


def reason(raw: bytes, trust: TrustStore | None, gate: str = "north", **kw: object) -> CommandRejectReason:
    with pytest.raises(CommandError) as err:
        open_command(raw, trust, site="north-site", gate=gate, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return err.value.reason


def test_a_signed_command_opens_to_the_command_its_handler_takes(trust: TrustStore):
    signed = body()
    opened = open_command(
        sign_command(signed, COMMANDS, COMMAND_KID), trust, site="north-site", gate="north", now=NOW
    )
    assert opened == signed
    command = opened.command()
    assert (command.id, command.name, command.args, command.operator) == (
        signed.id,
        "unlock",
        {"seconds": 3},
        "ana",
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("site", "south-site"),
        ("gate", "south"),
        ("id", "0" * 32),
        ("name", "lock"),
        ("args", {"seconds": 300}),
        ("issued_at", "2020-01-01T00:00:00Z"),
        ("expires_at", "2099-01-01T00:00:00Z"),
        ("operator", "admin"),
    ],
)
def test_the_signature_covers_every_field_of_the_body(trust: TrustStore, field: str, value: object):
    envelope = json.loads(sign_command(body(), COMMANDS, COMMAND_KID))
    altered = json.loads(envelope["body"])
    altered[field] = value
    envelope["body"] = json.dumps(altered)
    assert reason(json.dumps(envelope).encode(), trust) is CommandRejectReason.BAD_SIGNATURE


def test_only_a_command_key_of_the_bundle_inside_its_window_signs_commands(trust: TrustStore):
    signed = body()
    assert reason(sign_command(signed, ISSUER, ISSUING_KID), trust) is CommandRejectReason.WRONG_ROLE
    assert reason(sign_command(signed, COMMANDS, 99), trust) is CommandRejectReason.UNKNOWN_KEY
    assert (
        reason(sign_command(signed, SigningKey.generate(), COMMAND_KID), trust)
        is CommandRejectReason.BAD_SIGNATURE
    )
    raw = sign_command(signed, COMMANDS, COMMAND_KID)
    later = NOW + timedelta(days=2)
    assert reason(raw, trust, now=later) is CommandRejectReason.KEY_EXPIRED
    assert (
        reason(raw, trust, now=later, clock_trusted=False) is CommandRejectReason.KEY_EXPIRED
    )  # proved anyway
    earlier = NOW - timedelta(days=3)
    assert reason(raw, trust, now=earlier) is CommandRejectReason.KEY_NOT_YET_VALID
    open_command(
        raw, trust, site="north-site", gate="north", now=earlier, clock_trusted=False
    )  # only possible
    assert reason(raw, None) is CommandRejectReason.NO_TRUST


def test_a_command_for_another_gate_or_site_is_refused(trust: TrustStore):
    assert (
        reason(sign_command(body(), COMMANDS, COMMAND_KID), trust, gate="south")
        is CommandRejectReason.WRONG_TARGET
    )
    other = body(site="elsewhere")
    assert reason(sign_command(other, COMMANDS, COMMAND_KID), trust) is CommandRejectReason.WRONG_TARGET


def test_freshness_expired_too_long_lived_and_an_untrusted_clock():
    check_fresh(body(), now=NOW)
    with pytest.raises(CommandError) as err:
        check_fresh(body(), now=NOW + timedelta(seconds=30))
    assert err.value.reason is CommandRejectReason.EXPIRED
    long = body(expires_at=NOW + MAX_COMMAND_LIFETIME + timedelta(seconds=1))
    with pytest.raises(CommandError) as err:
        check_fresh(long, now=NOW)
    assert err.value.reason is CommandRejectReason.EXPIRY_TOO_FAR
    # A gate clock far behind (booted at 1970) cannot call a fresh command "too far";
    # an expiry it has already passed, though, is proved.
    check_fresh(body(), now=datetime(1970, 1, 2, tzinfo=UTC), clock_trusted=False)
    with pytest.raises(CommandError):
        check_fresh(body(), now=NOW + timedelta(minutes=1), clock_trusted=False)


def test_the_unsigned_format_and_other_versions_are_typed_refusals(trust: TrustStore):
    v1 = json.dumps(
        {
            "v": 1,
            "id": "a" * 32,
            "name": "unlock",
            "args": {},
            "issued_at": NOW.isoformat(),
            "expires_at": NOW.isoformat(),
        }
    ).encode()
    assert reason(v1, trust) is CommandRejectReason.UNSIGNED
    assert reason(b'{"v": 3, "kid": 1, "body": "{}", "sig": ""}', trust) is CommandRejectReason.BAD_VERSION
    assert reason(b"x" * 70_000, trust) is CommandRejectReason.TOO_LARGE
    assert reason(b"[1, 2]", trust) is CommandRejectReason.MALFORMED


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=600)
    | st.builds(
        lambda kid, text, sig: json.dumps({"v": 2, "kid": kid, "body": text, "sig": sig}).encode(),
        st.integers(-5, 70_000),
        st.text(max_size=300),
        st.text(alphabet="0123456789abcdef", min_size=0, max_size=130),
    )
)
def test_any_bytes_end_in_a_command_error(raw: bytes):
    trust = TrustStore(ROOT.verify_key, "north-site")
    trust.apply(seal_bundle(BUNDLE, ROOT))
    with pytest.raises(CommandError):
        open_command(raw, trust, site="north-site", gate="north", now=NOW)


def test_a_bundle_without_command_keys_is_still_format_1_on_the_wire():
    bundle = new_bundle(site="north-site", site_id=1, now=NOW)
    bundle, _kid = rotate(bundle, ISSUER, now=NOW, lifetime=timedelta(days=1), grace=timedelta(0))
    text = bundle.wire_json()
    assert json.loads(text)["v"] == 1 and "command_keys" not in json.loads(text)
    assert json.loads(BUNDLE.wire_json())["v"] == 2
    with pytest.raises(ValueError):  # command keys need format 2
        TrustBundle.model_validate({**json.loads(BUNDLE.wire_json()), "v": 1})
    with pytest.raises(ValueError):  # one kid, one key, across both lists
        doc = json.loads(BUNDLE.wire_json())
        doc["command_keys"][0]["kid"] = doc["keys"][0]["kid"]
        TrustBundle.model_validate_json(json.dumps(doc))
