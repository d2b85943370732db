"""One retry schedule for every background delivery: exponential, capped, jittered."""

import random
from datetime import timedelta


def jittered_backoff(attempts: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """The wait after the `attempts`-th failure: base * 2^(attempts-1), capped, then 50-100% of it,
    so many streams or messages failing together do not all retry in step."""
    ceiling = min(base_seconds * 2 ** max(attempts - 1, 0), max_seconds)
    return timedelta(seconds=ceiling * (0.5 + random.random() / 2))  # noqa: S311  # nosec B311  # jitter, not crypto
