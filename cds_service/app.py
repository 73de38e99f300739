"""create_app: the bootstrap that loads configuration and wires the store, renderer and blueprints."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from flask_cors import CORS

from cds_service import config as configuration
from cds_service import protocol, rules
from cds_service.cards import CardRenderer, load_templates
from cds_service.errors import ConfigError
from cds_service.runtime import Runtime, fhir_client_factory, terms_of
from cds_service.store import FeedbackStore
from cds_service.web import auth, errors, health, hooks, logs, reports


def create_app(config: str | os.PathLike[str] | None = None) -> Flask:
    """Create and configure an instance of the Flask application."""
    settings = configuration.load(config)
    templates = load_templates()
    missing = sorted(rule_id for rule_id in settings.enabled_rules() if rule_id not in rules.RULES)
    missing += sorted(rule_id for rule_id in settings.enabled_rules() if rule_id not in templates)
    if missing:
        raise ConfigError(settings.source, [f"rules/{rule_id}: not implemented yet" for rule_id in missing])
    store = FeedbackStore(settings.store_url)
    store.create_schema()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    indicators = {rule_id: r.indicator for rule_id, r in settings.rules.items() if r.indicator}
    app.extensions["cds"] = Runtime(
        settings=settings,
        terms=terms_of(settings),
        store=store,
        renderer=CardRenderer(templates, indicators),
        services=protocol.services(settings.close_hook),
        make_fhir_client=fhir_client_factory(settings),
    )
    CORS(
        app,
        origins=list(settings.cors_origins),
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=86400,
    )
    errors.register(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(reports.bp)
    if settings.auth_required:
        auth.install(app, auth.JwtVerifier(
            settings.raw["auth"].get("trusted_issuers", []),
            config_dir=Path(settings.source).resolve().parent,
            clock_skew=settings.raw["auth"].get("clock_skew_seconds", 5),
            store=store,
        ), settings.raw["auth"].get("public_base_url", ""))
    logs.configure()
    return app
