"""``gatepost pass …`` end to end: init, issue, batch, revoke, show, through the argument parser."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from console.passes.batch import progress_bar
from console.passes.cli import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, EXIT_UNVERIFIED, main
from console.passes.explain import explain
from console.passes.office import gate_state_from
from protocol.passes import ClockReading, Reason, decide


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pass", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def office(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEPOST_PASSPHRASE", "correct horse battery staple")  # the root's, for init
    directory = tmp_path / "office"
    code, out, _ = run(capsys, "init", "--office", directory, "--site", "greenwood", "--site-id", "7")
    assert code == EXIT_OK
    for name in ("root.pub", "bundle", "revocations"):
        assert str(directory.resolve() / "public" / name) in out
    return directory


def issue(capsys: pytest.CaptureFixture[str], office: Path, *extra: str) -> str:
    code, out, err = run(
        capsys,
        "issue",
        "--office",
        office,
        "--holder",
        "王小明",
        "--unit",
        "3-2-501",
        "--role",
        "resident",
        *extra,
    )
    assert code == EXIT_OK, err
    return next(line.split()[1] for line in out.splitlines() if line.startswith("code "))


def test_issue_prints_cards_and_show_verifies_then_reports_revocation(
    office: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = issue(
        capsys, office, "--zones", "0,1", "--days", "30", "--window", "06:00-22:00", "--out", tmp_path
    )
    assert (tmp_path / "1.png").is_file() and (tmp_path / "1.pdf").is_file()
    code, out, _ = run(capsys, "show", "--office", office, text)
    lines = out.splitlines()
    for name in ("format", "key id", "signature", "site", "validity", "window", "revoked", "dynamic"):
        assert any(line.split()[1:2] == name.split()[:1] for line in lines), name
    assert code in (EXIT_OK, EXIT_REFUSED)  # the window depends on the hour the test runs
    assert [line for line in lines if line.startswith("FAIL")] == (
        [] if code == EXIT_OK else [line for line in lines if line.startswith("FAIL window")]
    )

    code, out, _ = run(capsys, "revoke", "--office", office, "1")
    assert code == EXIT_OK and "revocation list v2" in out
    code, out, _ = run(capsys, "show", "--office", office, text)
    assert code == EXIT_REFUSED
    assert any(line.startswith("FAIL revoked") for line in out.splitlines())
    state = gate_state_from(office / "public")
    assert decide(text, ClockReading(datetime.now(UTC), True), state).reason is Reason.REVOKED


def test_private_key_files_are_0600(office: Path) -> None:
    keys = [*office.glob("*.key"), office / "site.secret", office / "root.sealed"]
    assert {k.name for k in keys} == {"signing-1.key", "command-2.key", "site.secret", "root.sealed"}
    assert {stat.S_IMODE(k.stat().st_mode) for k in keys} == {0o600}


@pytest.mark.parametrize(
    "code_text",
    ["", "hello", "4750", "47501", "4750" + "9" * 300, "WIFI:S:x;;", "4750\x00\u202e", "4750" + "1" * 5000],
)
def test_show_explains_garbage_with_a_nonzero_exit(
    office: Path, capsys: pytest.CaptureFixture[str], code_text: str
) -> None:
    code, out, _ = run(capsys, "show", "--office", office, code_text)
    assert code == EXIT_REFUSED
    assert out.splitlines()[0].startswith("FAIL format")


def test_show_refuses_a_forged_code(office: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = issue(capsys, office)
    forged = text[:-1] + str((int(text[-1]) + 1) % 10)
    code, out, _ = run(capsys, "show", "--office", office, forged)
    assert code == EXIT_REFUSED
    assert "FAIL" in out and ("signature" in out or "format" in out)
    # Another site's office does not know the key.
    other = office.parent / "other"
    run(capsys, "init", "--office", other, "--site", "elsewhere", "--site-id", "8")
    code, out, _ = run(capsys, "show", "--office", other, text)
    assert code == EXIT_REFUSED and "FAIL signature" in out


def test_show_without_office_is_unverified(office: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = issue(capsys, office)
    code, out, _ = run(capsys, "show", text)
    assert code == EXIT_UNVERIFIED and "not checked" in out


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400) | st.from_regex(r"4750[12][0-9]{0,330}", fullmatch=True))
def test_explain_never_raises(text: str) -> None:
    result = explain(text, datetime.now(UTC), None)
    assert result.checks and result.checks[0].name == "format"


def test_issue_batch_issues_good_rows_and_names_bad_lines(
    office: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (60, 80), (120, 90, 60)).save(tmp_path / "face.png")
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "holder,unit,role,days,until,zones,window,photo\n"
        "王小明,3-2-501,resident,365,,0,,face.png\n"
        '李四,光明乳业,service_worker,30,,"0,1",06:00-09:00,\n'
        "张三,2-1-101,boss,10,,0,,\n"  # line 4: bad role
        "Ann,1-1-1,visitor,,,,,\n"
        "\n"
        "Bob,1-1-2,visitor,,2020-13-01,,,\n"  # line 7: bad date
        "Eve,1-1-3,staff,,,,25:00-26:00,\n",  # line 8: bad window
        encoding="utf-8",
    )
    out_dir = tmp_path / "cards"
    code, out, err = run(capsys, "issue-batch", "--office", office, csv_file, "--out", out_dir)
    assert code == EXIT_REFUSED
    assert "issued 3 (serials 1-3), rejected 3" in out
    rejected = [line for line in err.splitlines() if line.startswith("rejected")]
    assert rejected == [
        f"rejected {csv_file}:4 column role: bad_role: 'boss' is not one of resident, service_worker, visitor, staff",
        f"rejected {csv_file}:7 column until: bad_date: '2020-13-01' is not a date like 2026-12-31",
        f"rejected {csv_file}:8 column window: bad_window: '25:00-26:00' is not a window like 06:00-09:00",
    ]
    assert "\r[" in err and "6/6" in err
    assert sorted(p.name for p in out_dir.glob("*.png")) == ["1.png", "2.png", "3.png"]


def test_issue_batch_without_required_columns(
    office: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("name,flat\nx,y\n", encoding="utf-8")
    code, _, err = run(capsys, "issue-batch", "--office", office, csv_file)
    assert code == EXIT_REFUSED and f"{csv_file}:1 column holder: missing" in err


def test_commands_on_a_missing_office_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "revoke", "--office", tmp_path / "nowhere", "1")
    assert code == EXIT_ERROR and "not_initialised" in err


def test_progress_bar() -> None:
    assert progress_bar(37, 100, width=10) == "\r[###       ] 37/100"


def test_dynamic_pass_gets_a_phone_key_and_show_checks_the_code(
    office: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from protocol.passes import dynamic_text

    text = issue(capsys, office, "--dynamic", "--out", tmp_path)
    phone = tmp_path / "1.phone.json"
    assert stat.S_IMODE(phone.stat().st_mode) == 0o600
    key = bytes.fromhex(json.loads(phone.read_text())["key"])
    code, out, _ = run(capsys, "show", "--office", office, text)
    assert code == EXIT_REFUSED and "FAIL dynamic" in out
    code, out, _ = run(capsys, "show", "--office", office, dynamic_text(text, key, datetime.now(UTC)))
    assert code == EXIT_OK and "ok   dynamic" in out


def test_reissue_makes_a_new_generation_and_revokes_the_old_one(
    office: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = issue(capsys, office, "--dynamic", "--zones", "0,2", "--out", tmp_path)
    code, out, err = run(capsys, "reissue", "--office", office, "1", "--days", "10", "--out", tmp_path)
    assert code == EXIT_OK, err
    assert "generation 1" in out and "generations below 1 revoked" in out
    new = next(line.split()[1] for line in out.splitlines() if line.startswith("code "))
    state = gate_state_from(office / "public")
    now = ClockReading(datetime.now(UTC), True)
    assert decide(old, now, state).reason is Reason.REVOKED
    fresh = decide(new, now, state)
    # A dynamic pass without its live code is refused for that, not for being revoked:
    # the new generation passed the revocation check, and kept holder, zones and the flag.
    assert fresh.reason is Reason.BAD_DYNAMIC_CODE
    assert fresh.pass_info is not None
    assert (fresh.pass_info.generation, fresh.pass_info.holder) == (1, "王小明")
    assert fresh.pass_info.zones == frozenset({0, 2}) and fresh.pass_info.dynamic
    assert (tmp_path / "1.phone.json").stat().st_mode & 0o777 == 0o600


def test_reissue_of_an_unknown_serial_is_refused_cleanly(
    office: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "reissue", "--office", office, "99")
    assert code != EXIT_OK and "99" in err
