"""Signed passes: offline-verifiable credentials a gate checks without asking anyone.

The console issues a pass (:mod:`~protocol.passes.format`) signed by a key that the
site's trust bundle lists (:mod:`~protocol.passes.trust`), prints it or sends it to a
phone as QR numeric-mode digits (:mod:`~protocol.passes.codec`), and publishes signed
revocation lists (:mod:`~protocol.passes.revocation`).  A gate holds the root public
key, the bundle, the newest revocation list and the dynamic-code secret
(:mod:`~protocol.passes.dynamic`), and calls :func:`~protocol.passes.decision.decide`
on every scan.  See ``docs/passes.md`` for the format and the threat model.
"""

from protocol.passes.codec import ScannedCode, decode_text, encode_text, issue, qr_version
from protocol.passes.decision import (
    ClockReading,
    Decision,
    Flag,
    GatePolicy,
    GateState,
    Reason,
    StalePolicy,
    UntrustedClockPolicy,
    decide,
)
from protocol.passes.dynamic import dynamic_text
from protocol.passes.errors import (
    DocumentError,
    DocumentRejectReason,
    KeyFileError,
    KeyFileReason,
    PassError,
    PassRejectReason,
)
from protocol.passes.format import DailyWindow, Pass, Role, SignedPass, decode_pass, photo_digest, sign_pass
from protocol.passes.revocation import (
    RevocationList,
    RevocationState,
    make_revocation_list,
    seal_revocation_list,
)
from protocol.passes.signed import ApplyOutcome, ApplyReason
from protocol.passes.trust import (
    KeyEntry,
    TrustBundle,
    TrustStore,
    issuing_key,
    new_bundle,
    open_bundle,
    retire,
    rotate,
    seal_bundle,
)

__all__ = [
    "ApplyOutcome",
    "ApplyReason",
    "ClockReading",
    "DailyWindow",
    "Decision",
    "DocumentError",
    "DocumentRejectReason",
    "Flag",
    "GatePolicy",
    "GateState",
    "KeyEntry",
    "KeyFileError",
    "KeyFileReason",
    "Pass",
    "PassError",
    "PassRejectReason",
    "Reason",
    "RevocationList",
    "RevocationState",
    "Role",
    "ScannedCode",
    "SignedPass",
    "StalePolicy",
    "TrustBundle",
    "TrustStore",
    "UntrustedClockPolicy",
    "decide",
    "decode_pass",
    "decode_text",
    "dynamic_text",
    "encode_text",
    "issue",
    "issuing_key",
    "make_revocation_list",
    "new_bundle",
    "open_bundle",
    "photo_digest",
    "qr_version",
    "retire",
    "rotate",
    "seal_bundle",
    "seal_revocation_list",
    "sign_pass",
]
