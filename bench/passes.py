"""Pass benchmark: what a gate spends on one scan, and how big typical passes print.

Measured in one run, each next to its comparison:

1. bare Ed25519 verify (PyNaCl) of a pass signature: the floor nothing can beat;
2. decide() on printed passes: decode the digits, parse, look the key up, verify, check
   site, revocation, validity, daily window, zone, passback, list age;
3. decide() on phone passes with a fresh dynamic code each time (adds HMACs and the
   replay memory);
4. size in bytes and digits, and the QR version (numeric mode) of typical passes:
   printed at level Q, phone passes with their dynamic code at level M;
5. the sync of 100,000 door cards from the console's registry to a gate agent through a
   real mosquitto (retained snapshot chunks, applied hash-checked), from the moment the
   registry holds the new list to the moment the gate's store does; next to it, the same
   list built and applied with no network (the floor).

Usage: ``python bench/passes.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from protocol.passes import (  # noqa: E402
    ClockReading,
    DailyWindow,
    GatePolicy,
    GateState,
    Pass,
    RevocationState,
    Role,
    TrustStore,
    decide,
    decode_text,
    make_revocation_list,
    new_bundle,
    photo_digest,
    qr_version,
    rotate,
    seal_bundle,
    seal_revocation_list,
    sign_pass,
)
from protocol.passes.codec import encode_text  # noqa: E402
from protocol.passes.dynamic import dynamic_text, pass_key  # noqa: E402
from protocol.passes.format import SIGNING_CONTEXT  # noqa: E402

NOW = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai: inside the milk window
SITE, SITE_ID = "maple", 7


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def typical_passes(kid: int) -> dict[str, Pass]:
    year = NOW + timedelta(days=365)
    common = {"kid": kid, "site_id": SITE_ID, "valid_from": NOW - timedelta(days=1)}
    return {
        "resident, photo": Pass(
            **common, serial=12_345_678, holder="王小明", unit="3-2-501", role=Role.RESIDENT,
            zones=frozenset({0, 1}), valid_until=year, generation=1, photo_digest=photo_digest(b"a"),
        ),
        "milk delivery 06-09": Pass(
            **common, serial=23_456_789, holder="李建国", unit="光明乳业", role=Role.SERVICE_WORKER,
            zones=frozenset({0}), valid_until=NOW + timedelta(days=90), generation=2,
            daily_window=DailyWindow.from_hours("06:00", "09:00"), photo_digest=photo_digest(b"b"),
        ),
        "visitor, one day": Pass(
            **common, serial=34_567_890, holder="张伟", unit="3-2-501", role=Role.VISITOR,
            zones=frozenset({0}), valid_until=NOW + timedelta(days=1),
        ),
        "staff, photo": Pass(
            **common, serial=45_678_901, holder="陈志强", unit="物业管理处", role=Role.STAFF,
            zones=frozenset(range(8)), valid_until=year, generation=7, photo_digest=photo_digest(b"c"),
        ),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (under a minute)")
    args = parser.parse_args()
    n = 3_000 if args.quick else 30_000

    root, signer, secret = SigningKey.generate(), SigningKey.generate(), b"s" * 32
    bundle = new_bundle(site=SITE, site_id=SITE_ID, timezone="Asia/Shanghai", now=NOW - timedelta(days=30))
    bundle, kid = rotate(
        bundle, signer, now=NOW - timedelta(days=30), lifetime=timedelta(days=800), grace=timedelta(0)
    )
    trust = TrustStore(root.verify_key, SITE)
    assert trust.apply(seal_bundle(bundle, root)).applied
    revocation = RevocationState(trust)
    revoked = range(100_000_000, 100_010_000)  # a 10 000-entry list, so lookups are not trivially empty
    rl = make_revocation_list(site=SITE, version=1, issued_at=NOW, serials=revoked)
    assert revocation.apply(seal_revocation_list(rl, signer, kid)).applied
    state = GateState(
        trust=trust,
        revocation=revocation,
        policy=GatePolicy(zone=0, passback=timedelta(0)),
        site_secret=secret,
    )
    clock = ClockReading(NOW, True)

    printed = typical_passes(kid)
    rows = []
    codes = []
    for name, p in printed.items():
        data = sign_pass(p, signer)
        text = encode_text(data)
        codes.append(text)
        assert decide(text, clock, state).granted, name
        rows.append((name, len(data), len(text), qr_version(len(text), "Q"), "Q"))
    phone: list[tuple[str, Pass]] = [
        ("phone resident, photo", printed["resident, photo"]),
        ("phone visitor", printed["visitor, one day"]),
    ]
    phone_rows = []
    for name, base in phone:
        p = replace(base, dynamic=True)
        data = sign_pass(p, signer)
        text = dynamic_text(encode_text(data), pass_key(secret, p.serial, p.generation), NOW)
        phone_rows.append((name, len(data), len(text), qr_version(len(text), "M"), "M"))

    # 1. bare verify, the floor
    signed = decode_text(codes[0]).signed
    vk = trust.key(kid).verify_key
    message = SIGNING_CONTEXT + signed.payload
    for _ in range(200):
        vk.verify(message, signed.signature)
    verify_ms = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        vk.verify(message, signed.signature)
        verify_ms.append((time.perf_counter_ns() - t0) / 1e6)

    # 2. the whole decision on printed passes
    decide_ms = []
    for i in range(n):
        code = codes[i % len(codes)]
        t0 = time.perf_counter_ns()
        d = decide(code, clock, state)
        decide_ms.append((time.perf_counter_ns() - t0) / 1e6)
        assert d.granted
    # 3. phone passes, a fresh code per scan (one 30 s step apart, so none is a replay)
    dyn_pass = replace(printed["resident, photo"], dynamic=True)
    static = encode_text(sign_pass(dyn_pass, signer))
    key = pass_key(secret, dyn_pass.serial, dyn_pass.generation)
    m = n // 3
    scans = [
        (NOW + timedelta(seconds=30 * i), dynamic_text(static, key, NOW + timedelta(seconds=30 * i)))
        for i in range(m)
    ]
    dynamic_ms = []
    for when, code in scans:
        reading = ClockReading(when, True)
        t0 = time.perf_counter_ns()
        d = decide(code, reading, state)
        dynamic_ms.append((time.perf_counter_ns() - t0) / 1e6)
        assert d.granted, d

    print(f"pass benchmark ({'quick' if args.quick else 'full'}: {n} scans)")
    print(f"{'':32} {'p50 ms':>9} {'p99 ms':>9}")
    print(f"{'Ed25519 verify (floor)':32} {pct(verify_ms, 50):9.4f} {pct(verify_ms, 99):9.4f}")
    print(f"{'decide, printed passes':32} {pct(decide_ms, 50):9.4f} {pct(decide_ms, 99):9.4f}")
    print(f"{'decide, phone + dynamic code':32} {pct(dynamic_ms, 50):9.4f} {pct(dynamic_ms, 99):9.4f}")
    print()
    print(f"{'typical pass':32} {'bytes':>6} {'digits':>7} {'QR ver':>7}")
    for name, size, digits, version, level in rows + phone_rows:
        print(f"{name:32} {size:6} {digits:7} {version:5}-{level}")

    sync_s, floor_s, chunks = card_sync(100_000)
    print()
    print(f"{'100,000 door cards':32} {'seconds':>9}")
    print(f"{'console -> gate over MQTT':32} {sync_s:9.2f}   ({chunks} retained chunks)")
    print(f"{'snapshot + apply, no network':32} {floor_s:9.2f}")

    result = {
        "card_sync_100k_s": round(sync_s, 3),
        "card_sync_100k_local_s": round(floor_s, 3),
        "decide_p50_ms": round(pct(decide_ms, 50), 4),
        "decide_p99_ms": round(pct(decide_ms, 99), 4),
        "decide_dynamic_p99_ms": round(pct(dynamic_ms, 99), 4),
        "verify_p50_ms": round(pct(verify_ms, 50), 4),
        "verify_p99_ms": round(pct(verify_ms, 99), 4),
        "pass_bytes_max": max(r[1] for r in rows + phone_rows),
        "qr_version_q_max": max(r[3] for r in rows),
        "qr_version_m_dynamic_max": max(r[3] for r in phone_rows),
    }
    print(json.dumps(result))


def card_sync(n: int) -> tuple[float, float, int]:
    """Seconds for ``n`` cards to reach a real gate agent over MQTT, and the no-network floor."""
    import logging
    import tempfile

    logging.disable(logging.WARNING)  # the agent's "disconnected" at shutdown is not a result
    from broker.launcher import Broker
    from console.card_sync import CardPublisher
    from console.credentials import CardRegistry
    from edge.agent import GateAgent
    from edge.config import EdgeConfig
    from edge.credentials import CardStore
    from protocol.credentials import CardEntry

    until = datetime.now(UTC) + timedelta(days=365)
    entries = [
        CardEntry(f"em4100:{i:010X}", holder=f"住户{i}", unit=f"{i % 30 + 1}-{i % 4 + 1}-{i % 600 + 101}",
                  valid_until=until, window_start=360 if i % 7 == 0 else None,
                  window_end=1320 if i % 7 == 0 else None, zones=1 | (i % 3) << 1)
        for i in range(n)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gatepost-bench-cards-") as tmp:
        folder = Path(tmp)
        registry = CardRegistry(folder / "registry.db")
        registry.replace_all(entries)
        started = time.perf_counter()
        chunks = registry.snapshot()
        floor_store = CardStore(folder / "floor.db")
        floor_store.apply_snapshot_chunks(chunks)
        assert floor_store.lookup(entries[n // 2].credential) is not None
        floor = time.perf_counter() - started
        floor_store.close()

        broker = Broker(folder / "broker")
        broker.start()
        try:
            gate = broker.add_gate(SITE, "bench-door")
            (folder / "gate.secret").write_text(gate.password)
            config = EdgeConfig.model_validate(
                {
                    "site": SITE,
                    "gate": "bench-door",
                    "mqtt": {"host": broker.host, "port": broker.port, "username": gate.username,
                             "password_file": str(folder / "gate.secret")},
                    "outbox": {"path": str(folder / "outbox.db")},
                    "clock": {"trust": "trusted"},
                    "cards": {"store": str(folder / "cards.db")},
                }
            )  # fmt: skip
            agent = GateAgent(config)
            agent.start()
            assert agent.link.wait_connected(10)
            target = registry.state
            started = time.perf_counter()
            publisher = CardPublisher(
                broker.endpoint(broker.add_console("bench")), registry, SITE, poll_s=0.01
            ).start()
            try:
                store = agent.decider.cards
                assert store is not None
                deadline = started + 120
                while store.state.hash != target.hash and time.perf_counter() < deadline:
                    time.sleep(0.005)
                sync = time.perf_counter() - started
                assert store.state.version == target.version, "the gate never received the list"
                assert store.lookup(entries[n // 2].credential) is not None
            finally:
                publisher.stop()
                agent.stop(drain_s=0)
        finally:
            broker.stop()
    return sync, floor, len(chunks)


if __name__ == "__main__":
    main()
