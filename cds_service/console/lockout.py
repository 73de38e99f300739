"""The console login's lockout: too many wrong tokens from one client address lock that address out for a while.

console.login_failures wrong tokens (10) from one address within console.lockout_seconds (900) lock it: every
login from it, right or wrong, is then answered 429 with Retry-After, until fewer than that many of its failures
are within the window. The failures are rows in the store, so every worker and instance counts the same ones;
each worker also keeps its own in memory, which is what counts while the database does not answer (a
narrower protection: each worker then locks on its own count). A right token clears the address's failures.

The address is the peer's, or with server.trusted_proxies N the one N proxies back in X-Forwarded-For; an IPv6
address counts by its /64 network, which one client usually holds whole.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import math
import threading
import time
from dataclasses import dataclass

from cds_service.store import FeedbackStore

MAX_ADDRESSES = 10_000  # in memory: the addresses with the most recent failures are kept


def client_key(address: str | None) -> str:
    """What failures are counted by: the IPv4 address, or the IPv6 address's /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "unknown")[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Standing:
    failures: int  # wrong tokens from the address within the window
    retry_after: int | None  # seconds until it may try again; None when it is not locked


class Lockout:
    def __init__(self) -> None:
        self.memory: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        self.announced: dict[str, float] = {}  # address -> end of the lock its refusal was logged for
        self.lock = threading.Lock()

    def standing(self, store: FeedbackStore, address: str, limit: int, seconds: float) -> Standing:
        moment = time.time()
        since = moment - seconds
        stored = store.login_failures(address, dt.datetime.fromtimestamp(since, dt.UTC))
        shared = [at.timestamp() for at in stored] if stored is not None else []
        with self.lock:
            mine = [at for at in self.memory.get(address, []) if at >= since]
        counted = max(shared, mine, key=len)
        if len(counted) < limit:
            return Standing(len(counted), None)
        return Standing(len(counted), max(1, math.ceil(counted[-limit] + seconds - moment)))

    def first_refusal(self, address: str, retry_after: int) -> bool:
        """True for the first refusal of a lock (in this worker), so that a lock is logged once, not per try."""
        moment = time.time()
        with self.lock:
            if self.announced.get(address, 0.0) > moment:
                return False
            if len(self.announced) >= MAX_ADDRESSES:
                self.announced = {k: until for k, until in self.announced.items() if until > moment}
            self.announced[address] = moment + retry_after
            return True

    def failed(self, store: FeedbackStore, address: str, seconds: float) -> None:
        moment = time.time()
        with self.lock:
            times = [at for at in self.memory.pop(address, []) if at >= moment - seconds]
            self.memory[address] = [*times, moment]
            while len(self.memory) > MAX_ADDRESSES:
                self.memory.popitem(last=False)
        store.add_login_failure(address, dt.datetime.fromtimestamp(moment, dt.UTC),
                                forget_before=dt.datetime.fromtimestamp(moment - seconds, dt.UTC))

    def succeeded(self, store: FeedbackStore, address: str) -> None:
        with self.lock:
            self.memory.pop(address, None)
        store.clear_login_failures(address)
