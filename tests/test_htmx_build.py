"""The build vendors htmx from exactly the tarball package-lock.json pins."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import zipfile
from importlib.resources import files
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDORED = "coplane/web/static/vendor/htmx.min.js"


def load_setup() -> ModuleType:
    """Import setup.py's functions; setup() itself only runs when the file is __main__."""
    spec = importlib.util.spec_from_file_location("coplane_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def locked_version() -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version: str = lock["packages"]["node_modules/htmx.org"]["version"]
    return version


def make_tarball(path: Path, script: bytes = b'var htmx={version:"0.0.0"};') -> bytes:
    """A small npm-style tarball holding htmx's script and licence; returns its bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [("package/dist/htmx.min.js", script), ("package/LICENSE", b"0BSD")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def write_lock(root: Path, integrity: str, resolved: str = "https://example.invalid/h.tgz") -> None:
    entry = {"version": "0.0.0", "resolved": resolved, "integrity": integrity}
    lock = {"lockfileVersion": 3, "packages": {"node_modules/htmx.org": entry}}
    (root / "package-lock.json").write_text(json.dumps(lock))


def test_installed_package_has_the_locked_htmx() -> None:
    script = files("coplane").joinpath("web/static/vendor/htmx.min.js").read_text()
    assert script, "htmx.min.js is empty"
    match = re.search(r'version:"([^"]+)"', script)
    assert match and match.group(1) == locked_version()
    assert files("coplane").joinpath("web/static/vendor/htmx.LICENSE").read_text()


def test_a_tarball_that_differs_from_the_lock_fails_the_build(tmp_path: Path) -> None:
    setup = load_setup()
    tarball = tmp_path / "htmx.org-2.0.0.tgz"
    make_tarball(tarball)
    lock_integrity = "sha512-" + "A" * 86 + "=="
    write_lock(tmp_path, lock_integrity)

    with pytest.raises(setup.VendorError) as error:
        setup.ensure_htmx(tmp_path, {"COPLANE_HTMX_TARBALL": str(tarball)})
    message = str(error.value)
    actual = setup.integrity_of(tarball.read_bytes())
    assert "package-lock.json" in message and lock_integrity in message and actual in message
    assert not (tmp_path / "coplane").exists()


def test_a_matching_tarball_is_unpacked_once(tmp_path: Path) -> None:
    setup = load_setup()
    tarball = tmp_path / "htmx.org-0.0.0.tgz"
    data = make_tarball(tarball)
    write_lock(tmp_path, setup.integrity_of(data))
    env = {"COPLANE_HTMX_TARBALL": str(tarball)}

    setup.ensure_htmx(tmp_path, env)
    vendor = tmp_path / "coplane/web/static/vendor"
    assert (vendor / "htmx.min.js").read_bytes() == b'var htmx={version:"0.0.0"};'
    assert (vendor / "htmx.LICENSE").read_bytes() == b"0BSD"
    # the stamp matches the lock, so the next build neither reads the tarball nor the network
    tarball.unlink()
    setup.ensure_htmx(tmp_path, env)


def test_an_unreachable_registry_names_the_url_and_the_offline_setting(tmp_path: Path) -> None:
    setup = load_setup()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/htmx.org-0.0.0.tgz"
    write_lock(tmp_path, "sha512-" + "A" * 86 + "==", resolved=url)

    with pytest.raises(setup.VendorError) as error:
        setup.ensure_htmx(tmp_path, {"XDG_CACHE_HOME": str(tmp_path / "cache")}, retry_delay=0)
    assert url in str(error.value)
    assert "COPLANE_HTMX_TARBALL=/path/to/htmx.org-0.0.0.tgz" in str(error.value)


@pytest.mark.slow
def test_a_wheel_built_from_the_tracked_files_carries_htmx(tmp_path: Path) -> None:
    # Only the files a checkout has (the vendored htmx is ignored by git), so the build fetches
    # the tarball itself. It comes from the user's cache, which the editable install that runs
    # these tests has filled, so this needs the network only on a cold cache; the integrity
    # check runs either way.
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    source = tmp_path / "source"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is skipped
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    assert not (source / VENDORED).exists()

    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip_wheel, "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("coplane-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(VENDORED) == (ROOT / VENDORED).read_bytes()
        assert archive.read("coplane/web/static/vendor/htmx.LICENSE")
        assert "coplane/web/static/vendor/.htmx-integrity" not in archive.namelist()
