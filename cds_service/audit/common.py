"""What both ways of running an audit share (job.py on local processes, dask_path.py on a Dask cluster): the
job and its result, the configuration check, how a range's result is counted, the summary's header and the
report. Both import this module, and job.py imports dask_path.py only when a job asks for it."""

from __future__ import annotations

import datetime as dt
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds_service import config as configuration
from cds_service import rules
from cds_service.audit import core
from cds_service.audit.tally import Tally
from cds_service.audit.worker import RangeResult
from cds_service.config import Settings
from cds_service.errors import ConfigError


class EmptyExport(Exception):
    """The export directory holds no NDJSON file."""


class ClusterUnavailable(Exception):
    """The Dask scheduler given for --engine dask cannot be reached."""


@dataclass(frozen=True)
class AuditJob:
    export_dir: Path
    out_dir: Path
    config: str | None = None  # None: $CDS_SERVICE_CONFIG or config/default.yaml, as the service
    since: dt.date | None = None
    until: dt.date | None = None
    workers: int = 1
    progress: bool = False  # progress bars with an ETA on stderr
    engine: str = "local"  # or "dask": dask_path.py, on a LocalCluster of `workers` processes or at `scheduler`
    scheduler: str | None = None  # a Dask scheduler's address, e.g. tcp://10.0.0.5:8786


@dataclass(frozen=True)
class AuditResult:
    summary: dict[str, Any]
    findings: Path
    summary_file: Path
    report: Path | None  # report.html, when cds_service.audit.report is installed


def checked_settings(path: str | None) -> Settings:
    """The configuration, with the same check as runtime.build: every enabled rule exists and has a card."""
    settings = configuration.load(path)
    missing = sorted(r for r in settings.enabled_rules() if r not in rules.RULES or r not in core.templates())
    if missing:
        raise ConfigError(settings.source, [f"rules/{rule_id}: not implemented yet" for rule_id in missing])
    return settings


def absorb(tally: Tally, result: RangeResult) -> None:
    tally.add_rows(result.rows)
    tally.encounters += result.encounters
    tally.patients += result.patients
    tally.administrations += result.administrations
    for patient_id, flagged in result.flagged:
        tally.add_flagged(patient_id, flagged)
    for skip, shared in result.skips:
        tally.skip(skip, shared)


def meta(job: AuditJob, settings: Settings, seconds: float) -> dict[str, Any]:
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "export_dir": str(job.export_dir),
        "config": settings.source,
        "since": job.since.isoformat() if job.since else None,
        "until": job.until.isoformat() if job.until else None,
        "workers": job.workers,
        "seconds": round(seconds, 3),
    }


def write_report(summary: dict[str, Any], out_dir: Path) -> Path | None:
    """report.html by the colleague's cds_service.audit.report, when that module is there."""
    if importlib.util.find_spec("cds_service.audit.report") is None:
        return None
    from cds_service.audit import report  # type: ignore[attr-defined,unused-ignore]

    path = out_dir / "report.html"
    report.write_html(summary, path)
    return path
