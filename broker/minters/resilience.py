"""Bounded retries and a per-provider circuit breaker for every outbound mint or revoke call.

Retries only where a retry can help (connection errors, timeouts, 5xx), a few times, with short
jittered backoff. After `FAILURE_THRESHOLD` consecutive failures a provider's breaker opens and
calls fail fast for `OPEN_SECONDS`; then one trial call is let through (half-open): success closes
the breaker, failure opens it again. State is per process, which is what fail-fast needs.
"""

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.minters import MintError

MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.2
FAILURE_THRESHOLD = 5
OPEN_SECONDS = 30.0


class RetryableError(MintError):
    """A failure worth retrying: the provider was unreachable, timed out or answered 5xx."""


@dataclass
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False


_breakers: dict[str, _Breaker] = {}
_lock = threading.Lock()


def _admit(key: str, now: float) -> None:
    with _lock:
        breaker = _breakers.setdefault(key, _Breaker())
        if breaker.opened_at is None:
            return
        if now - breaker.opened_at < OPEN_SECONDS or breaker.trial_running:
            raise MintError(
                "The provider is failing; keyward is not calling it for a while.", upstream_error="circuit_open"
            )
        breaker.trial_running = True


def _record(key: str, *, ok: bool, now: float) -> None:
    with _lock:
        breaker = _breakers.setdefault(key, _Breaker())
        breaker.trial_running = False
        if ok:
            breaker.failures, breaker.opened_at = 0, None
            return
        breaker.failures += 1
        if breaker.opened_at is not None or breaker.failures >= FAILURE_THRESHOLD:
            breaker.opened_at = now


def call[T](
    key: str,
    operation: Callable[[], T],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation` behind `key`'s breaker, retrying `RetryableError` at most MAX_ATTEMPTS times.

    A `MintError` that is not retryable (the provider refused: 4xx, bad answer) counts as the
    provider working, so a misconfigured request never opens the breaker for everyone.
    """
    _admit(key, clock())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            result = operation()
        except RetryableError:
            if attempt == MAX_ATTEMPTS:
                _record(key, ok=False, now=clock())
                raise
            sleep(BACKOFF_SECONDS * attempt * (0.5 + random.random()))  # noqa: S311  # nosec B311  # jitter, not crypto
        except MintError:
            _record(key, ok=True, now=clock())
            raise
        except Exception:
            _record(key, ok=False, now=clock())  # a bug or an unexpected library error: not "working"
            raise
        else:
            _record(key, ok=True, now=clock())
            return result
    raise AssertionError("unreachable: the loop returns or raises")


def reset() -> None:
    """Forget every breaker (tests; or after an operator fixed a provider)."""
    with _lock:
        _breakers.clear()
