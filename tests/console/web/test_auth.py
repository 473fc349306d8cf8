"""Logging in and out, sessions, lockout, roles and CSRF — through the real app and database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import console.users
from console.db import Database
from console.users import (
    LOCK_AFTER,
    LoginOutcome,
    LoginResult,
    Role,
    UserError,
    UserStore,
    hash_password,
    lock_seconds,
)
from tests.console.web.web_support import PASSWORD, Web, csrf_of, login, post_form


def test_a_browser_that_is_not_logged_in_is_sent_to_the_login_page(web: Web):
    with web.client() as client:
        page = client.get("/events?gate=north", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fevents%3Fgate%3Dnorth"
        assert client.get("/stream", headers={"accept": "text/event-stream"}).status_code == 401


def test_login_sets_an_httponly_strict_cookie_and_logout_ends_the_session(web: Web):
    web.add_user("ana")
    with web.client() as client:
        response = login(client, "ana")
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("gp_session="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        stored = web.ctx.db.query("SELECT token_hash FROM web_sessions")
        assert stored and stored[0][0] != token and len(stored[0][0]) == 64  # only the hash is kept
        assert client.get("/").status_code == 200
        assert post_form(client, "/logout", {}).status_code == 303
        assert client.get("/", follow_redirects=False).status_code == 303
        assert web.ctx.db.query("SELECT COUNT(*) FROM web_sessions")[0][0] == 0
    actions = [e.action for e in web.ctx.audit.entries()]
    assert actions[:2] == ["logout", "login"]


def test_a_wrong_password_is_refused_audited_and_repeated_failures_lock_the_account(web: Web):
    web.add_user("ana")
    with web.client() as client:
        for _ in range(LOCK_AFTER - 1):
            assert login(client, "ana", "wrong password!").status_code == 401
        locked = login(client, "ana", "wrong password!")
        assert locked.status_code == 429
        assert "Too many failed attempts" in locked.text
        assert login(client, "ana").status_code == 429  # even the right password waits out the lock
        assert login(client, "nobody", "whatever12345").status_code == 401
    failures = [e for e in web.ctx.audit.entries() if e.action == "login.failed"]
    assert len(failures) == LOCK_AFTER + 1  # every password checked
    assert failures[0].target == "nobody" and failures[0].address == "testclient"
    # the attempt refused without a check is in the tally, written once a minute at most
    refused = [e for e in web.ctx.audit.entries() if e.action == "login.refused"]
    assert [e.detail["outcomes"] for e in refused] == [{"locked": 1}]
    assert refused[0].detail["top_names"] == {"ana": 1}


def test_lock_time_grows_and_is_capped():
    assert lock_seconds(LOCK_AFTER - 1) == 0
    assert lock_seconds(LOCK_AFTER) == 30
    assert lock_seconds(LOCK_AFTER + 1) == 60
    assert lock_seconds(LOCK_AFTER + 30) == 15 * 60


def test_passwords_are_salted_scrypt_and_weak_ones_refused(web: Web):
    web.add_user("ana")
    web.add_user("bob")
    rows = dict(web.ctx.db.query("SELECT name, password_hash FROM web_users"))
    assert rows["ana"] != rows["bob"]  # same password, different salts
    assert PASSWORD.encode().hex() not in rows["ana"]
    assert len(hash_password("x", b"0" * 16)) == 64
    with pytest.raises(UserError):
        web.ctx.users.add("carl", "short", "operator")
    with pytest.raises(UserError):
        web.ctx.users.add("Bad Name", PASSWORD, "operator")
    with pytest.raises(UserError):
        web.ctx.users.add("ana", PASSWORD, "operator")


def test_sessions_end_after_the_idle_timeout(web: Web):
    users = UserStore(web.ctx.db, idle_timeout=timedelta(seconds=0))
    users.add("ana", PASSWORD, "operator")
    result = users.login("ana", PASSWORD)
    assert result.outcome is LoginOutcome.OK and result.token
    assert users.session(result.token) is None  # idle for more than zero seconds


def test_a_new_password_ends_every_session(web: Web):
    web.add_user("ana")
    token = web.ctx.users.login("ana", PASSWORD).token
    assert web.ctx.users.session(token) is not None
    web.ctx.users.set_password("ana", "another long password")
    assert web.ctx.users.session(token) is None


def test_operators_cannot_open_admin_pages(web: Web):
    web.add_user("ana")
    web.add_user("root", "admin")
    with web.client() as client:
        login(client, "ana")
        assert client.get("/users").status_code == 403
        assert client.get("/audit").status_code == 403
        assert (
            post_form(client, "/users", {"action": "add", "name": "eve", "password": PASSWORD}).status_code
            == 403
        )
    with web.client() as client:
        login(client, "root")
        assert client.get("/audit").status_code == 200
        response = post_form(
            client, "/users", {"action": "add", "name": "eve", "password": PASSWORD, "role": "operator"}
        )
        assert response.status_code == 303
        assert web.ctx.users.get("eve") is not None
        refused = post_form(client, "/users", {"action": "add", "name": "eve", "password": PASSWORD})
        assert refused.status_code == 400 and "already exists" in refused.text
    assert ("user.add", "eve") in [(e.action, e.target) for e in web.ctx.audit.entries()]


@pytest.mark.parametrize(
    ("lang", "form", "says"),
    [
        ("en", {"action": "add", "name": "eve", "password": "short"}, "at least 10 characters"),
        ("zh", {"action": "add", "name": "eve", "password": "short"}, "密码至少需要 10 个字符"),
        ("zh", {"action": "add", "name": "Eve!", "password": PASSWORD}, "用户名须为"),
        ("zh", {"action": "add", "name": "eve", "password": PASSWORD, "role": "boss"}, "角色必须是以下之一"),
        ("zh", {"action": "role", "name": "root", "role": "operator"}, "不能修改自己的角色"),
        ("zh", {"action": "password", "name": "nobody", "password": PASSWORD}, "没有用户 nobody"),
        ("zh", {"action": "explode", "name": "eve"}, "未知操作"),
    ],
)
def test_a_refused_user_change_says_why_in_the_users_language(web: Web, lang: str, form: dict, says: str):
    web.add_user("root", "admin")
    with web.client() as client:
        login(client, "root")
        post_form(client, "/lang", {"lang": lang})
        refused = post_form(client, "/users", form, page="/users")
        assert refused.status_code == 400 and says in refused.text, refused.text
        assert "Traceback" not in refused.text


def test_posts_without_the_csrf_token_are_refused(web: Web):
    web.add_user("ana")
    with web.client() as client:
        page = client.get("/login")
        refused = client.post("/login", data={"name": "ana", "password": PASSWORD}, follow_redirects=False)
        assert refused.status_code == 403
        wrong = client.post(
            "/login",
            data={"name": "ana", "password": PASSWORD, "csrf_token": "x" * 43},
            follow_redirects=False,
        )
        assert wrong.status_code == 403
        login(client, "ana")
        # After login the session's own token is required; the anonymous one no longer works.
        assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 403
        cross = client.post(
            "/logout",
            data={"csrf_token": csrf_of(client.get("/").text)},
            headers={"origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert client.get("/").status_code == 200  # still logged in
        ok = client.post(
            "/logout", headers={"x-csrf-token": csrf_of(client.get("/").text)}, follow_redirects=False
        )
        assert ok.status_code == 303


def test_login_never_redirects_off_site(web: Web):
    web.add_user("ana")
    with web.client() as client:
        page = client.get("/login")
        response = client.post(
            "/login",
            data={
                "name": "ana",
                "password": PASSWORD,
                "csrf_token": csrf_of(page.text),
                "next": "//evil.example/",
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/"


def test_pages_carry_security_headers(web: Web):
    with web.client() as client:
        response = client.get("/login")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


def _guess_at_once(stores: list[UserStore], guesses: int) -> list[LoginResult]:
    """``guesses`` wrong passwords for ana sent at the same moment, spread over ``stores``."""
    results: list[LoginResult] = []
    start = threading.Barrier(guesses)

    def guess(i: int) -> None:
        start.wait()
        results.append(stores[i % len(stores)].login("ana", f"guess number {i:04d}"))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many passwords were put through scrypt so far."""
    count = 0
    lock = threading.Lock()
    real = console.users.hash_password

    def counted(password: str, salt: bytes) -> bytes:
        nonlocal count
        with lock:
            count += 1
        return real(password, salt)

    monkeypatch.setattr(console.users, "hash_password", counted)
    return lambda: count


def test_parallel_wrong_guesses_from_one_address_are_checked_one_at_a_time_so_the_lock_stops_them(
    web: Web, checks: Callable[[], int]
):
    web.add_user("ana")
    before = checks()
    outcomes: list[LoginOutcome] = []
    for _ in range(6):  # rounds of 20 guesses at once, as a scripted attacker sends them
        outcomes += [r.outcome for r in _guess_at_once([web.ctx.users], 20)]
    # a second guess of the pair while one is checked is refused, never queued: at most one
    # hash at a time, and none after the one that locked the pair
    assert checks() - before == LOCK_AFTER
    assert outcomes.count(LoginOutcome.BAD_CREDENTIALS) == LOCK_AFTER - 1
    assert set(outcomes) == {LoginOutcome.BAD_CREDENTIALS, LoginOutcome.LOCKED, LoginOutcome.BUSY}
    assert web.ctx.db.query("SELECT failures FROM web_login_failures") == [(LOCK_AFTER,)]
    assert web.ctx.users.login("ana", PASSWORD).outcome is LoginOutcome.LOCKED


def test_two_console_processes_lose_no_failure_count(db_url: str | Path, checks: Callable[[], int]):
    databases = [Database(db_url), Database(db_url)]
    try:
        stores = [UserStore(db) for db in databases]
        stores[0].add("ana", PASSWORD, "operator")
        before = checks()
        results: list[LoginResult] = []
        for _ in range(LOCK_AFTER + 2):  # each round, both processes check a guess at the same moment
            results += _guess_at_once(stores, 2)
        # every check counted once, whichever process made it, so the pair locked after LOCK_AFTER
        assert databases[0].query("SELECT failures FROM web_login_failures") == [(checks() - before,)]
        assert checks() - before <= LOCK_AFTER + 1  # at most the one in flight in the other process
        assert [r.outcome for r in results].count(LoginOutcome.BAD_CREDENTIALS) == LOCK_AFTER - 1
        assert results[-1].outcome is LoginOutcome.LOCKED
    finally:
        for db in databases:
            db.close()


def test_a_login_clears_out_sessions_that_have_ended(web: Web):
    web.add_user("ana")
    web.add_user("bob")
    web.ctx.users.login("ana", PASSWORD)
    web.ctx.users.login("ana", PASSWORD)
    web.ctx.db.execute("UPDATE web_sessions SET expires_at = '2000-01-01T00:00:00.000000Z'")
    token = web.ctx.users.login("bob", PASSWORD).token
    assert web.ctx.db.query("SELECT user_name FROM web_sessions") == [("bob",)]
    assert token and web.ctx.users.session(token) is not None


def test_before_login_a_body_is_bounded_at_64_kib(web: Web):
    web.add_user("ana")
    with web.client() as client:
        token = csrf_of(client.get("/login").text)
        big = client.post(
            "/login",
            data={"name": "ana", "password": PASSWORD, "csrf_token": token, "filler": "x" * 70_000},
            follow_redirects=False,
        )
        assert big.status_code == 413 and "too large" in big.text
        declared = client.post(
            "/login", content=b"x", headers={"x-csrf-token": token, "content-length": str(65 * 1024)}
        )
        assert declared.status_code == 413
        assert login(client, "ana").status_code == 303
        # logged in, the same body is no longer refused for its size
        logged_in = post_form(client, "/lang", {"lang": "zh", "filler": "x" * 70_000})
        assert logged_in.status_code == 303


def test_static_files_and_the_health_check_do_not_look_up_the_session(
    web: Web, monkeypatch: pytest.MonkeyPatch
):
    web.add_user("ana")
    lookups: list[str] = []
    real = web.ctx.users.session
    monkeypatch.setattr(web.ctx.users, "session", lambda token: lookups.append(token) or real(token))
    with web.client() as client:
        login(client, "ana")
        lookups.clear()
        for path in ("/static/console.js", "/healthz"):
            response = client.get(path)
            assert response.status_code == 200
            assert not any(c.startswith("gp_session=") for c in response.headers.get_list("set-cookie"))
        assert lookups == []
        assert client.get("/").status_code == 200 and len(lookups) == 1


def test_grants_cover_what_they_name_and_no_more():
    from console.users import Grant, Permission, User

    ana = User(
        "ana",
        Role.OPERATOR,
        "now",
        sites=frozenset({"longtan"}),
        grants=frozenset({Grant.parse("unlock", "longtan/north"), Grant.parse("passes", "*")}),
    )
    assert ana.may(Permission.UNLOCK, "longtan", "north")
    assert not ana.may(Permission.UNLOCK, "longtan", "south")  # per gate
    assert ana.may(Permission.PASSES, "longtan")
    assert not ana.may(Permission.PASSES, "tuanjiehu")  # "*" stops at the sites she works for
    site_wide = User("bo", Role.OPERATOR, "now", grants=frozenset({Grant.parse("unlock", "longtan")}))
    assert site_wide.may(Permission.UNLOCK, "longtan", "south") and not site_wide.may(
        Permission.UNLOCK, "x", "y"
    )
    root = User("root", Role.ADMIN, "now", sites=frozenset({"longtan"}))
    assert root.may(Permission.UNLOCK, "tuanjiehu", "north") and root.site_limit is None
    for permission, scope in (
        ("unlock", ""),
        ("unlock", "*/north"),
        ("passes", "a/b"),
        ("fly", "*"),
        ("unlock", "A"),
    ):
        with pytest.raises(UserError):
            Grant.parse(permission, scope)


def test_an_admin_sets_sites_grants_and_revokes_on_the_users_page_and_each_change_is_audited(web: Web):
    web.add_user("root", "admin")
    web.add_user("ana")
    with web.client() as client:
        login(client, "root")
        for form in (
            {"action": "sites", "name": "ana", "sites": "longtan, tuanjiehu"},
            {"action": "grant", "name": "ana", "permission": "unlock", "scope": "longtan/north"},
            {"action": "grant", "name": "ana", "permission": "passes", "scope": "longtan"},
            {"action": "revoke", "name": "ana", "permission": "passes", "scope": "longtan"},
        ):
            assert post_form(client, "/users", form, page="/users").status_code == 303, form
        page = client.get("/users").text
        assert "longtan,tuanjiehu" in page and "longtan/north" in page
        refused = post_form(
            client,
            "/users",
            {"action": "grant", "name": "ana", "permission": "unlock", "scope": "*/x"},
            page="/users",
        )
        assert refused.status_code == 400 and "scope of unlock" in refused.text
    ana = web.ctx.users.get("ana")
    assert ana is not None and ana.sites == frozenset({"longtan", "tuanjiehu"})
    assert [g.scope for g in ana.grants] == ["longtan/north"]
    changes = [(e.action, e.detail) for e in web.ctx.audit.entries() if e.action.startswith("user.")]
    assert changes[0] == ("user.revoke", {"permission": "passes", "scope": "longtan", "held": True})
    assert [a for a, _ in changes] == ["user.revoke", "user.grant", "user.grant", "user.sites"]


def test_users_made_before_sites_and_grants_keep_every_site_and_are_granted_nothing(tmp_path: Path):
    from console.users import _migrations

    db = Database(tmp_path / "old.db")
    try:
        db.migrate("users", _migrations()[:1])  # a console from before migration 2
        db.execute(
            "INSERT INTO web_users (name, role, salt, password_hash, created_at, updated_at, failures, locked_until)"
            " VALUES ('ana', 'operator', '00', '00', 'x', 'x', 9, '2999-01-01T00:00:00.000000Z')"
        )
        users = UserStore(db)
        ana = users.get("ana")
        assert ana is not None and ana.sites is None and ana.grants == frozenset()
        # the old per-account lock is gone with the bug it was
        assert users.locked_for("ana", "") == 0
    finally:
        db.close()
