"""Retrospective audit: the live service's rules over a FHIR Bulk Data export, one encounter at a time.

export.py reads the NDJSON files line by line; partition.py stages them in an on-disk SQLite file keyed
by patient and hands out ranges of patients; worker.py audits a range in a process of its own; chart.py
builds each encounter's prefetch from the patient's resources; core.py reads and evaluates it with
`fhir.gather` and `service.evaluate`, the code the live service runs; findings.py turns a card into a
findings.csv row; tally.py keeps the counters of summary.json; job.py runs the whole thing; dask_path.py
runs the same per-patient step on a Dask cluster instead (`--engine dask`); report.py draws report.html.
``audit_patient`` (the pure per-patient step, for dask.bag and the like) and ``COLUMNS`` are exposed
lazily, so that importing report.py stays light.
"""

from typing import Any

__all__ = ["COLUMNS", "audit_patient"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cds_service.audit import core

        return getattr(core, name)
    raise AttributeError(f"module 'cds_service.audit' has no attribute {name!r}")
