"""The direct path (cds_service.direct) takes only what gunicorn reads the same way, and gives the app gunicorn's
own environ and the client gunicorn's own answer."""

from __future__ import annotations

import io
import time
from email.utils import formatdate
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from cds_service import direct

PATH = "/cds-services/injection-billing-encounter-discharge"
BODY = b'{"hook": "encounter-discharge", "hookInstance": "d1577c69", "context": {}}'
CLIENT = ("10.1.2.3", 51234)
SERVER = ("127.0.0.1", 8080)


def request(*headers: str, line: str = f"POST {PATH} HTTP/1.1", body: bytes = BODY) -> bytes:
    fields = "".join(f"{h}\r\n" for h in headers)
    return f"{line}\r\n{fields}\r\n".encode("latin-1") + body


def plain(*extra: str, body: bytes = BODY) -> bytes:
    return request("Host: 127.0.0.1:8080", "Content-Type: application/json", f"Content-Length: {len(body)}",
                   *extra, body=body)


class Socket:
    """What gunicorn's parser reads a request from and its Response writes to."""

    def __init__(self, data: bytes = b"") -> None:
        self.data, self.sent = [data], bytearray()

    def recv(self, _size: int) -> bytes:
        return self.data.pop() if self.data else b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    send = sendall


def config() -> Config:
    cfg = Config()
    cfg.set("workers", 2)
    return cfg


def read_head(raw: bytes, cfg: Config | None = None) -> direct.Head | None:
    cfg = cfg or config()
    return direct.read_head(raw, cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size)


def gunicorn_environ(raw: bytes, cfg: Config) -> tuple[Any, dict[str, Any]]:
    sock = Socket(raw)
    req = next(RequestParser(cfg, sock, CLIENT))
    resp, environ = wsgi.create(req, sock, CLIENT, SERVER, cfg)
    environ["wsgi.multithread"] = True  # as gunicorn's gthread worker sets it
    return req, environ


def direct_environ(raw: bytes, cfg: Config) -> dict[str, Any]:
    head = read_head(raw, cfg)
    assert head is not None
    sock = Socket()
    base = direct.base_environ(cfg)
    return direct.environ(head, raw[head.body_start:], base, sock, CLIENT, SERVER, direct.Answer(head, sock, cfg))


TAKEN = [
    plain(),
    plain("Authorization: Bearer eyJhbGciOiJFUzM4NCJ9.e30.c2ln", "Accept: application/json"),
    plain("Connection: close", "User-Agent: Epic/2024 (Hyperdrive)"),
    plain("connection: Keep-Alive", "x-request-id: 5f2b", "traceparent: 00-4bf92f-00f067aa-01"),
    plain("Origin: https://sandbox.cds-hooks.org", "Referer: https://sandbox.cds-hooks.org/"),
    plain("Accept:   application/json ,  */*   ", "Cache-Control: no-cache", "Pragma:"),
    request("Host: example.org", "Content-Type: application/json; charset=utf-8", f"Content-Length: {len(BODY)}",
            line="POST /cds-services/a.b~c-d_e HTTP/1.1"),
    request("Host: example.org", "Content-Length: 0", line="POST /cds-services/x HTTP/1.1", body=b""),
]


@pytest.mark.parametrize("raw", TAKEN)
def test_the_environ_is_gunicorns_key_for_key(raw: bytes) -> None:
    cfg = config()
    req, theirs = gunicorn_environ(raw, cfg)
    ours = direct_environ(raw, cfg)
    assert sorted(ours) == sorted(theirs)
    objects = {"wsgi.input", "wsgi.errors", "wsgi.early_hints", "gunicorn.socket"}
    assert {k: v for k, v in ours.items() if k not in objects} == {k: v for k, v in theirs.items() if k not in objects}
    assert ours["wsgi.input"].read() == theirs["wsgi.input"].read() == raw[raw.index(b"\r\n\r\n") + 4:]
    assert type(ours["wsgi.errors"]) is type(theirs["wsgi.errors"])
    head = read_head(raw, cfg)
    assert head is not None and head.should_close() == req.should_close()


DECLINED = {
    "a GET": request("Host: x", line=f"GET {PATH} HTTP/1.1", body=b""),
    "a lower-case method": request("Host: x", "Content-Length: 0", line=f"post {PATH} HTTP/1.1", body=b""),
    "HTTP/1.0": request("Host: x", "Content-Length: 0", line=f"POST {PATH} HTTP/1.0", body=b""),
    "a query": request("Host: x", "Content-Length: 0", line=f"POST {PATH}?a=1 HTTP/1.1", body=b""),
    "a percent escape": request("Host: x", "Content-Length: 0", line="POST /cds-services/a%2Fb HTTP/1.1", body=b""),
    "an absolute target": request("Host: x", "Content-Length: 0", line=f"POST http://x{PATH} HTTP/1.1", body=b""),
    "X-Forwarded-Proto": plain("X-Forwarded-Proto: https"),
    "X-Forwarded-For": plain("X-Forwarded-For: 10.0.0.1"),
    "Forwarded": plain("Forwarded: for=10.0.0.1"),
    "an underscore in a name": plain("Script_Name: /x"),
    "an unknown header": plain("X-Other: 1"),
    "Upgrade": plain("Upgrade: h2c", "Connection: Upgrade"),
    "Connection: upgrade": plain("Connection: upgrade"),
    "a header twice": plain("Accept: a", "Accept: b"),
    "a value with obs-text": plain("User-Agent: caf\xe9"),
    "a value with a control character": plain("User-Agent: a\x01b"),
    "a space before the colon": plain("Accept : x"),
    "a line without a colon": plain("Accept"),
    "no end of head": b"POST / HTTP/1.1\r\nHost: x\r\n",
}


@pytest.mark.parametrize("raw", DECLINED.values(), ids=DECLINED.keys())
def test_what_gunicorn_reads_for_itself_or_might_refuse_goes_to_gunicorn(raw: bytes) -> None:
    assert read_head(raw) is None


def gunicorn_refuses(raw: bytes, cfg: Config) -> bool:
    try:
        gunicorn_environ(raw, cfg)
    except Exception:  # noqa: BLE001 - any refusal of gunicorn's parser
        return True
    return False


def test_a_request_line_at_gunicorns_limit_is_taken_and_one_past_it_is_not() -> None:
    cfg = config()
    cfg.set("limit_request_line", 80)
    at = request("Host: x", "Content-Length: 0", line=f"POST /{'a' * (80 - 15)} HTTP/1.1", body=b"")
    past = request("Host: x", "Content-Length: 0", line=f"POST /{'a' * (81 - 15)} HTTP/1.1", body=b"")
    assert read_head(at, cfg) is not None and not gunicorn_refuses(at, cfg)
    assert read_head(past, cfg) is None and gunicorn_refuses(past, cfg)


def test_header_fields_past_gunicorns_limits_are_not_taken() -> None:
    cfg = config()
    cfg.set("limit_request_field_size", 40)
    for size in range(30, 45):  # gunicorn counts a field's line with its CRLF
        field = plain("Authorization: Bearer " + "a" * (size - 22))
        assert (read_head(field, cfg) is None) == gunicorn_refuses(field, cfg), size
    cfg = config()
    cfg.set("limit_request_fields", 3)
    assert read_head(plain(), cfg) is not None and not gunicorn_refuses(plain(), cfg)
    assert read_head(plain("Accept: x"), cfg) is None and gunicorn_refuses(plain("Accept: x"), cfg)


@pytest.mark.parametrize("close", [False, True])
def test_the_answer_is_gunicorns_byte_for_byte(close: bool) -> None:
    raw = plain("Connection: close") if close else plain()
    cfg = config()
    headers = [("Content-Type", "application/json"), ("Content-Length", "11"), ("Cache-Control", "no-store")]
    theirs_sock, ours_sock = Socket(), Socket()
    req, _environ = gunicorn_environ(raw, cfg)
    theirs = wsgi.Response(req, theirs_sock, cfg)
    head = read_head(raw, cfg)
    ours = direct.Answer(head, ours_sock, cfg)
    for answer in (theirs, ours):
        answer.start_response("200 OK", headers)
        answer.write(b'{"cards":[]')
        answer.close()
    assert ours.should_close() == theirs.should_close() == close

    def dateless(sent: bytearray) -> bytes:
        return b"\r\n".join(line for line in bytes(sent).split(b"\r\n") if not line.startswith(b"Date: "))

    assert dateless(ours_sock.sent) == dateless(theirs_sock.sent)
    assert b"\r\nDate: " + direct.http_date().encode() + b"\r\n" in bytes(ours_sock.sent)


def test_an_answer_without_a_length_is_chunked_as_gunicorn_chunks_it() -> None:
    cfg = config()
    sock = Socket()
    head = read_head(plain(), cfg)
    answer = direct.Answer(head, sock, cfg)
    answer.start_response("200 OK", [("Content-Type", "text/plain")])
    answer.write(b"hello")
    answer.close()
    assert bytes(sock.sent).endswith(b"\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                                     b"5\r\nhello\r\n0\r\n\r\n")


def test_the_date_is_the_current_second_in_gunicorns_format() -> None:
    before = formatdate(int(time.time()), usegmt=True)
    text = direct.http_date()
    after = formatdate(int(time.time()), usegmt=True)
    assert text in (before, after)


def test_the_body_is_the_bytes_after_the_head() -> None:
    raw = plain(body=b'{"a": "\r\n\r\n"}')
    head = read_head(raw)
    assert head is not None and raw[head.body_start:] == b'{"a": "\r\n\r\n"}'
    assert io.BytesIO(raw[head.body_start:]).read() == b'{"a": "\r\n\r\n"}'
