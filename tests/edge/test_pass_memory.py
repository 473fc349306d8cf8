"""Replay and passback survive an agent restart; anti-passback follows the reader's direction."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.agent import GateAgent, Presented
from edge.config import EdgeConfig
from protocol.passes import Pass, Role, make_revocation_list, new_bundle, rotate, seal_bundle
from protocol.passes import seal_revocation_list as seal_rl
from protocol.passes.codec import issue
from protocol.passes.dynamic import dynamic_text, pass_key
from protocol.passes.keys import (
    generate_signing_key,
    generate_site_secret,
    save_public_key,
    save_site_secret,
)

SITE = "memsite"
NOW = datetime.now(UTC)


def _office(folder: Path) -> tuple[str, str, bytes]:
    """A static and a dynamic pass, and the site secret, with the gate's public files in ``folder``."""
    root, signer = generate_signing_key(), generate_signing_key()
    bundle = new_bundle(site=SITE, site_id=5, timezone="Asia/Shanghai", now=NOW - timedelta(days=1))
    bundle, kid = rotate(bundle, signer, now=NOW - timedelta(days=1), lifetime=timedelta(days=30),
                         grace=timedelta(days=1))  # fmt: skip
    save_public_key(folder / "root.pub", root.verify_key)
    (folder / "bundle").write_bytes(seal_bundle(bundle, root))
    rl = make_revocation_list(site=SITE, version=1, issued_at=NOW, serials=[], before_generation={})
    (folder / "revocations").write_bytes(seal_rl(rl, signer, kid))
    secret = generate_site_secret()
    save_site_secret(folder / "site.secret", secret)

    def make(serial: int, dynamic: bool) -> str:
        p = Pass(kid=kid, site_id=5, serial=serial, holder="李华", unit="5-1-302", role=Role.RESIDENT,
                 zones=frozenset({0}), valid_from=NOW - timedelta(hours=1),
                 valid_until=NOW + timedelta(days=3), generation=1, dynamic=dynamic)  # fmt: skip
        return issue(p, signer)

    return make(11, False), make(12, True), secret


def _config(folder: Path, **passes: object) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "site": SITE,
            "gate": "east",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(folder / "outbox.db")},
            "clock": {"trust": "trusted"},
            "scanners": [
                {"name": "entry", "url": "loop://", "direction": "in"},
                {"name": "exit", "url": "loop://", "direction": "out"},
            ],
            "passes": {
                "root_key": str(folder / "root.pub"),
                "trust_bundle": str(folder / "bundle"),
                "revocation_list": str(folder / "revocations"),
                "site_secret_file": str(folder / "site.secret"),
                **passes,
            },
        }
    )


def _show(agent: GateAgent, code: str, reader: str = "entry") -> str:
    decision = agent.present(Presented(code, "pass", reader, time.monotonic_ns(), code))
    assert decision is not None
    return decision.reason.value


def test_a_screenshot_replayed_right_after_a_restart_is_still_refused(tmp_path: Path):
    _static, dynamic, secret = _office(tmp_path)
    shown = dynamic_text(dynamic, pass_key(secret, 12, 1), datetime.now(UTC))
    agent = GateAgent(_config(tmp_path))
    try:
        assert _show(agent, shown) == "granted"
    finally:
        agent.stop(drain_s=0)
    agent = GateAgent(_config(tmp_path))  # power cut, reboot: a fresh process state
    try:
        agent.repeats = type(agent.repeats)(0)  # the repeat filter is not what refuses it
        assert _show(agent, shown) == "replayed"
    finally:
        agent.stop(drain_s=0)


def test_passback_window_survives_a_restart(tmp_path: Path):
    static, _dynamic, _secret = _office(tmp_path)
    agent = GateAgent(_config(tmp_path, passback_s=600))
    try:
        assert _show(agent, static) == "granted"
    finally:
        agent.stop(drain_s=0)
    agent = GateAgent(_config(tmp_path, passback_s=600))
    try:
        assert _show(agent, static) == "passback"
    finally:
        agent.stop(drain_s=0)


def test_without_memory_on_disk_the_restart_would_have_forgotten(tmp_path: Path):
    """The control for the two tests above: remove the memory file and the same replay is granted."""
    _static, dynamic, secret = _office(tmp_path)
    shown = dynamic_text(dynamic, pass_key(secret, 12, 1), datetime.now(UTC))
    agent = GateAgent(_config(tmp_path))
    try:
        assert _show(agent, shown) == "granted"
    finally:
        agent.stop(drain_s=0)
    for leftover in tmp_path.glob("outbox.passes.db*"):
        leftover.unlink()
    agent = GateAgent(_config(tmp_path))
    try:
        assert _show(agent, shown) == "granted"
    finally:
        agent.stop(drain_s=0)


def test_anti_passback_in_twice_without_an_out(tmp_path: Path):
    static, _dynamic, _secret = _office(tmp_path)
    agent = GateAgent(_config(tmp_path, anti_passback=True))
    agent.repeats = type(agent.repeats)(0)
    try:
        assert _show(agent, static, "entry") == "granted"
        assert _show(agent, static, "entry") == "passback"  # handed back over the fence
        assert _show(agent, static, "exit") == "granted"
        assert _show(agent, static, "entry") == "granted"
    finally:
        agent.stop(drain_s=0)
    agent = GateAgent(_config(tmp_path, anti_passback=True))  # and after a restart
    agent.repeats = type(agent.repeats)(0)
    try:
        assert _show(agent, static, "entry") == "passback"
        events = agent.outbox.pending(limit=100)
        assert any(b'"direction":"in"' in row.body for row in events)
    finally:
        agent.stop(drain_s=0)
