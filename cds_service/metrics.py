"""Prometheus metrics (prefix cds_), exposed at GET /metrics.

Under `cds-service serve` every gunicorn worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (set by
cds_service.server before the workers start) and a scrape sums them; without that variable the values live in this
process (the Flask test client, `cds-service evaluate`). prometheus_client picks its storage when it is first
imported, so the variable must be set before this module is imported.

Every label value comes from a closed set (service ids, rule ids, outcomes), never from the request as sent.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ProcessId:
    """os.getpid(), read once per process: prometheus_client's per-process files ask for the pid on every value
    they write, to notice a fork, and os.getpid() is a system call (2.5% of a hook call's CPU under load, for its
    six or seven values). A forked child learns its own pid at once (os.register_at_fork)."""

    pid = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.pid = os.getpid()

    @classmethod
    def current(cls) -> int:
        return cls.pid


os.register_at_fork(after_in_child=ProcessId.refresh)
if MULTIPROC_ENV in os.environ:  # before the first metric is made, which takes its storage from ValueClass
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(process_identifier=ProcessId.current)
# 1 ms to 5 s: a hook answered from prefetch takes milliseconds, one that calls the FHIR server up to its deadline.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FHIR_OUTCOMES = ("ok", "not_found", "http_error", "timeout", "unreachable", "too_large", "invalid", "refused")
UNKNOWN_RULE = "unknown"

REQUESTS = Counter(
    "cds_requests_total",
    "CDS Hooks requests by service id (or discovery / unknown), endpoint (call, feedback, discovery) and HTTP status.",
    ["service", "endpoint", "status"],
)
REQUEST_DURATION = Histogram(
    "cds_request_duration_seconds",
    "Time to answer a CDS Hooks request, by service id and endpoint.",
    ["service", "endpoint"],
    buckets=BUCKETS,
)
FHIR_FETCHES = Counter(
    "cds_fhir_fetches_total",
    "GETs to the EHR's FHIR server by outcome: " + ", ".join(FHIR_OUTCOMES) + ".",
    ["outcome"],
)
FHIR_FETCH_DURATION = Histogram(
    "cds_fhir_fetch_duration_seconds",
    "Time of one GET to the EHR's FHIR server, from sending it to the last byte read or the failure.",
    buckets=BUCKETS,
)
CARDS = Counter("cds_cards_total", "Cards returned, by rule id.", ["rule"])
FEEDBACK = Counter(
    "cds_feedback_total",
    "Feedback entries newly stored, by rule id (unknown for a card this store did not issue) and outcome.",
    ["rule", "outcome"],
)
STORE_WRITE_ERRORS = Counter(
    "cds_store_write_errors_total",
    "Failed writes of a batch of the store's logs (cards_issued, evaluations) behind the requests, by table; "
    "rows the database refuses are written one by one and only those dropped; a database that does not answer "
    "is tried again until it does.",
    ["table"],
)
STORE_ROWS_SHED = Counter(
    "cds_store_rows_shed_total",
    "Rows of the store's logs not queued because the write-behind queue was full (the database slow or down).",
    ["table"],
)

CONNECTIONS_CLOSED = Counter(
    "cds_http_connections_closed_total",
    "Connections the serving layer closed before the app saw a request on them, by reason: slow (not whole within "
    "server.request_read_seconds, 408), idle (not a byte within it; closed unanswered), malformed (not valid "
    "HTTP/1.1, 400, 414 or 431), too_large (413).",
    ["reason"],
)

CONSOLE_LOGINS = Counter(
    "cds_console_logins_total",
    "Console logins by outcome: ok, wrong_token, locked (refused with 429: too many wrong tokens from the address).",
    ["outcome"],
)


@functools.cache
def child(metric: Counter | Histogram, *values: str) -> Any:
    """metric.labels(*values), looked up once: the label sets are few and closed, and labels() costs a lock
    and a check of every value on each call."""
    return metric.labels(*values)


def observe_request(service: str, endpoint: str, status: int, seconds: float | None) -> None:
    child(REQUESTS, service, endpoint, str(status)).inc()
    if seconds is not None:
        child(REQUEST_DURATION, service, endpoint).observe(seconds)


def observe_fhir_fetch(outcome: str, seconds: float | None) -> None:
    """One FHIR GET; seconds is None when the GET was never sent (refused, or no time left)."""
    child(FHIR_FETCHES, outcome).inc()
    if seconds is not None:
        FHIR_FETCH_DURATION.observe(seconds)


def count_cards(cards: Iterable[Mapping[str, Any]]) -> None:
    for card in cards:
        child(CARDS, card["source"]["topic"]["code"]).inc()


def count_feedback(stored: Iterable[tuple[str | None, str]]) -> None:
    """(rule id or None, outcome) of each feedback entry that was newly stored."""
    for rule, outcome in stored:
        FEEDBACK.labels(rule or UNKNOWN_RULE, outcome).inc()


def count_store_write_error(table: str) -> None:
    STORE_WRITE_ERRORS.labels(table).inc()


def count_store_rows_shed(table: str, rows: int) -> None:
    STORE_ROWS_SHED.labels(table).inc(rows)


def count_connection_closed(reason: str) -> None:
    child(CONNECTIONS_CLOSED, reason).inc()


def count_console_login(outcome: str) -> None:
    child(CONSOLE_LOGINS, outcome).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition: summed over every process that wrote to PROMETHEUS_MULTIPROC_DIR, else this one's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
