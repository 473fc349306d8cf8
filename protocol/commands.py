"""Signed commands (wire format 2): an order a gate can check came from the console, for it, now.

A command of format 1 (:class:`protocol.messages.Command`) carried no signature, so the
MQTT password of the console's account was all it took to open any door of any site.
Format 2 wraps the command in an envelope signed with a console **command key**: the
site root certifies that key in the trust bundle every gate already verifies
(:class:`protocol.passes.trust.CommandKeyEntry`), so a gate believes a command only if

* the key is in its bundle as a command key (a pass signing key is refused: ``wrong_role``),
  and the gate's clock is inside the key's window;
* the Ed25519 signature covers the exact body bytes — site, gate, id, name, arguments,
  issue and expiry times and operator — under the context ``gatepost/command/v2``;
* the body names this gate of this site (a command for ``north`` does nothing at ``south``);
* it has not expired, does not live longer than :data:`MAX_COMMAND_LIFETIME`, and its id
  was never seen here before (the gate keeps that memory, :mod:`edge.commands`).

As with trust bundles, the body is a JSON text inside the envelope and the signature is
over its bytes, so no canonical JSON is needed: what was signed is what is parsed.
This module is the format and the checks that need nothing but a trust bundle; the
replay memory is the gate's.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.errors import Rejection
from protocol.messages import MAX_MESSAGE_BYTES, Command, Hex32, Name, UtcTime
from protocol.passes.format import MAX_KID
from protocol.passes.trust import TrustedKey

COMMAND_FORMAT = 2
"""The ``v`` of a signed command.  ``1`` is the unsigned format, refused as ``unsigned``."""

MAX_COMMAND_LIFETIME = timedelta(minutes=10)
"""No command may live longer than this from issue to expiry.  It bounds how long a gate
must remember an id, and is the grace an old command key keeps after a renewal."""

SIGNATURE_CONTEXT = b"gatepost/command/v2\x00"


class CommandRejectReason(StrEnum):
    """Why a gate refused a command.  Stable strings: ``command.rejected`` events carry them."""

    RETAINED = "retained"
    """Published retained: it would act again on every reconnect."""
    UNSIGNED = "unsigned"
    """Format 1, which has no signature."""
    BAD_VERSION = "bad_version"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    NO_TRUST = "no_trust"
    """The gate holds no trust bundle (no ``[passes]``, or none received yet) to check keys against."""
    UNKNOWN_KEY = "unknown_key"
    WRONG_ROLE = "wrong_role"
    """The kid is one of the site's keys, but not a command key (a pass signing key)."""
    BAD_SIGNATURE = "bad_signature"
    KEY_EXPIRED = "key_expired"
    """The command key's certificate has ended (expired, or retired by a newer bundle)."""
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    WRONG_TARGET = "wrong_target"
    """Signed for another site or gate: a genuine command replayed where it was not meant for."""
    EXPIRED = "expired"
    EXPIRY_TOO_FAR = "expiry_too_far"
    REPLAYED = "replayed"
    """An id this gate has already seen."""
    DUPLICATE = "duplicate"
    """The broker redelivered a command the gate already took (MQTT ``DUP``): not acted on twice."""
    REPLAY_MEMORY = "replay_memory"
    """The gate could not record the id durably, so it refuses rather than risk acting twice."""


ALARMING_REASONS = frozenset(
    {
        CommandRejectReason.RETAINED,
        CommandRejectReason.UNSIGNED,
        CommandRejectReason.BAD_VERSION,
        CommandRejectReason.TOO_LARGE,
        CommandRejectReason.MALFORMED,
        CommandRejectReason.UNKNOWN_KEY,
        CommandRejectReason.WRONG_ROLE,
        CommandRejectReason.BAD_SIGNATURE,
        CommandRejectReason.KEY_EXPIRED,
        CommandRejectReason.WRONG_TARGET,
        CommandRejectReason.REPLAYED,
    }
)
"""Refusals that only someone other than the console's signing code produces: a forged,
unsigned, replayed or misdirected command.  The console raises an alarm for each.  The
others (expired in a queue, a clock or a key just renewed, a gate not provisioned) are
operational and are only recorded."""


class CommandError(Rejection[CommandRejectReason], ValueError):
    """A command a gate must not act on.

    ``command`` is what the message claimed to be, when its body could be read, so the
    gate can answer the sender's id; it is not evidence of anything unless ``reason``
    comes after the signature check (``wrong_target``, ``expired``, ``replayed`` ...).
    """

    def __init__(self, reason: CommandRejectReason, detail: str, *, command: Command | None = None) -> None:
        self.command = command
        super().__init__(reason, detail)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CommandBody(_Strict):
    """What the console signs: the command and everything that says where, when and by whom."""

    site: Name
    gate: Name
    id: Hex32
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: UtcTime
    expires_at: UtcTime
    operator: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _order(self) -> CommandBody:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be later than issued_at")
        return self

    def command(self) -> Command:
        """The command as a gate's handlers take it (format 1's fields)."""
        return Command(
            id=self.id,
            name=self.name,
            args=self.args,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            operator=self.operator,
        )


class SignedCommand(_Strict):
    """The envelope on the wire: ``{"v": 2, "kid": …, "body": "<JSON text>", "sig": "<128 hex>"}``."""

    v: Literal[2]
    kid: int = Field(ge=0, le=MAX_KID)
    body: Annotated[str, Field(max_length=MAX_MESSAGE_BYTES)]
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class CommandKeys(Protocol):
    """What verification needs of a gate's trust: :class:`protocol.passes.TrustStore` is one."""

    def command_key(self, kid: int) -> TrustedKey | None: ...

    def key(self, kid: int) -> TrustedKey | None: ...


# -- console side -----------------------------------------------------------------------------


def sign_command(body: CommandBody, key: SigningKey, kid: int) -> bytes:
    """The bytes to publish on the gate's command topic."""
    text = body.model_dump_json()
    signature = key.sign(SIGNATURE_CONTEXT + text.encode("utf-8")).signature
    envelope = {"v": COMMAND_FORMAT, "kid": kid, "body": text, "sig": signature.hex()}
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


# -- gate side --------------------------------------------------------------------------------


def _refuse(reason: CommandRejectReason, detail: str, body: CommandBody | None = None) -> CommandError:
    return CommandError(reason, detail, command=body.command() if body is not None else None)


def _envelope(raw: bytes) -> SignedCommand:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _refuse(CommandRejectReason.TOO_LARGE, f"{len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        return SignedCommand.model_validate_json(raw)
    except ValidationError:
        pass
    except (RecursionError, ValueError):
        raise _refuse(CommandRejectReason.MALFORMED, "payload could not be parsed") from None
    # Slow path, for the refusal's reason only: what kind of wrong is it?
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _refuse(CommandRejectReason.MALFORMED, "payload is not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise _refuse(CommandRejectReason.MALFORMED, "payload is not a JSON object")
    version = doc.get("v")
    if version == 1 or (version is None and "sig" not in doc):
        raise _refuse(
            CommandRejectReason.UNSIGNED,
            "an unsigned (format 1) command; gates act only on commands signed with a command key",
        )
    if version != COMMAND_FORMAT or isinstance(version, bool):
        raise _refuse(CommandRejectReason.BAD_VERSION, f"command format {str(version)[:20]!r}, want 2")
    raise _refuse(CommandRejectReason.MALFORMED, "not a signed command envelope (v, kid, body, sig)")


def _body(envelope: SignedCommand) -> CommandBody:
    try:
        return CommandBody.model_validate_json(envelope.body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first.get("loc", ())) or "<body>"
        raise _refuse(CommandRejectReason.MALFORMED, f"body {where}: {first.get('msg', 'invalid')}") from None
    except (RecursionError, ValueError):
        raise _refuse(CommandRejectReason.MALFORMED, "body could not be parsed") from None


def open_command(
    raw: bytes | bytearray | memoryview,
    keys: CommandKeys | None,
    *,
    site: str,
    gate: str,
    now: datetime,
    clock_trusted: bool = True,
) -> CommandBody:
    """Check everything about a command that a trust bundle can tell, or raise :class:`CommandError`.

    In order: the envelope (format 2), the key (a command key of the bundle), the
    signature, the key's window at ``now``, and the target (``site``/``gate``).  Replay
    and expiry are the caller's next steps (its replay memory, then :func:`check_fresh`),
    so that a replayed command is called a replay even after it expired.

    ``now`` is the gate's wall clock.  When it is not trusted it is only a lower bound on
    the true time: a key already past its window is refused, one not yet in it is not.
    """
    envelope = _envelope(bytes(raw))
    body = _body(envelope)
    if keys is None:
        raise _refuse(
            CommandRejectReason.NO_TRUST, "this gate holds no trust bundle to check commands with", body
        )
    trusted = keys.command_key(envelope.kid)
    if trusted is None:
        if keys.key(envelope.kid) is not None:
            raise _refuse(
                CommandRejectReason.WRONG_ROLE, f"kid {envelope.kid} signs passes, not commands", body
            )
        raise _refuse(CommandRejectReason.UNKNOWN_KEY, f"kid {envelope.kid} is not a command key here", body)
    try:
        trusted.verify_key.verify(
            SIGNATURE_CONTEXT + envelope.body.encode("utf-8"), bytes.fromhex(envelope.sig)
        )
    except BadSignatureError:
        raise _refuse(
            CommandRejectReason.BAD_SIGNATURE, f"not signed by command key {envelope.kid}"
        ) from None
    entry = trusted.entry
    if now >= entry.not_after:
        raise _refuse(
            CommandRejectReason.KEY_EXPIRED,
            f"command key {envelope.kid} ended {entry.not_after.isoformat()}",
            body,
        )
    if now < entry.not_before and clock_trusted:
        raise _refuse(
            CommandRejectReason.KEY_NOT_YET_VALID,
            f"command key {envelope.kid} starts {entry.not_before.isoformat()}",
            body,
        )
    if (body.site, body.gate) != (site, gate):
        raise _refuse(
            CommandRejectReason.WRONG_TARGET,
            f"signed for {body.site}/{body.gate}, this is {site}/{gate}",
            body,
        )
    return body


def check_fresh(body: CommandBody, *, now: datetime, clock_trusted: bool = True) -> None:
    """Refuse a command that has expired or lives too long (``expired``, ``expiry_too_far``).

    With an untrusted clock an expiry already passed is still proved; one that seems too
    far ahead may only be the clock lagging, and is let through to the handler (which
    refuses what needs a good clock, such as ``unlock``).
    """
    if body.expires_at - body.issued_at > MAX_COMMAND_LIFETIME:
        raise _refuse(
            CommandRejectReason.EXPIRY_TOO_FAR,
            f"lives {(body.expires_at - body.issued_at).total_seconds():.0f} s, "
            f"limit {MAX_COMMAND_LIFETIME.total_seconds():.0f} s",
            body,
        )
    if body.expires_at <= now:
        raise _refuse(
            CommandRejectReason.EXPIRED, f"command {body.name} expired at {body.expires_at.isoformat()}", body
        )
    if clock_trusted and body.expires_at - now > MAX_COMMAND_LIFETIME:
        raise _refuse(
            CommandRejectReason.EXPIRY_TOO_FAR, f"expires more than {MAX_COMMAND_LIFETIME} from now", body
        )
