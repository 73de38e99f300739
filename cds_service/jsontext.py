"""JSON text as the service reads it, wherever it comes from (a hook body, a FHIR server's answer, an export):
orjson's parse, the nesting limit checked in C, and whether the text is plain (no whitespace but space, tab,
CR and LF, no escaped one), which lets fhir.structs take the PLAIN Structs. No web framework here: web.body
reads a request's bytes and hands them over."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import orjson

from cds_service.errors import InvalidHookRequest

ASCII = bytes(range(128))
SPACE_ESCAPE = re.compile(rb"\\[uf]")  # \u (any code point) or \f (form feed); `in` is 3 times slower here
# orjson.dumps refuses a value nested deeper than this ("Recursion limit reached"); see too_deep.
ORJSON_MAX_DEPTH = 254
# A body this deep at most holds resources at most 253 deep (they sit 2 levels down or more), which orjson
# writes out: what fhir.structs.accept checks with orjson.dumps when the text is not plain (it refuses 255).
PLAIN_MAX_DEPTH = 255
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as some clients send
wrappers = threading.local()  # each thread's nested lists for too_deep, by their depth


def too_deep(value: Any, limit: int) -> bool:
    """True when the arrays and objects of a parsed JSON value nest deeper than limit (0 or more).

    orjson.dumps refuses, in C, a value nested deeper than ORJSON_MAX_DEPTH; written inside
    ORJSON_MAX_DEPTH - limit lists, the value is refused exactly when it nests deeper than limit, at half
    the cost of a bracket scan of the text. A value orjson cannot write for another reason (an integer
    past 64 bits, a lone surrogate that json.loads kept), a limit past orjson's, and an orjson whose own
    limit is not ORJSON_MAX_DEPTH (ORJSON_LIMIT_HOLDS, checked at import) are walked.
    What counts is the value as parsed: of a key given twice, the parsers keep the last value only."""
    if ORJSON_LIMIT_HOLDS and 0 <= limit < ORJSON_MAX_DEPTH:
        outer, inner = wrapper(ORJSON_MAX_DEPTH - limit)
        previous, inner[0] = inner[0], value  # a check nested in this one (a signal handler's) keeps ours
        try:
            orjson.dumps(outer)
            return False
        except orjson.JSONEncodeError as exc:
            if str(exc) == "Recursion limit reached":
                return True
        finally:
            inner[0] = previous
    return depth_exceeds(value, limit)


def nested_lists(levels: int) -> tuple[list[Any], list[Any]]:
    """`levels` lists (1 or more), each the only item of the one before: (outermost, innermost)."""
    outer = inner = [None]
    for _ in range(levels - 1):
        inner[0] = [None]
        inner = inner[0]
    return outer, inner


def orjson_refuses(levels: int) -> bool:
    try:
        orjson.dumps(nested_lists(levels)[0])
        return False
    except orjson.JSONEncodeError:
        return True


ORJSON_LIMIT_HOLDS = not orjson_refuses(ORJSON_MAX_DEPTH) and orjson_refuses(ORJSON_MAX_DEPTH + 1)


def wrapper(levels: int) -> tuple[list[Any], list[Any]]:
    """This thread's nested_lists(levels), made once.

    Kept per thread: another thread may put its value in the innermost list while this one writes."""
    made: dict[int, tuple[list[Any], list[Any]]] | None = getattr(wrappers, "made", None)
    if made is None:
        made = wrappers.made = {}
    found = made.get(levels)
    if found is None:
        found = made[levels] = nested_lists(levels)
    return found


def only_plain_whitespace(raw: bytes) -> bool:
    """True when no string of this UTF-8 JSON text, once read, can hold whitespace other than space, tab,
    CR and LF (which `str.isspace` and Rust's regex agree on): no `\\u` or `\\f` escape (a false alarm
    on an escaped backslash before u or f only costs the fast path), and no other whitespace character
    among the non-ASCII ones. Control characters are not allowed raw in JSON strings. (A body without
    a backslash is known free of escapes by memchr, some 30 times faster than the regex's search.)"""
    if b"\\" in raw and SPACE_ESCAPE.search(raw):
        return False
    if raw.isascii():
        return True
    try:
        others = raw.translate(None, ASCII).decode()  # what is left of valid UTF-8 is whole characters
    except UnicodeDecodeError:
        return False
    return not any(char.isspace() for char in others)


def loads(raw: bytes, max_depth: int) -> Any:
    """Parse a JSON body; 400 when it is malformed or nests deeper than max_depth.

    orjson reads nearly every body; what it refuses but JSON allows (UTF-16 or UTF-32, a lone surrogate
    escape, a number beyond a double) is read again by the standard library before a 400."""
    return _parse(raw.removeprefix(BOM), max_depth)[0]


def loads_plain(raw: bytes, max_depth: int) -> tuple[Any, bool]:
    """loads, and whether the text is plain: read by orjson, 255 levels deep at most and
    only_plain_whitespace (what fhir.structs.PLAIN asks)."""
    raw = raw.removeprefix(BOM)
    body, by_orjson = _parse(raw, max_depth)
    return body, by_orjson and max_depth <= PLAIN_MAX_DEPTH and only_plain_whitespace(raw)


def _parse(raw: bytes, max_depth: int) -> tuple[Any, bool]:
    """The parsed value, and whether orjson read it (else the standard library did)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise InvalidHookRequest("The JSON body is nested too deeply.") from None
        return loads_slowly(raw, max_depth), False
    if too_deep(body, max_depth):
        raise InvalidHookRequest("The JSON body is nested too deeply.")
    return body, True


def loads_slowly(raw: bytes, max_depth: int) -> Any:
    """json.loads, which detects UTF-16 and UTF-32; NaN and Infinity, which are not JSON, are refused."""
    try:
        body = json.loads(raw, parse_constant=refuse_constant)
    except RecursionError:
        raise InvalidHookRequest("The JSON body is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidHookRequest("The request body is not valid JSON.") from None
    if too_deep(body, max_depth):
        raise InvalidHookRequest("The JSON body is nested too deeply.")
    return well_formed(body)


def well_formed(value: Any) -> Any:
    """The value with each lone surrogate (an escape JSON allows but Unicode does not) as U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [well_formed(v) for v in value]
    if isinstance(value, dict):
        return {well_formed(k): well_formed(v) for k, v in value.items()}
    return value


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when the arrays and objects of a parsed value nest deeper than limit (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
