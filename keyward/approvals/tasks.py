from celery import shared_task

from keyward.approvals.decisions import expire_due


@shared_task(soft_time_limit=240, time_limit=300)
def expire_approvals() -> int:
    """Expire overdue approvals (pending, or approved but unused); idempotent, bounded per run."""
    return expire_due()
