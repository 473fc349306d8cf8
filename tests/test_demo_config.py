"""What ``gatepost demo`` writes into the console's configuration before anything runs (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.config import load_config
from gatepost.demo import _configure_flow
from simulator.site import SimulatedSite


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/Argentina/Buenos_Aires", "Asia/Shanghai"])
def test_the_console_draws_the_flow_in_the_demos_time_zone(tmp_path: Path, timezone: str):
    site = SimulatedSite(tmp_path, gates=["north"])
    _configure_flow(site, "UTC")  # written twice, as a demo run again with --state does
    _configure_flow(site, timezone)
    config = load_config(site.console_config())
    assert config.flow.timezone == timezone
    assert config.store.path == site.console_db  # the site's own sections are left as they were
    assert site.console_config().read_text().count("[flow]") == 1
