"""Enqueue and deliver outbox messages. Delivery is idempotent: a delivered message is never re-sent
by keyward (receivers may still see a retry of an attempt whose answer was lost, so payloads carry
a stable id to de-duplicate on)."""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from keyward.core.backoff import jittered_backoff
from keyward.core.queueing import queue_or_leave_to_sweep
from keyward.outbox.models import MessageStatus, OutboxMessage
from keyward.tenancy.models import Org

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
BASE_BACKOFF_SECONDS = 10
MAX_BACKOFF_SECONDS = 3600
SWEEP_BATCH = 200


class DeliveryError(Exception):
    """A delivery failed. `retryable` False parks the message (e.g. a 4xx from the receiver)."""

    def __init__(self, code: str, *, retryable: bool = True):
        super().__init__(code)
        self.code = code
        self.retryable = retryable


Handler = Callable[[OutboxMessage], None]
_handlers: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that delivers messages of `kind` (features do this at import)."""

    def register(function: Handler) -> Handler:
        _handlers[kind] = function
        return function

    return register


def enqueue(org: Org, kind: str, payload: dict) -> OutboxMessage:
    """Record a message in the caller's transaction; it is handed to a worker once that commits."""
    if kind not in _handlers:
        raise ValueError(f"no outbox handler for {kind!r}")
    message = OutboxMessage.objects.create(org=org, kind=kind, payload=payload)
    transaction.on_commit(lambda: dispatch(message.pk))
    return message


def dispatch(message_id: int) -> None:
    """Hand a message to Celery. If the broker is unreachable, the periodic sweep delivers it later."""
    from keyward.outbox.tasks import deliver_outbox_message

    queue_or_leave_to_sweep(deliver_outbox_message, (message_id,), what=f"outbox message {message_id}")


def backoff(attempts: int) -> timedelta:
    return jittered_backoff(attempts, base_seconds=BASE_BACKOFF_SECONDS, max_seconds=MAX_BACKOFF_SECONDS)


def deliver(message_id: int) -> str:
    """Try one message once: delivered, retry later, or parked. Safe to call any number of times."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=message_id).first()
        if message is None:
            return "busy-or-missing"
        if message.status != MessageStatus.PENDING:
            return message.status
        try:
            with transaction.atomic():
                _deliver_now(message)
        except DeliveryError as exc:
            return _failed(message, exc)
        message.status, message.delivered_at, message.last_error = MessageStatus.DELIVERED, timezone.now(), ""
        message.attempts += 1
        message.save(update_fields=["status", "delivered_at", "last_error", "attempts"])
        return message.status


def _deliver_now(message: OutboxMessage) -> None:
    """Run the handler. Any other failure (a seal that no longer opens, a bug) backs off like a
    refused call, so one broken message never stalls the sweep; only its type is kept, since an
    exception's text may quote a URL or a payload."""
    handler = _handlers.get(message.kind)
    if handler is None:
        raise DeliveryError(f"no_handler:{message.kind}", retryable=False)
    try:
        handler(message)
    except DeliveryError:
        raise
    except Exception as exc:
        logger.warning("outbox: %s failed with %s", message, type(exc).__name__)
        raise DeliveryError(f"error:{type(exc).__name__}") from None


def _failed(message: OutboxMessage, error: DeliveryError) -> str:
    message.attempts += 1
    message.last_error = error.code[:200]
    if not error.retryable or message.attempts >= MAX_ATTEMPTS:
        message.status = MessageStatus.PARKED
        logger.warning("outbox: parked %s after %s attempts (%s)", message, message.attempts, error.code)
    else:
        message.next_attempt_at = timezone.now() + backoff(message.attempts)
    message.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
    return message.status


def due_messages(now: datetime | None = None) -> list[int]:
    """Pending messages whose next attempt is due: what a dead worker or a lost task left behind."""
    now = now or timezone.now()
    return list(
        OutboxMessage.objects.filter(status=MessageStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def retry_parked(message: OutboxMessage) -> None:
    """An operator's "try again": back to pending, delivered on the next sweep (or now)."""
    OutboxMessage.objects.filter(pk=message.pk, status=MessageStatus.PARKED).update(
        status=MessageStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )
    transaction.on_commit(lambda: dispatch(message.pk))
