"""Sign-in attempt counters: a fixed window per key in the shared cache (Redis in production).

An attempt is counted (reserved) BEFORE its password is checked, with an atomic increment, so
concurrent guesses cannot all slip past a limit that is checked first and recorded later: at most
the limit's worth of passwords is ever checked per key and window. A refused attempt gives its
reservation back (it checked nothing); a failed one keeps it; a successful sign-in resets the
account's counter and gives the source its attempt back, so right passwords do not use up a limit.
"""

import contextlib
import hashlib
import sys
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

# How often an increment is retried when the counter vanishes between `add` and `incr` (eviction).
_INCREMENT_TRIES = 3


def _window() -> tuple[int, int]:
    length = int(settings.KEYWARD_LOGIN_FAILURE_WINDOW.total_seconds())
    now = int(time.time())
    return now // length, length - now % length


def _cache_key(purpose: str, kind: str, window: int, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"login-{purpose}:{kind}:{window}:{digest}"


def _limits() -> dict[str, int]:
    return {"account": settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT, "ip": settings.KEYWARD_LOGIN_FAILURES_PER_IP}


def _increment(key: str, timeout: int) -> int:
    """Atomically add one to a counter (created at 0 if missing) and return the new value.

    If the counter keeps vanishing before it can be incremented, the attempt counts as over every
    limit: losing count must refuse a sign-in, never allow unlimited guesses.
    """
    for _ in range(_INCREMENT_TRIES):
        cache.add(key, 0, timeout=timeout)
        try:
            return cache.incr(key)
        except ValueError:
            continue
    return sys.maxsize


@dataclass
class Reservation:
    """One sign-in attempt counted against every key (kind -> counter) of one window."""

    window: int
    remaining: int  # seconds until the window ends: a refusal's Retry-After
    keys: dict[str, str]
    over: tuple[str, ...] = ()
    _released: set[str] = field(default_factory=set)

    def release(self, *kinds: str) -> None:
        """Give this attempt back on the named counters (all when none are named); once per counter."""
        for kind in kinds or tuple(self.keys):
            if kind in self._released:
                continue
            self._released.add(kind)
            with contextlib.suppress(ValueError):  # the counter expired or was reset: nothing to give back
                cache.decr(self._counter(kind))

    def reset(self, kind: str) -> None:
        """Clear a key's counter for the rest of the window (a successful sign-in)."""
        self._released.add(kind)
        cache.delete(self._counter(kind))

    def count_refusal(self) -> int:
        """Count a refusal of this (over-limit) attempt per over-limit key; 1 means the first in the window.

        Lets the caller audit one refusal per key and window and only log the rest.
        """
        return min(
            _increment(_cache_key("refusals", kind, self.window, self.keys[kind]), self.remaining + 1)
            for kind in self.over
        )

    def _counter(self, kind: str) -> str:
        return _cache_key("attempts", kind, self.window, self.keys[kind])


def reserve(keys: dict[str, str]) -> Reservation:
    """Count one attempt against each key (kind -> value) before the password is checked.

    `over` names the keys whose limit this attempt exceeds; the caller then refuses it (429) and
    releases the reservation.
    """
    window, remaining = _window()
    limits = _limits()
    over = tuple(
        kind
        for kind, value in keys.items()
        if _increment(_cache_key("attempts", kind, window, value), remaining + 1) > limits[kind]
    )
    return Reservation(window=window, remaining=remaining, keys=dict(keys), over=over)
