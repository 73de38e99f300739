"""The pid prometheus_client's per-process files are named by is each process's own, read once and again after
a fork (cds_service.metrics.ProcessId); tests/e2e/test_metrics_serve.py sums two real workers' values."""

from __future__ import annotations

import os

from cds_service.metrics import ProcessId


def test_the_pid_is_this_process_s() -> None:
    assert ProcessId.current() == os.getpid()


def test_a_forked_child_knows_its_own_pid() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report what it sees, and leave without running pytest's exit handlers
        os.write(write, f"{ProcessId.current()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    seen, actual = os.read(read, 64).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert seen == actual == str(child)
    assert ProcessId.current() == os.getpid() != child
