from celery import shared_task

from keyward.accounts import services


@shared_task(soft_time_limit=60, time_limit=90)
def prune_sign_in_records() -> dict[str, int]:
    """Drop sign-in counters of past windows and sign-ups whose confirmation link expired (idempotent)."""
    return services.prune_sign_in_records()
