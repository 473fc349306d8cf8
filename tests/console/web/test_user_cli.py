"""``gatepost console user add|passwd|list`` and the web console started by ``console run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from console.db import Database
from console.users import LoginOutcome, Permission, UserStore
from gatepost.cli import main
from tests.console.web.web_support import PASSWORD, free_port

ROOT = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, port: int, mqtt_port: int = 9) -> Path:
    path = tmp_path / "console.toml"
    path.write_text(
        f'[mqtt]\nport = {mqtt_port}\n[store]\npath = "events.db"\n[web]\nlisten = "127.0.0.1:{port}"\n'
    )
    return path


def test_users_are_added_listed_and_their_passwords_changed(tmp_path: Path, capsys):
    config = _config(tmp_path, free_port())
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    assert (
        main(
            [
                "console",
                "user",
                "add",
                "root",
                "--role",
                "admin",
                "--config",
                str(config),
                "--password-file",
                str(secret),
            ]
        )
        == 0
    )
    assert (
        main(["console", "user", "add", "root", "--config", str(config), "--password-file", str(secret)]) == 2
    )
    assert "already exists" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("abc")
    assert (
        main(["console", "user", "add", "ana", "--config", str(config), "--password-file", str(short)]) == 2
    )
    assert "at least 10" in capsys.readouterr().err
    assert main(["console", "user", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("root\tadmin\tactive")
    secret.write_text("a brand new password")
    assert (
        main(["console", "user", "passwd", "root", "--config", str(config), "--password-file", str(secret)])
        == 0
    )
    with Database(tmp_path / "events.db") as db:
        users = UserStore(db)
        assert users.login("root", PASSWORD).outcome is LoginOutcome.BAD_CREDENTIALS
        assert users.login("root", "a brand new password").outcome is LoginOutcome.OK


def test_console_run_serves_the_web_console_and_says_when_no_user_exists(tmp_path: Path):
    port = free_port()
    config = _config(tmp_path, port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gatepost", "console", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("no web console user" in line for line in lines):
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
        assert any(f"web console on http://127.0.0.1:{port}/" in line for line in lines), lines
        assert any("gatepost console user add NAME --role admin" in line for line in lines), lines
        response = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert response.status_code == 200 and "csrf_token" in response.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_operators_are_limited_to_sites_and_granted_permissions_from_the_command_line(tmp_path: Path, capsys):
    config = _config(tmp_path, free_port())
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    base = ["--config", str(config)]
    assert (
        main(["console", "user", "add", "ana", "--sites", "longtan", *base, "--password-file", str(secret)])
        == 0
    )
    assert main(["console", "user", "grant", "ana", "unlock", "longtan/north", *base]) == 0
    assert main(["console", "user", "grant", "ana", "passes", "longtan", *base]) == 0
    assert (
        main(["console", "user", "grant", "ana", "passes", "longtan/north", *base]) == 2
    )  # passes: per site
    assert "scope of passes" in capsys.readouterr().err
    assert main(["console", "user", "grant", "nobody", "unlock", "*", *base]) == 2
    assert main(["console", "user", "sites", "ana", "longtan,tuanjiehu", *base]) == 0
    assert main(["console", "user", "sites", "ana", "Not A Site", *base]) == 2
    capsys.readouterr()
    assert main(["console", "user", "list", *base]) == 0
    listed = capsys.readouterr().out
    assert "sites=longtan,tuanjiehu" in listed and "grants=passes:longtan,unlock:longtan/north" in listed
    assert main(["console", "user", "revoke", "ana", "unlock", "longtan/north", *base]) == 0
    with Database(tmp_path / "events.db") as db:
        ana = UserStore(db).get("ana")
        assert ana is not None and ana.sites == frozenset({"longtan", "tuanjiehu"})
        assert not ana.may(Permission.UNLOCK, "longtan", "north") and ana.may(Permission.PASSES, "longtan")
        actions = [row[0] for row in db.query("SELECT action FROM audit_log ORDER BY row_id")]
    assert actions == ["user.add", "user.grant", "user.grant", "user.sites", "user.revoke"]
