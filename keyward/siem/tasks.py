"""Celery tasks for SIEM streaming. They take ids, re-read rows, and are idempotent."""

from celery import current_app, shared_task

from keyward.siem import delivery


@shared_task(acks_late=True, soft_time_limit=150, time_limit=180)
def deliver_siem(destination: str, org_id: int | None) -> str:
    """Deliver one destination's backlog on one chain; queue the follow-up this run leaves behind."""
    result = delivery.deliver(destination, org_id)
    if not current_app.conf.task_always_eager:
        if result.outcome == delivery.RunOutcome.MORE:
            delivery.dispatch(destination, org_id)
        elif result.outcome == delivery.RunOutcome.BACKING_OFF and result.retry_at is not None:
            delivery.dispatch(destination, org_id, eta=result.retry_at)
    return result.outcome


@shared_task(soft_time_limit=60, time_limit=90)
def sweep_siem() -> int:
    """Wake every cursor behind its chain head and due: what a lost task, a dead worker or a broker
    outage left behind. Runs every few seconds from beat; each delivery is its own task."""
    due = delivery.due_cursors()
    for destination, org_id in due:
        delivery.dispatch(destination, org_id)
    return len(due)
