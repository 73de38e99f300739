"""Run an audit: stage the export, audit ranges of patients on N processes, write the report files.

Memory stays bounded: lines go to the staging file in batches, workers read one range of patients at
a time, rows go to findings.csv as their range finishes, and only counters are kept for summary.json.
"""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cds_service.audit import export
from cds_service.audit.common import (
    AuditJob,
    AuditResult,
    EmptyExport,
    absorb,
    checked_settings,
    meta,
    write_report,
)
from cds_service.audit.findings import COLUMNS
from cds_service.audit.partition import StagingReader, StagingWriter
from cds_service.audit.tally import Skip, Tally
from cds_service.audit.worker import RangeResult, audit_range, close_worker, init_worker

RANGES_PER_WORKER = 16  # ranges small enough to balance the workers and move the progress bar
AHEAD = 4  # ranges submitted per worker ahead of the one written: results wait in order, in bounded number
MAX_RANGE = 200  # patients


def run(job: AuditJob) -> AuditResult:
    """Audit an export; raises EmptyExport, ConfigError, OSError for a report that cannot be written, or
    BrokenProcessPool when a worker process dies (killed, out of memory)."""
    if job.engine == "dask":
        from cds_service.audit import dask_path  # needs the dask extra: pip install 'cds-service[dask]'

        return dask_path.run(job)
    started = time.perf_counter()
    settings = checked_settings(job.config)
    files = export.find_files(job.export_dir, exclude=job.out_dir)
    if not files:
        raise EmptyExport(f"{job.export_dir}: no NDJSON files (*.ndjson, *.ndjson.gz)")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    tally = Tally([f.relative_to(job.export_dir).as_posix() for f in files])
    staging = job.out_dir / f".audit-staging-{os.getpid()}.sqlite"
    findings = job.out_dir / "findings.csv"
    try:
        encounters = stage(files, staging, tally, job.progress)
        with open(findings, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for result in audit_ranges(staging, settings.source, job, encounters):
                writer.writerows([row[c] for c in COLUMNS] for row in result.rows)
                absorb(tally, result)
    finally:
        staging.unlink(missing_ok=True)
    summary = tally.summary(meta(job, settings, time.perf_counter() - started))
    summary_file = job.out_dir / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return AuditResult(summary, findings, summary_file, write_report(summary, job.out_dir))


def stage(files: list[Path], staging: Path, tally: Tally, progress: bool) -> int:
    """Read every line once into the staging file; return the number of Encounters staged."""
    writer = StagingWriter(staging)
    try:
        total = sum(f.stat().st_size for f in files)
        with tqdm(total=total, unit="B", unit_scale=True, desc="reading", disable=not progress) as bar:
            for index, path in enumerate(files):
                for number, data in export.lines(path, bar.update):
                    item = data if isinstance(data, export.Problem) else export.classify(data)
                    if isinstance(item, export.Problem):
                        tally.skip(Skip(index, number, item.error))
                    elif item is not None:
                        writer.add(item, index, number)
        return writer.finish()
    except BaseException:
        writer.close()
        raise


def audit_ranges(staging: Path, config: str, job: AuditJob, encounters: int) -> Iterator[RangeResult]:
    """Results range by range, in patient order, whatever the number of workers."""
    reader = StagingReader(staging)
    try:
        ranges = reader.ranges(range_size(reader.patient_count(), job.workers))
    finally:
        reader.close()
    workers = max(1, min(job.workers, len(ranges)))
    init_args = (str(staging), os.path.abspath(config), job.since, job.until)
    with tqdm(total=encounters, unit="enc", desc="auditing", disable=not job.progress) as bar:
        for result in results(ranges, workers, init_args):
            bar.update(result.seen)
            yield result


def results(ranges: list[tuple[str, str]], workers: int, init_args: tuple[Any, ...]) -> Iterator[RangeResult]:
    """Ranges audited in this process (one worker) or in spawned ones, AHEAD per worker in flight at most."""
    if workers == 1:
        init_worker(*init_args)
        try:
            yield from map(audit_range, ranges)
        finally:
            close_worker()
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=init_args)
    try:
        todo = iter(ranges)
        pending = deque(pool.submit(audit_range, bounds) for bounds in itertools.islice(todo, AHEAD * workers))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(audit_range, bounds) for bounds in itertools.islice(todo, 1))
            yield result
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def range_size(patients: int, workers: int) -> int:
    return max(1, min(MAX_RANGE, patients // (max(1, workers) * RANGES_PER_WORKER)))


def describe(result: AuditResult) -> str:
    """The one paragraph the command prints."""
    s = result.summary
    written = ", ".join(p.name for p in (result.findings, result.summary_file, result.report) if p is not None)
    skipped = s["skipped"]["count"]
    where = f"; the first {min(skipped, len(s['skipped']['lines']))} are listed in summary.json" if skipped else ""
    return (
        f"Audited {s['encounters']:,} encounters of {s['patients']:,} patients ({s['administrations']:,} "
        f"administrations) in {s['seconds']:.1f} s with {s['workers']} worker{'s' if s['workers'] != 1 else ''}: "
        f"{s['findings']:,} findings; {skipped:,} lines skipped{where}. "
        f"Report: {result.findings.parent} ({written})."
    )
