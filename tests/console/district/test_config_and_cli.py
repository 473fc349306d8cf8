"""``[district]`` errors name file, line and key; ``district-token`` makes, lists and revokes tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from console.district.tokens import TokenStore
from console.store import EventStore

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(90)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "console.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_district_errors_name_the_line_and_key(tmp_path: Path):
    path = write(
        tmp_path,
        """
        [store]
        path = "events.db"

        [district]
        name = "Longtan 3"
        select = ["access", "everything"]

        [district.privacy]
        drop = ["holder name"]

        [district.mqtt]
        host = "district.example"
        password_file = "district.secret"
        topic_prefix = "bad prefix/#"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(issue.line, issue.key) for issue in caught.value.issues}
    assert found == {
        (5, "district.name"),
        (6, "district.select.1"),
        (9, "district.privacy.drop.0"),
        (13, "district.mqtt.password_file"),  # a password in clear to another host
        (14, "district.mqtt.topic_prefix"),
    }


def test_a_valid_section_resolves_its_files(tmp_path: Path):
    path = write(
        tmp_path,
        """
        [district]
        name = "longtan-3"
        select = ["alarms", "flow"]
        [district.privacy.sites.north]
        drop = []
        [district.mqtt]
        host = "district.example"
        port = 8883
        tls_ca = "ca.crt"
        """,
    )
    config = load_config(path)
    assert config.district is not None and config.district.mqtt is not None
    assert config.district.mqtt.tls_ca == tmp_path / "ca.crt"
    assert config.district.privacy.dropped("north") == frozenset()
    assert config.district.privacy.dropped("south") == frozenset({"holder"})


def gatepost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatepost", "console", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_district_token_create_list_revoke(tmp_path: Path):
    config = write(tmp_path, f'[store]\npath = "{tmp_path / "events.db"}"\n')
    made = gatepost("district-token", "create", "district platform", "--sites", "north", "-c", str(config))
    assert made.returncode == 0, made.stderr
    plain = made.stdout.strip()
    assert plain.startswith("gpd_") and len(made.stdout.splitlines()) == 1
    token_id = plain.split("_")[1]
    listed = gatepost("district-token", "list", "-c", str(config))
    assert token_id in listed.stdout and "sites=north" in listed.stdout and plain not in listed.stdout
    with EventStore(tmp_path / "events.db") as store:
        assert TokenStore(store.db).authenticate(plain) is not None
        actions = [row[0] for row in store.db.query("SELECT action FROM audit_log")]
    assert "district.token_create" in actions
    assert gatepost("district-token", "revoke", token_id, "-c", str(config)).returncode == 0
    again = gatepost("district-token", "revoke", token_id, "-c", str(config))
    assert again.returncode == 1 and "no active token" in again.stderr
    with EventStore(tmp_path / "events.db") as store:
        assert TokenStore(store.db).authenticate(plain) is None
    bad = gatepost("district-token", "create", "x", "--sites", "No Such!", "-c", str(config))
    assert bad.returncode == 1 and "sites" in bad.stderr and "Traceback" not in bad.stderr
