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

COUNTERS = ("attempts", "refusals")


def _window() -> tuple[int, int]:
    length = int(settings.KEYWARD_LOGIN_FAILURE_WINDOW.total_seconds())
    now = int(time.time())
    return now // length, length - now % length


def _key_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _limits() -> dict[str, int]:
    return {"account": settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT, "ip": settings.KEYWARD_LOGIN_FAILURES_PER_IP}


def _add(counter: str, kind: str, key_hash: str, period: int, amount: int) -> int | None:
    """Atomically add `amount` to one counter (a new row starts there) and return its new value.

    One `INSERT … ON CONFLICT DO UPDATE … RETURNING` statement on PostgreSQL and SQLite alike:
    concurrent callers each see a distinct value, so no two of them can both be "the 5th attempt".
    A decrement never goes below 0 and never creates a row (None when there was nothing to take).
    """
    if counter not in COUNTERS:
        raise ValueError(f"unknown counter {counter!r}")
    table = connection.ops.quote_name(SignInCounter._meta.db_table)
    with connection.cursor() as cursor:
        if amount > 0:
            initial = [amount if name == counter else 0 for name in COUNTERS]
            cursor.execute(
                f"INSERT INTO {table} (kind, key_hash, period, attempts, refusals) VALUES (%s, %s, %s, %s, %s) "  # noqa: S608 - constant names
                f"ON CONFLICT (kind, key_hash, period) DO UPDATE SET {counter} = {table}.{counter} + %s "
                f"RETURNING {counter}",
                [kind, key_hash, period, *initial, amount],
            )
            return cursor.fetchone()[0]
        cursor.execute(
            f"UPDATE {table} SET {counter} = {counter} + %s "  # noqa: S608 - constant names
            f"WHERE kind = %s AND key_hash = %s AND period = %s AND {counter} >= %s RETURNING {counter}",
            [amount, kind, key_hash, period, -amount],
        )
        row = cursor.fetchone()
        return row[0] if row else None


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
            _add("attempts", kind, self.keys[kind], self.window, -1)

    def reset(self, kind: str) -> None:
        """Clear a key's attempts for the rest of the window (a successful sign-in)."""
        self._released.add(kind)
        SignInCounter.objects.filter(kind=kind, key_hash=self.keys[kind], period=self.window).update(attempts=0)

    def count_refusal(self) -> int:
        """Count a refusal of this (over-limit) attempt per over-limit key; 1 means the first in the window.

        Lets the caller audit one refusal per key and window and only log the rest.
        """
        return min(_add("refusals", kind, self.keys[kind], self.window, 1) for kind in self.over)


def reserve(keys: dict[str, str]) -> Reservation:
    """Count one attempt against each key (kind -> value) before the password is checked.

    `over` names the keys whose limit this attempt exceeds; the caller then refuses it (429) and
    releases the reservation.
    """
    window, remaining = _window()
    limits = _limits()
    hashed = {kind: _key_hash(value) for kind, value in keys.items()}
    over = tuple(kind for kind, key in hashed.items() if _add("attempts", kind, key, window, 1) > limits[kind])
    return Reservation(window=window, remaining=remaining, keys=hashed, over=over)


def prune_expired() -> int:
    """Delete counters of windows that have ended (run by beat; idempotent)."""
    current, _ = _window()
    deleted, _ = SignInCounter.objects.filter(period__lt=current).delete()
    return deleted
