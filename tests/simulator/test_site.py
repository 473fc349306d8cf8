"""The simulated site knows when its console is listening, from the console's own retained status."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.site import SimulatedSite

pytestmark = pytest.mark.timeout(60)


def test_waits_for_the_console_to_come_online_and_says_when_it_cannot(tmp_path: Path) -> None:
    site = SimulatedSite(tmp_path / "site", gates=["g1"], residents=2, pace=False, log_level="WARNING")
    try:
        with pytest.raises(RuntimeError):
            site.wait_console_online(timeout=1)  # no console configured yet
        console = site.start_console()
        assert site.wait_console_online(timeout=30)
        console.stop()  # its last will / clean stop turns the retained status to "stopped"
        assert not site.wait_console_online(timeout=1)
    finally:
        site.stop()
