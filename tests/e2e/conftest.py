"""A real `cds-service serve` (gunicorn, two workers) on 127.0.0.1, started once per module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import DEFAULT_CONFIG, ROOT, deep_merge

CLI = Path(sys.executable).parent / "cds-service"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MAX_BODY_BYTES = 65536
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright never downloads a browser here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots, ignored by git


def write_config(path: Path, db: Path, overrides: dict[str, Any] | None = None) -> Path:
    """default.yaml with the store in a temporary SQLite file, plus overrides."""
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())
    base["store"]["url"] = f"sqlite:///{db}"
    path.write_text(yaml.safe_dump(deep_merge(base, overrides or {}), sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_session() -> requests.Session:
    """A requests session that talks to 127.0.0.1 directly, whatever proxy the environment names."""
    session = requests.Session()
    session.trust_env = False
    return session


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=child_env(), check=False
    )


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CDS_SERVICE_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Server:
    config: Path
    store_url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def stop(self) -> int | None:
        """SIGTERM; the exit code, or None when it did not exit within STOP_TIMEOUT (then it is killed)."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            return None


def start_server(tmp: Path, overrides: dict[str, Any] | None = None, workers: int = 2,
                 wrapper: tuple[str, ...] = ()) -> Server:
    """Start `cds-service serve` (under `wrapper`, a command such as prlimit) and wait until GET /healthz answers
    200; fail with its stderr otherwise."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "cds.db"
    config = write_config(tmp / "config.yaml", db, overrides)
    last_error = ""
    for attempt in range(3):  # another process may take the free port between bind and gunicorn's bind
        port = free_port()
        log = tmp / f"server-{attempt}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*wrapper, str(CLI), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", str(workers)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(),
            )
        server = Server(config, f"sqlite:///{db}", port, process, log)
        deadline = time.monotonic() + START_TIMEOUT
        with new_session() as session:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if session.get(server.url("/healthz"), timeout=2).status_code == 200:
                        return server
                except requests.RequestException:  # not listening yet, or busy starting
                    pass
                time.sleep(0.2)
        server.stop()
        last_error = server.stderr()
        if "Address already in use" not in last_error:
            break
    pytest.fail(f"cds-service serve did not answer /healthz within {START_TIMEOUT:.0f} s; its output:\n{last_error}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("serve"), {"server": {"max_body_bytes": MAX_BODY_BYTES}}, workers=2
    )
    yield srv
    code = srv.stop()
    assert code is not None, f"the server did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM:\n{srv.stderr()}"


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with new_session() as session:
        yield session


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a server of the test's own; stopped (SIGTERM) at teardown if the test has not."""
    started: list[Server] = []

    def start(overrides: dict[str, Any] | None = None, workers: int = 2, wrapper: tuple[str, ...] = ()) -> Server:
        srv = start_server(tmp_path / f"srv{len(started)}", overrides, workers, wrapper)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright, one per test module."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("These tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium "
                    "(`make test` installs it).")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageWatch:
    """What a page did besides what a test asked of it."""

    page: Any
    errors: list[str]
    outside: list[str]  # requests the `allowed` predicate refused
    dialogs: list[str]


@contextmanager
def watched_page(browser: Any, allowed: Callable[[str], bool], screenshot: str) -> Iterator[PageWatch]:
    """A 1280x900 page that records console errors, page errors, failed requests, requests to URLs that are
    not `allowed` and dialogs (dismissed). On leaving, a full-page screenshot goes to tests/artifacts/
    `screenshot`, and there must have been no error and no outside request."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = PageWatch(page, [], [], [])
    page.on("console", lambda msg: watch.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    page.on("requestfailed", lambda req: watch.errors.append(f"request failed: {req.url} {req.failure}"))
    page.on("request", lambda req: None if allowed(req.url) else watch.outside.append(req.url))
    page.on("dialog", lambda dialog: (watch.dialogs.append(dialog.message), dialog.dismiss()))
    try:
        yield watch
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    finally:
        context.close()
    assert watch.errors == [], f"browser errors: {watch.errors}"
    assert watch.outside == [], f"requests to anything but the file: {watch.outside}"
