"""``gatepost broker …`` as an operator types it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from broker.cli import add_parser
from broker.launcher import free_port
from broker.probe import ConnackCode, try_login
from broker.provision import Provisioning

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gatepost")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["broker", *argv])
    return args.func(args)


def test_init_writes_config_passwd_and_acl(tmp_path, capsys):
    state, data = tmp_path / "etc", tmp_path / "var"
    assert run("init", "--state", str(state), "--data", str(data), "--port", "18831", "--gates", "4") == 0
    conf = (state / "mosquitto.conf").read_text()
    assert "listener 18831 0.0.0.0\n" in conf
    assert f"persistence_location {data.absolute()}\n" in conf
    assert "max_queued_messages 57600\n" in conf  # 4 gates x 2/s x 3600 s x 2
    assert (state / "passwd").exists() and (state / "acl").exists() and data.is_dir()
    assert "57600 messages" in capsys.readouterr().out


def test_add_gate_prints_where_the_secret_is_not_the_secret(tmp_path, capsys):
    assert run("add-gate", "--state", str(tmp_path), "--site", "longtan", "--gate", "north") == 0
    out = capsys.readouterr().out
    secret = Provisioning(tmp_path).secret_path("gate.longtan.north")
    password = secret.read_text()
    assert "gate.longtan.north" in out and str(secret) in out
    assert password not in out

    assert (
        run("add-gate", "--state", str(tmp_path), "--site", "longtan", "--gate", "north", "--show-password")
        == 0
    )
    out = capsys.readouterr().out
    assert "new password for gate.longtan.north" in out
    assert secret.read_text() in out


def test_users_add_console_and_remove(tmp_path, capsys):
    run("add-gate", "--state", str(tmp_path), "--site", "s", "--gate", "g")
    run("add-console", "--state", str(tmp_path), "--name", "main")
    capsys.readouterr()
    assert run("users", "--state", str(tmp_path)) == 0
    assert capsys.readouterr().out.split() == ["console.main", "gate.s.g"]
    assert run("remove", "--state", str(tmp_path), "gate.s.g") == 0
    capsys.readouterr()
    run("users", "--state", str(tmp_path))
    assert capsys.readouterr().out.split() == ["console.main"]


@pytest.mark.parametrize(
    "argv",
    [
        ("add-gate", "--site", "Bad Site", "--gate", "g"),
        ("add-console", "--name", "a/b"),
        ("remove", "gate.s.nobody"),
    ],
)
def test_bad_input_is_a_message_and_status_2(tmp_path, capsys, argv):
    assert run(argv[0], "--state", str(tmp_path), *argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gatepost broker: ") and "Traceback" not in err


def test_run_in_foreground_until_sigint(tmp_path):
    port = free_port()
    script = textwrap.dedent(
        f"""
        import argparse, sys
        sys.path.insert(0, {str(ROOT)!r})
        from broker.cli import add_parser
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(sys.argv[1:])
        try:
            sys.exit(args.func(args))
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "broker", "run", "--state", str(tmp_path / "b"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
        child = int(line.split("pid ")[1].split(",")[0])
        assert try_login("127.0.0.1", port) is ConnackCode.NOT_AUTHORIZED
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        assert (tmp_path / "b" / "mosquitto.db").exists(), "stopped cleanly: persistence written"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
