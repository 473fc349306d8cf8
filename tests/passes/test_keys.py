from __future__ import annotations

import os
import stat

import pytest

from protocol.passes import KeyFileError, KeyFileReason
from protocol.passes.keys import (
    destroy_key_file,
    generate_signing_key,
    generate_site_secret,
    load_public_key,
    load_signing_key,
    load_site_secret,
    save_public_key,
    save_signing_key,
    save_site_secret,
)


def test_private_key_is_written_0600_and_loads_back(tmp_path):
    key = generate_signing_key()
    path = tmp_path / "root.key"
    old = os.umask(0o000)  # even a careless umask must not widen the file
    try:
        save_signing_key(path, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_signing_key(path)) == bytes(key)


def test_existing_key_is_never_overwritten(tmp_path):
    path = tmp_path / "root.key"
    first = generate_signing_key()
    save_signing_key(path, first)
    with pytest.raises(KeyFileError) as info:
        save_signing_key(path, generate_signing_key())
    assert info.value.reason is KeyFileReason.EXISTS
    assert bytes(load_signing_key(path)) == bytes(first)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "signing-1.key"
    save_signing_key(path, generate_signing_key())
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_signing_key(path)
    assert info.value.reason is KeyFileReason.INSECURE_PERMISSIONS


def test_wrong_kind_and_garbage_are_malformed(tmp_path):
    secret = tmp_path / "site.secret"
    save_site_secret(secret, generate_site_secret())
    assert len(load_site_secret(secret)) == 32
    with pytest.raises(KeyFileError) as info:
        load_signing_key(secret)
    assert info.value.reason is KeyFileReason.MALFORMED
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"\xff\x00 not a key at all")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_signing_key(junk)
    assert info.value.reason is KeyFileReason.MALFORMED


def test_public_key_file_is_world_readable_and_holds_no_secret(tmp_path):
    key = generate_signing_key()
    path = tmp_path / "root.pub"
    save_public_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert bytes(load_public_key(path)) == bytes(key.verify_key)
    assert bytes(key).hex() not in path.read_text()


def test_destroyed_key_is_gone(tmp_path):
    path = tmp_path / "signing-2.key"
    save_signing_key(path, generate_signing_key())
    destroy_key_file(path)
    assert not path.exists()
