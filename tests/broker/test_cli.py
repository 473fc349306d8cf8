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
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gatepost")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["broker", *argv])
    return args.func(args)


def test_init_writes_config_and_the_plugin_file(tmp_path, capsys):
    state, data = tmp_path / "etc", tmp_path / "var"
    assert run("init", "--state", str(state), "--data", str(data), "--port", "18831", "--gates", "4") == 0
    conf = (state / "mosquitto.conf").read_text()
    assert "listener 18831 0.0.0.0\n" in conf
    assert f"persistence_location {data.absolute()}\n" in conf
    assert "max_queued_messages 57600\n" in conf  # 4 gates x 2/s x 3600 s x 2
    assert f"plugin_opt_config_file {data.absolute()}/dynamic-security.json\n" in conf
    # The plugin rewrites its file after each change, so it lives where the broker may write.
    assert (data / "dynamic-security.json").exists() and (state / "admin.secret").exists()
    assert not (state / "dynamic-security.json").exists()
    assert "57600 messages" in capsys.readouterr().out

    assert run("add-gate", "--state", str(state), "--site", "s", "--gate", "g") == 0
    assert '"gate.s.g"' in (data / "dynamic-security.json").read_text(), "written where the broker reads"
    out = capsys.readouterr().out
    assert "no broker answers at 127.0.0.1:18831" in out and "when it next starts" in out
    assert run("sync", "--state", str(state)) == 0
    assert str(data / "dynamic-security.json") in capsys.readouterr().out


def test_changes_reach_a_running_broker_and_say_so(tmp_path, capsys, mqtt_client_factory, broker):
    """``add-gate``/``remove`` against the state folder of a running broker apply at once."""
    from broker.provision import Credentials

    state = str(broker.state_dir)
    assert run("add-gate", "--state", state, "--site", "s", "--gate", "north") == 0
    out = capsys.readouterr().out
    assert f"applied to the running broker at 127.0.0.1:{broker.port}" in out
    creds = Credentials(
        "gate.s.north", Provisioning(broker.state_dir).secret_path("gate.s.north").read_text()
    )
    assert try_login(broker.host, broker.port, creds.username, creds.password) is ConnackCode.ACCEPTED

    gate = mqtt_client_factory(creds)
    assert run("remove", "--state", state, "gate.s.north") == 0
    assert "applied to the running broker" in capsys.readouterr().out
    assert wait_until(lambda: gate.disconnects >= 1), "a removed gate is disconnected"
    assert try_login(broker.host, broker.port, creds.username, creds.password) is ConnackCode.NOT_AUTHORIZED


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
