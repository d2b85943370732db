"""Celery tasks for the outbox. They take ids, re-read rows, and are idempotent."""

from celery import current_app, shared_task

from keyward.core.queueing import queue_or_leave_to_sweep
from keyward.outbox import services
from keyward.outbox.models import MessageStatus, OutboxMessage


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def deliver_outbox_message(message_id: int) -> str:
    status = services.deliver(message_id)
    if status == MessageStatus.PENDING and not current_app.conf.task_always_eager:
        # Failed but retryable: try again when the backoff says (the sweep is the safety net).
        due = OutboxMessage.objects.filter(pk=message_id).values_list("next_attempt_at", flat=True).first()
        if due is not None:
            queue_or_leave_to_sweep(deliver_outbox_message, (message_id,), eta=due, what=f"outbox message {message_id}")
    return status


@shared_task(soft_time_limit=240, time_limit=300)
def sweep_outbox() -> int:
    """Deliver what is due now, in this worker (bounded batch), so a lost task never loses a message."""
    due = services.due_messages()
    for message_id in due:
        services.deliver(message_id)
    return len(due)
