"""Cold start and worker memory of two versions of the service, alternated (issue 18's limits).

    .venv/bin/python benchmarks/startup_ab.py REV_A [REV_B] [--rounds 5] [--requests 600]

REV_B defaults to the working tree. Each round starts `cds-service serve --workers 2` of A then of B (then B
then A), each on its own tree's config/default.yaml (as run.py writes it), and measures:
- cold start: from starting the process to the first 200 on GET /cds-services (as run.py's part 3);
- memory: after `--requests` typical calls (run.py's distinct typical requests, one at a time), the peak
  RSS (VmHWM) of each worker and of the master.
Prints each round and the medians; B - A is what the change costs. The host's drift moves both alike
within a round, so compare the medians of the differences, not a figure against another day's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ab  # noqa: E402
import payloads  # noqa: E402
import run  # noqa: E402


def measure(name: str, tree: Path, work: Path, bodies: list[bytes], requests: int) -> tuple[float, float, float]:
    """(cold start s, median worker VmHWM MB, master VmHWM MB) of one fresh server."""
    server = ab.serve(name, tree, work)
    try:
        started = server.wait_ready()
        url = f"http://127.0.0.1:{server.port}/cds-services/{payloads.SERVICE_ID}"
        for i in range(requests):
            post = urllib.request.Request(url, data=bodies[i % len(bodies)],
                                          headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(post, timeout=30) as answer:
                assert answer.status == 200
        workers = [run.status_kb(pid, "VmHWM") or 0 for pid in server.workers()]
        master = run.status_kb(server.proc.pid, "VmHWM") or 0
        return started, statistics.median(workers) / 1024, master / 1024
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", nargs="?", help="default: the working tree as it is")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cds-startup-"))
    bodies = run.bodies(3, 50, seed=2024)
    trees = ab.trees_of(args.rev_a, args.rev_b, work)
    print(f"A = {args.rev_a}, B = {args.rev_b or 'the working tree'}; {args.rounds} rounds, {args.requests} "
          f"typical calls each before reading memory; logs in {work}")
    figures: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    try:
        for rnd in range(args.rounds):
            for name in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                cold, worker, master = measure(name, trees[name], work, bodies, args.requests)
                figures[name].append((cold, worker, master))
                print(f"   round {rnd + 1} {name}: cold start {cold:.2f} s, worker peak {worker:.1f} MB, "
                      f"master peak {master:.1f} MB", flush=True)
        print()
        for i, what, unit in ((0, "cold start", "s"), (1, "worker peak RSS", "MB"), (2, "master peak RSS", "MB")):
            a = statistics.median(f[i] for f in figures["A"])
            b = statistics.median(f[i] for f in figures["B"])
            diff = statistics.median(fb[i] - fa[i] for fa, fb in zip(figures["A"], figures["B"], strict=True))
            print(f"{what:<17} A {a:7.2f} {unit}   B {b:7.2f} {unit}   B - A (median of rounds) {diff:+.2f} {unit}")
    finally:
        ab.remove(trees)
    return 0


if __name__ == "__main__":
    sys.exit(main())
