from celery import shared_task

from broker import limits


@shared_task(soft_time_limit=50, time_limit=60)
def summarise_refusals() -> int:
    """Write the totals of rate-limit windows that have ended (each window is drained once)."""
    return limits.summarise_refusals()
