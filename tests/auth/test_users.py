"""UI users with COPLANE_AUTH=keys: argon2 passwords, sessions, and what each role may do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from coplane.auth.throttle import FREE_FAILURES, MAX_WAIT, LoginThrottle
from coplane.auth.users import (
    check_password,
    create_user,
    end_session,
    list_users,
    session_user,
    start_session,
)
from coplane.cli import app as cli
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store, open_store

PASSWORD = "correct horse battery"
SLA = {"name": "fresh", "kind": "freshness", "target": "wh.t", "max_age": "1h"}


@pytest.fixture
def keyed(store: Store, db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
    with store.connect() as conn:
        for role in ("viewer", "editor", "admin"):
            create_user(conn, role, PASSWORD, role)
    with TestClient(create_app(settings, store=store)) as c:
        yield c


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return client.post(
        "/login",
        data={"csrf_token": token.group(1), "name": name, "password": password, "next": "/"},
        follow_redirects=False,
    )


def post_form(client: TestClient, path: str) -> Any:
    return client.post(path, data={"csrf_token": client.cookies.get("coplane_csrf")})


def test_passwords_are_argon2_hashes_and_checked(store: Store) -> None:
    with store.connect() as conn:
        create_user(conn, "ana", PASSWORD, "editor")
        [row] = conn.query("SELECT password FROM users")
        assert row["password"].startswith("$argon2id$") and PASSWORD not in row["password"]
        assert check_password(conn, "ana", PASSWORD) is not None
        assert check_password(conn, "ana", PASSWORD + "!") is None
        assert check_password(conn, "bob", PASSWORD) is None
        for name, password, role, message in [
            ("ana", PASSWORD, "viewer", "already a user"),
            ("eve", "short", "viewer", "at least 12"),
            ("eve", PASSWORD, "root", "role must be"),
            (" ", PASSWORD, "viewer", "needs a name"),
        ]:
            with pytest.raises(ValueError, match=message):
                create_user(conn, name, password, role)  # type: ignore[arg-type]
        assert [u.name for u, _ in list_users(conn)] == ["ana"]


def test_sessions_expire_and_end(store: Store) -> None:
    now = datetime.now(UTC)
    with store.connect() as conn:
        user = create_user(conn, "ana", PASSWORD, "viewer")
        token = start_session(conn, user, now)
        assert session_user(conn, token, now) == user
        assert session_user(conn, token, now + timedelta(hours=13)) is None  # expired
        assert session_user(conn, "forged", now) is None
        end_session(conn, token)
        assert session_user(conn, token, now) is None
        assert token not in str(conn.query("SELECT * FROM sessions"))


def test_each_role_in_the_ui_and_the_api(keyed: TestClient) -> None:
    assert log_in(keyed, "viewer", "wrong password").status_code == 401
    assert log_in(keyed, "nobody").status_code == 401
    done = log_in(keyed, "viewer")
    assert done.status_code == 303 and "coplane_session" in done.headers["set-cookie"]
    assert "HttpOnly" in done.headers["set-cookie"]
    page = keyed.get("/incidents")
    assert page.status_code == 200 and "viewer (viewer)" in page.text
    incident = f"/incidents/{'0' * 32}"
    assert post_form(keyed, f"{incident}/ack").status_code == 403  # viewers only look

    log_in(keyed, "editor")
    assert post_form(keyed, f"{incident}/ack").status_code == 404  # allowed: no such incident
    assert keyed.post("/api/slas", json=SLA).status_code == 403  # editors do not change SLAs

    log_in(keyed, "admin")
    assert keyed.post("/api/slas", json=SLA).status_code == 403  # the cookie alone: no token
    token = {"X-CSRF-Token": keyed.cookies["coplane_csrf"]}
    assert keyed.post("/api/slas", json=SLA, headers=token).status_code == 201

    out = post_form(keyed, "/logout")
    assert out.status_code == 200 and "Log in" in out.text  # followed to the login page
    assert keyed.get("/", follow_redirects=False).status_code == 303


def test_a_session_cookie_after_log_out_is_dead(keyed: TestClient) -> None:
    log_in(keyed, "viewer")
    token = keyed.cookies.get("coplane_session")
    assert token
    post_form(keyed, "/logout")
    keyed.cookies.set("coplane_session", token)
    assert keyed.get("/", follow_redirects=False).status_code == 303


def test_cli_creates_and_lists_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    runner = CliRunner()
    made = runner.invoke(
        cli, ["users", "create", "ana", "--role", "editor", "--password-file", str(secret)]
    )
    assert made.exit_code == 0 and "created editor ana" in made.stdout
    prompted = runner.invoke(
        cli, ["users", "create", "bob", "--role", "viewer"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.output
    assert re.search(r"ana\s+editor", runner.invoke(cli, ["users", "list"]).stdout)
    short = tmp_path / "short"
    short.write_text("abc")
    bad = runner.invoke(
        cli, ["users", "create", "c", "--role", "viewer", "--password-file", str(short)]
    )
    assert bad.exit_code == 2 and "at least 12" in bad.output
    assert runner.invoke(cli, ["users", "create", "d", "--role", "root"]).exit_code == 2
    missing = runner.invoke(
        cli, ["users", "create", "e", "--role", "viewer", "--password-file", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2 and "--password-file" in missing.output
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe password")
    garbled = runner.invoke(
        cli, ["users", "create", "f", "--role", "viewer", "--password-file", str(binary)]
    )
    said = " ".join(garbled.output.split())
    assert garbled.exit_code == 2 and f"cannot read {binary}: not UTF-8 text" in said


def test_guessing_a_password_is_slowed_down_per_user(keyed: TestClient) -> None:
    for _ in range(FREE_FAILURES):
        assert log_in(keyed, "viewer", "wrong password").status_code == 401
    assert log_in(keyed, "viewer", "wrong password").status_code == 401  # now it counts
    locked = log_in(keyed, "viewer")  # the right password: not even checked while locked
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    assert "Too many failed logins" in locked.text
    assert "coplane_session" not in locked.headers.get("set-cookie", "")


def test_the_throttle_waits_longer_after_each_failure() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(FREE_FAILURES):
        throttle.failed("user:ada", "address:10.0.0.1")
    assert throttle.wait("user:ada") == 0
    waits = []
    for _ in range(4):
        throttle.failed("user:ada", "address:10.0.0.1")
        waits.append(throttle.wait("user:ada"))
    assert waits == [1.0, 2.0, 4.0, 8.0]
    # the address is locked for every name it tries, and other addresses are not
    assert throttle.wait("user:bob", "address:10.0.0.1") == 8.0
    assert throttle.wait("user:bob", "address:10.0.0.2") == 0
    now[0] = 8.0
    assert throttle.wait("user:ada") == 0
    throttle.succeeded("user:ada", "address:10.0.0.1")
    throttle.failed("user:ada")
    assert throttle.wait("user:ada") == 0  # a success starts the count again
    for _ in range(40):
        throttle.failed("user:eve")
    assert throttle.wait("user:eve") == MAX_WAIT


def test_cli_locks_a_user_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    monkeypatch.setenv("COPLANE_DATABASE_URL", url)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    runner = CliRunner()
    made = runner.invoke(
        cli, ["users", "create", "ana", "--role", "editor", "--password-file", str(secret)]
    )
    assert made.exit_code == 0, made.output
    store = open_store(url)
    try:
        with store.connect() as conn:
            user = check_password(conn, "ana", PASSWORD)
            assert user is not None
            sessions = [start_session(conn, user) for _ in range(2)]
        done = runner.invoke(cli, ["users", "logout", "ana"])
        assert done.exit_code == 0 and "ended 2 sessions of ana" in done.stdout
        with store.connect() as conn:
            assert all(session_user(conn, s) is None for s in sessions)
            session = start_session(conn, user)
        new = tmp_path / "new"
        new.write_text("another long passphrase\n")
        changed = runner.invoke(cli, ["users", "passwd", "ana", "--password-file", str(new)])
        assert changed.exit_code == 0, changed.output
        with store.connect() as conn:
            assert session_user(conn, session) is None  # a new password ends every session
            assert check_password(conn, "ana", PASSWORD) is None
            user = check_password(conn, "ana", "another long passphrase")
            assert user is not None
            session = start_session(conn, user)
        short = tmp_path / "short"
        short.write_text("short\n")
        refused = runner.invoke(cli, ["users", "passwd", "ana", "--password-file", str(short)])
        assert refused.exit_code == 2 and "at least 12 characters" in refused.stderr
        gone = runner.invoke(cli, ["users", "delete", "ana"])
        assert gone.exit_code == 0 and "deleted editor ana" in gone.stdout
        with store.connect() as conn:
            assert session_user(conn, session) is None
        again = ["passwd", "ana", "--password-file", str(new)]
        for command in (["delete", "ana"], ["logout", "ana"], again):
            missing = runner.invoke(cli, ["users", *command])
            assert missing.exit_code == 1 and "no user 'ana'" in missing.stderr
    finally:
        store.close()


def test_logging_in_rotates_the_csrf_token(keyed: TestClient) -> None:
    keyed.get("/login")
    before = keyed.cookies["coplane_csrf"]
    assert log_in(keyed, "viewer").status_code == 303
    assert keyed.cookies["coplane_csrf"] != before
