"""Failure counters for sign-in: a fixed window per key in the shared cache (Redis in production).

Counting failures rather than attempts means a user who types the right password is never
slowed down by others' mistakes, while guessing is capped per account and per source IP.
"""

import hashlib
import time

from django.conf import settings
from django.core.cache import cache


def _window() -> tuple[int, int]:
    length = int(settings.KEYWARD_LOGIN_FAILURE_WINDOW.total_seconds())
    now = int(time.time())
    return now // length, length - now % length


def _cache_key(kind: str, value: str, window: int) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"login-failures:{kind}:{window}:{digest}"


def _limits() -> dict[str, int]:
    return {"account": settings.KEYWARD_LOGIN_FAILURES_PER_ACCOUNT, "ip": settings.KEYWARD_LOGIN_FAILURES_PER_IP}


def retry_after(keys: dict[str, str]) -> int | None:
    """Seconds to wait if any key (kind -> value) has used up its failures in this window, else None."""
    window, remaining = _window()
    limits = _limits()
    for kind, value in keys.items():
        if cache.get(_cache_key(kind, value, window), 0) >= limits[kind]:
            return remaining
    return None


def record_failure(keys: dict[str, str]) -> None:
    window, remaining = _window()
    for kind, value in keys.items():
        key = _cache_key(kind, value, window)
        cache.add(key, 0, timeout=remaining + 1)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=remaining + 1)


def reset(kind: str, value: str) -> None:
    window, _ = _window()
    cache.delete(_cache_key(kind, value, window))
