"""Integration fixtures: a real FHIR server (sekmet-fhir) in a subprocess, apps, and stub hygiene."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cds_service.store import FeedbackStore

STARTUP_TIMEOUT = 30.0
FHIR_JSON = "application/fhir+json"


# --- a store on SQLite and on PostgreSQL (store_url is parametrised in tests/conftest.py) ------

@pytest.fixture
def store(store_url: str) -> Iterator[FeedbackStore]:
    s = FeedbackStore(store_url)
    try:
        s.create_schema()
        yield s
    finally:
        s.dispose()


# --- pytest-httpserver: listen on 127.0.0.1 only (its default host is "localhost") ------------

@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


# --- the service's prefetch threads must not outlive a test ------------------------------------

def join_prefetch_threads(timeout: float = 15.0) -> None:
    """Wait for the service's prefetch worker threads (left running after an early 412) to finish.

    Otherwise a late request from one test could land in the next test's stub log.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("prefetch") and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    stray = [t.name for t in threading.enumerate() if t.name.startswith("prefetch") and t.is_alive()]
    assert not stray, f"prefetch threads still running: {stray}"


@pytest.fixture(autouse=True)
def _no_stray_prefetch_threads() -> Iterator[None]:
    yield
    join_prefetch_threads()


@pytest.fixture
def wait_prefetch_idle() -> Callable[[], None]:
    return join_prefetch_threads


# --- sekmet-fhir ---------------------------------------------------------------------------------

@dataclass
class FhirServer:
    base: str
    session: requests.Session

    def put(self, resource: dict[str, Any]) -> None:
        url = f"{self.base}/{resource['resourceType']}/{resource['id']}"
        response = self.session.put(url, json=resource, headers={"Content-Type": FHIR_JSON}, timeout=30)
        assert response.status_code in (200, 201), f"PUT {url}: {response.status_code} {response.text[:500]}"

    def get(self, relative: str) -> requests.Response:
        return self.session.get(f"{self.base}/{relative}", headers={"Accept": FHIR_JSON}, timeout=30)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sekmet_executable() -> Path:
    exe = Path(sys.executable).parent / ("sekmet.exe" if os.name == "nt" else "sekmet")
    if not exe.exists():
        pytest.fail(
            f"{exe} is missing: sekmet-fhir comes with the test extras; install them with "
            f"`{Path(sys.executable).parent / 'pip'} install -e '.[test]'` (or `make test` on a fresh machine)."
        )
    return exe


@pytest.fixture(scope="session")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A real FHIR R4 server (sekmet-fhir) on 127.0.0.1, for the whole session."""
    exe = sekmet_executable()
    workdir = tmp_path_factory.mktemp("sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = workdir / "settings.yaml"
    settings.write_text(
        f"base_url: {base}\n"
        "host: 127.0.0.1\n"
        f"port: {port}\n"
        f"data_dir: {workdir}/data\n"
        f"db_path: {workdir}/data/sekmet.db\n"
        f"own_private_key_path: {workdir}/keys/k.pem\n"
        "server_auth: {types: [none]}\n"
        "simulator: {enabled: false}\n"
        "log_inbound: false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    env["SEKMET_CONFIG"] = str(settings)
    log_path = workdir / "sekmet.log"

    def log_text() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    with open(log_path, "wb") as log, requests.Session() as session:
        session.trust_env = False  # no proxy between the tests and 127.0.0.1
        proc = subprocess.Popen(
            [str(exe), "serve", "--config", str(settings), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            started = time.monotonic()
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"sekmet exited with {proc.returncode} before serving:\n{log_text()}")
                try:
                    if session.get(f"{base}/metadata", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() - started > STARTUP_TIMEOUT:
                    pytest.fail(f"sekmet did not serve {base}/metadata within {STARTUP_TIMEOUT} s:\n{log_text()}")
                time.sleep(0.1)
            yield FhirServer(base, session)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- a private PostgreSQL the test may stop and start (never the shared one on 5432) ------------

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, in a temporary folder, on a free port of 127.0.0.1."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=2"

    def pg_ctl(self, *args: str) -> None:
        assert PG_BIN is not None
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args)

    def start(self) -> None:
        self.pg_ctl("-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}", "-l",
                    str(self.data / "server.log"), "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")


def as_postgres(*argv: str) -> None:
    """Run a PostgreSQL tool as the postgres user (initdb refuses root)."""
    command = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if PG_BIN is None:
        pytest.fail("PostgreSQL's server binaries are not under /usr/lib/postgresql")
    with private_cluster() as cluster:
        yield cluster


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivatePostgres]:
    """A new cluster, started; stopped on leaving (benchmarks/hostile.py uses it too)."""
    assert PG_BIN is not None, "PostgreSQL's server binaries are not under /usr/lib/postgresql"
    home = Path(tempfile.mkdtemp(prefix="cds-pg-"))  # pytest's own folders are closed to the postgres user
    os.chmod(home, 0o755)
    data = home / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cluster = PrivatePostgres(data, port)
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped by the test
        shutil.rmtree(home, ignore_errors=True)
