"""The root key stays offline: issue 13, item 5.

The site root key is sealed under a passphrase (scrypt, ChaCha20-Poly1305) and needed
only to certify keys; the web console works from the office folder with the sealed root
gone from it; an office from before sealing keeps working and migrates with one
command; the whole office backs up into one sealed file and restores from it, and a
wrong passphrase or a damaged file is a typed refusal that leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.launcher import Broker
from console.config import ConsoleConfig
from console.passes.backup import backup_office, restore_office
from console.passes.cli import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, main
from console.passes.office import Office, OfficeError, OfficeReason, PassRequest, gate_state_from
from console.passes.sealed import CHUNK_BYTES, SealError, SealReason, open_secret
from console.store import EventStore
from console.web.app import build_context, create_app
from protocol.commands import MAX_COMMAND_LIFETIME
from protocol.passes import ClockReading, Role, decide
from protocol.passes.keys import save_signing_key
from tests.console.web.web_support import Web, login, post_form
from tests.offices import FAST_KDF, PASSPHRASE, create_office
from tests.security.compound import running_compound
from tests.waiting import wait_until

OTHER = "a different passphrase entirely"


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    o = create_office(tmp_path / "office", site="greenwood")
    yield o
    o.close()


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["pass", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def secret_file(tmp_path: Path, text: str, name: str = "pass.txt") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def make_legacy(office: Office) -> None:
    """An office as `pass init` made it before sealing: root.key in clear, no root.sealed."""
    office.unlock_root(PASSPHRASE)
    save_signing_key(office.dir / "root.key", office._root())
    (office.dir / "root.sealed").unlink()
    office.lock_root()


# -- the sealed root ---------------------------------------------------------------------------


def test_the_root_is_sealed_with_its_parameters_and_opens_only_with_its_passphrase(office: Office):
    sealed = office.dir / "root.sealed"
    assert not (office.dir / "root.key").exists()
    assert sealed.stat().st_mode & 0o777 == 0o600
    header = json.loads(sealed.read_text())
    assert header["kdf"]["name"] == "scrypt" and (
        header["kdf"]["n"],
        header["kdf"]["r"],
        header["kdf"]["p"],
    ) == (
        FAST_KDF.n,
        FAST_KDF.r,
        FAST_KDF.p,
    )
    assert len(bytes.fromhex(header["kdf"]["salt"])) == 16 and header["aead"] == "chacha20poly1305"
    seed = open_secret(sealed.read_bytes(), PASSPHRASE, what="gatepost-site-root-key")
    assert seed.hex() not in sealed.read_text() and len(seed) == 32  # sealed, not merely stored

    office.lock_root()
    with pytest.raises(OfficeError) as locked:
        office.rotate_key()
    assert locked.value.reason is OfficeReason.ROOT_LOCKED
    assert sorted(p.name for p in office.dir.glob("*.key")) == ["command-2.key", "signing-1.key"]  # none made
    with pytest.raises(SealError) as wrong:
        office.unlock_root(OTHER)
    assert wrong.value.reason is SealReason.WRONG_PASSPHRASE
    office.unlock_root(PASSPHRASE)
    assert office.rotate_key() == 3


def test_a_sealed_root_altered_in_any_byte_is_refused_as_tampered(office: Office, tmp_path: Path):
    sealed = office.dir / "root.sealed"
    doc = json.loads(sealed.read_text())
    flipped = dict(
        doc, ciphertext=doc["ciphertext"][:-2] + format(int(doc["ciphertext"][-2:], 16) ^ 1, "02x")
    )
    other_public = dict(doc, public_key="00" * 32)  # a root of someone else's, shown as ours
    for altered in (flipped, other_public):
        sealed.write_text(json.dumps(altered))
        with pytest.raises(SealError) as err:
            office.unlock_root(PASSPHRASE)
        assert err.value.reason is SealReason.TAMPERED
    sealed.write_text("not a sealed file")
    with pytest.raises(SealError) as err:
        office.unlock_root(PASSPHRASE)
    assert err.value.reason is SealReason.MALFORMED


def test_the_root_may_live_outside_the_office_and_must_be_the_offices_own(tmp_path: Path):
    stick = tmp_path / "usb" / "root.sealed"
    stick.parent.mkdir()
    with create_office(tmp_path / "o", root_file=stick) as office:
        assert stick.exists() and not (office.dir / "root.sealed").exists()
        office.lock_root()
        with pytest.raises(OfficeError) as missing:
            office.unlock_root(PASSPHRASE)
        assert missing.value.reason is OfficeReason.ROOT_MISSING
        office.unlock_root(PASSPHRASE, stick)
        office.rotate_key()
    other = tmp_path / "other.sealed"
    create_office(tmp_path / "p", root_file=other).close()
    with Office.open(tmp_path / "o") as office, pytest.raises(OfficeError) as wrong:
        office.unlock_root(PASSPHRASE, other)
    assert wrong.value.reason is OfficeReason.WRONG_ROOT


# -- offices from before sealing ---------------------------------------------------------------


def test_an_office_with_its_root_in_clear_keeps_working_warns_and_migrates(
    office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    issued = office.issue(PassRequest("王小明", "3-2-501", Role.RESIDENT, days=30))
    make_legacy(office)
    office.close()
    monkeypatch.delenv("GATEPOST_PASSPHRASE", raising=False)
    # (pytest's stdin is no terminal, so the CLI cannot prompt: as under a service manager)

    code, out, err = run(capsys, "rotate-key", "--office", office.dir)  # works as before, no passphrase
    assert code == EXIT_OK and "new signing key kid 3" in out
    assert "not encrypted" in err and "gatepost pass encrypt-root" in err

    code, _out, err = run(
        capsys, "encrypt-root", "--office", office.dir, "--passphrase-file", secret_file(tmp_path, "short")
    )
    assert code == EXIT_REFUSED and "weak_passphrase" in err and (office.dir / "root.key").exists()
    code, out, err = run(
        capsys, "encrypt-root", "--office", office.dir, "--passphrase-file", secret_file(tmp_path, OTHER)
    )
    assert code == EXIT_OK, err
    assert not (office.dir / "root.key").exists() and (office.dir / "root.sealed").exists()
    code, out, err = run(capsys, "keys", "--office", office.dir)
    assert code == EXIT_OK and "sealed (root.sealed)" in out and "warning" not in err

    code, _out, err = run(capsys, "rotate-key", "--office", office.dir)  # now it needs the passphrase
    assert code == EXIT_ERROR and "--passphrase-file" in err
    loose = secret_file(tmp_path, OTHER, "loose.txt")
    loose.chmod(0o644)
    code, _out, err = run(capsys, "rotate-key", "--office", office.dir, "--passphrase-file", loose)
    assert code == EXIT_ERROR and "must be 0600" in err
    monkeypatch.setenv("GATEPOST_PASSPHRASE", OTHER)
    code, out, _err = run(capsys, "rotate-key", "--office", office.dir)
    assert code == EXIT_OK and "new signing key kid 4" in out
    # Passes issued before all this still open the gate.
    state = gate_state_from(office.dir / "public")
    assert decide(issued.text, ClockReading(datetime.now(UTC), True), state).granted


# -- backup and restore ------------------------------------------------------------------------


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file()
        and p.name not in (".lock", "register.sqlite")
        and not p.name.endswith(("-wal", "-shm"))
    }


def test_backup_and_restore_round_trip(office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for holder in ("王小明", "李华"):
        office.issue(PassRequest(holder, "3-2-501", Role.RESIDENT, days=30))
    office.revoke(1)
    (office.dir / "printed").mkdir()
    (office.dir / "printed" / "large.bin").write_bytes(os.urandom(CHUNK_BYTES * 2 + 123))  # several chunks
    office.close()
    passphrase = secret_file(tmp_path, OTHER)
    backup = tmp_path / "greenwood.backup"
    code, _out, err = run(
        capsys, "backup", "--office", office.dir, "--out", backup, "--passphrase-file", passphrase
    )
    assert code == EXIT_OK, err
    assert backup.stat().st_mode & 0o777 == 0o600
    raw = backup.read_bytes()
    assert (
        b"signing-1.key" not in raw and b"greenwood" in raw.split(b"\n", 1)[0]
    )  # names sealed, site readable

    restored = tmp_path / "restored"
    code, _out, err = run(capsys, "restore", "--office", restored, backup, "--passphrase-file", passphrase)
    assert code == EXIT_OK, err
    assert _files(restored) == _files(office.dir)
    assert restored.stat().st_mode & 0o777 == 0o700
    assert (restored / "signing-1.key").stat().st_mode & 0o777 == 0o600
    assert (restored / "public" / "bundle").stat().st_mode & 0o777 == 0o644
    with Office.open(restored) as again:
        assert [r.serial for r in again.search("")] == [2, 1]
        assert again.search("1", serial_only=True)[0].revoked
        assert again.issue(PassRequest("张三", "1-1-101", Role.VISITOR)).pass_.serial == 3
        again.unlock_root(PASSPHRASE)  # the sealed root came along, still under its own passphrase
        again.rotate_key()
    # the same backup does not overwrite an office that exists
    code, _out, err = run(capsys, "restore", "--office", restored, backup, "--passphrase-file", passphrase)
    assert code == EXIT_ERROR and "already_initialised" in err


def test_restore_refuses_a_wrong_passphrase_or_a_damaged_file_and_leaves_nothing(
    office: Office, tmp_path: Path
):
    (office.dir / "printed").mkdir()
    (office.dir / "printed" / "large.bin").write_bytes(os.urandom(CHUNK_BYTES + 5000))
    backup = tmp_path / "b"
    backup_office(office.dir, backup, OTHER, params=FAST_KDF)
    good = backup.read_bytes()
    header_end = good.index(b"\n") + 1
    flipped = bytearray(good)
    flipped[header_end + 100] ^= 0x01
    cases = {
        "wrong passphrase": (good, PASSPHRASE, SealReason.WRONG_PASSPHRASE),
        "a flipped bit": (bytes(flipped), OTHER, SealReason.TAMPERED),
        "cut at a chunk boundary": (good[: header_end + CHUNK_BYTES + 16], OTHER, SealReason.TAMPERED),
        "cut mid-chunk": (good[:-10], OTHER, SealReason.TAMPERED),
        "its header changed": (
            good.replace(b'"site":"greenwood"', b'"site":"elsewhere"', 1),
            OTHER,
            SealReason.TAMPERED,
        ),
        "not a backup": (b"hello\n" + good[header_end:], OTHER, SealReason.MALFORMED),
    }
    for name, (data, passphrase, reason) in cases.items():
        damaged = tmp_path / "damaged"
        damaged.write_bytes(data)
        target = tmp_path / "restored"
        with pytest.raises(SealError) as err:
            restore_office(damaged, target, passphrase)
        assert err.value.reason is reason, name
        assert (
            not target.exists() and sorted(p.name for p in tmp_path.iterdir() if "restoring" in p.name) == []
        ), name
    restore_office(backup, tmp_path / "restored", OTHER)  # and the intact file restores


def test_backup_refuses_to_overwrite(office: Office, tmp_path: Path):
    existing = tmp_path / "b"
    existing.write_bytes(b"keep me")
    with pytest.raises(OfficeError):
        backup_office(office.dir, existing, OTHER, params=FAST_KDF)
    assert existing.read_bytes() == b"keep me"


# -- the web console never needs the root ------------------------------------------------------


def test_the_web_console_issues_revokes_and_unlocks_with_the_root_away(
    tmp_path: Path, broker: Broker, unique_name: str
):
    office_dir = tmp_path / "office"
    create_office(office_dir, site=unique_name).close()
    offline = tmp_path / "safe" / "root.sealed"  # the root goes back in the safe
    offline.parent.mkdir()
    shutil.move(office_dir / "root.sealed", offline)
    with running_compound(tmp_path, broker, unique_name, office_dir) as compound:
        gate = compound.start_gate("north")
        creds = broker.add_console("web")
        secret = secret_file(tmp_path, creds.password, "web.secret")
        config = ConsoleConfig.model_validate(
            {
                "name": "web",
                "store": {"path": str(tmp_path / "web" / "events.db")},
                "web": {"office": str(office_dir), "unlock_seconds": 1.0},
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": creds.username,
                    "password_file": str(secret),
                },
            }
        )
        store = EventStore(config.store.path)
        ctx = build_context(config, store, endpoint=broker.endpoint(creds))
        web = Web(ctx, store, create_app(ctx, watch=False), tmp_path)
        web.add_user("ana")
        ctx.users.grant("ana", "passes", "*")  # an operator issues passes and unlocks only when granted
        ctx.users.grant("ana", "unlock", "*")
        try:
            with web.client() as client:
                login(client, "ana")
                issued = post_form(
                    client,
                    "/passes/new",
                    {"holder": "王小明", "unit": "3-2-501", "role": "resident", "zones": "0", "days": "30"},
                    page="/passes/new",
                )
                assert issued.status_code == 303, issued.text
                revoked = post_form(
                    client, "/passes/1/revoke", {"confirm": "yes", "reason": "lost"}, page="/passes/1/revoke"
                )
                assert revoked.status_code == 303 and "unpublished" not in revoked.headers["location"]
                assert ctx.commands is not None and ctx.commands.wait_connected(10)
                unlocked = post_form(
                    client,
                    f"/gates/{unique_name}/north/unlock",
                    {"confirm": "yes"},
                    page=f"/gates/{unique_name}/north/unlock",
                )
                assert unlocked.status_code == 200, unlocked.text
        finally:
            ctx.db.close()
            store.close()
        assert wait_until(lambda: compound.unlocked("north"))
        assert compound.unlocked("north")[0]["cause"] == "remote"
        # the revocation the page published reached the gate, signed by the web's signing key
        passes = gate.decider.passes
        assert passes is not None and wait_until(lambda: passes.revocation.is_revoked(1, 0))
    assert not offline.with_name("root.key").exists() and not (office_dir / "root.key").exists()
    with Office.open(office_dir) as office, pytest.raises(OfficeError) as locked:
        office.renew_keys()  # what the web's folder cannot do: certify a key
    assert locked.value.reason is OfficeReason.ROOT_MISSING or locked.value.reason is OfficeReason.ROOT_LOCKED


def test_renewing_keys_needs_the_root_and_leaves_only_the_new_private_keys(office: Office):
    old_pass = office.issue(PassRequest("王小明", "3-2-501", Role.RESIDENT, days=30))
    office.lock_root()
    with pytest.raises(OfficeError):
        office.renew_keys()
    office.unlock_root(PASSPHRASE)
    assert office.renew_keys() == (3, 4)
    assert sorted(p.name for p in office.dir.glob("*.key")) == ["command-4.key", "signing-3.key"]
    old_command, new_command = office.bundle.command_key(2), office.bundle.command_key(4)
    assert old_command is not None and new_command is not None
    # the old command key signs nothing once the commands it may have signed have expired
    assert old_command.not_after <= datetime.now(UTC) + MAX_COMMAND_LIFETIME < new_command.not_after
    assert office.command_key()[0] == 4
    state = gate_state_from(office.public)
    assert decide(
        old_pass.text, ClockReading(datetime.now(UTC), True), state
    ).granted  # old passes still open
    assert office.issue(PassRequest("李华", "1-1-1", Role.VISITOR)).pass_.kid == 3
