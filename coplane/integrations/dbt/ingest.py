"""Reading a dbt target directory and sending what it says; running dbt, then doing that.

`read_target` reads manifest.json, run_results.json and sources.json from a target
directory and translates them (artifacts.py) before anything is sent, so an artifact that
cannot be used sends nothing. `ingest` sends the events through `CoplaneClient`.

`coplane dbt run -- ARGS` runs `dbt ARGS` (the executable COPLANE_DBT names, else the `dbt`
beside this Python, else on PATH), its output passing through, then ingests the artifacts
dbt wrote in that run: the target directory is `--target-path`, else DBT_TARGET_PATH, else
`target-path` of dbt_project.yml, else `target`, under `--project-dir` (else
DBT_PROJECT_DIR, else the current directory). An artifact dbt did not rewrite (its size and
mtime unchanged) is left out, so a dbt that failed before writing any never reports an older
invocation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from coplane.client import CoplaneClient, SendResult
from coplane.integrations.dbt.artifacts import (
    ArtifactError,
    Manifest,
    RunResults,
    Sources,
    Translation,
    parse_manifest,
    parse_run_results,
    parse_sources,
    translate,
)

MANIFEST = "manifest.json"
RUN_RESULTS = "run_results.json"
SOURCES = "sources.json"
RESULT_FILES = (RUN_RESULTS, SOURCES)
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

Stamp = tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class IngestSummary:
    """What one ingest read and what became of its events."""

    target: Path
    translation: Translation
    sent: SendResult

    def lines(self) -> list[str]:
        """The summary in words, one fact a line."""
        t, sent = self.translation, self.sent
        lines = []
        if t.invocation_id is not None:
            command = f"`dbt {t.command}`" if t.command else "dbt"
            lines.append(
                f"{t.pipeline}: {command} invocation {t.invocation_id} {t.state}: "
                f"{t.runs} node runs, {t.checks} test results"
            )
        if t.freshness:
            lines.append(f"{t.pipeline}: {t.freshness} source freshness results")
        lines += t.notes
        lines.append(
            f"{len(t.events)} events: {sent.accepted} new, {sent.duplicates} already stored"
            + (f", {sent.spooled} spooled (server unreachable)" if sent.spooled else "")
            + (f", {sent.lost} lost (spool not writable)" if sent.lost else "")
        )
        return lines


def read_target(target: Path, include: Collection[str] = RESULT_FILES) -> Translation:
    """The events of a target directory's artifacts; ArtifactError naming the file if unusable.

    `include` limits which of run_results.json and sources.json are read. manifest.json is
    needed for either, since only it has the project, the relations and the lineage.
    """
    if not target.is_dir():
        problem = "not a directory" if target.exists() else "no such directory"
        raise ArtifactError(str(target), f"{problem} (give dbt's target directory)")
    present = [name for name in RESULT_FILES if name in include and (target / name).is_file()]
    if not present:
        raise ArtifactError(
            str(target),
            f"no {RUN_RESULTS} or {SOURCES} here: run `dbt build` (or run, test, "
            "source freshness) first",
        )
    manifest_path = target / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(str(manifest_path), "not found (dbt writes it with every run)")
    manifest: Manifest = parse_manifest(_read(manifest_path), str(manifest_path))
    run_results: RunResults | None = None
    sources: Sources | None = None
    if RUN_RESULTS in present:
        path = target / RUN_RESULTS
        run_results = parse_run_results(_read(path), str(path))
    if SOURCES in present:
        path = target / SOURCES
        sources = parse_sources(_read(path), str(path))
    return translate(manifest, run_results, sources)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(str(path), f"cannot be read: {exc.strerror or exc}") from None


def ingest(
    target: Path, client: CoplaneClient, include: Collection[str] = RESULT_FILES
) -> IngestSummary:
    """Read a target directory and send its events (ArtifactError before sending anything)."""
    translation = read_target(target, include)
    sent = client.send_events(translation.events) if translation.events else SendResult()
    return IngestSummary(target, translation, sent)


# `coplane dbt run`


def dbt_executable() -> str | None:
    """The `dbt` that COPLANE_DBT names, else the one installed beside this Python, else the
    one on PATH."""
    named = os.environ.get("COPLANE_DBT")
    if named:
        return named
    beside = Path(sys.executable).parent / "dbt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("dbt")


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of the last `--name VALUE` or `--name=VALUE` among dbt's arguments."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def _configured_target_path(project: Path) -> str | None:
    """`target-path` of dbt_project.yml, when it is set to a plain string."""
    try:
        config = yaml.safe_load((project / "dbt_project.yml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = config.get("target-path") if isinstance(config, dict) else None
    return value if isinstance(value, str) and "{{" not in value else None


def target_dir(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Path:
    """Where `dbt ARGS` run in `cwd` writes its artifacts."""
    project = cwd / (_option(args, "--project-dir") or env.get("DBT_PROJECT_DIR") or ".")
    target = (
        _option(args, "--target-path")
        or env.get("DBT_TARGET_PATH")
        or _configured_target_path(project)
        or "target"
    )
    return project / target


def stamps(target: Path) -> dict[str, Stamp]:
    """The size, mtime and inode of each result file, to tell which ones dbt rewrites."""
    result: dict[str, Stamp] = {}
    for name in RESULT_FILES:
        try:
            st = (target / name).stat()
        except OSError:
            result[name] = None
        else:
            result[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return result


def rewritten(before: Mapping[str, Stamp], after: Mapping[str, Stamp]) -> list[str]:
    """The result files that exist now and changed since `before`."""
    return [name for name in RESULT_FILES if after.get(name) not in (None, before.get(name))]


def run_dbt(executable: str, args: Sequence[str]) -> int:
    """Run dbt with its output passing through; its exit code (128+N when signal N killed it)."""
    try:
        process = subprocess.Popen([executable, *args])
    except FileNotFoundError:
        return EXIT_NOT_FOUND
    except PermissionError:
        return EXIT_NOT_EXECUTABLE
    while True:
        try:
            code = process.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached dbt too: let it finish
            continue
        return 128 - code if code < 0 else code
