"""Cookies are Secure behind TLS, whether coplane serves HTTPS itself (COPLANE_TLS_CERT and
COPLANE_TLS_KEY) or a reverse proxy it trusts does (COPLANE_FORWARDED_ALLOW_IPS); and the
refusals of those settings."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from coplane.cli import app
from tests.conftest import LiveServer, free_port

PASSWORD = "correct horse battery"
runner = CliRunner()


def self_signed(folder: Path, key_password: bytes | None = None) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and that key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coplane test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(key_password)
        if key_password
        else serialization.NoEncryption()
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def make_user(database_url: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", database_url)
    secret = folder / "password"
    secret.write_text(PASSWORD)
    made = runner.invoke(
        app, ["users", "create", "ana", "--role", "viewer", "--password-file", str(secret)]
    )
    assert made.exit_code == 0, made.output


def cookie_line(resp: httpx.Response, name: str) -> str:
    [line] = [v for v in resp.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    return line


def test_coplane_serves_https_and_sets_secure_cookies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    make_user(database_url, tmp_path, monkeypatch)
    env = {"COPLANE_AUTH": "keys", "COPLANE_TLS_CERT": str(cert), "COPLANE_TLS_KEY": str(key)}
    server = LiveServer(database_url, tmp_path / "server.log", env=env)
    assert server.url.startswith("https://")
    server.start()
    try:
        with httpx.Client(base_url=server.url, verify=server.verify) as browser:
            form = browser.get("/login")
            assert "Secure" in cookie_line(form, "coplane_csrf")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token
            done = browser.post(
                "/login",
                data={"csrf_token": token.group(1), "name": "ana", "password": PASSWORD},
            )
            assert done.status_code == 303
            session = cookie_line(done, "coplane_session")
            assert "Secure" in session and "HttpOnly" in session
            assert browser.get("/", follow_redirects=False).status_code == 200
        # the same port does not answer plain HTTP
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/api/health", timeout=5)
    finally:
        server.stop()
    assert f"listening on https://127.0.0.1:{server.port}" in server.log_path.read_text()


@pytest.mark.parametrize(
    ("allow", "secure"),
    [(None, True), ("127.0.0.0/8", True), ("10.1.2.3", False)],
)
def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(
    tmp_path: Path, allow: str | None, secure: bool
) -> None:
    env = {"COPLANE_AUTH": "keys"}
    if allow is not None:
        env["COPLANE_FORWARDED_ALLOW_IPS"] = allow
    server = LiveServer(f"sqlite:///{tmp_path / 'c.sqlite'}", tmp_path / "server.log", env=env)
    server.start()
    try:
        behind = httpx.get(f"{server.url}/login", headers={"X-Forwarded-Proto": "https"})
        plain = httpx.get(f"{server.url}/login")
    finally:
        server.stop()
    # the test talks from 127.0.0.1, so it is the proxy only when 127.0.0.1 is trusted
    assert ("Secure" in cookie_line(behind, "coplane_csrf")) is secure
    assert "Secure" not in cookie_line(plain, "coplane_csrf")


def server_refusal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], tmp_path: Path) -> str:
    monkeypatch.setenv("COPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite'}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["server", "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_a_certificate_without_its_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _ = self_signed(tmp_path)
    said = server_refusal(monkeypatch, {"COPLANE_TLS_CERT": str(cert)}, tmp_path)
    assert "COPLANE_TLS_CERT and COPLANE_TLS_KEY go together" in said


@pytest.mark.parametrize("problem", ["missing key", "not PEM", "encrypted key", "other key"])
def test_an_unusable_certificate_or_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    cert, key = self_signed(tmp_path, key_password=b"pw" if problem == "encrypted key" else None)
    if problem == "missing key":
        key.unlink()
    elif problem == "not PEM":
        cert.write_text("not a certificate\n")
    elif problem == "other key":
        (tmp_path / "other").mkdir()
        key = self_signed(tmp_path / "other")[1]
    said = server_refusal(
        monkeypatch, {"COPLANE_TLS_CERT": str(cert), "COPLANE_TLS_KEY": str(key)}, tmp_path
    )
    assert f"cannot load {cert} with {key}" in said
    assert "unencrypted key" in said


def test_a_mistyped_proxy_address_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = server_refusal(
        monkeypatch, {"COPLANE_FORWARDED_ALLOW_IPS": "10.0.0.1, proxy.internal"}, tmp_path
    )
    assert "COPLANE_FORWARDED_ALLOW_IPS" in said and "'proxy.internal'" in said
