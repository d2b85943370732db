"""Queue a Celery task without ever failing, or stalling, the request that asked for it.

Every caller wakes work that a periodic sweep also finds (outbox messages, SIEM cursors, audit
exports), so a broker that cannot take the task is logged and left to the sweep. After one refusal
nothing is queued from this process for PAUSE_SECONDS: an unreachable Redis then costs a request at
most one failed attempt per pause, not one (with kombu's publish retries) per message.
"""

import logging
import time
from datetime import datetime

from celery import Task
from kombu.exceptions import KombuError

logger = logging.getLogger(__name__)

PAUSE_SECONDS = 5.0

_paused_until = 0.0


def queue_or_leave_to_sweep(task: Task, args: tuple, *, what: str, eta: datetime | None = None) -> bool:
    """Queue `task(*args)` once, with no publish retries. True if queued (or run, in eager mode)."""
    global _paused_until
    if time.monotonic() < _paused_until:
        return False
    try:
        task.apply_async(args, eta=eta, retry=False)
    except (KombuError, OSError):
        _paused_until = time.monotonic() + PAUSE_SECONDS
        logger.warning("could not queue %s; the sweep will pick it up", what)
        return False
    except Exception:
        logger.exception("%s failed when run in-process; the sweep will retry it", what)
        return False
    return True


def resume() -> None:
    """Forget a pause (tests, where one test's broker failure must not leak into the next)."""
    global _paused_until
    _paused_until = 0.0
