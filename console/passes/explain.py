"""``gatepost pass show``: every check a gate makes on a code, one plain sentence each.

A guard or an operator holding a pass that a gate refused wants to know *which* check
failed and why, not just the reason code.  The checks are the gate's own (same order
as :func:`protocol.passes.decide`), but they all run and are all reported, so one
answer lists everything wrong with a pass.  Nothing here raises for any input text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from protocol.passes import GateState, Pass, PassError, PassRejectReason, decode_text, qr_version
from protocol.passes.dynamic import matching_step, pass_key, time_step

_ROLE_WORDS = {0: "resident", 1: "service worker", 2: "visitor", 3: "staff"}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool | None
    """True passed, False failed, None for information or a check that could not be made."""
    text: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[self.ok]
        return f"{mark} {self.name:<11} {self.text}"


@dataclass(slots=True)
class Explanation:
    checks: list[Check] = field(default_factory=list)
    pass_: Pass | None = None
    verified: bool = False
    """Whether the signature was checked against the office's public files."""

    @property
    def failed(self) -> bool:
        return any(c.ok is False for c in self.checks)

    def add(self, name: str, ok: bool | None, text: str) -> None:
        self.checks.append(Check(name, ok, text))


def _when(value: datetime, zone: tzinfo | None) -> str:
    return f"{value.astimezone(zone):%Y-%m-%d %H:%M %Z}" if zone else f"{value:%Y-%m-%d %H:%M} UTC"


def explain(code: str, now: datetime, state: GateState | None) -> Explanation:
    """Run every check on ``code`` at ``now``; with ``state`` None only the format is checked."""
    out = Explanation()
    try:
        scanned = decode_text(code)
    except PassError as exc:
        if exc.reason is PassRejectReason.NOT_A_PASS:
            out.add("format", False, "not a gatepost pass: it must be digits starting with 4750")
        else:
            out.add(
                "format", False, f"has the gatepost marker but is damaged ({exc.reason.value}: {exc.detail})"
            )
        return out
    except Exception as exc:  # show must explain, never crash, whatever the text
        out.add("format", False, f"could not be read ({type(exc).__name__})")
        return out

    signed = scanned.signed
    p = out.pass_ = signed.pass_
    digits = len(code.strip(" \t\r\n\x00"))
    out.add(
        "format",
        True,
        f"gatepost pass, format 1, {len(signed.payload) + len(signed.signature)} bytes, "
        f"{digits} digits (QR {qr_version(digits, 'Q')}-Q)",
    )
    zone = state.timezone() if state is not None else None
    window = ""
    if p.daily_window is not None:
        w = p.daily_window
        window = f", daily {w.start // 60:02d}:{w.start % 60:02d}-{w.end // 60:02d}:{w.end % 60:02d}"
    out.add(
        "claims",
        None,
        f"serial {p.serial} generation {p.generation}: {p.holder} ({p.unit}), {_ROLE_WORDS[p.role]}",
    )
    out.add(
        "claims",
        None,
        f"valid {_when(p.valid_from, zone)} until {_when(p.valid_until, zone)}{window}, "
        f"zones {','.join(map(str, sorted(p.zones)))}" + (", photo on file" if p.photo_digest else ""),
    )
    if state is None:
        out.add("key id", None, f"kid {p.kid}: not checked, no office given (--office DIR)")
        out.add("signature", None, "not checked: nothing above can be trusted until it is")
        return out

    out.verified = True
    bundle = state.trust.bundle
    trusted = state.trust.key(p.kid)
    version = bundle.version if bundle else "?"
    if trusted is None:
        out.add("key id", False, f"kid {p.kid} is not in trust bundle v{version}: not signed by this site")
    elif now >= trusted.entry.not_after:
        out.add(
            "key id", False, f"kid {p.kid} was retired or expired at {_when(trusted.entry.not_after, zone)}"
        )
    elif now < trusted.entry.not_before:
        out.add("key id", False, f"kid {p.kid} is not valid until {_when(trusted.entry.not_before, zone)}")
    else:
        out.add("key id", True, f"kid {p.kid} is in trust bundle v{version} and valid now")
    if trusted is None:
        out.add("signature", False, "cannot be checked without the key: treat the pass as forged")
        return out
    if not signed.verify(trusted.verify_key):
        out.add("signature", False, "does not verify: the pass was altered or forged; nothing in it is true")
        return out
    out.add("signature", True, f"verifies with kid {p.kid}")

    if bundle is not None and p.site_id == bundle.site_id:
        out.add("site", True, f"site id {p.site_id} is {bundle.site}")
    else:
        out.add("site", False, f"site id {p.site_id} is not this site ({bundle.site_id if bundle else '?'})")

    if now >= p.valid_until:
        out.add("validity", False, f"expired {_when(p.valid_until, zone)}")
    elif now < p.valid_from:
        out.add("validity", False, f"not valid before {_when(p.valid_from, zone)}")
    else:
        left = p.valid_until - now
        out.add("validity", True, f"valid now, {left.days} days {left.seconds // 3600} h left")

    if p.daily_window is None:
        out.add("window", True, "no daily window: any time of day")
    else:
        local = now.astimezone(zone)
        inside = p.daily_window.contains(local.hour * 60 + local.minute)
        where = "inside" if inside else "outside"
        out.add("window", inside, f"{local:%H:%M} {bundle.timezone if bundle else ''} is {where}{window}")

    revocations = state.revocation.current
    if revocations is None:
        out.add("revoked", None, "unknown: no revocation list in the office's public files")
    elif state.revocation.is_revoked(p.serial, p.generation):
        out.add(
            "revoked",
            False,
            f"yes, serial {p.serial} generation {p.generation} is on revocation list v{revocations.version}",
        )
    else:
        out.add("revoked", True, f"no, not on revocation list v{revocations.version}")

    if not p.dynamic:
        extra = " (a dynamic code was appended but is not needed)" if scanned.dynamic_code else ""
        out.add("dynamic", True, f"static pass, no phone code needed{extra}")
    elif scanned.dynamic_code is None:
        out.add("dynamic", False, "phone pass shown without its 8-digit code (a printout or old screenshot)")
    elif state.site_secret is None:
        out.add("dynamic", None, "phone code present but not checked: no site secret")
    else:
        key = pass_key(state.site_secret, p.serial, p.generation)
        step = matching_step(
            key, scanned.dynamic_code, time_step(now, state.policy.step_s), state.policy.skew_steps
        )
        if step is None:
            out.add(
                "dynamic", False, "phone code matches no step near now: an old screenshot or a wrong clock"
            )
        else:
            age = timedelta(seconds=(time_step(now, state.policy.step_s) - step) * state.policy.step_s)
            out.add("dynamic", True, f"phone code is current (step offset {age.total_seconds():+.0f} s)")
    return out
