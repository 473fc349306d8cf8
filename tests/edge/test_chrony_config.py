"""The chrony configurations shipped for gates and the console host (docs/clock.md).

chronyd itself checks the syntax (``chronyd -p`` parses the file and prints it) where it
is installed, or where ``GATEPOST_CHRONYD`` names a binary; the directives gatepost relies
on are checked here in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHRONY = Path(__file__).resolve().parents[2] / "systemd" / "chrony"


def directives(name: str) -> list[list[str]]:
    lines = (CHRONY / name).read_text(encoding="utf-8").splitlines()
    return [
        line.split() for line in lines if line.strip() and not line.lstrip().startswith(("#", "!", ";", "%"))
    ]


def named(name: str, directive: str) -> list[list[str]]:
    return [words for words in directives(name) if words[0] == directive]


def test_a_gate_asks_only_the_console_with_nts_and_lets_gatepost_see_the_sync():
    servers = named("gate.conf", "server") + named("gate.conf", "pool")
    assert servers == [["server", "console.local", "iburst", "nts"]]
    assert named("gate.conf", "rtcsync"), "without rtcsync chronyd never clears the kernel's unsync flag"
    assert named("gate.conf", "authselectmode") == [["authselectmode", "require"]]
    assert named("gate.conf", "makestep") == [["makestep", "1", "3"]]
    assert not named("gate.conf", "allow"), "a gate serves no time"


def test_the_console_serves_the_lan_with_nts_and_keeps_serving_offline():
    assert named("console.conf", "allow")
    assert named("console.conf", "local") == [["local", "stratum", "10"]]
    assert named("console.conf", "ntsservercert") and named("console.conf", "ntsserverkey")
    assert any("nts" in words for words in named("console.conf", "server"))
    assert named("console.conf", "rtcsync")


@pytest.mark.parametrize("name", ["gate.conf", "console.conf"])
def test_chronyd_parses_the_file(name: str):
    chronyd = os.environ.get("GATEPOST_CHRONYD") or shutil.which("chronyd")
    if not chronyd:
        pytest.skip("chronyd is not installed (set GATEPOST_CHRONYD to check the syntax)")
    result = subprocess.run(
        [chronyd, "-p", "-f", str(CHRONY / name)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "rtcsync" in result.stdout
