"""Write-behind: what a request leaves to be written (its log lines, its store rows) is queued in memory and
written in batches by a daemon thread of the process, so the answer never waits on a file or a database.

One implementation serves the logs (web.logs) and the store's evaluation and card logs (store): the queue, the
thread started on first use and after a stop, the flush markers a caller can wait on, the backoff while the
destination does not answer, the bound on the queue, and a forked child that starts with a queue and a thread
of its own. Each Behind has its own thread, so a database that does not answer never holds back a log line.
A subclass says how a batch is written (`write`) and, if it likes, what a shed or dropped item costs."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

starting = threading.RLock()  # guards starting and ending a writer thread, of every Behind of the process
current_pid = os.getpid()  # os.getpid() is a system call: a put compares with this copy, renewed at each fork


def _after_fork_in_child() -> None:
    global starting, current_pid
    starting = threading.RLock()  # a thread of the parent may have held it when the process forked
    current_pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Flush:
    """A marker in the queue: `done` is set once everything queued before it is written or dropped."""

    def __init__(self, *, stop: bool = False, timeout: float = 5.0) -> None:
        self.done = threading.Event()
        self.stop = stop  # the writer thread ends after this marker
        # A stop gives up on a destination that does not answer a little before its waiter's timeout ends.
        self.deadline = time.monotonic() + timeout * 0.8


class Behind(Generic[T]):
    """One queue and one daemon thread of this process, started on first use.

    A put appends to a deque and reads a few attributes; it wakes the thread only when the thread sleeps for
    want of work (`idle`) or a batch is full. `running` is true from a thread's start until that thread has
    decided to end: it is set and cleared only under `starting`, and the thread clears it before it looks at
    the queue a last time while a put reads it after appending, so an item is never left without a thread.
    `lock` is held while a batch is taken from the queue and written, so `drain` (a write in the caller's
    thread) keeps the order of what was queued."""

    name = "writer"
    retry_seconds = (0.5, 1.0, 2.0, 5.0)  # waits between tries while the destination does not answer
    linger = False  # True: after a quiet spell the first item waits the interval for others (a log line); else
    # it is written at once (a store row, which a reader on another instance may be waiting for)

    def __init__(self, flush_interval: float, *, batch_items: int, max_queued: int) -> None:
        self.flush_interval = flush_interval
        self.batch_items = batch_items  # this many queued wake the thread before its interval is over
        self.max_queued = max_queued  # beyond, new items are shed (`shed`), never grown
        self.queue: deque[T | Flush] = deque()  # append and popleft are atomic: no lock
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.thread: threading.Thread | None = None
        self.running = False  # a thread of this process writes the queue and has not decided to end
        self.idle = False  # the thread sleeps until woken: it found nothing queued after a flush interval
        self.wake = threading.Event()  # a flush, a queue long enough to write at once, or a put to an idle thread
        self.retries = 0  # tries in a row the destination did not answer

    # --- what a subclass says ----------------------------------------------------------------------------

    def write(self, batch: list[T]) -> bool:
        """Write a batch, taking what is written out of it; True when the destination did not answer: what is
        left in `batch` waits and is tried again. Never raises: the thread must live on."""
        raise NotImplementedError

    def shed(self, item: T) -> None:
        """An item not queued because the queue is full."""

    def dropped(self, items: list[T]) -> None:
        """Items given up at a stop whose timeout passed while the destination did not answer."""

    def after_fork(self) -> None:
        """In a forked child, before its first item: let go of what is the parent's (connections)."""

    # --- the queue ---------------------------------------------------------------------------------------

    def put(self, item: T) -> None:
        if self.pid != current_pid:
            self.forked()
        q = self.queue
        if len(q) >= self.max_queued:  # the destination has not kept up (or is down)
            self.shed(item)
            return
        q.append(item)
        if not self.running:
            if not self.start():
                self.drain()  # no thread to be had (the interpreter is exiting): write it now
        elif self.idle or (len(q) >= self.batch_items and not self.wake.is_set()):
            self.wake.set()

    def drain(self) -> bool:
        """Write what is queued now, in the caller's thread, after any batch the thread is writing; False when
        the destination did not answer (what is left stays queued, before anything queued since)."""
        if self.pid != current_pid:
            self.forked()
        with self.lock:
            batch = self.take()
            if batch and self.write_batch(batch):
                self.queue.extendleft(reversed(batch))
                return False
        return True

    def flush(self, timeout: float, *, stop: bool = False) -> bool:
        """Wait until everything queued before the call is written (or dropped); False on timeout."""
        if self.pid != current_pid or (not self.running and not self.queue):
            return True  # nothing was queued by this process since the thread last stopped
        marker = Flush(stop=stop, timeout=timeout)
        self.queue.append(marker)
        if not self.running and not self.start():
            return self.drain()  # no thread to be had: written here, or left queued (False)
        self.wake.set()
        return marker.done.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Flush, then let the thread end; the next put starts a new one."""
        return self.flush(timeout, stop=True)

    def forked(self) -> None:
        """In a forked child: a queue and a thread of its own; the parent's items and thread stay its."""
        with starting:
            if self.pid != os.getpid():
                self.after_fork()
                self.queue, self.thread, self.running, self.idle = deque(), None, False, False
                self.wake, self.lock = threading.Event(), threading.Lock()
                self.pid = os.getpid()  # last: a put that sees the new pid sees the new queue

    # --- the thread --------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start this process's thread unless one runs (on first use, and again after a stop); False when no
        thread can be had."""
        with starting:
            if not self.running:
                thread = threading.Thread(target=self.run, args=(self.queue,), name=self.name, daemon=True)
                # Before the thread runs: it reads `thread` to tell itself from a drain, and may go idle at once.
                self.running, self.idle, self.thread = True, False, thread
                try:
                    thread.start()
                except RuntimeError:  # at interpreter exit, or none to be had
                    self.running, self.thread = False, None
                    return False
        return True

    def run(self, q: deque[T | Flush]) -> None:
        try:
            self.write_until_stopped(q)
        except BaseException:
            with starting:
                self.running = False  # not expected (writes never raise); the next put starts a new thread
            raise

    def write_until_stopped(self, q: deque[T | Flush]) -> None:
        """Write what is queued, one batch at most every flush interval, until a stop marker.

        Between batches the thread sleeps for the rest of the interval unless `wake` is set (a flush or a
        full batch). When it then finds nothing queued it sleeps without a timeout, `idle`, and the next put
        or flush wakes it: a quiet process does not wake every interval."""
        last_write = time.monotonic() if self.linger else -math.inf
        while True:
            delay = last_write + self.flush_interval - time.monotonic()
            if delay > 0:
                self.wake.wait(delay)
            self.wake.clear()  # before the queue is read: a later set means items this batch may miss
            if not q:
                self.idle = True  # before the queue is read again: a put appends, then reads `idle`
                if not q:
                    self.wake.wait()
                self.idle = False
                if self.linger:
                    self.wake.clear()  # the put that woke it: the first item waits the interval for the others
                    last_write = time.monotonic()
                continue
            with self.lock:
                batch = self.take()
                unwritten = self.write_batch(batch) if batch else False
                if unwritten:  # the items (and the flushes behind them) wait, tried again
                    q.extendleft(reversed(batch))
            if unwritten:
                released = self.wait_to_retry(q)
                if released is not None:  # a stop waited its timeout: the items left were dropped
                    ending = self.end(q)
                    for marker in released:
                        marker.done.set()  # after `end`, as below
                    if ending:
                        return
                continue
            last_write = time.monotonic()
            markers = [item for item in batch if isinstance(item, Flush)]
            ending = any(marker.stop for marker in markers) and self.end(q)
            for marker in markers:
                marker.done.set()  # after `end`: the thread is gone, unless a put came meanwhile (it writes on)
            if ending:
                return

    def take(self) -> list[T | Flush]:
        q, batch = self.queue, []
        while q:
            batch.append(q.popleft())
        return batch

    def write_batch(self, batch: list[T | Flush]) -> bool:
        """Write the items of a batch with its markers in place; True (and `batch` holds what is left, markers
        included) when the destination did not answer. Markers of a batch written by `drain` are released."""
        items = [item for item in batch if not isinstance(item, Flush)]
        markers = [item for item in batch if isinstance(item, Flush)]
        if items:
            unwritten = self.write(items)
            if unwritten:
                batch[:] = [*items, *markers]
                return True
        self.retries = 0
        if threading.current_thread() is not self.thread:  # drain: no thread will see these markers
            for marker in markers:
                marker.done.set()
        return False

    def end(self, q: deque[T | Flush]) -> bool:
        """After a stop marker: end, unless a put queued items since; then they are this thread's to write."""
        with starting:
            self.running = False  # before the queue is read: a put appends, then reads `running`
            if q:
                self.running = True
                return False
            if self.thread is threading.current_thread():
                self.thread = None
            return True

    def wait_to_retry(self, q: deque[T | Flush]) -> list[Flush] | None:
        """Sleep before the next try, longer each time while the destination does not answer. When a stop (the
        process going) has waited its timeout, what is queued is dropped (`dropped`) and the flush markers to
        release are returned: the thread then ends."""
        self.retries += 1
        stops = [item for item in q if isinstance(item, Flush) and item.stop]
        if stops and time.monotonic() >= stops[0].deadline:
            items, markers = [], []
            while q:
                item = q.popleft()
                if isinstance(item, Flush):
                    markers.append(item)
                else:
                    items.append(item)
            self.dropped(items)
            return markers
        delay = self.retry_seconds[min(self.retries, len(self.retry_seconds)) - 1]
        if stops:
            delay = min(delay, max(stops[0].deadline - time.monotonic(), self.flush_interval))
        self.wake.wait(delay)
        self.wake.clear()
        return None
