"""When an HTTP/1.1 request has arrived whole, and the bytes a worker's thread is then given (cds_service.worker).

A request whole in its first read with the plainest framing (plainly_whole) is given as it came. Anything else is
read by h11 as it arrives (Reading), then given re-written with a Content-Length: a chunked body is given
de-chunked, so gunicorn's parser never frames a body that h11 framed (the two read chunk syntax a little
differently). What h11 or the limits refuse is answered here (refusal), never by a thread.

Limits, beside server.max_body_bytes: a head of at most MAX_HEAD_BYTES and MAX_HEAD_LINES lines (gunicorn's own
limits are 100 fields of 8190 bytes), at most MAX_CHUNKS plus one more per KiB of body (a body of tiny chunks
costs h11 about 8 us a chunk), and at most max_body_bytes / 8 + 64 KiB of chunk framing.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

import h11

from cds_service.web.errors import HTTP_ISSUE_CODES, REFUSED_BY_SERVER, outcome_body

MAX_HEAD_BYTES = 64 * 1024  # h11's default is 16 KiB; JWTs make heads long
MAX_HEAD_LINES = 128
MAX_CHUNKS = 1024
FRAMING_BYTES = 64 * 1024
PLAIN_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,15})[ \t]*\r\n")
DROPPED = (b"content-length", b"transfer-encoding", b"expect")  # re-written by whole_request


def plainly_whole(data: bytes, max_body: int) -> tuple[str, int] | None:
    """The verdict on a request that arrived in one piece with the plainest framing: its head whole, a Host, at most
    one Content-Length of digits, no Transfer-Encoding, no Expect, no folded line, and its body all there. None
    for anything else, which h11 reads. This spares h11's 55 us on almost every request (its pure-Python reading
    of a typical 17 KB call), and cannot read a length differently from gunicorn: where the two could differ,
    h11 decides. gunicorn still checks the head in the thread and refuses what is not HTTP."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        return None
    head = data[:end + 2].lower()
    if (b"transfer-encoding" in head or b"expect" in head or b"\n " in head or b"\n\t" in head
            or b"\r\nhost:" not in head or head.count(b"\n") > MAX_HEAD_LINES):
        return None
    lengths = PLAIN_LENGTH.findall(head)
    if len(lengths) > 1 or head.count(b"content-length") != len(lengths):
        return None
    length = int(lengths[0]) if lengths else 0
    if length > max_body:
        return "refuse", 413
    whole = end + 4 + length
    return ("whole", whole) if len(data) >= whole else None


class Reading:
    """One request arriving: the bytes so far and, unless it came plainly framed in one piece, h11's reading of
    them. Once whole, `request` is what the thread is given and `data[used:]` what came after it."""

    def __init__(self, deadline: float, max_body: int) -> None:
        self.deadline = deadline
        self.max_body = max_body
        self.parser: h11.Connection | None = None
        self.data = bytearray()
        self.head: h11.Request | None = None
        self.body = bytearray()
        self.chunks = 0
        self.continued = False
        self.request = b""
        self.used = 0

    def feed(self, data: bytes) -> tuple[str, int]:
        """("more", 0): wait for more; ("whole", 0): `request` is ready; ("refuse", status): answer that, or close
        when status is 0 (the client closed first)."""
        if not self.data:
            data = data.lstrip(b"\r\n")  # RFC 9112 2.2: empty lines before a request are ignored
            if not data:
                return "more", 0
            verdict = plainly_whole(data, self.max_body)
            if verdict is not None:
                self.data += data
                if verdict[0] == "whole":
                    self.used = verdict[1]
                    self.request = bytes(self.data[:self.used])
                    return "whole", 0
                return verdict
        self.data += data
        if self.head is None and self.data.count(b"\n", 0, MAX_HEAD_BYTES) > MAX_HEAD_LINES:
            end = self.data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
            if end < 0 or self.data.count(b"\n", 0, end) > MAX_HEAD_LINES:
                return "refuse", 431
        if self.parser is None:
            self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
            data = bytes(self.data)
        self.parser.receive_data(data)
        try:
            return self.events()
        except h11.RemoteProtocolError as exc:
            return "refuse", exc.error_status_hint

    def events(self) -> tuple[str, int]:
        assert self.parser is not None
        while True:
            event = self.parser.next_event()
            if event is h11.NEED_DATA:
                if len(self.data) > self.max_body + MAX_HEAD_BYTES + self.max_body // 8 + FRAMING_BYTES:
                    return "refuse", 413  # framing past any honest chunking
                return "more", 0
            if isinstance(event, h11.Request):
                verdict = self.check(event)
                if verdict is not None:
                    return verdict
            elif isinstance(event, h11.Data):
                self.body += event.data
                self.chunks += event.chunk_start
                if len(self.body) > self.max_body:
                    return "refuse", 413
                if self.chunks > MAX_CHUNKS + len(self.body) // 1024:
                    return "refuse", 400
            elif isinstance(event, h11.EndOfMessage):
                self.used = len(self.data) - len(self.parser.trailing_data[0])
                self.request = whole_request(self.head, self.body)
                return "whole", 0
            elif isinstance(event, h11.ConnectionClosed):
                return "refuse", 0

    def check(self, head: h11.Request) -> tuple[str, int] | None:
        self.head = head
        assert self.parser is not None
        if len(self.data) - len(self.parser.trailing_data[0]) > MAX_HEAD_BYTES:
            return "refuse", 431
        fields = dict(head.headers)  # h11 refuses a repeated Content-Length that differs
        if b"transfer-encoding" in fields and b"content-length" in fields:
            return "refuse", 400  # RFC 9112 6.3: a smuggling attempt, most likely
        if int(fields.get(b"content-length", b"0")) > self.max_body:
            return "refuse", 413
        expect = fields.get(b"expect")
        if expect is not None and expect.lower() != b"100-continue":
            return "refuse", 417
        return None

    def wants_continue(self) -> bool:
        """True once, when the client waits for "100 Continue" before sending its body."""
        if self.continued or self.parser is None or not self.parser.they_are_waiting_for_100_continue:
            return False
        self.continued = True
        return True


def whole_request(head: h11.Request | None, body: bytearray) -> bytes:
    """The request as the thread reads it: its line and fields as sent, less Transfer-Encoding, Expect and
    Content-Length, then the body's length and the body."""
    assert head is not None
    lines = [b"%s %s HTTP/%s" % (head.method, head.target, head.http_version)]
    lines += [b"%s: %s" % (name, value) for name, value in head.headers.raw_items() if name.lower() not in DROPPED]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + bytes(body)


def refusal(status: int) -> bytes:
    """The answer to a request refused before the app saw it: an OperationOutcome, as the app's own errors."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps(outcome_body(status, HTTP_ISSUE_CODES.get(status, "invalid"),
                                   REFUSED_BY_SERVER.get(status, phrase))).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n").encode() + body
