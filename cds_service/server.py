"""Production serving: gunicorn running the app in each worker.

The master keeps the last good settings. On SIGHUP it re-reads the configuration file: a valid file
becomes the new last good settings; an invalid one is logged with every problem and the restarted
workers keep the old settings, so a bad edit never takes the service down.
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from cds_service import config as configuration
from cds_service.config import Settings
from cds_service.errors import ConfigError

log = logging.getLogger("cds_service.server")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # cds_service.metrics is not imported here: see prepare_metrics_dir


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], settings: Settings) -> None:
        self.options = options
        self.settings = settings  # the last good settings; workers are built from these
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def reload(self) -> None:
        """SIGHUP: adopt the configuration file if it is valid, else keep the last good settings."""
        try:
            self.settings = configuration.load(self.settings.source)
            log.info(json.dumps({"event": "config-reloaded", "file": self.settings.source}))
        except ConfigError as exc:
            log.error(json.dumps({"event": "config-reload-refused", "file": exc.source, "problems": exc.problems}))
        super().reload()

    def load(self) -> Any:
        from cds_service.app import build_app

        return build_app(self.settings)


def serve(settings: Settings, *, config_path: str | None, host: str, port: int, workers: int) -> int:
    """Serve until SIGTERM/SIGINT; workers finish in-flight requests before exiting. A port in use is one line
    and exit 2 (gunicorn's own answer is ten lines of retries)."""
    if port_in_use(host, port):
        print(f"cds-service serve: {host}:{port} is in use. Stop what holds it, or serve on another port: "
              f"make run PORT={port + 1}, cds-service serve --port {port + 1}, or server.port in the configuration.",
              file=sys.stderr)
        return 2
    if config_path is not None:
        os.environ["CDS_SERVICE_CONFIG"] = str(config_path)
    metrics_dir = prepare_metrics_dir()
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "cds_service.worker.RequestReadingWorker",  # gthread, reading each request whole first
        "threads": settings.threads,
        "worker_connections": worker_connections(),
        "sendfile": False,  # every answer goes through cds_service.worker's Outbox
        "timeout": settings.timeout_seconds,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": "cds_service.server.JsonLogger",
        "proc_name": "cds-service",
        "control_socket_disable": True,  # several instances on one host would share one socket path
        "child_exit": child_exit,
        "worker_exit": worker_exit,
    }
    from cds_service.web import logs

    logs.configure(batched=False)  # each worker's create_app gives it the batching handler
    master = os.getpid()
    try:
        GunicornServer(options, settings).run()
    finally:
        if metrics_dir is not None and os.getpid() == master:  # a worker's SystemExit passes through here too
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


class JsonLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own lines (listening, workers booting and exiting, signals, its warnings) as the service's JSON
    lines, with logger "gunicorn.error". The one gunicorn line that quoted a request's text, its warning about a
    malformed request, is never written: cds_service.worker.RequestReadingWorker.handle_error logs the
    request's address and the kind of fault only."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from cds_service.web.logs import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


def port_in_use(host: str, port: int) -> bool:
    """Whether binding as gunicorn does (SO_REUSEADDR) fails because another socket listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def worker_connections() -> int:
    """Connections a worker holds at once: as many as the process may open files, less a margin, up to 10,000.
    The soft limit is raised to the hard one first (a worker's slow and idle connections hold descriptors, not
    threads: cds_service.worker)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(100, min(10_000, soft - 200))


def prepare_metrics_dir() -> str | None:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory before any worker (or prometheus_client) starts.

    prometheus_client picks per-process files or in-memory values when first imported, so the master must not
    import it before this. The operator's directory is used, emptied of old values; else a fresh private one is
    made, whose path is returned for removal when the master exits.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, mode=0o700, exist_ok=True)
        for stale in glob.glob(os.path.join(glob.escape(given), "*.db")):
            os.remove(stale)
        return None
    made = tempfile.mkdtemp(prefix="cds-service-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def child_exit(_arbiter: Any, worker: Any) -> None:
    """gunicorn hook, in the master: a dead worker's live gauges leave the sums (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(_arbiter: Any, _worker: Any) -> None:
    """gunicorn hook, in the worker as it exits: write the store's queued log rows (cards issued, evaluations)
    and the queued log lines."""
    from cds_service import store
    from cds_service.web import logs

    store.flush_all()
    logs.flush()
