"""Vendors htmx from the tarball locked in package-lock.json before the package is built."""

# pyproject.toml holds the metadata; this file only adds the build step. setuptools' build
# backend runs it with __name__ == "__main__", and tests import its functions without building.

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import BaseError

ROOT = Path(__file__).resolve().parent
PACKAGE = "htmx.org"
VENDOR_DIR = Path("coplane", "web", "static", "vendor")
SCRIPT = "htmx.min.js"
LICENSE = "htmx.LICENSE"
STAMP = ".htmx-integrity"
SCRIPT_MEMBER = "package/dist/htmx.min.js"
LICENSE_MEMBERS = ("package/LICENSE", "package/LICENSE.md", "package/LICENSE.txt")
ATTEMPTS = 3
TIMEOUT_SECONDS = 30


class VendorError(BaseError):
    """The locked htmx tarball could not be fetched, verified or unpacked."""


@dataclass(frozen=True)
class LockedPackage:
    """One package's entry in package-lock.json."""

    name: str
    version: str
    resolved: str
    integrity: str

    @property
    def tarball_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def read_locked_package(root: Path, name: str = PACKAGE) -> LockedPackage:
    """Read a package's version, tarball URL and integrity from root/package-lock.json."""
    lock_path = root / "package-lock.json"
    try:
        entry = json.loads(lock_path.read_text())["packages"][f"node_modules/{name}"]
        version, integrity = str(entry["version"]), str(entry["integrity"])
    except (OSError, ValueError, KeyError) as e:
        raise VendorError(f"{lock_path} does not lock {name} ({e!r})") from e
    # npm leaves `resolved` out when omit-lockfile-registry-resolved is set; the registry's
    # tarball URL follows from the name and version (https://docs.npmjs.com/cli/configuring-npm/package-lock-json)
    default_url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    return LockedPackage(name, version, str(entry.get("resolved") or default_url), integrity)


def integrity_of(data: bytes) -> str:
    """The Subresource Integrity string npm records for these bytes: sha512, base64."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def check_integrity(data: bytes, package: LockedPackage, source: str) -> None:
    """Fail unless the bytes hash to the sha512 integrity package-lock.json records."""
    expected = [i for i in package.integrity.split() if i.startswith("sha512-")]
    if not expected:
        raise VendorError(
            f"package-lock.json has no sha512 integrity for {package.name}: {package.integrity!r}"
        )
    actual = integrity_of(data)
    if actual not in expected:
        raise VendorError(
            f"{source} does not match package-lock.json for {package.name} {package.version}:\n"
            f"  package-lock.json: {' '.join(expected)}\n"
            f"  {source}: {actual}"
        )


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Where downloaded tarballs are kept between builds and checkouts."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coplane-build"


def download(url: str, *, retry_delay: float) -> bytes:
    """GET url, trying ATTEMPTS times with a growing pause in between."""
    error: Exception | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(retry_delay * attempt)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
                body: bytes = response.read()
                return body
        except (urllib.error.URLError, OSError) as e:
            error = e
    raise VendorError(f"could not download {url} after {ATTEMPTS} attempts ({error})")


def write_atomically(path: Path, data: bytes) -> None:
    """Write data to path so that a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def fetch_tarball(
    package: LockedPackage, environ: Mapping[str, str], *, retry_delay: float = 1.0
) -> bytes:
    """The locked tarball's bytes, verified: a given file, else the cache, else the registry."""
    given = environ.get("COPLANE_HTMX_TARBALL")
    if given:
        try:
            data = Path(given).read_bytes()
        except OSError as e:
            raise VendorError(f"COPLANE_HTMX_TARBALL: cannot read {given} ({e})") from e
        check_integrity(data, package, given)
        return data

    cached = cache_dir(environ) / package.tarball_name
    if cached.is_file():
        data = cached.read_bytes()
        # a damaged cache entry is downloaded again rather than failing the build
        if integrity_of(data) in package.integrity.split():
            return data

    try:
        data = download(package.resolved, retry_delay=retry_delay)
    except VendorError as e:
        raise VendorError(
            f"{e}. To build offline, download that file elsewhere and set "
            f"COPLANE_HTMX_TARBALL=/path/to/{package.tarball_name}"
        ) from e
    check_integrity(data, package, package.resolved)
    # a read-only home only costs the next build a download
    with contextlib.suppress(OSError):
        write_atomically(cached, data)
    return data


def read_member(tar: tarfile.TarFile, names: tuple[str, ...]) -> bytes:
    """The contents of the first regular file among names (never a link, never a path we build)."""
    for name in names:
        try:
            member = tar.getmember(name)
        except KeyError:
            continue
        if not member.isfile():
            raise VendorError(f"{name} in the {PACKAGE} tarball is not a regular file")
        stream = tar.extractfile(member)
        if stream is None:
            raise VendorError(f"{name} in the {PACKAGE} tarball cannot be read")
        with stream:
            return stream.read()
    raise VendorError(f"the {PACKAGE} tarball has none of {', '.join(names)}")


def ensure_htmx(root: Path, environ: Mapping[str, str], *, retry_delay: float = 1.0) -> None:
    """Make sure root's vendored htmx and its licence come from the locked tarball."""
    package = read_locked_package(root)
    vendor = root / VENDOR_DIR
    stamp = vendor / STAMP
    done = all((vendor / name).is_file() for name in (SCRIPT, LICENSE))
    if done and stamp.is_file() and stamp.read_text().strip() == package.integrity:
        return

    data = fetch_tarball(package, environ, retry_delay=retry_delay)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            script = read_member(tar, (SCRIPT_MEMBER,))
            license_text = read_member(tar, LICENSE_MEMBERS)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise VendorError(f"cannot unpack the {PACKAGE} {package.version} tarball ({e})") from e
    # the stamp comes last, so an interrupted build never looks finished
    write_atomically(vendor / SCRIPT, script)
    write_atomically(vendor / LICENSE, license_text)
    write_atomically(stamp, f"{package.integrity}\n".encode())


class BuildPyWithHtmx(build_py):
    """build_py that vendors htmx first; in editable mode too, where the source tree is served."""

    def run(self) -> None:
        ensure_htmx(ROOT, os.environ)
        # build_py lists package data lazily; a listing made before the files existed is stale
        self.__dict__.pop("data_files", None)
        super().run()


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithHtmx})
