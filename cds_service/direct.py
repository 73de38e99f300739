"""A plain hook call served by the worker's thread without gunicorn's request parser and environ builder.

A request reaches a thread whole, as bytes (cds_service.worker). gunicorn's path then parses those bytes a
second time in Python (its Parser and Request, about 6% of a hook call's CPU under load), builds the WSGI
environ, and writes the head with a date it formats anew for every answer (about 2% more; profile in
docs/benchmarks.md). For the plainest requests this module does the same three steps with less work:

- `read_head` takes a request only when gunicorn would read it, and read it the same: a POST to a path of
  plain characters (no query, no percent escape), HTTP/1.1, each header once, by a name in PLAIN_HEADERS, with
  a value of visible ASCII, spaces and tabs, a Connection header (if any) of keep-alive or close, within
  gunicorn's limits for the request line and the header fields. Anything else (None) goes to gunicorn, as
  before. Every header gunicorn reads for itself is out: the forwarded and scheme headers it trusts from some
  peers, a name with an underscore (header_map), Upgrade, Expect, Transfer-Encoding.
- `environ` is the environ gunicorn's wsgi.create builds for such a request, key for key
  (tests/unit/test_direct.py holds the two to each other).
- `Answer` is gunicorn's own Response (status and header checks, framing, keep-alive), with the Date header
  formatted once a second rather than once an answer.

The worker (cds_service.worker.RequestReadingWorker.direct) keeps gunicorn's per-request bookkeeping around it:
the request count and max_requests, keep-alive limits, pre_request and post_request, and its error answers.
"""

from __future__ import annotations

import io
import re
import time
from email.utils import formatdate
from typing import Any

from gunicorn.http import wsgi
from gunicorn.http.wsgi import Response, _make_early_hints_callback

# The request headers a plain call may carry (lower case), and the name gunicorn gives each; any other sends the
# request to gunicorn's path.
PLAIN_HEADERS = {name.encode(): name.upper() for name in (
    "host", "content-type", "content-length", "accept", "accept-encoding", "accept-language", "authorization",
    "user-agent", "connection", "cache-control", "pragma", "origin", "referer", "x-request-id", "traceparent",
    "tracestate",
)}
# The head whole: the request line, header fields of a name of letters, digits and hyphens and a value of visible
# ASCII with inner spaces and tabs, and the empty line. (No field value holds a CR, so it ends at the first.)
FIELD = rb"\r\n[A-Za-z0-9-]+:[ \t]*(?:[\x21-\x7e](?:[ \t\x21-\x7e]*[\x21-\x7e])?)?[ \t]*"
HEAD = re.compile(rb"POST (/[A-Za-z0-9._~!$&'()*+,;=:@/-]*) HTTP/1\.1((?:" + FIELD + rb")*)\r\n\r\n")
FIELDS = re.compile(rb"\r\n([A-Za-z0-9-]+):[ \t]*((?:[\x21-\x7e](?:[ \t\x21-\x7e]*[\x21-\x7e])?)?)[ \t]*")


class Head:
    """A plain request's head: what gunicorn's Request would say of it."""

    __slots__ = ("path", "headers", "close", "body_start")
    # What gunicorn's Response asks of its request.
    method = "POST"
    version = (1, 1)

    def __init__(self, path: str, headers: list[tuple[str, str]], close: bool, body_start: int) -> None:
        self.path = path
        self.headers = headers  # (NAME in upper case, value), as gunicorn keeps them
        self.close = close  # the client asked to close after the answer (Connection: close)
        self.body_start = body_start  # where the body starts in the request's bytes

    def should_close(self) -> bool:
        return self.close


def read_head(request: bytes, limit_line: int, limit_fields: int, limit_field_size: int) -> Head | None:
    """The head of a request that arrived whole, when it is plain (see the module's text); else None."""
    head = HEAD.match(request)
    if head is None or (limit_line and head.start(2) > limit_line):
        return None
    headers = []
    close = False
    for field in FIELDS.finditer(request, head.start(2), head.end(2)):
        if limit_field_size and field.end() - field.start() > limit_field_size:  # gunicorn counts the CRLF
            return None
        name = PLAIN_HEADERS.get(field.group(1).lower())
        if name is None:
            return None
        value = field.group(2).decode("ascii")
        if name == "CONNECTION":
            lowered = value.lower()
            if lowered not in ("keep-alive", "close"):
                return None
            close = lowered == "close"
        headers.append((name, value))
    if len(headers) > limit_fields or len({name for name, _value in headers}) < len(headers):
        return None  # more fields than gunicorn takes, or one given twice
    return Head(head.group(1).decode("ascii"), headers, close, head.end())


def environ(head: Head, body: bytes, base: dict[str, Any], sock: Any, client: Any, server: Any,
            answer: Answer) -> dict[str, Any]:
    """What gunicorn's wsgi.create gives a threaded worker's app for this request (`base` holds the keys that
    are the same for every request: base_environ)."""
    env = dict(base)
    env.update({
        "wsgi.input": io.BytesIO(body),
        "gunicorn.socket": sock,
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": "",
        "RAW_URI": head.path,
        "SERVER_PROTOCOL": "HTTP/1.1",
    })
    for name, value in head.headers:
        if name == "CONTENT-TYPE":
            env["CONTENT_TYPE"] = value
        elif name == "CONTENT-LENGTH":
            env["CONTENT_LENGTH"] = value
        else:
            env["HTTP_" + name.replace("-", "_")] = value
    env["wsgi.url_scheme"] = "http"
    env["REMOTE_ADDR"] = client[0]
    env["REMOTE_PORT"] = str(client[1])
    env["SERVER_NAME"] = server[0]
    env["SERVER_PORT"] = str(server[1])
    env["PATH_INFO"] = head.path
    env["SCRIPT_NAME"] = ""
    env["wsgi.early_hints"] = _make_early_hints_callback(head, sock, answer)
    return env


def base_environ(cfg: Any) -> dict[str, Any]:
    """gunicorn's base_environ, as its threaded worker has it (wsgi.multithread set), made once for the worker:
    gunicorn makes one per request, with a wsgi.errors on the same log handlers."""
    return {**wsgi.base_environ(cfg), "wsgi.multithread": True}


class Answer(Response):  # type: ignore[misc]
    """gunicorn's Response, with the Date header's text made once a second (email.utils.formatdate costs 1.7% of
    a hook call under load; a Date names a second)."""

    def is_chunked(self) -> bool:
        """gunicorn's Response.is_chunked, without its first step, which asks gunicorn's settings for the protocol
        (uwsgi answers are never chunked) through Config.__getattr__ on every answer: the direct path serves the
        HTTP protocol only (RequestReadingWorker.direct_ok)."""
        if self.response_length is not None or self.req.version <= (1, 0) or self._omits_body:
            return False
        return True

    def default_headers(self) -> list[str]:
        """gunicorn's Response.default_headers, but for the date's text."""
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        major, minor = self.req.version
        headers = [f"HTTP/{major}.{minor} {self.status}\r\n", f"Server: {self.version}\r\n",
                   f"Date: {http_date()}\r\n", f"Connection: {connection}\r\n"]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers


_dates: tuple[int, str] = (0, "")


def http_date() -> str:
    """gunicorn's util.http_date() for now, formatted once per second."""
    global _dates  # noqa: PLW0603 - a (second, text) pair swapped whole: a thread reads the old or the new one
    now = int(time.time())
    second, text = _dates
    if second != now:
        text = formatdate(now, localtime=False, usegmt=True)
        _dates = (now, text)
    return text
