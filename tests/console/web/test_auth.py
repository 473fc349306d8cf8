"""Logging in and out, sessions, lockout, roles and CSRF — through the real app and database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.users import LOCK_AFTER, LoginOutcome, UserError, UserStore, hash_password, lock_seconds
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
    assert len(failures) == LOCK_AFTER + 2
    assert failures[0].target == "nobody"


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
