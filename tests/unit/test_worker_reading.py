"""cds_service.worker.Reading: however a request's bytes are cut into reads, it is handed over whole and exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.worker import Reading, plainly_whole

MAX_BODY = 4096


def post(body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part) + b"0\r\n\r\n"
        return b"POST /cds-services/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    return b"POST /cds-services/x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def read_all(stream: bytes, cuts: list[int]) -> list[bytes]:
    """The requests handed over when `stream` arrives cut at `cuts`, the surplus of each fed to the next."""
    pieces = [stream[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(stream)], strict=True)]
    requests, pending = [], b""
    reading = Reading(deadline=0, max_body=MAX_BODY)
    for piece in pieces:
        pending += piece
        while pending:
            verdict, value = reading.feed(pending)
            if verdict == "more":
                pending = b""
                break
            assert verdict == "whole", (verdict, value)
            whole = bytes(reading.data)
            requests.append(whole[:value])
            pending = whole[value:]
            reading = Reading(deadline=0, max_body=MAX_BODY)
    return requests


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4),
       chunked=st.lists(st.booleans(), min_size=4, max_size=4), data=st.data())
def test_pipelined_requests_cut_anywhere_come_out_whole_and_in_order(
        bodies: list[bytes], chunked: list[bool], data: st.DataObject) -> None:
    sent = [post(body, chunked[n]) for n, body in enumerate(bodies)]
    stream = b"".join(sent)
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=12, unique=True))
    assert read_all(stream, cuts) == sent


def test_a_get_without_a_body_is_whole_at_its_blank_line() -> None:
    reading = Reading(deadline=0, max_body=MAX_BODY)
    assert reading.feed(b"GET /healthz HTTP/1.1\r\nHost: h\r\n") == ("more", 0)
    assert reading.feed(b"\r\nGET /next") == ("whole", len(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"))


@pytest.mark.parametrize(("head", "verdict"), [
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}", "refuse"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\n{}", "refuse"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 2\r\n\r\n{}", "refuse"),
    # h11 reads these, and gunicorn then refuses them: a repeated Content-Length, a folded line
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "whole"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nX: a\r\n Content-Length: 2\r\n\r\n{}", "whole"),
])
def test_framing_two_parsers_could_read_differently_goes_to_h11(head: bytes, verdict: str) -> None:
    assert plainly_whole(head, MAX_BODY) is None
    assert Reading(0, MAX_BODY).feed(head)[0] == verdict


def test_plain_framing_is_read_without_h11() -> None:
    request = post(b"{}") + b"GET /next"
    reading = Reading(0, MAX_BODY)
    assert reading.feed(request) == ("whole", len(post(b"{}")))
    assert reading.parser is None


def test_refusals() -> None:
    assert Reading(0, MAX_BODY).feed(post(b"x" * (MAX_BODY + 1))[:80]) == ("refuse", 413)
    chunked = Reading(0, MAX_BODY)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert chunked.feed(head + b"1000\r\n" + b"a" * 0x1000 + b"\r\n") == ("more", 0)
    assert chunked.feed(b"1\r\na\r\n") == ("refuse", 413)
    smuggled = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert Reading(0, MAX_BODY).feed(smuggled) == ("refuse", 400)
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost h\r\n\r\n" + b"x")[0] == "whole"  # gunicorn's 400
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost h\r\n")[0] == "more"
    split = Reading(0, MAX_BODY)
    assert split.feed(b"GET / HTTP/1.1\r\n") == ("more", 0)
    assert split.feed(b"Host h\r\n\r\n") == ("refuse", 400)  # what arrives in pieces, h11 reads
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")[1] == 431
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000)[1] == 431  # unfinished
    assert Reading(0, MAX_BODY).feed(b"") == ("refuse", 0)  # closed before a byte


def test_100_continue_is_wanted_once() -> None:
    reading = Reading(0, MAX_BODY)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    assert reading.feed(head) == ("more", 0)
    assert reading.wants_continue() and not reading.wants_continue()
    assert reading.feed(b"{}")[0] == "whole"
