"""The launcher: start, stop, kill, restart, reload, and a child that never outlives its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from broker.errors import BrokerError
from broker.launcher import Broker, free_port
from broker.probe import ConnackCode, try_login
from protocol.topics import GateTopics, TopicKind, all_sites_filter
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_start_answers_mqtt_and_stop_ends_the_process(tmp_path):
    broker = Broker(tmp_path / "b")
    assert not broker.running and broker.pid is None
    broker.start()
    pid = broker.pid
    assert pid is not None and pid_alive(pid)
    assert try_login(broker.host, broker.port) is ConnackCode.NOT_AUTHORIZED
    assert broker.config_path.exists() and broker.log_path.exists()
    broker.stop()
    assert not broker.running and broker.pid is None
    assert not pid_alive(pid)
    with pytest.raises(OSError):
        try_login(broker.host, broker.port, timeout=0.5)
    assert broker.db_path.exists(), "SIGTERM lets mosquitto write its persistence file"


def test_context_manager_and_repr(tmp_path):
    with Broker(tmp_path / "b") as broker:
        assert broker.running
        assert str(broker.port) in repr(broker)
        pid = broker.pid
    assert not broker.running
    assert pid is not None and not pid_alive(pid)


def test_start_twice_is_an_error(broker):
    with pytest.raises(BrokerError):
        broker.start()


def test_restart_keeps_port_and_kill_then_restart_works(broker):
    port, first = broker.port, broker.pid
    broker.restart()
    assert broker.port == port and broker.pid != first
    second = broker.pid
    broker.kill()
    assert not broker.running and second is not None and not pid_alive(second)
    broker.restart()
    assert broker.running and broker.port == port
    assert try_login(broker.host, port) is ConnackCode.NOT_AUTHORIZED


def test_taken_fixed_port_raises_with_the_log_tail(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = Broker(tmp_path / "b", port=port)
        with pytest.raises(BrokerError) as caught:
            broker.start()
    assert "Address already in use" in str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert not broker.running


def test_automatic_port_moves_on_when_taken(tmp_path):
    broker = Broker(tmp_path / "b")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", broker.port))  # someone grabbed the port between free_port() and start()
        holder.listen()
        taken = broker.port
        broker.start()
        try:
            assert broker.port != taken
            assert try_login(broker.host, broker.port) is ConnackCode.NOT_AUTHORIZED
        finally:
            broker.stop()


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_add_gate_while_running_takes_effect_without_restart(broker, unique_name, mqtt_client_factory):
    pid = broker.pid
    console = mqtt_client_factory(broker.add_console())
    console.subscribe(all_sites_filter(TopicKind.EVENT))
    creds = broker.add_gate(unique_name, "late")  # returns only once the login works
    assert broker.pid == pid, "no restart"
    assert try_login(broker.host, broker.port, creds.username, creds.password) is ConnackCode.ACCEPTED
    gate = mqtt_client_factory(creds)
    assert not gate.publish(GateTopics(unique_name, "late").event, b"hello").is_failure
    message = console.get()
    assert message is not None and message.payload == b"hello", "the new ACL is live too"


def test_removed_user_can_no_longer_log_in(broker, unique_name):
    creds = broker.add_gate(unique_name, "g1")
    broker.remove(creds.username)
    assert try_login(broker.host, broker.port, creds.username, creds.password) is not ConnackCode.ACCEPTED


def test_queued_message_survives_stop_and_restart(broker, unique_name, mqtt_client_factory):
    console_creds = broker.add_console()
    gate_creds = broker.add_gate(unique_name, "g1")
    console = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    assert not console.subscribe(all_sites_filter(TopicKind.EVENT)).is_failure
    console.close()

    gate = mqtt_client_factory(gate_creds)
    event = GateTopics(unique_name, "g1").event
    assert not gate.publish(event, b"while the console is away").is_failure
    gate.close()

    broker.stop()
    broker.restart()

    back = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    assert back.session_present, "the session itself was persisted"
    message = back.get()
    assert message is not None and (message.topic, message.payload) == (event, b"while the console is away")


def test_queue_survives_kill_after_autosave(broker, unique_name, mqtt_client_factory):
    """SIGKILL is a power cut: what the last autosave wrote is what comes back."""
    broker.autosave_interval = 1
    broker.restart()
    console_creds, gate_creds = broker.add_console(), broker.add_gate(unique_name, "g1")
    console = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    console.subscribe(all_sites_filter(TopicKind.EVENT))
    console.close()
    gate = mqtt_client_factory(gate_creds)
    assert not gate.publish(GateTopics(unique_name, "g1").event, b"saved").is_failure
    gate.close()
    # Only an autosave that starts after the PUBACK (the message is queued by then) counts,
    # and mosquitto logs "Saving" before it writes: the second such line after the PUBACK
    # says the first save has finished (a kill in the middle keeps the file before it).
    offset = broker.log_path.stat().st_size

    saved = lambda: broker.log_path.read_bytes()[offset:].count(b"Saving in-memory database") >= 2  # noqa: E731
    assert wait_until(saved, timeout=8), "no finished autosave within the configured interval"
    broker.kill()
    broker.restart()

    back = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    message = back.get()
    assert message is not None and message.payload == b"saved"


def test_burst_beyond_mosquitto_default_queue_is_kept(broker, unique_name, mqtt_client_factory):
    """mosquitto's default max_queued_messages (1000) silently drops the rest; ours holds an outage."""
    console_creds = broker.add_console()
    gate_creds = broker.add_gate(unique_name, "g1")
    console = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    console.subscribe(all_sites_filter(TopicKind.EVENT))
    console.close()

    gate = mqtt_client_factory(gate_creds)
    topic = GateTopics(unique_name, "g1").event
    count = 2500
    infos = [gate.client.publish(topic, str(i).encode(), qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(timeout=10)

    back = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    received = back.collect(count, timeout=15)
    assert len(received) == count
    assert sorted(int(m.payload) for m in received) == list(range(count))


def test_small_queue_override_drops_the_excess(broker, unique_name, mqtt_client_factory):
    """Counter-check of the test above: with a queue of 10, most of a burst is lost, silently."""
    broker.max_queued_messages = 10
    broker.restart()
    console_creds, gate_creds = broker.add_console(), broker.add_gate(unique_name, "g1")
    console = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    console.subscribe(all_sites_filter(TopicKind.EVENT))
    console.close()
    gate = mqtt_client_factory(gate_creds)
    topic = GateTopics(unique_name, "g1").event
    count = 400
    acks = [gate.publish(topic, str(i).encode()) for i in range(count)]
    assert not any(reason.is_failure for reason in acks), "the publisher is told nothing"

    back = mqtt_client_factory(console_creds, clean_start=False, session_expiry_s=3600)
    received = back.collect(count, quiet=0.3)
    assert 10 <= len(received) < count


def test_child_dies_with_its_parent(tmp_path):
    """Even a SIGKILLed parent leaves no mosquitto behind (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from broker.launcher import Broker
        broker = Broker({str(tmp_path / "b")!r})
        broker.start()
        print(broker.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        assert wait_until(lambda: not pid_alive(child)), f"mosquitto {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_interpreter_exit_stops_a_forgotten_broker(tmp_path):
    """A script that never calls stop() still leaves nothing running (finalizer at exit)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from broker.launcher import Broker
        broker = Broker({str(tmp_path / "b")!r})
        broker.start()
        print(broker.pid, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=True
    )
    child = int(done.stdout.strip())
    assert wait_until(lambda: not pid_alive(child))
