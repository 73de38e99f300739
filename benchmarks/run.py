"""Speed of the CDS Hooks service, measured against the physical floor (issue 6). A measurement, not a test.

    .venv/bin/python benchmarks/run.py            # full run, about 4-5 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # smoke run, under a minute
    .venv/bin/python benchmarks/run.py --pin      # the headline: one core for the servers, one for wrk (~3 min)

Prints, for the typical encounter-discharge request and for long injection histories:
  1. in-process latency through the Flask test client, and the time per stage;
  2. HTTP throughput and latency under `cds-service serve` (2 workers) with wrk, alternating with the floor app;
  3. cold start: process start to the first 200 on /cds-services;
  4. peak RSS per gunicorn worker after the HTTP load.
Only 127.0.0.1 is used; every load run is bounded in time. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402

from cds_service import protocol  # noqa: E402  - here, not in checked_request: an import there costs its stage
from cds_service.fhir import prefetch  # noqa: E402

BIN = Path(sys.executable).parent
# The floor runs with the service's own threads per worker (config/default.yaml, server.threads).
THREADS = int(yaml.safe_load((ROOT / "config" / "default.yaml").read_text(encoding="utf-8"))["server"]["threads"])
HISTORIES = (1, 10, 100, 1000)
CONNECTIONS = (16, 64)
N_BODIES = 200
INSTALL_WRK = "apt-get update && apt-get install -y wrk"


@dataclass(frozen=True)
class Plan:
    inproc_seconds: float  # time budget per size, whole requests through the test client
    stage_seconds: float  # time budget per size, stage by stage
    min_samples: int
    max_samples: int
    warmup_seconds: float  # per app, before the measured wrk runs
    wrk_seconds: int
    rounds: int
    cold_starts: int


FULL = Plan(inproc_seconds=8, stage_seconds=4, min_samples=20, max_samples=3000,
            warmup_seconds=3, wrk_seconds=10, rounds=3, cold_starts=3)
QUICK = Plan(inproc_seconds=1, stage_seconds=0.5, min_samples=3, max_samples=300,
             warmup_seconds=1, wrk_seconds=3, rounds=1, cold_starts=1)

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print(f"  !! {text}")


# ---------------------------------------------------------------- figures


def p99(samples: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (the maximum when there are fewer than 100 samples)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def kb(n: int) -> str:
    return f"{n / 1000:.1f} KB" if n < 1_000_000 else f"{n / 1_000_000:.2f} MB"


def timed_loop(step: Callable[[int], float | None], plan: Plan, budget: float) -> list[float]:
    """Call step(i) until the time budget is spent (at least min_samples, at most max_samples times)."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < plan.max_samples and (len(samples) < plan.min_samples or time.perf_counter() < deadline):
        t = step(len(samples))
        if t is not None:
            samples.append(t)
    return samples


# ---------------------------------------------------------------- other load on the machine

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU-seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # less idle and iowait


def process_cpu(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])  # utime, stime
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """The share of the machine's CPU used by processes other than ours while a measurement ran.

    Other engineers' tests on a shared machine show here: figures taken while it is high are pessimistic.
    """

    def __init__(self, ours: Callable[[], float]) -> None:
        self.ours = ours
        self.t0, self.busy0, self.ours0 = time.perf_counter(), machine_busy(), ours()

    def percent(self) -> float:
        wall = time.perf_counter() - self.t0
        other = (machine_busy() - self.busy0) - (self.ours() - self.ours0)
        return max(0.0, 100 * other / ((os.cpu_count() or 1) * wall))


# ---------------------------------------------------------------- setup


def write_config(directory: Path, name: str, root: Path = ROOT) -> Path:
    """A copy of `root`'s config/default.yaml with its own SQLite store and auth off."""
    cfg = yaml.safe_load((root / "config" / "default.yaml").read_text(encoding="utf-8"))
    cfg["store"]["url"] = f"sqlite:///{directory / (name + '.db')}"
    cfg["auth"]["required"] = False
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    for extra in ("sandbox-jwks.json",):  # files the configuration names relative to itself
        if (root / "config" / extra).exists():
            shutil.copy(root / "config" / extra, directory / extra)
    return path


def bodies(n_admins: int, count: int, seed: int) -> list[bytes]:
    template = payloads.build(n_admins)
    rng = random.Random(seed)
    return [payloads.distinct(template, rng).encode() for _ in range(count)]


def header() -> None:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    dirty = len([line for line in git("status", "--porcelain").splitlines() if line.strip()])
    import fhir.resources
    import pydantic

    print("CDS service benchmark (issue 6)")
    print(f"  machine  : {os.cpu_count()} CPUs, {cpu}; Linux {platform.release()}")
    print(f"  python   : {platform.python_version()}; fhir.resources {fhir.resources.__version__}; "
          f"pydantic {pydantic.VERSION}")
    print(f"  code     : {git('rev-parse', '--short', 'HEAD').strip() or '?'}"
          + (f" + {dirty} uncommitted paths" if dirty else ""))
    typical = payloads.build(3)
    compact, indented = payloads.size(typical)
    print(f"  typical request: 1 Encounter, 3 MedicationAdministrations, 4 Conditions, 1 ChargeItem, 1 Coverage; "
          f"{kb(compact)} as sent (compact JSON), {kb(indented)} indented")
    print("  histories: " + ", ".join(f"{n} admin{'s' if n > 1 else ''} = {kb(payloads.size(payloads.build(n))[0])}"
                                      for n in HISTORIES))


# ---------------------------------------------------------------- 1. in-process


def silence_logs() -> Any:
    """Keep the service's JSON log lines (they are part of a request's cost) but send them to /dev/null."""
    import logging

    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
    for handler in logging.getLogger("cds_service").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    return sink


def checked_request(rt: Any, service: Any, body: Any) -> tuple[Any, dict[str, Any]]:
    """The CDS Hooks request check and prefetch of a parsed body, as cds_service.service.handle_hook makes them:
    (the HookRequest, the prefetched values by key). Its stage in run.py's time per stage and instructions.py's."""
    settings = rt.settings
    hook_request = protocol.parse_hook_request(body, service, settings.max_cards)
    values, _client = prefetch.resolve(
        templates=service.prefetch, context=hook_request.context, prefetch=hook_request.prefetch,
        fhir_server=hook_request.fhir_server, token=hook_request.access_token,
        allowed_servers=settings.fhir.allowed_servers, make_client=rt.make_fhir_client,
        max_pages=settings.fhir.max_pages,
    )
    return hook_request, values


def in_process(config: Path, plan: Plan) -> dict[str, float]:
    from cds_service import facts, rules
    from cds_service import service as service_mod
    from cds_service.app import create_app
    from cds_service.fhir import parse
    from cds_service.fhir.gather import unresolved_medications
    from cds_service.jsontext import loads_plain

    print("\n1. IN-PROCESS (Flask test client, one thread; ms per request)")
    app = create_app(config)
    silence_logs()
    client = app.test_client()
    rt = app.extensions["cds"]
    prepare = getattr(rules, "prepare", lambda visit: visit)  # handle_hook prepares the visit before the rules
    settings, service = rt.settings, rt.services[payloads.SERVICE_ID]
    path = f"/cds-services/{payloads.SERVICE_ID}"
    sizes: list[tuple[str, int]] = [("typical (3 admins)", 3)] + [(f"history {n:>4} admins", n) for n in HISTORIES]
    summary: dict[str, float] = {}

    print(f"   {'request':<20}{'body':>10}{'n':>6}{'median':>10}{'p99':>10}{'min':>10}{'other CPU':>11}   cards")
    stage_rows: dict[str, list[float]] = {}
    for label, n_admins in sizes:
        copies = 20 if n_admins <= 100 else 4
        reqs = bodies(n_admins, copies, seed=n_admins)
        statuses: dict[int, int] = {}

        def post(i: int, reqs: list[bytes] = reqs, statuses: dict[int, int] = statuses) -> float:
            t0 = time.perf_counter()
            resp = client.post(path, data=reqs[i % len(reqs)], content_type="application/json")
            elapsed = time.perf_counter() - t0
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            return elapsed

        warm = client.post(path, data=reqs[0], content_type="application/json")
        rules_fired = sorted({c["source"].get("topic", {}).get("code", "?") for c in (warm.get_json() or {}).get(
            "cards", [])}) if warm.status_code == 200 else [f"HTTP {warm.status_code}"]
        for i in range(2):
            post(i)
        statuses.clear()
        load = OtherLoad(time.process_time)
        samples = timed_loop(post, plan, plan.inproc_seconds)
        other = load.percent()
        bad = {s: c for s, c in statuses.items() if s != 200}
        print(f"   {label:<20}{kb(len(reqs[0])):>10}{len(samples):>6}{ms(statistics.median(samples)):>10}"
              f"{ms(p99(samples)):>10}{ms(min(samples)):>10}{other:>10.0f}%   {', '.join(rules_fired)}")
        if bad:
            problem(f"in-process {label}: non-200 responses {bad}")
        summary[f"{n_admins}"] = statistics.median(samples)

        # the same work, stage by stage, as cds_service.service.handle_hook does it
        times: dict[str, list[float]] = {k: [] for k in STAGES}

        def staged(
            i: int, reqs: list[bytes] = reqs, times: dict[str, list[float]] = times, label: str = label
        ) -> float:
            raw = reqs[i % len(reqs)]
            t0 = time.perf_counter()
            body, plain_text = loads_plain(raw, settings.max_json_depth)
            t1 = time.perf_counter()
            hook_request, values = checked_request(rt, service, body)
            t2 = time.perf_counter()
            draft = hook_request.context.get("draftOrders") if service.kind == "order-sign" else None
            plain = {*hook_request.prefetch, parse.DRAFT_ORDERS} if plain_text else ()
            resources = parse.read(values, draft, hook_request.context.get("encounterId"), plain)
            missing = unresolved_medications(resources)
            t3 = time.perf_counter()
            visit = facts.build(resources, rt.terms, hook_kind=service.kind,
                                patient_id=str(hook_request.context["patientId"]),
                                encounter_id=hook_request.context.get("encounterId"))
            t4a = time.perf_counter()
            visit = prepare(visit)
            t4 = time.perf_counter()
            findings = tuple(rules.evaluate(visit, service_mod.enabled_rules(settings, hook_request.options)))
            t5 = time.perf_counter()
            cards = rt.renderer.render(findings, visit, hook_request.hook_instance, resources.charge_json,
                                       max_cards=hook_request.options.get("max-cards"))
            t6 = time.perf_counter()
            if cards:
                rt.store.record_cards(service.id, hook_request.hook_instance, cards)
            t7 = time.perf_counter()
            app.json.dumps({"cards": cards})  # what jsonify does
            t8 = time.perf_counter()
            if resources.invalid or missing:
                raise RuntimeError(f"{label}: invalid resources {resources.invalid} / unresolved {missing}")
            marks = (t0, t1, t2, t3, t4a, t4, t5, t6, t7, t8)
            for key, start, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
                times[key].append(end - start)
            return t8 - t0

        with app.app_context():
            staged(0)
            for v in times.values():
                v.clear()
            totals = timed_loop(staged, plan, plan.stage_seconds)
        column = "typical" if label.startswith("typical") else f"hist {n_admins}"
        stage_rows[column] = [statistics.median(times[k]) for k in STAGES]
        stage_rows[column] += [statistics.median(totals), statistics.median(samples)]

    print("\n   Time per stage (median ms), the calls of cds_service.service.handle_hook made one by one:")
    names = list(stage_rows)
    print(f"   {'stage':<44}" + "".join(f"{n:>11}" for n in names))
    texts = [*STAGES.values(), "sum of stages (median of sums)", "whole request through the test client"]
    for idx, text in enumerate(texts):
        print(f"   {text:<44}" + "".join(f"{ms(stage_rows[n][idx]):>11}" for n in names))
    rest = [stage_rows[n][-1] - stage_rows[n][-2] for n in names]
    print(f"   {'rest: Flask, logs, metrics, evaluation log':<44}"
          + "".join(f"{ms(r) if r >= 0 else '(<0)':>11}" for r in rest))
    print("   (parse = the first three rows; 'store' is handle_hook's record_cards, outside the five stages;\n"
          "    'rest' = whole request - sum of stages, so noisy where samples are few)")
    rt.store.engine.dispose()
    return summary


STAGES = {
    "json": "parse: JSON, depth, text (body.loads_plain)",
    "request": "parse: CDS Hooks request check + prefetch",
    "fhir": "parse: FHIR validation (fhir.parse.read)",
    "facts": "facts (facts.build)",
    "plan": "billing plan (rules.prepare)",
    "rules": "rules (rules.evaluate)",
    "cards": "cards (CardRenderer.render)",
    "store": "store (FeedbackStore.record_cards)",
    "serialise": "serialise (app.json.dumps)",
}


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A gunicorn master we started; stopped by its own pid, its workers checked by theirs."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.log = name, port, log
        self.logfile = open(log, "ab")  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from process start to the first 200 on GET /cds-services."""
        url = f"http://127.0.0.1:{self.port}/cds-services"
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer 200 on {url} within {timeout} s; see {self.log}")

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self) -> None:
        workers = self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in workers:  # gunicorn stops its workers; make sure, by pid, that none outlived it
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.logfile.close()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pinned_to(cpu: str | None) -> list[str]:
    """The argv prefix that runs a program (and every process it forks) on these CPUs only (util-linux taskset)."""
    return ["taskset", "-c", cpu] if cpu is not None else []


def service_server(config: Path, port: int, log: Path, *, cpu: str | None = None) -> Server:
    argv = [*pinned_to(cpu), str(BIN / "cds-service"), "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2"]
    return Server("cds-service", argv, port, log)


def floor_server(port: int, log: Path, *, worker_class: str = "gthread", cpu: str | None = None) -> Server:
    """The floor app under gunicorn: gthread workers with the service's threads (its own setup), or sync ones."""
    threads = ["--threads", str(THREADS)] if worker_class == "gthread" else []
    argv = [*pinned_to(cpu), str(BIN / "gunicorn"), "--chdir", str(HERE), "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--worker-class", worker_class, *threads, "--timeout", "30", "--graceful-timeout", "10",
            "--keep-alive", "5", "--error-logfile", "-", "--log-level", "warning", "--name", "cds-floor",
            "--no-control-socket",  # as the service (server.py): floors run side by side would share one path
            "floor_app:app"]
    return Server("floor" if worker_class == "gthread" else f"floor-{worker_class}", argv, port, log)


# ---------------------------------------------------------------- 2. HTTP with wrk


UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float
    requests: int
    non2xx: int  # counted by rotate.lua
    wrk_errors: int  # wrk's own "Non-2xx or 3xx responses" (status > 399)
    socket_errors: str
    bodies: int
    other: float  # % of the machine's CPU used by processes other than this server and wrk
    cores: float  # CPU the server (master and workers) used, in cores
    split: str  # each worker's share of the workers' CPU, e.g. "51/49"


def duration(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def run_wrk(url: str, connections: int, seconds: float, bodies_file: Path, server: Server, *,
            cpu: str | None = None, threads: int = 2) -> WrkResult:
    workers = server.workers()
    pids = [server.proc.pid, *workers]
    load = OtherLoad(lambda: process_cpu(pids) + children_cpu())
    before = [process_cpu([pid]) for pid in workers]
    argv = [*pinned_to(cpu), "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "--latency", "-s", str(HERE / "rotate.lua"), url, "--", str(bodies_file)]
    t0, cpu0 = time.perf_counter(), process_cpu(pids)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    other = load.percent()
    cores = (process_cpu(pids) - cpu0) / (time.perf_counter() - t0)
    used = [process_cpu([pid]) - b for pid, b in zip(workers, before, strict=True)]
    split = "/".join(f"{100 * u / sum(used):.0f}" for u in used) if sum(used) > 0 else "-"
    text = out.stdout + out.stderr
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
        dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", text, re.M))
        rotate = re.search(r"rotate\.lua: bodies=(\d+) responses=(\d+) non2xx=(\d+)", text)
        total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
        assert rotate is not None
    except (AttributeError, AssertionError) as exc:
        raise RuntimeError(f"cannot read wrk's output:\n{text}") from exc
    wrk_bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors:\s+(.*)", text)
    return WrkResult(rps, duration(dist["50"]), duration(dist["99"]), total, int(rotate.group(3)),
                     int(wrk_bad.group(1)) if wrk_bad else 0, sock.group(1).strip() if sock else "",
                     int(rotate.group(1)), other, cores, split)


def http(config: Path, work: Path, plan: Plan) -> dict[str, Any]:
    print(f"\n2. OVER HTTP (wrk -t2, {plan.wrk_seconds} s per run, {N_BODIES} distinct typical requests rotated; "
          f"2 gunicorn workers each, gthread x{THREADS})")
    if shutil.which("wrk") is None:
        print(f"   skipped: wrk is not installed. Install it with: {INSTALL_WRK}")
        return {"memory": ["\n4. MEMORY\n   skipped: it is read after the HTTP load, which needs wrk"]}
    try:
        import orjson  # noqa: F401
        has_floor = True
    except ImportError:
        has_floor = False
        print(f"   the floor app needs orjson, which is not installed: {BIN / 'pip'} install orjson; "
              "measuring the service alone")
    bodies_file = write_bodies(work)

    servers: dict[str, Server] = {}
    results: dict[tuple[str, int], list[WrkResult]] = {}
    out: dict[str, Any] = {}
    memory: list[str] = []
    try:
        servers["project"] = service_server(config, free_port(), work / "service.log")
        if has_floor:
            servers["floor"] = floor_server(free_port(), work / "floor.log")
        for srv in servers.values():
            srv.wait_ready()
        urls = {name: f"http://127.0.0.1:{srv.port}/cds-services/{payloads.SERVICE_ID}"
                for name, srv in servers.items()}
        for name, url in urls.items():  # warm-up, not reported (bar errors)
            warm = run_wrk(url, CONNECTIONS[0], plan.warmup_seconds, bodies_file, servers[name])
            if warm.non2xx or warm.wrk_errors:
                problem(f"warm-up of {name}: {warm.non2xx} non-2xx responses")
        print(f"\n   {'round':<6}{'conns':>6}  {'app':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'requests':>10}{'non-2xx':>9}{'app CPU':>9}{'workers %':>10}{'other CPU':>11}  socket errors")
        for rnd in range(1, plan.rounds + 1):
            for conns in CONNECTIONS:
                for name, url in urls.items():  # alternating: project, floor, project, floor ...
                    r = run_wrk(url, conns, plan.wrk_seconds, bodies_file, servers[name])
                    results.setdefault((name, conns), []).append(r)
                    print(f"   {rnd:<6}{conns:>6}  {name:<8}{r.rps:>9.0f}{ms(r.p50):>9}{ms(r.p99):>9}"
                          f"{r.requests:>10}{r.non2xx:>9}{r.cores:>6.2f} c{r.split:>10}{r.other:>10.0f}%  "
                          f"{r.socket_errors or 'none'}")
                    if r.non2xx or r.wrk_errors:
                        problem(f"{name} at {conns} connections, round {rnd}: {r.non2xx} non-2xx responses "
                                f"(wrk: {r.wrk_errors} with status > 399)")
                    if r.socket_errors:
                        problem(f"{name} at {conns} connections, round {rnd}: socket errors {r.socket_errors}")
                    if r.bodies < N_BODIES:
                        problem(f"rotate.lua read only {r.bodies} bodies")

        print("\n   Summary (median over rounds of req/s, p50 and p99; ratio of the median req/s):")
        print(f"   {'conns':>6}{'project req/s':>15}{'floor req/s':>13}{'ratio':>8}{'project p50/p99 ms':>21}"
              f"{'floor p50/p99 ms':>19}")
        for conns in CONNECTIONS:
            proj = results[("project", conns)]
            mean = lambda rs, f: statistics.median(getattr(r, f) for r in rs)  # noqa: E731
            line = f"   {conns:>6}{mean(proj, 'rps'):>15.0f}"
            floor = results.get(("floor", conns))
            if floor:
                ratio = mean(proj, "rps") / mean(floor, "rps")
                out[f"ratio{conns}"] = ratio
                line += f"{mean(floor, 'rps'):>13.0f}{ratio:>7.2f}x"
            else:
                line += f"{'-':>13}{'-':>8}"
            line += f"{ms(mean(proj, 'p50')) + ' / ' + ms(mean(proj, 'p99')):>21}"
            if floor:
                line += f"{ms(mean(floor, 'p50')) + ' / ' + ms(mean(floor, 'p99')):>19}"
            out[f"p99_{conns}"] = mean(proj, "p99")
            print(line)
        total_bad = sum(r.non2xx + r.wrk_errors for rs in results.values() for r in rs)
        print(f"   non-2xx responses over all measured runs: {total_bad}" + ("" if total_bad == 0 else "  <-- NOT 0"))

        memory = ["\n4. MEMORY (peak RSS per gunicorn worker, /proc/<pid>/status VmHWM, after the HTTP load)"]
        for name, srv in servers.items():
            pids = srv.workers()
            peaks = [(pid, status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS")) for pid in pids]
            master = status_kb(srv.proc.pid, "VmHWM")
            text = "; ".join(f"worker {pid}: {hwm / 1024:.1f} MB peak ({rss / 1024:.1f} MB now)"
                             for pid, hwm, rss in peaks if hwm is not None and rss is not None)
            master_mb = master / 1024 if master else 0
            memory.append(f"   {name:<8} {text or 'no workers found'}; master {master_mb:.1f} MB peak")
            if len(pids) != 2:
                problem(f"{name}: {len(pids)} workers after the load, expected 2 (a worker restarted?)")
    finally:
        for srv in servers.values():
            srv.stop()
    scan_log(work / "service.log", "cds-service")
    if has_floor:
        scan_log(work / "floor.log", "floor")
    out["memory"] = memory
    return out


def write_bodies(work: Path) -> Path:
    """N_BODIES distinct typical requests, one per line, for rotate.lua."""
    bodies_file = work / "bodies.jsonl"
    with open(bodies_file, "wb") as fh:
        for body in bodies(3, N_BODIES, seed=2024):
            fh.write(body + b"\n")
    sizes = [len(line) for line in bodies_file.read_bytes().splitlines()]
    print(f"   bodies: {len(sizes)} in {bodies_file.name}, {kb(min(sizes))} to {kb(max(sizes))} each")
    return bodies_file


# ---------------------------------------------------------------- 2b. pinned: one core each (issue 22)

SERVER_CPU, WRK_CPU = "0", "1"
PIN_CONNECTIONS = 16


@dataclass(frozen=True)
class PinPlan:
    rounds: int
    seconds: float  # each app's turn in a round
    warmup_seconds: float


PIN_FULL = PinPlan(rounds=5, seconds=10, warmup_seconds=5)
PIN_QUICK = PinPlan(rounds=2, seconds=3, warmup_seconds=2)


def pinned(config: Path, work: Path, plan: PinPlan) -> dict[str, float]:
    """The strict side-by-side: every server on core 0 (taskset; its workers inherit it), wrk on core 1 with
    one thread, 16 connections, run.py's 200 distinct typical requests rotated. The service and both floors
    (gunicorn sync workers, and gthread workers with the service's threads) take turns of `plan.seconds`,
    round after round, so each round's three figures see about the same machine; a ratio is the median of
    the rounds' req/s of the service over the floor's."""
    print(f"\nPINNED (issue 22): servers on core {SERVER_CPU}, wrk -t1 on core {WRK_CPU}, {PIN_CONNECTIONS} "
          f"connections, {plan.seconds:g} s turns, {plan.rounds} rounds; 2 gunicorn workers each")
    if shutil.which("wrk") is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print(f"   skipped: needs wrk ({INSTALL_WRK}), taskset (util-linux) and two cores")
        return {}
    bodies_file = write_bodies(work)
    servers = {
        "project": service_server(config, free_port(), work / "pin-service.log", cpu=SERVER_CPU),
        "floor-sync": floor_server(free_port(), work / "pin-floor-sync.log", worker_class="sync", cpu=SERVER_CPU),
        "floor-gthread": floor_server(free_port(), work / "pin-floor-gthread.log", cpu=SERVER_CPU),
    }
    results: dict[str, list[WrkResult]] = {name: [] for name in servers}
    try:
        for srv in servers.values():
            srv.wait_ready()
        urls = {name: f"http://127.0.0.1:{srv.port}/cds-services/{payloads.SERVICE_ID}"
                for name, srv in servers.items()}

        def turn(name: str, seconds: float) -> WrkResult:
            return run_wrk(urls[name], PIN_CONNECTIONS, seconds, bodies_file, servers[name], cpu=WRK_CPU, threads=1)

        for name in servers:  # warm-up, not reported (bar errors)
            if turn(name, plan.warmup_seconds).non2xx:
                problem(f"pinned warm-up of {name}: non-2xx responses")
        print(f"\n   {'round':<6}{'app':<15}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'non-2xx':>9}"
              f"{'app CPU':>9}{'workers %':>11}{'other CPU':>11}")
        for rnd in range(1, plan.rounds + 1):
            for name in servers:
                r = turn(name, plan.seconds)
                results[name].append(r)
                print(f"   {rnd:<6}{name:<15}{r.rps:>9.0f}{ms(r.p50):>9}{ms(r.p99):>9}{r.requests:>10}{r.non2xx:>9}"
                      f"{r.cores:>6.2f} c{r.split:>11}{r.other:>10.0f}%")
                if r.non2xx or r.wrk_errors or r.socket_errors:
                    problem(f"pinned {name}, round {rnd}: {r.non2xx} non-2xx, socket errors {r.socket_errors!r}")
    finally:
        for srv in servers.values():
            srv.stop()
    for name in servers:
        scan_log(work / f"pin-{'service' if name == 'project' else name}.log", name)
    project = results["project"]
    out = {"p99": statistics.median(r.p99 for r in project), "p50": statistics.median(r.p50 for r in project),
           "rps": statistics.median(r.rps for r in project)}
    print(f"\n   Summary: the service's median {out['rps']:.0f} req/s, p50 {ms(out['p50'])} ms, "
          f"p99 {ms(out['p99'])} ms")
    for floor in ("floor-sync", "floor-gthread"):
        ratios = sorted(p.rps / f.rps for p, f in zip(project, results[floor], strict=True))
        out[floor] = statistics.median(ratios)
        print(f"   x{floor:<14} {out[floor]:.3f}  (rounds {', '.join(f'{r:.3f}' for r in ratios)}; "
              f"the floor's median {statistics.median(r.rps for r in results[floor]):.0f} req/s)")
    return out


def scan_log(path: Path, name: str) -> None:
    """Errors the server logged during the run: failed evaluation-log writes, tracebacks, worker restarts."""
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    bad: dict[str, int] = {}
    for line in lines:
        event = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if event is not None:
            if event.get("level") in ("error", "critical") or (event.get("event") == "hook"
                                                                 and event.get("status") != 200):
                key = f"{event.get('event') or event.get('message', '')[:80]} {event.get('error', '')} " \
                      f"{event.get('detail', '')} {event.get('status', '')}".strip()
                bad[key] = bad.get(key, 0) + 1
        elif re.search(r"Traceback|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|Worker .* (was sent|exited)", line):
            bad[line[:120]] = bad.get(line[:120], 0) + 1
    for key, count in sorted(bad.items(), key=lambda kv: -kv[1])[:8]:
        problem(f"{name} log: {count} x {key}")


# ---------------------------------------------------------------- 3. cold start


def cold_start(work: Path, plan: Plan) -> float | None:
    print(f"\n3. COLD START (process start of `cds-service serve --workers 2` to the first 200 on /cds-services; "
          f"{plan.cold_starts} run{'s' if plan.cold_starts > 1 else ''})")
    config = write_config(work, "cold")
    times = []
    for i in range(plan.cold_starts):
        log = work / f"cold-{i}.log"
        srv = service_server(config, free_port(), log)
        try:
            times.append(srv.wait_ready())
        except RuntimeError as exc:  # keep the run's other figures, and say why this start failed
            problem(f"cold start {i}: {exc}\n{log.read_text(errors='replace')[-3000:]}")
        finally:
            srv.stop()
    if not times:
        return None
    median = statistics.median(times)
    print(f"   median {median:.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)} s)")
    return median


# ---------------------------------------------------------------- main


def machine_speed() -> float:
    """Seconds for a fixed pure-Python loop, best of 3: the same code on a host whose CPU is shared can
    run at very different speeds from one minute to the next, and other processes' CPU (/proc/stat) does
    not show it. Taken at the start and the end of a run; figures of runs compare only at similar values."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (figures are rough)")
    parser.add_argument("--pin", action="store_true",
                        help="only the strict side-by-side: servers on core 0, wrk on core 1 (the headline figure)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        header()
        speed_before = machine_speed()
        print(f"  machine speed: a fixed Python loop takes {speed_before * 1000:.0f} ms (lower is faster)")
        if args.quick:
            print("  --quick: short runs, rough figures")
        if args.pin:
            return pin_report(work, PIN_QUICK if args.quick else PIN_FULL, speed_before, started)
        inproc = in_process(write_config(work, "inproc"), plan)
        web = http(write_config(work, "http"), work, plan)
        cold = cold_start(work, plan)
        print("\n".join(web.get("memory", [])))

        print("\nTARGETS (issue 6)")
        rows = [
            ("typical, throughput at 16 conns vs floor", web.get("ratio16"), ">= 0.35x",
             lambda v: f"{v:.2f}x", lambda v: v >= 0.35),
            ("typical, p99 at 16 conns", web.get("p99_16"), "<= 30 ms", lambda v: f"{v * 1000:.1f} ms",
             lambda v: v <= 0.030),
            ("1,000-admin history, in-process median", inproc.get("1000"), "<= 50 ms",
             lambda v: f"{v * 1000:.1f} ms", lambda v: v <= 0.050),
            ("cold start", cold, "<= 1.5 s", lambda v: f"{v:.2f} s", lambda v: v <= 1.5),
        ]
        for text, value, target, fmt, ok in rows:
            verdict = "not measured" if value is None else ("met" if ok(value) else "MISSED")
            shown = "-" if value is None else fmt(value)
            print(f"   {text:<44}{shown:>10}   target {target:<9} {verdict}")
        speed_after = machine_speed()
        print(f"\nMachine speed: the fixed Python loop took {speed_before * 1000:.0f} ms at the start and "
              f"{speed_after * 1000:.0f} ms at the end (lower is faster).")
        print(f"\nProblems seen: {len(problems)}" + "".join(f"\n   - {p}" for p in problems))
        print(f"Benchmark took {time.perf_counter() - started:.0f} s.")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def pin_report(work: Path, plan: PinPlan, speed_before: float, started: float) -> int:
    figures = pinned(write_config(work, "pin"), work, plan)
    print("\nTARGETS (issue 22; instructions per call: benchmarks/instructions.py)")
    rows = [
        ("throughput at 16 conns vs the sync floor", figures.get("floor-sync"), ">= 0.5x",
         lambda v: f"{v:.3f}x", lambda v: v >= 0.5),
        ("throughput at 16 conns vs the gthread floor", figures.get("floor-gthread"), ">= 0.5x",
         lambda v: f"{v:.3f}x", lambda v: v >= 0.5),
        ("p99 at 16 conns on one core", figures.get("p99"), "<= 30 ms", lambda v: f"{v * 1000:.1f} ms",
         lambda v: v <= 0.030),
    ]
    for text, value, target, fmt, ok in rows:
        verdict = "not measured" if value is None else ("met" if ok(value) else "MISSED")
        print(f"   {text:<46}{'-' if value is None else fmt(value):>10}   target {target:<9} {verdict}")
    print(f"\nMachine speed: the fixed Python loop took {speed_before * 1000:.0f} ms at the start and "
          f"{machine_speed() * 1000:.0f} ms at the end (lower is faster).")
    print(f"\nProblems seen: {len(problems)}" + "".join(f"\n   - {p}" for p in problems))
    print(f"Benchmark took {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
