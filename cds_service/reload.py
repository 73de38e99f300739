"""Configuration reload: a changed file is re-read and checked; an invalid one keeps the old settings.

Each process watches the file it was started from, and the stored CMS Part B quarters (a quarter that
`cds-service catalog import` adds is loaded the same way), checked at most every RELOAD_CHECK_SECONDS, on
the next request. Under gunicorn, SIGHUP to the master restarts the workers with the last good
settings (see server.py). Settings that shape the process itself (server, cors, store) need a restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from flask import Flask

from cds_service import config as configuration
from cds_service import partb, runtime
from cds_service.cards import CardTemplate
from cds_service.errors import ConfigError
from cds_service.partb import stored

log = logging.getLogger("cds_service.reload")
RELOAD_CHECK_SECONDS = 2.0
RESTART_ONLY = ("server", "cors", "store")


def mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


class ConfigWatcher:
    """Reload the app's settings when its configuration file changes."""

    def __init__(self, app: Flask, templates: dict[str, CardTemplate]) -> None:
        self.app = app
        self.templates = templates
        self.path = app.extensions["cds"].settings.source
        self.seen = self.state()
        self.checked = time.monotonic()
        self.lock = threading.Lock()

    def maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self.checked < RELOAD_CHECK_SECONDS or not self.lock.acquire(blocking=False):
            return
        try:
            self.checked = now
            current = self.state()
            if current[0] is not None and current != self.seen:
                self.seen = current
                self.reload()
        finally:
            self.lock.release()

    def state(self) -> tuple[float | None, tuple[tuple[str, int, int], ...]]:
        """The configuration file's mtime, and the names, sizes and mtimes of the stored quarters."""
        quarters_dir = self.app.extensions["cds"].settings.quarters_dir
        return mtime(self.path), stored.signature(partb.directories(quarters_dir))

    def reload(self) -> bool:
        """Re-read the file; swap in the new settings if they are valid, else keep the old and say why."""
        old = self.app.extensions["cds"]
        try:
            settings = configuration.load(self.path)
            new = runtime.build(settings, old.store, self.templates)
        except ConfigError as exc:
            log.error(json.dumps({"event": "config-reload-refused", "file": self.path, "problems": exc.problems}))
            return False
        ignored = [k for k in RESTART_ONLY if settings.raw.get(k) != old.settings.raw.get(k)]
        self.app.extensions["cds"] = new
        log.info(json.dumps({"event": "config-reloaded", "file": self.path, "needs_restart": ignored,
                             "cms_quarters": list(settings.partb.ids)}))
        return True


def install(app: Flask, templates: dict[str, CardTemplate]) -> None:
    if not Path(app.extensions["cds"].settings.source).exists():
        return
    watcher = ConfigWatcher(app, templates)
    app.extensions["cds_watcher"] = watcher
    app.before_request(watcher.maybe_reload)
