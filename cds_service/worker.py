"""The gunicorn worker: a thread takes a request only once it has arrived whole, and leaves its answer to the event
loop when the client does not take it at once. No thread ever waits on a client.

gunicorn's gthread worker hands a connection to one of its threads at the request's first byte, and the thread
reads the rest, and writes the answer, with blocking calls: a client that sends a byte a second, or reads
nothing, holds that thread until it is done, and four such clients held every thread of a default instance.
Here a thread reads what the socket holds without waiting; a request whole in that one read (almost every
request) is served at once, as before. Anything less goes back to the worker's event loop, which reads the rest
without blocking (cds_service.arrival says when it is whole) and then gives it to a thread, from memory. The
thread writes its answer without blocking too (Outbox); what the socket does not take at once, the event loop
sends as the client reads, and only then reads the connection's next request. A slow or idle connection costs a
file descriptor and a buffer, never a thread; the common path costs what gunicorn's own does (benchmarks/ab.py:
0.998 of its throughput per core, where reading every request in the event loop with h11 cost 13%).

- A request not whole within server.request_read_seconds of its first byte is answered 408 and closed; a new
  connection that sends nothing within FIRST_BYTE_SECONDS is closed unanswered; an answer the client does not
  finish taking within SEND_SECONDS of the thread's last write ends the connection.
- What arrival refuses (not HTTP/1.1, both Content-Length and Transfer-Encoding, a head too large, a body too
  large, tiny chunks, an Expect other than 100-continue) is answered here with an OperationOutcome, and so is
  what gunicorn's own parser refuses, logged without the offending text (a header can carry a token).
- A client waiting for "100 Continue" gets it from here.
- Bytes a client sends past the end of its request (pipelining) wait until the answer before them has left.
- The requests being read hold at most BUFFER_BYTES in all; past that the one that asks for more is answered 503.
- At its connection limit the worker closes the oldest idle or slow connection to take a new one, and when the
  process is out of file descriptors it closes one instead of dying.
- Closing a connection after its answer (half-close, then reading what the client still sends, for at most
  2 s) is done by the event loop, not by blocking it, and counts against the connection limit.

Each of these closes is counted in cds_http_connections_closed_total by reason; a warning line a minute at most
sums the slow ones. TLS ends in front of the service (docs/deploy.md): this worker reads plain HTTP/1.1 only.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

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
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from cds_service import direct
from cds_service.arrival import Reading, plainly_whole, refusal

log = logging.getLogger("cds_service.worker")

RECV_BYTES = 64 * 1024
FIRST_BYTE_SECONDS = 5.0  # as gunicorn's keepalive: a new connection's first byte
SEND_SECONDS = 10.0  # an answer the client does not finish taking in this time ends the connection
BUFFER_BYTES = 64 * 1024 * 1024  # per worker, what the requests being read may hold in all
LINGER_SECONDS = 2.0  # as gunicorn's close_graceful
LINGER_BYTES = 64 * 1024
SLOW_WARNING_SECONDS = 60.0
NOTIFY_SECONDS = 1.0  # the worker tells the arbiter it is alive at most this often (see notify)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
GATHER = object()  # a thread's verdict: the request is not whole yet, the event loop reads the rest
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

# gunicorn parser errors that are not a plain 400; the others are.
PARSE_STATUS = ((LimitRequestLine, 414), (LimitRequestHeaders, 431), (UnsupportedTransferCoding, 501),
                (ForbiddenProxyRequest, 403), (ConfigurationProblem, 500))


class Conn(TConn):  # type: ignore[misc]
    def __init__(self, worker: RequestReadingWorker, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.reading: Reading | None = None
        self.deadline = 0.0  # while it waits for its first byte
        self.waiting = False  # registered with the poller for its request's bytes
        self.request = b""  # the whole request, for the thread
        self.ahead = b""  # bytes read and not yet part of a request handed over
        self.data_ready = True  # a thread never waits for data (gunicorn's handle would, 5 s)
        self.unsent = bytearray()  # the end of an answer the socket had not taken when the thread was done

    def close(self, graceful: bool = False) -> None:
        """gunicorn's finish_request closes a connection after its last answer (having counted it out)."""
        if graceful:
            self.worker.nr_conns += 1  # lingering, it still holds a descriptor
            self.worker.linger(self.sock)
        else:
            util.close(self.sock)


class Outbox:
    """The socket as a thread writes to it: what the kernel takes at once is sent, the rest is kept for the event
    loop (Conn.unsent), so a thread never waits on a client that reads slowly or not at all. Everything else is
    the socket's own, except that it stays non-blocking.

    Writes are held until the thread is done with the request (`flush`) or HELD_BYTES are waiting: gunicorn
    writes an answer's head and its body apart, and each send is a TCP segment that the kernel carries to the
    client on this worker's core (one send less per call: about 1% of a hook call's CPU on one core,
    benchmarks/ab.py). A larger answer leaves as it is written; an informational answer (103 Early Hints, which
    no route of the service sends) would leave with the final one."""

    HELD_BYTES = 64 * 1024

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.unsent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes >= self.HELD_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is held: what the kernel does not take at once joins `unsent`."""
        if not self.held:
            return
        data = self.held[0] if len(self.held) == 1 else b"".join(self.held)
        self.held, self.held_bytes = [], 0
        if not self.unsent:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            data = data[sent:]
        self.unsent += data

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def setblocking(self, _flag: bool) -> None:
        """gunicorn asks for a blocking socket: writes here never block, and reads come from memory."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class RequestReadingWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Insertion-ordered, so by deadline (all of one kind wait as long), and each taken out at once.
        self.fresh: dict[Conn, None] = {}  # new, no byte yet
        self.reading: dict[Conn, None] = {}  # a request arriving
        self.sending: dict[Conn, None] = {}  # the end of an answer leaving
        self.lingering: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.buffered = 0  # bytes the requests being read hold
        self.slow_since_warning = 0
        self.warned = -SLOW_WARNING_SECONDS
        self.stopping = False
        self.next_notify = 0.0
        self.next_parent_check = 0.0

    def init_process(self) -> None:
        settings = self.app.settings
        self.read_seconds: float = settings.request_read_seconds
        self.max_body: int = settings.max_body_bytes
        from cds_service import metrics

        self.metrics = metrics
        cfg = self.cfg
        # The direct path (cds_service.direct) builds gunicorn's environ for plain HTTP with this worker's
        # settings; with TLS, the PROXY protocol, uwsgi, an access log, a SCRIPT_NAME or a hook of gunicorn's that
        # reads the request, every request takes gunicorn's own path.
        self.direct_ok = not (cfg.is_ssl or cfg.proxy_protocol not in ("off", False, None)
                              or getattr(cfg, "protocol", "http") != "http"
                              or os.environ.get("SCRIPT_NAME")
                              or cfg.accesslog or cfg.logconfig or cfg.logconfig_dict or cfg.syslog
                              or cfg.pre_request is not cfg.settings["pre_request"].default
                              or cfg.post_request is not cfg.settings["post_request"].default)
        self.direct_base = direct.base_environ(cfg)
        # What the direct path reads of gunicorn's settings for every request, read once: each read of cfg is a
        # lookup through gunicorn's Setting objects (about 1% of a hook call's CPU, profile_http.py). A worker's
        # settings do not change while it lives (a reload starts new workers).
        self.head_limits = (cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size)
        self.keepalive_on = bool(cfg.keepalive)
        self.request_hooks = (cfg.pre_request, cfg.post_request)
        super().init_process()

    # Connections arrive. A thread takes a connection once bytes are there and reads what the socket holds, without
    # waiting: a request whole in that one read (almost every one) is served at once, and the event loop does no
    # more per request than gunicorn's own. Anything less goes back to the event loop, which reads the rest.

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                if not self.make_room():
                    time.sleep(0.05)  # nothing of ours to close: the listener stays readable, do not spin
                return
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns + 1 >= self.worker_connections:
            self.make_room()  # gunicorn stops accepting at the limit: idle and slow connections go first
        self.nr_conns += 1
        conn = Conn(self, client_sock, client_addr, listener.getsockname())
        conn.deadline = time.monotonic() + (FIRST_BYTE_SECONDS if self.alive else STOP_KEEPALIVE_LINGER)
        self.fresh[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_first_bytes, conn))

    def on_first_bytes(self, conn: Conn, _sock: socket.socket) -> None:
        del self.fresh[conn]
        self.poller.unregister(conn.sock)
        self.enqueue_req(conn)

    def finish_request(self, conn: Conn, fs: Any) -> None:
        result = fs.result() if not fs.cancelled() and fs.exception() is None else False
        if conn.unsent:  # the end of the answer has not left: the event loop sends it first
            conn.deadline = time.monotonic() + SEND_SECONDS
            self.sending[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self.on_writable, conn, result))
        else:
            self.carry_on(conn, result)

    def on_writable(self, conn: Conn, result: Any, _sock: socket.socket) -> None:
        try:
            sent = conn.sock.send(conn.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent, result = len(conn.unsent), False
        del conn.unsent[:sent]
        if not conn.unsent:
            del self.sending[conn]
            self.poller.unregister(conn.sock)
            self.carry_on(conn, result)

    def carry_on(self, conn: Conn, result: Any) -> None:
        """The answer has left: close, read on from what came after the request, or wait for the next one."""
        if not result:
            self.nr_conns -= 1
            conn.close(graceful=True)
        elif result is GATHER or conn.ahead:
            ahead, conn.ahead = conn.ahead, b""  # a request begun, or the next one pipelined: read on from it
            self.start_reading(conn, ahead)
        else:  # kept alive, as gunicorn's finish_request does it
            conn.set_timeout()
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    def start_reading(self, conn: Conn, first: bytes) -> None:
        """Read the connection's next request in the event loop: from `first`, what the socket holds now, and then
        what comes."""
        seconds = self.read_seconds if self.alive else min(self.read_seconds, STOP_KEEPALIVE_LINGER)
        conn.reading = Reading(time.monotonic() + seconds, self.max_body)
        self.reading[conn] = None
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
        if self.buffered + len(data) > BUFFER_BYTES:
            self.end_reading(conn)
            self.refuse(conn, 503, "busy")
            return True
        held = len(reading.data)
        verdict, status = reading.feed(data)
        self.buffered += len(reading.data) - held
        if verdict == "more":
            if reading.wants_continue():
                send_quietly(conn.sock, CONTINUE)
            return False
        self.end_reading(conn)
        if verdict == "whole":
            conn.request, conn.ahead = reading.request, bytes(reading.data[reading.used:])
            self.enqueue_req(conn)
        elif status:
            self.refuse(conn, status, "too_large" if status == 413 else "malformed")
        else:
            self.drop(conn)
        return True

    def end_reading(self, conn: Conn) -> None:
        assert conn.reading is not None
        self.buffered -= len(conn.reading.data)
        conn.reading = None
        del self.reading[conn]
        if conn.waiting:
            conn.waiting = False
            self.poller.unregister(conn.sock)

    # The thread's side.

    def handle(self, conn: Conn) -> Any:
        """Serve the request the event loop read, or one whole in what the socket holds now; else GATHER. The
        answer goes through an Outbox."""
        if not conn.request:
            try:
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
        if not conn.initialized:  # once per connection: each of these calls lets go of the interpreter lock
            conn.init()  # gunicorn's makes the socket blocking; it stays non-blocking from here on
            conn.sock.setblocking(False)
        head = self.plain_head(conn, request)
        sock, outbox = conn.sock, Outbox(conn.sock)
        conn.sock = outbox
        keep: Any = False
        try:
            if head is not None:
                keep = self.direct(conn, head, request[head.body_start:])
            else:
                conn.parser.unreader.unread(request)
                keep = super().handle(conn)
        finally:
            try:
                outbox.flush()  # the answer, or what is left of it
            except OSError:  # the client went away before it left: the connection ends, as gunicorn's handle
                keep = False
            conn.sock, conn.unsent = sock, outbox.unsent
        return keep

    def plain_head(self, conn: Conn, request: bytes) -> direct.Head | None:
        """The head of a request the direct path can serve, or None (gunicorn's path serves it)."""
        if not self.direct_ok or not isinstance(conn.client, tuple) or not isinstance(conn.server, tuple) \
                or conn.is_http2:
            return None
        return direct.read_head(request, *self.head_limits)

    def direct(self, conn: Conn, head: direct.Head, body: bytes) -> bool:
        """Serve a plain request as gunicorn's handle and handle_request do (cds_service.direct): the request
        count, keep-alive limits, the pre_request and post_request hooks and the error answers are theirs."""
        answer = direct.Answer(head, conn.sock, self.cfg)
        environ: dict[str, Any] = {}
        pre_request, post_request = self.request_hooks
        try:
            pre_request(self, head)
            environ = direct.environ(head, body, self.direct_base, conn.sock, conn.client, conn.server, answer)
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                answer.force_close()
            if not self.alive or not self.keepalive_on or len(self.keepalived_conns) >= self.max_keepalived:
                answer.force_close()
            respiter = self.wsgi(environ, answer.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    answer.write_file(respiter)
                else:
                    for item in respiter:
                        answer.write(item)
                answer.close()
            finally:
                if hasattr(respiter, "close"):
                    respiter.close()
            return not answer.should_close()
        except OSError as exc:  # the client went away: as gunicorn's handle, quietly unless unexpected
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
            return False
        except Exception as exc:
            if answer.headers_sent:  # too late for an error answer: the connection ends
                self.log.exception("Error handling request")
                return False
            self.handle_error(head, conn.sock, conn.client, exc)
            return False
        finally:
            try:
                post_request(self, head, environ, answer)
            except Exception:
                self.log.exception("Exception in post_request hook")

    def _keepalive_after(self, conn: Conn, keepalive: bool) -> bool:
        """The answer is sent: whatever gunicorn finds wrong past it now ends the connection, not a second answer."""
        try:
            return bool(super()._keepalive_after(conn, keepalive))
        except ParseException:
            return False

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
        self.linger(conn.sock)  # still counted in nr_conns until it is closed

    def drop(self, conn: Conn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    def linger(self, sock: socket.socket) -> None:
        """Half-close, then read what the client still sends until it closes, LINGER_SECONDS or LINGER_BYTES: an
        unread byte at close would make the kernel reset the connection and cut the answer short. The socket counts
        in nr_conns until it is closed."""
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
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
            self.end_linger(sock)

    def end_linger(self, sock: socket.socket) -> None:
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError):
            pass
        self.nr_conns -= 1
        util.close(sock)

    def make_room(self) -> bool:
        """Close the connection that matters least: a lingering one, else one that has sent nothing, else the
        oldest kept alive, else the slowest request. False when there is none."""
        if self.lingering:
            self.end_linger(self.lingering.popleft()[1])
        elif self.fresh:
            self.metrics.count_connection_closed("idle")
            self.close_fresh(next(iter(self.fresh)))
        elif self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
        elif self.reading:
            self.slow(next(iter(self.reading)))
        else:
            return False
        return True

    def close_fresh(self, conn: Conn) -> None:
        del self.fresh[conn]
        self.poller.unregister(conn.sock)
        self.drop(conn)

    def slow(self, conn: Conn) -> None:
        self.end_reading(conn)
        self.slow_since_warning += 1
        self.refuse(conn, 408, "slow")

    def notify(self) -> None:
        """gunicorn's loop tells the arbiter it is alive (a utime of the worker's file, a system call that lets go of
        the interpreter lock) on every round of events: under load, twice a request. The arbiter reads it against
        server.timeout_seconds, so once a second is enough; a quarter of the worker's timeout when that is less
        (gunicorn gives a worker half the configured timeout: an eighth of it)."""
        now = time.monotonic()
        if now >= self.next_notify:
            self.next_notify = now + min(NOTIFY_SECONDS, self.timeout / 4)
            super().notify()

    def is_parent_alive(self) -> bool:
        """gunicorn's loop asks, on every round of events, whether the arbiter still lives (getppid, a system
        call): once a second, as notify, is soon enough for a worker left behind to stop."""
        now = time.monotonic()
        if now < self.next_parent_check:
            return True
        self.next_parent_check = now + NOTIFY_SECONDS
        return bool(super().is_parent_alive())

    def murder_pending(self) -> None:
        """gunicorn's loop calls this after each round of events, and while it stops: requests too slow to arrive are
        answered 408 (once the worker stops, those still arriving after 2 s), new connections that sent nothing
        are closed, lingering closes that outstayed LINGER_SECONDS are closed."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.stopping:  # stopping: requests still arriving get a short grace
            self.stopping = True
            for conn in self.reading:
                conn.reading.deadline = min(conn.reading.deadline, now + STOP_KEEPALIVE_LINGER)
            for conn in self.fresh:
                conn.deadline = min(conn.deadline, now + STOP_KEEPALIVE_LINGER)
        while self.reading and (conn := next(iter(self.reading))).reading.deadline <= now:
            self.slow(conn)
        while self.fresh and (conn := next(iter(self.fresh))).deadline <= now:
            self.metrics.count_connection_closed("idle")
            self.close_fresh(conn)
        while self.sending and (conn := next(iter(self.sending))).deadline <= now:
            del self.sending[conn]
            self.poller.unregister(conn.sock)
            self.metrics.count_connection_closed("slow_reader")
            self.drop(conn)
        while self.lingering and self.lingering[0][0] <= now:
            self.end_linger(self.lingering.popleft()[1])
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
