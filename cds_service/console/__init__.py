"""The web console at /console: try a request, inspect and what-if the configuration, read feedback.

Server-rendered pages for people. Registered only when console.enabled is true. When console.token is
set, the console asks for it once and then keeps a signed session cookie (HttpOnly, SameSite=Strict,
path /console) whose signing key is derived from the token, so changing the token ends every session.
It never reads or needs the EHR's JWT, and it never writes the configuration or the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from functools import lru_cache
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from itsdangerous import URLSafeTimedSerializer
from werkzeug.exceptions import NotFound

from cds_service import analytics, metrics
from cds_service.console import evaluate, lockout, present
from cds_service.errors import InvalidHookRequest
from cds_service.partb import report
from cds_service.runtime import Runtime

bp = Blueprint(
    "console", __name__, url_prefix="/console", template_folder="templates",
    static_folder="static", static_url_path="/static",
)

log = logging.getLogger("cds_service.console")
COOKIE_NAME = "cds_console"
SESSION_HOURS = 12
FORM_SLACK_BYTES = 64 * 1024  # the other form fields beside a request or configuration of max_body_bytes
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
OPEN_ENDPOINTS = {"console.static", "console.login"}


@lru_cache(maxsize=8)
def session_key(token: str) -> bytes:
    """The cookie signing key, stretched from the token so a stolen cookie does not make guessing it cheap."""
    return hashlib.pbkdf2_hmac("sha256", token.encode("utf-8"), b"cds-console-session", 100_000)


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, keyed by the console token and scoped to /console."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Without the cookie, the empty session Flask's interface gives, without building its signer first
        (every hook call comes here, and none carries the console's cookie, whose path is /console; a
        request with no Cookie header at all is not even parsed for one)."""
        if "HTTP_COOKIE" not in request.environ or not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = session_key(app.extensions["cds"].settings.console_token)
        return URLSafeTimedSerializer(
            key, salt=self.salt, serializer=self.serializer,
            signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
        )

    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE_NAME

    def get_cookie_path(self, app: Flask) -> str:
        return "/console"

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Strict"

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def install(app: Flask) -> None:
    """Serve the console; build_app calls this only when console.enabled is true."""
    app.session_interface = ConsoleSessionInterface()
    app.extensions["console-lockout"] = lockout.Lockout()  # outlives a reload: the runtime is rebuilt, not this
    app.register_blueprint(bp)


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["cds"]
    return rt


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def logged_in(rt: Runtime) -> bool:
    if not rt.settings.console_token:
        return True
    at = session.get("at")
    return session.get("auth") is True and isinstance(at, int | float) and time.time() - at < SESSION_HOURS * 3600


@bp.before_request
def guard() -> ResponseReturnValue | None:
    rt = runtime()
    if not rt.settings.console_enabled:  # turned off by a configuration reload
        raise NotFound()
    request.max_form_memory_size = rt.settings.max_body_bytes + FORM_SLACK_BYTES
    if request.endpoint not in OPEN_ENDPOINTS and not logged_in(rt):
        return redirect(url_for("console.login"), code=303)
    if request.method == "POST":
        given = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not (given and expected and hmac.compare_digest(str(given).encode(), str(expected).encode())):
            raise InvalidHookRequest("The form is stale or did not come from this console: reload the page.")
    return None


@bp.after_request
def headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def page_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "token_required": bool(runtime().settings.console_token)}


# ---------------------------------------------------------------- access


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    token = runtime().settings.console_token
    if not token or logged_in(runtime()):
        return redirect(url_for("console.try_request"), code=303)
    if request.method == "GET":
        error = "That is not the console token." if session.pop("refused", False) else None
        return render_template("console/login.html", error=error)
    settings, store = runtime().settings, runtime().store
    guard: lockout.Lockout = current_app.extensions["console-lockout"]
    address = lockout.client_key(request.remote_addr)
    standing = guard.standing(store, address, settings.console_login_failures, settings.console_lockout_seconds)
    if standing.retry_after is not None:
        metrics.count_console_login("locked")
        if guard.first_refusal(address, standing.retry_after):
            log.warning(json.dumps({"event": "console_login_locked", "address": address,
                                    "retry_after_seconds": standing.retry_after}))
        minutes = math.ceil(standing.retry_after / 60)
        page = render_template("console/login.html", error=(
            f"Too many wrong tokens from your address: try again in {minutes} minute{'s' if minutes > 1 else ''}."))
        return page, 429, {"Retry-After": str(standing.retry_after)}
    given = str(request.form.get("token", ""))
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        guard.failed(store, address, settings.console_lockout_seconds)
        metrics.count_console_login("wrong_token")
        log.warning(json.dumps({"event": "console_login_failed", "address": address,
                                "failures": standing.failures + 1, "limit": settings.console_login_failures}))
        session["refused"] = True  # said on the login page the browser is sent back to
        return redirect(url_for("console.login"), code=303)
    guard.succeeded(store, address)
    metrics.count_console_login("ok")
    session.clear()
    session["auth"] = True
    session["at"] = int(time.time())
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect(url_for("console.try_request"), code=303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("console.login"), code=303)


# ---------------------------------------------------------------- try a request


@bp.get("/examples/<example_id>")
def example_json(example_id: str) -> Response:
    item = evaluate.example(example_id)
    if item is None:
        raise NotFound()
    return jsonify({"service": item.service, "request": item.request_for(runtime().settings.close_hook)})


@bp.route("/", methods=["GET", "POST"], strict_slashes=False)
def try_request() -> str:
    rt = runtime()
    form = {"example": "", "service": "", "request_json": ""}
    result, problem, cards = None, None, []
    if request.method == "POST":
        form = {key: str(request.form.get(key, "")) for key in form}
        text, problem = request_text(form, rt)
        if text is not None:
            form["request_json"] = text
            result = evaluate.evaluate(rt, text, form["service"] or None)
            cards = [present.card_view(card) for card in result.cards]
    return render_template(
        "console/try.html",
        examples=evaluate.examples(),
        services=rt.services.values(),
        form=form,
        result=result,
        cards=cards,
        raw=json.dumps(result.body, indent=2, ensure_ascii=False) if result else "",
        problem=problem,
    )


def request_text(form: dict[str, str], rt: Runtime) -> tuple[str | None, str | None]:
    """The request to evaluate: an uploaded file, else the pasted text, else the chosen example."""
    upload = request.files.get("request_file")
    if upload is not None and upload.filename:
        data = upload.read(rt.settings.max_body_bytes + 1)
        try:
            return data.decode("utf-8-sig"), None
        except UnicodeDecodeError:
            return None, "The uploaded file is not UTF-8 text."
    if form["request_json"].strip():
        return form["request_json"], None
    item = evaluate.example(form["example"])
    if item is not None:
        form["service"] = form["service"] or item.service
        return json.dumps(item.request_for(rt.settings.close_hook), indent=2), None
    return None, "Pick an example, paste a request or upload a file."


# ---------------------------------------------------------------- configuration


@bp.route("/config", methods=["GET", "POST"])
def configuration() -> str:
    rt = runtime()
    pasted = present.as_yaml(rt.settings.raw)
    problems: list[str] = []
    diffs: list[evaluate.ExampleDiff] | None = None
    if request.method == "POST":
        pasted = str(request.form.get("config_yaml", ""))
        other, problems = evaluate.what_if_runtime(rt, pasted)
        if other is not None:
            diffs = evaluate.compare(rt, other)
    return render_template(
        "console/config.html", view=present.config_view(rt), pasted=pasted, problems=problems, diffs=diffs,
        posted=request.method == "POST",
    )


# ---------------------------------------------------------------- CMS Part B drug files


@bp.get("/catalog")
def catalog() -> str:
    """The CMS quarters loaded, and a drug looked up by NDC, code or name, quarter by quarter."""
    rt = runtime()
    query = str(request.args.get("q", ""))[:200].strip()
    read_as, rows = report.lookup(rt.settings.partb, query) if query else ("", [])
    return render_template(
        "console/catalog.html", query=query, read_as=read_as, rows=present.catalog_rows(rows),
        quarters=present.quarter_rows(rt.settings.partb),
        disagreements=list(report.disagreements(rt.settings.catalog, rt.settings.partb)),
        quarters_dir=str(rt.settings.quarters_dir),
    )


# ---------------------------------------------------------------- feedback


@bp.get("/feedback")
def feedback() -> str:
    rt = runtime()
    since_text, until_text = request.args.get("since", ""), request.args.get("until", "")
    error, stats = None, []
    try:
        since, until = analytics.parse_range(since_text, until_text)
    except ValueError:
        error = "since and until must be dates (2025-03-04) or ISO date-times."
    else:
        try:
            stats = analytics.rule_report(rt.store.engine, since, until)
        except Exception:  # the store is down: say so, without its details
            error = "The store does not answer."
    return render_template(
        "console/feedback.html", since=since_text, until=until_text, error=error, stats=stats,
        chart=present.chart(stats),
    )
