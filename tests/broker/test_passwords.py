"""Password hashes in mosquitto's ``$7$`` format (the real-broker login is in test_access)."""

from __future__ import annotations

import re
import subprocess

import pytest

from broker.errors import ProvisioningError, ProvisioningReason
from broker.passwords import ITERATIONS, check_password, hash_password, new_password, verify_password


def test_format_matches_mosquitto_passwd_layout():
    encoded = hash_password("correct horse battery", salt=bytes(range(12)))
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", encoded), encoded
    assert encoded.split("$")[3] == "AAECAwQFBgcICQoL"
    assert verify_password("correct horse battery", encoded)
    assert not verify_password("correct horse batterz", encoded)


def test_salt_is_random():
    assert hash_password("same password here") != hash_password("same password here")


def test_verifies_a_hash_written_by_mosquitto_passwd(tmp_path):
    path = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(path), "alice", "s3cret-password"], check=True, timeout=10
    )
    encoded = path.read_text().strip().split(":", 1)[1]
    assert encoded.startswith(f"$7${ITERATIONS}$")
    assert verify_password("s3cret-password", encoded)
    assert not verify_password("s3cret-passwore", encoded)


@pytest.mark.parametrize("encoded", ["", "$6$abc$def", "$7$x$AAAA$BBBB", "$7$101$not base64!$AAAA", "plain"])
def test_malformed_hash_is_false_not_an_exception(encoded):
    assert verify_password("whatever password", encoded) is False


def test_new_passwords_are_32_url_safe_characters_and_distinct():
    passwords = {new_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", p) for p in passwords)


@pytest.mark.parametrize("password", ["short", "twelve chars\nnewline", "has\0nul-byte-in-it", "x" * 11])
def test_bad_passwords_are_refused_with_a_reason(password):
    with pytest.raises(ProvisioningError) as caught:
        check_password(password)
    assert caught.value.reason is ProvisioningReason.BAD_PASSWORD
    assert isinstance(caught.value, ValueError)
