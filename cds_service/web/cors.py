"""CORS by flask_cors, with its answer to a request that asks nothing of CORS worked out once.

An EHR calls the service server to server: no Origin header. flask_cors answers such a request with the
same headers whatever its path and body (with `always_send`, its default, `Access-Control-Allow-Origin`
for the configured origins), but works them out again on every response, 2 to 3% of a hook call's CPU.
`install` asks flask_cors once, at start, what it adds to such a response and adds just that; a request
that carries any header flask_cors reads (Origin, a preflight's, Private Network Access's), an OPTIONS
request and a response that already has CORS headers still go to flask_cors itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, Response
from flask_cors import CORS

from cds_service.web.current import current_request

ALLOW_ORIGIN = "access-control-allow-origin"  # lower case: header names compare so
# The request headers flask_cors reads (WSGI names): with any of them, flask_cors itself answers.
READ_BY_FLASK_CORS = ("HTTP_ORIGIN", "HTTP_ACCESS_CONTROL_REQUEST_METHOD", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
                      "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK")

AfterRequest = Callable[[Response], Response]
# flask_cors's options for the service, beside the configured origins.
OPTIONS: dict[str, Any] = {
    "allow_headers": ["Authorization", "Content-Type"],
    "methods": ["GET", "POST", "OPTIONS"],
    "max_age": 86400,
}


def install(app: Flask, origins: Iterable[str]) -> None:
    """flask_cors on every path (its default resource, `/*`), for the service's methods and headers."""
    before = list(app.after_request_funcs.get(None, []))
    CORS(app, origins=list(origins), **OPTIONS)
    added = [f for f in app.after_request_funcs[None] if f not in before]
    if len(added) != 1:  # flask_cors works some other way: leave it as it is
        return
    flask_cors_after = added[0]
    with app.test_request_context("/", method="POST"):
        plain = Response()
        bare = list(plain.headers)
        unasked = [h for h in flask_cors_after(plain).headers if h not in bare]  # what flask_cors adds
    position = app.after_request_funcs[None].index(flask_cors_after)
    app.after_request_funcs[None][position] = answered_once(flask_cors_after, unasked)


def answered_once(flask_cors_after: AfterRequest, unasked: list[tuple[str, str]]) -> AfterRequest:
    def cors_after_request(response: Response) -> Response:
        req = current_request()
        if req.method == "OPTIONS" or asks_cors(req.environ) or has_header(response, ALLOW_ORIGIN):
            return flask_cors_after(response)
        headers = response.headers
        for name, value in unasked:
            headers.add(name, value)  # not extend(), which first asks whether the list is a MultiDict or a Mapping
        return response

    return cors_after_request


def asks_cors(environ: Mapping[str, Any]) -> bool:
    """The request carries a header that flask_cors reads (READ_BY_FLASK_CORS)."""
    for name in READ_BY_FLASK_CORS:
        if name in environ:
            return True
    return False


def has_header(response: Response, lowered_name: str) -> bool:
    """`name in response.headers` without its cost when the header is absent: werkzeug looks it up by
    raising and catching a BadRequestKeyError, which builds an HTTP error each time."""
    for name, _value in response.headers:
        if name.lower() == lowered_name:
            return True
    return False
