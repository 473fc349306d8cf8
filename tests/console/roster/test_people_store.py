"""People from a CSV file, rosters in the store on both backends, and the roster commands end to end."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from console.db import Database
from console.roster.check import violations
from console.roster.model import Team
from console.roster.people import PeopleFileError, PeopleRejectReason, parse_availability, read_people
from console.roster.sample import compound_week
from console.roster.store import RosterStore

GOOD = """id,name,team,posts,available,trained,phone,languages,max_hours_week
g1,Wang Wei,guard,longtan/north;longtan/south,always,yes,13800000000,zh;en,
v1,李娜,volunteer,longtan/north,Mon-Fri 17-22; Sat 08-13,no,,zh,12
"""


def test_a_good_file_becomes_people() -> None:
    people = read_people(GOOD.encode())
    assert [p.id for p in people] == ["g1", "v1"]
    guard, volunteer = people
    assert guard.team is Team.GUARD and guard.trained and len(guard.available) == 168
    assert guard.posts == {"longtan/north", "longtan/south"} and guard.languages == ("zh", "en")
    assert volunteer.name == "李娜" and not volunteer.trained and volunteer.max_hours_week == 12
    assert len(volunteer.available) == 5 * 5 + 5
    assert 17 in volunteer.available and 5 * 24 + 8 in volunteer.available and 22 not in volunteer.available


def test_every_mistake_is_named_by_line_and_column() -> None:
    bad = GOOD + "v1,Dup,volunteer,longtan/north,,no,,,\nx y,Z,boss,,Mon 22-08,maybe,,,900\n"
    with pytest.raises(PeopleFileError) as raised:
        read_people(bad.encode())
    found = {(e.line, e.column, e.reason) for e in raised.value.errors}
    assert (4, "id", PeopleRejectReason.DUPLICATE_ID) in found
    assert {
        (5, "id", PeopleRejectReason.BAD_ID),
        (5, "team", PeopleRejectReason.BAD_TEAM),
        (5, "posts", PeopleRejectReason.NO_POSTS),
        (5, "available", PeopleRejectReason.BAD_AVAILABILITY),
        (5, "trained", PeopleRejectReason.BAD_FLAG),
        (5, "max_hours_week", PeopleRejectReason.BAD_NUMBER),
    } <= found


@pytest.mark.parametrize("data", [b"\xff\xfe not utf-8", b"name,team\nA,guard\n"])
def test_files_that_are_not_people_lists_are_refused(data: bytes) -> None:
    with pytest.raises(PeopleFileError):
        read_people(data)


@pytest.mark.parametrize(
    ("text", "count"), [("always", 168), ("* 06-22", 7 * 16), ("sat-sun 08-12", 8), ("mon,wed 00-24", 48)]
)
def test_availability(text: str, count: int) -> None:
    assert len(parse_availability(text)) == count


@pytest.mark.parametrize("text", ["Fri-Mon 08-12", "Mon 08", "Mon 20-08", "Someday 08-12"])
def test_bad_availability(text: str) -> None:
    with pytest.raises(ValueError):
        parse_availability(text)


def test_people_and_a_week_round_trip(db_url: str | Path) -> None:
    from console.roster import greedy

    problem = compound_week(people=40)
    with Database(db_url) as db:
        store = RosterStore(db)
        assert store.put_people(problem.people) == 40
        assert store.put_people(problem.people[:1]) == 1  # an update, not a second row
        assert sorted(store.people(), key=lambda p: p.id) == sorted(problem.people, key=lambda p: p.id)
        roster = greedy.roster(problem)
        week = date(2026, 12, 7)
        store.replace_week(week, roster, status="draft", made_by="test", summary={"x": 1})
        assert store.week_assignment(week) == roster
        assert violations(problem, store.week_assignment(week)) == []
        assert store.week_summary(week) == ("draft", {"x": 1})
        store.replace_week(week, {}, status="draft", made_by="test", summary={})
        assert store.week_shifts(week) == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_roster_commands_end_to_end(tmp_path: Path) -> None:
    """People in from CSV, a draft solved from the (empty) flow, and the week printed."""
    db = tmp_path / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = 1\n[store]\npath = "{db}"\n')
    people = tmp_path / "people.csv"
    rows = ["id,name,team,posts,available,trained"]
    rows += [f"g{n},Guard {n},guard,longtan/north,always,yes" for n in range(5)]
    people.write_text("\n".join(rows) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gatepost", "console", "roster", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=90,
        )

    done = run("import-people", str(people))
    assert done.returncode == 0, done.stderr
    assert "5 people imported" in done.stdout
    done = run("draft", "--week", "2026-12-09", "--seconds", "5")
    assert done.returncode == 0, done.stderr
    assert "week of 2026-12-07" in done.stdout
    assert "the advice met at every post and hour" in done.stdout  # 5 guards cover one post at baseline
    shown = run("show", "--week", "2026-12-07")
    assert shown.returncode == 0, shown.stderr
    assert "longtan/north" in shown.stdout and "Guard" in shown.stdout

    people.write_text("id,name,team,posts\nbad id,X,guard,\n")
    refused = run("import-people", str(people))
    assert refused.returncode == 1
    assert "line 2, column id" in refused.stderr and "line 2, column posts" in refused.stderr
