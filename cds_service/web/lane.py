"""The hook call's lane: POST /cds-services/{id} answered without Flask's and werkzeug's request and response
objects, for the calls an EHR makes server to server.

Flask and werkzeug cost a hook call about a sixth of its CPU (benchmarks/profile_http.py): the request and
response objects, the request context, URL routing and the before- and after-request functions. A call that
needs none of what they add goes down this lane, a WSGI function in front of the app that does what the app
would do for it, in the same order, with the same parts: the configuration reload check, the JWT check
(cds_service.trust), service.handle_hook, the metrics, the access log, the answer's JSON with the headers
web.headers and web.cors give it, and the errors web.errors turns into OperationOutcomes.

A call takes the lane when it is plainly one: POST, a path that is exactly /cds-services/{a service's id},
no SCRIPT_NAME, a JSON Content-Type, a Content-Length within server.max_body_bytes, and no header that
flask_cors reads (a browser's Origin, a preflight's). Anything else, and a call whose JWT is refused, goes
to the app as it came (the lane reads no body before it has decided), and the app answers it as always,
with its own trace of a refusal. tests/protocol/test_lane.py holds the lane's answers to the app's, header
for header, over the scenarios and the errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_current_url

from cds_service import metrics
from cds_service.errors import CDSError, Unauthorized
from cds_service.jsontext import loads_plain
from cds_service.runtime import Runtime
from cds_service.service import Call
from cds_service.web.auth import REFUSED, audience, bearer_of
from cds_service.web.body import json_mimetype
from cds_service.web.cors import asks_cors
from cds_service.web.errors import GENERIC_500, error_headers, outcome_body
from cds_service.web.hooks import access_log, json_bytes

log = logging.getLogger("cds_service")

PREFIX = "/cds-services/"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]


class HookLane:
    """WSGI: the lane for plain hook calls in front of `app`, which answers everything else."""

    def __init__(self, app: WSGIApp, runtime_of: Callable[[], Runtime], before: Callable[[], None],
                 tail_headers: Headers, default: Callable[[Any], Any], error_json: Callable[[Any], bytes],
                 max_body: Callable[[], int | None]) -> None:
        self.app = app
        self.runtime_of = runtime_of  # the current Runtime (a reload replaces it)
        self.before = before  # the app's configuration reload check
        self.max_body = max_body  # the app's MAX_CONTENT_LENGTH, which werkzeug holds a body to
        # What web.cors and web.headers add to an answer to a call that asks nothing of CORS, in their order.
        self.tail_headers = tail_headers
        self.default = default  # what the app's JSON provider writes for a type JSON has not (hooks.json_response)
        self.error_json = error_json  # an OperationOutcome as jsonify writes it (web.errors)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(PREFIX) or environ.get("SCRIPT_NAME") \
                or asks_cors(environ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        try:
            self.before()
            rt = self.runtime_of()
            service = rt.services.get(path[len(PREFIX):])
            length = content_length(environ)
            limit = self.max_body()
            if service is None or length is None or (limit is not None and length > limit) or not json_type(environ):
                return self.app(environ, start_response)
            if rt.verifier is not None:
                refusal = self.refusal(rt, environ)
                if refusal is not None:  # the app answers the 401 and leaves its trace, without checking again
                    environ[REFUSED] = refusal
                    return self.app(environ, start_response)
        except Exception:  # noqa: BLE001 - nothing is read or claimed yet: the app answers it as it always does
            return self.app(environ, start_response)
        call = Call(service.id)  # timed from here, as the view times it (after the JWT check)
        status, body, extra = 500, b"", []
        try:
            depth, stream = rt.settings.max_json_depth, environ["wsgi.input"]

            def read() -> tuple[Any, bool]:
                raw = stream.read(length) if length else b""
                if len(raw) < length:  # the client went away mid-body (werkzeug's ClientDisconnected)
                    raise ClientGone("Bad Request")
                return loads_plain(raw, depth)

            outcome = rt.answer(call, read, service)
            metrics.count_cards(outcome.response["cards"])
            status, body = 200, json_bytes(outcome.response, self.default)
        except CDSError as exc:
            status, body = exc.status, self.error_json(outcome_body(exc.status, exc.code, exc.message))
            extra = error_headers(exc)
        except Exception as exc:  # as web.errors: a generic 500, the details only in the log
            log.error("unexpected error", extra={"hook_instance": call.hook_instance,
                                                 "error_type": type(exc).__name__})
            status, body = 500, self.error_json(outcome_body(500, "exception", GENERIC_500))
        finally:
            access_log(call)
            metrics.observe_request(service.id, "call", status, time.perf_counter() - started)
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra,
                        *self.tail_headers])
        return [body]

    @staticmethod
    def refusal(rt: Runtime, environ: dict[str, Any]) -> str | None:
        """None when the call's JWT verifies (its jti is then claimed), else why not (web.auth's reasons)."""
        assert rt.verifier is not None
        try:
            rt.verifier.verify(bearer_of(environ.get("HTTP_AUTHORIZATION", "")), audience(
                rt.settings.auth.public_base_url, environ["PATH_INFO"],
                lambda: get_current_url(environ, strip_querystring=True)))
        except Unauthorized as exc:
            return exc.reason
        return None


class ClientGone(CDSError):
    """Fewer bytes came than the Content-Length said: a 400, worded as the app words werkzeug's."""

    status = 400
    code = "invalid"


def content_length(environ: Mapping[str, Any]) -> int | None:
    """The Content-Length as a number, or None (none, not digits, or too many of them: the app decides)."""
    text = environ.get("CONTENT_LENGTH", "")
    return int(text) if text.isdigit() and text.isascii() and len(text) < 20 else None


def json_type(environ: Mapping[str, Any]) -> bool:
    """The body is JSON by its Content-Type, as web.body.is_json says of werkzeug's mimetype."""
    return json_mimetype(environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower())



def install(app: Flask) -> None:
    """Put the lane in front of the app's WSGI function. What the app's after-request functions add to an
    answer to a plain call (web.cors, web.headers) is asked of them once, here, as web.cors does for itself."""
    with app.test_request_context("/", method="POST"):
        answer = app.process_response(app.response_class())
    tail = [(name, value) for name, value in answer.headers if name not in ("Content-Type", "Content-Length")]
    watcher = app.extensions.get("cds_watcher")
    outer = app.wsgi_app
    # Behind ProxyFix, as the app: the URL a JWT's aud is checked against is the one the client called.
    proxy = outer if isinstance(outer, ProxyFix) else None
    lane = HookLane(
        proxy.app if proxy is not None else outer,
        lambda: app.extensions["cds"],
        watcher.maybe_reload if watcher is not None else (lambda: None),
        tail,
        app.json.default,  # type: ignore[attr-defined]
        lambda outcome: app.json.response(outcome).get_data(),  # type: ignore[attr-defined]
        lambda: app.config["MAX_CONTENT_LENGTH"],
    )
    if proxy is not None:
        proxy.app = lane
    else:
        app.wsgi_app = lane  # type: ignore[method-assign]
