"""Every shell and Python example in README.md and docs/ runs, in order, as a reader pastes it.

Each page is one reader's session: a fresh folder, its shell variables carried from one block
to the next, and a `coplane server` on 127.0.0.1:4200 (the address the examples use). The
README's session starts from a copy of the checkout and runs its install line word for word,
`pip install .` included; the docs pages reuse the virtualenv it made, as `.venv` in their
folder, so `.venv/bin/coplane` in any example is the installed package.

A fenced block runs when its language is `sh` or `python`; a `yaml` block with
`title="NAME"` is written to the file NAME, as a reader saves it. An HTML comment right
before a block changes that: `<!-- example: skip WHY -->` (a block that needs a program this
machine lacks, or that is the test command itself) or `<!-- example: background -->` (a
long-running command, such as a server or a worker, left running until the page ends).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import default_port
from tests.fake_http import FakeService, Reply, Request, fake_service

ROOT = Path(__file__).resolve().parents[1]
PORT = 4200  # the examples' address, kept as written
BLOCK = re.compile(
    r"(?:<!-- example: (?P<directive>\w+)(?: (?P<why>[^>]*?))? -->\n)?"
    r"^```(?P<lang>\w*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)
RUNS = {"sh", "python"}
TIMEOUT = 300  # seconds one block may take (the README's install line is the slow one)


@dataclass
class Block:
    """One fenced code block of a page, with what the comment before it says."""

    page: str
    line: int
    lang: str
    attrs: str
    body: str
    directive: str | None = None
    why: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md, then the docs pages in the site's order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    found: list[Path] = [ROOT / "README.md"]

    def walk(entries: list[object]) -> None:
        for entry in entries:
            if isinstance(entry, str):
                found.append(ROOT / "docs" / entry)
            elif isinstance(entry, dict):
                for value in entry.values():
                    if isinstance(value, str):
                        found.append(ROOT / "docs" / value)
                    elif isinstance(value, list):
                        walk(value)

    walk(config["nav"])
    return found


def blocks(path: Path) -> list[Block]:
    """The page's code blocks, in order."""
    text = path.read_text()
    name = str(path.relative_to(ROOT))
    return [
        Block(
            page=name,
            line=text.count("\n", 0, m.start("body")),
            lang=m.group("lang"),
            attrs=m.group("attrs"),
            body=m.group("body"),
            directive=m.group("directive"),
            why=m.group("why"),
        )
        for m in BLOCK.finditer(text)
    ]


@dataclass
class Session:
    """A reader's terminal: a folder, shell variables, and what runs in the background."""

    folder: Path
    env: dict[str, str]
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def run(self, block: Block) -> None:
        if block.lang == "yaml":
            title = re.search(r'title="([^"]+)"', block.attrs)
            if title:
                (self.folder / title.group(1)).write_text(block.body)
            return
        if block.lang not in RUNS or block.directive == "skip":
            return
        if block.lang == "python":
            script = self.folder / "example.py"
            script.write_text(block.body)
            command = [str(self.folder / ".venv" / "bin" / "python"), str(script)]
        else:
            saved = self.folder / ".example-env"
            # set -a: every variable a block sets is there for the next block, as in one shell
            prelude = f"set -a; [ -f {saved} ] && . {saved}; set -euo pipefail\n"
            epilogue = f"\nexport -p > {saved}\n"
            command = ["bash", "-c", prelude + block.body + epilogue]
        if block.directive == "background":
            if "coplane server" in block.body:
                self.stop()  # the reader stops the server before starting it anew
            log = self.folder / f"background-{len(self.logs)}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.background.append(
                    subprocess.Popen(
                        command, cwd=self.folder, env=self.env, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )  # fmt: skip
            if "coplane server" in block.body:
                wait_for_server(block, log)
            return
        done = subprocess.run(
            command, cwd=self.folder, env=self.env, capture_output=True, timeout=TIMEOUT
        )
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{output[-3000:]}"

    def stop(self) -> None:
        """End what runs in the background, as Ctrl-C would."""
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.background:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        stopping = bool(self.background)
        self.background.clear()
        # the shell is gone; its server may still be closing its socket, as after Ctrl-C
        deadline = time.monotonic() + 20
        while stopping and not port_free() and time.monotonic() < deadline:
            time.sleep(0.1)


def wait_for_server(block: Block, log: Path, timeout: float = TIMEOUT) -> None:
    """Wait until the server a block started answers its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{block.where}: no server on port {PORT}:\n{log.read_text()[-3000:]}")


def port_free() -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", PORT)) != 0


def reader_env(folder: Path, slack: FakeService) -> dict[str, str]:
    """The environment of a reader's shell, with coplane's data kept in the session folder.

    The reader's Slack webhook is a local fake that checks the message, so that address
    (loopback, which coplane refuses by default) is allowed as a reader's proxy would be.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COPLANE_", "VIRTUAL_ENV"))}
    env["SLACK_WEBHOOK_URL"] = f"{slack.url}/services/T000/B000/XXXX"
    env["COPLANE_OUTBOUND_ALLOW"] = "127.0.0.1/32"
    env["HOME"] = str(folder / "home")
    env["XDG_DATA_HOME"] = str(folder / "home" / "data")
    env["XDG_CACHE_HOME"] = str(folder / "home" / "cache")
    # pip's cache stays the real user's, so the install line does not download again
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    (folder / "home").mkdir(exist_ok=True)
    return env


def copy_checkout(to: Path) -> None:
    """The checkout's files as git sees them (tracked, and new ones not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = to / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def slack_answer(request: Request) -> Reply:
    """Slack's incoming webhook: a JSON message with text or blocks is answered `ok`."""
    body = request.json()
    if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
        return Reply(400, b"invalid_payload")
    return Reply(200, b"ok")


@pytest.fixture(scope="module", autouse=True)
def port_4200() -> Iterator[None]:
    """The examples' server address, held for the whole module."""
    with default_port():
        yield


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeService]:
    with fake_service(slack_answer) as service:
        yield service


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, slack: FakeService) -> Path:
    """The README's session, run first: its folder holds the `.venv` its install line made."""
    if not port_free():
        pytest.fail(f"port {PORT} is in use: the examples need it free")
    folder = tmp_path_factory.mktemp("readme")
    copy_checkout(folder)
    session = Session(folder, reader_env(folder, slack))
    try:
        for block in blocks(ROOT / "README.md"):
            session.run(block)
    finally:
        session.stop()
    assert (folder / ".venv" / "bin" / "coplane").exists(), "the README installs no .venv"
    return folder / ".venv"


def test_readme_examples_run(installed: Path, slack: FakeService) -> None:
    # the fixture ran them (failing with the block that failed); the first SLA's channel
    # test reached Slack
    assert installed.is_dir()
    assert any(r.path.startswith("/services/") for r in slack.requests), "no Slack message"


@pytest.mark.parametrize("page", [p for p in pages() if p.name != "README.md"], ids=str)
def test_docs_examples_run(page: Path, installed: Path, slack: FakeService, tmp_path: Path) -> None:
    runnable = [b for b in blocks(page) if b.lang in RUNS | {"yaml"}]
    if not runnable:
        return
    (tmp_path / ".venv").symlink_to(installed)
    env = reader_env(tmp_path, slack)
    session = Session(tmp_path, env)
    try:
        # the page assumes the server the README started; a page that starts one of its own
        # stops this one first, as its reader would
        server = Block(page.name, 0, "sh", "", ".venv/bin/coplane server\n", "background")
        session.run(server)
        for block in runnable:
            session.run(block)
    finally:
        session.stop()
