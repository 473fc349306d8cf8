"""``Office.search``: serial exact, holder and unit substring, over the register, newest first."""

from __future__ import annotations

from pathlib import Path

from console.passes.office import Office, PassRequest
from protocol.passes import Role
from tests.offices import create_office


def _office(tmp_path: Path) -> Office:
    directory = tmp_path / "office"
    create_office(directory, site="longtan", site_id=7).close()
    office = Office.open(directory)
    for holder, unit in (("Li Wei", "3-2-401"), ("王小明", "3-2-501"), ("Zhang_Li", "12-1-101")):
        office.issue(PassRequest(holder=holder, unit=unit, role=Role.RESIDENT, days=30))
    return office


def test_serial_exact_holder_and_unit_substring(tmp_path: Path) -> None:
    with _office(tmp_path) as office:
        # a number is serial 2 or a unit containing a 2 (every unit here); serial_only keeps the serial
        assert [r.serial for r in office.search("2", 10)] == [3, 2, 1]
        assert [r.serial for r in office.search("2", 10, serial_only=True)] == [2]
        assert office.search("9", 10) == []
        assert [r.holder for r in office.search("li", 10)] == ["Zhang_Li", "Li Wei"]  # newest first
        assert [r.holder for r in office.search("小明", 10)] == ["王小明"]
        assert [r.unit for r in office.search("3-2-", 10)] == ["3-2-501", "3-2-401"]
        assert [r.serial for r in office.search("12", 10)] == [3]  # a unit containing 12
        assert office.search("nobody", 10) == []
        assert [r.serial for r in office.search("", 10)] == [3, 2, 1]
        assert [r.serial for r in office.search("", 2)] == [3, 2]


def test_wildcards_are_literal(tmp_path: Path) -> None:
    with _office(tmp_path) as office:
        assert [r.holder for r in office.search("_", 10)] == ["Zhang_Li"]
        assert office.search("%", 10) == []


def test_serial_only_and_revocation(tmp_path: Path) -> None:
    with _office(tmp_path) as office:
        assert office.search("3", 10, serial_only=True)[0].holder == "Zhang_Li"
        assert office.search("Li", 10, serial_only=True) == []
        assert not any(r.revoked for r in office.search("", 10))
        office.revoke(1)
        (record,) = office.search("1", 10, serial_only=True)
        assert record.revoked and record.revoked_at is not None
