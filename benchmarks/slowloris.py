"""Slow clients against a default `cds-service serve`: how normal requests fare beside them (issue 19).

    .venv/bin/python benchmarks/slowloris.py [--slow 0 4 256] [--seconds 20] [--tree DIR]

Starts `cds-service serve` on a copy of config/default.yaml (its own SQLite store; 2 workers x 2 threads),
then for each count of slow connections:

- the slow connections: half send a hook call's headers one byte a second and never finish them; the other
  half send complete headers with a Content-Length of 20,000 and then the body one byte a second. Each
  reconnects as soon as the service closes it (a timeout or an answer), so the count holds for the whole run;
- beside them, one normal client sends typical encounter-discharge calls one after another, each on a new
  connection, with a 10 s timeout, for --seconds.

Prints per count: the normal calls made, failed (timeout, refused, non-200), p50, p95 and maximum latency, and
how many slow connections the service closed and how many it answered (408). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import payloads  # noqa: E402
import run  # noqa: E402

NORMAL_TIMEOUT = 10.0
SLOW_BODY_BYTES = 20_000


@dataclass
class SlowStats:
    opened: int = 0
    closed_by_service: int = 0
    answered: dict[int, int] = field(default_factory=dict)


def slow_heads(port: int) -> tuple[bytes, bytes]:
    """(a head sent one byte a second, never finished; a complete head whose body then trickles)."""
    path = f"/cds-services/{payloads.SERVICE_ID}"
    endless = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               + "".join(f"X-Padding-{n}: {'a' * 40}\r\n" for n in range(200))).encode()
    trickle = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n").encode()
    return endless, trickle


async def slow_client(port: int, head_first: bool, stop: asyncio.Event, stats: SlowStats) -> None:
    endless, trickle = slow_heads(port)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        stats.opened += 1
        try:
            if not head_first:
                writer.write(trickle)
            data = endless if head_first else b"{" + b" " * SLOW_BODY_BYTES
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    reply = await asyncio.wait_for(reader.read(4096), timeout=1.0)
                except TimeoutError:
                    if stop.is_set():
                        break
                    continue
                stats.closed_by_service += 1
                if reply.startswith(b"HTTP/1.1 "):
                    status = int(reply[9:12])
                    stats.answered[status] = stats.answered.get(status, 0) + 1
                break
        except OSError:
            stats.closed_by_service += 1
        finally:
            writer.close()


def attack(port: int, count: int, stop: threading.Event, stats: SlowStats) -> threading.Thread:
    async def main() -> None:
        done = asyncio.Event()
        tasks = [asyncio.create_task(slow_client(port, n % 2 == 0, done, stats)) for n in range(count)]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        done.set()
        await asyncio.wait(tasks, timeout=5)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    return thread


def normal_calls(port: int, seconds: float) -> tuple[list[float], list[str]]:
    url = f"http://127.0.0.1:{port}/cds-services/{payloads.SERVICE_ID}"
    body = json.dumps(payloads.build()).encode()
    headers = {"Content-Type": "application/json", "Connection": "close"}
    latencies: list[float] = []
    failures: list[str] = []
    end = time.monotonic() + seconds
    with requests.Session() as session:
        session.trust_env = False
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                resp = session.post(url, data=body, headers=headers, timeout=NORMAL_TIMEOUT)
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}")
            except requests.RequestException as exc:
                failures.append(type(exc).__name__)
            latencies.append(time.perf_counter() - t0)
    return latencies, failures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def measure(port: int, count: int, seconds: float) -> str:
    stats = SlowStats()
    stop = threading.Event()
    thread = attack(port, count, stop, stats) if count else None
    time.sleep(min(3.0, count / 50 + 1) if count else 0)  # let the slow connections open first
    latencies, failures = normal_calls(port, seconds)
    stop.set()
    if thread:
        thread.join(timeout=10)
    ms = [x * 1000 for x in latencies]
    answered = ", ".join(f"{n} x {status}" for status, n in sorted(stats.answered.items())) or "none"
    return (f"{count:>4} slow | calls {len(ms):>4} failed {len(failures):>3} | p50 {statistics.median(ms):7.1f} ms "
            f"p95 {percentile(ms, 0.95):7.1f} ms max {max(ms):7.1f} ms | slow opened {stats.opened}, closed by "
            f"the service {stats.closed_by_service} (answered: {answered})"
            + (f" | failures: {sorted(set(failures))}" if failures else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, nargs="+", default=[0, 4, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tree", type=Path, default=run.ROOT, help="the checkout to serve (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cds-slowloris-") as tmp:
        work = Path(tmp)
        config = run.write_config(work, "service", args.tree)
        port = run.free_port()
        cli = args.tree / ".venv" / "bin" / "cds-service"
        server = run.Server("service", [str(cli), "serve", "--config", str(config), "--port", str(port)],
                            port, work / "service.log")
        try:
            print(f"cold start {server.wait_ready():.2f} s; machine speed {run.machine_speed() * 1000:.0f} ms")
            for count in args.slow:
                print(measure(port, count, args.seconds), flush=True)
        finally:
            server.stop()
            errors = [line for line in (work / "service.log").read_text(errors="replace").splitlines()
                      if "Traceback" in line or '"level": "ERROR"' in line]
            print(f"errors in the service's log: {len(errors)}" + "".join(f"\n  {e[:200]}" for e in errors[:5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
