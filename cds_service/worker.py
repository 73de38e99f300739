"""The gunicorn worker: a thread takes a request only once it has arrived whole.

gunicorn's gthread worker hands a connection to one of its threads at the request's first byte, and the thread
reads the rest with blocking calls: a client that sends a byte a second holds that thread until it is done, and
four such clients held every thread of a default instance. Here a thread reads what the socket holds without
waiting; a request whole in that one read (almost every request) is served at once, as before. Anything
less goes back to the worker's event loop, which reads the rest without blocking (h11 says when it is whole)
and then gives it to a thread, from memory. A slow or idle connection costs a file descriptor and a buffer,
never a thread; the common path costs what gunicorn's own does (benchmarks/ab.py: 0.998 of its throughput
per core, where reading every request in the event loop with h11 cost 13%).

- A request not whole within server.request_read_seconds of its first byte is answered 408 and closed; a new
  connection that sends nothing within that time is closed unanswered.
- A head h11 cannot read is answered 400 (431 when too large) and closed, and so is one with both a
  Content-Length and a Transfer-Encoding: a thread never meets a request whose length two parsers might read
  differently. What gunicorn's own parser refuses is answered with an OperationOutcome too, and logged
  without the offending text (a header can carry a token).
- A body larger than server.max_body_bytes is answered 413 and closed: at once when its Content-Length says
  so, else (chunked) when it grows past the limit. A thread would otherwise wait on the rest of it.
- A client waiting for "100 Continue" gets it from here; gunicorn then sends no second one.
- Bytes a client sends past the end of its request (pipelining) wait for the next turn of the connection.
- Closing a connection after its answer (half-close, then reading what the client still sends, for at most
  2 s) is done by the event loop, not by blocking it.

Each of these closes is counted in cds_http_connections_closed_total by reason; a warning line a minute at most
sums the slow ones. TLS ends in front of the service (docs/deploy.md): this worker reads plain HTTP/1.1 only.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import re
import selectors
import socket
import time
from functools import partial
from http import HTTPStatus
from typing import Any

import h11
from gunicorn import util
from gunicorn.http.errors import (
    ConfigurationProblem,
    ForbiddenProxyRequest,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    ParseException,
    UnsupportedTransferCoding,
)
from gunicorn.http.message import Request
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from cds_service.web.errors import HTTP_ISSUE_CODES, REFUSED_BY_SERVER, outcome_body

log = logging.getLogger("cds_service.worker")

RECV_BYTES = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024  # h11's bound on a request's head (its default is 16 KiB; JWTs make heads long)
LINGER_SECONDS = 2.0  # as gunicorn's close_graceful
LINGER_BYTES = 64 * 1024
SLOW_WARNING_SECONDS = 60.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
GATHER = object()  # a thread's verdict: the request is not whole yet, the event loop reads the rest
PLAIN_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,15})[ \t]*\r\n")


# gunicorn parser errors that are not a plain 400; the others are.
PARSE_STATUS = ((LimitRequestLine, 414), (LimitRequestHeaders, 431), (UnsupportedTransferCoding, 501),
                (ForbiddenProxyRequest, 403), (ConfigurationProblem, 500))


class GatheredRequest(Request):  # type: ignore[misc]
    """A request read from memory: "100 Continue" was already sent by the event loop, if asked for."""

    _policy_expect_continue = False


class Conn(TConn):  # type: ignore[misc]
    def __init__(self, worker: RequestReadingWorker, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.reading: Reading | None = None
        self.waiting = False  # registered with the poller for its request's bytes
        self.request = b""  # the whole request, for the thread
        self.ahead = b""  # bytes read and not yet part of a request handed over
        self.data_ready = True  # a thread never waits for data (gunicorn's handle would, 5 s)

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self.sock)
        else:
            util.close(self.sock)


class Reading:
    """One request arriving: the bytes so far and, unless it came plainly framed in one piece, h11's reading of
    them."""

    def __init__(self, deadline: float, max_body: int) -> None:
        self.deadline = deadline
        self.max_body = max_body
        self.parser: h11.Connection | None = None
        self.data = bytearray()
        self.body = 0
        self.continued = False

    def feed(self, data: bytes) -> tuple[str, int]:
        """("more", 0): wait for more; ("whole", n): the request is the first n bytes; ("refuse", status)."""
        if not self.data:
            verdict = plainly_whole(data, self.max_body)
            if verdict is not None:
                self.data += data
                return verdict
        self.data += data
        if self.parser is None:
            self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
            data = bytes(self.data)
        self.parser.receive_data(data)
        try:
            while True:
                event = self.parser.next_event()
                if event is h11.NEED_DATA:
                    return "more", 0
                if isinstance(event, h11.Request):
                    if len(self.data) - len(self.parser.trailing_data[0]) > MAX_HEAD_BYTES:
                        return "refuse", 431
                    names = [name for name, _ in event.headers]
                    if b"transfer-encoding" in names and b"content-length" in names:
                        return "refuse", 400  # RFC 9112 6.3: a smuggling attempt, most likely
                    if announced(event) > self.max_body:
                        return "refuse", 413
                elif isinstance(event, h11.Data):
                    self.body += len(event.data)
                    if self.body > self.max_body:
                        return "refuse", 413
                elif isinstance(event, h11.EndOfMessage):
                    return "whole", len(self.data) - len(self.parser.trailing_data[0])
                elif isinstance(event, h11.ConnectionClosed):
                    return "refuse", 0  # the client closed before its request was whole
        except h11.RemoteProtocolError as exc:
            return "refuse", exc.error_status_hint

    def wants_continue(self) -> bool:
        if self.continued or self.parser is None or not self.parser.they_are_waiting_for_100_continue:
            return False
        self.continued = True
        return True


def plainly_whole(data: bytes, max_body: int) -> tuple[str, int] | None:
    """The verdict on a request that arrived in one piece with the plainest framing: its head whole, at most one
    Content-Length of digits, no Transfer-Encoding, no Expect, no folded line, and its body all there. None
    for anything else, which h11 reads. This spares h11's 55 us on almost every request (its pure-Python
    reading of a typical 17 KB call), and cannot read a length differently from gunicorn: where the two could
    differ, h11 decides. gunicorn still checks the head in the thread and refuses what is not HTTP."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        return None
    head = data[:end + 2].lower()
    if b"transfer-encoding" in head or b"expect" in head or b"\n " in head or b"\n\t" in head:
        return None
    lengths = PLAIN_LENGTH.findall(head)
    if len(lengths) > 1 or head.count(b"content-length") != len(lengths):
        return None
    length = int(lengths[0]) if lengths else 0
    if length > max_body:
        return "refuse", 413
    whole = end + 4 + length
    return ("whole", whole) if len(data) >= whole else None


def announced(request: h11.Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


def refusal(status: int) -> bytes:
    """The answer to a request refused before the app saw it: an OperationOutcome, as the app's own errors."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps(outcome_body(status, HTTP_ISSUE_CODES.get(status, "invalid"),
                                   REFUSED_BY_SERVER.get(status, phrase))).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class RequestReadingWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: collections.deque[Conn] = collections.deque()  # by deadline: all have the same timeout
        self.lingering: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.slow_since_warning = 0
        self.warned = -SLOW_WARNING_SECONDS
        self.stopping = False

    def init_process(self) -> None:
        settings = self.app.settings
        self.read_seconds: float = settings.request_read_seconds
        self.max_body: int = settings.max_body_bytes
        from cds_service import metrics

        self.metrics = metrics
        super().init_process()

    # Connections arrive. A thread takes a connection once bytes are there and reads what the socket holds, without
    # waiting: a request whole in that one read (almost every one) is served at once, and the event loop does no
    # more per request than gunicorn's own. Anything less goes back to the event loop, which reads the rest.

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = Conn(self, client_sock, client_addr, listener.getsockname())
        self.track(conn)
        conn.waiting = True
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_first_bytes, conn))

    def on_first_bytes(self, conn: Conn, _sock: socket.socket) -> None:
        self.end_reading(conn)
        self.enqueue_req(conn)

    def finish_request(self, conn: Conn, fs: Any) -> None:
        result = fs.result() if not fs.cancelled() and fs.exception() is None else False
        if result is GATHER or (result and conn.ahead):
            ahead, conn.ahead = conn.ahead, b""  # a request begun, or the next one pipelined: read on from it
            conn.sock.setblocking(False)
            self.start_reading(conn, ahead)
            return
        super().finish_request(conn, fs)

    def track(self, conn: Conn) -> None:
        seconds = self.read_seconds if self.alive else min(self.read_seconds, STOP_KEEPALIVE_LINGER)
        conn.reading = Reading(time.monotonic() + seconds, self.max_body)
        self.reading.append(conn)

    def start_reading(self, conn: Conn, first: bytes) -> None:
        """Read the connection's next request in the event loop: from `first`, what the socket holds now, and then
        what comes."""
        self.track(conn)
        if not (first and self.take(conn, first)):
            self.on_request_bytes(conn)

    def on_request_bytes(self, conn: Conn, _sock: socket.socket | None = None) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            self.end_reading(conn)
            self.drop(conn)
        elif data is None or not self.take(conn, data):
            if not conn.waiting:  # nothing more yet: the poller says when
                conn.waiting = True
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def take(self, conn: Conn, data: bytes) -> bool:
        """Feed the bytes; hand the request over or refuse it when that is decided. True when decided."""
        reading = conn.reading
        assert reading is not None
        verdict, value = reading.feed(data)
        if verdict == "more":
            if reading.wants_continue():
                send_quietly(conn.sock, CONTINUE)
            return False
        self.end_reading(conn)
        if verdict == "whole":
            whole = bytes(reading.data)
            conn.request, conn.ahead = whole[:value], whole[value:]
            self.enqueue_req(conn)
        elif value:
            self.refuse(conn, value, "too_large" if value == 413 else "malformed")
        else:
            self.drop(conn)
        return True

    def end_reading(self, conn: Conn) -> None:
        conn.reading = None
        self.reading.remove(conn)
        if conn.waiting:
            conn.waiting = False
            self.poller.unregister(conn.sock)

    # The thread's side.

    def handle(self, conn: Conn) -> Any:
        """Serve the request the event loop read, or one whole in what the socket holds now; else GATHER."""
        if not conn.request:
            try:
                conn.sock.setblocking(False)
                first = conn.sock.recv(RECV_BYTES)
                if not first:
                    return False  # the client closed
            except (BlockingIOError, InterruptedError):
                first = b""  # readable, and yet nothing: the event loop waits for it
            except OSError:
                return False
            verdict = plainly_whole(first, self.max_body) if first else None
            if verdict is None or verdict[0] != "whole":
                conn.ahead = first
                return GATHER
            conn.request, conn.ahead = first[:verdict[1]], first[verdict[1]:]
        request, conn.request = conn.request, b""
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.mesg_class = GatheredRequest
        conn.parser.unreader.unread(request)
        return super().handle(conn)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """A request gunicorn's parser refused, or an error outside the app: an OperationOutcome (not gunicorn's
        HTML page), and a log line with the error's kind and the client's address only. gunicorn's own line
        quotes the offending header, and a header can carry a token."""
        status = 500
        if isinstance(exc, ParseException) and not isinstance(exc, InvalidResponseHeader | InvalidResponseHeaderName):
            status = next((code for kind, code in PARSE_STATUS if isinstance(exc, kind)), 400)
        address = addr[0] if isinstance(addr, tuple) and addr else ""
        if status < 500:
            self.metrics.count_connection_closed("malformed")
        level = logging.WARNING if status < 500 else logging.ERROR
        log.log(level, json.dumps({"event": "request_refused", "status": status, "error_type": type(exc).__name__,
                                   "address": address}))
        try:
            util.write_nonblock(client, refusal(status))
        except OSError:
            pass

    # Connections leave.

    def refuse(self, conn: Conn, status: int, reason: str) -> None:
        self.metrics.count_connection_closed(reason)
        send_quietly(conn.sock, refusal(status))
        self.nr_conns -= 1
        self.linger(conn.sock)

    def drop(self, conn: Conn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    def linger(self, sock: socket.socket) -> None:
        """Half-close, then read what the client still sends until it closes, LINGER_SECONDS or LINGER_BYTES: an
        unread byte at close would make the kernel reset the connection and cut the answer short."""
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            util.close(sock)
            return
        entry = (time.monotonic() + LINGER_SECONDS, sock)
        self.lingering.append(entry)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_linger_bytes, entry, [0]))

    def on_linger_bytes(self, entry: tuple[float, socket.socket], drained: list[int], sock: socket.socket) -> None:
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_BYTES:
            self.lingering.remove(entry)
            self.poller.unregister(sock)
            util.close(sock)

    def murder_pending(self) -> None:
        """gunicorn's loop calls this about once a second, and while it stops: requests too slow to arrive are
        answered 408 (once the worker stops, those still arriving after 2 s), lingering closes that outstayed
        LINGER_SECONDS are closed."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.stopping:  # stopping: requests still arriving get a short grace
            self.stopping = True
            for conn in self.reading:
                conn.reading.deadline = min(conn.reading.deadline, now + STOP_KEEPALIVE_LINGER)
        while self.reading and self.reading[0].reading.deadline <= now:
            conn = self.reading[0]
            began = bool(conn.reading.data)
            self.end_reading(conn)
            if began:
                self.slow_since_warning += 1
                self.refuse(conn, 408, "slow")
            else:  # not a byte: nothing to answer
                self.metrics.count_connection_closed("idle")
                self.drop(conn)
        while self.lingering and self.lingering[0][0] <= now:
            _, sock = self.lingering.popleft()
            try:
                self.poller.unregister(sock)
            except (KeyError, ValueError):
                pass
            util.close(sock)
        if self.slow_since_warning and now - self.warned >= SLOW_WARNING_SECONDS:
            log.warning(json.dumps({"event": "slow_requests_closed", "count": self.slow_since_warning,
                                    "request_read_seconds": self.read_seconds}))
            self.warned, self.slow_since_warning = now, 0


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """A short answer on a non-blocking socket: what the kernel does not take at once is not sent."""
    try:
        sock.send(data)
    except OSError:
        pass
