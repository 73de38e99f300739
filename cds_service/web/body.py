"""Read a JSON request body within the configured limits; the JSON text itself is cds_service.jsontext's."""

from __future__ import annotations

from typing import Any

from flask import Request

from cds_service.errors import BodyTooLarge, UnsupportedMediaType
from cds_service.jsontext import ORJSON_MAX_DEPTH, PLAIN_MAX_DEPTH, loads, loads_plain, too_deep

__all__ = ["ORJSON_MAX_DEPTH", "PLAIN_MAX_DEPTH", "body_bytes", "is_json", "loads", "loads_plain", "read_json",
           "read_json_plain", "too_deep"]

DRAIN_CHUNKS = 16  # up to 1 MiB


def is_json(request: Request) -> bool:
    return json_mimetype(request.mimetype or "")


def json_mimetype(mimetype: str) -> bool:
    """application/json or a +json type (a mimetype: lower case, without parameters)."""
    return mimetype == "application/json" or mimetype.endswith("+json")


def read_json(request: Request, max_depth: int) -> Any:
    """The parsed body; 415 when it is not JSON, 413 past the size limit, 400 when malformed or too deep."""
    return loads(body_bytes(request), max_depth)


def read_json_plain(request: Request, max_depth: int) -> tuple[Any, bool]:
    """read_json, and whether the body's text is plain (see loads_plain)."""
    return loads_plain(body_bytes(request), max_depth)


def body_bytes(request: Request) -> bytes:
    """The raw body of a JSON request; 415 when it is not JSON, 413 past the size limit."""
    if not is_json(request):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    raw = request.get_data(cache=False)  # werkzeug raises 413 past MAX_CONTENT_LENGTH with a Content-Length
    if request.content_length is not None:
        return raw
    limit = request.max_content_length  # Flask reads it from current_app: only when it is needed
    if limit is not None and len(raw) >= limit:
        # Chunked: werkzeug hands back the body cut at the limit; one more byte means it was larger.
        stream = request.environ["wsgi.input"]
        if stream.read(1):
            # Read a bounded amount more so a client that overshoots a little sees the 413 and not a reset.
            for _ in range(DRAIN_CHUNKS):
                if not stream.read(64 * 1024):
                    break
            raise BodyTooLarge("The request body is larger than this service accepts.")
    return raw
