from __future__ import annotations

from datetime import timedelta

from nacl.signing import SigningKey

from protocol.passes import (
    ApplyReason,
    RevocationState,
    TrustStore,
    make_revocation_list,
    seal_revocation_list,
)

from .conftest import NOW, SITE


def _state(site, tmp_path=None) -> RevocationState:
    trust = TrustStore(site.root.verify_key, SITE)
    assert trust.apply(site.sealed_bundle()).applied
    return RevocationState(trust, path=tmp_path / "revocations.json" if tmp_path else None)


def test_serials_and_generations_are_revoked(site):
    state = _state(site)
    assert state.apply(site.revocations(serials=[5, 6], before={9: 3})).applied
    assert state.is_revoked(5, 0) and state.is_revoked(6, 99)
    assert state.is_revoked(9, 2) and not state.is_revoked(9, 3)
    assert not state.is_revoked(7, 0)


def test_never_goes_back_to_an_older_list(site):
    state = _state(site)
    v1 = site.revocations(serials=[5])
    v2 = site.revocations(serials=[])  # serial 5 un-revoked in v2
    v3 = site.revocations(serials=[5])
    assert state.apply(v1).applied and state.apply(v3).applied
    outcome = state.apply(v2)
    assert (outcome.applied, outcome.reason, outcome.version) == (False, ApplyReason.OLDER, 3)
    assert state.apply(v3).reason is ApplyReason.SAME
    assert state.is_revoked(5, 0)


def test_rollback_is_refused_after_a_restart(site, tmp_path):
    state = _state(site, tmp_path)
    v1, v2 = site.revocations(serials=[1]), site.revocations(serials=[1, 2])
    assert state.apply(v1).applied and state.apply(v2).applied
    restarted = _state(site, tmp_path)
    assert restarted.version == 2 and restarted.is_revoked(2, 0)
    assert restarted.apply(v1).reason is ApplyReason.OLDER


def test_forged_and_foreign_lists_are_rejected(site):
    state = _state(site)
    rl = make_revocation_list(site=SITE, version=5, issued_at=NOW, serials=[1])
    assert (
        state.apply(seal_revocation_list(rl, SigningKey.generate(), site.kid)).reason
        is ApplyReason.BAD_SIGNATURE
    )
    assert state.apply(seal_revocation_list(rl, site.signer, 77)).reason is ApplyReason.UNKNOWN_KEY
    other = make_revocation_list(site="elm", version=5, issued_at=NOW)
    assert state.apply(seal_revocation_list(other, site.signer, site.kid)).reason is ApplyReason.WRONG_SITE
    assert state.apply(site.sealed_bundle()).reason is ApplyReason.WRONG_KIND
    assert state.apply(b"{").reason is ApplyReason.MALFORMED
    assert state.version is None


def test_a_retired_key_cannot_publish_lists_dated_after_retirement(site):
    from protocol.passes import retire, seal_bundle

    trust = TrustStore(site.root.verify_key, SITE)
    trust.apply(seal_bundle(retire(site.bundle, site.kid, now=NOW - timedelta(days=1)), site.root))
    state = RevocationState(trust)
    assert state.apply(site.revocations(issued_at=NOW)).reason is ApplyReason.UNKNOWN_KEY


def test_staleness_is_measured_from_issued_at(site):
    state = _state(site)
    assert state.is_stale(NOW, timedelta(hours=24))  # never had a list
    assert state.apply(site.revocations(issued_at=NOW)).applied
    assert not state.is_stale(NOW + timedelta(hours=23), timedelta(hours=24))
    assert state.is_stale(NOW + timedelta(hours=25), timedelta(hours=24))
    assert state.age(NOW + timedelta(hours=2)) == timedelta(hours=2)
