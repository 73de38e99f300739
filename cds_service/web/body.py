"""Read a JSON request body within the configured limits."""

from __future__ import annotations

import json
from typing import Any

from flask import Request

from cds_service.errors import BodyTooLarge, InvalidHookRequest, UnsupportedMediaType

DRAIN_CHUNKS = 16  # up to 1 MiB


def is_json(request: Request) -> bool:
    mimetype = request.mimetype or ""
    return mimetype == "application/json" or mimetype.endswith("+json")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when arrays and objects nest deeper than limit (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def read_json(request: Request, max_depth: int) -> Any:
    """The parsed body; 415 when it is not JSON, 413 past the size limit, 400 when malformed or too deep."""
    if not is_json(request):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    raw = request.get_data(cache=False)  # werkzeug raises 413 past MAX_CONTENT_LENGTH with a Content-Length
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # Chunked: werkzeug hands back the body cut at the limit; one more byte means it was larger.
        stream = request.environ["wsgi.input"]
        if stream.read(1):
            # Read a bounded amount more so a client that overshoots a little sees the 413 and not a reset.
            for _ in range(DRAIN_CHUNKS):
                if not stream.read(64 * 1024):
                    break
            raise BodyTooLarge("The request body is larger than this service accepts.")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidHookRequest("The JSON body is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidHookRequest("The request body is not valid JSON.") from None
    if depth_exceeds(body, max_depth):
        raise InvalidHookRequest("The JSON body is nested too deeply.")
    return body
