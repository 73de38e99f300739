"""Hostile reality against a real `cds-service serve` on PostgreSQL (issue 19): three measurements.

    .venv/bin/python benchmarks/hostile.py [mutations|nul-flood|outage ...] [--requests 6000] [--seconds 60]

- mutations: --requests hook calls and feedback posts, each a real request with one to four of its values
  replaced by an extreme one (dates at year 1 or 9999 with any offset, decimals to 1e308, NULs, lone
  surrogates, hostile text, another JSON type) or a key deleted, sent by four clients at once. Prints the
  answers by status and the count of 5xx and of failed connections.
- nul-flood: --seconds of calls with a NUL in hookInstance (each logs a row PostgreSQL refuses as it is), at 20
  a second and then as fast as two clients go. Prints, every 10 s, the worker RSS, the rows the store holds
  against the calls answered (what the write-behind queue still holds), and the rows shed.
- outage: a private PostgreSQL cluster (initdb in a temporary folder) that the script stops 5 s into the run
  and starts 5 s later, with auth off and then on (ES384 JWTs, each with its own jti). A client calls the hook,
  posts feedback and asks /healthz every 50 ms; prints what it saw in each phase, and the rows stored after.

Each part starts its own server (2 workers, a copy of config/default.yaml). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime as dt
import json
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import payloads  # noqa: E402
import run  # noqa: E402

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SERVICE = payloads.SERVICE_ID
FEEDBACK = f"/cds-services/{SERVICE}/feedback"
DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T.*)?)?)?$")
DATES = ["0001", "9999", "0001-01", "9999-12", "0001-01-01", "9999-12-31", "0001-01-01T00:00:00Z",
         "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999999-12:00",
         "2024-02-29T24:00:00Z", "2016-12-31T23:59:60Z", "0001-01-01T00:00:00-00:00"]
NUMBERS = [1e308, -1e308, 1.7976931348623157e308, 5e-324, 0, -0.0, 1e100, 10**30, -(10**30), 2**64 + 1]
TEXTS = ["\x00", "a\x00b", "\ud800", "x\udfffy", "\u202e", "\ufeff", "", " ", "Ｂ１２", "1e308", "NaN",
         "x" * 20_000, "\U0010ffff", "{{ 7*7 }}", "' OR 1=1 --"]
OTHERS: list[Any] = [None, True, [], {}, [None], {"": None}]


# ---------------------------------------------------------------- a server on a store of its own


def schema_url() -> tuple[str, Callable[[], None]]:
    """A fresh schema on the shared PostgreSQL, and how to drop it."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


def serve(work: Path, store_url: str, port: int, auth: dict[str, Any] | None = None) -> run.Server:
    config = run.write_config(work, f"service-{port}")
    data = yaml.safe_load(config.read_text())
    data["store"]["url"] = store_url
    if auth:
        data["auth"] = {**data["auth"], **auth}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    server = run.Server("service", [str(run.BIN / "cds-service"), "serve", "--config", str(config), "--port",
                                    str(port), "--workers", "2"], port, work / f"service-{port}.log")
    deadline = time.monotonic() + 60
    with session() as s:
        while True:  # /healthz: discovery needs a JWT when auth is on
            try:
                if s.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.proc.poll() is not None:
                server.stop()
                raise RuntimeError(f"the service did not start; see {server.log}")
            time.sleep(0.05)


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def count_rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def metric(port: int, name: str) -> float:
    text = session().get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def errors_in_log(server: run.Server) -> list[str]:
    return [line for line in server.log.read_text(errors="replace").splitlines()
            if "Traceback" in line or '"level": "error"' in line]


# ---------------------------------------------------------------- mutations


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    yield path, value


def extreme(rng: random.Random, old: Any) -> Any:
    if rng.random() < 0.15:
        return rng.choice(DATES + NUMBERS + TEXTS + OTHERS)
    if isinstance(old, bool) or old is None or isinstance(old, (dict, list)):
        return rng.choice(OTHERS + TEXTS[:4] + NUMBERS[:3])
    if isinstance(old, (int, float)):
        return rng.choice(NUMBERS)
    if isinstance(old, str) and DATE.match(old):
        return rng.choice(DATES)
    if rng.random() < 0.5:
        at = rng.randint(0, len(old))
        return old[:at] + rng.choice(TEXTS) + old[at:]
    return rng.choice(TEXTS)


def mutated(rng: random.Random, document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    paths = [path for path, _ in leaves(document) if path]
    for path in rng.sample(paths, min(len(paths), rng.randint(1, 4))):
        parent: Any = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            if rng.random() < 0.1 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = extreme(rng, parent[path[-1]])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced what led here
    return document


def requests_to_send(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    fixtures = sorted((run.ROOT / "tests" / "fixtures").glob("[0-9][0-9]-*.json"))
    scenarios = [(json.loads(f.read_text())["service"], json.loads(f.read_text())["request"]) for f in fixtures]
    scenarios.append((SERVICE, payloads.build()))
    feedback = {"feedback": [{"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2025-03-04T10:00:00Z",
                              "overrideReason": {"reason": {"code": "other", "display": "why"},
                                                 "userComment": "comment"}}]}
    out = []
    for _ in range(count):
        if rng.random() < 0.2:
            out.append((FEEDBACK, json.dumps(mutated(rng, feedback)).encode()))
        else:
            service, request = rng.choice(scenarios)
            out.append((f"/cds-services/{service}", json.dumps(mutated(rng, request)).encode()))
    return out


def mutations(work: Path, count: int) -> None:
    url, drop = schema_url()
    port = run.free_port()
    server = serve(work, url, port)
    statuses: collections.Counter[str] = collections.Counter()
    todo = requests_to_send(count, seed=20261207)
    lock = threading.Lock()

    def client(part: list[tuple[str, bytes]]) -> None:
        with session() as s:
            for path, body in part:
                try:
                    status = str(s.post(f"http://127.0.0.1:{port}{path}", data=body, timeout=30,
                                        headers={"Content-Type": "application/json"}).status_code)
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] += 1

    started = time.perf_counter()
    try:
        threads = [threading.Thread(target=client, args=(todo[n::4],)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        five = sum(n for s, n in statuses.items() if s.startswith("5"))
        failed = sum(n for s, n in statuses.items() if not s.isdigit())
        print(f"mutations: {count} requests in {elapsed:.0f} s (PostgreSQL store); 5xx {five}; connections failed "
              f"{failed}; by status " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())))
        print(f"  errors in the service's log: {len(errors_in_log(server))}")
    finally:
        server.stop()
        drop()


# ---------------------------------------------------------------- NUL flood


def nul_flood(work: Path, seconds: float) -> None:
    url, drop = schema_url()
    port = run.free_port()
    server = serve(work, url, port)
    body = payloads.build()
    answered = collections.Counter[int]()
    stop = threading.Event()
    rate: list[float | None] = [20.0]

    def client() -> None:
        with session() as s:
            while not stop.is_set():
                t0 = time.perf_counter()
                request = dict(body, hookInstance=f"nul\x00{uuid.uuid4()}")
                try:
                    answered[s.post(f"http://127.0.0.1:{port}/cds-services/{SERVICE}", json=request,
                                    timeout=30).status_code] += 1
                except requests.RequestException:
                    answered[0] += 1
                wanted = rate[0]
                if wanted:
                    time.sleep(max(0.0, 1 / wanted - (time.perf_counter() - t0)))

    def rss_mb() -> float:
        return sum(run.status_kb(pid, "VmRSS") or 0 for pid in server.workers()) / 1024

    try:
        for label, wanted, clients in (("20 a second", 20.0, 1), ("as fast as 2 clients go", None, 2)):
            rate[0] = wanted
            stop.clear()
            answered.clear()
            before = count_rows(url, "evaluations")
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            print(f"nul-flood, {label}: workers' RSS at start {rss_mb():.0f} MB")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(10)
                snapshot = dict(answered)
                done = snapshot.get(200, 0)
                stored = count_rows(url, "evaluations") - before
                print(f"  t+{seconds - (end - time.monotonic()):3.0f} s: answered 200 {done}, "
                      f"other {sum(snapshot.values()) - done}; "
                      f"rows stored {stored}, waiting {max(0, done - stored)}, shed "
                      f"{metric(port, 'cds_store_rows_shed_total'):.0f}; workers' RSS {rss_mb():.0f} MB", flush=True)
            stop.set()
            for t in threads:
                t.join()
            time.sleep(2)
            stored = count_rows(url, "evaluations") - before
            print(f"  2 s after: rows stored {stored} of {answered[200]} answered; write errors "
                  f"{metric(port, 'cds_store_write_errors_total'):.0f}")
        print(f"  errors in the service's log: {len(errors_in_log(server))}")
    finally:
        server.stop()
        drop()


# ---------------------------------------------------------------- a database outage


def outage(work: Path, auth_on: bool) -> None:
    from tests.integration.conftest import private_cluster
    from tests.security import test_jwt

    with private_cluster() as cluster:
        measure_outage(work, cluster, auth_on, test_jwt)


def measure_outage(work: Path, cluster: Any, auth_on: bool, test_jwt: Any) -> None:
    port = run.free_port()
    base = f"http://127.0.0.1:{port}"
    auth = None
    if auth_on:
        auth = {"required": True, "public_base_url": base,
                "trusted_issuers": [{"iss": test_jwt.ISS, "jwks": test_jwt.JWKS}]}
    server = serve(work, cluster.url, port, auth)
    request = payloads.build()
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    slowest: dict[str, float] = collections.defaultdict(float)
    phase = ["before"]
    acknowledged = 0

    def call(s: requests.Session, kind: str, method: str, path: str, body: Any = None) -> requests.Response | None:
        headers = {}
        if auth_on:
            headers["Authorization"] = f"Bearer {test_jwt.token(aud=base + path)}"
        key = f"{phase[0]}|{kind}"  # the phase the request was sent in
        t0 = time.perf_counter()
        try:
            answer = s.request(method, base + path, json=body, headers=headers, timeout=30)
            retry = answer.headers.get("Retry-After")
            seen[key][f"{answer.status_code}" + (f" Retry-After {retry}" if retry else "")] += 1
        except requests.RequestException as exc:
            seen[key][type(exc).__name__] += 1
            answer = None
        slowest[key] = max(slowest[key], time.perf_counter() - t0)
        return answer

    def loop(kind: str, once: Callable[[requests.Session], None]) -> None:
        with session() as s:
            while phase[0] != "end":
                once(s)
                time.sleep(0.05)

    def feedback(s: requests.Session) -> None:
        nonlocal acknowledged
        entry = {"card": str(uuid.uuid4()), "outcome": "overridden",
                 "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat()}
        answer = call(s, "feedback", "POST", FEEDBACK, {"feedback": [entry]})
        if answer is not None and answer.status_code == 200:
            acknowledged += 1

    clients = [
        threading.Thread(target=loop, args=("hook call", lambda s: call(
            s, "hook call", "POST", f"/cds-services/{SERVICE}", dict(request, hookInstance=str(uuid.uuid4()))))),
        threading.Thread(target=loop, args=("feedback", feedback)),
        threading.Thread(target=loop, args=("healthz", lambda s: call(s, "healthz", "GET", "/healthz"))),
    ]
    try:
        for t in clients:
            t.start()
        time.sleep(5)
        phase[0] = "stopping"
        cluster.stop()
        phase[0] = "down"
        time.sleep(5)
        phase[0] = "starting"
        cluster.start()
        phase[0] = "after"
        time.sleep(10)
        phase[0] = "end"
        for t in clients:
            t.join()
        time.sleep(3)
        stored = count_rows(cluster.url, "feedback")
        print(f"outage, auth {'on' if auth_on else 'off'} (the database down from 5 s to 10 s):")
        phases = ["before", "stopping", "down", "starting", "after"]
        for key in sorted(seen, key=lambda k: (phases.index(k.split("|")[0]), k)):
            when, kind = key.split("|")
            answers = ", ".join(f"{status} x{n}" for status, n in sorted(seen[key].items()))
            print(f"  {when:8} {kind:9}: {answers}; slowest {slowest[key] * 1000:.0f} ms")
        print(f"  feedback acknowledged {acknowledged}, stored {stored}; errors in the service's log: "
              f"{len(errors_in_log(server))}")
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["mutations", "nul-flood", "outage"])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cds-hostile-") as tmp:
        work = Path(tmp)
        for part in args.parts:
            if part == "mutations":
                mutations(work, args.requests)
            elif part == "nul-flood":
                nul_flood(work, args.seconds)
            elif part == "outage":
                outage(work, auth_on=False)
                outage(work, auth_on=True)
            else:
                parser.error(f"unknown part {part!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
