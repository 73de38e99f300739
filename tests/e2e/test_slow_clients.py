"""Slow and odd clients against a real `cds-service serve` (issue 19): the serving layer reads every request whole
before a thread takes it, so slow connections never hold the threads normal requests need."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import load_scenario
from tests.e2e.conftest import Server, new_session, start_server
from tests.e2e.test_metrics_serve import workers_of

DISCHARGE = "injection-billing-encounter-discharge"
PATH = f"/cds-services/{DISCHARGE}"
MAX_BODY = 65536
THREADS = 2 * 2  # two workers of two threads: every thread the server has


def hook_body() -> bytes:
    return json.dumps(load_scenario("01")["request"]).encode()


def head(port: int, length: int | None = None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{framing}{extra}"
            "\r\n").encode()


@contextmanager
def connection(server: Server, timeout: float = 10) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


class Answers:
    """The HTTP/1.1 answers arriving on a socket, one at a time (1xx answers skipped); bytes read past one
    answer are kept for the next."""

    def __init__(self, sock: socket.socket, data: bytes = b"") -> None:
        self.sock, self.data = sock, data

    def more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection after {self.data!r}"
        self.data += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while True:
            while b"\r\n\r\n" not in self.data:
                self.more()
            head_bytes, _, self.data = self.data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if status >= 200:
                break
        length = int(headers.get("content-length", "0"))
        while len(self.data) < length:
            self.more()
        body, self.data = self.data[:length], self.data[length:]
        return status, headers, body


def read_answer(sock: socket.socket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One answer, from `data` already read and then the socket."""
    return Answers(sock, data).next()


def outcome_text(body: bytes) -> str:
    outcome: dict[str, Any] = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    text: str = outcome["issue"][0]["diagnostics"]
    return text


def normal_call(server: Server) -> requests.Response:
    with new_session() as session:
        return session.post(server.url(PATH), data=hook_body(), headers={"Content-Type": "application/json"},
                            timeout=10)


def closed_counter(server: Server, reason: str) -> float:
    with new_session() as session:
        text = session.get(server.url("/metrics"), timeout=10).text
    found = re.search(rf'^cds_http_connections_closed_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def serving(factory: pytest.TempPathFactory, name: str, read_seconds: float) -> Iterator[Server]:
    srv = start_server(factory.mktemp(name),
                       {"server": {"max_body_bytes": MAX_BODY, "request_read_seconds": read_seconds}})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Slow requests are given a minute: they stay slow for the whole test."""
    yield from serving(tmp_path_factory, "patient", 60)


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Requests must arrive whole within 1.5 s."""
    yield from serving(tmp_path_factory, "strict", 1.5)


def open_slow(server: Server, stack: ExitStack, count: int) -> list[socket.socket]:
    """count connections mid-request: half stopped inside the head, half inside a body of 20,000 bytes."""
    socks = []
    for n in range(count):
        sock = stack.enter_context(connection(server))
        sock.sendall(head(server.port)[:30] if n % 2 == 0 else head(server.port, 20_000) + b'{"hook": ')
        socks.append(sock)
    return socks


def test_slow_connections_beyond_every_thread_leave_normal_calls_answered(patient_server: Server) -> None:
    with ExitStack() as stack:
        slow = open_slow(patient_server, stack, 4 * THREADS)
        time.sleep(0.5)  # both workers have taken their share of them
        for _ in range(6):
            response = normal_call(patient_server)
            assert response.status_code == 200
            assert any(card["summary"] for card in response.json()["cards"])
        for sock in slow:  # each slow request is still open, waiting for the rest of itself
            sock.sendall(b" ")


def test_a_request_sent_a_byte_at_a_time_is_answered(patient_server: Server) -> None:
    body = hook_body()
    with connection(patient_server) as sock:
        data = head(patient_server.port, len(body)) + body
        for n in range(0, len(data), max(1, len(data) // 40)):
            sock.sendall(data[n:n + max(1, len(data) // 40)])
            time.sleep(0.01)
        status, _, answer = read_answer(sock)
    assert status == 200
    assert json.loads(answer)["cards"]


def test_a_request_not_whole_in_time_is_408_and_counted(strict_server: Server) -> None:
    before = closed_counter(strict_server, "slow")
    with connection(strict_server) as head_slow, connection(strict_server) as body_slow:
        head_slow.sendall(head(strict_server.port)[:40])
        body_slow.sendall(head(strict_server.port, 1000) + b"{")
        started = time.monotonic()
        for sock in (head_slow, body_slow):
            status, headers, body = read_answer(sock)
            assert status == 408
            assert headers["connection"] == "close"
            assert "request_read_seconds" in outcome_text(body)
            assert sock.recv(1) == b""  # and closed
        assert 1.4 <= time.monotonic() - started < 6
    assert closed_counter(strict_server, "slow") == before + 2
    warned = [json.loads(line) for line in strict_server.stderr().splitlines() if "slow_requests_closed" in line]
    assert sum(event["count"] for event in warned) == 2  # once a minute at most per worker: these two
    assert {event["level"] for event in warned} == {"warning"}


def test_a_connection_that_sends_nothing_is_closed_unanswered(strict_server: Server) -> None:
    before = closed_counter(strict_server, "idle")
    with connection(strict_server, timeout=15) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, with no 408 to a client that asked nothing
        assert 4.5 <= time.monotonic() - started < 8  # FIRST_BYTE_SECONDS
    assert closed_counter(strict_server, "idle") == before + 1


def test_an_idle_keepalive_connection_keeps_its_own_timeout(strict_server: Server) -> None:
    """The read deadline starts at a request's first byte: a kept-alive connection idle for longer than it still
    serves its next request (gunicorn's keepalive of 5 s ends it later)."""
    body = hook_body()
    with connection(strict_server) as sock:
        for _ in range(2):
            sock.sendall(head(strict_server.port, len(body)) + body)
            status, headers, _ = read_answer(sock)
            assert status == 200 and headers.get("connection", "").lower() != "close"
            time.sleep(2)


def test_content_length_over_the_limit_is_413_at_once(patient_server: Server) -> None:
    with connection(patient_server) as sock:
        sock.sendall(head(patient_server.port, MAX_BODY + 1))  # and no body at all
        status, headers, body = read_answer(sock)
    assert status == 413 and headers["connection"] == "close"
    assert outcome_text(body) == "The request body is larger than this service accepts."


def test_chunked_body_growing_past_the_limit_is_413(patient_server: Server) -> None:
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"
    with connection(patient_server) as sock:
        sock.sendall(head(patient_server.port, extra="Transfer-Encoding: chunked\r\n"))
        for _ in range(MAX_BODY // 0x2000 + 1):
            sock.sendall(chunk)
        status, _, body = read_answer(sock)  # the last chunk was never sent: the limit decided
    assert status == 413
    assert "larger than this service accepts" in outcome_text(body)


@pytest.mark.parametrize(("raw", "status"), [
    (b"POST /cds-services HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST /cds-services HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
], ids=["two-lengths", "length-and-chunked", "no-colon", "huge-head"])
def test_a_head_that_is_not_http_is_refused_with_an_outcome(patient_server: Server, raw: bytes, status: int) -> None:
    before = closed_counter(patient_server, "malformed")
    with connection(patient_server) as sock:
        sock.sendall(raw)
        answer, headers, body = read_answer(sock)
    assert answer == status and headers["connection"] == "close"
    assert outcome_text(body)
    assert closed_counter(patient_server, "malformed") == before + 1


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /healthz?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: Bearer secret-token-4711 " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: Bearer secret-token-4711\r\n" % n for n in range(120))
     + b"\r\n", 431),
], ids=["long-target", "long-field", "many-fields"])
def test_what_gunicorn_refuses_is_an_outcome_and_its_log_line_quotes_nothing(
        patient_server: Server, raw: bytes, status: int) -> None:
    with connection(patient_server) as sock:
        sock.sendall(raw)
        answer, headers, body = read_answer(sock)
    assert answer == status and headers["content-type"] == "application/json"
    assert outcome_text(body)
    time.sleep(0.3)
    logged = patient_server.stderr()
    assert "secret-token" not in logged and "aaaaaaaaaa" not in logged
    refused = [json.loads(line) for line in logged.splitlines() if '"request_refused"' in line]
    assert {"status": status, "address": "127.0.0.1"}.items() <= refused[-1].items()


def test_expect_100_continue_gets_one_100_then_the_answer(patient_server: Server) -> None:
    body = hook_body()
    with connection(patient_server) as sock:
        sock.sendall(head(patient_server.port, len(body), "Expect: 100-continue\r\n"))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        first = sock.recv(12)
        status, _, answer = read_answer(sock, first)
    assert first == b"HTTP/1.1 200"  # no second 100
    assert status == 200 and json.loads(answer)["cards"]


def test_pipelined_requests_are_answered_in_order(patient_server: Server) -> None:
    body = hook_body()
    port = patient_server.port
    with connection(patient_server) as sock:
        sock.sendall(head(port, len(body)) + body + f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                     + f"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answers = Answers(sock)
        statuses = [answers.next()[0] for _ in range(3)]
    assert statuses == [200, 200, 404]


def test_clients_that_never_close_after_an_answer_do_not_stall_the_others(patient_server: Server) -> None:
    """After a `Connection: close` answer the service waits up to 2 s for the client to close; that wait must not
    stop the worker's event loop."""
    with ExitStack() as stack:
        for _ in range(2 * THREADS):
            sock = stack.enter_context(connection(patient_server))
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{patient_server.port}\r\nConnection: close"
                         "\r\n\r\n".encode())
            assert read_answer(sock)[0] == 200  # and the socket is left open
        started = time.monotonic()
        assert normal_call(patient_server).status_code == 200
        assert time.monotonic() - started < 1.5


def test_many_slow_connections_leave_every_endpoint_answering(patient_server: Server) -> None:
    with ExitStack() as stack:
        open_slow(patient_server, stack, 128)
        with new_session() as session:
            assert session.get(patient_server.url("/healthz"), timeout=10).status_code == 200
            assert session.get(patient_server.url("/cds-services"), timeout=10).status_code == 200
        assert normal_call(patient_server).status_code == 200


def test_sigterm_with_slow_connections_open_stops_within_seconds(fresh_server: Callable[..., Server]) -> None:
    server = fresh_server({"server": {"request_read_seconds": 60}})
    with ExitStack() as stack:
        slow = open_slow(server, stack, 8)
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 8  # the slow requests get 2 s, not their 60
        for sock in slow:
            status, _, _ = read_answer(sock)
            assert status == 408


def test_clients_that_read_no_answers_hold_no_thread(patient_server: Server) -> None:
    """Each pipelines thousands of calls and reads nothing: the answers that do not fit the socket wait in the
    event loop, not in a thread, and the connection is closed SEND_SECONDS (10 s) after the last one stalled."""
    before = closed_counter(patient_server, "slow_reader")
    many = f"GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1:{patient_server.port}\r\n\r\n".encode() * 3000
    with ExitStack() as stack:
        for _ in range(4 * THREADS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", patient_server.port))
            stack.callback(sock.close)
            sock.setblocking(False)
            try:
                sock.send(many)
            except BlockingIOError:
                pass
        time.sleep(1)
        for _ in range(3):
            started = time.monotonic()
            assert normal_call(patient_server).status_code == 200
            assert time.monotonic() - started < 2
        deadline = time.monotonic() + 20
        while closed_counter(patient_server, "slow_reader") < before + 4 * THREADS and time.monotonic() < deadline:
            time.sleep(1)
    assert closed_counter(patient_server, "slow_reader") == before + 4 * THREADS


def test_an_empty_line_after_a_request_is_ignored(patient_server: Server) -> None:
    body = hook_body()
    with connection(patient_server) as sock:
        answers = Answers(sock)
        sock.sendall(head(patient_server.port, len(body)) + body + b"\r\n")
        assert answers.next()[0] == 200
        time.sleep(0.2)
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{patient_server.port}\r\n\r\n".encode())
        assert answers.next()[0] == 200


@pytest.mark.parametrize("size_line", [b"2 ", b"2;", b"2;ext=1"])
def test_chunk_sizes_h11_reads_are_served_once(patient_server: Server, size_line: bytes) -> None:
    """A body is framed by one parser only: de-chunked by the event loop, given to gunicorn with its length."""
    port = patient_server.port
    with connection(patient_server) as sock:
        answers = Answers(sock)
        sock.sendall(f"POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                     + size_line + b"\r\n{}\r\n0\r\n\r\n"
                     + f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        first, second = answers.next()[0], answers.next()[0]
    assert (first, second) == (404, 200)


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # no Host, in one piece
    (b"POST /cds-services HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 200-ok\r\n\r\n{}", 417),
], ids=["no-host", "odd-expect"])
def test_what_http_requires(patient_server: Server, raw: bytes, status: int) -> None:
    with connection(patient_server) as sock:
        sock.sendall(raw)
        assert read_answer(sock)[0] == status


def test_at_its_connection_limit_a_worker_closes_idle_connections_to_take_new_ones(
        fresh_server: Callable[..., Server]) -> None:
    """300 open files a process: 100 connections a worker (server.worker_connections). 400 idle sockets would
    have stopped every worker from accepting; the oldest idle ones are closed instead, and calls are answered."""
    server = fresh_server({"server": {"max_body_bytes": MAX_BODY}}, wrapper=("prlimit", "--nofile=300:300"))
    with ExitStack() as stack:
        idle = [stack.enter_context(connection(server)) for _ in range(400)]
        time.sleep(0.5)
        for _ in range(4):
            started = time.monotonic()
            assert normal_call(server).status_code == 200
            assert time.monotonic() - started < 3
        assert closed_counter(server, "idle") >= 400 - 2 * 100
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
        assert closed >= 400 - 2 * 100  # the oldest: closed unanswered
    assert "Too many open files" not in server.stderr()


def test_workers_tell_the_arbiter_they_are_alive_within_a_short_timeout(fresh_server: Callable[..., Server]) -> None:
    """The worker tells the arbiter it is alive at most once a second, or an eighth of server.timeout_seconds when
    that is less: with a 2 s timeout, the arbiter kills no worker over idle spells and busy ones. (gunicorn's arbiter
    never kills a worker that has not told it once; one that goes quiet after telling it is killed.)"""
    server = fresh_server({"server": {"timeout_seconds": 2}})
    before = workers_of(server)
    assert len(before) == 2
    body = hook_body()
    with new_session() as http:
        for _ in range(3):
            time.sleep(2.5)  # longer than the timeout: a worker that kept silent would be killed meanwhile
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                response = http.post(server.url(PATH), data=body, headers={"Content-Type": "application/json"},
                                     timeout=10)
                assert response.status_code == 200
    assert workers_of(server) == before
    assert "WORKER TIMEOUT" not in server.stderr()


def test_workers_left_behind_by_a_killed_arbiter_stop_within_seconds(fresh_server: Callable[..., Server]) -> None:
    """A worker asks whether its arbiter lives at most once a second: killed outright, the arbiter leaves workers
    that notice and stop within a few seconds, answering what they hold."""
    server = fresh_server()
    workers = workers_of(server)
    assert len(workers) == 2
    server.process.kill()
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and any(running(pid) for pid in workers):
        time.sleep(0.1)
    alive = [pid for pid in workers if running(pid)]
    assert alive == [], f"workers {alive} outlived their arbiter by 8 s"


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
