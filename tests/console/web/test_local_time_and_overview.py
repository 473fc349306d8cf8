"""Times in the site's zone, the events list through the store's search, and the overview's list ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.console.web.web_support import Web, login, make_event, make_status

T0 = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # 07:30 on 30 November in Shanghai


def test_event_times_are_the_sites_wall_clock(web: Web) -> None:
    web.add_user("ana")
    web.store.commit([make_event("s1", "north", 1, at=T0, granted=True, reason="granted", holder="Li Wei")])
    with web.client() as client:
        login(client, "ana")
        page = client.get("/events").text
        assert "2026-11-30 07:30:00" in page and "2026-11-29 23:30:00" not in page
        assert "Time (Asia/Shanghai)" in page and "Holder (exact name)" in page
        # a day typed in the filter is the site's day: 30 November local holds the event
        assert "2026-11-30 07:30:00" in client.get("/events?start=2026-11-30&end=2026-11-30").text
        assert "2026-11-30 07:30:00" not in client.get("/events?start=2026-11-29&end=2026-11-29").text


def test_holder_is_exact_and_reason_finds_a_door_cause(web: Web) -> None:
    web.add_user("ana")
    web.store.commit(
        [
            make_event("s1", "north", 1, at=T0, granted=True, reason="granted", holder="Li Wei"),
            make_event("s1", "north", 2, "door.unlocked", at=T0 + timedelta(seconds=1), cause="remote"),
        ]
    )
    with web.client() as client:
        login(client, "ana")
        assert "Li Wei</td>" in client.get("/events?holder=Li+Wei").text
        assert "Li Wei</td>" not in client.get("/events?holder=li").text
        remote = client.get("/events?reason=remote").text
        assert '<td title="door.unlocked">Door unlocked</td>' in remote
        assert 'title="access.scan"' not in remote


def test_overview_shows_list_age_stale_in_red_and_cards_behind(web_factory) -> None:
    web = web_factory(watch=True)
    web.add_user("ana")
    web.ctx.cards = None
    issued = datetime.now(UTC) - timedelta(hours=3, minutes=5)
    web.store.commit(
        [],
        [
            make_status(
                "s1", "north", "online", revocation_version=7, revocation_stale=True,
                revocation_issued_at=issued, cards_version=12, cards_count=480,
            ),
        ],
    )  # fmt: skip
    with web.client() as client:  # the lifespan starts the watcher, which loads the board
        login(client, "ana")
        page = client.get("/").text
        assert 'class="bad"' in page and "v7 · 3 h" in page
        assert "v12 · 480 cards" in page  # no registry configured: nothing to compare with


def test_overview_shows_each_gates_certificate_end_red_within_the_alarms_30_days(web_factory) -> None:
    web = web_factory(watch=True)
    web.add_user("ana")
    web.ctx.cards = None
    now = datetime.now(UTC).replace(microsecond=0)
    soon, later = now + timedelta(days=12), now + timedelta(days=300)
    web.store.commit(
        [],
        [
            make_status("s1", "north", "online", cert_not_after=soon),
            make_status("s1", "south", "online", cert_not_after=later),
        ],
    )
    with web.client() as client:
        login(client, "ana")
        page = client.get("/").text
    north = page[page.index('id="gate-s1-north"') : page.index('id="gate-s1-south"')]
    south = page[page.index('id="gate-s1-south"') :]
    assert (
        f"until {soon.date().isoformat()}" in north
        and 'class="bad"' in north.split('data-field="certificate"')[1]
    )
    assert f"until {later.date().isoformat()}" in south
    assert 'class="bad"' not in south.split('data-field="certificate"')[1].split("</td>")[0]


def test_overview_compares_cards_with_the_registry(tmp_path) -> None:
    from console.credentials import CardRegistry
    from protocol.credentials import CardEntry
    from tests.console.web.pages_support import web_console

    with web_console(tmp_path, cards=True) as console:
        registry: CardRegistry = console.ctx.cards  # type: ignore[assignment]
        for i in range(3):
            registry.put([CardEntry(f"em4100:0000000{i}", f"Holder {i}")])
        console.ctx.store.commit(
            [], [make_status("longtan", "north", "online", cards_version=1, cards_count=1)]
        )
        from console.web.hub import load_board

        load_board(console.ctx.store, console.ctx.db, console.app.state.board)
        client = console.client("operator", lang="zh")
        page = client.get("/").text
        assert "v1（最新 3）" in page and "时间为 Asia/Shanghai" in page
