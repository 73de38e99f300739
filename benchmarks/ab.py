"""Compare two versions of the service over HTTP, alternating them, to measure a change of a few percent.

    .venv/bin/python benchmarks/ab.py REV_A [REV_B] [--rounds 16] [--seconds 4] [--connections 16] [--pin]

REV_A and REV_B are git revisions (REV_B defaults to the working tree as it is, uncommitted changes
included). Each is checked out in a temporary git worktree (the working tree is used in place) and served
by `cds-service serve --workers 2` with that tree's code, both at once, on the same configuration as
run.py's. wrk then loads them in turn, A B, B A, A B ..., with run.py's 200 distinct typical requests.

On this shared host the speed of the machine drifts by several percent within a minute, which swamps
a small change when two runs are compared. Each pair of adjacent runs sees about the same machine, so the
figure that counts is the median over pairs of B's req/s per core / A's req/s per core (per core: the CPU
each server used, so a run where one worker took every connection still compares). Two identical trees
give 1.00 with quartiles within about 3%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402
import run  # noqa: E402


def worktree(revision: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(run.ROOT), "worktree", "add", "--detach", "--quiet", str(into), revision],
                   check=True)
    return into


def trees_of(rev_a: str, rev_b: str | None, work: Path) -> dict[str, Path]:
    """A's worktree, and B's (the working tree itself when rev_b is None)."""
    trees = {"A": worktree(rev_a, work / "tree-a")}
    trees["B"] = worktree(rev_b, work / "tree-b") if rev_b else run.ROOT
    return trees


def remove(trees: dict[str, Path]) -> None:
    for tree in trees.values():
        if tree != run.ROOT:
            subprocess.run(["git", "-C", str(run.ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def serve(name: str, tree: Path, work: Path, cpu: str | None = None) -> run.Server:
    """`cds-service serve` with the code of `tree` (first on the module path), on run.py's configuration of that
    tree (a change may change the configuration's schema)."""
    config = run.write_config(work, name, tree)
    port = run.free_port()
    code = ("import sys, cds_service; print('cds_service from', cds_service.__file__, file=sys.stderr); "
            "from cds_service.cli import main; sys.exit(main())")
    # -P: the working directory (the main tree) is not put before PYTHONPATH on the module path
    argv = [*run.pinned_to(cpu), str(run.BIN / "python"), "-P", "-c", code, "serve", "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the child's cds_service is this tree's, not the installed one
    return run.Server(name, argv, port, work / f"{name}.log", env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", nargs="?", help="default: the working tree as it is")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pin", action="store_true",
                        help="as run.py --pin: both servers on core 0, wrk with one thread on core 1")
    args = parser.parse_args(argv)
    server_cpu, wrk_cpu, threads = (run.SERVER_CPU, run.WRK_CPU, 1) if args.pin else (None, None, 2)

    work = Path(tempfile.mkdtemp(prefix="cds-ab-"))
    bodies_file = work / "bodies.jsonl"
    with open(bodies_file, "wb") as fh:
        for body in run.bodies(3, run.N_BODIES, seed=2024):
            fh.write(body + b"\n")
    trees = trees_of(args.rev_a, args.rev_b, work)
    print(f"A = {args.rev_a}, B = {args.rev_b or 'the working tree'}; {args.rounds} rounds of {args.seconds} s "
          f"at {args.connections} connections; logs in {work}")
    servers: dict[str, run.Server] = {}
    try:
        for name, tree in trees.items():
            servers[name] = serve(name, tree, work, server_cpu)
        for server in servers.values():
            server.wait_ready()
        urls = {n: f"http://127.0.0.1:{s.port}/cds-services/{payloads.SERVICE_ID}" for n, s in servers.items()}
        for name, url in urls.items():  # warm-up
            run.run_wrk(url, args.connections, 2, bodies_file, servers[name], cpu=wrk_cpu, threads=threads)
        per_core: dict[str, list[float]] = {"A": [], "B": []}
        for rnd in range(args.rounds):
            for name in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                r = run.run_wrk(urls[name], args.connections, args.seconds, bodies_file, servers[name], cpu=wrk_cpu,
                                threads=threads)
                per_core[name].append(r.rps / max(r.cores, 0.01))
                print(f"   round {rnd + 1:>2} {name}: {r.rps:7.0f} req/s, {r.cores:.2f} cores, workers {r.split}, "
                      f"non-2xx {r.non2xx}", flush=True)
        pairs = [b / a for a, b in zip(per_core["A"], per_core["B"], strict=True)]
        quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
        medians = {name: statistics.median(values) for name, values in per_core.items()}
        print(f"\nreq/s per core, median: A {medians['A']:.0f}, B {medians['B']:.0f}")
        print(f"B/A over adjacent pairs: median {statistics.median(pairs):.3f} "
              f"(quartiles {quartiles[0]:.3f}, {quartiles[2]:.3f})")
    finally:
        for server in servers.values():
            server.stop()
        remove(trees)
    return 0


if __name__ == "__main__":
    sys.exit(main())
