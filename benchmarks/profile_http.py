"""Where a worker's CPU goes under the benchmark's HTTP load: py-spy on a live `cds-service serve`.

    .venv/bin/python benchmarks/profile_http.py [--seconds 10] [--connections 16] [--flame out.svg]

Starts the service as benchmarks/run.py does (2 workers, a copy of config/default.yaml, SQLite store),
drives it with wrk and rotate.lua over 200 distinct typical requests, and samples both workers with
py-spy (`record --gil --format raw`: only the thread holding the interpreter lock is sampled, so a
thread waiting for a socket, a lock or the interpreter lock itself is left out; the samples are where the
worker's Python CPU goes). It prints the share of samples by part of the request (each sample goes to the
innermost part its stack passes through) and the functions with most samples of their own. A sample that
stops in a line calling the next step (runtime.py's `answer`, Flask's `dispatch_request`) is mostly the
freeing of that step's objects as it returns: the parsed body, the validated resources. A measurement,
not a test.
Needs wrk (Debian) and py-spy (`pip install py-spy`; it reads other processes, so it needs ptrace rights:
root, or CAP_SYS_PTRACE in a container).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench

# (part, what a frame's file path or function contains), innermost first wins: the order is by depth.
PARTS = [
    ("FHIR validation", ("cds_service/fhir/parse.py", "cds_service/fhir/fast.py", "pydantic", "fhir_core")),
    ("facts", ("cds_service/facts.py",)),
    ("rules and billing plan", ("cds_service/rules/",)),
    ("cards (text, variables, actions)", ("cds_service/cards.py", "cds_service/textcode.py", "jinja2")),
    ("store (write-behind)", ("cds_service/store.py", "sqlalchemy")),
    ("request check (JSON Schema)", ("cds_service/protocol.py", "jsonschema", "referencing")),
    ("JSON body (orjson, nesting)", ("cds_service/jsontext.py", "cds_service/web/body.py")),
    ("logs", ("cds_service/web/logs.py", "logging/")),
    ("metrics", ("prometheus_client", "cds_service/web/metrics.py", "cds_service/metrics.py")),
    ("service glue (web/, runtime, service)",  # the call's own steps, and freeing its objects as they end
     ("cds_service/web/", "cds_service/runtime.py", "cds_service/service.py", "cds_service/reload.py")),
    ("Flask and werkzeug", ("flask/", "werkzeug/", "flask_cors")),
    ("serving (gunicorn, worker, direct path)", ("gunicorn/", "cds_service/worker.py", "cds_service/direct.py",
                                                 "cds_service/arrival.py", "concurrent/futures")),
]


def part_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in PARTS:
            if any(n in frame for n in needles):
                return name
    return "other"


def profile(seconds: int, connections: int, flame: Path | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="cds-profile-"))
    try:
        bodies = work / "bodies.jsonl"
        bodies.write_bytes(b"\n".join(bench.bodies(3, bench.N_BODIES, seed=11)) + b"\n")
        server = bench.service_server(bench.write_config(work, "profile"), bench.free_port(), work / "server.log")
        try:
            server.wait_ready()
            url = f"http://127.0.0.1:{server.port}/cds-services/{bench.payloads.SERVICE_ID}"
            subprocess.run(["wrk", "-t2", f"-c{connections}", "-d2s", "-s", str(bench.HERE / "rotate.lua"), url,
                            "--", str(bodies)], capture_output=True, check=True)  # warm-up
            load = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{seconds + 2}s", "--latency", "-s",
                                     str(bench.HERE / "rotate.lua"), url, "--", str(bodies)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            raws = [work / f"worker-{pid}.txt" for pid in server.workers()]
            spies = [subprocess.Popen([str(bench.BIN / "py-spy"), "record", "-p", str(pid), "-d", str(seconds),
                                       "-r", "250", "--gil", "-f", "raw", "-o", str(raw)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for pid, raw in zip(server.workers(), raws, strict=True)]
            for spy in spies:
                _, err = spy.communicate(timeout=seconds + 60)
                if spy.returncode != 0:
                    raise RuntimeError(f"py-spy failed: {err.strip()[-500:]}")
            out, _ = load.communicate(timeout=seconds + 60)
        finally:
            server.stop()
        report(raws, out, connections, seconds, flame)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(raws: list[Path], wrk_out: str, connections: int, seconds: int, flame: Path | None) -> None:
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    folded = []
    for raw in raws:
        for line in raw.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            n = int(count)
            stack = stack_text.split(";")
            total += n
            parts[part_of(stack)] += n
            own[stack[-1]] += n
            folded.append(line)
    rps = next((ln.split()[-1] for ln in wrk_out.splitlines() if ln.startswith("Requests/sec")), "?")
    print(f"py-spy, both workers, {seconds} s at {connections} connections ({rps} req/s under the profiler); "
          f"{total} samples of the thread holding the GIL")
    print(f"\n   {'part of the request':<40}{'share':>7}")
    for name, n in parts.most_common():
        print(f"   {name:<40}{100 * n / total:>6.1f}%")
    print(f"\n   {'functions with most own samples':<100}{'share':>7}")
    for frame, n in own.most_common(15):
        print(f"   {frame[:98]:<100}{100 * n / total:>6.1f}%")
    if flame is not None:
        folded_file = flame.with_suffix(".folded")
        folded_file.write_text("\n".join(folded) + "\n")
        print(f"\n   folded stacks in {folded_file} (flamegraph.pl or speedscope can draw them)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--flame", type=Path, help="also keep the folded stacks beside this path")
    args = parser.parse_args(argv)
    for tool in ("wrk", str(bench.BIN / "py-spy")):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (wrk: {bench.INSTALL_WRK}; py-spy: pip install py-spy)")
            return 2
    profile(args.seconds, args.connections, args.flame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
