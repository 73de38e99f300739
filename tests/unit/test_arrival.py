"""cds_service.arrival: however a request's bytes are cut into reads, the thread is given it whole and exactly: as
sent when it came plainly framed in one piece, else re-written with a Content-Length (a chunked body de-chunked)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.arrival import MAX_CHUNKS, Reading, plainly_whole

MAX_BODY = 4096


def post(body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part) + b"0\r\n\r\n"
        return b"POST /cds-services/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    return b"POST /cds-services/x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def read_all(stream: bytes, cuts: list[int]) -> list[bytes]:
    """The requests given to the thread when `stream` arrives cut at `cuts`, what follows each fed to the next."""
    pieces = [stream[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(stream)], strict=True)]
    given, pending = [], b""
    reading = Reading(deadline=0, max_body=MAX_BODY)
    for piece in pieces:
        pending += piece
        while pending:
            verdict, status = reading.feed(pending)
            if verdict == "more":
                pending = b""
                break
            assert verdict == "whole", (verdict, status)
            given.append(reading.request)
            pending = bytes(reading.data[reading.used:])
            reading = Reading(deadline=0, max_body=MAX_BODY)
    return given


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4),
       chunked=st.lists(st.booleans(), min_size=4, max_size=4), data=st.data())
def test_pipelined_requests_cut_anywhere_come_out_whole_and_in_order(
        bodies: list[bytes], chunked: list[bool], data: st.DataObject) -> None:
    stream = b"".join(post(body, chunked[n]) for n, body in enumerate(bodies))
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=12, unique=True))
    assert read_all(stream, cuts) == [post(body) for body in bodies]  # chunked ones de-chunked


def test_a_get_without_a_body_is_whole_at_its_blank_line() -> None:
    reading = Reading(deadline=0, max_body=MAX_BODY)
    assert reading.feed(b"GET /healthz HTTP/1.1\r\nHost: h\r\n") == ("more", 0)
    assert reading.feed(b"\r\nGET /next") == ("whole", 0)
    assert reading.request == b"GET /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    assert reading.data[reading.used:] == b"GET /next"


def test_empty_lines_before_a_request_are_ignored() -> None:
    reading = Reading(deadline=0, max_body=MAX_BODY)
    assert reading.feed(b"\r\n") == ("more", 0)
    assert reading.feed(post(b"{}")) == ("whole", 0)
    assert reading.request == post(b"{}")


def test_the_rewritten_head_keeps_every_other_field_as_sent() -> None:
    reading = Reading(deadline=0, max_body=MAX_BODY)
    head = (b"POST /x?a=1 HTTP/1.0\r\nHost: h\r\nAuthorization: Bearer t.k.n\r\nX-Mixed-Case: A b\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert reading.feed(head) == ("more", 0)
    assert not reading.wants_continue()  # RFC 9110 10.1.1: ignored in an HTTP/1.0 request
    assert reading.feed(b"{}") == ("whole", 0)
    assert reading.request == (b"POST /x?a=1 HTTP/1.0\r\nHost: h\r\nAuthorization: Bearer t.k.n\r\n"
                               b"X-Mixed-Case: A b\r\nContent-Length: 2\r\n\r\n{}")


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
    reading = Reading(0, MAX_BODY)
    assert reading.feed(post(b"{}") + b"GET /next") == ("whole", 0)
    assert reading.parser is None and reading.request == post(b"{}") and reading.used == len(post(b"{}"))


def test_refusals() -> None:
    assert Reading(0, MAX_BODY).feed(post(b"x" * (MAX_BODY + 1))[:80]) == ("refuse", 413)
    chunked = Reading(0, MAX_BODY)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert chunked.feed(head + b"1000\r\n" + b"a" * 0x1000 + b"\r\n") == ("more", 0)
    assert chunked.feed(b"1\r\na\r\n") == ("refuse", 413)
    smuggled = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert Reading(0, MAX_BODY).feed(smuggled) == ("refuse", 400)
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost h\r\n\r\n" + b"x") == ("refuse", 400)
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\n\r\n") == ("refuse", 400)  # no Host
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost h\r\n")[0] == "more"
    split = Reading(0, MAX_BODY)
    assert split.feed(b"GET / HTTP/1.1\r\n") == ("more", 0)
    assert split.feed(b"Host h\r\n\r\n") == ("refuse", 400)  # what arrives in pieces, h11 reads
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")[1] == 431
    assert Reading(0, MAX_BODY).feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000)[1] == 431  # unfinished
    many = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(130))
    assert Reading(0, MAX_BODY).feed(many) == ("refuse", 431)  # before the head is even whole
    assert Reading(0, MAX_BODY).feed(many + b"\r\n") == ("refuse", 431)
    odd = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 200-ok\r\n\r\n{}"
    assert Reading(0, MAX_BODY).feed(odd) == ("refuse", 417)


def test_tiny_chunks_and_chunk_extensions_are_refused_early() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    tiny = Reading(0, 5_000_000)
    assert tiny.feed(head + b"1\r\n{\r\n" * (MAX_CHUNKS + 2)) == ("refuse", 400)
    padded = Reading(0, MAX_BODY)
    verdict = padded.feed(head)
    for _ in range(200):  # one data byte per chunk, 60 KB of extension each
        verdict = padded.feed(b"1;x=" + b"a" * 60_000 + b"\r\n{\r\n")
        if verdict[0] != "more":
            break
    assert verdict == ("refuse", 413) and len(padded.data) < 2 * 1024 * 1024
    fine = Reading(0, 5_000_000)  # 1 KiB chunks of a large body are honest
    assert fine.feed(head + b"400\r\n" + b"a" * 1024 + b"\r\n" * 1 + (b"400\r\n" + b"a" * 1024 + b"\r\n") * 3000
                     + b"0\r\n\r\n") == ("whole", 0)
    assert fine.request.endswith(b"Content-Length: %d\r\n\r\n" % (3001 * 1024) + b"a" * 3001 * 1024)


def test_100_continue_is_wanted_once() -> None:
    reading = Reading(0, MAX_BODY)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    assert reading.feed(head) == ("more", 0)
    assert reading.wants_continue() and not reading.wants_continue()
    assert reading.feed(b"{}")[0] == "whole"
