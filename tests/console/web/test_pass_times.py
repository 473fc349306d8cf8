"""A pass's page gives its times on the site's clock, as the header says and the printed card shows."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.passes.office import Office, PassRequest
from protocol.passes import Role
from tests.console.web.pages_support import web_console
from tests.offices import create_office


@pytest.mark.timeout(60)
def test_validity_and_issue_time_are_site_local(tmp_path: Path) -> None:
    create_office(tmp_path / "office").close()
    with Office.open(tmp_path / "office") as office:
        issued = office.issue(PassRequest(holder="Li Wei", unit="3-2-401", role=Role.RESIDENT, days=30))
        serial = issued.pass_.serial
        issued_at = datetime.fromisoformat(office.search(str(serial), 1, serial_only=True)[0].issued_at)
    with web_console(tmp_path, office=tmp_path / "office", flow={"timezone": "Asia/Shanghai"}) as console:
        page = console.client("operator").get(f"/passes/{serial}").text
    assert "Times in Asia/Shanghai" in page or "Asia/Shanghai" in page
    zone = ZoneInfo("Asia/Shanghai")
    valid_from = issued.pass_.valid_from.astimezone(zone)
    assert f">{issued_at.astimezone(zone):%Y-%m-%d %H:%M:%S}</dd>" in page
    assert f">{valid_from:%Y-%m-%d %H:%M:%S}</dd>" in page
    assert f">{valid_from + timedelta(days=30):%Y-%m-%d %H:%M:%S}</dd>" in page
    assert " UTC</dd>" not in page
