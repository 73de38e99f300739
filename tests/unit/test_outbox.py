"""The worker's Outbox: an answer's head and body leave in one send, a large answer leaves as it is written, and a
client that reads nothing never holds the thread (cds_service.worker). Real socket pairs, no mock."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cds_service.worker import Outbox

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
BODY = b'{"cards":[]}'


class CountingSocket(socket.socket):
    """A real socket that counts its sends."""

    sends = 0

    def send(self, data: bytes, flags: int = 0) -> int:  # type: ignore[override]
        self.sends += 1
        return super().send(data, flags)


@pytest.fixture
def pair() -> Iterator[tuple[CountingSocket, socket.socket]]:
    left, right = socket.socketpair()
    sock = CountingSocket(fileno=left.detach())
    sock.setblocking(False)
    right.setblocking(False)
    yield sock, right
    sock.close()
    right.close()


def received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_head_and_body_wait_for_flush_and_leave_in_one_send(pair: tuple[CountingSocket, socket.socket]) -> None:
    sock, peer = pair
    outbox = Outbox(sock)
    outbox.sendall(HEAD)
    outbox.sendall(BODY)
    assert received(peer) == b""
    assert sock.sends == 0
    outbox.flush()
    assert sock.sends == 1
    assert received(peer) == HEAD + BODY
    assert outbox.unsent == bytearray()
    outbox.flush()  # nothing held: nothing sent
    assert sock.sends == 1


def test_an_answer_past_the_held_bytes_leaves_as_it_is_written(pair: tuple[CountingSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    outbox = Outbox(sock)
    big = b"x" * Outbox.HELD_BYTES
    outbox.sendall(HEAD)
    outbox.sendall(big)
    assert sock.sends == 1  # without waiting for the thread to be done
    got = bytearray()
    while chunk := received(peer):
        got += chunk
    assert bytes(got) + bytes(outbox.unsent) == HEAD + big


def test_what_a_client_does_not_take_is_kept_for_the_event_loop(pair: tuple[CountingSocket, socket.socket]) -> None:
    sock, peer = pair
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    outbox = Outbox(sock)
    answer = b"y" * (4 * 1024 * 1024)
    outbox.sendall(answer)  # past HELD_BYTES: tried at once, and the kernel takes only part
    outbox.sendall(b"end")  # behind what is waiting: not sent before it
    outbox.flush()
    assert 0 < len(outbox.unsent) < len(answer) + 3
    got = bytearray()
    while chunk := received(peer):
        got += chunk
    assert bytes(got) + bytes(outbox.unsent) == answer + b"end"


def test_a_client_gone_before_the_answer_left_fails_the_flush(pair: tuple[CountingSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.close()
    outbox = Outbox(sock)
    outbox.sendall(HEAD + BODY)  # held: no error yet
    with pytest.raises(OSError):
        outbox.flush()
