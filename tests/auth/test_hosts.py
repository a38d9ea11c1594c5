"""DNS rebinding: a real open server answers only to its own names, and hands out no keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from coplane.auth.hosts import HostPolicy
from coplane.security.hosts import host_name, parse_allowed_hosts
from coplane.settings import Settings
from tests.conftest import LiveServer

REBOUND = {"Host": "rebind.example", "Origin": "http://rebind.example"}
SLA = {"name": "fresh", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}


def test_a_rebound_name_gets_nothing_from_an_open_server(live_server: LiveServer) -> None:
    url = live_server.url
    asks = [
        httpx.get(f"{url}/api/events", headers=REBOUND),
        httpx.get(f"{url}/api/secrets", headers=REBOUND),
        httpx.post(f"{url}/api/slas", json=SLA, headers=REBOUND),
        httpx.post(f"{url}/api/keys", json={"name": "x", "scopes": ["admin"]}, headers=REBOUND),
        httpx.get(f"{url}/", headers=REBOUND),
    ]
    for answer in asks:
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"][0]["loc"] == ["header", "host"]
        assert 'Host "rebind.example" is not a name of this server' in answer.json()["detail"]
    assert httpx.get(f"{url}/api/slas").json()["slas"] == []  # nothing was created
    for host in ("127.0.0.1", f"localhost:{live_server.port}", "[::1]:4200", "LOCALHOST."):
        assert httpx.get(f"{url}/api/events", headers={"Host": host}).status_code == 200


def test_an_open_server_creates_no_keys_over_http(live_server: LiveServer) -> None:
    made = httpx.post(f"{live_server.url}/api/keys", json={"name": "x", "scopes": ["admin"]})
    assert made.status_code == 403
    assert "coplane keys create" in made.json()["detail"]


@pytest.mark.slow
def test_allowed_hosts_and_the_public_url(tmp_path: Path) -> None:
    env = {
        "COPLANE_ALLOWED_HOSTS": "coplane.internal, *.corp.example",
        "COPLANE_PUBLIC_URL": "https://coplane.example.com/",
    }
    server = LiveServer(f"sqlite:///{tmp_path / 'c.sqlite'}", tmp_path / "server.log", env=env)
    server.start()
    try:
        for host, status in [
            ("coplane.internal:4200", 200),
            ("a.corp.example", 200),
            ("corp.example", 400),
            ("coplane.example.com", 200),
            ("evilcoplane.internal", 400),
            ("coplane.example.com.evil.example", 400),
        ]:
            answer = httpx.get(f"{server.url}/api/health", headers={"Host": host})
            assert answer.status_code == status, host
    finally:
        server.stop()


def test_host_names_are_read_without_port_case_or_final_dot() -> None:
    assert host_name("LocalHost.:4200") == "localhost"
    assert host_name("[::1]:80") == "::1"
    assert host_name("[::1") == ""
    assert host_name("::1") == "::1"  # no brackets: not a port
    policy = HostPolicy.of("0.0.0.0", None, "")
    assert policy.allows("127.0.0.2:1") and not policy.allows("0.0.0.0")
    assert HostPolicy.of("10.0.0.5", None, "").allows("10.0.0.5:4200")


@pytest.mark.parametrize("bad", ["host:80", "http://x", "*", "a.*.b", "x y", "user@x"])
def test_a_bad_allowed_host_is_a_settings_error(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        parse_allowed_hosts(bad)
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=f"ok.example,{bad}")
