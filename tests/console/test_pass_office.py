"""The site office: keys on disk, serials, the register, and what a gate decides from the public files."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from console.passes.office import (
    Office,
    OfficeError,
    OfficeReason,
    PassRequest,
    RequestError,
    RequestReason,
    gate_state_from,
    parse_window,
)
from protocol.passes import ClockReading, Reason, Role, decide
from tests.offices import create_office

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def at(when: datetime) -> ClockReading:
    return ClockReading(when, True)


@pytest.fixture
def office(tmp_path: Path) -> Office:
    o = create_office(tmp_path / "office", site="greenwood", site_id=7, now=NOW)
    yield o
    o.close()


def resident(**kw: object) -> PassRequest:
    fields: dict[str, object] = {"holder": "王小明", "unit": "3-2-501", "role": Role.RESIDENT, "days": 30}
    fields.update(kw)
    return PassRequest(**fields)  # type: ignore[arg-type]


def test_private_files_are_0600_and_the_folder_0700(office: Office) -> None:
    assert stat.S_IMODE(office.dir.stat().st_mode) == 0o700
    keys = [office.dir / "site.secret", *office.dir.glob("signing-*.key"), *office.dir.glob("command-*.key")]
    assert len(keys) == 3
    assert not (office.dir / "root.key").exists()  # the root is only ever written sealed
    for path in [*keys, office.dir / "root.sealed"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for name in ("root.pub", "bundle", "revocations"):
        assert (office.public / name).is_file()
    public_text = b"".join((office.public / n).read_bytes() for n in ("root.pub", "bundle", "revocations"))
    for path in keys:
        assert path.read_text().split()[1].encode() not in public_text


def test_init_refuses_an_existing_office(office: Office) -> None:
    with pytest.raises(OfficeError) as err:
        create_office(office.dir, site="greenwood", site_id=7, now=NOW)
    assert err.value.reason is OfficeReason.ALREADY_INITIALISED


def test_open_refuses_a_folder_others_can_read(office: Office) -> None:
    os.chmod(office.dir, 0o755)
    with pytest.raises(OfficeError) as err:
        Office.open(office.dir)
    assert err.value.reason is OfficeReason.INSECURE_PERMISSIONS


def test_open_refuses_a_folder_that_is_no_office(tmp_path: Path) -> None:
    with pytest.raises(OfficeError) as err:
        Office.open(tmp_path)
    assert err.value.reason is OfficeReason.NOT_INITIALISED


def test_serials_grow_and_the_gate_grants_then_denies_after_revocation(office: Office) -> None:
    first = office.issue(resident(), now=NOW)
    second = office.issue(resident(holder="李四"), now=NOW)
    assert (first.pass_.serial, second.pass_.serial) == (1, 2)
    state = gate_state_from(office.public, policy=None)
    assert decide(first.text, at(NOW + timedelta(minutes=1)), state).reason is Reason.GRANTED

    revocations = office.revoke(1, now=NOW + timedelta(minutes=2))
    assert revocations.serials == (1,)
    state = gate_state_from(office.public)
    assert decide(first.text, at(NOW + timedelta(minutes=3)), state).reason is Reason.REVOKED
    assert decide(second.text, at(NOW + timedelta(minutes=3)), state).reason is Reason.GRANTED


def test_revoking_an_unknown_serial_is_refused(office: Office) -> None:
    with pytest.raises(OfficeError) as err:
        office.revoke(99, now=NOW)
    assert err.value.reason is OfficeReason.UNKNOWN_SERIAL


def test_rotation_keeps_old_passes_and_retirement_ends_them(office: Office) -> None:
    old = office.issue(resident(), now=NOW)
    kid = office.rotate_key(now=NOW + timedelta(minutes=1))
    new = office.issue(resident(), now=NOW + timedelta(minutes=2))
    assert new.pass_.kid == kid != old.pass_.kid
    state = gate_state_from(office.public)
    assert decide(old.text, at(NOW + timedelta(days=29)), state).granted
    office.retire_key(old.pass_.kid, now=NOW + timedelta(minutes=3))
    state = gate_state_from(office.public)
    assert decide(old.text, at(NOW + timedelta(minutes=4)), state).reason is Reason.UNKNOWN_KEY
    assert decide(new.text, at(NOW + timedelta(minutes=4)), state).granted


def test_retiring_the_only_key_adds_a_new_one(office: Office) -> None:
    kid = office.bundle.keys[0].kid
    added = office.retire_key(kid, now=NOW)
    assert added is not None and added != kid
    assert office.issue(resident(), now=NOW + timedelta(minutes=1)).pass_.kid == added


def test_until_is_the_end_of_that_local_day_and_windows_are_site_local(office: Office) -> None:
    until = (NOW + timedelta(days=3)).astimezone(office.timezone).date()
    issued = office.issue(resident(days=None, until=until, daily_window=parse_window("06:00-09:00")), now=NOW)
    end = issued.pass_.valid_until.astimezone(office.timezone)
    assert (end.date(), end.hour, end.minute) == (until + timedelta(days=1), 0, 0)
    state = gate_state_from(office.public)
    day = (NOW + timedelta(days=1)).astimezone(office.timezone).replace(hour=7, minute=0)
    assert decide(issued.text, at(day), state).granted
    assert decide(issued.text, at(day.replace(hour=10)), state).reason is Reason.OUTSIDE_TIME_WINDOW


def test_a_bad_photo_or_long_name_spends_no_serial(office: Office, tmp_path: Path) -> None:
    junk = tmp_path / "face.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(RequestError) as err:
        office.issue(resident(photo=junk), now=NOW)
    assert (err.value.reason, err.value.field) == (RequestReason.BAD_PHOTO, "photo")
    with pytest.raises(RequestError) as err:
        office.issue(resident(holder="名" * 30), now=NOW)
    assert (err.value.reason, err.value.field) == (RequestReason.BAD_FIELD, "holder")
    photo = tmp_path / "ok.png"
    Image.new("RGB", (40, 50), (200, 150, 100)).save(photo)
    issued = office.issue(resident(photo=photo), now=NOW)
    assert issued.pass_.serial == 1
    assert issued.photo is not None and issued.photo.read_bytes() == photo.read_bytes()


def test_a_pass_may_not_outlive_its_signing_key(tmp_path: Path) -> None:
    office = create_office(
        tmp_path / "o", site="greenwood", site_id=7, now=NOW, key_lifetime=timedelta(days=10)
    )
    with pytest.raises(OfficeError) as err:
        office.issue(resident(days=30), now=NOW)
    assert err.value.reason is OfficeReason.OUTLIVES_KEY
    office.close()


def test_before_generation_revokes_older_copies_only(office: Office) -> None:
    issued = office.issue(resident(), now=NOW)
    revocations = office.revoke(issued.pass_.serial, before_generation=1, now=NOW)
    assert revocations.before_generation == ((1, 1),) and revocations.serials == ()
    revocations = office.revoke(issued.pass_.serial, now=NOW)
    assert revocations.serials == (1,) and revocations.version == 3
