"""create_app: the bootstrap that loads configuration and wires the store, renderer and blueprints."""

from __future__ import annotations

import gc
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from cds_service import config as configuration
from cds_service import console, reload, runtime
from cds_service.cards import load_templates
from cds_service.config import Settings
from cds_service.store import FeedbackStore
from cds_service.web import auth, cors, errors, headers, health, hooks, lane, logs, metrics, reports

GC_YOUNG_THRESHOLD = 20_000


def create_app(config: str | os.PathLike[str] | None = None) -> Flask:
    """Create and configure an instance of the Flask application."""
    return build_app(configuration.load(config))


def build_app(settings: Settings) -> Flask:
    """The app for checked settings; the file they came from is watched for changes."""
    templates = load_templates()
    store = FeedbackStore(settings.store_url)
    store.create_schema()
    app = Flask(__name__)
    if settings.trusted_proxies:  # the client's address from X-Forwarded-For, as far back as proxies are trusted
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["cds"] = runtime.build(settings, store, templates)
    headers.install(app)
    cors.install(app, settings.cors_origins)
    errors.register(app)
    metrics.install(app)  # before auth: a refused call is counted and timed too
    app.register_blueprint(hooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(reports.bp)
    if settings.console_enabled:
        console.install(app)  # the web console at /console; without it /console is a JSON 404
    auth.install(app)
    reload.install(app, templates)
    logs.configure()
    lane.install(app)  # last: in front of everything above, ProxyFix included
    # What start-up built (validators, schemas, templates) lives as long as the process: keep it out of
    # the collector's scans. A request that makes many objects (a long history) runs about a third faster.
    gc.freeze()
    # A request makes thousands of short-lived objects that reference counting frees; collecting the young
    # generation every 700 allocations (the default) mostly scans those. Every 20,000, a typical call
    # takes about a tenth less CPU (benchmarks/run.py), and a worker's peak RSS stays about the same.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return app
