"""The worker's direct path (cds_service.direct) against gunicorn's own, on a real `cds-service serve`: a plain
request and the same request with one header more (which sends it down gunicorn's path) get the same answer,
byte for byte but for the Date."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import load_scenario
from tests.e2e.conftest import Server, start_server

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("direct"), workers=1)
    yield srv
    srv.stop()


def raw_request(port: int, path: str, body: bytes, *extra: str) -> bytes:
    fields = "".join(f"{field}\r\n" for field in extra)
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{fields}\r\n").encode() + body


def read_raw_answer(sock: socket.socket, data: bytearray) -> bytes:
    """One whole answer (framed by its Content-Length) from `data` and the socket; what follows stays in data."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before answering"
        data += chunk
    head_end = data.index(b"\r\n\r\n") + 4
    length = next(int(line.split(b":", 1)[1]) for line in data[:head_end].split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(data) < head_end + length:
        data += sock.recv(65536)
    answer = bytes(data[:head_end + length])
    del data[:head_end + length]
    return answer


def dateless(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"Date: "))


def exchange(server: Server, *requests: bytes) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        data = bytearray()
        answers = []
        for request in requests:
            sock.sendall(request)
            answers.append(read_raw_answer(sock, data))
        return answers


CASES = {
    "a hook call": (DISCHARGE, json.dumps(load_scenario("01")["request"]).encode(), ()),
    "a hook call from a browser": (DISCHARGE, json.dumps(load_scenario("01")["request"]).encode(),
                                   ("Origin: https://sandbox.cds-hooks.org",)),
    "malformed JSON": (DISCHARGE, b'{"hook": ', ()),
    "an unknown service": ("/cds-services/no-such-service", b"{}", ()),
    "feedback": (f"{DISCHARGE}/feedback", b'{"feedback": []}', ()),
}


@pytest.mark.parametrize(("path", "body", "extra"), CASES.values(), ids=CASES.keys())
def test_the_direct_path_answers_as_gunicorns_path_does(server: Server, path: str, body: bytes,
                                                         extra: tuple[str, ...]) -> None:
    (direct,) = exchange(server, raw_request(server.port, path, body, *extra))
    (theirs,) = exchange(server, raw_request(server.port, path, body, *extra, "X-Other: sends it to gunicorn"))
    assert dateless(direct) == dateless(theirs)
    assert direct.startswith(b"HTTP/1.1 ") and b"\r\nDate: " in direct and b"\r\nConnection: keep-alive\r\n" in direct


def test_kept_alive_until_the_client_asks_to_close(server: Server) -> None:
    body = json.dumps(load_scenario("01")["request"]).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        data = bytearray()
        for _ in range(3):
            sock.sendall(raw_request(server.port, DISCHARGE, body))
            answer = read_raw_answer(sock, data)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: keep-alive\r\n" in answer
        sock.sendall(raw_request(server.port, DISCHARGE, body, "Connection: close"))
        answer = read_raw_answer(sock, data)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["cards"]
        assert sock.recv(65536) == b""  # closed after the answer


def test_pipelined_plain_calls_are_answered_in_order(server: Server) -> None:
    scenarios = [load_scenario(n) for n in ("01", "02")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(raw_request(server.port, f"/cds-services/{s['service']}",
                                          json.dumps(s["request"]).encode()) for s in scenarios))
        data = bytearray()
        answers = [read_raw_answer(sock, data), read_raw_answer(sock, data)]
    for answer, scenario in zip(answers, scenarios, strict=True):
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
        topics = {card["source"]["topic"]["code"] for card in json.loads(answer.split(b"\r\n\r\n", 1)[1])["cards"]}
        assert set(scenario["expect"]["rules_present"]) <= topics, scenario["id"]
        assert not topics & set(scenario["expect"]["rules_absent"]), scenario["id"]
