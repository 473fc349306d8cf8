from __future__ import annotations

import json
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from protocol.passes import (
    ApplyReason,
    DocumentError,
    DocumentRejectReason,
    TrustStore,
    issuing_key,
    open_bundle,
    retire,
    rotate,
    seal_bundle,
)
from protocol.passes.trust import new_bundle, rotate_with_file

from .conftest import NOW, SITE


def test_sealed_bundle_opens_with_the_root_and_not_with_another_key(site):
    data = site.sealed_bundle()
    assert open_bundle(data, site.root.verify_key) == site.bundle
    with pytest.raises(DocumentError) as info:
        open_bundle(data, SigningKey.generate().verify_key)
    assert info.value.reason is DocumentRejectReason.BAD_SIGNATURE


def test_bundle_carries_public_keys_only(site):
    text = site.sealed_bundle().decode()
    assert bytes(site.signer.verify_key).hex() in text
    for secret in (site.signer, site.root):
        assert bytes(secret).hex() not in text


def test_tampered_bundle_body_fails_the_signature(site):
    doc = json.loads(site.sealed_bundle())
    doc["body"] = doc["body"].replace('"site_id":7', '"site_id":8')
    assert '"site_id":8' in doc["body"]
    with pytest.raises(DocumentError) as info:
        open_bundle(json.dumps(doc).encode(), site.root.verify_key)
    assert info.value.reason is DocumentRejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", DocumentRejectReason.MALFORMED),
        (b"[]", DocumentRejectReason.MALFORMED),
        (
            b'{"kind":"revocation_list","kid":1,"body":"{}","sig":"' + b"0" * 128 + b'"}',
            DocumentRejectReason.WRONG_KIND,
        ),
        (b'{"kind":"trust_bundle","kid":null,"body":"{}","sig":"zz"}', DocumentRejectReason.MALFORMED),
        (b"[" * 100_000, DocumentRejectReason.MALFORMED),
        (b" " * (5 * 1024 * 1024), DocumentRejectReason.TOO_LARGE),
    ],
)
def test_garbage_documents_are_typed_rejections(site, data, reason):
    with pytest.raises(DocumentError) as info:
        open_bundle(data, site.root.verify_key)
    assert info.value.reason is reason


def test_store_accepts_only_newer_bundles_for_its_site(site, tmp_path):
    store = TrustStore(site.root.verify_key, SITE)
    v1 = site.sealed_bundle()
    assert store.apply(v1).applied
    assert store.apply(v1).reason is ApplyReason.SAME
    newer, _ = rotate(
        site.bundle, SigningKey.generate(), now=NOW, lifetime=timedelta(days=90), grace=timedelta(days=1)
    )
    assert store.apply(seal_bundle(newer, site.root)).applied
    outcome = store.apply(v1)
    assert (outcome.applied, outcome.reason, outcome.version) == (False, ApplyReason.OLDER, newer.version)
    other_site = TrustStore(site.root.verify_key, "elm")
    assert other_site.apply(v1).reason is ApplyReason.WRONG_SITE
    assert store.apply(b"nonsense").reason is ApplyReason.MALFORMED


def test_store_survives_restart_without_rolling_back(site, tmp_path):
    path = tmp_path / "bundle.json"
    store = TrustStore(site.root.verify_key, SITE, path=path)
    v1 = site.sealed_bundle()
    newer, kid = rotate(
        site.bundle, SigningKey.generate(), now=NOW, lifetime=timedelta(days=9), grace=timedelta(0)
    )
    assert store.apply(v1).applied and store.apply(seal_bundle(newer, site.root)).applied
    restarted = TrustStore(site.root.verify_key, SITE, path=path)
    assert restarted.version == newer.version and restarted.key(kid) is not None
    assert restarted.apply(v1).reason is ApplyReason.OLDER


def test_rotation_keeps_old_passes_working_for_the_grace_and_issues_with_the_new_key(site):
    new_key = SigningKey.generate()
    grace = timedelta(days=30)
    rotated, kid = rotate(site.bundle, new_key, now=NOW, lifetime=timedelta(days=365), grace=grace)
    assert rotated.version == site.bundle.version + 1
    old = rotated.key(site.kid)
    assert old.not_after == NOW + grace and old.valid_at(NOW + grace - timedelta(seconds=1))
    assert issuing_key(rotated, NOW).kid == kid
    assert issuing_key(rotated, NOW - timedelta(days=1)).kid == site.kid


def test_retire_closes_the_window_now_and_keeps_the_entry(site):
    retired = retire(site.bundle, site.kid, now=NOW)
    entry = retired.key(site.kid)
    assert entry is not None and not entry.valid_at(NOW) and entry.valid_at(NOW - timedelta(seconds=1))
    assert issuing_key(retired, NOW) is None
    with pytest.raises(DocumentError) as info:
        retire(site.bundle, 999, now=NOW)
    assert info.value.reason is DocumentRejectReason.UNKNOWN_KEY


def test_rotate_with_file_writes_a_0600_key_that_matches_the_bundle(tmp_path):
    bundle = new_bundle(site=SITE, site_id=1, now=NOW)
    bundle, kid, path = rotate_with_file(
        bundle, tmp_path, now=NOW, lifetime=timedelta(days=1), grace=timedelta(0)
    )
    from protocol.passes.keys import load_signing_key

    assert path.name == f"signing-{kid}.key" and path.stat().st_mode & 0o777 == 0o600
    assert bytes(load_signing_key(path).verify_key).hex() == bundle.key(kid).public_key


def test_unknown_time_zone_is_refused(site):
    with pytest.raises(ValueError):
        new_bundle(site=SITE, site_id=1, timezone="Mars/Olympus", now=NOW)
