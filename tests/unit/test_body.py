"""Reading a JSON body: orjson, and the nesting limit checked by orjson writing the value out."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service import jsontext as body
from cds_service.errors import InvalidHookRequest
from cds_service.jsontext import loads, loads_plain, only_plain_whitespace, too_deep

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(alphabet='[]{}"\\ab,:\u00e9'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\ab'), inner, max_size=3),
    max_leaves=30,
)


def depth(value: Any) -> int:
    """The nesting of arrays and objects, the plain recursive way."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@given(value=JSON, limit=st.integers(0, 12))
def test_the_check_agrees_with_a_walk_of_the_value(value: Any, limit: int) -> None:
    assert too_deep(value, limit) == (depth(value) > limit)
    assert body.depth_exceeds(value, limit) == (depth(value) > limit)


def nested(n: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for i in range(n):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("leaf", ["leaf", [], {}])
@pytest.mark.parametrize("limit", [0, 1, 99, 100, 152, 253, 254, 255, 300])
def test_the_check_is_exact_at_every_limit_orjson_can_write_and_past_it(limit: int, leaf: Any) -> None:
    inner = 0 if isinstance(leaf, str) else 1  # an empty array or object is a level of its own
    if limit - inner >= 0:
        assert too_deep(nested(limit - inner, leaf), limit) is False
    assert too_deep(nested(limit + 1 - inner, leaf), limit) is True
    assert body.ORJSON_LIMIT_HOLDS


def test_only_the_value_a_repeated_key_keeps_counts() -> None:
    raw = b'{"a": ' + b"[" * 150 + b"]" * 150 + b', "a": 1}'
    assert loads(raw, 100) == {"a": 1}
    with pytest.raises(InvalidHookRequest, match="nested too deeply"):
        loads(b'{"a": 1, "a": ' + b"[" * 150 + b"]" * 150 + b"}", 100)


def test_orjson_refuses_deep_values_with_the_message_the_check_reads() -> None:
    # If an orjson release words it otherwise, too_deep still answers right (by the walk), only slower.
    with pytest.raises(orjson.JSONEncodeError, match="^Recursion limit reached$"):
        orjson.dumps(nested(body.ORJSON_MAX_DEPTH + 1))
    orjson.dumps(nested(body.ORJSON_MAX_DEPTH))


@pytest.mark.parametrize("leaf", [2**70, json.loads(r'"lone \ud800 surrogate"')])
def test_values_orjson_cannot_write_are_walked(leaf: Any) -> None:
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(leaf)
    assert too_deep(nested(20, leaf), 20) is False
    assert too_deep(nested(21, leaf), 20) is True


@pytest.mark.parametrize("n, limit, too_deep", [(100, 100, False), (101, 100, True), (5000, 100, True)])
def test_deep_bodies_are_refused_with_the_nesting_message(n: int, limit: int, too_deep: bool) -> None:
    raw = b"[" * n + b"]" * n
    if not too_deep:
        assert loads(raw, limit) is not None
        return
    with pytest.raises(InvalidHookRequest, match="nested too deeply"):
        loads(raw, limit)


@pytest.mark.parametrize("raw", [b"{", b'{"a": NaN}', b'{"a": -Infinity}', b"\xff\xfe{", b"", b"\xef\xbb\xbf"])
def test_malformed_json_is_a_clear_400(raw: bytes) -> None:
    with pytest.raises(InvalidHookRequest, match="not valid JSON"):
        loads(raw, 100)


@pytest.mark.parametrize("raw, expected", [
    (b'\xef\xbb\xbf{"hook": "x"}', {"hook": "x"}),  # a UTF-8 byte order mark
    ('{"hook": "\u00e9"}'.encode("utf-16"), {"hook": "\u00e9"}),
    ('{"hook": "x"}'.encode("utf-32-le"), {"hook": "x"}),
    (b'{"note": "cut \\ud83d"}', {"note": "cut \ufffd"}),  # a lone surrogate (a note cut mid-emoji) -> U+FFFD
    (b'{"\\udc00": "a \\ud83d\\ude00 pair"}', {"\ufffd": "a \U0001f600 pair"}),
    (b'{"n": 1e400}', {"n": float("inf")}),  # read; the resource holding it is then found invalid
])
def test_json_that_orjson_refuses_is_read_by_the_standard_library(raw: bytes, expected: Any) -> None:
    assert loads(raw, 100) == expected


def test_the_slow_path_keeps_the_nesting_limit() -> None:
    raw = ("[" * 101 + "]" * 101).encode("utf-16")
    with pytest.raises(InvalidHookRequest, match="nested too deeply"):
        loads(raw, 100)
    assert loads(("[" * 100 + "]" * 100).encode("utf-16"), 100) is not None


def test_brackets_inside_strings_do_not_count() -> None:
    raw = json.dumps({"text": "[[[[[[[[[[ {{{{ \\\" [[[["}).encode()
    assert loads(raw, 1) == {"text": "[[[[[[[[[[ {{{{ \\\" [[[["}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32-le"])
@pytest.mark.parametrize(("n", "deeper"), [(10, False), (11, True)])
def test_a_body_in_any_json_encoding_keeps_the_limit(encoding: str, n: int, deeper: bool) -> None:
    value: Any = "leaf"
    for _ in range(n):
        value = {'a\\"[': [value]} if n % 2 else [{"b{": value}]  # brackets and escapes inside keys
    raw = json.dumps(value).encode(encoding)
    if deeper:
        with pytest.raises(InvalidHookRequest, match="nested too deeply"):
            loads(raw, 20)
    else:
        assert loads(raw, 20) == value


@given(st.text(), st.booleans())
def test_a_plain_text_holds_no_whitespace_but_space_tab_cr_and_lf(text: str, ascii_only: bool) -> None:
    raw = json.dumps({"text": text}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if only_plain_whitespace(raw):
        assert not any(char.isspace() and char not in " \t\r\n" for char in json.loads(raw)["text"])


@pytest.mark.parametrize(("raw", "plain"), [
    (b'{"a": "b c\\td\\ne"}', True),
    ('{"a": "Ana\u00efs"}'.encode(), True),  # non-ASCII, no whitespace among it
    ('{"a": "a\u00a0b"}'.encode(), False),  # a no-break space, raw
    (b'{"a": "a\\u00e9"}', False),  # any \\u escape
    (b'{"a": "a\\fb"}', False),  # a form feed
    (b'{"a": "b", "n": 1e400}', False),  # beyond a double: read by the standard library
])
def test_the_body_says_whether_its_text_is_plain(raw: bytes, plain: bool) -> None:
    assert loads_plain(raw, 20)[1] is plain
    assert loads_plain(raw, 256)[1] is False  # deeper than orjson writes out: the strict Structs


def test_a_body_read_by_the_standard_library_is_never_plain() -> None:
    assert loads_plain('{"a": "b"}'.encode("utf-16"), 20) == ({"a": "b"}, False)
