"""Time `cds-service audit` over a generated export with 1 worker and with 2 (issue 8).

    .venv/bin/python benchmarks/audit_bench.py [--encounters N] [--keep DIR] [--engine local|dask ...]

Writes an export of N encounters (default 100,000) with benchmarks/make_export.py into a temporary
folder, or into DIR/export with --keep (and reuses it there when it holds one of N already), then runs
the command as a child process per worker count and prints one row each: wall seconds, audited
encounters per second, and peak resident memory of the command's process tree, polled from /proc every
50 ms: the largest single process, and the largest sum over the tree at one moment (the parent, its
workers, and a Dask cluster's scheduler and nannies). The sums count pages shared between processes
once per process, so they are an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKE_EXPORT = ROOT / "benchmarks" / "make_export.py"
POLL = 0.05  # seconds between two looks at /proc
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    engine: str
    workers: int
    encounters: int
    seconds: float
    peak_one: int  # bytes: the largest resident set of one process of the tree
    peak_sum: int  # bytes: the largest total over the tree at one moment
    findings: int

    def row(self) -> str:
        rate = self.encounters / self.seconds if self.seconds else 0.0
        return (f"{self.engine:<6} {self.workers:>7} {self.encounters:>10,} {self.seconds:>8.1f} {rate:>12,.0f} "
                f"{mib(self.peak_one):>12} {mib(self.peak_sum):>12} {self.findings:>9,}")


HEADER = (f"{'engine':<6} {'workers':>7} {'encounters':>10} {'seconds':>8} {'encounters/s':>12} "
          f"{'peak RSS one':>12} {'peak RSS sum':>12} {'findings':>9}")


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def export_for(encounters: int, keep: Path | None, scratch: Path) -> Path:
    """The export of N encounters: made once in --keep's folder and reused there, else in scratch."""
    folder = (keep or scratch) / "export"
    stamp = folder / ".encounters"
    if keep and stamp.is_file() and stamp.read_text().strip() == str(encounters):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(MAKE_EXPORT), str(encounters), str(folder), "--seed", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"made the export in {time.perf_counter() - started:.1f} s", flush=True)
    stamp.write_text(str(encounters))
    return folder


def tree(root: int) -> list[int]:
    """The pids of root and its descendants, from each process's parent in /proc/<pid>/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def audit(export: Path, out: Path, workers: int, engine: str) -> Run:
    """Run the command once, polling its process tree's memory until it exits."""
    command = [sys.executable, "-m", "cds_service.cli", "audit", str(export), "--out", str(out),
               "--workers", str(workers), "--engine", engine]
    peak_one = peak_sum = 0
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) as child:
        while child.poll() is None:
            sizes = [rss(pid) for pid in tree(child.pid)]
            peak_one, peak_sum = max(peak_one, *sizes), max(peak_sum, sum(sizes))
            time.sleep(POLL)
        stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"cds-service audit exited {child.returncode}:\n{stderr[-4000:]}")
    summary = json.loads((out / "summary.json").read_text())
    print(stdout.strip(), flush=True)
    return Run(engine, workers, summary["encounters"], seconds, peak_one, peak_sum, summary["findings"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="make the export in DIR/export and keep it for the next run")
    parser.add_argument("--engine", action="append", choices=["local", "dask"],
                        help="engine to time, repeatable (default: local)")
    parser.add_argument("--workers", type=int, action="append", help="worker counts, repeatable (default: 1 and 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        export = export_for(args.encounters, args.keep, Path(tmp))
        size = sum(p.stat().st_size for p in export.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
        print(f"export: {args.encounters:,} encounters, {size / 2**20:,.0f} MiB of NDJSON in {export}", flush=True)
        runs = []
        for engine in args.engine or ["local"]:
            for workers in args.workers or [1, 2]:
                runs.append(audit(export, Path(tmp) / f"out-{engine}-{workers}", workers, engine))
    print(f"\n{os.cpu_count()} cores; peak RSS polled from /proc every {POLL * 1000:.0f} ms over the process tree")
    print(HEADER)
    for run in runs:
        print(run.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
