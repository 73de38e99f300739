"""Run an audit on a Dask cluster: the export as a dask.bag of NDJSON blocks, grouped by patient, audited by core.py.

For exports too large for one machine in time. The stages are the local path's, on dask's machinery:
`dask.bytes.read_bytes` cuts each plain file into blocks at line ends (a gzipped file is one block, read
with export.lines); export.classify sorts every line as the local path does; a task shuffle
(`Bag.groupby`) brings each patient's lines together; each partition of patients is audited with
worker.checked and core.audit, the code under `audit_patient`. Medications and each block's line count
travel as one small Item computed from the same blocks, so that a skipped line is reported with its file
and line exactly as the local path reports it. The parent writes findings.csv in patient order and the
same summary.json and report.html (tally.py, report.py).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import heapq
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import dask
import dask.bag as db
from dask.bytes import read_bytes
from distributed import Client, KilledWorker, LocalCluster, as_completed
from tqdm import tqdm

from cds_service.audit import common as local
from cds_service.audit import core, export
from cds_service.audit.findings import COLUMNS
from cds_service.audit.partition import Stored
from cds_service.audit.tally import SKIPPED_LINES, Skip, Tally, skip_order
from cds_service.audit.worker import CheckedMedications, RangeResult, checked

BLOCKSIZE = 64 * 2**20  # bytes of a plain NDJSON file per partition
PARTITIONS_PER_WORKER = 16  # partitions of patients: small enough to balance the workers
MAX_PARTITIONS = 512  # each is a scratch file the parent merges at the end
CONNECT_TIMEOUT = "10s"  # to reach a scheduler given by address
PATIENT = COLUMNS.index("patient_id")  # findings.csv is in patient order

Position = tuple[int, int, int]  # (file index, block of the file, line within the block)
Keyed = tuple[str, Position, str, str]  # (patient id, position, resource type, JSON text)


@dataclass(frozen=True)
class Block:
    """One block of an NDJSON file, its lines sorted as export.classify sorts them."""

    file: int
    ordinal: int
    lines: int
    resources: list[Keyed] = field(default_factory=list)
    medications: list[tuple[str, Position, str]] = field(default_factory=list)  # (id, position, JSON text)
    problems: list[tuple[Position, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Index:
    """What every partition of patients needs: where each block starts, and the Medications by id."""

    starts: dict[tuple[int, int], int]  # (file, block) -> lines of the file before the block
    medications: dict[str, Stored]  # Medication id -> its first line in file order

    def line(self, position: Position) -> int:
        return self.starts[position[:2]] + position[2]


# --- reading: one task per block ------------------------------------------------------------------

def read_plain(data: bytes, file: int, ordinal: int) -> list[Block]:
    """Sort the lines of one block of a plain NDJSON file (read_bytes cuts blocks at line ends)."""
    return [block_of(enumerate(io.BytesIO(data), start=1), file, ordinal)]


def read_gzip(path: str, file: int) -> list[Block]:
    """Sort the lines of a gzipped file, one block; a damaged stream ends it with one problem, as locally."""
    return [block_of(export.lines(Path(path)), file, 0)]


def block_of(numbered: Iterable[tuple[int, bytes | export.Problem]], file: int, ordinal: int) -> Block:
    resources: list[Keyed] = []
    medications: list[tuple[str, Position, str]] = []
    problems: list[tuple[Position, str]] = []
    count = 0
    for count, data in numbered:
        item = data if isinstance(data, export.Problem) else export.classify(data)
        position = (file, ordinal, count)
        if isinstance(item, export.Problem):
            problems.append((position, item.error))
        elif item is not None and item.resource_type == "Medication":
            medications.append((item.key, position, item.text))
        elif item is not None:
            resources.append((item.key, position, item.resource_type, item.text))
    return Block(file, ordinal, count, resources, medications, problems)


def blocks_of(files: list[Path], blocksize: int) -> db.Bag:
    """A bag with one Block per partition: plain files cut by dask at line ends, gzipped files whole."""
    parts = []
    plain = [(i, f) for i, f in enumerate(files) if not f.name.endswith(".gz")]
    if plain:
        _, per_file = read_bytes([str(f) for _, f in plain], delimiter=b"\n", blocksize=blocksize, sample=False)
        for (index, _), blocks in zip(plain, per_file, strict=True):
            parts += [dask.delayed(read_plain)(b, index, n) for n, b in enumerate(blocks)]
    parts += [dask.delayed(read_gzip)(str(f), i) for i, f in enumerate(files) if f.name.endswith(".gz")]
    return db.from_delayed(parts)


# --- the Index: an Item built from every block ------------------------------------------------------

def partial_index(blocks: Iterable[Block]) -> tuple[dict[tuple[int, int], int], dict[str, tuple[Position, str]]]:
    """Line counts by block and the first Medication of each id, in some blocks."""
    counts: dict[tuple[int, int], int] = {}
    medications: dict[str, tuple[Position, str]] = {}
    for block in blocks:
        counts[(block.file, block.ordinal)] = block.lines
        for medication_id, position, text in block.medications:
            if medication_id not in medications or position < medications[medication_id][0]:
                medications[medication_id] = (position, text)
    return counts, medications


def merge_partials(partials: Iterable[Any]) -> Any:
    counts: dict[tuple[int, int], int] = {}
    medications: dict[str, tuple[Position, str]] = {}
    for some_counts, some_medications in partials:
        counts.update(some_counts)
        for medication_id, (position, text) in some_medications.items():
            if medication_id not in medications or position < medications[medication_id][0]:
                medications[medication_id] = (position, text)
    return counts, medications


def index_of(merged: Any) -> Index:
    """Turn line counts into the line each block starts after, and Medications into Stored lines."""
    counts, medications = merged
    starts, before, last_file = {}, 0, None
    for file, ordinal in sorted(counts):
        before = 0 if file != last_file else before
        starts[(file, ordinal)], before, last_file = before, before + counts[(file, ordinal)], file
    index = Index(starts, {})
    for medication_id, (position, text) in medications.items():
        index.medications[medication_id] = Stored("Medication", position[0], index.line(position), text)
    return index


# --- auditing: one task per partition of patients -----------------------------------------------------

class IndexedMedications(CheckedMedications):
    """The Medications the index found, the first of each id."""

    def __init__(self, index: Index) -> None:
        super().__init__()
        self.index = index

    def stored(self, medication_id: str) -> Stored | None:
        return self.index.medications.get(medication_id)

    def ids(self) -> Iterator[str]:
        return iter(self.index.medications)


def audit_partition(
    groups: Iterable[tuple[str, list[Keyed]]], index: Index, config: str, since: dt.date | None,
    until: dt.date | None,
) -> list[RangeResult]:
    """Audit each patient of a partition, in patient order, as worker.audit_range audits a range."""
    engine, medications, out = core.engine_for(config), IndexedMedications(index), RangeResult()
    for patient_id, keyed in sorted(groups, key=itemgetter(0)):
        stored = sorted((Stored(rtype, pos[0], index.line(pos), text) for _, pos, rtype, text in keyed),
                        key=lambda s: (s.file, s.line))
        skips: list[Skip] = []
        resources = [r for r in (checked(s, skips) for s in stored) if r is not None]
        audited = audit_one(resources, medications, engine, stored[0], skips, since, until)
        out.rows += audited.rows
        out.encounters += audited.encounters
        out.patients += 1 if audited.encounters else 0
        out.administrations += audited.administrations
        out.flagged += [(patient_id, audited.flagged)] if audited.flagged else []
        out.skips += [(skip, False) for skip in skips]
    out.skips += [(skip, True) for skip in medications.skips]
    return [out]


def audit_one(
    resources: list[dict[str, Any]], medications: IndexedMedications, engine: core.Engine, first: Stored,
    skips: list[Skip], since: dt.date | None, until: dt.date | None,
) -> core.PatientAudit:
    """One patient; a failure is reported on the patient's first line, and the run goes on."""
    try:
        return core.audit(resources, medications, engine, since=since, until=until)
    except Exception as exc:  # noqa: BLE001 - as worker.audit_one: a live call would answer 500; the audit goes on
        skips.append(Skip(first.file, first.line, f"this patient could not be audited: {type(exc).__name__}"))
        return core.PatientAudit()


def problems_of(blocks: Iterable[Block], index: Index) -> list[Skip]:
    return [Skip(pos[0], index.line(pos), error) for block in blocks for pos, error in block.problems]


def keyed_lines(blocks: Iterable[Block]) -> list[Keyed]:
    return [keyed for block in blocks for keyed in block.resources]


def graph(files: list[Path], config: str, job: local.AuditJob, blocksize: int) -> tuple[db.Bag, db.Bag]:
    """The skipped lines, and the audited partitions of patients (one RangeResult each)."""
    blocks = blocks_of(files, blocksize)
    index = blocks.reduction(partial_index, merge_partials).apply(index_of)
    partitions = max(1, min(MAX_PARTITIONS, PARTITIONS_PER_WORKER * job.workers))
    grouped = blocks.map_partitions(keyed_lines).groupby(itemgetter(0), shuffle="tasks", npartitions=partitions)
    audited = grouped.map_partitions(audit_partition, index, config, job.since, job.until)
    skipped = blocks.map_partitions(problems_of, index).reduction(first_skips, merge_skips)
    return skipped, audited


def first_skips(skips: Iterable[Skip]) -> tuple[int, list[Skip]]:
    """How many lines were skipped, and the first SKIPPED_LINES in file order: all summary.json keeps."""
    count, first = 0, []
    for skip in skips:
        count += 1
        first.append(skip)
        if len(first) > 4 * SKIPPED_LINES:
            first = sorted(first, key=skip_order)[:SKIPPED_LINES]
    return count, sorted(first, key=skip_order)[:SKIPPED_LINES]


def merge_skips(parts: Iterable[tuple[int, list[Skip]]]) -> tuple[int, list[Skip]]:
    total, merged = 0, []
    for count, first in parts:
        total += count
        merged += first
    return total, sorted(merged, key=skip_order)[:SKIPPED_LINES]


# --- the parent: a cluster, the report files ------------------------------------------------------

def run(job: local.AuditJob, blocksize: int = BLOCKSIZE) -> local.AuditResult:
    """Audit an export on a LocalCluster of job.workers processes, or on the cluster at job.scheduler."""
    started = time.perf_counter()
    settings = local.checked_settings(job.config)
    files = export.find_files(job.export_dir, exclude=job.out_dir)
    if not files:
        raise local.EmptyExport(f"{job.export_dir}: no NDJSON files (*.ndjson, *.ndjson.gz)")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    tally = Tally([f.relative_to(job.export_dir).as_posix() for f in files])
    skipped, audited = graph([f.resolve() for f in files], os.path.abspath(settings.source), job, blocksize)
    findings = job.out_dir / "findings.csv"
    scratch = job.out_dir / f".audit-dask-{os.getpid()}"
    scratch.mkdir()
    try:
        with client_for(job) as client:
            chunks = compute(client, skipped, audited, tally, scratch, job.progress)
        merge(chunks, findings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = tally.summary(local.meta(job, settings, time.perf_counter() - started))
    summary_file = job.out_dir / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return local.AuditResult(summary, findings, summary_file, local.write_report(summary, job.out_dir))


@contextlib.contextmanager
def client_for(job: local.AuditJob) -> Iterator[Client]:
    """A client of the scheduler at job.scheduler, or of a LocalCluster started and closed here."""
    if job.scheduler:
        try:
            client = Client(job.scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise local.ClusterUnavailable(f"cannot reach the Dask scheduler at {job.scheduler}: {exc}") from exc
        with client:
            yield client
        return
    with LocalCluster(n_workers=job.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def compute(
    client: Client, skipped: db.Bag, audited: db.Bag, tally: Tally, scratch: Path, progress: bool
) -> list[Path]:
    """Tally partitions as they finish, each written to a scratch CSV sorted by patient; return those files."""
    parts = audited.to_delayed()
    futures = client.compute([skipped, *parts])
    chunks = []
    try:
        with tqdm(total=len(parts), unit="part", desc="auditing", disable=not progress) as bar:
            for future in as_completed(futures[1:]):
                (result,) = future.result()
                chunks.append(write_chunk(scratch / f"part-{len(chunks):05d}.csv", result.rows))
                local.absorb(tally, result)
                future.release()
                bar.update()
        count, first = futures[0].result()
        for skip in first:
            tally.skip(skip)
        tally.skipped += count - len(first)  # the rest are counted, not listed
    except KilledWorker as exc:
        raise BrokenProcessPool(f"a Dask worker died: {exc}") from exc
    return chunks


def write_chunk(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([row[c] for c in COLUMNS] for row in rows)
    return path


def merge(chunks: list[Path], findings: Path) -> None:
    """findings.csv in patient order, as the local path writes it: each patient is in one chunk, in order."""
    with contextlib.ExitStack() as stack, open(findings, "w", newline="", encoding="utf-8") as out:
        readers = [csv.reader(stack.enter_context(open(c, newline="", encoding="utf-8"))) for c in chunks]
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(heapq.merge(*readers, key=itemgetter(PATIENT)))
