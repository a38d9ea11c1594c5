"""Virtualenvs for the outside programs the tests drive (dbt, Airflow), made once and reused.

Each program pins its own dependencies, which would clash with coplane's, so it gets a
virtualenv of its own, as it would on a user's machine. They live in the user's cache
directory (COPLANE_TEST_VENVS moves it), outside the checkout, so that every clone and
every CI run on a machine reuses them; one is remade when its requirements change.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import platformdirs


def venvs_root() -> Path:
    """Where the test virtualenvs live."""
    given = os.environ.get("COPLANE_TEST_VENVS")
    if given:
        return Path(given)
    return Path(platformdirs.user_cache_dir("coplane-tests", appauthor=False)) / "venvs"


def program_venv(name: str, requirements: Sequence[str], timeout: float = 1800) -> Path:
    """The virtualenv `name` with `requirements` installed: made (or remade) when needed."""
    venv = venvs_root() / name
    marker = venv / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    venv.parent.mkdir(parents=True, exist_ok=True)
    # test workers in parallel may want the same one: one makes it while the others wait
    with (venv.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = (venv / "bin" / "python").is_file() and marker.is_file()
        if ready and marker.read_text() == wanted:
            return venv
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *requirements], check=True, timeout=timeout)
        marker.write_text(wanted)  # written last: an interrupted install is redone
    return venv
