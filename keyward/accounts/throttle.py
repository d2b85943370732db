"""Sign-in attempt counters: a fixed window per key, kept in the database (`SignInCounter`).

An attempt is counted (reserved) BEFORE its password is checked, with one atomic upsert, so
concurrent guesses cannot all slip past a limit that is checked first and recorded later: at most
the limit's worth of passwords is ever checked per key and window. A refused attempt gives its
reservation back (it checked nothing); a failed one keeps it; a successful sign-in resets the
account's counter and gives the source its attempt back, so right passwords do not use up a limit.

The counters live in the database rather than the cache: a lockout must survive a Redis flush or
restart, and sign-in must keep working (and keep refusing) while Redis is down. Sign-ins are rare
enough that a row per key and window costs nothing; `prune_expired` drops past windows.
"""

import hashlib
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from keyward.accounts.models import SignInCounter


def _window() -> tuple[int, int]:
    length = int(settings.KEYWARD_LOGIN_FAILURE_WINDOW.total_seconds())
    now = int(time.time())
    return now // length, length - now % length


def _key_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _limits() -> dict[str, int]:
    return {"account": settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT, "ip": settings.KEYWARD_LOGIN_FAILURES_PER_IP}


# One statement per counter and direction, written out in full (no SQL is assembled at run time).
# `ON CONFLICT … DO UPDATE … RETURNING` works alike on PostgreSQL and SQLite (3.35+).
_INCREMENT = {
    "attempts": "INSERT INTO accounts_signincounter (kind, key_hash, period, attempts, refusals) "
    "VALUES (%s, %s, %s, %s, 0) ON CONFLICT (kind, key_hash, period) "
    "DO UPDATE SET attempts = accounts_signincounter.attempts + %s RETURNING attempts",
    "refusals": "INSERT INTO accounts_signincounter (kind, key_hash, period, attempts, refusals) "
    "VALUES (%s, %s, %s, 0, %s) ON CONFLICT (kind, key_hash, period) "
    "DO UPDATE SET refusals = accounts_signincounter.refusals + %s RETURNING refusals",
}
_DECREMENT_ATTEMPTS = (
    "UPDATE accounts_signincounter SET attempts = attempts - 1 "
    "WHERE kind = %s AND key_hash = %s AND period = %s AND attempts >= 1 RETURNING attempts"
)


def _add(counter: str, kind: str, key_hash: str, period: int) -> int:
    """Atomically add one to a counter (a new row starts at 1) and return its new value.

    One upsert statement: concurrent callers each see a distinct value, so no two of them can both
    be "the 5th attempt".
    """
    with connection.cursor() as cursor:
        cursor.execute(_INCREMENT[counter], [kind, key_hash, period, 1, 1])
        return cursor.fetchone()[0]


def _give_back(kind: str, key_hash: str, period: int) -> None:
    """Take one attempt off a counter; never below 0, and never creating a row."""
    with connection.cursor() as cursor:
        cursor.execute(_DECREMENT_ATTEMPTS, [kind, key_hash, period])


@dataclass
class Reservation:
    """One sign-in attempt counted against every key (kind -> counter) of one window."""

    window: int
    remaining: int  # seconds until the window ends: a refusal's Retry-After
    keys: dict[str, str]  # kind -> key hash
    over: tuple[str, ...] = ()
    _released: set[str] = field(default_factory=set)

    def release(self, *kinds: str) -> None:
        """Give this attempt back on the named counters (all when none are named); once per counter."""
        for kind in kinds or tuple(self.keys):
            if kind in self._released:
                continue
            self._released.add(kind)
            _give_back(kind, self.keys[kind], self.window)

    def reset(self, kind: str) -> None:
        """Clear a key's attempts for the rest of the window (a successful sign-in)."""
        self._released.add(kind)
        SignInCounter.objects.filter(kind=kind, key_hash=self.keys[kind], period=self.window).update(attempts=0)

    def count_refusal(self) -> int:
        """Count a refusal of this (over-limit) attempt per over-limit key; 1 means the first in the window.

        Lets the caller audit one refusal per key and window and only log the rest.
        """
        return min(_add("refusals", kind, self.keys[kind], self.window) for kind in self.over)


def reserve(keys: dict[str, str]) -> Reservation:
    """Count one attempt against each key (kind -> value) before the password is checked.

    `over` names the keys whose limit this attempt exceeds; the caller then refuses it (429) and
    releases the reservation.
    """
    window, remaining = _window()
    limits = _limits()
    hashed = {kind: _key_hash(value) for kind, value in keys.items()}
    over = tuple(kind for kind, key in hashed.items() if _add("attempts", kind, key, window) > limits[kind])
    return Reservation(window=window, remaining=remaining, keys=hashed, over=over)


def prune_expired() -> int:
    """Delete counters of windows that have ended (run by beat; idempotent)."""
    current, _ = _window()
    deleted, _ = SignInCounter.objects.filter(period__lt=current).delete()
    return deleted
